//! Intermediates fetched node to node: in a pipeline with `locality = "nodes"`, which nodes
//! hold which outputs of its stages, the tickets a grant carries to fetch them there, and the
//! choice of tasks for a node by the bytes of their inputs it holds.
//!
//! Holders are a hint, not a copy of record: every output is in the coordinator's blob store
//! before its report is taken, as in any job, and a node that finds no holder answering
//! fetches from there. So the holders live only in memory (events make them, a restart starts
//! without), a node's entries go with the node, and a pipeline's with its end.
//!
//! Invariants:
//! - A blob has 1 to [`HOLDERS_PER_BLOB_MAX`] holders, newest last, each named once.
//! - At most [`PEER_BLOBS_MAX`] blobs are tracked; past that, new ones are fetched from the
//!   coordinator.

use std::collections::HashMap;

use store::AttemptEnd;
use wire::peer::{HOLDERS_PER_BLOB_MAX, TICKET_TTL_MS, ticket, ticket_key};
use wire::{BlobHash, JobId, Locality, NodeId, PeerBlob, PeerHolder, PipelineId, TaskSpec};

use super::events::Event;
use super::{Outbox, PoolState};

/// Blobs whose holders the pool tracks, at most.
pub(crate) const PEER_BLOBS_MAX: usize = 1 << 20;

/// Pending tasks a node's grant is chosen from by the bytes it holds: the front of the
/// queue, so a task no node holds anything of still starts soon.
const PLACEMENT_WINDOW: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PeerHolders {
    blobs: HashMap<BlobHash, Holders>,
    by_pipeline: HashMap<PipelineId, Vec<BlobHash>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Holders {
    size_bytes: u64,
    nodes: Vec<NodeId>,
}

/// What a job's stage does with nodes' copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StagePeers {
    pub(crate) pipeline: PipelineId,
    /// A later stage reads its outputs.
    pub(crate) holds: bool,
    /// It reads an earlier stage's outputs.
    pub(crate) reads: bool,
}

impl PoolState {
    /// How `job` takes part in fetching node to node; `None` outside a pipeline with
    /// `locality = "nodes"`.
    pub(crate) fn stage_peers(&self, job: JobId) -> Option<StagePeers> {
        let (row, index) = self.pipelines.stage_of_job(job)?;
        if row.locality != Locality::Nodes {
            return None;
        }
        let name = &row.stages[index].name;
        let holds = row.stages[index + 1..]
            .iter()
            .any(|stage| stage.input.as_ref().is_some_and(|i| i.stage() == name));
        let reads = row.stages[index].input.is_some();
        Some(StagePeers {
            pipeline: row.id,
            holds,
            reads,
        })
    }

    /// Records that `node_id` now holds the blobs the succeeded attempt `end` left in its
    /// cache: the outputs it made, when a later stage reads them, and the inputs it fetched
    /// that peers hold, so that copies spread as consumers fetch them.
    pub(crate) fn hold_after_success(
        &mut self,
        node_id: NodeId,
        end: &AttemptEnd,
        out: &mut Outbox,
    ) {
        let Some(stage) = self.stage_peers(end.job_id) else {
            return;
        };
        let serves = self
            .nodes
            .get(&node_id)
            .is_some_and(|node| node.capabilities.peer_address.is_some());
        if !serves || !end.outcome.as_ref().is_some_and(wire::Outcome::is_success) {
            return;
        }
        let mut blobs: Vec<(BlobHash, u64)> = Vec::new();
        if stage.holds {
            blobs.extend(end.outputs.iter().map(|file| (file.hash, file.size_bytes)));
        }
        let task = &self.jobs[&end.job_id].tasks[end.task_index as usize];
        if stage.reads
            && let Some(spec) = &task.spec
        {
            let held = spec.inputs.iter().filter_map(|input| {
                let holders = self.peers.blobs.get(&input.blob)?;
                Some((input.blob, holders.size_bytes))
            });
            blobs.extend(held);
        }
        blobs.sort_unstable();
        blobs.dedup_by_key(|(hash, _)| *hash);
        if !blobs.is_empty() {
            let event = Event::BlobsHeld {
                node: node_id,
                pipeline: stage.pipeline,
                blobs,
            };
            self.record(event, out);
        }
    }

    /// Where `node_id` can fetch the inputs of `spec` that other live nodes hold, with
    /// tickets good for [`TICKET_TTL_MS`] from `now_ms`.
    pub(crate) fn peers_for(&self, node_id: NodeId, spec: &TaskSpec, now_ms: u64) -> Vec<PeerBlob> {
        if self.peers.blobs.is_empty() {
            return Vec::new();
        }
        let expires_at_ms = now_ms.saturating_add(TICKET_TTL_MS);
        let mut peers: Vec<PeerBlob> = Vec::new();
        for input in &spec.inputs {
            let Some(holders) = self.peers.blobs.get(&input.blob) else {
                continue;
            };
            if peers.iter().any(|peer| peer.hash == input.blob) {
                continue;
            }
            let live = holders
                .nodes
                .iter()
                .rev()
                .filter(|holder| **holder != node_id);
            let holders: Vec<PeerHolder> = live
                .filter_map(|holder| self.nodes.get(holder))
                .filter(|holder| !holder.silent && holder.lease_until_ms > now_ms)
                .filter_map(|holder| {
                    let address = holder.capabilities.peer_address.clone()?;
                    let key = ticket_key(&holder.token_hash);
                    Some(PeerHolder {
                        address,
                        expires_at_ms,
                        ticket: ticket(&key, &input.blob, expires_at_ms),
                    })
                })
                .collect();
            if !holders.is_empty() {
                peers.push(PeerBlob {
                    hash: input.blob,
                    size_bytes: self.peers.blobs[&input.blob].size_bytes,
                    holders,
                });
            }
        }
        peers
    }

    /// Up to `count` of `candidates` (pending tasks of `job`, in queue order) for `node_id`:
    /// those whose inputs it holds the most bytes of first, among the front of the queue; in
    /// queue order for a job that fetches nothing node to node.
    pub(crate) fn placed_by_bytes(
        &self,
        node_id: NodeId,
        job: JobId,
        candidates: impl Iterator<Item = u32>,
        count: usize,
    ) -> Vec<u32> {
        let reads =
            !self.peers.blobs.is_empty() && self.stage_peers(job).is_some_and(|stage| stage.reads);
        if !reads {
            return candidates.take(count).collect();
        }
        let tasks = &self.jobs[&job].tasks;
        let mut scored: Vec<(u64, usize, u32)> = candidates
            .take(PLACEMENT_WINDOW.max(count))
            .enumerate()
            .map(|(order, index)| {
                let spec = tasks[index as usize].spec.as_ref();
                (self.bytes_held(node_id, spec), order, index)
            })
            .collect();
        // Most bytes first; the queue's order among equals.
        scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        scored
            .into_iter()
            .take(count)
            .map(|(_, _, index)| index)
            .collect()
    }

    /// Bytes of `spec`'s inputs that `node_id` holds.
    fn bytes_held(&self, node_id: NodeId, spec: Option<&TaskSpec>) -> u64 {
        let Some(spec) = spec else {
            return 0;
        };
        spec.inputs
            .iter()
            .filter_map(|input| self.peers.blobs.get(&input.blob))
            .filter(|holders| holders.nodes.contains(&node_id))
            .fold(0u64, |bytes, holders| {
                bytes.saturating_add(holders.size_bytes)
            })
    }

    pub(super) fn apply_blobs_held(
        &mut self,
        node: NodeId,
        pipeline: PipelineId,
        blobs: &[(BlobHash, u64)],
    ) {
        let peers = &mut self.peers;
        for (hash, size_bytes) in blobs {
            if let Some(holders) = peers.blobs.get_mut(hash) {
                holders.nodes.retain(|holder| *holder != node);
                if holders.nodes.len() == HOLDERS_PER_BLOB_MAX {
                    holders.nodes.remove(0);
                }
                holders.nodes.push(node);
            } else if peers.blobs.len() < PEER_BLOBS_MAX {
                let holders = Holders {
                    size_bytes: *size_bytes,
                    nodes: vec![node],
                };
                peers.blobs.insert(*hash, holders);
                peers.by_pipeline.entry(pipeline).or_default().push(*hash);
            }
        }
    }

    /// A node that left holds nothing any more.
    pub(super) fn forget_holder(&mut self, node: NodeId) {
        self.peers.blobs.retain(|_, holders| {
            holders.nodes.retain(|holder| *holder != node);
            !holders.nodes.is_empty()
        });
    }

    /// An ended pipeline's intermediates are read no more.
    pub(super) fn forget_pipeline_blobs(&mut self, pipeline: PipelineId) {
        for hash in self.peers.by_pipeline.remove(&pipeline).unwrap_or_default() {
            self.peers.blobs.remove(&hash);
        }
    }

    #[cfg(any(test, debug_assertions))]
    pub(super) fn check_peers(&self) {
        for (hash, holders) in &self.peers.blobs {
            let count = holders.nodes.len();
            assert!(
                (1..=HOLDERS_PER_BLOB_MAX).contains(&count),
                "holders of {hash}"
            );
        }
        assert!(self.peers.blobs.len() <= PEER_BLOBS_MAX);
    }
}
