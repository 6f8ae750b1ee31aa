//! Leases: placing pending tasks on nodes (on request or to waiting nodes), heartbeats, reports,
//! releases and expiry.
//!
//! A grant creates an attempt whose id is the lease's fencing token. Exactly one of these ends
//! it: its report (accepted only from the node that holds it, while it holds it), its release,
//! the expiry of its node's lease, or the cancellation of its job. After that, anything that
//! names the attempt is refused.

use std::collections::{BTreeMap, HashSet};

use store::{AttemptEnd, AttemptEndState, AttemptRow, TaskEnd};
use wire::{
    AttemptGrant, AttemptId, HeartbeatRequest, HeartbeatResponse, JobId, JobState, LeaseResponse,
    NodeActivity, NodeId, Outcome, TaskState,
};

use super::events::Event;
use super::federation::Pass;
use super::jobs::job_demand;
use super::nodes::node_offer;
use super::{Attempt, Outbox, PoolState, Slot};

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
        out: &mut Outbox,
    ) -> LeaseResponse {
        self.heard(node_id, now_ms, out);
        let Some(node) = self.nodes.get(&node_id) else {
            return LeaseResponse::default();
        };
        if slots_free == 0 || self.ready.is_empty() || node.activity != NodeActivity::Active {
            return LeaseResponse::default();
        }
        let Some((_, (response, rows))) = self
            .grant_in_passes(&[(node_id, slots_free)], now_ms, out)
            .pop_first()
        else {
            return LeaseResponse::default();
        };
        if !rows.is_empty() {
            self.record(
                Event::GrantsDelivered {
                    node: node_id,
                    at_ms: now_ms,
                    attempts: rows,
                },
                out,
            );
        }
        response
    }

    /// What the scheduler places of the ready jobs on `offers`: how many of what each node
    /// gets. A job's pending tasks are one demand; each task short of replicas is one more,
    /// kept away from the nodes that run it.
    fn assign_ready(
        &self,
        offers: &[scheduler::NodeOffer<'_>],
        pass: Pass,
        now_ms: u64,
    ) -> Vec<(NodeId, Wanted, u32)> {
        let mut wanted = Vec::new();
        for job in self
            .ready
            .values()
            .filter_map(|job_id| self.jobs.get(job_id))
            .filter(|job| self.pass_admits(pass, job))
        {
            if !job.pending.is_empty() {
                wanted.push(Wanted {
                    job: job.id,
                    task: None,
                });
            }
            let replicas = job.short.iter().map(|index| Wanted {
                job: job.id,
                task: Some(*index),
            });
            wanted.extend(replicas);
        }
        let apart: Vec<Apart> = wanted.iter().map(|w| self.apart(w, now_ms)).collect();
        let demands: Vec<_> = wanted
            .iter()
            .zip(&apart)
            .enumerate()
            .map(|(key, (w, apart))| {
                let mut demand = job_demand(&self.jobs[&w.job]);
                demand.job = key as u64;
                if w.task.is_some() {
                    demand.pending = 1;
                    demand.requirements.excluded = scheduler::Excluded {
                        nodes: &apart.nodes,
                        owners: &apart.owners,
                        networks: &apart.networks,
                    };
                }
                demand
            })
            .collect();
        let snapshot = scheduler::Snapshot {
            nodes: offers,
            jobs: &demands,
        };
        scheduler::assign(&snapshot, now_ms)
            .into_iter()
            .map(|a| (NodeId(a.node), wanted[a.job as usize], a.count))
            .collect()
    }

    /// What one more attempt of the task `wanted` names must be kept off, as scheduler keys:
    /// the nodes that run it or gave a result of it and, where the pool keeps owners apart,
    /// their owners and (unless the pool's owner relaxed it) their networks; and the nodes of
    /// owners that said they could not run it.
    fn apart(&self, wanted: &Wanted, now_ms: u64) -> Apart {
        let mut apart = Apart::default();
        let Some(index) = wanted.task else {
            return apart;
        };
        let task = &self.jobs[&wanted.job].tasks[index as usize];
        let live = task.live.iter().map(|attempt| {
            let node = self.attempts[attempt].node;
            let (owner, network) = self
                .nodes
                .get(&node)
                .map_or((None, None), |n| (n.owner, n.network));
            (node, owner, network)
        });
        let claims = task.check.iter().flat_map(|check| {
            check
                .claims
                .iter()
                .map(|c| (c.node, Some(c.owner), c.network))
        });
        let (owners_apart, networks_apart) = self.keeps_apart();
        for (node, owner, network) in live.chain(claims) {
            apart.nodes.push(node.0);
            apart.owners.extend(owner.filter(|_| owners_apart));
            apart.networks.extend(network.filter(|_| networks_apart));
        }
        // A result that resumed is its checkpoints' makers' too: no check of it runs on theirs.
        let makers = task.check.iter().flat_map(|check| {
            check
                .claims
                .iter()
                .flat_map(|claim| claim.makers.iter().copied())
        });
        for maker in makers {
            // A maker is a witness: an owner where owners are kept apart, else a node.
            if owners_apart {
                apart.owners.push(maker);
            } else {
                apart.nodes.push(maker);
            }
        }
        let refusals = self.jobs[&wanted.job]
            .refused_by
            .get(&index)
            .into_iter()
            .flatten()
            .filter(|refusal| now_ms < refusal.until_ms());
        for refusal in refusals {
            apart.nodes.push(refusal.node.0);
            apart.owners.extend(refusal.owner);
        }
        apart
    }

    /// Places pending tasks on nodes that wait for work, each offering up to its `slots_free`;
    /// returns the grants per node, with the rows to write once the node has them. Grants
    /// that reach their node are recorded with [`PoolState::delivered`]; those that do not go
    /// back with [`PoolState::revert`].
    pub(crate) fn place(
        &mut self,
        waiting: &[(NodeId, u32)],
        now_ms: u64,
        out: &mut Outbox,
    ) -> Vec<(NodeId, LeaseResponse, Vec<AttemptRow>)> {
        if waiting.is_empty() || self.ready.is_empty() {
            return Vec::new();
        }
        self.grant_in_passes(waiting, now_ms, out)
            .into_iter()
            .map(|(node_id, (response, rows))| (node_id, response, rows))
            .collect()
    }

    /// Grants ready work to `waiting` nodes, each asking for up to its slots, pass by pass
    /// (see [`Pass`]): this pool's nodes before other pools', its requesters' jobs before
    /// borrowed tasks. Returns the grants per node that got any, with their rows.
    fn grant_in_passes(
        &mut self,
        waiting: &[(NodeId, u32)],
        now_ms: u64,
        out: &mut Outbox,
    ) -> BTreeMap<NodeId, (LeaseResponse, Vec<AttemptRow>)> {
        let mut left: BTreeMap<NodeId, u32> = waiting.iter().copied().collect();
        let mut placed: BTreeMap<NodeId, (LeaseResponse, Vec<AttemptRow>)> = BTreeMap::new();
        for pass in self.passes() {
            let assignments = {
                let offers: Vec<_> = left
                    .iter()
                    .filter_map(|(&node_id, &slots_free)| {
                        let node = self.nodes.get(&node_id)?;
                        let slots_free = self.slots_offered(node_id, slots_free);
                        (node.activity == NodeActivity::Active
                            && slots_free > 0
                            && self.is_federated(node) == pass.federated_nodes)
                            .then(|| node_offer(node, slots_free))
                    })
                    .collect();
                if offers.is_empty() {
                    continue;
                }
                self.assign_ready(&offers, pass, now_ms)
            };
            for (node_id, wanted, count) in assignments {
                let grant = self.grant(node_id, wanted, count, now_ms, out);
                let granted = grant.as_ref().map_or(0, |g| g.attempts.len() as u32);
                if let Some(slots) = left.get_mut(&node_id) {
                    *slots = slots.saturating_sub(granted);
                }
                let (response, rows) = placed.entry(node_id).or_default();
                self.respond(grant, now_ms, response, rows);
            }
        }
        placed
    }

    /// Starts what `wanted` names on `node_id`: up to `count` pending tasks of its job in queue
    /// order, or one more replica of its task; returns what was granted, as recorded.
    fn grant(
        &mut self,
        node_id: NodeId,
        wanted: Wanted,
        count: u32,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Option<Grant> {
        let job_id = wanted.job;
        let (Some(job), Some(node)) = (self.jobs.get(&job_id), self.nodes.get(&node_id)) else {
            return None;
        };
        let refused = |index: &u32| {
            job.refused_by.get(index).is_some_and(|refusals| {
                refusals
                    .iter()
                    .any(|refusal| refusal.holds(node_id, node.owner, now_ms))
            })
        };
        let indexes: Vec<u32> = match wanted.task {
            None => {
                let candidates = job.pending.iter().filter(|index| !refused(index)).copied();
                self.placed_by_bytes((node_id, now_ms), job_id, candidates, count as usize)
            }
            Some(index) => vec![index],
        };
        let attempts: Vec<(AttemptId, u32)> =
            self.attempt_ids.next(indexes.len()).zip(indexes).collect();
        if attempts.is_empty() {
            return None;
        }
        let send_runtime = !node.jobs_sent.contains(&job_id);
        let grant = Grant {
            node: node_id,
            job: job_id,
            send_runtime,
            attempts: attempts.clone(),
        };
        self.record(
            Event::AttemptsGranted {
                node: node_id,
                job: job_id,
                at_ms: now_ms,
                send_runtime,
                attempts,
            },
            out,
        );
        Some(grant)
    }

    /// Adds what `grant` started to a node's lease response and to the rows that make it
    /// durable once delivered.
    fn respond(
        &self,
        grant: Option<Grant>,
        now_ms: u64,
        response: &mut LeaseResponse,
        rows: &mut Vec<AttemptRow>,
    ) {
        let Some(grant) = grant else {
            return;
        };
        let job = &self.jobs[&grant.job];
        if grant.send_runtime {
            response.jobs.push(self.runtime_sent(job, grant.node));
        }
        let lent_bytes = self
            .nodes
            .get(&grant.node)
            .map_or(0, |node| node.capabilities.memory_bytes);
        for (attempt_id, index) in grant.attempts {
            let task = &job.tasks[index as usize];
            let spec = task.spec.as_ref().expect("a running task has its spec");
            response.attempts.push(AttemptGrant {
                attempt_id,
                job_id: grant.job,
                task_index: index,
                args: spec.args.clone(),
                stdin: spec.stdin,
                inputs: spec.inputs.clone(),
                checkpoint: task.resume_point(),
                memory_bytes_max: job.attempt_memory_bytes(index, lent_bytes),
                peers: self.peers_for(grant.node, spec, now_ms),
            });
            rows.push(AttemptRow {
                id: attempt_id,
                job_id: grant.job,
                task_index: index,
                node_id: grant.node,
                granted_at_ms: now_ms,
            });
        }
    }

    /// Grants placed for a waiting node reached it: its lease runs a whole term from now, so it
    /// has time to heartbeat the new attempts, and they are written. Only a delivered grant
    /// extends the lease (a reverted one leaves it as the node's last request set it).
    pub(crate) fn delivered(
        &mut self,
        node_id: NodeId,
        rows: Vec<AttemptRow>,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        let event = Event::GrantsDelivered {
            node: node_id,
            at_ms: now_ms,
            attempts: rows,
        };
        self.record(event, out);
    }

    /// Undoes grants that never reached their node (its request went away).
    pub(crate) fn revert(&mut self, node_id: NodeId, response: &LeaseResponse, out: &mut Outbox) {
        let event = Event::GrantsWithdrawn {
            node: node_id,
            attempts: response
                .attempts
                .iter()
                .map(|grant| grant.attempt_id)
                .collect(),
            runtimes: response.jobs.iter().map(|runtime| runtime.job_id).collect(),
        };
        self.record(event, out);
    }

    /// A request of `node_id` came: it is alive.
    pub(super) fn heard(&mut self, node_id: NodeId, now_ms: u64, out: &mut Outbox) {
        if self.nodes.contains_key(&node_id) {
            self.record(
                Event::NodeHeard {
                    node: node_id,
                    at_ms: now_ms,
                },
                out,
            );
        }
    }

    pub(crate) fn heartbeat(
        &mut self,
        node_id: NodeId,
        request: &HeartbeatRequest,
        now_ms: u64,
        out: &mut Outbox,
    ) -> HeartbeatResponse {
        self.heard(node_id, now_ms, out);
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
        if let Some(node) = self.nodes.get(&node_id) {
            if request.activity != node.activity {
                let event = Event::NodeActivitySet {
                    node: node_id,
                    activity: request.activity.clone(),
                    at_ms: now_ms,
                };
                self.record(event, out);
            }
            if let Some(capabilities) = &request.capabilities
                && *capabilities != self.nodes[&node_id].capabilities
            {
                // The owner changed what the node lends; work is matched to it from now on.
                // Its encryption key stays the one its registration signed.
                let capabilities = wire::Capabilities {
                    encryption_key: self.nodes[&node_id].capabilities.encryption_key.clone(),
                    ..capabilities.clone()
                };
                let event = Event::NodeCapabilitiesSet {
                    node: node_id,
                    capabilities,
                };
                self.record(event, out);
            }
        }
        for attempt_id in self.forgotten_attempts(node_id, &listed, now_ms, lease_ms, out) {
            self.expire_attempt(attempt_id, now_ms, Expiry::Forgotten, out);
        }
        self.forgotten(node_id, &request.forgotten, out);
        self.copies_made(node_id, &request.copied, out);
        self.kept_named(node_id, &request.kept, now_ms, out);
        self.blobs_dropped(node_id, &request.dropped, out);
        HeartbeatResponse {
            cancel,
            lease_ms: self.lease_term_ms(),
            heartbeat_ms: self.heartbeat_interval_ms(),
            forget: self.forgets_for(node_id),
            copy: self.copies_for(node_id, now_ms, out),
            release: self.releases_for(node_id, out),
            name_kept: self.asks_to_name_kept(node_id, now_ms),
        }
    }

    /// The attempts of `node_id` lost on the node: those its heartbeats have not listed for a
    /// whole lease term. An agent lists only the attempts it still runs, so an attempt whose
    /// report is on its way (or retried through an outage) is unlisted for a while and must not
    /// be taken for lost at once; nor is one granted less than a lease ago, whose grant may not
    /// have arrived yet.
    fn forgotten_attempts(
        &mut self,
        node_id: NodeId,
        listed: &HashSet<AttemptId>,
        now_ms: u64,
        lease_ms: u64,
        out: &mut Outbox,
    ) -> Vec<AttemptId> {
        let Some(node) = self.nodes.get(&node_id) else {
            return Vec::new();
        };
        let mut forgotten = Vec::new();
        let mut unlisted = Vec::new();
        for attempt_id in &node.running {
            let attempt = &self.attempts[attempt_id];
            let since_ms = attempt.unlisted_since_ms;
            if listed.contains(attempt_id) || attempt.granted_at_ms + lease_ms >= now_ms {
                if since_ms.is_some() {
                    unlisted.push((*attempt_id, None));
                }
                continue;
            }
            match since_ms {
                None => unlisted.push((*attempt_id, Some(now_ms))),
                Some(since_ms) if since_ms + lease_ms < now_ms => forgotten.push(*attempt_id),
                Some(_) => {}
            }
        }
        for (attempt, since_ms) in unlisted {
            self.record(Event::AttemptUnlisted { attempt, since_ms }, out);
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
        self.heard(node_id, now_ms, out);
        let mut released = Vec::new();
        for attempt_id in attempts {
            let Ok(attempt) = self.held_attempt(node_id, *attempt_id) else {
                continue;
            };
            let end = unreported_end(
                *attempt_id,
                &attempt,
                AttemptEndState::Released,
                None,
                now_ms,
            );
            self.record(Event::AttemptEnded { end }, out);
            released.push(*attempt_id);
        }
        released
    }

    /// Ends the attempts of every node whose lease ran out; returns how many.
    pub(crate) fn expire(&mut self, now_ms: u64, out: &mut Outbox) -> usize {
        self.silence_quiet_nodes(now_ms, out);
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
        self.lose_lapsed_holders(now_ms, out);
        expired + self.expire_overdue(now_ms, out)
    }

    /// Counts on nodes whose lease ran out for none of the blobs they held: a kept blob no
    /// other node holds is lost, and the task that made it runs again.
    fn lose_lapsed_holders(&mut self, now_ms: u64, out: &mut Outbox) {
        let mut lapsed: Vec<NodeId> = self
            .holding_nodes()
            .filter(|node| {
                self.nodes
                    .get(node)
                    .is_none_or(|n| n.lease_until_ms <= now_ms)
            })
            .collect();
        lapsed.sort_unstable();
        for node in lapsed {
            self.record(Event::HoldersLost { node }, out);
        }
    }

    /// Marks `node` silent now, if it holds attempts and is not already.
    pub(crate) fn silence(&mut self, node_id: NodeId, now_ms: u64, out: &mut Outbox) -> bool {
        let Some(node) = self.nodes.get(&node_id) else {
            return false;
        };
        if node.silent || node.running.is_empty() {
            return false;
        }
        let event = Event::NodeSilent {
            node: node_id,
            at_ms: now_ms,
        };
        self.record(event, out);
        true
    }

    /// Marks silent the nodes that hold attempts and have not been heard from for half a lease
    /// (a heartbeat and a half missed): their tasks run elsewhere too, and the first result
    /// wins, rather than every one of them waiting for the lease to run out.
    fn silence_quiet_nodes(&mut self, now_ms: u64, out: &mut Outbox) {
        let quiet_ms = self.lease_term_ms() / 2;
        let mut quiet: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|node| !node.silent && !node.running.is_empty())
            // A node whose lease ran out is expired at once instead.
            .filter(|node| node.lease_until_ms > now_ms)
            .filter(|node| node.last_seen_ms.saturating_add(quiet_ms) <= now_ms)
            .map(|node| node.id)
            .collect();
        // In id order: the events come out the same in every run.
        quiet.sort_unstable();
        for node in quiet {
            self.silence(node, now_ms, out);
        }
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
                let event = Event::AttemptDeadlineMoved {
                    attempt: attempt_id,
                    check_at_ms: end_ms,
                };
                self.record(event, out);
                continue;
            }
            self.expire_attempt(attempt_id, now_ms, Expiry::Overdue, out);
            expired += 1;
        }
        expired
    }

    pub(crate) fn expire_node(
        &mut self,
        node_id: NodeId,
        now_ms: u64,
        why: Expiry,
        out: &mut Outbox,
    ) -> usize {
        if !self.nodes.contains_key(&node_id) {
            return 0;
        }
        // A node that comes back must be sent the runtimes of its jobs again.
        self.record(Event::NodeRuntimesUnsent { node: node_id }, out);
        let attempts: Vec<AttemptId> = self.nodes[&node_id].running.iter().copied().collect();
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
        let Some(attempt) = self.attempts.get(&attempt_id).copied() else {
            return;
        };
        let job = &self.jobs[&attempt.job];
        let task = &job.tasks[attempt.task as usize];
        let attempts_made = task.attempts;
        // Another replica running carries the task on.
        let last = task.live.len() == 1;
        let task_end = (last && !job.attempts_left(attempt.task)).then_some(TaskEnd {
            state: TaskState::Failed,
            outcome: Outcome::Lost {
                attempts: attempts_made,
            },
        });
        tracing::info!(
            attempt = %attempt_id,
            job = %attempt.job,
            task = attempt.task,
            node = %attempt.node,
            ?why,
            requeued = task_end.is_none(),
            "attempt expired"
        );
        if task_end.is_some() {
            // Results that waited for a check are never verified now: their payment goes back.
            self.refund(attempt.job, attempt.task, None, now_ms, out);
        }
        let end = unreported_end(
            attempt_id,
            &attempt,
            AttemptEndState::Expired,
            task_end,
            now_ms,
        );
        self.record(Event::AttemptEnded { end }, out);
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
        let Some(task) = job.tasks.get(row.task_index as usize) else {
            return;
        };
        let on_node = task.live.iter().any(|live| node.running.contains(live));
        // A task of a job that verifies ran the replicas its check wanted, and one whose
        // replica's node went silent a stand-in besides: each may still bring a result.
        let live_max = match job.verify {
            Some(_) => verify::RESULTS_MAX,
            None => job
                .replicas
                .max(job.max_attempts + u32::from(task.failures)),
        };
        if job.state != JobState::Running
            || matches!(task.slot, Slot::Ended(_))
            || task.live.len() >= live_max as usize
            || on_node
        {
            return;
        }
        // The pending queue and the short tasks are rebuilt once every attempt is restored.
        if task.slot == Slot::Pending {
            job.set_slot(row.task_index, Slot::Running);
        }
        job.tasks[row.task_index as usize].live.push(row.id);
        node.running.insert(row.id);
        // A report held back by the restart still gets a lease term to arrive.
        let lease_ms = self.lease_ms_min;
        let ends_by_ms = attempt_ends_by_ms(&job.runtime.limits, row.granted_at_ms, lease_ms)
            .max(now_ms.saturating_add(lease_ms));
        self.deadlines.insert((ends_by_ms, row.id));
        // The store keeps no attempt's starting checkpoint: the task's latest stands in, which
        // is the one it started from unless it saved others since.
        let resumed_fuel = job.tasks[row.task_index as usize].resumed_fuel();
        self.attempts.insert(
            row.id,
            Attempt {
                job: row.job_id,
                task: row.task_index,
                node: row.node_id,
                resumed_fuel,
                checkpointed_at_ms: None,
                granted_at_ms: row.granted_at_ms,
                ends_by_ms,
                paused_ms_at_grant: 0,
                check_at_ms: ends_by_ms,
                unlisted_since_ms: None,
            },
        );
    }
}

/// The end of an attempt its node did not report: released, expired, or stopped because
/// another replica ended its task.
pub(super) fn unreported_end(
    attempt_id: AttemptId,
    attempt: &Attempt,
    state: AttemptEndState,
    task_end: Option<TaskEnd>,
    now_ms: u64,
) -> AttemptEnd {
    AttemptEnd {
        ran_on: None,
        attempt_id,
        job_id: attempt.job,
        task_index: attempt.task,
        state,
        at_ms: now_ms,
        outcome: None,
        usage: None,
        stdout: None,
        stderr: None,
        outputs: Vec::new(),
        task_end,
    }
}

/// What one more replica of a task is kept off (see `PoolState::apart`).
#[derive(Debug, Default)]
struct Apart {
    nodes: Vec<u64>,
    owners: Vec<u64>,
    networks: Vec<u64>,
}

/// What the scheduler is asked to place: a job's pending tasks, or one more replica of a task.
#[derive(Debug, Clone, Copy)]
pub(super) struct Wanted {
    job: JobId,
    task: Option<u32>,
}

/// What one grant started, to answer the node with.
struct Grant {
    node: NodeId,
    job: JobId,
    send_runtime: bool,
    attempts: Vec<(AttemptId, u32)>,
}
