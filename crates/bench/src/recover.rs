//! `crowdcloud bench recover`: agents killed in the middle of a run. How long until their
//! tasks run elsewhere, and how much work was lost.
//!
//! Every task sleeps a fixed time, so the work an attempt had done when its agent died is
//! bounded by that time. Killed agents stop heartbeating; their leases run out after the lease
//! time, and the coordinator gives their tasks to the others.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use wire::{JobState, JobSubmission, NodeId, TaskSpec, TaskState};

use crate::pool::{CoordinatorOptions, LocalPool};
use crate::report::{Better, Machine};
use crate::{BenchError, Check, Figure, Report};

#[derive(Debug, Clone, Serialize)]
pub struct RecoverOptions {
    pub tasks: u32,
    pub agents: u32,
    pub slots: u32,
    /// Agents killed once the run is under way.
    pub kill: u32,
    pub task_ms: u32,
    pub lease_ms: u64,
}

pub async fn run(binary: &Path, options: &RecoverOptions) -> Result<Report, BenchError> {
    if options.kill == 0 || options.kill >= options.agents {
        return Err(BenchError::Setup(
            "kill at least one agent and leave at least one alive (--kill < --agents)".to_owned(),
        ));
    }
    let mut pool = LocalPool::start(
        binary,
        &CoordinatorOptions {
            lease_ms: options.lease_ms,
            ..CoordinatorOptions::default()
        },
    )
    .await?;
    for index in 0..options.agents {
        pool.spawn_agent(&format!("agent-{index}"), options.slots)?;
    }
    let measured = measure(&mut pool, options).await;
    pool.stop().await;
    let measured = measured?;
    Ok(Report {
        benchmark: "recover".to_owned(),
        machine: Machine::this(),
        parameters: serde_json::to_value(options).unwrap_or_default(),
        figures: vec![
            Figure::new(
                "attempts lost with the killed agents",
                measured.attempts_lost as f64,
                "attempts",
                Better::Lower,
            ),
            Figure::new(
                "work lost (at most attempts × task time)",
                measured.attempts_lost as f64 * f64::from(options.task_ms) / 1000.0,
                "s",
                Better::Lower,
            )
            .baseline("HTCondor: back to the last checkpoint", None),
            Figure::new(
                "kill to all their tasks running elsewhere",
                measured.rescheduled_ms,
                "ms",
                Better::Lower,
            )
            .target(options.lease_ms as f64 + 1000.0),
            Figure::new(
                "of which the lease",
                options.lease_ms as f64,
                "ms",
                Better::Lower,
            ),
            Figure::new("whole run", measured.total_ms, "ms", Better::Lower),
        ],
        checks: measured.checks,
    })
}

struct Measured {
    attempts_lost: u32,
    rescheduled_ms: f64,
    total_ms: f64,
    checks: Vec<Check>,
}

async fn measure(pool: &mut LocalPool, options: &RecoverOptions) -> Result<Measured, BenchError> {
    pool.wait_online(options.agents as usize).await?;
    let owner = pool.owner.clone();
    let module = owner
        .upload_bytes(bytes::Bytes::from_static(guests::PROBE))
        .await?;
    let tasks = vec![
        TaskSpec {
            args: vec!["sleep".to_owned(), options.task_ms.to_string()],
            ..TaskSpec::default()
        };
        options.tasks as usize
    ];
    let submission = JobSubmission {
        max_attempts: 5,
        ..JobSubmission::new("bench-recover", module, tasks)
    };
    let started = Instant::now();
    let job = owner.submit(&submission).await?.job_id;
    // Kill once every agent is busy and some work is done.
    let deadline = Instant::now() + Duration::from_secs(120);
    let nodes = loop {
        let status = owner.job(job).await?;
        let nodes = owner.nodes().await?.nodes;
        let busy = nodes.iter().filter(|node| node.running > 0).count();
        if status.tasks.succeeded > 0 && busy == options.agents as usize {
            break nodes;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(
                "the run never had every agent busy".to_owned(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut doomed: HashSet<NodeId> = HashSet::new();
    for index in 0..options.kill as usize {
        let name = format!("agent-{index}");
        if let Some(node) = nodes.iter().find(|node| node.name == name) {
            doomed.insert(node.node_id);
        }
    }
    let killed_at = Instant::now();
    for index in 0..options.kill as usize {
        pool.kill_agent(index).await;
    }
    let lost: Vec<u32> = owner
        .all_tasks(job)
        .await?
        .into_iter()
        .filter(|task| {
            task.state == TaskState::Running && task.node_id.is_some_and(|n| doomed.contains(&n))
        })
        .map(|task| task.index)
        .collect();
    let deadline =
        Instant::now() + Duration::from_millis(options.lease_ms) + Duration::from_secs(120);
    let rescheduled_ms = loop {
        let tasks = owner.all_tasks(job).await?;
        let moved = lost.iter().all(|index| {
            let task = &tasks[*index as usize];
            task.state == TaskState::Succeeded
                || task.node_id.is_some_and(|node| !doomed.contains(&node))
        });
        if moved {
            break killed_at.elapsed().as_secs_f64() * 1000.0;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(
                "the killed agents' tasks never ran elsewhere".to_owned(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let status = pool.job_end(job, None).await?;
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;
    let succeeded_once = status
        .nodes
        .iter()
        .map(|share| share.tasks_succeeded)
        .sum::<u32>()
        == options.tasks;
    Ok(Measured {
        attempts_lost: lost.len() as u32,
        rescheduled_ms,
        total_ms,
        checks: vec![
            Check::new(
                format!("all {} tasks succeeded", options.tasks),
                status.state == JobState::Completed && status.tasks.succeeded == options.tasks,
            ),
            Check::new("each task succeeded exactly once", succeeded_once),
            Check::new(
                "the killed agents held work when they died",
                !lost.is_empty(),
            ),
            // A grant can also reach a dead agent's parked lease request before its lease runs
            // out, so there may be more retries than attempts seen lost, never fewer.
            Check::new(
                "every lost attempt ran again",
                status.attempts >= u64::from(options.tasks) + lost.len() as u64,
            ),
        ],
    })
}
