//! Checkpoints: what a job asks of them, a task's latest one as a grant resumes from it, and
//! what status shows of them.
//!
//! A task checkpoints itself: it finds its last state in [`GUEST_DIR`] at start, writes new
//! state there, and exits with the job's [`CheckpointSpec::exit_code`] to say the state is
//! whole. Its node then saves the directory as one blob and starts the task again at once, with
//! the directory as it left it. Only an exit says "whole", so a task that ends or traps while
//! writing never leaves a half-written checkpoint behind: the previous one stays the latest.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::BlobHash;
use crate::limits::{GIB, MIB};

/// Where a task finds and leaves its checkpoint.
pub const GUEST_DIR: &str = "/checkpoint";
/// The environment variable that tells a task how often to checkpoint, in milliseconds.
pub const ENV_INTERVAL_MS: &str = "CROWDCLOUD_CHECKPOINT_INTERVAL_MS";
/// The environment variable that tells a task the exit code that saves its checkpoint.
pub const ENV_EXIT_CODE: &str = "CROWDCLOUD_CHECKPOINT_EXIT_CODE";

/// The shortest interval a job may ask for: each checkpoint restarts the task.
pub const INTERVAL_MS_MIN: u64 = 1_000;
/// The longest interval: a day.
pub const INTERVAL_MS_MAX: u64 = 24 * 3600 * 1000;
/// The largest checkpoint a job may allow.
pub const BYTES_MAX_CEILING: u64 = GIB;
/// Files and directories one checkpoint may hold.
pub const ENTRIES_MAX: u64 = 10_000;
/// Checkpoints one task may save: enough for a week at one a minute.
pub const SAVED_PER_TASK_MAX: u32 = 100_000;

/// `checkpoint` of a job: its tasks save their state as they go, and an attempt that ends early
/// resumes from the latest saved state on another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    /// How often a task is asked to checkpoint, at least. Tasks read it from
    /// `CROWDCLOUD_CHECKPOINT_INTERVAL_MS` and compare it with their process CPU-time clock,
    /// which counts wall time since the task (re)started, or in deterministic mode the fuel it
    /// used (ten units a nanosecond), so replicas checkpoint at the same points on any node.
    #[schema(minimum = 1000, maximum = 86400000)]
    pub interval_ms: u64,
    /// The exit code by which a task says `/checkpoint` is whole; not 0, nor a success code.
    #[serde(default = "default_exit_code")]
    #[schema(minimum = 1, maximum = 255)]
    pub exit_code: i32,
    /// The most one checkpoint may hold, all its files together.
    #[serde(default = "default_bytes_max")]
    #[schema(minimum = 1, maximum = 1073741824)]
    pub bytes_max: u64,
}

/// HTCondor's examples use 85 for "checkpointed"; it is unlikely to mean anything else.
pub const DEFAULT_EXIT_CODE: i32 = 85;
pub const DEFAULT_BYTES_MAX: u64 = 64 * MIB;

fn default_exit_code() -> i32 {
    DEFAULT_EXIT_CODE
}

fn default_bytes_max() -> u64 {
    DEFAULT_BYTES_MAX
}

/// A task's latest checkpoint: the blob (a tar archive of `/checkpoint`), and the fuel the task
/// had used in all when it was saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointRef {
    pub hash: BlobHash,
    pub size_bytes: u64,
    /// Fuel the task used up to this checkpoint, across every attempt before.
    pub fuel_used: u64,
    /// Its number: the task's first checkpoint is 1.
    pub sequence: u32,
}

/// What a task's checkpoints did, as status shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointProgress {
    /// Checkpoints saved, by every attempt.
    pub saved: u32,
    /// The fuel the latest covers: work no later attempt does again.
    pub fuel_covered: u64,
    /// The latest checkpoint's size.
    pub size_bytes: u64,
    /// Wall time of attempts that ended early, since their last checkpoint or their start: the
    /// work that was done again.
    pub lost_ms: u64,
}
