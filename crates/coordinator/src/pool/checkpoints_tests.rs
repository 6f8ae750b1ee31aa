//! Checkpoints: taken only from the node that holds the attempt, within the job's bound, and
//! only when they move the task forward; the next attempt is granted the latest and may read
//! it, the work lost in between is counted, and a resumed attempt is paid for its own work.

use super::*;

fn checkpointing(h: &mut Harness, bytes_max: u64) -> JobId {
    h.job_from(1, 3, |job| {
        job.checkpoint = Some(wire::CheckpointSpec {
            interval_ms: 60_000,
            exit_code: 85,
            bytes_max,
        });
    })
}

fn save(
    h: &mut Harness,
    node: NodeId,
    attempt: AttemptId,
    bytes: &[u8],
    fuel_used: u64,
) -> Result<wire::CheckpointRef, String> {
    let before = h.pool.latest_checkpoint_of_any();
    let (saved, kinds) = h.run(SaveCheckpoint {
        node,
        attempt,
        hash: BlobHash::of(bytes),
        size_bytes: bytes.len() as u64,
        fuel_used,
    });
    if saved.is_err() {
        assert!(kinds.is_empty(), "a refused checkpoint changes nothing");
        assert_eq!(h.pool.latest_checkpoint_of_any(), before);
    }
    saved.map_err(|error| match error {
        PoolError::Conflict(message) => format!("conflict: {message}"),
        PoolError::Forbidden(message) => message,
        other => panic!("a checkpoint is refused as forbidden or a conflict, not {other:?}"),
    })
}

/// A task's node saves checkpoints, vanishes, and another node resumes from the latest.
pub(super) fn saved_lost_and_resumed(h: &mut Harness) {
    let (first, second) = (h.node(41, 1), h.node(42, 1));
    let job = checkpointing(h, 1024);
    let attempt = h.take(first, 1)[0].attempt_id;
    let refusal = |result: Result<wire::CheckpointRef, String>| result.unwrap_err();
    assert!(refusal(save(h, second, attempt, b"state", 100)).contains("not held by this node"));
    assert!(refusal(save(h, first, attempt, &[0; 1025], 100)).contains("1025 bytes"));
    let behind = refusal(save(h, first, attempt, b"state", 0));
    assert!(behind.starts_with("conflict: ") && behind.contains("set the task back"));
    assert_eq!(save(h, first, attempt, b"one", 100).unwrap().sequence, 1);
    let latest = save(h, first, attempt, b"two", 250).unwrap();
    assert_eq!((latest.sequence, latest.fuel_used), (2, 250));
    assert!(refusal(save(h, first, attempt, b"behind", 200)).contains("set the task back"));
    assert!(h.pool.node_may_read(first, &latest.hash));
    assert!(!h.pool.node_may_read(second, &latest.hash));

    // The first node goes silent: its attempt expires, and its late checkpoint is stale.
    h.now_ms += 2 * LEASE_MS;
    h.beat(second, vec![]);
    h.run(Expire {});
    assert!(refusal(save(h, first, attempt, b"three", 300)).contains("not current"));
    let checkpoints = h.pool.jobs[&job].tasks[0]
        .checkpoints
        .as_deref()
        .unwrap()
        .clone();
    assert_eq!(checkpoints.lost_ms, 2 * LEASE_MS);
    assert_eq!(checkpoints.latest, Some(latest));

    let grant = h.take(second, 1).remove(0);
    assert_eq!(grant.checkpoint, Some(latest));
    assert!(h.pool.node_may_read(second, &latest.hash));
    // The report counts the task's fuel in all; the node is paid for what it did itself.
    let written = h.out.writes.len();
    let ack = h.send(second, succeeded(grant.attempt_id, 400));
    assert!(ack.accepted, "{ack:?}");
    let paid = paid_since(h, written);
    assert_eq!(paid, [150]);
}

/// The fuel of every transfer written since the `written`th write.
fn paid_since(h: &Harness, written: usize) -> Vec<u64> {
    h.out.writes[written..]
        .iter()
        .filter_map(|write| match write {
            Write::InsertTransfers(transfers) => Some(transfers.iter().map(|t| t.fuel)),
            _ => None,
        })
        .flatten()
        .collect()
}

fn succeeded(attempt: AttemptId, fuel_used: u64) -> AttemptReport {
    AttemptReport {
        ran_on: None,
        attempt_id: attempt,
        outcome: Outcome::Succeeded,
        usage: Usage {
            fuel_used,
            ..Usage::default()
        },
        stdout: None,
        stderr: None,
        outputs: vec![],
        sealed_digest: None,
    }
}

#[test]
fn a_checkpoint_moves_its_task_forward_only_from_the_node_that_holds_it() {
    let mut h = Harness::new();
    saved_lost_and_resumed(&mut h);
}

#[test]
fn a_job_that_does_not_checkpoint_takes_no_checkpoint() {
    let mut h = Harness::new();
    let node = h.node(1, 1);
    h.job(1, 3);
    let attempt = h.take(node, 1)[0].attempt_id;
    let refused = save(&mut h, node, attempt, b"state", 10).unwrap_err();
    assert!(refused.contains("does not checkpoint"), "{refused}");
    assert_eq!(
        h.pool.checkpoint_bytes_max(node, attempt).unwrap_err(),
        refused
    );
}

#[test]
fn a_saved_checkpoint_is_written_as_a_blob_and_the_tasks_latest() {
    let mut h = Harness::new();
    let node = h.node(1, 1);
    let job = checkpointing(&mut h, 1024);
    let attempt = h.take(node, 1)[0].attempt_id;
    let written = h.out.writes.len();
    let saved = save(&mut h, node, attempt, b"state", 10).unwrap();
    assert_eq!(
        h.out.writes[written..],
        [
            Write::InsertBlob {
                hash: saved.hash,
                size_bytes: 5,
                at_ms: h.now_ms,
                reader: None,
            },
            Write::SetTaskCheckpoint {
                job_id: job,
                task_index: 0,
                latest: Some(saved),
                lost_ms: 0,
                makers: Vec::new(),
            },
        ]
    );
}

/// A public pool whose nodes are trusted from their first result and never audited: a first
/// result of a node is held, unless it rests on another's checkpoint.
pub(super) fn trusting_public() -> Harness {
    super::verification::public(verify::Policy {
        probation_results: 0,
        audit_per_million: 0,
        ..verify::Policy::PUBLIC
    })
}

fn verified_checkpointing(h: &mut Harness) -> JobId {
    h.job_from(1, 3, |job| {
        job.deterministic = Some(wire::Deterministic { seed: 1 });
        job.verify = Some(wire::VerifyMode::Adaptive);
        job.checkpoint = Some(wire::CheckpointSpec {
            interval_ms: 60_000,
            exit_code: 85,
            bytes_max: 1024,
        });
    })
}

/// Alice's node saves a checkpoint and vanishes; Bob's node resumes from it and saves another.
/// Returns Bob's attempt and the checkpoint it resumed from.
fn resumed_by_another_owner(
    h: &mut Harness,
    alice: NodeId,
    bob: NodeId,
) -> (AttemptId, wire::CheckpointRef) {
    let first = h.take(alice, 1)[0].attempt_id;
    let saved = save(h, alice, first, b"alice's state", 100).unwrap();
    h.now_ms += 2 * LEASE_MS;
    h.beat(bob, vec![]);
    h.run(Expire {});
    let grant = h.take(bob, 1).remove(0);
    assert_eq!(
        grant.checkpoint,
        Some(saved),
        "the first line of work resumes"
    );
    save(h, bob, grant.attempt_id, b"bob's state", 200).unwrap();
    (grant.attempt_id, saved)
}

/// The nodes agree on a task of a job of their own, so each has a verified result: trusted.
fn trusted(h: &mut Harness, nodes: &[NodeId]) {
    let job = super::verification::deterministic_job(h, 1);
    for node in nodes {
        let attempt = super::verification::one(h, *node);
        super::verification::result(h, *node, attempt, 1);
    }
    assert_eq!(h.status(job).state, JobState::Completed);
}

#[test]
fn a_result_resumed_from_another_owners_checkpoint_is_checked_from_the_start_elsewhere() {
    let mut h = trusting_public();
    let owned = super::verification::owned;
    let (alice, alice_too) = (owned(&mut h, 1, 1, 1, None), owned(&mut h, 2, 1, 1, None));
    let (bob, carol) = (owned(&mut h, 3, 2, 1, None), owned(&mut h, 4, 3, 1, None));
    let dave = owned(&mut h, 5, 4, 1, None);
    trusted(&mut h, &[bob, carol, dave]);
    let job = verified_checkpointing(&mut h);
    let (resumed, _) = resumed_by_another_owner(&mut h, alice, bob);
    let latest = h.pool.latest_checkpoint(job, 0).unwrap();
    assert_eq!(
        h.pool.jobs[&job].tasks[0].checkpoint_makers(),
        [1, 2],
        "both owners' nodes saved what the task resumes from"
    );
    let written = h.out.writes.len();
    super::verification::result(&mut h, bob, resumed, 300);
    assert!(
        h.take(alice_too, 1).is_empty(),
        "the maker's owner is no witness of a result built on its checkpoint"
    );
    // Bob is trusted and audits never happen here, so his result alone would be held.
    let check = h.take(carol, 1).remove(0);
    assert_eq!(check.checkpoint, None, "a check runs from the start");
    assert!(!h.pool.node_may_read(carol, &latest.hash));
    let refused = save(&mut h, carol, check.attempt_id, b"carol's state", 150).unwrap_err();
    assert!(refused.contains("checks a result"), "{refused}");
    super::verification::result(&mut h, carol, check.attempt_id, 300);
    assert_eq!(h.status(job).state, JobState::Completed);
    let verification = wire::Verification {
        by: wire::VerifiedBy::Replicas,
        nodes: vec![bob, carol],
    };
    let verdicts = super::verification::verdicts(&h);
    assert_eq!(
        verdicts.last(),
        Some(&(job, 0, Some(resumed), Some(verification)))
    );
    let paid = paid_since(&h, written);
    assert_eq!(
        paid,
        [200, 300, 200, 300],
        "pending then settled: Bob for his share, Carol for the whole run"
    );
}

#[test]
fn a_resumed_result_that_disagrees_is_refused_and_bans_no_one() {
    let mut h = trusting_public();
    let owned = super::verification::owned;
    let (alice, bob) = (owned(&mut h, 1, 1, 1, None), owned(&mut h, 2, 2, 1, None));
    let checks = [3, 4, 5].map(|id| owned(&mut h, id, id, 1, None));
    let job = verified_checkpointing(&mut h);
    // Alice's checkpoint was a lie, or Bob's run from it was: no one can tell which.
    let (resumed, _) = resumed_by_another_owner(&mut h, alice, bob);
    super::verification::result(&mut h, bob, resumed, 999);
    let mut first_check = None;
    for node in checks {
        assert_eq!(h.status(job).state, JobState::Running);
        let check = super::verification::one(&mut h, node);
        first_check.get_or_insert(check);
        super::verification::result(&mut h, node, check, 300);
    }
    assert_eq!(h.status(job).state, JobState::Completed);
    let verdicts = super::verification::verdicts(&h);
    assert_eq!(
        verdicts[0].2, first_check,
        "the task ends with a check's result"
    );
    for node in [alice, bob].into_iter().chain(checks) {
        let standing = h.pool.standing_of(node).map(|s| s.standing);
        assert_ne!(standing, Some(wire::Standing::Banned), "{node}");
    }
}

#[test]
fn a_ban_drops_the_checkpoints_its_owner_made_and_the_attempts_resumed_from_them() {
    let mut h = trusting_public();
    dropped_by_a_ban(&mut h);
}

/// A node that saved a checkpoint another owner's node resumed from is banned: the checkpoint
/// goes, and the attempt built on it stops.
pub(super) fn dropped_by_a_ban(h: &mut Harness) {
    let owned = super::verification::owned;
    let (alice, alice_too) = (owned(h, 1, 1, 1, None), owned(h, 2, 1, 1, None));
    let bob = owned(h, 3, 2, 1, None);
    let checks = [4, 5, 6].map(|id| owned(h, id, id, 1, None));
    let job = verified_checkpointing(h);
    let (resumed, _) = resumed_by_another_owner(h, alice, bob);

    // Alice's other node lies on another job, and three other owners agree it did.
    let other = super::verification::deterministic_job(h, 1);
    let lie = super::verification::one(h, alice_too);
    super::verification::result(h, alice_too, lie, 5);
    for node in checks {
        let attempt = super::verification::one(h, node);
        super::verification::result(h, node, attempt, 6);
    }
    assert_eq!(h.status(other).state, JobState::Completed);
    let standing = h.pool.standing_of(alice_too).unwrap().standing;
    assert_eq!(standing, wire::Standing::Banned);

    assert_eq!(
        h.pool.latest_checkpoint(job, 0),
        None,
        "what Alice led to is gone"
    );
    assert!(h.pool.jobs[&job].tasks[0].checkpoint_makers().is_empty());
    let heard = h.beat(bob, vec![resumed]);
    assert_eq!(
        heard.cancel,
        [resumed],
        "Bob's attempt built on Alice's state stops"
    );
    let again = h.take(checks[0], 1).remove(0);
    assert_eq!(again.checkpoint, None, "the task starts from the beginning");
    assert!(
        h.out
            .writes
            .iter()
            .any(|write| matches!(write, Write::SetTaskCheckpoint { latest: None, .. })),
        "the store forgets the dropped checkpoint"
    );
}
