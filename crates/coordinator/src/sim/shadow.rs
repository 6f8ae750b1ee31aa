//! The pool as its writes tell it. The simulation follows every write the pool queues (the
//! memory shadow) and every write that reached the store (the durable shadow), and checks each
//! against the rules of the pool: an attempt is granted only for a pending task of a running
//! job (or one running short of its replicas, on a node that runs none of them) and ends once,
//! a task ends only once none of its replicas runs, a task that ended never changes (but for a
//! result taken back after a ban, see `shadow_verify`), a job finishes only when every task has
//! ended (completed exactly when all succeeded), only ended jobs are purged, and a node holds
//! no attempt when it registers again or is deleted. The checks in `checks` then compare the
//! live pool with the memory shadow; after a crash, the restored pool with the durable one.
//! A job that verifies follows the rules of `shadow_verify` as well: its tasks' results, the
//! verdicts that end them, and bans.

use std::collections::{BTreeMap, BTreeSet};

use store::{AttemptEnd, AttemptEndState, AttemptRow, Write};
use wire::{AttemptId, JobId, JobState, NodeId, Outcome, RequesterId, TaskCounts, TaskState};

use super::shadow_verify::{ShadowClaim, check_verified_end_state};
use crate::pool::count_of;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Slot {
    Pending,
    /// Its live attempts, one per replica.
    Running(Vec<AttemptId>),
    Ended(TaskState),
}

#[derive(Debug, Clone)]
pub(super) struct ShadowJob {
    pub(super) requester: RequesterId,
    pub(super) state: JobState,
    pub(super) tasks: Vec<Slot>,
    /// Live attempts one task may have: as many as it may make, since each replica on a node
    /// gone silent may have a stand-in, and the silent node may be heard from again (silence
    /// is not written, so the shadow cannot tell those from replicas).
    pub(super) live_max: u32,
    /// Whether its results are checked before its tasks end.
    pub(super) verifies: bool,
    /// The results of its running tasks that wait for a check, by task.
    pub(super) claims: BTreeMap<u32, Vec<ShadowClaim>>,
    /// Attempts counted against the job: grants less releases.
    pub(super) attempts: u64,
    pub(super) fuel: u64,
    /// Tasks each node ended in success.
    pub(super) shares: BTreeMap<NodeId, u32>,
}

impl ShadowJob {
    pub(super) fn counts(&self) -> TaskCounts {
        let mut counts = TaskCounts {
            total: self.tasks.len() as u32,
            ..TaskCounts::default()
        };
        for slot in &self.tasks {
            let state = match slot {
                Slot::Pending => TaskState::Pending,
                Slot::Running(_) => TaskState::Running,
                Slot::Ended(state) => *state,
            };
            *count_of(&mut counts, state) += 1;
        }
        counts
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct ShadowAttempt {
    pub(super) job: JobId,
    pub(super) task: u32,
    pub(super) node: NodeId,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Shadow {
    pub(super) jobs: BTreeMap<JobId, ShadowJob>,
    pub(super) attempts: BTreeMap<AttemptId, ShadowAttempt>,
    /// Nodes in the store, with when each was last granted an attempt (which extends a lease).
    pub(super) nodes: BTreeMap<NodeId, u64>,
    pub(super) purged: BTreeSet<JobId>,
    /// Every attempt id ever granted: an id is never granted twice.
    granted: BTreeSet<AttemptId>,
    /// Jobs that have not ended.
    pub(super) open: usize,
    /// Whether replicas of a task must run on nodes of distinct owners (a public pool).
    pub(super) owners_apart: bool,
    /// Each node identity's owner, by its join token: identities outlive their nodes' rows.
    pub(super) owners: BTreeMap<NodeId, u64>,
    /// Node identities banned.
    pub(super) banned: BTreeSet<NodeId>,
    /// Nodes whose result disagreed with one a verdict accepted: they must be banned by the
    /// same change. With the task, for the message.
    pub(super) must_ban: BTreeMap<NodeId, (JobId, u32)>,
    /// Nodes whose lie was among the results a verdict weighed (agreed or inconclusive).
    pub(super) liars_weighed: BTreeSet<NodeId>,
    /// Tasks ended with a verified result, with its witnesses (the nodes that agreed, or the
    /// one a later audit released): once all of them are banned, the result is taken back.
    pub(super) vouched: BTreeMap<(JobId, u32), Vec<NodeId>>,
    /// Results released on one node's word, and results taken back, for the summary.
    pub(super) vouched_alone: u64,
    pub(super) recalled: u64,
    /// Wrong results released on one node's word (by a node that lies now and then).
    pub(super) wrong_vouched: u64,
    /// Tasks ended with a verified result, and inconclusive, for the summary.
    pub(super) verified: u64,
    pub(super) inconclusive: u64,
}

impl Shadow {
    /// An empty pool; `owners_apart` in a public one.
    pub(super) fn new(owners_apart: bool) -> Self {
        Self {
            owners_apart,
            ..Self::default()
        }
    }

    pub(super) fn open_jobs(&self) -> usize {
        self.open
    }

    /// The node that holds `attempt` now, if it is live.
    pub(super) fn holder(&self, attempt: AttemptId) -> Option<NodeId> {
        self.attempts.get(&attempt).map(|a| a.node)
    }

    pub(super) fn apply_all(&mut self, writes: &[Write]) {
        for write in writes {
            self.apply(write);
        }
    }

    pub(super) fn apply(&mut self, write: &Write) {
        match write {
            Write::InsertJob { job, tasks } => {
                assert!(
                    !self.jobs.contains_key(&job.id) && !self.purged.contains(&job.id),
                    "job {} inserted twice",
                    job.id
                );
                assert_eq!(job.state, JobState::Running);
                self.open += 1;
                let shadow = ShadowJob {
                    requester: job.requester_id,
                    state: job.state,
                    tasks: vec![Slot::Pending; tasks.len()],
                    live_max: job.spec.max_attempts
                        + job
                            .spec
                            .on_failure
                            .as_ref()
                            .map_or(0, |policy| policy.retries),
                    verifies: job.spec.verify.is_some(),
                    claims: BTreeMap::new(),
                    attempts: 0,
                    fuel: 0,
                    shares: BTreeMap::new(),
                };
                self.jobs.insert(job.id, shadow);
            }
            Write::GrantAttempts(rows) => rows.iter().for_each(|row| self.grant(row)),
            Write::EndAttempts(ends) => ends.iter().for_each(|end| self.end(end)),
            Write::CancelJob {
                job_id, aborted, ..
            } => self.cancel(*job_id, *aborted),
            Write::FinishJob { job_id, state, .. } => self.finish(*job_id, *state),
            Write::PurgeJobs(job_ids) => job_ids.iter().for_each(|job| self.purge(*job)),
            Write::UpsertNode(row) => {
                self.assert_idle(row.id, "registers again");
                self.nodes.insert(row.id, 0);
                let owner = super::shadow_verify::owner_key(row.join_token_hash.as_deref());
                self.owners.insert(row.id, owner.unwrap_or(row.id.0));
            }
            Write::EndTasks(verdicts) => verdicts.iter().for_each(|v| self.verdict(v)),
            Write::RecallTasks(recall) => self.recall(recall),
            Write::SetRecords(rows) => {
                for row in rows.iter().filter(|row| row.banned) {
                    self.ban(row.node_id);
                }
            }
            Write::DeleteNode { node_id } => {
                self.assert_idle(*node_id, "is deleted");
                self.nodes.remove(node_id);
            }
            _ => {}
        }
    }

    fn assert_idle(&self, node: NodeId, what: &str) {
        let held: Vec<AttemptId> = self
            .attempts
            .iter()
            .filter(|(_, attempt)| attempt.node == node)
            .map(|(id, _)| *id)
            .collect();
        assert!(
            held.is_empty(),
            "node {node} {what} while it holds {held:?}"
        );
    }

    fn grant(&mut self, row: &AttemptRow) {
        assert!(
            self.granted.insert(row.id),
            "attempt id {} granted twice",
            row.id
        );
        let job = self.jobs.get(&row.job_id).expect("grants name known jobs");
        assert_eq!(
            job.state,
            JobState::Running,
            "attempt {} granted for job {} that ended",
            row.id,
            row.job_id
        );
        let index = row.task_index;
        // The nodes that run the task or gave a result of it: another replica goes elsewhere.
        let mut ran: Vec<NodeId> = match &job.tasks[index as usize] {
            Slot::Running(live) => live.iter().map(|id| self.attempts[id].node).collect(),
            _ => Vec::new(),
        };
        let claims = job.claims.get(&index).map_or(0, Vec::len);
        ran.extend(job.claims.get(&index).into_iter().flatten().map(|c| c.node));
        // A job that verifies runs what its checks want, within the bound on results.
        let replicas = if job.verifies {
            verify::RESULTS_MAX as usize - claims
        } else {
            job.live_max as usize
        };
        if job.verifies && self.owners_apart {
            let owner = self.owner(row.node_id);
            assert!(
                ran.iter().all(|node| self.owner(*node) != owner),
                "attempt {} of {}/{index} went to {}, whose owner ran the task or gave a result \
                 of it already",
                row.id,
                row.job_id,
                row.node_id
            );
        }
        let job = self.jobs.get_mut(&row.job_id).expect("found above");
        let slot = &mut job.tasks[index as usize];
        match slot {
            Slot::Pending => *slot = Slot::Running(vec![row.id]),
            Slot::Running(live) if live.len() < replicas && !ran.contains(&row.node_id) => {
                live.push(row.id);
            }
            _ => panic!(
                "attempt {} granted for task {}/{} that is neither pending nor short of replicas \
                 on another node ({slot:?})",
                row.id, row.job_id, row.task_index
            ),
        }
        job.attempts += 1;
        if let Some(last_grant_ms) = self.nodes.get_mut(&row.node_id) {
            *last_grant_ms = (*last_grant_ms).max(row.granted_at_ms);
        }
        let attempt = ShadowAttempt {
            job: row.job_id,
            task: row.task_index,
            node: row.node_id,
        };
        self.attempts.insert(row.id, attempt);
    }

    fn end(&mut self, end: &AttemptEnd) {
        let attempt = self.attempts.remove(&end.attempt_id).unwrap_or_else(|| {
            panic!(
                "attempt {} ended but it is not live (ended twice?)",
                end.attempt_id
            )
        });
        assert_eq!((attempt.job, attempt.task), (end.job_id, end.task_index));
        let job = self
            .jobs
            .get_mut(&end.job_id)
            .expect("live attempts have jobs");
        let slot = &mut job.tasks[end.task_index as usize];
        let Slot::Running(live) = slot else {
            panic!(
                "attempt {} ended, but its task {}/{} does not run ({slot:?})",
                end.attempt_id, end.job_id, end.task_index
            );
        };
        assert!(
            live.contains(&end.attempt_id),
            "attempt {} ended, but its task {}/{} does not run it",
            end.attempt_id,
            end.job_id,
            end.task_index
        );
        live.retain(|id| *id != end.attempt_id);
        let others_live = !live.is_empty();
        let task_end = end.task_end.as_ref().map(|task_end| task_end.state);
        let claim = ShadowClaim::of(job.verifies, end, attempt.node);
        if let Some(claim) = claim {
            job.claims.entry(end.task_index).or_default().push(claim);
        }
        let checked = job.claims.contains_key(&end.task_index);
        let rules: fn(&AttemptEnd, Option<TaskState>, bool, bool) = if job.verifies {
            check_verified_end_state
        } else {
            check_end_state
        };
        rules(end, task_end, others_live, checked);
        match end.state {
            AttemptEndState::Released => job.attempts -= 1,
            AttemptEndState::Succeeded if !job.verifies => {
                *job.shares.entry(attempt.node).or_default() += 1;
            }
            _ => {}
        }
        if let Some(usage) = end.usage {
            job.fuel = job.fuel.saturating_add(usage.fuel_used);
        }
        let slot = &mut job.tasks[end.task_index as usize];
        match task_end {
            Some(state) => {
                assert!(
                    !others_live,
                    "task {}/{} ended while replicas of it run",
                    end.job_id, end.task_index
                );
                *slot = Slot::Ended(state);
                job.claims.remove(&end.task_index);
            }
            // Results waiting for a check keep the task running.
            None if !others_live && !checked => *slot = Slot::Pending,
            None => {}
        }
    }

    /// The job's requester cancelled it, or (`aborted`) one of its tasks stopped it: that
    /// task failed, and the job fails.
    fn cancel(&mut self, job_id: JobId, aborted: Option<wire::Aborted>) {
        let job = self
            .jobs
            .get_mut(&job_id)
            .expect("cancelled jobs are known");
        assert_eq!(
            job.state,
            JobState::Running,
            "job {job_id} cancelled after it ended"
        );
        if let Some(aborted) = aborted {
            assert_eq!(
                job.tasks[aborted.task_index as usize],
                Slot::Ended(TaskState::Failed),
                "job {job_id} stopped by a task that did not fail"
            );
        }
        job.claims.clear();
        for slot in &mut job.tasks {
            if let Slot::Running(live) = slot {
                for attempt in live.iter() {
                    self.attempts.remove(attempt);
                }
            }
            if !matches!(slot, Slot::Ended(_)) {
                *slot = Slot::Ended(TaskState::Cancelled);
            }
        }
        job.state = match aborted {
            Some(_) => JobState::Failed,
            None => JobState::Cancelled,
        };
        self.open -= 1;
    }

    fn finish(&mut self, job_id: JobId, state: JobState) {
        let job = self.jobs.get_mut(&job_id).expect("finished jobs are known");
        assert_eq!(job.state, JobState::Running, "job {job_id} finished twice");
        let counts = job.counts();
        assert_eq!(counts.ended(), counts.total, "job {job_id} finished early");
        let completed = counts.succeeded == counts.total;
        assert_eq!(
            state == JobState::Completed,
            completed,
            "job {job_id} finished as {state} with {counts:?}"
        );
        assert!(matches!(state, JobState::Completed | JobState::Failed));
        job.state = state;
        self.open -= 1;
    }

    fn purge(&mut self, job_id: JobId) {
        let job = self.jobs.remove(&job_id).expect("purged jobs are known");
        assert!(job.state.is_terminal(), "job {job_id} purged while it runs");
        self.vouched.retain(|(job, _), _| *job != job_id);
        self.purged.insert(job_id);
    }

    /// What a restart makes of the store: a live attempt whose node is gone from the store is
    /// not restored, and its task waits again; results that waited for a check are forgotten,
    /// and their tasks run again.
    pub(super) fn restored(&mut self) {
        self.drop_checks();
        let orphans: Vec<(AttemptId, ShadowAttempt)> = self
            .attempts
            .iter()
            .filter(|(_, attempt)| !self.nodes.contains_key(&attempt.node))
            .map(|(id, attempt)| (*id, *attempt))
            .collect();
        for (id, attempt) in orphans {
            self.attempts.remove(&id);
            let job = self
                .jobs
                .get_mut(&attempt.job)
                .expect("live attempts have jobs");
            let slot = &mut job.tasks[attempt.task as usize];
            if let Slot::Running(live) = slot {
                live.retain(|live| *live != id);
                if live.is_empty() {
                    *slot = Slot::Pending;
                }
            }
        }
    }
}

/// An end's state agrees with what it does to its task.
fn check_end_state(end: &AttemptEnd, task_end: Option<TaskState>, others_live: bool, _: bool) {
    match end.state {
        AttemptEndState::Released => {
            assert_eq!(task_end, None, "a release never ends its task");
        }
        AttemptEndState::Expired => {
            let lost = end
                .task_end
                .as_ref()
                .is_none_or(|e| matches!(e.outcome, Outcome::Lost { .. }));
            assert!(lost && task_end.is_none_or(|s| s == TaskState::Failed));
        }
        AttemptEndState::Succeeded => assert_eq!(task_end, Some(TaskState::Succeeded)),
        AttemptEndState::Failed => assert!(task_end.is_none_or(|s| s == TaskState::Failed)),
        // Stopped because another replica is ending its task; jobs are cancelled with
        // CancelJob.
        AttemptEndState::Cancelled => {
            assert!(others_live && task_end.is_none(), "a replica stopped alone");
        }
    }
}
