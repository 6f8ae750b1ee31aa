//! The checks run after every step: the pool's own invariants (in `mutate`, as the service runs
//! them after each change), then the pool against the memory shadow (each job's state, counts,
//! attempts, fuel and who did the work; the live attempts; purged jobs gone), and the leases:
//! no node holds an attempt longer than the reaper's period past its lease. At a restart that
//! lost no write, every job shows what it showed before; once the pool drained, every job that
//! was not cancelled ended with each task succeeded or failed.

use std::collections::BTreeMap;

use wire::{JobId, JobState, JobStatus, NodeId, Standing, TaskCounts};

use super::world::World;

/// How often the leases are checked, in simulated time.
const LEASE_CHECK_EVERY_MS: u64 = 50;

/// When the checks are next due.
#[derive(Debug, Default)]
pub(super) struct Due {
    /// The pool wrote since the jobs were last compared.
    pub(super) jobs_due: bool,
    leases_checked_ms: u64,
}

/// What a job's status keeps across a restart: all of it but its version, and for a job that
/// verifies, which of its unfinished tasks run (a restart runs again those whose results
/// waited for a check).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Replayed {
    state: JobState,
    tasks: TaskCounts,
    attempts: u64,
    fuel_used: u64,
    created_at_ms: u64,
    finished_at_ms: Option<u64>,
    nodes: Vec<(NodeId, String, u32)>,
}

impl Replayed {
    fn of(status: JobStatus, verifies: bool) -> Self {
        let mut tasks = status.tasks;
        if verifies {
            tasks.pending += std::mem::take(&mut tasks.running);
        }
        Self {
            state: status.state,
            tasks,
            attempts: status.attempts,
            fuel_used: status.fuel_used,
            created_at_ms: status.created_at_ms,
            finished_at_ms: status.finished_at_ms,
            nodes: status
                .nodes
                .into_iter()
                .map(|share| (share.node_id, share.node_name, share.tasks_succeeded))
                .collect(),
        }
    }
}

impl World {
    fn status(&self, job_id: JobId) -> JobStatus {
        let requester = self.memory.jobs[&job_id].requester;
        self.coord
            .pool
            .job_status(job_id, requester)
            .unwrap_or_else(|error| panic!("job {job_id} is written but the pool says {error:?}"))
    }

    /// The checks after a step. Job statuses change only with writes, so they are compared
    /// after steps that wrote; a broken lease outlasts a step, so leases are looked at every
    /// [`LEASE_CHECK_EVERY_MS`].
    pub(super) fn check_step(&mut self) {
        if std::mem::take(&mut self.checks.jobs_due) {
            self.check_jobs();
        }
        let now_ms = self.now_ms();
        if now_ms >= self.checks.leases_checked_ms + LEASE_CHECK_EVERY_MS {
            self.checks.leases_checked_ms = now_ms;
            self.check_leases();
        }
    }

    fn check_jobs(&self) {
        let pool = &self.coord.pool;
        for (job_id, job) in &self.memory.jobs {
            let status = self.status(*job_id);
            assert_eq!(status.state, job.state, "the state of {job_id}");
            assert_eq!(status.tasks, job.counts(), "the task counts of {job_id}");
            assert_eq!(status.attempts, job.attempts, "the attempts of {job_id}");
            assert_eq!(status.fuel_used, job.fuel, "the fuel of {job_id}");
            let shares: BTreeMap<NodeId, u32> = status
                .nodes
                .iter()
                .map(|share| (share.node_id, share.tasks_succeeded))
                .collect();
            assert_eq!(shares, job.shares, "who did the work of {job_id}");
            let checking = job.claims.len() as u32;
            assert_eq!(
                status.verifying, checking,
                "the tasks of {job_id} being checked"
            );
        }
        self.check_bans();
        for job_id in &self.memory.purged {
            assert!(!pool.has_job(*job_id), "{job_id} was purged");
        }
        assert_eq!(
            pool.attempts_live(),
            self.memory.attempts.len(),
            "the live attempts"
        );
    }

    /// Every node whose result disagreed with one a verdict accepted was banned by the same
    /// change, and only cheaters are banned.
    fn check_bans(&self) {
        for (node, (job_id, index)) in &self.memory.must_ban {
            assert!(
                self.memory.banned.contains(node),
                "{node} gave a result of {job_id}/{index} that a quorum turned down, and is not banned"
            );
        }
        for node in &self.memory.banned {
            let agent = self.agents.iter().position(|a| a.node == *node);
            let cheat = agent.and_then(|agent| self.setup.cheat(agent));
            assert!(
                cheat.is_some(),
                "{node} (agent {agent:?}) is honest and was banned"
            );
        }
    }

    /// No attempt outlives its node's lease by more than the reaper's period. A lease runs a
    /// term past the node's last request or its last grant, whichever came later.
    fn check_leases(&self) {
        if self.memory.attempts.is_empty() {
            return;
        }
        let now_ms = self.now_ms();
        let pool = &self.coord.pool;
        let term_ms = pool.lease_term_ms();
        let period_ms = self.reaper_period_ms();
        for node in pool.list_nodes(now_ms) {
            if node.running == 0 {
                continue;
            }
            let probation = node.standing.as_ref().map(|s| s.standing) == Some(Standing::Probation);
            assert!(
                !probation || node.running == 1,
                "{} runs {} attempts on probation",
                node.node_id,
                node.running
            );
            let heard_ms = now_ms - node.last_seen_ms_ago;
            let granted_ms = self.memory.nodes.get(&node.node_id).copied().unwrap_or(0);
            let lease_until_ms = heard_ms.max(granted_ms) + term_ms;
            assert!(
                now_ms <= lease_until_ms + period_ms,
                "at {now_ms}, node {} holds {} attempts {} ms past its lease (heard from at \
                 {heard_ms}, last granted at {granted_ms}); the reaper runs every {period_ms} ms",
                node.node_id,
                node.running,
                now_ms - lease_until_ms
            );
        }
    }

    /// Every job's status now, but its version.
    pub(super) fn statuses(&self) -> BTreeMap<JobId, Replayed> {
        self.memory
            .jobs
            .iter()
            .map(|(job_id, job)| {
                let status = self.status(*job_id);
                (*job_id, Replayed::of(status, job.verifies))
            })
            .collect()
    }

    /// The restored pool shows every job as the pool before the crash did.
    pub(super) fn check_replay(&mut self, before: &BTreeMap<JobId, Replayed>) {
        let after = self.statuses();
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            after.keys().collect::<Vec<_>>(),
            "the jobs after a restart that lost no write"
        );
        for (job_id, status) in before {
            assert_eq!(
                Some(status),
                after.get(job_id),
                "job {job_id} after a restart that lost no write"
            );
        }
        self.stats.replays_checked += 1;
    }

    /// Jobs that have not ended, for the message of a pool that does not drain.
    pub(super) fn open_job_statuses(&self) -> Vec<JobStatus> {
        self.memory
            .jobs
            .iter()
            .filter(|(_, job)| job.state == JobState::Running)
            .map(|(job_id, _)| self.status(*job_id))
            .collect()
    }

    /// Every job ended; those neither cancelled nor stopped by a task with each task succeeded
    /// or failed.
    pub(super) fn check_drained(&mut self) {
        let pool = &self.coord.pool;
        assert!(
            self.coord.credentials == pool.credentials(),
            "the credentials index follows the pool"
        );
        assert_eq!(
            pool.tasks_pending(),
            0,
            "no task waits once the pool drained"
        );
        assert_eq!(
            pool.attempts_live(),
            0,
            "no attempt runs once the pool drained"
        );
        let mut totals = TaskCounts::default();
        for job_id in self.memory.jobs.keys() {
            let status = self.status(*job_id);
            let tasks = status.tasks;
            assert!(status.state.is_terminal(), "{job_id} ended");
            assert_eq!(tasks.ended(), tasks.total, "every task of {job_id} ended");
            // A job one of its tasks stopped failed, its other tasks cancelled.
            if status.state != JobState::Cancelled && status.aborted.is_none() {
                assert_eq!(tasks.cancelled, 0, "no task of {job_id} was cancelled");
                let completed = tasks.succeeded == tasks.total;
                assert_eq!(status.state == JobState::Completed, completed, "{job_id}");
            }
            totals.total += tasks.total;
            totals.succeeded += tasks.succeeded;
            totals.failed += tasks.failed;
            totals.cancelled += tasks.cancelled;
        }
        assert_eq!(totals.ended(), totals.total, "the totals");
        // Every result waiting for a check was settled: paid to its owner, or refunded.
        for balance in pool.all_balances() {
            assert!(
                !matches!(balance.account, wire::Account::Pending(_)),
                "credit is pending once every job ended: {balance:?}"
            );
        }
        let stats = &mut self.stats;
        stats.jobs += self.memory.jobs.len() as u64;
        stats.tasks += u64::from(totals.total);
        stats.tasks_succeeded += u64::from(totals.succeeded);
        stats.tasks_failed += u64::from(totals.failed);
        stats.tasks_cancelled += u64::from(totals.cancelled);
        if let Some(public) = &self.setup.public {
            stats.public_seeds += 1;
            stats.cheaters += public.cheats.iter().flatten().count() as u64;
            stats.tasks_verified += self.memory.verified;
            stats.tasks_inconclusive += self.memory.inconclusive;
            stats.bans += self.memory.banned.len() as u64;
            stats.results_vouched_alone += self.memory.vouched_alone;
            stats.results_recalled += self.memory.recalled;
            stats.results_vouched_wrong += self.memory.wrong_vouched;
            let memory = &self.memory;
            let unbanned = memory.liars_weighed.difference(&memory.banned).count();
            stats.liars_weighed_unbanned += unbanned as u64;
        }
    }
}
