//! `crowdcloud bench failover`: the leading coordinator killed (SIGKILL) or frozen (SIGSTOP)
//! while a sweep runs, with a standby on the same database.
//!
//! Each run starts a fresh pair of coordinators (both `--standby`) and agents given both URLs,
//! runs a sweep of short tasks, and faults the leader once the sweep is under way. Meanwhile a
//! requester submits one-task jobs without pause; every submission the pool acknowledged must
//! still be there, and end, at the close. Figures: the time from the fault until the new
//! leader's first grant, the attempts the fault cost, and the sweep's throughput before and
//! after.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use client::Client;
use wire::{JobId, JobState, JobSubmission, TaskSpec};

use crate::pool::{CoordinatorOptions, LocalPool};
use crate::report::{Better, Machine};
use crate::{BenchError, Check, Figure, Report};

/// What happens to the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// SIGKILL: the process is gone, its connections reset.
    Kill,
    /// SIGSTOP past its lead's term, then SIGCONT: it must find it leads no more.
    Freeze,
}

impl Fault {
    /// What became of the leader, as the figures name it.
    fn name(self) -> &'static str {
        match self {
            Fault::Kill => "killed",
            Fault::Freeze => "frozen",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverOptions {
    /// `postgres://…` (a database of its own for each run is made on the server), or none
    /// for SQLite in a directory both coordinators share.
    pub database_url: Option<String>,
    pub faults: Vec<Fault>,
    /// Runs of each fault.
    pub runs: u32,
    pub tasks: u32,
    pub task_ms: u32,
    pub agents: u32,
    pub slots: u32,
}

/// How long the throughput before the fault and after the new leader's first grant is taken
/// over.
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(2);
/// The bound of the whole wait for anything in a run.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

pub async fn run(binary: &Path, options: &FailoverOptions) -> Result<Report, BenchError> {
    if options.runs == 0 || options.faults.is_empty() || options.tasks == 0 {
        return Err(BenchError::Setup(
            "give at least one run, one fault and one task".to_owned(),
        ));
    }
    let mut figures = Vec::new();
    let mut checks = Vec::new();
    for fault in &options.faults {
        let mut runs = Vec::new();
        for run in 0..options.runs {
            let database = database_for(options, run).await?;
            runs.push(one_run(binary, options, *fault, database).await?);
        }
        figures.extend(fault_figures(*fault, &runs));
        checks.extend(fault_checks(*fault, &runs));
    }
    Ok(Report {
        benchmark: "failover".to_owned(),
        machine: Machine::this(),
        parameters: serde_json::to_value(options).unwrap_or_default(),
        figures,
        checks,
    })
}

/// What one run measured.
struct Run {
    fault_to_grant: Duration,
    attempts_lost: u64,
    before_per_s: f64,
    after_per_s: f64,
    completed_once: bool,
    acknowledged: usize,
    acknowledged_lost: usize,
    /// For a freeze: the woken leader stands by instead of serving.
    woken_stands_by: Option<bool>,
}

fn fault_figures(fault: Fault, runs: &[Run]) -> Vec<Figure> {
    let name = fault.name();
    let mut times: Vec<f64> = runs
        .iter()
        .map(|run| run.fault_to_grant.as_secs_f64() * 1000.0)
        .collect();
    times.sort_by(f64::total_cmp);
    let median = |values: &[f64]| values[values.len() / 2];
    let mut before: Vec<f64> = runs.iter().map(|run| run.before_per_s).collect();
    let mut after: Vec<f64> = runs.iter().map(|run| run.after_per_s).collect();
    before.sort_by(f64::total_cmp);
    after.sort_by(f64::total_cmp);
    vec![
        Figure::new(
            &format!("leader {name}: fault to the new leader's first grant, p50"),
            median(&times),
            "ms",
            Better::Lower,
        )
        .target(5_000.0),
        Figure::new(
            &format!("leader {name}: fault to first grant, max"),
            times[times.len() - 1],
            "ms",
            Better::Lower,
        )
        .target(5_000.0),
        Figure::new(
            &format!("leader {name}: attempts run again, per run"),
            runs.iter().map(|run| run.attempts_lost as f64).sum::<f64>() / runs.len() as f64,
            "attempts",
            Better::Lower,
        ),
        Figure::new(
            &format!("leader {name}: acknowledged submissions lost"),
            runs.iter().map(|run| run.acknowledged_lost as f64).sum(),
            "jobs",
            Better::Lower,
        )
        .target(0.0),
        Figure::new(
            &format!("leader {name}: sweep before the fault"),
            median(&before),
            "tasks/s",
            Better::Higher,
        ),
        Figure::new(
            &format!("leader {name}: sweep after the first grant"),
            median(&after),
            "tasks/s",
            Better::Higher,
        ),
    ]
}

fn fault_checks(fault: Fault, runs: &[Run]) -> Vec<Check> {
    let name = fault.name();
    let mut checks = vec![
        Check::new(
            format!("leader {name}: every sweep completed, each task once"),
            runs.iter().all(|run| run.completed_once),
        ),
        Check::new(
            format!("leader {name}: every acknowledged submission was kept and ended"),
            runs.iter()
                .all(|run| run.acknowledged > 0 && run.acknowledged_lost == 0),
        ),
    ];
    if fault == Fault::Freeze {
        checks.push(Check::new(
            "leader frozen: woken, it stands by instead of serving",
            runs.iter().all(|run| run.woken_stands_by == Some(true)),
        ));
    }
    checks
}

/// A database of its own for each run: a fresh one on the PostgreSQL server given, or a
/// SQLite file in a directory the run's coordinators share (as they share their blobs).
async fn database_for(options: &FailoverOptions, run: u32) -> Result<Option<String>, BenchError> {
    let Some(admin) = &options.database_url else {
        return Ok(None);
    };
    let name = format!("bench_failover_{}_{run}", std::process::id());
    for statement in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        let done = tokio::process::Command::new("psql")
            .args([admin.as_str(), "-q", "-c", &statement])
            .output()
            .await
            .map_err(BenchError::io("running psql (install postgresql-client)"))?;
        if !done.status.success() {
            return Err(BenchError::Setup(format!(
                "{statement}: {}",
                String::from_utf8_lossy(&done.stderr).trim()
            )));
        }
    }
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    Ok(Some(format!("{base}/{name}")))
}

async fn one_run(
    binary: &Path,
    options: &FailoverOptions,
    fault: Fault,
    database: Option<String>,
) -> Result<Run, BenchError> {
    let shared_dir = tempfile::tempdir().map_err(BenchError::io("a temporary directory"))?;
    let database = database
        .unwrap_or_else(|| format!("sqlite://{}", shared_dir.path().join("state.db").display()));
    let mut pool = LocalPool::start(
        binary,
        &CoordinatorOptions {
            lease_ms: 5_000,
            database_url: Some(database),
            more_args: vec![
                "--standby".to_owned(),
                "--blobs".to_owned(),
                shared_dir.path().join("blobs").display().to_string(),
            ],
            ..CoordinatorOptions::default()
        },
    )
    .await?;
    let measured = measure(&mut pool, options, fault).await.map_err(|error| {
        BenchError::Setup(format!("{error}; the logs end:\n{}", pool.log_tails()))
    });
    pool.stop().await;
    measured
}

async fn measure(
    pool: &mut LocalPool,
    options: &FailoverOptions,
    fault: Fault,
) -> Result<Run, BenchError> {
    let first_url = pool.url.clone();
    let standby_url = pool.add_standby().await?;
    for index in 0..options.agents {
        pool.spawn_agent(&format!("agent-{index}"), options.slots)?;
    }
    pool.wait_online(options.agents as usize).await?;
    let owner = pool.owner.clone();
    let module = owner
        .upload_bytes(bytes::Bytes::from_static(guests::PROBE))
        .await?;
    let sweep = JobSubmission {
        max_attempts: 5,
        ..JobSubmission::new(
            "bench-failover",
            module,
            sleeps(options.tasks, options.task_ms),
        )
    };
    let job = owner.submit(&sweep).await?.job_id;
    let submitter = Submitter::start(owner.clone(), module);
    let before_per_s = throughput(&owner, job, THROUGHPUT_WINDOW).await?;
    let faulted_at = Instant::now();
    pool.signal_coordinator(match fault {
        Fault::Kill => rustix::process::Signal::KILL,
        Fault::Freeze => rustix::process::Signal::STOP,
    });
    let standby = Client::new(&standby_url, Some(pool.owner_token.clone()))?;
    let fault_to_grant = first_grant(&standby, job, faulted_at).await?;
    let after_per_s = throughput(&standby, job, THROUGHPUT_WINDOW).await?;
    let woken_stands_by = match fault {
        Fault::Kill => None,
        Fault::Freeze => {
            pool.signal_coordinator(rustix::process::Signal::CONT);
            Some(stands_by(&first_url).await)
        }
    };
    let acknowledged = submitter.stop().await;
    let status = pool.job_end(job, None).await?;
    let completed_once = status.state == JobState::Completed
        && status.tasks.succeeded == options.tasks
        && status.nodes.iter().map(|n| n.tasks_succeeded).sum::<u32>() == options.tasks;
    let acknowledged_lost = lost(&owner, &acknowledged).await;
    Ok(Run {
        fault_to_grant,
        attempts_lost: status.attempts.saturating_sub(u64::from(options.tasks)),
        before_per_s,
        after_per_s,
        completed_once,
        acknowledged: acknowledged.len(),
        acknowledged_lost,
        woken_stands_by,
    })
}

fn sleeps(tasks: u32, task_ms: u32) -> Vec<TaskSpec> {
    let task = TaskSpec {
        args: vec!["sleep".to_owned(), task_ms.to_string()],
        ..TaskSpec::default()
    };
    vec![task; tasks as usize]
}

/// Tasks of `job` that succeeded per second over `window`, as `client` sees them.
async fn throughput(client: &Client, job: JobId, window: Duration) -> Result<f64, BenchError> {
    let before = client.job(job).await?.tasks.succeeded;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let after = client.job(job).await?.tasks.succeeded;
    Ok(f64::from(after.saturating_sub(before)) / started.elapsed().as_secs_f64())
}

/// The time from `faulted_at` until `standby` leads and has granted an attempt of `job` beyond
/// those it loaded.
async fn first_grant(
    standby: &Client,
    job: JobId,
    faulted_at: Instant,
) -> Result<Duration, BenchError> {
    let mut loaded: Option<u64> = None;
    while faulted_at.elapsed() < RUN_DEADLINE {
        if let Ok(status) = standby.job(job).await {
            let attempts = status.attempts;
            match loaded {
                None => loaded = Some(attempts),
                Some(loaded) if attempts > loaded || status.state.is_terminal() => {
                    return Ok(faulted_at.elapsed());
                }
                Some(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(BenchError::Setup(
        "the standby never granted an attempt after the fault".to_owned(),
    ))
}

/// Whether the coordinator at `url`, woken, says it stands by (within the run's deadline).
async fn stands_by(url: &str) -> bool {
    let Ok(client) = Client::new(url, None) else {
        return false;
    };
    crate::pool::reaches_role(&client, wire::CoordinatorRole::Standby, RUN_DEADLINE).await
}

/// How many of `acknowledged` the pool no longer has, or never ended.
async fn lost(owner: &Client, acknowledged: &[JobId]) -> usize {
    let mut lost = 0;
    for job in acknowledged {
        match owner.wait_job_end(*job, Duration::from_secs(60)).await {
            Ok(status) if status.state.is_terminal() => {}
            _ => lost += 1,
        }
    }
    lost
}

/// A requester that submits a one-task job without pause, keeping the ids acknowledged.
struct Submitter {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Vec<JobId>>,
}

impl Submitter {
    fn start(owner: Client, module: wire::BlobHash) -> Submitter {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            while !*stopped.borrow_and_update() {
                let job = JobSubmission::new("bench-failover-ack", module, sleeps(1, 1));
                if let Ok(submitted) = owner.submit(&job).await {
                    acknowledged.push(submitted.job_id);
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stopped.changed() => {}
                }
            }
            acknowledged
        });
        Submitter { stop, task }
    }

    async fn stop(self) -> Vec<JobId> {
        self.stop.send_replace(true);
        self.task.await.unwrap_or_default()
    }
}
