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
use parking_lot::{Mutex, RwLock};
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
    /// Where a blob the coordinator counts on this node for, and which is gone, is noted.
    pub(crate) news: Arc<PeerNews>,
}

/// Pinned blobs whose files one heartbeat checks are still on disk.
const PINNED_CHECKED_PER_HEARTBEAT: usize = 64;

/// Blobs found gone and not yet told to the coordinator, at most: four heartbeats' worth.
const DROPPED_HELD_MAX: usize = 4 * wire::peer::DROPPED_PER_HEARTBEAT_MAX;

/// What the node tells the coordinator of the blobs it holds for peers, at its heartbeats.
#[derive(Default)]
pub(crate) struct PeerNews {
    /// Copies made as the coordinator asked, to name (`copied`).
    copied: Mutex<Vec<BlobHash>>,
    /// Blobs the coordinator counts on this node for that are gone from its disk (`dropped`).
    dropped: Mutex<Vec<BlobHash>>,
    /// Set while the coordinator asks for the kept blobs to be named (`kept`): the last one
    /// named, or `None` to start from the first.
    naming: Mutex<Option<Option<BlobHash>>>,
    /// The last pinned blob checked, or `None` to start from the first.
    checked: Mutex<Option<BlobHash>>,
}

/// What one heartbeat says of the blobs held for peers.
pub(crate) struct PeerReport {
    pub(crate) copied: Vec<BlobHash>,
    pub(crate) kept: Vec<BlobHash>,
    pub(crate) dropped: Vec<BlobHash>,
}

impl PeerNews {
    pub(crate) fn copy_made(&self, hash: BlobHash) {
        self.copied.lock().push(hash);
    }

    /// `hash` is gone from this node: the coordinator hears it at the next heartbeats. Past
    /// [`DROPPED_HELD_MAX`] waiting to be told, more are not noted: the pinned files' check
    /// and the peers that ask find them again later.
    pub(crate) fn gone(&self, hash: BlobHash) {
        let mut dropped = self.dropped.lock();
        if !dropped.contains(&hash) && dropped.len() < DROPPED_HELD_MAX {
            dropped.push(hash);
        }
    }

    /// The next heartbeat's part, after checking a window of the pinned files.
    pub(crate) fn report(&self, cache: &BlobCache) -> PeerReport {
        let after = *self.checked.lock();
        let (missing, next) = cache.check_pinned(after, PINNED_CHECKED_PER_HEARTBEAT);
        *self.checked.lock() = next;
        if let Some(first) = missing.first() {
            tracing::warn!(blobs = missing.len(), %first, "blobs kept for peers are gone from the disk");
        }
        for hash in missing {
            self.gone(hash);
        }
        let first = |list: &Mutex<Vec<BlobHash>>, max: usize| {
            let list = list.lock();
            list[..list.len().min(max)].to_vec()
        };
        let kept = match *self.naming.lock() {
            Some(after) => cache.pinned_after(after, wire::peer::KEPT_NAMED_PER_HEARTBEAT_MAX),
            None => Vec::new(),
        };
        PeerReport {
            copied: first(&self.copied, wire::peer::COPIES_PER_HEARTBEAT_MAX),
            kept,
            dropped: first(&self.dropped, wire::peer::DROPPED_PER_HEARTBEAT_MAX),
        }
    }

    /// The coordinator heard `told`; `name_kept` says whether it asks for more names.
    pub(crate) fn heard(&self, told: &wire::HeartbeatRequest, name_kept: bool) {
        self.copied
            .lock()
            .retain(|hash| !told.copied.contains(hash));
        self.dropped
            .lock()
            .retain(|hash| !told.dropped.contains(hash));
        let full = told.kept.len() == wire::peer::KEPT_NAMED_PER_HEARTBEAT_MAX;
        *self.naming.lock() = name_kept.then(|| told.kept.last().copied().filter(|_| full));
    }

    /// A new session: the coordinator counts on nothing this node said before.
    pub(crate) fn clear(&self) {
        self.copied.lock().clear();
        self.dropped.lock().clear();
        *self.naming.lock() = None;
    }
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
        // The coordinator named this node as a holder: it should know it is one no more.
        server.news.gone(hash);
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
        // Evicted between the look-up and the open, or gone from the disk.
        Err(_) => {
            if server.cache.forget_missing(&hash) {
                server.news.gone(hash);
            }
            (StatusCode::NOT_FOUND, "this node no longer holds the blob").into_response()
        }
    }
}

/// Fetches kept intermediates from their holders as the coordinator asked, and keeps them
/// pinned for peers; each one made is named in the next heartbeat (`copied`).
pub(crate) async fn copy_for_peers(
    cache: Arc<BlobCache>,
    (client, peers): (client::Client, client::peer::PeerClient),
    blobs: Vec<wire::PeerBlob>,
    news: Arc<PeerNews>,
) {
    for blob in blobs {
        match cache
            .file_near(&client, &blob.hash, Some((&peers, &blob)))
            .await
        {
            Ok(_) if cache.pin(&[blob.hash]) => news.copy_made(blob.hash),
            Ok(_) => tracing::info!(hash = %blob.hash, "no room left to keep a copy for peers"),
            Err(error) => tracing::info!(%error, "could not copy a kept intermediate"),
        }
    }
}

#[cfg(test)]
#[path = "peer_tests.rs"]
mod tests;
