//! Resume for free in the pool: tasks of a new job whose key already has a good result of the
//! same requester end at once with that result, and never run.
//!
//! The caller finds the results in the store by key (`Store::reusable`), computed on the job
//! as the pool will keep it; the pool keeps only those whose key is the task's own here, so a
//! result found for another reading of the job is never taken. A task that takes a result is
//! succeeded from the start: it holds no slot, is paid for nothing and counts toward no node's
//! share, and its result is the original's, resting on the same witnesses.
//!
//! Reuse stays within one requester: whether two requesters' data may be shared is not known
//! here, so one requester's results never end another's tasks. And it stays within one pool,
//! under one verification mode, which is part of the key. A private job takes no results: its
//! outputs are sealed to the attempt that made them, and its inputs' hashes name ciphertext
//! that is new with every submission anyway.

use std::collections::HashSet;

use store::Reusable;
use wire::{AttemptId, JobId, JobSubmission, TaskState};

use super::events::Event;
use super::{Outbox, PoolState, Slot};

/// Results found for tasks of a submission: the task's index, the key it was found under, and
/// the result.
pub(crate) type Found = Vec<(u32, wire::BlobHash, Reusable)>;

/// Of `found`, the results whose key is that of their task in `submission`, as the job will be
/// kept: the ones the job may take.
pub(crate) fn matching(submission: &JobSubmission, found: Found) -> Vec<(u32, Reusable)> {
    if found.is_empty() || submission.private.is_some() {
        return Vec::new();
    }
    let job_key = wire::key::JobKey::of(submission);
    found
        .into_iter()
        .filter(|(index, key, _)| {
            let task = submission.tasks.get(*index as usize);
            task.is_some_and(|task| job_key.key(*index, task) == *key)
        })
        .map(|(index, _, reused)| (index, reused))
        .collect()
}

impl PoolState {
    /// Ends the tasks of the new job `job_id` that take `found` results, and the job with them
    /// when that was all of it.
    pub(crate) fn reuse_results(
        &mut self,
        job_id: JobId,
        found: Vec<(u32, Reusable)>,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        if found.is_empty() {
            return;
        }
        let ids = self.attempt_ids.next(found.len());
        let tasks = found
            .into_iter()
            .zip(ids)
            .map(|((index, reused), attempt)| (index, attempt, reused))
            .collect();
        let event = Event::TasksReused {
            job: job_id,
            at_ms: now_ms,
            tasks,
        };
        self.record(event, out);
        self.finish_job_if_done(job_id, now_ms, out);
    }

    /// Applies `TasksReused`: each task ends succeeded, out of the queue.
    pub(super) fn apply_reuse(&mut self, job_id: JobId, tasks: &[(u32, AttemptId, Reusable)]) {
        let job = self
            .jobs
            .get_mut(&job_id)
            .expect("results are reused by a job of the pool");
        let reused: HashSet<u32> = tasks.iter().map(|(index, _, _)| *index).collect();
        for index in &reused {
            job.set_slot(*index, Slot::Ended(TaskState::Succeeded));
        }
        job.pending.retain(|index| !reused.contains(index));
        job.bump(&mut self.changes);
        self.sync_ready(job_id);
    }
}
