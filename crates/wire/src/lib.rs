//! The wire types of crowdcloud: every request and response body of the `/v1/` HTTP API, shared
//! by the coordinator, the agent and the requester CLI.
//!
//! This crate is the only contract between the agent and the coordinator: neither depends on the
//! other. Every type here is plain data with `serde` and `utoipa` derives, so the OpenAPI document
//! the coordinator serves is generated from the same definitions the code uses.
//!
//! Invariants:
//! - Identifiers travel as prefixed strings (`j-…`, `n-…`, `a-…`), never as JSON numbers, so that
//!   JavaScript clients (the web app) do not lose precision.
//! - Everything a requester submits is checked by [`validate`] before it touches any state; the
//!   limits it enforces are the constants in [`limits`].

pub mod api;
pub mod auth;
pub mod checkpoint;
pub mod credits;
pub mod deletion;
pub mod failure;
pub mod federation;
pub mod fingerprint;
pub mod ids;
pub mod job;
pub mod key;
pub mod limits;
pub mod node;
pub mod pairing;
pub mod peer;
pub mod pipeline;
pub mod private;
pub mod status;
pub mod tokens;
pub mod validate;
pub mod verification;
pub mod wasi;
pub mod wasm;
pub mod web;

pub use api::{ApiError, CoordinatorRole, ErrorCode, HealthResponse};
pub use checkpoint::{CheckpointProgress, CheckpointRef, CheckpointSpec};
pub use credits::{Account, Balance, CreditGrant, CreditGranted, Credits, Memo, Transfer};
pub use deletion::{Forget, JobDeletion};
pub use failure::OnFailure;
pub use fingerprint::Fingerprint;
pub use ids::{AttemptId, BlobHash, JobId, NodeId, PeerId, PipelineId, RequesterId};
pub use job::{
    BlobRef, Deterministic, InputFile, JobSubmission, JobSubmitted, Limits, Mount, MountFile,
    Requirements, TaskSpec, Validator,
};
pub use node::{
    AttemptGrant, AttemptReport, Capabilities, ChallengeRequest, ChallengeResponse,
    HeartbeatRequest, HeartbeatResponse, JobRuntime, LeaseRequest, LeaseResponse, NodeActivity,
    NodeRuntime, Outcome, OutputFile, RegisterRequest, RegisterResponse, ReleaseRequest,
    ReleaseResponse, ReportAck, ReportRequest, ReportResponse, Usage,
};
pub use peer::{Locality, PeerBlob, PeerHolder};
pub use pipeline::{
    PipelineStatus, PipelineSubmission, PipelineSubmitted, StageInput, StageJob, StageState,
    StageStatus, StageSubmission,
};
pub use private::{
    KeyGrant, KeysGranted, NodeEncryptionKey, PrivateJob, PrivateRuntime, WrappedKey,
};
pub use status::{
    Aborted, Explanation, JobList, JobState, JobStatus, NodeList, NodeRemoved, NodeShare,
    NodeState, NodeView, ReusedFrom, StageOf, TaskCounts, TaskPage, TaskState, TaskStatus,
    WhyResponse,
};
pub use verification::{
    NodeStanding, OwnerView, PoolTrust, Record, Standing, Trust, Verification, VerifiedBy,
    VerifyMode,
};
pub use web::{AttemptPage, AttemptView, MetricsHistory, MetricsSample, Preset, PresetList};

/// Errors of the wire crate: malformed identifiers, hashes, tokens and signatures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("malformed {what} {value:?}: expected {expected}")]
    Malformed {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("signature does not verify: the request was not signed by the key it names")]
    BadSignature,
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
}
