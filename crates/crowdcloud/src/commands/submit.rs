//! `submit`: turn a spec (or a module with --tasks/--inputs) into a plan, have `client` upload
//! its files and submit it, and follow it with --wait.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use client::Client;
use jobspec::JobPlan;
use wire::{JobId, JobState, JobStatus};

use crate::cli::SubmitArgs;
use crate::local;
use crate::output::{self, print_json};

pub(crate) async fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    if let Some(text) = pipeline_spec(&args.spec_or_module)? {
        return super::pipelines::submit(&args, &text).await;
    }
    // A script's job mounts a copy of it, kept until it is uploaded.
    let (mut plan, staged) = plan(&args)?;
    if args.private && plan.private.is_none() {
        plan.private = Some(jobspec::PrivatePlan::default());
    }
    let client = local::connect(&args.connection).await?;
    let submission = upload(&client, &plan, &args).await?;
    drop(staged);
    let submitted = client.submit(&submission).await?;
    if !args.wait {
        if args.connection.json {
            print_json(&submitted)?;
        } else {
            println!("{}", submitted.job_id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.connection.json {
        eprintln!("submitted {} ({} tasks)", submitted.job_id, submitted.tasks);
    }
    let status = follow(&client, submitted.job_id, !args.connection.json).await?;
    if args.connection.json {
        print_json(&status)?;
    } else {
        print_summary(&status);
    }
    Ok(exit_code(status.state))
}

/// Uploads the plan's files, sealed first for a private job, and gives the submission.
async fn upload(
    client: &Client,
    plan: &JobPlan,
    args: &SubmitArgs,
) -> anyhow::Result<wire::JobSubmission> {
    let Some(trust) = &plan.private else {
        return Ok(client.upload_plan(plan).await?);
    };
    let (_, secret) = super::keys::requester_key(&args.connection)?;
    let pool = client.nodes().await?;
    let holders = client::private::pick_key_holders(&pool.nodes, trust, &plan.requirements.labels)?;
    if !args.connection.json {
        eprintln!(
            "sealing the job's files; its key is wrapped to {} nodes",
            holders.len()
        );
    }
    Ok(client.upload_private_plan(plan, &secret, &holders).await?)
}

/// The text of the spec at `path` when it describes a pipeline (`[[stages]]`).
fn pipeline_spec(path: &Path) -> anyhow::Result<Option<String>> {
    let is_spec = path.extension().is_some_and(|ext| ext == "toml");
    if !is_spec {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the spec {}", path.display()))?;
    Ok(jobspec::is_pipeline(&text).then_some(text))
}

/// The job to upload, and for a script the directory its copy is staged in.
fn plan(args: &SubmitArgs) -> anyhow::Result<(JobPlan, Option<tempfile::TempDir>)> {
    let mut plan = spec_or_module(args)?;
    let staged = match plan.script {
        Some(_) => Some(with_runtime(&mut plan, &args.connection.data_dir)?),
        None => None,
    };
    if !args.success_exit_codes.is_empty() {
        plan.success_exit_codes = args.success_exit_codes.clone();
        jobspec::check(&plan).context("--success-exit-codes is not valid")?;
    }
    Ok((plan, staged))
}

/// Makes a script's plan run under its runtime: the installed interpreter becomes the module,
/// the script is copied alone into a directory mounted at `/job` (so nothing beside it is
/// uploaded), its packages are mounted at `/packages` on `PYTHONPATH`, and `/job/NAME` comes
/// first in every task's args. Returns the directory the script is staged in.
pub(crate) fn with_runtime(
    plan: &mut JobPlan,
    data_dir: &Option<PathBuf>,
) -> anyhow::Result<tempfile::TempDir> {
    let python = super::runtimes::installed(data_dir, &super::runtimes::PYTHON)?;
    let staged = tempfile::tempdir().context("cannot make a temporary directory")?;
    let script = std::mem::replace(&mut plan.module, python);
    let name = script
        .file_name()
        .and_then(|name| name.to_str())
        .context("the script's file name is not UTF-8 text; rename it")?;
    let job_dir = staged.path().join("job");
    std::fs::create_dir_all(&job_dir).context("cannot stage the script")?;
    std::fs::copy(&script, job_dir.join(name))
        .with_context(|| format!("cannot read the script {}", script.display()))?;
    plan.mounts.push(jobspec::MountPlan {
        guest_path: "/job".to_owned(),
        dir: job_dir,
    });
    let packages = plan.script.as_ref().and_then(|s| s.packages.clone());
    if let Some(packages) = packages {
        plan.mounts.push(jobspec::MountPlan {
            guest_path: "/packages".to_owned(),
            dir: packages,
        });
        plan.env
            .insert("PYTHONPATH".to_owned(), "/packages".to_owned());
    }
    for task in &mut plan.tasks {
        task.args.insert(0, format!("/job/{name}"));
    }
    jobspec::check(plan).context("the script's job is not valid")?;
    Ok(staged)
}

/// The plan of a spec file, or of a module with the quick forms.
fn spec_or_module(args: &SubmitArgs) -> anyhow::Result<JobPlan> {
    let path = &args.spec_or_module;
    let is_script = path.extension().is_some_and(|ext| ext == "py");
    let is_module = is_script || path.extension().is_some_and(|ext| ext == "wasm");
    if !is_module {
        if args.tasks.is_some() || args.inputs.is_some() || !args.args.is_empty() {
            bail!(
                "--tasks, --inputs and task arguments go with a .wasm module or .py script; a spec names its own tasks"
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the job spec {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        return jobspec::parse(&text, base)
            .with_context(|| format!("the job spec {} is not valid", path.display()));
    }
    let mut plan = match (&args.tasks, &args.inputs) {
        (_, Some(dir)) => jobspec::per_input(path.clone(), dir, &args.args)?,
        (tasks, None) => jobspec::sweep(path.clone(), tasks.unwrap_or(1), &args.args)?,
    };
    if is_script {
        plan.script = Some(jobspec::ScriptPlan::default());
    }
    Ok(plan)
}

/// Follows a job until it ends, with a progress bar when `show` and stderr is a terminal.
pub(crate) async fn follow(client: &Client, job: JobId, show: bool) -> anyhow::Result<JobStatus> {
    let mut status = client.job(job).await?;
    let bar = show.then(|| output::job_progress(status.tasks.total));
    while !status.state.is_terminal() {
        if let Some(bar) = &bar {
            output::update_progress(bar, &status);
        }
        status = client
            .wait_job(job, status.version, Duration::from_secs(30))
            .await?;
    }
    if let Some(bar) = bar {
        output::update_progress(&bar, &status);
        bar.finish_and_clear();
    }
    Ok(status)
}

pub(crate) fn print_summary(status: &JobStatus) {
    let seconds = status
        .finished_at_ms
        .map(|end| end.saturating_sub(status.created_at_ms) as f64 / 1000.0);
    println!(
        "job {} {}: {}{}",
        status.job_id,
        status.state,
        output::counts_line(&status.tasks),
        seconds.map(|s| format!(" in {s:.1} s")).unwrap_or_default()
    );
}

pub(crate) fn exit_code(state: JobState) -> ExitCode {
    match state {
        JobState::Completed => ExitCode::SUCCESS,
        _ => ExitCode::from(3),
    }
}
