//! A job's failure policy: a failed program runs again while retries last, an exit code in
//! `unless_exit` fails the task at once, one in `abort_on` stops the job, and a task that ran
//! out of memory gets more on its next attempt, within what the node lends.

use wire::OnFailure;
use wire::limits::MIB;

use super::*;

fn policy(retries: u32) -> Box<OnFailure> {
    Box::new(OnFailure {
        retries,
        unless_exit: vec![2],
        abort_on: vec![42],
        memory_escalate: 4,
    })
}

fn exit(code: i32) -> Outcome {
    Outcome::ExitCode { code }
}

#[test]
fn a_failed_program_runs_again_while_retries_last_beyond_max_attempts() {
    let mut h = Harness::new();
    let node = h.node(1, 1);
    let job = h.job_from(1, 1, |job| job.on_failure = Some(policy(2)));
    for round in 0..2 {
        let grant = h.take(node, 1);
        assert_eq!(grant.len(), 1, "retry {round} is granted");
        assert!(h.report(node, grant[0].attempt_id, exit(1)));
        let status = h.status(job);
        assert_eq!((status.state, status.tasks.pending), (JobState::Running, 1));
    }
    let last = h.take(node, 1);
    assert!(h.report(
        node,
        last[0].attempt_id,
        Outcome::Trap {
            message: "unreachable".into()
        }
    ));
    let status = h.status(job);
    assert_eq!((status.state, status.tasks.failed), (JobState::Failed, 1));
    assert_eq!(status.attempts, 3, "one attempt and two retries");
}

#[test]
fn without_a_policy_or_with_an_unless_exit_code_a_failure_is_final() {
    let mut h = Harness::new();
    let node = h.node(1, 2);
    let plain = h.job(1, 3);
    let grant = h.take(node, 1);
    assert!(h.report(node, grant[0].attempt_id, exit(1)));
    assert_eq!(h.status(plain).tasks.failed, 1);
    let steered = h.job_from(1, 3, |job| job.on_failure = Some(policy(5)));
    let grant = h.take(node, 1);
    assert!(h.report(node, grant[0].attempt_id, exit(2)));
    let status = h.status(steered);
    assert_eq!((status.state, status.attempts), (JobState::Failed, 1));
}

#[test]
fn an_abort_on_exit_code_fails_the_job_and_cancels_what_has_not_ended() {
    let mut h = Harness::new();
    let node = h.node(1, 2);
    let job = h.job_from(4, 3, |job| job.on_failure = Some(policy(3)));
    let grants = h.take(node, 2);
    assert!(h.report(node, grants[0].attempt_id, Outcome::Succeeded));
    assert!(h.report(node, grants[1].attempt_id, exit(42)));
    let status = h.status(job);
    assert_eq!(status.state, JobState::Failed);
    let aborted = wire::Aborted {
        task_index: grants[1].task_index,
        exit_code: 42,
    };
    assert_eq!(status.aborted, Some(aborted));
    let counts = status.tasks;
    assert_eq!(
        (counts.succeeded, counts.failed, counts.cancelled),
        (1, 1, 2)
    );
    assert!(h.take(node, 2).is_empty(), "nothing of the job runs on");
    let written =
        h.out.writes.iter().any(
            |write| matches!(write, Write::CancelJob { aborted: Some(a), .. } if *a == aborted),
        );
    assert!(written, "the stop is written with the task that made it");
}

#[test]
fn a_task_out_of_memory_gets_more_on_each_retry_within_what_its_node_lends() {
    let mut h = Harness::new();
    // Lends 8 GiB, beyond the 4 GiB any attempt may have.
    let big = h.node(1, 1);
    let limits = wire::Limits {
        memory_bytes_max: 256 * MIB,
        ..wire::Limits::default()
    };
    let job = h.job_from(1, 1, |job| {
        job.limits = limits;
        job.on_failure = Some(policy(3));
    });
    let first = h.take(big, 1);
    assert_eq!(
        first[0].memory_bytes_max, None,
        "a first attempt has the job's memory"
    );
    assert!(h.report(big, first[0].attempt_id, Outcome::MemoryLimit));
    let second = h.take(big, 1);
    assert_eq!(second[0].memory_bytes_max, Some(1024 * MIB));
    assert!(h.report(big, second[0].attempt_id, Outcome::MemoryLimit));
    let third = h.take(big, 1);
    assert_eq!(
        third[0].memory_bytes_max,
        Some(wire::limits::ceiling::MEMORY_BYTES_MAX)
    );
    // Given back, it goes to a node that lends only 2 GiB: it gets that much.
    h.pool
        .release(big, &[third[0].attempt_id], h.now_ms, &mut h.out);
    let mut small_node = new_node(2, 1, &[], "join");
    small_node.capabilities.memory_bytes = 2048 * MIB;
    h.pool.register(small_node, h.now_ms, &mut h.out);
    let fourth = h.take(NodeId(2), 1);
    assert_eq!(fourth[0].memory_bytes_max, Some(2048 * MIB));
    assert!(h.report(NodeId(2), fourth[0].attempt_id, Outcome::Succeeded));
    assert_eq!(h.status(job).state, JobState::Completed);
}

#[test]
fn a_pool_that_checks_every_job_refuses_a_failure_policy() {
    let h = super::verification::public(verify::Policy::PUBLIC);
    let mut job = JobSubmission::new("checked", BlobHash::of(b"m"), vec![TaskSpec::default()]);
    job.deterministic = Some(wire::Deterministic { seed: 1 });
    job.on_failure = Some(policy(1));
    let refused = h.pool.checked_verify(&job);
    assert!(
        matches!(&refused, Err(PoolError::Invalid(why)) if why.contains("takes no failure policy")),
        "{refused:?}"
    );
    job.on_failure = None;
    assert!(h.pool.checked_verify(&job).is_ok());
}
