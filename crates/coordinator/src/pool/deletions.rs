//! Jobs deleted for good: the job leaves the pool and the store at once, and each node that ran
//! one of its attempts is asked, in its heartbeats' answers, to drop the blobs it cached, until
//! it confirms. The record of who confirmed stays for the requester to read, within a bound.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use store::DeletionRow;
use wire::deletion::{DELETIONS_OPEN_MAX, FORGET_BLOBS_MAX, FORGETS_PER_HEARTBEAT_MAX};
use wire::{BlobHash, Forget, JobDeletion, JobId, NodeId, RequesterId};

use super::events::Event;
use super::{Outbox, PoolError, PoolState};

/// Deletion records kept, open or closed; the oldest closed ones go first.
const DELETIONS_KEPT_MAX: usize = 2 * DELETIONS_OPEN_MAX;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Deletions {
    rows: BTreeMap<JobId, DeletionRow>,
    /// For each node, the deletions it has not confirmed.
    pending_by_node: HashMap<NodeId, BTreeSet<JobId>>,
}

/// What deleting a job touches, as the store found it: every blob the job names, those no
/// other job names, and the nodes that ran its attempts.
pub(crate) struct DeletionScope {
    pub(crate) blobs: Vec<BlobHash>,
    pub(crate) blobs_only_its: u64,
    pub(crate) nodes: Vec<NodeId>,
}

fn view(row: &DeletionRow) -> JobDeletion {
    JobDeletion {
        job_id: row.job_id,
        blobs_deleted: row.blobs_deleted,
        confirmed: row.confirmed.iter().copied().collect(),
        pending: row.pending.iter().copied().collect(),
        deleted_at_ms: row.deleted_at_ms,
    }
}

impl Deletions {
    fn insert(&mut self, row: DeletionRow) {
        for node in &row.pending {
            self.pending_by_node
                .entry(*node)
                .or_default()
                .insert(row.job_id);
        }
        self.rows.insert(row.job_id, row);
    }

    fn remove(&mut self, job_id: JobId) {
        if let Some(row) = self.rows.remove(&job_id) {
            for node in &row.pending {
                self.unindex(*node, job_id);
            }
        }
    }

    fn unindex(&mut self, node: NodeId, job_id: JobId) {
        if let Some(jobs) = self.pending_by_node.get_mut(&node) {
            jobs.remove(&job_id);
            if jobs.is_empty() {
                self.pending_by_node.remove(&node);
            }
        }
    }

    fn open(&self) -> usize {
        self.rows
            .values()
            .filter(|row| !row.pending.is_empty())
            .count()
    }

    /// The oldest closed records past the bound, were one more kept.
    fn to_drop(&self) -> Vec<JobId> {
        let over = (self.rows.len() + 1).saturating_sub(DELETIONS_KEPT_MAX);
        let mut closed: Vec<(u64, JobId)> = self
            .rows
            .values()
            .filter(|row| row.pending.is_empty())
            .map(|row| (row.deleted_at_ms, row.job_id))
            .collect();
        closed.sort_unstable();
        closed.into_iter().take(over).map(|(_, job)| job).collect()
    }
}

impl PoolState {
    /// Deletes an ended job of `requester`'s for good; `scope` is what the store holds of it.
    pub(crate) fn delete_job(
        &mut self,
        requester: RequesterId,
        job_id: JobId,
        scope: DeletionScope,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<JobDeletion, PoolError> {
        let job = self.owned_job(job_id, requester)?;
        if !job.state.is_terminal() {
            return Err(PoolError::Conflict(format!(
                "job {job_id} still runs: cancel it first (`crowdcloud cancel {job_id}`)"
            )));
        }
        if self.is_stage_job(job_id) {
            return Err(PoolError::Conflict(format!(
                "job {job_id} is a stage of a pipeline, whose later stages read its outputs"
            )));
        }
        if !scope.nodes.is_empty() && self.deletions.open() >= DELETIONS_OPEN_MAX {
            return Err(PoolError::TooManyRequests(format!(
                "{DELETIONS_OPEN_MAX} deletions wait for nodes to confirm; try again once they \
                 have (`crowdcloud delete` says which)"
            )));
        }
        let everything = scope.blobs.len() > FORGET_BLOBS_MAX;
        let row = DeletionRow {
            job_id,
            requester_id: requester,
            deleted_at_ms: now_ms,
            blobs: if everything { Vec::new() } else { scope.blobs },
            everything,
            blobs_deleted: scope.blobs_only_its,
            pending: scope.nodes.into_iter().collect(),
            confirmed: BTreeSet::new(),
        };
        let answer = view(&row);
        let dropping = self.deletions.to_drop();
        self.record(
            Event::JobDeleted {
                row: Box::new(row),
                dropping,
            },
            out,
        );
        Ok(answer)
    }

    /// Whether `job_id` names a job deleted for good whose record is still kept.
    pub(super) fn is_deleted_job(&self, job_id: JobId) -> bool {
        self.deletions.rows.contains_key(&job_id)
    }

    /// Where the deletion of `requester`'s job stands.
    pub(crate) fn deletion(
        &self,
        requester: RequesterId,
        job_id: JobId,
    ) -> Result<JobDeletion, PoolError> {
        self.deletions
            .rows
            .get(&job_id)
            .filter(|row| row.requester_id == requester)
            .map(view)
            .ok_or_else(|| PoolError::NotFound(format!("no deleted job {job_id}")))
    }

    /// What `node` is asked to drop now: the deletions it has not confirmed, a few at a time.
    pub(crate) fn forgets_for(&self, node: NodeId) -> Vec<Forget> {
        let Some(jobs) = self.deletions.pending_by_node.get(&node) else {
            return Vec::new();
        };
        jobs.iter()
            .take(FORGETS_PER_HEARTBEAT_MAX)
            .map(|job_id| {
                let row = &self.deletions.rows[job_id];
                Forget {
                    job_id: *job_id,
                    blobs: row.blobs.clone(),
                    everything: row.everything,
                }
            })
            .collect()
    }

    /// Takes `node`'s word that it dropped what the deletions of `jobs` asked it to.
    pub(crate) fn forgotten(&mut self, node: NodeId, jobs: &[JobId], out: &mut Outbox) {
        let pending = self.deletions.pending_by_node.get(&node);
        let confirmed: Vec<JobId> = jobs
            .iter()
            .copied()
            .filter(|job| pending.is_some_and(|pending| pending.contains(job)))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !confirmed.is_empty() {
            self.record(
                Event::NodeForgot {
                    node,
                    jobs: confirmed,
                },
                out,
            );
        }
    }

    /// Applies [`Event::JobDeleted`].
    pub(super) fn apply_job_deleted(&mut self, row: &DeletionRow, dropping: &[JobId]) {
        self.jobs.remove(&row.job_id);
        self.changes.jobs.push(row.job_id);
        for job_id in dropping {
            self.deletions.remove(*job_id);
        }
        self.deletions.insert(row.clone());
    }

    /// Applies [`Event::NodeForgot`].
    pub(super) fn apply_node_forgot(&mut self, node: NodeId, jobs: &[JobId]) {
        for job_id in jobs {
            if let Some(row) = self.deletions.rows.get_mut(job_id)
                && row.pending.remove(&node)
            {
                row.confirmed.insert(node);
            }
            self.deletions.unindex(node, *job_id);
        }
    }

    /// The rows a deletion event implies, once applied.
    pub(super) fn deletion_writes(&self, event: Event) -> Vec<store::Write> {
        match event {
            Event::JobDeleted { row, dropping } => {
                let mut writes = vec![store::Write::PurgeJobs(vec![row.job_id])];
                if !dropping.is_empty() {
                    writes.push(store::Write::DropDeletions(dropping));
                }
                writes.push(store::Write::UpsertDeletion(*row));
                writes
            }
            Event::NodeForgot { jobs, .. } => jobs
                .iter()
                .filter_map(|job| self.deletions.rows.get(job))
                .map(|row| store::Write::UpsertDeletion(row.clone()))
                .collect(),
            _ => unreachable!("deletion_writes writes deletion events only"),
        }
    }

    pub(super) fn restore_deletions(&mut self, rows: Vec<DeletionRow>) {
        for row in rows {
            self.deletions.insert(row);
        }
    }
}
