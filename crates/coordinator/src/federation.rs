//! Lending this pool's idle slots to the pools its owner added as peers: the loop that keeps one
//! bridge running per peer, and what it tells each bridge.
//!
//! A bridge speaks to the other pool as a client (a node there), which the coordinator does not,
//! so the binary gives it a [`FederationRunner`]. The coordinator hands each bridge the peer,
//! a fresh API token of the peer's account here (the tasks it borrows are submitted as that
//! account's jobs, which this pool places last), and what this pool can lend, kept current.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use tokio::sync::watch;
use wire::Fingerprint;
use wire::PeerId;
use wire::auth::{TokenKind, token_hash};
use wire::federation::BridgeState;

use crate::pool::{BridgeToken, Lendable};
use crate::service::Shared;

/// How often what the pool can lend is measured again, and peers added or removed are
/// followed.
const LENDABLE_EVERY: Duration = Duration::from_millis(250);

/// What the binary gives the coordinator to run bridges with.
pub trait FederationRunner: Send + Sync + 'static {
    /// Lends this pool's idle slots to `bridge`'s peer until the future ends or is dropped.
    fn run(&self, bridge: Bridge) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// One peer, as its bridge needs it.
#[derive(Debug, Clone)]
pub struct Bridge {
    /// `p-` and 16 hex digits, for logs.
    pub peer: String,
    /// The other pool's coordinator and certificate.
    pub url: String,
    pub fingerprint: Fingerprint,
    /// The `ccf_…` token its owner made for this pool.
    pub token: String,
    /// An API token of the peer's account in this pool, made for this bridge.
    pub local_token: String,
    /// What this pool can lend now.
    pub lendable: watch::Receiver<Lendable>,
    /// What every bridge of this pool holds now, together: each adds the attempts it is granted
    /// and takes off those it ends, so none leases past `lendable` while jobs are in flight.
    pub borrowed: Arc<AtomicU32>,
    /// Where the bridge says what it does, for the owner's `federation list`.
    pub state: watch::Sender<BridgeState>,
}

/// Keeps one bridge running per peer while this coordinator leads.
pub(crate) async fn lend(shared: Arc<Shared>, runner: Arc<dyn FederationRunner>) {
    let mut stopping = shared.stopping.subscribe();
    let (publish, lendable) = watch::channel(Lendable::default());
    let borrowed = Arc::new(AtomicU32::new(0));
    let mut bridges: BTreeMap<u64, tokio::task::JoinHandle<()>> = BTreeMap::new();
    loop {
        let (now, peers) = shared.read(|pool, now_ms| {
            let peers: Vec<_> = pool.peers().cloned().collect();
            // A pool that lends to no one (most pools) measures nothing under the pool's lock.
            let now = (!peers.is_empty()).then(|| pool.lendable(now_ms));
            (now, peers)
        });
        if let Some(now) = now {
            publish.send_if_modified(|old| {
                let changed = *old != now;
                *old = now;
                changed
            });
        }
        bridges.retain(|id, bridge| {
            let kept = peers.iter().any(|peer| peer.id == *id);
            if !kept {
                bridge.abort();
                shared.bridges.lock().remove(id);
            }
            kept
        });
        let new: Vec<_> = peers
            .iter()
            .filter(|peer| !bridges.contains_key(&peer.id))
            .collect();
        for peer in new {
            let Some(local_token) = bridge_token(&shared, peer.id).await else {
                continue;
            };
            let (state, watched) = watch::channel(BridgeState::Starting);
            shared.bridges.lock().insert(peer.id, watched);
            let bridge = Bridge {
                peer: PeerId(peer.id).to_string(),
                url: peer.url.clone(),
                fingerprint: peer.fingerprint,
                token: peer.token.clone(),
                local_token,
                lendable: lendable.clone(),
                borrowed: Arc::clone(&borrowed),
                state,
            };
            tracing::info!(peer = %bridge.peer, url = %bridge.url, "lending idle slots to a peer");
            bridges.insert(peer.id, tokio::spawn(runner.run(bridge)));
        }
        tokio::select! {
            () = tokio::time::sleep(LENDABLE_EVERY) => {}
            _ = stopping.changed() => break,
        }
    }
    for bridge in bridges.into_values() {
        bridge.abort();
    }
    shared.bridges.lock().clear();
}

/// Makes the bridge's API token, committed; `None` when the peer is gone or the store failed.
async fn bridge_token(shared: &Shared, peer: u64) -> Option<String> {
    let token = TokenKind::Requester.token_from_secret(shared.entropy().secret());
    let (made, commit) = shared.apply(BridgeToken {
        peer,
        hash: token_hash(&token),
    });
    if !made {
        return None;
    }
    match shared.committed(commit).await {
        Ok(()) => Some(token),
        Err(error) => {
            tracing::warn!(?error, "cannot store a bridge's token; trying again");
            None
        }
    }
}
