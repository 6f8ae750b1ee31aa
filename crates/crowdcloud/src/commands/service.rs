//! `up` and `coordinator`: start a coordinator (and, for `up`, a local agent) and serve until
//! stopped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use coordinator::{
    BootstrapToken, Coordinator, CoordinatorConfig, Durability, SeededEntropy, SystemClock,
};

use crate::cli::{CoordinatorArgs, ServiceArgs, UpArgs};
use crate::commands::shutdown_signal;
use crate::local;

/// A coordinator serving in this process.
pub(crate) struct Served {
    pub(crate) url: String,
    pub(crate) owner_token: String,
    pub(crate) join_token: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), coordinator::CoordinatorError>>,
}

impl Served {
    /// Stops taking requests, finishes those in flight and commits everything.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.context("the coordinator task failed")??;
        Ok(())
    }
}

pub(crate) struct ServiceOptions {
    pub(crate) data_dir: PathBuf,
    pub(crate) listen: String,
    pub(crate) pool_name: String,
    pub(crate) lease_ms: u64,
    pub(crate) durability: Durability,
    pub(crate) database_url: Option<String>,
}

fn durability(text: &str) -> anyhow::Result<Durability> {
    match text {
        "full" => Ok(Durability::Full),
        "process" => Ok(Durability::Process),
        other => bail!("--durability {other:?}: give `full` or `process`"),
    }
}

fn options(args: &ServiceArgs, database_url: Option<String>) -> anyhow::Result<ServiceOptions> {
    Ok(ServiceOptions {
        data_dir: local::data_dir_or_default(&args.data_dir),
        listen: args.listen.clone(),
        pool_name: args.pool_name.clone(),
        lease_ms: args.lease_ms,
        durability: durability(&args.durability)?,
        database_url,
    })
}

/// Opens the coordinator on `options.data_dir` and serves it in the background.
pub(crate) async fn serve(options: &ServiceOptions) -> anyhow::Result<Served> {
    let (owner_token, join_token) = local::tokens(&options.data_dir)?;
    let mut config = CoordinatorConfig::in_dir(&options.data_dir, &options.pool_name);
    config.lease_ms = options.lease_ms;
    config.durability = options.durability;
    if let Some(url) = &options.database_url {
        config.database_url = url.clone();
    }
    config.bootstrap = vec![
        BootstrapToken {
            token: owner_token.clone(),
            name: "owner".to_owned(),
        },
        BootstrapToken {
            token: join_token.clone(),
            name: "join".to_owned(),
        },
    ];
    let coordinator = Coordinator::open(
        config,
        Arc::new(SystemClock),
        Arc::new(SeededEntropy::from_os()),
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(&options.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another coordinator running? choose another with --listen",
                options.listen
            )
        })?;
    let address = listener.local_addr()?;
    let url = format!("http://{address}");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(coordinator.serve(listener, async move {
        let _ = stopped.await;
    }));
    Ok(Served {
        url,
        owner_token,
        join_token,
        stop: Some(stop),
        task,
    })
}

fn print_banner(served: &Served, pool_name: &str, data_dir: &Path) {
    println!("crowdcloud pool {pool_name:?} is up at {}", served.url);
    println!(
        "  dashboard:   {}/#token={}",
        served.url, served.owner_token
    );
    println!(
        "  join a node: crowdcloud agent --coordinator {} --join-token {}",
        served.url, served.join_token
    );
    println!("  state:       {}", data_dir.display());
    println!("Stop with Ctrl-C.");
}

pub(crate) async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let options = options(&args.service, None)?;
    let served = serve(&options).await?;
    local::announce(&options.data_dir, &served.url, &options.pool_name)?;
    print_banner(&served, &options.pool_name, &options.data_dir);
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
        config.policy = policy;
        config.policy_overrides = overrides;
        tokio::spawn(agent::run(config, async move {
            let _ = agent_stopped.await;
        }))
    });
    shutdown_signal().await;
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
    let options = options(&args.service, args.database_url.clone())?;
    let served = serve(&options).await?;
    local::announce(&options.data_dir, &served.url, &options.pool_name)?;
    print_banner(&served, &options.pool_name, &options.data_dir);
    shutdown_signal().await;
    local::withdraw(&options.data_dir);
    served.stop().await?;
    Ok(ExitCode::SUCCESS)
}
