//! One borrowed attempt, from its grant at the home pool to its report there: its blobs copied
//! in, a job of one task here, its result copied back.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use wire::{
    AttemptGrant, AttemptId, AttemptReport, BlobHash, JobId, JobRuntime, JobStatus, JobSubmission,
    Outcome, ReleaseRequest, ReportRequest, TaskSpec, TaskStatus,
};

use crate::{Bridged, FederationError, UNPLACED_MS};

/// How long one wait on the job here lasts before the bridge looks again.
const WAIT_STEP: Duration = Duration::from_secs(1);

/// How a borrowed task's job here ended.
enum Ended {
    /// It ran to an end: its result goes home.
    Ran(Box<JobStatus>),
    /// This pool's nodes did not start it in time: it goes home unfinished.
    Unplaced,
    /// The home pool no longer wants it.
    Cancelled,
}

/// Carries `grant` through; whatever happens, the attempt is ended at the home pool (reported
/// or given back) or left to its lease there, and its job here is not left running.
pub(crate) async fn carry(
    bridged: Arc<Bridged>,
    grant: AttemptGrant,
    cancelled: watch::Receiver<bool>,
) {
    let attempt = grant.attempt_id;
    let carried = carry_through(&bridged, grant, cancelled).await;
    let job = bridged.let_go(attempt);
    let Err(error) = carried else {
        return;
    };
    tracing::warn!(peer = %bridged.peer, %attempt, %error, "a borrowed task goes back to its pool");
    if let Some(job) = job {
        let _ = bridged.local.cancel(job).await;
    }
    give_back(&bridged, attempt, &error.to_string()).await;
}

async fn carry_through(
    bridged: &Bridged,
    grant: AttemptGrant,
    mut cancelled: watch::Receiver<bool>,
) -> Result<(), FederationError> {
    let attempt = grant.attempt_id;
    let runtime = runtime_of(bridged, &grant).await?;
    let dir = tempfile::tempdir()?;
    let submission = submission(bridged, &grant, &runtime);
    for hash in submission.blobs_named(&submission.tasks) {
        copy_in(bridged, hash, dir.path()).await?;
    }
    let job = bridged.local.submit(&submission).await?.job_id;
    if let Some(borrowed) = bridged.held.lock().get_mut(&attempt) {
        borrowed.job = Some(job);
    }
    match ended(bridged, job, &mut cancelled).await? {
        Ended::Ran(status) => report(bridged, attempt, job, &status, dir.path()).await,
        Ended::Unplaced => {
            bridged.local.cancel(job).await?;
            give_back(
                bridged,
                attempt,
                "the lending pool's nodes did not start it",
            )
            .await;
            Ok(())
        }
        Ended::Cancelled => {
            bridged.local.cancel(job).await?;
            Ok(())
        }
    }
}

/// The job the grant belongs to, as the home pool sent it (asked for when it was not).
async fn runtime_of(
    bridged: &Bridged,
    grant: &AttemptGrant,
) -> Result<Arc<JobRuntime>, FederationError> {
    if let Some(runtime) = bridged.runtimes.lock().get(&grant.job_id) {
        return Ok(Arc::clone(runtime));
    }
    let runtime = bridged
        .home
        .node
        .job_runtime(grant.job_id)
        .await
        .map_err(|_| FederationError::NoRuntime(grant.job_id))?;
    let runtime = Arc::new(runtime);
    bridged
        .runtimes
        .lock()
        .insert(grant.job_id, Arc::clone(&runtime));
    Ok(runtime)
}

/// Copies a blob from the home pool to this one, unless this pool has it for the peer already.
async fn copy_in(bridged: &Bridged, hash: BlobHash, dir: &Path) -> Result<(), FederationError> {
    if bridged.local.has_blob(&hash).await? {
        return Ok(());
    }
    let path = dir.join(hash.to_string());
    bridged.home.node.download_to(&hash, &path).await?;
    bridged.local.put_file(hash, &path).await?;
    tokio::fs::remove_file(&path).await?;
    Ok(())
}

/// The job of one task that runs the attempt here: the home job's program, limits and
/// requirements, kept in this pool (it is not lent on).
fn submission(bridged: &Bridged, grant: &AttemptGrant, runtime: &JobRuntime) -> JobSubmission {
    let name = format!("{} (for {})", runtime.name, bridged.peer);
    let task = TaskSpec {
        args: grant.args.clone(),
        stdin: grant.stdin,
        inputs: grant.inputs.clone(),
    };
    let mut job = JobSubmission::new(
        wire::validate::fit_line(&name, 200),
        runtime.module,
        vec![task],
    );
    job.env = runtime.env.clone();
    job.mounts = runtime.mounts.clone();
    job.limits = runtime.limits;
    if let Some(memory) = grant.memory_bytes_max {
        job.limits.memory_bytes_max = memory;
    }
    job.deterministic = runtime.deterministic;
    job.requirements = runtime.requirements.clone().unwrap_or_default();
    job.requirements.home_pool = true;
    job
}

/// Follows the job here until it ends, is not started in time, or is cancelled at home.
async fn ended(
    bridged: &Bridged,
    job: JobId,
    cancelled: &mut watch::Receiver<bool>,
) -> Result<Ended, FederationError> {
    let submitted = Instant::now();
    let mut version = 0;
    loop {
        if *cancelled.borrow_and_update() {
            return Ok(Ended::Cancelled);
        }
        let status = tokio::select! {
            status = bridged.local.wait_job(job, version, WAIT_STEP) => status?,
            _ = cancelled.changed() => continue,
        };
        if status.state.is_terminal() {
            return Ok(Ended::Ran(Box::new(status)));
        }
        let waiting = status.tasks.running == 0 && status.tasks.pending > 0;
        if waiting && submitted.elapsed() > Duration::from_millis(UNPLACED_MS) {
            return Ok(Ended::Unplaced);
        }
        version = status.version;
    }
}

/// Copies the task's result home and reports it as the attempt's, naming the node that ran it.
async fn report(
    bridged: &Bridged,
    attempt: AttemptId,
    job: JobId,
    status: &JobStatus,
    dir: &Path,
) -> Result<(), FederationError> {
    let mut tasks = bridged.local.tasks(job, 0, 1).await?.tasks;
    let Some(task) = tasks.pop() else {
        return Err(FederationError::NoRuntime(job));
    };
    let files = task.result_files();
    for (_, hash) in &files {
        let path = dir.join(hash.to_string());
        bridged.local.download_to(hash, &path).await?;
        bridged
            .home
            .node
            .put_output_file(attempt, *hash, &path)
            .await
            .map_err(FederationError::from_home)?;
    }
    let report = AttemptReport {
        attempt_id: attempt,
        outcome: outcome_of(&task),
        usage: task.usage.unwrap_or_default(),
        stdout: task.stdout,
        stderr: task.stderr,
        outputs: task.outputs.clone(),
        sealed_digest: None,
        ran_on: Some(ran_on(bridged, &task, status)),
    };
    let request = ReportRequest {
        reports: vec![report],
    };
    let acks = bridged
        .home
        .node
        .report(&request)
        .await
        .map_err(FederationError::from_home)?;
    bridged.given_back_in_a_row.store(0, Ordering::SeqCst);
    if let Some(refused) = acks.acks.into_iter().find(|ack| !ack.accepted) {
        let why = refused.message.unwrap_or_default();
        tracing::info!(peer = %bridged.peer, %attempt, %why, "the peer refused a borrowed task's report");
    }
    Ok(())
}

/// What the home pool is told: the task's outcome, unless only a coordinator may say it
/// (lost, inconclusive, cancelled here), which is this node's failure to run it.
fn outcome_of(task: &TaskStatus) -> Outcome {
    match &task.outcome {
        Some(Outcome::Lost { .. } | Outcome::Inconclusive { .. } | Outcome::Cancelled) | None => {
            let message = match &task.outcome {
                Some(outcome) => format!("the lending pool could not run it: {outcome}"),
                None => "the lending pool gave no result".to_owned(),
            };
            let mut outcome = Outcome::NodeError { message };
            wire::validate::fit_outcome(&mut outcome);
            outcome
        }
        Some(outcome) => outcome.clone(),
    }
}

/// `pool/node`: this pool, and its node that ran the task.
fn ran_on(bridged: &Bridged, task: &TaskStatus, status: &JobStatus) -> String {
    let node = task.node_id.map(|id| {
        status
            .nodes
            .iter()
            .find(|share| share.node_id == id)
            .map_or_else(|| id.to_string(), |share| share.node_name.clone())
    });
    let node = node.unwrap_or_else(|| "?".to_owned());
    let text = format!("{}/{node}", bridged.pool_name);
    wire::validate::fit_line(&text, wire::validate::RAN_ON_BYTES_MAX)
}

/// Ends the attempt at home unfinished: it runs again there without counting against its task.
pub(crate) async fn give_back(bridged: &Bridged, attempt: AttemptId, why: &str) {
    bridged.given_back_in_a_row.fetch_add(1, Ordering::SeqCst);
    let request = ReleaseRequest {
        attempts: vec![attempt],
        reason: wire::validate::fit_reason(why),
    };
    if let Err(error) = bridged.home.node.release(&request).await {
        tracing::warn!(peer = %bridged.peer, %attempt, %error, "cannot give a borrowed task back; its lease will run out");
    }
}
