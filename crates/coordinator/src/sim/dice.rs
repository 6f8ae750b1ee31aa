//! The simulation's own choices (who does what, when, and which messages the network loses),
//! from one seeded generator. The pool's ids come from a separate [`crate::env::SeededEntropy`],
//! as they do in the service.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

pub(super) struct Dice(StdRng);

impl Dice {
    pub(super) fn new(seed: u64) -> Self {
        Self(StdRng::seed_from_u64(seed))
    }

    /// True with probability `p` (0 never draws).
    pub(super) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.0.random_bool(p.min(1.0))
    }

    /// A number from `low` to `high`, both included.
    pub(super) fn between(&mut self, low: u64, high: u64) -> u64 {
        self.0.random_range(low..=high)
    }

    /// An index below `len` (which is not zero).
    pub(super) fn below(&mut self, len: usize) -> usize {
        self.0.random_range(0..len)
    }

    pub(super) fn bits(&mut self) -> u64 {
        self.0.random()
    }

    /// One of `choices`.
    pub(super) fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len())]
    }
}
