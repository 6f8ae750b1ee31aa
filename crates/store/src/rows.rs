//! The records the store writes and reads back, in the coordinator's terms.

use std::collections::BTreeMap;

use wire::{
    AttemptId, BlobHash, BlobRef, Capabilities, JobId, JobState, JobSubmission, NodeId, Outcome,
    OutputFile, PipelineId, RequesterId, StageInput, TaskSpec, TaskState, Usage,
};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequesterRow {
    pub id: RequesterId,
    pub name: String,
    pub created_at_ms: u64,
}

/// What a stored token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TokenRole {
    /// Acts as this requester.
    Requester(RequesterId),
    /// Lets a node join the pool.
    Join,
    /// Lets another pool join this one as a node that lends it capacity.
    Federation,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenRow {
    /// BLAKE3 of the token.
    pub hash: String,
    pub role: TokenRole,
    pub name: String,
    pub created_at_ms: u64,
    pub revoked_at_ms: Option<u64>,
}

/// A pool this one lends its idle slots to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerRow {
    pub id: u64,
    pub url: String,
    pub fingerprint: wire::Fingerprint,
    /// The `ccf_…` token that pool's owner made for this one.
    pub token: String,
    /// The account its tasks are paid from here.
    pub requester_id: RequesterId,
    pub added_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeRow {
    pub id: NodeId,
    pub public_key: String,
    /// BLAKE3 of the node's bearer token.
    pub token_hash: String,
    pub name: String,
    pub capabilities: Capabilities,
    pub labels: BTreeMap<String, String>,
    pub slots: u32,
    pub agent_version: String,
    /// BLAKE3 of the join token it registered with; absent for nodes from before it was kept.
    pub join_token_hash: Option<String>,
    /// The network it registered from, an IPv4 /24 or an IPv6 /48 (`203.0.113.0/24`); absent
    /// for nodes from before it was kept.
    pub network: Option<String>,
    /// When the node was last heard from, as last written (at least its registration).
    pub seen_at_ms: u64,
    pub registered_at_ms: u64,
}

/// A job as stored; its `spec` has no tasks (they are rows of their own).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobRow {
    pub id: JobId,
    pub requester_id: RequesterId,
    pub spec: JobSubmission,
    pub task_count: u32,
    pub state: JobState,
    /// Order of submission across the pool; the scheduler's tie-breaker.
    pub submitted_seq: u64,
    pub created_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// The size of its module: its tasks go to nodes that compile modules this large. 0 when
    /// not known (any node).
    #[serde(default)]
    pub module_bytes: u64,
    /// Whether its module is a WASI 0.2 component: its tasks go to nodes that run components.
    #[serde(default)]
    pub component: bool,
    /// The WebAssembly proposals its module uses: its tasks go to nodes that compile them.
    #[serde(default)]
    pub wasm_features: Vec<String>,
    /// The task whose exit code stopped it, when one did (see `wire::OnFailure::abort_on`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<wire::Aborted>,
    /// A private job's key wrapped to every node that may run it, once its requester granted
    /// it to more nodes than the submission named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_granted: Option<std::collections::BTreeMap<wire::NodeId, wire::WrappedKey>>,
}

/// A task of a running job as recovered after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub job_id: JobId,
    pub index: u32,
    /// Present for tasks that have not ended.
    pub spec: Option<TaskSpec>,
    pub state: TaskState,
    /// Attempts counted against max attempts (released ones are not).
    pub attempts: u32,
    /// The outcomes of its failed attempts, oldest first, when it has not ended: what its
    /// job's failure policy counts.
    pub failed: Vec<wire::Outcome>,
    /// The banned node whose result of it was taken back, when it was.
    pub recalled_from: Option<wire::NodeId>,
    /// Its latest checkpoint, in a job whose tasks checkpoint.
    pub checkpoint: Option<wire::CheckpointRef>,
    /// Wall time its attempts lost since their last checkpoints.
    pub checkpoints_lost_ms: u64,
    /// In a job that verifies, the witnesses behind its latest checkpoint.
    pub checkpoint_makers: Vec<u64>,
}

/// A task whose result rests on the word of a node that was banned since: it runs again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recallable {
    pub job_id: JobId,
    pub index: u32,
    pub spec: TaskSpec,
    /// The node that alone vouched for the result.
    pub node: wire::NodeId,
    /// What the requester paid for the result.
    pub fuel: u64,
}

/// Results taken back: `tasks` of `job_id` (index, and the banned node that vouched for each
/// result) are pending again, with no result, and the job runs again when `reopen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecall {
    pub job_id: JobId,
    pub tasks: Vec<(u32, wire::NodeId)>,
    pub reopen: bool,
    pub at_ms: u64,
}

/// An ended job as it is opened again for results taken back: its row and every task's state,
/// by index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndedJob {
    pub row: JobRow,
    pub task_states: Vec<TaskState>,
}

/// A lease granted to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttemptRow {
    pub id: AttemptId,
    pub job_id: JobId,
    pub task_index: u32,
    pub node_id: NodeId,
    pub granted_at_ms: u64,
}

/// How an attempt ended, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AttemptEndState {
    Succeeded,
    Failed,
    /// Its lease ran out; counted against max attempts.
    Expired,
    /// Given back by its node; not counted.
    Released,
    /// Its job was cancelled.
    Cancelled,
}

impl AttemptEndState {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptEndState::Succeeded => "succeeded",
            AttemptEndState::Failed => "failed",
            AttemptEndState::Expired => "expired",
            AttemptEndState::Released => "released",
            AttemptEndState::Cancelled => "cancelled",
        }
    }
}

/// The end of an attempt and what it does to its task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttemptEnd {
    pub attempt_id: AttemptId,
    pub job_id: JobId,
    pub task_index: u32,
    pub state: AttemptEndState,
    pub at_ms: u64,
    pub outcome: Option<Outcome>,
    pub usage: Option<Usage>,
    pub stdout: Option<BlobRef>,
    pub stderr: Option<BlobRef>,
    pub outputs: Vec<OutputFile>,
    /// For an attempt another pool ran: that pool and its node, `pool/node`.
    pub ran_on: Option<String>,
    /// Set when this attempt ends its task; absent when the task goes back to the queue.
    pub task_end: Option<TaskEnd>,
}

/// A task that ends by a verdict on its results rather than with an attempt's end: verified,
/// or inconclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskVerdict {
    pub job_id: JobId,
    pub index: u32,
    pub state: TaskState,
    pub outcome: Outcome,
    /// The attempt whose result it ends with; absent when none was accepted.
    pub result_attempt: Option<AttemptId>,
    pub verification: Option<wire::Verification>,
    pub at_ms: u64,
}

/// What a pool that verifies knows of one node identity's honesty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRow {
    pub node_id: wire::NodeId,
    pub owner: u64,
    pub join_token_hash: String,
    pub verified: u64,
    pub audits_passed: u64,
    pub mismatches: u64,
    pub banned: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskEnd {
    pub state: TaskState,
    pub outcome: Outcome,
}

/// A blob some requester may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobRow {
    pub hash: BlobHash,
    pub size_bytes: u64,
}

/// A job deleted for good, and where its cached copies stand.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeletionRow {
    pub job_id: JobId,
    pub requester_id: RequesterId,
    pub deleted_at_ms: u64,
    /// The job's blobs, for nodes to drop; empty with `everything`.
    pub blobs: Vec<BlobHash>,
    /// The job used more blobs than one request names: nodes drop their whole cache.
    #[serde(default)]
    pub everything: bool,
    /// Blobs deleted from the coordinator's store: those no other job used.
    pub blobs_deleted: u64,
    /// Nodes that ran an attempt of the job and have not confirmed yet.
    pub pending: std::collections::BTreeSet<NodeId>,
    pub confirmed: std::collections::BTreeSet<NodeId>,
}

/// A pipeline as stored: its stages, each with the job id it was given at submission, the job
/// of a stage not started yet, and why a stage will not run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PipelineRow {
    pub id: PipelineId,
    pub requester_id: RequesterId,
    pub name: String,
    pub created_at_ms: u64,
    /// When its last stage ended.
    pub ended_at_ms: Option<u64>,
    /// Its requester cancelled it.
    #[serde(default)]
    pub cancelled: bool,
    pub stages: Vec<StageRow>,
    /// Where later stages fetch what earlier ones made.
    #[serde(default, skip_serializing_if = "wire::Locality::is_coordinator")]
    pub locality: wire::Locality,
    /// Copies of each kept intermediate besides its maker's.
    #[serde(default)]
    pub copies: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StageRow {
    pub name: String,
    pub input: Option<StageInput>,
    /// The id its job has, or will have once it starts.
    pub job_id: JobId,
    /// Its job as submitted, with its one template task, until it starts (then the job holds
    /// it).
    pub waiting: Option<WaitingStage>,
    /// Why it will never run.
    pub not_run: Option<String>,
}

/// What starting a stage's job needs that was checked at submission.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WaitingStage {
    pub job: JobSubmission,
    pub module_bytes: u64,
    pub component_imports: Option<Vec<String>>,
    pub wasm_features: Vec<String>,
}

/// An output of a task's result that only nodes have (a pipeline with `locality = "nodes"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptRow {
    pub hash: BlobHash,
    pub pipeline_id: wire::PipelineId,
    pub job_id: JobId,
    pub task_index: u32,
    pub size_bytes: u64,
    /// Copies of it its pipeline wants besides its maker's.
    pub copies: u32,
}

/// A task whose result is to be taken back and made again, as the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remakeable {
    pub spec: TaskSpec,
    /// The node of the result's attempt.
    pub node: wire::NodeId,
}
