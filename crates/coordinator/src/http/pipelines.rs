//! Requester routes for pipelines: submit one, and read its stages.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use wire::{
    ApiError, ErrorCode, PipelineId, PipelineStatus, PipelineSubmission, PipelineSubmitted,
};

use super::jobs::{blobs_of, check_module, check_readable};
use super::{ApiResult, AppState, Body, Failure, Requester, parse_path};
use crate::modules::ModuleKind;
use crate::pool::{StageModule, SubmitPipeline};

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
    let unfinished_max = shared.config.unfinished_max();
    let (submitted, commit) = shared.apply(SubmitPipeline {
        requester,
        submission,
        modules,
        unfinished_max,
    });
    let submitted = submitted?;
    shared.committed(commit).await?;
    tracing::info!(pipeline = %submitted.pipeline_id, stages = submitted.stages.len(), "pipeline submitted");
    Ok((StatusCode::CREATED, Json(submitted)))
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
