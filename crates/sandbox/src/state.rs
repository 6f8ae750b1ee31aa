//! The data of one attempt's `Store` ([`AttemptState`]): its WASI context, limiter and clock,
//! the checks the epoch callback makes (deadline, cancellation, pause, disk use), and why the
//! host stopped a guest ([`Stop`]).
//!
//! A leaf of the crate's modules that touch wasmtime: it imports none of `engine`, `attempt`,
//! `module`, `poll` or `writes`, which all build on it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{StoreContextMut, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{WasiCtxView, WasiView};

use crate::clock::AttemptClock;
use crate::control::AttemptControl;
use crate::limiter::AttemptLimiter;
use crate::workdir::{self, Exceeded};

/// Epoch ticks between two measurements of what the guest wrote to disk.
const DISK_CHECK_EVERY_TICKS: u32 = 10;

/// Why the host stopped a guest; carried inside the trap error so it can be told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    Cancelled,
    Deadline,
    OutputTooLarge(&'static str),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Cancelled => f.write_str("attempt cancelled"),
            Stop::Deadline => f.write_str("deadline exceeded"),
            Stop::OutputTooLarge(what) => write!(f, "too much written to {what}"),
        }
    }
}

impl std::error::Error for Stop {}

/// What an attempt's state holds its guest to, taken from the attempt's limits.
pub(crate) struct Bounds {
    pub(crate) memory_bytes_max: u64,
    pub(crate) fuel_max: u64,
    pub(crate) started: Instant,
    pub(crate) deadline: Duration,
    /// The directories whose files count against the disk limit (`/output` and `/scratch`).
    pub(crate) disk_roots: Vec<PathBuf>,
    pub(crate) disk_bytes_max: u64,
    pub(crate) disk_entries_max: u64,
}

/// The data of one attempt's `Store`.
pub(crate) struct AttemptState {
    wasi: WasiP1Ctx,
    pub(crate) limiter: AttemptLimiter,
    pub(crate) clock: AttemptClock,
    watch: Watch,
    fuel_max: u64,
    disk: DiskWatch,
}

/// What says whether a guest must stop: its control and its deadline. A copy goes wherever a
/// guest can wait outside its own code (a component's clock pollables), so a wait, too, ends
/// at cancellation or the deadline and holds still while paused.
#[derive(Clone)]
pub(crate) struct Watch {
    control: Arc<AttemptControl>,
    started: Instant,
    deadline: Duration,
}

impl Watch {
    /// Err when the guest must stop now; blocks while the attempt is paused.
    pub(crate) fn check_running(&self) -> Result<(), Stop> {
        if self.control.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        self.control.wait_while_paused();
        if self.control.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        let running = self
            .started
            .elapsed()
            .saturating_sub(self.control.paused_total());
        if running > self.deadline {
            return Err(Stop::Deadline);
        }
        Ok(())
    }
}

struct DiskWatch {
    roots: Vec<PathBuf>,
    bytes_max: u64,
    entries_max: u64,
    ticks_until_check: u32,
    /// Bytes found by the last measurement.
    measured_bytes: u64,
    /// Bytes the guest has written to any descriptor since then.
    written_since: u64,
}

impl AttemptState {
    pub(crate) fn new(
        wasi: WasiP1Ctx,
        clock: AttemptClock,
        control: Arc<AttemptControl>,
        bounds: Bounds,
    ) -> Self {
        Self {
            wasi,
            limiter: AttemptLimiter::new(bounds.memory_bytes_max),
            clock,
            watch: Watch {
                control,
                started: bounds.started,
                deadline: bounds.deadline,
            },
            fuel_max: bounds.fuel_max,
            disk: DiskWatch {
                roots: bounds.disk_roots,
                bytes_max: bounds.disk_bytes_max,
                entries_max: bounds.disk_entries_max,
                ticks_until_check: DISK_CHECK_EVERY_TICKS,
                measured_bytes: 0,
                written_since: 0,
            },
        }
    }

    /// The fuel the attempt started with.
    pub(crate) fn fuel_max(&self) -> u64 {
        self.fuel_max
    }

    pub(crate) fn wasi(&mut self) -> &mut WasiP1Ctx {
        &mut self.wasi
    }

    pub(crate) fn watch(&self) -> &Watch {
        &self.watch
    }

    /// Err when the guest must stop now; blocks while the attempt is paused.
    pub(crate) fn check_running(&self) -> Result<(), Stop> {
        self.watch.check_running()
    }

    fn check_disk(&mut self) -> Result<(), Stop> {
        self.disk.ticks_until_check = self.disk.ticks_until_check.saturating_sub(1);
        if self.disk.ticks_until_check > 0 {
            return Ok(());
        }
        self.disk.ticks_until_check = DISK_CHECK_EVERY_TICKS;
        self.measure_disk()
    }

    /// Whether a write of up to `bytes` surely keeps the disk within its limit, judged from
    /// the last measurement and what was written since, without touching the file system.
    pub(crate) fn write_surely_fits(&self, bytes: u64) -> bool {
        let room = self.disk.bytes_max.saturating_sub(self.disk.measured_bytes);
        self.disk.written_since.saturating_add(bytes) <= room
    }

    /// Stops the attempt before a write that would grow its files by `growth_bytes` past the
    /// limit, so not a byte of the write that crosses it lands on the provider's disk.
    pub(crate) fn reserve_growth(&mut self, growth_bytes: u64) -> Result<(), Stop> {
        if self.write_surely_fits(growth_bytes) {
            return Ok(());
        }
        self.measure_disk()?;
        if self.disk.measured_bytes.saturating_add(growth_bytes) > self.disk.bytes_max {
            return Err(Stop::OutputTooLarge(overflowed(&Exceeded::Bytes)));
        }
        Ok(())
    }

    /// Counts bytes a guest's write call has just written. Between two ticks a guest can write
    /// far past the limit (over 100 MiB in 50 ms in a test), so once the bytes written since
    /// the last measurement could have taken the total past the limit, it is measured at once.
    pub(crate) fn note_written(&mut self, bytes: u64) -> Result<(), Stop> {
        self.disk.written_since = self.disk.written_since.saturating_add(bytes);
        let room = self.disk.bytes_max.saturating_sub(self.disk.measured_bytes);
        if self.disk.written_since <= room {
            return Ok(());
        }
        self.measure_disk()
    }

    fn measure_disk(&mut self) -> Result<(), Stop> {
        let usage = workdir::measure(&self.disk.roots, self.disk.bytes_max, self.disk.entries_max)
            .map_err(|exceeded| Stop::OutputTooLarge(overflowed(&exceeded)))?;
        self.disk.measured_bytes = usage.bytes;
        self.disk.written_since = 0;
        Ok(())
    }
}

// A component reaches the same WASI context as a module: wasmtime-wasi's preview 1 layer is
// built on its preview 2 one, and keeps both the context and its resource table.
impl WasiView for AttemptState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.ctx()
    }
}

/// The name an [`crate::Outcome::OutputTooLarge`] gives a disk limit.
pub(crate) fn overflowed(exceeded: &Exceeded) -> &'static str {
    match exceeded {
        Exceeded::Bytes => "/output",
        Exceeded::Entries => "/output file count",
        Exceeded::Depth => "/output depth",
    }
}

/// The epoch callback: records the fuel used, then stops the guest if it must stop, blocks it
/// while paused, and measures its disk use every few ticks.
pub(crate) fn on_epoch(
    mut context: StoreContextMut<'_, AttemptState>,
) -> wasmtime::Result<UpdateDeadline> {
    // Recorded before a pause blocks, so progress read from outside stands still while paused.
    let fuel_left = context.get_fuel().unwrap_or(0);
    let state = context.data_mut();
    state
        .watch
        .control
        .record_fuel_used(state.fuel_max.saturating_sub(fuel_left));
    state.check_running()?;
    state.check_disk()?;
    Ok(UpdateDeadline::Continue(1))
}
