//! The provider agent: runs on a node, dials out to a coordinator, pulls work and runs it in the
//! sandbox, within the slots its owner gives.
//!
//! Loops, all stopped by the shutdown signal:
//! - leasing: asks for up to its free slots at once with a long poll, and starts each attempt
//!   on its own task;
//! - heartbeat: extends the leases of what runs and stops what the coordinator says to stop;
//! - reporting: sends ended attempts in batches and retries while the coordinator is away.
//!
//! Invariants:
//! - An attempt's directory exists only while it runs and its outputs upload; the work dir is
//!   wiped at start, so a crash leaves nothing behind past the next start.
//! - The data dir (identity, cache, work dir and every attempt's tree under it) is readable
//!   by the owner only (0700), made so or tightened at start.
//! - On shutdown the agent takes no new work, lets running attempts finish for a grace period,
//!   then stops the rest and releases them, so their tasks run elsewhere without counting as
//!   failed attempts.
//! - A 401 means the coordinator no longer knows this session: the agent registers again and
//!   drops the attempts of the old session (their reports would be refused).
//! - A 403 from a node route, or a registration refused after that 401, means the pool refuses
//!   this node (its owner removed it, or the pool banned it): the agent drops its attempts and
//!   stops with an error at once, since nothing it does would count.
//! - The owner's policy wins (see [`owner`]): while it says stop, attempts are paused, no work
//!   is asked for, and the lease loop never asks for more than the policy's slots.

mod cache;
mod cheat;
mod checkpoint;
mod identity;
pub mod owner;
mod peer;
mod private;
mod runner;
mod system;

#[cfg(test)]
mod fake_pool_tests;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};

use client::{Client, ClientError};
use sandbox::{AttemptControl, Sandbox, SandboxConfig};
use wire::{
    AttemptGrant, AttemptId, AttemptReport, Capabilities, ErrorCode, HeartbeatRequest, JobId,
    JobRuntime, LeaseRequest, LeaseResponse, NodeActivity, NodeId, Outcome, RegisterRequest,
    ReleaseRequest, ReportRequest, Usage,
};

use crate::cache::BlobCache;
use crate::identity::Identity;
use crate::owner::signals::{Sensors, Signals};
use crate::owner::status::AgentState;
use crate::owner::steward::{Gate, OwnerState};
use crate::runner::{Ended, Runner};

pub use crate::cheat::{CheatConfig, CheatStrategy, LIE_TAKEN};
pub use crate::owner::policy::{OwnerPolicy, PolicyOverrides};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the identity key {path} is damaged; move it away to make a new identity (the node will join as a new node)"
    )]
    Identity { path: String },
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error("the coordinator refused to register this node: {0}")]
    Refused(String),
    #[error("stopped before the coordinator at {0} could be reached")]
    NeverConnected(String),
    #[error("{origin}: {field}: {problem}")]
    Policy {
        origin: String,
        field: String,
        problem: String,
    },
    #[error("{origin}: not a valid policy file: {message}")]
    PolicySyntax { origin: String, message: String },
    #[error(
        "{what} is not in the owner's allow-list (pools = [{allowed}]); add it to the policy's pools to join"
    )]
    PoolNotAllowed { what: String, allowed: String },
    #[error("{path}: cannot read the agent's status: {message}")]
    Status { path: String, message: String },
    /// The coordinator kept refusing this node id as online from another process.
    #[error("{0}")]
    IdentityClash(String),
    /// The pool refuses this node's identity: its owner removed it or the pool banned it, and
    /// it may not register again.
    #[error("the pool refused this node: {0}")]
    Removed(String),
    #[error(
        "another agent is running with the data dir {path}; stop it, or give this one its own --data-dir"
    )]
    DataDirInUse { path: String },
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `http://host:port` of the coordinator.
    pub coordinator_url: String,
    pub join_token: String,
    /// Identity, blob cache and attempt directories live here.
    pub data_dir: PathBuf,
    /// A name for people; the host name by default.
    pub name: String,
    /// Attempts run at once.
    pub slots: u32,
    /// Owner labels such as `region=eu`.
    pub labels: BTreeMap<String, String>,
    /// How long a lease request waits for work before asking again.
    pub lease_wait_ms: u32,
    /// How long running attempts may take to finish on shutdown before they are released.
    pub drain_timeout: Duration,
    /// Size cap of the blob cache (the policy's `disk` caps it further).
    pub cache_bytes_max: u64,
    pub sandbox: SandboxConfig,
    /// The owner's policy at start; the most attempts ever run at once is still `slots`.
    pub policy: OwnerPolicy,
    /// Where the policy came from, reloaded when it changes or on SIGHUP.
    pub policy_file: Option<PathBuf>,
    /// Applied on top of every reload of `policy_file`, such as command-line flags.
    pub policy_overrides: PolicyOverrides,
    /// What the machine says about its owner; the real sensors unless a test stands in.
    pub signals: Arc<dyn Signals>,
    /// The coordinator's certificate, pinned when its URL is `https://` (from `crowdcloud join`,
    /// discovery or `--fingerprint`).
    pub coordinator_fingerprint: Option<wire::Fingerprint>,
    /// How long registration keeps trying while the coordinator says this node id is online
    /// from another process. A restart after a crash gets in once the old process has been
    /// silent a little while; a copied data dir never does, and the agent gives up with the
    /// coordinator's explanation.
    pub identity_clash_wait: Duration,
    /// Lie about results instead of running them (`--cheat`), only to test verification.
    pub cheat: Option<CheatConfig>,
    /// Where to listen for other nodes fetching the intermediates this node holds
    /// (`--peer-listen`); `None` serves none, and this node's outputs are fetched from the
    /// coordinator.
    pub peer_listen: Option<std::net::SocketAddr>,
    /// The `ip:port` other nodes reach the peer listener at, when not the address it listens
    /// on (behind a port forward, or listening on every address).
    pub peer_address: Option<String>,
}

impl AgentConfig {
    pub fn new(coordinator_url: &str, join_token: &str, data_dir: PathBuf) -> Self {
        Self {
            coordinator_url: coordinator_url.to_owned(),
            join_token: join_token.to_owned(),
            data_dir,
            name: system::host_name(),
            slots: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            labels: BTreeMap::new(),
            lease_wait_ms: 25_000,
            drain_timeout: Duration::from_secs(10),
            cache_bytes_max: 4 << 30,
            sandbox: SandboxConfig {
                // A node compiles what the coordinator takes: one cap, not two.
                module_limits: sandbox::ModuleLimits {
                    module_bytes_max: wire::limits::MODULE_BYTES_MAX as usize,
                    ..sandbox::ModuleLimits::default()
                },
                ..SandboxConfig::default()
            },
            policy: OwnerPolicy::default(),
            policy_file: None,
            policy_overrides: PolicyOverrides::default(),
            signals: Arc::new(Sensors::system()),
            coordinator_fingerprint: None,
            identity_clash_wait: Duration::from_secs(30),
            cheat: None,
            peer_listen: None,
            peer_address: None,
        }
    }
}

/// What the agent did, returned when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentSummary {
    pub node_id: NodeId,
    pub attempts_reported: u64,
    pub attempts_released: u64,
}

struct Session {
    client: Client,
    node_id: NodeId,
    generation: u64,
    heartbeat_ms: u64,
}

enum Disposition {
    Report,
    Release,
    Drop,
}

struct Running {
    control: Arc<AttemptControl>,
    disposition: Disposition,
    job_id: JobId,
    task_index: u32,
    /// The attempt's memory limit, counted against the policy's memory.
    memory_bytes: u64,
}

enum Finished {
    /// A report, and the slot its attempt held, which the report asks to fill again.
    Report(Box<AttemptReport>, OwnedSemaphorePermit),
    Release(AttemptId, &'static str),
}

const RELEASE_SHUTDOWN: &str = "the node is shutting down";
const RELEASE_PAUSED: &str =
    "the node's owner paused it for longer than its policy's release_after";
const RELEASE_UNWANTED: &str = "the node is not taking work now";
const RELEASE_INPUT_GONE: &str =
    "an input kept on other nodes could not be fetched from any of them";

struct Agent {
    config: AgentConfig,
    identity: Identity,
    /// The machine as measured at start; the policy in force decides how much of it is lent.
    machine: Capabilities,
    /// What the coordinator was last told the node lends.
    capabilities_told: Mutex<Capabilities>,
    runner: Runner,
    anonymous: Client,
    session: RwLock<Session>,
    registering: tokio::sync::Mutex<()>,
    running: Mutex<HashMap<AttemptId, Running>>,
    runtimes: Mutex<HashMap<JobId, Arc<JobRuntime>>>,
    slots: Arc<Semaphore>,
    finished: Mutex<Option<mpsc::UnboundedSender<Finished>>>,
    stopping: watch::Sender<bool>,
    idle: Notify,
    /// Woken when an attempt ends, so the lease loop can ask for more.
    capacity: Notify,
    gate: watch::Sender<Gate>,
    owner: Mutex<OwnerState>,
    /// The pool's name as the coordinator gave it at registration.
    pool_name: Mutex<Option<String>>,
    /// The machine's memory, for the policy's memory cap.
    machine_memory_bytes: u64,
    reported: AtomicU64,
    released: AtomicU64,
    /// Deleted jobs whose copies this node dropped, to confirm in the next heartbeat.
    forgotten: Mutex<Vec<JobId>>,
    /// What the next heartbeats tell of the intermediates this node keeps for peers.
    peer_news: Arc<peer::PeerNews>,
    /// An error that ends the agent from inside a loop (this identity is online elsewhere, or
    /// the pool refuses it).
    fatal: Mutex<Option<AgentError>>,
    fatal_raised: Notify,
    /// The key of the tickets the peer listener takes: the current session's.
    peer_key: Arc<RwLock<Option<[u8; 32]>>>,
    /// Where other nodes reach the peer listener, once it listens.
    peer_address: Mutex<Option<String>>,
    /// Held while the agent runs: one agent per data dir (and so per identity) on a machine.
    _data_dir_lock: std::fs::File,
}

/// Runs the agent until `shutdown` resolves, then drains and returns what it did.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<AgentSummary, AgentError> {
    if !config.policy.may_allow_url(&config.coordinator_url) {
        return Err(AgentError::PoolNotAllowed {
            what: format!("the coordinator {}", config.coordinator_url),
            allowed: config.policy.pools.join(", "),
        });
    }
    let agent = Arc::new(Agent::open(config)?);
    let (finished, finished_queue) = mpsc::unbounded_channel();
    *agent.finished.lock() = Some(finished);
    agent.write_status_file_as(Some(AgentState::Starting));
    let mut shutdown = std::pin::pin!(shutdown);
    let peer_listener = agent.listen_for_peers().await?;
    tokio::select! {
        registered = agent.register() => registered?,
        () = &mut shutdown => {
            agent.write_status_file_as(Some(AgentState::Stopped));
            return Err(AgentError::NeverConnected(agent.config.coordinator_url.clone()));
        }
    }
    tracing::info!(policy = %agent.owner.lock().policy.summary(), "owner's policy");
    let governor = tokio::spawn(Arc::clone(&agent).govern_loop());
    let reporter = tokio::spawn(Arc::clone(&agent).report_loop(finished_queue));
    let heartbeat = tokio::spawn(Arc::clone(&agent).heartbeat_loop());
    let presence = tokio::spawn(Arc::clone(&agent).presence_loop());
    let leasing = tokio::spawn(Arc::clone(&agent).lease_loop());
    let peers =
        peer_listener.map(|listener| tokio::spawn(Arc::clone(&agent).serve_peers(listener)));
    let refused = tokio::select! {
        () = &mut shutdown => false,
        () = agent.fatal_raised.notified() => true,
    };
    tracing::info!("agent stopping: finishing running attempts");
    agent.stopping.send_replace(true);
    if refused {
        // The pool no longer hears this node: a parked lease request could wait out its whole
        // poll, and nothing it were granted would count.
        leasing.abort();
    } else {
        agent.send_heartbeat().await;
    }
    let _ = leasing.await;
    agent.drain().await;
    governor.abort();
    heartbeat.abort();
    if let Some(peers) = peers {
        peers.abort();
    }
    // Closed only once nothing runs here: the coordinator then has no task to run elsewhere.
    presence.abort();
    agent.finished.lock().take();
    let _ = tokio::time::timeout(Duration::from_secs(30), reporter).await;
    agent.write_status_file_as(Some(AgentState::Stopped));
    if let Some(error) = agent.fatal.lock().take() {
        return Err(error);
    }
    let node_id = agent.session.read().node_id;
    Ok(AgentSummary {
        node_id,
        attempts_reported: agent.reported.load(Ordering::Relaxed),
        attempts_released: agent.released.load(Ordering::Relaxed),
    })
}

impl Agent {
    fn open(config: AgentConfig) -> Result<Self, AgentError> {
        let (data_dir_lock, work_dir) = prepare_data_dir(&config.data_dir)?;
        raise_open_files_limit();
        let identity = Identity::load_or_create(&config.data_dir)?;
        let cache = BlobCache::open(
            &config.data_dir.join("cache"),
            cache_bytes_max(&config, &config.policy),
        )?;
        let sandbox = sandbox_for(&config)?;
        let anonymous = match config.coordinator_fingerprint {
            Some(fingerprint) => Client::pinned(&config.coordinator_url, None, fingerprint),
            None => Client::new(&config.coordinator_url, None),
        }
        .map_err(|error| AgentError::Refused(error.to_string()))?;
        let module_bytes_max = config.sandbox.module_limits.module_bytes_max as u64;
        let machine = system::capabilities(&config.data_dir, module_bytes_max);
        let machine_memory_bytes = machine.memory_bytes;
        let capabilities = Capabilities {
            encryption_key: Some(identity.encryption_key()),
            ..system::lent(machine.clone(), &config.policy)
        };
        let secret = identity.encryption_secret().clone();
        Ok(Self {
            identity,
            machine,
            capabilities_told: Mutex::new(capabilities),
            runner: Runner {
                cache: Arc::new(cache),
                sandbox: Arc::new(sandbox),
                work_dir,
                cheat: config.cheat.clone().map(cheat::Cheat::new).map(Arc::new),
                secret,
                peers: client::peer::PeerClient::new()
                    .map_err(|error| AgentError::Refused(error.to_string()))?,
                serves_peers: config.peer_listen.is_some(),
            },
            session: RwLock::new(Session {
                client: anonymous.clone(),
                node_id: NodeId(0),
                generation: 0,
                heartbeat_ms: 5000,
            }),
            anonymous,
            registering: tokio::sync::Mutex::new(()),
            running: Mutex::new(HashMap::new()),
            runtimes: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(config.slots as usize)),
            finished: Mutex::new(None),
            stopping: watch::Sender::new(false),
            idle: Notify::new(),
            capacity: Notify::new(),
            gate: watch::Sender::new(Gate::closed()),
            owner: Mutex::new(OwnerState::new(config.policy.clone())),
            pool_name: Mutex::new(None),
            machine_memory_bytes,
            reported: AtomicU64::new(0),
            released: AtomicU64::new(0),
            forgotten: Mutex::new(Vec::new()),
            peer_news: Arc::new(peer::PeerNews::default()),
            fatal: Mutex::new(None),
            fatal_raised: Notify::new(),
            peer_key: Arc::new(RwLock::new(None)),
            peer_address: Mutex::new(None),
            _data_dir_lock: data_dir_lock,
            config,
        })
    }

    fn client(&self) -> (Client, u64) {
        let session = self.session.read();
        (session.client.clone(), session.generation)
    }

    fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Registers, retrying while the coordinator cannot be reached.
    async fn register(&self) -> Result<(), AgentError> {
        let mut delay = Duration::from_millis(100);
        let started = std::time::Instant::now();
        let mut unauthorized_tries = 0;
        loop {
            match self.try_register().await {
                Ok(pool_name) => return self.check_pool(pool_name),
                Err(error) if error.code() == Some(ErrorCode::Conflict) => {
                    if started.elapsed() >= self.config.identity_clash_wait {
                        return Err(AgentError::IdentityClash(error.to_string()));
                    }
                    tracing::warn!(%error, "this node id is online elsewhere; retrying, in case that is this agent's previous process");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                // The pool may ask a join token's nodes to register more slowly.
                Err(error)
                    if error.is_transient() || error.code() == Some(ErrorCode::TooManyRequests) =>
                {
                    tracing::warn!(%error, "cannot register yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(retry_ceiling(&error));
                }
                Err(error) if error.code() == Some(ErrorCode::Forbidden) => {
                    return Err(AgentError::Removed(error.to_string()));
                }
                // A coordinator restart between the challenge and the registration loses the
                // nonce, and a new challenge gets in; a refused join token stays refused.
                Err(error)
                    if error.code() == Some(ErrorCode::Unauthorized) && unauthorized_tries < 2 =>
                {
                    unauthorized_tries += 1;
                    tracing::warn!(%error, "registration refused; trying with a new challenge");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(error) => return Err(AgentError::Refused(error.to_string())),
            }
        }
    }

    /// Refuses a pool the owner's allow-list does not name.
    fn check_pool(&self, pool_name: String) -> Result<(), AgentError> {
        let policy = self.owner.lock().policy.clone();
        let allowed = policy.allows_pool(&self.config.coordinator_url, Some(&pool_name));
        *self.pool_name.lock() = Some(pool_name.clone());
        if allowed {
            return Ok(());
        }
        Err(AgentError::PoolNotAllowed {
            what: format!("the pool {pool_name:?} at {}", self.config.coordinator_url),
            allowed: policy.pools.join(", "),
        })
    }

    /// Binds the peer listener, when the agent is to have one, and notes the address other
    /// nodes reach it at.
    async fn listen_for_peers(&self) -> Result<Option<tokio::net::TcpListener>, AgentError> {
        let Some(listen) = self.config.peer_listen else {
            return Ok(None);
        };
        let io = |source| AgentError::Io {
            path: format!("peer listener {listen}"),
            source,
        };
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(io)?;
        let bound = listener.local_addr().map_err(io)?;
        let address = match &self.config.peer_address {
            Some(address) => address.clone(),
            None if bound.ip().is_unspecified() => {
                return Err(AgentError::Refused(format!(
                    "the peer listener listens on every address ({bound}); say which one other \
                     nodes reach it at with --peer-address IP:PORT"
                )));
            }
            None => bound.to_string(),
        };
        tracing::info!(%bound, %address, "serving held intermediates to other nodes");
        *self.peer_address.lock() = Some(address);
        Ok(Some(listener))
    }

    async fn serve_peers(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let server = peer::PeerServer {
            cache: Arc::clone(&self.runner.cache),
            key: Arc::clone(&self.peer_key),
            serving: Arc::new(tokio::sync::Semaphore::new(peer::SERVING_AT_ONCE)),
            news: Arc::clone(&self.peer_news),
        };
        let mut stopping = self.stopping.subscribe();
        let stopped = async move {
            let _ = stopping.wait_for(|stopping| *stopping).await;
        };
        peer::serve(listener, server, stopped).await;
    }

    /// What the node lends under the policy in force now.
    fn lent_now(&self) -> Capabilities {
        Capabilities {
            peer_address: self.peer_address.lock().clone(),
            encryption_key: Some(self.identity.encryption_key()),
            ..system::lent(self.machine.clone(), &self.owner.lock().policy)
        }
    }

    /// Slots announced at registration: the policy's, within the configured most.
    fn registered_slots(&self) -> u32 {
        let machine_cores = self.config.signals.read().machine_cores;
        self.owner
            .lock()
            .policy
            .slots_for(machine_cores)
            .min(self.config.slots)
            .max(1)
    }

    /// Registers with a fresh challenge's nonce; gives the pool's name.
    async fn try_register(&self) -> Result<String, ClientError> {
        let slots = self.registered_slots();
        let challenge = self.anonymous.challenge(&self.config.join_token).await?;
        let mut request = RegisterRequest {
            join_token: self.config.join_token.clone(),
            public_key: self.identity.public_key_hex(),
            signature: String::new(),
            nonce: challenge.nonce,
            name: self.config.name.clone(),
            capabilities: {
                let lent = self.lent_now();
                *self.capabilities_told.lock() = lent.clone();
                lent
            },
            labels: self.config.labels.clone(),
            slots,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        // The signature covers every other field, so it is made last.
        request.signature = self
            .identity
            .sign_hex(&wire::auth::registration_message(&request));
        let response = self.anonymous.register(&request).await?;
        debug_assert_eq!(response.node_id, self.identity.node_id());
        let token_hash = wire::auth::token_hash(&response.node_token);
        *self.peer_key.write() = Some(wire::peer::ticket_key(&token_hash));
        // A new session: the coordinator counts on nothing this node kept before.
        self.runner.cache.unpin_all();
        self.peer_news.clear();
        let mut session = self.session.write();
        session.client = self.anonymous.with_token(response.node_token);
        session.node_id = response.node_id;
        session.generation += 1;
        session.heartbeat_ms = response.heartbeat_ms;
        tracing::info!(node = %response.node_id, pool = %response.pool_name, slots, "registered");
        Ok(response.pool_name)
    }

    /// Registers again after the coordinator forgot this session (seen as `generation`), and
    /// drops the attempts of the old session.
    async fn reregister(&self, generation: u64) {
        let _one_at_a_time = self.registering.lock().await;
        if self.session.read().generation != generation {
            return;
        }
        if self.fatal.lock().is_some() {
            return;
        }
        tracing::warn!("the coordinator no longer knows this node's session; registering again");
        match self.register().await {
            Ok(()) => {}
            // The session is gone and no new one is to be had: nothing this agent does counts
            // any more, and retrying would go on for ever.
            Err(AgentError::Refused(message)) => {
                return self.give_up(AgentError::Removed(format!(
                    "it was removed or banned, and may not register again ({message})"
                )));
            }
            Err(error) => return self.give_up(error),
        }
        for running in self.running.lock().values_mut() {
            running.disposition = Disposition::Drop;
            running.control.cancel();
        }
    }

    /// A node route answered 403: the pool still knows this node's token but refuses the node.
    fn refused(&self, error: &ClientError) {
        self.give_up(AgentError::Removed(format!(
            "it was removed or banned ({error})"
        )));
    }

    /// Stops the agent for good with `error`: the pool no longer takes part from this identity.
    /// Its attempts are dropped, since no report of theirs would be accepted.
    fn give_up(&self, error: AgentError) {
        let mut fatal = self.fatal.lock();
        if fatal.is_some() {
            return;
        }
        tracing::error!(%error, "this node may not take part in the pool; stopping");
        *fatal = Some(error);
        drop(fatal);
        self.stopping.send_replace(true);
        for running in self.running.lock().values_mut() {
            running.disposition = Disposition::Drop;
            running.control.cancel();
        }
        self.fatal_raised.notify_one();
    }

    /// Attempts the agent may ask for now: [`Self::slots_wanted`], as far as slots are free.
    fn lease_allowance(&self) -> usize {
        self.slots_wanted().min(self.slots.available_permits())
    }

    /// Slots the policy lets this node fill now besides those running: none while it says
    /// stop, the agent stops, or the memory lent is taken.
    fn slots_wanted(&self) -> usize {
        if self.is_stopping() {
            return 0;
        }
        let memory_max_bytes = self
            .owner
            .lock()
            .policy
            .memory_max
            .of(self.machine_memory_bytes);
        {
            let running = self.running.lock();
            let memory_held_bytes: u64 = running.values().map(|r| r.memory_bytes).sum();
            if !running.is_empty() && memory_held_bytes >= memory_max_bytes {
                return 0;
            }
        }
        self.policy_room()
    }

    /// The policy's slots less those running: none while the policy says stop.
    fn policy_room(&self) -> usize {
        let (run, slots) = {
            let gate = self.gate.borrow();
            (gate.run, gate.slots as usize)
        };
        match run {
            true => slots.saturating_sub(self.running.lock().len()),
            false => 0,
        }
    }

    async fn lease_loop(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        let mut gate = self.gate.subscribe();
        let mut delay = Duration::from_millis(100);
        while !self.is_stopping() {
            gate.borrow_and_update();
            let wanted = self.lease_allowance();
            if wanted == 0 {
                tokio::select! {
                    () = self.capacity.notified() => {}
                    _ = gate.changed() => {}
                    _ = stopping.changed() => break,
                }
                continue;
            }
            let permits = self.free_permits(wanted);
            let (client, generation) = self.client();
            let request = LeaseRequest {
                slots_free: permits.len() as u32,
                wait_ms: self.config.lease_wait_ms,
            };
            match client.lease(&request).await {
                Ok(response) => {
                    delay = Duration::from_millis(100);
                    self.take_grants(&client, response, permits);
                    // The attempts just granted start before this loop asks again.
                    tokio::task::yield_now().await;
                }
                Err(error) if error.code() == Some(ErrorCode::Unauthorized) => {
                    self.reregister(generation).await;
                }
                // It stops the agent, this loop with it.
                Err(error) if error.code() == Some(ErrorCode::Forbidden) => self.refused(&error),
                Err(error) => {
                    tracing::warn!(%error, "lease request failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stopping.changed() => break,
                    }
                    delay = (delay * 2).min(retry_ceiling(&error));
                }
            }
        }
    }

    /// Up to `wanted` of the free slots' permits, as many as are free now.
    fn free_permits(&self, wanted: usize) -> Vec<OwnedSemaphorePermit> {
        let mut permits = Vec::with_capacity(wanted);
        while permits.len() < wanted
            && let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned()
        {
            permits.push(permit);
        }
        permits
    }

    /// Starts the attempts `response` grants, each on one of `permits`, and gives back those
    /// it cannot start; the permits left over free their slots again.
    fn take_grants(
        self: &Arc<Self>,
        client: &Client,
        response: LeaseResponse,
        mut permits: Vec<OwnedSemaphorePermit>,
    ) {
        for runtime in response.jobs {
            self.runtimes
                .lock()
                .insert(runtime.job_id, Arc::new(runtime));
        }
        // The policy may have stopped work or cut slots while the request was parked.
        let mut accepted = self.policy_room();
        for grant in response.attempts {
            match permits.pop() {
                Some(permit) if !self.is_stopping() && accepted > 0 => {
                    accepted -= 1;
                    self.start(client.clone(), grant, permit);
                }
                // Granted while stopping or paused (or beyond what was asked): give it back.
                _ => self.give_back(grant.attempt_id),
            }
        }
        if !permits.is_empty() {
            drop(permits);
            self.capacity.notify_one();
        }
    }

    fn give_back(&self, attempt_id: AttemptId) {
        let reason = if self.is_stopping() {
            RELEASE_SHUTDOWN
        } else {
            RELEASE_UNWANTED
        };
        if let Some(finished) = self.finished.lock().as_ref() {
            let _ = finished.send(Finished::Release(attempt_id, reason));
        }
    }

    fn start(self: &Arc<Self>, client: Client, grant: AttemptGrant, permit: OwnedSemaphorePermit) {
        let control = Arc::new(AttemptControl::new());
        let memory_bytes = grant.memory_bytes_max.unwrap_or_else(|| {
            self.runtimes
                .lock()
                .get(&grant.job_id)
                .map_or(0, |runtime| runtime.limits.memory_bytes_max)
        });
        {
            let mut running = self.running.lock();
            running.insert(
                grant.attempt_id,
                Running {
                    control: Arc::clone(&control),
                    disposition: Disposition::Report,
                    job_id: grant.job_id,
                    task_index: grant.task_index,
                    memory_bytes,
                },
            );
            // Checked under the lock the governor pauses attempts under, so an attempt
            // started as the policy stops work is paused too.
            if !self.gate.borrow().run {
                control.pause();
            }
        }
        let agent = Arc::clone(self);
        tokio::spawn(async move {
            let ended = match agent.runtime(&client, grant.job_id).await {
                // Boxed, so the spawned task stays small: the attempt's own future (about 8 KB)
                // is made once, in its box, instead of being copied into the task's cell and
                // moved with it. Two sets of eight alternating `bench dispatch` runs: 13,918 →
                // 14,970 and 13,737 → 14,684 tasks/s, the round trip unchanged.
                Ok(runtime) => Box::pin(agent.runner.run(&client, &runtime, &grant, control)).await,
                Err(error) => Ended::Report(Box::new(AttemptReport {
                    ran_on: None,
                    attempt_id: grant.attempt_id,
                    outcome: Outcome::NodeError {
                        message: format!("cannot get the job's runtime: {error}"),
                    },
                    usage: Usage::default(),
                    stdout: None,
                    stderr: None,
                    outputs: Vec::new(),
                    sealed_digest: None,
                })),
            };
            agent.finish(grant.attempt_id, ended, permit);
        });
    }

    async fn runtime(&self, client: &Client, job: JobId) -> Result<Arc<JobRuntime>, ClientError> {
        if let Some(runtime) = self.runtimes.lock().get(&job) {
            return Ok(Arc::clone(runtime));
        }
        let runtime = Arc::new(client.job_runtime(job).await?);
        self.runtimes.lock().insert(job, Arc::clone(&runtime));
        Ok(runtime)
    }

    /// Sends what became of an attempt to the report loop. A report takes its slot's `permit`
    /// along, to ask for the next attempt with it; otherwise the slot is free at once.
    fn finish(&self, attempt_id: AttemptId, ended: Ended, permit: OwnedSemaphorePermit) {
        // Held from the attempt's leaving `running` to its message's sending: a drain that
        // sees nothing running and then closes the queue cannot close it in between, which
        // would drop the release of the last attempt to stop.
        let queue = self.finished.lock();
        let running = self.running.lock().remove(&attempt_id);
        let disposition = running.map(|r| r.disposition).unwrap_or(Disposition::Drop);
        let release_reason = if self.is_stopping() {
            RELEASE_SHUTDOWN
        } else {
            RELEASE_PAUSED
        };
        let message = match (disposition, ended) {
            (Disposition::Drop, _) => {
                drop(permit);
                None
            }
            // A result that arrived is worth more than giving the task back.
            (_, Ended::Report(report)) => Some(Finished::Report(report, permit)),
            (_, Ended::Stopped) => {
                drop(permit);
                Some(Finished::Release(attempt_id, release_reason))
            }
            (_, Ended::InputGone(why)) => {
                tracing::info!(attempt = %attempt_id, %why, "an input kept on other nodes is gone; giving the attempt back");
                drop(permit);
                Some(Finished::Release(attempt_id, RELEASE_INPUT_GONE))
            }
        };
        let carried = matches!(message, Some(Finished::Report(..)));
        if let Some(message) = message
            && let Some(finished) = queue.as_ref()
            && finished.send(message).is_ok()
            && carried
        {
            // The report loop frees the slot, or fills it, and says so.
        } else {
            self.capacity.notify_one();
        }
        drop(queue);
        if self.running.lock().is_empty() {
            self.idle.notify_waiters();
        }
    }

    /// Keeps one presence request open, so that the coordinator learns within a second that
    /// this process died (its kernel closes the connection) and runs its tasks elsewhere too.
    async fn presence_loop(self: Arc<Self>) {
        loop {
            let (client, _) = self.client();
            if let Err(error) = client.presence().await {
                tracing::debug!(%error, "presence request failed; sending another");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        loop {
            let interval = Duration::from_millis(self.session.read().heartbeat_ms.max(50));
            tokio::time::sleep(interval).await;
            self.send_heartbeat().await;
        }
    }

    async fn send_heartbeat(&self) {
        let (client, generation) = self.client();
        // What the policy lets it take now, not the semaphore's ceiling. Read before the
        // running list: both take the running lock.
        let slots_free = self.lease_allowance() as u32;
        let lent = self.lent_now();
        let capabilities = (lent != *self.capabilities_told.lock()).then_some(lent);
        let peer::PeerReport {
            copied,
            kept,
            dropped,
        } = self.peer_news.report(&self.runner.cache);
        let request = HeartbeatRequest {
            running: self.running.lock().keys().copied().collect(),
            slots_free,
            activity: if self.is_stopping() {
                NodeActivity::Draining
            } else {
                let gate = self.gate.borrow();
                if gate.run {
                    NodeActivity::Active
                } else {
                    // The coordinator refuses a reason it would not show as it is.
                    NodeActivity::Paused {
                        reason: wire::validate::fit_reason(&gate.reason),
                    }
                }
            },
            capabilities,
            forgotten: self.forgotten.lock().clone(),
            copied,
            kept,
            dropped,
        };
        match client.heartbeat(&request).await {
            Ok(response) => {
                self.forgotten
                    .lock()
                    .retain(|job| !request.forgotten.contains(job));
                self.forget(&response.forget);
                self.follow_peers(&client, &request, &response);
                if let Some(lent) = request.capabilities {
                    tracing::info!(
                        cores = lent.cores,
                        memory_bytes = lent.memory_bytes,
                        "the coordinator was told what the node lends now"
                    );
                    *self.capabilities_told.lock() = lent;
                }
                // The interval grows with the pool; follow what the coordinator asks now.
                self.session.write().heartbeat_ms = response.heartbeat_ms;
                let mut running = self.running.lock();
                for attempt_id in response.cancel {
                    if let Some(attempt) = running.get_mut(&attempt_id) {
                        tracing::info!(attempt = %attempt_id, "the coordinator stopped this attempt");
                        attempt.disposition = Disposition::Drop;
                        attempt.control.cancel();
                    }
                }
            }
            Err(error) if error.code() == Some(ErrorCode::Unauthorized) => {
                self.reregister(generation).await;
            }
            Err(error) if error.code() == Some(ErrorCode::Forbidden) => self.refused(&error),
            Err(error) => tracing::warn!(%error, "heartbeat failed"),
        }
    }

    /// What a heartbeat's answer says of the intermediates kept for peers: the copies it
    /// named were taken, and which to let go and which to make now.
    fn follow_peers(
        &self,
        client: &Client,
        told: &HeartbeatRequest,
        response: &wire::HeartbeatResponse,
    ) {
        self.peer_news.heard(told, response.name_kept);
        self.runner.cache.unpin(&response.release);
        if !response.copy.is_empty() {
            tokio::spawn(peer::copy_for_peers(
                Arc::clone(&self.runner.cache),
                (client.clone(), self.runner.peers.clone()),
                response.copy.clone(),
                Arc::clone(&self.peer_news),
            ));
        }
    }

    /// Drops what deleted jobs left in the cache and the compiled modules, and notes the jobs
    /// to confirm in the next heartbeat.
    fn forget(&self, forgets: &[wire::Forget]) {
        for forget in forgets {
            self.runner.cache.forget(&forget.blobs, forget.everything);
            for hash in &forget.blobs {
                self.runner.sandbox.forget(&hash.0);
            }
            tracing::info!(job = %forget.job_id, blobs = forget.blobs.len(), everything = forget.everything, "a deleted job's copies dropped");
            let mut forgotten = self.forgotten.lock();
            if !forgotten.contains(&forget.job_id)
                && forgotten.len() < wire::deletion::FORGETS_PER_HEARTBEAT_MAX
            {
                forgotten.push(forget.job_id);
            }
        }
    }

    async fn drain(&self) {
        let everything_ended = async {
            loop {
                let idle = self.idle.notified();
                if self.running.lock().is_empty() {
                    return;
                }
                idle.await;
            }
        };
        // Paused attempts would not finish in the grace period: give them back at once.
        let paused = !self.gate.borrow().run;
        if !paused
            && tokio::time::timeout(self.config.drain_timeout, everything_ended)
                .await
                .is_ok()
        {
            return;
        }
        let releasing = {
            let mut running = self.running.lock();
            for attempt in running.values_mut() {
                attempt.disposition = Disposition::Release;
                attempt.control.cancel();
            }
            running.len()
        };
        tracing::info!(
            releasing,
            "drain timeout: stopping and releasing the remaining attempts"
        );
        let stopped = async {
            loop {
                let idle = self.idle.notified();
                if self.running.lock().is_empty() {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), stopped).await;
    }

    async fn report_loop(self: Arc<Self>, mut queue: mpsc::UnboundedReceiver<Finished>) {
        while let Some(first) = queue.recv().await {
            let mut reports = Vec::new();
            let mut slots = Vec::new();
            let mut releases: BTreeMap<&'static str, Vec<AttemptId>> = BTreeMap::new();
            let mut next = Some(first);
            while let Some(finished) = next {
                match finished {
                    Finished::Report(report, slot) => {
                        reports.push(*report);
                        slots.push(slot);
                    }
                    Finished::Release(attempt_id, reason) => {
                        releases.entry(reason).or_default().push(attempt_id);
                    }
                }
                let releasing: usize = releases.values().map(Vec::len).sum();
                if reports.len() + releasing >= wire::limits::REPORTS_PER_REQUEST_MAX {
                    break;
                }
                next = queue.try_recv().ok();
            }
            for (reason, attempts) in releases {
                self.send_release(attempts, reason).await;
            }
            if !reports.is_empty() {
                self.send_reports(reports, slots).await;
            }
        }
    }

    /// Sends `reports`, asking with them for attempts for the `slots` their attempts held and
    /// any other slot free now.
    async fn send_reports(
        self: &Arc<Self>,
        mut reports: Vec<AttemptReport>,
        mut slots: Vec<OwnedSemaphorePermit>,
    ) {
        // One report the coordinator refuses would drop the whole batch.
        for report in &mut reports {
            wire::validate::fit_outcome(&mut report.outcome);
        }
        let request = ReportRequest { reports };
        let mut delay = Duration::from_millis(100);
        loop {
            let (client, generation) = self.client();
            // The slots free now are asked for with the reports: one exchange, not two.
            let mut permits = std::mem::take(&mut slots);
            let wanted = self.slots_wanted();
            permits.extend(self.free_permits(wanted.saturating_sub(permits.len())));
            if permits.len() > wanted {
                permits.truncate(wanted);
                self.capacity.notify_one();
            }
            let mut sent = match permits.len() {
                0 => client.report(&request).await,
                free => client.report_and_lease(&request, free as u32).await,
            };
            let lease = match &mut sent {
                Ok(response) => response.lease.take().unwrap_or_default(),
                Err(_) => LeaseResponse::default(),
            };
            self.take_grants(&client, lease, permits);
            match sent {
                Ok(response) => {
                    for ack in response.acks {
                        if let Some(cheat) = &self.runner.cheat {
                            cheat.answered(&request.reports, ack.attempt_id, ack.accepted);
                        }
                        if ack.accepted {
                            self.reported.fetch_add(1, Ordering::Relaxed);
                        } else {
                            tracing::info!(attempt = %ack.attempt_id, reason = ack.message.as_deref().unwrap_or(""), "report refused");
                        }
                    }
                    return;
                }
                Err(error) if error.code() == Some(ErrorCode::Unauthorized) => {
                    // These attempts belong to a session the coordinator forgot.
                    self.reregister(generation).await;
                    return;
                }
                Err(error) if error.code() == Some(ErrorCode::Forbidden) => {
                    return self.refused(&error);
                }
                Err(error) if error.is_transient() && delay < Duration::from_secs(120) => {
                    tracing::warn!(%error, "cannot report yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(retry_ceiling(&error)) + Duration::from_millis(1);
                }
                Err(error) => {
                    tracing::error!(%error, "reports dropped");
                    return;
                }
            }
        }
    }

    async fn send_release(&self, attempts: Vec<AttemptId>, reason: &str) {
        let request = ReleaseRequest {
            attempts,
            reason: reason.to_owned(),
        };
        let (client, _) = self.client();
        match client.release(&request).await {
            Ok(response) => {
                self.released
                    .fetch_add(response.released.len() as u64, Ordering::Relaxed);
            }
            Err(error) => tracing::warn!(%error, "release failed; the leases will expire instead"),
        }
    }
}

/// Makes the data dir if needed and leaves it readable by the owner only, also when an older
/// version made it open to everyone: the cache and the work dir under it hold other people's
/// job data.
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// The agent's sandbox, with its bin of attempt trees in the data dir. Compiled modules are kept in the data dir, within a
/// quarter of the blob cache's cap, so the owner's disk policy bounds both.
fn sandbox_for(config: &AgentConfig) -> Result<Sandbox, AgentError> {
    let mut sandbox_config = config.sandbox.clone();
    sandbox_config
        .recycle_dir
        .get_or_insert_with(|| config.data_dir.join("recycled"));
    sandbox_config
        .compiled_dir
        .get_or_insert_with(|| config.data_dir.join("compiled"));
    sandbox_config.compiled_dir_bytes_max = sandbox_config
        .compiled_dir_bytes_max
        .min(cache_bytes_max(config, &config.policy) / 4);
    Ok(Sandbox::new(sandbox_config)?)
}

/// The blob cache's cap: the policy's disk limit, within the agent's own.
fn cache_bytes_max(config: &AgentConfig, policy: &OwnerPolicy) -> u64 {
    policy
        .disk_max_bytes
        .map_or(config.cache_bytes_max, |disk| {
            disk.min(config.cache_bytes_max)
        })
}

/// Makes the data dir private and locks it, and empties its work dir; gives the lock and the
/// work dir.
fn prepare_data_dir(data_dir: &Path) -> Result<(std::fs::File, PathBuf), AgentError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| AgentError::Io { path, source }
    };
    private_dir(data_dir).map_err(io(data_dir))?;
    let data_dir_lock = lock_data_dir(data_dir)?;
    let work_dir = data_dir.join("work");
    // Attempt directories of a previous run that did not end cleanly; a hostile task may
    // have nested them deeper than std's remove_dir_all can follow.
    if work_dir.exists() {
        sandbox::remove_tree(&work_dir).map_err(io(&work_dir))?;
    }
    std::fs::create_dir_all(&work_dir).map_err(io(&work_dir))?;
    Ok((data_dir_lock, work_dir))
}

/// Takes the data dir's lock file, so that a second agent on the same data dir (and identity)
/// on this machine stops at once instead of fighting the first for the node id.
fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, AgentError> {
    let path = data_dir.join(DATA_DIR_LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| AgentError::Io {
            path: path.display().to_string(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AgentError::DataDirInUse {
            path: data_dir.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(AgentError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// The lock file an agent holds in its data dir while it runs.
pub const DATA_DIR_LOCK_FILE: &str = "agent.lock";

/// Whether an agent runs on this machine with `data_dir` (it holds the data dir's lock).
pub fn agent_running_in(data_dir: &std::path::Path) -> bool {
    let Ok(file) = std::fs::File::open(data_dir.join(DATA_DIR_LOCK_FILE)) else {
        return false;
    };
    matches!(
        file.try_lock_shared(),
        Err(std::fs::TryLockError::WouldBlock)
    )
}

/// The node id of the identity kept in `data_dir`, if one was made there.
pub fn node_id_in(data_dir: &std::path::Path) -> Option<NodeId> {
    identity::Identity::load_existing(data_dir)
}

/// Raises the soft limit on open files to the hard limit: every slot may hold up to 256 files
/// of its task open, which the common soft limit of 1024 does not fit.
fn raise_open_files_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(%error, "cannot raise the open files limit; many slots may run out of descriptors");
        }
    }
}

/// The longest wait between retries of a failed request: short while the coordinator is down
/// or a standby is taking over, so the node is back at work within a second of a new leader;
/// longer while a coordinator that answers is overloaded.
fn retry_ceiling(error: &client::ClientError) -> Duration {
    let elsewhere = matches!(error, client::ClientError::Unreachable { .. })
        || error.code() == Some(ErrorCode::Standby);
    if elsewhere {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    }
}
