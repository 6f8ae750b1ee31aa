//! `delete`: a job deleted for good. A running job is cancelled first; the coordinator drops
//! the job and the blobs only it used at once, and this waits (within `--wait`) for the nodes
//! that ran it to confirm they dropped their copies, saying which have not.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use client::Client;
use wire::{JobDeletion, JobId};

use crate::cli::DeleteArgs;
use crate::commands::jobs::parse_job;
use crate::local;
use crate::output::print_json;

/// How often the confirmations are read while waiting.
const POLL_EVERY: Duration = Duration::from_millis(250);

pub(crate) async fn run(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let job = parse_job(&args.job)?;
    let client = local::connect(&args.connection).await?;
    // Deleted before: say where its nodes stand.
    let deleted = match client.deletion(job).await {
        Ok(deletion) => deletion,
        Err(_) => {
            if !client.job(job).await?.state.is_terminal() {
                client.cancel(job).await?;
            }
            client
                .delete_job(job)
                .await
                .with_context(|| format!("cannot delete {job}"))?
        }
    };
    let deletion = wait_for_nodes(&client, job, deleted, Duration::from_secs(args.wait)).await?;
    if args.connection.json {
        print_json(&deletion)?;
    } else {
        print_deletion(&deletion);
    }
    Ok(ExitCode::SUCCESS)
}

/// The deletion once every node confirmed, or as it stands when `wait` ran out.
async fn wait_for_nodes(
    client: &Client,
    job: JobId,
    mut deletion: JobDeletion,
    wait: Duration,
) -> anyhow::Result<JobDeletion> {
    let started = Instant::now();
    while !deletion.pending.is_empty() && started.elapsed() < wait {
        tokio::time::sleep(POLL_EVERY).await;
        deletion = client.deletion(job).await?;
    }
    Ok(deletion)
}

fn print_deletion(deletion: &JobDeletion) {
    println!(
        "deleted {}: {} blobs removed from the coordinator",
        deletion.job_id, deletion.blobs_deleted
    );
    let nodes = deletion.confirmed.len() + deletion.pending.len();
    if nodes == 0 {
        println!("no node ran it, so no node holds a copy");
        return;
    }
    println!(
        "{} of {nodes} nodes that ran it confirmed they dropped their copies",
        deletion.confirmed.len()
    );
    if !deletion.pending.is_empty() {
        let pending: Vec<String> = deletion.pending.iter().map(ToString::to_string).collect();
        println!(
            "not yet: {}; each is asked at its next heartbeat (`crowdcloud delete {}` again \
             shows them)",
            pending.join(", "),
            deletion.job_id
        );
    }
}
