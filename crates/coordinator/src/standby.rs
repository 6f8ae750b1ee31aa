//! A coordinator that serves the pool while it leads and stands by while another does.
//!
//! One listener serves throughout; what answers on it switches. While another coordinator
//! leads the database, the standby answers `/v1/health` (role `standby`, and who leads) and
//! refuses everything else with `standby`, changing nothing, so clients given every
//! coordinator's URL move on to the leader. It serves the web app's files too, so a phone sent
//! to it is told who leads. Once its lead is taken, the pool is loaded from
//! the store and the full API answers. A standby that steps down (its lead lost or about to
//! run out, or its database gone) drops the pool it loaded and stands by again.
//!
//! Invariant: the full API answers only while this process holds the lead it loaded the pool
//! under; the switch back to standing by comes before the pool's tasks stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::routing::get;
use parking_lot::RwLock;
use tokio::sync::watch;
use tower::ServiceExt;

use wire::{ErrorCode, HealthResponse};

use crate::env::{Clock, Entropy};
use crate::http::Failure;
use crate::service::{Background, Shared};
use crate::{
    Coordinator, CoordinatorConfig, CoordinatorError, FederationRunner, PresetModule, TlsIdentity,
    ValidatorRunner,
};

/// How long a standby whose database refused to load the pool waits before it tries again.
const RETRY_AFTER_FAILED_OPEN: Duration = Duration::from_secs(1);

/// A coordinator not yet opened: it takes the lead (at once, or as a standby once it is free)
/// and serves the pool, with the validators and presets the binary gives it.
pub struct Candidate {
    config: CoordinatorConfig,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    validators: Option<Arc<dyn ValidatorRunner>>,
    federation: Option<Arc<dyn FederationRunner>>,
    presets: Vec<PresetModule>,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate").finish_non_exhaustive()
    }
}

/// What a standby answers with.
#[derive(Clone)]
struct Standing {
    pool_name: String,
    clock: Arc<dyn Clock>,
    leader: watch::Receiver<Option<String>>,
}

impl Candidate {
    pub fn new(
        config: CoordinatorConfig,
        clock: Arc<dyn Clock>,
        entropy: Arc<dyn Entropy>,
    ) -> Self {
        Self {
            config,
            clock,
            entropy,
            validators: None,
            federation: None,
            presets: Vec::new(),
        }
    }

    /// See [`Coordinator::with_validators`].
    pub fn with_validators(self, runner: Arc<dyn ValidatorRunner>) -> Self {
        Self {
            validators: Some(runner),
            ..self
        }
    }

    /// See [`Coordinator::with_federation`].
    pub fn with_federation(self, runner: Arc<dyn FederationRunner>) -> Self {
        Self {
            federation: Some(runner),
            ..self
        }
    }

    /// See [`Coordinator::with_presets`].
    pub fn with_presets(self, presets: Vec<PresetModule>) -> Self {
        Self { presets, ..self }
    }

    /// Serves `listener` (over TLS with `tls`) until `shutdown` resolves: as a standby while
    /// another coordinator leads, as the pool's coordinator while this one does. A standby
    /// that steps down stands by again; a coordinator started alone ends with why it stopped.
    pub async fn serve(
        self,
        listener: impl Into<crate::connections::Listener>,
        tls: Option<TlsIdentity>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CoordinatorError> {
        let (leader, told) = watch::channel(None);
        let standing = standing_router(Standing {
            pool_name: self.config.pool_name.clone(),
            clock: Arc::clone(&self.clock),
            leader: told,
        });
        let answering = Arc::new(RwLock::new(standing.clone()));
        let (stop, mut stopped) = watch::channel(false);
        let stop = Arc::new(stop);
        let asked = Arc::clone(&stop);
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("coordinator stopping");
            asked.send_replace(true);
        });
        let server = {
            let mut stopped = stopped.clone();
            let config = tls.as_ref().map(TlsIdentity::server_config);
            let app = switching(Arc::clone(&answering));
            let limits = self.config.connections;
            let listener = listener.into();
            tokio::spawn(async move {
                let stop = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                crate::connections::serve(listener, config, app, &limits, stop).await
            })
        };
        let seat = Seat {
            answering,
            standing,
            leader,
            fingerprint: tls.as_ref().map(TlsIdentity::fingerprint),
        };
        let leading = self.lead_in_turn(&seat, &mut stopped).await;
        if let Ok(Some(leading)) = &leading {
            // Long-polls answer now instead of holding the drain for a minute.
            leading.shared.stopping.send_replace(true);
        }
        // Asked to stop, or a coordinator started alone that stopped on its own: either way
        // the listener closes.
        stop.send_replace(true);
        let served = server.await.expect("the server task does not panic");
        // The requests in flight have finished; what they queued commits now.
        let ended = match leading? {
            Some(Leading { shared, background }) => background.stop(&shared).await,
            None => Ok(()),
        };
        served.map_err(CoordinatorError::Serve)?;
        ended
    }

    /// Leads whenever the lead can be had, until asked to stop: returns the pool it leads
    /// then, whose tasks still run while the server drains.
    async fn lead_in_turn(
        &self,
        seat: &Seat,
        stopped: &mut watch::Receiver<bool>,
    ) -> Result<Option<Leading>, CoordinatorError> {
        loop {
            let opened = tokio::select! {
                opened = self.open(seat) => opened,
                _ = stopped.wait_for(|stop| *stop) => return Ok(None),
            };
            let shared = match opened {
                Ok(shared) => shared,
                Err(error) if self.config.lead.standby => {
                    tracing::warn!(%error, "cannot load the pool; standing by again");
                    tokio::time::sleep(RETRY_AFTER_FAILED_OPEN).await;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let background = Background::start(&shared);
            seat.lead(&shared, &self.config.lead.holder);
            let asked_to_stop = tokio::select! {
                () = shared.stopped_on_its_own() => false,
                _ = stopped.wait_for(|stop| *stop) => true,
            };
            if asked_to_stop {
                return Ok(Some(Leading { shared, background }));
            }
            seat.stand_by();
            let ended = background.stop(&shared).await;
            match ended {
                Err(error) if self.config.lead.standby => {
                    tracing::warn!("{error}; standing by to lead again");
                }
                ended => return ended.map(|()| None),
            }
        }
    }

    /// Takes the lead (a standby waits for it) and loads the pool, with validators and presets.
    async fn open(&self, seat: &Seat) -> Result<Arc<Shared>, CoordinatorError> {
        let shared = Shared::open(
            self.config.clone(),
            Arc::clone(&self.clock),
            Arc::clone(&self.entropy),
            &seat.leader,
        )
        .await?;
        if let Some(fingerprint) = seat.fingerprint {
            shared.join.set_fingerprint(fingerprint);
        }
        let mut coordinator = Coordinator::from_shared(shared);
        if let Some(runner) = &self.validators {
            coordinator = coordinator.with_validators(Arc::clone(runner));
        }
        if let Some(runner) = &self.federation {
            coordinator = coordinator.with_federation(Arc::clone(runner));
        }
        Ok(coordinator
            .with_presets(self.presets.clone())
            .await?
            .into_shared())
    }
}

/// What answers on the listener, and what it is switched between.
struct Seat {
    answering: Arc<RwLock<Router>>,
    standing: Router,
    leader: watch::Sender<Option<String>>,
    fingerprint: Option<wire::Fingerprint>,
}

impl Seat {
    fn lead(&self, shared: &Arc<Shared>, holder: &str) {
        self.leader.send_replace(Some(holder.to_owned()));
        *self.answering.write() = crate::http::router(Arc::clone(shared));
        tracing::info!(
            epoch = shared.store.epoch(),
            "this coordinator leads the pool"
        );
    }

    fn stand_by(&self) {
        *self.answering.write() = self.standing.clone();
    }
}

/// A pool this coordinator leads, and the tasks that keep it moving.
struct Leading {
    shared: Arc<Shared>,
    background: Background,
}

/// A router that hands each request to whatever `answering` holds when it arrives.
fn switching(answering: Arc<RwLock<Router>>) -> Router {
    Router::new().fallback(move |request: Request| {
        let router = answering.read().clone();
        async move { router.oneshot(request).await }
    })
}

fn standing_router(standing: Standing) -> Router {
    Router::new()
        .route("/v1/health", get(standing_health))
        // A phone whose link names this coordinator gets the web app, which shows the
        // `standby` answer of its first call: who leads, and where to go.
        .route("/", get(crate::http::web::index))
        .route("/app/{*path}", get(crate::http::web::asset))
        .fallback(not_leading)
        .with_state(standing)
}

async fn standing_health(State(standing): State<Standing>) -> axum::Json<HealthResponse> {
    axum::Json(crate::http::meta::health_of(
        &standing.pool_name,
        standing.clock.now_ms(),
        wire::CoordinatorRole::Standby,
        standing.leader.borrow().clone(),
    ))
}

async fn not_leading(State(standing): State<Standing>) -> Failure {
    let leader = match standing.leader.borrow().as_deref() {
        Some(holder) if !holder.is_empty() => format!("the coordinator at {holder}"),
        _ => "another coordinator".to_owned(),
    };
    Failure::new(
        ErrorCode::Standby,
        format!(
            "this coordinator stands by while {leader} leads the pool; send requests there, or \
             give every coordinator's URL, comma-separated, and clients move on by themselves"
        ),
    )
}
