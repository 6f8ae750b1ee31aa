//! The `assign` entry point: picks the available nodes and pending jobs out of a snapshot, runs
//! the fairness loop that gives jobs their turns, and shapes the output.
//!
//! Invariants: slots are handed out only through a [`Placer`], which gives only free slots of
//! available nodes that fit the job; this module keeps the fairness order (through
//! [`JobQueue`]) and the output shape: no zero counts, one entry per (node, job), sorted by
//! (node, job). See the crate docs for the full contract.

use std::cmp::Reverse;

use crate::fit::fits;
use crate::job_queue::{JobQueue, QueuedJob, Turn};
use crate::pool::{Pool, WaterFill};
use crate::snapshot::{Assignment, JobDemand, NodeOffer, Requirements, Snapshot};

/// Matches pending tasks to available nodes; see the crate docs for the exact rules.
pub fn assign(snapshot: &Snapshot<'_>, now_ms: u64) -> Vec<Assignment> {
    assign_tuned(snapshot, now_ms, Tuning::DEFAULT)
}

/// Choices that change how fast `assign` is, never what it returns; tests force each path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    pub water_fill: WaterFill,
    /// Whether a lone available node skips grouping nodes into classes.
    pub lone_node_shortcut: bool,
}

impl Tuning {
    pub(crate) const DEFAULT: Self = Self {
        water_fill: WaterFill::DEFAULT,
        lone_node_shortcut: true,
    };
}

pub(crate) fn assign_tuned(
    snapshot: &Snapshot<'_>,
    now_ms: u64,
    tuning: Tuning,
) -> Vec<Assignment> {
    debug_assert_unique_jobs(snapshot.jobs);
    let mut available = snapshot
        .nodes
        .iter()
        .filter(|node| is_available(node, now_ms));
    let Some(first) = available.next() else {
        return Vec::new();
    };
    let mut out = if tuning.lone_node_shortcut && available.next().is_none() {
        assign_to_lone_node(first, snapshot.jobs)
    } else {
        assign_to_pool(snapshot, now_ms, tuning.water_fill)
    };
    sort_and_merge(&mut out);
    out
}

/// A node whose lease has run out may be dead, so it gets nothing.
pub(crate) fn is_available(node: &NodeOffer<'_>, now_ms: u64) -> bool {
    node.lease_until_ms > now_ms && node.slots_free > 0
}

/// Where a job's turn is placed.
pub(crate) trait Placer {
    /// Places up to `budget` tasks of `job`, recording them in `out`, and returns how many.
    /// Fewer than `budget` means no node that fits the job has a free slot left.
    fn place(&mut self, job: &QueuedJob, budget: u32, out: &mut Vec<Assignment>) -> u32;

    /// No free slot is left anywhere.
    fn is_full(&self) -> bool;
}

/// The fairness loop: the job whose turn it is gets as many slots in a row as the rules give it.
fn hand_out_turns(queue: &mut JobQueue, placer: &mut impl Placer, out: &mut Vec<Assignment>) {
    while !placer.is_full() {
        let Some(Turn {
            mut job,
            slots_in_a_row,
        }) = queue.pop_turn()
        else {
            break;
        };
        let placed = placer.place(&job, slots_in_a_row, out);
        job.placed(placed);
        // A short turn means the job's nodes are full, and they stay full within this call.
        if placed == slots_in_a_row && job.pending_left > 0 {
            queue.push(job);
        }
    }
}

fn queued_job(demand: &JobDemand<'_>, requirement_group: u32) -> Reverse<QueuedJob> {
    Reverse(QueuedJob {
        running_and_assigned: u64::from(demand.running),
        submitted_seq: demand.submitted_seq,
        job: demand.job,
        pending_left: demand.pending,
        requirement_group,
    })
}

/// The long-poll case: one node, so no node choice and no classes.
struct LoneNode {
    node: u64,
    slots_free: u32,
}

impl Placer for LoneNode {
    fn place(&mut self, job: &QueuedJob, budget: u32, out: &mut Vec<Assignment>) -> u32 {
        let count = budget.min(self.slots_free);
        if count > 0 {
            self.slots_free -= count;
            record(out, self.node, job.job, count);
        }
        count
    }

    fn is_full(&self) -> bool {
        self.slots_free == 0
    }
}

fn assign_to_lone_node(node: &NodeOffer<'_>, jobs: &[JobDemand<'_>]) -> Vec<Assignment> {
    let mut fitting: Vec<Reverse<QueuedJob>> = jobs
        .iter()
        .filter(|demand| demand.pending > 0 && fits(node, &demand.requirements))
        .map(|demand| queued_job(demand, 0))
        .collect();
    // A job gets its first slot only after every job ahead of it in the initial order got one
    // (those still have tasks and fit this node while it has room). So only the first
    // `slots_free` jobs can get anything, and the rest need not be queued.
    let slots_free = usize::try_from(node.slots_free).unwrap_or(usize::MAX);
    if fitting.len() > slots_free {
        fitting.select_nth_unstable_by(slots_free, |Reverse(a), Reverse(b)| a.cmp(b));
        fitting.truncate(slots_free);
    }
    let mut placer = LoneNode {
        node: node.node,
        slots_free: node.slots_free,
    };
    let mut out = Vec::with_capacity(fitting.len());
    hand_out_turns(&mut JobQueue::new(fitting), &mut placer, &mut out);
    out
}

fn assign_to_pool(snapshot: &Snapshot<'_>, now_ms: u64, water_fill: WaterFill) -> Vec<Assignment> {
    let (groups, mut queued) = group_by_requirements(snapshot.jobs);
    if queued.is_empty() {
        return Vec::new();
    }
    let mut pool = Pool::new(snapshot.nodes, now_ms, &groups, water_fill);
    queued.retain(|Reverse(job)| pool.group_fits_some_node(job.requirement_group));
    let entries_most = (pool.node_count() as u64)
        .saturating_mul(queued.len() as u64)
        .min(pool.slots_free_left());
    let mut out = Vec::with_capacity(usize::try_from(entries_most.min(64)).expect("small"));
    hand_out_turns(&mut JobQueue::new(queued), &mut pool, &mut out);
    out
}

/// Numbers the distinct requirement sets of the jobs with pending tasks (jobs with the same
/// requirements fit the same nodes, so fit checks run once per set) and queues those jobs.
fn group_by_requirements<'s>(
    jobs: &'s [JobDemand<'_>],
) -> (Vec<&'s Requirements<'s>>, Vec<Reverse<QueuedJob>>) {
    // Few jobs: a linear search per job beats sorting. Many: sorting bounds the work, and puts
    // equal sets next to each other so the search from the end stops at once.
    const LINEAR_SEARCH_JOBS_MAX: usize = 32;
    let mut groups = Vec::new();
    let mut queued = Vec::with_capacity(jobs.len());
    let pending = jobs.iter().filter(|demand| demand.pending > 0);
    if jobs.len() > LINEAR_SEARCH_JOBS_MAX {
        let mut sorted: Vec<&JobDemand<'_>> = pending.collect();
        sorted.sort_unstable_by(|a, b| a.requirements.cmp(&b.requirements));
        for demand in sorted {
            queued.push(queued_in_group(&mut groups, demand));
        }
    } else {
        for demand in pending {
            queued.push(queued_in_group(&mut groups, demand));
        }
    }
    (groups, queued)
}

/// Queues `demand` under the number of its requirement set, adding the set if it is new.
fn queued_in_group<'s>(
    groups: &mut Vec<&'s Requirements<'s>>,
    demand: &'s JobDemand<'_>,
) -> Reverse<QueuedJob> {
    let known = groups
        .iter()
        .rposition(|group| **group == demand.requirements);
    let group = known.unwrap_or_else(|| {
        groups.push(&demand.requirements);
        groups.len() - 1
    });
    queued_job(demand, u32::try_from(group).expect("fewer than 2^32 jobs"))
}

/// Appends a placement, folding it into the previous entry when that is the same pair.
pub(crate) fn record(out: &mut Vec<Assignment>, node: u64, job: u64, count: u32) {
    debug_assert!(count > 0);
    if let Some(last) = out.last_mut()
        && last.node == node
        && last.job == job
    {
        last.count += count;
    } else {
        out.push(Assignment { node, job, count });
    }
}

/// Puts the output in (node, job) order with one entry per pair.
fn sort_and_merge(out: &mut Vec<Assignment>) {
    out.sort_unstable_by_key(|assignment| (assignment.node, assignment.job));
    out.dedup_by(|later, earlier| {
        let same_pair = later.node == earlier.node && later.job == earlier.job;
        if same_pair {
            earlier.count += later.count;
        }
        same_pair
    });
}

/// Duplicate keys are a caller bug: two jobs would merge into one output entry.
fn debug_assert_unique_jobs(jobs: &[JobDemand<'_>]) {
    if cfg!(debug_assertions) {
        let mut keys: Vec<u64> = jobs.iter().map(|demand| demand.job).collect();
        keys.sort_unstable();
        assert!(
            keys.windows(2).all(|pair| pair[0] != pair[1]),
            "job keys in a snapshot must be unique"
        );
    }
}
