//! Requester routes for jobs: submit, list, status, wait, tasks, why, cancel.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use wire::{
    ApiError, BlobHash, ErrorCode, JobId, JobList, JobStatus, JobSubmission, JobSubmitted,
    RequesterId, TaskPage, WhyResponse,
};

use super::{ApiResult, AppState, Body, Failure, Query, Requester, parse_path};
use crate::modules::{ModuleFacts, ModuleKind};
use crate::pool::{Cancel, DeleteJob, DeletionScope, GrantKeys, Held, Submit};

/// Longest a `wait` request holds.
const WAIT_MS_MAX: u64 = 60_000;
/// Rows per page of a job's tasks or attempts.
pub(super) const PAGE_MAX: u32 = 1000;

/// `POST /v1/jobs?wait_ms=`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SubmitQuery {
    /// Answer once the job has ended, with its status, or after this many ms (at most 60000)
    /// with the status then: submit and wait in one exchange.
    #[param(maximum = 60000)]
    wait_ms: Option<u64>,
}

#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    params(SubmitQuery),
    request_body = JobSubmission,
    responses(
        (status = 201, body = JobSubmitted, description = "the job is stored and its tasks are queued; with `wait_ms`, it carries the job's status once it ended or the wait ran out"),
        (status = 400, body = ApiError, description = "the submission breaks a rule, names a blob not uploaded, or its module is not a WASI preview 1 module"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 413, body = ApiError, description = "the body is larger than a submission may be"),
        (status = 429, body = ApiError, description = "the pool or the requester has as many unfinished tasks as it takes"),
        (status = 503, body = ApiError, description = "the coordinator is catching up with its writes; retry"),
    ),
    security(("requester" = [])))]
pub(crate) async fn submit(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Query(query): Query<SubmitQuery>,
    Body(submission): Body<JobSubmission>,
) -> ApiResult<(StatusCode, Json<JobSubmitted>)> {
    wire::validate::job_submission(&submission)?;
    if shared.overloaded() {
        return Err(Failure::new(
            ErrorCode::Unavailable,
            "the coordinator is catching up with its writes; retry in a moment",
        ));
    }
    // No blob the job names is deleted between this check and the job's commit.
    let _gate = shared.blob_gate.read().await;
    check_readable(&shared, &blobs_of(&submission), requester).await?;
    let facts = match submission.private.as_deref() {
        Some(private) if private.module_sealed => sealed_module(&shared, submission.module).await?,
        _ => check_module(&shared, submission.module, "the module").await?,
    };
    let component_imports = match facts.kind {
        ModuleKind::Core => None,
        ModuleKind::Component { imports } => Some(imports),
    };
    if let Some(validator) = &submission.validator {
        if shared.validators.get().is_none() {
            return Err(Failure::bad_request(
                "this coordinator runs no validators: remove the validator, and make the job \
                 deterministic if its results are verified",
            ));
        }
        check_module(&shared, validator.module, "the validator's module").await?;
    }
    let unfinished_max = shared.config.unfinished_max();
    // Counted before the lock is taken: a million tasks' args take a while to add up.
    let adding = Held::of_submission(&submission);
    let submit = Submit {
        requester,
        submission,
        module_bytes: facts.size_bytes,
        component_imports,
        wasm_features: facts.wasm_features,
        adding,
        unfinished_max,
        // A plain job always runs: reuse is for pipelines, whose stages are keyed work.
        reusable: Vec::new(),
    };
    // A submission that waits answers only with its job's status, read once the store is
    // flushed: its job's commit can share the fsync of the result's.
    let (submitted, commit) = match query.wait_ms {
        Some(_) => shared.apply_deferred(submit),
        None => shared.apply(submit),
    };
    let mut submitted = submitted?;
    shared.committed(commit).await?;
    tracing::info!(job = %submitted.job_id, tasks = submitted.tasks, "job submitted");
    if let Some(wait_ms) = query.wait_ms {
        let timeout = Duration::from_millis(wait_ms.min(WAIT_MS_MAX));
        let ended = settled(&shared, submitted.job_id, requester, (0, true), timeout).await?;
        submitted.status = Some(ended);
    }
    Ok((StatusCode::CREATED, Json(submitted)))
}

/// Refuses a submission that names a blob its requester may not read: not uploaded, or not
/// theirs. Call it holding the blob gate for reading.
pub(super) async fn check_readable(
    shared: &AppState,
    hashes: &[BlobHash],
    requester: RequesterId,
) -> ApiResult<()> {
    if shared.readable_blobs.all(requester, hashes) {
        return Ok(());
    }
    let mut missing = shared.store.unreadable_blobs(hashes, requester).await?;
    missing.retain(|hash| !shared.is_preset(hash));
    if let Some(hash) = missing.first() {
        return Err(Failure::bad_request(format!(
            "blob {hash} (and {} more) is not uploaded; upload it with PUT /v1/blobs/{hash} first",
            missing.len() - 1
        )));
    }
    shared.readable_blobs.found(requester, hashes);
    Ok(())
}

pub(super) fn blobs_of(submission: &JobSubmission) -> Vec<BlobHash> {
    submission
        .blobs_named(&submission.tasks)
        .into_iter()
        .collect()
}

/// What can be known of a sealed module without reading it: its size. It is taken for a core
/// module that needs no proposal; the nodes find out the rest when they open it.
async fn sealed_module(shared: &AppState, module: BlobHash) -> ApiResult<ModuleFacts> {
    let size_bytes = shared
        .blobs
        .size(&module)
        .await
        .map_err(Failure::storage)?
        .ok_or_else(|| {
            Failure::bad_request(format!("the sealed module {module} is not uploaded"))
        })?;
    Ok(ModuleFacts {
        kind: ModuleKind::Core,
        size_bytes,
        wasm_features: Vec::new(),
    })
}

/// Refuses a module that is neither a valid WebAssembly core module nor a WASI 0.2 command
/// component, before any node sees it; `what` names it in the refusal.
pub(super) async fn check_module(
    shared: &AppState,
    module: BlobHash,
    what: &str,
) -> ApiResult<ModuleFacts> {
    let verdict = shared
        .module_verdicts
        .verdict(&shared.blobs, module)
        .await
        .map_err(Failure::storage)?;
    verdict.map_err(|problem| Failure::bad_request(format!("{what} is {problem}")))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// How many jobs, newest first (default 100).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(ListQuery),
    responses(
        (status = 200, body = JobList),
        (status = 400, body = ApiError, description = "a query parameter is not valid"),
        (status = 401, body = ApiError, description = "no valid API token"),
    ),
    security(("requester" = [])))]
pub(crate) async fn list(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<JobList>> {
    let limit = query.limit.unwrap_or(100).min(10_000);
    let jobs = shared.read(|state, _| state.list_jobs(requester, limit));
    // As for one job's status: what is shown is committed first.
    shared.store.flush().await?;
    Ok(Json(JobList { jobs }))
}

#[utoipa::path(get, path = "/v1/jobs/{job}", tag = "jobs",
    params(("job" = JobId, Path, description = "job id (j-…)")),
    responses(
        (status = 200, body = JobStatus),
        (status = 400, body = ApiError, description = "the job id is malformed"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 404, body = ApiError, description = "no job of this requester has this id"),
    ),
    security(("requester" = [])))]
pub(crate) async fn status(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Path(job): Path<String>,
) -> ApiResult<Json<JobStatus>> {
    let job: JobId = parse_path(&job)?;
    Ok(Json(durable_status(&shared, job, requester).await?))
}

/// A job's status as a requester may be told it: read, then held back until every change it
/// shows is committed, so nothing a requester was shown can be lost with the coordinator.
async fn durable_status(
    shared: &AppState,
    job: JobId,
    requester: RequesterId,
) -> ApiResult<JobStatus> {
    let status = shared.read(|state, _| state.job_status(job, requester))?;
    shared.store.flush().await?;
    Ok(status)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WaitQuery {
    /// Answer once the job's version is past this.
    after: Option<u64>,
    /// `ended`: answer only once the job has ended (or at the timeout), whatever its version.
    #[param(pattern = "^ended$")]
    until: Option<String>,
    /// Answer after this long at the latest (at most 60000).
    #[param(maximum = 60000)]
    timeout_ms: Option<u64>,
}

#[utoipa::path(get, path = "/v1/jobs/{job}/wait", tag = "jobs",
    params(("job" = JobId, Path, description = "job id (j-…)"), WaitQuery),
    responses(
        (status = 200, body = JobStatus, description = "the job after it changed, or as it is at the timeout"),
        (status = 400, body = ApiError, description = "the job id or a query parameter is not valid"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 404, body = ApiError, description = "no job of this requester has this id"),
    ),
    security(("requester" = [])))]
pub(crate) async fn wait(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Path(job): Path<String>,
    Query(query): Query<WaitQuery>,
) -> ApiResult<Json<JobStatus>> {
    let job: JobId = parse_path(&job)?;
    // Refused now if the job is not the requester's, before the query is read.
    shared.watch_job(job, requester)?;
    let after = query.after.unwrap_or(0);
    let until_ended = match query.until.as_deref() {
        None => false,
        Some("ended") => true,
        Some(other) => {
            return Err(Failure::bad_request(format!(
                "until={other:?} is not known; the only value is `ended`"
            )));
        }
    };
    let timeout = Duration::from_millis(query.timeout_ms.unwrap_or(WAIT_MS_MAX).min(WAIT_MS_MAX));
    let status = settled(&shared, job, requester, (after, until_ended), timeout).await?;
    Ok(Json(status))
}

/// The job's status, durable, once its version passes `after` (and it ended, if
/// `until_ended`), or when `timeout` runs out or the coordinator stops.
async fn settled(
    shared: &AppState,
    job: JobId,
    requester: RequesterId,
    (after, until_ended): (u64, bool),
    timeout: Duration,
) -> ApiResult<JobStatus> {
    let mut versions = shared.watch_job(job, requester)?;
    let mut stopping = shared.stopping.subscribe();
    let reached = async {
        loop {
            // The watch's lock is released before the pool's is taken: the pool bumps versions
            // while holding its own lock.
            let version = *versions.borrow_and_update();
            let done = version > after
                && (!until_ended
                    || shared.read(|state, _| {
                        state
                            .job_status(job, requester)
                            .map_or(true, |status| status.state.is_terminal())
                    }));
            if done || versions.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = reached => {}
        () = tokio::time::sleep(timeout) => {}
        _ = stopping.wait_for(|stopping| *stopping) => {}
    }
    durable_status(shared, job, requester).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Where the page starts: how many rows come before it, which for tasks is the first
    /// task's index (default 0).
    offset: Option<u32>,
    /// Rows per page (default and most 1000).
    limit: Option<u32>,
}

impl PageQuery {
    /// The page asked for, as (offset, limit) within the bound.
    pub(super) fn window(&self) -> (u32, u32) {
        let limit = self.limit.unwrap_or(PAGE_MAX).clamp(1, PAGE_MAX);
        (self.offset.unwrap_or(0), limit)
    }
}

/// Where the next page starts after one of `rows` rows; none when it was the last (a full
/// page may be followed by an empty one).
pub(super) fn next_offset((offset, limit): (u32, u32), rows: usize) -> Option<u32> {
    (rows as u32 == limit).then(|| offset + limit)
}

#[utoipa::path(get, path = "/v1/jobs/{job}/tasks", tag = "jobs",
    params(("job" = JobId, Path, description = "job id (j-…)"), PageQuery),
    responses(
        (status = 200, body = TaskPage),
        (status = 400, body = ApiError, description = "the job id or a query parameter is not valid"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 404, body = ApiError, description = "no job of this requester has this id"),
    ),
    security(("requester" = [])))]
pub(crate) async fn tasks(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Path(job): Path<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<TaskPage>> {
    let job: JobId = parse_path(&job)?;
    shared.read(|state, _| state.check_owner(job, requester))?;
    // Everything the pool did before this request is in the store after the flush.
    shared.store.flush().await?;
    let (offset, limit) = query.window();
    let tasks = shared.store.task_page(job, offset, limit).await?;
    let next_offset = next_offset((offset, limit), tasks.len());
    Ok(Json(TaskPage { tasks, next_offset }))
}

#[utoipa::path(get, path = "/v1/jobs/{job}/why", tag = "jobs",
    params(("job" = JobId, Path, description = "job id (j-…)")),
    responses(
        (status = 200, body = WhyResponse),
        (status = 400, body = ApiError, description = "the job id is malformed"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 404, body = ApiError, description = "no job of this requester has this id"),
    ),
    security(("requester" = [])))]
pub(crate) async fn why(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Path(job): Path<String>,
) -> ApiResult<Json<WhyResponse>> {
    let job: JobId = parse_path(&job)?;
    Ok(Json(
        shared.read(|state, now_ms| state.why(job, requester, now_ms))?,
    ))
}

#[utoipa::path(delete, path = "/v1/jobs/{job}", tag = "jobs",
    params(("job" = JobId, Path, description = "job id (j-…)")),
    responses(
        (status = 200, body = wire::JobDeletion, description = "the job and the blobs only it used are gone from the coordinator; the nodes that ran it are asked to drop their copies"),
        (status = 400, body = ApiError, description = "the job id is malformed"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 404, body = ApiError, description = "no job of this requester has this id"),
        (status = 409, body = ApiError, description = "the job still runs, or is a stage of a pipeline"),
        (status = 429, body = ApiError, description = "too many deletions wait for nodes to confirm"),
    ),
    security(("requester" = [])))]
pub(crate) async fn delete(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Path(job): Path<String>,
) -> ApiResult<Json<wire::JobDeletion>> {
    let job: JobId = parse_path(&job)?;
    shared.read(|state, _| state.job_status(job, requester))?;
    // No job that names one of these blobs is taken while they are deleted.
    let _gate = shared.blob_gate.write().await;
    shared.store.flush().await?;
    let (blobs, only_its, nodes) = shared
        .store
        .deletion_scope(job)
        .await
        .map_err(Failure::storage)?;
    let only_its: Vec<BlobHash> = only_its
        .into_iter()
        .filter(|hash| !shared.is_preset(hash))
        .collect();
    let scope = DeletionScope {
        blobs,
        blobs_only_its: only_its.len() as u64,
        nodes,
    };
    let (result, commit) = shared.apply(DeleteJob {
        job,
        requester,
        scope,
    });
    let deletion = result?;
    shared.committed(commit).await?;
    shared.readable_blobs.clear();
    for hash in &only_its {
        shared.blobs.delete(hash).await.map_err(Failure::storage)?;
        shared.module_verdicts.forget(hash);
    }
    let forget = store::Write::ForgetBlobs {
        hashes: only_its,
        used_before_ms: u64::MAX,
    };
    shared.committed(shared.store.enqueue(vec![forget])).await?;
    tracing::info!(%job, blobs = deletion.blobs_deleted, nodes = deletion.pending.len(), "job deleted");
    Ok(Json(deletion))
}

#[utoipa::path(get, path = "/v1/jobs/{job}/deletion", tag = "jobs",
    params(("job" = JobId, Path, description = "job id (j-…)")),
    responses(
        (status = 200, body = wire::JobDeletion, description = "which nodes have confirmed they dropped the deleted job's blobs"),
        (status = 400, body = ApiError, description = "the job id is malformed"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 404, body = ApiError, description = "no deleted job of this requester has this id"),
    ),
    security(("requester" = [])))]
pub(crate) async fn deletion(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Path(job): Path<String>,
) -> ApiResult<Json<wire::JobDeletion>> {
    let job: JobId = parse_path(&job)?;
    Ok(Json(
        shared.read(|state, _| state.deletion(requester, job))?,
    ))
}

#[utoipa::path(get, path = "/v1/jobs/{job}/keys", tag = "jobs",
    params(("job" = JobId, Path, description = "job id (j-…)")),
    responses(
        (status = 200, body = wire::PrivateJob, description = "the job's key wrapped to its requester and to every node that may run it"),
        (status = 400, body = ApiError, description = "the job id is malformed, or the job is not private"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 404, body = ApiError, description = "no job of this requester has this id"),
    ),
    security(("requester" = [])))]
pub(crate) async fn keys(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Path(job): Path<String>,
) -> ApiResult<Json<wire::PrivateJob>> {
    let job: JobId = parse_path(&job)?;
    Ok(Json(
        shared.read(|state, _| state.job_keys(job, requester))?,
    ))
}

#[utoipa::path(post, path = "/v1/jobs/{job}/keys", tag = "jobs",
    params(("job" = JobId, Path, description = "job id (j-…)")),
    request_body = wire::KeyGrant,
    responses(
        (status = 200, body = wire::KeysGranted, description = "every node that may run the job's tasks now"),
        (status = 400, body = ApiError, description = "the grant is malformed, or the job is not private"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 404, body = ApiError, description = "no job of this requester has this id"),
    ),
    security(("requester" = [])))]
pub(crate) async fn grant_keys(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Path(job): Path<String>,
    Body(grant): Body<wire::KeyGrant>,
) -> ApiResult<Json<wire::KeysGranted>> {
    let job: JobId = parse_path(&job)?;
    wire::validate::key_grant(&grant)?;
    let (result, commit) = shared.apply(GrantKeys {
        job,
        requester,
        grant,
    });
    let holders = result?;
    shared.committed(commit).await?;
    tracing::info!(%job, holders = holders.len(), "job key granted");
    Ok(Json(wire::KeysGranted { holders }))
}

#[utoipa::path(post, path = "/v1/jobs/{job}/cancel", tag = "jobs",
    params(("job" = JobId, Path, description = "job id (j-…)")),
    responses(
        (status = 200, body = JobStatus),
        (status = 400, body = ApiError, description = "the job id is malformed"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 404, body = ApiError, description = "no job of this requester has this id"),
        (status = 409, body = ApiError, description = "the job has already ended"),
    ),
    security(("requester" = [])))]
pub(crate) async fn cancel(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Path(job): Path<String>,
) -> ApiResult<Json<JobStatus>> {
    let job: JobId = parse_path(&job)?;
    let (result, commit) = shared.apply(Cancel { job, requester });
    if let Err(error) = result {
        // "Already ended" must not be said before the write that ended the job is durable, or
        // a crash could bring back a job its requester was told had ended.
        shared.store.flush().await?;
        return Err(error.into());
    }
    shared.committed(commit).await?;
    tracing::info!(%job, "job cancelled");
    Ok(Json(durable_status(&shared, job, requester).await?))
}
