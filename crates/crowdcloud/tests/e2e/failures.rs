//! A job's failure policy on real agents: a program that ran out of memory gets more on its
//! retry and succeeds, one that keeps failing stops when its retries run out, an `unless_exit`
//! code fails at once, and an `abort_on` code stops the whole job, its running attempts
//! cancelled.

use std::time::Duration;

use wire::{JobState, Outcome, TaskState};

use crate::harness::{Pool, probe};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_from_the_spec_give_more_memory_and_stop_at_their_bound_or_an_unless_exit_code() {
    let pool = Pool::start(3_000).await;
    let _agent = pool.agent("roomy", 3).await;
    pool.wait_online(&["roomy"]).await;
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("probe.wasm"), guests::PROBE).unwrap();
    let spec = work.path().join("steered.toml");
    std::fs::write(
        &spec,
        "module = \"probe.wasm\"\nmax_attempts = 1\nretries = 2\nunless_exit = [2]\n\
         memory_escalate = 2\n[limits]\nmemory = \"64MiB\"\ndeadline = \"30s\"\n\
         [[tasks]]\nargs = [\"alloc\", \"100\"]\n\
         [[tasks]]\nargs = [\"exit\", \"3\"]\n\
         [[tasks]]\nargs = [\"exit\", \"2\"]\n",
    )
    .unwrap();
    let submitted = pool
        .cli(&["submit", spec.to_str().unwrap(), "--wait", "--json"])
        .await;
    let status: wire::JobStatus = serde_json::from_slice(&submitted.stdout)
        .unwrap_or_else(|_| panic!("{}", text(&submitted.stderr)));
    assert_eq!(status.state, JobState::Failed);
    let tasks = pool.owner.all_tasks(status.job_id).await.unwrap();

    let grown = &tasks[0];
    assert_eq!(grown.state, TaskState::Succeeded, "{grown:?}");
    assert_eq!(
        grown.attempts, 2,
        "out of memory once, then given twice as much"
    );
    let peak = grown.usage.unwrap().memory_peak_bytes;
    assert!(
        peak > 64 << 20,
        "the retry used more than the job's 64 MiB: {peak}"
    );

    let stubborn = &tasks[1];
    assert_eq!(stubborn.outcome, Some(Outcome::ExitCode { code: 3 }));
    assert_eq!(stubborn.attempts, 3, "one attempt and two retries");

    let hopeless = &tasks[2];
    assert_eq!(hopeless.outcome, Some(Outcome::ExitCode { code: 2 }));
    assert_eq!(hopeless.attempts, 1, "unless_exit fails it at once");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abort_on_exit_code_stops_the_job_and_cancels_the_attempts_still_running() {
    let pool = Pool::start(3_000).await;
    let _agent = pool.agent("busy", 4).await;
    pool.wait_online(&["busy"]).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let mut tasks = vec![probe(&["sleep", "600000"]); 3];
    tasks.push(probe(&["exit", "42"]));
    let mut submission = pool.submission(module, tasks, wire::Limits::default());
    submission.on_failure = Some(Box::new(wire::OnFailure {
        retries: 3,
        abort_on: vec![42],
        ..wire::OnFailure::default()
    }));
    let job = pool.owner.submit(&submission).await.unwrap().job_id;

    let status = pool.finish(job, Duration::from_secs(60)).await;
    assert_eq!(status.state, JobState::Failed);
    let aborted = status.aborted.expect("the job says which task stopped it");
    assert_eq!((aborted.task_index, aborted.exit_code), (3, 42));
    assert_eq!((status.tasks.failed, status.tasks.cancelled), (1, 3));

    let shown = pool.cli(&["status", &job.to_string()]).await;
    let shown = text(&shown.stdout);
    assert!(shown.contains("task 3 exited with code 42"), "{shown}");
}
