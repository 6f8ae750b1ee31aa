//! `up` and `coordinator`: start a coordinator (and, for `up`, a local agent) and serve until
//! stopped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use coordinator::{
    BootstrapToken, Coordinator, CoordinatorConfig, Durability, SeededEntropy, SystemClock,
};

use crate::cli::{CoordinatorArgs, ServiceArgs, UpArgs};
use crate::commands::shutdown_signal;
use crate::commands::trust;
use crate::local;

/// A coordinator serving in this process.
pub(crate) struct Served {
    /// Where clients on this machine reach it (loopback when it listens on every address).
    pub(crate) url: String,
    pub(crate) owner_token: String,
    pub(crate) join_token: String,
    /// The certificate it serves, when it serves TLS.
    pub(crate) fingerprint: Option<wire::Fingerprint>,
    /// The address it listens on.
    pub(crate) address: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), coordinator::CoordinatorError>>,
    /// The remote path, when it was asked for (`--remote`): held so it lives as long as the
    /// coordinator it hands streams to.
    _gateway: Option<remote::Gateway>,
    /// The pool's remote address, with the gateway.
    pub(crate) remote_address: Option<remote::PoolAddress>,
    /// How the coordinator ended, once it ended on its own.
    ended: Option<Result<Result<(), coordinator::CoordinatorError>, tokio::task::JoinError>>,
}

impl Served {
    /// Stops taking requests, finishes those in flight and commits everything.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let ended = match self.ended.take() {
            Some(ended) => ended,
            None => self.task.await,
        };
        ended.context("the coordinator task failed")??;
        Ok(())
    }

    /// Returns once the coordinator stopped on its own (its store failed, or another
    /// coordinator took its database over), so the process exits instead of idling.
    async fn ended(&mut self) {
        let ended = (&mut self.task).await;
        self.ended = Some(ended);
    }

    /// Waits for the owner's signal to stop, or for the coordinator to stop on its own.
    pub(crate) async fn until_stopped(&mut self) {
        tokio::select! {
            () = shutdown_signal() => {}
            () = self.ended() => tracing::error!("the coordinator stopped; so does this process"),
        }
    }

    /// A client for the owner on this machine: pinned to the certificate when TLS is on.
    pub(crate) fn owner_client(&self) -> anyhow::Result<client::Client> {
        let token = Some(self.owner_token.clone());
        Ok(match self.fingerprint {
            Some(fingerprint) => client::Client::pinned(&self.url, token, fingerprint)?,
            None => client::Client::new(&self.url, token)?,
        })
    }
}

/// Where a service for this machine only listens.
const LOOPBACK_LISTEN: &str = "127.0.0.1:7878";

pub(crate) struct ServiceOptions {
    pub(crate) data_dir: PathBuf,
    pub(crate) listen: String,
    pub(crate) pool_name: String,
    pub(crate) lease_ms: u64,
    pub(crate) durability: Durability,
    pub(crate) database_url: Option<String>,
    pub(crate) blobs: Option<coordinator::BlobLocation>,
    pub(crate) keep_results_ms: u64,
    pub(crate) nodes_per_join_token_max: u32,
    pub(crate) silent_node_purge_ms: u64,
    pub(crate) bounds: ServiceBounds,
    pub(crate) connections: coordinator::ConnectionLimits,
    pub(crate) verifying: Verifying,
    pub(crate) lead: Lead,
}

/// How this coordinator leads its database: alone (taking the lead at once) or as one of
/// several that stand by for each other.
#[derive(Debug, Clone)]
pub(crate) struct Lead {
    pub(crate) standby: bool,
    pub(crate) term_ms: u64,
    /// What it is named by while it leads, when not the URL it serves at.
    pub(crate) advertise_url: Option<String>,
}

impl Lead {
    pub(crate) const ALONE: Lead = Lead {
        standby: false,
        term_ms: coordinator::LEAD_TERM_MS_DEFAULT,
        advertise_url: None,
    };

    fn of(args: &CoordinatorArgs) -> anyhow::Result<Lead> {
        let term_ms = jobspec::parse_duration_ms(&args.lead_term, "--lead-term")
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        if term_ms < coordinator::LEAD_TERM_MS_MIN {
            bail!(
                "--lead-term {:?} is under {} ms; give a duration such as 3s",
                args.lead_term,
                coordinator::LEAD_TERM_MS_MIN
            );
        }
        if args.standby && args.database_url.is_none() {
            bail!(
                "--standby needs the database the coordinators share: give --database-url postgres://…"
            );
        }
        if args.standby && args.service.blobs.is_none() {
            bail!(
                "--standby needs the blobs the coordinators share: give --blobs s3://BUCKET/PREFIX (or a directory every coordinator mounts)"
            );
        }
        Ok(Lead {
            standby: args.standby,
            term_ms,
            advertise_url: args.advertise_url.clone(),
        })
    }

    fn terms(&self, url: &str) -> coordinator::LeadTerms {
        coordinator::LeadTerms {
            holder: self.advertise_url.clone().unwrap_or_else(|| url.to_owned()),
            term_ms: self.term_ms,
            standby: self.standby,
        }
    }
}

/// How the pool checks results.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Verifying {
    pub(crate) trust: wire::Trust,
    pub(crate) policy: verify::Policy,
    pub(crate) networks_apart: bool,
}

impl Verifying {
    pub(crate) const FAMILY: Verifying = Verifying {
        trust: wire::Trust::Family,
        policy: verify::Policy::PUBLIC,
        networks_apart: true,
    };

    fn of(args: &ServiceArgs) -> anyhow::Result<Verifying> {
        let trust = match args.trust.as_str() {
            "family" => wire::Trust::Family,
            "public" => wire::Trust::Public,
            other => bail!("--trust {other:?}: give `family` or `public`"),
        };
        if !(0.0..=100.0).contains(&args.audit_percent) {
            bail!(
                "--audit-percent {}: give a share between 0 and 100",
                args.audit_percent
            );
        }
        let policy = verify::Policy {
            probation_results: args.probation_results,
            audit_per_million: (args.audit_percent * 10_000.0).round() as u32,
            ..verify::Policy::PUBLIC
        };
        policy
            .check()
            .map_err(|problem| anyhow::anyhow!("{problem}"))?;
        Ok(Verifying {
            trust,
            policy,
            networks_apart: !args.one_network,
        })
    }
}

fn durability(text: &str) -> anyhow::Result<Durability> {
    match text {
        "full" => Ok(Durability::Full),
        "process" => Ok(Durability::Process),
        other => bail!("--durability {other:?}: give `full` or `process`"),
    }
}

/// Where a service listens when it is not told: `up` serves the family on the LAN, a bare
/// `coordinator` this machine until its owner says otherwise.
#[derive(Debug, Clone, Copy)]
enum DefaultListen {
    Lan,
    Loopback,
}

fn options(
    args: &ServiceArgs,
    database_url: Option<String>,
    lead: Lead,
    default_listen: DefaultListen,
) -> anyhow::Result<ServiceOptions> {
    let listen = match (&args.listen, args.lan, default_listen) {
        (_, true, _) => trust::LAN_LISTEN.to_owned(),
        (Some(listen), false, _) => listen.clone(),
        (None, false, DefaultListen::Lan) => trust::LAN_LISTEN.to_owned(),
        (None, false, DefaultListen::Loopback) => LOOPBACK_LISTEN.to_owned(),
    };
    Ok(ServiceOptions {
        data_dir: local::data_dir_or_default(&args.data_dir),
        listen,
        pool_name: args.pool_name.clone(),
        lease_ms: args.lease_ms,
        durability: durability(&args.durability)?,
        database_url,
        blobs: args.blobs.clone(),
        keep_results_ms: keep_results_ms(&args.keep_results)?,
        nodes_per_join_token_max: nodes_per_join_token(args.nodes_per_join_token)?,
        silent_node_purge_ms: silent_node_purge_ms(&args.purge_silent_nodes)?,
        bounds: ServiceBounds::of(args)?,
        connections: connection_limits(args),
        verifying: Verifying::of(args)?,
        lead,
    })
}

fn connection_limits(args: &ServiceArgs) -> coordinator::ConnectionLimits {
    let default = coordinator::ConnectionLimits::default();
    coordinator::ConnectionLimits {
        connections_max: args.connections_max,
        header_timeout_ms: args.header_timeout_ms.unwrap_or(default.header_timeout_ms),
        idle_timeout_ms: args.idle_timeout_ms.unwrap_or(default.idle_timeout_ms),
    }
}

fn nodes_per_join_token(nodes: u32) -> anyhow::Result<u32> {
    if nodes == 0 {
        bail!("--nodes-per-join-token 0 would let no node join; give at least 1");
    }
    Ok(nodes)
}

fn silent_node_purge_ms(text: &str) -> anyhow::Result<u64> {
    let ms = jobspec::parse_duration_ms(text, "--purge-silent-nodes")
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    // A node is silent for a lease before its work moves on; purging sooner forgets nodes
    // that merely restart.
    if ms < 3_600_000 {
        bail!("--purge-silent-nodes {text:?} is under an hour; give a duration such as 7d or 12h");
    }
    Ok(ms)
}

fn keep_results_ms(text: &str) -> anyhow::Result<u64> {
    let ms = jobspec::parse_duration_ms(text, "--keep-results")
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    if ms < 1_000 {
        bail!("--keep-results {text:?} is under a second; give a duration such as 30d or 12h");
    }
    Ok(ms)
}

/// Opens the coordinator on `options.data_dir` and serves it in the background: plain HTTP on
/// loopback, TLS with the data dir's self-signed certificate anywhere else.
pub(crate) async fn serve(options: &ServiceOptions) -> anyhow::Result<Served> {
    serve_with(options, &trust::TlsOptions::default(), None).await
}

/// Like [`serve`], with the owner's TLS choices.
pub(crate) async fn serve_with(
    options: &ServiceOptions,
    tls: &trust::TlsOptions,
    remote: Option<&RemoteStart>,
) -> anyhow::Result<Served> {
    let (owner_token, join_token) = local::tokens(&options.data_dir)?;
    let mut config = coordinator_config(options, &owner_token, &join_token);
    let listener = tokio::net::TcpListener::bind(&options.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another coordinator running? choose another with --listen",
                options.listen
            )
        })?;
    let address = listener.local_addr()?;
    let (handed, handed_in) = mpsc::channel(HANDED_WAITING_MAX);
    let listener = coordinator::Listener::with_handed(listener, handed_in);
    let identity = tls.identity_for(&address, &options.data_dir)?;
    let fingerprint = identity.as_ref().map(coordinator::TlsIdentity::fingerprint);
    let url = trust::local_url(&address, fingerprint.is_some());
    config.lead = options.lead.terms(&url);
    let (gateway, remote_address) = match remote {
        Some(remote) => {
            let (gateway, address) =
                open_remote(remote, fingerprint, &handed, &options.data_dir).await?;
            config.remote_address = Some(address.to_string());
            (Some(gateway), Some(address))
        }
        None => (None, None),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    // Borrowed tasks are submitted to this coordinator through its own listener.
    let bridges = Arc::new(federation::Bridges::new(url.clone(), fingerprint));
    let task = if options.lead.standby {
        // It loads the pool only once it leads; until then it answers as a standby.
        let candidate = candidate(config, &options.data_dir)?.with_federation(bridges);
        tokio::spawn(candidate.serve(listener, identity, stopped))
    } else {
        let coordinator = open_coordinator(config, &options.data_dir)
            .await?
            .with_federation(bridges);
        match identity {
            Some(identity) => tokio::spawn(coordinator.serve_tls(listener, identity, stopped)),
            None => tokio::spawn(coordinator.serve(listener, stopped)),
        }
    };
    Ok(Served {
        url,
        owner_token,
        join_token,
        fingerprint,
        address,
        stop: Some(stop),
        task,
        _gateway: gateway,
        remote_address,
        ended: None,
    })
}

/// The coordinator `options` describe, accepting the data dir's owner and join tokens.
fn coordinator_config(
    options: &ServiceOptions,
    owner_token: &str,
    join_token: &str,
) -> CoordinatorConfig {
    let mut config = CoordinatorConfig::in_dir(&options.data_dir, &options.pool_name);
    config.lease_ms = options.lease_ms;
    config.durability = options.durability;
    config.keep_results_ms = options.keep_results_ms;
    config.nodes_per_join_token_max = options.nodes_per_join_token_max;
    config.silent_node_purge_ms = options.silent_node_purge_ms;
    options.bounds.apply_to(&mut config);
    config.connections = options.connections;
    config.trust = options.verifying.trust;
    config.verify_policy = options.verifying.policy;
    config.networks_apart = options.verifying.networks_apart;
    if let Some(url) = &options.database_url {
        config.database_url = url.clone();
    }
    if let Some(blobs) = &options.blobs {
        config.blobs = blobs.clone();
    }
    config.bootstrap = vec![
        BootstrapToken {
            token: owner_token.to_owned(),
            name: "owner".to_owned(),
        },
        BootstrapToken {
            token: join_token.to_owned(),
            name: "join".to_owned(),
        },
    ];
    config
}

/// Opens the coordinator with what the binary gives it: validators run in the sandbox, and
/// the presets.
async fn open_coordinator(
    config: CoordinatorConfig,
    data_dir: &Path,
) -> anyhow::Result<Coordinator> {
    Ok(Coordinator::open(
        config,
        Arc::new(SystemClock),
        Arc::new(SeededEntropy::from_os()),
    )
    .await?
    .with_validators(Arc::new(crate::validators::SandboxValidators::new()?))
    .with_presets(presets(data_dir))
    .await?)
}

/// A coordinator that stands by until it leads, with what the binary gives it.
fn candidate(config: CoordinatorConfig, data_dir: &Path) -> anyhow::Result<coordinator::Candidate> {
    Ok(coordinator::Candidate::new(
        config,
        Arc::new(SystemClock),
        Arc::new(SeededEntropy::from_os()),
    )
    .with_validators(Arc::new(crate::validators::SandboxValidators::new()?))
    .with_presets(presets(data_dir)))
}

/// What every requester may run without a module of its own: the demo's renderer, which the
/// web app submits tile by tile and stitches, and the Python runtime when this machine has it
/// installed, under which the web app runs a script picked on a phone.
fn presets(data_dir: &Path) -> Vec<coordinator::PresetModule> {
    let mut presets = vec![coordinator::PresetModule {
        name: "render".to_owned(),
        title: "Ray-traced scene".to_owned(),
        description: "Renders the demo scene, one tile per task: args --width W --height H \
            --x0 X --y0 Y --w TW --h TH --samples S; each task writes /output/tile.ppm"
            .to_owned(),
        module: bytes::Bytes::from_static(guests::RENDER),
    }];
    let runtime = &super::runtimes::PYTHON;
    let installed = super::runtimes::installed(&Some(data_dir.to_path_buf()), runtime);
    match installed.and_then(|path| Ok(std::fs::read(path)?)) {
        Ok(module) => presets.push(coordinator::PresetModule {
            name: "python".to_owned(),
            title: "Python 3.12".to_owned(),
            description: "CPython for WASI: a job names it as its module, mounts the script at \
                /job and gives /job/NAME as every task's first argument"
                .to_owned(),
            module: module.into(),
        }),
        Err(error) => tracing::info!(%error, "no Python preset"),
    }
    presets
}

fn print_banner(served: &Served, pool_name: &str, data_dir: &Path) {
    println!("crowdcloud pool {pool_name:?} is up at {}", served.url);
    println!(
        "  web app:     {}/#token={}",
        served.url, served.owner_token
    );
    match served.fingerprint {
        Some(fingerprint) => {
            println!("  certificate: {fingerprint}");
            println!("  join a node: `crowdcloud join` on the new device, with the code below");
        }
        None => println!(
            "  join a node: crowdcloud agent --coordinator {} --join-token {}",
            served.url, served.join_token
        ),
    }
    println!("  state:       {}", data_dir.display());
}

/// Prints a sign-in link and QR code for a phone on the LAN; a failure is a warning, as the
/// pool serves on without it.
async fn show_phone_link(served: &Served, interfaces: &[String]) {
    let Some(url) = phone_url(served, interfaces) else {
        eprintln!(
            "warning: no LAN address to give a phone; open the web app at https://THIS-MACHINE:{}/ \
             with a link from `crowdcloud join-code --web`",
            served.address.port()
        );
        return;
    };
    let name = super::web::device_token_name();
    let made = match served.owner_client() {
        Ok(owner) => super::web::sign_in_link(&owner, &url, &name).await,
        Err(error) => Err(error),
    };
    match made {
        Ok(link) => super::web::print_sign_in(&link, &name, served.fingerprint),
        Err(error) => eprintln!(
            "warning: no sign-in link for a phone ({error:#}); `crowdcloud join-code --web` makes one"
        ),
    }
}

/// The address a phone on the LAN reaches the pool at: the one it serves on, or, when it
/// serves on every address, the first IPv4 address of an interface discovery would advertise on.
fn phone_url(served: &Served, interfaces: &[String]) -> Option<String> {
    if !served.address.ip().is_unspecified() {
        return Some(served.url.clone());
    }
    let choices = discovery::interfaces(interfaces).ok()?;
    let ip = choices
        .iter()
        .filter(|choice| choice.used)
        .flat_map(|choice| &choice.addresses)
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())?;
    let address = std::net::SocketAddr::new(*ip, served.address.port());
    Some(trust::local_url(&address, served.fingerprint.is_some()))
}

/// Connections handed in and not yet taken by the coordinator, which takes them as it has room.
const HANDED_WAITING_MAX: usize = 64;

/// Hands each stream of the remote path to the coordinator, as the address it stands for.
async fn hand_to_coordinator(
    mut arrivals: mpsc::Receiver<remote::Arrival>,
    coordinator: mpsc::Sender<coordinator::Handed>,
) {
    while let Some(arrival) = arrivals.recv().await {
        let handed = coordinator::Handed {
            io: Box::new(arrival.stream),
            peer: arrival.origin,
        };
        if coordinator.send(handed).await.is_err() {
            return; // The coordinator stopped.
        }
    }
}

/// The remote path to serve beside the coordinator (`--remote`).
pub(crate) struct RemoteStart {
    port: u16,
    relay: Option<remote::RelayLink>,
}

impl RemoteStart {
    /// What `args` ask for, if they ask for the remote path.
    fn of(args: &ServiceArgs) -> anyhow::Result<Option<RemoteStart>> {
        if !args.remote {
            return Ok(None);
        }
        let relay = match &args.relay {
            Some(url) => Some(remote::RelayLink {
                url: url.parse().map_err(|_| {
                    anyhow::anyhow!("--relay {url:?}: give the relay as http(s)://HOST:PORT")
                })?,
                fingerprint: match &args.relay_fingerprint {
                    Some(text) => Some(text.parse().map_err(|_| {
                        anyhow::anyhow!(
                            "--relay-fingerprint {text:?}: give it as `crowdcloud relay` prints it, sha256:…"
                        )
                    })?),
                    None => None,
                },
            }),
            None => None,
        };
        Ok(Some(RemoteStart {
            port: args.remote_port,
            relay,
        }))
    }
}

/// Opens the remote path (`--remote`), handing its streams to the coordinator by `handed`:
/// the gateway and the pool's remote address.
async fn open_remote(
    remote: &RemoteStart,
    fingerprint: Option<wire::Fingerprint>,
    handed: &mpsc::Sender<coordinator::Handed>,
    data_dir: &Path,
) -> anyhow::Result<(remote::Gateway, remote::PoolAddress)> {
    if fingerprint.is_none() {
        bail!(
            "--remote needs TLS: devices away from home pin the pool's certificate; serve the LAN (the default of `up`) or add --tls"
        );
    }
    let bind = std::net::SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), remote.port);
    let (deliver, arrivals) = mpsc::channel(HANDED_WAITING_MAX);
    tokio::spawn(hand_to_coordinator(arrivals, handed.clone()));
    let key_file = data_dir.join("remote.key");
    let gateway = remote::Gateway::start(&key_file, bind, remote.relay.clone(), deliver).await?;
    let address = gateway.address().await;
    Ok((gateway, address))
}

/// Serves a coordinator as `up` and `coordinator` do: tells local commands where it is,
/// prints the banner, and advertises it on the LAN when it serves there.
async fn start(
    args: &ServiceArgs,
    database_url: Option<String>,
    lead: Lead,
    default_listen: DefaultListen,
) -> anyhow::Result<(ServiceOptions, Served, Option<discovery::Advertiser>)> {
    let options = options(args, database_url, lead, default_listen)?;
    let tls = trust::TlsOptions::from_args(args);
    let remote = RemoteStart::of(args)?;
    let served = serve_with(&options, &tls, remote.as_ref()).await?;
    let remote_address = served.remote_address.clone();
    local::announce_pinned(
        &options.data_dir,
        &served.url,
        &options.pool_name,
        served.fingerprint,
        remote_address.as_ref().map(ToString::to_string),
    )?;
    print_banner(&served, &options.pool_name, &options.data_dir);
    if let Some(address) = remote_address {
        println!("  remote:      {address}");
        if address.relay.is_none() {
            println!(
                "               no relay: devices behind strict NATs cannot connect; add --relay (`crowdcloud relay` runs one)"
            );
        }
        println!("               away from home: --coordinator {address} --fingerprint, as above");
    }
    if options.lead.standby {
        // Join codes and sign-in links are made by the leader, whichever that is.
        println!(
            "  standby:     serves the pool whenever it leads the database; `crowdcloud doctor` says who leads"
        );
        println!("Stop with Ctrl-C.");
        return Ok((options, served, None));
    }
    if !served.address.ip().is_loopback() {
        show_phone_link(&served, &args.interfaces).await;
    }
    let advert = trust::advertise_and_show_code(&served, args, &options.pool_name).await;
    println!("Stop with Ctrl-C.");
    Ok((options, served, advert))
}

pub(crate) async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let default_listen = if args.local {
        DefaultListen::Loopback
    } else {
        DefaultListen::Lan
    };
    let (options, mut served, _advert) =
        start(&args.service, None, Lead::ALONE, default_listen).await?;
    let default_slots = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let slots = args.slots.unwrap_or(default_slots);
    // The machine that serves the pool is given over to it: no owner conditions.
    let mut overrides = agent::PolicyOverrides::default();
    overrides.dedicated();
    overrides.set("slots", i64::from(slots.max(1)));
    let policy = agent::OwnerPolicy::load(None, &overrides)?;
    let (stop_agent, agent_stopped) = oneshot::channel::<()>();
    let local_agent = (slots > 0).then(|| {
        let mut config = agent::AgentConfig::new(
            &served.url,
            &served.join_token,
            options.data_dir.join("local-agent"),
        );
        config.slots = slots;
        config.sandbox.compiler = super::agent::child_compiler(std::time::Duration::from_secs(600));
        config.coordinator_fingerprint = served.fingerprint;
        config.policy = policy;
        config.policy_overrides = overrides;
        tokio::spawn(agent::run(config, async move {
            let _ = agent_stopped.await;
        }))
    });
    served.until_stopped().await;
    let _ = stop_agent.send(());
    if let Some(local_agent) = local_agent {
        match local_agent.await {
            Ok(Ok(summary)) => tracing::info!(
                reported = summary.attempts_reported,
                released = summary.attempts_released,
                "local agent stopped"
            ),
            Ok(Err(error)) => tracing::error!(%error, "the local agent failed"),
            Err(error) => tracing::error!(%error, "the local agent panicked"),
        }
    }
    local::withdraw(&options.data_dir);
    served.stop().await?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn coordinator(args: CoordinatorArgs) -> anyhow::Result<ExitCode> {
    let (options, mut served, _advert) = start(
        &args.service,
        args.database_url.clone(),
        Lead::of(&args)?,
        DefaultListen::Loopback,
    )
    .await?;
    served.until_stopped().await;
    local::withdraw(&options.data_dir);
    served.stop().await?;
    Ok(ExitCode::SUCCESS)
}

/// What the coordinator lets requesters hold: memory for unfinished jobs, disk for uploads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServiceBounds {
    unfinished_bytes_max: u64,
    unfinished_bytes_per_requester_max: u64,
    upload_quota_bytes: u64,
}

impl Default for ServiceBounds {
    fn default() -> Self {
        Self {
            unfinished_bytes_max: coordinator::UNFINISHED_BYTES_MAX_DEFAULT,
            unfinished_bytes_per_requester_max:
                coordinator::UNFINISHED_BYTES_PER_REQUESTER_MAX_DEFAULT,
            upload_quota_bytes: coordinator::UPLOAD_QUOTA_BYTES_DEFAULT,
        }
    }
}

impl ServiceBounds {
    fn of(args: &ServiceArgs) -> anyhow::Result<Self> {
        let size = |text: &str, flag: &str| {
            jobspec::parse_bytes(text, flag).map_err(|error| anyhow::anyhow!("{error}"))
        };
        Ok(Self {
            unfinished_bytes_max: size(&args.unfinished_bytes_max, "--unfinished-bytes-max")?,
            unfinished_bytes_per_requester_max: size(
                &args.unfinished_bytes_per_requester,
                "--unfinished-bytes-per-requester",
            )?,
            upload_quota_bytes: size(&args.upload_quota, "--upload-quota")?,
        })
    }

    fn apply_to(self, config: &mut CoordinatorConfig) {
        config.unfinished_bytes_max = self.unfinished_bytes_max;
        config.unfinished_bytes_per_requester_max = self.unfinished_bytes_per_requester_max;
        config.upload_quota_bytes = self.upload_quota_bytes;
    }
}
