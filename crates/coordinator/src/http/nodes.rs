//! The node protocol (challenge and register, lease, heartbeat, report, release, job runtime)
//! and the node list requesters read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use tokio::sync::oneshot;

use wire::auth::{TokenKind, token_hash, verify_registration};
use wire::{
    ApiError, ChallengeRequest, ChallengeResponse, ErrorCode, HeartbeatRequest, HeartbeatResponse,
    JobId, JobRuntime, LeaseRequest, LeaseResponse, NodeId, NodeList, NodeRemoved, RegisterRequest,
    RegisterResponse, ReleaseRequest, ReleaseResponse, ReportRequest, ReportResponse,
};

use super::{ApiResult, AppState, Body, Failure, Node, Query, Requester, parse_path};
use crate::metrics::Metrics;
use crate::pool::{Heartbeat, NewNode, Register, Release, RemoveNode, Report};
use crate::service::Shared;

/// The hash of a join token this pool accepts, or the refusal to send.
fn accepted_join_token(shared: &Shared, join_token: &str) -> ApiResult<String> {
    let join_hash = token_hash(join_token);
    let kind = TokenKind::of(join_token);
    let joins = matches!(kind, Some(TokenKind::Join | TokenKind::Federation));
    if !joins || !shared.is_join_token(&join_hash) {
        return Err(Failure::new(
            ErrorCode::Unauthorized,
            "the join token is not valid for this pool; ask the pool owner for one (`crowdcloud up` prints it)",
        ));
    }
    Ok(join_hash)
}

#[utoipa::path(post, path = "/v1/nodes/challenge", tag = "nodes",
    request_body = ChallengeRequest,
    responses(
        (status = 200, body = ChallengeResponse, description = "a nonce for one registration, soon"),
        (status = 400, body = ApiError, description = "the body is not a valid request"),
        (status = 401, body = ApiError, description = "the join token is not valid for this pool"),
        (status = 413, body = ApiError, description = "the body is larger than the node protocol accepts"),
        (status = 429, body = ApiError, description = "this join token registers too fast, or too many registrations are under way"),
    ))]
pub(crate) async fn challenge(
    State(shared): State<AppState>,
    Body(request): Body<ChallengeRequest>,
) -> ApiResult<Json<ChallengeResponse>> {
    let join_hash = accepted_join_token(&shared, &request.join_token)?;
    let nonce = hex::encode(shared.entropy().secret());
    let issued = shared
        .gate
        .lock()
        .issue(&join_hash, nonce.clone(), shared.now_ms());
    Ok(Json(ChallengeResponse {
        nonce,
        expires_in_ms: issued?,
    }))
}

#[utoipa::path(post, path = "/v1/nodes/register", tag = "nodes",
    request_body = RegisterRequest,
    responses(
        (status = 200, body = RegisterResponse),
        (status = 400, body = ApiError, description = "the body is not valid, or the signature does not verify"),
        (status = 401, body = ApiError, description = "the join token is not valid for this pool, or the nonce is not one it was given"),
        (status = 403, body = ApiError, description = "the owner removed this node, or the join token may not register it"),
        (status = 409, body = ApiError, description = "the node's identity is online from another process"),
        (status = 413, body = ApiError, description = "the body is larger than the node protocol accepts"),
    ))]
pub(crate) async fn register(
    State(shared): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Body(request): Body<RegisterRequest>,
) -> ApiResult<Json<RegisterResponse>> {
    wire::validate::registration(&request)?;
    let join_hash = accepted_join_token(&shared, &request.join_token)?;
    let node_id = verify_registration(&request)?;
    if shared.read(|state, _| state.is_removed(node_id)) {
        return Err(Failure::new(
            ErrorCode::Forbidden,
            format!(
                "node {node_id} was removed from this pool by its owner; to lend this machine \
                 again, ask the owner, then delete identity.key in the agent's data dir so it \
                 joins as a new node"
            ),
        ));
    }
    let node_token = TokenKind::Node.token_from_secret(shared.entropy().secret());
    let new = NewNode {
        id: node_id,
        public_key: request.public_key,
        token_hash: token_hash(&node_token),
        name: request.name,
        capabilities: request.capabilities,
        labels: request.labels,
        slots: request.slots,
        agent_version: request.agent_version,
        join_token_hash: join_hash.clone(),
        network: Some(crate::pool::network_of(peer.ip())),
    };
    let name = new.name.clone();
    // The nonce is spent under the gate's lock, so it cannot be spent twice; the token's bound
    // and the clone check are taken under the pool's with the registration, so two clones
    // racing cannot both get in.
    shared
        .gate
        .lock()
        .spend(&join_hash, &request.nonce, shared.now_ms())?;
    let old_process_gone = shared.presence.process_gone(node_id);
    let (admitted, commit) = shared.apply(Register {
        node: new,
        old_process_gone,
    });
    if let Some(silent_ms) = admitted? {
        tracing::warn!(node = %node_id, %name, "refused a second process with an identity that is online");
        return Err(online_elsewhere(node_id, silent_ms));
    }
    shared.committed(commit).await?;
    tracing::info!(node = %node_id, %name, "node registered");
    let (lease_ms, heartbeat_ms, pool_name) = shared.read(|state, _| {
        (
            state.lease_term_ms(),
            state.heartbeat_interval_ms(),
            state.pool_name.clone(),
        )
    });
    Ok(Json(RegisterResponse {
        node_id,
        node_token,
        lease_ms,
        heartbeat_ms,
        pool_name,
    }))
}

/// The refusal of a registration whose identity another live process holds.
fn online_elsewhere(node_id: NodeId, silent_ms: u64) -> Failure {
    Failure::new(
        ErrorCode::Conflict,
        format!(
            "node id {node_id} is already online from another process (it was heard from {silent_ms} ms ago); \
             if this data dir was copied from another machine, delete identity.key here to give this machine its own identity; \
             if the agent just restarted, it is let in once the old process has been silent for {} heartbeats",
            crate::pool::CLONE_SILENCE_HEARTBEATS
        ),
    )
}

/// Removes a parked lease request when its HTTP request goes away unanswered (the node
/// disconnected, or the wait ran out).
struct ParkedRequest {
    shared: Arc<Shared>,
    node: NodeId,
    request: u64,
    answered: bool,
}

impl Drop for ParkedRequest {
    fn drop(&mut self) {
        if !self.answered {
            let (node, request) = (self.node, self.request);
            self.shared.unpark(node, request);
        }
    }
}

#[utoipa::path(post, path = "/v1/nodes/lease", tag = "nodes",
    request_body = LeaseRequest,
    responses(
        (status = 200, body = LeaseResponse, description = "attempts granted now, or none when the wait ran out"),
        (status = 400, body = ApiError, description = "the body is not a valid request"), (status = 401, body = ApiError, description = "no valid node token"), (status = 413, body = ApiError, description = "the body is larger than the node protocol accepts"),
    ),
    security(("node" = [])))]
pub(crate) async fn lease(
    State(shared): State<AppState>,
    Node(node): Node,
    Body(request): Body<LeaseRequest>,
) -> ApiResult<Json<LeaseResponse>> {
    let started = std::time::Instant::now();
    wire::validate::lease_request(&request)?;
    let request_id = shared.next_request();
    let (sender, mut receiver) = oneshot::channel::<LeaseResponse>();
    if let Some(granted) = shared.lease_or_park(node, &request, request_id, sender) {
        // Only a lease that found work at once: a parked one measures the wait for work.
        Metrics::observe(&shared.metrics.lease_seconds, started.elapsed());
        return Ok(Json(granted));
    }
    let mut parked = ParkedRequest {
        shared: Arc::clone(&shared),
        node,
        request: request_id,
        answered: false,
    };
    let mut stopping = shared.stopping.subscribe();
    tokio::select! {
        response = &mut receiver => {
            parked.answered = true;
            return Ok(Json(response.unwrap_or_default()));
        }
        () = tokio::time::sleep(Duration::from_millis(request.wait_ms.into())) => {}
        _ = stopping.wait_for(|stopping| *stopping) => {}
    }
    drop(parked);
    // Work may have been handed over between the timeout and the removal of the waiter.
    Ok(Json(receiver.try_recv().unwrap_or_default()))
}

#[utoipa::path(post, path = "/v1/nodes/presence", tag = "nodes",
    responses(
        (status = 204, description = "held open for 25 s, or until the coordinator stops; send the next at once. While none is open, the node's tasks may run elsewhere too"),
        (status = 401, body = ApiError, description = "no valid node token"),
        (status = 429, body = ApiError, description = "the node holds two presence requests open already"),
    ),
    security(("node" = [])))]
pub(crate) async fn presence(
    State(shared): State<AppState>,
    Node(node): Node,
) -> ApiResult<axum::http::StatusCode> {
    let held = crate::presence::Held::enter(&shared, node).ok_or_else(|| {
        Failure::new(
            ErrorCode::TooManyRequests,
            "this node holds two presence requests open already; send the next once one is answered",
        )
    })?;
    let mut stopping = shared.stopping.subscribe();
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(crate::presence::PRESENCE_HOLD_MS)) => {}
        _ = stopping.wait_for(|stopping| *stopping) => {}
    }
    held.answered();
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/nodes/heartbeat", tag = "nodes",
    request_body = HeartbeatRequest,
    responses((status = 200, body = HeartbeatResponse), (status = 400, body = ApiError, description = "the body is not a valid request"), (status = 401, body = ApiError, description = "no valid node token"), (status = 413, body = ApiError, description = "the body is larger than the node protocol accepts")),
    security(("node" = [])))]
pub(crate) async fn heartbeat(
    State(shared): State<AppState>,
    Node(node): Node,
    Body(request): Body<HeartbeatRequest>,
) -> ApiResult<Json<HeartbeatResponse>> {
    let started = std::time::Instant::now();
    wire::validate::heartbeat(&request)?;
    if request.activity != wire::NodeActivity::Active {
        // A parked lease request of a node that stops taking work answers now, empty.
        shared.unpark_node(node);
    }
    let (response, commit) = shared.apply(Heartbeat { node, request });
    shared.committed(commit).await?;
    shared.metrics.heartbeats.inc();
    Metrics::observe(&shared.metrics.heartbeat_seconds, started.elapsed());
    Ok(Json(response))
}

/// `POST /v1/nodes/report?slots_free=`.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReportQuery {
    /// Slots the node has free besides: attempts for them come with the answer, granted at
    /// once from the work waiting now (this never waits for work; a lease request does).
    #[param(maximum = 1024)]
    slots_free: Option<u32>,
}

#[utoipa::path(post, path = "/v1/nodes/report", tag = "nodes",
    params(ReportQuery),
    request_body = ReportRequest,
    responses(
        (status = 200, body = ReportResponse, description = "per report: taken, or refused and why; with `slots_free`, the attempts granted for them"),
        (status = 400, body = ApiError, description = "the body is not a valid request"), (status = 401, body = ApiError, description = "no valid node token"), (status = 413, body = ApiError, description = "the body is larger than the node protocol accepts"),
    ),
    security(("node" = [])))]
pub(crate) async fn report(
    State(shared): State<AppState>,
    Node(node): Node,
    Query(query): Query<ReportQuery>,
    Body(request): Body<ReportRequest>,
) -> ApiResult<Json<ReportResponse>> {
    let started = std::time::Instant::now();
    wire::validate::report_request(&request)?;
    let slots_free = query.slots_free.unwrap_or(0);
    wire::validate::lease_request(&LeaseRequest {
        slots_free,
        wait_ms: 0,
    })?;
    let (acks, commit) = shared.apply(Report {
        node,
        reports: request.reports,
    });
    shared.committed(commit).await?;
    Metrics::observe(&shared.metrics.report_seconds, started.elapsed());
    // Granted once the reports are durable, from the slots they freed among others.
    let lease = (slots_free > 0).then(|| shared.lease_at_once(node, slots_free));
    Ok(Json(ReportResponse { acks, lease }))
}

#[utoipa::path(post, path = "/v1/nodes/release", tag = "nodes",
    request_body = ReleaseRequest,
    responses((status = 200, body = ReleaseResponse), (status = 400, body = ApiError, description = "the body is not a valid request"), (status = 401, body = ApiError, description = "no valid node token"), (status = 413, body = ApiError, description = "the body is larger than the node protocol accepts")),
    security(("node" = [])))]
pub(crate) async fn release(
    State(shared): State<AppState>,
    Node(node): Node,
    Body(request): Body<ReleaseRequest>,
) -> ApiResult<Json<ReleaseResponse>> {
    wire::validate::release_request(&request)?;
    let (released, commit) = shared.apply(Release {
        node,
        attempts: request.attempts,
    });
    shared.committed(commit).await?;
    if !released.is_empty() {
        tracing::info!(node = %node, released = released.len(), reason = %request.reason, "attempts released");
    }
    Ok(Json(ReleaseResponse { released }))
}

#[utoipa::path(get, path = "/v1/nodes/jobs/{job}/runtime", tag = "nodes",
    params(("job" = JobId, Path, description = "job id (j-…)")),
    responses(
        (status = 200, body = JobRuntime),
        (status = 400, body = ApiError, description = "the job id is malformed"),
        (status = 401, body = ApiError, description = "no valid node token"),
        (status = 404, body = ApiError, description = "this node holds no attempt of the job"),
    ),
    security(("node" = [])))]
pub(crate) async fn job_runtime(
    State(shared): State<AppState>,
    Node(node): Node,
    Path(job): Path<String>,
) -> ApiResult<Json<JobRuntime>> {
    let job: JobId = parse_path(&job)?;
    shared
        .read(|state, _| state.job_runtime_for_node(node, job))
        .map(Json)
        .ok_or_else(|| {
            Failure::new(
                ErrorCode::NotFound,
                format!("this node holds no attempt of job {job}"),
            )
        })
}

#[utoipa::path(post, path = "/v1/nodes/{node}/remove", tag = "nodes",
    params(("node" = NodeId, Path, description = "node id (n-…)")),
    responses(
        (status = 200, body = NodeRemoved),
        (status = 400, body = ApiError, description = "the node id is malformed"),
        (status = 401, body = ApiError, description = "no valid API token"),
        (status = 403, body = ApiError, description = "only the pool owner may remove nodes"),
        (status = 404, body = ApiError, description = "no such node"),
    ),
    security(("requester" = [])))]
pub(crate) async fn remove(
    State(shared): State<AppState>,
    _owner: super::trust::Owner,
    Path(node): Path<String>,
) -> ApiResult<Json<NodeRemoved>> {
    let node_id: NodeId = parse_path(&node)?;
    let (removed, commit) = shared.apply(RemoveNode { node: node_id });
    let attempts_requeued = removed? as u32;
    shared.committed(commit).await?;
    tracing::info!(node = %node_id, attempts_requeued, "node removed by the owner");
    Ok(Json(NodeRemoved {
        node_id,
        attempts_requeued,
    }))
}

#[utoipa::path(get, path = "/v1/nodes", tag = "nodes",
    responses(
        (status = 200, body = NodeList),
        (status = 401, body = ApiError, description = "no valid API token"),
    ),
    security(("requester" = [])))]
pub(crate) async fn list(State(shared): State<AppState>, _requester: Requester) -> Json<NodeList> {
    Json(shared.read(|state, now_ms| NodeList {
        nodes: state.list_nodes(now_ms),
        owners: state.list_owners(),
        trust: Some(state.trust()),
    }))
}
