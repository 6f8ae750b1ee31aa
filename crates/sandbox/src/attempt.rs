//! One attempt: a fresh `Store` with its WASI context, limits and epoch callback; the guest's
//! `_start` run to the end; and the end classified as a typed [`Outcome`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap};
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, ResourceTableError, WasiCtxBuilder, WasiView};

use crate::clock::{AttemptClock, GuestMonotonicClock, GuestWallClock, SeededRandom};
use crate::code::Program;
use crate::control::AttemptControl;
use crate::pipe::CappedPipe;
use crate::state::{AttemptState, Bounds, Stop, on_epoch, overflowed};
use crate::workdir::{self, AttemptDir, CollectError, Outputs, RecycleBin};

/// Where a task that checkpoints finds its state.
const CHECKPOINT_GUEST_DIR: &str = "/checkpoint";

/// A trap message is cut to this many bytes in the report.
const MESSAGE_BYTES_MAX: usize = 2048;

/// Files and directories a guest may hold open at once. Each is a descriptor of the agent's
/// own process, which it shares with every other attempt and its network connections.
const OPEN_FILES_MAX: usize = 256;

/// Entries of the WASI resource table besides the guest's open files: the preopens other than
/// mounts, stdio, and the streams a single call opens for a moment.
const RESOURCE_TABLE_OVERHEAD: usize = 16;

/// The limits one attempt runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptLimits {
    pub memory_bytes_max: u64,
    pub fuel_max: u64,
    pub deadline: Duration,
    /// `/output` and `/scratch` together.
    pub output_bytes_max: u64,
    pub output_files_max: u32,
    pub stdout_bytes_max: u64,
    pub stderr_bytes_max: u64,
}

/// Fuel metering and epoch interruption, as an engine is configured with them; see
/// [`crate::SandboxConfig::metering`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metering {
    pub fuel: bool,
    pub epoch: bool,
}

impl Default for Metering {
    fn default() -> Self {
        Self {
            fuel: true,
            epoch: true,
        }
    }
}

/// Whether the attempt sees the real (coarse) clock and random bytes, or virtual ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Determinism {
    Off,
    /// A virtual clock and random bytes from this seed: the same output on any node.
    Seeded(u64),
}

/// Everything one attempt needs; the paths are on the host.
#[derive(Debug)]
pub struct Attempt {
    /// Where the attempt's tree is made, and removed when its [`Outputs`] are dropped; must
    /// not exist. A sandbox that recycles trees runs the attempt in one of its bin's instead
    /// and never makes this path.
    pub work_dir: PathBuf,
    /// `argv[0]`.
    pub program_name: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Vec<u8>,
    /// `(file name in /input, host file)`.
    pub inputs: Vec<(String, PathBuf)>,
    /// `(guest path, host directory)`, seen read-only.
    pub mounts: Vec<(String, PathBuf)>,
    pub limits: AttemptLimits,
    pub determinism: Determinism,
    pub control: Arc<AttemptControl>,
    /// The task's own state across restarts, seen read-write at `/checkpoint`; `None` for a
    /// job that does not checkpoint.
    pub checkpoint: Option<CheckpointDir>,
}

/// A host directory the caller keeps across an attempt's restarts (it makes and removes it),
/// and what it may hold: its files count against the disk the attempt may use, on top of
/// `/output`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointDir {
    pub host: PathBuf,
    pub bytes_max: u64,
    pub entries_max: u64,
}

impl Attempt {
    /// An attempt with nothing but arguments: no env, stdin, inputs or mounts, not
    /// deterministic, and a control of its own.
    pub fn plain(
        work_dir: PathBuf,
        program_name: &str,
        args: Vec<String>,
        limits: AttemptLimits,
    ) -> Self {
        Self {
            work_dir,
            program_name: program_name.to_owned(),
            args,
            env: vec![],
            stdin: vec![],
            inputs: vec![],
            mounts: vec![],
            limits,
            determinism: Determinism::Off,
            control: Arc::new(AttemptControl::new()),
            checkpoint: None,
        }
    }
}

/// How the attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    ExitCode(i32),
    Trap(String),
    OutOfFuel,
    DeadlineExceeded,
    MemoryLimit,
    /// What overflowed: `stdout`, `stderr`, `/output`, `/output file count`, `/output depth`
    /// (each `/output` limit counts `/scratch` too).
    OutputTooLarge(String),
    InvalidOutput(String),
    ModuleRejected(String),
    Cancelled,
    /// The host could not set the attempt up (disk full, permissions).
    SetupFailed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub fuel_used: u64,
    pub wall: Duration,
    pub memory_peak_bytes: u64,
    pub output_bytes: u64,
}

#[derive(Debug)]
pub struct RunReport {
    pub outcome: Outcome,
    pub usage: Usage,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub outputs: Outputs,
}

/// Entries (files and directories) `/output` and `/scratch` may hold together: directories
/// count too, so a flood of empty directories is caught.
fn disk_entries_max(limits: &AttemptLimits) -> u64 {
    u64::from(limits.output_files_max) * 2 + 16
}

/// Runs `attempt` to its end. Never panics on anything the guest does. `metering` must be
/// what `engine` was configured with.
pub(crate) fn run(
    engine: &wasmtime::Engine,
    program: &Program,
    metering: Metering,
    attempt: Attempt,
    bin: Option<&Arc<RecycleBin>>,
) -> RunReport {
    let started = Instant::now();
    let dir = match prepare_dir(&attempt, bin) {
        Ok(dir) => dir,
        Err(message) => return failed_before_start(Outcome::SetupFailed(message), started, None),
    };
    let stdout = CappedPipe::new(attempt.limits.stdout_bytes_max);
    let stderr = CappedPipe::new(attempt.limits.stderr_bytes_max);
    let state = match attempt_state(&attempt, &dir, &stdout, &stderr, started) {
        Ok(state) => state,
        Err(message) => {
            return failed_before_start(Outcome::SetupFailed(message), started, Some(dir));
        }
    };
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    if metering.fuel {
        store
            .set_fuel(attempt.limits.fuel_max)
            .expect("fuel metering is enabled in the engine config");
    }
    if metering.epoch {
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(on_epoch);
    }

    let result = match program {
        Program::Module(instance_pre) => run_start(&mut store, instance_pre),
        Program::Component(command) => run_command(&mut store, command),
    };
    // Without fuel metering (a benchmark's choice) nothing was counted.
    let fuel_left = match metering.fuel {
        true => store.get_fuel().unwrap_or(0),
        false => attempt.limits.fuel_max,
    };
    let limit_hit = store.data().limiter.limit_hit;
    let memory_peak_bytes = store.data().limiter.memory_peak_bytes as u64;
    drop(store);

    let outcome = classify(result, limit_hit, &stdout, &stderr);
    let (outcome, outputs) = settle(outcome, dir, &attempt.limits);
    RunReport {
        usage: Usage {
            fuel_used: attempt.limits.fuel_max - fuel_left.min(attempt.limits.fuel_max),
            wall: started.elapsed(),
            memory_peak_bytes,
            output_bytes: outputs.total_bytes(),
        },
        outcome,
        stdout: stdout.take(),
        stderr: stderr.take(),
        outputs,
    }
}

/// The outcome once what the guest left on disk is measured and `/output` collected, and the
/// outputs, which own `dir` from then on.
fn settle(mut outcome: Outcome, mut dir: AttemptDir, limits: &AttemptLimits) -> (Outcome, Outputs) {
    // Disk use is checked only every few ticks while the guest runs, so a guest that writes
    // fast and ends at once is never checked, and collecting /output below sees neither
    // /scratch nor empty directories: measure both once more, now that nothing writes.
    let mut outputs = Outputs::none(None);
    if matches!(
        outcome,
        Outcome::Succeeded | Outcome::ExitCode(_) | Outcome::Trap(_)
    ) {
        match workdir::measure(
            &[dir.output(), dir.scratch()],
            limits.output_bytes_max,
            disk_entries_max(limits),
        ) {
            Err(exceeded) => outcome = Outcome::OutputTooLarge(overflowed(&exceeded).to_owned()),
            // The guest is gone, so nothing can appear: there is nothing to collect.
            Ok(usage) if usage.entries == 0 => {
                dir.found_empty();
                outputs._dir = Some(dir);
                return (outcome, outputs);
            }
            Ok(_) => {}
        }
    }
    match workdir::collect(
        &dir.output(),
        limits.output_bytes_max,
        u64::from(limits.output_files_max),
    ) {
        Ok(files) => outputs.files = files,
        Err(error) if outcome == Outcome::Succeeded => {
            outcome = match error {
                CollectError::TooLarge(what) => Outcome::OutputTooLarge(what.to_owned()),
                CollectError::Invalid(message) => Outcome::InvalidOutput(message),
            }
        }
        Err(_) => {}
    }
    outputs._dir = Some(dir);
    (outcome, outputs)
}

fn failed_before_start(outcome: Outcome, started: Instant, dir: Option<AttemptDir>) -> RunReport {
    RunReport {
        outcome,
        usage: Usage {
            wall: started.elapsed(),
            ..Usage::default()
        },
        stdout: Vec::new(),
        stderr: Vec::new(),
        outputs: Outputs::none(dir),
    }
}

fn prepare_dir(attempt: &Attempt, bin: Option<&Arc<RecycleBin>>) -> Result<AttemptDir, String> {
    let mut dir = AttemptDir::create(&attempt.work_dir, bin).map_err(|error| {
        format!(
            "cannot create the attempt directory {}: {error}",
            attempt.work_dir.display()
        )
    })?;
    for (name, source) in &attempt.inputs {
        dir.place_input(name, source)
            .map_err(|error| format!("cannot place input {name:?}: {error}"))?;
    }
    Ok(dir)
}

fn attempt_state(
    attempt: &Attempt,
    dir: &AttemptDir,
    stdout: &CappedPipe,
    stderr: &CappedPipe,
    started: Instant,
) -> Result<AttemptState, String> {
    let clock = match attempt.determinism {
        Determinism::Off => AttemptClock::real(),
        Determinism::Seeded(_) => AttemptClock::virtual_clock(),
    };
    let mut builder = WasiCtxBuilder::new();
    builder
        .allow_blocking_current_thread(true)
        .arg(&attempt.program_name)
        .args(&attempt.args)
        .envs(&attempt.env)
        .stdin(MemoryInputPipe::new(attempt.stdin.clone()))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .wall_clock(GuestWallClock(clock.clone()))
        .monotonic_clock(GuestMonotonicClock(clock.clone()));
    if let Determinism::Seeded(seed) = attempt.determinism {
        builder
            .secure_random(SeededRandom::new(seed))
            .insecure_random(SeededRandom::new(seed ^ 0x5eed))
            .insecure_random_seed(u128::from(seed));
    }
    let disk = preopen_dirs(&mut builder, attempt, dir)?;
    let mut wasi = builder.build_p1();
    // Without a bound a guest could open descriptors until the agent's process has none left
    // (it got to 19984 in a test), and every other attempt and the agent's own connections
    // would fail. A full table traps the guest; `classify` says why.
    wasi.ctx()
        .table
        .set_max_capacity(OPEN_FILES_MAX + RESOURCE_TABLE_OVERHEAD + attempt.mounts.len());
    let bounds = Bounds {
        memory_bytes_max: attempt.limits.memory_bytes_max,
        fuel_max: attempt.limits.fuel_max,
        started,
        deadline: attempt.limits.deadline,
        disk_roots: disk.roots,
        disk_bytes_max: disk.bytes_max,
        disk_entries_max: disk.entries_max,
    };
    Ok(AttemptState::new(
        wasi,
        clock,
        Arc::clone(&attempt.control),
        bounds,
    ))
}

/// The directories whose files count against an attempt's disk, and its bounds.
struct DiskBounds {
    roots: Vec<PathBuf>,
    bytes_max: u64,
    entries_max: u64,
}

/// Opens the attempt's directories and the job's mounts to the guest: what counts against its
/// disk, `/checkpoint` on top of `/output`'s cap.
fn preopen_dirs(
    builder: &mut WasiCtxBuilder,
    attempt: &Attempt,
    dir: &AttemptDir,
) -> Result<DiskBounds, String> {
    let preopen = |builder: &mut WasiCtxBuilder, host: &PathBuf, guest: &str, perms| {
        builder
            .preopened_dir(host, guest, perms)
            .map(|_| ())
            .map_err(|error| format!("cannot open {} for {guest}: {error}", host.display()))
    };
    preopen(builder, &dir.input(), "/input", FsPerms::ReadOnly)?;
    preopen(builder, &dir.output(), "/output", FsPerms::ReadWrite)?;
    preopen(builder, &dir.scratch(), "/scratch", FsPerms::ReadWrite)?;
    for (guest, host) in &attempt.mounts {
        preopen(builder, host, guest, FsPerms::ReadOnly)?;
    }
    let mut disk_roots = vec![dir.output(), dir.scratch()];
    let (mut disk_bytes_max, mut disk_entries_max) = (
        attempt.limits.output_bytes_max,
        disk_entries_max(&attempt.limits),
    );
    if let Some(checkpoint) = &attempt.checkpoint {
        preopen(
            builder,
            &checkpoint.host,
            CHECKPOINT_GUEST_DIR,
            FsPerms::ReadWrite,
        )?;
        disk_roots.push(checkpoint.host.clone());
        disk_bytes_max = disk_bytes_max.saturating_add(checkpoint.bytes_max);
        disk_entries_max = disk_entries_max.saturating_add(checkpoint.entries_max);
    }
    Ok(DiskBounds {
        roots: disk_roots,
        bytes_max: disk_bytes_max,
        entries_max: disk_entries_max,
    })
}

/// Why the guest did not get to run, or how its `_start` returned.
enum RunError {
    Instantiate(wasmtime::Error),
    NoStart,
    Call(wasmtime::Error),
}

fn run_start(
    store: &mut Store<AttemptState>,
    instance_pre: &wasmtime::InstancePre<AttemptState>,
) -> Result<(), RunError> {
    let instance = instance_pre
        .instantiate(&mut *store)
        .map_err(RunError::Instantiate)?;
    let start = instance
        .get_typed_func::<(), ()>(&mut *store, "_start")
        .map_err(|_| RunError::NoStart)?;
    start.call(&mut *store, ()).map_err(RunError::Call)
}

/// A component's `wasi:cli/run`: its `Err` is the exit code 1, as `wasi:cli/exit` gives it.
fn run_command(
    store: &mut Store<AttemptState>,
    command: &CommandPre<AttemptState>,
) -> Result<(), RunError> {
    let command = command
        .instantiate(&mut *store)
        .map_err(RunError::Instantiate)?;
    match command.wasi_cli_run().call_run(&mut *store) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(())) => Err(RunError::Call(I32Exit(1).into())),
        Err(error) => Err(RunError::Call(error)),
    }
}

fn classify(
    result: Result<(), RunError>,
    limit_hit: bool,
    stdout: &CappedPipe,
    stderr: &CappedPipe,
) -> Outcome {
    let error = match result {
        Ok(()) => return Outcome::Succeeded,
        Err(RunError::NoStart) => {
            return Outcome::ModuleRejected(
                "the module exports no `_start() -> ()`; build it as a WASI command".to_owned(),
            );
        }
        Err(RunError::Instantiate(_)) if limit_hit => return Outcome::MemoryLimit,
        // A module's start function runs while it is instantiated, under every limit: if the
        // host stopped it or it exited, classify that like any run, not as a bad module.
        Err(RunError::Instantiate(error))
            if error.downcast_ref::<Stop>().is_some()
                || error.downcast_ref::<I32Exit>().is_some()
                || matches!(error.downcast_ref::<Trap>(), Some(Trap::OutOfFuel)) =>
        {
            error
        }
        Err(RunError::Instantiate(error)) => {
            return Outcome::ModuleRejected(cut(format!("cannot instantiate: {error:#}")));
        }
        Err(RunError::Call(error)) => error,
    };
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return match exit.0 {
            0 => Outcome::Succeeded,
            _ if limit_hit => Outcome::MemoryLimit,
            code => Outcome::ExitCode(code),
        };
    }
    if stdout.overflowed() {
        return Outcome::OutputTooLarge("stdout".to_owned());
    }
    if stderr.overflowed() {
        return Outcome::OutputTooLarge("stderr".to_owned());
    }
    if let Some(stop) = error.downcast_ref::<Stop>() {
        return match stop {
            Stop::Cancelled => Outcome::Cancelled,
            Stop::Deadline => Outcome::DeadlineExceeded,
            Stop::OutputTooLarge(what) => Outcome::OutputTooLarge((*what).to_owned()),
        };
    }
    let trap = error.downcast_ref::<Trap>();
    if let Some(Trap::OutOfFuel) = trap {
        return Outcome::OutOfFuel;
    }
    if limit_hit {
        return Outcome::MemoryLimit;
    }
    if let Some(ResourceTableError::Full) = error.root_cause().downcast_ref() {
        return Outcome::Trap(format!(
            "the task holds more than {OPEN_FILES_MAX} files open at once; close files it no longer needs"
        ));
    }
    // The trap's own sentence, without the wasm backtrace around it.
    let message = match trap {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    Outcome::Trap(cut(message))
}

fn cut(mut message: String) -> String {
    if message.len() > MESSAGE_BYTES_MAX {
        let mut end = MESSAGE_BYTES_MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}
