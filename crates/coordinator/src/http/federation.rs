//! The owner's routes for federation: the pools this one lends its idle slots to (add, list,
//! remove). The other side needs no route of its own: the `ccf_…` token its owner makes
//! (`POST /v1/tokens`, kind `federation`) lets this pool register there as a node.

use axum::Json;
use axum::extract::{Path, State};

use wire::ApiError;
use wire::PeerId;
use wire::federation::{BridgeState, Peer, PeerList, PeerRequest};

use super::trust::Owner;
use super::{ApiResult, AppState, Body, Failure};
use crate::pool::{AddPeer, RemovePeer};

fn peer_of(row: &store::PeerRow, bridge: Option<BridgeState>) -> Peer {
    Peer {
        id: PeerId(row.id),
        url: row.url.clone(),
        fingerprint: row.fingerprint,
        added_at_ms: row.added_at_ms,
        account: row.requester_id,
        bridge,
    }
}

#[utoipa::path(post, path = "/v1/federation/peers", tag = "federation",
    request_body = PeerRequest,
    responses(
        (status = 200, body = Peer, description = "this pool lends its idle slots to the peer from now on"),
        (status = 400, body = ApiError, description = "the URL or the token is not valid"),
        (status = 401, body = ApiError, description = "no valid API token"), (status = 403, body = ApiError, description = "only the pool owner may do this"),
        (status = 409, body = ApiError, description = "the pool lends to this URL already, or to as many peers as it may"),
        (status = 413, body = ApiError, description = "the body is larger than this route accepts"),
    ),
    security(("requester" = [])))]
pub(crate) async fn add(
    State(shared): State<AppState>,
    _owner: Owner,
    Body(request): Body<PeerRequest>,
) -> ApiResult<Json<Peer>> {
    request
        .check()
        .map_err(|error| Failure::bad_request(error.to_string()))?;
    let url = request.url.trim_end_matches('/').to_owned();
    let (added, commit) = shared.apply(AddPeer {
        url,
        fingerprint: request.fingerprint,
        token: request.token,
    });
    let row = added?;
    shared.committed(commit).await?;
    tracing::info!(peer = %PeerId(row.id), url = %row.url, "federation peer added");
    Ok(Json(peer_of(&row, None)))
}

#[utoipa::path(get, path = "/v1/federation/peers", tag = "federation",
    responses(
        (status = 200, body = PeerList),
        (status = 401, body = ApiError, description = "no valid API token"), (status = 403, body = ApiError, description = "only the pool owner may do this"),
    ),
    security(("requester" = [])))]
pub(crate) async fn list(State(shared): State<AppState>, _owner: Owner) -> Json<PeerList> {
    let rows: Vec<store::PeerRow> = shared.read(|pool, _| pool.peers().cloned().collect());
    let bridges = shared.bridges.lock();
    let bridge = |id| bridges.get(&id).map(|state| state.borrow().clone());
    Json(PeerList {
        peers: rows
            .iter()
            .map(|row| peer_of(row, bridge(row.id)))
            .collect(),
    })
}

#[utoipa::path(post, path = "/v1/federation/peers/{id}/remove", tag = "federation",
    params(("id" = PeerId, Path, description = "the peer's id (f-…)")),
    responses(
        (status = 200, body = Peer, description = "this pool lends to the peer no more; its account stays"),
        (status = 400, body = ApiError, description = "the id is malformed"),
        (status = 401, body = ApiError, description = "no valid API token"), (status = 403, body = ApiError, description = "only the pool owner may do this"),
        (status = 404, body = ApiError, description = "no such peer"),
    ),
    security(("requester" = [])))]
pub(crate) async fn remove(
    State(shared): State<AppState>,
    _owner: Owner,
    Path(id): Path<String>,
) -> ApiResult<Json<Peer>> {
    let peer: PeerId = super::parse_path(&id)?;
    let (removed, commit) = shared.apply(RemovePeer { id: peer.0 });
    let row = removed?;
    shared.committed(commit).await?;
    tracing::info!(peer = %PeerId(row.id), url = %row.url, "federation peer removed");
    Ok(Json(peer_of(&row, None)))
}
