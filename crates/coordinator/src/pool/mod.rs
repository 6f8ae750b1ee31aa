//! The live pool in memory: jobs and their tasks, nodes, attempts and credentials.
//!
//! This is the coordinator's authority while it runs; the state store keeps the rows its events
//! imply. It changes only through [`PoolState::apply`]: a command records events (see
//! [`events`]), each applied at once and its rows pushed as [`Write`]s to the caller's
//! [`Outbox`], which the caller queues to the store while still holding the lock around this
//! state, so the store applies writes in the order the changes happened here. Every command
//! takes `now_ms` and, where it makes ids, the caller's [`crate::env::Entropy`]; none does I/O.
//!
//! Invariants:
//! - A task is `Running` exactly when it has live attempts (`Task::live`, at most its job's
//!   `replicas`, on distinct nodes), each in `attempts` and in its node's `running` set; an
//!   attempt id is the only key a report is accepted under.
//! - A job's `short` holds exactly its running tasks with fewer live attempts than `replicas`
//!   and attempts left: those that want another replica.
//! - A job's `counts` always equal the tally of its tasks' slots; `pending` holds exactly the
//!   indices of its `Pending` tasks, and the job is in `ready` exactly when `pending` or `short`
//!   is not empty and the job runs.
//! - Once a task has ended it never changes again.

mod admission;
mod apply;
mod attempt_ids;
mod checkpoints;
mod commands;
mod comparison;
mod credits;
mod deletions;
pub(crate) mod events;
pub(crate) mod federation;
mod held;
mod jobs;
mod leases;
mod nodes;
mod peers;
mod pipelines;
mod private;
mod recall;
#[cfg(any(test, debug_assertions))]
mod replica;
mod reports;
mod reuse;
mod trust;
mod verification;
mod verification_apply;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use store::{PoolImage, TokenRole, Write};
use wire::{
    AttemptId, BlobHash, Capabilities, JobId, JobRuntime, JobState, NodeActivity, NodeId,
    RequesterId, TaskCounts, TaskSpec, TaskState,
};

pub(crate) use admission::{NODES_PER_JOIN_TOKEN_MAX_DEFAULT, SILENT_NODE_PURGE_MS_DEFAULT};
pub(crate) use checkpoints::Checkpoints;
pub(crate) use commands::{
    AddPeer, BridgeToken, Cancel, CancelPipeline, Command, Compare, CreateToken, DeleteJob,
    Deliver, EndPipeline, Expire, GiveUpStage, GrantCredits, GrantKeys, Heartbeat, Lease, NewToken,
    Place, PurgeEnded, PurgeSilentNodes, Recall, RecordUpload, Register, Release, RemoveNode,
    RemovePeer, Report, RevokeToken, SaveCheckpoint, Silence, StartStage, Submit, SubmitPipeline,
    Withdraw,
};
pub use comparison::Verdict;
pub(crate) use comparison::{ComparedResult, Comparison, ResultFiles};
pub(crate) use deletions::DeletionScope;
pub use federation::Lendable;
pub(crate) use held::{Held, human_bytes};
pub(crate) use jobs::NewJob;
pub(crate) use nodes::{NewNode, network_of, owner_key};
pub(crate) use pipelines::{StageModule, StageWork};
pub(crate) use recall::{RECALLED_UNFINISHED_MAX, Recalled};
pub(crate) use reuse::Found;
pub(crate) use trust::CLONE_SILENCE_HEARTBEATS;
pub(crate) use verification::Verifying;

/// What went wrong with a request against the pool; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PoolError {
    NotFound(String),
    Conflict(String),
    /// Taking this would pass a bound on unfinished tasks.
    TooMuchUnfinished(String),
    /// The credentials do not (or no longer) admit this.
    Unauthorized(String),
    /// The caller may not do this, whatever it retries.
    Forbidden(String),
    /// The caller asks too often; it may retry later.
    TooManyRequests(String),
    /// The request does not fit this pool; as sent, it never will.
    Invalid(String),
}

impl PoolError {
    /// What it says, whatever its kind.
    pub(crate) fn message(&self) -> &str {
        match self {
            PoolError::NotFound(message)
            | PoolError::Conflict(message)
            | PoolError::TooMuchUnfinished(message)
            | PoolError::Unauthorized(message)
            | PoolError::Forbidden(message)
            | PoolError::TooManyRequests(message)
            | PoolError::Invalid(message) => message,
        }
    }
}

/// How many tasks may wait or run at once, and how many bytes of specs and runtimes they may
/// hold: each task holds its spec in memory until it ends, each job its runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnfinishedMax {
    pub(crate) pool: u64,
    pub(crate) per_requester: u64,
    pub(crate) pool_bytes: u64,
    pub(crate) per_requester_bytes: u64,
}

/// Jobs a node's sent-runtimes set holds before the ended ones are dropped from it.
const JOBS_SENT_MAX: usize = 256;

/// The heartbeat rate a pool of any size asks of its nodes together.
pub(crate) const HEARTBEATS_PER_S_MAX: u64 = 2_000;

/// What a change did: the rows its events imply, to queue to the store in order, and (where
/// something replays them) the events themselves.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// The change's events in the order they were applied. Kept only by builds that replay
    /// them ([`Outbox::KEEPS_EVENTS`]): debug builds, and so every test and seed, apply them to
    /// a copy of the pool. A release build makes each event's rows from the event itself and
    /// keeps no copy, so a large submission is not held twice more.
    pub(crate) events: Vec<events::Event>,
    pub(crate) writes: Vec<Write>,
}

impl Outbox {
    pub(crate) const KEEPS_EVENTS: bool = cfg!(debug_assertions);

    pub(crate) fn new() -> Self {
        Self::default()
    }
}

pub(crate) struct PoolState {
    pub(crate) pool_name: String,
    /// The shortest lease; it grows with the pool (see [`PoolState::lease_term_ms`]).
    lease_ms_min: u64,
    jobs: HashMap<JobId, Job>,
    /// Running jobs with pending tasks, in submission order.
    ready: BTreeMap<u64, JobId>,
    /// Jobs that have not ended.
    open_jobs: HashSet<JobId>,
    nodes: HashMap<NodeId, Node>,
    attempts: HashMap<AttemptId, Attempt>,
    /// The ids the next grants take.
    attempt_ids: attempt_ids::AttemptIds,
    /// What each live attempt's node uploaded for it, with the sizes measured on upload: the
    /// only blobs its report may name.
    uploads: HashMap<AttemptId, HashMap<BlobHash, u64>>,
    /// Live attempts by when they are next checked against their deadline (see
    /// [`Attempt::check_at_ms`]).
    deadlines: BTreeSet<(u64, AttemptId)>,
    /// What changed since the caller last looked (see [`Changes`]).
    changes: Changes,
    requester_tokens: HashMap<String, RequesterId>,
    join_tokens: HashSet<String>,
    node_tokens: HashMap<String, NodeId>,
    /// Identities the owner removed from the pool; they may not register again.
    removed_nodes: HashSet<NodeId>,
    /// Nodes per join token, and live nodes.
    node_counts: admission::NodeCounts,
    next_submitted_seq: u64,
    /// What unfinished work holds, per requester and in all.
    held: held::Ledger,
    /// How results are checked, and what the pool knows of each node's honesty.
    verifying: Verifying,
    /// The credit ledger's balances.
    accounts: credits::Accounts,
    /// Stages, each a job, joined by their outputs.
    pipelines: pipelines::Pipelines,
    /// Jobs deleted for good, until their nodes confirm (and a while after).
    deletions: deletions::Deletions,
    /// Other pools as nodes of this one, and the pools this one lends to.
    federation: federation::Federation,
    /// Which nodes hold which intermediates of pipelines that fetch node to node.
    peers: peers::PeerHolders,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Job {
    pub(crate) id: JobId,
    pub(crate) requester: RequesterId,
    pub(crate) runtime: Arc<JobRuntime>,
    /// The module and every mount file: what any node running the job may read.
    pub(crate) shared_blobs: HashSet<BlobHash>,
    pub(crate) requirements: wire::Requirements,
    pub(crate) labels_sorted: Vec<(String, String)>,
    pub(crate) max_attempts: u32,
    /// Attempts of one task that run at once (see `wire::JobSubmission::replicas`).
    pub(crate) replicas: u32,
    /// How its results are checked; `None` takes each as reported.
    pub(crate) verify: Option<wire::VerifyMode>,
    /// What says whether two of its results are equivalent, when not equal bytes.
    pub(crate) validator: Option<Arc<wire::Validator>>,
    /// Exit codes besides 0 that mean a task succeeded.
    pub(crate) success_exit_codes: Vec<i32>,
    /// What a task whose program failed does next; `None` fails it at once.
    pub(crate) on_failure: Option<Box<wire::OnFailure>>,
    /// The task whose exit code stopped the job, when one did.
    pub(crate) aborted: Option<wire::Aborted>,
    /// For a private job, who holds its key: only they are offered its tasks.
    pub(crate) keys: Option<Arc<private::JobKeys>>,
    /// Its module's size: only nodes that compile modules this large take its tasks.
    pub(crate) module_bytes: u64,
    /// Its module is a WASI 0.2 component: only nodes that run components take its tasks.
    pub(crate) component: bool,
    /// The WebAssembly proposals its module uses: only nodes that compile them take its tasks.
    pub(crate) wasm_features: Vec<String>,
    /// Its tasks whose one result waits in its node's audit window.
    pub(crate) held: u32,
    /// Its tasks with results that wait for a check: kept as tasks change, so a status read
    /// costs the same whatever the job's size.
    pub(crate) checking: u32,
    pub(crate) state: JobState,
    pub(crate) tasks: Vec<Task>,
    pub(crate) pending: VecDeque<u32>,
    /// Running tasks that want another replica, in index order.
    pub(crate) short: BTreeSet<u32>,
    pub(crate) counts: TaskCounts,
    pub(crate) attempts_total: u64,
    pub(crate) fuel_total: u64,
    pub(crate) node_shares: HashMap<NodeId, u32>,
    pub(crate) submitted_seq: u64,
    pub(crate) created_at_ms: u64,
    pub(crate) finished_at_ms: Option<u64>,
    /// Bumped on every change a requester can see; `wait` requests watch it.
    pub(crate) version: u64,
    /// Tasks joined `pending` since [`PoolState::sync_ready`] last looked.
    pub(crate) queued: bool,
    /// Where the job's unfinished tasks and runtime are counted; see [`held`].
    pub(crate) charge: held::Charge,
    /// What the runtime holds while the job runs; released when it ends.
    pub(crate) runtime_bytes: u64,
    /// In a public pool, the nodes (and their owners) that said they could not run a task,
    /// with when: the task goes to others for [`REFUSAL_HOLD_MS`]. Only tasks with such
    /// refusals, until they end.
    pub(crate) refused_by: HashMap<u32, Vec<Refusal>>,
    /// Results of its tasks taken back after bans, ever; and its tasks run again for them that
    /// are unfinished.
    pub(crate) recalled: u32,
    pub(crate) recalled_unfinished: u32,
}

/// How long a task is kept from a stranger's node, and every node of its owner, after the node
/// said it could not run it: long enough that one owner spends at most one of the task's
/// attempts a minute, short enough that a task every other owner refused too runs again.
pub(crate) const REFUSAL_HOLD_MS: u64 = 60_000;

/// A node that said it could not run a task, its owner, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) node: NodeId,
    pub(crate) owner: Option<u64>,
    pub(crate) at_ms: u64,
}

impl Refusal {
    /// When it stops keeping the task from the node and its owner.
    pub(crate) fn until_ms(&self) -> u64 {
        self.at_ms.saturating_add(REFUSAL_HOLD_MS)
    }

    /// Whether it keeps the task from `node` of `owner` at `now_ms`.
    pub(crate) fn holds(&self, node: NodeId, owner: Option<u64>, now_ms: u64) -> bool {
        let same = self.node == node || (self.owner.is_some() && self.owner == owner);
        same && now_ms < self.until_ms()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Task {
    /// Absent once the task ended: nothing needs it any more.
    pub(crate) spec: Option<TaskSpec>,
    pub(crate) slot: Slot,
    /// Attempts counted against the job's max attempts.
    pub(crate) attempts: u32,
    /// Its live attempts, oldest first: one per replica running.
    pub(crate) live: Vec<AttemptId>,
    /// Its results so far and what they wait for, once a job that verifies has one.
    pub(crate) check: Option<Box<verification::Check>>,
    /// It runs again, unfinished, because its result was taken back after a ban.
    pub(crate) recalled: bool,
    /// Its latest checkpoint and the work lost, once its job's tasks checkpoint.
    pub(crate) checkpoints: Option<Box<checkpoints::Checkpoints>>,
    /// Failures of its program its job's failure policy retried: they count against
    /// `retries`, not max attempts. Bounded by `wire::failure::RETRIES_MAX`.
    pub(crate) failures: u8,
    /// Those of `failures` that ran out of memory: each grows the next attempt's memory.
    pub(crate) memory_failures: u8,
    /// Its live attempts on silent nodes: they do not count as replicas. At most `live`.
    pub(crate) silent_live: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Pending,
    Running,
    Ended(TaskState),
}

impl Slot {
    fn state(self) -> TaskState {
        match self {
            Slot::Pending => TaskState::Pending,
            Slot::Running => TaskState::Running,
            Slot::Ended(state) => state,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) id: NodeId,
    /// Its ed25519 identity key, hex: requesters check its encryption key against it.
    pub(crate) public_key: String,
    pub(crate) name: String,
    pub(crate) token_hash: String,
    pub(crate) capabilities: Capabilities,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) labels_sorted: Vec<(String, String)>,
    pub(crate) slots: u32,
    pub(crate) agent_version: String,
    pub(crate) activity: NodeActivity,
    pub(crate) lease_until_ms: u64,
    pub(crate) last_seen_ms: u64,
    /// When the node was last heard from, across restarts of the coordinator (unlike
    /// `last_seen_ms`, which a restart sets to its start); a node silent long enough is purged.
    pub(crate) heard_ms: u64,
    /// The `heard_ms` the store holds.
    pub(crate) heard_stored_ms: u64,
    /// The hash of the join token the node registered with.
    pub(crate) join_token_hash: String,
    /// Who brought the node, as the scheduler keeps replicas apart by: its join token.
    pub(crate) owner: Option<u64>,
    /// The network it registered from, as the scheduler keeps replicas apart by.
    pub(crate) network: Option<u64>,
    /// Whether the node is in the live count behind the heartbeat interval.
    pub(crate) counted_live: bool,
    /// It holds attempts and has been silent for half its lease (`NodeSilent`): its attempts
    /// do not count as their tasks' replicas, so each runs elsewhere too while the lease
    /// lasts, and the first result wins. Heard from again, it is not.
    pub(crate) silent: bool,
    /// Ordered, so that what is done to each (expiry, release) happens in the same order in
    /// every run.
    pub(crate) running: BTreeSet<AttemptId>,
    /// How long the node has said it was paused, for attempts' deadlines.
    pub(crate) pauses: PauseClock,
    pub(crate) tasks_succeeded: u64,
    /// Jobs whose runtime this node was sent since it registered.
    pub(crate) jobs_sent: HashSet<JobId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub(crate) job: JobId,
    pub(crate) task: u32,
    pub(crate) node: NodeId,
    /// The fuel of the checkpoint it was granted with: its report counts the task's fuel in
    /// all, and only the rest is this attempt's work.
    pub(crate) resumed_fuel: u64,
    /// When its node last saved a checkpoint of it.
    pub(crate) checkpointed_at_ms: Option<u64>,
    pub(crate) granted_at_ms: u64,
    /// When the attempt must have ended, pauses aside: its deadline plus a grace period for
    /// uploading and reporting. Heartbeats do not move it.
    pub(crate) ends_by_ms: u64,
    /// The node's paused time when the attempt was granted; pauses after it (up to
    /// [`PAUSE_ALLOWANCE_MS`]) push the end back, since the sandbox stops the deadline's clock.
    pub(crate) paused_ms_at_grant: u64,
    /// Its key in [`PoolState::deadlines`].
    pub(crate) check_at_ms: u64,
    /// Since when the node's heartbeats have not listed it (see `PoolState::forgotten`).
    pub(crate) unlisted_since_ms: Option<u64>,
}

/// How much paused time an attempt's end may be pushed back by, in total: the agent's default
/// `release_after`, past which an agent gives paused attempts back anyway.
pub(crate) const PAUSE_ALLOWANCE_MS: u64 = 15 * 60_000;

/// Time a node has spent paused, as its heartbeats said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PauseClock {
    closed_ms: u64,
    since_ms: Option<u64>,
}

impl PauseClock {
    pub(crate) fn total_ms(&self, now_ms: u64) -> u64 {
        let open = self
            .since_ms
            .map_or(0, |since| now_ms.saturating_sub(since));
        self.closed_ms.saturating_add(open)
    }

    pub(crate) fn set_paused(&mut self, paused: bool, now_ms: u64) {
        match (self.since_ms, paused) {
            (None, true) => self.since_ms = Some(now_ms),
            (Some(since), false) => {
                self.closed_ms = self.closed_ms.saturating_add(now_ms.saturating_sub(since));
                self.since_ms = None;
            }
            _ => {}
        }
    }
}

/// What a change did that the service acts on: handing work to waiting nodes and waking the
/// requesters who wait on a job. Taken (and so cleared) with [`PoolState::take_changes`]; its
/// size is that of the change, never of the pool.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Tasks joined the queue (a job came, or tasks were requeued): any waiting node may now
    /// get work.
    pub(crate) tasks_queued: bool,
    /// Nodes that may take more than before: a slot freed, or they became active or changed
    /// what they lend.
    pub(crate) nodes_freed: Vec<NodeId>,
    /// Nodes forgotten (removed, purged or registered again as a new session): what waits on
    /// their behalf goes.
    pub(crate) nodes_gone: Vec<NodeId>,
    /// Jobs whose version was bumped.
    pub(crate) jobs: Vec<JobId>,
    /// A result waits to be compared by its job's validator.
    pub(crate) comparisons: bool,
    /// A node was banned: results it alone vouched for are to be taken back.
    pub(crate) recalls: bool,
    /// A pipeline came, or a stage's job ended: a waiting stage may start or be given up.
    pub(crate) stages: bool,
}

impl PoolState {
    pub(crate) fn new(pool_name: String, lease_ms: u64) -> Self {
        Self {
            pool_name,
            lease_ms_min: lease_ms,
            jobs: HashMap::new(),
            ready: BTreeMap::new(),
            open_jobs: HashSet::new(),
            nodes: HashMap::new(),
            attempts: HashMap::new(),
            attempt_ids: attempt_ids::AttemptIds::default(),
            uploads: HashMap::new(),
            deadlines: BTreeSet::new(),
            changes: Changes::default(),
            requester_tokens: HashMap::new(),
            join_tokens: HashSet::new(),
            node_tokens: HashMap::new(),
            removed_nodes: HashSet::new(),
            node_counts: admission::NodeCounts::default(),
            next_submitted_seq: 1,
            held: held::Ledger::default(),
            verifying: Verifying::default(),
            accounts: credits::Accounts::default(),
            pipelines: pipelines::Pipelines::default(),
            deletions: deletions::Deletions::default(),
            federation: federation::Federation::default(),
            peers: peers::PeerHolders::default(),
        }
    }

    /// Rebuilds the pool from the store after a start. Nodes keep their credentials and their
    /// leases get a fresh term, so agents that kept running through a coordinator restart carry
    /// on and their attempts still count; jobs whose tasks had all ended are finished.
    pub(crate) fn restore(&mut self, image: PoolImage, now_ms: u64, out: &mut Outbox) {
        self.attempt_ids = attempt_ids::AttemptIds::new(image.attempt_ids.clone());
        for token in image.tokens.iter().filter(|t| t.revoked_at_ms.is_none()) {
            match token.role {
                TokenRole::Requester(id) => {
                    self.requester_tokens.insert(token.hash.clone(), id);
                }
                TokenRole::Join => {
                    self.join_tokens.insert(token.hash.clone());
                }
                TokenRole::Federation => {
                    self.join_tokens.insert(token.hash.clone());
                    self.federation.tokens.insert(token.hash.clone());
                }
            }
        }
        for peer in &image.peers {
            self.apply_peer_added(peer);
        }
        self.removed_nodes = trust::removed_nodes_in(&image.meta);
        self.restore_records(image.records);
        self.restore_accounts(&image.ledger);
        for row in image.nodes {
            self.insert_node_row(row, now_ms);
        }
        self.restore_jobs(image.jobs, image.task_counts, image.open_tasks, now_ms);
        for pipeline in image.pipelines {
            self.restore_pipeline(pipeline);
        }
        self.restore_deletions(image.deletions);
        self.peers = peers::PeerHolders::load(&image.kept, now_ms, self.lease_term_ms());
        for (job_id, attempts, fuel) in image.job_usage {
            if let Some(job) = self.jobs.get_mut(&job_id) {
                job.attempts_total = attempts;
                job.fuel_total = fuel;
            }
        }
        for (job_id, recalled) in image.recalled {
            if let Some(job) = self.jobs.get_mut(&job_id) {
                job.recalled = recalled;
            }
        }
        for (job_id, node_id, count) in image.node_shares {
            if let Some(job) = self.jobs.get_mut(&job_id) {
                job.node_shares.insert(node_id, count);
            }
            if let Some(node) = self.nodes.get_mut(&node_id) {
                node.tasks_succeeded += u64::from(count);
            }
        }
        for row in image.live_attempts {
            self.restore_attempt(row, now_ms);
        }
        for (attempt_id, hash, size_bytes) in image.attempt_uploads {
            if self.attempts.contains_key(&attempt_id) {
                self.uploads
                    .entry(attempt_id)
                    .or_default()
                    .insert(hash, size_bytes);
            }
        }
        self.refund_stranded(image.ledger.pending, now_ms, out);
        // In id order: the writes (jobs that finished) come out the same in every run.
        let mut job_ids: Vec<JobId> = self.jobs.keys().copied().collect();
        job_ids.sort_unstable();
        for job_id in job_ids {
            self.requeue_pending_of(job_id);
            self.finish_job_if_done(job_id, now_ms, out);
        }
    }

    /// How often nodes heartbeat: a third of the lease in a small pool, and longer as the live
    /// nodes grow, so heartbeats never exceed [`HEARTBEATS_PER_S_MAX`] (Nomad's approach to
    /// large clusters). Only live nodes count: nodes gone silent send nothing, and must not
    /// slow down the ones that remain.
    pub(crate) fn heartbeat_interval_ms(&self) -> u64 {
        let spread_ms = self.node_counts.live_nodes * 1000 / HEARTBEATS_PER_S_MAX;
        (self.lease_ms_min / 3).max(spread_ms).max(1)
    }

    /// How long a lease lasts past a node's last request: at least three heartbeats.
    pub(crate) fn lease_term_ms(&self) -> u64 {
        self.lease_ms_min.max(3 * self.heartbeat_interval_ms())
    }

    #[cfg(test)]
    pub(crate) fn requester_by_token(&self, token_hash: &str) -> Option<RequesterId> {
        self.requester_tokens.get(token_hash).copied()
    }

    #[cfg(test)]
    pub(crate) fn node_by_token(&self, token_hash: &str) -> Option<NodeId> {
        self.node_tokens.get(token_hash).copied()
    }

    #[cfg(test)]
    pub(crate) fn is_join_token(&self, token_hash: &str) -> bool {
        self.join_tokens.contains(token_hash)
    }

    /// Every credential that works now, for the service's lock-free index of them.
    pub(crate) fn credentials(&self) -> crate::credentials::Credentials {
        crate::credentials::Credentials::new(
            self.requester_tokens.clone(),
            self.join_tokens.clone(),
            self.nodes
                .values()
                .map(|node| (node.id, node.token_hash.clone())),
        )
    }

    /// Whether a result waits for its job's validator since changes were last taken.
    pub(crate) fn comparisons_wanted(&self) -> bool {
        self.changes.comparisons
    }

    /// Whether a ban since the last [`Self::take_changes`] may have left results to take back.
    pub(crate) fn recalls_wanted(&self) -> bool {
        self.changes.recalls
    }

    /// What changed since the last call; see [`Changes`].
    pub(crate) fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// Attempts held by nodes, for metrics and tests.
    pub(crate) fn attempts_live(&self) -> usize {
        self.attempts.len()
    }

    pub(crate) fn nodes_online(&self, now_ms: u64) -> usize {
        self.nodes
            .values()
            .filter(|node| node.lease_until_ms > now_ms)
            .count()
    }

    /// Whether any task waits for a node (pending, or short of replicas).
    pub(crate) fn has_queued_work(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Tasks waiting for a node, across jobs.
    pub(crate) fn tasks_pending(&self) -> usize {
        self.ready
            .values()
            .filter_map(|id| self.jobs.get(id))
            .map(|job| job.pending.len())
            .sum()
    }

    /// Asserts every invariant above; the service runs it after each change in debug builds.
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn check_invariants(&self) {
        self.check_attempts();
        for node in self.nodes.values() {
            for attempt in &node.running {
                assert_eq!(self.attempts[attempt].node, node.id);
            }
            assert!(
                node.running.len() <= node.slots as usize,
                "node {} holds more attempts than its slots",
                node.id
            );
        }
        self.check_attempt_indexes();
        let nodes_silent: HashSet<NodeId> = self
            .nodes
            .values()
            .filter(|node| node.silent)
            .map(|node| node.id)
            .collect();
        for job in self.jobs.values() {
            if job.state.is_terminal() {
                assert!(job.tasks.is_empty() && job.pending.is_empty());
                assert_eq!(job.counts.ended(), job.counts.total, "counts of {}", job.id);
                continue;
            }
            let mut counts = TaskCounts {
                total: job.tasks.len() as u32,
                ..TaskCounts::default()
            };
            for (index, task) in job.tasks.iter().enumerate() {
                *count_of(&mut counts, task.slot.state()) += 1;
                check_live(task, job, &self.attempts, &nodes_silent);
                assert_eq!(
                    job.short.contains(&(index as u32)),
                    job.wants_replica(index as u32),
                    "short tasks of {}",
                    job.id
                );
            }
            assert_eq!(counts, job.counts, "counts of {}", job.id);
            assert_eq!(
                job.checking,
                job.recount_checking(),
                "checking of {}",
                job.id
            );
            assert_eq!(job.pending.len() as u32, job.counts.pending);
            assert_eq!(
                self.open_jobs.contains(&job.id),
                job.state == JobState::Running
            );
            let in_ready = self.ready.get(&job.submitted_seq) == Some(&job.id);
            assert_eq!(
                in_ready,
                job.state == JobState::Running && job.wants_placement()
            );
        }
        self.check_held();
        self.check_recalled();
        self.check_accounts();
        self.check_peers();
    }
}

impl PoolState {
    /// Every live attempt is its task's, on a node that holds it and may run its job.
    #[cfg(any(test, debug_assertions))]
    fn check_attempts(&self) {
        for (attempt_id, attempt) in &self.attempts {
            let job = &self.jobs[&attempt.job];
            let task = &job.tasks[attempt.task as usize];
            assert_eq!(task.slot, Slot::Running);
            assert!(task.live.contains(attempt_id));
            assert!(self.nodes[&attempt.node].running.contains(attempt_id));
            assert!(
                jobs::runs_on(job, &self.nodes[&attempt.node]),
                "{attempt_id} runs on a node of a runtime its job may not use"
            );
            assert!(
                job.holds_key(attempt.node),
                "{attempt_id} of a private job runs on a node its key is not wrapped to"
            );
        }
    }
}

impl PoolState {
    /// What is kept per live attempt beside it: its uploads and its deadline.
    #[cfg(any(test, debug_assertions))]
    fn check_attempt_indexes(&self) {
        for attempt_id in self.uploads.keys() {
            assert!(
                self.attempts.contains_key(attempt_id),
                "uploads of a live attempt"
            );
        }
        assert_eq!(self.deadlines.len(), self.attempts.len());
        for (check_at_ms, attempt_id) in &self.deadlines {
            assert_eq!(self.attempts[attempt_id].check_at_ms, *check_at_ms);
        }
    }
}

/// A task runs exactly when it has live attempts or results waiting for a check, at most one
/// attempt per replica (or, in a job that verifies, per result its checks may want) and each
/// on its own node.
#[cfg(any(test, debug_assertions))]
fn check_live(
    task: &Task,
    job: &Job,
    attempts: &HashMap<AttemptId, Attempt>,
    nodes_silent: &HashSet<NodeId>,
) {
    assert_eq!(
        task.slot == Slot::Running,
        !task.live.is_empty() || task.check.is_some()
    );
    let live_max = match job.verify {
        Some(_) => verify::RESULTS_MAX,
        None => job.replicas,
    };
    let silent = task
        .live
        .iter()
        .filter(|id| nodes_silent.contains(&attempts[*id].node))
        .count();
    assert_eq!(
        task.silent_live as usize, silent,
        "live attempts on silent nodes"
    );
    // Beyond its replicas, a task runs only stand-ins for replicas whose nodes went silent,
    // each an attempt of its own.
    assert!(task.live.len() <= (live_max as usize).max(task.attempts as usize));
    let held = task
        .check
        .as_ref()
        .is_some_and(|check| check.held.is_some());
    assert!(
        !held || task.live.is_empty(),
        "a task whose result is held runs nothing"
    );
    let mut nodes: Vec<NodeId> = task.live.iter().map(|id| attempts[id].node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    assert_eq!(
        nodes.len(),
        task.live.len(),
        "replicas of one task share a node"
    );
}

pub(crate) fn count_of(counts: &mut TaskCounts, state: TaskState) -> &mut u32 {
    match state {
        TaskState::Pending => &mut counts.pending,
        TaskState::Running => &mut counts.running,
        TaskState::Succeeded => &mut counts.succeeded,
        TaskState::Failed => &mut counts.failed,
        TaskState::Cancelled => &mut counts.cancelled,
    }
}

#[cfg(test)]
mod tests;
