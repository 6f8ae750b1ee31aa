//! Requester routes for pipelines: submit one, read its stages, cancel it, and say why a task
//! ran or whose result it took.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use wire::{
    ApiError, ErrorCode, Explanation, JobId, PipelineId, PipelineStatus, PipelineSubmission,
    PipelineSubmitted,
};

use super::jobs::{blobs_of, check_module, check_readable};
use super::{ApiResult, AppState, Body, Failure, Requester, parse_path};
use crate::modules::ModuleKind;
use crate::pool::{CancelPipeline, Found, StageModule, SubmitPipeline};

#[utoipa::path(post, path = "/v1/pipelines", tag = "pipelines",
    request_body = PipelineSubmission,
    responses(
        (status = 201, body = PipelineSubmitted, description = "the pipeline is stored, its stages with tasks of their own are queued, and the others wait for the stages they read"),
        (status = 400, body = ApiError, description = "the submission breaks a rule (a stage that reads an unknown or later stage, a name given twice, partitions past the bound, a stage's job), names a blob not uploaded, or a stage's module is not a WASI module"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 413, body = ApiError, description = "the body is larger than a submission may be"),
        (status = 429, body = ApiError, description = "the pool or the requester has as many unfinished tasks or pipelines as it takes"),
        (status = 503, body = ApiError, description = "the coordinator is catching up with its writes; retry"),
    ),
    security(("requester" = [])))]
pub(crate) async fn submit(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Body(submission): Body<PipelineSubmission>,
) -> ApiResult<(StatusCode, Json<PipelineSubmitted>)> {
    wire::validate::pipeline_submission(&submission)?;
    if shared.overloaded() {
        return Err(Failure::new(
            ErrorCode::Unavailable,
            "the coordinator is catching up with its writes; retry in a moment",
        ));
    }
    // No blob a stage names is deleted between this check and the pipeline's commit.
    let _gate = shared.blob_gate.read().await;
    let mut modules = Vec::with_capacity(submission.stages.len());
    for stage in &submission.stages {
        check_readable(&shared, &blobs_of(&stage.job), requester).await?;
        let what = format!("the module of stage {}", stage.name);
        let facts = check_module(&shared, stage.job.module, &what).await?;
        if let Some(validator) = &stage.job.validator {
            if shared.validators.get().is_none() {
                return Err(Failure::bad_request(format!(
                    "this coordinator runs no validators: remove stage {}'s validator",
                    stage.name
                )));
            }
            check_module(&shared, validator.module, "a validator's module").await?;
        }
        modules.push(StageModule {
            module_bytes: facts.size_bytes,
            component_imports: match facts.kind {
                ModuleKind::Core => None,
                ModuleKind::Component { imports } => Some(imports),
            },
            wasm_features: facts.wasm_features,
        });
    }
    let mut submission = submission;
    let reusable = reusable_for(&shared, requester, &mut submission).await?;
    let unfinished_max = shared.config.unfinished_max();
    let (submitted, commit) = shared.apply(SubmitPipeline {
        requester,
        submission,
        modules,
        reusable,
        unfinished_max,
    });
    let submitted = submitted?;
    shared.committed(commit).await?;
    tracing::info!(pipeline = %submitted.pipeline_id, stages = submitted.stages.len(), "pipeline submitted");
    Ok((StatusCode::CREATED, Json(submitted)))
}

/// For each stage with its own tasks, the earlier results of `requester` its tasks may take:
/// found by the key each task has once its job's verification mode is the pool's.
async fn reusable_for(
    shared: &AppState,
    requester: wire::RequesterId,
    submission: &mut PipelineSubmission,
) -> ApiResult<Vec<Found>> {
    let mut reusable = Vec::with_capacity(submission.stages.len());
    for stage in &mut submission.stages {
        if stage.input.is_some() {
            reusable.push(Vec::new());
            continue;
        }
        let job = &mut stage.job;
        job.verify = shared.read(|pool, _| pool.checked_verify(job))?;
        reusable.push(crate::reuse::reusable(shared, requester, job).await?);
    }
    Ok(reusable)
}

#[utoipa::path(get, path = "/v1/pipelines/{pipeline}", tag = "pipelines",
    params(("pipeline" = PipelineId, Path, description = "pipeline id (p-…)")),
    responses(
        (status = 200, body = PipelineStatus),
        (status = 400, body = ApiError, description = "the pipeline id is malformed"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 404, body = ApiError, description = "no pipeline of this requester has this id"),
    ),
    security(("requester" = [])))]
pub(crate) async fn status(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Path(pipeline): Path<String>,
) -> ApiResult<Json<PipelineStatus>> {
    let pipeline: PipelineId = parse_path(&pipeline)?;
    let status = shared.read(|pool, _| pool.pipeline_status(pipeline, requester))?;
    // As for a job: what is shown is committed first.
    shared.store.flush().await?;
    Ok(Json(status))
}

#[utoipa::path(get, path = "/v1/jobs/{job}/tasks/{index}/explain", tag = "jobs",
    params(
        ("job" = JobId, Path, description = "job id (j-…)"),
        ("index" = u32, Path, description = "the task's index"),
    ),
    responses(
        (status = 200, body = Explanation, description = "whose result the task took, or which part of its key was new against the latest earlier job of the same name"),
        (status = 400, body = ApiError, description = "the job id or index is malformed"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 404, body = ApiError, description = "no job of this requester has this id, or it has no such task"),
    ),
    security(("requester" = [])))]
pub(crate) async fn explain(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Path((job, index)): Path<(String, String)>,
) -> ApiResult<Json<Explanation>> {
    let job: JobId = parse_path(&job)?;
    let index: u32 = index.parse().map_err(|_| {
        Failure::bad_request(format!(
            "{index:?} is not a task index; give a whole number"
        ))
    })?;
    // What the pool shows of the task is committed first, as for a status.
    shared.store.flush().await?;
    let history = shared.store.task_history(requester, job, index).await?;
    let history = history.ok_or_else(|| {
        Failure::new(
            ErrorCode::NotFound,
            format!("no task {index} of a job {job} of yours; list its tasks with `crowdcloud status {job} --tasks`"),
        )
    })?;
    Ok(Json(crate::reuse::explain(index, &history)))
}

#[utoipa::path(post, path = "/v1/pipelines/{pipeline}/cancel", tag = "pipelines",
    params(("pipeline" = PipelineId, Path, description = "pipeline id (p-…)")),
    responses(
        (status = 200, body = PipelineStatus, description = "the pipeline as cancelled: its running stage cancelled, its waiting stages not run"),
        (status = 400, body = ApiError, description = "the pipeline id is malformed"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 404, body = ApiError, description = "no pipeline of this requester has this id"),
        (status = 409, body = ApiError, description = "the pipeline already ended"),
    ),
    security(("requester" = [])))]
pub(crate) async fn cancel(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Path(pipeline): Path<String>,
) -> ApiResult<Json<PipelineStatus>> {
    let pipeline: PipelineId = parse_path(&pipeline)?;
    let (result, commit) = shared.apply(CancelPipeline {
        pipeline,
        requester,
    });
    if let Err(error) = result {
        // As for a job: "already ended" only once what ended it is durable.
        shared.store.flush().await?;
        return Err(error.into());
    }
    shared.committed(commit).await?;
    tracing::info!(%pipeline, "pipeline cancelled");
    let status = shared.read(|pool, _| pool.pipeline_status(pipeline, requester))?;
    Ok(Json(status))
}
