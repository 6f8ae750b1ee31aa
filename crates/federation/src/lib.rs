//! The bridge: this pool lends its idle slots to another pool, as one node of that pool.
//!
//! The other pool (the *home* pool of the tasks) sees an ordinary node: registered with the
//! `ccf_…` token its owner made, pinned by its certificate, leasing, heartbeating and
//! reporting through the node protocol, so a lost report, an expired lease or a vanished pool
//! is handled by the rules that already hold for nodes. This pool sees a requester: the peer's
//! account, whose jobs it places after every job of its own. Each borrowed attempt becomes one
//! job here: its blobs are copied in, the job runs on this pool's nodes under this pool's rules,
//! and its result is copied back and reported as the attempt's, naming the node that ran it.
//!
//! Bounds: at most [`wire::federation::HELD_MAX`] borrowed attempts at once, and never more
//! than this pool's idle slots (its own nodes' free slots less its own waiting tasks); a
//! borrowed task not started here within [`UNPLACED_MS`] goes back home. Only the coordinator
//! the binary runs uses this crate; it is the one place that speaks to another pool.

mod carry;
mod home;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use client::{Client, ClientError};
use coordinator::{Bridge, FederationRunner, Lendable};
use parking_lot::Mutex;
use tokio::sync::watch;
use wire::federation::BridgeState;
use wire::{AttemptId, ErrorCode, Fingerprint, JobId, JobRuntime, LeaseRequest};

use crate::home::Home;

/// A borrowed task not started on this pool's nodes within this long goes back to its home
/// pool: this pool's nodes cannot take it after all (they left, or another job took them).
pub const UNPLACED_MS: u64 = 15_000;

/// How long a lease request waits at the home pool: short, so a change in what this pool can
/// lend is followed soon.
const LEASE_WAIT_MS: u32 = 2_000;

/// Job runtimes kept at once; past it they are dropped, and a carry that misses one asks the
/// home pool for it again.
const RUNTIMES_MAX: usize = 256;

/// The longest wait between tries while the home pool cannot be reached.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The longest pause before a lease while borrowed tasks keep going back unrun (this pool
/// refuses their jobs, or cannot place them): without it, a task this pool always refuses
/// would go back and forth as fast as the two pools answer.
const GIVEN_BACK_PAUSE_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error(
        "the other pool refused this pool's federation token: its owner revoked it, or it was never valid; ask them for a new one and add the peer again"
    )]
    Revoked,
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("cannot keep a borrowed task's files: {0}")]
    Io(#[from] std::io::Error),
    #[error("the other pool sent an attempt of job {0} without the job; it is given back")]
    NoRuntime(JobId),
}

impl FederationError {
    /// An answer of the home pool that means this pool is no longer admitted there.
    fn from_home(error: ClientError) -> Self {
        match error.code() {
            Some(ErrorCode::Unauthorized | ErrorCode::Forbidden) => FederationError::Revoked,
            _ => FederationError::Client(error),
        }
    }
}

/// Runs bridges for the coordinator, reaching this pool at `local_url`.
#[derive(Debug, Clone)]
pub struct Bridges {
    local_url: String,
    local_fingerprint: Option<Fingerprint>,
}

impl Bridges {
    /// Bridges that submit borrowed tasks to this pool's coordinator at `local_url`, pinned to
    /// `local_fingerprint` when it serves TLS.
    pub fn new(local_url: String, local_fingerprint: Option<Fingerprint>) -> Self {
        Self {
            local_url,
            local_fingerprint,
        }
    }

    fn local(&self, token: String) -> Result<Client, ClientError> {
        match self.local_fingerprint {
            Some(fingerprint) => Client::pinned(&self.local_url, Some(token), fingerprint),
            None => Client::new(&self.local_url, Some(token)),
        }
    }
}

impl FederationRunner for Bridges {
    fn run(&self, bridge: Bridge) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let local = self.local(bridge.local_token.clone());
        Box::pin(async move {
            let peer = bridge.peer.clone();
            let state = bridge.state.clone();
            let ended = match local {
                Ok(local) => lend(bridge, local).await,
                Err(error) => Err(error.into()),
            };
            let reason = match ended {
                Ok(()) => "this coordinator stops".to_owned(),
                Err(error) => error.to_string(),
            };
            tracing::warn!(%peer, %reason, "stopped lending to the peer");
            state.send_replace(BridgeState::Stopped { reason });
        })
    }
}

/// What the bridge's tasks share.
struct Bridged {
    peer: String,
    /// This pool's name, as `ran_on` names it.
    pool_name: String,
    home: Home,
    local: Client,
    /// The attempts borrowed now, with what each one is doing here.
    held: Mutex<HashMap<AttemptId, Borrowed>>,
    /// Job runtimes the home pool sent, by job.
    runtimes: Mutex<HashMap<JobId, Arc<JobRuntime>>>,
    /// Where the owner reads what the bridge does.
    state: watch::Sender<BridgeState>,
    /// What all bridges of this pool hold together.
    borrowed: Arc<AtomicU32>,
    /// Attempts given back unrun since the last one reported.
    given_back_in_a_row: AtomicU32,
}

impl Bridged {
    /// Holds a granted attempt.
    fn hold(&self, attempt: AttemptId, borrowed: Borrowed) {
        if self.held.lock().insert(attempt, borrowed).is_none() {
            self.borrowed.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Lets go of an attempt that ended; its job here, if it had one.
    fn let_go(&self, attempt: AttemptId) -> Option<JobId> {
        let borrowed = self.held.lock().remove(&attempt)?;
        self.borrowed.fetch_sub(1, Ordering::SeqCst);
        self.tell_borrowed();
        borrowed.job
    }

    /// Says how many attempts the bridge holds now, while it lends (a carry that ends after
    /// the bridge stopped leaves `Stopped` as it is).
    fn tell_borrowed(&self) {
        let held = self.held.lock().len() as u32;
        self.state.send_if_modified(|state| match state {
            BridgeState::Lending { borrowed, .. } if *borrowed != held => {
                *borrowed = held;
                true
            }
            _ => false,
        });
    }
}

/// One borrowed attempt.
struct Borrowed {
    /// Its job here, once submitted.
    job: Option<JobId>,
    /// Told when the home pool no longer wants it.
    cancel: watch::Sender<bool>,
}

/// Lends idle slots to the bridge's peer until the peer revokes this pool's token.
async fn lend(bridge: Bridge, local: Client) -> Result<(), FederationError> {
    let mut lendable = bridge.lendable.clone();
    let largest = loop {
        if let Some(largest) = lendable.borrow_and_update().largest.clone() {
            break largest;
        }
        if lendable.changed().await.is_err() {
            return Ok(());
        }
    };
    let pool_name = local.health().await?.pool_name;
    let home = Home::register(&bridge, &pool_name, largest.clone()).await?;

    let bridged = Arc::new(Bridged {
        peer: bridge.peer.clone(),
        pool_name,
        home,
        local,
        held: Mutex::new(HashMap::new()),
        runtimes: Mutex::new(HashMap::new()),
        state: bridge.state.clone(),
        borrowed: Arc::clone(&bridge.borrowed),
        given_back_in_a_row: AtomicU32::new(0),
    });
    let node_id = bridged.home.node_id;
    let lending = BridgeState::Lending {
        node_id,
        borrowed: 0,
    };
    bridge.state.send_replace(lending);
    let told = home::described(&largest.0);
    let ended = tokio::select! {
        ended = heartbeat(Arc::clone(&bridged), lendable.clone(), told) => ended,
        ended = lease(Arc::clone(&bridged), lendable) => ended,
    };
    give_back_all(&bridged).await;
    ended
}

/// Asks the home pool for as many attempts as this pool can take, and carries each.
async fn lease(
    bridged: Arc<Bridged>,
    mut lendable: watch::Receiver<Lendable>,
) -> Result<(), FederationError> {
    let mut delay = Duration::from_millis(100);
    loop {
        let given_back = bridged.given_back_in_a_row.load(Ordering::SeqCst);
        if given_back > 0 {
            let pause = Duration::from_millis(100) * 2u32.saturating_pow(given_back.min(16));
            tokio::time::sleep(pause.min(GIVEN_BACK_PAUSE_MAX)).await;
        }
        let held = bridged.held.lock().len() as u32;
        let room = lendable.borrow_and_update().idle_slots;
        // What every bridge holds is taken off at once: the jobs it submits here count in
        // `lendable` only once measured again.
        let idle = room.saturating_sub(bridged.borrowed.load(Ordering::SeqCst));
        let slots_free = idle.min(wire::federation::HELD_MAX.saturating_sub(held));
        if slots_free == 0 {
            // Until this pool has room again, or a borrowed task ends.
            let _ = tokio::time::timeout(Duration::from_millis(250), lendable.changed()).await;
            continue;
        }
        let request = LeaseRequest {
            slots_free,
            wait_ms: LEASE_WAIT_MS,
        };
        let granted = match bridged.home.node.lease(&request).await {
            Ok(granted) => granted,
            Err(error) => match FederationError::from_home(error) {
                FederationError::Revoked => return Err(FederationError::Revoked),
                error => {
                    tracing::warn!(peer = %bridged.peer, %error, "cannot lease from the peer; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                    continue;
                }
            },
        };
        delay = Duration::from_millis(100);
        {
            let mut runtimes = bridged.runtimes.lock();
            if runtimes.len() + granted.jobs.len() > RUNTIMES_MAX {
                runtimes.clear();
            }
            for runtime in granted.jobs {
                runtimes.insert(runtime.job_id, Arc::new(runtime));
            }
        }
        for grant in granted.attempts {
            let (cancel, cancelled) = watch::channel(false);
            let borrowed = Borrowed { job: None, cancel };
            bridged.hold(grant.attempt_id, borrowed);
            tokio::spawn(carry::carry(Arc::clone(&bridged), grant, cancelled));
        }
        bridged.tell_borrowed();
    }
}

/// Keeps the borrowed attempts' leases at the home pool, passes on its cancellations, and tells
/// it when this pool's largest node changed (`told` is what it was told last).
async fn heartbeat(
    bridged: Arc<Bridged>,
    lendable: watch::Receiver<Lendable>,
    mut told: wire::Capabilities,
) -> Result<(), FederationError> {
    let mut every = Duration::from_millis(bridged.home.heartbeat_ms);
    loop {
        tokio::time::sleep(every).await;
        let running: Vec<AttemptId> = bridged.held.lock().keys().copied().collect();
        let largest = lendable
            .borrow()
            .largest
            .as_ref()
            .map(|(c, _)| home::described(c));
        let changed = largest.filter(|largest| *largest != told);
        let request = wire::HeartbeatRequest {
            running,
            capabilities: changed.clone(),
            ..wire::HeartbeatRequest::default()
        };
        match bridged.home.node.heartbeat(&request).await {
            Ok(answer) => {
                told = changed.unwrap_or(told);
                every = Duration::from_millis(answer.heartbeat_ms.max(100));
                let held = bridged.held.lock();
                for attempt in answer.cancel {
                    if let Some(borrowed) = held.get(&attempt) {
                        borrowed.cancel.send_replace(true);
                    }
                }
            }
            Err(error) => match FederationError::from_home(error) {
                FederationError::Revoked => return Err(FederationError::Revoked),
                error => {
                    tracing::warn!(peer = %bridged.peer, %error, "a heartbeat to the peer failed")
                }
            },
        }
    }
}

/// The bridge stops: the jobs of what it borrowed are cancelled here (the home pool runs those
/// tasks again, as for any node that left).
async fn give_back_all(bridged: &Bridged) {
    let attempts: Vec<AttemptId> = bridged.held.lock().keys().copied().collect();
    let jobs: Vec<JobId> = attempts
        .into_iter()
        .filter_map(|attempt| bridged.let_go(attempt))
        .collect();
    for job in jobs {
        if let Err(error) = bridged.local.cancel(job).await {
            tracing::warn!(%job, %error, "cannot cancel a borrowed task's job");
        }
    }
}
