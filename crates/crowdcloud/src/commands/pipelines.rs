//! Pipelines from the command line: `submit` of a spec with `[[stages]]`, `status p-…` with
//! each stage and the graph as text, and the stage whose results `results p-…` fetches.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use client::Client;
use wire::{JobId, PipelineId, PipelineStatus, StageState};

use crate::cli::SubmitArgs;
use crate::local;
use crate::output::{self, print_json, print_table};

pub(crate) fn parse_pipeline(text: &str) -> anyhow::Result<PipelineId> {
    text.parse().with_context(|| {
        format!("{text:?} is not a pipeline id (they look like p-0123456789abcdef)")
    })
}

/// Submits the pipeline spec at `path` (its text is `text`), and follows it with `--wait`.
pub(crate) async fn submit(args: &SubmitArgs, text: &str) -> anyhow::Result<ExitCode> {
    if args.tasks.is_some() || args.inputs.is_some() || !args.args.is_empty() {
        bail!(
            "--tasks, --inputs and task arguments go with a module; a pipeline's stages name their own tasks"
        );
    }
    let path = &args.spec_or_module;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut plan = jobspec::parse_pipeline(text, base)
        .with_context(|| format!("the pipeline spec {} is not valid", path.display()))?;
    // Each stage that runs a script keeps its staged copy until the upload.
    let mut staged = Vec::new();
    for stage in &mut plan.stages {
        if stage.job.script.is_some() {
            staged.push(super::submit::with_runtime(
                &mut stage.job,
                &args.connection.data_dir,
            )?);
        }
    }
    jobspec::check_pipeline(&plan).context("the pipeline with its runtimes is not valid")?;
    let client = local::connect(&args.connection).await?;
    let submission = client.upload_pipeline(&plan).await?;
    drop(staged);
    let submitted = client.submit_pipeline(&submission).await?;
    if !args.wait {
        if args.connection.json {
            print_json(&submitted)?;
        } else {
            println!("{}", submitted.pipeline_id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.connection.json {
        eprintln!(
            "submitted {} ({} stages)",
            submitted.pipeline_id,
            submitted.stages.len()
        );
    }
    let status = follow(&client, submitted.pipeline_id).await?;
    if args.connection.json {
        print_json(&status)?;
    } else {
        print_status(&status);
    }
    Ok(super::submit::exit_code(status.state))
}

/// Follows a pipeline until it ends.
async fn follow(client: &Client, pipeline: PipelineId) -> anyhow::Result<PipelineStatus> {
    loop {
        let status = client
            .wait_pipeline_end(pipeline, Duration::from_secs(60))
            .await?;
        if status.state.is_terminal() {
            return Ok(status);
        }
    }
}

/// `status p-…`.
pub(crate) async fn status(client: &Client, pipeline: &str, json: bool) -> anyhow::Result<()> {
    let status = client.pipeline(parse_pipeline(pipeline)?).await?;
    if json {
        return print_json(&status);
    }
    print_status(&status);
    Ok(())
}

fn print_status(status: &PipelineStatus) {
    println!(
        "pipeline {} {}: {}",
        status.pipeline_id, status.name, status.state
    );
    let rows: Vec<Vec<String>> = status
        .stages
        .iter()
        .map(|stage| {
            vec![
                stage.name.clone(),
                stage.state.as_str().to_owned(),
                output::counts_line(&stage.counts),
                stage.job_id.to_string(),
                stage.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["STAGE", "STATE", "TASKS", "JOB", "WHY"], &rows);
    println!("graph:");
    for line in graph(status) {
        println!("  {line}");
    }
}

/// The graph as text, a line per stage: what it reads and how.
fn graph(status: &PipelineStatus) -> Vec<String> {
    status
        .stages
        .iter()
        .map(|stage| match &stage.input {
            None => format!("{} (its own tasks)", stage.name),
            Some(input) => format!("{} <- {}", stage.name, input),
        })
        .collect()
}

/// The job of a pipeline's stage: the one named, or the last.
pub(crate) async fn stage_job(
    client: &Client,
    pipeline: &str,
    stage: Option<&str>,
) -> anyhow::Result<JobId> {
    let status = client.pipeline(parse_pipeline(pipeline)?).await?;
    let found = match stage {
        Some(name) => status.stages.iter().find(|s| s.name == name),
        None => status.stages.last(),
    };
    let Some(found) = found else {
        let names: Vec<&str> = status.stages.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "pipeline {} has no stage {:?}; its stages are {}",
            status.pipeline_id,
            stage.unwrap_or(""),
            names.join(", ")
        );
    };
    if matches!(found.state, StageState::Waiting | StageState::NotRun) {
        bail!(
            "stage {} has no results: it is {} ({})",
            found.name,
            found.state.as_str(),
            found.reason.as_deref().unwrap_or("")
        );
    }
    Ok(found.job_id)
}
