//! Pipelines: jobs joined by their results. A pipeline is a list of stages; each stage is a
//! job, and a stage after the first may take its tasks from an earlier stage's outputs (one
//! task per file, one task for all of them, or a shuffle by partition). The coordinator starts
//! a stage once every stage it reads has completed, so the requester submits once and fetches
//! the end, and no intermediate file passes through the requester.
//!
//! Edges are blob hashes: a derived task's inputs are the hashes of the outputs it reads, named
//! after the task and the file that made them (see [`StageInput`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{JobId, PipelineId};
use crate::job::JobSubmission;
use crate::peer::Locality;
use crate::status::{JobState, TaskCounts};

/// `POST /v1/pipelines`: stages, each a job, run in dependency order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSubmission {
    /// A name for people, as a job's.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// In an order where every stage comes after the stages it reads, so a graph given here
    /// has no cycle.
    #[schema(min_items = 1, max_items = 16)]
    pub stages: Vec<StageSubmission>,
    /// Where the outputs a later stage reads are kept: in the coordinator (the default), or on
    /// the nodes that made them.
    #[serde(default, skip_serializing_if = "Locality::is_coordinator")]
    pub locality: Locality,
    /// With `locality` nodes: copies of each kept intermediate on other nodes, besides its
    /// maker's, 0 to [`crate::peer::COPIES_MAX`].
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schema(minimum = 0, maximum = 3)]
    pub copies: u32,
}

fn is_zero(copies: &u32) -> bool {
    *copies == 0
}

/// One stage: a job, and where its tasks come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSubmission {
    /// Unique in the pipeline: lowercase letters, digits, `-` and `_`, 1 to 64 bytes.
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9_-]+$")]
    pub name: String,
    /// Absent: the job's own tasks. Present: the job has exactly one task, the template of
    /// every task made from the earlier stage's outputs (its args, stdin and inputs are each
    /// task's, the outputs' files are added to its inputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<StageInput>,
    pub job: JobSubmission,
}

/// Where a stage's tasks come from, when it is not its own task list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StageInput {
    /// One task per output file of the stage, in task order and then path order; the file is
    /// its input, named after its path with `/` as `__`.
    Each(String),
    /// One task given every output file of the stage, named `{task}-{path}` (`/` as `__`).
    All(String),
    /// The stage's tasks wrote `part-0` … `part-{parts-1}`; task `i` of this stage gets `part-i`
    /// of every one of them, named `part-i-from-{task}`. A task that wrote no `part-i` gives
    /// none; a part numbered `parts` or beyond stops the stage.
    Partition { stage: String, parts: u32 },
}

impl StageInput {
    /// The stage it reads.
    pub fn stage(&self) -> &str {
        match self {
            StageInput::Each(stage) | StageInput::All(stage) => stage,
            StageInput::Partition { stage, .. } => stage,
        }
    }
}

impl std::fmt::Display for StageInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StageInput::Each(stage) => write!(f, "each output of {stage}"),
            StageInput::All(stage) => write!(f, "all outputs of {stage}"),
            StageInput::Partition { stage, parts } => {
                write!(f, "{parts} partitions of {stage}'s outputs")
            }
        }
    }
}

/// The answer to a pipeline submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PipelineSubmitted {
    pub pipeline_id: PipelineId,
    /// Each stage's job id, in the submission's order; a stage's job exists once it starts.
    pub stages: Vec<StageJob>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StageJob {
    pub name: String,
    pub job_id: JobId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StageState {
    /// Its job waits for the stages it reads.
    Waiting,
    Running,
    Completed,
    Failed,
    Cancelled,
    /// It will never run: a stage it reads did not complete, or its tasks could not be made.
    NotRun,
}

impl StageState {
    pub fn is_terminal(self) -> bool {
        !matches!(self, StageState::Waiting | StageState::Running)
    }

    pub fn of_job(state: JobState) -> StageState {
        match state {
            JobState::Running => StageState::Running,
            JobState::Completed => StageState::Completed,
            JobState::Failed => StageState::Failed,
            JobState::Cancelled => StageState::Cancelled,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StageState::Waiting => "waiting",
            StageState::Running => "running",
            StageState::Completed => "completed",
            StageState::Failed => "failed",
            StageState::Cancelled => "cancelled",
            StageState::NotRun => "not run",
        }
    }
}

/// `GET /v1/pipelines/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PipelineStatus {
    pub pipeline_id: PipelineId,
    pub name: String,
    /// Running until every stage ended; then completed when all completed, failed otherwise
    /// (cancelled when cancelled).
    pub state: JobState,
    pub created_at_ms: u64,
    pub stages: Vec<StageStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StageStatus {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<StageInput>,
    /// The stage's job; it runs (and can be read with the job API) once the stage started.
    pub job_id: JobId,
    pub state: StageState,
    /// Its job's tasks, once it started.
    pub counts: TaskCounts,
    /// Why it waits or was not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
