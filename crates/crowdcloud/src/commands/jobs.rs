//! `status`, `watch`, `cancel`, `nodes`: reading and steering jobs and the pool.

use std::process::ExitCode;

use anyhow::Context;

use client::Client;
use wire::{JobId, JobStatus, TaskStatus};

use crate::cli::{JobArgs, NodesAction, NodesArgs, StatusArgs};
use crate::commands::submit::{exit_code, follow, print_summary};
use crate::local;
use crate::output::{self, human_bytes, print_json, print_table};

pub(crate) fn parse_job(text: &str) -> anyhow::Result<JobId> {
    text.parse()
        .with_context(|| format!("{text:?} is not a job id (they look like j-0123456789abcdef)"))
}

/// `status JOB --explain TASK`.
async fn explain(client: &Client, job: JobId, index: u32, json: bool) -> anyhow::Result<ExitCode> {
    let explanation = client.explain(job, index).await?;
    if json {
        print_json(&explanation)?;
        return Ok(ExitCode::SUCCESS);
    }
    match explanation.reused_from {
        Some(from) => println!(
            "task {index} did not run: it took the result of task {} of {}, whose key is its own",
            from.index, from.job_id
        ),
        None => {
            let against = explanation
                .compared_with
                .map(|job| format!(" (against {job})"))
                .unwrap_or_default();
            println!("task {index} ran{against}:");
            for reason in &explanation.ran_because {
                println!("  {}", crate::output::visible(reason));
            }
        }
    }
    println!("key {}", explanation.key);
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = local::connect(&args.connection).await?;
    let Some(job) = &args.job else {
        let jobs = client.jobs(100).await?;
        if args.connection.json {
            print_json(&jobs)?;
        } else {
            let rows: Vec<Vec<String>> = jobs
                .jobs
                .iter()
                .map(|job| {
                    vec![
                        job.job_id.to_string(),
                        job.name.clone(),
                        job.state.to_string(),
                        format!("{}/{}", job.tasks.ended(), job.tasks.total),
                    ]
                })
                .collect();
            print_table(&["JOB", "NAME", "STATE", "ENDED"], &rows);
        }
        return Ok(ExitCode::SUCCESS);
    };
    if job.starts_with(wire::PipelineId::PREFIX) {
        super::pipelines::status(&client, job, args.connection.json).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let job = parse_job(job)?;
    if let Some(index) = args.explain {
        return explain(&client, job, index, args.connection.json).await;
    }
    let status = client.job(job).await?;
    let why = if args.why {
        Some(client.why(job).await?)
    } else {
        None
    };
    let tasks = if args.tasks {
        Some(client.all_tasks(job).await?)
    } else {
        None
    };
    if args.connection.json {
        print_json(&serde_json::json!({ "job": status, "why": why, "tasks": tasks }))?;
        return Ok(ExitCode::SUCCESS);
    }
    print_status(&status);
    if let Some(why) = why {
        println!("why {} tasks wait:", why.pending);
        for reason in why.reasons {
            println!("  - {}", output::visible(&reason));
        }
    }
    if let Some(tasks) = tasks {
        print_tasks(&tasks);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(status: &JobStatus) {
    println!("job {}  {}", status.job_id, output::visible(&status.name));
    println!("  state:    {}", status.state);
    println!(
        "  tasks:    {} of {} ended ({})",
        status.tasks.ended(),
        status.tasks.total,
        output::counts_line(&status.tasks)
    );
    if status.private {
        println!("  private:  {}", wire::private::PRIVATE_JOB_TRUTH);
    }
    if let Some(of) = &status.stage_of {
        println!(
            "  stage:    {} of pipeline {}  {}",
            output::visible(&of.stage),
            of.pipeline_id,
            output::visible(&of.pipeline)
        );
    }
    if status.verifying > 0 {
        println!(
            "  checking: {} tasks have results that wait to be verified",
            status.verifying
        );
    }
    if let Some(aborted) = status.aborted {
        println!(
            "  stopped:  task {} exited with code {}, which its abort_on names; the tasks \
             that had not ended were cancelled",
            aborted.task_index, aborted.exit_code
        );
    }
    if status.recalled > 0 {
        println!(
            "  replaced: {} results were taken back and run again: the one node that vouched \
             for each was banned for lying since, or every copy of what it made (kept on \
             nodes) was lost",
            status.recalled
        );
    }
    println!("  attempts: {}", status.attempts);
    println!("  fuel:     {}", status.fuel_used);
    if let Some(finished) = status.finished_at_ms {
        println!(
            "  took:     {:.1} s",
            finished.saturating_sub(status.created_at_ms) as f64 / 1000.0
        );
    }
    for share in &status.nodes {
        println!(
            "  node {} ({}): {} tasks{}",
            output::visible(&share.node_name),
            share.node_id,
            share.tasks_succeeded,
            if share.browser {
                ", in a browser tab: no fuel counted, no credits earned"
            } else {
                ""
            }
        );
    }
}

/// How a task's result was verified, and by how many nodes; and the banned node whose result
/// it replaced, if it did.
fn verified_text(task: &TaskStatus) -> String {
    let verified = match &task.verification {
        Some(v) => format!("{} ({} nodes)", v.by.as_str(), v.nodes.len()),
        None => String::new(),
    };
    match task.recalled_from {
        Some(node) => format!("{verified}, replaced a result of banned {node}")
            .trim_start_matches(", ")
            .to_owned(),
        None => verified,
    }
}

/// What a task's checkpoints did: how many were saved, the fuel the latest covers, and the time
/// attempts lost since their last checkpoint.
fn checkpoints_text(task: &TaskStatus) -> String {
    match task.checkpoints {
        Some(progress) => format!(
            "{} saved, {} fuel, {} lost",
            progress.saved,
            progress.fuel_covered,
            human_duration_ms(progress.lost_ms)
        ),
        None => String::new(),
    }
}

fn human_duration_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        _ => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

/// The node that ran the task; for a task another pool ran, that pool and its node.
fn node_text(task: &TaskStatus) -> String {
    match (&task.ran_on, task.node_id) {
        (Some(ran_on), _) => output::visible(ran_on).into_owned(),
        (None, Some(node)) => node.to_string(),
        (None, None) => String::new(),
    }
}

fn print_tasks(tasks: &[TaskStatus]) {
    let checked = tasks
        .iter()
        .any(|task| task.verification.is_some() || task.recalled_from.is_some());
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|task| {
            let usage = task.usage.unwrap_or_default();
            vec![
                task.index.to_string(),
                task.state.to_string(),
                task.outcome
                    .as_ref()
                    .map(|o| o.to_string())
                    .unwrap_or_default(),
                task.attempts.to_string(),
                usage.fuel_used.to_string(),
                format!("{} ms", usage.wall_ms),
                format!("{} ms", usage.compile_ms),
                human_bytes(usage.memory_peak_bytes),
                node_text(task),
                verified_text(task),
            ]
        })
        .collect();
    let mut header = vec![
        "TASK",
        "STATE",
        "OUTCOME",
        "ATTEMPTS",
        "FUEL",
        "WALL",
        "COMPILE",
        "PEAK MEMORY",
        "NODE",
        "VERIFIED BY",
    ];
    let mut rows = rows;
    if !checked {
        header.pop();
        for row in &mut rows {
            row.pop();
        }
    }
    if tasks.iter().any(|task| task.checkpoints.is_some()) {
        header.push("CHECKPOINTS");
        for (row, task) in rows.iter_mut().zip(tasks) {
            row.push(checkpoints_text(task));
        }
    }
    print_table(&header, &rows);
}

pub(crate) async fn watch(args: JobArgs) -> anyhow::Result<ExitCode> {
    let client = local::connect(&args.connection).await?;
    let job = parse_job(&args.job)?;
    let status = follow(&client, job, !args.connection.json).await?;
    if args.connection.json {
        print_json(&status)?;
    } else {
        print_summary(&status);
    }
    Ok(exit_code(status.state))
}

pub(crate) async fn cancel(args: JobArgs) -> anyhow::Result<ExitCode> {
    let client = local::connect(&args.connection).await?;
    if args.job.starts_with(wire::PipelineId::PREFIX) {
        let pipeline = super::pipelines::parse_pipeline(&args.job)?;
        let status = client.cancel_pipeline(pipeline).await?;
        if args.connection.json {
            print_json(&status)?;
        } else {
            println!("pipeline {} {}", status.pipeline_id, status.state);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let job = parse_job(&args.job)?;
    let status = client.cancel(job).await?;
    if args.connection.json {
        print_json(&status)?;
    } else {
        print_summary(&status);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn nodes(args: NodesArgs) -> anyhow::Result<ExitCode> {
    let client = local::connect(&args.connection).await?;
    if let Some(NodesAction::Remove { node }) = &args.action {
        let node: wire::NodeId = node.parse().map_err(|_| {
            anyhow::anyhow!("{node:?} is not a node id; `crowdcloud nodes` lists them (n-…)")
        })?;
        let removed = client.remove_node(node).await?;
        if args.connection.json {
            print_json(&removed)?;
        } else {
            println!(
                "removed {}; {} of its tasks went back to the queue. It may not join again; \
                 revoke the join token it used with `crowdcloud tokens revoke NAME`",
                removed.node_id, removed.attempts_requeued
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let nodes = client.nodes().await?;
    if args.connection.json {
        print_json(&nodes)?;
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = nodes
        .nodes
        .iter()
        .map(|node| {
            vec![
                node.node_id.to_string(),
                node.name.clone(),
                match &node.state_reason {
                    Some(reason) => format!("{} ({reason})", node.state.as_str()),
                    None => node.state.as_str().to_owned(),
                },
                format!("{}/{}", node.running, node.slots),
                node.capabilities.cores.to_string(),
                human_bytes(node.capabilities.memory_bytes),
                format!("{}/{}", node.capabilities.os, node.capabilities.arch),
                node.tasks_succeeded.to_string(),
                standing_text(node.standing.as_ref()),
                node.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    print_table(
        &[
            "NODE", "NAME", "STATE", "RUNNING", "CORES", "MEMORY", "PLATFORM", "DONE", "STANDING",
            "LABELS",
        ],
        &rows,
    );
    if nodes
        .nodes
        .iter()
        .any(|node| node.capabilities.runtime == wire::NodeRuntime::Browser)
    {
        println!(
            "browser/wasm32 nodes are browser tabs lending their device: they cannot meter fuel, so \
             their tasks count no fuel and earn no credits, and they take no job that is \
             deterministic, checked or checkpointing"
        );
    }
    print_trust(&nodes);
    Ok(ExitCode::SUCCESS)
}

/// A node's standing in a pool that verifies: probation or trusted or banned, with its record.
fn standing_text(standing: Option<&wire::NodeStanding>) -> String {
    let Some(standing) = standing else {
        return "-".to_owned();
    };
    let record = &standing.record;
    format!(
        "{} ({} verified, {} audits passed, {} mismatches, {} held)",
        standing.standing.as_str(),
        record.verified,
        record.audits_passed,
        record.mismatches,
        record.held
    )
}

/// How the pool checks results, and each owner's standing.
fn print_trust(nodes: &wire::NodeList) {
    let Some(trust) = nodes.trust else {
        return;
    };
    if trust.trust == wire::Trust::Family {
        println!(
            "
family pool: one attempt per task, results taken as reported"
        );
        return;
    }
    println!(
        "
public pool: results verified before delivery; probation {} results, {:.1} % audited; \
         replicas kept apart by owner{}",
        trust.probation_results,
        f64::from(trust.audit_per_million) / 10_000.0,
        if trust.networks_apart {
            " and network (/24, /48)"
        } else {
            " only (--one-network: nodes may share a network)"
        }
    );
    let rows: Vec<Vec<String>> = nodes
        .owners
        .iter()
        .map(|owner| {
            vec![
                owner.owner.clone(),
                owner.nodes.to_string(),
                owner.standing.as_str().to_owned(),
                owner.record.verified.to_string(),
                owner.record.audits_passed.to_string(),
                owner.record.mismatches.to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        print_table(
            &[
                "OWNER",
                "NODES",
                "STANDING",
                "VERIFIED",
                "AUDITS",
                "MISMATCHES",
            ],
            &rows,
        );
    }
}
