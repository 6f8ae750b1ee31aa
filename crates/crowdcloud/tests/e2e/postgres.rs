//! The coordinator on PostgreSQL: the same code path as SQLite, a job across agents, and a
//! restart mid-job. `scripts/test` starts a PostgreSQL server and requires this to run.

use std::time::Duration;

use wire::{JobState, Limits, TaskSpec};

use crate::harness::{Pool, eventually, probe};

/// A database of its own on the server the test script started, or `None` outside it.
// The clock only makes a database name no other run uses.
#[allow(clippy::disallowed_methods)]
pub(crate) async fn fresh_database() -> Option<String> {
    let Ok(admin) = std::env::var("CROWDCLOUD_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CROWDCLOUD_REQUIRE_POSTGRES").is_none(),
            "CROWDCLOUD_TEST_POSTGRES_URL is not set; run the tests through scripts/test"
        );
        eprintln!(
            "skipped: no PostgreSQL server (CROWDCLOUD_TEST_POSTGRES_URL); scripts/test starts one"
        );
        return None;
    };
    let name = format!(
        "e2e_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let created = tokio::process::Command::new("psql")
        .args([
            admin.as_str(),
            "-q",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .status()
        .await
        .expect("running psql");
    assert!(created.success(), "creating a test database");
    Some(format!("{}/{name}", admin.rsplit_once('/').unwrap().0))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_on_postgresql_runs_a_job_and_survives_a_hard_restart() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let mut pool = Pool::start_on(4_000, Some(database)).await;
    let _agents = [pool.agent("a", 2).await, pool.agent("b", 2).await];
    pool.wait_online(&["a", "b"]).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let tasks: Vec<TaskSpec> = (0..8)
        .map(|_| probe(&["sleep", "300"]))
        .chain((0..20).map(|i| probe(&["echo", &i.to_string()])))
        .collect();
    let job = pool.submit(module, tasks, Limits::default()).await;
    let owner = &pool.owner;
    eventually(
        "some tasks to end",
        Duration::from_secs(60),
        || async move { (owner.job(job).await.ok()?.tasks.succeeded >= 2).then_some(()) },
    )
    .await;
    pool.restart_coordinator_hard().await;
    let status = pool.finish(job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    assert_eq!(status.tasks.succeeded, 28);
    assert_eq!(
        status.nodes.iter().map(|n| n.tasks_succeeded).sum::<u32>(),
        28
    );
    let results = pool.owner.all_tasks(job).await.unwrap();
    let stdout = pool
        .owner
        .download(&results[8].stdout.unwrap().hash)
        .await
        .unwrap();
    assert_eq!(&stdout[..], b"0\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_on_postgresql_takes_earlier_results_by_key_and_explains_what_ran() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let pool = Pool::start_on(3_000, Some(database)).await;
    crate::pipelines::runs_nothing_again_and_reruns_what_changed(pool).await;
}
