//! The coordinator's side of each request, as its HTTP route does it: which pool methods it
//! calls, under one change, and whether its reply waits for the commit (see `http/nodes.rs`,
//! `http/jobs.rs` and `http/blobs.rs`). The HTTP-level checks that are not the pool's (the
//! registration's signature, blob bytes and their hashes, modules) are left out; the pool's are
//! all made. Routes also check what only the simulation knows: an accepted report, upload or
//! release came from the node that held the attempt.

use wire::{
    AttemptId, HeartbeatRequest, LeaseRequest, NodeActivity, NodeId, ReleaseRequest, ReportRequest,
};

use super::coord::ParkedLease;
use super::net::{Party, Reply, Request};
use super::world::{Event, World};
use crate::pool::{Heartbeat, NewNode, PoolError, RecordUpload, Register, Release, Report};

/// The join token's hash every simulated agent of a family pool registers with.
pub(super) const JOIN_HASH: &str = "sim-join-token";

/// Whether a report's refusal is for what the report claims (blobs, sizes, fuel), not for
/// whom the attempt belongs to.
fn is_about_the_report(message: &str) -> bool {
    [
        "was not uploaded",
        "fuel",
        "larger than",
        "output files",
        "outputs come to",
    ]
    .iter()
    .any(|reason| message.contains(reason))
}

pub(super) fn refusal(error: PoolError) -> Reply {
    match error {
        PoolError::Unauthorized(_) => Reply::Unauthorized,
        other => Reply::Refused(format!("{other:?}")),
    }
}

impl World {
    /// A request reaches the coordinator.
    pub(super) fn at_coordinator(&mut self, from: Party, call: u64, request: Request) {
        if !self.coord.up {
            self.send_reply(from, call, Reply::Unavailable);
            return;
        }
        match (from, request) {
            (Party::Agent(agent), request) => self.node_route(agent, call, request),
            (Party::Requester(requester), Request::Submit { token, submission }) => {
                self.submit_route(requester, call, &token, *submission);
            }
            (Party::Requester(requester), Request::Cancel { token, job }) => {
                self.cancel_route(requester, call, &token, job);
            }
            (Party::Requester(requester), Request::GrantKeys { token, job, node }) => {
                self.grant_keys_route(requester, call, &token, (job, node));
            }
            (Party::Requester(requester), Request::RemoveNode { token, node }) => {
                self.remove_node_route(requester, call, &token, node);
            }
            (
                Party::Requester(from),
                Request::GrantCredits {
                    token,
                    requester,
                    credits,
                },
            ) => self.grant_route(from, call, &token, requester, credits),
            (Party::Requester(_), other) => panic!("requesters do not send {other:?}"),
        }
    }

    fn node_route(&mut self, agent: usize, call: u64, request: Request) {
        let to = Party::Agent(agent);
        let token = match &request {
            Request::Challenge { join_hash } => return self.challenge_route(to, call, join_hash),
            Request::Register {
                join_hash,
                nonce,
                slots,
                labels,
            } => {
                let registration = (join_hash.as_str(), nonce.as_str(), *slots);
                return self.register_route(agent, call, registration, labels.clone());
            }
            Request::Lease { token, .. }
            | Request::Heartbeat { token, .. }
            | Request::Runtime { token, .. }
            | Request::Upload { token, .. }
            | Request::Report { token, .. }
            | Request::Release { token, .. } => token,
            other => panic!("agents do not send {other:?}"),
        };
        let Some(node) = self.coord.credentials.node(token) else {
            return self.send_reply(to, call, Reply::Unauthorized);
        };
        assert_eq!(node, self.agents[agent].node, "a token names its own node");
        assert!(
            !self.coord.pool.is_removed(node),
            "the token of {node}, removed or banned, still works"
        );
        match request {
            Request::Lease {
                slots_free,
                wait_ms,
                ..
            } => self.lease_route(
                to,
                call,
                node,
                LeaseRequest {
                    slots_free,
                    wait_ms,
                },
            ),
            Request::Heartbeat { request, .. } => self.heartbeat_route(to, call, node, *request),
            Request::Runtime { job, .. } => {
                let runtime = self.coord.pool.job_runtime_for_node(node, job);
                self.send_reply(to, call, Reply::Runtime(runtime.map(Box::new)));
            }
            Request::Upload {
                attempt,
                hash,
                size_bytes,
                ..
            } => self.upload_route(to, call, node, attempt, hash, size_bytes),
            Request::Report {
                reports,
                slots_free,
                ..
            } => {
                self.report_route(to, call, node, ReportRequest { reports }, slots_free);
            }
            Request::Release { attempts, .. } => self.release_route(to, call, node, attempts),
            _ => unreachable!("matched above"),
        }
    }

    fn challenge_route(&mut self, to: Party, call: u64, join_hash: &str) {
        if !self.coord.credentials.is_join(join_hash) {
            return self.send_reply(to, call, Reply::Unauthorized);
        }
        let nonce = hex::encode(crate::env::Entropy::secret(&self.entropy));
        let now_ms = self.now_ms();
        let issued = self.coord.gate.issue(join_hash, nonce.clone(), now_ms);
        let reply = match issued {
            Ok(_) => Reply::Challenge { nonce },
            Err(error) => refusal(error),
        };
        self.send_reply(to, call, reply);
    }

    /// A registration: the join token's hash, the nonce it signed, and the slots it lends.
    fn register_route(
        &mut self,
        agent: usize,
        call: u64,
        (join_hash, nonce, slots): (&str, &str, u32),
        labels: std::collections::BTreeMap<String, String>,
    ) {
        let node_id = self.agents[agent].node;
        if !self.coord.credentials.is_join(join_hash) {
            return self.send_reply(Party::Agent(agent), call, Reply::Unauthorized);
        }
        if self.coord.pool.is_removed(node_id) {
            return self.send_reply(Party::Agent(agent), call, Reply::Gone);
        }
        let token = hex::encode(crate::env::Entropy::secret(&self.entropy));
        let new = NewNode {
            id: node_id,
            public_key: format!("key-{node_id}"),
            token_hash: token.clone(),
            name: format!("agent-{agent}"),
            capabilities: super::agent::capabilities(agent, self.setup.public.is_some()),
            labels,
            slots,
            agent_version: "sim".to_owned(),
            join_token_hash: join_hash.to_owned(),
            network: self.agents[agent].network.clone(),
        };
        let now_ms = self.now_ms();
        let (admitted, after) = match self.coord.gate.spend(join_hash, nonce, now_ms) {
            // Simulated agents hold no presence request.
            Ok(()) => self.apply(Register {
                node: new,
                old_process_gone: false,
            }),
            Err(error) => (Err(error), None),
        };
        let to = Party::Agent(agent);
        match admitted {
            Err(error) => self.send_reply(to, call, refusal(error)),
            Ok(Some(_)) => self.send_reply(to, call, Reply::Conflict),
            Ok(None) => {
                let heartbeat_ms = self.coord.pool.heartbeat_interval_ms();
                let reply = Reply::Registered {
                    token,
                    heartbeat_ms,
                };
                self.reply_after(after, to, call, reply);
            }
        }
    }

    fn lease_route(&mut self, to: Party, call: u64, node: NodeId, request: LeaseRequest) {
        wire::validate::lease_request(&request).expect("agents ask within the bounds");
        let request_id = self.coord.next_request;
        self.coord.next_request += 1;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let change = crate::service::lease_or_park(node, &request, request_id, sender);
        let (granted, _) = self.mutate(change);
        match granted {
            // Grants are written behind: the reply does not wait for their commit.
            Some(response) => self.send_reply(to, call, Reply::Lease(response)),
            None => {
                let lease = ParkedLease {
                    node,
                    to,
                    call,
                    receiver,
                };
                self.coord.leases.insert(request_id, lease);
                let generation = self.coord.generation;
                let event = Event::ParkTimeout {
                    generation,
                    request: request_id,
                };
                self.schedule(request.wait_ms.into(), event);
            }
        }
    }

    fn heartbeat_route(&mut self, to: Party, call: u64, node: NodeId, request: HeartbeatRequest) {
        wire::validate::heartbeat(&request).expect("agents send valid heartbeats");
        if request.activity != NodeActivity::Active {
            self.coord.parked.unpark_node(node);
        }
        let held_before: Vec<AttemptId> = self.held_by(node);
        let (response, after) = self.apply(Heartbeat { node, request });
        for attempt in &response.cancel {
            assert_ne!(
                self.memory.holder(*attempt),
                Some(node),
                "the heartbeat told the node to stop {attempt}, which it holds"
            );
        }
        if let Party::Agent(agent) = to {
            // Attempts the agent finished and is reporting are not in its heartbeat: count
            // those the heartbeat ended as forgotten, whose reports will be refused.
            let forgotten = held_before
                .iter()
                .filter(|attempt| self.memory.holder(**attempt).is_none())
                .filter(|attempt| self.agents[agent].ending.contains_key(attempt))
                .count();
            self.stats.forgotten_while_reporting += forgotten as u64;
        }
        self.reply_after(after, to, call, Reply::Heartbeat(response));
    }

    fn upload_route(
        &mut self,
        to: Party,
        call: u64,
        node: NodeId,
        attempt: AttemptId,
        hash: wire::BlobHash,
        size_bytes: u64,
    ) {
        let room = self.coord.pool.upload_bytes_max(node, attempt);
        if let Err(message) = &room {
            let held = self.memory.holder(attempt) == Some(node);
            assert!(
                !held || !(message.contains("not current") || message.contains("not held")),
                "an upload for {attempt}, held by its node, was refused: {message}"
            );
        }
        match room {
            Err(message) => return self.send_reply(to, call, Reply::Uploaded(Err(message))),
            Ok(max) if size_bytes > max => {
                let message = format!("{size_bytes} bytes is more than the {max} allowed");
                return self.send_reply(to, call, Reply::Uploaded(Err(message)));
            }
            Ok(_) => {}
        }
        let holder = self.memory.holder(attempt);
        let upload = RecordUpload {
            node,
            attempt,
            hash,
            size_bytes,
        };
        let change = crate::service::record_upload(upload);
        let (recorded, after) =
            self.mutate(|pool, _, now_ms, entropy, out| change(pool, now_ms, entropy, out));
        if recorded.is_ok() {
            assert_eq!(
                holder,
                Some(node),
                "an upload for {attempt} was taken from a node that does not hold it"
            );
        }
        self.reply_after(after, to, call, Reply::Uploaded(recorded));
    }

    fn report_route(
        &mut self,
        to: Party,
        call: u64,
        node: NodeId,
        request: ReportRequest,
        slots_free: u32,
    ) {
        wire::validate::report_request(&request).expect("agents send valid reports");
        // Who held each attempt as the request came; an attempt named again in the same
        // request counts as held by no one, since its first report may have ended it.
        let mut named = std::collections::BTreeSet::new();
        let holders: Vec<_> = request
            .reports
            .iter()
            .map(|report| {
                let first = named.insert(report.attempt_id);
                self.memory.holder(report.attempt_id).filter(|_| first)
            })
            .collect();
        let jobs: Vec<_> = request
            .reports
            .iter()
            .map(|report| self.coord.pool.job_of_attempt(report.attempt_id))
            .collect();
        let (acks, after) = self.apply(Report {
            node,
            reports: request.reports,
        });
        // An earlier report of the same request may have stopped the job (an abort_on exit
        // code), which ends its other attempts: their reports are refused for that.
        let stopped: Vec<bool> = jobs
            .iter()
            .map(|job| job.is_some_and(|job| self.coord.pool.job_aborted(job)))
            .collect();
        for ((ack, holder), stopped) in acks.iter().zip(holders).zip(stopped) {
            let message = ack.message.as_deref().unwrap_or_default();
            if ack.accepted {
                assert_eq!(
                    holder,
                    Some(node),
                    "the report of {} was accepted from a node that does not hold it",
                    ack.attempt_id
                );
                self.stats.reports_accepted += 1;
                if self.coord.restored.contains(&ack.attempt_id) {
                    self.stats.reports_of_restored += 1;
                }
            } else {
                // A node's report of an attempt it holds (restored ones included) is refused
                // only for what the report says.
                assert!(
                    holder != Some(node) || is_about_the_report(message) || stopped,
                    "the report of {}, held by its node, was refused: {message}",
                    ack.attempt_id
                );
                self.count_refusal(message);
            }
        }
        // Granted as the coordinator does, from the work waiting once the reports are applied.
        let lease = (slots_free > 0).then(|| self.apply(crate::pool::Lease { node, slots_free }).0);
        self.reply_after(after, to, call, Reply::Reported(acks, lease));
    }

    fn release_route(&mut self, to: Party, call: u64, node: NodeId, attempts: Vec<AttemptId>) {
        let request = ReleaseRequest {
            attempts,
            reason: "sim".to_owned(),
        };
        wire::validate::release_request(&request).expect("agents release within the bounds");
        let holders: Vec<_> = request
            .attempts
            .iter()
            .map(|attempt| (*attempt, self.memory.holder(*attempt)))
            .collect();
        let (released, after) = self.apply(Release {
            node,
            attempts: request.attempts.clone(),
        });
        for attempt in &released {
            let holder = holders
                .iter()
                .find(|(id, _)| id == attempt)
                .and_then(|(_, h)| *h);
            assert_eq!(
                holder,
                Some(node),
                "{attempt} was released by a node that does not hold it"
            );
        }
        self.reply_after(after, to, call, Reply::Released(released));
    }

    /// Counts a refused report by its reason, for the summary.
    fn count_refusal(&mut self, message: &str) {
        let stats = &mut self.stats;
        stats.reports_refused += 1;
        if message.contains("is not current") {
            stats.refused_not_current += 1;
        } else if message.contains("not held by this node") {
            stats.refused_not_held += 1;
        } else if message.contains("was not uploaded") {
            stats.refused_blob += 1;
        } else if message.contains("fuel") {
            stats.refused_fuel += 1;
        }
    }

    fn held_by(&self, node: NodeId) -> Vec<AttemptId> {
        self.memory
            .attempts
            .iter()
            .filter(|(_, attempt)| attempt.node == node)
            .map(|(id, _)| *id)
            .collect()
    }
}
