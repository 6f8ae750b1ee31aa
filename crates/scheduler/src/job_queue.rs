//! The fairness order of jobs within one `assign` call: whose turn it is, and for how many slots
//! in a row.
//!
//! Invariant: the queue holds only jobs with tasks left; the front is the job with the fewest
//! running + assigned, ties to the lower `submitted_seq`, then to the lower job key. A job may
//! sit in the queue after its last fitting node filled up; the placer finds that out when it is
//! its turn, and it is dropped then (nodes never regain slots within a call).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// One job's place in the fairness order. Field order is priority order: the derived `Ord`
/// compares `running_and_assigned` first, then `submitted_seq`, then `job`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct QueuedJob {
    /// Running attempts plus slots assigned in this call.
    pub running_and_assigned: u64,
    pub submitted_seq: u64,
    pub job: u64,
    pub pending_left: u32,
    /// The job's requirement set, as numbered by the placer.
    pub requirement_group: u32,
}

impl QueuedJob {
    /// Records that `count` of its tasks were placed.
    pub(crate) fn placed(&mut self, count: u32) {
        debug_assert!(count <= self.pending_left);
        self.pending_left -= count;
        self.running_and_assigned += u64::from(count);
    }
}

/// Jobs in fairness order.
pub(crate) struct JobQueue {
    heap: BinaryHeap<Reverse<QueuedJob>>,
}

/// A job whose turn it is, and how many slots in a row it wins before another job in the queue
/// would come first (at least 1, at most its tasks left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Turn {
    pub job: QueuedJob,
    pub slots_in_a_row: u32,
}

impl JobQueue {
    pub(crate) fn new(jobs: Vec<Reverse<QueuedJob>>) -> Self {
        debug_assert!(jobs.iter().all(|Reverse(job)| job.pending_left > 0));
        Self {
            heap: BinaryHeap::from(jobs),
        }
    }

    /// Takes the job whose turn it is. The streak length is exact with respect to the queue's
    /// contents; a rival in the queue that can no longer be placed only shortens it, which costs
    /// an extra turn but never changes the outcome.
    pub(crate) fn pop_turn(&mut self) -> Option<Turn> {
        let Reverse(job) = self.heap.pop()?;
        let streak = match self.heap.peek() {
            None => u64::MAX,
            Some(Reverse(rival)) => slots_until_overtaken(&job, rival),
        };
        let slots_in_a_row = u32::try_from(streak.min(u64::from(job.pending_left)))
            .expect("bounded by pending_left, a u32");
        Some(Turn {
            job,
            slots_in_a_row,
        })
    }

    /// Puts a job with tasks left back in line.
    pub(crate) fn push(&mut self, job: QueuedJob) {
        debug_assert!(job.pending_left > 0);
        self.heap.push(Reverse(job));
    }
}

/// How many slots `leader` takes in a row before `rival` comes first: it keeps the turn while
/// `(running_and_assigned, submitted_seq, job)` stays below the rival's.
fn slots_until_overtaken(leader: &QueuedJob, rival: &QueuedJob) -> u64 {
    debug_assert!(leader < rival, "the queue pops its front");
    let gap = rival.running_and_assigned - leader.running_and_assigned;
    let wins_ties = (leader.submitted_seq, leader.job) < (rival.submitted_seq, rival.job);
    gap + u64::from(wins_ties)
}

#[cfg(test)]
mod tests {
    //! Turn order and streak lengths against hand-worked cases.

    use super::*;

    fn job(key: u64, running: u64, seq: u64, pending: u32) -> Reverse<QueuedJob> {
        Reverse(QueuedJob {
            running_and_assigned: running,
            submitted_seq: seq,
            job: key,
            pending_left: pending,
            requirement_group: 0,
        })
    }

    #[test]
    fn fewest_running_goes_first_then_earliest_submitted() {
        let mut queue = JobQueue::new(vec![job(1, 3, 1, 5), job(2, 1, 9, 5), job(3, 1, 4, 5)]);
        let order: Vec<u64> =
            std::iter::from_fn(|| queue.pop_turn().map(|turn| turn.job.job)).collect();
        assert_eq!(order, vec![3, 2, 1]);
    }

    #[test]
    fn streak_runs_until_the_rival_catches_up() {
        // Job 1 at 2 running, rival at 5: job 1 wins at 2, 3, 4 and, being earlier, at 5 too.
        let mut queue = JobQueue::new(vec![job(1, 2, 1, 100), job(2, 5, 2, 100)]);
        assert_eq!(queue.pop_turn().unwrap().slots_in_a_row, 4);
        // Submitted later, it stops one short.
        let mut queue = JobQueue::new(vec![job(1, 2, 3, 100), job(2, 5, 2, 100)]);
        assert_eq!(queue.pop_turn().unwrap().slots_in_a_row, 3);
    }

    #[test]
    fn streak_is_capped_by_pending_tasks() {
        let mut queue = JobQueue::new(vec![job(1, 0, 1, 2), job(2, 50, 2, 100)]);
        assert_eq!(queue.pop_turn().unwrap().slots_in_a_row, 2);
        let mut queue = JobQueue::new(vec![job(1, 0, 1, 7)]);
        assert_eq!(queue.pop_turn().unwrap().slots_in_a_row, 7);
    }
}
