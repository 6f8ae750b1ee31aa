//! Deleting a job for good: the coordinator drops the job and every blob only it used, and
//! asks each node that ran one of its attempts to drop what it cached; each node confirms in
//! its next heartbeat.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{BlobHash, JobId, NodeId};

/// Blobs named in one [`Forget`]; a job that used more asks nodes to empty their whole cache.
pub const FORGET_BLOBS_MAX: usize = 100_000;
/// Deletions a heartbeat answer carries, and confirmations a heartbeat may carry.
pub const FORGETS_PER_HEARTBEAT_MAX: usize = 16;
/// Deletions whose nodes have not all confirmed, kept at once; a requester who deletes more
/// waits for nodes to confirm.
pub const DELETIONS_OPEN_MAX: usize = 10_000;

/// `DELETE /v1/jobs/{job}` and `GET /v1/jobs/{job}/deletion`: what became of a deleted job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobDeletion {
    pub job_id: JobId,
    /// Blobs deleted from the coordinator's store: those no other job of the pool uses.
    pub blobs_deleted: u64,
    /// Nodes that ran an attempt of the job and have confirmed they dropped its blobs.
    pub confirmed: Vec<NodeId>,
    /// Nodes that ran an attempt of the job and have not confirmed yet; each is asked at its
    /// next heartbeat.
    pub pending: Vec<NodeId>,
    pub deleted_at_ms: u64,
}

/// What a node is asked to drop, in a heartbeat's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Forget {
    pub job_id: JobId,
    /// The job's blobs: modules, inputs, mount files, outputs.
    pub blobs: Vec<BlobHash>,
    /// The job used more than [`FORGET_BLOBS_MAX`] blobs: drop every cached blob.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub everything: bool,
}
