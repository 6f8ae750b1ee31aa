//! Federation in the pool: both sides of pools lending each other capacity.
//!
//! As the **home** pool, another pool is a node registered with a federation token (`ccf_…`).
//! Such a node gets a task only when none of this pool's own nodes took it (they are offered
//! the work first, in the same placement), and never a task of a job that stays home
//! (`home_pool`), is private (its key is wrapped to named nodes) or checkpoints (its
//! checkpoints are this pool's). Revoking the token removes its nodes at once: their attempts go
//! back to the queue.
//!
//! As the **lending** pool, a peer is a pool this one lends its idle slots to. Each peer has a
//! requester account here whose jobs (the tasks the bridge borrowed) are placed only on slots no
//! other job wants, and which may run into debt: it is what the other pool owes this one.

use std::collections::{BTreeMap, HashSet};

use store::{PeerRow, RequesterRow, TokenRole, TokenRow};
use wire::{Capabilities, NodeActivity, NodeId, NodeRuntime, RequesterId};

use super::events::Event;
use super::{Job, Node, Outbox, PoolError, PoolState};

/// Both sides' state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Federation {
    /// Live federation tokens (each also a join token): nodes that registered with one are
    /// other pools.
    pub(super) tokens: HashSet<String>,
    /// Pools this one lends its idle slots to, by id.
    pub(super) peers: BTreeMap<u64, PeerRow>,
    /// The peers' accounts: their jobs are borrowed tasks, placed last.
    pub(super) accounts: HashSet<RequesterId>,
}

/// One round of placement: whose nodes, and whose jobs. Rounds run in [`PASSES`] order, so this
/// pool's nodes take work before other pools do, and this pool's requesters' jobs go before the
/// tasks it borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pass {
    /// The nodes offered are other pools (federated), not this pool's own.
    pub(super) federated_nodes: bool,
    /// The jobs placed are borrowed tasks, not this pool's requesters' jobs.
    pub(super) borrowed_jobs: bool,
}

const PASSES: [Pass; 4] = [
    Pass {
        federated_nodes: false,
        borrowed_jobs: false,
    },
    Pass {
        federated_nodes: false,
        borrowed_jobs: true,
    },
    Pass {
        federated_nodes: true,
        borrowed_jobs: false,
    },
    Pass {
        federated_nodes: true,
        borrowed_jobs: true,
    },
];

/// What this pool can lend now: the slots its own work leaves, and the node they are measured
/// against.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lendable {
    /// Slots of its own online nodes that its own requesters' work (running or waiting) leaves:
    /// what borrowed tasks may hold in all, those held now included. Borrowed tasks are not
    /// taken off, so what the bridges hold but have not submitted yet is counted once, by them.
    pub idle_slots: u32,
    /// The largest of its own online nodes: a task that fits it can be placed here. `None` when
    /// no node of its own is online.
    pub largest: Option<(Capabilities, BTreeMap<String, String>)>,
}

impl Job {
    /// Whether a task of this job may run in another pool: not when it must stay home, is
    /// private, or checkpoints.
    fn may_federate(&self) -> bool {
        !self.requirements.home_pool && self.keys.is_none() && self.runtime.checkpoint.is_none()
    }
}

impl PoolState {
    /// Whether `node` is another pool, registered with a federation token.
    pub(crate) fn is_federated(&self, node: &Node) -> bool {
        !self.federation.tokens.is_empty() && self.federation.tokens.contains(&node.join_token_hash)
    }

    /// What `node` is sent of `job`: another pool gets the job's requirements too.
    pub(super) fn runtime_sent(&self, job: &Job, node: NodeId) -> wire::JobRuntime {
        let mut runtime = job.runtime_for(node);
        if self.nodes.get(&node).is_some_and(|n| self.is_federated(n)) {
            runtime.requirements = Some(job.requirements.clone());
        }
        runtime.hold_outputs = self.stage_peers(job.id).is_some_and(|stage| stage.holds);
        runtime
    }

    /// Whether `requester` is the account of a pool this one lends to.
    pub(crate) fn is_peer_account(&self, requester: RequesterId) -> bool {
        !self.federation.accounts.is_empty() && self.federation.accounts.contains(&requester)
    }

    /// The rounds placement needs: one for a pool with no federation at all.
    pub(super) fn passes(&self) -> impl Iterator<Item = Pass> + use<> {
        let federated = !self.federation.tokens.is_empty();
        let borrowed = !self.federation.accounts.is_empty();
        PASSES.into_iter().filter(move |pass| {
            (federated || !pass.federated_nodes) && (borrowed || !pass.borrowed_jobs)
        })
    }

    /// Whether `pass` places tasks of `job`.
    pub(super) fn pass_admits(&self, pass: Pass, job: &Job) -> bool {
        self.is_peer_account(job.requester) == pass.borrowed_jobs
            && (!pass.federated_nodes || job.may_federate())
    }

    /// What this pool can lend now; see [`Lendable`]. Nodes of other pools are not lent on.
    pub(crate) fn lendable(&self, now_ms: u64) -> Lendable {
        let own = self.nodes.values().filter(|node| {
            node.activity == NodeActivity::Active
                && node.lease_until_ms > now_ms
                && node.capabilities.runtime == NodeRuntime::Native
                && !self.is_federated(node)
        });
        let mut free = 0u64;
        let mut largest: Option<&Node> = None;
        for node in own {
            let running_own = node
                .running
                .iter()
                .filter_map(|attempt| self.attempts.get(attempt))
                .filter_map(|attempt| self.jobs.get(&attempt.job))
                .filter(|job| !self.is_peer_account(job.requester))
                .count();
            free += u64::from(node.slots).saturating_sub(running_own as u64);
            let bigger = largest.is_none_or(|l| {
                (
                    node.capabilities.memory_bytes,
                    node.capabilities.cores,
                    node.id,
                ) > (l.capabilities.memory_bytes, l.capabilities.cores, l.id)
            });
            if bigger {
                largest = Some(node);
            }
        }
        let waiting: u64 = self
            .ready
            .values()
            .filter_map(|job_id| self.jobs.get(job_id))
            .filter(|job| !self.is_peer_account(job.requester))
            .map(|job| job.pending.len() as u64)
            .sum();
        Lendable {
            idle_slots: u32::try_from(free.saturating_sub(waiting)).unwrap_or(u32::MAX),
            largest: largest.map(|node| (node.capabilities.clone(), node.labels.clone())),
        }
    }

    /// The peers this pool lends to.
    pub(crate) fn peers(&self) -> impl Iterator<Item = &PeerRow> {
        self.federation.peers.values()
    }

    /// Adds a pool to lend to, with an account of its own; refused past
    /// [`wire::federation::PEERS_MAX`] or for a URL already a peer.
    pub(crate) fn add_peer(
        &mut self,
        peer: PeerRow,
        out: &mut Outbox,
    ) -> Result<PeerRow, PoolError> {
        if self.federation.peers.len() >= wire::federation::PEERS_MAX {
            return Err(PoolError::Conflict(format!(
                "this pool lends to {} pools already; remove one with `crowdcloud federation remove`",
                wire::federation::PEERS_MAX
            )));
        }
        if let Some(same) = self.peers().find(|p| p.url == peer.url) {
            return Err(PoolError::Conflict(format!(
                "this pool lends to {} already, as {}; remove it first to change its token",
                same.url,
                wire::PeerId(same.id)
            )));
        }
        let requester = RequesterRow {
            id: peer.requester_id,
            name: format!("federation {}", peer.url),
            created_at_ms: peer.added_at_ms,
        };
        self.record(
            Event::PeerAdded {
                peer: peer.clone(),
                requester,
            },
            out,
        );
        Ok(peer)
    }

    /// Stops lending to a peer; its account stays, with what it owes, and its bridge's tokens
    /// stop working.
    pub(crate) fn remove_peer(
        &mut self,
        id: u64,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<PeerRow, PoolError> {
        let Some(peer) = self.federation.peers.get(&id).cloned() else {
            return Err(PoolError::NotFound(format!(
                "this pool lends to no peer {}; `crowdcloud federation list` shows them",
                wire::PeerId(id)
            )));
        };
        self.revoke_tokens_of(peer.requester_id, now_ms, out);
        self.record(Event::PeerRemoved { id, at_ms: now_ms }, out);
        Ok(peer)
    }

    /// A fresh API token for a peer's bridge to submit as its account, in place of any earlier
    /// one; whether the peer exists.
    pub(crate) fn bridge_token(
        &mut self,
        id: u64,
        token_hash: String,
        now_ms: u64,
        out: &mut Outbox,
    ) -> bool {
        let Some(requester) = self.federation.peers.get(&id).map(|p| p.requester_id) else {
            return false;
        };
        self.revoke_tokens_of(requester, now_ms, out);
        let event = Event::TokenCreated {
            token: TokenRow {
                hash: token_hash,
                role: TokenRole::Requester(requester),
                name: format!("federation bridge {}", wire::PeerId(id)),
                created_at_ms: now_ms,
                revoked_at_ms: None,
            },
            requester: None,
        };
        self.record(event, out);
        true
    }

    fn revoke_tokens_of(&mut self, requester: RequesterId, now_ms: u64, out: &mut Outbox) {
        let mut hashes: Vec<String> = self
            .requester_tokens
            .iter()
            .filter(|(_, r)| **r == requester)
            .map(|(hash, _)| hash.clone())
            .collect();
        hashes.sort();
        for hash in hashes {
            self.record(
                Event::TokenRevoked {
                    hash,
                    at_ms: now_ms,
                },
                out,
            );
        }
    }

    /// Before a federation token is revoked: its nodes leave at once, and their attempts go
    /// back to the queue without counting against their tasks.
    pub(super) fn remove_federated_nodes(
        &mut self,
        token_hash: &str,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        if !self.federation.tokens.contains(token_hash) {
            return;
        }
        let nodes: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|node| node.join_token_hash == token_hash)
            .map(|node| node.id)
            .collect();
        for node in nodes {
            let removed = self.remove_node(node, now_ms, out);
            debug_assert!(removed.is_ok(), "the node was just listed");
        }
    }

    pub(super) fn apply_peer_added(&mut self, peer: &PeerRow) {
        self.federation.accounts.insert(peer.requester_id);
        self.federation.peers.insert(peer.id, peer.clone());
    }

    pub(super) fn apply_peer_removed(&mut self, id: u64) {
        if let Some(peer) = self.federation.peers.remove(&id) {
            self.federation.accounts.remove(&peer.requester_id);
        }
    }
}
