//! Credentials in the pool: the tokens the owner creates and revokes, the node identities the
//! owner removed, and the rule that one node identity is online from one process at a time.

use std::collections::{BTreeMap, HashSet};

use store::{RequesterRow, TokenRole, TokenRow, Write};
use wire::{AttemptId, NodeActivity, NodeId, RequesterId};

use super::events::{Event, NodeGone};
use super::{Outbox, PoolError, PoolState};

/// Heartbeat intervals of silence after which a node's process counts as gone, so that the same
/// identity may register from another process (an agent restarted after a crash).
pub(crate) const CLONE_SILENCE_HEARTBEATS: u64 = 2;

/// The rows a token's or a peer's event implies.
pub(super) fn push_trust_writes(event: Event, writes: &mut Vec<Write>) {
    match event {
        Event::TokenCreated { token, requester } => {
            writes.extend(requester.map(Write::InsertRequester));
            writes.push(Write::InsertToken(token));
        }
        Event::TokenRevoked { hash, at_ms } => writes.push(Write::RevokeToken { hash, at_ms }),
        Event::PeerAdded { peer, requester } => {
            writes.push(Write::InsertRequester(requester));
            writes.push(Write::InsertPeer(peer));
        }
        Event::PeerRemoved { id, .. } => writes.push(Write::DeletePeer { id }),
        _ => unreachable!("only tokens' and peers' events reach here"),
    }
}

impl PoolState {
    /// Applies a token's or a peer's event.
    pub(super) fn apply_trust_event(&mut self, event: &Event) {
        match event {
            Event::TokenCreated { token, .. } => {
                let hash = token.hash.clone();
                match token.role {
                    TokenRole::Requester(requester) => {
                        self.requester_tokens.insert(hash, requester);
                    }
                    TokenRole::Join => {
                        self.join_tokens.insert(hash);
                    }
                    TokenRole::Federation => {
                        self.join_tokens.insert(hash.clone());
                        self.federation.tokens.insert(hash);
                    }
                }
            }
            Event::TokenRevoked { hash, .. } => {
                self.requester_tokens.remove(hash);
                self.join_tokens.remove(hash);
                self.federation.tokens.remove(hash);
            }
            Event::PeerAdded { peer, .. } => self.apply_peer_added(peer),
            Event::PeerRemoved { id, .. } => self.apply_peer_removed(*id),
            _ => unreachable!("only tokens' and peers' events reach here"),
        }
    }

    /// Tokens that work now: API tokens and join tokens.
    pub(crate) fn live_token_count(&self) -> usize {
        self.requester_tokens.len() + self.join_tokens.len()
    }

    /// A new requester with one API token.
    pub(crate) fn create_requester_token(
        &mut self,
        token_hash: String,
        name: &str,
        requester: RequesterId,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        let event = Event::TokenCreated {
            token: TokenRow {
                hash: token_hash,
                role: TokenRole::Requester(requester),
                name: name.to_owned(),
                created_at_ms: now_ms,
                revoked_at_ms: None,
            },
            requester: Some(RequesterRow {
                id: requester,
                name: name.to_owned(),
                created_at_ms: now_ms,
            }),
        };
        self.record(event, out);
    }

    /// A new join token, or federation token (`role`).
    pub(crate) fn create_join_token(
        &mut self,
        token_hash: String,
        name: &str,
        role: TokenRole,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        debug_assert!(matches!(role, TokenRole::Join | TokenRole::Federation));
        let event = Event::TokenCreated {
            token: TokenRow {
                hash: token_hash,
                role,
                name: name.to_owned(),
                created_at_ms: now_ms,
                revoked_at_ms: None,
            },
            requester: None,
        };
        self.record(event, out);
    }

    /// Revokes a token: from this moment no request carrying it is accepted. Whether it was live.
    pub(crate) fn revoke_token(&mut self, token_hash: &str, now_ms: u64, out: &mut Outbox) -> bool {
        let live =
            self.requester_tokens.contains_key(token_hash) || self.join_tokens.contains(token_hash);
        if live {
            self.remove_federated_nodes(token_hash, now_ms, out);
            let event = Event::TokenRevoked {
                hash: token_hash.to_owned(),
                at_ms: now_ms,
            };
            self.record(event, out);
        }
        live
    }

    /// Takes a node out of the pool at its owner's word: the attempts it holds go back to the
    /// queue without counting against their tasks, its token stops working, and its identity
    /// may not register again. Returns how many attempts went back.
    pub(crate) fn remove_node(
        &mut self,
        node_id: NodeId,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<usize, PoolError> {
        let Some(node) = self.nodes.get(&node_id) else {
            return Err(PoolError::NotFound(format!(
                "no node {node_id} in the pool; list them with `crowdcloud nodes`"
            )));
        };
        let held: Vec<AttemptId> = node.running.iter().copied().collect();
        let released = self.release(node_id, &held, now_ms, out).len();
        let event = Event::NodeGone {
            node: node_id,
            why: NodeGone::Removed,
            at_ms: now_ms,
        };
        self.record(event, out);
        Ok(released)
    }

    /// Whether the owner removed this identity from the pool.
    pub(crate) fn is_removed(&self, node_id: NodeId) -> bool {
        self.removed_nodes.contains(&node_id)
    }

    /// When `node_id` is online from a process that heartbeats (seen within
    /// [`CLONE_SILENCE_HEARTBEATS`] heartbeat intervals), how long ago it was seen: a second
    /// registration of the same identity now comes from another process, most likely a copied
    /// data dir.
    pub(crate) fn node_online_elsewhere(&self, node_id: NodeId, now_ms: u64) -> Option<u64> {
        let node = self.nodes.get(&node_id)?;
        // A node that said it is shutting down is leaving: its successor may come in at once.
        if node.activity == NodeActivity::Draining {
            return None;
        }
        let silent_ms = now_ms.saturating_sub(node.last_seen_ms);
        // A lease term is three heartbeat intervals past the node's last request.
        let heartbeat_ms = node.lease_until_ms.saturating_sub(node.last_seen_ms) / 3;
        (silent_ms < CLONE_SILENCE_HEARTBEATS * heartbeat_ms.max(1)).then_some(silent_ms)
    }
}

/// Removed identities are kept in `meta`, one key each.
const REMOVED_NODE_PREFIX: &str = "removed_node:";

pub(super) fn removed_node_key(node_id: NodeId) -> String {
    format!("{REMOVED_NODE_PREFIX}{node_id}")
}

pub(crate) fn removed_nodes_in(meta: &BTreeMap<String, String>) -> HashSet<NodeId> {
    meta.keys()
        .filter_map(|key| key.strip_prefix(REMOVED_NODE_PREFIX))
        .filter_map(|id| id.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::NewNode;

    const LEASE_MS: u64 = 3_000;

    fn pool_with_node(now_ms: u64) -> (PoolState, NodeId) {
        let mut pool = PoolState::new("test".to_owned(), LEASE_MS);
        let node = NodeId(42);
        pool.register(
            NewNode {
                id: node,
                public_key: "key".to_owned(),
                token_hash: "node-token".to_owned(),
                name: "box".to_owned(),
                capabilities: wire::Capabilities::default(),
                labels: Default::default(),
                slots: 1,
                agent_version: "test".to_owned(),
                join_token_hash: "join".to_owned(),
                network: None,
            },
            now_ms,
            &mut Outbox::new(),
        );
        (pool, node)
    }

    #[test]
    fn an_identity_counts_as_online_elsewhere_until_it_has_been_silent_two_heartbeats() {
        let (mut pool, node) = pool_with_node(10_000);
        let heartbeat_ms = LEASE_MS / 3;
        assert_eq!(pool.node_online_elsewhere(node, 10_500), Some(500));
        let silent_enough = 10_000 + CLONE_SILENCE_HEARTBEATS * heartbeat_ms;
        assert_eq!(
            pool.node_online_elsewhere(node, silent_enough - 1),
            Some(silent_enough - 10_001)
        );
        assert_eq!(pool.node_online_elsewhere(node, silent_enough), None);
        assert_eq!(
            pool.node_online_elsewhere(NodeId(7), 10_500),
            None,
            "unknown ids are free"
        );
        // A node that said it is draining is on its way out.
        pool.nodes.get_mut(&node).unwrap().activity = NodeActivity::Draining;
        assert_eq!(pool.node_online_elsewhere(node, 10_500), None);
    }

    #[test]
    fn a_revoked_token_is_gone_from_the_maps_in_the_same_change() {
        let (mut pool, _) = pool_with_node(0);
        let mut out = Outbox::new();
        pool.create_requester_token("api".to_owned(), "alice", RequesterId(9), 1, &mut out);
        pool.create_join_token("join".to_owned(), "laptop", TokenRole::Join, 1, &mut out);
        assert_eq!(pool.live_token_count(), 2);
        assert_eq!(pool.requester_by_token("api"), Some(RequesterId(9)));
        out = Outbox::new();
        assert!(pool.revoke_token("api", 5, &mut out));
        assert!(pool.revoke_token("join", 5, &mut out));
        assert_eq!(pool.requester_by_token("api"), None);
        assert!(!pool.is_join_token("join"));
        assert_eq!(out.writes.len(), 2, "each revocation is written");
        assert!(
            !pool.revoke_token("api", 6, &mut out),
            "revoking twice changes nothing"
        );
        assert_eq!(out.writes.len(), 2);
    }
}
