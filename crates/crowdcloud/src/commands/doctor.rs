//! `doctor`: what this machine sees of the LAN and the pool, and why something fails. Every
//! line that is not fine says what to do about it.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;

use client::{Client, ClientError};
use wire::{Fingerprint, NodeState};

use crate::cli::DoctorArgs;
use crate::output::print_json;
use crate::remembered::{self, RememberedPool};

/// How far the clocks may be apart before the doctor warns. Registration no longer depends on
/// the clock (it signs a challenge), but logs and times compared across machines do.
const CLOCK_SKEW_WARN_MS: i64 = 60_000;

#[derive(Debug, Serialize)]
struct Report {
    interfaces: Vec<InterfaceLine>,
    discovery_ms: u64,
    pools: Vec<PoolCheck>,
    joined: Option<PoolCheck>,
    node: Option<NodeCheck>,
    problems: usize,
}

#[derive(Debug, Serialize)]
struct InterfaceLine {
    name: String,
    addresses: Vec<String>,
    used: bool,
    reason: String,
}

#[derive(Debug, Serialize)]
struct PoolCheck {
    pool_name: String,
    urls: Vec<String>,
    fingerprint: Option<Fingerprint>,
    found_after_ms: Option<u64>,
    /// Each check: fine, and what was seen or what to do.
    checks: Vec<Check>,
}

#[derive(Debug, Serialize)]
struct Check {
    what: &'static str,
    ok: bool,
    detail: String,
}

#[derive(Debug, Serialize)]
struct NodeCheck {
    agent_dir: String,
    node_id: Option<String>,
    agent_running_here: bool,
    checks: Vec<Check>,
}

fn check(what: &'static str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        what,
        ok,
        detail: detail.into(),
    }
}

// The clock check compares this machine's clock with the coordinator's.
#[allow(clippy::disallowed_methods)]
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let base = remembered::base_dir(&args.data_dir);
    let joined = remembered::load(&base).unwrap_or(None);
    let browse = remembered::browse(discovery::BrowseOptions {
        deadline: Duration::from_millis(args.discovery_ms),
        settle: Duration::from_millis(args.discovery_ms),
        interfaces: args.interfaces.clone(),
        ..Default::default()
    })
    .await;
    let (interfaces, found, discovery_ms, discovery_error) = match browse {
        Ok(browsed) => (
            browsed.interfaces,
            browsed.pools,
            browsed.elapsed.as_millis() as u64,
            None,
        ),
        Err(error) => (
            discovery::interfaces(&args.interfaces).unwrap_or_default(),
            Vec::new(),
            0,
            Some(error.to_string()),
        ),
    };
    let mut pools = Vec::new();
    for pool in &found {
        let mut checks = Vec::new();
        let client = reachable(pool.urls(), pool.fingerprint, &mut checks).await;
        if let Some(mine) = joined.as_ref().filter(|j| j.pool_name == pool.pool_name) {
            let same = pool.fingerprint == Some(mine.fingerprint);
            checks.push(check(
                "joined",
                same,
                if same {
                    "this is the pool this machine joined".to_owned()
                } else {
                    format!(
                        "a pool of the same name with another certificate than the one joined ({}); if its owner made a new certificate, run `crowdcloud join` again, otherwise someone else is advertising this name",
                        mine.fingerprint.short()
                    )
                },
            ));
        }
        if let Some(client) = client {
            health_checks(&client, &mut checks).await;
        }
        pools.push(PoolCheck {
            pool_name: pool.pool_name.clone(),
            urls: pool.urls(),
            fingerprint: pool.fingerprint,
            found_after_ms: Some(pool.found_after.as_millis() as u64),
            checks,
        });
    }
    let joined_check = match &joined {
        Some(mine) => Some(joined_pool_check(mine, &found).await),
        None => None,
    };
    let agent_dir = args.agent_dir.clone().unwrap_or_else(|| base.join("agent"));
    let node = node_check(&agent_dir, &base, joined.as_ref()).await;
    let mut problems = pools
        .iter()
        .chain(joined_check.iter())
        .flat_map(|p| &p.checks)
        .chain(node.iter().flat_map(|n| &n.checks))
        .filter(|c| !c.ok)
        .count();
    if found.is_empty() {
        problems += 1;
    }
    let report = Report {
        interfaces: interfaces
            .iter()
            .map(|i| InterfaceLine {
                name: i.name.clone(),
                addresses: i.addresses.iter().map(ToString::to_string).collect(),
                used: i.used,
                reason: i.reason.clone(),
            })
            .collect(),
        discovery_ms,
        pools,
        joined: joined_check,
        node,
        problems,
    };
    if args.json {
        print_json(&report)?;
    } else {
        print_report(&report, discovery_error.as_deref());
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The first of `urls` whose health answers over TLS pinned to `fingerprint`.
async fn reachable(
    urls: Vec<String>,
    fingerprint: Option<Fingerprint>,
    checks: &mut Vec<Check>,
) -> Option<Client> {
    let Some(fingerprint) = fingerprint else {
        checks.push(check(
            "reachable",
            false,
            "the pool serves plain HTTP and cannot be pinned; its owner should start it with `crowdcloud up` (not --local)",
        ));
        return None;
    };
    let mut failures = Vec::new();
    for url in urls {
        let client = match Client::pinned(&url, None, fingerprint) {
            Ok(client) => client,
            Err(error) => {
                failures.push(error.to_string());
                continue;
            }
        };
        let started = Instant::now();
        match client.health().await {
            Ok(_) => {
                checks.push(check(
                    "reachable",
                    true,
                    format!("{url} answers in {} ms", started.elapsed().as_millis()),
                ));
                checks.push(check(
                    "certificate",
                    true,
                    format!("{url} presents the pinned {}", fingerprint.short()),
                ));
                return Some(client);
            }
            Err(error @ ClientError::WrongCertificate { .. }) => {
                checks.push(check("certificate", false, error.to_string()));
                return None;
            }
            Err(error) => failures.push(format!("{url}: {error}")),
        }
    }
    checks.push(check(
        "reachable",
        false,
        format!(
            "{}; a firewall may block the port, or the advert names an address this machine cannot route to",
            failures.join("; ")
        ),
    ));
    None
}

/// What the coordinator's health tells: its clock, and whether it leads.
async fn health_checks(client: &Client, checks: &mut Vec<Check>) {
    clock_check(client, checks).await;
    lead_check(client, checks).await;
}

/// Which coordinator leads the pool, where it has a standby.
async fn lead_check(client: &Client, checks: &mut Vec<Check>) {
    let Ok(health) = client.health().await else {
        return;
    };
    let leader = health.leader.as_deref().unwrap_or("another coordinator");
    match health.role {
        Some(wire::CoordinatorRole::Leader) => {
            checks.push(check("lead", true, format!("{} leads the pool", client.base_url())));
        }
        Some(wire::CoordinatorRole::Standby) => checks.push(check(
            "lead",
            false,
            format!(
                "{} stands by while {leader} leads the pool; give every coordinator's URL, comma-separated (--coordinator A,B)",
                client.base_url()
            ),
        )),
        None => {}
    }
}

async fn clock_check(client: &Client, checks: &mut Vec<Check>) {
    let before_ms = now_ms();
    let Ok(health) = client.health().await else {
        return;
    };
    let after_ms = now_ms();
    if health.time_ms == 0 {
        return;
    }
    let local_ms = (before_ms + after_ms) / 2;
    let skew_ms = health.time_ms as i64 - local_ms as i64;
    let ok = skew_ms.abs() < CLOCK_SKEW_WARN_MS;
    checks.push(check(
        "clock",
        ok,
        if ok {
            format!("{skew_ms:+} ms off the coordinator's")
        } else {
            format!(
                "{} s off the coordinator's, so times in logs and status disagree across machines; set the clock right (enable NTP)",
                skew_ms / 1000
            )
        },
    ));
}

/// The remote path to a pool remembered by its address: whether it connects, and how (direct,
/// or through the relay, with the round trip); the URL that reaches the pool through it.
async fn remote_path_check(address: &str, checks: &mut Vec<Check>) -> Option<String> {
    let opened = match address.parse::<remote::PoolAddress>() {
        Ok(address) => remote::Tunnel::open(address).await,
        Err(error) => Err(error),
    };
    let tunnel = match opened {
        Ok(tunnel) => tunnel,
        Err(error) => {
            checks.push(check("remote path", false, error.to_string()));
            return None;
        }
    };
    match tunnel.path().await {
        Ok(path) => checks.push(check("remote path", true, path.to_string())),
        Err(error) => checks.push(check("remote path", false, error.to_string())),
    }
    // Kept for the checks that follow, which reach the pool through it.
    Some(crate::tunnels::keep(tunnel))
}

async fn joined_pool_check(mine: &RememberedPool, found: &[discovery::FoundPool]) -> PoolCheck {
    let mut checks = Vec::new();
    if remote::PoolAddress::is_one(&mine.url) {
        let url = remote_path_check(&mine.url, &mut checks).await;
        if let Some(client) = reachable(
            url.into_iter().collect(),
            Some(mine.fingerprint),
            &mut checks,
        )
        .await
        {
            health_checks(&client, &mut checks).await;
        }
        return PoolCheck {
            pool_name: mine.pool_name.clone(),
            urls: vec![mine.url.clone()],
            fingerprint: Some(mine.fingerprint),
            found_after_ms: None,
            checks,
        };
    }
    let mut urls = vec![mine.url.clone()];
    for pool in found
        .iter()
        .filter(|p| p.fingerprint == Some(mine.fingerprint))
    {
        urls.extend(pool.urls());
    }
    urls.dedup();
    let mut client = reachable(urls.clone(), Some(mine.fingerprint), &mut checks).await;
    // A pool with a remote address is checked there too: the path this device takes away.
    if let Some(address) = &mine.remote {
        let tunnel = remote_path_check(address, &mut checks).await;
        if client.is_none() {
            let urls = tunnel.into_iter().collect();
            client = reachable(urls, Some(mine.fingerprint), &mut checks).await;
        }
    }
    if client.is_none()
        && !found
            .iter()
            .any(|p| p.fingerprint == Some(mine.fingerprint))
    {
        checks.push(check(
            "discovered",
            false,
            "not advertised on the LAN now; is `crowdcloud up` running on the owner's machine?",
        ));
    }
    if let Some(client) = client {
        health_checks(&client, &mut checks).await;
    }
    PoolCheck {
        pool_name: mine.pool_name.clone(),
        urls,
        fingerprint: Some(mine.fingerprint),
        found_after_ms: None,
        checks,
    }
}

/// This machine's node id, and whether the pool sees it online from somewhere else.
async fn node_check(
    agent_dir: &Path,
    base: &Path,
    joined: Option<&RememberedPool>,
) -> Option<NodeCheck> {
    let node_id = agent::node_id_in(agent_dir)?;
    let running_here = agent::agent_running_in(agent_dir);
    let mut checks = Vec::new();
    let requester = match joined.and_then(|pool| pool.api_token.clone().map(|t| (pool, t))) {
        Some((pool, token)) => Client::pinned(&pool.url, Some(token), pool.fingerprint).ok(),
        None => local_owner(base),
    };
    match requester {
        None => checks.push(check(
            "node id",
            true,
            "not checked against the pool: that needs an API token (join with a code from `crowdcloud join-code --requests`)",
        )),
        Some(client) => match client.nodes().await {
            Ok(list) => {
                let online_elsewhere = list.nodes.iter().any(|node| {
                    node.node_id == node_id && node.state != NodeState::Offline
                }) && !running_here;
                checks.push(check(
                    "node id",
                    !online_elsewhere,
                    if online_elsewhere {
                        format!(
                            "{node_id} is online in the pool but no agent runs here: another machine uses this identity, most likely from a copied data dir; delete {} here to give this machine its own identity",
                            agent_dir.join("identity.key").display()
                        )
                    } else {
                        format!("{node_id} is this machine's alone")
                    },
                ));
            }
            Err(error) => checks.push(check(
                "node id",
                false,
                format!("cannot list the pool's nodes: {error}"),
            )),
        },
    }
    Some(NodeCheck {
        agent_dir: agent_dir.display().to_string(),
        node_id: Some(node_id.to_string()),
        agent_running_here: running_here,
        checks,
    })
}

/// The owner's client when a local `up` runs in `base`.
fn local_owner(base: &Path) -> Option<Client> {
    let text = std::fs::read_to_string(base.join("coordinator.json")).ok()?;
    let local: crate::local::Discovery = serde_json::from_str(&text).ok()?;
    let token = std::fs::read_to_string(base.join("owner.token")).ok()?;
    let token = Some(token.trim().to_owned());
    match local.fingerprint {
        Some(fingerprint) => Client::pinned(&local.url, token, fingerprint).ok(),
        None => Client::new(&local.url, token).ok(),
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok  " } else { "FAIL" }
}

fn print_report(report: &Report, discovery_error: Option<&str>) {
    println!("interfaces");
    for line in &report.interfaces {
        println!(
            "  {} {:<12} {:<28} {}",
            if line.used { "used" } else { "skip" },
            line.name,
            line.addresses.join(", "),
            line.reason
        );
    }
    match discovery_error {
        Some(error) => println!("discovery\n  FAIL {error}"),
        None if report.pools.is_empty() => println!(
            "discovery\n  FAIL no pool answered in {} ms: is `crowdcloud up` running on this LAN? if it is, check that both machines use the same network (not a guest Wi-Fi) and that UDP port 5353 is open",
            report.discovery_ms
        ),
        None => println!(
            "discovery: listened {} ms on the used interfaces; {} pool(s) answered",
            report.discovery_ms,
            report.pools.len()
        ),
    }
    for pool in &report.pools {
        print_pool("pool", pool);
    }
    if let Some(joined) = &report.joined {
        print_pool("joined pool", joined);
    }
    if let Some(node) = &report.node {
        println!(
            "node {} (agent dir {}, {})",
            node.node_id.as_deref().unwrap_or("-"),
            node.agent_dir,
            if node.agent_running_here {
                "an agent runs here"
            } else {
                "no agent runs here"
            }
        );
        for line in &node.checks {
            println!("  {} {:<11} {}", mark(line.ok), line.what, line.detail);
        }
    }
    if report.problems == 0 {
        println!("no problems found");
    } else {
        println!("{} problem(s) found", report.problems);
    }
}

fn print_pool(title: &str, pool: &PoolCheck) {
    println!(
        "{title} {:?} at {} ({}{})",
        pool.pool_name,
        pool.urls.join(", "),
        pool.fingerprint
            .map(|f| format!("certificate {}", f.short()))
            .unwrap_or_else(|| "no certificate".to_owned()),
        pool.found_after_ms
            .map(|ms| format!(", answered after {ms} ms"))
            .unwrap_or_default()
    );
    for line in &pool.checks {
        println!("  {} {:<11} {}", mark(line.ok), line.what, line.detail);
    }
}
