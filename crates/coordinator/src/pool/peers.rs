//! Intermediates on nodes: in a pipeline with `locality = "nodes"`, which nodes hold which
//! outputs of its stages, the tickets a grant carries to fetch them there, the copies the pool
//! asks nodes to make, the choice of tasks for a node by the bytes of their inputs it holds,
//! and the tasks that run again when every copy of what they made is gone.
//!
//! Two kinds of blob are tracked. A *kept* blob exists only on nodes: a node with a peer
//! listener made it and did not upload it. Its task and the copies its pipeline wants are
//! written to the store (`kept_blobs`), its holders are not: a coordinator that starts again
//! knows no holder. For two lease terms it asks every node that serves peers to name the kept
//! blobs it holds (the *census*), and runs no task again; what nobody named by then is lost,
//! and its task runs again. A node that finds it no longer has a blob it held (its disk lost
//! it) says so at its next heartbeat, and holds it no more. A *hint* is a blob the
//! coordinator's store has too, which some nodes hold (a node without a peer listener uploaded
//! it, or a node fetched it): a node that finds no holder answering fetches it from the
//! coordinator, so hints live only in memory.
//!
//! Invariants:
//! - A blob has at most [`HOLDERS_PER_BLOB_MAX`] holders, each named once; a hint has at least
//!   one, a kept blob may have none (it is lost).
//! - A kept blob without holders names a task in `lost`, or one running again since.
//! - `short` holds exactly the kept blobs that have a holder and fewer than their pipeline
//!   wants: copy orders are chosen from it, so a heartbeat reads none of the others.
//! - At most [`PEER_BLOBS_MAX`] blobs are tracked; past that, outputs go to the coordinator as
//!   in any job (see [`PoolState::keeps_outputs`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use store::{AttemptEnd, KeptRow};
use wire::peer::{
    COPIES_PER_HEARTBEAT_MAX, HOLDERS_PER_BLOB_MAX, RELEASES_PER_HEARTBEAT_MAX, TICKET_TTL_MS,
    ticket, ticket_key,
};
use wire::{BlobHash, JobId, Locality, NodeId, PeerBlob, PeerHolder, PipelineId, TaskSpec};

use super::events::Event;
use super::{Outbox, PoolState};

/// A blob and its size in bytes.
type SizedBlob = (BlobHash, u64);

/// Blobs whose holders the pool tracks, at most.
pub(crate) const PEER_BLOBS_MAX: usize = 1 << 20;

/// Pending tasks a node's grant is chosen from by the bytes it holds: the front of the
/// queue, so a task no node holds anything of still starts soon.
const PLACEMENT_WINDOW: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PeerHolders {
    blobs: HashMap<BlobHash, Holders>,
    by_pipeline: HashMap<PipelineId, Vec<BlobHash>>,
    /// Each task's kept blobs, in order: copies are chosen from it the same way in every run.
    by_task: BTreeMap<(JobId, u32), Vec<BlobHash>>,
    /// Tasks whose kept blobs lost every holder: they run again.
    lost: BTreeSet<(JobId, u32)>,
    /// Copies asked for and not yet made: the node asked, and until when the order stands.
    ordered: HashMap<BlobHash, (NodeId, u64)>,
    /// Kept blobs each node may drop, told at its next heartbeats.
    releases: HashMap<NodeId, Vec<BlobHash>>,
    /// How many blobs each node holds, of those above.
    holding: HashMap<NodeId, u32>,
    /// Kept blobs with a holder and fewer than their pipeline wants, by their task.
    short: BTreeSet<(JobId, u32, BlobHash)>,
    /// Until when nodes are asked to name the kept blobs they hold, after a start, and no lost
    /// task runs again: nodes keep their leases through a restart, so each live one is asked
    /// and answers before then.
    census_until_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Holders {
    size_bytes: u64,
    pipeline: PipelineId,
    nodes: Vec<NodeId>,
    /// Set when only nodes have the blob.
    kept: Option<Kept>,
}

/// A blob only nodes have: the task that made it, and the copies its pipeline wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kept {
    job: JobId,
    task: u32,
    copies: u32,
}

/// What a job's stage does with nodes' copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StagePeers {
    pub(crate) pipeline: PipelineId,
    /// A later stage reads its outputs.
    pub(crate) holds: bool,
    /// It reads an earlier stage's outputs.
    pub(crate) reads: bool,
    /// Copies of each kept output besides its maker's.
    pub(crate) copies: u32,
}

impl PeerHolders {
    /// The kept blobs as stored at a start at `now_ms`, with no holder known: every one is
    /// lost unless a node names it within two lease terms (one heartbeat is asked, a later
    /// one answers).
    pub(crate) fn load(rows: &[KeptRow], now_ms: u64, lease_term_ms: u64) -> PeerHolders {
        let census_ms = if rows.is_empty() {
            0
        } else {
            2 * lease_term_ms
        };
        let mut peers = PeerHolders {
            census_until_ms: now_ms.saturating_add(census_ms),
            ..PeerHolders::default()
        };
        for row in rows {
            let kept = Kept {
                job: row.job_id,
                task: row.task_index,
                copies: row.copies,
            };
            let holders = Holders {
                size_bytes: row.size_bytes,
                pipeline: row.pipeline_id,
                nodes: Vec::new(),
                kept: Some(kept),
            };
            peers.blobs.insert(row.hash, holders);
            peers
                .by_pipeline
                .entry(row.pipeline_id)
                .or_default()
                .push(row.hash);
            peers
                .by_task
                .entry((row.job_id, row.task_index))
                .or_default()
                .push(row.hash);
            peers.lost.insert((row.job_id, row.task_index));
        }
        peers
    }
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
            copies: row.copies,
        })
    }

    /// Whether `node`'s outputs of `job` may stay on it, not uploaded: a later stage reads
    /// them, the node serves peers, the pool has room to track them, and its nodes are its
    /// owner's own. A stranger's node could say it keeps a blob it does not serve, and stall
    /// the tasks that read it for as long as it keeps its lease: in a public pool, outputs
    /// go to the coordinator, and nodes serve copies of them besides.
    pub(crate) fn keeps_outputs(&self, job: JobId, node: NodeId) -> bool {
        self.verifying.trust == wire::Trust::Family
            && self.peers.blobs.len() < PEER_BLOBS_MAX
            && self.serves_peers(node)
            && self.stage_peers(job).is_some_and(|stage| stage.holds)
    }

    /// Whether `node` fetches from other nodes: a native agent of this pool (a browser tab
    /// or another pool cannot reach this pool's nodes).
    fn fetches_from_peers(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|n| {
            n.capabilities.runtime == wire::NodeRuntime::Native && !self.is_federated(n)
        })
    }

    fn serves_peers(&self, node: NodeId) -> bool {
        self.nodes
            .get(&node)
            .is_some_and(|node| node.capabilities.peer_address.is_some())
    }

    /// Records what the succeeded attempt `end` left on `node_id`, before its end is applied
    /// (which drops the attempt's uploads): the outputs it kept (the ones it did not upload),
    /// and the blobs that peers hold which it now holds too: uploaded outputs a later stage
    /// reads, and inputs it fetched.
    pub(crate) fn hold_after_success(
        &mut self,
        node_id: NodeId,
        end: &AttemptEnd,
        out: &mut Outbox,
    ) {
        let Some(stage) = self
            .stage_peers(end.job_id)
            .filter(|_| end.state == store::AttemptEndState::Succeeded)
        else {
            return;
        };
        let uploads = self.uploads.get(&end.attempt_id);
        let (uploaded, mut kept): (Vec<SizedBlob>, Vec<SizedBlob>) = end
            .outputs
            .iter()
            .map(|file| (file.hash, file.size_bytes))
            .partition(|(hash, _)| uploads.is_some_and(|uploads| uploads.contains_key(hash)));
        kept.sort_unstable();
        kept.dedup();
        let made_before = self.peers.by_task.get(&(end.job_id, end.task_index));
        let made_now = |hash: &BlobHash| end.outputs.iter().any(|output| output.hash == *hash);
        if made_before.is_some_and(|before| before.iter().any(|hash| !made_now(hash))) {
            tracing::warn!(job = %end.job_id, task = end.task_index, "a task made again made other bytes than before; the tasks that read its earlier outputs will fail: make it deterministic, or run the pipeline with locality = \"coordinator\"");
        }
        if !kept.is_empty() {
            let event = Event::OutputsKept {
                node: node_id,
                pipeline: stage.pipeline,
                job: end.job_id,
                task: end.task_index,
                blobs: kept,
                copies: stage.copies,
            };
            self.record(event, out);
        }
        self.unkeep_uploaded(&uploaded, out);
        if !self.serves_peers(node_id) {
            return;
        }
        let mut blobs: Vec<(BlobHash, u64)> = Vec::new();
        if stage.holds {
            blobs.extend(uploaded);
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
        self.record_held(node_id, stage.pipeline, blobs, out);
    }

    /// Kept blobs among `uploaded` (a node that keeps nothing made them again) are in the
    /// coordinator's store now: kept no more, told per task that made them.
    fn unkeep_uploaded(&mut self, uploaded: &[SizedBlob], out: &mut Outbox) {
        let mut by_maker: BTreeMap<(JobId, u32), Vec<BlobHash>> = BTreeMap::new();
        for (hash, _) in uploaded {
            if let Some(kept) = self.peers.blobs.get(hash).and_then(|holders| holders.kept) {
                by_maker
                    .entry((kept.job, kept.task))
                    .or_default()
                    .push(*hash);
            }
        }
        for ((job, task), blobs) in by_maker {
            self.record(Event::KeptUploaded { job, task, blobs }, out);
        }
    }

    /// Records that `node_id` holds `blobs` of `pipeline`, if any.
    fn record_held(
        &mut self,
        node_id: NodeId,
        pipeline: PipelineId,
        mut blobs: Vec<(BlobHash, u64)>,
        out: &mut Outbox,
    ) {
        blobs.sort_unstable();
        blobs.dedup_by_key(|(hash, _)| *hash);
        if !blobs.is_empty() {
            let event = Event::BlobsHeld {
                node: node_id,
                pipeline,
                blobs,
            };
            self.record(event, out);
        }
    }

    /// A heartbeat's word of the copies `node_id` made: those it was asked for count.
    pub(crate) fn copies_made(&mut self, node_id: NodeId, copied: &[BlobHash], out: &mut Outbox) {
        let asked = |hash: &&BlobHash| {
            self.peers
                .ordered
                .get(*hash)
                .is_some_and(|(node, _)| *node == node_id)
        };
        let copied: Vec<BlobHash> = copied.iter().filter(asked).copied().collect();
        self.record_held_of(node_id, &copied, |_| true, out);
    }

    /// Records that `node_id` holds the tracked blobs among `hashes` that `counts` takes,
    /// pipeline by pipeline; how many.
    fn record_held_of(
        &mut self,
        node_id: NodeId,
        hashes: &[BlobHash],
        counts: impl Fn(&Holders) -> bool,
        out: &mut Outbox,
    ) -> usize {
        let mut by_pipeline: BTreeMap<PipelineId, Vec<(BlobHash, u64)>> = BTreeMap::new();
        for hash in hashes {
            if let Some(holders) = self.peers.blobs.get(hash).filter(|h| counts(h)) {
                let blob = (*hash, holders.size_bytes);
                by_pipeline.entry(holders.pipeline).or_default().push(blob);
            }
        }
        let count = by_pipeline.values().map(Vec::len).sum();
        for (pipeline, blobs) in by_pipeline {
            self.record_held(node_id, pipeline, blobs, out);
        }
        count
    }

    /// Whether nodes are to name the kept blobs they hold: the coordinator started again less
    /// than two lease terms ago with kept blobs, and some kept blob has no holder known.
    pub(crate) fn census_open(&self, now_ms: u64) -> bool {
        now_ms < self.peers.census_until_ms && !self.peers.lost.is_empty()
    }

    /// Whether `node_id`'s heartbeat answer asks it to name the kept blobs it holds.
    pub(crate) fn asks_to_name_kept(&self, node_id: NodeId, now_ms: u64) -> bool {
        self.census_open(now_ms) && self.serves_peers(node_id)
    }

    /// A heartbeat's census answer: the kept blobs among `named` count as held by `node_id`.
    /// Heard only while the census is open, from a node that serves peers; a hash the pool
    /// does not track as kept is ignored.
    pub(crate) fn kept_named(
        &mut self,
        node_id: NodeId,
        named: &[BlobHash],
        now_ms: u64,
        out: &mut Outbox,
    ) {
        if named.is_empty() || !self.asks_to_name_kept(node_id, now_ms) {
            return;
        }
        let count = self.record_held_of(node_id, named, |h| h.kept.is_some(), out);
        tracing::info!(node = %node_id, blobs = count, "kept blobs named after a start");
    }

    /// A heartbeat's word of blobs `node_id` no longer has: of those it holds, it holds them
    /// no more.
    pub(crate) fn blobs_dropped(
        &mut self,
        node_id: NodeId,
        dropped: &[BlobHash],
        out: &mut Outbox,
    ) {
        let mut blobs: Vec<BlobHash> = dropped
            .iter()
            .filter(|hash| {
                self.peers
                    .blobs
                    .get(*hash)
                    .is_some_and(|holders| holders.nodes.contains(&node_id))
            })
            .copied()
            .collect();
        blobs.sort_unstable();
        blobs.dedup();
        if !blobs.is_empty() {
            tracing::warn!(node = %node_id, blobs = blobs.len(), "a node lost blobs it kept for peers");
            self.record(
                Event::BlobsDropped {
                    node: node_id,
                    blobs,
                },
                out,
            );
        }
    }

    /// Copies for `node_id` to make now, at most [`COPIES_PER_HEARTBEAT_MAX`]: kept blobs
    /// short of their copies that it does not hold and nobody is making, fetched from their
    /// holders with tickets; recorded as ordered until the tickets expire.
    pub(crate) fn copies_for(
        &mut self,
        node_id: NodeId,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Vec<PeerBlob> {
        if self.peers.short.is_empty() || !self.serves_peers(node_id) {
            return Vec::new();
        }
        let ordered = |hash: &BlobHash| {
            self.peers
                .ordered
                .get(hash)
                .is_some_and(|(_, until_ms)| *until_ms > now_ms)
        };
        let wanted: Vec<BlobHash> = self
            .peers
            .short
            .iter()
            .map(|(_, _, hash)| hash)
            .filter(|hash| !self.peers.blobs[*hash].nodes.contains(&node_id) && !ordered(hash))
            .take(COPIES_PER_HEARTBEAT_MAX)
            .copied()
            .collect();
        let orders: Vec<PeerBlob> = wanted
            .iter()
            .filter_map(|hash| self.peer_blob(node_id, hash, now_ms))
            .collect();
        if !orders.is_empty() {
            let event = Event::CopiesOrdered {
                node: node_id,
                blobs: orders.iter().map(|order| order.hash).collect(),
                until_ms: now_ms.saturating_add(TICKET_TTL_MS),
            };
            self.record(event, out);
        }
        orders
    }

    /// Kept blobs `node_id` may drop now, at most [`RELEASES_PER_HEARTBEAT_MAX`].
    pub(crate) fn releases_for(&mut self, node_id: NodeId, out: &mut Outbox) -> Vec<BlobHash> {
        let Some(releases) = self.peers.releases.get(&node_id) else {
            return Vec::new();
        };
        let count = releases.len().min(RELEASES_PER_HEARTBEAT_MAX);
        let sent = releases[..count].to_vec();
        let event = Event::ReleasesSent {
            node: node_id,
            count: count as u32,
        };
        self.record(event, out);
        sent
    }

    /// Where `node_id` can fetch the inputs of `spec` that other live nodes hold and it does
    /// not, with tickets good for [`TICKET_TTL_MS`] from `now_ms`.
    pub(crate) fn peers_for(&self, node_id: NodeId, spec: &TaskSpec, now_ms: u64) -> Vec<PeerBlob> {
        if self.peers.blobs.is_empty() {
            return Vec::new();
        }
        let mut peers: Vec<PeerBlob> = Vec::new();
        for input in &spec.inputs {
            let held_here = self
                .peers
                .blobs
                .get(&input.blob)
                .is_some_and(|h| h.nodes.contains(&node_id));
            if held_here || peers.iter().any(|peer| peer.hash == input.blob) {
                continue;
            }
            peers.extend(self.peer_blob(node_id, &input.blob, now_ms));
        }
        peers
    }

    /// The live holders of `hash` other than `node_id`, newest first, each with a ticket.
    fn peer_blob(&self, node_id: NodeId, hash: &BlobHash, now_ms: u64) -> Option<PeerBlob> {
        let holders = self.peers.blobs.get(hash)?;
        let expires_at_ms = now_ms.saturating_add(TICKET_TTL_MS);
        let named: Vec<PeerHolder> = holders
            .nodes
            .iter()
            .rev()
            .filter(|holder| **holder != node_id)
            .filter_map(|holder| self.answering(*holder, now_ms))
            .map(|(holder, address)| {
                let key = ticket_key(&holder.token_hash);
                PeerHolder {
                    address: address.to_owned(),
                    expires_at_ms,
                    ticket: ticket(&key, hash, expires_at_ms),
                }
            })
            .collect();
        (!named.is_empty()).then_some(PeerBlob {
            hash: *hash,
            size_bytes: holders.size_bytes,
            holders: named,
        })
    }

    /// `holder` and its peer address, if it may answer a fetch at `now_ms`: heard from within
    /// its lease and not silent. Grants name only such holders, and placement counts only
    /// them, so a task is placed only where its grant can name where its inputs are.
    fn answering(&self, holder: NodeId, now_ms: u64) -> Option<(&super::Node, &str)> {
        let node = self.nodes.get(&holder)?;
        let address = node.capabilities.peer_address.as_deref()?;
        (!node.silent && node.lease_until_ms > now_ms).then_some((node, address))
    }

    /// Up to `count` of `candidates` (pending tasks of `job`, in queue order) for `node_id`:
    /// those whose inputs it holds the most bytes of first, among the front of the queue, and
    /// none that reads a kept blob every copy of which is gone (its maker runs again first);
    /// in queue order for a job that fetches nothing node to node.
    pub(crate) fn placed_by_bytes(
        &self,
        (node_id, now_ms): (NodeId, u64),
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
            .filter_map(|(order, index)| {
                let spec = tasks[index as usize].spec.as_ref();
                let bytes = self.bytes_held((node_id, now_ms), spec)?;
                Some((bytes, order, index))
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

    /// Bytes of `spec`'s inputs that `node_id` holds; `None` when one of them is a kept blob
    /// no live node holds, or that the node cannot fetch from its holders.
    fn bytes_held(&self, (node_id, now_ms): (NodeId, u64), spec: Option<&TaskSpec>) -> Option<u64> {
        let Some(spec) = spec else {
            return Some(0);
        };
        let live = |holder: &NodeId| self.answering(*holder, now_ms).is_some();
        let mut bytes = 0u64;
        for holders in spec
            .inputs
            .iter()
            .filter_map(|input| self.peers.blobs.get(&input.blob))
        {
            let reachable = holders.nodes.contains(&node_id)
                || (holders.nodes.iter().any(live) && self.fetches_from_peers(node_id));
            if holders.kept.is_some() && !reachable {
                return None;
            }
            if holders.nodes.contains(&node_id) {
                bytes = bytes.saturating_add(holders.size_bytes);
            }
        }
        Some(bytes)
    }

    /// Tasks that made kept blobs every copy of which is gone and that ended with that
    /// result, to run again; at most `count`, by job then index. None while the census is
    /// open: a node may yet name what they made.
    pub(crate) fn lost_to_remake(&self, count: usize, now_ms: u64) -> Vec<(JobId, u32)> {
        if self.census_open(now_ms) {
            return Vec::new();
        }
        self.peers
            .lost
            .iter()
            .filter(|(job, task)| {
                self.jobs.get(job).is_some_and(|job| {
                    job.state.is_terminal()
                        || matches!(
                            job.tasks.get(*task as usize).map(|task| task.slot),
                            Some(super::Slot::Ended(wire::TaskState::Succeeded))
                        )
                })
            })
            .take(count)
            .copied()
            .collect()
    }

    /// Whether `task` of `job` is one whose kept outputs are all gone.
    pub(crate) fn lost_maker(&self, job: JobId, task: u32) -> bool {
        self.peers.lost.contains(&(job, task))
    }

    /// Whether the node has anything the pool counts on it for.
    pub(crate) fn holding_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers.holding.keys().copied()
    }
}

/// Applying the events.
impl PoolState {
    pub(super) fn apply_peer_event(&mut self, event: &Event) {
        match event {
            Event::BlobsHeld {
                node,
                pipeline,
                blobs,
            } => self.apply_blobs_held(*node, *pipeline, blobs),
            Event::OutputsKept { .. } => self.apply_outputs_kept(event),
            Event::HoldersLost { node } => self.forget_holder(*node),
            Event::BlobsDropped { node, blobs } => self.apply_blobs_dropped(*node, blobs),
            Event::KeptUploaded { job, task, blobs } => {
                self.apply_kept_uploaded(*job, *task, blobs)
            }
            Event::CopiesOrdered {
                node,
                blobs,
                until_ms,
            } => self.apply_copies_ordered(*node, blobs, *until_ms),
            Event::ReleasesSent { node, count } => self.apply_releases_sent(*node, *count),
            _ => unreachable!("apply_peer_event applies peer events only"),
        }
    }

    /// The rows a peer event implies: a kept blob's row, so that a coordinator that starts
    /// again knows what only nodes had. Holders and orders are not written.
    pub(super) fn peer_writes(&self, event: Event) -> Option<store::Write> {
        let (pipeline, job, task, blobs, copies) = match event {
            Event::OutputsKept {
                pipeline,
                job,
                task,
                blobs,
                copies,
                ..
            } => (pipeline, job, task, blobs, copies),
            // What is left kept of the task, after the uploaded ones.
            Event::KeptUploaded { job, task, .. } => return Some(self.kept_rows_of(job, task)),
            _ => return None,
        };
        let rows = blobs
            .into_iter()
            .map(|(hash, size_bytes)| KeptRow {
                hash,
                pipeline_id: pipeline,
                job_id: job,
                task_index: task,
                size_bytes,
                copies,
            })
            .collect();
        Some(store::Write::KeepBlobs {
            job_id: job,
            task_index: task,
            rows,
        })
    }

    /// The store's rows of the blobs `task` of `job` keeps now.
    fn kept_rows_of(&self, job: JobId, task: u32) -> store::Write {
        let listed = self.peers.by_task.get(&(job, task));
        let rows = listed
            .into_iter()
            .flatten()
            .filter_map(|hash| {
                let holders = self.peers.blobs.get(hash)?;
                Some(KeptRow {
                    hash: *hash,
                    pipeline_id: holders.pipeline,
                    job_id: job,
                    task_index: task,
                    size_bytes: holders.size_bytes,
                    copies: holders.kept?.copies,
                })
            })
            .collect();
        store::Write::KeepBlobs {
            job_id: job,
            task_index: task,
            rows,
        }
    }

    pub(super) fn apply_blobs_held(
        &mut self,
        node: NodeId,
        pipeline: PipelineId,
        blobs: &[(BlobHash, u64)],
    ) {
        let peers = &mut self.peers;
        for (hash, size_bytes) in blobs {
            if peers
                .ordered
                .get(hash)
                .is_some_and(|(ordered, _)| *ordered == node)
            {
                peers.ordered.remove(hash);
            }
            if let Some(holders) = peers.blobs.get_mut(hash) {
                if holders.nodes.contains(&node) {
                    continue;
                }
                if holders.nodes.len() == HOLDERS_PER_BLOB_MAX {
                    let oldest = holders.nodes.remove(0);
                    uncount(&mut peers.holding, oldest);
                }
                holders.nodes.push(node);
                *peers.holding.entry(node).or_default() += 1;
                settle_short(&mut peers.short, hash, holders);
                if let Some(kept) = holders.kept
                    && holders.nodes.len() == 1
                {
                    peers.lost.remove(&(kept.job, kept.task));
                    // The tasks that read it, held back while it had no holder, may go now.
                    self.changes.tasks_queued = true;
                }
            } else if peers.blobs.len() < PEER_BLOBS_MAX {
                let holders = Holders {
                    size_bytes: *size_bytes,
                    pipeline,
                    nodes: vec![node],
                    kept: None,
                };
                peers.blobs.insert(*hash, holders);
                peers.by_pipeline.entry(pipeline).or_default().push(*hash);
                *peers.holding.entry(node).or_default() += 1;
            }
        }
        self.settle_lost();
    }

    /// `node` kept the outputs `blobs` of `task` of `job`; the task's kept blobs that this
    /// run did not make again (it made other bytes) are dropped, and their readers fetch
    /// them in vain and fail.
    fn apply_outputs_kept(&mut self, event: &Event) {
        let &Event::OutputsKept {
            node,
            pipeline,
            job,
            task,
            ref blobs,
            copies,
        } = event
        else {
            unreachable!("apply_outputs_kept applies OutputsKept only");
        };
        let earlier = self.peers.by_task.remove(&(job, task)).unwrap_or_default();
        // Only the blobs this task is the maker of go: another task may have made the same
        // bytes (two empty parts are one blob), and it still vouches for them.
        let made_here =
            |holders: &Holders| holders.kept.is_some_and(|k| (k.job, k.task) == (job, task));
        for hash in earlier
            .iter()
            .filter(|hash| !blobs.iter().any(|(b, _)| b == *hash))
        {
            if self.peers.blobs.get(hash).is_some_and(made_here)
                && let Some(holders) = self.peers.blobs.remove(hash)
            {
                self.peers.short.remove(&(job, task, *hash));
                for holder in holders.nodes {
                    uncount(&mut self.peers.holding, holder);
                }
            }
        }
        let mine = self.peers.by_task.entry((job, task)).or_default();
        for (hash, size_bytes) in blobs {
            let holders = self.peers.blobs.entry(*hash).or_insert_with(|| Holders {
                size_bytes: *size_bytes,
                pipeline,
                nodes: Vec::new(),
                kept: Some(Kept { job, task, copies }),
            });
            if holders.kept.is_some() && !mine.contains(hash) {
                mine.push(*hash);
            }
            if !holders.nodes.contains(&node) && holders.nodes.len() < HOLDERS_PER_BLOB_MAX {
                // Tasks that read it were held back while it had no holder: they may go now.
                self.changes.tasks_queued |= holders.nodes.is_empty();
                holders.nodes.push(node);
                *self.peers.holding.entry(node).or_default() += 1;
            }
            settle_short(&mut self.peers.short, hash, holders);
            if !earlier.contains(hash) {
                self.peers
                    .by_pipeline
                    .entry(pipeline)
                    .or_default()
                    .push(*hash);
            }
        }
        if self
            .peers
            .by_task
            .get(&(job, task))
            .is_some_and(Vec::is_empty)
        {
            self.peers.by_task.remove(&(job, task));
        }
        self.peers.lost.remove(&(job, task));
    }

    /// A node that left, or that went silent past its lease, holds nothing any more: a kept
    /// blob it alone held is lost, and its task runs again.
    pub(super) fn forget_holder(&mut self, node: NodeId) {
        let peers = &mut self.peers;
        peers.blobs.retain(|hash, holders| {
            let (tracked, lost) = let_go(holders, (hash, node), &mut peers.short, &mut peers.lost);
            self.changes.recalls |= lost;
            tracked
        });
        peers.ordered.retain(|_, (ordered, _)| *ordered != node);
        peers.releases.remove(&node);
        peers.holding.remove(&node);
    }

    /// `node` no longer has `blobs`: a kept one it alone held is lost, and its task runs again;
    /// a hint nobody holds any more is forgotten.
    fn apply_blobs_dropped(&mut self, node: NodeId, blobs: &[BlobHash]) {
        let peers = &mut self.peers;
        for hash in blobs {
            let Some(holders) = peers.blobs.get_mut(hash) else {
                continue;
            };
            if holders.nodes.contains(&node) {
                uncount(&mut peers.holding, node);
            }
            let (tracked, lost) = let_go(holders, (hash, node), &mut peers.short, &mut peers.lost);
            self.changes.recalls |= lost;
            if !tracked {
                peers.blobs.remove(hash);
            }
        }
    }

    /// `blobs`, kept by `task` of `job`, are in the coordinator's store now: kept no more, and
    /// forgotten where no node holds them. The tasks that read them, held back while they had
    /// no holder, fetch them from the coordinator.
    fn apply_kept_uploaded(&mut self, job: JobId, task: u32, blobs: &[BlobHash]) {
        let peers = &mut self.peers;
        for hash in blobs {
            let Some(holders) = peers.blobs.get_mut(hash) else {
                continue;
            };
            holders.kept = None;
            peers.short.remove(&(job, task, *hash));
            if holders.nodes.is_empty() {
                peers.blobs.remove(hash);
            }
        }
        if let Some(listed) = peers.by_task.get_mut(&(job, task)) {
            listed.retain(|hash| !blobs.contains(hash));
            if listed.is_empty() {
                peers.by_task.remove(&(job, task));
            }
        }
        self.settle_lost();
        self.changes.tasks_queued = true;
    }

    /// A task whose kept blobs are all held again is lost no more.
    fn settle_lost(&mut self) {
        let peers = &mut self.peers;
        let blobs = &peers.blobs;
        let by_task = &peers.by_task;
        peers.lost.retain(|key| {
            by_task.get(key).is_some_and(|hashes| {
                hashes
                    .iter()
                    .any(|hash| blobs.get(hash).is_some_and(|h| h.nodes.is_empty()))
            })
        });
    }

    /// A task run again after its kept blobs were lost is not lost while it runs.
    pub(super) fn remaking(&mut self, job: JobId, task: u32) {
        self.peers.lost.remove(&(job, task));
    }

    pub(super) fn apply_copies_ordered(&mut self, node: NodeId, blobs: &[BlobHash], until_ms: u64) {
        for hash in blobs {
            self.peers.ordered.insert(*hash, (node, until_ms));
        }
    }

    pub(super) fn apply_releases_sent(&mut self, node: NodeId, count: u32) {
        if let Some(releases) = self.peers.releases.get_mut(&node) {
            releases.drain(..count as usize);
            if releases.is_empty() {
                self.peers.releases.remove(&node);
            }
        }
    }

    /// An ended pipeline's intermediates are read no more: nodes may drop the kept ones.
    pub(super) fn forget_pipeline_blobs(&mut self, pipeline: PipelineId) {
        let peers = &mut self.peers;
        for hash in peers.by_pipeline.remove(&pipeline).unwrap_or_default() {
            let Some(holders) = peers.blobs.remove(&hash) else {
                continue;
            };
            peers.ordered.remove(&hash);
            for holder in &holders.nodes {
                uncount(&mut peers.holding, *holder);
            }
            if let Some(kept) = holders.kept {
                peers.short.remove(&(kept.job, kept.task, hash));
                peers.by_task.remove(&(kept.job, kept.task));
                peers.lost.remove(&(kept.job, kept.task));
                for node in holders.nodes {
                    peers.releases.entry(node).or_default().push(hash);
                }
            }
        }
    }

    #[cfg(any(test, debug_assertions))]
    pub(super) fn check_peers(&self) {
        for (hash, holders) in &self.peers.blobs {
            let count = holders.nodes.len();
            assert!(count <= HOLDERS_PER_BLOB_MAX, "holders of {hash}");
            assert!(
                count > 0 || holders.kept.is_some(),
                "a hint without holders: {hash}"
            );
            if let Some(kept) = holders.kept {
                let listed = self.peers.by_task.get(&(kept.job, kept.task));
                assert!(
                    listed.is_some_and(|hashes| hashes.contains(hash)),
                    "{hash} by task"
                );
            }
        }
        assert!(self.peers.blobs.len() <= PEER_BLOBS_MAX);
        let mut holding: HashMap<NodeId, u32> = HashMap::new();
        for holders in self.peers.blobs.values() {
            for node in &holders.nodes {
                *holding.entry(*node).or_default() += 1;
            }
        }
        assert_eq!(holding, self.peers.holding, "blobs held per node");
        let mut short = BTreeSet::new();
        for (hash, holders) in &self.peers.blobs {
            settle_short(&mut short, hash, holders);
        }
        assert_eq!(short, self.peers.short, "kept blobs short of copies");
    }
}

/// `node` holds `hash` no more, whether it left or lost the blob: `short` follows, a kept blob
/// nobody holds now is lost. Whether the blob is still tracked (a hint nobody holds is not),
/// and whether it was lost just now.
fn let_go(
    holders: &mut Holders,
    (hash, node): (&BlobHash, NodeId),
    short: &mut BTreeSet<(JobId, u32, BlobHash)>,
    lost: &mut BTreeSet<(JobId, u32)>,
) -> (bool, bool) {
    holders.nodes.retain(|holder| *holder != node);
    settle_short(short, hash, holders);
    let nobody = holders.nodes.is_empty();
    let lost_now = match holders.kept {
        Some(kept) if nobody => lost.insert((kept.job, kept.task)),
        _ => false,
    };
    (!nobody || holders.kept.is_some(), lost_now)
}

/// Puts the kept blob `hash` in `short` or takes it out, as `holders` now stand: in when it has
/// a holder and fewer than its pipeline wants.
fn settle_short(short: &mut BTreeSet<(JobId, u32, BlobHash)>, hash: &BlobHash, holders: &Holders) {
    let Some(kept) = holders.kept else {
        return;
    };
    let wanted = (1 + kept.copies as usize).min(HOLDERS_PER_BLOB_MAX);
    let key = (kept.job, kept.task, *hash);
    if !holders.nodes.is_empty() && holders.nodes.len() < wanted {
        short.insert(key);
    } else {
        short.remove(&key);
    }
}

/// One blob fewer held by `node`.
fn uncount(holding: &mut HashMap<NodeId, u32>, node: NodeId) {
    if let Some(count) = holding.get_mut(&node) {
        *count -= 1;
        if *count == 0 {
            holding.remove(&node);
        }
    }
}
