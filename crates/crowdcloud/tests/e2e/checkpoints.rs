//! Checkpoints end to end: a task whose node is killed resumes elsewhere from its latest
//! checkpoint and ends as an uninterrupted run does, byte for byte and fuel for fuel; a task
//! that stops while writing its checkpoint leaves the previous one the latest; and a node's
//! checkpoint is taken only for an attempt it holds, of a job that checkpoints, within its size.
//! In a public pool, a task resumed on a stranger's node from another's checkpoint is checked
//! from the start elsewhere and agrees with it, byte for byte and fuel for fuel; and a poisoned
//! checkpoint spoils only the result built on it, which the checks refuse.

use std::time::Duration;

use bytes::Bytes;
use wire::{
    BlobHash, CheckpointProgress, CheckpointSpec, Deterministic, JobId, JobState, LeaseRequest,
    Limits, TaskSpec, TaskState, TaskStatus,
};

use crate::harness::{Pool, eventually, probe};
use crate::public::{grant_the_owner_credit, public_pool, stranger};

/// One second of work between checkpoints: of wall time, or in deterministic mode of fuel.
const INTERVAL_MS: u64 = 1_000;
/// Enough starts for several seconds of work: several checkpoints.
const COLLATZ_LIMIT: &str = "20000000";

fn every_second() -> CheckpointSpec {
    CheckpointSpec {
        interval_ms: INTERVAL_MS,
        exit_code: wire::checkpoint::DEFAULT_EXIT_CODE,
        bytes_max: wire::checkpoint::DEFAULT_BYTES_MAX,
    }
}

/// A deterministic collatz task that checkpoints every second of its fuel.
pub(crate) async fn submit_collatz(pool: &Pool, module: BlobHash) -> JobId {
    let task = TaskSpec {
        args: vec![COLLATZ_LIMIT.to_owned()],
        ..TaskSpec::default()
    };
    let limits = Limits {
        fuel_max: 1_000_000_000_000,
        ..Limits::default()
    };
    let mut submission = pool.submission(module, vec![task], limits);
    submission.deterministic = Some(Deterministic { seed: 1 });
    submission.checkpoint = Some(every_second());
    pool.owner.submit(&submission).await.unwrap().job_id
}

async fn only_task(pool: &Pool, job: JobId) -> TaskStatus {
    pool.owner.all_tasks(job).await.unwrap().remove(0)
}

pub(crate) async fn checkpoints_at_least(
    pool: &Pool,
    job: JobId,
    saved: u32,
) -> CheckpointProgress {
    let owner = &pool.owner;
    eventually(
        "the task to save its checkpoints",
        Duration::from_secs(120),
        || async move {
            let task = owner.all_tasks(job).await.ok()?.remove(0);
            task.checkpoints.filter(|progress| progress.saved >= saved)
        },
    )
    .await
}

/// What an agent's work dir still holds of checkpoints: nothing once its attempts ended.
fn checkpoint_leftovers(agent: &crate::harness::Agent) -> Vec<String> {
    std::fs::read_dir(agent.dir.join("work"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("checkpoint"))
        .collect()
}

/// The sequence of the checkpoint an agent's log says it resumed from.
pub(crate) fn resumed_from(log: &str) -> Option<u32> {
    let line = log
        .lines()
        .find(|line| line.contains("resuming from a checkpoint"))?;
    let after = line.split("sequence=").nth(1)?;
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_whose_node_is_killed_resumes_elsewhere_and_ends_as_an_uninterrupted_run() {
    let pool = Pool::start(1_500).await;
    let mut doomed = pool.agent("doomed", 1).await;
    pool.wait_online(&["doomed"]).await;
    let module = pool.upload_wasm(guests::COLLATZ).await;
    let interrupted = submit_collatz(&pool, module).await;
    let before_kill = checkpoints_at_least(&pool, interrupted, 2).await;
    doomed.kill().await;
    let survivor = pool.agent("survivor", 1).await;
    let ended = pool.finish(interrupted, Duration::from_secs(240)).await;
    assert_eq!(ended.state, JobState::Completed, "{ended:?}");
    let resumed = only_task(&pool, interrupted).await;
    assert_eq!(resumed.state, TaskState::Succeeded, "{resumed:?}");
    // The survivor started from the latest checkpoint the killed node saved, not from scratch.
    let sequence = resumed_from(&survivor.log()).expect("the survivor says what it resumed from");
    assert!(
        sequence >= before_kill.saved,
        "{sequence} < {before_kill:?}"
    );
    let progress = resumed
        .checkpoints
        .expect("the task's checkpoints are shown");
    assert!(progress.saved >= before_kill.saved, "{progress:?}");
    assert!(progress.fuel_covered >= before_kill.fuel_covered);
    assert!(
        progress.lost_ms > 0,
        "the killed attempt's work since its checkpoint is lost"
    );
    assert_eq!(checkpoint_leftovers(&survivor), Vec::<String>::new());

    // The same job, never interrupted, on the survivor alone.
    let whole = submit_collatz(&pool, module).await;
    let ended = pool.finish(whole, Duration::from_secs(240)).await;
    assert_eq!(ended.state, JobState::Completed, "{ended:?}");
    let whole = only_task(&pool, whole).await;
    assert_eq!(
        resumed.outputs, whole.outputs,
        "the same result, byte for byte"
    );
    assert_eq!(
        resumed.usage.unwrap().fuel_used,
        whole.usage.unwrap().fuel_used,
        "the same fuel in all: what the checkpoint covered counts once"
    );
    let result = pool.stdout(&whole).await;
    assert!(
        String::from_utf8_lossy(&result).starts_with("longest chain below 20000000 starts at "),
        "{result:?}"
    );
    assert!(whole.checkpoints.unwrap().lost_ms == 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_traps_while_writing_a_checkpoint_keeps_the_previous_one() {
    let pool = Pool::start(1_500).await;
    let agent = pool.agent("node", 1).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let mut submission = pool.submission(
        module,
        vec![probe(&["checkpoint-trap", "1"])],
        Limits::default(),
    );
    submission.checkpoint = Some(every_second());
    let job = pool.owner.submit(&submission).await.unwrap().job_id;
    let ended = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(ended.state, JobState::Failed, "{ended:?}");
    let task = only_task(&pool, job).await;
    assert!(
        matches!(task.outcome, Some(wire::Outcome::Trap { .. })),
        "{task:?}"
    );
    // The first run's checkpoint (count 1) is the latest; the trapped run's half-written one
    // never became a checkpoint. The last run printed the count it found: 1.
    let progress = task.checkpoints.expect("the task saved a checkpoint");
    assert_eq!(progress.saved, 1, "{progress:?}");
    assert_eq!(pool.stdout(&task).await, Bytes::from_static(b"count 1\n"));
    // The checkpoint goes from the node with the attempt's directory.
    assert_eq!(checkpoint_leftovers(&agent), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_saves_checkpoints_only_for_attempts_it_holds_within_the_jobs_size() {
    let pool = Pool::start(60_000).await;
    let node = pool.raw_node(3, "by-hand", 2).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let mut submission = pool.submission(module, vec![probe(&["echo", "x"])], Limits::default());
    submission.checkpoint = Some(CheckpointSpec {
        bytes_max: 64,
        ..every_second()
    });
    let checkpointing = pool.owner.submit(&submission).await.unwrap().job_id;
    submission.checkpoint = None;
    let plain = pool.owner.submit(&submission).await.unwrap().job_id;
    let lease = LeaseRequest {
        slots_free: 2,
        wait_ms: 5_000,
    };
    let granted = node.lease(&lease).await.unwrap().attempts;
    let attempt_of = |job: JobId| {
        granted
            .iter()
            .find(|grant| grant.job_id == job)
            .map(|grant| grant.attempt_id)
            .expect("both jobs' tasks are granted")
    };
    let dir = tempfile::tempdir().unwrap();
    let put = |bytes: &[u8], name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        (BlobHash::of(bytes), path)
    };
    let (small, small_path) = put(b"whole state", "small");
    let (large, large_path) = put(&[7; 65], "large");
    let refused = |result: client::Result<()>| result.unwrap_err().to_string();
    let attempt = attempt_of(plain);
    let message = refused(
        node.put_checkpoint_file(attempt, small, 10, &small_path)
            .await,
    );
    assert!(message.contains("does not checkpoint"), "{message}");
    let attempt = attempt_of(checkpointing);
    let message = refused(
        node.put_checkpoint_file(attempt, large, 10, &large_path)
            .await,
    );
    assert!(message.contains("65 bytes"), "{message}");
    node.put_checkpoint_file(attempt, small, 10, &small_path)
        .await
        .unwrap();
    // Behind the task's latest: a conflict, which a replica that is behind carries on from.
    let behind = node
        .put_checkpoint_file(attempt, small, 5, &small_path)
        .await
        .unwrap_err();
    assert_eq!(behind.code(), Some(wire::ErrorCode::Conflict), "{behind}");
    // Another node's attempt is not this node's to checkpoint.
    let other = pool.raw_node(4, "other", 1).await;
    let message = refused(
        other
            .put_checkpoint_file(attempt, small, 20, &small_path)
            .await,
    );
    assert!(message.contains("not held by this node"), "{message}");
    let task = only_task(&pool, checkpointing).await;
    let progress = task.checkpoints.unwrap();
    assert_eq!((progress.saved, progress.fuel_covered), (1, 10));
    assert_eq!(progress.size_bytes, b"whole state".len() as u64);
    assert_eq!(only_task(&pool, plain).await.checkpoints, None);
}

/// Two replicas of a deterministic task checkpoint at the same points: the second to save each
/// checkpoint is behind the task's latest, hears so, and goes on; the task ends with one result.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_whose_checkpoint_is_behind_goes_on_and_the_task_ends_once() {
    let pool = Pool::start(5_000).await;
    let agents = [pool.agent("one", 1).await, pool.agent("two", 1).await];
    pool.wait_online(&["one", "two"]).await;
    let module = pool.upload_wasm(guests::COLLATZ).await;
    let task = TaskSpec {
        args: vec!["6000000".to_owned()],
        ..TaskSpec::default()
    };
    let mut submission = pool.submission(module, vec![task], Limits::default());
    submission.deterministic = Some(Deterministic { seed: 1 });
    submission.checkpoint = Some(every_second());
    submission.replicas = 2;
    let job = pool.owner.submit(&submission).await.unwrap().job_id;
    let ended = pool.finish(job, Duration::from_secs(240)).await;
    assert_eq!(ended.state, JobState::Completed, "{ended:?}");
    assert_eq!(ended.tasks.succeeded, 1);
    let behind = agents.iter().any(|agent| {
        agent
            .log()
            .contains("another replica's checkpoint is further on")
    });
    assert!(behind, "one replica's checkpoints came second");
    let task = only_task(&pool, job).await;
    assert!(task.checkpoints.unwrap().saved >= 1);
}

/// A public pool where no one is trusted yet, whose one node (started with `cheat`) takes a
/// deterministic collatz task and is killed once it saved two checkpoints. Returns the pool,
/// the job, its checkpoints before the kill, and the killed node's log.
async fn killed_after_two_checkpoints(cheat: &[&str]) -> (Pool, JobId, CheckpointProgress, String) {
    let pool = public_pool("0", &["--audit-percent", "0"]).await;
    grant_the_owner_credit(&pool).await;
    let mut doomed = stranger(&pool, "doomed", cheat).await;
    pool.wait_online(&["doomed"]).await;
    let module = pool.upload_wasm(guests::COLLATZ).await;
    let job = submit_collatz(&pool, module).await;
    let before_kill = checkpoints_at_least(&pool, job, 2).await;
    doomed.kill().await;
    (pool, job, before_kill, doomed.log())
}

/// Strangers `names` join and the job completes; returns its task, and the stranger that
/// resumed it with the sequence it resumed from: exactly one did, the others ran from the start.
async fn finished_by_strangers(
    pool: &Pool,
    job: JobId,
    names: &[&str],
) -> (TaskStatus, usize, u32) {
    let mut strangers = Vec::new();
    for name in names {
        strangers.push(stranger(pool, name, &[]).await);
    }
    let ended = pool.finish(job, Duration::from_secs(300)).await;
    assert_eq!(ended.state, JobState::Completed, "{ended:?}");
    let resumed: Vec<(usize, u32)> = strangers
        .iter()
        .enumerate()
        .filter_map(|(index, agent)| Some((index, resumed_from(&agent.log())?)))
        .collect();
    assert_eq!(
        resumed.len(),
        1,
        "one stranger resumed, the others ran from the start"
    );
    for name in names {
        assert!(
            !crate::public::banned(pool, name).await,
            "{name} was banned"
        );
    }
    let (resumer, sequence) = resumed[0];
    (only_task(pool, job).await, resumer, sequence)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verified_task_resumed_from_a_strangers_checkpoint_agrees_with_checks_from_the_start() {
    let (pool, job, before_kill, _) = killed_after_two_checkpoints(&[]).await;
    // One stranger resumes from the killed node's checkpoint; since that result rests on
    // another owner's state and no one is trusted yet, the other two check it from the start.
    let (task, _, sequence) =
        finished_by_strangers(&pool, job, &["first", "second", "third"]).await;
    assert_eq!(task.state, TaskState::Succeeded, "{task:?}");
    assert!(
        sequence >= before_kill.saved,
        "{sequence} < {before_kill:?}"
    );
    let verification = task.verification.clone().expect("the result was verified");
    assert_eq!(
        verification.by,
        wire::VerifiedBy::Replicas,
        "{verification:?}"
    );
    assert_eq!(
        verification.nodes.len(),
        3,
        "the resumed result and two runs from the start agreed on output and fuel: {verification:?}"
    );
    let result = pool.stdout(&task).await;
    assert!(
        String::from_utf8_lossy(&result).starts_with("longest chain below 20000000 starts at "),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poisoned_checkpoint_spoils_only_the_result_built_on_it_and_the_checks_refuse_it() {
    let (pool, job, _, log) = killed_after_two_checkpoints(&["--cheat", "checkpoints"]).await;
    assert!(log.contains("flipped a byte of a checkpoint"));
    // The stranger that resumes from the poisoned state ends with a wrong result; the checks
    // from the start agree with each other against it, so three of them settle the task.
    let names = ["first", "second", "third", "fourth"];
    let (task, resumer, _) = finished_by_strangers(&pool, job, &names).await;
    let verification = task.verification.clone().expect("the result was verified");
    let resumer_node = pool.node_id(names[resumer]).await;
    assert!(
        !verification.nodes.contains(&resumer_node),
        "the result built on the poisoned state is not among those that agreed: {verification:?}"
    );
    assert_eq!(verification.nodes.len(), 3, "{verification:?}");
}
