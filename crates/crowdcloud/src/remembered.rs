//! The pool this machine joined (`crowdcloud join`), kept in the data dir as `pool.json`
//! (readable by the owner only), and how the agent and requester commands find their way to it
//! with no flags: its last URL first, then discovery by its certificate's fingerprint when the
//! address changed (a new DHCP lease).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use client::{Client, ClientError};
use wire::Fingerprint;

use crate::local;

const POOL_FILE: &str = "pool.json";
/// How long finding a known pool by its fingerprint may take.
const REDISCOVERY_DEADLINE: Duration = Duration::from_secs(3);

/// A pool joined with a code: where it was, which certificate it has, and what it granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RememberedPool {
    pub(crate) pool_name: String,
    pub(crate) url: String,
    pub(crate) fingerprint: Fingerprint,
    pub(crate) join_token: String,
    #[serde(default)]
    pub(crate) api_token: Option<String>,
    pub(crate) device_name: String,
    pub(crate) joined_at_ms: u64,
    /// The pool's remote address, as it last told it (`/v1/health`): where a device that
    /// joined on the LAN finds it away from home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) remote: Option<String>,
}

pub(crate) fn pool_file(base_dir: &Path) -> PathBuf {
    base_dir.join(POOL_FILE)
}

pub(crate) fn load(base_dir: &Path) -> anyhow::Result<Option<RememberedPool>> {
    let path = pool_file(base_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map(Some).with_context(|| {
            format!(
                "{} is damaged; run `crowdcloud join` again to replace it",
                path.display()
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub(crate) fn save(base_dir: &Path, pool: &RememberedPool) -> anyhow::Result<()> {
    local::private_dir(base_dir)?;
    local::write_private(
        &pool_file(base_dir),
        serde_json::to_string_pretty(pool)?.as_bytes(),
    )
}

/// The base data dir: `--data-dir`, `CROWDCLOUD_DATA_DIR`, or the XDG data dir.
pub(crate) fn base_dir(data_dir: &Option<PathBuf>) -> PathBuf {
    data_dir
        .clone()
        .or_else(|| std::env::var_os("CROWDCLOUD_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(local::default_data_dir)
}

/// Browses the LAN off the async runtime's threads.
pub(crate) async fn browse(
    options: discovery::BrowseOptions,
) -> anyhow::Result<discovery::Browsed> {
    tokio::task::spawn_blocking(move || discovery::browse(&options))
        .await
        .context("discovery stopped")?
        .map_err(anyhow::Error::from)
}

/// A client of the remembered pool with `token`: at its last URL if it answers, else wherever
/// discovery finds the same certificate now (and `pool.json` is updated).
pub(crate) async fn reach(
    base_dir: &Path,
    pool: &mut RememberedPool,
    token: Option<String>,
) -> anyhow::Result<Client> {
    if remote::PoolAddress::is_one(&pool.url) {
        // Remembered by its key: the remote path finds it wherever it is.
        let url = crate::tunnels::reachable(&pool.url).await?;
        return Ok(Client::pinned(&url, token, pool.fingerprint)?);
    }
    let client = Client::pinned(&pool.url, token.clone(), pool.fingerprint)?;
    match client.health().await {
        Ok(health) => {
            remember_remote(base_dir, pool, health.remote)?;
            return Ok(client);
        }
        Err(error @ ClientError::WrongCertificate { .. }) => return Err(error.into()),
        Err(error) => {
            tracing::info!(%error, "the pool's last address does not answer; looking for it")
        }
    }
    if let Some(client) = through_remote_path(pool, &token).await {
        return Ok(client);
    }
    let browsed = browse(discovery::BrowseOptions {
        deadline: REDISCOVERY_DEADLINE,
        fingerprint: Some(pool.fingerprint),
        ..Default::default()
    })
    .await?;
    for found in &browsed.pools {
        for url in found.urls() {
            let client = Client::pinned(&url, token.clone(), pool.fingerprint)?;
            if client.health().await.is_ok() {
                pool.url = url;
                save(base_dir, pool)?;
                return Ok(client);
            }
        }
    }
    bail!(
        "the pool {:?} does not answer at {}{} and was not found on the LAN; is `crowdcloud up` running there? `crowdcloud doctor` shows what this machine sees",
        pool.pool_name,
        pool.url,
        if pool.remote.is_some() {
            " nor by its remote address"
        } else {
            ""
        }
    )
}

/// Keeps the pool's remote address as it last told it, when that changed.
fn remember_remote(
    base_dir: &Path,
    pool: &mut RememberedPool,
    told: Option<String>,
) -> anyhow::Result<()> {
    let told = told.filter(|address| remote::PoolAddress::is_one(address));
    if told.is_some() && told != pool.remote {
        pool.remote = told;
        save(base_dir, pool)?;
    }
    Ok(())
}

/// A client of the pool over its remote address, for a device away from the LAN it joined
/// on; `None` if it has none, or the pool does not answer there either.
async fn through_remote_path(pool: &RememberedPool, token: &Option<String>) -> Option<Client> {
    let address = pool.remote.as_ref()?;
    let url = match crate::tunnels::reachable(address).await {
        Ok(url) => url,
        Err(error) => {
            tracing::info!(error = %format!("{error:#}"), "the pool does not answer by its remote address either");
            return None;
        }
    };
    let client = Client::pinned(&url, token.clone(), pool.fingerprint).ok()?;
    client.health().await.ok()?;
    Some(client)
}

/// Where the agent goes: flags first, then the pool joined with `crowdcloud join`.
pub(crate) struct AgentTarget {
    pub(crate) url: String,
    pub(crate) join_token: String,
    pub(crate) fingerprint: Option<Fingerprint>,
}

pub(crate) async fn agent_target(
    coordinator: Option<&String>,
    join_token: Option<&String>,
    fingerprint: Option<&String>,
    agent_dir: &Path,
) -> anyhow::Result<AgentTarget> {
    let fingerprint = fingerprint
        .map(|text| text.parse::<Fingerprint>())
        .transpose()
        .context("--fingerprint")?;
    let base = base_dir(&None);
    let remembered = match load(agent_dir)? {
        Some(pool) => Some((agent_dir.to_owned(), pool)),
        None => load(&base)?.map(|pool| (base.clone(), pool)),
    };
    if let Some(url) = coordinator {
        let join_token = join_token
            .cloned()
            .or_else(|| remembered.as_ref().map(|(_, pool)| pool.join_token.clone()))
            .context("give --join-token ccj_… with --coordinator, or run `crowdcloud join`")?;
        let fingerprint = fingerprint.or_else(|| {
            remembered
                .as_ref()
                .filter(|(_, pool)| pool.url == *url)
                .map(|(_, pool)| pool.fingerprint)
        });
        let pinned = url.starts_with("https://") || remote::PoolAddress::is_one(url);
        if pinned && fingerprint.is_none() {
            bail!(
                "give --fingerprint sha256:… with an https:// coordinator (`crowdcloud up` prints it), or run `crowdcloud join` to learn it"
            );
        }
        return Ok(AgentTarget {
            url: url.clone(),
            join_token,
            fingerprint,
        });
    }
    let Some((dir, mut pool)) = remembered else {
        bail!(
            "this machine has not joined a pool: run `crowdcloud join` (or give --coordinator URL --join-token ccj_…)"
        );
    };
    if let Err(error) = reach(&dir, &mut pool, None).await {
        if matches!(
            error.downcast_ref::<ClientError>(),
            Some(ClientError::WrongCertificate { .. })
        ) {
            return Err(error);
        }
        // The pool may simply be down for now: the agent keeps trying its last address.
        tracing::warn!("{error:#}; trying its last address until it answers");
    }
    // Away from the LAN it joined on, the agent moves on to the pool's remote address.
    let url = match &pool.remote {
        Some(address) if !remote::PoolAddress::is_one(&pool.url) => {
            format!("{},{address}", pool.url)
        }
        _ => pool.url.clone(),
    };
    Ok(AgentTarget {
        url,
        join_token: join_token.cloned().unwrap_or(pool.join_token),
        fingerprint: Some(fingerprint.unwrap_or(pool.fingerprint)),
    })
}
