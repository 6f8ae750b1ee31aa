//! Private jobs in the pool: who holds a job's key, what each of them is sent, how much room
//! sealing takes in the caps, and the key grants a requester adds later.
//!
//! The pool never opens anything: it carries wrapped keys and ciphertext, offers a private
//! job's tasks only to the nodes its key is wrapped to, and compares replicas by the digests
//! their nodes computed of the plaintext.

use std::collections::BTreeMap;
use std::sync::Arc;

use wire::{JobId, JobRuntime, JobSubmission, Limits, NodeId, PrivateRuntime, RequesterId};

use super::events::Event;
use super::{Job, Outbox, PoolError, PoolState};

/// Who may run a private job, as the pool keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobKeys {
    pub(crate) requester_key: String,
    pub(crate) requester_wrap: wire::WrappedKey,
    pub(crate) manifest: wire::private::ManifestRef,
    pub(crate) module_sealed: bool,
    pub(crate) keys: BTreeMap<NodeId, wire::WrappedKey>,
    /// The keys' node ids, sorted: what the scheduler offers the job's tasks to.
    pub(crate) holders_sorted: Vec<u64>,
}

impl JobKeys {
    /// The keys of the job of `row`: those it was submitted with, or all that were granted
    /// since.
    pub(crate) fn of(row: &store::JobRow) -> Option<Arc<JobKeys>> {
        let private = row.spec.private.as_deref()?;
        let keys = row.keys_granted.as_ref().unwrap_or(&private.keys);
        Some(Arc::new(JobKeys::new(private, keys.clone())))
    }

    fn new(private: &wire::PrivateJob, keys: BTreeMap<NodeId, wire::WrappedKey>) -> JobKeys {
        let holders_sorted = holders_of(&keys);
        JobKeys {
            requester_key: private.requester_key.clone(),
            requester_wrap: private.requester_wrap.clone(),
            manifest: private.manifest.clone(),
            module_sealed: private.module_sealed,
            keys,
            holders_sorted,
        }
    }

    /// The job's private part as its requester submitted it, with every key granted since.
    pub(crate) fn as_private_job(&self) -> wire::PrivateJob {
        wire::PrivateJob {
            requester_key: self.requester_key.clone(),
            requester_wrap: self.requester_wrap.clone(),
            manifest: self.manifest.clone(),
            keys: self.keys.clone(),
            module_sealed: self.module_sealed,
        }
    }
}

/// The nodes of `keys`, as the scheduler takes them: node ids order as their numbers, so the
/// map's keys come sorted and unique.
fn holders_of(keys: &BTreeMap<NodeId, wire::WrappedKey>) -> Vec<u64> {
    keys.keys().map(|node| node.0).collect()
}

impl Job {
    /// What `node` is sent of the job: the shared runtime, and for a private job the key
    /// wrapped to that node (none when it was never granted one).
    pub(crate) fn runtime_for(&self, node: NodeId) -> JobRuntime {
        let mut runtime = (*self.runtime).clone();
        if let Some(keys) = &self.keys {
            runtime.private = Some(PrivateRuntime {
                manifest: keys.manifest.clone(),
                key: keys.keys.get(&node).cloned(),
                module_sealed: keys.module_sealed,
            });
        }
        runtime
    }

    /// Whether `node` may run the job's tasks: the job is in the clear, or its key is wrapped
    /// to the node.
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn holds_key(&self, node: NodeId) -> bool {
        self.keys
            .as_ref()
            .is_none_or(|keys| keys.holders_sorted.binary_search(&node.0).is_ok())
    }

    /// The caps a node's uploads are held to: the job's, plus what sealing adds to each
    /// stream and file in a private job.
    pub(crate) fn blob_limits(&self, limits: Limits) -> Limits {
        if self.keys.is_none() {
            return limits;
        }
        let files = u64::from(limits.output_files_max);
        Limits {
            stdout_bytes_max: wire::private::sealed_bytes_bound(limits.stdout_bytes_max),
            stderr_bytes_max: wire::private::sealed_bytes_bound(limits.stderr_bytes_max),
            output_bytes_max: wire::private::sealed_bytes_bound(limits.output_bytes_max)
                .saturating_add(files.saturating_mul(wire::private::SEALED_BYTES_PER_BLOB)),
            ..limits
        }
    }
}

impl PoolState {
    /// Refuses a private job none of whose key holders could ever run it: nodes this pool does
    /// not know, or knows without an encryption key (browser tabs).
    pub(crate) fn check_private(&self, job: &JobSubmission) -> Result<(), PoolError> {
        let Some(private) = job.private.as_deref() else {
            return Ok(());
        };
        let eligible = private.keys.keys().any(|node_id| {
            self.nodes
                .get(node_id)
                .is_some_and(|node| node.capabilities.encryption_key.is_some())
        });
        if eligible {
            return Ok(());
        }
        Err(PoolError::Invalid(
            "the job's key is wrapped to no node of this pool that can run private jobs (a \
             node needs an encryption key, which agents have and browser tabs do not): wrap it \
             to nodes that `crowdcloud nodes` lists"
                .to_owned(),
        ))
    }

    /// Adds key wraps to a private job of `requester`'s: the nodes named may run its tasks
    /// from now on. Answers every node that may.
    pub(crate) fn grant_keys(
        &mut self,
        requester: RequesterId,
        job_id: JobId,
        grant: wire::KeyGrant,
        out: &mut Outbox,
    ) -> Result<Vec<NodeId>, PoolError> {
        let job = self.owned_job(job_id, requester)?;
        let Some(keys) = &job.keys else {
            return Err(PoolError::Invalid(
                "the job is not private: its data is not sealed, so there is no key to grant"
                    .to_owned(),
            ));
        };
        let mut all = keys.keys.clone();
        all.extend(grant.keys.clone());
        if all.len() > wire::private::KEY_HOLDERS_MAX {
            return Err(PoolError::Invalid(format!(
                "a job's key may be wrapped to at most {} nodes",
                wire::private::KEY_HOLDERS_MAX
            )));
        }
        let holders = all.keys().copied().collect();
        self.record(
            Event::KeysGranted {
                job: job_id,
                keys: grant.keys,
            },
            out,
        );
        Ok(holders)
    }

    /// The private jobs that run, with their requesters, in id order.
    #[cfg(test)]
    pub(crate) fn open_private_jobs(&self) -> Vec<(JobId, RequesterId)> {
        let mut jobs: Vec<(JobId, RequesterId)> = self
            .open_jobs
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .filter(|job| job.keys.is_some())
            .map(|job| (job.id, job.requester))
            .collect();
        jobs.sort_unstable();
        jobs
    }

    /// A private job of `requester`'s as it stands: who may decrypt it.
    pub(crate) fn job_keys(
        &self,
        job_id: JobId,
        requester: RequesterId,
    ) -> Result<wire::PrivateJob, PoolError> {
        let job = self.owned_job(job_id, requester)?;
        job.keys
            .as_ref()
            .map(|keys| keys.as_private_job())
            .ok_or_else(|| PoolError::Invalid("the job is not private: it has no key".to_owned()))
    }

    /// The row of every key a private job's key is wrapped to now, once applied.
    pub(super) fn keys_write(&self, job_id: JobId) -> Option<store::Write> {
        let keys = self.jobs.get(&job_id)?.keys.as_ref()?;
        Some(store::Write::SetJobKeys {
            job_id,
            keys: keys.keys.clone(),
        })
    }

    /// Applies [`Event::KeysGranted`].
    pub(super) fn apply_keys_granted(
        &mut self,
        job_id: JobId,
        granted: &BTreeMap<NodeId, wire::WrappedKey>,
    ) {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return;
        };
        let Some(keys) = &job.keys else {
            return;
        };
        let mut next = JobKeys::clone(keys);
        next.keys
            .extend(granted.iter().map(|(node, key)| (*node, key.clone())));
        next.holders_sorted = holders_of(&next.keys);
        job.keys = Some(Arc::new(next));
        job.version += 1;
        job.queued = true;
        // Nodes that wait for work may take its tasks now.
        self.changes.tasks_queued = true;
        self.changes.jobs.push(job_id);
    }
}
