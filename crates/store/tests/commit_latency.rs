//! How long one commit of the single writer takes on SQLite when nothing else is queued: what
//! every request of a quiet coordinator waits for, twice in a task's round trip (the
//! submission with its grant, then the report with its ledger rows). A measurement, not a
//! check, so it is ignored; run it with
//! `cargo test --release -p store --test commit_latency -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use store::{AttemptEnd, AttemptEndState, AttemptRow, Durability, JobRow, Store, TaskEnd, Write};
use wire::{
    Account, AttemptId, BlobHash, JobId, JobState, JobSubmission, Memo, NodeId, Outcome,
    RequesterId, TaskSpec, TaskState, Transfer, Usage,
};

const ROUND_TRIPS: u64 = 2_000;

fn submission(id: JobId) -> Vec<Write> {
    let spec = JobSubmission {
        name: "noop".to_owned(),
        module: BlobHash::of(b"module"),
        env: Default::default(),
        mounts: vec![],
        requirements: Default::default(),
        limits: Default::default(),
        max_attempts: 3,
        replicas: 1,
        deterministic: None,
        verify: None,
        validator: None,
        success_exit_codes: Vec::new(),
        tasks: vec![],
    };
    let job = JobRow {
        id,
        requester_id: RequesterId(1),
        spec,
        task_count: 1,
        state: JobState::Running,
        submitted_seq: id.0,
        created_at_ms: 10,
        finished_at_ms: None,
        module_bytes: 100,
        component: false,
        wasm_features: vec![],
    };
    vec![
        Write::InsertJob {
            job,
            tasks: vec![TaskSpec::default()],
        },
        Write::GrantAttempts(vec![AttemptRow {
            id: AttemptId(id.0),
            job_id: id,
            task_index: 0,
            node_id: NodeId(1),
            granted_at_ms: 11,
        }]),
    ]
}

fn report(id: JobId) -> Vec<Write> {
    vec![
        Write::EndAttempts(vec![AttemptEnd {
            attempt_id: AttemptId(id.0),
            job_id: id,
            task_index: 0,
            state: AttemptEndState::Succeeded,
            at_ms: 12,
            outcome: Some(Outcome::Succeeded),
            usage: Some(Usage::default()),
            stdout: None,
            stderr: None,
            outputs: vec![],
            task_end: Some(TaskEnd {
                state: TaskState::Succeeded,
                outcome: Outcome::Succeeded,
            }),
        }]),
        Write::InsertTransfers(vec![Transfer {
            seq: id.0,
            at_ms: 12,
            from: Account::Requester(RequesterId(1)),
            to: Account::Owner(1),
            fuel: 5,
            memo: Memo::Execution,
            job_id: Some(id),
        }]),
        Write::FinishJob {
            job_id: id,
            state: JobState::Completed,
            at_ms: 12,
        },
    ]
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it on purpose, in release"]
async fn one_commit_at_a_time_on_sqlite() {
    for durability in [Durability::Full, Durability::Process] {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("state.db").display());
        let store = Store::open(&url, durability).await.unwrap();
        let mut commits = Vec::with_capacity(2 * ROUND_TRIPS as usize);
        for n in 1..=ROUND_TRIPS {
            for writes in [submission(JobId(n)), report(JobId(n))] {
                let started = Instant::now();
                store.write(writes).await.unwrap();
                commits.push(started.elapsed());
            }
        }
        store.close().await;
        // The first commits warm caches up; the rest is the steady state.
        let mut steady = commits.split_off(commits.len() / 10);
        steady.sort();
        println!(
            "{durability:?}: {} commits, p50 {:?}, p90 {:?}, p99 {:?}",
            steady.len(),
            quantile(&steady, 0.5),
            quantile(&steady, 0.9),
            quantile(&steady, 0.99),
        );
    }
}
