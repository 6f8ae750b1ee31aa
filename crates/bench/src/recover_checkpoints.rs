//! `crowdcloud bench recover --checkpoints`: long tasks that checkpoint, with agents killed
//! under them. How much work a killed node loses, how soon its tasks resume elsewhere from
//! their checkpoints, and what checkpointing costs against the same run without it.
//!
//! Every task is the `collatz` guest, which checkpoints whenever its interval has passed and
//! carries `--state-mib` of state in each checkpoint, one task per agent, so that the spare
//! slots of the others take a killed agent's task as soon as the pool gives it back. Three runs of the same tasks on the same
//! agents: without checkpoints (the baseline), with them, and with them while `--kill` agents
//! are killed three quarters of an interval after each of their tasks saved a checkpoint. All
//! three must give the same outputs.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use wire::{
    BlobHash, CheckpointSpec, JobId, JobState, JobSubmission, Limits, NodeId, OutputFile, TaskSpec,
    TaskState, TaskStatus,
};

use crate::pool::{CoordinatorOptions, LocalPool};
use crate::report::{Better, Machine};
use crate::{BenchError, Check, Figure, Report};

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointOptions {
    pub agents: u32,
    pub slots: u32,
    /// Agents killed once each of their tasks saved a checkpoint.
    pub kill: u32,
    pub lease_ms: u64,
    /// How often tasks checkpoint, in wall time.
    pub interval_ms: u64,
    /// The state each checkpoint carries, in MiB.
    pub state_mib: u32,
    /// Each task searches Collatz chains below this bound: the length of its work.
    pub limit: u64,
}

/// A run of the tasks: how long it took, and what each task left.
struct Run {
    wall_s: f64,
    outputs: Vec<Vec<OutputFile>>,
    checkpoints: u32,
}

/// What the run with kills measured, per task its agent lost.
#[derive(Default)]
struct Losses {
    /// From the task's last checkpoint to its agent's death.
    lost_s: Vec<f64>,
    /// From the kill to the task running on another node.
    resumed_s: Vec<f64>,
    run: Option<Run>,
}

pub async fn run(binary: &Path, options: &CheckpointOptions) -> Result<Report, BenchError> {
    if options.kill == 0 || options.kill >= options.agents {
        return Err(BenchError::Setup(
            "kill at least one agent and leave at least one alive (--kill < --agents)".to_owned(),
        ));
    }
    let coordinator = CoordinatorOptions {
        lease_ms: options.lease_ms,
        ..CoordinatorOptions::default()
    };
    let mut pool = LocalPool::start(binary, &coordinator).await?;
    for index in 0..options.agents {
        pool.spawn_agent(&format!("agent-{index}"), options.slots)?;
    }
    let measured = measure(&mut pool, options).await;
    pool.stop().await;
    let (plain, checkpointed, losses) = measured?;
    Ok(Report {
        benchmark: "recover --checkpoints".to_owned(),
        machine: Machine::this(),
        parameters: serde_json::to_value(options).unwrap_or_default(),
        figures: figures(options, &plain, &checkpointed, &losses),
        checks: checks(&plain, &checkpointed, &losses),
    })
}

async fn measure(
    pool: &mut LocalPool,
    options: &CheckpointOptions,
) -> Result<(Run, Run, Losses), BenchError> {
    pool.wait_online(options.agents as usize).await?;
    let module = pool
        .owner
        .upload_bytes(bytes::Bytes::from_static(guests::COLLATZ))
        .await?;
    let plain = timed(pool, submission(module, options, false)).await?;
    let checkpointed = timed(pool, submission(module, options, true)).await?;
    let losses = with_kills(pool, submission(module, options, true), options).await?;
    Ok((plain, checkpointed, losses))
}

fn submission(module: BlobHash, options: &CheckpointOptions, checkpoints: bool) -> JobSubmission {
    let task = TaskSpec {
        args: vec![options.limit.to_string(), options.state_mib.to_string()],
        ..TaskSpec::default()
    };
    // One task per agent: the others' spare slots take a killed agent's task at once.
    let tasks = options.agents as usize;
    let state_bytes = u64::from(options.state_mib) << 20;
    JobSubmission {
        limits: Limits {
            fuel_max: wire::limits::ceiling::FUEL_MAX,
            deadline_ms: 3_600_000,
            memory_bytes_max: (state_bytes * 3).max(Limits::default().memory_bytes_max),
            ..Limits::default()
        },
        max_attempts: 5,
        checkpoint: checkpoints.then_some(CheckpointSpec {
            interval_ms: options.interval_ms,
            exit_code: wire::checkpoint::DEFAULT_EXIT_CODE,
            bytes_max: state_bytes + (1 << 20),
        }),
        ..JobSubmission::new("bench-checkpoints", module, vec![task; tasks])
    }
}

/// Runs a job to its end; how long it took and what its tasks left.
async fn timed(pool: &LocalPool, job: JobSubmission) -> Result<Run, BenchError> {
    let started = Instant::now();
    let job = pool.owner.submit(&job).await?.job_id;
    let tasks = ended(pool, job).await?;
    Ok(run_of(started, &tasks))
}

fn run_of(started: Instant, tasks: &[TaskStatus]) -> Run {
    Run {
        wall_s: started.elapsed().as_secs_f64(),
        outputs: tasks.iter().map(|task| task.outputs.clone()).collect(),
        checkpoints: tasks
            .iter()
            .filter_map(|task| task.checkpoints)
            .map(|progress| progress.saved)
            .sum(),
    }
}

async fn ended(pool: &LocalPool, job: JobId) -> Result<Vec<TaskStatus>, BenchError> {
    let status = pool
        .job_end(job, Some(Instant::now() + Duration::from_secs(3600)))
        .await?;
    if !status.state.is_terminal() {
        return Err(BenchError::Setup(
            "the job did not end within an hour".to_owned(),
        ));
    }
    if status.state != JobState::Completed {
        return Err(BenchError::Setup(format!(
            "the job did not complete: {status:?}"
        )));
    }
    Ok(pool.owner.all_tasks(job).await?)
}

/// The run with kills: once every task of the doomed agents saved a checkpoint, they die; the
/// time since each lost task's last checkpoint, and until it runs elsewhere, are measured.
async fn with_kills(
    pool: &mut LocalPool,
    job: JobSubmission,
    options: &CheckpointOptions,
) -> Result<Losses, BenchError> {
    let doomed = doomed_nodes(pool, options).await?;
    let started = Instant::now();
    let job = pool.owner.submit(&job).await?.job_id;
    let last_saved = watch_until_saved(pool, job, &doomed).await?;
    // Three quarters of an interval after a checkpoint: a loss near the worst, not the best.
    tokio::time::sleep(Duration::from_millis(options.interval_ms * 3 / 4)).await;
    let killed_at = Instant::now();
    for index in 0..options.kill as usize {
        pool.kill_agent(index).await;
    }
    let mut losses = Losses {
        lost_s: last_saved
            .values()
            .map(|saved_at| killed_at.duration_since(*saved_at).as_secs_f64())
            .collect(),
        ..Losses::default()
    };
    let mut waiting: HashSet<u32> = last_saved.keys().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    while !waiting.is_empty() && Instant::now() < deadline {
        for task in pool.owner.all_tasks(job).await? {
            let elsewhere = task.node_id.is_some_and(|node| !doomed.contains(&node));
            if waiting.contains(&task.index) && (elsewhere || task.state == TaskState::Succeeded) {
                waiting.remove(&task.index);
                losses.resumed_s.push(killed_at.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    losses.run = Some(run_of(started, &ended(pool, job).await?));
    Ok(losses)
}

async fn doomed_nodes(
    pool: &LocalPool,
    options: &CheckpointOptions,
) -> Result<HashSet<NodeId>, BenchError> {
    let names: HashSet<String> = (0..options.kill).map(|i| format!("agent-{i}")).collect();
    Ok(pool
        .owner
        .nodes()
        .await?
        .nodes
        .iter()
        .filter(|node| names.contains(&node.name))
        .map(|node| node.node_id)
        .collect())
}

/// Follows the job until every task running on a doomed node has saved a checkpoint; when
/// each of those last saved one, as seen every 20 ms.
async fn watch_until_saved(
    pool: &LocalPool,
    job: JobId,
    doomed: &HashSet<NodeId>,
) -> Result<HashMap<u32, Instant>, BenchError> {
    let mut seen: HashMap<u32, (u32, Instant)> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let tasks = pool.owner.all_tasks(job).await?;
        for task in &tasks {
            let saved = task.checkpoints.map_or(0, |progress| progress.saved);
            let entry = seen.entry(task.index).or_insert((0, Instant::now()));
            if saved > entry.0 {
                *entry = (saved, Instant::now());
            }
        }
        let on_doomed: Vec<&TaskStatus> = tasks
            .iter()
            .filter(|task| task.state == TaskState::Running)
            .filter(|task| task.node_id.is_some_and(|node| doomed.contains(&node)))
            .collect();
        if !on_doomed.is_empty() && on_doomed.iter().all(|task| seen[&task.index].0 > 0) {
            return Ok(on_doomed
                .iter()
                .map(|task| (task.index, seen[&task.index].1))
                .collect());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(
                "the doomed agents' tasks never all saved a checkpoint".to_owned(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn percentile(values: &[f64], quantile: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
    sorted.get(at).copied().unwrap_or(f64::NAN)
}

fn figures(options: &CheckpointOptions, plain: &Run, with: &Run, losses: &Losses) -> Vec<Figure> {
    let interval_s = options.interval_ms as f64 / 1000.0;
    // What each checkpoint cost the run, spread over the tasks that ran side by side.
    let per_checkpoint_s = (with.wall_s - plain.wall_s).max(0.0)
        / (f64::from(with.checkpoints) / f64::from(options.agents)).max(1.0);
    vec![
        Figure::new(
            "the run without checkpoints",
            plain.wall_s,
            "s",
            Better::Lower,
        ),
        Figure::new(
            "overhead: the run with checkpoints / without",
            with.wall_s / plain.wall_s,
            "x",
            Better::Lower,
        ),
        Figure::new(
            "checkpoints saved",
            f64::from(with.checkpoints),
            "",
            Better::Lower,
        ),
        Figure::new(
            "overhead at a 1-minute interval (from each checkpoint's cost)",
            1.0 + per_checkpoint_s / 60.0,
            "x",
            Better::Lower,
        )
        .target(1.05),
        Figure::new(
            "work lost per killed task: max",
            losses.lost_s.iter().copied().fold(0.0, f64::max),
            "s",
            Better::Lower,
        )
        .target(interval_s),
        Figure::new(
            "kill to running elsewhere: p50",
            percentile(&losses.resumed_s, 0.5),
            "s",
            Better::Lower,
        ),
        Figure::new(
            "kill to running elsewhere: p95 (the lease included)",
            percentile(&losses.resumed_s, 0.95),
            "s",
            Better::Lower,
        )
        .target(10.0)
        .baseline("the lease, s", Some(options.lease_ms as f64 / 1000.0)),
    ]
}

fn checks(plain: &Run, with: &Run, losses: &Losses) -> Vec<Check> {
    let killed = losses.run.as_ref();
    vec![
        Check::new(
            "checkpoints give the outputs of the run without them",
            with.outputs == plain.outputs,
        ),
        Check::new(
            "tasks resumed elsewhere give the outputs of the run without checkpoints",
            killed.is_some_and(|run| run.outputs == plain.outputs),
        ),
        Check::new("the killed agents held tasks", !losses.lost_s.is_empty()),
        Check::new(
            "every lost task ran again elsewhere",
            losses.resumed_s.len() == losses.lost_s.len(),
        ),
    ]
}
