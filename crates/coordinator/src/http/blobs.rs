//! Blob routes: upload (verified against the hash in the path), existence, download. Who may
//! read what is checked on every request.

use axum::body::Body as HttpBody;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;

use blobstore::BlobError;
use store::Write;
use wire::{ApiError, AttemptId, BlobHash, ErrorCode, NodeId};

use crate::pool::{RecordUpload, SaveCheckpoint};
use crate::service::Shared;

use super::{ApiResult, AppState, Caller, Failure, Query, Requester, parse_path};

pub(super) fn blob_failure(error: BlobError) -> Failure {
    match error {
        BlobError::HashMismatch { .. } => Failure::new(ErrorCode::HashMismatch, error.to_string()),
        BlobError::TooLarge { .. } => Failure::new(ErrorCode::PayloadTooLarge, error.to_string()),
        BlobError::NotFound(_) => Failure::new(ErrorCode::NotFound, error.to_string()),
        BlobError::Upload(_) => Failure::bad_request(error.to_string()),
        // A location is checked when the coordinator starts; one here is the store's failure.
        BlobError::Storage(_) | BlobError::Location(_) => Failure::storage(error),
    }
}

#[utoipa::path(put, path = "/v1/blobs/{hash}", tag = "blobs",
    params(("hash" = BlobHash, Path, description = "BLAKE3 hash of the bytes, 64 lowercase hex digits"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "stored; the uploader may read it and name it in jobs"),
        (status = 400, body = ApiError, description = "the hash is malformed, or the bytes do not hash to it"),
        (status = 401, body = ApiError, description = "no valid API or node token"),
        (status = 403, body = ApiError, description = "a node may upload only for an attempt it holds, within that attempt's output caps; a checkpoint only for a job that checkpoints"),
        (status = 409, body = ApiError, description = "the checkpoint covers no more fuel than the task's latest (another replica is ahead); the attempt goes on"),
        (status = 413, body = ApiError, description = "the blob is larger than the caller may upload, or would pass the requester's storage quota"),
    ),
    security(("requester" = []), ("node" = [])))]
pub(crate) async fn put(
    State(shared): State<AppState>,
    caller: Caller,
    Path(hash): Path<String>,
    Query(upload): Query<UploadQuery>,
    request: Request,
) -> ApiResult<StatusCode> {
    let hash: BlobHash = parse_path(&hash)?;
    let _gate = shared.blob_gate.read().await;
    match caller {
        Caller::Requester(requester) => {
            super::quota::put_upload(&shared, requester, hash, request).await
        }
        Caller::Node(node) => {
            let attempt = node_upload_attempt(&upload)?;
            match upload.checkpoint_fuel {
                Some(fuel_used) => {
                    let checkpoint = (node, attempt, fuel_used);
                    put_checkpoint(&shared, checkpoint, hash, request).await
                }
                None => put_output(&shared, node, attempt, hash, request).await,
            }
        }
    }
}

/// A node's upload of an output of `attempt`, within what the attempt has left of its caps.
async fn put_output(
    shared: &Shared,
    node: NodeId,
    attempt: AttemptId,
    hash: BlobHash,
    request: Request,
) -> ApiResult<StatusCode> {
    let max_bytes = shared.read(|state, _| state.upload_bytes_max(node, attempt));
    let size_bytes = stream_in(shared, hash, request, max_bytes, "the blob").await?;
    let upload = RecordUpload {
        node,
        attempt,
        hash,
        size_bytes,
    };
    let (recorded, commit) = shared.mutate(crate::service::record_upload(upload));
    shared.committed(commit).await?;
    recorded.map_err(|message| Failure::new(ErrorCode::Forbidden, message))?;
    Ok(StatusCode::CREATED)
}

/// A node's upload of a checkpoint of `attempt`, saved when its task had used `fuel_used` in
/// all: within the job's checkpoint size, and the task's latest once taken.
async fn put_checkpoint(
    shared: &Shared,
    (node, attempt, fuel_used): (NodeId, AttemptId, u64),
    hash: BlobHash,
    request: Request,
) -> ApiResult<StatusCode> {
    let max_bytes = shared.read(|state, _| state.checkpoint_bytes_max(node, attempt));
    let size_bytes = stream_in(shared, hash, request, max_bytes, "the checkpoint").await?;
    let checkpoint = SaveCheckpoint {
        node,
        attempt,
        hash,
        size_bytes,
        fuel_used,
    };
    let (saved, commit) = shared.mutate(crate::service::save_checkpoint(checkpoint));
    shared.committed(commit).await?;
    let saved = saved?;
    tracing::info!(%attempt, sequence = saved.sequence, fuel_used, size_bytes, "checkpoint saved");
    Ok(StatusCode::CREATED)
}

/// Streams a node's upload into the blob store, verified against `hash`, once the pool allows
/// it at most `max_bytes` (refused as forbidden otherwise); the size stored.
async fn stream_in(
    shared: &Shared,
    hash: BlobHash,
    request: Request,
    max_bytes: Result<u64, String>,
    what: &str,
) -> ApiResult<u64> {
    let max_bytes = max_bytes.map_err(|message| Failure::new(ErrorCode::Forbidden, message))?;
    if let Some(length) = content_length(request.headers())
        && length > max_bytes
    {
        return Err(Failure::new(
            ErrorCode::PayloadTooLarge,
            format!("{what} is {length} bytes, more than the {max_bytes} allowed"),
        ));
    }
    let body = request.into_body().into_data_stream();
    let size_bytes = shared
        .blobs
        .put_stream(hash, body, max_bytes)
        .await
        .map_err(blob_failure)?;
    shared.metrics.blob_bytes_in.inc_by(size_bytes);
    Ok(size_bytes)
}

/// `PUT /v1/blobs/{hash}?attempt=a-…`: a node uploads only for an attempt it holds.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadQuery {
    /// The attempt a node uploads this output for (`a-…`); nodes must give it, requesters not.
    attempt: Option<String>,
    /// Set by a node: the blob is a checkpoint of the attempt (a tar archive of its
    /// `/checkpoint`), saved when its task had used this much fuel in all. It becomes the
    /// task's latest checkpoint if the job checkpoints and it moves the task forward.
    checkpoint_fuel: Option<u64>,
}

fn node_upload_attempt(upload: &UploadQuery) -> ApiResult<AttemptId> {
    let Some(attempt) = &upload.attempt else {
        return Err(Failure::bad_request(
            "a node uploads only for an attempt it holds: name it with ?attempt=a-… in the URL",
        ));
    };
    parse_path(attempt)
}

pub(super) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[utoipa::path(head, path = "/v1/blobs/{hash}", tag = "blobs",
    params(("hash" = BlobHash, Path, description = "BLAKE3 hash of the bytes, 64 lowercase hex digits")),
    responses(
        (status = 200, description = "stored and readable by the caller; no need to upload"),
        (status = 400, description = "the hash is malformed"),
        (status = 401, description = "no valid API token"),
        (status = 404, description = "not stored, or not readable by the caller: upload it"),
    ),
    security(("requester" = [])))]
pub(crate) async fn head(
    State(shared): State<AppState>,
    Requester(requester): Requester,
    Path(hash): Path<String>,
) -> ApiResult<Response> {
    let hash: BlobHash = parse_path(&hash)?;
    let _gate = shared.blob_gate.read().await;
    match shared.store.readable_blob(&hash, requester).await? {
        Some(size) => {
            // A requester who finds a blob present will not upload it again: keep it a while.
            let _ = shared.store.enqueue(vec![Write::TouchBlobs {
                hashes: vec![hash],
                at_ms: shared.now_ms(),
            }]);
            Ok((StatusCode::OK, [(header::CONTENT_LENGTH, size.to_string())]).into_response())
        }
        None => Ok(StatusCode::NOT_FOUND.into_response()),
    }
}

#[utoipa::path(get, path = "/v1/blobs/{hash}", tag = "blobs",
    params(("hash" = BlobHash, Path, description = "BLAKE3 hash of the bytes, 64 lowercase hex digits")),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Vec<u8>,
            description = "the bytes; served as image/png, image/jpeg, image/gif, image/webp or image/svg+xml when they are one, with nosniff"),
        (status = 400, body = ApiError, description = "the hash is malformed"),
        (status = 401, body = ApiError, description = "no valid API or node token"),
        (status = 404, body = ApiError, description = "no blob with this hash that the caller may read"),
    ),
    security(("requester" = []), ("node" = [])))]
pub(crate) async fn get(
    State(shared): State<AppState>,
    caller: Caller,
    Path(hash): Path<String>,
) -> ApiResult<Response> {
    let hash: BlobHash = parse_path(&hash)?;
    let allowed = match caller {
        Caller::Requester(requester) => shared
            .store
            .readable_blob(&hash, requester)
            .await?
            .is_some(),
        Caller::Node(node) => shared.read(|state, _| state.node_may_read(node, &hash)),
    };
    if !allowed {
        // The same answer whether the blob exists or not: its existence is not the caller's
        // business unless it may read it.
        return Err(Failure::new(
            ErrorCode::NotFound,
            format!("no blob {hash} that you may read"),
        ));
    }
    let (size, mut stream) = shared.blobs.get_stream(&hash).await.map_err(blob_failure)?;
    // The first chunk says what the blob is; it goes out first, the rest as it comes.
    let first = match stream.next().await {
        Some(chunk) => chunk.map_err(blob_failure)?,
        None => Bytes::new(),
    };
    shared.metrics.blob_bytes_out.inc_by(size);
    Ok((
        [
            (header::CONTENT_TYPE, super::web::blob_content_type(&first)),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // An SVG result opened on its own runs no script and reaches nothing.
            (
                header::CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        [(header::CONTENT_LENGTH, size.to_string())],
        HttpBody::from_stream(futures::stream::once(async { Ok(first) }).chain(stream)),
    )
        .into_response())
}
