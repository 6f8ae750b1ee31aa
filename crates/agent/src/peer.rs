//! The peer listener: serves the blobs in this node's cache to other nodes that show a ticket
//! for them (`locality = "nodes"`; see `wire::peer`). The ticket is checked with a key derived
//! from this node's token, so only a grant of this pool's coordinator opens a blob, and only
//! the blob it names, until it expires. Nothing else is served: no listing, no writes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt as _;
use futures::StreamExt as _;
use parking_lot::RwLock;
use serde::Deserialize;

use wire::BlobHash;

use crate::cache::BlobCache;

/// Blobs served at once; a request past them is told to come back, and its node fetches
/// from another holder or the coordinator.
pub(crate) const SERVING_AT_ONCE: usize = 64;

/// What the listener needs: the cache it serves from and the key of the current session's
/// tickets (`None` before registration, when it serves nothing).
#[derive(Clone)]
pub(crate) struct PeerServer {
    pub(crate) cache: Arc<BlobCache>,
    pub(crate) key: Arc<RwLock<Option<[u8; 32]>>>,
    /// One permit per blob being served.
    pub(crate) serving: Arc<tokio::sync::Semaphore>,
}

#[derive(Deserialize)]
struct Ticket {
    expires_at_ms: u64,
    ticket: String,
}

/// Serves `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    server: PeerServer,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app = axum::Router::new()
        .route("/v1/peer/blobs/{hash}", axum::routing::get(blob))
        .with_state(server);
    // Without it, a small blob's last segment waits on the fetching node's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!(%error, "the peer listener stopped");
    }
}

async fn blob(
    State(server): State<PeerServer>,
    Path(hash): Path<String>,
    Query(ticket): Query<Ticket>,
) -> Response {
    let Ok(hash) = hash.parse::<BlobHash>() else {
        return (
            StatusCode::BAD_REQUEST,
            "give the blob's hash as 64 hex digits",
        )
            .into_response();
    };
    let now_ms = crate::owner::status::now_ms();
    let key = *server.key.read();
    let holds = key.is_some_and(|key| {
        wire::peer::ticket_holds(&key, &hash, ticket.expires_at_ms, &ticket.ticket, now_ms)
    });
    if !holds {
        return (
            StatusCode::FORBIDDEN,
            "the ticket does not open this blob here: ask the coordinator for a fresh grant",
        )
            .into_response();
    }
    let Ok(permit) = Arc::clone(&server.serving).try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "serving as many blobs as it may",
        )
            .into_response();
    };
    let Some(path) = server.cache.cached(&hash) else {
        return (StatusCode::NOT_FOUND, "this node no longer holds the blob").into_response();
    };
    match tokio::fs::File::open(&path).await {
        Ok(file) => {
            // The permit goes when the body has been sent.
            let stream = tokio_util::io::ReaderStream::new(file).map(move |chunk| {
                let _serving = &permit;
                chunk
            });
            Body::from_stream(stream).into_response()
        }
        // Evicted between the look-up and the open.
        Err(_) => (StatusCode::NOT_FOUND, "this node no longer holds the blob").into_response(),
    }
}

/// Fetches kept intermediates from their holders as the coordinator asked, and keeps them
/// pinned for peers; each one made is named in the next heartbeat (`copied`).
pub(crate) async fn copy_for_peers(
    cache: Arc<BlobCache>,
    (client, peers): (client::Client, client::peer::PeerClient),
    blobs: Vec<wire::PeerBlob>,
    copied: Arc<parking_lot::Mutex<Vec<BlobHash>>>,
) {
    for blob in blobs {
        match cache
            .file_near(&client, &blob.hash, Some((&peers, &blob)))
            .await
        {
            Ok(_) if cache.pin(&[blob.hash]) => copied.lock().push(blob.hash),
            Ok(_) => tracing::info!(hash = %blob.hash, "no room left to keep a copy for peers"),
            Err(error) => tracing::info!(%error, "could not copy a kept intermediate"),
        }
    }
}

#[cfg(test)]
#[path = "peer_tests.rs"]
mod tests;
