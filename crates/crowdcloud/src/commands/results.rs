//! `results`: download every task's stdout, stderr and output files into a directory.

use std::path::{Component, Path};
use std::process::ExitCode;

use anyhow::{Context, bail};

use client::Client;
use wire::{BlobHash, TaskStatus};

use crate::cli::ResultsArgs;
use crate::commands::jobs::parse_job;
use crate::local;
use crate::output::print_json;

pub(crate) async fn run(args: ResultsArgs) -> anyhow::Result<ExitCode> {
    let client = local::connect(&args.connection).await?;
    let job = match args.job.starts_with(wire::PipelineId::PREFIX) {
        true => super::pipelines::stage_job(&client, &args.job, args.stage.as_deref()).await?,
        false if args.stage.is_some() => {
            bail!("--stage goes with a pipeline (p-…); {} is a job", args.job)
        }
        false => parse_job(&args.job)?,
    };
    let tasks = client.all_tasks(job).await?;
    // A private job's results are sealed to the requester's key, which opens them here.
    let secret = match client.job(job).await?.private {
        true => Some(super::keys::requester_key(&args.connection)?.1),
        false => None,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut files = 0usize;
    for task in &tasks {
        files += download_task(&client, task, &args.out, secret.as_ref()).await?;
    }
    if args.connection.json {
        print_json(&tasks)?;
    } else {
        let ended = tasks.iter().filter(|t| t.state.is_terminal()).count();
        println!(
            "wrote {files} files of {ended}/{} ended tasks to {}",
            tasks.len(),
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `OUT/INDEX/{stdout,stderr,output/…}` for one task; returns how many files.
pub(crate) async fn download_task(
    client: &Client,
    task: &TaskStatus,
    out: &Path,
    secret: Option<&seal::EncryptionSecret>,
) -> anyhow::Result<usize> {
    let dir = out.join(task.index.to_string());
    let mut wanted: Vec<(std::path::PathBuf, BlobHash)> = Vec::new();
    for (name, hash) in task.result_files() {
        // Output paths come from a node; refuse anything that could leave the directory.
        let relative = Path::new(&name);
        if relative
            .components()
            .any(|component| !matches!(component, Component::Normal(_)))
        {
            bail!(
                "task {} reports an output path {:?} outside its directory",
                task.index,
                name.trim_start_matches("output/")
            );
        }
        wanted.push((dir.join(relative), hash));
    }
    for (path, hash) in &wanted {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let Some(secret) = secret else {
            client
                .download_to(hash, path)
                .await
                .with_context(|| format!("cannot download {}", path.display()))?;
            continue;
        };
        let sealed = path.with_extension("sealed");
        client
            .download_to(hash, &sealed)
            .await
            .with_context(|| format!("cannot download {}", path.display()))?;
        let attempt = task
            .attempt_id
            .context("a task with results names the attempt that made them")?;
        let opened = client::private::open_result(secret, attempt, &sealed, path);
        let _ = std::fs::remove_file(&sealed);
        opened.with_context(|| {
            format!(
                "cannot open {}: results of a private job open only with the key of the device                  that submitted it (`crowdcloud keys import`)",
                path.display()
            )
        })?;
    }
    Ok(wanted.len())
}
