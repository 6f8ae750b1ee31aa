//! The pool's rules, driven directly: no HTTP, no database, a fixed clock and seed.

use std::collections::{BTreeMap, HashSet};

use store::Write;
use wire::{
    AttemptReport, BlobHash, BlobRef, Capabilities, HeartbeatRequest, JobId, JobState,
    JobSubmission, NodeActivity, NodeId, Outcome, RequesterId, TaskSpec, Usage,
};

use super::*;
use crate::env::{Entropy, SeededEntropy};

const OWNER: RequesterId = RequesterId(1);
const LEASE_MS: u64 = 1000;

/// A node of 4 cores and 8 GiB on x86_64 Linux, registered with `join_token_hash`.
pub(super) fn new_node(
    id: u64,
    slots: u32,
    labels: &[(&str, &str)],
    join_token_hash: &str,
) -> NewNode {
    NewNode {
        id: NodeId(id),
        public_key: format!("key{id}"),
        token_hash: format!("token{id}"),
        name: format!("node{id}"),
        capabilities: Capabilities {
            cores: 4,
            memory_bytes: 8 << 30,
            disk_free_bytes: 1 << 40,
            arch: "x86_64".to_owned(),
            os: "linux".to_owned(),
            module_bytes_max: wire::limits::MODULE_BYTES_MAX,
            wasi_interfaces: Vec::new(),
            wasm_features: Vec::new(),
            runtime: wire::NodeRuntime::Native,
            encryption_key: None,
            peer_address: None,
        },
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        slots,
        agent_version: "test".to_owned(),
        join_token_hash: join_token_hash.to_owned(),
        network: None,
    }
}

#[path = "checkpoints_tests.rs"]
mod checkpoints;
#[path = "deletions_tests.rs"]
mod deletions;
#[path = "failure_tests.rs"]
mod failure;
#[path = "federation_tests.rs"]
mod federation;
#[path = "peers_tests.rs"]
mod peers;
#[path = "pipelines_tests.rs"]
mod pipelines;
#[path = "private_tests.rs"]
mod private;
#[path = "recall_tests.rs"]
mod recall;
#[path = "rules_tests.rs"]
mod rules;
#[path = "silence_tests.rs"]
mod silence;
#[path = "verification_tests.rs"]
mod verification;

struct Harness {
    pool: PoolState,
    /// Lease requests parked as the service parks them.
    parked: crate::parked::Parked,
    entropy: SeededEntropy,
    now_ms: u64,
    out: Outbox,
    /// A copy of the pool as it started, which the events of every change are applied to: at
    /// the end of each test it must equal the pool.
    follower: PoolState,
    /// The kinds of the events replayed so far.
    kinds: std::collections::BTreeSet<&'static str>,
}

/// Every test's events, replayed, rebuild its pool.
impl Drop for Harness {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.settle();
        }
    }
}

impl Harness {
    /// Applies the events recorded since the last call to the follower, which must then equal
    /// the pool.
    fn settle(&mut self) -> Vec<&'static str> {
        let events = std::mem::take(&mut self.out.events);
        self.follower.follow_events(1, &events, &self.pool);
        let kinds: Vec<_> = events.iter().map(events::Event::kind).collect();
        self.kinds.extend(kinds.iter().copied());
        kinds
    }

    /// Runs `command` now, and replays its events on the pool as it was before: its reply and
    /// the kinds of its events, in order.
    fn run<C: Command>(&mut self, command: C) -> (C::Reply, Vec<&'static str>) {
        self.settle();
        let reply = self
            .pool
            .apply(command, self.now_ms, &self.entropy, &mut self.out);
        self.pool.check_invariants();
        (reply, self.settle())
    }

    fn new() -> Self {
        let pool = PoolState::new("test".to_owned(), LEASE_MS);
        Self {
            follower: pool.replica(),
            pool,
            parked: crate::parked::Parked::default(),
            entropy: SeededEntropy::from_seed(7),
            now_ms: 1_000_000,
            out: Outbox::new(),
            kinds: Default::default(),
        }
    }

    /// A heartbeat of an active `node` that lists `running` and changes nothing else.
    fn beat(&mut self, node: NodeId, running: Vec<AttemptId>) -> wire::HeartbeatResponse {
        let request = HeartbeatRequest {
            running,
            slots_free: 0,
            activity: NodeActivity::Active,
            capabilities: None,
            forgotten: Vec::new(),
            copied: Vec::new(),
            kept: Vec::new(),
            dropped: Vec::new(),
        };
        self.pool
            .heartbeat(node, &request, self.now_ms, &mut self.out)
    }

    /// Parks a lease request of `node` for up to `slots_free` attempts.
    fn park(
        &mut self,
        node: NodeId,
        request: u64,
        slots_free: u32,
    ) -> tokio::sync::oneshot::Receiver<wire::LeaseResponse> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        self.parked.park(node, request, slots_free, sender);
        receiver
    }

    /// What the service does after each change: hands work to the parked requests it reaches.
    fn follow(&mut self) {
        while self
            .parked
            .follow(&mut self.pool, self.now_ms, &self.entropy, &mut self.out)
        {}
    }

    fn node(&mut self, id: u64, slots: u32) -> NodeId {
        self.labeled_node(id, slots, &[])
    }

    fn labeled_node(&mut self, id: u64, slots: u32, labels: &[(&str, &str)]) -> NodeId {
        self.pool.register(
            new_node(id, slots, labels, "join"),
            self.now_ms,
            &mut self.out,
        );
        NodeId(id)
    }

    fn job(&mut self, tasks: usize, max_attempts: u32) -> JobId {
        self.job_with(tasks, max_attempts, wire::Limits::default())
    }

    fn job_with(&mut self, tasks: usize, max_attempts: u32, limits: wire::Limits) -> JobId {
        self.job_from(tasks, max_attempts, |submission| submission.limits = limits)
    }

    /// A job of `tasks` tasks, its submission as `edit` leaves it.
    fn job_from(
        &mut self,
        tasks: usize,
        max_attempts: u32,
        edit: impl FnOnce(&mut JobSubmission),
    ) -> JobId {
        let id = JobId(self.entropy.next_u64());
        let mut submission = JobSubmission {
            name: "job".to_owned(),
            module: BlobHash::of(b"module"),
            env: BTreeMap::new(),
            mounts: vec![],
            requirements: Default::default(),
            limits: Default::default(),
            max_attempts,
            replicas: 1,
            deterministic: None,
            verify: None,
            validator: None,
            success_exit_codes: Vec::new(),
            tasks: (0..tasks)
                .map(|i| TaskSpec {
                    args: vec![i.to_string()],
                    ..TaskSpec::default()
                })
                .collect(),
            checkpoint: None,
            on_failure: None,
            private: None,
        };
        edit(&mut submission);
        self.pool.add_job(
            NewJob {
                id,
                requester: OWNER,
                submission,
                module_bytes: 1 << 10,
                component: false,
                wasm_features: Vec::new(),
            },
            self.now_ms,
            &mut self.out,
        );
        id
    }

    fn take(&mut self, node: NodeId, slots: u32) -> Vec<wire::AttemptGrant> {
        self.pool
            .take_work(node, slots, self.now_ms, &mut self.out)
            .attempts
    }

    fn report(&mut self, node: NodeId, attempt: AttemptId, outcome: Outcome) -> bool {
        let acks = self.pool.report(
            node,
            vec![AttemptReport {
                ran_on: None,
                attempt_id: attempt,
                outcome,
                usage: Usage {
                    fuel_used: 10,
                    ..Usage::default()
                },
                stdout: None,
                stderr: None,
                outputs: vec![],
                sealed_digest: None,
            }],
            self.now_ms,
            &self.entropy,
            &mut self.out,
        );
        self.pool.check_invariants();
        acks[0].accepted
    }

    fn upload(&mut self, node: NodeId, attempt: AttemptId, bytes: &[u8]) -> Result<(), String> {
        self.pool.record_upload(
            node,
            attempt,
            BlobHash::of(bytes),
            bytes.len() as u64,
            self.now_ms,
            &mut self.out,
        )
    }

    fn job_limited(&mut self, tasks: usize, limits: wire::Limits) -> JobId {
        self.job_with(tasks, 3, limits)
    }

    fn send(&mut self, node: NodeId, report: AttemptReport) -> wire::ReportAck {
        let acks = self.pool.report(
            node,
            vec![report],
            self.now_ms,
            &self.entropy,
            &mut self.out,
        );
        self.pool.check_invariants();
        acks.into_iter().next().unwrap()
    }

    fn status(&self, job: JobId) -> wire::JobStatus {
        self.pool.job_status(job, OWNER).unwrap()
    }
}

#[test]
fn tasks_are_granted_up_to_free_slots_and_each_succeeds_once() {
    let mut h = Harness::new();
    let node = h.node(1, 4);
    let job = h.job(6, 3);
    let first = h.take(node, 4);
    assert_eq!(first.len(), 4);
    assert_eq!(h.status(job).tasks.running, 4);
    for grant in &first {
        assert!(h.report(node, grant.attempt_id, Outcome::Succeeded));
        assert!(
            !h.report(node, grant.attempt_id, Outcome::Succeeded),
            "a second report of the same attempt is refused"
        );
    }
    let rest = h.take(node, 4);
    assert_eq!(rest.len(), 2);
    for grant in &rest {
        assert!(h.report(node, grant.attempt_id, Outcome::Succeeded));
    }
    let status = h.status(job);
    assert_eq!(status.state, JobState::Completed);
    assert_eq!(status.tasks.succeeded, 6);
    assert_eq!(status.nodes[0].tasks_succeeded, 6);
    assert_eq!(status.fuel_used, 60);
    assert!(h.out.writes.iter().any(|w| matches!(
        w,
        Write::FinishJob {
            state: JobState::Completed,
            ..
        }
    )));
}

#[test]
fn attempts_take_their_ids_in_order_and_never_one_twice() {
    let mut h = Harness::new();
    let (one, two) = (h.node(1, 3), h.node(2, 3));
    h.job(5, 3);
    let mut ids: Vec<u64> = h.take(one, 3).iter().map(|g| g.attempt_id.0).collect();
    ids.extend(h.take(two, 1).iter().map(|g| g.attempt_id.0));
    let first = ids[0];
    assert_eq!(ids, (first..first + 4).collect::<Vec<_>>());
    // Run as a command, the lease's events are replayed on a follower, which must have taken
    // the same ids (the harness compares the two).
    let (again, _) = h.run(Lease {
        node: two,
        slots_free: 2,
    });
    let again: Vec<u64> = again.attempts.iter().map(|g| g.attempt_id.0).collect();
    assert_eq!(again, [first + 4]);
}

#[test]
fn an_expired_lease_requeues_its_task_and_its_late_report_is_refused() {
    let mut h = Harness::new();
    let dead = h.node(1, 1);
    let alive = h.node(2, 1);
    let job = h.job(1, 3);
    let grant = h.take(dead, 1).remove(0);
    h.now_ms += LEASE_MS / 2;
    h.pool.heard(alive, h.now_ms, &mut h.out);
    h.now_ms += LEASE_MS / 2 + 1;
    assert_eq!(h.pool.expire(h.now_ms, &mut h.out), 1);
    h.pool.check_invariants();
    assert_eq!(h.status(job).tasks.pending, 1);
    let again = h.take(alive, 1).remove(0);
    assert_eq!(again.task_index, grant.task_index);
    assert_ne!(again.attempt_id, grant.attempt_id);
    assert!(
        !h.report(dead, grant.attempt_id, Outcome::Succeeded),
        "the fencing token is stale"
    );
    assert_eq!(
        h.status(job).tasks.succeeded,
        0,
        "the refused report changed nothing"
    );
    assert!(h.report(alive, again.attempt_id, Outcome::Succeeded));
    let status = h.status(job);
    assert_eq!(
        (status.state, status.tasks.succeeded, status.attempts),
        (JobState::Completed, 1, 2)
    );
}

#[test]
fn a_task_whose_nodes_keep_vanishing_fails_as_lost_after_max_attempts() {
    let mut h = Harness::new();
    let job = h.job(1, 2);
    for round in 0..2 {
        let node = h.node(10 + round, 1);
        assert_eq!(h.take(node, 1).len(), 1);
        h.now_ms += LEASE_MS + 1;
        h.pool.expire(h.now_ms, &mut h.out);
        h.pool.check_invariants();
    }
    let status = h.status(job);
    assert_eq!((status.state, status.tasks.failed), (JobState::Failed, 1));
    let lost = h.out.writes.iter().any(|w| match w {
        Write::EndAttempts(ends) => ends.iter().any(|end| {
            end.task_end
                .as_ref()
                .is_some_and(|t| t.outcome == Outcome::Lost { attempts: 2 })
        }),
        _ => false,
    });
    assert!(lost);
}

#[test]
fn guest_failures_are_final_and_node_errors_are_retried() {
    let mut h = Harness::new();
    let node = h.node(1, 2);
    let job = h.job(2, 3);
    let grants = h.take(node, 2);
    assert!(h.report(node, grants[0].attempt_id, Outcome::OutOfFuel));
    assert!(h.report(
        node,
        grants[1].attempt_id,
        Outcome::NodeError {
            message: "disk".into()
        }
    ));
    let status = h.status(job);
    assert_eq!((status.tasks.failed, status.tasks.pending), (1, 1));
    let retry = h.take(node, 2);
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].task_index, grants[1].task_index);
}

#[test]
fn exit_codes_the_job_names_succeed_and_others_fail() {
    let mut h = Harness::new();
    let node = h.node(1, 3);
    let job = h.job_from(3, 3, |job| job.success_exit_codes = vec![10, 20]);
    let grants = h.take(node, 3);
    for (grant, code) in grants.iter().zip([10, 20, 11]) {
        assert!(h.report(node, grant.attempt_id, Outcome::ExitCode { code }));
    }
    let status = h.status(job);
    assert_eq!((status.tasks.succeeded, status.tasks.failed), (2, 1));
    assert_eq!(status.state, JobState::Failed);
    let ends: Vec<store::AttemptEndState> = h
        .out
        .writes
        .iter()
        .filter_map(|write| match write {
            Write::EndAttempts(ends) => Some(ends.iter().map(|end| end.state).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        ends,
        [
            store::AttemptEndState::Succeeded,
            store::AttemptEndState::Succeeded,
            store::AttemptEndState::Failed
        ]
    );
}

#[test]
fn a_report_from_another_node_is_refused() {
    let mut h = Harness::new();
    let holder = h.node(1, 1);
    let thief = h.node(2, 1);
    h.job(1, 3);
    let grant = h.take(holder, 1).remove(0);
    assert!(!h.report(thief, grant.attempt_id, Outcome::Succeeded));
    assert!(h.report(holder, grant.attempt_id, Outcome::Succeeded));
}

#[test]
fn released_attempts_run_again_without_counting() {
    let mut h = Harness::new();
    let node = h.node(1, 1);
    let job = h.job(1, 1);
    let grant = h.take(node, 1).remove(0);
    let released = h
        .pool
        .release(node, &[grant.attempt_id], h.now_ms, &mut h.out);
    assert_eq!(released, vec![grant.attempt_id]);
    h.pool.check_invariants();
    assert_eq!(h.status(job).attempts, 0);
    let again = h.take(node, 1).remove(0);
    assert!(
        h.report(node, again.attempt_id, Outcome::Succeeded),
        "max_attempts 1 still allows it"
    );
}

#[test]
fn cancelling_a_job_ends_its_tasks_and_heartbeats_tell_nodes_to_stop() {
    let mut h = Harness::new();
    let node = h.node(1, 2);
    let job = h.job(5, 3);
    let grants = h.take(node, 2);
    h.pool.cancel_job(job, OWNER, h.now_ms, &mut h.out).unwrap();
    h.pool.check_invariants();
    let status = h.status(job);
    assert_eq!(
        (status.state, status.tasks.cancelled),
        (JobState::Cancelled, 5)
    );
    assert!(h.take(node, 2).is_empty());
    let response = h.beat(node, grants.iter().map(|g| g.attempt_id).collect());
    assert_eq!(response.cancel.len(), 2);
    assert!(!h.report(node, grants[0].attempt_id, Outcome::Succeeded));
    assert_eq!(
        h.pool.cancel_job(job, OWNER, h.now_ms, &mut h.out),
        Err(PoolError::Conflict(format!(
            "job {job} already ended (cancelled); nothing to cancel"
        )))
    );
}

#[test]
fn another_requesters_job_is_not_found() {
    let mut h = Harness::new();
    let job = h.job(1, 1);
    assert!(matches!(
        h.pool.job_status(job, RequesterId(99)),
        Err(PoolError::NotFound(_))
    ));
    assert!(
        h.pool
            .cancel_job(job, RequesterId(99), h.now_ms, &mut h.out)
            .is_err()
    );
    assert_eq!(h.status(job).state, JobState::Running);
}

#[test]
fn waiting_nodes_get_work_when_it_arrives_spread_across_them() {
    let mut h = Harness::new();
    let mut receivers = Vec::new();
    for id in 1..=3 {
        let node = h.node(id, 2);
        let receiver = h.park(node, id, 2);
        receivers.push(receiver);
    }
    h.job(3, 1);
    h.follow();
    h.pool.check_invariants();
    for mut receiver in receivers {
        assert_eq!(
            receiver.try_recv().unwrap().attempts.len(),
            1,
            "one task per node"
        );
    }
}

#[test]
fn work_for_a_waiter_that_went_away_goes_back_to_the_queue() {
    let mut h = Harness::new();
    let node = h.node(1, 2);
    let receiver = h.park(node, 1, 2);
    drop(receiver);
    let job = h.job(2, 1);
    h.follow();
    h.pool.check_invariants();
    assert_eq!(h.status(job).tasks.pending, 2);
    assert_eq!(h.take(node, 2).len(), 2);
}

/// Found by the simulator: a grant that never reached its waiter was reverted, but
/// the lease it had extended stayed extended, so a node whose request went away kept its other
/// attempts past its lease.
#[test]
fn only_a_delivered_grant_extends_the_lease_of_a_waiting_node() {
    let mut h = Harness::new();
    let node = h.node(1, 2);
    let lease_until_ms = h.pool.nodes[&node].lease_until_ms;
    drop(h.park(node, 1, 2));
    h.now_ms += LEASE_MS / 2;
    h.job(2, 1);
    h.follow();
    assert_eq!(
        h.pool.nodes[&node].lease_until_ms, lease_until_ms,
        "a reverted grant leaves the lease as it was"
    );
    let mut receiver = h.park(node, 2, 2);
    h.job(1, 1);
    h.follow();
    h.pool.check_invariants();
    assert_eq!(receiver.try_recv().unwrap().attempts.len(), 2);
    assert_eq!(
        h.pool.nodes[&node].lease_until_ms,
        h.now_ms + LEASE_MS,
        "a delivered grant gives the node a whole term"
    );
}

#[test]
fn a_node_that_stops_listing_an_attempt_loses_it_once_unlisted_for_a_lease() {
    let mut h = Harness::new();
    let node = h.node(1, 1);
    let job = h.job(1, 3);
    h.take(node, 1);
    h.now_ms += LEASE_MS + 1;
    h.beat(node, vec![]);
    h.pool.check_invariants();
    assert_eq!(
        h.status(job).tasks.running,
        1,
        "its report may be on its way"
    );
    h.now_ms += LEASE_MS + 1;
    h.beat(node, vec![]);
    h.pool.check_invariants();
    assert_eq!(h.status(job).tasks.pending, 1);
}

/// Found by the simulator: an agent lists in its heartbeats only the attempts that still run,
/// so a heartbeat that overtook the report of a finished attempt had the attempt expired as
/// lost and its report refused; with one attempt allowed, a task that succeeded failed.
#[test]
fn a_report_that_a_heartbeat_overtook_is_taken() {
    let mut h = Harness::new();
    let node = h.node(1, 1);
    let job = h.job(1, 1);
    let attempt = h.take(node, 1)[0].attempt_id;
    h.now_ms += 2 * LEASE_MS;
    h.beat(node, vec![]);
    h.now_ms += LEASE_MS / 2;
    h.beat(node, vec![]);
    assert!(h.report(node, attempt, Outcome::Succeeded));
    h.pool.check_invariants();
    assert_eq!(h.status(job).state, JobState::Completed);
}

#[test]
fn a_re_registered_node_loses_the_attempts_of_its_previous_run() {
    let mut h = Harness::new();
    let node = h.node(1, 1);
    let job = h.job(1, 3);
    let grant = h.take(node, 1).remove(0);
    h.node(1, 1);
    h.pool.check_invariants();
    assert_eq!(h.status(job).tasks.pending, 1);
    assert!(!h.report(node, grant.attempt_id, Outcome::Succeeded));
}

#[test]
fn a_paused_node_gets_no_work() {
    let mut h = Harness::new();
    let node = h.node(1, 1);
    h.job(1, 3);
    h.pool.heartbeat(
        node,
        &HeartbeatRequest {
            running: vec![],
            slots_free: 1,
            activity: NodeActivity::Paused {
                reason: "owner is typing".into(),
            },
            capabilities: None,
            forgotten: Vec::new(),
            copied: Vec::new(),
            kept: Vec::new(),
            dropped: Vec::new(),
        },
        h.now_ms,
        &mut h.out,
    );
    assert!(h.take(node, 1).is_empty());
}

#[test]
fn a_report_may_name_only_blobs_this_node_uploaded_for_this_attempt() {
    let mut h = Harness::new();
    let node = h.node(1, 2);
    let other = h.node(2, 1);
    let job = h.job(3, 3);
    let grants = h.take(node, 2);
    let (mine, sibling) = (grants[0].attempt_id, grants[1].attempt_id);
    let elsewhere = h.take(other, 1).remove(0).attempt_id;
    let stdout = |bytes: &[u8]| BlobRef {
        hash: BlobHash::of(bytes),
        size_bytes: bytes.len() as u64,
    };
    let report = |attempt, blob: BlobRef| AttemptReport {
        stdout: Some(blob),
        ..report(attempt, Outcome::Succeeded)
    };
    // Uploaded by this node for its other attempt, by another node, or by no one: all refused.
    h.upload(node, sibling, b"sibling's").unwrap();
    h.upload(other, elsewhere, b"the other node's").unwrap();
    assert!(
        h.upload(other, mine, b"x").is_err(),
        "no uploads for attempts held elsewhere"
    );
    for named in [
        &b"sibling's"[..],
        b"the other node's",
        b"the requester's input",
    ] {
        let ack = h.send(node, report(mine, stdout(named)));
        assert!(
            !ack.accepted,
            "{:?} is not this attempt's",
            String::from_utf8_lossy(named)
        );
        assert!(ack.message.unwrap().contains("not uploaded by this node"));
    }
    assert_eq!(
        h.status(job).tasks.running,
        3,
        "a refused report changes nothing"
    );

    h.upload(node, mine, b"out").unwrap();
    let mut claimed = stdout(b"out");
    claimed.size_bytes = 1 << 40;
    assert!(h.send(node, report(mine, claimed)).accepted);
    let writes = &h.out.writes;
    let end = writes.iter().rev().find_map(|w| match w {
        Write::EndAttempts(ends) => ends.first().cloned(),
        _ => None,
    });
    assert_eq!(
        end.unwrap().stdout.unwrap().size_bytes,
        3,
        "sizes are the measured ones"
    );
    assert!(h.out.writes.iter().any(|w| matches!(
        w,
        Write::AddBlobReaders { reader, hashes, .. } if *reader == OWNER && hashes == &[(BlobHash::of(b"out"), 3)]
    )));
    assert!(
        h.upload(node, mine, b"late").is_err(),
        "an ended attempt takes no uploads"
    );
}

/// A report of `attempt` that ended with `outcome` and left nothing.
pub(super) fn report(attempt: AttemptId, outcome: Outcome) -> AttemptReport {
    AttemptReport {
        ran_on: None,
        attempt_id: attempt,
        outcome,
        usage: Usage::default(),
        stdout: None,
        stderr: None,
        outputs: vec![],
        sealed_digest: None,
    }
}

#[test]
fn reports_keep_the_jobs_output_limits_with_sizes_as_uploaded() {
    let mut h = Harness::new();
    let node = h.node(1, 1);
    let limits = wire::Limits {
        output_bytes_max: 1 << 20,
        output_files_max: 10,
        stdout_bytes_max: 4 << 20,
        stderr_bytes_max: 1 << 10,
        ..wire::Limits::default()
    };
    let job = h.job_limited(1, limits);
    let attempt = h.take(node, 1).remove(0).attempt_id;
    let big = vec![7u8; 4 << 20];
    h.upload(node, attempt, &big).unwrap();
    let output = |path: String| wire::OutputFile {
        path,
        hash: BlobHash::of(&big),
        size_bytes: 1,
    };
    let outputs = |count: usize| (0..count).map(|i| output(format!("f{i}"))).collect();
    let base = report(attempt, Outcome::Succeeded);
    let too_many = AttemptReport {
        outputs: outputs(2_000),
        ..base.clone()
    };
    assert!(
        h.send(node, too_many)
            .message
            .unwrap()
            .contains("output files")
    );
    let too_large = AttemptReport {
        outputs: outputs(1),
        ..base.clone()
    };
    assert!(h.send(node, too_large).message.unwrap().contains("bytes"));
    let stderr_too_large = AttemptReport {
        stderr: Some(BlobRef {
            hash: BlobHash::of(&big),
            size_bytes: 1,
        }),
        ..base.clone()
    };
    assert!(
        h.send(node, stderr_too_large)
            .message
            .unwrap()
            .contains("stderr")
    );
    assert!(
        h.upload(node, attempt, &vec![1u8; 2 << 20]).is_err(),
        "uploads stop at the caps of stdout, stderr and /output together"
    );
    assert_eq!(h.status(job).tasks.running, 1, "nothing was taken");
    let fits = AttemptReport {
        stdout: Some(BlobRef {
            hash: BlobHash::of(&big),
            size_bytes: 1,
        }),
        ..base
    };
    assert!(h.send(node, fits).accepted);
}

#[test]
fn fuel_past_the_jobs_allowance_is_refused_and_fuel_totals_saturate() {
    let mut h = Harness::new();
    let node = h.node(1, 2);
    let limits = wire::Limits {
        fuel_max: wire::limits::ceiling::FUEL_MAX,
        ..wire::Limits::default()
    };
    let job = h.job_limited(40, limits);
    let claim = |attempt, fuel_used| AttemptReport {
        ran_on: None,
        attempt_id: attempt,
        outcome: Outcome::ExitCode { code: 1 },
        usage: Usage {
            fuel_used,
            wall_ms: u64::MAX,
            memory_peak_bytes: u64::MAX,
            output_bytes: u64::MAX,
            compile_ms: u64::MAX,
        },
        stdout: None,
        stderr: None,
        outputs: vec![],
        sealed_digest: None,
    };
    let attempt = h.take(node, 1).remove(0).attempt_id;
    let ack = h.send(node, claim(attempt, i64::MAX as u64));
    assert!(!ack.accepted && ack.message.unwrap().contains("fuel"));
    assert!(h.send(node, claim(attempt, limits.fuel_max)).accepted);
    let usage = h
        .out
        .writes
        .iter()
        .rev()
        .find_map(|w| match w {
            Write::EndAttempts(ends) => ends[0].usage,
            _ => None,
        })
        .unwrap();
    assert_eq!(usage.wall_ms, 0, "no longer than since the grant");
    assert_eq!(usage.compile_ms, 0, "nor compiling");
    assert_eq!(usage.memory_peak_bytes, limits.memory_bytes_max);
    assert_eq!(usage.output_bytes, 0, "output bytes are the measured ones");
    // Honest attempts at the ceiling, many times over, saturate rather than wrap.
    // Set on both sides: the test goes on from a job that used that much.
    h.settle();
    h.pool.jobs.get_mut(&job).unwrap().fuel_total = u64::MAX - 1;
    h.follower.jobs.get_mut(&job).unwrap().fuel_total = u64::MAX - 1;
    let attempt = h.take(node, 1).remove(0).attempt_id;
    assert!(h.send(node, claim(attempt, limits.fuel_max)).accepted);
    assert_eq!(h.pool.jobs[&job].fuel_total, u64::MAX);
}

#[test]
fn a_node_gets_no_more_attempts_than_the_slots_it_registered() {
    let mut h = Harness::new();
    let node = h.node(1, 1);
    h.job(300, 3);
    assert_eq!(
        h.take(node, 1024).len(),
        1,
        "asking for more slots gets one"
    );
    assert!(h.take(node, 1024).is_empty(), "and nothing while it runs");
    let _receiver = h.park(node, 1, 1024);
    h.follow();
    h.pool.check_invariants();
    assert_eq!(h.pool.attempts_live(), 1, "nor by waiting for work");
}

#[test]
fn an_attempt_past_its_deadline_and_grace_ends_whatever_the_heartbeats_say() {
    let mut h = Harness::new();
    let node = h.node(1, 1);
    let limits = wire::Limits {
        deadline_ms: 2_000,
        output_bytes_max: 0,
        stdout_bytes_max: 0,
        stderr_bytes_max: 0,
        ..wire::Limits::default()
    };
    let job = h.job_limited(1, limits);
    let attempt = h.take(node, 1).remove(0).attempt_id;
    let grace_ms = 3 * LEASE_MS;
    let heartbeat = |h: &mut Harness, activity: NodeActivity| {
        let request = HeartbeatRequest {
            running: vec![attempt],
            activity,
            ..HeartbeatRequest::default()
        };
        h.pool.heartbeat(node, &request, h.now_ms, &mut h.out);
        h.pool.expire(h.now_ms, &mut h.out);
        h.pool.check_invariants();
    };
    // Paused for 5 s: the sandbox's deadline stood still, so the end moves back by as much.
    heartbeat(
        &mut h,
        NodeActivity::Paused {
            reason: "owner".to_owned(),
        },
    );
    h.now_ms += 5_000;
    heartbeat(&mut h, NodeActivity::Active);
    let end_ms = h.now_ms - 5_000 + 2_000 + grace_ms + 5_000;
    while h.now_ms + 250 < end_ms {
        h.now_ms += 250;
        heartbeat(&mut h, NodeActivity::Active);
        assert_eq!(
            h.status(job).tasks.running,
            1,
            "still within its time at {}",
            h.now_ms
        );
    }
    h.now_ms = end_ms;
    heartbeat(&mut h, NodeActivity::Active);
    assert_eq!(
        h.pool.attempts_live(),
        0,
        "heartbeats do not keep it past its time"
    );
    assert_eq!(h.status(job).tasks.pending, 1, "its task runs again");
    assert!(
        !h.report(node, attempt, Outcome::Succeeded),
        "a late report is refused"
    );

    // A node that claims to be paused for ever holds an attempt at most the pause allowance.
    let attempt = h.take(node, 1).remove(0).attempt_id;
    let granted_ms = h.now_ms;
    heartbeat(
        &mut h,
        NodeActivity::Paused {
            reason: "owner".to_owned(),
        },
    );
    h.now_ms = granted_ms + 2_000 + grace_ms + PAUSE_ALLOWANCE_MS;
    heartbeat(
        &mut h,
        NodeActivity::Paused {
            reason: "owner".to_owned(),
        },
    );
    assert!(!h.pool.attempts.contains_key(&attempt));
}

#[test]
fn waiting_nodes_get_only_the_jobs_whose_requirements_they_meet() {
    let mut h = Harness::new();
    let one = h.labeled_node(1, 1, &[("box", "one")]);
    let two = h.labeled_node(2, 1, &[("box", "two")]);
    let mut receivers = Vec::new();
    for (request, node) in [one, two].into_iter().enumerate() {
        let receiver = h.park(node, request as u64, 1);
        receivers.push(receiver);
    }
    let id = JobId(h.entropy.next_u64());
    let mut submission = JobSubmission {
        name: "pinned".to_owned(),
        module: BlobHash::of(b"module"),
        env: BTreeMap::new(),
        mounts: vec![],
        requirements: Default::default(),
        limits: Default::default(),
        max_attempts: 1,
        replicas: 1,
        deterministic: None,
        verify: None,
        validator: None,
        success_exit_codes: Vec::new(),
        tasks: vec![TaskSpec::default(); 3],
        checkpoint: None,
        on_failure: None,
        private: None,
    };
    submission
        .requirements
        .labels
        .insert("box".to_owned(), "one".to_owned());
    h.pool.add_job(
        NewJob {
            id,
            requester: OWNER,
            submission,
            module_bytes: 1 << 10,
            component: false,
            wasm_features: Vec::new(),
        },
        h.now_ms,
        &mut h.out,
    );
    h.follow();
    h.pool.check_invariants();
    assert_eq!(receivers[0].try_recv().unwrap().attempts.len(), 1);
    assert!(
        receivers[1].try_recv().is_err(),
        "the node that does not fit still waits"
    );
    assert_eq!(h.take(two, 1).len(), 0);
}

#[test]
fn a_task_whose_node_vanished_runs_before_the_tasks_still_waiting() {
    let mut h = Harness::new();
    let dead = h.node(1, 1);
    let alive = h.node(2, 1);
    h.job(5, 3);
    let lost = h.take(dead, 1).remove(0);
    h.now_ms += LEASE_MS / 2;
    h.pool.heard(alive, h.now_ms, &mut h.out);
    h.now_ms += LEASE_MS / 2 + 1;
    h.pool.expire(h.now_ms, &mut h.out);
    let next = h.take(alive, 1).remove(0);
    assert_eq!(next.task_index, lost.task_index, "the lost task goes first");
}

#[test]
fn ended_jobs_keep_their_counts_but_not_their_task_tables() {
    let mut h = Harness::new();
    let node = h.node(1, 1);
    let jobs_run = JOBS_SENT_MAX * 2 + 10;
    for _ in 0..jobs_run {
        let job = h.job(1, 1);
        let response = h.pool.take_work(node, 1, h.now_ms, &mut h.out);
        assert_eq!(
            response.jobs.len(),
            1,
            "a node is sent the runtime of a job new to it"
        );
        assert!(h.report(node, response.attempts[0].attempt_id, Outcome::Succeeded));
        let status = h.status(job);
        assert_eq!(status.state, JobState::Completed);
        assert_eq!(status.tasks.succeeded, 1);
        assert!(h.pool.jobs[&job].tasks.is_empty());
    }
    assert!(
        h.pool.nodes[&node].jobs_sent.len() <= JOBS_SENT_MAX,
        "a node's sent-runtimes set is bounded, not one entry per job it ever ran"
    );
    let cancelled = h.job(3, 1);
    h.pool
        .cancel_job(cancelled, OWNER, h.now_ms, &mut h.out)
        .unwrap();
    assert!(h.pool.jobs[&cancelled].tasks.is_empty());
    assert_eq!(h.status(cancelled).tasks.cancelled, 3);
    h.pool.check_invariants();
}

#[test]
fn only_jobs_that_ended_before_the_cutoff_are_purged() {
    let mut h = Harness::new();
    let node = h.node(1, 1);
    let finish_one = |h: &mut Harness| {
        let job = h.job(1, 1);
        let grant = h.take(node, 1);
        assert!(h.report(node, grant[0].attempt_id, Outcome::Succeeded));
        job
    };
    let old = finish_one(&mut h);
    h.now_ms += 10_000;
    let recent = finish_one(&mut h);
    let running = h.job(1, 1);
    h.out.writes.clear();

    let purged = h.pool.purge_ended(h.now_ms - 5_000, 100, &mut h.out);
    assert_eq!(purged, 1);
    assert_eq!(h.out.writes, vec![Write::PurgeJobs(vec![old])]);
    assert!(matches!(
        h.pool.job_status(old, OWNER),
        Err(PoolError::NotFound(_))
    ));
    assert_eq!(h.status(recent).state, JobState::Completed);
    assert_eq!(h.status(running).state, JobState::Running);
    h.pool.check_invariants();

    h.now_ms += 1_000_000;
    assert_eq!(h.pool.purge_ended(h.now_ms, 100, &mut h.out), 1);
    assert_eq!(
        h.status(running).state,
        JobState::Running,
        "a running job is never purged"
    );
}

#[test]
fn a_node_that_lends_less_gets_only_the_work_that_fits_what_it_lends_now() {
    let mut h = Harness::new();
    let node = h.node(1, 2);
    h.job_from(2, 1, |submission| {
        submission.requirements.memory_bytes_min = 4 << 30;
    });
    let mut lent = h.pool.nodes[&node].capabilities.clone();
    lent.memory_bytes = 2 << 30;
    let heartbeat = HeartbeatRequest {
        running: vec![],
        slots_free: 2,
        activity: NodeActivity::Active,
        capabilities: Some(lent.clone()),
        forgotten: Vec::new(),
        copied: Vec::new(),
        kept: Vec::new(),
        dropped: Vec::new(),
    };
    h.out.writes.clear();
    h.pool.heartbeat(node, &heartbeat, h.now_ms, &mut h.out);
    assert_eq!(
        h.out.writes,
        vec![Write::SetNodeCapabilities {
            node_id: node,
            capabilities: lent.clone(),
        }]
    );
    assert!(
        h.take(node, 2).is_empty(),
        "4 GiB tasks do not fit 2 GiB lent"
    );

    lent.memory_bytes = 8 << 30;
    let heartbeat = HeartbeatRequest {
        capabilities: Some(lent),
        ..heartbeat
    };
    h.pool.heartbeat(node, &heartbeat, h.now_ms, &mut h.out);
    assert_eq!(
        h.take(node, 2).len(),
        2,
        "they fit once the owner lends more"
    );
    h.pool.check_invariants();
}

#[test]
fn a_removed_node_gives_back_its_attempts_uncounted_and_stays_removed_after_a_restart() {
    let mut h = Harness::new();
    let node = h.node(1, 2);
    let job = h.job(2, 1);
    assert_eq!(h.take(node, 2).len(), 2);
    h.out.writes.clear();
    assert_eq!(h.pool.remove_node(node, h.now_ms, &mut h.out), Ok(2));
    h.pool.check_invariants();
    assert!(h.pool.is_removed(node));
    assert!(!h.pool.nodes.contains_key(&node));
    let status = h.status(job);
    assert_eq!((status.tasks.pending, status.attempts), (2, 0));
    assert!(h.out.writes.contains(&Write::DeleteNode { node_id: node }));
    assert!(matches!(
        h.pool.remove_node(node, h.now_ms, &mut h.out),
        Err(PoolError::NotFound(_))
    ));

    let meta: BTreeMap<String, String> = h
        .out
        .writes
        .iter()
        .filter_map(|write| match write {
            Write::SetMeta { key, value } => Some((key.clone(), value.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        trust::removed_nodes_in(&meta),
        HashSet::from([node]),
        "what a restart reads back"
    );
}

#[test]
fn unfinished_tasks_are_bounded_per_requester_and_for_the_pool() {
    let mut h = Harness::new();
    let node = h.node(1, 4);
    let max = UnfinishedMax {
        pool: 10,
        per_requester: 6,
        pool_bytes: u64::MAX,
        per_requester_bytes: u64::MAX,
    };
    let tasks = |tasks| Held { tasks, bytes: 0 };
    let job = h.job(4, 1);
    assert_eq!(h.pool.admit(OWNER, tasks(2), max), Ok(()));
    assert!(matches!(
        h.pool.admit(OWNER, tasks(3), max),
        Err(PoolError::TooMuchUnfinished(message)) if message.contains("you have 4 tasks unfinished")
    ));
    // Another requester still fits, up to the pool's bound.
    let other = RequesterId(2);
    assert_eq!(h.pool.admit(other, tasks(6), max), Ok(()));
    assert!(matches!(
        h.pool.admit(other, tasks(7), max),
        Err(PoolError::TooMuchUnfinished(_))
    ));
    // Tasks that end make room.
    for grant in h.take(node, 4) {
        assert!(h.report(node, grant.attempt_id, Outcome::Succeeded));
    }
    assert_eq!(h.status(job).state, JobState::Completed);
    assert_eq!(h.pool.admit(OWNER, tasks(6), max), Ok(()));
}

/// A submission of `tasks` tasks with `arg_bytes` bytes of args each.
fn args_heavy(tasks: usize, arg_bytes: usize) -> JobSubmission {
    JobSubmission {
        name: "heavy".to_owned(),
        module: BlobHash::of(b"module"),
        env: BTreeMap::from([("MODE".to_owned(), "x".repeat(1000))]),
        mounts: vec![],
        requirements: Default::default(),
        limits: Default::default(),
        max_attempts: 1,
        replicas: 1,
        deterministic: None,
        verify: None,
        validator: None,
        success_exit_codes: Vec::new(),
        tasks: (0..tasks)
            .map(|_| TaskSpec {
                args: vec!["a".repeat(arg_bytes)],
                ..TaskSpec::default()
            })
            .collect(),
        checkpoint: None,
        on_failure: None,
        private: None,
    }
}

fn add(h: &mut Harness, requester: RequesterId, submission: JobSubmission) -> JobId {
    let id = JobId(h.entropy.next_u64());
    h.pool.add_job(
        NewJob {
            id,
            requester,
            submission,
            module_bytes: 1 << 10,
            component: false,
            wasm_features: Vec::new(),
        },
        h.now_ms,
        &mut h.out,
    );
    h.pool.check_invariants();
    id
}

#[test]
fn bytes_of_unfinished_work_are_bounded_and_released_as_tasks_end() {
    let mut h = Harness::new();
    let node = h.node(1, 2);
    let heavy = args_heavy(4, 100_000);
    let held = Held::of_submission(&heavy);
    assert!(held.bytes > 400_000, "args are counted: {held:?}");
    let max = UnfinishedMax {
        pool: u64::MAX,
        per_requester: u64::MAX,
        pool_bytes: 3 * held.bytes,
        per_requester_bytes: 2 * held.bytes - 1,
    };
    assert_eq!(h.pool.admit(OWNER, held, max), Ok(()));
    let job = add(&mut h, OWNER, heavy.clone());
    assert_eq!(h.pool.held.of_requester(OWNER), held);
    let refused = h.pool.admit(OWNER, held, max);
    assert!(
        matches!(&refused, Err(PoolError::TooMuchUnfinished(message))
            if message.contains("your unfinished jobs hold") && message.contains("a requester may hold")),
        "{refused:?}"
    );

    // Tasks that end, however they end, give their bytes back; running ones keep them.
    let grants = h.take(node, 2);
    assert_eq!(
        h.pool.held.of_requester(OWNER),
        held,
        "running tasks still hold their specs"
    );
    assert!(h.report(node, grants[0].attempt_id, Outcome::Succeeded));
    assert!(h.report(node, grants[1].attempt_id, Outcome::ExitCode { code: 1 }));
    h.pool.check_invariants();
    let left = h.pool.held.of_requester(OWNER);
    assert_eq!(left.tasks, 2);
    assert!(left.bytes < held.bytes - 200_000, "{left:?} of {held:?}");

    // Other requesters fit until the pool's bound.
    let other = RequesterId(2);
    add(&mut h, other, heavy.clone());
    let refused = h.pool.admit(other, held, max);
    assert!(
        matches!(&refused, Err(PoolError::TooMuchUnfinished(message)) if message.contains("a requester may hold")),
        "{refused:?}"
    );
    add(&mut h, RequesterId(3), heavy.clone());
    let refused = h.pool.admit(RequesterId(4), held, max);
    assert!(
        matches!(&refused, Err(PoolError::TooMuchUnfinished(message)) if message.contains("the pool's unfinished jobs hold")),
        "{refused:?}"
    );
    assert_eq!(h.pool.admit(RequesterId(4), args_small(), max), Ok(()));
    // A cancelled job gives back its tasks and its runtime: nothing is left held.
    h.pool.cancel_job(job, OWNER, h.now_ms, &mut h.out).unwrap();
    h.pool.check_invariants();
    assert_eq!(h.pool.held.of_requester(OWNER), Held::default());
    assert_eq!(h.pool.admit(OWNER, held, max), Ok(()));
}

fn args_small() -> Held {
    Held::of_submission(&args_heavy(1, 10))
}

#[test]
fn each_change_names_only_what_it_may_give_waiting_nodes() {
    let mut h = Harness::new();
    let node = h.node(1, 2);
    let other = h.node(2, 2);
    h.pool.take_changes();
    let job = h.job(3, 2);
    let changes = h.pool.take_changes();
    assert!(changes.tasks_queued, "a new job's tasks join the queue");
    assert!(
        changes.jobs.is_empty(),
        "nobody can wait on a job not yet returned"
    );

    let granted = h.take(node, 2);
    let changes = h.pool.take_changes();
    assert!(!changes.tasks_queued && changes.nodes_freed.is_empty());
    assert_eq!(changes.jobs, vec![job], "a grant changes the job");

    h.beat(node, granted.iter().map(|grant| grant.attempt_id).collect());
    assert_eq!(
        h.pool.take_changes(),
        Changes::default(),
        "a heartbeat that changes nothing asks nothing of the waiting nodes"
    );

    assert!(h.report(node, granted[0].attempt_id, Outcome::Succeeded));
    let changes = h.pool.take_changes();
    assert!(!changes.tasks_queued, "a success queues nothing");
    assert_eq!(
        changes.nodes_freed,
        vec![node],
        "only the freed node may take more"
    );

    let mut receiver = h.park(other, 1, 2);
    h.pool
        .release(node, &[granted[1].attempt_id], h.now_ms, &mut h.out);
    h.follow();
    assert_eq!(
        receiver.try_recv().unwrap().attempts.len(),
        2,
        "a released task joins the queue again, and a parked node gets it with the rest"
    );
}

#[test]
fn replicas_run_on_different_waiting_nodes_and_the_first_success_stops_the_rest() {
    let mut h = Harness::new();
    let nodes = [h.node(1, 2), h.node(2, 2), h.node(3, 2)];
    let mut waiting: Vec<_> = nodes
        .iter()
        .zip(1..)
        .map(|(node, request)| (*node, h.park(*node, request, 2)))
        .collect();
    let job = h.job_from(1, 3, |job| job.replicas = 2);
    h.follow();
    let grants: Vec<(NodeId, AttemptId)> = waiting
        .iter_mut()
        .filter_map(|(node, receiver)| {
            let response = receiver.try_recv().ok()?;
            Some((*node, response.attempts.first()?.attempt_id))
        })
        .collect();
    assert_eq!(grants.len(), 2, "two replicas at once, one per node");
    assert_ne!(grants[0].0, grants[1].0);
    assert_eq!(
        (h.status(job).tasks.running, h.status(job).attempts),
        (1, 2)
    );

    let ((loser, stopped), (winner, first)) = (grants[0], grants[1]);
    assert!(h.report(winner, first, Outcome::Succeeded));
    let response = h.beat(loser, vec![stopped]);
    assert_eq!(
        response.cancel,
        vec![stopped],
        "the other replica is told to stop"
    );
    assert!(
        !h.report(loser, stopped, Outcome::Succeeded),
        "its late report is refused"
    );
    let status = h.status(job);
    assert_eq!(
        (status.state, status.tasks.succeeded),
        (JobState::Completed, 1)
    );
}

#[test]
fn queued_work_reaches_many_waiting_nodes_a_bounded_round_at_a_time() {
    use crate::parked::OFFERS_PER_ROUND_MAX;
    let mut h = Harness::new();
    let count = 2 * OFFERS_PER_ROUND_MAX + 10;
    let mut receivers: Vec<_> = (1..=count as u64)
        .map(|id| {
            let node = h.node(id, 1);
            h.park(node, id, 1)
        })
        .collect();
    h.job(count, 1);
    let mut granted_by_round = Vec::new();
    loop {
        let before = h.pool.attempts_live();
        let sweeping = h
            .parked
            .follow(&mut h.pool, h.now_ms, &h.entropy, &mut h.out);
        granted_by_round.push(h.pool.attempts_live() - before);
        if !sweeping {
            break;
        }
    }
    assert_eq!(
        granted_by_round,
        [OFFERS_PER_ROUND_MAX, OFFERS_PER_ROUND_MAX, 10],
        "each round offers work to at most its share of the waiting nodes"
    );
    for receiver in &mut receivers {
        assert_eq!(receiver.try_recv().unwrap().attempts.len(), 1);
    }
}

/// A node of `id` that compiles modules up to `module_bytes_max`.
fn compiling_node(h: &mut Harness, id: u64, module_bytes_max: u64) -> NodeId {
    let mut node = new_node(id, 2, &[], "join");
    node.capabilities.module_bytes_max = module_bytes_max;
    h.pool.register(node, h.now_ms, &mut h.out);
    NodeId(id)
}

/// Submits a one-task job whose module is `module_bytes`: its id, and the kinds of the events
/// the submission made.
fn submit_module(
    h: &mut Harness,
    module_bytes: u64,
) -> (Result<JobId, PoolError>, Vec<&'static str>) {
    submit_program(h, module_bytes, None)
}

/// [`submit_module`] for a core module (`component_imports` `None`) or a component.
fn submit_program(
    h: &mut Harness,
    module_bytes: u64,
    component_imports: Option<Vec<String>>,
) -> (Result<JobId, PoolError>, Vec<&'static str>) {
    submit_needing(h, module_bytes, component_imports, Vec::new())
}

/// [`submit_program`] for a module that uses the WebAssembly proposals `wasm_features`.
fn submit_needing(
    h: &mut Harness,
    module_bytes: u64,
    component_imports: Option<Vec<String>>,
    wasm_features: Vec<String>,
) -> (Result<JobId, PoolError>, Vec<&'static str>) {
    let roomy = UnfinishedMax {
        pool: 100,
        per_requester: 100,
        pool_bytes: u64::MAX,
        per_requester_bytes: u64::MAX,
    };
    let submit = Submit {
        requester: OWNER,
        submission: JobSubmission::new("job", BlobHash::of(b"m"), vec![TaskSpec::default()]),
        module_bytes,
        component_imports,
        wasm_features,
        adding: Held { tasks: 1, bytes: 1 },
        unfinished_max: roomy,
        reusable: Vec::new(),
    };
    let (submitted, kinds) = h.run(submit);
    (submitted.map(|submitted| submitted.job_id), kinds)
}

#[test]
fn job_ids_grow_with_their_submission_time_and_differ_within_a_millisecond() {
    let mut h = Harness::new();
    compiling_node(&mut h, 1, 16 << 20);
    let submitted_ms = h.now_ms;
    let first = submit_module(&mut h, 1 << 10).0.unwrap();
    let second = submit_module(&mut h, 1 << 10).0.unwrap();
    h.now_ms += 1;
    let later = submit_module(&mut h, 1 << 10).0.unwrap();
    assert_ne!(first, second, "two jobs of one millisecond");
    for (id, at_ms) in [
        (first, submitted_ms),
        (second, submitted_ms),
        (later, h.now_ms),
    ] {
        assert_eq!(
            id.0 >> 22,
            at_ms,
            "{id} carries its submission's millisecond"
        );
    }
    assert!(later > first && later > second);
}

#[test]
fn a_module_no_node_compiles_is_refused_and_one_goes_only_to_nodes_that_compile_it() {
    let mut h = Harness::new();
    let small = compiling_node(&mut h, 1, 16 << 20);
    let (refused, kinds) = submit_module(&mut h, 32 << 20);
    let refused = format!("{:?}", refused.unwrap_err());
    assert!(kinds.is_empty(), "the refusal changed nothing");
    assert!(
        refused.contains(
            "the module is 32.0 MiB and the largest module any node of this pool \
             compiles is 16.0 MiB (node1)"
        ),
        "{refused}"
    );

    let roomy = compiling_node(&mut h, 2, 256 << 20);
    let job = submit_module(&mut h, 32 << 20).0.unwrap();
    assert!(h.take(small, 2).is_empty(), "the small node never gets it");
    // With the node that compiles it offline, the job waits and says why.
    h.now_ms += 10 * LEASE_MS;
    h.beat(small, vec![]);
    let why = h.pool.why(job, OWNER, h.now_ms).unwrap().reasons;
    assert_eq!(
        why,
        [
            "the module is 32.0 MiB and no online node compiles modules that large (the most is 16.0 MiB)"
        ]
    );
    h.beat(roomy, vec![]);
    assert_eq!(h.take(roomy, 2).len(), 1);
}

#[test]
fn a_component_goes_only_to_nodes_that_run_components_and_one_importing_more_is_refused() {
    let mut h = Harness::new();
    let older = compiling_node(&mut h, 1, 256 << 20);
    let imports = vec![
        "wasi:cli/stdout@0.2.6".to_owned(),
        "wasi:filesystem/types@0.2.6".to_owned(),
    ];
    let (refused, kinds) = submit_program(&mut h, 1 << 10, Some(imports.clone()));
    let refused = format!("{:?}", refused.unwrap_err());
    assert!(kinds.is_empty(), "the refusal changed nothing");
    assert!(
        refused.contains("no node of this pool runs components"),
        "{refused}"
    );

    let mut node = new_node(2, 2, &[], "join");
    node.capabilities.wasi_interfaces = vec![
        "wasi:cli/stdout".to_owned(),
        "wasi:filesystem/types".to_owned(),
    ];
    h.pool.register(node, h.now_ms, &mut h.out);
    let newer = NodeId(2);
    let mut networked = imports.clone();
    networked.push("wasi:sockets/tcp@0.2.6".to_owned());
    let (refused, kinds) = submit_program(&mut h, 1 << 10, Some(networked));
    let refused = format!("{:?}", refused.unwrap_err());
    assert!(kinds.is_empty(), "the refusal changed nothing");
    assert!(
        refused.contains("imports wasi:sockets/tcp@0.2.6") && refused.contains("network"),
        "{refused}"
    );

    let job = submit_program(&mut h, 1 << 10, Some(imports)).0.unwrap();
    assert!(h.take(older, 2).is_empty(), "the older node never gets it");
    h.now_ms += 10 * LEASE_MS;
    h.beat(older, vec![]);
    let why = h.pool.why(job, OWNER, h.now_ms).unwrap().reasons;
    assert_eq!(
        why,
        [
            "the module is a WASI 0.2 component and no online node runs components (their \
          agents are older than components)"
        ]
    );
    h.beat(newer, vec![]);
    assert_eq!(h.take(newer, 2).len(), 1);
}

#[test]
fn a_module_goes_only_to_nodes_that_compile_its_proposals_and_one_none_compiles_is_refused() {
    let mut h = Harness::new();
    let node_compiling = |h: &mut Harness, id: u64, features: &[&str]| {
        let mut node = new_node(id, 2, &[], "join");
        node.capabilities.wasm_features = features.iter().map(|f| (*f).to_owned()).collect();
        h.pool.register(node, h.now_ms, &mut h.out);
        NodeId(id)
    };
    let plain = node_compiling(&mut h, 1, &["bulk-memory", "simd"]);
    let needs = vec!["memory64".to_owned(), "simd".to_owned()];
    let (refused, kinds) = submit_needing(&mut h, 1 << 10, None, needs.clone());
    let refused = format!("{:?}", refused.unwrap_err());
    assert!(kinds.is_empty(), "the refusal changed nothing");
    assert!(
        refused.contains("uses the WebAssembly proposals memory64, simd")
            && refused.contains("compiles memory64 (node1 is the closest)"),
        "{refused}"
    );

    let wide = node_compiling(&mut h, 2, &["memory64", "simd"]);
    let job = submit_needing(&mut h, 1 << 10, None, needs).0.unwrap();
    assert!(
        h.take(plain, 2).is_empty(),
        "the node without memory64 never gets it"
    );
    h.now_ms += 10 * LEASE_MS;
    h.beat(plain, vec![]);
    let why = h.pool.why(job, OWNER, h.now_ms).unwrap().reasons;
    assert_eq!(
        why,
        [
            "no online node compiles every WebAssembly proposal the module uses (the closest \
          lacks memory64)"
        ]
    );
    h.beat(wide, vec![]);
    assert_eq!(h.take(wide, 2).len(), 1);
}

#[test]
fn a_browser_tab_takes_only_jobs_whose_fuel_need_not_be_metered_and_those_that_ask_for_it() {
    let mut h = Harness::new();
    let mut tab = new_node(1, 4, &[], "join");
    tab.capabilities.runtime = wire::NodeRuntime::Browser;
    h.pool.register(tab, h.now_ms, &mut h.out);
    let tab = NodeId(1);
    let deterministic = h.job_from(2, 3, |submission| {
        submission.deterministic = Some(wire::Deterministic { seed: 7 });
    });
    assert_eq!(h.take(tab, 4).len(), 0, "fuel a browser cannot meter");
    let native_only = h.job_from(1, 3, |submission| {
        submission.requirements.runtime = Some(wire::NodeRuntime::Native);
    });
    assert_eq!(h.take(tab, 4).len(), 0, "a job that asks for agents");
    let anywhere = h.job(1, 3);
    let taken = h.take(tab, 4);
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].job_id, anywhere);
    let agent = h.node(2, 4);
    let to_agent: Vec<JobId> = h.take(agent, 4).iter().map(|g| g.job_id).collect();
    assert_eq!(
        to_agent.iter().filter(|job| **job == deterministic).count(),
        2
    );
    assert!(to_agent.contains(&native_only));
    let browsers_only = h.job_from(1, 3, |submission| {
        submission.requirements.runtime = Some(wire::NodeRuntime::Browser);
    });
    assert_eq!(h.take(agent, 4).len(), 0, "a job for browsers only");
    assert_eq!(h.take(tab, 4)[0].job_id, browsers_only);
}

#[test]
fn a_job_for_browsers_cannot_need_its_fuel_metered() {
    let h = Harness::new();
    let mut job = JobSubmission::new("tab", BlobHash::of(b"m"), vec![TaskSpec::default()]);
    job.requirements.runtime = Some(wire::NodeRuntime::Browser);
    assert!(h.pool.checked_verify(&job).is_ok());
    job.deterministic = Some(wire::Deterministic { seed: 1 });
    let refused = h.pool.checked_verify(&job);
    assert!(
        matches!(&refused, Err(PoolError::Invalid(why)) if why.contains("a browser cannot")),
        "{refused:?}"
    );
}
