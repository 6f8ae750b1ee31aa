//! Each command's rules as tables of cases (a starting pool, a command, the events it must
//! record), and the replay of every kind of event: each command's events, serialized and read
//! back, applied to the pool as it was before the command, give the pool after it.

use wire::{AttemptId, Capabilities, HeartbeatRequest, JobId, NodeActivity, NodeId, Outcome};

use super::{Harness, LEASE_MS, OWNER, new_node, report};
use crate::pool::events::EVENT_KINDS;
use crate::pool::*;

/// A heartbeat of `node` listing `running`, active unless `activity` says otherwise.
fn beat(node: NodeId, running: Vec<AttemptId>, activity: NodeActivity) -> Heartbeat {
    Heartbeat {
        node,
        request: HeartbeatRequest {
            running,
            slots_free: 0,
            activity,
            capabilities: None,
            forgotten: Vec::new(),
            copied: Vec::new(),
            kept: Vec::new(),
            dropped: Vec::new(),
        },
    }
}

fn paused() -> NodeActivity {
    NodeActivity::Paused {
        reason: "on battery".to_owned(),
    }
}

/// A pool with node 1 (one slot) holding the one attempt of a job of `tasks` tasks that may be
/// tried `max_attempts` times.
fn holding(h: &mut Harness, tasks: usize, max_attempts: u32) -> (NodeId, JobId, AttemptId) {
    let node = h.node(1, 1);
    let job = h.job(tasks, max_attempts);
    let attempt = h.take(node, 1)[0].attempt_id;
    (node, job, attempt)
}

/// One rule: what it says, the pool it starts from (the setup returns the command to run on
/// it), and the kinds of the events the command must record, in order.
type Case<C> = (&'static str, fn(&mut Harness) -> C, &'static [&'static str]);

/// Checks each case of a table on a pool of its own.
fn table<C: Command>(cases: &[Case<C>]) {
    for (rule, given, kinds) in cases {
        let mut h = Harness::new();
        let command = given(&mut h);
        let (_, recorded) = h.run(command);
        assert_eq!(recorded, *kinds, "{rule}");
    }
}

const SUCCEEDED: Outcome = Outcome::Succeeded;

#[rustfmt::skip]
#[test]
fn heartbeat_rules() {
    table::<Heartbeat>(&[
        ("an unknown node changes nothing", |_| beat(NodeId(9), vec![], NodeActivity::Active), &[]),
        ("a heartbeat that says nothing new is only heard", |h| beat(h.node(1, 1), vec![], NodeActivity::Active), &["NodeHeard"]),
        ("pausing is recorded", |h| beat(h.node(1, 1), vec![], paused()), &["NodeHeard", "NodeActivitySet"]),
        ("lending less is recorded", |h| lending(h.node(1, 1), 1), &["NodeHeard", "NodeCapabilitiesSet"]),
        ("an attempt granted within a lease may be unlisted", |h| beat(holding(h, 1, 1).0, vec![], NodeActivity::Active), &["NodeHeard"]),
        ("an attempt unlisted past a lease is marked", |h| unlisted(h, 0).0, &["NodeHeard", "AttemptUnlisted"]),
        ("one unlisted for a lease more is lost, and its job with it", |h| unlisted(h, 1).0, &["NodeHeard", "AttemptEnded", "JobFinished"]),
        ("listed again, it is no longer marked", |h| {
            let (next, attempt) = unlisted(h, 0);
            let node = next.node;
            h.run(next);
            beat(node, vec![attempt], NodeActivity::Active)
        }, &["NodeHeard", "AttemptUnlisted"]),
    ]);
}

#[rustfmt::skip]
#[test]
fn report_rules() {
    table::<Report>(&[
        ("a success ends the task, and the job with its last", |h| reporting(holding(h, 1, 3), SUCCEEDED), &["NodeHeard", "AttemptEnded", "JobFinished"]),
        ("a success of one task of two leaves the job running", |h| reporting(holding(h, 2, 3), SUCCEEDED), &["NodeHeard", "AttemptEnded"]),
        ("a node error is retried", |h| reporting(holding(h, 1, 3), Outcome::NodeError { message: "disk full".to_owned() }), &["NodeHeard", "AttemptEnded"]),
        ("a guest's failure is final", |h| reporting(holding(h, 1, 3), Outcome::ExitCode { code: 1 }), &["NodeHeard", "AttemptEnded", "JobFinished"]),
        ("a report from a node that does not hold the attempt changes nothing", |h| {
            let (_, job, attempt) = holding(h, 1, 3);
            reporting((h.node(2, 1), job, attempt), SUCCEEDED)
        }, &["NodeHeard"]),
        ("the first replica to succeed stops the others", |h| {
            let (node, _, attempt, _) = replicated(h);
            reporting((node, JobId(0), attempt), SUCCEEDED)
        }, &["NodeHeard", "AttemptEnded", "AttemptEnded", "JobFinished"]),
        ("a replica's node error leaves the task to the other", |h| {
            let (node, _, attempt, _) = replicated(h);
            reporting((node, JobId(0), attempt), Outcome::NodeError { message: "oom".to_owned() })
        }, &["NodeHeard", "AttemptEnded"]),
        ("a replica's guest failure is final, and stops the others", |h| {
            let (node, _, attempt, _) = replicated(h);
            reporting((node, JobId(0), attempt), Outcome::ExitCode { code: 2 })
        }, &["NodeHeard", "AttemptEnded", "AttemptEnded", "JobFinished"]),
        ("a report of an attempt that ended is refused", |h| {
            let (node, job, attempt) = holding(h, 2, 3);
            h.report(node, attempt, SUCCEEDED);
            reporting((node, job, attempt), SUCCEEDED)
        }, &["NodeHeard"]),
    ]);
}

#[rustfmt::skip]
#[test]
fn release_and_cancel_rules() {
    table::<Release>(&[
        ("a held attempt goes back", |h| {
            let (node, _, attempt) = holding(h, 1, 1);
            Release { node, attempts: vec![attempt] }
        }, &["NodeHeard", "AttemptEnded"]),
        ("another node's attempt stays", |h| {
            let (_, _, attempt) = holding(h, 1, 1);
            Release { node: h.node(2, 1), attempts: vec![attempt] }
        }, &["NodeHeard"]),
    ]);
    table::<Cancel>(&[
        ("a running job ends", |h| Cancel { job: holding(h, 2, 1).1, requester: OWNER }, &["JobCancelled"]),
        ("another requester's job is not found", |h| Cancel { job: holding(h, 1, 1).1, requester: RequesterId(99) }, &[]),
        ("an ended job is not cancelled again", |h| {
            let (node, job, attempt) = holding(h, 1, 1);
            h.report(node, attempt, SUCCEEDED);
            Cancel { job, requester: OWNER }
        }, &[]),
    ]);
}

#[rustfmt::skip]
#[test]
fn register_and_lease_rules() {
    table::<Register>(&[
        ("a new node registers", |_| Register { node: new_node(1, 1, &[], "join"), old_process_gone: false }, &["NodeRegistered"]),
        ("a node online from another process is not let in", |h| {
            h.node(1, 1);
            Register { node: new_node(1, 1, &[], "join"), old_process_gone: false }
        }, &[]),
        ("a restarted node loses what its old process held", |h| {
            holding(h, 1, 3);
            h.now_ms += LEASE_MS;
            Register { node: new_node(1, 1, &[], "join"), old_process_gone: false }
        }, &["NodeRuntimesUnsent", "AttemptEnded", "NodeGone", "NodeRegistered"]),
        ("a node whose old process's presence closed is let in at once", |h| {
            holding(h, 1, 3);
            Register { node: new_node(1, 1, &[], "join"), old_process_gone: true }
        }, &["NodeRuntimesUnsent", "AttemptEnded", "NodeGone", "NodeRegistered"]),
    ]);
    table::<Lease>(&[
        ("a node with room gets work", |h| {
            h.job(1, 1);
            Lease { node: h.node(1, 1), slots_free: 1 }
        }, &["NodeHeard", "AttemptsGranted", "GrantsDelivered"]),
        ("nothing queued, nothing granted", |h| Lease { node: h.node(1, 1), slots_free: 1 }, &["NodeHeard"]),
        ("a task short of replicas goes to another node", |h| {
            let node = h.node(1, 1);
            h.job_from(1, 3, |job| job.replicas = 2);
            h.take(node, 1);
            Lease { node: h.node(2, 1), slots_free: 1 }
        }, &["NodeHeard", "AttemptsGranted", "GrantsDelivered"]),
        ("never to the node that runs it", |h| {
            let node = h.node(1, 2);
            h.job_from(1, 3, |job| job.replicas = 2);
            h.take(node, 1);
            Lease { node, slots_free: 1 }
        }, &["NodeHeard"]),
        ("nor past the attempts the task may make", |h| {
            let node = h.node(1, 1);
            h.job_from(1, 1, |job| job.replicas = 1);
            h.take(node, 1);
            Lease { node: h.node(2, 1), slots_free: 1 }
        }, &["NodeHeard"]),
        ("a paused node gets none", |h| {
            h.job(1, 1);
            let node = h.node(1, 1);
            h.run(beat(node, vec![], paused()));
            Lease { node, slots_free: 1 }
        }, &["NodeHeard"]),
    ]);
}

#[rustfmt::skip]
#[test]
fn expire_rules() {
    table::<Expire>(&[
        ("nothing lapsed: only the live nodes are counted", |h| { holding(h, 1, 1); Expire {} }, &["NodesLiveRecounted"]),
        ("a replica whose node lapsed leaves the task to the other", |h| {
            let (_, other, _, other_attempt) = replicated(h);
            h.now_ms += 2 * LEASE_MS;
            h.beat(other, vec![other_attempt]);
            Expire {}
        }, &["NodeRuntimesUnsent", "AttemptEnded", "NodesLiveRecounted"]),
        ("a lapsed lease ends its node's attempts", |h| {
            holding(h, 2, 3);
            h.now_ms += 2 * LEASE_MS;
            Expire {}
        }, &["NodeRuntimesUnsent", "AttemptEnded", "NodesLiveRecounted"]),
        ("an attempt past its deadline ends though its node lives", |h| {
            let (node, job, attempt) = holding(h, 2, 3);
            h.now_ms += h.pool.jobs[&job].runtime.limits.deadline_ms + 3_600_000;
            h.beat(node, vec![attempt]);
            Expire {}
        }, &["AttemptEnded", "NodesLiveRecounted"]),
        ("a paused node's attempt gets its paused time back", |h| {
            let (node, job, attempt) = holding(h, 2, 3);
            h.run(beat(node, vec![attempt], paused()));
            // Past the deadline and grace, but not past them and the paused time allowed.
            h.now_ms += h.pool.jobs[&job].runtime.limits.deadline_ms + 600_000;
            h.run(beat(node, vec![attempt], paused()));
            Expire {}
        }, &["AttemptDeadlineMoved", "NodesLiveRecounted"]),
    ]);
}

/// A pool with a one-task job that runs two replicas (three attempts allowed), one on node 1
/// and one on node 2: the nodes and their attempts.
fn replicated(h: &mut Harness) -> (NodeId, NodeId, AttemptId, AttemptId) {
    let (first, second) = (h.node(1, 1), h.node(2, 1));
    h.job_from(1, 3, |job| job.replicas = 2);
    let a = h.take(first, 1)[0].attempt_id;
    let b = h.take(second, 1)[0].attempt_id;
    (first, second, a, b)
}

/// A heartbeat of `node` that lends `cores` cores now.
fn lending(node: NodeId, cores: u32) -> Heartbeat {
    let mut heartbeat = beat(node, vec![], NodeActivity::Active);
    let capabilities = new_node(node.0, 1, &[], "join").capabilities;
    heartbeat.request.capabilities = Some(Capabilities {
        cores,
        ..capabilities
    });
    heartbeat
}

/// A pool whose node stopped listing its attempt a lease after its grant, `leases_more` lease
/// terms ago (and a heartbeat since, not listing it): the next such heartbeat, and the attempt.
fn unlisted(h: &mut Harness, leases_more: u64) -> (Heartbeat, AttemptId) {
    let (node, _, attempt) = holding(h, 1, 1);
    h.now_ms += 2 * LEASE_MS;
    if leases_more > 0 {
        h.beat(node, vec![]);
        h.now_ms += leases_more * LEASE_MS + 1;
    }
    (beat(node, vec![], NodeActivity::Active), attempt)
}

fn reporting((node, _, attempt): (NodeId, JobId, AttemptId), outcome: Outcome) -> Report {
    Report {
        node,
        reports: vec![report(attempt, outcome)],
    }
}

/// Drives a pool through every kind of event, replaying each command's events on the pool as
/// it was before it.
#[test]
fn every_kind_of_event_replays_to_the_same_pool() {
    let mut h = Harness::new();
    tokens_and_nodes(&mut h);
    let job = placing_and_running(&mut h);
    ending_and_forgetting(&mut h, job);
    super::verification::cheater_caught_by_audit(&mut h);
    super::verification::split_past_the_bound(&mut h);
    super::verification::equivalent_by_the_validator(&mut h);
    super::checkpoints::saved_lost_and_resumed(&mut h);
    h.settle();
    // Recalls need a pool of their own: its nodes' ids are those of the audits above.
    let mut recalling = Harness::new();
    let recalled = super::recall::taken_back_after_a_ban(&mut recalling);
    assert_eq!(recalled, Recalled::Tasks(1));
    recalling.settle();
    h.kinds.extend(recalling.kinds.iter().copied());
    // So do bans that drop checkpoints: their pool is public.
    let mut dropping = super::checkpoints::trusting_public();
    super::checkpoints::dropped_by_a_ban(&mut dropping);
    dropping.settle();
    h.kinds.extend(dropping.kinds.iter().copied());
    // And pipelines, whose stages start, are given up, end and are purged.
    let mut piping = Harness::new();
    super::pipelines::a_whole_life(&mut piping);
    h.kinds.extend(piping.kinds.iter().copied());
    let mut silent = Harness::new();
    let quiet = silent.node(1, 1);
    super::silence::silent_with_a_task(&mut silent, quiet);
    h.kinds.extend(silent.kinds.iter().copied());
    let mut reusing = Harness::new();
    super::pipelines::taken_whole(&mut reusing);
    super::pipelines::cancelled_mid_map(&mut reusing);
    reusing.settle();
    h.kinds.extend(reusing.kinds.iter().copied());
    let mut deleting = Harness::new();
    super::deletions::deleted_and_half_confirmed(&mut deleting);
    deleting.settle();
    h.kinds.extend(deleting.kinds.iter().copied());
    let mut granting = Harness::new();
    super::private::granted_to_another_node(&mut granting);
    granting.settle();
    h.kinds.extend(granting.kinds.iter().copied());
    let mut holding = Harness::new();
    super::peers::held_and_forgotten(&mut holding);
    let mut keeping = Harness::new();
    super::peers::kept_lost_and_made_again(&mut keeping);
    let mut dropping = Harness::new();
    super::peers::dropped_and_made_again(&mut dropping);
    keeping.kinds.extend(dropping.kinds.iter().copied());
    let mut uploading = Harness::new();
    super::peers::made_again_and_uploaded(&mut uploading);
    uploading.settle();
    keeping.kinds.extend(uploading.kinds.iter().copied());
    holding.kinds.extend(keeping.kinds.iter().copied());
    holding.settle();
    h.kinds.extend(holding.kinds.iter().copied());
    let mut federating = Harness::new();
    super::federation::a_peer_comes_and_goes(&mut federating);
    h.kinds.extend(federating.kinds.iter().copied());
    let missing: Vec<_> = EVENT_KINDS
        .iter()
        .filter(|kind| !h.kinds.contains(*kind))
        .collect();
    assert!(
        missing.is_empty(),
        "no event of kinds {missing:?} was replayed"
    );
}

fn tokens_and_nodes(h: &mut Harness) {
    for kind in [NewToken::Requester, NewToken::Join] {
        let hash = format!("{kind:?}");
        let create = CreateToken {
            hash: hash.clone(),
            name: hash.clone(),
            kind,
            live_max: 10,
        };
        assert!(h.run(create).0);
    }
    let revoke = RevokeToken {
        hash: "Join".to_owned(),
    };
    assert!(h.run(revoke).0);
    for id in 1..=3 {
        let registered = h.run(Register {
            node: new_node(id, 2, &[], "join"),
            old_process_gone: false,
        });
        assert_eq!(registered.0, Ok(None));
    }
}

/// Returns the job it ran.
fn placing_and_running(h: &mut Harness) -> JobId {
    // A waiter that went away: its grants are withdrawn. One that waits gets them delivered.
    drop(h.park(NodeId(2), 1, 2));
    let mut waiting = h.park(NodeId(3), 2, 2);
    h.job(4, 1);
    h.follow();
    assert_eq!(waiting.try_recv().unwrap().attempts.len(), 2);
    h.settle();
    let granted = h.take(NodeId(1), 2);
    let running: Vec<AttemptId> = granted.iter().map(|grant| grant.attempt_id).collect();
    let mut lends_less = lending(NodeId(1), 2);
    lends_less.request.running = running.clone();
    lends_less.request.activity = paused();
    h.run(lends_less);
    h.now_ms += 2 * LEASE_MS;
    h.run(beat(NodeId(1), vec![running[0]], paused()));
    let limits = h.pool.jobs[&granted[0].job_id].runtime.limits;
    h.now_ms += limits.deadline_ms + 600_000;
    h.run(beat(NodeId(1), running.clone(), paused()));
    h.run(Expire {});
    h.upload(NodeId(1), running[1], b"out").unwrap();
    h.settle();
    let mut done = report(running[1], SUCCEEDED);
    done.stdout = Some(wire::BlobRef {
        hash: wire::BlobHash::of(b"out"),
        size_bytes: 3,
    });
    h.run(Report {
        node: NodeId(1),
        reports: vec![done],
    });
    h.run(Release {
        node: NodeId(1),
        attempts: vec![running[0]],
    });
    granted[0].job_id
}

fn ending_and_forgetting(h: &mut Harness, running: JobId) {
    h.run(beat(NodeId(1), vec![], NodeActivity::Active));
    let cancel = Cancel {
        job: running,
        requester: OWNER,
    };
    h.run(cancel).0.unwrap();
    let finished = h.job(1, 1);
    let attempt = h.take(NodeId(1), 1)[0].attempt_id;
    h.settle();
    h.report(NodeId(1), attempt, SUCCEEDED);
    assert!(h.status(finished).state.is_terminal());
    h.settle();
    h.now_ms += 2 * 3_600_000;
    h.run(Expire {});
    let purge = PurgeEnded {
        keep_ms: 3_600_000,
        jobs_max: 10,
    };
    assert_eq!(h.run(purge).0, 2);
    h.run(beat(NodeId(1), vec![], NodeActivity::Active));
    let purge = PurgeSilentNodes {
        silent_ms: 3_600_000,
        store_every_ms: 1,
        nodes_max: 10,
    };
    assert_eq!(h.run(purge).0, 2, "the silent nodes 2 and 3 go");
    h.run(RemoveNode { node: NodeId(1) }).0.unwrap();
    for _ in 0..2 {
        let registered = h.run(Register {
            node: new_node(4, 1, &[], "join"),
            old_process_gone: false,
        });
        assert_eq!(registered.0, Ok(None), "a silent identity registers again");
        h.now_ms += LEASE_MS * 10;
    }
}
