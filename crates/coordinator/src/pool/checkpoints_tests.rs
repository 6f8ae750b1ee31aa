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
    let checkpoints = *h.pool.jobs[&job].tasks[0].checkpoints.as_deref().unwrap();
    assert_eq!(checkpoints.lost_ms, 2 * LEASE_MS);
    assert_eq!(checkpoints.latest, Some(latest));

    let grant = h.take(second, 1).remove(0);
    assert_eq!(grant.checkpoint, Some(latest));
    assert!(h.pool.node_may_read(second, &latest.hash));
    // The report counts the task's fuel in all; the node is paid for what it did itself.
    let written = h.out.writes.len();
    let ack = h.send(second, succeeded(grant.attempt_id, 400));
    assert!(ack.accepted, "{ack:?}");
    let paid: Vec<u64> = h.out.writes[written..]
        .iter()
        .filter_map(|write| match write {
            Write::InsertTransfers(transfers) => Some(transfers.iter().map(|t| t.fuel)),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(paid, [150]);
}

fn succeeded(attempt: AttemptId, fuel_used: u64) -> AttemptReport {
    AttemptReport {
        attempt_id: attempt,
        outcome: Outcome::Succeeded,
        usage: Usage {
            fuel_used,
            ..Usage::default()
        },
        stdout: None,
        stderr: None,
        outputs: vec![],
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
            },
        ]
    );
}
