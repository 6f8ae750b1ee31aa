//! The protocol between a provider node (the agent) and the coordinator: registration, leases,
//! heartbeats, reports and releases.
//!
//! The agent always dials out and pulls. A lease request long-polls, so a task starts the moment
//! it is submitted; it is answered with up to the node's free slots at once. Each attempt holds a
//! lease that the node's heartbeat extends; the attempt id is the lease's fencing token, so a
//! report of an attempt the coordinator no longer counts as current is refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{AttemptId, BlobHash, JobId, NodeId};
use crate::job::{BlobRef, Deterministic, InputFile, Limits, Mount};

/// What a node has to offer, as measured by its agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    pub cores: u32,
    pub memory_bytes: u64,
    /// Free space where the agent keeps task data.
    pub disk_free_bytes: u64,
    /// `std::env::consts::ARCH` of the agent, e.g. `x86_64`.
    pub arch: String,
    /// `std::env::consts::OS` of the agent, e.g. `linux`.
    pub os: String,
    /// The largest module it compiles, in bytes: at most [`crate::limits::MODULE_BYTES_MAX`]
    /// (what an agent that does not say compiles), less on a small device.
    #[serde(default = "module_bytes_max_default")]
    #[schema(minimum = 1, maximum = 268435456)]
    pub module_bytes_max: u64,
    /// The WASI 0.2 interfaces it gives components, without versions (`wasi:io/streams`...);
    /// empty for a node that runs no components (an agent that does not say runs none).
    #[serde(default)]
    #[schema(max_items = 64)]
    pub wasi_interfaces: Vec<String>,
    /// The WebAssembly proposals it compiles, by the names of [`crate::wasm::FEATURES`]; empty
    /// from an agent that does not say, which is taken to compile all of them.
    #[serde(default)]
    #[schema(max_items = 32)]
    pub wasm_features: Vec<String>,
    /// What runs its tasks: a native agent, whose fuel is metered, or a browser tab, whose is
    /// not. Left out by native agents, so their signed registrations read as before.
    #[serde(default, skip_serializing_if = "NodeRuntime::is_native")]
    pub runtime: NodeRuntime,
    /// The key private jobs' keys are wrapped to, signed by the node's identity; absent from a
    /// node that runs no private jobs (a browser tab).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key: Option<crate::NodeEncryptionKey>,
    /// `host:port` where the node serves the intermediates it holds to other nodes (see
    /// [`crate::peer`]); absent from a node that serves none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 255)]
    pub peer_address: Option<String>,
}

/// What runs a node's tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeRuntime {
    /// The crowdcloud agent: wasmtime, fuel metered exactly.
    #[default]
    Native,
    /// A browser tab lending its device from the web app: the browser's own WebAssembly
    /// engine, no fuel metering (a task there counts no fuel and earns no credits), deadlines
    /// kept by stopping its worker.
    Browser,
}

impl NodeRuntime {
    pub fn is_native(&self) -> bool {
        *self == NodeRuntime::Native
    }
}

fn module_bytes_max_default() -> u64 {
    crate::limits::MODULE_BYTES_MAX
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            cores: 0,
            memory_bytes: 0,
            disk_free_bytes: 0,
            arch: String::new(),
            os: String::new(),
            module_bytes_max: module_bytes_max_default(),
            wasi_interfaces: Vec::new(),
            wasm_features: Vec::new(),
            runtime: NodeRuntime::Native,
            encryption_key: None,
            peer_address: None,
        }
    }
}

/// `POST /v1/nodes/challenge`: a node about to register asks for a nonce to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    pub join_token: String,
}

/// A nonce that one registration with the same join token may sign and spend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChallengeResponse {
    /// 64 hex digits; put it in [`RegisterRequest::nonce`].
    pub nonce: String,
    /// The nonce is refused after this long.
    pub expires_in_ms: u64,
}

/// `POST /v1/nodes/register`: a node proves it holds its key and presents the pool's join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub join_token: String,
    /// The node's ed25519 public key, 64 hex digits.
    pub public_key: String,
    /// ed25519 signature, 128 hex digits, of [`crate::auth::registration_message`]: every other
    /// field of this request.
    pub signature: String,
    /// The nonce of a fresh challenge (`POST /v1/nodes/challenge`); each is spent by one
    /// registration, so a captured registration cannot be replayed.
    pub nonce: String,
    /// A name for people, e.g. the host name.
    pub name: String,
    pub capabilities: Capabilities,
    /// Owner labels such as `region = "eu"`, matched against job requirements.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub slots: u32,
    pub agent_version: String,
}

/// The node's credentials for every later request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegisterResponse {
    pub node_id: NodeId,
    /// Bearer token bound to this node; send it as `Authorization: Bearer …`.
    pub node_token: String,
    /// A lease lasts this long past the last heartbeat.
    pub lease_ms: u64,
    /// Heartbeat at least this often.
    pub heartbeat_ms: u64,
    pub pool_name: String,
}

/// `POST /v1/nodes/lease`: ask for up to `slots_free` attempts, waiting up to `wait_ms` for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    pub slots_free: u32,
    pub wait_ms: u32,
}

/// Attempts granted to the node, with what it needs to know of their jobs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct LeaseResponse {
    pub jobs: Vec<JobRuntime>,
    pub attempts: Vec<AttemptGrant>,
}

/// The parts of a job every attempt of it shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobRuntime {
    pub job_id: JobId,
    pub name: String,
    pub module: BlobHash,
    pub env: BTreeMap<String, String>,
    pub mounts: Vec<Mount>,
    pub limits: Limits,
    pub deterministic: Option<Deterministic>,
    /// How its tasks checkpoint; absent when they do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<crate::CheckpointSpec>,
    /// Set for a private job: where its manifest is and the job's key wrapped to this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private: Option<crate::PrivateRuntime>,
    /// Sent to another pool that takes the job's tasks (federation), so that it places them
    /// on nodes of its own that meet them; absent for this pool's own nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<crate::Requirements>,
    /// The job is a pipeline stage whose outputs a later stage fetches node to node: a node
    /// with a peer listener keeps them in its cache for peers and does not upload them (a
    /// report names them with their hashes and sizes); a node without uploads them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hold_outputs: bool,
}

/// One attempt the node now holds a lease on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttemptGrant {
    pub attempt_id: AttemptId,
    pub job_id: JobId,
    pub task_index: u32,
    pub args: Vec<String>,
    pub stdin: Option<BlobHash>,
    pub inputs: Vec<InputFile>,
    /// The task's latest checkpoint, which the attempt resumes from; absent on a first start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<crate::CheckpointRef>,
    /// The memory this attempt gets when it is not the job's `limits.memory_bytes_max`: more,
    /// after earlier attempts ran out of it (see [`crate::OnFailure::memory_escalate`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes_max: Option<u64>,
    /// Nodes that hold some of the inputs, to fetch them from before the coordinator (see
    /// [`crate::peer`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<crate::PeerBlob>,
}

/// What the agent is doing as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum NodeActivity {
    /// Taking work.
    #[default]
    Active,
    /// Shutting down: finishing what it runs, taking nothing new.
    Draining,
    /// The owner's policy stopped work for now; attempts are kept but do not advance.
    Paused { reason: String },
}

/// `POST /v1/nodes/heartbeat`: extends the leases of every attempt the node still runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub running: Vec<AttemptId>,
    pub slots_free: u32,
    #[serde(default)]
    pub activity: NodeActivity,
    /// What the node lends now, sent when its owner's policy changed it since the node last
    /// said; the coordinator schedules by it from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// Deleted jobs whose blobs the node has dropped since it was asked (see
    /// [`HeartbeatResponse::forget`]); at most [`crate::deletion::FORGETS_PER_HEARTBEAT_MAX`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forgotten: Vec<JobId>,
    /// Blobs the node copied as [`HeartbeatResponse::copy`] asked, and now keeps for peers; at
    /// most [`crate::peer::COPIES_PER_HEARTBEAT_MAX`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copied: Vec<BlobHash>,
    /// Kept intermediates the node holds for peers, named while [`HeartbeatResponse::name_kept`]
    /// asks; at most [`crate::peer::KEPT_NAMED_PER_HEARTBEAT_MAX`], the rest in later heartbeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<BlobHash>,
    /// Blobs the coordinator counts on this node for that it no longer has (its disk lost
    /// them); at most [`crate::peer::DROPPED_PER_HEARTBEAT_MAX`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<BlobHash>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatResponse {
    /// Attempts the node should stop: cancelled, expired or unknown to the coordinator. Their
    /// reports would be refused.
    pub cancel: Vec<AttemptId>,
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    /// Deleted jobs whose cached blobs the node should drop, and then name in `forgotten`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forget: Vec<crate::Forget>,
    /// Kept intermediates to fetch from their holders and keep for peers, then name in
    /// [`HeartbeatRequest::copied`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copy: Vec<crate::PeerBlob>,
    /// Kept intermediates no stage reads any more (their pipeline ended): the node may drop
    /// them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub release: Vec<BlobHash>,
    /// The coordinator started again and knows no holder of what nodes kept: the node names
    /// the intermediates it keeps in [`HeartbeatRequest::kept`] at its next heartbeats.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub name_kept: bool,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// `_start` returned or the guest exited with code 0.
    Succeeded,
    /// The guest exited with a non-zero code.
    ExitCode { code: i32 },
    /// The guest trapped: unreachable, out-of-bounds access, stack overflow, …
    Trap { message: String },
    /// It used all the fuel the job allows.
    OutOfFuel,
    /// It ran past the job's wall-clock deadline.
    DeadlineExceeded,
    /// It tried to grow memory or tables past the job's limit.
    MemoryLimit,
    /// It wrote more than the job allows to `what` (stdout, stderr, /output).
    OutputTooLarge { what: String },
    /// It left something in /output that is not a regular file or directory.
    InvalidOutput { message: String },
    /// The module could not be compiled or instantiated on the node (invalid, missing imports,
    /// too large).
    ModuleRejected { message: String },
    /// The node failed to run it for reasons of its own (a blob could not be fetched, the disk
    /// is full); another node may succeed.
    NodeError { message: String },
    /// The job was cancelled while the attempt ran.
    Cancelled,
    /// The job is private and its key was not wrapped to this node: it read nothing.
    NoKey,
    /// A sealed blob of a private job did not open with the job's key, or its plaintext is not
    /// the one the job's manifest names: it was changed, or belongs to another job.
    SealBroken { message: String },
    /// Set by the coordinator, never reported: every attempt's node vanished before it finished.
    Lost { attempts: u32 },
    /// Set by the coordinator, never reported: the task's results disagreed past the pool's
    /// bound, or the job's validator could not compare them, so none was accepted.
    Inconclusive {
        results: u32,
        /// Why the job's validator could not compare two of them, when that is what left the
        /// task inconclusive.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        validator_failed: Option<String>,
    },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Succeeded)
    }

    /// Whether another attempt elsewhere could end differently. Failures of the guest itself
    /// are final: the same module and inputs fail the same way on any node.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Outcome::NodeError { .. } | Outcome::NoKey)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Succeeded => f.write_str("succeeded"),
            Outcome::ExitCode { code } => write!(f, "exited with code {code}"),
            Outcome::Trap { message } => write!(f, "trapped: {message}"),
            Outcome::OutOfFuel => f.write_str("out of fuel"),
            Outcome::DeadlineExceeded => f.write_str("deadline exceeded"),
            Outcome::MemoryLimit => f.write_str("memory limit reached"),
            Outcome::OutputTooLarge { what } => write!(f, "too much output on {what}"),
            Outcome::InvalidOutput { message } => write!(f, "invalid output: {message}"),
            Outcome::ModuleRejected { message } => write!(f, "module rejected: {message}"),
            Outcome::NodeError { message } => write!(f, "node error: {message}"),
            Outcome::Cancelled => f.write_str("cancelled"),
            Outcome::NoKey => {
                f.write_str("no key: the job is private and its key was not granted to this node")
            }
            Outcome::SealBroken { message } => write!(f, "sealed data did not open: {message}"),
            Outcome::Lost { attempts } => {
                write!(f, "lost: the nodes of all {attempts} attempts vanished")
            }
            Outcome::Inconclusive {
                validator_failed: Some(why),
                ..
            } => write!(
                f,
                "inconclusive: the job's validator could not compare its results ({why}), so \
                 none was accepted"
            ),
            Outcome::Inconclusive { results, .. } => write!(
                f,
                "inconclusive: its {results} results disagreed, so none was accepted"
            ),
        }
    }
}

/// What an attempt used, as measured by the node's sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    pub fuel_used: u64,
    pub wall_ms: u64,
    pub memory_peak_bytes: u64,
    pub output_bytes: u64,
    /// Time the node took to make the module ready before the attempt started: compiling it,
    /// or loading what it compiled before from disk; 0 when it was ready in memory.
    #[serde(default)]
    pub compile_ms: u64,
}

/// A file the attempt left in `/output`, uploaded as a blob before the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputFile {
    /// Relative to `/output`, with `/` separators.
    pub path: String,
    pub hash: BlobHash,
    pub size_bytes: u64,
}

/// The end of one attempt. Its blobs (stdout, stderr, outputs) are uploaded first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttemptReport {
    pub attempt_id: AttemptId,
    pub outcome: Outcome,
    pub usage: Usage,
    pub stdout: Option<BlobRef>,
    pub stderr: Option<BlobRef>,
    #[serde(default)]
    pub outputs: Vec<OutputFile>,
    /// In a private job, where the blobs above are sealed: 64 hex digits, a digest of the
    /// plaintext of stdout, stderr and every output keyed by the job's key, so that replicas'
    /// results compare without anyone reading them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_digest: Option<String>,
    /// From a pool that lends this one its nodes (federation): the pool and the node of its
    /// own that ran the attempt, `pool/node`, for the requester to see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 257)]
    pub ran_on: Option<String>,
}

/// `POST /v1/nodes/report`: reports of attempts that ended, batched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    pub reports: Vec<AttemptReport>,
}

/// Whether each report was taken. A refused report changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportAck {
    pub attempt_id: AttemptId,
    pub accepted: bool,
    /// Why it was refused, e.g. the lease expired and the task runs elsewhere.
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct ReportResponse {
    pub acks: Vec<ReportAck>,
    /// The attempts granted for the slots the report said were free (`?slots_free=`), with
    /// their jobs' runtimes: a busy node reports and takes more work in one exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseResponse>,
}

/// `POST /v1/nodes/release`: give attempts back unfinished (the node is shutting down or its
/// owner wants the machine); they run again elsewhere without counting against max attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRequest {
    pub attempts: Vec<AttemptId>,
    pub reason: String,
}

/// Which of the released attempts were taken back; the others were no longer held.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct ReleaseResponse {
    pub released: Vec<AttemptId>,
}
