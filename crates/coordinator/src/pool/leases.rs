//! Leases: placing pending tasks on nodes (on request or to waiting nodes), heartbeats, reports,
//! releases and expiry.
//!
//! A grant creates an attempt whose id is the lease's fencing token. Exactly one of these ends
//! it: its report (accepted only from the node that holds it, while it holds it), its release,
//! the expiry of its node's lease, or the cancellation of its job. After that, anything that
//! names the attempt is refused.

use std::collections::{BTreeMap, HashSet};

use store::{AttemptEnd, AttemptEndState, AttemptRow, TaskEnd, Write};
use wire::{
    AttemptGrant, AttemptId, HeartbeatRequest, HeartbeatResponse, JobId, JobState, LeaseResponse,
    NodeActivity, NodeId, Outcome, TaskState,
};

use super::jobs::job_demand;
use super::nodes::node_offer;
use super::{Attempt, Outbox, PoolState, Slot};
use crate::env::Entropy;

/// Why a node's attempts end without a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// No heartbeat for a whole lease.
    LeaseRanOut,
    /// The node registered again: its earlier process is gone.
    Restarted,
    /// The node's heartbeat no longer lists it.
    Forgotten,
    /// It ran past its deadline and grace.
    Overdue,
}

/// The slowest uplink an attempt's grace allows for: a home connection's upstream.
const UPLOAD_BYTES_PER_S_MIN: u64 = 1 << 20;

/// When an attempt granted at `granted_at_ms` must have ended, pauses aside: its deadline, then
/// three lease terms (fetching its inputs, noticing a cancellation, reporting), and the time to
/// upload all it may leave on a slow uplink.
pub(super) fn attempt_ends_by_ms(limits: &wire::Limits, granted_at_ms: u64, lease_ms: u64) -> u64 {
    let upload_bytes_max = limits
        .output_bytes_max
        .saturating_add(limits.stdout_bytes_max)
        .saturating_add(limits.stderr_bytes_max);
    let upload_ms = upload_bytes_max.saturating_mul(1000) / UPLOAD_BYTES_PER_S_MIN;
    granted_at_ms
        .saturating_add(limits.deadline_ms)
        .saturating_add(lease_ms.saturating_mul(3))
        .saturating_add(upload_ms)
}

impl PoolState {
    /// Work for a node that asks for up to `slots_free` attempts now.
    pub(crate) fn take_work(
        &mut self,
        node_id: NodeId,
        slots_free: u32,
        now_ms: u64,
        entropy: &dyn Entropy,
        out: &mut Outbox,
    ) -> LeaseResponse {
        self.touch(node_id, now_ms);
        let Some(node) = self.nodes.get(&node_id) else {
            return LeaseResponse::default();
        };
        if slots_free == 0 || self.ready.is_empty() || node.activity != NodeActivity::Active {
            return LeaseResponse::default();
        }
        let assignments = self.assign_ready(&[node_offer(node, slots_free)], now_ms);
        let mut response = LeaseResponse::default();
        let mut rows = Vec::new();
        for assignment in assignments {
            self.grant(
                node_id,
                JobId(assignment.job),
                assignment.count,
                now_ms,
                entropy,
                &mut response,
                &mut rows,
            );
        }
        if !rows.is_empty() {
            out.push(Write::GrantAttempts(rows));
        }
        response
    }

    /// What the scheduler places of the ready jobs on `offers`.
    fn assign_ready(
        &self,
        offers: &[scheduler::NodeOffer<'_>],
        now_ms: u64,
    ) -> Vec<scheduler::Assignment> {
        let demands: Vec<_> = self
            .ready
            .values()
            .filter_map(|job_id| self.jobs.get(job_id))
            .map(job_demand)
            .collect();
        scheduler::assign(
            &scheduler::Snapshot {
                nodes: offers,
                jobs: &demands,
            },
            now_ms,
        )
    }

    /// Places pending tasks on nodes that wait for work, each offering up to its `slots_free`;
    /// returns the grants per node, with the rows to write once the node has them. Grants the
    /// caller cannot deliver go back with [`PoolState::revert`].
    pub(crate) fn place(
        &mut self,
        waiting: &[(NodeId, u32)],
        now_ms: u64,
        entropy: &dyn Entropy,
    ) -> Vec<(NodeId, LeaseResponse, Vec<AttemptRow>)> {
        if waiting.is_empty() || self.ready.is_empty() {
            return Vec::new();
        }
        let assignments = {
            let offers: Vec<_> = waiting
                .iter()
                .filter_map(|&(node_id, slots_free)| {
                    let node = self.nodes.get(&node_id)?;
                    (node.activity == NodeActivity::Active).then(|| node_offer(node, slots_free))
                })
                .collect();
            self.assign_ready(&offers, now_ms)
        };
        let mut by_node: BTreeMap<NodeId, Vec<(JobId, u32)>> = BTreeMap::new();
        for assignment in assignments {
            by_node
                .entry(NodeId(assignment.node))
                .or_default()
                .push((JobId(assignment.job), assignment.count));
        }
        let mut placed = Vec::with_capacity(by_node.len());
        for (node_id, work) in by_node {
            let mut response = LeaseResponse::default();
            let mut rows = Vec::new();
            for (job_id, count) in work {
                self.grant(
                    node_id,
                    job_id,
                    count,
                    now_ms,
                    entropy,
                    &mut response,
                    &mut rows,
                );
            }
            placed.push((node_id, response, rows));
        }
        placed
    }

    /// Starts `count` pending tasks of `job_id` on `node_id`.
    #[allow(clippy::too_many_arguments)]
    fn grant(
        &mut self,
        node_id: NodeId,
        job_id: JobId,
        count: u32,
        now_ms: u64,
        entropy: &dyn Entropy,
        response: &mut LeaseResponse,
        rows: &mut Vec<AttemptRow>,
    ) {
        let lease_ms = self.lease_term_ms();
        self.forget_ended_jobs_sent(node_id);
        let (Some(job), Some(node)) = (self.jobs.get_mut(&job_id), self.nodes.get_mut(&node_id))
        else {
            return;
        };
        let ends_by_ms = attempt_ends_by_ms(&job.runtime.limits, now_ms, lease_ms);
        let paused_ms_at_grant = node.pauses.total_ms(now_ms);
        if node.jobs_sent.insert(job_id) {
            response.jobs.push((*job.runtime).clone());
        }
        for _ in 0..count {
            let Some(index) = job.pending.pop_front() else {
                break;
            };
            let attempt_id = AttemptId(entropy.next_u64());
            job.set_slot(index, Slot::Running(attempt_id));
            let task = &mut job.tasks[index as usize];
            task.attempts += 1;
            job.attempts_total += 1;
            let spec = task.spec.as_ref().expect("a pending task has its spec");
            response.attempts.push(AttemptGrant {
                attempt_id,
                job_id,
                task_index: index,
                args: spec.args.clone(),
                stdin: spec.stdin,
                inputs: spec.inputs.clone(),
            });
            rows.push(AttemptRow {
                id: attempt_id,
                job_id,
                task_index: index,
                node_id,
                granted_at_ms: now_ms,
            });
            node.running.insert(attempt_id);
            self.deadlines.insert((ends_by_ms, attempt_id));
            self.attempts.insert(
                attempt_id,
                Attempt {
                    job: job_id,
                    task: index,
                    node: node_id,
                    granted_at_ms: now_ms,
                    ends_by_ms,
                    paused_ms_at_grant,
                    check_at_ms: ends_by_ms,
                    unlisted_since_ms: None,
                },
            );
        }
        job.bump(&mut self.changes);
        self.sync_ready(job_id);
    }

    /// Grants placed for a waiting node reached it: its lease runs a whole term from now, so it
    /// has time to heartbeat the new attempts. Only a delivered grant extends the lease (a
    /// reverted one leaves it as the node's last request set it); a lease request that is
    /// answered at once was a request, so `touch` extended it already.
    pub(crate) fn delivered(&mut self, node_id: NodeId, now_ms: u64) {
        let lease_ms = self.lease_term_ms();
        if let Some(node) = self.nodes.get_mut(&node_id) {
            node.lease_until_ms = node.lease_until_ms.max(now_ms + lease_ms);
        }
    }

    /// Keeps a node's sent-runtimes set from growing with every job it ever ran: past a bound,
    /// the ended jobs leave it (a job that ended is never sent again).
    fn forget_ended_jobs_sent(&mut self, node_id: NodeId) {
        let Some(node) = self.nodes.get_mut(&node_id) else {
            return;
        };
        if node.jobs_sent.len() < super::JOBS_SENT_MAX {
            return;
        }
        let jobs = &self.jobs;
        node.jobs_sent
            .retain(|job_id| jobs.get(job_id).is_some_and(|job| !job.state.is_terminal()));
    }

    /// Undoes grants that never reached their node (its request went away).
    pub(crate) fn revert(&mut self, node_id: NodeId, response: &LeaseResponse) {
        for grant in &response.attempts {
            let Some(attempt) = self.remove_attempt(grant.attempt_id) else {
                continue;
            };
            let job = self
                .jobs
                .get_mut(&attempt.job)
                .expect("attempts belong to jobs");
            job.set_slot(attempt.task, Slot::Pending);
            job.tasks[attempt.task as usize].attempts -= 1;
            job.attempts_total -= 1;
            self.sync_ready(attempt.job);
        }
        if let Some(node) = self.nodes.get_mut(&node_id) {
            for runtime in &response.jobs {
                node.jobs_sent.remove(&runtime.job_id);
            }
        }
    }

    pub(crate) fn heartbeat(
        &mut self,
        node_id: NodeId,
        request: &HeartbeatRequest,
        now_ms: u64,
        out: &mut Outbox,
    ) -> HeartbeatResponse {
        self.touch(node_id, now_ms);
        let lease_ms = self.lease_term_ms();
        let listed: HashSet<AttemptId> = request.running.iter().copied().collect();
        let cancel = request
            .running
            .iter()
            .copied()
            .filter(|attempt_id| {
                self.attempts
                    .get(attempt_id)
                    .is_none_or(|attempt| attempt.node != node_id)
            })
            .collect();
        if let Some(node) = self.nodes.get_mut(&node_id) {
            let paused = matches!(request.activity, NodeActivity::Paused { .. });
            node.pauses.set_paused(paused, now_ms);
            if request.activity == NodeActivity::Active && node.activity != NodeActivity::Active {
                self.changes.nodes_freed.push(node_id);
            }
            node.activity = request.activity.clone();
            if let Some(capabilities) = &request.capabilities
                && *capabilities != node.capabilities
            {
                // The owner changed what the node lends; work is matched to it from now on.
                node.capabilities = capabilities.clone();
                self.changes.nodes_freed.push(node_id);
                out.push(Write::SetNodeCapabilities {
                    node_id,
                    capabilities: capabilities.clone(),
                });
            }
        }
        for attempt_id in self.forgotten(node_id, &listed, now_ms, lease_ms) {
            self.expire_attempt(attempt_id, now_ms, Expiry::Forgotten, out);
        }
        HeartbeatResponse {
            cancel,
            lease_ms: self.lease_term_ms(),
            heartbeat_ms: self.heartbeat_interval_ms(),
        }
    }

    /// The attempts of `node_id` lost on the node: those its heartbeats have not listed for a
    /// whole lease term. An agent lists only the attempts it still runs, so an attempt whose
    /// report is on its way (or retried through an outage) is unlisted for a while and must not
    /// be taken for lost at once; nor is one granted less than a lease ago, whose grant may not
    /// have arrived yet.
    fn forgotten(
        &mut self,
        node_id: NodeId,
        listed: &HashSet<AttemptId>,
        now_ms: u64,
        lease_ms: u64,
    ) -> Vec<AttemptId> {
        let Some(node) = self.nodes.get(&node_id) else {
            return Vec::new();
        };
        let mut forgotten = Vec::new();
        for attempt_id in &node.running {
            let Some(attempt) = self.attempts.get_mut(attempt_id) else {
                continue;
            };
            if listed.contains(attempt_id) || attempt.granted_at_ms + lease_ms >= now_ms {
                attempt.unlisted_since_ms = None;
                continue;
            }
            match attempt.unlisted_since_ms {
                None => attempt.unlisted_since_ms = Some(now_ms),
                Some(since_ms) if since_ms + lease_ms < now_ms => forgotten.push(*attempt_id),
                Some(_) => {}
            }
        }
        forgotten
    }

    pub(super) fn held_attempt(
        &self,
        node_id: NodeId,
        attempt_id: AttemptId,
    ) -> Result<Attempt, String> {
        match self.attempts.get(&attempt_id) {
            Some(attempt) if attempt.node == node_id => Ok(*attempt),
            Some(_) => Err(format!("attempt {attempt_id} is not held by this node")),
            None => Err(format!(
                "attempt {attempt_id} is not current: its lease expired, it was released or its \
                 job was cancelled, so the task runs elsewhere or no longer runs"
            )),
        }
    }

    /// Gives attempts back unfinished: their tasks run again elsewhere, not counted as attempts.
    pub(crate) fn release(
        &mut self,
        node_id: NodeId,
        attempts: &[AttemptId],
        now_ms: u64,
        out: &mut Outbox,
    ) -> Vec<AttemptId> {
        self.touch(node_id, now_ms);
        let mut ends = Vec::new();
        for attempt_id in attempts {
            let Ok(attempt) = self.held_attempt(node_id, *attempt_id) else {
                continue;
            };
            self.remove_attempt(*attempt_id);
            let job = self
                .jobs
                .get_mut(&attempt.job)
                .expect("attempts belong to jobs");
            job.set_slot(attempt.task, Slot::Pending);
            job.tasks[attempt.task as usize].attempts -= 1;
            job.attempts_total -= 1;
            job.bump(&mut self.changes);
            self.sync_ready(attempt.job);
            ends.push(AttemptEnd {
                attempt_id: *attempt_id,
                job_id: attempt.job,
                task_index: attempt.task,
                state: AttemptEndState::Released,
                at_ms: now_ms,
                outcome: None,
                usage: None,
                stdout: None,
                stderr: None,
                outputs: Vec::new(),
                task_end: None,
            });
        }
        let released = ends.iter().map(|end| end.attempt_id).collect();
        if !ends.is_empty() {
            out.push(Write::EndAttempts(ends));
        }
        released
    }

    /// Ends the attempts of every node whose lease ran out; returns how many.
    pub(crate) fn expire(&mut self, now_ms: u64, out: &mut Outbox) -> usize {
        let mut lapsed: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|node| node.lease_until_ms <= now_ms)
            .filter(|node| !node.running.is_empty())
            .map(|node| node.id)
            .collect();
        // In id order: requeued tasks and the writes come out the same in every run.
        lapsed.sort_unstable();
        let mut expired = 0;
        for node_id in lapsed {
            expired += self.expire_node(node_id, now_ms, Expiry::LeaseRanOut, out);
        }
        expired + self.expire_overdue(now_ms, out)
    }

    /// Ends the attempts that are past their deadline and grace, whatever their nodes'
    /// heartbeats say: a node cannot hold a task longer than the job allows by staying alive.
    fn expire_overdue(&mut self, now_ms: u64, out: &mut Outbox) -> usize {
        let mut expired = 0;
        while let Some(&(check_at_ms, attempt_id)) = self.deadlines.first()
            && check_at_ms <= now_ms
        {
            let attempt = self.attempts[&attempt_id];
            let paused_ms = self.nodes.get(&attempt.node).map_or(0, |node| {
                node.pauses
                    .total_ms(now_ms)
                    .saturating_sub(attempt.paused_ms_at_grant)
            });
            let end_ms = attempt
                .ends_by_ms
                .saturating_add(paused_ms.min(super::PAUSE_ALLOWANCE_MS));
            if end_ms > now_ms {
                // The node was paused, and the sandbox's deadline stood still meanwhile.
                self.deadlines.remove(&(check_at_ms, attempt_id));
                self.deadlines.insert((end_ms, attempt_id));
                self.attempts
                    .get_mut(&attempt_id)
                    .expect("checked above")
                    .check_at_ms = end_ms;
                continue;
            }
            self.expire_attempt(attempt_id, now_ms, Expiry::Overdue, out);
            expired += 1;
        }
        expired
    }

    /// Takes an attempt out of the pool's indexes and its node's slots; its task is the
    /// caller's to update.
    pub(super) fn remove_attempt(&mut self, attempt_id: AttemptId) -> Option<Attempt> {
        let attempt = self.attempts.remove(&attempt_id)?;
        self.uploads.remove(&attempt_id);
        self.deadlines.remove(&(attempt.check_at_ms, attempt_id));
        if let Some(node) = self.nodes.get_mut(&attempt.node) {
            node.running.remove(&attempt_id);
            self.changes.nodes_freed.push(attempt.node);
        }
        Some(attempt)
    }

    pub(crate) fn expire_node(
        &mut self,
        node_id: NodeId,
        now_ms: u64,
        why: Expiry,
        out: &mut Outbox,
    ) -> usize {
        let Some(node) = self.nodes.get_mut(&node_id) else {
            return 0;
        };
        // A node that comes back must be sent the runtimes of its jobs again.
        node.jobs_sent.clear();
        let attempts: Vec<AttemptId> = node.running.iter().copied().collect();
        for attempt_id in &attempts {
            self.expire_attempt(*attempt_id, now_ms, why, out);
        }
        attempts.len()
    }

    fn expire_attempt(
        &mut self,
        attempt_id: AttemptId,
        now_ms: u64,
        why: Expiry,
        out: &mut Outbox,
    ) {
        let Some(attempt) = self.remove_attempt(attempt_id) else {
            return;
        };
        let job = self
            .jobs
            .get_mut(&attempt.job)
            .expect("attempts belong to jobs");
        let attempts_made = job.tasks[attempt.task as usize].attempts;
        let task_end = (attempts_made >= job.max_attempts).then_some(TaskEnd {
            state: TaskState::Failed,
            outcome: Outcome::Lost {
                attempts: attempts_made,
            },
        });
        match &task_end {
            Some(end) => job.set_slot(attempt.task, Slot::Ended(end.state)),
            None => job.set_slot(attempt.task, Slot::Pending),
        }
        job.bump(&mut self.changes);
        tracing::info!(
            attempt = %attempt_id,
            job = %attempt.job,
            task = attempt.task,
            node = %attempt.node,
            ?why,
            requeued = task_end.is_none(),
            "attempt expired"
        );
        out.push(Write::EndAttempts(vec![AttemptEnd {
            attempt_id,
            job_id: attempt.job,
            task_index: attempt.task,
            state: AttemptEndState::Expired,
            at_ms: now_ms,
            outcome: None,
            usage: None,
            stdout: None,
            stderr: None,
            outputs: Vec::new(),
            task_end,
        }]));
        self.sync_ready(attempt.job);
        self.finish_job_if_done(attempt.job, now_ms, out);
    }

    /// Puts back a lease that was live when the coordinator stopped.
    pub(crate) fn restore_attempt(&mut self, row: AttemptRow, now_ms: u64) {
        let Some(job) = self.jobs.get_mut(&row.job_id) else {
            return;
        };
        let Some(node) = self.nodes.get_mut(&row.node_id) else {
            return;
        };
        if job.state != JobState::Running
            || job.tasks.get(row.task_index as usize).map(|task| task.slot) != Some(Slot::Pending)
        {
            return;
        }
        // The pending queue is rebuilt from the slots once every attempt is restored.
        job.set_slot(row.task_index, Slot::Running(row.id));
        node.running.insert(row.id);
        // A report held back by the restart still gets a lease term to arrive.
        let lease_ms = self.lease_ms_min;
        let ends_by_ms = attempt_ends_by_ms(&job.runtime.limits, row.granted_at_ms, lease_ms)
            .max(now_ms.saturating_add(lease_ms));
        self.deadlines.insert((ends_by_ms, row.id));
        self.attempts.insert(
            row.id,
            Attempt {
                job: row.job_id,
                task: row.task_index,
                node: row.node_id,
                granted_at_ms: row.granted_at_ms,
                ends_by_ms,
                paused_ms_at_grant: 0,
                check_at_ms: ends_by_ms,
                unlisted_since_ms: None,
            },
        );
    }
}
