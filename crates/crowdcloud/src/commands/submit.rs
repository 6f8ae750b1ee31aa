//! `submit`: turn a spec (or a module with --tasks/--inputs) into a job: upload its files, submit
//! it, and follow it with --wait.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use client::Client;
use jobspec::JobPlan;
use wire::{
    BlobHash, InputFile, JobId, JobState, JobStatus, JobSubmission, Mount, MountFile, TaskSpec,
};

use crate::cli::SubmitArgs;
use crate::local;
use crate::output::{self, print_json};

pub(crate) async fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    // Holds what a script's job mounts until it is uploaded.
    let staged = tempfile::tempdir().context("cannot make a temporary directory")?;
    let plan = plan(&args, staged.path())?;
    let client = local::connect(&args.connection).await?;
    let submission = upload(&client, &plan).await?;
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

fn plan(args: &SubmitArgs, staged: &Path) -> anyhow::Result<JobPlan> {
    let is_script = args
        .spec_or_module
        .extension()
        .is_some_and(|ext| ext == "py");
    let mut plan = if is_script {
        script_plan(args, staged)?
    } else {
        spec_or_module(args)?
    };
    if !args.success_exit_codes.is_empty() {
        plan.success_exit_codes = args.success_exit_codes.clone();
        jobspec::check(&plan).context("--success-exit-codes is not valid")?;
    }
    Ok(plan)
}

/// A Python script's job: the installed interpreter as its module, the script alone in a
/// directory mounted at `/job` (so nothing beside it is uploaded), and `/job/NAME` first in
/// every task's args, with the quick forms of a module.
fn script_plan(args: &SubmitArgs, staged: &Path) -> anyhow::Result<JobPlan> {
    let python = super::runtimes::installed(&args.connection.data_dir, &super::runtimes::PYTHON)?;
    let script = &args.spec_or_module;
    let name = script
        .file_name()
        .and_then(|name| name.to_str())
        .context("the script's file name is not UTF-8 text; rename it")?;
    std::fs::copy(script, staged.join(name))
        .with_context(|| format!("cannot read the script {}", script.display()))?;
    let mut task_args = vec![format!("/job/{name}")];
    task_args.extend(args.args.iter().cloned());
    let mut plan = match (&args.tasks, &args.inputs) {
        (_, Some(dir)) => jobspec::per_input(python, dir, &task_args)?,
        (tasks, None) => jobspec::sweep(python, tasks.unwrap_or(1), &task_args)?,
    };
    plan.name = name.to_owned();
    plan.mounts.push(jobspec::MountPlan {
        guest_path: "/job".to_owned(),
        dir: staged.to_owned(),
    });
    jobspec::check(&plan).context("the script's job is not valid")?;
    Ok(plan)
}

/// The plan of a spec file, or of a module with the quick forms.
fn spec_or_module(args: &SubmitArgs) -> anyhow::Result<JobPlan> {
    let path = &args.spec_or_module;
    let is_module = path.extension().is_some_and(|ext| ext == "wasm");
    if !is_module {
        if args.tasks.is_some() || args.inputs.is_some() || !args.args.is_empty() {
            bail!(
                "--tasks, --inputs and task arguments go with a .wasm module; a spec names its own tasks"
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the job spec {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        return jobspec::parse(&text, base)
            .with_context(|| format!("the job spec {} is not valid", path.display()));
    }
    let plan = match (&args.tasks, &args.inputs) {
        (_, Some(dir)) => jobspec::per_input(path.clone(), dir, &args.args)?,
        (tasks, None) => jobspec::sweep(path.clone(), tasks.unwrap_or(1), &args.args)?,
    };
    Ok(plan)
}

/// Uploads every file the plan names (each once) and returns the submission naming them.
pub(crate) async fn upload(client: &Client, plan: &JobPlan) -> anyhow::Result<JobSubmission> {
    let mut uploaded: HashMap<PathBuf, BlobHash> = HashMap::new();
    let module = upload_once(client, &mut uploaded, &plan.module).await?;
    let validator = match &plan.validator {
        Some(validator) => Some(wire::Validator {
            module: upload_once(client, &mut uploaded, &validator.module).await?,
            args: validator.args.clone(),
        }),
        None => None,
    };
    let mut mounts = Vec::with_capacity(plan.mounts.len());
    for mount in &plan.mounts {
        let mut files = Vec::new();
        for (relative, path) in walk(&mount.dir)? {
            files.push(MountFile {
                path: relative,
                blob: upload_once(client, &mut uploaded, &path).await?,
            });
        }
        mounts.push(Mount {
            guest_path: mount.guest_path.clone(),
            files,
        });
    }
    let mut tasks = Vec::with_capacity(plan.tasks.len());
    for task in &plan.tasks {
        let stdin = match &task.stdin {
            Some(path) => Some(upload_once(client, &mut uploaded, path).await?),
            None => None,
        };
        let mut inputs = Vec::with_capacity(task.inputs.len());
        for (name, path) in &task.inputs {
            inputs.push(InputFile {
                name: name.clone(),
                blob: upload_once(client, &mut uploaded, path).await?,
            });
        }
        tasks.push(TaskSpec {
            args: task.args.clone(),
            stdin,
            inputs,
        });
    }
    Ok(JobSubmission {
        name: plan.name.clone(),
        module,
        env: plan.env.clone(),
        mounts,
        requirements: plan.requirements.clone(),
        limits: plan.limits,
        max_attempts: plan.max_attempts,
        replicas: plan.replicas,
        deterministic: plan.deterministic,
        verify: plan.verify,
        validator,
        success_exit_codes: plan.success_exit_codes.clone(),
        tasks,
    })
}

async fn upload_once(
    client: &Client,
    uploaded: &mut HashMap<PathBuf, BlobHash>,
    path: &Path,
) -> anyhow::Result<BlobHash> {
    if let Some(hash) = uploaded.get(path) {
        return Ok(*hash);
    }
    let (hash, _) = client
        .upload_file(path)
        .await
        .with_context(|| format!("cannot upload {}", path.display()))?;
    uploaded.insert(path.to_owned(), hash);
    Ok(hash)
}

/// Regular files below `dir` as (`/`-separated relative path, path), sorted.
fn walk(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut pending = vec![(dir.to_owned(), String::new())];
    while let Some((current, prefix)) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .with_context(|| format!("cannot read the mount directory {}", current.display()))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().into_string().map_err(|name| {
                anyhow::anyhow!("the file name {name:?} is not UTF-8; rename it")
            })?;
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                pending.push((entry.path(), relative));
            } else if file_type.is_file() {
                files.push((relative, entry.path()));
            }
        }
    }
    files.sort();
    Ok(files)
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
