//! Control of a running attempt from outside its thread: cancel it, pause it, resume it.
//!
//! The guest runs on its own thread; the epoch callback (every tick) is where it looks at these
//! flags. A paused guest blocks inside the callback, so it uses no CPU and keeps its memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

#[derive(Debug, Default)]
pub struct AttemptControl {
    cancelled: AtomicBool,
    /// Fuel consumed as of the guest's last epoch tick.
    fuel_used: AtomicU64,
    paused: Mutex<PauseState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct PauseState {
    paused: bool,
    /// Time spent paused, which does not count against the deadline.
    paused_total: Duration,
}

impl AttemptControl {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops the attempt at its next epoch tick; it ends as [`crate::Outcome::Cancelled`].
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
        let _state = self.paused.lock();
        self.changed.notify_all();
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    pub fn pause(&self) {
        self.paused.lock().paused = true;
    }

    pub fn resume(&self) {
        self.paused.lock().paused = false;
        self.changed.notify_all();
    }

    pub fn is_paused(&self) -> bool {
        self.paused.lock().paused
    }

    pub fn paused_total(&self) -> Duration {
        self.paused.lock().paused_total
    }

    /// Fuel the guest has consumed so far, as of its last epoch tick (every few milliseconds
    /// while it runs); it stands still while the attempt is paused.
    pub fn fuel_used(&self) -> u64 {
        self.fuel_used.load(Ordering::Relaxed)
    }

    pub(crate) fn record_fuel_used(&self, fuel_used: u64) {
        self.fuel_used.store(fuel_used, Ordering::Relaxed);
    }

    /// Blocks the calling (guest) thread while paused and not cancelled.
    pub(crate) fn wait_while_paused(&self) {
        let mut state = self.paused.lock();
        if !state.paused {
            return;
        }
        let since = Instant::now();
        while state.paused && !self.is_cancelled() {
            self.changed.wait(&mut state);
        }
        state.paused_total += since.elapsed();
    }
}
