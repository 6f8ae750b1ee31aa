//! How many nodes each join token brought, against its bound, and the count of live nodes the
//! heartbeat interval is based on.
//!
//! One join token brings at most `nodes_per_join_token_max` distinct nodes, so a leaked join
//! token cannot flood the pool with identities; how fast it may bring them is the gate's (see
//! `crate::gate`).

use std::collections::HashMap;

use super::events::Event;
use super::{Outbox, PoolError, PoolState};
use wire::NodeId;

/// Distinct nodes one join token may bring, unless the owner says otherwise.
pub(crate) const NODES_PER_JOIN_TOKEN_MAX_DEFAULT: u32 = 1_000;

/// A node silent this long is forgotten, unless the owner says otherwise.
pub(crate) const SILENT_NODE_PURGE_MS_DEFAULT: u64 = 7 * 24 * 3_600_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeCounts {
    nodes_per_join_token_max: u32,
    /// Nodes in the pool by the join token they registered with.
    nodes_per_join_token: HashMap<String, u32>,
    /// Nodes counted as live: those whose lease had not run out when last counted, and those
    /// heard from since (see [`PoolState::recount_live_nodes`]).
    pub(crate) live_nodes: u64,
}

impl Default for NodeCounts {
    fn default() -> Self {
        Self {
            nodes_per_join_token_max: NODES_PER_JOIN_TOKEN_MAX_DEFAULT,
            nodes_per_join_token: HashMap::new(),
            live_nodes: 0,
        }
    }
}

impl NodeCounts {
    pub(crate) fn count_node(&mut self, join_token_hash: &str) {
        *self
            .nodes_per_join_token
            .entry(join_token_hash.to_owned())
            .or_default() += 1;
    }

    pub(crate) fn uncount_node(&mut self, join_token_hash: &str) {
        if let Some(count) = self.nodes_per_join_token.get_mut(join_token_hash) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.nodes_per_join_token.remove(join_token_hash);
            }
        }
    }
}

impl PoolState {
    /// Sets how many distinct nodes one join token may bring (at least one).
    pub(crate) fn set_nodes_per_join_token_max(&mut self, nodes_max: u32) {
        self.node_counts.nodes_per_join_token_max = nodes_max.max(1);
    }

    /// Checks the join token of `join_token_hash` may bring `node_id`: a node it brought
    /// already may come again, a new one only below the token's bound.
    pub(crate) fn may_bring(
        &self,
        join_token_hash: &str,
        node_id: NodeId,
    ) -> Result<(), PoolError> {
        let same_token = self
            .nodes
            .get(&node_id)
            .is_some_and(|node| node.join_token_hash == join_token_hash);
        let brought = self
            .node_counts
            .nodes_per_join_token
            .get(join_token_hash)
            .copied()
            .unwrap_or(0);
        let nodes_max = self.node_counts.nodes_per_join_token_max;
        if !same_token && brought >= nodes_max {
            return Err(PoolError::Forbidden(format!(
                "this join token has already brought {brought} nodes, the most one token may; \
                 ask the pool owner for another join token, or to raise \
                 --nodes-per-join-token (now {nodes_max})"
            )));
        }
        Ok(())
    }

    /// Counts the nodes whose lease has not run out. Run now and then (the lease reaper does),
    /// so that nodes that went silent stop counting; nodes heard from count again at once.
    pub(crate) fn recount_live_nodes(&mut self, now_ms: u64, out: &mut Outbox) {
        self.record(Event::NodesLiveRecounted { at_ms: now_ms }, out);
    }

    /// Nodes from the join token of `join_token_hash`, for tests and metrics.
    #[cfg(test)]
    pub(crate) fn nodes_of_join_token(&self, join_token_hash: &str) -> u32 {
        self.node_counts
            .nodes_per_join_token
            .get(join_token_hash)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
