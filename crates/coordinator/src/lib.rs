//! The coordinator: the pool's central allocator, served over HTTP + JSON under `/v1/`.
//!
//! It matches pending tasks to nodes that long-poll for work, keeps every attempt under a lease
//! that the node's heartbeat extends, takes reports and keeps accounts. This is the only crate
//! that serves HTTP.
//!
//! Code map:
//! - `pool`: the live pool in memory and every rule of how it changes; no I/O.
//! - `service`: the lock around the pool, the order of writes to the store, and the lease
//!   reaper.
//! - `parked`: lease requests waiting for work and requesters waiting on a job, beside the pool.
//! - `credentials`: the tokens that work now, read without the pool's lock.
//! - `retention`: deleting ended jobs, their results and unused blobs once their time is up.
//! - `modules`: whether a blob is a module nodes can run, decided once per blob while
//!   streaming it.
//! - `http`: the axum routes, authentication, request limits and the OpenAPI document.
//! - `connections`: accepting and serving connections (plain or TLS), their cap, timeouts and
//!   shedding.
//! - `lead`: renewing the lead of the database, and stepping down before it can run out.
//! - `standby`: a coordinator that stands by while another leads, answering only its health,
//!   and serves the pool once it leads.
//!
//! Invariants:
//! - Every change is made to the pool under its lock and its writes are queued to the store
//!   under the same lock, so the store applies them in the order they happened.
//! - Anything acknowledged to a client that it could lose (a submitted job, a taken report, a
//!   cancellation, a registration, an upload) is committed before the response is sent.
//! - A failed commit stops the coordinator: memory would be ahead of disk. A restart loads the
//!   last committed state.
//! - Only the coordinator that holds the lead of the database serves the pool; one that cannot
//!   renew its lead stops serving before the lead can run out, and one whose lead was taken
//!   can commit nothing (the store's epoch).
//! - The coordinator never trusts its caller: every route authenticates (requester token, node
//!   token or join token) except health, the OpenAPI document and the web app's files.

mod connections;
mod credentials;
mod env;
mod federation;
mod gate;
mod http;
mod join;
mod lead;
mod metrics;
mod modules;
mod parked;
mod pool;
mod presence;
mod readable;
mod recall;
mod retention;
mod reuse;
mod service;
#[cfg(test)]
mod sim;
mod stages;
mod standby;
mod tls;
mod validation;
mod wasm_features;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

pub use blobstore::BlobLocation;
pub use connections::{ConnectionLimits, Handed, HandedIo, Listener};
pub use env::{Clock, Entropy, ManualClock, SeededEntropy, SystemClock};
pub use federation::{Bridge, FederationRunner};
pub use pool::Lendable;
pub use pool::Verdict;
pub use standby::Candidate;
pub use store::{Durability, LEAD_TERM_MS_DEFAULT, LEAD_TERM_MS_MIN, LeadTerms};
pub use tls::TlsIdentity;
pub use validation::{VALIDATOR_LIMITS, ValidatorLimits, ValidatorRun, ValidatorRunner};

/// The name of the owner's API token among the bootstrap tokens: it may also manage tokens and
/// make join codes.
pub const OWNER_TOKEN_NAME: &str = "owner";

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Blobs(#[from] blobstore::BlobError),
    #[error("cannot serve HTTP: {0}")]
    Serve(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(
        "a bootstrap token is malformed: {0}; tokens start with ccr_ (requester) or ccj_ (join)"
    )]
    BadToken(String),
    #[error(
        "an event is not valid JSON of a known event: {0}; run the same version of crowdcloud where events are written and read"
    )]
    EventMalformed(String),
    #[error(
        "an event is of version {found} and this coordinator reads version {reads}; run the same version of crowdcloud where events are written and read"
    )]
    EventVersion { found: u32, reads: u32 },
    #[error("the verification settings do not fit together: {0}")]
    Config(String),
    #[error("this coordinator stepped down: {0}")]
    SteppedDown(String),
}

/// A token the coordinator accepts from its first start on: the owner's API token and the
/// pool's join token made by `crowdcloud up`.
#[derive(Debug, Clone)]
pub struct BootstrapToken {
    pub token: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub pool_name: String,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    pub durability: Durability,
    /// Where blobs live: `blobs/` in the data dir, or an S3 bucket.
    pub blobs: BlobLocation,
    /// Scratch space: the results a validator compares are laid out here for its run.
    pub work_dir: PathBuf,
    /// A lease lasts this long past a node's last request.
    pub lease_ms: u64,
    /// Largest blob a requester may upload.
    pub blob_upload_bytes_max: u64,
    /// Writes queued to the store beyond this make new work wait with 503.
    pub write_queue_max: usize,
    /// Tokens to accept; created in the store if new.
    pub bootstrap: Vec<BootstrapToken>,
    /// How long ended jobs and their results are kept, and blobs no job uses after they were
    /// last stored or asked for; then they are deleted.
    pub keep_results_ms: u64,
    /// Tasks that may be unfinished (waiting or running) in the pool at once, and per
    /// requester: each holds its spec in memory until it ends.
    pub unfinished_tasks_max: u64,
    pub unfinished_tasks_per_requester_max: u64,
    /// Distinct nodes one join token may bring; its registrations are rate-limited in
    /// proportion (a tenth of it at once, a hundredth of it per second).
    pub nodes_per_join_token_max: u32,
    /// A node not heard from for this long, holding no attempts, is forgotten.
    pub silent_node_purge_ms: u64,
    /// Bytes the unfinished tasks' specs and their jobs' runtimes may hold in memory, in the
    /// pool and per requester.
    pub unfinished_bytes_max: u64,
    pub unfinished_bytes_per_requester_max: u64,
    /// Bytes of uploads a requester may keep stored (what retention has not deleted).
    pub upload_quota_bytes: u64,
    /// How many connections may be open and how long they may take or sit idle.
    pub connections: ConnectionLimits,
    /// How far the pool believes its nodes: a public pool verifies every result.
    pub trust: wire::Trust,
    /// The knobs of verification (probation, audits, quorums, bounds).
    pub verify_policy: verify::Policy,
    /// Whether replicas of one task are kept off nodes of one network (IPv4 /24, IPv6 /48) as
    /// well as of one owner; a pool whose nodes all sit on one network turns it off.
    pub networks_apart: bool,
    /// How this coordinator takes and keeps the lead of its database: at once, or as a
    /// standby once the leader's term ran out.
    pub lead: LeadTerms,
    /// The pool's remote address while the binary serves the remote path beside it, told to
    /// devices in `/v1/health` so those that joined on the LAN reach it away from home too.
    pub remote_address: Option<String>,
}

/// Results are kept a month unless the owner says otherwise.
pub const KEEP_RESULTS_MS_DEFAULT: u64 = 30 * 24 * 3_600_000;

/// Distinct nodes one join token may bring unless the owner says otherwise: far more than a
/// family or a lab lends, far fewer than a flood of made-up identities.
pub const NODES_PER_JOIN_TOKEN_MAX_DEFAULT: u32 = pool::NODES_PER_JOIN_TOKEN_MAX_DEFAULT;

/// Nodes silent this long are forgotten unless the owner says otherwise.
pub const SILENT_NODE_PURGE_MS_DEFAULT: u64 = pool::SILENT_NODE_PURGE_MS_DEFAULT;

/// What unfinished work may hold in memory in all: a family server's coordinator stays within
/// a couple of GiB.
pub const UNFINISHED_BYTES_MAX_DEFAULT: u64 = wire::limits::GIB;
/// What one requester's unfinished work may hold in memory: a quarter of the pool's, so one
/// requester cannot fill it alone.
pub const UNFINISHED_BYTES_PER_REQUESTER_MAX_DEFAULT: u64 = 256 * wire::limits::MIB;
/// Bytes of uploads one requester may keep stored: room for modules and inputs of real work on
/// a shared family disk.
pub const UPLOAD_QUOTA_BYTES_DEFAULT: u64 = 10 * wire::limits::GIB;

impl CoordinatorConfig {
    /// A coordinator keeping everything under `data_dir`: `state.db` and `blobs/`.
    pub fn in_dir(data_dir: &std::path::Path, pool_name: &str) -> Self {
        Self {
            pool_name: pool_name.to_owned(),
            database_url: format!("sqlite://{}", data_dir.join("state.db").display()),
            durability: Durability::Full,
            blobs: BlobLocation::Dir(data_dir.join("blobs")),
            work_dir: data_dir.join("work"),
            lease_ms: 15_000,
            blob_upload_bytes_max: wire::limits::BLOB_BYTES_MAX,
            write_queue_max: 200_000,
            bootstrap: Vec::new(),
            keep_results_ms: KEEP_RESULTS_MS_DEFAULT,
            unfinished_tasks_max: 5_000_000,
            unfinished_tasks_per_requester_max: 2_000_000,
            nodes_per_join_token_max: NODES_PER_JOIN_TOKEN_MAX_DEFAULT,
            silent_node_purge_ms: SILENT_NODE_PURGE_MS_DEFAULT,
            unfinished_bytes_max: UNFINISHED_BYTES_MAX_DEFAULT,
            unfinished_bytes_per_requester_max: UNFINISHED_BYTES_PER_REQUESTER_MAX_DEFAULT,
            upload_quota_bytes: UPLOAD_QUOTA_BYTES_DEFAULT,
            connections: ConnectionLimits::default(),
            trust: wire::Trust::Family,
            verify_policy: verify::Policy::PUBLIC,
            networks_apart: true,
            lead: LeadTerms::at_once(""),
            remote_address: None,
        }
    }

    pub(crate) fn unfinished_max(&self) -> pool::UnfinishedMax {
        pool::UnfinishedMax {
            pool: self.unfinished_tasks_max,
            per_requester: self.unfinished_tasks_per_requester_max,
            pool_bytes: self.unfinished_bytes_max,
            per_requester_bytes: self.unfinished_bytes_per_requester_max,
        }
    }
}

/// A program the pool offers every requester, ready to run without an upload (see
/// [`Coordinator::with_presets`]).
#[derive(Debug, Clone)]
pub struct PresetModule {
    /// What clients know it by, e.g. `render`.
    pub name: String,
    pub title: String,
    /// What it does and what its tasks take.
    pub description: String,
    /// The WebAssembly module.
    pub module: bytes::Bytes,
}

/// An opened coordinator: state loaded, ready to serve.
pub struct Coordinator {
    shared: Arc<service::Shared>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator").finish_non_exhaustive()
    }
}

impl Coordinator {
    /// Opens the state store and blob store, loads the pool and accepts the bootstrap tokens.
    pub async fn open(
        config: CoordinatorConfig,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Result<Self, CoordinatorError> {
        let (leader, _) = tokio::sync::watch::channel(None);
        let shared = service::Shared::open(config, clock, entropy, &leader).await?;
        Ok(Self::from_shared(shared))
    }

    /// Serves the API on `listener` until `shutdown` resolves (or storage fails), then stops
    /// taking requests, lets in-flight ones finish and commits what is queued.
    pub async fn serve(
        self,
        listener: impl Into<Listener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CoordinatorError> {
        service::serve(self.shared, listener.into(), None, shutdown).await
    }

    /// Like [`Coordinator::serve`], over TLS with `tls`; the only way to serve a listener that
    /// is not loopback. Join codes can be exchanged only over TLS, bound to this certificate.
    pub async fn serve_tls(
        self,
        listener: impl Into<Listener>,
        tls: TlsIdentity,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CoordinatorError> {
        self.shared.join.set_fingerprint(tls.fingerprint());
        service::serve(self.shared, listener.into(), Some(tls), shutdown).await
    }

    /// Lets jobs name validators, run by `runner`; without one they are refused.
    pub fn with_validators(self, runner: Arc<dyn ValidatorRunner>) -> Self {
        let set = self.shared.validators.set(runner);
        assert!(set.is_ok(), "validators are given once");
        self
    }

    /// Lends this pool's idle slots to the peers its owner adds, through bridges `runner` runs;
    /// without one, peers are kept but nothing is lent.
    pub fn with_federation(self, runner: Arc<dyn FederationRunner>) -> Self {
        let set = self.shared.federation.set(runner);
        assert!(set.is_ok(), "the federation runner is given once");
        self
    }

    /// Stores the modules of `presets` and offers them to every requester of the pool
    /// (`GET /v1/presets`): a job may name a preset's module without uploading it, and
    /// retention keeps them.
    pub async fn with_presets(self, presets: Vec<PresetModule>) -> Result<Self, CoordinatorError> {
        let mut offered = Vec::with_capacity(presets.len());
        for preset in presets {
            let hash = wire::BlobHash::of(&preset.module);
            let size_bytes = self.shared.blobs.put(hash, preset.module).await?;
            let at_ms = self.shared.now_ms();
            let insert = store::Write::InsertBlob {
                hash,
                size_bytes,
                at_ms,
                reader: None,
            };
            self.shared.store.write(vec![insert]).await?;
            offered.push(wire::Preset {
                name: preset.name,
                title: preset.title,
                description: preset.description,
                module: hash,
            });
        }
        let set = self.shared.presets.set(offered);
        assert!(set.is_ok(), "presets are given once");
        Ok(self)
    }

    /// The coordinator of a pool just loaded: the owner's bootstrap token may manage tokens
    /// and make join codes.
    pub(crate) fn from_shared(shared: Arc<service::Shared>) -> Self {
        for bootstrap in &shared.config.bootstrap {
            if bootstrap.name == OWNER_TOKEN_NAME
                && wire::auth::TokenKind::of(&bootstrap.token)
                    == Some(wire::auth::TokenKind::Requester)
            {
                shared
                    .join
                    .add_owner_token(wire::auth::token_hash(&bootstrap.token));
            }
        }
        Self { shared }
    }

    pub(crate) fn into_shared(self) -> Arc<service::Shared> {
        self.shared
    }

    pub fn pool_name(&self) -> &str {
        &self.shared.config.pool_name
    }
}
