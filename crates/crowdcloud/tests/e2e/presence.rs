//! A killed agent's task runs elsewhere within seconds, long before its lease would run out,
//! and the agent started again is let in at once: the agent's presence request closed with its
//! process, so the coordinator knows the old process is gone.

use std::time::{Duration, Instant};

use wire::{JobState, Limits};

use crate::harness::{Pool, eventually, probe};

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_agents_task_runs_elsewhere_at_once_and_its_restart_is_let_in_at_once() {
    // A lease of a minute: silence alone would wait 30 s, and the lease 60 s.
    let pool = Pool::start(60_000).await;
    let mut doomed = pool.agent("doomed", 1).await;
    pool.wait_online(&["doomed"]).await;
    let module = pool.upload_wasm(guests::PROBE).await;
    let job = pool
        .submit(module, vec![probe(&["sleep", "2000"])], Limits::default())
        .await;
    let owner = &pool.owner;
    eventually(
        "the task to run on doomed",
        Duration::from_secs(30),
        || async move {
            let status = owner.job(job).await.ok()?;
            (status.tasks.running == 1).then_some(())
        },
    )
    .await;
    let _steady = pool.agent("steady", 1).await;
    pool.wait_online(&["steady"]).await;
    let steady = pool.node_id("steady").await;

    let killed_at = Instant::now();
    doomed.kill().await;
    let status = pool.finish(job, Duration::from_secs(20)).await;
    assert_eq!(status.state, JobState::Completed);
    let took = killed_at.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "done {took:?} after the kill, before half a lease"
    );
    let tasks = pool.owner.all_tasks(job).await.unwrap();
    assert_eq!(
        tasks[0].node_id,
        Some(steady),
        "the result is the stand-in's"
    );
}
