//! Two coordinators on one PostgreSQL database: one leads, the other stands by and takes over
//! when the leader dies, freezes or loses the database, and a job in flight completes with
//! every task's result exactly once. `scripts/test` starts the PostgreSQL server.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wire::{JobId, JobState, Limits, TaskSpec};

use crate::harness::{Pool, Standby, coordinator_leads, eventually, probe};
use crate::postgres::fresh_database;

/// A pool whose coordinator leads `database` and a second one standing by, both keeping blobs
/// in the directory `blobs`, with two agents given both coordinators' URLs.
async fn pair(database: String, blobs: &Path) -> (Pool, Standby, [crate::harness::Agent; 2]) {
    let blobs = blobs.to_str().unwrap();
    let mut pool = Pool::start_with(4_000, Some(database), &["--standby", "--blobs", blobs]).await;
    let leader_url = pool.url.clone();
    eventually(
        "the first coordinator to lead",
        Duration::from_secs(30),
        || {
            let url = leader_url.clone();
            async move { coordinator_leads(&url).await.then_some(()) }
        },
    )
    .await;
    let standby = pool.add_standby().await;
    let health = client::Client::new(&standby.url, None)
        .unwrap()
        .health()
        .await
        .expect("a standby answers its health");
    assert_eq!(health.role, Some(wire::CoordinatorRole::Standby));
    assert_eq!(
        health.leader.as_deref(),
        Some(leader_url.as_str()),
        "a standby names the leader"
    );
    let refused = client::Client::new(&standby.url, Some(pool.owner_token.clone()))
        .unwrap()
        .jobs(10)
        .await
        .expect_err("a standby serves nothing but its health");
    assert_eq!(refused.code(), Some(wire::ErrorCode::Standby), "{refused}");
    let page = reqwest::get(format!("{}/", standby.url)).await.unwrap();
    assert!(
        page.status().is_success(),
        "a phone sent to the standby gets the web app, which shows who leads"
    );
    let agents = [pool.agent("a", 2).await, pool.agent("b", 2).await];
    pool.wait_online(&["a", "b"]).await;
    (pool, standby, agents)
}

/// Tasks that keep a job in flight for a while (every odd one sleeps half a second) and
/// print their index (every even one), so results are stored before and after a fault.
fn tasks(count: u32) -> Vec<TaskSpec> {
    (0..count)
        .map(|i| {
            if i % 2 == 1 {
                probe(&["sleep", "500"])
            } else {
                probe(&["echo", &i.to_string()])
            }
        })
        .collect()
}

async fn job(pool: &Pool, count: u32) -> JobId {
    let module = pool.upload_wasm(guests::PROBE).await;
    pool.submit(module, tasks(count), Limits::default()).await
}

/// Waits until `job` has at least `done` results.
async fn until_done(pool: &Pool, job: JobId, done: u32) {
    let owner = &pool.owner;
    eventually(
        "some tasks to end",
        Duration::from_secs(60),
        || async move { (owner.job(job).await.ok()?.tasks.succeeded >= done).then_some(()) },
    )
    .await;
}

/// The job completed with every task's result once, each the output of its own task.
async fn completed_exactly_once(pool: &Pool, job: JobId, count: u32) {
    let status = pool.finish(job, Duration::from_secs(120)).await;
    assert_eq!(status.state, JobState::Completed, "{status:?}");
    assert_eq!(status.tasks.succeeded, count);
    assert_eq!(
        status.nodes.iter().map(|n| n.tasks_succeeded).sum::<u32>(),
        count,
        "no task counted twice"
    );
    let tasks = pool.owner.all_tasks(job).await.unwrap();
    assert_eq!(tasks.len(), count as usize);
    for (index, task) in tasks.iter().enumerate().step_by(2) {
        let stdout = pool.stdout(task).await;
        assert_eq!(&stdout[..], format!("{index}\n").as_bytes(), "task {index}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standby_leads_when_the_leader_is_killed_and_the_job_completes_once() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let blobs = tempfile::tempdir().unwrap();
    let (mut pool, standby, _agents) = pair(database, blobs.path()).await;
    let job = job(&pool, 24).await;
    until_done(&pool, job, 4).await;
    pool.kill_coordinator().await;
    let killed_at = Instant::now();
    eventually("the standby to lead", Duration::from_secs(30), || async {
        standby.leads().await.then_some(())
    })
    .await;
    eprintln!("the standby led {:?} after the kill", killed_at.elapsed());
    assert!(
        standby.log().contains("this coordinator leads the pool"),
        "{}",
        standby.log()
    );
    // The owner's token keeps its rights at the new leader.
    pool.join_token_for("after the failover").await;
    completed_exactly_once(&pool, job, 24).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_leader_that_wakes_cannot_write_and_stands_by() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let blobs = tempfile::tempdir().unwrap();
    let (pool, standby, _agents) = pair(database, blobs.path()).await;
    let first_url = pool.url.split(',').next().unwrap().to_owned();
    let job = job(&pool, 24).await;
    until_done(&pool, job, 4).await;
    pool.freeze_coordinator();
    eventually("the standby to lead", Duration::from_secs(30), || async {
        standby.leads().await.then_some(())
    })
    .await;
    pool.thaw_coordinator();
    eventually(
        "the old leader to step down",
        Duration::from_secs(30),
        || async {
            let health = client::Client::new(&first_url, None)
                .ok()?
                .health()
                .await
                .ok()?;
            (health.role == Some(wire::CoordinatorRole::Standby)).then_some(())
        },
    )
    .await;
    let log = pool.coordinator_log();
    assert!(
        log.contains("steps down"),
        "the old leader says why it stopped serving: {log}"
    );
    completed_exactly_once(&pool, job, 24).await;
}

/// A PostgreSQL server of this test's own, which it may restart.
struct Server {
    script: PathBuf,
    dir: tempfile::TempDir,
    url: String,
}

impl Server {
    async fn start() -> Option<Server> {
        std::env::var_os("CROWDCLOUD_TEST_POSTGRES_URL")?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres");
        let dir = tempfile::tempdir().unwrap();
        // The server runs as the postgres user, which must reach its directory.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let started = tokio::process::Command::new(&script)
            .arg("start")
            .arg(dir.path().join("cluster"))
            .output()
            .await
            .expect("running scripts/postgres");
        assert!(started.status.success(), "{started:?}");
        let url = String::from_utf8(started.stdout).unwrap().trim().to_owned();
        Some(Server { script, dir, url })
    }

    async fn run(&self, action: &str) {
        let done = tokio::process::Command::new(&self.script)
            .arg(action)
            .arg(self.dir.path().join("cluster"))
            .output()
            .await
            .expect("running scripts/postgres");
        assert!(done.status.success(), "{action}: {done:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.script)
            .arg("stop")
            .arg(self.dir.path().join("cluster"))
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn both_coordinators_recover_when_the_database_restarts() {
    let Some(server) = Server::start().await else {
        assert!(
            std::env::var_os("CROWDCLOUD_REQUIRE_POSTGRES").is_none(),
            "run the tests through scripts/test, which starts PostgreSQL"
        );
        return;
    };
    let blobs = tempfile::tempdir().unwrap();
    let (pool, standby, _agents) = pair(server.url.clone(), blobs.path()).await;
    let first_url = pool.url.split(',').next().unwrap().to_owned();
    let before = job(&pool, 8).await;
    completed_exactly_once(&pool, before, 8).await;
    server.run("restart").await;
    let (first, second) = (&first_url, &standby.url);
    eventually(
        "one coordinator to lead again",
        Duration::from_secs(60),
        || async move {
            (coordinator_leads(first).await || coordinator_leads(second).await).then_some(())
        },
    )
    .await;
    let after = eventually(
        "a submission to be taken again",
        Duration::from_secs(60),
        || async { job_or_none(&pool, 8).await },
    )
    .await;
    completed_exactly_once(&pool, after, 8).await;
    let health = |url: String| async move {
        client::Client::new(&url, None)
            .unwrap()
            .health()
            .await
            .ok()?
            .role
    };
    let roles = [
        health(first_url.clone()).await,
        health(standby.url.clone()).await,
    ];
    assert!(
        roles.contains(&Some(wire::CoordinatorRole::Leader))
            && roles.contains(&Some(wire::CoordinatorRole::Standby)),
        "one leads and the other stands by again: {roles:?}"
    );
}

/// A job of `count` tasks, or `None` while no coordinator takes it.
async fn job_or_none(pool: &Pool, count: u32) -> Option<JobId> {
    let module = pool.owner.upload_bytes(guests::PROBE.into()).await.ok()?;
    let submission = pool.submission(module, tasks(count), Limits::default());
    Some(pool.owner.submit(&submission).await.ok()?.job_id)
}

#[tokio::test]
async fn a_standby_without_a_shared_database_or_blob_store_is_refused_with_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["--standby"], "--database-url"),
        (
            &["--standby", "--database-url", "postgres://nowhere/db"],
            "--blobs s3://",
        ),
        (&["--lead-term", "10ms"], "--lead-term"),
    ];
    for (args, says) in cases {
        let output = tokio::process::Command::new(crate::harness::BINARY)
            .args([
                "coordinator",
                "--data-dir",
                data_dir,
                "--listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} is refused");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    assert!(
        !dir.path().join("state.db").exists(),
        "a refused start makes no database"
    );
}
