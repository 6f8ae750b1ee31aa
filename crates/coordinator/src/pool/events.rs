//! What happened in the pool: the events commands produce, the only things that change its
//! state (see [`super::apply`]), and their serialized form.
//!
//! An event says what happened, not what to do: every id, time and choice in it was made by the
//! command that produced it, so applying it needs neither a clock nor entropy, and applying the
//! same events to the same pool gives the same pool. The store keeps the rows they imply (made
//! in `apply`); the serialized form (`Envelope`) is what the events of one coordinator are
//! shipped and replayed as, and it carries the coordinator's epoch. Only the replay of debug
//! builds reads that form so far, so release builds leave it out.

use serde::{Deserialize, Serialize};

#[cfg(any(test, debug_assertions))]
use crate::CoordinatorError;
use store::{AttemptEnd, AttemptRow, JobRow, NodeRow, PeerRow, RequesterRow, TokenRow};
use wire::{
    AttemptId, BlobHash, Capabilities, JobId, JobState, NodeActivity, NodeId, Outcome, PipelineId,
    TaskSpec, VerifiedBy,
};

/// The version of the events' serialized form; raised whenever an event changes shape, so a
/// reader never applies an event it would misread.
#[cfg(any(test, debug_assertions))]
pub(crate) const EVENTS_VERSION: u32 = 15;

/// Why a node left the pool's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum NodeGone {
    /// It registered again: a new session replaces the old one.
    Restarted,
    /// It was silent past the purge age and held nothing.
    Silent,
    /// Its owner removed it; the identity may not come back.
    Removed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Event {
    /// A token was created; a requester token comes with its new requester.
    TokenCreated {
        token: TokenRow,
        requester: Option<RequesterRow>,
    },
    TokenRevoked {
        hash: String,
        at_ms: u64,
    },
    /// The owner added a pool to lend this one's idle slots to, with its account here.
    PeerAdded {
        peer: PeerRow,
        requester: RequesterRow,
    },
    /// The owner stopped lending to a pool.
    PeerRemoved {
        id: u64,
        at_ms: u64,
    },
    /// A node registered, at `node.registered_at_ms`.
    NodeRegistered {
        node: NodeRow,
    },
    NodeGone {
        node: NodeId,
        why: NodeGone,
        at_ms: u64,
    },
    /// A node's request reached the coordinator: it is alive, and its lease runs a term from
    /// now.
    NodeHeard {
        node: NodeId,
        at_ms: u64,
    },
    /// A node that holds attempts has been silent for half its lease: it may be gone (killed,
    /// asleep, cut off), so its attempts' tasks run elsewhere too until it is heard again.
    NodeSilent {
        node: NodeId,
        at_ms: u64,
    },
    NodeActivitySet {
        node: NodeId,
        activity: NodeActivity,
        at_ms: u64,
    },
    NodeCapabilitiesSet {
        node: NodeId,
        capabilities: Capabilities,
    },
    /// A node's process may be gone: it must be sent the runtimes of its jobs again.
    NodeRuntimesUnsent {
        node: NodeId,
    },
    /// The live nodes behind the heartbeat interval were counted again.
    NodesLiveRecounted {
        at_ms: u64,
    },
    /// When these nodes were last heard from is now in the store.
    NodesHeardStored {
        nodes: Vec<(NodeId, u64)>,
    },
    JobSubmitted {
        job: Box<JobRow>,
        tasks: Vec<TaskSpec>,
    },
    /// Every task ended; `state` says whether all succeeded.
    JobFinished {
        job: JobId,
        state: JobState,
        at_ms: u64,
    },
    /// Its requester cancelled it, or one of its tasks stopped it (`aborted`, and the job
    /// fails): its live attempts end, and its tasks that had not ended.
    /// A job was deleted for good: it leaves the pool and the store, and the nodes that ran
    /// its attempts are asked to drop their copies. `dropping` are the oldest closed deletion
    /// records, forgotten to keep their number bounded.
    JobDeleted {
        row: Box<store::DeletionRow>,
        dropping: Vec<JobId>,
    },
    /// A node confirmed it dropped the cached blobs of deleted jobs.
    NodeForgot {
        node: NodeId,
        jobs: Vec<JobId>,
    },
    /// A private job's key was wrapped to more nodes, which may run its tasks from now on.
    KeysGranted {
        job: JobId,
        keys: std::collections::BTreeMap<NodeId, wire::WrappedKey>,
    },
    JobCancelled {
        job: JobId,
        at_ms: u64,
        aborted: Option<wire::Aborted>,
    },
    /// Ended jobs were forgotten, here and in the store.
    JobsPurged {
        jobs: Vec<JobId>,
    },
    /// Tasks of a new job took the results of earlier tasks of the same key, each as a copy
    /// under a new attempt id: they ended succeeded without running.
    TasksReused {
        job: JobId,
        at_ms: u64,
        tasks: Vec<(u32, AttemptId, store::Reusable)>,
    },
    /// A pipeline was submitted, every stage waiting; the stages with tasks of their own
    /// start in the same change (each a `JobSubmitted`, then a `StageStarted`).
    PipelineSubmitted {
        pipeline: store::PipelineRow,
    },
    /// The stage's job was submitted, just before, under the id the stage was given.
    StageStarted {
        pipeline: PipelineId,
        stage: usize,
    },
    /// The stage will never run.
    StageNotRun {
        pipeline: PipelineId,
        stage: usize,
        reason: String,
    },
    /// Its requester cancelled the pipeline; the stage events that follow in the same change
    /// stop its running stage and give up the waiting ones.
    PipelineCancelled {
        pipeline: PipelineId,
    },
    /// Every stage of the pipeline ended.
    PipelineEnded {
        pipeline: PipelineId,
        at_ms: u64,
    },
    /// Ended pipelines were forgotten, with what their stages that never ran had named.
    PipelinesPurged {
        pipelines: Vec<PipelineId>,
        unrun_jobs: Vec<JobId>,
    },
    /// Pending tasks of a job started on a node, each as a new attempt.
    AttemptsGranted {
        node: NodeId,
        job: JobId,
        at_ms: u64,
        /// The node had not been sent the job's runtime; it is sent with these.
        send_runtime: bool,
        attempts: Vec<(AttemptId, u32)>,
    },
    /// Grants reached their node: its lease runs a term from now, and they are durable.
    GrantsDelivered {
        node: NodeId,
        at_ms: u64,
        attempts: Vec<AttemptRow>,
    },
    /// Grants that never reached their node are undone, as if never made.
    GrantsWithdrawn {
        node: NodeId,
        attempts: Vec<AttemptId>,
        runtimes: Vec<JobId>,
    },
    /// The node's heartbeats stopped (`Some`) or started again (`None`) listing the attempt.
    AttemptUnlisted {
        attempt: AttemptId,
        since_ms: Option<u64>,
    },
    /// The node was paused, so the attempt's deadline is checked again later.
    AttemptDeadlineMoved {
        attempt: AttemptId,
        check_at_ms: u64,
    },
    /// A node that serves peers holds these blobs of a pipeline with `locality = "nodes"`, and
    /// their sizes: what an attempt of it made or fetched.
    BlobsHeld {
        node: NodeId,
        pipeline: PipelineId,
        blobs: Vec<(BlobHash, u64)>,
    },
    /// A node with a peer listener kept these outputs of `task` of `job` and did not upload
    /// them: only nodes have them, and the pipeline wants `copies` more of each.
    OutputsKept {
        node: NodeId,
        pipeline: PipelineId,
        job: JobId,
        task: u32,
        blobs: Vec<(BlobHash, u64)>,
        copies: u32,
    },
    /// The node's lease ran out: what it held is counted on no more.
    HoldersLost {
        node: NodeId,
    },
    /// The node said it no longer has these blobs it held: it is counted on for them no more.
    BlobsDropped {
        node: NodeId,
        blobs: Vec<BlobHash>,
    },
    /// These kept blobs of `task` of `job` are in the coordinator's store now (a node that
    /// keeps nothing made them again and uploaded them): they are kept no more.
    KeptUploaded {
        job: JobId,
        task: u32,
        blobs: Vec<BlobHash>,
    },
    /// The node was asked to copy these kept blobs, until `until_ms`.
    CopiesOrdered {
        node: NodeId,
        blobs: Vec<BlobHash>,
        until_ms: u64,
    },
    /// The node was told it may drop the first `count` kept blobs it was to be told of.
    ReleasesSent {
        node: NodeId,
        count: u32,
    },
    UploadRecorded {
        attempt: AttemptId,
        hash: BlobHash,
        size_bytes: u64,
        at_ms: u64,
    },
    /// The node that holds `attempt` saved a checkpoint of its task: the task's latest now.
    CheckpointSaved {
        attempt: AttemptId,
        checkpoint: wire::CheckpointRef,
        at_ms: u64,
    },
    /// A task of a job that verifies lost its latest checkpoint, which a banned owner's node
    /// saved or led to: its next attempt starts from the beginning.
    CheckpointDropped {
        job: JobId,
        task: u32,
    },
    /// An attempt ended (reported, released, expired); `end.task_end` says whether its task
    /// ended with it.
    AttemptEnded {
        end: AttemptEnd,
    },
    /// A live attempt of a job that verifies gave a result; its end follows. `owner` is who
    /// the result counts as a witness for, `makers` who else it does (it resumed from their
    /// nodes' checkpoints), and `trusted` whether its node was trusted then.
    ResultClaimed {
        attempt: AttemptId,
        digest: verify::Digest,
        outcome: Outcome,
        owner: u64,
        makers: Vec<u64>,
        trusted: bool,
        /// What the execution cost, and whose account it is paid into.
        fuel: u64,
        payee: u64,
        /// Its blobs, when its job has a validator to compare them.
        files: Option<Box<super::ResultFiles>>,
    },
    /// The job's validator compared `attempt`'s result with `with`'s: equivalent, it takes the
    /// same label; different, it is compared with the next label or gets its own.
    ResultsCompared {
        job: JobId,
        task: u32,
        attempt: AttemptId,
        with: AttemptId,
        equivalent: bool,
    },
    /// A task's results are not enough yet: it wants `wanted` attempts at once on nodes of
    /// other owners, and passes `by` once a quorum agrees.
    ChecksWanted {
        job: JobId,
        task: u32,
        wanted: u32,
        by: VerifiedBy,
    },
    /// A task's one result, from a trusted node, waits in that node's audit window.
    ResultHeld {
        job: JobId,
        task: u32,
    },
    /// A task's results were verified: it ends with `attempt`'s; `nodes` gave results that
    /// agree, the first of them `attempt`'s node.
    TaskVerified {
        job: JobId,
        task: u32,
        attempt: AttemptId,
        outcome: Outcome,
        by: VerifiedBy,
        nodes: Vec<NodeId>,
        at_ms: u64,
    },
    /// A task's results disagreed past the bound, or the job's validator could not compare
    /// two of them (`validator_failed` says why): it fails, no result accepted.
    TaskInconclusive {
        job: JobId,
        task: u32,
        results: u32,
        validator_failed: Option<String>,
        at_ms: u64,
    },
    /// A node's result disagreed with a quorum (or its owner's did): it is out for good.
    NodeBanned {
        node: NodeId,
        at_ms: u64,
    },
    /// Results whose witnesses were all banned since were taken back: their tasks are pending
    /// again. A job that had ended runs again, rebuilt from `reopened` (its row and its tasks'
    /// states as stored).
    ResultsRecalled {
        job: JobId,
        tasks: Vec<RecalledTask>,
        reopened: Option<Box<store::EndedJob>>,
        at_ms: u64,
    },
    /// Credit moved between accounts of the ledger.
    CreditsMoved {
        transfers: Vec<wire::Transfer>,
    },
}

/// A task whose result was taken back: it runs again from `spec`; `node` vouched for the
/// result alone and was banned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecalledTask {
    pub(crate) index: u32,
    pub(crate) node: NodeId,
    pub(crate) spec: TaskSpec,
}

/// Every kind of event, for tests that must cover each.
#[cfg(test)]
pub(crate) const EVENT_KINDS: [&str; 52] = [
    "TokenCreated",
    "TokenRevoked",
    "PeerAdded",
    "PeerRemoved",
    "NodeRegistered",
    "NodeGone",
    "NodeHeard",
    "NodeSilent",
    "NodeActivitySet",
    "NodeCapabilitiesSet",
    "NodeRuntimesUnsent",
    "NodesLiveRecounted",
    "NodesHeardStored",
    "JobSubmitted",
    "JobFinished",
    "JobCancelled",
    "JobsPurged",
    "AttemptsGranted",
    "GrantsDelivered",
    "GrantsWithdrawn",
    "AttemptUnlisted",
    "AttemptDeadlineMoved",
    "UploadRecorded",
    "BlobsHeld",
    "OutputsKept",
    "HoldersLost",
    "BlobsDropped",
    "KeptUploaded",
    "CopiesOrdered",
    "ReleasesSent",
    "CheckpointSaved",
    "CheckpointDropped",
    "AttemptEnded",
    "ResultClaimed",
    "ResultsCompared",
    "ChecksWanted",
    "ResultHeld",
    "TaskVerified",
    "TaskInconclusive",
    "NodeBanned",
    "ResultsRecalled",
    "CreditsMoved",
    "PipelineSubmitted",
    "StageStarted",
    "StageNotRun",
    "PipelineEnded",
    "PipelinesPurged",
    "TasksReused",
    "PipelineCancelled",
    "KeysGranted",
    "JobDeleted",
    "NodeForgot",
];

#[cfg(test)]
impl Event {
    /// The event's kind, as named in [`EVENT_KINDS`].
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Event::TokenCreated { .. } => "TokenCreated",
            Event::TokenRevoked { .. } => "TokenRevoked",
            Event::PeerAdded { .. } => "PeerAdded",
            Event::PeerRemoved { .. } => "PeerRemoved",
            Event::NodeRegistered { .. } => "NodeRegistered",
            Event::NodeGone { .. } => "NodeGone",
            Event::NodeHeard { .. } => "NodeHeard",
            Event::NodeSilent { .. } => "NodeSilent",
            Event::NodeActivitySet { .. } => "NodeActivitySet",
            Event::NodeCapabilitiesSet { .. } => "NodeCapabilitiesSet",
            Event::NodeRuntimesUnsent { .. } => "NodeRuntimesUnsent",
            Event::NodesLiveRecounted { .. } => "NodesLiveRecounted",
            Event::NodesHeardStored { .. } => "NodesHeardStored",
            Event::JobSubmitted { .. } => "JobSubmitted",
            Event::JobFinished { .. } => "JobFinished",
            Event::JobCancelled { .. } => "JobCancelled",
            Event::KeysGranted { .. } => "KeysGranted",
            Event::JobDeleted { .. } => "JobDeleted",
            Event::NodeForgot { .. } => "NodeForgot",
            Event::JobsPurged { .. } => "JobsPurged",
            Event::AttemptsGranted { .. } => "AttemptsGranted",
            Event::GrantsDelivered { .. } => "GrantsDelivered",
            Event::GrantsWithdrawn { .. } => "GrantsWithdrawn",
            Event::AttemptUnlisted { .. } => "AttemptUnlisted",
            Event::AttemptDeadlineMoved { .. } => "AttemptDeadlineMoved",
            Event::UploadRecorded { .. } => "UploadRecorded",
            Event::BlobsHeld { .. } => "BlobsHeld",
            Event::OutputsKept { .. } => "OutputsKept",
            Event::HoldersLost { .. } => "HoldersLost",
            Event::BlobsDropped { .. } => "BlobsDropped",
            Event::KeptUploaded { .. } => "KeptUploaded",
            Event::CopiesOrdered { .. } => "CopiesOrdered",
            Event::ReleasesSent { .. } => "ReleasesSent",
            Event::CheckpointSaved { .. } => "CheckpointSaved",
            Event::CheckpointDropped { .. } => "CheckpointDropped",
            Event::AttemptEnded { .. } => "AttemptEnded",
            Event::ResultClaimed { .. } => "ResultClaimed",
            Event::ResultsCompared { .. } => "ResultsCompared",
            Event::ChecksWanted { .. } => "ChecksWanted",
            Event::ResultHeld { .. } => "ResultHeld",
            Event::TaskVerified { .. } => "TaskVerified",
            Event::TaskInconclusive { .. } => "TaskInconclusive",
            Event::NodeBanned { .. } => "NodeBanned",
            Event::ResultsRecalled { .. } => "ResultsRecalled",
            Event::CreditsMoved { .. } => "CreditsMoved",
            Event::PipelineSubmitted { .. } => "PipelineSubmitted",
            Event::StageStarted { .. } => "StageStarted",
            Event::StageNotRun { .. } => "StageNotRun",
            Event::PipelineEnded { .. } => "PipelineEnded",
            Event::PipelinesPurged { .. } => "PipelinesPurged",
            Event::TasksReused { .. } => "TasksReused",
            Event::PipelineCancelled { .. } => "PipelineCancelled",
        }
    }
}

/// One event as shipped: the version of its form and the epoch of the coordinator that made
/// it, so a reader refuses a form it does not know and events of a coordinator that was taken
/// over.
#[cfg(any(test, debug_assertions))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub(crate) version: u32,
    pub(crate) epoch: u64,
    pub(crate) event: Event,
}

#[cfg(any(test, debug_assertions))]
impl Envelope {
    pub(crate) fn encode(epoch: u64, event: &Event) -> Vec<u8> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            version: u32,
            epoch: u64,
            event: &'a Event,
        }
        serde_json::to_vec(&Borrowed {
            version: EVENTS_VERSION,
            epoch,
            event,
        })
        .expect("events serialize: every field is plain data")
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Envelope, CoordinatorError> {
        let envelope: Envelope = serde_json::from_slice(bytes)
            .map_err(|error| CoordinatorError::EventMalformed(error.to_string()))?;
        if envelope.version != EVENTS_VERSION {
            return Err(CoordinatorError::EventVersion {
                found: envelope.version,
                reads: EVENTS_VERSION,
            });
        }
        Ok(envelope)
    }
}

impl Event {
    /// Whether it is about the intermediates nodes hold (see `super::peers`).
    pub(crate) fn is_peer_event(&self) -> bool {
        matches!(
            self,
            Event::BlobsHeld { .. }
                | Event::OutputsKept { .. }
                | Event::HoldersLost { .. }
                | Event::BlobsDropped { .. }
                | Event::KeptUploaded { .. }
                | Event::CopiesOrdered { .. }
                | Event::ReleasesSent { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reads_back_with_its_epoch_and_other_forms_are_refused() {
        let event = Event::NodeHeard {
            node: NodeId(7),
            at_ms: 42,
        };
        let bytes = Envelope::encode(3, &event);
        let envelope = Envelope::decode(&bytes).unwrap();
        assert_eq!((envelope.epoch, envelope.event), (3, event));

        let newer = String::from_utf8(bytes)
            .unwrap()
            .replace(&format!("\"version\":{EVENTS_VERSION}"), "\"version\":999");
        assert!(matches!(
            Envelope::decode(newer.as_bytes()),
            Err(CoordinatorError::EventVersion { found: 999, .. })
        ));
        let unknown = br#"{"version":1,"epoch":1,"event":{"NodeExploded":{}}}"#;
        assert!(matches!(
            Envelope::decode(unknown),
            Err(CoordinatorError::EventMalformed(_))
        ));
    }
}
