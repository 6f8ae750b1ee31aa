//! A node silent for half its lease: its tasks get a stand-in elsewhere while its lease lasts,
//! the first result wins and stops the other, and a node heard again is no longer silent.

use super::*;

/// A job of one task on `held_by`, its node then silent for half a lease: the kinds of the
/// events the silence made.
pub(super) fn silent_with_a_task(h: &mut Harness, held_by: NodeId) -> (JobId, AttemptId) {
    let job = h.job(1, 3);
    let grant = h.take(held_by, 1);
    assert_eq!(grant.len(), 1);
    h.settle();
    h.now_ms += LEASE_MS / 2;
    h.pool.expire(h.now_ms, &mut h.out);
    h.pool.check_invariants();
    assert_eq!(h.settle(), ["NodeSilent"], "silent, not yet expired");
    (job, grant[0].attempt_id)
}

#[test]
fn a_silent_nodes_task_runs_elsewhere_too_and_the_first_result_wins() {
    let mut h = Harness::new();
    let quiet = h.node(1, 1);
    let (job, held) = silent_with_a_task(&mut h, quiet);
    let other = h.node(2, 1);
    let stand_in = h.take(other, 1);
    assert_eq!(stand_in.len(), 1, "the task runs on another node too");
    assert_eq!(h.status(job).tasks.running, 1);
    assert!(h.report(other, stand_in[0].attempt_id, Outcome::Succeeded));
    let status = h.status(job);
    assert_eq!((status.state, status.attempts), (JobState::Completed, 2));
    // The silent node wakes up: its attempt was stopped, and its late report is refused.
    let beat = h.beat(quiet, vec![held]);
    assert_eq!(beat.cancel, [held]);
    assert!(!h.report(quiet, held, Outcome::Succeeded));
}

#[test]
fn a_silent_node_heard_again_keeps_its_task_and_no_stand_in_is_wanted() {
    let mut h = Harness::new();
    let quiet = h.node(1, 1);
    let (job, held) = silent_with_a_task(&mut h, quiet);
    h.beat(quiet, vec![held]);
    h.pool.check_invariants();
    let other = h.node(2, 1);
    assert!(
        h.take(other, 1).is_empty(),
        "heard again, it counts as the task's replica"
    );
    assert!(h.report(quiet, held, Outcome::Succeeded));
    assert_eq!(h.status(job).state, JobState::Completed);
}

#[test]
fn a_task_out_of_attempts_gets_no_stand_in_and_waits_for_the_lease() {
    let mut h = Harness::new();
    let quiet = h.node(1, 1);
    let job = h.job(1, 1);
    assert_eq!(h.take(quiet, 1).len(), 1);
    h.now_ms += LEASE_MS / 2;
    h.pool.expire(h.now_ms, &mut h.out);
    let other = h.node(2, 1);
    assert!(
        h.take(other, 1).is_empty(),
        "max_attempts 1 allows no second attempt"
    );
    h.now_ms += LEASE_MS;
    h.pool.expire(h.now_ms, &mut h.out);
    h.pool.check_invariants();
    assert_eq!(h.status(job).state, JobState::Failed);
}
