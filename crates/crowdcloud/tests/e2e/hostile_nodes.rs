//! Hostile nodes against a real coordinator: a node speaks the node protocol by hand and claims
//! what it likes. It gets no more than its lease allows: no read of blobs it did not upload, no
//! output past the job's limits, no attempts past its slots or its deadline, and no number that
//! stops the coordinator from starting again. An honest agent loses no work in flight (fetching,
//! running or uploading) to a short coordinator outage.

use std::time::Duration;

use bytes::Bytes;

use client::{Client, ClientError};
use wire::{
    AttemptGrant, AttemptReport, BlobHash, BlobRef, ErrorCode, HeartbeatRequest, JobState,
    LeaseRequest, Limits, NodeActivity, Outcome, OutputFile, ReportAck, ReportRequest, TaskState,
    Usage,
};

use crate::harness::{Pool, eventually, probe};

fn report(attempt: &AttemptGrant, outcome: Outcome) -> AttemptReport {
    AttemptReport {
        ran_on: None,
        attempt_id: attempt.attempt_id,
        outcome,
        usage: Usage::default(),
        stdout: None,
        stderr: None,
        outputs: vec![],
        sealed_digest: None,
    }
}

async fn send(node: &Client, report: AttemptReport) -> ReportAck {
    let response = node
        .report(&ReportRequest {
            reports: vec![report],
        })
        .await
        .expect("the coordinator answers a report");
    response.acks.into_iter().next().expect("one ack")
}

async fn lease(node: &Client, slots_free: u32) -> Vec<AttemptGrant> {
    node.lease(&LeaseRequest {
        slots_free,
        wait_ms: 5_000,
    })
    .await
    .expect("a lease answer")
    .attempts
}

fn api_status<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, ErrorCode) {
    match result {
        Err(ClientError::Api { status, error }) => (status, error.code),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fuel_claims_past_the_job_are_refused_and_the_coordinator_restarts() {
    let mut pool = Pool::start(5_000).await;
    let node = pool.raw_node(11, "liar", 2).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let tasks = vec![probe(&["echo", "a"]), probe(&["echo", "b"])];
    let job = pool.submit(module, tasks, Limits::default()).await;
    let attempts = lease(&node, 2).await;
    assert_eq!(attempts.len(), 2);
    for attempt in &attempts {
        let mut claim = report(attempt, Outcome::ExitCode { code: 1 });
        claim.usage.fuel_used = i64::MAX as u64;
        let ack = send(&node, claim).await;
        assert!(
            !ack.accepted,
            "fuel past the job's fuel_max is not believed"
        );
        assert!(ack.message.unwrap().contains("fuel"));
    }
    let mut honest = report(&attempts[0], Outcome::ExitCode { code: 1 });
    honest.usage.fuel_used = Limits::default().fuel_max;
    honest.usage.wall_ms = u64::MAX;
    assert!(send(&node, honest).await.accepted);

    pool.restart_coordinator_hard().await;
    let status = pool.owner.job(job).await.expect("the pool came back");
    assert_eq!(status.tasks.failed, 1);
    let tasks = pool.owner.all_tasks(job).await.unwrap();
    let usage = tasks[attempts[0].task_index as usize]
        .usage
        .expect("the report's usage");
    assert_eq!(usage.fuel_used, Limits::default().fuel_max);
    assert!(
        usage.wall_ms < 60_000,
        "wall time is no longer than the attempt was held: {}",
        usage.wall_ms
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_cannot_turn_a_known_hash_into_a_read_of_someone_elses_data() {
    let pool = Pool::start(5_000).await;
    let secret = Bytes::from_static(b"the owner's private input");
    let secret_hash = pool.owner.upload_bytes(secret.clone()).await.unwrap();
    // Mallory is another requester who runs a node of her own.
    let mallory = pool.requester("mallory").await;
    let node = pool.raw_node(12, "mallory's node", 1).await;
    let module = mallory
        .upload_bytes(Bytes::from_static(guests::PROBE))
        .await
        .unwrap();
    let job = pool
        .submit_as(&mallory, module, vec![probe(&["echo", "x"])])
        .await;
    let attempt = lease(&node, 1).await.remove(0);
    let absent = BlobHash::of(b"nobody uploaded this");
    let mut messages = Vec::new();
    for hash in [secret_hash, absent] {
        let mut claim = report(&attempt, Outcome::Succeeded);
        claim.stdout = Some(BlobRef {
            hash,
            size_bytes: 25,
        });
        let ack = send(&node, claim).await;
        assert!(!ack.accepted, "a hash the node did not upload is refused");
        messages.push(ack.message.unwrap().replace(&hash.to_string(), "HASH"));
    }
    assert_eq!(
        messages[0], messages[1],
        "a stored and an absent blob are refused alike, so existence does not leak"
    );
    let (status, _) = api_status(mallory.download(&secret_hash).await);
    assert_eq!(status, 404, "mallory still cannot read the owner's blob");
    assert_eq!(
        mallory.job(job).await.unwrap().tasks.running,
        1,
        "nothing taken"
    );

    // Her node may still report what it did upload for the attempt.
    let stdout = Bytes::from_static(b"x\n");
    node.put_output(attempt.attempt_id, BlobHash::of(&stdout), stdout.clone())
        .await
        .unwrap();
    let mut honest = report(&attempt, Outcome::Succeeded);
    honest.stdout = Some(BlobRef {
        hash: BlobHash::of(&stdout),
        size_bytes: 2,
    });
    assert!(send(&node, honest).await.accepted);
    assert_eq!(
        mallory.download(&BlobHash::of(&stdout)).await.unwrap(),
        stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_keep_the_jobs_output_limits_and_path_rules() {
    let pool = Pool::start(5_000).await;
    let node = pool.raw_node(13, "inflater", 1).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let limits = Limits {
        output_bytes_max: 1 << 20,
        output_files_max: 10,
        ..Limits::default()
    };
    let job = pool
        .submit(module, vec![probe(&["echo", "x"])], limits)
        .await;
    let attempt = lease(&node, 1).await.remove(0);
    let big = Bytes::from(vec![42u8; 4 << 20]);
    let big_hash = BlobHash::of(&big);
    node.put_output(attempt.attempt_id, big_hash, big)
        .await
        .unwrap();
    let named = |count: usize| -> Vec<OutputFile> {
        (0..count)
            .map(|i| OutputFile {
                path: format!("copy{i}"),
                hash: big_hash,
                size_bytes: 1,
            })
            .collect()
    };
    let mut claim = report(&attempt, Outcome::Succeeded);
    claim.outputs = named(2_000);
    assert!(
        !send(&node, claim.clone()).await.accepted,
        "2,000 files on a job of 10"
    );
    claim.outputs = named(2);
    let ack = send(&node, claim.clone()).await;
    assert!(!ack.accepted, "8 MiB of outputs on a job of 1 MiB");
    assert!(ack.message.unwrap().contains("bytes"));
    let small = Bytes::from_static(b"small");
    node.put_output(attempt.attempt_id, BlobHash::of(&small), small.clone())
        .await
        .unwrap();
    claim.outputs = ["a", "a/b"]
        .iter()
        .map(|path| OutputFile {
            path: (*path).to_owned(),
            hash: BlobHash::of(&small),
            size_bytes: 5,
        })
        .collect();
    let (status, code) = api_status(
        node.report(&ReportRequest {
            reports: vec![claim.clone()],
        })
        .await,
    );
    assert_eq!(
        (status, code),
        (400, ErrorCode::BadRequest),
        "a file that is also a directory"
    );
    assert_eq!(
        pool.owner.job(job).await.unwrap().tasks.running,
        1,
        "nothing taken"
    );

    claim.outputs.truncate(1);
    claim.outputs[0].size_bytes = 1;
    assert!(send(&node, claim).await.accepted);
    let task = &pool.owner.all_tasks(job).await.unwrap()[0];
    assert_eq!(
        task.outputs[0].size_bytes, 5,
        "the measured size, not the claim"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_holds_no_more_than_its_slots_and_nothing_past_the_deadline() {
    let lease_ms = 1_500;
    let pool = Pool::start(lease_ms).await;
    let node = pool.raw_node(14, "hoarder", 1).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let limits = Limits {
        deadline_ms: 2_000,
        output_bytes_max: 64 << 10,
        stdout_bytes_max: 64 << 10,
        stderr_bytes_max: 64 << 10,
        ..Limits::default()
    };
    let tasks = (0..50).map(|_| probe(&["sleep", "100"])).collect();
    let job = pool.submit(module, tasks, limits).await;
    let attempts = lease(&node, 1024).await;
    let granted = std::time::Instant::now();
    assert_eq!(attempts.len(), 1, "a node of 1 slot gets 1 attempt");
    // Asked without waiting: a node parked on a long poll longer than its lease, with no
    // heartbeat beside it, would lose its lease instead of meeting its deadline.
    let more = node
        .lease(&LeaseRequest {
            slots_free: 1024,
            wait_ms: 0,
        })
        .await
        .unwrap();
    assert!(more.attempts.is_empty(), "and no more while it holds it");
    let held = attempts[0].attempt_id;
    // It heartbeats as if it ran the attempt for ever.
    let heartbeat = HeartbeatRequest {
        running: vec![held],
        slots_free: 1024,
        activity: NodeActivity::Active,
        capabilities: None,
        forgotten: Vec::new(),
        copied: Vec::new(),
        kept: Vec::new(),
        dropped: Vec::new(),
    };
    eventually(
        "the coordinator to end the overdue attempt",
        Duration::from_secs(60),
        || {
            let node = &node;
            let heartbeat = &heartbeat;
            async move {
                let response = node.heartbeat(heartbeat).await.ok()?;
                response.cancel.contains(&held).then_some(())
            }
        },
    )
    .await;
    assert!(
        granted.elapsed() >= Duration::from_millis(2_000),
        "the attempt was not ended before its deadline"
    );
    let log = pool.coordinator_log();
    assert!(
        log.contains("why=Overdue") && !log.contains("why=LeaseRanOut"),
        "it ended for being overdue, not for a lapsed lease:\n{log}"
    );
    let status = pool.owner.job(job).await.unwrap();
    assert_eq!(status.tasks.running, 0);
    assert_eq!(status.state, JobState::Running);
    let ack = send(&node, report(&attempts[0], Outcome::Succeeded)).await;
    assert!(!ack.accepted, "its late report is refused");
}

#[tokio::test(flavor = "multi_thread")]
async fn work_in_flight_survives_a_short_coordinator_outage() {
    let mut pool = Pool::start(3_000).await;
    let agent = pool.agent("patient", 4).await;
    pool.wait_online(&["patient"]).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let tasks = (0..4).map(|_| probe(&["sleep", "2000"])).collect();
    let job = pool.submit_with_attempts(module, tasks, 1).await;
    let owner = pool.owner.clone();
    eventually(
        "all four tasks to be granted",
        Duration::from_secs(60),
        || {
            let owner = owner.clone();
            async move { (owner.job(job).await.ok()?.tasks.running == 4).then_some(()) }
        },
    )
    .await;
    pool.kill_coordinator().await;
    // Each attempt meets the outage where it is: fetching its module, or uploading its stdout
    // once its guest has ended. Before these were retried, the report of the failure did.
    eventually(
        "the agent to meet the outage with work in flight",
        Duration::from_secs(60),
        || {
            let log = agent.log();
            async move {
                [
                    "cannot fetch an input yet",
                    "cannot upload an output yet",
                    "cannot report yet",
                ]
                .iter()
                .any(|line| log.contains(line))
                .then_some(())
            }
        },
    )
    .await;
    pool.start_coordinator_again().await;
    let status = pool.finish(job, Duration::from_secs(120)).await;
    let tasks = pool.owner.all_tasks(job).await.unwrap();
    let outcomes: Vec<_> = tasks.iter().map(|task| &task.outcome).collect();
    assert_eq!(
        status.state,
        JobState::Completed,
        "{outcomes:?}\n{}",
        agent.log()
    );
    for task in tasks {
        assert_eq!(task.state, TaskState::Succeeded);
        assert_eq!(&pool.stdout(&task).await[..], b"slept 2000\n");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_brings_back_the_next_attempts_and_one_asking_past_the_bound_changes_nothing() {
    let pool = Pool::start(5_000).await;
    let node = pool.raw_node(12, "busy", 2).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let tasks = (0..4).map(|_| probe(&["echo", "x"])).collect();
    let job = pool.submit(module, tasks, Limits::default()).await;
    let first = lease(&node, 1).await;
    assert_eq!(first.len(), 1);
    let done = |attempt: &AttemptGrant| ReportRequest {
        reports: vec![report(attempt, Outcome::ExitCode { code: 0 })],
    };
    // One exchange: the report, and the two slots it leaves free filled.
    let answer = node.report_and_lease(&done(&first[0]), 2).await.unwrap();
    assert!(answer.acks[0].accepted, "{answer:?}");
    let next = answer.lease.expect("the attempts come with the answer");
    assert_eq!(next.attempts.len(), 2);
    assert!(next.attempts.iter().all(|grant| grant.job_id == job));
    // Past the node protocol's bound on slots: refused whole, the report with it.
    let (status, code) = api_status(node.report_and_lease(&done(&next.attempts[0]), 5_000).await);
    assert_eq!((status, code), (400, ErrorCode::BadRequest));
    assert_eq!(
        pool.owner.job(job).await.unwrap().tasks.running,
        2,
        "nothing taken"
    );
    assert!(
        send(
            &node,
            report(&next.attempts[0], Outcome::ExitCode { code: 0 })
        )
        .await
        .accepted
    );
}
