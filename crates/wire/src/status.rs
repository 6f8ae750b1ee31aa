//! What requesters and the web app read back: jobs, tasks, nodes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{AttemptId, BlobHash, JobId, NodeId};
use crate::job::BlobRef;
use crate::node::{Capabilities, Outcome, OutputFile, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Some tasks have not ended yet.
    Running,
    /// Every task succeeded.
    Completed,
    /// Every task ended and at least one did not succeed.
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a node.
    Pending,
    /// An attempt holds a lease on a node.
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct TaskCounts {
    pub total: u32,
    pub pending: u32,
    pub running: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub cancelled: u32,
}

impl TaskCounts {
    pub fn ended(&self) -> u32 {
        self.succeeded + self.failed + self.cancelled
    }
}

/// How many tasks of a job a node finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeShare {
    pub node_id: NodeId,
    pub node_name: String,
    pub tasks_succeeded: u32,
    /// A browser tab lending its device: its tasks counted no fuel and earned no credits.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub browser: bool,
}

/// `GET /v1/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobStatus {
    pub job_id: JobId,
    pub name: String,
    pub state: JobState,
    pub tasks: TaskCounts,
    /// Attempts made so far, retries included.
    pub attempts: u64,
    /// Fuel of all finished attempts.
    pub fuel_used: u64,
    pub created_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// Grows with every change of this job; `GET /v1/jobs/{id}/wait?after=V` waits for a
    /// version past V.
    pub version: u64,
    /// Who did the work, most first.
    pub nodes: Vec<NodeShare>,
    /// Tasks with results that wait for a check before they are delivered (a pool that
    /// verifies only).
    #[serde(default)]
    pub verifying: u32,
    /// Results taken back, their tasks run again, because the one node that vouched for each
    /// was banned for lying since, or because every copy of the outputs they kept on nodes
    /// (`locality = "nodes"`) was lost.
    #[serde(default)]
    pub recalled: u32,
    /// Why the job stopped before its tasks ended: a task exited with a code its `abort_on`
    /// names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<Aborted>,
    /// Its data is sealed: from the coordinator and the network, not from the owner of a
    /// machine that runs one of its tasks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
    /// The pipeline whose stage this job is, if it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_of: Option<StageOf>,
}

/// The pipeline a stage's job belongs to, and which of its stages it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StageOf {
    pub pipeline_id: crate::ids::PipelineId,
    /// The pipeline's name.
    pub pipeline: String,
    /// The stage's name.
    pub stage: String,
}

/// A job stopped by one task's exit code: the task failed, and the tasks not yet ended were
/// cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Aborted {
    pub task_index: u32,
    pub exit_code: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobStatus>,
}

/// One task with its latest attempt's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskStatus {
    pub index: u32,
    pub state: TaskState,
    pub args: Vec<String>,
    /// Attempts made, retries included.
    pub attempts: u32,
    /// The attempt that holds it now or that ended it.
    pub attempt_id: Option<AttemptId>,
    pub node_id: Option<NodeId>,
    /// When its result came from a pool this one federates with: that pool and its node that
    /// ran it, `pool/node`; `node_id` is then the other pool as a node of this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran_on: Option<String>,
    pub outcome: Option<Outcome>,
    pub usage: Option<Usage>,
    pub stdout: Option<BlobRef>,
    pub stderr: Option<BlobRef>,
    pub outputs: Vec<OutputFile>,
    /// How its result was verified (a pool that verifies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<crate::Verification>,
    /// The banned node whose result of this task was taken back; the task ran again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recalled_from: Option<NodeId>,
    /// What its checkpoints did, in a job whose tasks checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<crate::CheckpointProgress>,
    /// The earlier task of the same key whose result this task took instead of running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<ReusedFrom>,
}

impl TaskStatus {
    /// The task's result files, named as they lie in its folder when `crowdcloud results`
    /// fetches them and in a job's results zip: `stdout`, `stderr` and `output/PATH`.
    pub fn result_files(&self) -> Vec<(String, BlobHash)> {
        let streams = [("stdout", self.stdout), ("stderr", self.stderr)];
        let streams = streams
            .into_iter()
            .filter_map(|(name, blob)| blob.map(|blob| (name.to_owned(), blob.hash)));
        let outputs = self
            .outputs
            .iter()
            .map(|file| (format!("output/{}", file.path), file.hash));
        streams.chain(outputs).collect()
    }
}

/// A task of an earlier job, whose result was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReusedFrom {
    pub job_id: JobId,
    pub index: u32,
}

/// `GET /v1/jobs/{id}/tasks/{index}/explain`: why a task ran, or whose result it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Explanation {
    pub index: u32,
    /// Its key (see `wire::key`), hex.
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<ReusedFrom>,
    /// The latest earlier job of this requester with the same name, that this task was set
    /// against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compared_with: Option<JobId>,
    /// One line per reason it ran, e.g. "its inputs changed: part-1-from-3 is new".
    pub ran_because: Vec<String>,
}

/// `GET /v1/jobs/{id}/tasks?offset=&limit=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskPage {
    pub tasks: Vec<TaskStatus>,
    /// Where the next page starts; absent on the last page.
    pub next_offset: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Online,
    Draining,
    Paused,
    /// Its lease ran out: no heartbeat for longer than the lease.
    Offline,
}

impl NodeState {
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeState::Online => "online",
            NodeState::Draining => "draining",
            NodeState::Paused => "paused",
            NodeState::Offline => "offline",
        }
    }
}

/// `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    pub node_id: NodeId,
    /// Its ed25519 identity key, 64 hex digits: the node id is derived from it, and it signs
    /// the node's encryption key, so a requester can check both.
    #[serde(default)]
    pub public_key: String,
    pub name: String,
    pub state: NodeState,
    /// Why it is paused, when it is.
    pub state_reason: Option<String>,
    pub slots: u32,
    pub running: u32,
    pub capabilities: Capabilities,
    pub labels: BTreeMap<String, String>,
    pub last_seen_ms_ago: u64,
    pub tasks_succeeded: u64,
    pub agent_version: String,
    /// Its standing (a pool that verifies only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standing: Option<crate::NodeStanding>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeList {
    pub nodes: Vec<NodeView>,
    /// The owners who brought them (a pool that verifies only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<crate::OwnerView>,
    /// How the pool checks results.
    #[serde(default)]
    pub trust: Option<crate::PoolTrust>,
}

/// `POST /v1/nodes/{id}/remove`: the node is out of the pool for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeRemoved {
    pub node_id: NodeId,
    /// Attempts it held, back in the queue without counting against their tasks.
    pub attempts_requeued: u32,
}

/// `GET /v1/jobs/{id}/why`: why pending tasks are not placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhyResponse {
    pub job_id: JobId,
    pub pending: u32,
    pub reasons: Vec<String>,
}
