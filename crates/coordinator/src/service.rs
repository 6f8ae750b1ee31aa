//! The pool behind its lock, the store behind it, and the tasks that keep it moving: serving
//! HTTP, expiring leases, stopping cleanly.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard, RwLock};
use tokio::sync::{Notify, oneshot, watch};

use blobstore::BlobStore;
use store::{Commit, Store, StoreError};
use wire::auth::{TokenKind, token_hash};
use wire::{BlobHash, JobId, LeaseResponse, NodeId, RequesterId};

use crate::credentials::Credentials;
use crate::env::{Clock, Entropy};
use crate::parked::Parked;
use crate::pool::{
    Command, CreateToken, Expire, Lease, NewToken, Outbox, PoolError, PoolState, RecordUpload,
    SaveCheckpoint,
};
use crate::{CoordinatorConfig, CoordinatorError};

/// The pool and what waits on it, behind one lock.
struct Core {
    pool: PoolState,
    parked: Parked,
    /// A copy of the pool that changes only by the events of each change, serialized and read
    /// back, checked against the pool after every change: debug builds prove on every test
    /// that the events say all that happened.
    #[cfg(debug_assertions)]
    follower: PoolState,
}

pub(crate) struct Shared {
    pub(crate) config: CoordinatorConfig,
    core: Mutex<Core>,
    /// The credentials that work now, read by every request without the pool's lock.
    credentials: RwLock<Credentials>,
    pub(crate) store: Store,
    pub(crate) blobs: BlobStore,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    next_request: AtomicU64,
    /// Verdicts on modules, each reached once; they need not be read and parsed again.
    pub(crate) module_verdicts: crate::modules::ModuleVerdicts,
    /// Blobs requesters were found able to read (see `readable`).
    pub(crate) readable_blobs: crate::readable::ReadableBlobs,
    /// Room reserved by requesters' uploads in flight, against their quotas.
    pub(crate) uploads_in_flight: crate::http::quota::UploadsInFlight,
    /// Counters, histograms and the last hour's history (see `crate::metrics`).
    pub(crate) metrics: crate::metrics::Metrics,
    /// Programs the pool offers every requester; set once, at start.
    pub(crate) presets: std::sync::OnceLock<Vec<wire::Preset>>,
    /// Set when the coordinator stops; long-polls return at once.
    pub(crate) stopping: watch::Sender<bool>,
    /// Told when the coordinator must stop though no one asked: a commit failed, or it
    /// stepped down.
    must_stop: Notify,
    /// Why this coordinator stopped serving although nothing failed: it could not renew its
    /// lead in time, or another coordinator took it.
    stepped_down: Mutex<Option<String>>,
    /// What runs jobs' validators, when the coordinator was given one.
    pub(crate) validators: std::sync::OnceLock<Arc<dyn crate::ValidatorRunner>>,
    /// What runs the bridges to the pools this one lends to, when the coordinator was given one.
    pub(crate) federation: std::sync::OnceLock<Arc<dyn crate::FederationRunner>>,
    /// Woken when a result waits for its job's validator.
    pub(crate) comparisons: Notify,
    /// Woken when a node was banned: results it alone vouched for run again.
    pub(crate) recalls: Notify,
    /// A pipeline's stage may start, be given up or end (see `crate::stages`).
    pub(crate) stages: Notify,
    /// Join codes, code exchanges in flight, the served certificate and the owner's tokens.
    pub(crate) join: crate::join::JoinDesk,
    /// The challenges of registrations under way, and how fast each join token may register.
    pub(crate) gate: Mutex<crate::gate::Gate>,
    /// Held shared by everything that brings a blob in or relies on one being there (uploads,
    /// upload checks, submissions) and exclusively while retention deletes blobs, so a blob
    /// is never deleted between being found present and being recorded as used.
    pub(crate) blob_gate: tokio::sync::RwLock<()>,
    /// Nodes' open presence requests: one closing unanswered marks its node silent.
    pub(crate) presence: crate::presence::Presence,
    /// What each peer's bridge says it does, while one runs.
    pub(crate) bridges:
        Mutex<std::collections::BTreeMap<u64, watch::Receiver<wire::federation::BridgeState>>>,
}

/// A pool with nothing in it yet, under the owner's settings.
fn empty_pool(config: &CoordinatorConfig) -> Result<PoolState, CoordinatorError> {
    config
        .verify_policy
        .check()
        .map_err(CoordinatorError::Config)?;
    let mut state = PoolState::new(config.pool_name.clone(), config.lease_ms);
    state.set_nodes_per_join_token_max(config.nodes_per_join_token_max);
    state.set_verifying(config.trust, config.verify_policy, config.networks_apart);
    Ok(state)
}

/// Whether a change's commit waits for the disk before its caller goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Synced {
    Now,
    /// A later commit's fsync covers it (see [`Shared::apply_deferred`]).
    Later,
}

impl Shared {
    /// Takes the lead of the database on `config.lead` (a standby waits for it, telling
    /// `leader` who holds it meanwhile), then loads the pool.
    pub(crate) async fn open(
        config: CoordinatorConfig,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
        leader: &watch::Sender<Option<String>>,
    ) -> Result<Arc<Self>, CoordinatorError> {
        let mut state = empty_pool(&config)?;
        let (store, blobs) = open_stores(&config, leader).await?;
        let image = store.load().await?;
        let now_ms = clock.now_ms();
        let config_nodes_max = config.nodes_per_join_token_max;
        let known_tokens: HashSet<String> = image.tokens.iter().map(|t| t.hash.clone()).collect();
        let mut out = Outbox::new();
        state.restore(image, now_ms, &mut out);
        bootstrap(
            &config,
            &mut state,
            &known_tokens,
            now_ms,
            entropy.as_ref(),
            &mut out,
        )?;
        store.write(out.writes).await?;
        let credentials = RwLock::new(state.credentials());
        Ok(Arc::new(Self {
            config,
            core: Mutex::new(Core {
                #[cfg(debug_assertions)]
                follower: state.replica(),
                pool: state,
                parked: Parked::default(),
            }),
            credentials,
            store,
            blobs,
            clock,
            entropy,
            next_request: AtomicU64::new(1),
            module_verdicts: crate::modules::ModuleVerdicts::default(),
            readable_blobs: crate::readable::ReadableBlobs::default(),
            uploads_in_flight: crate::http::quota::UploadsInFlight::default(),
            metrics: crate::metrics::Metrics::default(),
            presets: std::sync::OnceLock::new(),
            stopping: watch::Sender::new(false),
            must_stop: Notify::new(),
            stepped_down: Mutex::new(None),
            validators: std::sync::OnceLock::new(),
            federation: std::sync::OnceLock::new(),
            comparisons: Notify::new(),
            recalls: Notify::new(),
            stages: Notify::new(),
            join: crate::join::JoinDesk::default(),
            gate: Mutex::new(crate::gate::Gate::new(config_nodes_max)),
            blob_gate: tokio::sync::RwLock::new(()),
            presence: crate::presence::Presence::default(),
            bridges: Mutex::new(std::collections::BTreeMap::new()),
        }))
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub(crate) fn entropy(&self) -> &dyn Entropy {
        self.entropy.as_ref()
    }

    pub(crate) fn next_request(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    /// Reads the pool under its lock.
    pub(crate) fn read<R>(&self, read: impl FnOnce(&PoolState, u64) -> R) -> R {
        let core = self.core.lock();
        read(&core.pool, self.now_ms())
    }

    /// Runs a command on the pool; see [`Shared::mutate`].
    pub(crate) fn apply<C: Command>(&self, command: C) -> (C::Reply, Commit) {
        self.mutate(|pool, now_ms, entropy, out| pool.apply(command, now_ms, entropy, out))
    }

    /// [`Shared::apply`] for a change its caller acknowledges only after a later commit (see
    /// `Store::enqueue_deferred`): its own commit does not wait for the disk, and the caller
    /// must `flush` the store before it answers.
    pub(crate) fn apply_deferred<C: Command>(&self, command: C) -> (C::Reply, Commit) {
        let change =
            |pool: &mut PoolState,
             _: &mut Parked,
             now_ms,
             entropy: &dyn Entropy,
             out: &mut Outbox| { pool.apply(command, now_ms, entropy, out) };
        self.mutate_with(change, Synced::Later)
    }

    /// Changes the pool under its lock, hands pending work to waiting nodes, and queues the
    /// writes the change produced (in order, still under the lock). Wait on the returned
    /// [`Commit`] before acknowledging anything a client could lose.
    pub(crate) fn mutate<R>(
        &self,
        change: impl FnOnce(&mut PoolState, u64, &dyn Entropy, &mut Outbox) -> R,
    ) -> (R, Commit) {
        self.mutate_parked(|pool, _, now_ms, entropy, out| change(pool, now_ms, entropy, out))
    }

    /// [`Shared::mutate`], for changes that also park or unpark lease requests.
    fn mutate_parked<R>(
        &self,
        change: impl FnOnce(&mut PoolState, &mut Parked, u64, &dyn Entropy, &mut Outbox) -> R,
    ) -> (R, Commit) {
        self.mutate_with(change, Synced::Now)
    }

    fn mutate_with<R>(
        &self,
        change: impl FnOnce(&mut PoolState, &mut Parked, u64, &dyn Entropy, &mut Outbox) -> R,
        synced: Synced,
    ) -> (R, Commit) {
        let mut guard = self.core.lock();
        let core = &mut *guard;
        let now_ms = self.now_ms();
        let mut out = Outbox::new();
        let result = change(
            &mut core.pool,
            &mut core.parked,
            now_ms,
            self.entropy.as_ref(),
            &mut out,
        );
        let (commit, sweeping) = self.settle(core, now_ms, out, synced);
        if sweeping {
            MutexGuard::unlock_fair(guard);
            self.sweep();
        }
        (result, commit)
    }

    /// What follows every change, still under the lock: a round of handing work to waiting
    /// nodes, the credentials index, the checks of debug builds, and the writes queued in
    /// order. Also says whether a sweep of the waiting nodes goes on.
    fn settle(
        &self,
        core: &mut Core,
        now_ms: u64,
        mut out: Outbox,
        synced: Synced,
    ) -> (Commit, bool) {
        let entropy = self.entropy.as_ref();
        if core.pool.comparisons_wanted() {
            self.comparisons.notify_one();
        }
        if core.pool.recalls_wanted() {
            self.recalls.notify_one();
        }
        if core.pool.stages_wanted() {
            self.stages.notify_one();
        }
        let sweeping = core
            .parked
            .follow(&mut core.pool, now_ms, entropy, &mut out);
        self.credentials.write().follow(&out.writes);
        self.metrics.follow(&out.writes);
        #[cfg(debug_assertions)]
        {
            core.pool.check_invariants();
            core.follower
                .follow_events(self.store.epoch(), &out.events, &core.pool);
            assert!(
                *self.credentials.read() == core.pool.credentials(),
                "the credentials index follows the pool"
            );
        }
        let commit = match synced {
            Synced::Now => self.store.enqueue(out.writes),
            Synced::Later => self.store.enqueue_deferred(out.writes),
        };
        (commit, sweeping)
    }

    /// Goes on with a sweep of the waiting nodes, one round per hold of the lock, handing the
    /// lock to waiting requests between rounds. Its grants are written behind, as every grant.
    fn sweep(&self) {
        loop {
            let mut guard = self.core.lock();
            let (_commit, sweeping) =
                self.settle(&mut guard, self.now_ms(), Outbox::new(), Synced::Now);
            if !sweeping {
                return;
            }
            MutexGuard::unlock_fair(guard);
        }
    }

    /// A node's lease request: work now, or (when it may wait and found none) parked until
    /// work comes; `None` when parked.
    pub(crate) fn lease_or_park(
        &self,
        node: NodeId,
        request: &wire::LeaseRequest,
        request_id: u64,
        sender: oneshot::Sender<LeaseResponse>,
    ) -> Option<LeaseResponse> {
        let change = lease_or_park(node, request, request_id, sender);
        // Grants are written behind: a grant lost in a crash only makes its task run again.
        self.mutate_parked(change).0
    }

    /// Attempts for `slots_free` slots of `node` from the work waiting now, never parking.
    pub(crate) fn lease_at_once(&self, node: NodeId, slots_free: u32) -> LeaseResponse {
        // Grants are written behind, as a lease request's are.
        self.apply(Lease { node, slots_free }).0
    }

    /// Takes back a parked lease request that went unanswered; false if it was answered.
    pub(crate) fn unpark(&self, node: NodeId, request_id: u64) -> bool {
        self.core.lock().parked.unpark(node, request_id)
    }

    /// Answers a node's parked request now, empty: it stopped taking work.
    pub(crate) fn unpark_node(&self, node: NodeId) {
        self.core.lock().parked.unpark_node(node);
    }

    /// Lease requests parked now, for metrics.
    pub(crate) fn waiting(&self) -> usize {
        self.core.lock().parked.waiting()
    }

    /// A receiver of the job's version, for a requester who waits on it to change.
    pub(crate) fn watch_job(
        &self,
        job: JobId,
        requester: RequesterId,
    ) -> Result<watch::Receiver<u64>, PoolError> {
        let mut core = self.core.lock();
        let version = core.pool.job_version(job, requester)?;
        Ok(core.parked.watch(job, version))
    }

    pub(crate) fn requester_by_token(&self, token_hash: &str) -> Option<RequesterId> {
        self.credentials.read().requester(token_hash)
    }

    pub(crate) fn node_by_token(&self, token_hash: &str) -> Option<NodeId> {
        self.credentials.read().node(token_hash)
    }

    pub(crate) fn is_join_token(&self, token_hash: &str) -> bool {
        self.credentials.read().is_join(token_hash)
    }

    /// Sets the metrics' gauges from the pool as it stands.
    pub(crate) fn refresh_gauges(&self) {
        let (nodes_online, tasks_pending, attempts_live) = self.read(|state, now_ms| {
            (
                state.nodes_online(now_ms),
                state.tasks_pending(),
                state.attempts_live(),
            )
        });
        let gauges = &self.metrics.gauges;
        let level = |count: usize| i64::try_from(count).unwrap_or(i64::MAX);
        gauges.nodes_online.set(level(nodes_online));
        gauges.tasks_pending.set(level(tasks_pending));
        gauges.attempts_running.set(level(attempts_live));
        gauges.lease_requests_parked.set(level(self.waiting()));
        gauges.store_writes_queued.set(level(self.store.queued()));
    }

    /// The presets the pool offers (none until they were stored at start).
    pub(crate) fn presets(&self) -> &[wire::Preset] {
        self.presets.get().map_or(&[], Vec::as_slice)
    }

    /// Whether `hash` is a preset's module: every requester may run it, and retention keeps it.
    pub(crate) fn is_preset(&self, hash: &wire::BlobHash) -> bool {
        self.presets().iter().any(|preset| preset.module == *hash)
    }

    /// Whether the store is too far behind to take more work now.
    pub(crate) fn overloaded(&self) -> bool {
        self.store.queued() > self.config.write_queue_max
    }

    /// Waits for a commit; on failure, stops the coordinator (its memory is ahead of its disk).
    pub(crate) async fn committed(&self, commit: Commit) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let result = commit.wait().await;
        crate::metrics::Metrics::observe(&self.metrics.commit_seconds, started.elapsed());
        if let Err(error) = &result {
            tracing::error!(%error, "a commit failed; the coordinator stops");
            self.must_stop.notify_one();
        }
        result
    }

    /// Stops serving the pool: its lead is gone or about to run out (see `crate::lead`).
    pub(crate) fn step_down(&self, why: String) {
        tracing::error!("{why}; this coordinator steps down and serves the pool no more");
        *self.stepped_down.lock() = Some(why);
        self.must_stop.notify_one();
    }

    fn lease_check_every(&self) -> Duration {
        Duration::from_millis((self.config.lease_ms / 4).clamp(20, 1000))
    }
}

/// The change a node's lease request makes: work now, or (when it may wait and found none) its
/// request parked until work comes, answered `None`. The simulator makes the same change.
pub(crate) fn lease_or_park(
    node: NodeId,
    request: &wire::LeaseRequest,
    request_id: u64,
    sender: oneshot::Sender<LeaseResponse>,
) -> impl FnOnce(&mut PoolState, &mut Parked, u64, &dyn Entropy, &mut Outbox) -> Option<LeaseResponse>
{
    move |pool, parked, now_ms, entropy, out| {
        let lease = Lease {
            node,
            slots_free: request.slots_free,
        };
        let response = pool.apply(lease, now_ms, entropy, out);
        if response.attempts.is_empty() && request.wait_ms > 0 && request.slots_free > 0 {
            parked.park(node, request_id, request.slots_free, sender);
            return None;
        }
        Some(response)
    }
}

/// The change a blob uploaded for an attempt makes: recorded as the attempt's, or refused and
/// then recorded read by no one, so that retention finds the bytes (a blob's record is the
/// store's, not the pool's, so it is written beside the events). The simulator makes the same
/// change.
pub(crate) fn record_upload(
    upload: RecordUpload,
) -> impl FnOnce(&mut PoolState, u64, &dyn Entropy, &mut Outbox) -> Result<(), String> {
    let (hash, size_bytes) = (upload.hash, upload.size_bytes);
    keeping_refused_blob(upload, hash, size_bytes)
}

/// Saves a node's checkpoint; a refused one's blob is recorded as an upload's is.
pub(crate) fn save_checkpoint(
    checkpoint: SaveCheckpoint,
) -> impl FnOnce(&mut PoolState, u64, &dyn Entropy, &mut Outbox) -> Result<wire::CheckpointRef, PoolError>
{
    let (hash, size_bytes) = (checkpoint.hash, checkpoint.size_bytes);
    keeping_refused_blob(checkpoint, hash, size_bytes)
}

/// Runs `command`, which takes a blob a node streamed in; if it refuses, the blob is still
/// recorded, read by no one, so that retention finds the bytes.
fn keeping_refused_blob<C, T, E>(
    command: C,
    hash: BlobHash,
    size_bytes: u64,
) -> impl FnOnce(&mut PoolState, u64, &dyn Entropy, &mut Outbox) -> Result<T, E>
where
    C: Command<Reply = Result<T, E>>,
{
    move |pool, now_ms, entropy, out| {
        let taken = pool.apply(command, now_ms, entropy, out);
        if taken.is_err() {
            out.writes.push(store::Write::InsertBlob {
                hash,
                size_bytes,
                at_ms: now_ms,
                reader: None,
            });
        }
        taken
    }
}

fn bootstrap(
    config: &CoordinatorConfig,
    state: &mut PoolState,
    known_tokens: &HashSet<String>,
    now_ms: u64,
    entropy: &dyn Entropy,
    out: &mut Outbox,
) -> Result<(), CoordinatorError> {
    for bootstrap in &config.bootstrap {
        let hash = token_hash(&bootstrap.token);
        let kind = match TokenKind::of(&bootstrap.token) {
            Some(TokenKind::Requester) => NewToken::Requester,
            Some(TokenKind::Join) => NewToken::Join,
            _ => return Err(CoordinatorError::BadToken(bootstrap.name.clone())),
        };
        if known_tokens.contains(&hash) {
            continue;
        }
        let create = CreateToken {
            hash,
            name: bootstrap.name.clone(),
            kind,
            // The owner's own tokens are made whatever the pool holds.
            live_max: usize::MAX,
        };
        state.apply(create, now_ms, entropy, out);
    }
    Ok(())
}

/// What a loop beside the pool (recall, the stage driver) waits for between passes: `notify`,
/// or `recheck` once it has passed when there is one. False once the coordinator stops.
pub(crate) async fn woken(
    notify: &Notify,
    recheck: Option<Duration>,
    stopping: &mut watch::Receiver<bool>,
) -> bool {
    let sleep_or_never = async {
        match recheck {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = notify.notified() => true,
        () = sleep_or_never => true,
        _ = stopping.changed() => false,
    }
}

/// Takes the lead of the state store and opens the blob store, checked reachable.
async fn open_stores(
    config: &CoordinatorConfig,
    leader: &watch::Sender<Option<String>>,
) -> Result<(Store, BlobStore), CoordinatorError> {
    let store = Store::open_leading(
        &config.database_url,
        config.durability,
        &config.lead,
        leader,
    )
    .await?;
    let epoch = store.epoch();
    tracing::info!(
        epoch,
        "leads the state store; an earlier leader can write no more"
    );
    let blobs = BlobStore::open(&config.blobs)?;
    // A bucket that is missing or refuses the keys fails the start, not the first upload.
    blobs.check().await?;
    tracing::info!(blobs = %config.blobs, "blob store reachable");
    Ok((store, blobs))
}

pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: crate::connections::Listener,
    tls: Option<crate::tls::TlsIdentity>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    let background = Background::start(&shared);
    let stopper = {
        let shared = Arc::clone(&shared);
        async move {
            tokio::select! {
                () = shutdown => tracing::info!("coordinator stopping"),
                () = shared.stopped_on_its_own() => {}
            }
            // Long-polls answer now instead of holding the graceful shutdown for a minute.
            shared.stopping.send_replace(true);
        }
    };
    let app = crate::http::router(Arc::clone(&shared));
    let tls = tls.as_ref().map(crate::tls::TlsIdentity::server_config);
    let served =
        crate::connections::serve(listener, tls, app, &shared.config.connections, stopper).await;
    let ended = background.stop(&shared).await;
    served.map_err(CoordinatorError::Serve)?;
    ended
}

/// The tasks that keep a leading coordinator's pool moving, beside serving its requests.
pub(crate) struct Background {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    pub(crate) fn start(shared: &Arc<Shared>) -> Background {
        let mut tasks = vec![
            tokio::spawn(expire_leases(Arc::clone(shared))),
            tokio::spawn(crate::retention::sweep(Arc::clone(shared))),
            tokio::spawn(crate::recall::recall_results(Arc::clone(shared))),
            tokio::spawn(crate::stages::drive_stages(Arc::clone(shared))),
            tokio::spawn(sample_metrics(Arc::clone(shared))),
            tokio::spawn(crate::lead::keep_lead(Arc::clone(shared))),
        ];
        if let Some(runner) = shared.validators.get() {
            let compare =
                crate::validation::compare_results(Arc::clone(shared), Arc::clone(runner));
            tasks.push(tokio::spawn(compare));
        }
        if let Some(runner) = shared.federation.get() {
            let lend = crate::federation::lend(Arc::clone(shared), Arc::clone(runner));
            tasks.push(tokio::spawn(lend));
        }
        Background { tasks }
    }

    /// Stops the tasks and commits what is queued. A coordinator that stopped because its
    /// store failed, or because it stepped down, ends with why.
    pub(crate) async fn stop(self, shared: &Shared) -> Result<(), CoordinatorError> {
        shared.stopping.send_replace(true);
        for task in self.tasks {
            task.abort();
        }
        let stored = shared.store.flush().await;
        shared.store.close().await;
        if let Some(why) = shared.stepped_down.lock().take() {
            return Err(CoordinatorError::SteppedDown(why));
        }
        Ok(stored?)
    }
}

impl Shared {
    /// Returns once the coordinator must stop although no one asked: its store failed, or it
    /// stepped down.
    pub(crate) async fn stopped_on_its_own(&self) {
        self.must_stop.notified().await;
    }
}

/// Samples the pool's figures into the metrics history every `SAMPLE_EVERY_MS`.
async fn sample_metrics(shared: Arc<Shared>) {
    let mut stopping = shared.stopping.subscribe();
    let every = Duration::from_millis(crate::metrics::SAMPLE_EVERY_MS);
    loop {
        shared.refresh_gauges();
        shared.metrics.sample(shared.now_ms());
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stopping.changed() => return,
        }
    }
}

/// Ends the attempts of nodes that stopped heartbeating, so their tasks run elsewhere.
async fn expire_leases(shared: Arc<Shared>) {
    let mut stopping = shared.stopping.subscribe();
    loop {
        tokio::select! {
            () = tokio::time::sleep(shared.lease_check_every()) => {}
            _ = stopping.changed() => return,
        }
        let (expired, commit) = shared.apply(Expire {});
        if expired > 0 {
            tracing::info!(expired, "leases ran out; their tasks are queued again");
        }
        if shared.committed(commit).await.is_err() {
            return;
        }
    }
}
