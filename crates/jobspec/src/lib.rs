//! Job specs as people write them: a TOML file (or the quick forms of `crowdcloud submit`)
//! turned into a [`JobPlan`] that names local files, ready to upload and submit.
//!
//! This crate reads and checks the spec; it does no network I/O. Sizes are written as numbers
//! or with a unit (`"256MiB"`, `"1.5GB"`), durations as milliseconds or with a unit (`"90s"`,
//! `"10m"`). Paths are relative to the spec file. Everything the coordinator would refuse is
//! refused here first, with the field that is wrong.
//!
//! # Pipelines
//!
//! A spec with `[[stages]]` is a pipeline ([`is_pipeline`], read by [`parse_pipeline`] into a
//! [`PipelinePlan`]): jobs run in order, a later one taking its tasks from an earlier one's
//! outputs. Each stage table takes every field a job spec does, plus a `name`:
//!
//! ```toml
//! name = "word count"            # optional; default from the first stage's module file name
//!
//! [[stages]]
//! name = "map"                   # required: 1 to 64 of a-z, 0-9, '-', '_'; unique
//! module = "wordfreq.wasm"       # or program = "x.py"; env, limits, requirements, … as a job
//! per_input = { dir = "books", args = ["map", "8"] }
//!
//! [[stages]]
//! name = "reduce"
//! module = "wordfreq.wasm"
//! partition = { stage = "map", parts = 8 }   # or: each = "map"   or: all = "map"
//! args = ["reduce"]              # the template task's args; optional
//! ```
//!
//! A stage either gives its own tasks (`[[stages.tasks]]`, `sweep` or `per_input`, exactly as a
//! job does) or reads one stage listed before it with exactly one of `each` (a task per output
//! file), `all` (one task for all of them) or `partition` (task `i` gets every `part-i`, 1 to
//! 10000 parts; see [`wire::StageInput`]); such a stage has one template task, whose `args`
//! are the stage's `args`. A stage's job is named `"{pipeline name}/{stage name}"`. At most 16
//! stages; the top level holds only `name` and `stages`.

mod pipeline;
mod quantity;
mod spec;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use pipeline::{check_pipeline, is_pipeline, parse_pipeline};
pub use quantity::{parse_bytes, parse_duration_ms};
pub use spec::{check, parse, per_input, sweep};

use wire::{Deterministic, Limits, Requirements};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{0}")]
    Syntax(String),
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
}

/// A job ready to be uploaded: the wire submission's shape, with local paths for its blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPlan {
    pub name: String,
    pub module: PathBuf,
    pub env: BTreeMap<String, String>,
    pub mounts: Vec<MountPlan>,
    pub requirements: Requirements,
    pub limits: Limits,
    pub max_attempts: u32,
    /// Copies of each task run at once on different nodes; the first success wins.
    pub replicas: u32,
    pub deterministic: Option<Deterministic>,
    /// How results are checked, beyond the pool's default (`verify = "replicate"`).
    pub verify: Option<wire::VerifyMode>,
    /// The local module that compares two results, and its arguments.
    pub validator: Option<ValidatorPlan>,
    /// Exit codes besides 0 that mean success.
    pub success_exit_codes: Vec<i32>,
    /// How its tasks checkpoint, if they do.
    pub checkpoint: Option<wire::CheckpointSpec>,
    /// What a task whose program fails does next: `retries`, `unless_exit`, `abort_on` and
    /// `memory_escalate` in the spec.
    pub on_failure: Option<Box<wire::OnFailure>>,
    /// Set for a private job: its files are sealed before upload, and its key wrapped to the
    /// nodes this trusts.
    pub private: Option<PrivatePlan>,
    /// Set when the job runs a script: `module` is then the script, which the caller replaces
    /// by its runtime (the CLI's `runtimes`), mounting the script and its packages.
    pub script: Option<ScriptPlan>,
    pub tasks: Vec<TaskPlan>,
}

impl JobPlan {
    /// The submission of the plan running `module`, without its files: no mounts, tasks,
    /// validator or private part, which the caller fills in as it uploads them.
    pub fn bare_submission(&self, module: wire::BlobHash) -> wire::JobSubmission {
        wire::JobSubmission {
            name: self.name.clone(),
            module,
            env: self.env.clone(),
            mounts: Vec::new(),
            requirements: self.requirements.clone(),
            limits: self.limits,
            max_attempts: self.max_attempts,
            replicas: self.replicas,
            deterministic: self.deterministic,
            verify: self.verify,
            validator: None,
            success_exit_codes: self.success_exit_codes.clone(),
            checkpoint: self.checkpoint,
            on_failure: self.on_failure.clone(),
            private: None,
            tasks: Vec::new(),
        }
    }
}

/// Which nodes a private job's requester trusts with its data: the nodes named, and every
/// node with all the labels named (and the job's own label requirements). Empty: every node
/// of the pool that fits the job and holds an encryption key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivatePlan {
    pub nodes: Vec<wire::NodeId>,
    pub labels: BTreeMap<String, String>,
    /// Seal the module too, which the coordinator then cannot check.
    pub module: bool,
}

/// A pipeline ready to be uploaded: its stages in order, every stage after the ones it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelinePlan {
    pub name: String,
    pub stages: Vec<StagePlan>,
    /// Where intermediates are kept: `locality = "nodes"` (with `copies`) keeps them on nodes.
    pub locality: wire::Locality,
    /// `copies`: of each kept intermediate besides its maker's (1 with `"nodes"` unless given).
    pub copies: u32,
}

/// One stage of a [`PipelinePlan`]: a job, and the earlier stage its tasks come from, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePlan {
    pub name: String,
    /// Set when the stage reads an earlier one: `job.tasks` is then exactly one task, the
    /// template of the tasks made from that stage's outputs (its args, no stdin, no inputs).
    pub input: Option<wire::StageInput>,
    /// Named `"{pipeline name}/{stage name}"`.
    pub job: JobPlan,
}

/// What a script's job needs besides the script.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScriptPlan {
    /// A directory of pure-Python packages, mounted where the script imports from.
    pub packages: Option<PathBuf>,
}

/// A job's validator: a local module and its arguments (see `wire::Validator`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorPlan {
    pub module: PathBuf,
    pub args: Vec<String>,
}

/// A local directory whose files are mounted read-only at `guest_path` for every task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPlan {
    pub guest_path: String,
    pub dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskPlan {
    pub args: Vec<String>,
    pub stdin: Option<PathBuf>,
    /// `(name in /input, local file)`.
    pub inputs: Vec<(String, PathBuf)>,
}
