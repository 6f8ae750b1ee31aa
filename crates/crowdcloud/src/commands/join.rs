//! `join`: a new device finds the pool on the LAN, proves it has the owner's code and remembers
//! the pool; and `join-code`: the owner makes a fresh code.
//!
//! The code never crosses the network: the `pairing` exchange proves it, bound to the
//! certificate this device sees, so a machine on the LAN that advertises itself as the pool (or
//! relays to it) fails the exchange, tests at most one guess of the code, and gets nothing.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::RngExt;
use serde::Serialize;

use client::Client;
use wire::Fingerprint;
use wire::pairing::{JoinFinishRequest, JoinGrant, JoinStartRequest};

use crate::cli::{JoinArgs, JoinCodeArgs};
use crate::local;
use crate::output::print_json;
use crate::remembered::{self, RememberedPool};

/// What `join --json` prints.
#[derive(Debug, Serialize)]
struct Joined {
    pool_name: String,
    url: String,
    fingerprint: Fingerprint,
    /// How long discovery took to find the pool, when it was found by discovery.
    discovery_ms: Option<u64>,
    /// Whether the owner's code also granted an API token (requests from this device).
    requests: bool,
    /// Whether the certificate was checked by the code exchange (false with --join-token).
    verified_by_code: bool,
}

/// A pool to try: its name if known, the URLs to try, and the advertised certificate.
struct Candidate {
    pool_name: Option<String>,
    urls: Vec<String>,
    advertised: Option<Fingerprint>,
    discovery_ms: Option<u64>,
}

/// The pool to join: the one given (through a tunnel when given by its address), or the one
/// discovery finds on the LAN.
async fn candidate_of(args: &JoinArgs, expected: Option<Fingerprint>) -> anyhow::Result<Candidate> {
    Ok(match &args.coordinator {
        Some(url) => Candidate {
            pool_name: None,
            urls: vec![crate::tunnels::reachable(url).await?],
            advertised: expected,
            discovery_ms: None,
        },
        None => discover(args, expected).await?,
    })
}

pub(crate) async fn join(args: JoinArgs) -> anyhow::Result<ExitCode> {
    let base = remembered::base_dir(&args.data_dir);
    let device_name = args.name.clone().unwrap_or_else(host_name);
    let expected = args
        .fingerprint
        .as_deref()
        .map(str::parse::<Fingerprint>)
        .transpose()
        .context("--fingerprint")?;
    let candidate = candidate_of(&args, expected).await?;
    let (reached, fingerprint, pool_name, remote) = connect(&candidate).await?;
    // A pool named by its address is reached through a tunnel, and remembered by its address.
    let url = args
        .coordinator
        .clone()
        .filter(|url| remote::PoolAddress::is_one(url))
        .unwrap_or_else(|| reached.clone());
    check_expected(expected, fingerprint, &url)?;
    if !args.json {
        println!("found pool {pool_name:?} at {url}");
        println!("  certificate {fingerprint}");
    }
    let (grant, verified_by_code) = match &args.join_token {
        Some(join_token) => {
            if !args.json && expected.is_none() {
                eprintln!(
                    "warning: with --join-token no code checks this certificate; compare it with the one `crowdcloud up` prints"
                );
            }
            let grant = JoinGrant {
                pool_name: pool_name.clone(),
                join_token: join_token.clone(),
                api_token: None,
            };
            (grant, false)
        }
        None => {
            let code = match &args.code {
                Some(code) => code.clone(),
                None => ask_code()?,
            };
            (
                exchange(&reached, fingerprint, &code, &device_name).await?,
                true,
            )
        }
    };
    let pool = RememberedPool {
        pool_name: grant.pool_name.clone(),
        url: url.clone(),
        fingerprint,
        join_token: grant.join_token,
        api_token: grant.api_token,
        device_name,
        joined_at_ms: now_ms(),
        remote: remote.filter(|address| address.parse::<remote::PoolAddress>().is_ok()),
    };
    remembered::save(&base, &pool)?;
    let requests = pool.api_token.is_some();
    if args.json {
        print_json(&Joined {
            pool_name: pool.pool_name,
            url,
            fingerprint,
            discovery_ms: candidate.discovery_ms,
            requests,
            verified_by_code,
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "joined {:?}; remembered in {}",
        pool.pool_name,
        remembered::pool_file(&base).display()
    );
    println!("  lend this machine:  crowdcloud agent");
    if requests {
        println!("  submit jobs:        crowdcloud submit job.toml --wait");
    }
    Ok(ExitCode::SUCCESS)
}

// A remembered pool is stamped with when this machine joined it, by its own clock.
#[allow(clippy::disallowed_methods)]
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

/// Browses the LAN and picks the pool: the one asked for, the only one, or the person's choice.
async fn discover(args: &JoinArgs, expected: Option<Fingerprint>) -> anyhow::Result<Candidate> {
    let browsed = remembered::browse(discovery::BrowseOptions {
        deadline: Duration::from_millis(args.discovery_ms),
        pool_name: args.pool.clone(),
        fingerprint: expected,
        interfaces: args.interfaces.clone(),
        ..Default::default()
    })
    .await?;
    let pools: Vec<&discovery::FoundPool> = browsed
        .pools
        .iter()
        .filter(|pool| pool.scheme == "https")
        .collect();
    let chosen = match pools.as_slice() {
        [] => {
            let used: Vec<String> = browsed
                .interfaces
                .iter()
                .filter(|i| i.used)
                .map(|i| i.name.clone())
                .collect();
            bail!(
                "no pool{} answered on the LAN within {} ms (looked on: {}); is `crowdcloud up` running? `crowdcloud doctor` shows why, or give --coordinator URL",
                args.pool
                    .as_ref()
                    .map(|name| format!(" named {name:?}"))
                    .unwrap_or_default(),
                args.discovery_ms,
                if used.is_empty() {
                    "no interface".to_owned()
                } else {
                    used.join(", ")
                }
            );
        }
        [only] => *only,
        several => choose(several)?,
    };
    Ok(Candidate {
        pool_name: Some(chosen.pool_name.clone()),
        urls: chosen.urls(),
        advertised: chosen.fingerprint,
        discovery_ms: Some(chosen.found_after.as_millis() as u64),
    })
}

fn choose<'a>(pools: &[&'a discovery::FoundPool]) -> anyhow::Result<&'a discovery::FoundPool> {
    let listing: Vec<String> = pools
        .iter()
        .enumerate()
        .map(|(index, pool)| {
            format!(
                "  {}. {:?} at {}, certificate {}",
                index + 1,
                pool.pool_name,
                pool.urls().first().cloned().unwrap_or_default(),
                pool.fingerprint
                    .map(|f| f.to_string())
                    .unwrap_or_else(|| "none".to_owned())
            )
        })
        .collect();
    if !std::io::stdin().is_terminal() {
        bail!(
            "{} pools answered; choose one with --pool NAME, or --fingerprint sha256:… when names repeat (`crowdcloud up` prints its certificate):\n{}",
            pools.len(),
            listing.join("\n")
        );
    }
    println!("{} pools answered:\n{}", pools.len(), listing.join("\n"));
    let answer = prompt(&format!("which one (1-{})? ", pools.len()))?;
    let index: usize = answer
        .trim()
        .parse()
        .ok()
        .filter(|n| (1..=pools.len()).contains(n))
        .with_context(|| format!("answer with a number from 1 to {}", pools.len()))?;
    Ok(pools[index - 1])
}

/// The first URL that answers, with the certificate it presents. An advertised certificate must
/// be the one presented: anything else is not the advertised pool.
/// Refuses a pool whose certificate is not the one the user gave.
fn check_expected(
    expected: Option<Fingerprint>,
    presented: Fingerprint,
    url: &str,
) -> anyhow::Result<()> {
    match expected {
        Some(expected) if expected != presented => bail!(
            "the pool at {url} presents certificate {presented}, not the {expected} you gave; check the fingerprint `crowdcloud up` prints on the owner's machine"
        ),
        _ => Ok(()),
    }
}

/// The pool a candidate names, as its first URL that answers: that URL, the certificate it
/// presented, the pool's name, and its remote address if it serves the remote path.
async fn connect(
    candidate: &Candidate,
) -> anyhow::Result<(String, Fingerprint, String, Option<String>)> {
    let mut failures = Vec::new();
    for url in &candidate.urls {
        if !url.starts_with("https://") {
            failures.push(format!(
                "{url}: joining needs TLS (https://); the owner starts the pool with `crowdcloud up` (not --local)"
            ));
            continue;
        }
        match Client::learn_fingerprint(url).await {
            Ok((health, presented)) => {
                if let Some(advertised) = candidate.advertised
                    && advertised != presented
                {
                    failures.push(format!(
                        "{url} presents certificate {presented}, not the advertised {advertised}"
                    ));
                    continue;
                }
                let name = candidate.pool_name.clone().unwrap_or(health.pool_name);
                return Ok((url.clone(), presented, name, health.remote));
            }
            Err(error) => failures.push(format!("{url}: {error}")),
        }
    }
    bail!(
        "the pool does not answer: {}; `crowdcloud doctor` shows what this machine sees",
        failures.join("; ")
    )
}

/// The code exchange (see the `pairing` crate): returns what the owner's code grants.
async fn exchange(
    url: &str,
    fingerprint: Fingerprint,
    code: &str,
    device_name: &str,
) -> anyhow::Result<JoinGrant> {
    let joiner = pairing::Joiner::start(code, &fingerprint, rand::rng().random())?;
    let client = Client::pinned(url, None, fingerprint)?;
    let started = client
        .join_start(&JoinStartRequest {
            device_name: device_name.to_owned(),
            message: hex::encode(joiner.message()),
        })
        .await?;
    let decode =
        |text: &str| hex::decode(text).map_err(|_| pairing::PairingError::MalformedMessage);
    let keys = joiner.confirm(&started.session, &decode(&started.message)?)?;
    let finished = client
        .join_finish(&JoinFinishRequest {
            session: started.session,
            confirmation: hex::encode(keys.confirmation()),
        })
        .await?;
    let plain = keys.open(&decode(&finished.confirmation)?, &decode(&finished.sealed)?)?;
    serde_json::from_slice(&plain)
        .context("the pool's grant is not understood; are both sides the same crowdcloud version?")
}

fn ask_code() -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("give the code `crowdcloud up` shows with --code, or --join-token ccj_…");
    }
    prompt("code shown by `crowdcloud up` on the owner's machine: ")
}

fn prompt(question: &str) -> anyhow::Result<String> {
    print!("{question}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}

/// The machine's host name, for the pool's node list and token names.
fn host_name() -> String {
    ["/etc/hostname", "/proc/sys/kernel/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "device".to_owned())
}

pub(crate) async fn join_code(args: JoinCodeArgs) -> anyhow::Result<ExitCode> {
    let client = local::connect(&args.connection).await?;
    if args.web {
        let name = super::web::device_token_name();
        let url = match &args.url {
            Some(url) if url.starts_with("https://") => url.trim_end_matches('/'),
            Some(url) => {
                bail!("--url {url:?}: give the address the phone opens, https://HOST:PORT")
            }
            None => client.base_url(),
        };
        let link = super::web::sign_in_link(&client, url, &name).await?;
        if args.connection.json {
            print_json(&serde_json::json!({ "link": link, "token_name": name }))?;
        } else {
            super::web::print_sign_in(&link, &name, client.pinned_fingerprint());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let issued = client.new_join_code(args.requests).await?;
    if args.connection.json {
        print_json(&issued)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("join code: {}", issued.code);
    println!(
        "  on the new device: crowdcloud join   (then type the code; valid {} minutes, for one device{})",
        issued.expires_in_ms / 60_000,
        if issued.grants_api_token {
            ", which may also submit jobs"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
