//! The bounds on everything a requester or a node can send: how many, how large, how long.
//!
//! Every collection that crosses the wire has a ceiling here, checked by [`crate::validate`] and
//! by the coordinator's body-size limits, so no input can make the coordinator or an agent grow
//! without bound.

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// Tasks in one job.
pub const TASKS_PER_JOB_MAX: usize = 1_000_000;
/// Stages in one pipeline.
pub const STAGES_PER_PIPELINE_MAX: usize = 16;
/// Length of a stage name, in bytes.
pub const STAGE_NAME_BYTES_MAX: usize = 64;
/// Partitions of a shuffle: the tasks of the stage that reads them.
pub const PARTITIONS_MAX: u32 = 10_000;
/// Pipelines of one requester not yet ended.
pub const PIPELINES_UNFINISHED_PER_REQUESTER_MAX: usize = 1_000;
/// Length of a job name, in bytes.
pub const JOB_NAME_BYTES_MAX: usize = 200;
/// Arguments of one task.
pub const ARGS_PER_TASK_MAX: usize = 4096;
/// All arguments of one task together, in bytes.
pub const ARGS_BYTES_PER_TASK_MAX: usize = 256 * KIB as usize;
/// Environment variables a job declares.
pub const ENV_VARS_MAX: usize = 256;
/// One environment variable's name plus value, in bytes.
pub const ENV_VAR_BYTES_MAX: usize = 32 * KIB as usize;
/// Input files of one task.
pub const INPUTS_PER_TASK_MAX: usize = 1024;
/// Read-only mounts of one job.
pub const MOUNTS_PER_JOB_MAX: usize = 16;
/// Files in all mounts of one job.
pub const MOUNT_FILES_MAX: usize = 100_000;
/// A file or path name component, in bytes.
pub const NAME_BYTES_MAX: usize = 255;
/// A path inside a mount or the output dir, in bytes.
pub const PATH_BYTES_MAX: usize = 1024;
/// Labels a node or a job's requirements may carry.
pub const LABELS_MAX: usize = 64;
/// A label key or value, in bytes.
pub const LABEL_BYTES_MAX: usize = 128;
/// Arguments of a job's validator, and their bytes together.
pub const VALIDATOR_ARGS_MAX: usize = 256;
pub const VALIDATOR_ARGS_BYTES_MAX: usize = 16 * KIB as usize;
/// Exit codes a job may name as success besides 0.
pub const SUCCESS_EXIT_CODES_MAX: usize = 32;
/// Attempts of one task, including the first.
pub const ATTEMPTS_MAX: u32 = 100;
/// Attempts of one task running at once.
pub const REPLICAS_MAX: u32 = 4;
/// Concurrent attempts (slots) one node may offer.
pub const SLOTS_PER_NODE_MAX: u32 = 1024;
/// Output files one attempt may report.
pub const OUTPUT_FILES_MAX: u32 = 100_000;
/// Reports in one report request.
pub const REPORTS_PER_REQUEST_MAX: usize = 4096;
/// Attempt ids in one heartbeat or release.
pub const ATTEMPTS_PER_HEARTBEAT_MAX: usize = 4096;
/// How long the coordinator holds a node's presence request open before answering it, in
/// milliseconds; the node sends the next at once.
pub const PRESENCE_HOLD_MS: u64 = 25_000;
/// How long a lease request may wait for work, in milliseconds.
pub const LEASE_WAIT_MS_MAX: u32 = 60_000;
/// Size of one blob: a module, an input, an output.
pub const BLOB_BYTES_MAX: u64 = GIB;
/// Size of a WebAssembly module.
pub const MODULE_BYTES_MAX: u64 = 256 * MIB;
/// Size of a JSON request body such as a job submission with a million tasks.
pub const JSON_BODY_BYTES_MAX: usize = 256 * MIB as usize;

/// The ceilings a job's own limits may not exceed.
pub mod ceiling {
    use super::*;
    pub const MEMORY_BYTES_MAX: u64 = 4 * GIB;
    pub const FUEL_MAX: u64 = 1_000_000_000_000_000;
    pub const DEADLINE_MS: u64 = 7 * 24 * 3600 * 1000;
    pub const OUTPUT_BYTES_MAX: u64 = BLOB_BYTES_MAX;
    pub const STDOUT_BYTES_MAX: u64 = 256 * MIB;
    pub const STDERR_BYTES_MAX: u64 = 64 * MIB;
}

/// The limits a job gets when its spec names none: generous for real work, small enough that a
/// runaway task is stopped before it hurts a laptop.
pub mod default {
    use super::*;
    pub const MEMORY_BYTES_MAX: u64 = 256 * MIB;
    pub const FUEL_MAX: u64 = 100_000_000_000;
    pub const DEADLINE_MS: u64 = 10 * 60 * 1000;
    pub const OUTPUT_BYTES_MAX: u64 = 64 * MIB;
    pub const OUTPUT_FILES_MAX: u32 = 1000;
    pub const STDOUT_BYTES_MAX: u64 = 16 * MIB;
    pub const STDERR_BYTES_MAX: u64 = MIB;
    pub const MAX_ATTEMPTS: u32 = 3;
    /// One attempt of a task at a time.
    pub const REPLICAS: u32 = 1;
}

/// A node's agent version string, in bytes.
pub const AGENT_VERSION_BYTES_MAX: usize = 64;
/// A node's architecture or operating system name, in bytes.
pub const PLATFORM_NAME_BYTES_MAX: usize = 32;
/// Why a node paused or gave attempts back, in bytes: one line for people.
pub const REASON_BYTES_MAX: usize = 1024;
/// The message of an attempt's outcome (a trap, a node error, a rejected module), in bytes.
/// The sandbox keeps trap messages to 2 KiB; the rest is headroom for the node's own words.
pub const OUTCOME_MESSAGE_BYTES_MAX: usize = 4 * KIB as usize;
/// Length of a device or token name, in bytes.
pub const DEVICE_NAME_BYTES_MAX: usize = 128;
/// Tokens one pool keeps (live and revoked together); the owner revokes, nothing deletes.
pub const TOKENS_MAX: usize = 10_000;

/// Transfers one read of `GET /v1/credits` returns.
pub const CREDIT_HISTORY_MAX: usize = 100;

/// Credits one grant may give: far more than any real grant, far from overflowing a balance.
pub const CREDITS_PER_GRANT_MAX: u64 = 1_000_000_000;
