//! Checkpoints for crowdcloud tasks, in three calls.
//!
//! A task of a job with `checkpoint = { interval = "5m" }` finds its last saved state in
//! `/checkpoint` when it starts (nothing on its first start), and saves new state by writing it
//! there and exiting with the job's checkpoint exit code. The node then keeps the directory as
//! the task's latest checkpoint and starts the task again at once; if the node goes away, the
//! task starts again elsewhere from that checkpoint. Only the exit says "whole": a task that
//! stops while writing leaves the previous checkpoint the latest.
//!
//! ```no_run
//! let mut state: u64 = checkpoint::load()
//!     .map(|bytes| u64::from_le_bytes(bytes.try_into().unwrap()))
//!     .unwrap_or(0);
//! while state < 1_000_000_000 {
//!     state += 1; // the work
//!     if checkpoint::due() {
//!         checkpoint::save(&state.to_le_bytes()); // does not return
//!     }
//! }
//! ```
//!
//! [`due`] reads the process CPU-time clock: the time the task has run since it (re)started, or
//! in deterministic mode the fuel it used (ten units a nanosecond), so replicas checkpoint at
//! the same points on any node. Outside crowdcloud (no `/checkpoint`, or no interval set) the
//! task runs as a plain program: [`load`] gives nothing and [`due`] is never true.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Where the task finds and leaves its state.
pub const DIR: &str = "/checkpoint";
/// The file this crate keeps the state in, within [`DIR`].
const STATE: &str = "/checkpoint/state";
const STATE_NEW: &str = "/checkpoint/state.new";
const ENV_INTERVAL_MS: &str = "CROWDCLOUD_CHECKPOINT_INTERVAL_MS";
const ENV_EXIT_CODE: &str = "CROWDCLOUD_CHECKPOINT_EXIT_CODE";

/// The state the task saved last, if it saved one.
pub fn load() -> Option<Vec<u8>> {
    fs::read(STATE).ok()
}

/// How often the job asks the task to checkpoint, if it does.
pub fn interval_ms() -> Option<u64> {
    std::env::var(ENV_INTERVAL_MS).ok()?.parse().ok()
}

/// Whether a checkpoint is due: the task has run at least an interval since it (re)started.
/// Cheap enough to ask in a loop.
pub fn due() -> bool {
    match (interval_ms(), cputime_ns()) {
        (Some(interval_ms), Some(ran_ns)) => ran_ns / 1_000_000 >= interval_ms,
        _ => false,
    }
}

/// Saves `state` as the task's checkpoint and exits, so the node keeps it and starts the task
/// again; outside crowdcloud, where nothing would start it again, it returns an error instead.
pub fn save(state: &[u8]) -> io::Result<std::convert::Infallible> {
    let Some(code) = exit_code() else {
        return Err(io::Error::other(
            "this job does not checkpoint: no checkpoint exit code is set",
        ));
    };
    write_state(state)?;
    std::process::exit(code)
}

/// Writes `state` under a new name and renames it over the old, so even a reader that does
/// not trust the exit (another tool, a person) never sees half of it.
fn write_state(state: &[u8]) -> io::Result<()> {
    if !Path::new(DIR).is_dir() {
        return Err(io::Error::other("there is no /checkpoint directory"));
    }
    let mut file = fs::File::create(STATE_NEW)?;
    file.write_all(state)?;
    file.sync_all()?;
    fs::rename(STATE_NEW, STATE)
}

fn exit_code() -> Option<i32> {
    std::env::var(ENV_EXIT_CODE).ok()?.parse().ok()
}

/// The process CPU-time clock, in nanoseconds.
#[cfg(target_os = "wasi")]
fn cputime_ns() -> Option<u64> {
    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        fn clock_time_get(id: u32, precision: u64, time: *mut u64) -> u16;
    }
    const CLOCKID_PROCESS_CPUTIME: u32 = 2;
    let mut time = 0u64;
    // SAFETY: `time` is a valid, aligned u64 the call writes to.
    let errno = unsafe { clock_time_get(CLOCKID_PROCESS_CPUTIME, 1, &mut time) };
    (errno == 0).then_some(time)
}

/// Natively there is no crowdcloud clock: the task runs as a plain program.
#[cfg(not(target_os = "wasi"))]
fn cputime_ns() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_crowdcloud_nothing_is_due_and_saving_says_why_not() {
        assert!(!due());
        assert!(load().is_none() || Path::new(STATE).exists());
        let error = save(b"state").unwrap_err();
        assert!(error.to_string().contains("does not checkpoint"), "{error}");
    }
}
