//! Nodes' presence: every agent keeps one request open (`POST /v1/nodes/presence`), answered
//! after [`PRESENCE_HOLD_MS`] and sent again at once. A presence request whose connection closes
//! unanswered, with no other open, means the agent's process died (its kernel closed the socket)
//! or its network went: after [`PRESENCE_GRACE_MS`] without a new one, the pool marks the node
//! silent (`Silence`), so its tasks get stand-ins elsewhere in about a second rather than after
//! half a lease. A machine that loses power or sleeps sends nothing, and the lease's silence
//! still covers it.
//!
//! A node that held presence requests and holds none may also register again at once: its old
//! process is gone, so the new one is a restart, not a copy of its data dir running beside it.
//!
//! Nothing is expired here: a node wrongly thought gone (a network blip) keeps its attempts,
//! and the cost is the stand-ins' work. Presence lives beside the pool, like parked requests:
//! it is the traffic in front of it, lost at a restart and never replayed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use wire::NodeId;

use crate::pool::Silence;
use crate::service::Shared;

pub(crate) use wire::limits::PRESENCE_HOLD_MS;
/// Presence requests one node may hold open at once: its current one and the next, which may
/// arrive before the first has closed.
pub(crate) const PRESENCE_PER_NODE_MAX: u32 = 2;
/// How long a node without an open presence request may take to send a new one before it is
/// thought gone.
pub(crate) const PRESENCE_GRACE_MS: u64 = 500;

/// Nodes remembered as speaking presence; past this the memory starts again (a node then
/// waits out the heartbeat rule once more when it restarts).
const SPOKE_MAX: usize = 1_000_000;

/// Open presence requests per node, and the nodes that ever held one.
#[derive(Default)]
pub(crate) struct Presence {
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    counts: HashMap<NodeId, u32>,
    spoke: HashSet<NodeId>,
}

impl Presence {
    /// Counts a new presence request of `node`; `false` when it already holds the most.
    fn enter(&self, node: NodeId) -> bool {
        let mut open = self.open.lock();
        if open.spoke.len() >= SPOKE_MAX {
            open.spoke.clear();
        }
        open.spoke.insert(node);
        let count = open.counts.entry(node).or_default();
        if *count >= PRESENCE_PER_NODE_MAX {
            return false;
        }
        *count += 1;
        true
    }

    /// Counts a presence request of `node` closed; how many it still holds open.
    fn leave(&self, node: NodeId) -> u32 {
        let mut open = self.open.lock();
        let Some(count) = open.counts.get_mut(&node) else {
            return 0;
        };
        *count -= 1;
        let left = *count;
        if left == 0 {
            open.counts.remove(&node);
        }
        left
    }

    fn is_present(&self, node: NodeId) -> bool {
        self.open.lock().counts.contains_key(&node)
    }

    /// Whether `node`'s process is known to be gone: it held presence requests, and holds none
    /// now. Its restart may register at once rather than wait out the heartbeat rule that
    /// tells a restart from a copied data dir.
    pub(crate) fn process_gone(&self, node: NodeId) -> bool {
        let open = self.open.lock();
        open.spoke.contains(&node) && !open.counts.contains_key(&node)
    }
}

/// An open presence request. Dropped before it was answered (its connection closed), it is the
/// sign that its node may be gone.
pub(crate) struct Held {
    node: NodeId,
    shared: Arc<Shared>,
    answered: bool,
}

impl Held {
    /// Holds a presence request of `node`; `None` when it holds as many as it may.
    pub(crate) fn enter(shared: &Arc<Shared>, node: NodeId) -> Option<Self> {
        shared.presence.enter(node).then(|| Self {
            node,
            shared: Arc::clone(shared),
            answered: false,
        })
    }

    /// The request is answered: its closing says nothing of the node.
    pub(crate) fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let left = self.shared.presence.leave(self.node);
        if self.answered || left > 0 {
            return;
        }
        let (shared, node) = (Arc::clone(&self.shared), self.node);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(PRESENCE_GRACE_MS)).await;
            if shared.presence.is_present(node) {
                return;
            }
            let (silenced, commit) = shared.apply(Silence { node });
            if silenced {
                tracing::info!(%node, "node's presence closed; its tasks run elsewhere too");
            }
            let _ = shared.committed(commit).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_holds_at_most_two_requests_and_is_gone_once_it_held_some_and_holds_none() {
        let presence = Presence::default();
        let node = NodeId(7);
        assert!(
            !presence.process_gone(node),
            "a node never heard of is not known gone"
        );
        assert!(presence.enter(node));
        assert!(presence.enter(node));
        assert!(!presence.enter(node), "a third open request is refused");
        assert!(!presence.process_gone(node));
        assert_eq!(presence.leave(node), 1);
        assert!(presence.is_present(node));
        assert_eq!(presence.leave(node), 0);
        assert!(!presence.is_present(node));
        assert!(
            presence.process_gone(node),
            "it spoke presence and holds none now"
        );
        assert!(presence.enter(node), "its restart opens one again");
        assert!(!presence.process_gone(node));
    }
}
