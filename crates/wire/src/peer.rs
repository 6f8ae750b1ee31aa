//! Intermediates fetched node to node (`locality = "nodes"` in a pipeline), and the tickets
//! with which one node fetches such a blob from another.
//!
//! A holder serves `GET /v1/peer/blobs/{hash}` to whoever shows a ticket for that blob. A
//! ticket is a BLAKE3 MAC, keyed by a key derived from the holder's node token hash (which the
//! coordinator stores and the holder computes from its token), over the blob's hash and the
//! ticket's expiry: the coordinator hands tickets out in grants and copy orders, the holder
//! checks them without asking anyone, and a ticket names one blob for a few minutes. The bytes
//! are checked against their hash by whoever fetches them, so a holder cannot serve others.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::BlobHash;

/// Holders named for one blob in a grant, at most.
pub const HOLDERS_PER_BLOB_MAX: usize = 4;
/// Copies of a kept intermediate beyond its maker's, at most.
pub const COPIES_MAX: u32 = 3;
/// Copy orders in one heartbeat's answer, and copies one heartbeat reports, at most.
pub const COPIES_PER_HEARTBEAT_MAX: usize = 16;
/// Blobs one heartbeat's answer lets go, at most.
pub const RELEASES_PER_HEARTBEAT_MAX: usize = 256;
/// Kept blobs one heartbeat names as held when the coordinator asks (after it started again),
/// at most; a node that keeps more names the rest in the heartbeats that follow.
pub const KEPT_NAMED_PER_HEARTBEAT_MAX: usize = 1024;
/// Blobs one heartbeat says the node no longer has, at most.
pub const DROPPED_PER_HEARTBEAT_MAX: usize = 256;
/// A node's address for peers (`host:port`), in bytes.
pub const PEER_ADDRESS_BYTES_MAX: usize = 255;
/// How long a ticket is good for after the coordinator makes it.
pub const TICKET_TTL_MS: u64 = 10 * 60 * 1000;

/// Where the tasks of a pipeline's later stages fetch what earlier stages made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Locality {
    /// From the coordinator's blob store.
    #[default]
    Coordinator,
    /// From the nodes that hold them: a node with a peer listener keeps what it made for a
    /// later stage instead of uploading it, and others copy it (the pipeline's `copies`); a
    /// task is placed on a node that holds its inputs where one is free, and when every copy of
    /// an intermediate is gone, the task that made it runs again. A node without a peer
    /// listener uploads its outputs, which are then fetched from the coordinator too.
    Nodes,
}

impl Locality {
    pub fn is_coordinator(&self) -> bool {
        *self == Locality::Coordinator
    }
}

/// A blob some nodes hold, and where it can be fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerBlob {
    pub hash: BlobHash,
    pub size_bytes: u64,
    /// Best first; at most [`HOLDERS_PER_BLOB_MAX`].
    pub holders: Vec<PeerHolder>,
}

/// One node that holds a blob, and a ticket it accepts for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerHolder {
    /// `host:port` of the holder's peer listener.
    pub address: String,
    /// Unix milliseconds after which the holder refuses the ticket.
    pub expires_at_ms: u64,
    /// 64 hex digits: [`ticket`] for this blob and expiry.
    pub ticket: String,
}

/// The key a node's tickets are made with, from its node token's hash
/// ([`crate::auth::token_hash`]).
pub fn ticket_key(node_token_hash: &str) -> [u8; 32] {
    blake3::derive_key(
        "crowdcloud 2026-12 peer blob ticket",
        node_token_hash.as_bytes(),
    )
}

/// The ticket for `hash` until `expires_at_ms`, made with a holder's [`ticket_key`].
pub fn ticket(key: &[u8; 32], hash: &BlobHash, expires_at_ms: u64) -> String {
    mac(key, hash, expires_at_ms).to_hex().to_string()
}

fn mac(key: &[u8; 32], hash: &BlobHash, expires_at_ms: u64) -> blake3::Hash {
    let mut message = [0u8; 40];
    message[..32].copy_from_slice(&hash.0);
    message[32..].copy_from_slice(&expires_at_ms.to_be_bytes());
    blake3::keyed_hash(key, &message)
}

/// Whether `given` is the ticket for `hash` until `expires_at_ms`, and that moment has not
/// passed at `now_ms`. The comparison takes the same time wherever the two differ.
pub fn ticket_holds(
    key: &[u8; 32],
    hash: &BlobHash,
    expires_at_ms: u64,
    given: &str,
    now_ms: u64,
) -> bool {
    let Ok(given) = blake3::Hash::from_hex(given) else {
        return false;
    };
    // `blake3::Hash`'s equality is constant-time.
    now_ms <= expires_at_ms && mac(key, hash, expires_at_ms) == given
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_opens_its_blob_until_it_expires_and_nothing_else() {
        let key = ticket_key("holder token hash");
        let hash = BlobHash::of(b"part-0");
        let ticket = ticket(&key, &hash, 1_000);
        assert!(ticket_holds(&key, &hash, 1_000, &ticket, 999));
        assert!(ticket_holds(&key, &hash, 1_000, &ticket, 1_000));
        assert!(!ticket_holds(&key, &hash, 1_000, &ticket, 1_001), "expired");
        assert!(
            !ticket_holds(&key, &hash, 2_000, &ticket, 999),
            "another expiry"
        );
        let other = BlobHash::of(b"part-1");
        assert!(
            !ticket_holds(&key, &other, 1_000, &ticket, 999),
            "another blob"
        );
        let stranger = ticket_key("another node's token hash");
        assert!(
            !ticket_holds(&stranger, &hash, 1_000, &ticket, 999),
            "another holder"
        );
        assert!(!ticket_holds(&key, &hash, 1_000, "not hex", 999));
    }
}
