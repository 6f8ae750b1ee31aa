//! Results taken back after a ban. A verified result rests on the word of the nodes that agreed
//! on it (see `verification`; one node, for a result a later audit of it released). When all
//! of them are banned since, the task runs again: its result is taken back, the task is
//! pending, and a job that had ended runs again until the task has a result that does not rest
//! on liars' word alone. The requester gets back what it paid for the taken-back result, from
//! the pool's account, which took what the liars had earned.
//!
//! A task whose outputs only nodes had (`locality = "nodes"`, see `peers`) is taken back the
//! same way when every copy of them is gone, so that it makes them again; nothing is refunded
//! then, as nobody lied.
//!
//! The pool does not keep ended tasks; the store does, and names each such result's witnesses. The
//! coordinator's recall loop reads them from the store and hands them in with [`Recall`], in
//! batches, keeping at most [`RECALLED_UNFINISHED_MAX`] of them unfinished at once.

use store::{EndedJob, Recallable};
use wire::{Account, JobId, JobState, Memo, TaskCounts, TaskState};

use super::credits::Move;
use super::events::{Event, RecalledTask};
use super::held::{Held, job_bytes, task_bytes};
use super::jobs::{runtime_of, shared_blobs_of};
use super::{Job, Outbox, PoolState, Slot, Task, count_of};

/// Tasks run again after bans that may be unfinished at once, in the whole pool: a banned node
/// that vouched for a million results takes back a bounded share of the pool at a time.
pub(crate) const RECALLED_UNFINISHED_MAX: u32 = 1024;

/// What a [`super::Recall`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recalled {
    /// These many tasks run again.
    Tasks(u32),
    /// The pool's job changed since the caller read it from the store (it ended, or an
    /// ended job moved on): read it again.
    Stale,
    /// The job is gone or was cancelled: nothing of it runs again.
    Gone,
}

impl PoolState {
    /// Tasks run again after bans, unfinished now.
    pub(crate) fn recalled_unfinished(&self) -> u32 {
        self.open_jobs
            .iter()
            .map(|job_id| self.jobs[job_id].recalled_unfinished)
            .sum()
    }

    /// The job's version when it has ended, and `None` while it runs: the caller reads an
    /// ended job from the store to open it again, and hands the version back with it.
    pub(crate) fn recall_view(&self, job_id: JobId) -> Option<Option<u64>> {
        let job = self.jobs.get(&job_id)?;
        Some(job.state.is_terminal().then_some(job.version))
    }

    /// Takes back the results of `tasks` of `job_id`, as the store has them; `ended` is the
    /// job as stored with the version [`Self::recall_view`] gave, when it had ended. Tasks
    /// that are not ended with a result of a banned node are left alone.
    pub(crate) fn recall(
        &mut self,
        job_id: JobId,
        tasks: Vec<Recallable>,
        ended: Option<(EndedJob, u64)>,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Recalled {
        let Some(job) = self.jobs.get(&job_id) else {
            return Recalled::Gone;
        };
        let reopened = match (job.state, ended) {
            (JobState::Cancelled, _) => return Recalled::Gone,
            (JobState::Running, None) => None,
            (JobState::Completed | JobState::Failed, Some((ended, version)))
                if version == job.version && matches_counts(&ended, job.counts) =>
            {
                Some(Box::new(ended))
            }
            _ => return Recalled::Stale,
        };
        let states = reopened.as_ref().map(|ended| &ended.task_states[..]);
        let mut recalled: Vec<RecalledTask> = Vec::with_capacity(tasks.len());
        let mut fuel = 0u64;
        for task in tasks {
            if self.recallable(job, states, &task)
                && !recalled.iter().any(|r| r.index == task.index)
            {
                fuel = fuel.saturating_add(task.fuel);
                recalled.push(RecalledTask {
                    index: task.index,
                    node: task.node,
                    spec: task.spec,
                });
            }
        }
        if recalled.is_empty() {
            return Recalled::Stale;
        }
        let count = recalled.len() as u32;
        let requester = job.requester;
        let event = Event::ResultsRecalled {
            job: job_id,
            tasks: recalled,
            reopened,
            at_ms: now_ms,
        };
        self.record(event, out);
        let refund = Move {
            from: Account::Pool,
            to: Account::Requester(requester),
            fuel,
            memo: Memo::Refund,
            job: Some(job_id),
        };
        self.move_credits(vec![refund], now_ms, out);
        Recalled::Tasks(count)
    }

    /// Whether `task` of `job` ended with a result of a banned witness (the store found all of
    /// them banned), or with outputs only nodes had and every copy of which is gone: by the
    /// pool's tasks while the job runs, by the stored `states` when it had ended.
    fn recallable(&self, job: &Job, states: Option<&[TaskState]>, task: &Recallable) -> bool {
        let banned = self
            .verifying
            .records
            .get(&task.node)
            .is_some_and(|record| record.record.banned);
        let lost = self.lost_maker(job.id, task.index);
        let state = match states {
            Some(states) => states.get(task.index as usize).copied(),
            None => match job.tasks.get(task.index as usize).map(|t| t.slot) {
                Some(Slot::Ended(state)) => Some(state),
                _ => None,
            },
        };
        (banned && matches!(state, Some(TaskState::Succeeded | TaskState::Failed)))
            || (lost && state == Some(TaskState::Succeeded))
    }

    /// Asserts that each job counts its taken-back tasks that are unfinished.
    #[cfg(any(test, debug_assertions))]
    pub(super) fn check_recalled(&self) {
        for job in self.jobs.values() {
            let recalled = job.tasks.iter().filter(|task| task.recalled).count();
            assert_eq!(
                job.recalled_unfinished as usize, recalled,
                "recalls of {}",
                job.id
            );
        }
    }

    pub(super) fn apply_recall(
        &mut self,
        job_id: JobId,
        tasks: &[RecalledTask],
        reopened: Option<&EndedJob>,
    ) {
        if let Some(ended) = reopened {
            self.reopen(ended);
        }
        let job = self.jobs.get_mut(&job_id).expect("events name live jobs");
        for task in tasks {
            job.recall_task(task);
        }
        for task in tasks {
            self.remaking(job_id, task.index);
        }
        let job = self.jobs.get_mut(&job_id).expect("events name live jobs");
        job.queued = true;
        job.bump(&mut self.changes);
        self.sync_ready(job_id);
    }

    /// An ended job runs again, its tasks as stored: all of them ended.
    fn reopen(&mut self, ended: &EndedJob) {
        let job = self
            .jobs
            .get_mut(&ended.row.id)
            .expect("events name live jobs");
        debug_assert!(job.state.is_terminal(), "only an ended job opens again");
        job.state = JobState::Running;
        job.finished_at_ms = None;
        job.runtime = runtime_of(&ended.row);
        job.shared_blobs = shared_blobs_of(&ended.row.spec);
        job.runtime_bytes = job_bytes(&ended.row.spec);
        job.charge.add(Held {
            tasks: 0,
            bytes: job.runtime_bytes,
        });
        job.tasks = ended
            .task_states
            .iter()
            .map(|state| Task {
                spec: None,
                slot: Slot::Ended(*state),
                attempts: 0,
                live: Vec::new(),
                check: None,
                recalled: false,
                checkpoints: None,
                failures: 0,
                memory_failures: 0,
                silent_live: 0,
            })
            .collect();
        self.open_jobs.insert(ended.row.id);
    }
}

impl Job {
    /// Task `task.index`, ended, is pending again with a fresh count of attempts: the only
    /// change an ended task ever sees.
    fn recall_task(&mut self, recalled: &RecalledTask) {
        let task = &mut self.tasks[recalled.index as usize];
        let Slot::Ended(state) = task.slot else {
            unreachable!("only ended tasks are recalled");
        };
        if state == TaskState::Succeeded
            && let Some(share) = self.node_shares.get_mut(&recalled.node)
        {
            *share -= 1;
            if *share == 0 {
                self.node_shares.remove(&recalled.node);
            }
        }
        *count_of(&mut self.counts, task.slot.state()) -= 1;
        self.counts.pending += 1;
        task.slot = Slot::Pending;
        task.attempts = 0;
        task.recalled = true;
        self.charge.add(Held {
            tasks: 1,
            bytes: task_bytes(&recalled.spec),
        });
        task.spec = Some(recalled.spec.clone());
        self.pending.push_front(recalled.index);
        self.recalled += 1;
        self.recalled_unfinished += 1;
    }
}

/// Whether the stored tasks' states are the ones the pool counts: the store has every write
/// up to the job's end.
fn matches_counts(ended: &EndedJob, counts: TaskCounts) -> bool {
    let mut stored = TaskCounts {
        total: ended.task_states.len() as u32,
        ..TaskCounts::default()
    };
    for state in &ended.task_states {
        *count_of(&mut stored, *state) += 1;
    }
    stored == counts && ended.row.task_count == counts.total
}
