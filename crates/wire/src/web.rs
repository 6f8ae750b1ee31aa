//! The bodies of the routes the web app reads beside those the CLI uses: the pool's history
//! of figures for its charts, the presets a phone can submit without a module of its own, and
//! every attempt of a job for its timeline.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{AttemptId, BlobHash, NodeId, Outcome};

/// `GET /v1/metrics/history`: the last hour of the pool's figures, one sample per interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MetricsHistory {
    /// Time between samples.
    pub interval_ms: u64,
    /// Oldest first; at most one hour of them.
    pub samples: Vec<MetricsSample>,
}

/// The pool's figures at one moment. Counts are of what happened in the interval that ends at
/// `at_ms`; levels are as they stood at `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MetricsSample {
    /// Unix time, in milliseconds.
    pub at_ms: u64,
    /// Tasks that ended (succeeded, failed or cancelled) in the interval.
    pub tasks_finished: u64,
    /// Tasks waiting for a node.
    pub tasks_queued: u64,
    /// Nodes whose lease is current.
    pub nodes_online: u64,
    /// Fuel of the attempts that ended in the interval.
    pub fuel_used: u64,
    /// Attempts lost with their node (its lease ran out) in the interval.
    pub attempts_lost: u64,
}

/// `GET /v1/presets`: programs the pool offers to every requester.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PresetList {
    pub presets: Vec<Preset>,
}

/// A program the pool holds, ready to run without an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Preset {
    /// What clients know it by, e.g. `render`.
    pub name: String,
    /// A title for people.
    pub title: String,
    /// What it does and what its tasks take.
    pub description: String,
    /// Its module, which every requester may name in a job.
    pub module: BlobHash,
}

/// `GET /v1/jobs/{job}/attempts`: a job's attempts, in the order they were granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptPage {
    pub attempts: Vec<AttemptView>,
    /// Where the next page starts; absent on the last page.
    pub next_offset: Option<u32>,
}

/// One attempt of a task, on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub attempt_id: AttemptId,
    pub task_index: u32,
    pub node_id: NodeId,
    /// Unix time it was granted, in milliseconds.
    pub granted_at_ms: u64,
    /// Unix time it ended, in milliseconds; absent while it runs.
    pub finished_at_ms: Option<u64>,
    /// How it ended: `running` while it runs, then `succeeded`, `failed`, `expired` (lost with
    /// its node), `released` (given back unfinished) or `cancelled`.
    pub state: String,
    /// What its node reported; absent while it runs, and for an attempt that ended without a
    /// report.
    pub outcome: Option<Outcome>,
}
