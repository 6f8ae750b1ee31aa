//! The HTTP API: routes, authentication, body limits, errors, and the OpenAPI document.
//!
//! Every handler authenticates first, validates second and changes state last, so a bad request
//! changes nothing. Errors are [`ApiError`] bodies with a stable code and a sentence that says
//! what to do.

mod blobs;
mod credits;
mod federation;
mod jobs;
pub(crate) mod meta;
mod nodes;
mod pipelines;
pub(crate) mod quota;
mod trust;
pub(crate) mod web;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use wire::auth::{TokenKind, token_hash};
use wire::{ApiError, ErrorCode, NodeId, RequesterId};

use crate::pool::PoolError;
use crate::service::Shared;

pub(crate) type AppState = Arc<Shared>;

/// Bodies of node protocol requests (reports of up to thousands of attempts).
const NODE_BODY_BYTES_MAX: usize = 16 << 20;
/// Bodies of small requests.
const SMALL_BODY_BYTES_MAX: usize = 64 << 10;

pub(crate) fn router(shared: AppState) -> Router {
    let jobs = Router::new()
        .route("/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/v1/pipelines", post(pipelines::submit))
        // A grant may wrap the key to thousands of nodes.
        .route(
            "/v1/jobs/{job}/keys",
            get(jobs::keys).post(jobs::grant_keys),
        )
        .layer(DefaultBodyLimit::max(wire::limits::JSON_BODY_BYTES_MAX));
    let node_protocol = Router::new()
        .route("/v1/nodes/challenge", post(nodes::challenge))
        .route("/v1/nodes/register", post(nodes::register))
        .route("/v1/nodes/lease", post(nodes::lease))
        .route("/v1/nodes/heartbeat", post(nodes::heartbeat))
        .route("/v1/nodes/presence", post(nodes::presence))
        .route("/v1/nodes/report", post(nodes::report))
        .route("/v1/nodes/release", post(nodes::release))
        .layer(DefaultBodyLimit::max(NODE_BODY_BYTES_MAX));
    let blobs = Router::new()
        .route(
            "/v1/blobs/{hash}",
            put(blobs::put).get(blobs::get).head(blobs::head),
        )
        // Uploads stream into the blob store under their own limit.
        .layer(DefaultBodyLimit::disable());
    let rest = job_routes()
        .route("/v1/pipelines/{pipeline}", get(pipelines::status))
        .route("/v1/pipelines/{pipeline}/cancel", post(pipelines::cancel))
        .route(
            "/v1/jobs/{job}/tasks/{index}/explain",
            get(pipelines::explain),
        )
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/nodes/{node}/remove", post(nodes::remove))
        .route("/v1/nodes/jobs/{job}/runtime", get(nodes::job_runtime))
        .route("/v1/tokens", get(trust::list).post(trust::create))
        .route("/v1/tokens/{id}/revoke", post(trust::revoke))
        .route("/v1/join/codes", post(trust::new_code))
        .route("/v1/join/start", post(trust::start))
        .route("/v1/join/finish", post(trust::finish))
        .route("/v1/credits", get(credits::show))
        .route("/v1/credits/grant", post(credits::grant))
        .route(
            "/v1/federation/peers",
            post(federation::add).get(federation::list),
        )
        .route("/v1/federation/peers/{id}/remove", post(federation::remove))
        .route("/v1/health", get(meta::health))
        .route("/v1/openapi.json", get(meta::openapi))
        .route("/metrics", get(meta::metrics))
        .route("/v1/metrics/history", get(web::history))
        .route("/v1/presets", get(web::presets))
        .route("/", get(web::index))
        .route("/app/{*path}", get(web::asset))
        .layer(DefaultBodyLimit::max(SMALL_BODY_BYTES_MAX));
    Router::new()
        .merge(jobs)
        .merge(node_protocol)
        .merge(blobs)
        .merge(rest)
        .fallback(|| async {
            Failure::new(
                ErrorCode::NotFound,
                "no such route; the API is described at /v1/openapi.json",
            )
        })
        .with_state(shared)
}

/// What a requester asks of one job, with small bodies or none.
fn job_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/jobs/{job}", get(jobs::status).delete(jobs::delete))
        .route("/v1/jobs/{job}/deletion", get(jobs::deletion))
        .route("/v1/jobs/{job}/wait", get(jobs::wait))
        .route("/v1/jobs/{job}/tasks", get(jobs::tasks))
        .route("/v1/jobs/{job}/why", get(jobs::why))
        .route("/v1/jobs/{job}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{job}/attempts", get(web::attempts))
        .route("/v1/jobs/{job}/results.zip", get(web::results_zip))
}

/// An error response.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) ApiError);

impl Failure {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ApiError::new(code, message))
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub(crate) fn storage(error: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorCode::Unavailable,
            format!("the coordinator could not store the change ({error}); retry later"),
        )
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.0)).into_response();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The body was refused unread, or read only in part: the client must not send its
            // next request on this connection, or it reads the rest of this body as one.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl From<PoolError> for Failure {
    fn from(error: PoolError) -> Self {
        match error {
            PoolError::NotFound(message) => Failure::new(ErrorCode::NotFound, message),
            PoolError::Conflict(message) => Failure::new(ErrorCode::Conflict, message),
            PoolError::TooMuchUnfinished(message) | PoolError::TooManyRequests(message) => {
                Failure::new(ErrorCode::TooManyRequests, message)
            }
            PoolError::Unauthorized(message) => Failure::new(ErrorCode::Unauthorized, message),
            PoolError::Forbidden(message) => Failure::new(ErrorCode::Forbidden, message),
            PoolError::Invalid(message) => Failure::bad_request(message),
        }
    }
}

impl From<wire::WireError> for Failure {
    fn from(error: wire::WireError) -> Self {
        Failure::bad_request(error.to_string())
    }
}

impl From<store::StoreError> for Failure {
    fn from(error: store::StoreError) -> Self {
        Failure::storage(error)
    }
}

pub(crate) type ApiResult<T> = Result<T, Failure>;

/// A JSON body whose rejections (bad JSON, wrong shape, too large) are [`ApiError`]s.
pub(crate) struct Body<T>(pub(crate) T);

impl<T, S> FromRequest<S> for Body<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Failure;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> Failure {
    let detail = rejection.body_text();
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return Failure::new(
            ErrorCode::PayloadTooLarge,
            "the request body is larger than this endpoint accepts; split the request",
        );
    }
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            Failure::bad_request("send the body as JSON with `content-type: application/json`")
        }
        _ => Failure::bad_request(format!("the body is not a valid request: {detail}")),
    }
}

/// Query parameters whose rejections (a value of the wrong type) are [`ApiError`]s like every
/// other refusal, rather than axum's plain-text answer.
pub(crate) struct Query<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Failure> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(Failure::bad_request(format!(
                "the query string is not valid: {}; see /v1/openapi.json for the parameters",
                rejection.body_text()
            ))),
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?;
    value.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

fn unauthorized(message: &str) -> Failure {
    Failure::new(ErrorCode::Unauthorized, message)
}

/// The requester a request is made by, from its API token.
pub(crate) struct Requester(pub(crate) RequesterId);

impl FromRequestParts<AppState> for Requester {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, shared: &AppState) -> Result<Self, Failure> {
        let token = bearer(parts).ok_or_else(|| {
            unauthorized(
                "send your API token as `Authorization: Bearer ccr_…`; `crowdcloud up` prints one",
            )
        })?;
        if TokenKind::of(token) != Some(TokenKind::Requester) {
            return Err(unauthorized(
                "this is not an API token (they start with ccr_); use the requester token, not a join or node token",
            ));
        }
        let hash = token_hash(token);
        shared
            .requester_by_token(&hash)
            .map(Requester)
            .ok_or_else(|| {
                unauthorized("the API token is not valid for this pool (unknown or revoked)")
            })
    }
}

/// The node a request is made by, from its node token.
pub(crate) struct Node(pub(crate) NodeId);

impl FromRequestParts<AppState> for Node {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, shared: &AppState) -> Result<Self, Failure> {
        let token = bearer(parts).ok_or_else(|| {
            unauthorized("send the node token from registration as `Authorization: Bearer ccn_…`")
        })?;
        let hash = token_hash(token);
        shared
            .node_by_token(&hash)
            .map(Node)
            .ok_or_else(|| {
                unauthorized("the node token is not valid (the node re-registered elsewhere or was removed); register again")
            })
    }
}

/// Either kind of caller, for routes both may use.
pub(crate) enum Caller {
    Requester(RequesterId),
    Node(NodeId),
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, shared: &AppState) -> Result<Self, Failure> {
        match bearer(parts).and_then(TokenKind::of) {
            Some(TokenKind::Node) => Node::from_request_parts(parts, shared)
                .await
                .map(|Node(id)| Caller::Node(id)),
            _ => Requester::from_request_parts(parts, shared)
                .await
                .map(|Requester(id)| Caller::Requester(id)),
        }
    }
}

fn parse_path<T: std::str::FromStr<Err = wire::WireError>>(text: &str) -> ApiResult<T> {
    text.parse().map_err(Failure::from)
}
