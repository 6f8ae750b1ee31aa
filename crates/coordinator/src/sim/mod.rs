//! A seeded simulation of the whole pool. It runs the real coordinator logic (`PoolState` and
//! `Parked`, driven as `Shared::mutate_parked` drives them, each request as its HTTP route
//! makes it) and the real store on a SQLite file, with a simulated clock, agents, requesters
//! and network, and a coordinator that crashes and restores from the store. One seed decides
//! everything: the pool's size and settings, every delay, loss and fault, and (through a
//! [`crate::env::SeededEntropy`]) every id the pool draws; the same seed gives the same run.
//!
//! Running it: `cargo nextest run -p coordinator sim::` runs [`SEEDS_DEFAULT`] seeds and, for a
//! failing one, prints the command that replays it: `CROWDCLOUD_SIM_SEED=N` runs seed N alone
//! and prints the last lines of its trace when it fails. `CROWDCLOUD_SIM_SEEDS=N` runs seeds
//! 0..N (the longer run).
//!
//! What it checks, after every step: the pool's invariants, and the pool against a shadow built
//! from the writes alone (`shadow`, `checks`); at a crash, that the restore through the real
//! store gives back what was committed; at the end, that the pool drained.
//!
//! About a third of the seeds (the seed's dice decide) run a public pool (`setup::Public`): a
//! small probation and an audit rate from the dice, every agent an owner of its own (its own
//! join token) on a network of its own, requesters that get credit from the owner first and
//! submit deterministic jobs, and up to 30 % of the agents cheating (`setup::Cheat`). An honest
//! agent reports the task's one honest result, a function of the job and the task (`results`);
//! a cheater another one. There the shadow also checks every verdict (`shadow_verify`): it
//! accepts only a result that distinct owners agreed on (or a later audit released) and that is
//! the honest one, a node whose result disagreed with it is banned by the same change, only
//! cheaters are banned, a node on probation runs one attempt at a time, a result is taken back
//! only once every node that witnessed it is banned (and every such result is, before the pool
//! counts as drained), and once every job ended no credit is pending.
//!
//! The parts: `world` (the event loop and the run's phases), `setup` (what a seed draws, and
//! the summary), `net` (messages and the network), `coord` (the coordinator process: the write
//! queue, commits, crashes and restarts), `routes` and `requester_routes` (each request as its
//! route makes it), `agent`, `agent_io`, `agent_endings` and `agent_faults` (agents),
//! `results` (what a public pool's task leaves), `requester`, `shadow` and `shadow_verify`,
//! `checks`, `trace` (the digest and the tail printed on failure) and `dice` (the seeded
//! choices). A new command is a `Request` (and its `Reply`) in `net`, a
//! route in `routes` or `requester_routes`, and a party that sends it (a timer or a reply of an
//! agent or a requester); a new write needs its rule in `shadow`.

mod agent;
mod agent_endings;
mod agent_faults;
mod agent_io;
mod checks;
mod coord;
mod dice;
mod net;
mod requester;
mod requester_routes;
mod results;
mod routes;
mod setup;
mod shadow;
mod shadow_verify;
mod trace;
mod world;

use std::panic::AssertUnwindSafe;

use setup::{Stats, Summary};
use trace::TraceMode;

/// Seeds a plain test run takes: about a minute in a debug build on two cores.
const SEEDS_DEFAULT: u64 = 300;

/// Seeds run side by side, each on its own thread with its own current-thread runtime.
const THREADS: u64 = 2;

/// A run stops after this many failing seeds: one is enough to start from.
const FAILURES_MAX: usize = 5;

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}")),
    )
}

fn replay_command(seed: u64) -> String {
    format!("CROWDCLOUD_SIM_SEED={seed} cargo nextest run -p coordinator sim::tests::seeds")
}

/// Runs one seed on a runtime of its own, in a fresh directory.
fn run(seed: u64, mode: TraceMode) -> Summary {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(world::run_seed(seed, dir.path(), mode))
}

/// Runs the seeds `first, first + THREADS, …` below `count`; the failing ones.
fn run_share(first: u64, count: u64, stats: &mut Stats) -> Vec<u64> {
    let mut failed = Vec::new();
    for seed in (first..count).step_by(THREADS as usize) {
        match std::panic::catch_unwind(AssertUnwindSafe(|| run(seed, TraceMode::Off))) {
            Ok(summary) => stats.add(&summary.stats),
            Err(_) => {
                eprintln!(
                    "seed {seed} failed; replay it with: {}",
                    replay_command(seed)
                );
                failed.push(seed);
                if failed.len() >= FAILURES_MAX {
                    break;
                }
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds() {
        if let Some(seed) = env_number("CROWDCLOUD_SIM_SEED") {
            let summary = run(seed, TraceMode::Tail);
            eprintln!("seed {seed} passed: {summary:?}");
            return;
        }
        let count = env_number("CROWDCLOUD_SIM_SEEDS").unwrap_or(SEEDS_DEFAULT);
        let started = std::time::Instant::now();
        let shares: Vec<_> = (0..THREADS)
            .map(|first| {
                std::thread::spawn(move || {
                    let mut stats = Stats::default();
                    let failed = run_share(first, count, &mut stats);
                    (failed, stats)
                })
            })
            .collect();
        let mut failed = Vec::new();
        let mut stats = Stats::default();
        for share in shares {
            let (share_failed, share_stats) = share.join().expect("a share of the seeds ran");
            failed.extend(share_failed);
            stats.add(&share_stats);
        }
        eprintln!("{count} seeds in {:?}: {stats:?}", started.elapsed());
        failed.sort_unstable();
        let commands: Vec<String> = failed.iter().map(|seed| replay_command(*seed)).collect();
        assert!(
            failed.is_empty(),
            "seeds {failed:?} failed; replay with:\n{}",
            commands.join("\n")
        );
        assert!(stats.reports_accepted > 0, "the seeds did work: {stats:?}");
        if count >= SEEDS_DEFAULT {
            // The faults the simulator is for happened, and its checks ran.
            assert!(
                stats.writes_lost > 0 && stats.replays_checked > 0,
                "{stats:?}"
            );
            assert!(stats.forged > 0 && stats.agent_crashes > 0, "{stats:?}");
            // Reports asked for the next attempts, and were granted some.
            assert!(stats.grants_with_reports > 0, "{stats:?}");
            // Replicas ran side by side, and the first to succeed stopped the others.
            assert!(stats.replicas_stopped > 0, "{stats:?}");
            // Requesters wrapped private jobs' keys to more agents while faults went on.
            assert!(stats.keys_granted > 0, "{stats:?}");
            // Public pools checked results, cheaters lied, and liars were caught.
            assert!(
                stats.public_seeds > 0 && stats.tasks_verified > 0 && stats.grants > 0,
                "{stats:?}"
            );
            assert!(
                stats.lies_accepted > 0 && stats.cheaters_turned > 0 && stats.bans > 0,
                "{stats:?}"
            );
        }
    }

    /// The same seed gives the same run, command for command and write for write, though the
    /// pool's hash maps iterate in a new order in each run.
    #[tokio::test(flavor = "current_thread")]
    async fn a_seed_replays_to_the_same_trace() {
        let mut digests = Vec::new();
        for seed in [7, 7, 8] {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let summary = world::run_seed(seed, dir.path(), TraceMode::Digest).await;
            assert!(summary.lines > 500, "a real run: {summary:?}");
            assert!(
                summary.stats.reports_accepted > 0,
                "a real run: {summary:?}"
            );
            digests.push(summary.digest);
        }
        assert_eq!(digests[0], digests[1], "one seed, one trace");
        assert_ne!(digests[0], digests[2], "the digest tells runs apart");
    }
}
