//! The machine-local side of a pool: the data dir, the tokens `up` makes on first start, and the
//! file through which requester commands on the same machine find a running `up`.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use client::Client;
use wire::auth::TokenKind;

use crate::cli::Connection;

const OWNER_TOKEN_FILE: &str = "owner.token";
const JOIN_TOKEN_FILE: &str = "join.token";
const DISCOVERY_FILE: &str = "coordinator.json";

/// `$XDG_DATA_HOME/crowdcloud`, or `~/.local/share/crowdcloud`.
pub(crate) fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from(".local/share"))
        .join("crowdcloud")
}

pub(crate) fn data_dir_or_default(data_dir: &Option<PathBuf>) -> PathBuf {
    data_dir.clone().unwrap_or_else(default_data_dir)
}

/// The owner's API token and the pool's join token, made on the first start and kept (readable
/// by the owner only) in the data dir.
pub(crate) fn tokens(data_dir: &Path) -> anyhow::Result<(String, String)> {
    private_dir(data_dir)?;
    Ok((
        token_file(&data_dir.join(OWNER_TOKEN_FILE), TokenKind::Requester)?,
        token_file(&data_dir.join(JOIN_TOKEN_FILE), TokenKind::Join)?,
    ))
}

fn token_file(path: &Path, kind: TokenKind) -> anyhow::Result<String> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_owned();
            if TokenKind::of(&token) != Some(kind) {
                bail!(
                    "{} does not hold a {} token; remove it to make a new one",
                    path.display(),
                    kind.prefix()
                );
            }
            Ok(token)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let token = kind.token_from_secret(rand::rng().random());
            write_private(path, token.as_bytes())?;
            Ok(token)
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Makes `dir` (and its parents) if needed and leaves it readable by the owner only, also when
/// an older version made it open to everyone: it holds every job's spec, env and data.
pub(crate) fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).with_context(|| {
        format!(
            "cannot make the data dir {} private; check that you own it",
            dir.display()
        )
    })
}

/// Everything a long-running service (`up`, `coordinator`, `agent`) makes is for its owner
/// alone, whatever umask it was started with: the SQLite files, the blobs and the agent's cache
/// are created by libraries that take the process's umask.
pub(crate) fn keep_files_private() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // The mode above applies only to a new file.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Where a local coordinator serves, written by `up` and `coordinator` while they run.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Discovery {
    pub(crate) url: String,
    pub(crate) pool_name: String,
    pub(crate) pid: u32,
    /// The certificate to pin when `url` is `https://`.
    #[serde(default)]
    pub(crate) fingerprint: Option<wire::Fingerprint>,
    /// The pool's remote address (`iroh:…`) while `--remote` serves it, for devices away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) remote: Option<String>,
}

/// Writes where the local coordinator serves and, for TLS, the certificate to pin and the
/// remote address, if it has one.
pub(crate) fn announce_pinned(
    data_dir: &Path,
    url: &str,
    pool_name: &str,
    fingerprint: Option<wire::Fingerprint>,
    remote: Option<String>,
) -> anyhow::Result<()> {
    let discovery = Discovery {
        url: url.to_owned(),
        pool_name: pool_name.to_owned(),
        pid: std::process::id(),
        fingerprint,
        remote,
    };
    write_private(
        &data_dir.join(DISCOVERY_FILE),
        serde_json::to_string_pretty(&discovery)?.as_bytes(),
    )
}

pub(crate) fn withdraw(data_dir: &Path) {
    let _ = fs::remove_file(data_dir.join(DISCOVERY_FILE));
}

/// A client for requester commands: from `--coordinator`/`--token`, from the local `up`, or
/// from the pool this machine joined (when its owner granted an API token).
pub(crate) async fn connect(connection: &Connection) -> anyhow::Result<Client> {
    connect_as(connection, TokenKind::Requester).await
}

/// A client that speaks with a token of `kind`: a requester's API token, or the join token of
/// an owner of nodes (what the nodes it lends earned). The token is `--token`, or the local
/// `up`'s, or the one of the pool this machine joined.
pub(crate) async fn connect_as(connection: &Connection, kind: TokenKind) -> anyhow::Result<Client> {
    if let Some(token) = &connection.token
        && TokenKind::of(token) != Some(kind)
    {
        bail!("--token takes a {} token here", kind.prefix());
    }
    let data_dir = data_dir_or_default(&connection.data_dir);
    let local_up = data_dir.join(DISCOVERY_FILE);
    if connection.coordinator.is_none() && !local_up.exists() {
        return connect_remembered(connection, &data_dir, kind).await;
    }
    let (url, pinned) = match &connection.coordinator {
        Some(url) => (crate::tunnels::reachable(url).await?, None),
        None => {
            let path = local_up;
            let text = fs::read_to_string(&path).map_err(|_| {
                anyhow::anyhow!(
                    "no coordinator given and none running here; start one with `crowdcloud up` \
                     or pass --coordinator URL"
                )
            })?;
            let discovery: Discovery = serde_json::from_str(&text).with_context(|| {
                format!("{} is damaged; restart `crowdcloud up`", path.display())
            })?;
            (discovery.url, discovery.fingerprint)
        }
    };
    let pinned = match (&connection.fingerprint, pinned) {
        (Some(text), _) => Some(text.parse::<wire::Fingerprint>().context("--fingerprint")?),
        (None, pinned) => pinned,
    };
    let token = match &connection.token {
        Some(token) => token.clone(),
        None => local_token(&data_dir, kind)?,
    };
    let client = match pinned {
        Some(fingerprint) => Client::pinned(&url, Some(token), fingerprint)?,
        None if url.starts_with("https://") => bail!(
            "give --fingerprint sha256:… with an https:// coordinator (`crowdcloud up` prints it), or run `crowdcloud join`"
        ),
        None => Client::new(&url, Some(token))?,
    };
    client.health().await?;
    Ok(client)
}

/// The local `up`'s token of `kind`.
fn local_token(data_dir: &Path, kind: TokenKind) -> anyhow::Result<String> {
    let file = match kind {
        TokenKind::Join => JOIN_TOKEN_FILE,
        _ => OWNER_TOKEN_FILE,
    };
    fs::read_to_string(data_dir.join(file))
        .map(|text| text.trim().to_owned())
        .map_err(|_| {
            anyhow::anyhow!(
                "no {} token given; pass --token {}… (or set CROWDCLOUD_TOKEN), or run this on \
                 the machine of `crowdcloud up`",
                kind.prefix(),
                kind.prefix()
            )
        })
}

/// The pool joined with `crowdcloud join`, with the token of `kind` it granted (or `--token`).
async fn connect_remembered(
    connection: &Connection,
    data_dir: &Path,
    kind: TokenKind,
) -> anyhow::Result<Client> {
    let Some(mut pool) = crate::remembered::load(data_dir)? else {
        bail!(
            "no coordinator given, none running here, and this machine has not joined a pool; \
             run `crowdcloud join`, start one with `crowdcloud up`, or pass --coordinator URL --token ccr_…"
        );
    };
    let granted = match kind {
        TokenKind::Join => Some(pool.join_token.clone()),
        _ => pool.api_token.clone(),
    };
    let Some(token) = connection.token.clone().or(granted) else {
        bail!(
            "this machine joined the pool {:?} as a node only; ask its owner for a code that grants requests \
             (`crowdcloud join-code --requests`) and run `crowdcloud join` again, or pass --token ccr_…",
            pool.pool_name
        );
    };
    crate::remembered::reach(data_dir, &mut pool, Some(token)).await
}
