//! The clocks and random sources a guest sees.
//!
//! Outside deterministic mode, clocks are real but coarse (one millisecond), so a task cannot
//! time the host finely, and the monotonic clock starts at zero for each attempt, so it tells
//! nothing of the host's uptime. In deterministic mode both clocks are virtual: they advance by
//! a fixed step on every read and by exactly the requested time on every sleep, so a task gives
//! the same output on any hardware.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

const COARSE_NS: u64 = 1_000_000;

/// 2001-09-09T01:46:40Z: a fixed, obviously synthetic start for the virtual wall clock.
const VIRTUAL_EPOCH_NS: u64 = 1_000_000_000 * 1_000_000_000;

/// Each read of a virtual clock advances it by this much, so time never stands still for a
/// guest that polls it in a loop.
const VIRTUAL_READ_STEP_NS: u64 = 1_000;

/// The time source of one attempt.
#[derive(Debug, Clone)]
pub(crate) enum AttemptClock {
    Real { started: Instant },
    Virtual { elapsed_ns: Arc<AtomicU64> },
}

impl AttemptClock {
    pub(crate) fn real() -> Self {
        AttemptClock::Real {
            started: Instant::now(),
        }
    }

    pub(crate) fn virtual_clock() -> Self {
        AttemptClock::Virtual {
            elapsed_ns: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Nanoseconds since the attempt started, as the guest's monotonic clock shows them.
    pub(crate) fn monotonic_ns(&self) -> u64 {
        match self {
            AttemptClock::Real { started } => coarse(started.elapsed().as_nanos() as u64),
            AttemptClock::Virtual { elapsed_ns } => {
                elapsed_ns.fetch_add(VIRTUAL_READ_STEP_NS, Ordering::Relaxed) + VIRTUAL_READ_STEP_NS
            }
        }
    }

    // The guest's wall clock is the host's, made coarse; only a virtual clock does without it.
    #[allow(clippy::disallowed_methods)]
    pub(crate) fn wall_ns(&self) -> u64 {
        match self {
            AttemptClock::Real { .. } => {
                let since_epoch = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                coarse(since_epoch.as_nanos() as u64)
            }
            AttemptClock::Virtual { .. } => VIRTUAL_EPOCH_NS + self.monotonic_ns(),
        }
    }

    pub(crate) fn resolution_ns(&self) -> u64 {
        match self {
            AttemptClock::Real { .. } => COARSE_NS,
            AttemptClock::Virtual { .. } => VIRTUAL_READ_STEP_NS,
        }
    }

    /// For a virtual clock, a sleep is instantaneous and moves time forward; returns false for a
    /// real clock, whose sleeps must really wait.
    pub(crate) fn skip_forward(&self, duration_ns: u64) -> bool {
        match self {
            AttemptClock::Real { .. } => false,
            AttemptClock::Virtual { elapsed_ns } => {
                elapsed_ns.fetch_add(duration_ns, Ordering::Relaxed);
                true
            }
        }
    }

    /// For a virtual clock, a wait until `monotonic_ns` ends at once with the clock moved on to
    /// it (or left where it is, if already past); returns false for a real clock.
    pub(crate) fn skip_to(&self, monotonic_ns: u64) -> bool {
        match self {
            AttemptClock::Real { .. } => false,
            AttemptClock::Virtual { elapsed_ns } => {
                elapsed_ns.fetch_max(monotonic_ns, Ordering::Relaxed);
                true
            }
        }
    }
}

fn coarse(ns: u64) -> u64 {
    ns - ns % COARSE_NS
}

pub(crate) struct GuestWallClock(pub(crate) AttemptClock);

impl HostWallClock for GuestWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(self.0.resolution_ns())
    }
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.wall_ns())
    }
}

pub(crate) struct GuestMonotonicClock(pub(crate) AttemptClock);

impl HostMonotonicClock for GuestMonotonicClock {
    fn resolution(&self) -> u64 {
        self.0.resolution_ns()
    }
    fn now(&self) -> u64 {
        self.0.monotonic_ns()
    }
}

/// A seeded random source (SplitMix64): the same seed gives the same bytes on every platform
/// and in every version, which a general-purpose RNG crate does not promise.
pub(crate) struct SeededRandom {
    state: u64,
}

impl SeededRandom {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl rand_core::TryRng for SeededRandom {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.next() as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.next())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_clock_moves_by_reads_and_sleeps_only() {
        let clock = AttemptClock::virtual_clock();
        let first = clock.monotonic_ns();
        let second = clock.monotonic_ns();
        assert_eq!(second - first, VIRTUAL_READ_STEP_NS);
        assert!(clock.skip_forward(5_000_000));
        assert_eq!(
            clock.monotonic_ns() - second,
            5_000_000 + VIRTUAL_READ_STEP_NS
        );
    }

    #[test]
    fn real_clocks_are_coarse_and_start_at_zero() {
        let clock = AttemptClock::real();
        assert_eq!(clock.monotonic_ns() % COARSE_NS, 0);
        assert!(clock.monotonic_ns() < 60_000_000_000);
        assert_eq!(clock.wall_ns() % COARSE_NS, 0);
        assert!(!clock.skip_forward(1));
    }

    #[test]
    fn seeded_random_repeats_for_a_seed_and_differs_between_seeds() {
        use rand_core::TryRng;
        let draw = |seed| {
            let mut rng = SeededRandom::new(seed);
            let mut bytes = [0u8; 19];
            rng.try_fill_bytes(&mut bytes).unwrap();
            bytes
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }
}
