//! What unfinished work holds in the coordinator's memory, and the running tallies admission
//! reads.
//!
//! A task that has not ended keeps its spec (args, stdin and input refs) in the pool, and a job
//! that has not ended keeps its runtime (env, mounts, labels). Counting tasks alone would let
//! one requester park gigabytes of args, so admission bounds bytes as well as tasks, per
//! requester and for the pool. The tallies move when work is added and when it ends, so
//! admission never scans the pool.
//!
//! A job holds a [`Charge`]: handles on its requester's and the pool's tallies. A task releases
//! its share in [`super::Job::set_slot`] as it ends, whatever ended it (a report, an expiry, a
//! cancellation), so no path that ends tasks can forget to.

use std::collections::HashMap;
use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wire::{InputFile, JobSubmission, MountFile, RequesterId, TaskSpec};

use super::{Job, Task};

/// Tasks and the bytes they and their jobs hold in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) tasks: u64,
    pub(crate) bytes: u64,
}

impl Held {
    /// What a submission will hold once it is a job: its runtime and every task's spec.
    pub(crate) fn of_submission(submission: &JobSubmission) -> Held {
        Held {
            tasks: submission.tasks.len() as u64,
            bytes: job_bytes(submission) + submission.tasks.iter().map(task_bytes).sum::<u64>(),
        }
    }

    pub(crate) fn plus(self, other: Held) -> Held {
        Held {
            tasks: self.tasks + other.tasks,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// The bytes one unfinished task holds: its entry in the job's table and pending queue, and
/// its spec's strings.
pub(crate) fn task_bytes(spec: &TaskSpec) -> u64 {
    let args: usize = spec
        .args
        .iter()
        .map(|arg| size_of::<String>() + arg.len())
        .sum();
    let inputs: usize = spec
        .inputs
        .iter()
        .map(|input| size_of::<InputFile>() + input.name.len())
        .sum();
    (size_of::<Task>() + size_of::<u32>() + args + inputs) as u64
}

/// The bytes a job holds while it runs beyond its tasks: its runtime (name, env, mounts), its
/// requirements' labels and the set of blobs nodes may read for it. `submission.tasks` is not
/// counted.
pub(crate) fn job_bytes(submission: &JobSubmission) -> u64 {
    let env: usize = submission
        .env
        .iter()
        .map(|(name, value)| 2 * size_of::<String>() + name.len() + value.len())
        .sum();
    let mounts: usize = submission
        .mounts
        .iter()
        .map(|mount| {
            let files: usize = mount
                .files
                .iter()
                // The file in the runtime, and its hash in the job's readable set.
                .map(|file| {
                    size_of::<MountFile>() + file.path.len() + 2 * size_of::<wire::BlobHash>()
                })
                .sum();
            size_of::<wire::Mount>() + mount.guest_path.len() + files
        })
        .sum();
    // Labels are held twice: in the requirements and sorted for the scheduler.
    let labels: usize = submission
        .requirements
        .labels
        .iter()
        .map(|(key, value)| 2 * (2 * size_of::<String>() + key.len() + value.len()))
        .sum();
    (size_of::<Job>()
        + size_of::<wire::JobRuntime>()
        + submission.name.len()
        + env
        + mounts
        + labels) as u64
}

/// A running count of tasks and bytes; shared between the jobs it counts.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    tasks: AtomicU64,
    bytes: AtomicU64,
}

impl Tally {
    pub(crate) fn get(&self) -> Held {
        // Every change happens under the pool's lock; the atomics only let jobs share a tally.
        Held {
            tasks: self.tasks.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    fn add(&self, held: Held) {
        self.tasks.fetch_add(held.tasks, Ordering::Relaxed);
        self.bytes.fetch_add(held.bytes, Ordering::Relaxed);
    }

    fn sub(&self, held: Held) {
        let before = self.get();
        debug_assert!(
            before.tasks >= held.tasks && before.bytes >= held.bytes,
            "a tally never releases more than it was charged"
        );
        self.tasks.fetch_sub(held.tasks, Ordering::Relaxed);
        self.bytes.fetch_sub(held.bytes, Ordering::Relaxed);
    }
}

/// The tallies one job's work counts in: its requester's and the pool's.
#[derive(Debug, Clone)]
pub(crate) struct Charge {
    requester: Arc<Tally>,
    pool: Arc<Tally>,
}

/// Two charges are alike when they count the same: a copy of the pool has tallies of its own.
impl PartialEq for Charge {
    fn eq(&self, other: &Self) -> bool {
        self.requester.get() == other.requester.get() && self.pool.get() == other.pool.get()
    }
}

impl Charge {
    pub(crate) fn add(&self, held: Held) {
        self.requester.add(held);
        self.pool.add(held);
    }

    pub(crate) fn release(&self, held: Held) {
        self.requester.sub(held);
        self.pool.sub(held);
    }
}

/// The tallies of every requester and of the pool. One entry per requester that ever
/// submitted, so it is bounded by the tokens a pool keeps.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pool: Arc<Tally>,
    by_requester: HashMap<RequesterId, Arc<Tally>>,
}

/// Two ledgers are alike when every tally counts the same.
impl PartialEq for Ledger {
    fn eq(&self, other: &Self) -> bool {
        self.pool.get() == other.pool.get()
            && self.by_requester.len() == other.by_requester.len()
            && self.by_requester.iter().all(|(requester, tally)| {
                other
                    .by_requester
                    .get(requester)
                    .is_some_and(|theirs| theirs.get() == tally.get())
            })
    }
}

impl Ledger {
    pub(crate) fn charge_for(&mut self, requester: RequesterId) -> Charge {
        Charge {
            requester: Arc::clone(self.by_requester.entry(requester).or_default()),
            pool: Arc::clone(&self.pool),
        }
    }

    pub(crate) fn of_requester(&self, requester: RequesterId) -> Held {
        self.by_requester
            .get(&requester)
            .map_or_else(Held::default, |tally| tally.get())
    }

    pub(crate) fn of_pool(&self) -> Held {
        self.pool.get()
    }

    /// A ledger with tallies of its own, counting what this one counts.
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn copy(&self) -> Ledger {
        let copied = |tally: &Tally| {
            let copy = Tally::default();
            copy.add(tally.get());
            Arc::new(copy)
        };
        Ledger {
            pool: copied(&self.pool),
            by_requester: self
                .by_requester
                .iter()
                .map(|(requester, tally)| (*requester, copied(tally)))
                .collect(),
        }
    }

    /// Every requester's tally, for the invariant checks.
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn requesters(&self) -> impl Iterator<Item = (RequesterId, Held)> + '_ {
        self.by_requester
            .iter()
            .map(|(requester, tally)| (*requester, tally.get()))
    }
}

/// What an open job holds now, counted from its tasks: what the tallies must equal.
#[cfg(any(test, debug_assertions))]
pub(crate) fn recount(job: &Job) -> Held {
    job.tasks
        .iter()
        .filter_map(|task| task.spec.as_ref())
        .map(|spec| Held {
            tasks: 1,
            bytes: task_bytes(spec),
        })
        .fold(
            Held {
                tasks: 0,
                bytes: job.runtime_bytes,
            },
            Held::plus,
        )
}

/// Formats bytes for people: `512 bytes`, `3.2 MiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            return format!("{:.1} {unit}", bytes as f64 / size as f64);
        }
    }
    format!("{bytes} bytes")
}

impl super::PoolState {
    /// Admission reads the tallies, never the tasks: checks that they equal a recount.
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn check_held(&self) {
        let mut expected: HashMap<RequesterId, Held> = HashMap::new();
        for job in self.jobs.values() {
            for task in &job.tasks {
                assert_eq!(
                    task.spec.is_some(),
                    !matches!(task.slot, super::Slot::Ended(_)),
                    "a task holds its spec exactly until it ends, in {}",
                    job.id
                );
            }
            if self.open_jobs.contains(&job.id) {
                let entry = expected.entry(job.requester).or_default();
                *entry = entry.plus(recount(job));
            }
        }
        for (requester, held) in self.held.requesters() {
            let recounted = expected.remove(&requester).unwrap_or_default();
            assert_eq!(held, recounted, "the tally of requester {requester}");
        }
        assert!(expected.is_empty(), "every requester with work has a tally");
        let pool = self
            .held
            .requesters()
            .fold(Held::default(), |sum, (_, held)| sum.plus(held));
        assert_eq!(self.held.of_pool(), pool, "the pool's tally");
    }
}
