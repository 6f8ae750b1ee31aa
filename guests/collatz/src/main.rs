//! The example of a long task that checkpoints: finds the number below a bound whose Collatz
//! chain is the longest, the work of minutes for a large bound.
//!
//! `collatz LIMIT [STATE_MIB]` writes `/output/result.txt`: the number, its chain's length, and
//! the sum of every length as a check. Its state is four numbers (the next start, the best so
//! far, its length and the sum), saved whenever a checkpoint is due and loaded at start, so the
//! task can stop anywhere and resume elsewhere with the same result. STATE_MIB adds that many
//! mebibytes to every checkpoint, carried along unread, as a larger program's state would be
//! (benchmarks use it to measure checkpoints of a realistic size).

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Search {
    next: u64,
    best_start: u64,
    best_steps: u64,
    steps_sum: u64,
}

impl Search {
    fn new() -> Self {
        Self {
            next: 1,
            best_start: 1,
            best_steps: 0,
            steps_sum: 0,
        }
    }

    fn to_bytes(self) -> Vec<u8> {
        [self.next, self.best_start, self.best_steps, self.steps_sum]
            .iter()
            .flat_map(|word| word.to_le_bytes())
            .collect()
    }

    /// The search from a checkpoint's first 32 bytes; what follows is ballast.
    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..32)?;
        let words: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|word| u64::from_le_bytes(word.try_into().expect("chunks of 8")))
            .collect();
        match words[..] {
            [next, best_start, best_steps, steps_sum] => Some(Self {
                next,
                best_start,
                best_steps,
                steps_sum,
            }),
            _ => None,
        }
    }

    /// Searches one more start; false once past `limit`.
    fn step(&mut self, limit: u64) -> bool {
        if self.next >= limit {
            return false;
        }
        let steps = chain_steps(self.next);
        self.steps_sum = self.steps_sum.wrapping_add(steps);
        if steps > self.best_steps {
            (self.best_start, self.best_steps) = (self.next, steps);
        }
        self.next += 1;
        true
    }
}

fn chain_steps(mut n: u64) -> u64 {
    let mut steps = 0;
    while n != 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        steps += 1;
    }
    steps
}

/// The most ballast a checkpoint may carry, in MiB.
const STATE_MIB_MAX: usize = 1024;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let limit = args.next().and_then(|arg| arg.parse::<u64>().ok());
    let state_mib = args.next().map_or(Some(0), |arg| arg.parse::<usize>().ok());
    let (Some(limit), Some(state_mib @ 0..=STATE_MIB_MAX)) = (limit, state_mib) else {
        eprintln!("usage: collatz LIMIT [STATE_MIB], STATE_MIB at most {STATE_MIB_MAX}");
        return ExitCode::from(2);
    };
    let ballast = vec![0xa5u8; state_mib << 20];
    let mut search = match checkpoint::load() {
        Some(bytes) => match Search::from_bytes(&bytes) {
            Some(search) => search,
            None => {
                eprintln!("collatz: the checkpoint is not a search's state");
                return ExitCode::from(3);
            }
        },
        None => Search::new(),
    };
    while search.step(limit) {
        // Asking costs a host call, so only every few thousand starts.
        if search.next.is_multiple_of(4096)
            && checkpoint::due()
            && let Err(error) = checkpoint::save(&[search.to_bytes(), ballast.clone()].concat())
        {
            eprintln!("collatz: cannot checkpoint: {error}");
            return ExitCode::from(4);
        }
    }
    let result = format!(
        "longest chain below {limit} starts at {} ({} steps); steps in all {}\n",
        search.best_start, search.best_steps, search.steps_sum
    );
    if let Err(error) = std::fs::write("/output/result.txt", &result) {
        eprintln!("collatz: cannot write /output/result.txt: {error}");
        return ExitCode::from(5);
    }
    print!("{result}");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_resumed_from_its_bytes_ends_as_one_that_never_stopped() {
        let mut whole = Search::new();
        while whole.step(10_000) {}
        let mut first = Search::new();
        for _ in 0..4321 {
            first.step(10_000);
        }
        let mut resumed = Search::from_bytes(&first.to_bytes()).unwrap();
        while resumed.step(10_000) {}
        assert_eq!(resumed, whole);
        assert_eq!((whole.best_start, whole.best_steps), (6171, 261));
        assert_eq!(Search::from_bytes(&[0; 31]), None);
        let mut with_ballast = first.to_bytes();
        with_ballast.extend([0xa5; 100]);
        assert_eq!(Search::from_bytes(&with_ballast), Some(first));
    }
}
