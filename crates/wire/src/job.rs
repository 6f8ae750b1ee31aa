//! What a requester submits: a job, its tasks, what they need of a node and the limits they run
//! under.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::checkpoint::CheckpointSpec;
use crate::ids::{BlobHash, JobId};
use crate::limits::default;

/// `POST /v1/jobs`: one WebAssembly module and its tasks. Every blob it names must have been
/// uploaded by the same requester first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSubmission {
    /// A name for people; need not be unique. 1 to 200 bytes, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// The WASI preview 1 command module every task runs.
    pub module: BlobHash,
    /// The only environment variables a task sees.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Read-only data shared by all tasks, mounted at guest paths the job names.
    #[serde(default)]
    #[schema(max_items = 16)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub requirements: Requirements,
    #[serde(default)]
    pub limits: Limits,
    /// Attempts per task, the first included: a task whose node vanishes runs again elsewhere
    /// until this many attempts were made.
    #[serde(default = "default_max_attempts")]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: u32,
    /// Copies of each task run at once, on different nodes; the first to succeed gives the
    /// task its result and the others are stopped. More than one beats slow and vanishing
    /// nodes at the price of the extra runs, each counted as an attempt. At most
    /// `max_attempts`.
    #[serde(
        default = "default_replicas",
        skip_serializing_if = "is_default_replicas"
    )]
    #[schema(minimum = 1, maximum = 4)]
    pub replicas: u32,
    /// Run every task deterministically: the same output bytes and fuel on any node.
    #[serde(default)]
    pub deterministic: Option<Deterministic>,
    /// How results are checked, when the job asks for more than its pool's default (a public
    /// pool checks every job at least `adaptive`). Checking needs deterministic mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<crate::VerifyMode>,
    /// How two results of a task are compared when they need not be the same bytes: the
    /// requester's program that says whether they are equivalent. Only for a job whose results
    /// are verified; it lets a job without deterministic mode be verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<Validator>,
    /// Exit codes besides 0 that mean the task succeeded, as some fields' programs use them
    /// (a SAT solver exits 10 for satisfiable, 20 for unsatisfiable). The exit code is kept in
    /// the task's outcome either way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 32)]
    pub success_exit_codes: Vec<i32>,
    /// Its tasks save their state as they go, and an attempt that ends early resumes from the
    /// latest saved state on another node (see [`crate::checkpoint`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointSpec>,
    /// What a task whose program fails does next: retry, fail, or stop the job (see
    /// [`crate::failure`]). Absent: it fails at once. Only for a job whose results are not
    /// checked: a checked failure is one node's word, and would end the same way again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Box<crate::OnFailure>>,
    /// Its inputs, stdin and mount files are sealed on the requester's machine, its outputs by
    /// the node that runs each task, and only the nodes named here may run them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<Box<crate::PrivateJob>>,
    #[schema(min_items = 1, max_items = 1_000_000)]
    pub tasks: Vec<TaskSpec>,
}

impl JobSubmission {
    /// Whether an attempt that ended with `outcome` succeeded, by this job's exit codes.
    pub fn succeeded(outcome: &crate::Outcome, success_exit_codes: &[i32]) -> bool {
        match outcome {
            crate::Outcome::ExitCode { code } => success_exit_codes.contains(code),
            other => other.is_success(),
        }
    }

    /// Every blob the job names, with `tasks` as its tasks (the store keeps them apart from
    /// the rest): module, validator, a private job's manifest blob, mount files, and the
    /// tasks' stdin and input files.
    pub fn blobs_named(&self, tasks: &[TaskSpec]) -> std::collections::BTreeSet<BlobHash> {
        let mut hashes = std::collections::BTreeSet::from([self.module]);
        hashes.extend(self.validator.as_ref().map(|validator| validator.module));
        hashes.extend(self.private.as_ref().and_then(|p| p.manifest.blob()));
        for mount in &self.mounts {
            hashes.extend(mount.files.iter().map(|file| file.blob));
        }
        for task in tasks {
            hashes.extend(task.blobs());
        }
        hashes
    }

    /// A job of `tasks` running `module`, everything else at its default: no env or mounts,
    /// no requirements, the default limits, attempts and replicas, not deterministic.
    pub fn new(name: impl Into<String>, module: BlobHash, tasks: Vec<TaskSpec>) -> Self {
        Self {
            name: name.into(),
            module,
            env: BTreeMap::new(),
            mounts: Vec::new(),
            requirements: Requirements::default(),
            limits: Limits::default(),
            max_attempts: default::MAX_ATTEMPTS,
            replicas: default::REPLICAS,
            deterministic: None,
            verify: None,
            validator: None,
            success_exit_codes: Vec::new(),
            checkpoint: None,
            on_failure: None,
            private: None,
            tasks,
        }
    }
}

fn default_max_attempts() -> u32 {
    default::MAX_ATTEMPTS
}

fn default_replicas() -> u32 {
    default::REPLICAS
}

/// A job that runs one attempt at a time says nothing of replicas, so a coordinator from
/// before them takes it.
fn is_default_replicas(replicas: &u32) -> bool {
    *replicas == default::REPLICAS
}

/// A WASI preview 1 command module that compares two results of one task. It runs on the
/// coordinator's machine in the sandbox, with the two results mounted read-only at `/a` and
/// `/b`: in each, `outcome` (one line: `succeeded`, `exit N`, `trap`, `out_of_fuel`,
/// `memory_limit`, `output_too_large` or `invalid_output`), `stdout`, `stderr` and the
/// `output/` tree. It exits 0
/// when they are equivalent and 1 when they are not; anything else (another code, a trap,
/// running out of fuel or time) leaves the task inconclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Validator {
    pub module: BlobHash,
    /// `argv[1..]`; `argv[0]` is `validator`.
    #[serde(default)]
    #[schema(max_items = 256)]
    pub args: Vec<String>,
}

/// Options of deterministic mode: the same task gives the same output bytes and fuel on any
/// hardware, so results can be compared by hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Deterministic {
    /// The seed of the task's random source (combined with the task index).
    pub seed: u64,
}

/// One unit of work: its own arguments, standard input and input files.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// `argv[1..]`; `argv[0]` is the job's name.
    #[serde(default)]
    pub args: Vec<String>,
    /// The bytes on standard input; empty when absent.
    #[serde(default)]
    pub stdin: Option<BlobHash>,
    /// Files placed in the read-only `/input` directory.
    #[serde(default)]
    pub inputs: Vec<InputFile>,
}

impl TaskSpec {
    /// The blobs the task reads: its stdin and input files.
    pub fn blobs(&self) -> impl Iterator<Item = BlobHash> + '_ {
        self.stdin
            .into_iter()
            .chain(self.inputs.iter().map(|input| input.blob))
    }
}

/// A file in a task's `/input` directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    /// A plain file name: no `/`, not `.` or `..`.
    pub name: String,
    pub blob: BlobHash,
}

/// A read-only directory tree shared by all tasks of a job, seen by the guest at `guest_path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// An absolute guest path such as `/share`; not `/`, `/input`, `/output` or `/scratch`.
    pub guest_path: String,
    pub files: Vec<MountFile>,
}

/// One file of a mount, at a relative path below the mount point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MountFile {
    /// A relative path with `/` separators, e.g. `models/small.bin`.
    pub path: String,
    pub blob: BlobHash,
}

/// What a node must offer to run a task of the job.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    #[serde(default)]
    pub memory_bytes_min: u64,
    #[serde(default)]
    pub cores_min: u32,
    /// e.g. `x86_64`, `aarch64`; any when absent.
    #[serde(default)]
    pub arch: Option<String>,
    /// e.g. `linux`, `macos`, `windows`; any when absent.
    #[serde(default)]
    pub os: Option<String>,
    /// Owner labels the node must carry with these values, e.g. `region = "eu"`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Only nodes of this runtime: `browser` (tabs lending their device) or `native`
    /// (agents). Any when absent, except that a job whose fuel must be metered (deterministic,
    /// verified or checkpointing) runs on native agents only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<crate::NodeRuntime>,
    /// Only the pool it was submitted to: none of its tasks goes to a pool this one federates
    /// with (`federate = false` in a job spec).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub home_pool: bool,
}

/// The sandbox limits every attempt of the job runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Linear memory of the instance.
    #[serde(default = "d_memory")]
    #[schema(minimum = 65536, maximum = 4_294_967_296_u64)]
    pub memory_bytes_max: u64,
    /// Deterministic CPU metering: roughly one unit per WebAssembly instruction.
    #[serde(default = "d_fuel")]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_u64)]
    pub fuel_max: u64,
    /// Wall-clock time an attempt may run.
    #[serde(default = "d_deadline")]
    #[schema(minimum = 1, maximum = 604800000)]
    pub deadline_ms: u64,
    /// All files written under `/output` together.
    #[serde(default = "d_output")]
    #[schema(minimum = 1, maximum = 1073741824)]
    pub output_bytes_max: u64,
    #[serde(default = "d_output_files")]
    #[schema(minimum = 1, maximum = 100000)]
    pub output_files_max: u32,
    #[serde(default = "d_stdout")]
    #[schema(minimum = 1, maximum = 268435456)]
    pub stdout_bytes_max: u64,
    #[serde(default = "d_stderr")]
    #[schema(minimum = 1, maximum = 67108864)]
    pub stderr_bytes_max: u64,
}

fn d_memory() -> u64 {
    default::MEMORY_BYTES_MAX
}
fn d_fuel() -> u64 {
    default::FUEL_MAX
}
fn d_deadline() -> u64 {
    default::DEADLINE_MS
}
fn d_output() -> u64 {
    default::OUTPUT_BYTES_MAX
}
fn d_output_files() -> u32 {
    default::OUTPUT_FILES_MAX
}
fn d_stdout() -> u64 {
    default::STDOUT_BYTES_MAX
}
fn d_stderr() -> u64 {
    default::STDERR_BYTES_MAX
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes_max: d_memory(),
            fuel_max: d_fuel(),
            deadline_ms: d_deadline(),
            output_bytes_max: d_output(),
            output_files_max: d_output_files(),
            stdout_bytes_max: d_stdout(),
            stderr_bytes_max: d_stderr(),
        }
    }
}

/// The answer to a job submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobSubmitted {
    pub job_id: JobId,
    pub tasks: u32,
    /// With `POST /v1/jobs?wait_ms=`: the job once it ended, or as it was when the wait ran
    /// out; one exchange for a requester who submits and waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::JobStatus>,
}

/// A blob with its size, as reported for outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlobRef {
    pub hash: BlobHash,
    pub size_bytes: u64,
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::*;
    use crate::limits::{self, ceiling};

    fn schema_of<T: PartialSchema>() -> serde_json::Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    /// The bounds in the OpenAPI document are literals (the derive takes no paths); they must say
    /// what `validate` enforces.
    #[test]
    fn the_documented_bounds_are_the_limits() {
        let job = schema_of::<JobSubmission>();
        let field = |name: &str| job["properties"][name].clone();
        assert_eq!(field("name")["maxLength"], limits::JOB_NAME_BYTES_MAX);
        assert_eq!(field("max_attempts")["maximum"], limits::ATTEMPTS_MAX);
        assert_eq!(field("replicas")["maximum"], limits::REPLICAS_MAX);
        assert_eq!(field("tasks")["maxItems"], limits::TASKS_PER_JOB_MAX);
        assert_eq!(field("mounts")["maxItems"], limits::MOUNTS_PER_JOB_MAX);
        let job_limits = schema_of::<Limits>();
        for (name, max) in [
            ("memory_bytes_max", ceiling::MEMORY_BYTES_MAX),
            ("fuel_max", ceiling::FUEL_MAX),
            ("deadline_ms", ceiling::DEADLINE_MS),
            ("output_bytes_max", ceiling::OUTPUT_BYTES_MAX),
            ("output_files_max", limits::OUTPUT_FILES_MAX.into()),
            ("stdout_bytes_max", ceiling::STDOUT_BYTES_MAX),
            ("stderr_bytes_max", ceiling::STDERR_BYTES_MAX),
        ] {
            assert_eq!(job_limits["properties"][name]["maximum"], max, "{name}");
        }
        let token = schema_of::<crate::tokens::TokenCreateRequest>();
        assert_eq!(
            token["properties"]["name"]["maxLength"],
            limits::DEVICE_NAME_BYTES_MAX
        );
    }

    #[test]
    fn replicas_travel_only_when_asked_for_and_default_to_one() {
        let one = JobSubmission::new("one", BlobHash::of(b"m"), vec![TaskSpec::default()]);
        let json = serde_json::to_value(&one).unwrap();
        assert!(json.get("replicas").is_none(), "{json}");
        let two = JobSubmission { replicas: 2, ..one };
        let json = serde_json::to_value(&two).unwrap();
        assert_eq!(json["replicas"], 2);
        let mut without = json;
        without.as_object_mut().unwrap().remove("replicas");
        let read: JobSubmission = serde_json::from_value(without).unwrap();
        assert_eq!(read.replicas, 1);
    }
}
