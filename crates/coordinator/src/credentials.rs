//! The credentials that work now, indexed for authentication without the pool's lock.
//!
//! The pool holds the truth; this index follows it through the writes each change queues
//! (a token created or revoked, a node registered or deleted), applied under the pool's lock
//! in the same order, so a request authenticated here was valid at a moment between two
//! changes. Debug builds compare it with the pool after every change.

use std::collections::{HashMap, HashSet};

use store::{TokenRole, Write};
use wire::{NodeId, RequesterId};

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Credentials {
    requesters: HashMap<String, RequesterId>,
    joins: HashSet<String>,
    nodes: HashMap<String, NodeId>,
    /// Each node's token, to drop it when the node goes or registers again.
    node_tokens: HashMap<NodeId, String>,
}

impl Credentials {
    pub(crate) fn new(
        requesters: HashMap<String, RequesterId>,
        joins: HashSet<String>,
        nodes: impl Iterator<Item = (NodeId, String)>,
    ) -> Self {
        let mut credentials = Self {
            requesters,
            joins,
            ..Self::default()
        };
        for (node, token_hash) in nodes {
            credentials.set_node(node, token_hash);
        }
        credentials
    }

    pub(crate) fn requester(&self, token_hash: &str) -> Option<RequesterId> {
        self.requesters.get(token_hash).copied()
    }

    pub(crate) fn node(&self, token_hash: &str) -> Option<NodeId> {
        self.nodes.get(token_hash).copied()
    }

    pub(crate) fn is_join(&self, token_hash: &str) -> bool {
        self.joins.contains(token_hash)
    }

    /// Follows the credentials a change created or ended.
    pub(crate) fn follow(&mut self, writes: &[Write]) {
        for write in writes {
            match write {
                Write::InsertToken(row) if row.revoked_at_ms.is_none() => match row.role {
                    TokenRole::Requester(requester) => {
                        self.requesters.insert(row.hash.clone(), requester);
                    }
                    TokenRole::Join | TokenRole::Federation => {
                        self.joins.insert(row.hash.clone());
                    }
                },
                Write::RevokeToken { hash, .. } => {
                    self.requesters.remove(hash);
                    self.joins.remove(hash);
                }
                Write::UpsertNode(row) => self.set_node(row.id, row.token_hash.clone()),
                Write::DeleteNode { node_id } => self.remove_node(*node_id),
                _ => {}
            }
        }
    }

    fn set_node(&mut self, node: NodeId, token_hash: String) {
        self.remove_node(node);
        self.nodes.insert(token_hash.clone(), node);
        self.node_tokens.insert(node, token_hash);
    }

    fn remove_node(&mut self, node: NodeId) {
        if let Some(old) = self.node_tokens.remove(&node) {
            self.nodes.remove(&old);
        }
    }
}
