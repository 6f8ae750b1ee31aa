//! Checkpoints: a task's latest saved state, taken only from the node that holds one of its
//! attempts, and the work lost when an attempt ends early.
//!
//! A checkpoint is a claim like a report: it is taken only while its node holds the attempt,
//! only for a job that checkpoints, within the job's size, and only if it moves the task
//! forward (it covers more fuel than the latest), so a stale or slower attempt never sets a
//! task back. It is recorded as the task's latest in the same event that accepts it, and the
//! next attempt of the task is granted with it (and may read its blob).
//!
//! In a job that verifies, a checkpoint is work no one has checked, so it is kept apart from
//! the checks. Only the task's first line of work saves and resumes checkpoints: the attempts
//! that run before it gave a result, each resuming from the last one's latest. The task keeps
//! the witnesses (see `PoolState::witness_of`) of every node whose checkpoint became its latest,
//! its makers; a result of an attempt that resumed counts as theirs too (`verify::Claim`), so
//! it is run again from the start on a node of none of them, and one cheater's checkpoint can
//! spoil one line of work, never the check of it. Attempts that check a result run from the
//! start and keep their checkpoints to themselves. A ban drops every latest checkpoint its
//! owner made, and stops the attempts resumed from one.

use store::{AttemptEnd, AttemptEndState, Write};
use wire::checkpoint::SAVED_PER_TASK_MAX;
use wire::{AttemptId, BlobHash, CheckpointRef, JobId, NodeId};

use super::events::Event;
use super::{Outbox, PoolError, PoolState};

/// What a task's checkpoints did: its latest and the work lost so far. Boxed in a task, so a
/// task of a job that does not checkpoint pays one word for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Checkpoints {
    pub(crate) latest: Option<CheckpointRef>,
    pub(crate) lost_ms: u64,
    /// In a job that verifies, the witnesses of the nodes that saved its latest and the ones
    /// that led to it; at most one per attempt of the task.
    pub(crate) makers: Vec<u64>,
}

impl super::Task {
    /// Its latest checkpoint, if it saved one: what its next attempt resumes from.
    pub(crate) fn latest_checkpoint(&self) -> Option<CheckpointRef> {
        self.checkpoints.as_ref()?.latest
    }

    /// What its next attempt resumes from: its latest checkpoint, unless the attempt checks a
    /// result of the task (it has one), which runs from the start.
    pub(crate) fn resume_point(&self) -> Option<CheckpointRef> {
        if self.checks_a_result() {
            return None;
        }
        self.latest_checkpoint()
    }

    /// The fuel its next attempt's checkpoint covers: work that attempt is not paid for again.
    pub(crate) fn resumed_fuel(&self) -> u64 {
        self.resume_point().map_or(0, |latest| latest.fuel_used)
    }

    /// Whether it has a result waiting for a check: its attempts now are checks.
    fn checks_a_result(&self) -> bool {
        self.check
            .as_deref()
            .is_some_and(|check| !check.claims.is_empty() || check.held.is_some())
    }

    /// The witnesses behind the checkpoints its latest descends from.
    pub(crate) fn checkpoint_makers(&self) -> &[u64] {
        self.checkpoints
            .as_deref()
            .map_or(&[], |checkpoints| &checkpoints.makers)
    }
}

impl PoolState {
    /// The largest checkpoint `node_id` may upload for `attempt_id`: its job's bound, refused
    /// unless the node holds the attempt and the job checkpoints.
    pub(crate) fn checkpoint_bytes_max(
        &self,
        node_id: NodeId,
        attempt_id: AttemptId,
    ) -> Result<u64, String> {
        let attempt = self.held_attempt(node_id, attempt_id)?;
        let job = &self.jobs[&attempt.job];
        match job.runtime.checkpoint {
            Some(spec) => Ok(spec.bytes_max),
            None => Err(format!(
                "job {} does not checkpoint: add `checkpoint = {{ interval = \"5m\" }}` to its \
                 spec to let its tasks save their state",
                job.id
            )),
        }
    }

    /// Why `attempt` may not move its task's checkpoint, if it may not: it checks a result of
    /// its task, so it ran from the start, and its state is its own.
    fn checkpoint_conflict(&self, attempt: &super::Attempt) -> Option<String> {
        let task = &self.jobs[&attempt.job].tasks[attempt.task as usize];
        task.checks_a_result().then(|| {
            "the attempt checks a result of its task, so it keeps its checkpoints to itself: \
             go on without saving"
                .to_owned()
        })
    }

    /// Takes a checkpoint `node_id` uploaded for `attempt_id`, `size_bytes` as measured, saved
    /// when the task had used `fuel_used` in all; it becomes the task's latest. One that covers
    /// no more than the latest (another replica is ahead) is a conflict: the node keeps its
    /// attempt and goes on.
    pub(crate) fn save_checkpoint(
        &mut self,
        node_id: NodeId,
        attempt_id: AttemptId,
        (hash, size_bytes, fuel_used): (BlobHash, u64, u64),
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<CheckpointRef, PoolError> {
        let bytes_max = self
            .checkpoint_bytes_max(node_id, attempt_id)
            .map_err(PoolError::Forbidden)?;
        let attempt = self.attempts[&attempt_id];
        let job = &self.jobs[&attempt.job];
        if size_bytes > bytes_max {
            return Err(PoolError::Forbidden(format!(
                "the checkpoint is {size_bytes} bytes; the job allows {bytes_max}"
            )));
        }
        if fuel_used > job.runtime.limits.fuel_max {
            return Err(PoolError::Forbidden(format!(
                "the checkpoint claims {fuel_used} fuel; the job allows {}",
                job.runtime.limits.fuel_max
            )));
        }
        if let Some(conflict) = self.checkpoint_conflict(&attempt) {
            return Err(PoolError::Conflict(conflict));
        }
        let latest = self.latest_checkpoint(attempt.job, attempt.task);
        let covered = latest.map_or(attempt.resumed_fuel, |latest| latest.fuel_used);
        if fuel_used <= covered {
            return Err(PoolError::Conflict(format!(
                "the checkpoint covers {fuel_used} fuel, no more than the task's latest \
                 ({covered}): it would set the task back"
            )));
        }
        let sequence = latest.map_or(0, |latest| latest.sequence) + 1;
        if sequence > SAVED_PER_TASK_MAX {
            return Err(PoolError::Forbidden(format!(
                "the task saved {SAVED_PER_TASK_MAX} checkpoints, as many as one may; raise \
                 the job's checkpoint interval"
            )));
        }
        let checkpoint = CheckpointRef {
            hash,
            size_bytes,
            fuel_used,
            sequence,
        };
        self.record(
            Event::CheckpointSaved {
                attempt: attempt_id,
                checkpoint,
                at_ms: now_ms,
            },
            out,
        );
        Ok(checkpoint)
    }

    /// The latest checkpoint of a task, if it saved one.
    pub(crate) fn latest_checkpoint(&self, job_id: JobId, index: u32) -> Option<CheckpointRef> {
        self.jobs.get(&job_id)?.tasks[index as usize].latest_checkpoint()
    }

    /// Every task's latest checkpoint, for tests that a refusal changes none.
    #[cfg(test)]
    pub(crate) fn latest_checkpoint_of_any(&self) -> Vec<(JobId, u32, CheckpointRef)> {
        let mut all: Vec<_> = self
            .jobs
            .values()
            .flat_map(|job| {
                job.tasks.iter().enumerate().filter_map(|(index, task)| {
                    let latest = task.latest_checkpoint()?;
                    Some((job.id, index as u32, latest))
                })
            })
            .collect();
        all.sort_by_key(|(job, index, _)| (job.0, *index));
        all
    }

    /// Applies a saved checkpoint: the task's latest, and the attempt's work up to now kept.
    pub(super) fn apply_checkpoint(
        &mut self,
        attempt_id: AttemptId,
        checkpoint: CheckpointRef,
        at_ms: u64,
    ) {
        let attempt = self
            .attempts
            .get_mut(&attempt_id)
            .expect("events name live attempts");
        attempt.checkpointed_at_ms = Some(at_ms);
        let (job_id, index, node) = (attempt.job, attempt.task, attempt.node);
        let maker = self.witness_of(node);
        let job = self.jobs.get_mut(&job_id).expect("attempts belong to jobs");
        let verifies = job.verify.is_some();
        let checkpoints = job.tasks[index as usize]
            .checkpoints
            .get_or_insert_default();
        checkpoints.latest = Some(checkpoint);
        if verifies && !checkpoints.makers.contains(&maker) {
            checkpoints.makers.push(maker);
        }
        job.bump(&mut self.changes);
    }

    /// The makers of a task's checkpoints (see the module's docs) a result of `attempt` rests
    /// on besides its own node: none unless it resumed.
    pub(super) fn makers_behind(&self, attempt: &super::Attempt) -> Vec<u64> {
        if attempt.resumed_fuel == 0 {
            return Vec::new();
        }
        let own = self.witness_of(attempt.node);
        self.jobs[&attempt.job].tasks[attempt.task as usize]
            .checkpoint_makers()
            .iter()
            .copied()
            .filter(|maker| *maker != own)
            .collect()
    }

    /// Tasks of open jobs whose latest checkpoint rests on `witness`'s work, in a fixed order.
    pub(super) fn checkpoints_made_by(&self, witness: u64) -> Vec<(JobId, u32)> {
        self.open_tasks_where(|task| task.checkpoint_makers().contains(&witness))
    }

    /// Applies a dropped checkpoint: the task's next attempt starts from the beginning.
    pub(super) fn apply_checkpoint_dropped(&mut self, job_id: JobId, index: u32) {
        let job = self.jobs.get_mut(&job_id).expect("events name live jobs");
        if let Some(checkpoints) = job.tasks[index as usize].checkpoints.as_deref_mut() {
            checkpoints.latest = None;
            checkpoints.makers.clear();
        }
        job.bump(&mut self.changes);
    }

    /// Whether `end` loses work of a job that checkpoints: its attempt ended without its
    /// task's result, so the next attempt starts from the task's latest checkpoint.
    pub(super) fn loses_work(&self, end: &AttemptEnd) -> bool {
        let checkpoints = self
            .jobs
            .get(&end.job_id)
            .is_some_and(|job| job.runtime.checkpoint.is_some());
        checkpoints && end.task_end.is_none() && end.state != AttemptEndState::Cancelled
    }

    /// Counts what an attempt that loses work (see [`Self::loses_work`]) did since its last
    /// checkpoint, or its start, as lost; before the attempt is forgotten.
    pub(super) fn lose_work(&mut self, end: &AttemptEnd) {
        if !self.loses_work(end) {
            return;
        }
        let Some(attempt) = self.attempts.get(&end.attempt_id) else {
            return;
        };
        let since_ms = attempt.checkpointed_at_ms.unwrap_or(attempt.granted_at_ms);
        let lost_ms = end.at_ms.saturating_sub(since_ms);
        let job = self
            .jobs
            .get_mut(&end.job_id)
            .expect("attempts belong to jobs");
        let checkpoints = job.tasks[end.task_index as usize]
            .checkpoints
            .get_or_insert_default();
        checkpoints.lost_ms = checkpoints.lost_ms.saturating_add(lost_ms);
    }

    /// The row of a task's checkpoints as they stand.
    pub(super) fn checkpoint_write(&self, job_id: JobId, index: u32) -> Write {
        let checkpoints = self.jobs[&job_id].tasks[index as usize]
            .checkpoints
            .as_deref()
            .cloned()
            .unwrap_or_default();
        Write::SetTaskCheckpoint {
            job_id,
            task_index: index,
            latest: checkpoints.latest,
            lost_ms: checkpoints.lost_ms,
            makers: checkpoints.makers,
        }
    }
}
