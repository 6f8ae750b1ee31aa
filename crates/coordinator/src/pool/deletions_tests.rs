//! Deleting a job: only an ended job of the requester's, which leaves the pool at once; the
//! nodes that ran it are asked in every heartbeat until each confirms, and a node's word
//! counts only for what it was asked.

use super::*;

fn scope(nodes: &[u64]) -> DeletionScope {
    DeletionScope {
        blobs: vec![BlobHash::of(b"input"), BlobHash::of(b"output")],
        blobs_only_its: 2,
        nodes: nodes.iter().map(|node| NodeId(*node)).collect(),
    }
}

fn beat_forgetting(
    h: &mut Harness,
    node: NodeId,
    forgotten: Vec<JobId>,
) -> wire::HeartbeatResponse {
    let request = HeartbeatRequest {
        running: Vec::new(),
        slots_free: 0,
        activity: NodeActivity::Active,
        capabilities: None,
        forgotten,
        copied: Vec::new(),
        kept: Vec::new(),
        dropped: Vec::new(),
    };
    h.run(Heartbeat { node, request }).0
}

/// A job ran on nodes 1 and 2 and was deleted; node 1 confirms, node 2 does not yet.
pub(super) fn deleted_and_half_confirmed(h: &mut Harness) -> JobId {
    let (one, two) = (h.node(1, 1), h.node(2, 1));
    let job = h.job(1, 1);
    let attempt = h.take(one, 1)[0].attempt_id;
    assert!(h.report(one, attempt, Outcome::Succeeded));
    let (deleted, kinds) = h.run(DeleteJob {
        job,
        requester: OWNER,
        scope: scope(&[1, 2]),
    });
    assert_eq!(deleted.unwrap().pending, [one, two]);
    assert_eq!(kinds, ["JobDeleted"]);
    assert!(
        !h.pool.has_job(job),
        "a deleted job leaves the pool at once"
    );
    let asked = beat_forgetting(h, one, Vec::new());
    assert_eq!(asked.forget.len(), 1);
    assert_eq!(asked.forget[0].job_id, job);
    assert_eq!(asked.forget[0].blobs, scope(&[]).blobs);
    // A node's word for a deletion it was not asked about changes nothing.
    let unasked = beat_forgetting(h, NodeId(3), vec![job]);
    assert!(unasked.forget.is_empty());
    let confirmed = beat_forgetting(h, one, vec![job]);
    assert!(
        confirmed.forget.is_empty(),
        "a confirmed deletion is not asked again"
    );
    job
}

#[test]
fn a_deleted_job_is_forgotten_by_each_node_that_ran_it_as_it_confirms() {
    let mut h = Harness::new();
    let job = deleted_and_half_confirmed(&mut h);
    let deletion = h.pool.deletion(OWNER, job).unwrap();
    assert_eq!(
        (deletion.confirmed, deletion.pending),
        (vec![NodeId(1)], vec![NodeId(2)])
    );
    assert_eq!(
        beat_forgetting(&mut h, NodeId(2), Vec::new()).forget.len(),
        1
    );
    beat_forgetting(&mut h, NodeId(2), vec![job]);
    let deletion = h.pool.deletion(OWNER, job).unwrap();
    assert!(deletion.pending.is_empty());
    assert_eq!(deletion.blobs_deleted, 2);
    let wrote = h.out.writes.iter().any(|write| {
        matches!(write, Write::UpsertDeletion(row) if row.job_id == job && row.pending.is_empty())
    });
    assert!(wrote, "the last confirmation is written to the store");
    assert!(matches!(
        h.pool.deletion(RequesterId(99), job),
        Err(PoolError::NotFound(_))
    ));
}

#[test]
fn only_an_ended_job_of_ones_own_is_deleted() {
    let mut h = Harness::new();
    h.node(1, 1);
    let running = h.job(1, 1);
    let (refused, kinds) = h.run(DeleteJob {
        job: running,
        requester: OWNER,
        scope: scope(&[]),
    });
    assert!(
        matches!(refused, Err(PoolError::Conflict(_))),
        "{refused:?}"
    );
    assert!(kinds.is_empty());
    let (refused, kinds) = h.run(DeleteJob {
        job: running,
        requester: RequesterId(99),
        scope: scope(&[]),
    });
    assert!(
        matches!(refused, Err(PoolError::NotFound(_))),
        "{refused:?}"
    );
    assert!(kinds.is_empty());
    assert!(h.pool.has_job(running));
}
