//! `crowdcloud bench dispatch`: how fast the pool turns no-op tasks around, end to end.
//!
//! A real coordinator (durable SQLite, as `up` runs it) and agents, all processes, on
//! loopback. Throughput: one job of N no-op tasks, from the submit to the end of the last task.
//! Latency: R sequential round trips of a one-task job, submit to result, each submitted with a
//! wait (`POST /v1/jobs?wait_ms=`), as `ray.get(f.remote())` is one call. Ray runs the same two
//! measurements side by side when a Python with Ray is given.
//!
//! The floor of a round trip is measured in the same run: a loopback HTTP exchange with the
//! coordinator (`GET /v1/health`) and an fsync in its data dir. A durable round trip needs at
//! least three exchanges in series (the submission that waits, the agent's lease, its report)
//! and one commit that waits for the disk (the result's; the job's commit shares its fsync), so
//! the floor is three of the one and one of the other. The tail of a round trip is at least its
//! fsync's, so the p99 is set against three median exchanges and the fsync's p99.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use wire::{BlobHash, JobState};

use crate::pool::{CoordinatorOptions, LocalPool};
use crate::report::{Better, Machine};
use crate::{BenchError, Check, Figure, Percentiles, Report};

#[derive(Debug, Clone, Serialize)]
pub struct DispatchOptions {
    pub tasks: u32,
    pub agents: u32,
    pub slots: u32,
    pub round_trips: u32,
    pub durability: String,
    /// A Python interpreter with Ray 2.60 installed, to measure Ray side by side.
    pub ray_python: Option<PathBuf>,
    /// An S3 bucket (`s3://BUCKET/PREFIX`, its endpoint and keys in the environment): the same
    /// work with blobs there and on the disk, side by side.
    pub s3: Option<String>,
}

/// What Ray 2.60 measured on a 2-core machine of this kind (see ARCHITECTURE.md, "Outside
/// facts"), used when Ray is not run side by side.
const RAY_REFERENCE_TASKS_PER_S: f64 = 1194.0;
const RAY_REFERENCE_P50_MS: f64 = 2.05;
const RAY_REFERENCE_P99_MS: f64 = 4.95;

#[derive(Debug, serde::Deserialize)]
struct RayFigures {
    tasks_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The blob stores are compared on at most this many tasks and round trips: each leaves a blob
/// in the bucket until retention deletes it.
const BLOB_STORE_TASKS_MAX: u32 = 5_000;
const BLOB_STORE_ROUND_TRIPS_MAX: u32 = 500;

fn noop_job(module: wire::BlobHash, tasks: u32) -> wire::JobSubmission {
    crate::pool::noop_job("bench-noop", module, tasks)
}

pub async fn run(binary: &Path, options: &DispatchOptions) -> Result<Report, BenchError> {
    let mut pool = LocalPool::start(
        binary,
        &CoordinatorOptions {
            durability: options.durability.clone(),
            ..CoordinatorOptions::default()
        },
    )
    .await?;
    for index in 0..options.agents {
        pool.spawn_agent(&format!("bench-{index}"), options.slots)?;
    }
    let measured = measure(&pool, options).await;
    let floor = match &measured {
        Ok(_) => measure_floor(&pool).await,
        Err(_) => Ok(Floor::default()),
    };
    pool.stop().await;
    let (throughput, round_trips, mut checks) = measured?;
    let latency = &round_trips.latency;
    let floor = floor?;
    let ray = match &options.ray_python {
        Some(python) => Some(run_ray(python, options).await?),
        None => None,
    };
    let (ray_name, ray_tasks, ray_p50, ray_p99) = ray_baseline(ray.as_ref());
    let mut figures = vec![
        Figure::new(
            "throughput, no-op tasks",
            throughput,
            "tasks/s",
            Better::Higher,
        )
        .target((8.0 * ray_tasks).max(15_000.0))
        .baseline(ray_name, Some(ray_tasks)),
        Figure::new("round trip p50", latency.p50_ms, "ms", Better::Lower)
            .target(0.6 * ray_p50)
            .baseline(ray_name, Some(ray_p50)),
        Figure::new("round trip p99", latency.p99_ms, "ms", Better::Lower)
            .target(0.6 * ray_p99)
            .baseline(ray_name, Some(ray_p99)),
        Figure::new("round trip max", latency.max_ms, "ms", Better::Lower),
    ];
    figures.extend(floor_figures(&floor, latency));
    figures.extend(coordinator_share(&round_trips));
    if let Some(s3) = &options.s3 {
        let (more_figures, more_checks) = crate::blob_stores::compare(
            binary,
            s3,
            options.tasks.min(BLOB_STORE_TASKS_MAX),
            options.round_trips.clamp(1, BLOB_STORE_ROUND_TRIPS_MAX),
        )
        .await?;
        figures.extend(more_figures);
        checks.extend(more_checks);
    }
    Ok(Report {
        benchmark: "dispatch".to_owned(),
        machine: Machine::this(),
        parameters: serde_json::to_value(options).unwrap_or_default(),
        figures,
        checks,
    })
}

async fn measure(
    pool: &LocalPool,
    options: &DispatchOptions,
) -> Result<(f64, RoundTrips, Vec<Check>), BenchError> {
    pool.wait_online(options.agents as usize).await?;
    let module = pool.upload_noop().await?;
    let owner = &pool.owner;
    // Every agent compiles and caches the module before anything is timed.
    let warm_up = owner
        .submit(&noop_job(module, options.agents * options.slots * 4))
        .await?;
    owner
        .wait_job_end(warm_up.job_id, Duration::from_secs(60))
        .await?;

    let started = Instant::now();
    let job = owner.submit(&noop_job(module, options.tasks)).await?;
    let status = pool.job_end(job.job_id, None).await?;
    let throughput = f64::from(options.tasks) / started.elapsed().as_secs_f64();
    let mut checks = vec![
        Check::new(
            format!("all {} tasks succeeded", options.tasks),
            status.state == JobState::Completed && status.tasks.succeeded == options.tasks,
        ),
        Check::new(
            "every task ran exactly once",
            status.attempts == u64::from(options.tasks)
                && status.nodes.iter().map(|n| n.tasks_succeeded).sum::<u32>() == options.tasks,
        ),
    ];

    let round_trips = round_trips(pool, module, options).await?;
    checks.push(Check::new(
        format!("all {} round trips completed", options.round_trips),
        round_trips.completed == options.round_trips,
    ));
    Ok((throughput, round_trips, checks))
}

/// Sequential one-task round trips, and the coordinator's share of them.
struct RoundTrips {
    latency: Percentiles,
    mean_ms: f64,
    /// A report's handler in the coordinator, from its start (the token checked and the body
    /// read) to its commit's end, on average over the round trips; `None` when `/metrics` did
    /// not count them.
    report_mean_ms: Option<f64>,
    completed: u32,
}

async fn round_trips(
    pool: &LocalPool,
    module: BlobHash,
    options: &DispatchOptions,
) -> Result<RoundTrips, BenchError> {
    let reports_before = reports_answered(pool).await;
    let mut samples = Vec::with_capacity(options.round_trips as usize);
    let mut completed = 0;
    for _ in 0..options.round_trips {
        let began = Instant::now();
        // As a requester who wants the result runs a task: submit and wait, one exchange.
        let job = pool
            .owner
            .submit_and_wait(&noop_job(module, 1), Duration::from_secs(60))
            .await?;
        let status = match job.status {
            Some(status) if status.state.is_terminal() => status,
            _ => pool.job_end(job.job_id, None).await?,
        };
        samples.push(began.elapsed());
        completed += u32::from(status.state == JobState::Completed);
    }
    let report_mean_ms = match (reports_before, reports_answered(pool).await) {
        (Some((seconds_before, before)), Some((seconds, count))) if count > before => {
            Some((seconds - seconds_before) * 1000.0 / (count - before) as f64)
        }
        _ => None,
    };
    let mean_ms = samples.iter().map(Duration::as_secs_f64).sum::<f64>() * 1000.0
        / samples.len().max(1) as f64;
    Ok(RoundTrips {
        latency: Percentiles::of(&mut samples),
        mean_ms,
        report_mean_ms,
        completed,
    })
}

/// The part of a round trip the report spends in the coordinator, against the whole.
fn coordinator_share(round_trips: &RoundTrips) -> Option<Figure> {
    let report_ms = round_trips.report_mean_ms?;
    Some(
        Figure::new(
            "round trip: the report's handler in the coordinator, to its commit's end (mean)",
            report_ms,
            "ms",
            Better::Lower,
        )
        .baseline("round trip mean, same run", Some(round_trips.mean_ms)),
    )
}

/// The seconds the coordinator's report handlers took so far, to their commits' end, in all,
/// and how many there were, as its `/metrics` counts them (`crowdcloud_report_seconds`).
async fn reports_answered(pool: &LocalPool) -> Option<(f64, u64)> {
    let text = pool.owner.metrics().await.ok()?;
    let value = |name: &str| {
        text.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    let count = value("crowdcloud_report_seconds_count")?;
    Some((value("crowdcloud_report_seconds_sum")?, count as u64))
}

/// The parts a durable round trip cannot do without, measured on this machine.
#[derive(Debug, Default)]
struct Floor {
    exchange: Percentiles,
    fsync: Percentiles,
}

impl Floor {
    /// Three exchanges (the submission that waits, the agent's lease answered, its report)
    /// and one fsync (the report's, which the job's commit shares).
    fn round_trip_p50_ms(&self) -> f64 {
        3.0 * self.exchange.p50_ms + self.fsync.p50_ms
    }

    /// A round trip's tail is at least its fsync's: three median exchanges and the fsync's p99.
    fn round_trip_p99_ms(&self) -> f64 {
        3.0 * self.exchange.p50_ms + self.fsync.p99_ms
    }
}

const FLOOR_SAMPLES: usize = 500;

async fn measure_floor(pool: &LocalPool) -> Result<Floor, BenchError> {
    let mut exchanges = Vec::with_capacity(FLOOR_SAMPLES);
    for _ in 0..FLOOR_SAMPLES {
        let began = Instant::now();
        pool.owner.health().await?;
        exchanges.push(began.elapsed());
    }
    let dir = pool.data_dir().to_owned();
    let mut fsyncs = tokio::task::spawn_blocking(move || fsync_samples(&dir))
        .await
        .map_err(|error| BenchError::Setup(format!("timing fsyncs stopped: {error}")))??;
    Ok(Floor {
        exchange: Percentiles::of(&mut exchanges),
        fsync: Percentiles::of(&mut fsyncs),
    })
}

/// Appends a page and syncs it, as a commit of the coordinator's write-ahead log does.
fn fsync_samples(dir: &Path) -> Result<Vec<Duration>, BenchError> {
    use std::io::Write as _;
    let path = dir.join("fsync-probe");
    let io = |what: &str| BenchError::io(format!("{what} {}", path.display()));
    let mut file = std::fs::File::create(&path).map_err(io("creating"))?;
    let page = [0u8; 4096];
    let mut samples = Vec::with_capacity(FLOOR_SAMPLES);
    for _ in 0..FLOOR_SAMPLES {
        file.write_all(&page).map_err(io("writing"))?;
        let began = Instant::now();
        file.sync_all().map_err(io("syncing"))?;
        samples.push(began.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path).map_err(io("removing"))?;
    Ok(samples)
}

/// Ray's figures as measured beside ours, or the reference ones when Ray was not run.
fn ray_baseline(ray: Option<&RayFigures>) -> (&'static str, f64, f64, f64) {
    match ray {
        Some(ray) => (
            "ray 2.60, side by side",
            ray.tasks_per_s,
            ray.p50_ms,
            ray.p99_ms,
        ),
        None => (
            "ray 2.60 (reference)",
            RAY_REFERENCE_TASKS_PER_S,
            RAY_REFERENCE_P50_MS,
            RAY_REFERENCE_P99_MS,
        ),
    }
}

/// The round trip's floor on this machine, and the round trip beside it.
fn floor_figures(floor: &Floor, round_trip: &Percentiles) -> Vec<Figure> {
    let ms = |name: &str, value: f64| Figure::new(name, value, "ms", Better::Lower);
    vec![
        ms("floor: loopback HTTP exchange p50", floor.exchange.p50_ms),
        ms("floor: loopback HTTP exchange p99", floor.exchange.p99_ms),
        ms("floor: fsync p50", floor.fsync.p50_ms),
        ms("floor: fsync p99", floor.fsync.p99_ms),
        ms(
            "round trip p50 against its floor (3 exchanges + 1 fsync)",
            round_trip.p50_ms,
        )
        .baseline("floor, same run", Some(floor.round_trip_p50_ms())),
        ms(
            "round trip p99 against its floor (3 exchanges p50 + 1 fsync p99)",
            round_trip.p99_ms,
        )
        .baseline("floor, same run", Some(floor.round_trip_p99_ms())),
    ]
}

async fn run_ray(python: &Path, options: &DispatchOptions) -> Result<RayFigures, BenchError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench/ray_baseline.py");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let output = tokio::process::Command::new(python)
        .arg(&script)
        .args([
            options.tasks.to_string(),
            options.round_trips.to_string(),
            cores.to_string(),
        ])
        .output()
        .await
        .map_err(BenchError::io(format!("running {}", python.display())))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .ok_or_else(|| {
            BenchError::Setup(format!(
                "the Ray baseline printed no figures (is ray==2.60.0 installed for {}?): {}",
                python.display(),
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            ))
        })?;
    serde_json::from_str(line)
        .map_err(|error| BenchError::Setup(format!("the Ray baseline's figures: {error}")))
}
