//! Nodes in the pool: registration, liveness, purging the long silent, and what they may read.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use store::NodeRow;
use wire::{BlobHash, Capabilities, JobId, JobRuntime, NodeActivity, NodeId, NodeState, NodeView};

use super::events::{Event, NodeGone};
use super::{Node, Outbox, PoolState};
use crate::pool::leases::Expiry;

/// A node that proved its key and presented a valid join token.
pub(crate) struct NewNode {
    pub(crate) id: NodeId,
    pub(crate) public_key: String,
    pub(crate) token_hash: String,
    pub(crate) name: String,
    pub(crate) capabilities: Capabilities,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) slots: u32,
    pub(crate) agent_version: String,
    /// The hash of the join token it registered with.
    pub(crate) join_token_hash: String,
    /// The network it registered from (see [`network_of`]).
    pub(crate) network: Option<String>,
}

impl PoolState {
    /// Registers a node, or re-registers one that restarted: a new registration starts a new
    /// session, so the attempts of the old one are lost (their work died with the old process)
    /// and its old token stops working.
    pub(crate) fn register(&mut self, new: NewNode, now_ms: u64, out: &mut Outbox) {
        if self.nodes.contains_key(&new.id) {
            self.expire_node(new.id, now_ms, Expiry::Restarted, out);
            let event = Event::NodeGone {
                node: new.id,
                why: NodeGone::Restarted,
                at_ms: now_ms,
            };
            self.record(event, out);
        }
        let node = NodeRow {
            id: new.id,
            public_key: new.public_key,
            token_hash: new.token_hash,
            name: new.name,
            capabilities: new.capabilities,
            labels: new.labels,
            slots: new.slots,
            agent_version: new.agent_version,
            join_token_hash: Some(new.join_token_hash),
            network: new.network,
            seen_at_ms: now_ms,
            registered_at_ms: now_ms,
        };
        self.record(Event::NodeRegistered { node }, out);
    }

    pub(crate) fn insert_node_row(&mut self, row: NodeRow, now_ms: u64) {
        self.node_tokens.insert(row.token_hash.clone(), row.id);
        // Nodes from before join tokens were recorded count under no token.
        let join_token_hash = row.join_token_hash.unwrap_or_default();
        self.node_counts.count_node(&join_token_hash);
        self.node_counts.live_nodes += 1;
        let labels_sorted = row
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.nodes.insert(
            row.id,
            Node {
                id: row.id,
                public_key: row.public_key,
                name: row.name,
                token_hash: row.token_hash,
                capabilities: row.capabilities,
                labels: row.labels,
                labels_sorted,
                slots: row.slots,
                agent_version: row.agent_version,
                activity: NodeActivity::Active,
                // A restored node gets one lease term to come back before its attempts expire.
                lease_until_ms: now_ms + self.lease_term_ms(),
                last_seen_ms: now_ms,
                heard_ms: row.seen_at_ms,
                heard_stored_ms: row.seen_at_ms,
                owner: owner_key(&join_token_hash),
                network: row.network.as_deref().and_then(network_key),
                join_token_hash,
                counted_live: true,
                silent: false,
                running: BTreeSet::new(),
                pauses: super::PauseClock::default(),
                tasks_succeeded: 0,
                jobs_sent: HashSet::new(),
            },
        );
    }

    /// Forgets, in memory and in the store, up to `nodes_max` nodes not heard from since
    /// `heard_before_ms` that hold no attempts; returns how many. Such a node that comes back
    /// registers again, as a new node of its join token.
    pub(crate) fn purge_silent_nodes(
        &mut self,
        now_ms: u64,
        heard_before_ms: u64,
        nodes_max: usize,
        out: &mut Outbox,
    ) -> usize {
        let mut silent: Vec<(u64, NodeId)> = self
            .nodes
            .values()
            .filter(|node| node.heard_ms < heard_before_ms && node.running.is_empty())
            .map(|node| (node.heard_ms, node.id))
            .collect();
        // The longest silent first, ties by id: the same nodes go, in the same order, in every
        // run.
        silent.sort_unstable();
        silent.truncate(nodes_max);
        let silent: Vec<NodeId> = silent.into_iter().map(|(_, node_id)| node_id).collect();
        for &node in &silent {
            let event = Event::NodeGone {
                node,
                why: NodeGone::Silent,
                at_ms: now_ms,
            };
            self.record(event, out);
        }
        silent.len()
    }

    /// Writes when nodes were last heard from, for those heard from at least `every_ms` after
    /// the time the store holds (up to `nodes_max` of them), so that silence is measured across
    /// restarts while a heartbeat never costs a write.
    pub(crate) fn store_heard(&mut self, every_ms: u64, nodes_max: usize, out: &mut Outbox) {
        let mut due: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|node| node.heard_ms >= node.heard_stored_ms.saturating_add(every_ms))
            .map(|node| node.id)
            .collect();
        // In id order: the write, and the nodes a full round leaves to the next, are the same in
        // every run.
        due.sort_unstable();
        due.truncate(nodes_max);
        let nodes: Vec<(NodeId, u64)> = due
            .into_iter()
            .map(|node_id| (node_id, self.nodes[&node_id].heard_ms))
            .collect();
        if !nodes.is_empty() {
            self.record(Event::NodesHeardStored { nodes }, out);
        }
    }

    pub(crate) fn list_nodes(&self, now_ms: u64) -> Vec<NodeView> {
        let mut views: Vec<NodeView> = self
            .nodes
            .values()
            .map(|node| {
                let (state, state_reason) = if node.lease_until_ms <= now_ms {
                    (NodeState::Offline, None)
                } else {
                    match &node.activity {
                        NodeActivity::Active => (NodeState::Online, None),
                        NodeActivity::Draining => (NodeState::Draining, None),
                        NodeActivity::Paused { reason } => {
                            (NodeState::Paused, Some(reason.clone()))
                        }
                    }
                };
                NodeView {
                    node_id: node.id,
                    public_key: node.public_key.clone(),
                    name: node.name.clone(),
                    state,
                    state_reason,
                    slots: node.slots,
                    running: node.running.len() as u32,
                    capabilities: node.capabilities.clone(),
                    labels: node.labels.clone(),
                    last_seen_ms_ago: now_ms.saturating_sub(node.last_seen_ms),
                    tasks_succeeded: node.tasks_succeeded,
                    agent_version: node.agent_version.clone(),
                    standing: self.standing_of(node.id),
                }
            })
            .collect();
        views.sort_by(|a, b| a.name.cmp(&b.name).then(a.node_id.cmp(&b.node_id)));
        views
    }

    /// Every node as the scheduler's `explain` sees it.
    pub(crate) fn all_node_offers(&self) -> Vec<scheduler::NodeOffer<'_>> {
        self.nodes
            .values()
            .map(|node| {
                let running = node.running.len() as u32;
                let taking_work = node.activity == NodeActivity::Active;
                node_offer(
                    node,
                    if taking_work {
                        node.slots.saturating_sub(running)
                    } else {
                        0
                    },
                )
            })
            .collect()
    }

    /// A node may read the blobs of the attempts it holds (the checkpoints their tasks resume
    /// from too), and nothing else.
    pub(crate) fn node_may_read(&self, node_id: NodeId, hash: &BlobHash) -> bool {
        let Some(node) = self.nodes.get(&node_id) else {
            return false;
        };
        node.running.iter().any(|attempt_id| {
            let Some(attempt) = self.attempts.get(attempt_id) else {
                return false;
            };
            let Some(job) = self.jobs.get(&attempt.job) else {
                return false;
            };
            if job.shared_blobs.contains(hash) {
                return true;
            }
            let task = &job.tasks[attempt.task as usize];
            if task
                .resume_point()
                .is_some_and(|latest| &latest.hash == hash)
            {
                return true;
            }
            task.spec.as_ref().is_some_and(|spec| {
                spec.stdin.as_ref() == Some(hash)
                    || spec.inputs.iter().any(|input| &input.blob == hash)
            })
        })
    }

    /// A job's runtime, for a node that holds one of its attempts.
    pub(crate) fn job_runtime_for_node(
        &self,
        node_id: NodeId,
        job_id: JobId,
    ) -> Option<JobRuntime> {
        let node = self.nodes.get(&node_id)?;
        let holds = node.running.iter().any(|attempt_id| {
            self.attempts
                .get(attempt_id)
                .is_some_and(|a| a.job == job_id)
        });
        holds.then(|| {
            self.jobs
                .get(&job_id)
                .map(|job| self.runtime_sent(job, node_id))
        })?
    }
}

/// What a node can take now. Whatever the node asks for, it gets no more than the slots it
/// registered less the attempts it holds.
pub(crate) fn node_offer(node: &Node, slots_asked: u32) -> scheduler::NodeOffer<'_> {
    let slots_left = node.slots.saturating_sub(node.running.len() as u32);
    scheduler::NodeOffer {
        node: node.id.0,
        slots_free: slots_asked.min(slots_left),
        slots_total: node.slots,
        running: node.running.len() as u32,
        cores: node.capabilities.cores,
        memory_bytes: node.capabilities.memory_bytes,
        module_bytes_max: node.capabilities.module_bytes_max,
        takes_components: !node.capabilities.wasi_interfaces.is_empty(),
        browser: node.capabilities.runtime == wire::NodeRuntime::Browser,
        wasm_features: said_features(&node.capabilities),
        arch: &node.capabilities.arch,
        os: &node.capabilities.os,
        labels: &node.labels_sorted,
        lease_until_ms: node.lease_until_ms,
        owner: node.owner,
        network: node.network,
    }
}

/// The network a node connects from, as replicas are kept apart by: its IPv4 /24, or its IPv6
/// /48 (an IPv4 address mapped into IPv6 counts as IPv4), written as `203.0.113.0/24`.
pub(crate) fn network_of(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{}/24", Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let [a, b, c, ..] = v6.segments();
            format!("{}/48", Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0))
        }
    }
}

/// The scheduler's key for a network as [`network_of`] writes it: its prefix's bits and its
/// family, so no two networks share a key.
fn network_key(network: &str) -> Option<u64> {
    match network.split_once('/')? {
        (prefix, "24") => {
            let v4: Ipv4Addr = prefix.parse().ok()?;
            Some((4 << 32) | u64::from(v4.to_bits() >> 8))
        }
        (prefix, "48") => {
            let v6: Ipv6Addr = prefix.parse().ok()?;
            Some((6 << 48) | (v6.to_bits() >> 80) as u64)
        }
        _ => None,
    }
}

/// The scheduler's key for whoever brought a node: the first 64 bits of its join token's hash.
/// It names the owner's credit accounts too.
pub(crate) fn owner_key(join_token_hash: &str) -> Option<u64> {
    u64::from_str_radix(join_token_hash.get(..16)?, 16).ok()
}

/// The proposals a node compiles, or `None` if its agent did not say (taken as all).
pub(crate) fn said_features(capabilities: &wire::Capabilities) -> Option<&[String]> {
    (!capabilities.wasm_features.is_empty()).then_some(&capabilities.wasm_features[..])
}

#[cfg(test)]
mod network_tests {
    use super::*;

    #[test]
    fn a_network_is_the_v4_slash_24_or_the_v6_slash_48_and_keys_tell_them_apart() {
        let of = |ip: &str| network_of(ip.parse().unwrap());
        assert_eq!(of("203.0.113.77"), "203.0.113.0/24");
        assert_eq!(
            of("::ffff:203.0.113.9"),
            "203.0.113.0/24",
            "mapped v4 is v4"
        );
        assert_eq!(of("2001:db8:abcd:12::1"), "2001:db8:abcd::/48");
        assert_eq!(of("127.0.0.1"), of("127.0.0.200"));
        let key = |ip: &str| network_key(&of(ip)).unwrap();
        assert_eq!(key("198.51.100.1"), key("198.51.100.254"));
        assert_ne!(key("198.51.100.1"), key("198.51.101.1"));
        assert_ne!(key("0.0.0.1"), key("::1"), "families never share a key");
        assert_eq!(
            network_key("10.0.0.0/8"),
            None,
            "only the prefixes written here"
        );
        assert_eq!(network_key("not a network"), None);
    }
}
