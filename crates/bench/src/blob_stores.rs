//! `crowdcloud bench dispatch --s3 s3://BUCKET/PREFIX`: the same work with blobs in an S3
//! bucket and in the data dir, side by side in one run.
//!
//! No-op tasks leave nothing to store, so these tasks print a line each: every result's stdout
//! is a blob the agent uploads through the coordinator into the store, and a round trip here
//! is a one-task job submitted with a wait and its stdout downloaded, as a requester who wants
//! the result does.

use std::path::Path;
use std::time::{Duration, Instant};

use wire::{BlobHash, JobState, JobSubmission, TaskSpec};

use crate::pool::{CoordinatorOptions, LocalPool};
use crate::report::Better;
use crate::{BenchError, Check, Figure, Percentiles};

/// What one pool measured.
struct Measured {
    tasks_per_s: f64,
    round_trip: Percentiles,
    completed: bool,
}

/// Runs the same work on a pool whose blobs live in `s3` and on one whose blobs live on its
/// disk; figures for S3 with the disk as the baseline.
pub async fn compare(
    binary: &Path,
    s3: &str,
    tasks: u32,
    round_trips: u32,
) -> Result<(Vec<Figure>, Vec<Check>), BenchError> {
    let on_disk = measure_pool(binary, None, tasks, round_trips).await?;
    let in_s3 = measure_pool(binary, Some(s3), tasks, round_trips).await?;
    let baseline = "blobs on local disk, same run";
    let figures = vec![
        Figure::new(
            "blobs in S3: throughput, tasks printing a line",
            in_s3.tasks_per_s,
            "tasks/s",
            Better::Higher,
        )
        .baseline(baseline, Some(on_disk.tasks_per_s)),
        Figure::new(
            "blobs in S3: round trip with the result downloaded, p50",
            in_s3.round_trip.p50_ms,
            "ms",
            Better::Lower,
        )
        .baseline(baseline, Some(on_disk.round_trip.p50_ms)),
        Figure::new(
            "blobs in S3: round trip with the result downloaded, p99",
            in_s3.round_trip.p99_ms,
            "ms",
            Better::Lower,
        )
        .baseline(baseline, Some(on_disk.round_trip.p99_ms)),
    ];
    let checks = vec![Check::new(
        "every task and round trip completed, blobs on disk and in S3",
        on_disk.completed && in_s3.completed,
    )];
    Ok((figures, checks))
}

async fn measure_pool(
    binary: &Path,
    s3: Option<&str>,
    tasks: u32,
    round_trips: u32,
) -> Result<Measured, BenchError> {
    let more_args = s3
        .map(|bucket| vec!["--blobs".to_owned(), bucket.to_owned()])
        .unwrap_or_default();
    let mut pool = LocalPool::start(
        binary,
        &CoordinatorOptions {
            more_args,
            ..CoordinatorOptions::default()
        },
    )
    .await?;
    pool.spawn_agent("bench-0", 4)?;
    let measured = measure(&pool, tasks, round_trips).await;
    pool.stop().await;
    measured
}

fn printing(module: BlobHash, count: u32) -> JobSubmission {
    let tasks = (0..count)
        .map(|i| TaskSpec {
            args: vec!["echo".to_owned(), format!("line {i}")],
            ..TaskSpec::default()
        })
        .collect();
    JobSubmission::new("bench-blobs", module, tasks)
}

async fn measure(pool: &LocalPool, tasks: u32, round_trips: u32) -> Result<Measured, BenchError> {
    pool.wait_online(1).await?;
    let owner = &pool.owner;
    let module = owner
        .upload_bytes(bytes::Bytes::from_static(guests::PROBE))
        .await?;
    let warm_up = owner.submit(&printing(module, 16)).await?;
    owner
        .wait_job_end(warm_up.job_id, Duration::from_secs(60))
        .await?;
    let started = Instant::now();
    let job = owner.submit(&printing(module, tasks)).await?;
    let status = pool.job_end(job.job_id, None).await?;
    let tasks_per_s = f64::from(tasks) / started.elapsed().as_secs_f64();
    let mut completed = status.state == JobState::Completed && status.tasks.succeeded == tasks;
    let mut samples = Vec::with_capacity(round_trips as usize);
    for _ in 0..round_trips {
        let began = Instant::now();
        let job = owner
            .submit_and_wait(&printing(module, 1), Duration::from_secs(60))
            .await?;
        let stdout = owner
            .all_tasks(job.job_id)
            .await?
            .first()
            .and_then(|task| task.stdout.as_ref().map(|blob| blob.hash));
        match stdout {
            Some(hash) => completed &= owner.download(&hash).await? == b"line 0\n"[..],
            None => completed = false,
        }
        samples.push(began.elapsed());
    }
    Ok(Measured {
        tasks_per_s,
        round_trip: Percentiles::of(&mut samples),
        completed,
    })
}
