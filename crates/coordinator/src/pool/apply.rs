//! Applying events: the one place the pool's state changes, and the rows each event implies in
//! the store.
//!
//! Commands read the pool, decide, and [`PoolState::record`] what happened; nothing else writes
//! to the pool's fields (restoring from the store aside, which builds the snapshot events are
//! applied to). An apply reads no clock and draws no entropy: everything it needs is in the
//! event or follows from the pool, so the same events on the same pool give the same pool.

use store::{AttemptEndState, Write};
use wire::{AttemptId, JobId, JobState, NodeActivity, NodeId, TaskState};

use super::events::{Event, NodeGone};
use super::leases::attempt_ends_by_ms;
use super::{Attempt, Outbox, PoolState, Slot};

impl PoolState {
    /// Applies `event` and queues the rows it implies, and the event itself where something
    /// replays it (see [`Outbox::events`]).
    pub(super) fn record(&mut self, event: Event, out: &mut Outbox) {
        self.apply_event(&event);
        if Outbox::KEEPS_EVENTS {
            out.events.push(event.clone());
        }
        self.push_writes(event, &mut out.writes);
    }

    /// Changes the pool as `event` says happened.
    pub(crate) fn apply_event(&mut self, event: &Event) {
        match event {
            Event::TokenCreated { .. }
            | Event::TokenRevoked { .. }
            | Event::PeerAdded { .. }
            | Event::PeerRemoved { .. } => self.apply_trust_event(event),
            Event::JobSubmitted { .. }
            | Event::JobFinished { .. }
            | Event::JobCancelled { .. }
            | Event::JobsPurged { .. } => self.apply_job_event(event),
            Event::TasksReused { job, tasks, .. } => {
                for (_, attempt, _) in tasks {
                    self.attempt_ids.taken(*attempt);
                }
                self.apply_reuse(*job, tasks);
            }
            Event::KeysGranted { job, keys } => self.apply_keys_granted(*job, keys),
            Event::JobDeleted { row, dropping } => self.apply_job_deleted(row, dropping),
            Event::NodeForgot { node, jobs } => self.apply_node_forgot(*node, jobs),
            Event::PipelineSubmitted { .. }
            | Event::StageStarted { .. }
            | Event::StageNotRun { .. }
            | Event::PipelineCancelled { .. }
            | Event::PipelineEnded { .. }
            | Event::PipelinesPurged { .. } => self.apply_pipeline_event(event),
            event if event.is_peer_event() => self.apply_peer_event(event),
            Event::AttemptsGranted {
                node,
                job,
                at_ms,
                attempts,
                ..
            } => {
                for (attempt, _) in attempts {
                    self.attempt_ids.taken(*attempt);
                }
                self.start_attempts(*node, *job, *at_ms, attempts);
            }
            Event::GrantsWithdrawn {
                node,
                attempts,
                runtimes,
            } => self.withdraw(*node, attempts, runtimes),
            Event::AttemptEnded { end } => {
                self.lose_work(end);
                self.end_attempt(end);
            }
            Event::CheckpointSaved {
                attempt,
                checkpoint,
                at_ms,
            } => self.apply_checkpoint(*attempt, *checkpoint, *at_ms),
            Event::CheckpointDropped { job, task } => self.apply_checkpoint_dropped(*job, *task),
            Event::ResultClaimed { .. }
            | Event::ResultsCompared { .. }
            | Event::ChecksWanted { .. }
            | Event::ResultHeld { .. }
            | Event::TaskVerified { .. }
            | Event::TaskInconclusive { .. }
            | Event::NodeBanned { .. } => self.apply_verification_event(event),
            Event::ResultsRecalled {
                job,
                tasks,
                reopened,
                ..
            } => self.apply_recall(*job, tasks, reopened.as_deref()),
            Event::CreditsMoved { transfers } => self.apply_transfers(transfers),
            _ => self.apply_node_event(event),
        }
    }

    /// The events about nodes and the attempts they hold.
    fn apply_job_event(&mut self, event: &Event) {
        match event {
            Event::JobSubmitted { job, tasks } => self.insert_job(job, tasks),
            Event::JobFinished { job, state, at_ms } => {
                self.end_job(*job, *state, *at_ms);
                self.stage_job_changed(*job);
            }
            Event::JobCancelled {
                job,
                at_ms,
                aborted,
            } => {
                self.cancel(*job, *at_ms, *aborted);
                self.stage_job_changed(*job);
            }
            Event::JobsPurged { jobs } => {
                for job in jobs {
                    self.jobs.remove(job);
                    self.changes.jobs.push(*job);
                }
            }
            _ => unreachable!("apply_job_event applies job events only"),
        }
    }

    fn apply_node_event(&mut self, event: &Event) {
        match event {
            Event::NodeRegistered { node } => {
                self.insert_node_row(node.clone(), node.registered_at_ms);
                self.touch(node.id, node.registered_at_ms);
            }
            Event::NodeGone { node, why, .. } => {
                self.forget_node(*node);
                self.forget_holder(*node);
                if *why == NodeGone::Removed {
                    self.removed_nodes.insert(*node);
                }
            }
            Event::NodeHeard { node, at_ms } => self.touch(*node, *at_ms),
            Event::NodeSilent { node, .. } => self.set_silent(*node, true),
            Event::NodeActivitySet {
                node,
                activity,
                at_ms,
            } => self.set_activity(*node, activity, *at_ms),
            Event::NodeCapabilitiesSet { node, capabilities } => {
                let node = self.nodes.get_mut(node).expect("events name live nodes");
                node.capabilities = capabilities.clone();
                self.changes.nodes_freed.push(node.id);
            }
            Event::NodeRuntimesUnsent { node } => {
                if let Some(node) = self.nodes.get_mut(node) {
                    node.jobs_sent.clear();
                }
            }
            Event::NodesLiveRecounted { at_ms } => self.recount_live(*at_ms),
            Event::NodesHeardStored { nodes } => {
                for (node, heard_ms) in nodes {
                    let node = self.nodes.get_mut(node).expect("events name live nodes");
                    node.heard_stored_ms = *heard_ms;
                }
            }
            Event::GrantsDelivered { node, at_ms, .. } => {
                let lease_ms = self.lease_term_ms();
                if let Some(node) = self.nodes.get_mut(node) {
                    node.lease_until_ms = node.lease_until_ms.max(at_ms + lease_ms);
                }
            }
            Event::AttemptUnlisted { attempt, since_ms } => {
                let attempt = self
                    .attempts
                    .get_mut(attempt)
                    .expect("events name live attempts");
                attempt.unlisted_since_ms = *since_ms;
            }
            Event::AttemptDeadlineMoved {
                attempt,
                check_at_ms,
            } => self.move_deadline(*attempt, *check_at_ms),
            Event::UploadRecorded {
                attempt,
                hash,
                size_bytes,
                ..
            } => {
                self.uploads
                    .entry(*attempt)
                    .or_default()
                    .insert(*hash, *size_bytes);
            }
            _ => unreachable!("apply_event applies the others"),
        }
    }

    /// The rows `event` implies in the store, made from it once it is applied.
    fn push_writes(&self, event: Event, writes: &mut Vec<Write>) {
        match event {
            Event::TokenCreated { .. }
            | Event::TokenRevoked { .. }
            | Event::PeerAdded { .. }
            | Event::PeerRemoved { .. } => super::trust::push_trust_writes(event, writes),
            Event::NodeRegistered { node } => writes.push(Write::UpsertNode(node)),
            Event::NodeGone { node, why, at_ms } => {
                if why == NodeGone::Removed {
                    writes.push(Write::SetMeta {
                        key: super::trust::removed_node_key(node),
                        value: at_ms.to_string(),
                    });
                }
                if why != NodeGone::Restarted {
                    writes.push(Write::DeleteNode { node_id: node });
                }
            }
            Event::NodeCapabilitiesSet { node, capabilities } => {
                writes.push(Write::SetNodeCapabilities {
                    node_id: node,
                    capabilities,
                });
            }
            Event::NodesHeardStored { nodes } => writes.push(Write::SetNodesSeen(nodes)),
            Event::JobSubmitted { .. }
            | Event::JobFinished { .. }
            | Event::JobCancelled { .. }
            | Event::JobsPurged { .. }
            | Event::TasksReused { .. } => writes.push(job_write(event)),
            Event::KeysGranted { job, .. } => writes.extend(self.keys_write(job)),
            Event::JobDeleted { .. } | Event::NodeForgot { .. } => {
                writes.extend(self.deletion_writes(event));
            }
            Event::PipelineSubmitted { .. }
            | Event::StageStarted { .. }
            | Event::StageNotRun { .. }
            | Event::PipelineCancelled { .. }
            | Event::PipelineEnded { .. }
            | Event::PipelinesPurged { .. } => self.push_pipeline_writes(event, writes),
            Event::GrantsDelivered { attempts, .. } if !attempts.is_empty() => {
                writes.push(Write::GrantAttempts(attempts));
            }
            Event::UploadRecorded {
                attempt,
                hash,
                size_bytes,
                at_ms,
            } => writes.push(Write::RecordAttemptUpload {
                attempt_id: attempt,
                job_id: self.attempts[&attempt].job,
                hash,
                size_bytes,
                at_ms,
            }),
            Event::AttemptEnded { .. } | Event::CheckpointSaved { .. } => {
                self.push_attempt_writes(event, writes);
            }
            Event::CheckpointDropped { job, task } => writes.push(self.checkpoint_write(job, task)),
            Event::TaskVerified { .. }
            | Event::ResultsRecalled { .. }
            | Event::TaskInconclusive { .. }
            | Event::NodeBanned { .. }
            | Event::CreditsMoved { .. } => self.push_verification_writes(event, writes),
            event => writes.extend(self.peer_writes(event)),
        }
    }

    /// The rows of an attempt's end or checkpoint, with the task's checkpoints where they
    /// changed.
    fn push_attempt_writes(&self, event: Event, writes: &mut Vec<Write>) {
        match event {
            Event::AttemptEnded { end } => {
                let lost = self
                    .loses_work(&end)
                    .then_some((end.job_id, end.task_index));
                self.push_end_writes(end, writes);
                if let Some((job_id, index)) = lost {
                    writes.push(self.checkpoint_write(job_id, index));
                }
            }
            Event::CheckpointSaved {
                attempt,
                checkpoint,
                at_ms,
            } => {
                writes.push(Write::InsertBlob {
                    hash: checkpoint.hash,
                    size_bytes: checkpoint.size_bytes,
                    at_ms,
                    reader: None,
                });
                let attempt = self.attempts[&attempt];
                writes.push(self.checkpoint_write(attempt.job, attempt.task));
            }
            _ => unreachable!("push_writes routes only attempts' ends and checkpoints here"),
        }
    }

    /// An attempt's end, and the requester's right to read what it left. Ends queued one after
    /// another share one write, so a report of many attempts is one statement in the store.
    fn push_end_writes(&self, end: store::AttemptEnd, writes: &mut Vec<Write>) {
        let blobs: Vec<_> = end
            .stdout
            .iter()
            .chain(end.stderr.iter())
            .map(|blob| (blob.hash, blob.size_bytes))
            .chain(end.outputs.iter().map(|file| (file.hash, file.size_bytes)))
            .collect();
        let (reader, at_ms) = (self.jobs[&end.job_id].requester, end.at_ms);
        let batch = writes
            .iter()
            .rposition(|write| !matches!(write, Write::AddBlobReaders { .. }))
            .filter(|at| matches!(writes[*at], Write::EndAttempts(_)));
        match batch {
            // Readers and ends touch different rows, so an end may join an earlier batch over
            // readers queued since.
            Some(at) => match &mut writes[at] {
                Write::EndAttempts(ends) => ends.push(end),
                _ => unreachable!("matched above"),
            },
            None => writes.push(Write::EndAttempts(vec![end])),
        }
        if !blobs.is_empty() {
            writes.push(Write::AddBlobReaders {
                hashes: blobs,
                reader,
                at_ms,
            });
        }
    }

    fn set_activity(&mut self, node_id: NodeId, activity: &NodeActivity, at_ms: u64) {
        let node = self
            .nodes
            .get_mut(&node_id)
            .expect("events name live nodes");
        node.pauses
            .set_paused(matches!(activity, NodeActivity::Paused { .. }), at_ms);
        if *activity == NodeActivity::Active && node.activity != NodeActivity::Active {
            self.changes.nodes_freed.push(node_id);
        }
        node.activity = activity.clone();
    }

    fn recount_live(&mut self, at_ms: u64) {
        let mut live = 0;
        for node in self.nodes.values_mut() {
            node.counted_live = node.lease_until_ms > at_ms;
            live += u64::from(node.counted_live);
        }
        self.node_counts.live_nodes = live;
    }

    fn end_job(&mut self, job_id: JobId, state: JobState, at_ms: u64) {
        let job = self.jobs.get_mut(&job_id).expect("events name known jobs");
        job.state = state;
        job.finished_at_ms = Some(at_ms);
        job.release_ended();
        job.bump(&mut self.changes);
        self.open_jobs.remove(&job_id);
        self.sync_ready(job_id);
    }

    fn cancel(&mut self, job_id: JobId, at_ms: u64, aborted: Option<wire::Aborted>) {
        let running: Vec<AttemptId> = self.jobs[&job_id]
            .tasks
            .iter()
            .flat_map(|task| task.live.iter().copied())
            .collect();
        for attempt_id in running {
            self.remove_attempt(attempt_id);
        }
        let held: Vec<u32> = (0..self.jobs[&job_id].tasks.len() as u32).collect();
        for index in held {
            self.unhold(job_id, index);
        }
        let job = self.jobs.get_mut(&job_id).expect("events name known jobs");
        for index in 0..job.tasks.len() as u32 {
            if !matches!(job.tasks[index as usize].slot, Slot::Ended(_)) {
                job.set_slot(index, Slot::Ended(TaskState::Cancelled));
            }
        }
        job.aborted = aborted;
        let state = match aborted {
            Some(_) => JobState::Failed,
            None => JobState::Cancelled,
        };
        self.end_job(job_id, state, at_ms);
    }

    fn start_attempts(
        &mut self,
        node_id: NodeId,
        job_id: JobId,
        at_ms: u64,
        attempts: &[(AttemptId, u32)],
    ) {
        let lease_ms = self.lease_term_ms();
        self.forget_ended_jobs_sent(node_id);
        let job = self.jobs.get_mut(&job_id).expect("events name known jobs");
        let node = self
            .nodes
            .get_mut(&node_id)
            .expect("events name live nodes");
        let ends_by_ms = attempt_ends_by_ms(&job.runtime.limits, at_ms, lease_ms);
        let paused_ms_at_grant = node.pauses.total_ms(at_ms);
        node.jobs_sent.insert(job_id);
        for &(attempt_id, index) in attempts {
            // A first attempt leaves the queue; a replica joins a task that runs already.
            if job.tasks[index as usize].slot == Slot::Pending {
                let at = job.pending.iter().position(|pending| *pending == index);
                job.pending.remove(at.expect("a pending task is queued"));
                job.set_slot(index, Slot::Running);
            }
            let task = &mut job.tasks[index as usize];
            task.attempts += 1;
            task.live.push(attempt_id);
            // A request parked before its node went silent may still be answered.
            if node.silent {
                task.silent_live += 1;
            }
            // What the attempt resumes from: work its report must not be paid for again.
            let resumed_fuel = task.resumed_fuel();
            job.attempts_total += 1;
            job.sync_short(index);
            node.running.insert(attempt_id);
            self.deadlines.insert((ends_by_ms, attempt_id));
            let attempt = Attempt {
                job: job_id,
                task: index,
                node: node_id,
                resumed_fuel,
                checkpointed_at_ms: None,
                granted_at_ms: at_ms,
                ends_by_ms,
                paused_ms_at_grant,
                check_at_ms: ends_by_ms,
                unlisted_since_ms: None,
            };
            self.attempts.insert(attempt_id, attempt);
        }
        job.bump(&mut self.changes);
        self.sync_ready(job_id);
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

    fn withdraw(&mut self, node_id: NodeId, attempts: &[AttemptId], runtimes: &[JobId]) {
        for attempt_id in attempts {
            let attempt = self
                .remove_attempt(*attempt_id)
                .expect("only live grants are withdrawn");
            let job = self
                .jobs
                .get_mut(&attempt.job)
                .expect("attempts belong to jobs");
            job.tasks[attempt.task as usize].attempts -= 1;
            job.attempts_total -= 1;
            job.settle_task(attempt.task, None);
            self.sync_ready(attempt.job);
        }
        if let Some(node) = self.nodes.get_mut(&node_id) {
            for job_id in runtimes {
                node.jobs_sent.remove(job_id);
            }
        }
    }

    fn move_deadline(&mut self, attempt_id: AttemptId, check_at_ms: u64) {
        let attempt = self
            .attempts
            .get_mut(&attempt_id)
            .expect("events name live attempts");
        self.deadlines.remove(&(attempt.check_at_ms, attempt_id));
        self.deadlines.insert((check_at_ms, attempt_id));
        attempt.check_at_ms = check_at_ms;
    }

    fn end_attempt(&mut self, end: &store::AttemptEnd) {
        let attempt = self
            .remove_attempt(end.attempt_id)
            .expect("events end live attempts");
        // Another pool that gave a task back could not run it now: it is not offered that task
        // again for a while, so the two pools do not pass it back and forth.
        let given_back = end.state == AttemptEndState::Released
            && self
                .nodes
                .get(&attempt.node)
                .is_some_and(|node| self.is_federated(node));
        let job = self
            .jobs
            .get_mut(&attempt.job)
            .expect("attempts belong to jobs");
        let task_state = end.task_end.as_ref().map(|task_end| task_end.state);
        // A stranger's node that says it cannot run a task is not given it again, nor is any
        // node of its owner: else one node could spend every attempt of every task.
        let said_cannot = end.state == AttemptEndState::Failed
            && end.outcome.as_ref().is_some_and(|o| !verify::is_claim(o));
        let refused = said_cannot && self.verifying.trust == wire::Trust::Public;
        if (refused || given_back) && task_state.is_none() {
            let owner = self.nodes.get(&attempt.node).and_then(|node| node.owner);
            let refusals = job.refused_by.entry(attempt.task).or_default();
            refusals.retain(|refusal| refusal.node != attempt.node);
            refusals.push(super::Refusal {
                node: attempt.node,
                owner,
                at_ms: end.at_ms,
            });
        }
        if task_state.is_none() {
            job.count_retried_failure(attempt.task, end.outcome.as_ref());
        }
        if end.state == AttemptEndState::Released {
            // Given back unfinished: it does not count against the task's attempts.
            job.tasks[attempt.task as usize].attempts -= 1;
            job.attempts_total -= 1;
        }
        job.settle_task(attempt.task, task_state);
        if let Some(usage) = &end.usage {
            job.fuel_total = job.fuel_total.saturating_add(usage.fuel_used);
        }
        if task_state == Some(TaskState::Succeeded) {
            *job.node_shares.entry(attempt.node).or_default() += 1;
            if let Some(node) = self.nodes.get_mut(&attempt.node) {
                node.tasks_succeeded += 1;
            }
        }
        job.bump(&mut self.changes);
        self.sync_ready(attempt.job);
    }

    /// Takes an attempt out of the pool's indexes and its node's slots; its task is the
    /// caller's to update.
    fn remove_attempt(&mut self, attempt_id: AttemptId) -> Option<Attempt> {
        let attempt = self.attempts.remove(&attempt_id)?;
        if let Some(task) = self
            .jobs
            .get_mut(&attempt.job)
            .and_then(|job| job.tasks.get_mut(attempt.task as usize))
        {
            task.live.retain(|live| *live != attempt_id);
        }
        self.uploads.remove(&attempt_id);
        self.deadlines.remove(&(attempt.check_at_ms, attempt_id));
        if let Some(node) = self.nodes.get_mut(&attempt.node) {
            node.running.remove(&attempt_id);
            self.changes.nodes_freed.push(attempt.node);
            if node.silent
                && let Some(task) = self
                    .jobs
                    .get_mut(&attempt.job)
                    .and_then(|job| job.tasks.get_mut(attempt.task as usize))
            {
                task.silent_live -= 1;
            }
        }
        Some(attempt)
    }

    /// Marks a node silent or heard again: its attempts' tasks stop or start counting them as
    /// replicas, and want a stand-in accordingly.
    fn set_silent(&mut self, node_id: NodeId, silent: bool) {
        let Some(node) = self.nodes.get_mut(&node_id) else {
            return;
        };
        if node.silent == silent {
            return;
        }
        node.silent = silent;
        let held: Vec<AttemptId> = node.running.iter().copied().collect();
        for attempt_id in held {
            let attempt = self.attempts[&attempt_id];
            let job = self
                .jobs
                .get_mut(&attempt.job)
                .expect("attempts belong to jobs");
            let task = &mut job.tasks[attempt.task as usize];
            if silent {
                task.silent_live += 1;
            } else {
                task.silent_live -= 1;
            }
            job.sync_short(attempt.task);
            self.sync_ready(attempt.job);
        }
    }

    /// Any authenticated request of a node shows it is alive and extends its leases.
    fn touch(&mut self, node_id: NodeId, now_ms: u64) {
        self.set_silent(node_id, false);
        let lease_ms = self.lease_term_ms();
        if let Some(node) = self.nodes.get_mut(&node_id) {
            node.last_seen_ms = now_ms;
            node.heard_ms = now_ms;
            node.lease_until_ms = now_ms + lease_ms;
            if !node.counted_live {
                node.counted_live = true;
                self.node_counts.live_nodes += 1;
            }
        }
    }

    /// Takes a node out of memory with its token and its place in the counts; its attempts
    /// ended first.
    pub(super) fn forget_node(&mut self, node_id: NodeId) {
        let node = self.nodes.remove(&node_id).expect("events name live nodes");
        debug_assert!(
            node.running.is_empty(),
            "a node goes once its attempts ended"
        );
        self.node_tokens.remove(&node.token_hash);
        self.changes.nodes_gone.push(node_id);
        self.node_counts.uncount_node(&node.join_token_hash);
        if node.counted_live {
            self.node_counts.live_nodes -= 1;
        }
    }
}

/// The row a job event implies.
fn job_write(event: Event) -> Write {
    match event {
        Event::JobSubmitted { job, tasks } => Write::InsertJob { job, tasks },
        Event::JobFinished { job, state, at_ms } => Write::FinishJob {
            job_id: job,
            state,
            at_ms,
        },
        Event::JobCancelled {
            job,
            at_ms,
            aborted,
        } => Write::CancelJob {
            job_id: job,
            at_ms,
            aborted,
        },
        Event::JobsPurged { jobs } => Write::PurgeJobs(jobs),
        Event::TasksReused { job, at_ms, tasks } => Write::ReuseResults {
            job_id: job,
            at_ms,
            tasks,
        },
        _ => unreachable!("job_write writes job events only"),
    }
}
