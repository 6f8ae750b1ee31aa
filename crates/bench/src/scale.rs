//! `crowdcloud bench scale`: one coordinator holding many nodes that behave as agents do (they
//! park a lease request, heartbeat at the interval they are told, take work and report it),
//! while tasks are dispatched.
//!
//! The nodes are simulated by this process: each has its own ed25519 key, registers with a
//! signed request and then keeps one lease request parked at the coordinator, over the real
//! HTTP protocol. So at 100,000 nodes the coordinator holds 100,000 parked requests, as it
//! would with real agents, as far as the open-files limit of this process lets it (the report
//! says how many parked); the connections come from several loopback addresses, since one
//! has too few ports. Two real agents run beside them. At each pool size the report gives the
//! coordinator's RSS, the heartbeat latency and the dispatch throughput, and with `--baseline`
//! the same run of another `crowdcloud` binary (the code before a change), side by side.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use client::Client;
use wire::{
    AttemptReport, Capabilities, HeartbeatRequest, JobState, LeaseRequest, NodeActivity, Outcome,
    RegisterRequest, ReportRequest, Usage,
};

use crate::pool::{CoordinatorOptions, LocalPool, noop_job, rss_bytes};
use crate::report::{Better, Machine};
use crate::{BenchError, Check, Figure, Percentiles, Report};

#[derive(Debug, Clone, Serialize)]
pub struct ScaleOptions {
    /// Pool sizes to measure at, growing.
    pub nodes: Vec<u32>,
    /// How long heartbeats are measured at each size.
    pub window_ms: u64,
    /// No-op tasks dispatched during each window.
    pub tasks: u32,
    /// Another `crowdcloud` binary measured the same way in the same run.
    pub baseline: Option<PathBuf>,
}

/// Registrations and heartbeats in flight at once.
const IN_FLIGHT_MAX: usize = 128;
/// How long a simulated node's lease request waits for work, as an agent's does.
const LEASE_WAIT_MS: u32 = 30_000;
/// Connections one loopback source address carries: its ephemeral ports, with room to spare.
const CONNECTIONS_PER_SOURCE: usize = 20_000;
/// How long one simulated node keeps asking to register while the pool says to retry.
const REGISTER_WAIT_MAX: Duration = Duration::from_secs(900);
/// How long a job of no-op tasks may take before the pool counts as not keeping up.
const DISPATCH_WAIT_MAX: Duration = Duration::from_secs(300);
/// Connections besides the parked ones: registrations, heartbeats and reports in flight, and
/// those the clients keep open between them, so the coordinator never sheds one in use.
const CONNECTIONS_SPARE: usize = 4_096;
/// Open files besides the parked connections: the other connections, the store, logs.
const FILES_SPARE: u64 = 2 * CONNECTIONS_SPARE as u64;

/// Counters the simulated nodes keep together.
#[derive(Default)]
struct Counters {
    /// Lease requests sent and not yet answered.
    parked: AtomicU64,
    /// Attempts taken and reported.
    reported: AtomicU64,
    /// Requests that failed.
    failed: AtomicU64,
}

struct SimulatedNode {
    client: Client,
}

pub async fn run(binary: &Path, options: &ScaleOptions) -> Result<Report, BenchError> {
    let largest = options.nodes.iter().copied().max().unwrap_or(0);
    let parked_max = parked_max(raise_open_files(largest));
    let mut checks = Vec::new();
    let (mut figures, ours) = measure_binary(binary, options, parked_max).await?;
    checks.extend(ours);
    if let Some(baseline) = &options.baseline {
        let (before, theirs) = measure_binary(baseline, options, parked_max).await?;
        let name = format!("baseline ({})", baseline.display());
        checks.extend(theirs.into_iter().map(|check| Check {
            what: format!("{name}: {}", check.what),
            ok: check.ok,
        }));
        for figure in &mut figures {
            let value = before
                .iter()
                .find(|b| b.name == figure.name)
                .map(|b| b.value);
            *figure = figure.clone().baseline(&name, value);
        }
    }
    Ok(Report {
        benchmark: "scale".to_owned(),
        machine: Machine::this(),
        parameters: serde_json::to_value(options).unwrap_or_default(),
        figures,
        checks,
    })
}

/// Raises this process's open-files limit (which the coordinator it starts inherits) to what
/// `nodes` parked connections need, as far as it may; returns the limit now.
fn raise_open_files(nodes: u32) -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let wanted = u64::from(nodes) + FILES_SPARE;
    let limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    // Raising the hard limit needs privilege; without it the soft limit still rises to it.
    let raised = Rlimit {
        current: Some(wanted.max(limit.current.unwrap_or(0))),
        maximum: Some(wanted.max(hard)),
    };
    if setrlimit(Resource::Nofile, raised).is_err() {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            },
        );
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// How many nodes may keep a lease request parked: each holds a connection, an open file in
/// this process and in the coordinator. Past that, nodes register and heartbeat but do not
/// park, and the report says how many did.
fn parked_max(open_files_max: u64) -> u32 {
    u32::try_from(open_files_max.saturating_sub(FILES_SPARE)).unwrap_or(u32::MAX)
}

async fn measure_binary(
    binary: &Path,
    options: &ScaleOptions,
    parked_max: u32,
) -> Result<(Vec<Figure>, Vec<Check>), BenchError> {
    let largest = options.nodes.iter().copied().max().unwrap_or(0);
    let coordinator = CoordinatorOptions {
        // The simulated nodes all register with the pool's join token, as fast as they can:
        // its bound, and so its rate, is set far above what they need, so the benchmark
        // measures registration, not the limit on it.
        nodes_per_join_token: Some(largest.saturating_mul(20).max(1_000)),
        connections_max: Some(largest.min(parked_max) as usize + CONNECTIONS_SPARE),
        ..CoordinatorOptions::default()
    };
    let mut pool = LocalPool::start(binary, &coordinator).await?;
    pool.spawn_agent("worker-0", 4)?;
    pool.spawn_agent("worker-1", 4)?;
    let mut simulated = SimulatedPool::new(&pool.url, largest.min(parked_max))?;
    simulated.parked_max = parked_max;
    let measured = measure(&pool, &mut simulated, options).await;
    simulated.tasks.abort_all();
    pool.stop().await;
    measured
}

async fn measure(
    pool: &LocalPool,
    simulated: &mut SimulatedPool,
    options: &ScaleOptions,
) -> Result<(Vec<Figure>, Vec<Check>), BenchError> {
    pool.wait_online(2).await?;
    let module = pool.upload_noop().await?;
    let pid = pool
        .coordinator_pid()
        .ok_or_else(|| BenchError::Setup("the coordinator exited".to_owned()))?;
    let mut figures = Vec::new();
    let mut checks = Vec::new();
    for &size in &options.nodes {
        let registering = Instant::now();
        let added = simulated.grow(&pool.join_token, size).await?;
        let registered_per_s = added as f64 / registering.elapsed().as_secs_f64().max(1e-9);
        let listed = listed_nodes(pool).await?;
        let parked = simulated.wait_parked().await;
        checks.push(Check::new(
            format!(
                "{size} simulated nodes (+2 agents) registered, {parked} of them with a lease \
                 request parked"
            ),
            listed == size as usize + 2 && parked == simulated.parking(),
        ));
        let failed_before = simulated.counters.failed.load(Ordering::Relaxed);
        let counted_before = heartbeat_buckets(pool).await;
        let (latency, beats, interval_ms, dispatch) =
            heartbeat_window(&simulated.nodes, pool, module, options).await?;
        let counted = heartbeat_buckets(pool).await;
        figures.extend(inside_figures(size, &counted_before, &counted));
        let failed = simulated.counters.failed.load(Ordering::Relaxed) - failed_before;
        checks.push(Check::new(
            format!(
                "at {size} nodes, every heartbeat and lease request answered and the job completed"
            ),
            beats.failed == 0 && failed == 0 && dispatch.completed,
        ));
        let rss = rss_bytes(pid).unwrap_or(0) as f64 / (1u64 << 20) as f64;
        figures.extend(size_figures(
            size,
            rss,
            &latency,
            &beats,
            interval_ms,
            &dispatch,
        ));
        // The open-files limit may keep some nodes from parking; the report says how many did.
        figures.push(
            Figure::new(
                &format!("{size} nodes: lease requests parked"),
                parked as f64,
                "",
                Better::Higher,
            )
            .target(f64::from(size)),
        );
        figures.push(Figure::new(
            &format!("{size} nodes: registrations"),
            registered_per_s,
            "nodes/s",
            Better::Higher,
        ));
    }
    Ok((figures, checks))
}

/// Heartbeats the coordinator answered, cumulative per bucket bound in seconds, as its
/// `/metrics` counts them; empty from a coordinator that does not count them.
async fn heartbeat_buckets(pool: &LocalPool) -> Vec<(f64, u64)> {
    let Ok(text) = pool.owner.metrics().await else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("crowdcloud_heartbeat_seconds_bucket{le=\"")?;
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = match bound {
                "+Inf" => f64::INFINITY,
                bound => bound.parse().ok()?,
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect()
}

/// The heartbeat latency inside the coordinator over a window, from its counts before and
/// after: the bound of the bucket each percentile falls in. Apart from the latency the
/// simulated nodes see, it leaves out the benchmark's own share of the machine.
fn inside_figures(size: u32, before: &[(f64, u64)], after: &[(f64, u64)]) -> Vec<Figure> {
    let counted: Vec<(f64, u64)> = after
        .iter()
        .enumerate()
        .map(|(at, (bound, count))| {
            let earlier = before.get(at).map_or(0, |(_, count)| *count);
            (*bound, count.saturating_sub(earlier))
        })
        .collect();
    let total = counted.last().map_or(0, |(_, count)| *count);
    if total == 0 {
        return Vec::new();
    }
    let bound_ms = |quantile: f64| {
        let wanted = (quantile * total as f64).ceil() as u64;
        let (bound, _) = counted.iter().find(|(_, count)| *count >= wanted)?;
        Some(bound * 1000.0)
    };
    [("p50", 0.5), ("p99", 0.99)]
        .into_iter()
        .filter_map(|(name, quantile)| {
            let label = format!("{size} nodes: heartbeat {name} inside the coordinator (at most)");
            let figure = Figure::new(&label, bound_ms(quantile)?, "ms", Better::Lower);
            Some(if name == "p99" {
                figure.target(5.0)
            } else {
                figure
            })
        })
        .collect()
}

fn size_figures(
    size: u32,
    rss_mib: f64,
    latency: &Percentiles,
    beats: &Beats,
    interval_ms: u64,
    dispatch: &Dispatch,
) -> Vec<Figure> {
    let label = |what: &str| format!("{size} nodes: {what}");
    vec![
        Figure::new(&label("coordinator RSS"), rss_mib, "MiB", Better::Lower).target(1024.0),
        Figure::new(&label("heartbeat p99"), latency.p99_ms, "ms", Better::Lower).target(5.0),
        Figure::new(&label("heartbeat p50"), latency.p50_ms, "ms", Better::Lower),
        Figure::new(&label("heartbeats"), beats.rate_per_s, "/s", Better::Higher),
        Figure::new(
            &label("heartbeat interval"),
            interval_ms as f64,
            "ms",
            Better::Lower,
        ),
        Figure::new(
            &label("dispatch"),
            dispatch.tasks_per_s,
            "tasks/s",
            Better::Higher,
        )
        .target(5_000.0),
    ]
}

/// The simulated nodes: their clients, one per loopback source address, and their lease loops.
struct SimulatedPool {
    sources: Vec<Client>,
    nodes: Vec<SimulatedNode>,
    tasks: JoinSet<()>,
    counters: Arc<Counters>,
    /// Nodes past this many register and heartbeat, but park no lease request.
    parked_max: u32,
}

impl SimulatedPool {
    fn new(url: &str, largest: u32) -> Result<Self, BenchError> {
        let count = (largest as usize + IN_FLIGHT_MAX).div_ceil(CONNECTIONS_PER_SOURCE);
        let sources = (0..count.max(1))
            .map(|index| {
                // 127.0.0.2, 127.0.0.3, …: all loopback, each with its own ports.
                let address = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + index as u32);
                Client::many_from(url, IpAddr::V4(address), CONNECTIONS_PER_SOURCE)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            sources,
            nodes: Vec::new(),
            tasks: JoinSet::new(),
            counters: Arc::default(),
            parked_max: u32::MAX,
        })
    }

    /// Registers nodes until there are `size`, and parks a lease request for each; returns
    /// how many were added.
    async fn grow(&mut self, join_token: &str, size: u32) -> Result<usize, BenchError> {
        let from = self.nodes.len() as u32;
        let sources = self.sources.clone();
        let registered = futures::stream::iter(from..size)
            .map(|index| {
                let anonymous = sources[index as usize % sources.len()].clone();
                register_one(anonymous, join_token.to_owned(), index)
            })
            .buffer_unordered(IN_FLIGHT_MAX)
            .collect::<Vec<_>>()
            .await;
        for node in registered {
            let node = node?;
            if self.nodes.len() < self.parked_max as usize {
                self.tasks
                    .spawn(lease_loop(node.client.clone(), Arc::clone(&self.counters)));
            }
            self.nodes.push(node);
        }
        Ok((size - from) as usize)
    }

    /// Nodes that keep a lease request parked.
    fn parking(&self) -> u64 {
        self.nodes.len().min(self.parked_max as usize) as u64
    }

    /// Waits until every parking node has a lease request in flight, for at most a minute;
    /// returns how many have.
    async fn wait_parked(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let parked = self.counters.parked.load(Ordering::Relaxed);
            if parked >= self.parking() || Instant::now() > deadline {
                return parked;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn register_one(
    anonymous: Client,
    join_token: String,
    index: u32,
) -> Result<SimulatedNode, BenchError> {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&index.to_le_bytes());
    seed[4] = 0x5c;
    let key = SigningKey::from_bytes(&seed);
    let challenge = challenge(&anonymous, &join_token).await?;
    let mut request = RegisterRequest {
        join_token,
        public_key: hex::encode(key.verifying_key().to_bytes()),
        signature: String::new(),
        nonce: challenge.nonce,
        name: format!("sim-{index}"),
        capabilities: Capabilities {
            cores: 4,
            memory_bytes: 8 << 30,
            disk_free_bytes: 100 << 30,
            arch: "x86_64".to_owned(),
            os: "linux".to_owned(),
            module_bytes_max: wire::limits::MODULE_BYTES_MAX,
            wasi_interfaces: Vec::new(),
            wasm_features: Vec::new(),
            runtime: wire::NodeRuntime::Native,
            encryption_key: None,
            peer_address: None,
        },
        labels: BTreeMap::from([("sim".to_owned(), "yes".to_owned())]),
        slots: 4,
        agent_version: "bench".to_owned(),
    };
    let message = wire::auth::registration_message(&request);
    request.signature = hex::encode(key.sign(&message).to_bytes());
    let registered = anonymous.register(&request).await?;
    Ok(SimulatedNode {
        client: anonymous.with_token(registered.node_token),
    })
}

/// How many nodes the pool lists; asked again if a kept-alive connection closes under the
/// request, as a client of a busy coordinator would.
async fn listed_nodes(pool: &LocalPool) -> Result<usize, BenchError> {
    let mut tries = 0;
    loop {
        match pool.owner.nodes().await {
            Ok(list) => return Ok(list.nodes.len()),
            Err(error) if tries >= 3 => return Err(error.into()),
            Err(_) => tries += 1,
        }
    }
}

/// A challenge to register with, asked again (as an agent does) while the coordinator says
/// too many registrations are under way, for at most [`REGISTER_WAIT_MAX`].
async fn challenge(
    anonymous: &Client,
    join_token: &str,
) -> Result<wire::ChallengeResponse, BenchError> {
    let deadline = Instant::now() + REGISTER_WAIT_MAX;
    loop {
        match anonymous.challenge(join_token).await {
            Err(client::ClientError::Api { status: 429, .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            answer => return Ok(answer?),
        }
    }
}

/// What an agent does with its lease: keep one request parked, and report what it is given at
/// once (the no-op task ends as soon as it starts).
async fn lease_loop(client: Client, counters: Arc<Counters>) {
    let request = LeaseRequest {
        slots_free: 4,
        wait_ms: LEASE_WAIT_MS,
    };
    loop {
        counters.parked.fetch_add(1, Ordering::Relaxed);
        let answer = client.lease(&request).await;
        counters.parked.fetch_sub(1, Ordering::Relaxed);
        let granted = match answer {
            Ok(response) => response.attempts,
            Err(_) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if granted.is_empty() {
            continue;
        }
        let reports = granted
            .iter()
            .map(|grant| AttemptReport {
                ran_on: None,
                attempt_id: grant.attempt_id,
                outcome: Outcome::Succeeded,
                usage: Usage::default(),
                stdout: None,
                stderr: None,
                outputs: Vec::new(),
                sealed_digest: None,
            })
            .collect();
        match client.report(&ReportRequest { reports }).await {
            Ok(_) => counters
                .reported
                .fetch_add(granted.len() as u64, Ordering::Relaxed),
            Err(_) => counters.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

struct Beats {
    rate_per_s: f64,
    failed: u32,
}

struct Dispatch {
    tasks_per_s: f64,
    completed: bool,
}

/// Heartbeats every node at the interval the coordinator asks for, for the window, while a
/// no-op job runs on the parked nodes and the real agents.
async fn heartbeat_window(
    nodes: &[SimulatedNode],
    pool: &LocalPool,
    module: wire::BlobHash,
    options: &ScaleOptions,
) -> Result<(Percentiles, Beats, u64, Dispatch), BenchError> {
    let request = HeartbeatRequest {
        running: vec![],
        slots_free: 4,
        activity: NodeActivity::Active,
        capabilities: None,
        forgotten: Vec::new(),
        copied: Vec::new(),
        kept: Vec::new(),
        dropped: Vec::new(),
    };
    let interval_ms = nodes[0]
        .client
        .heartbeat(&request)
        .await?
        .heartbeat_ms
        .max(1);
    let window = Duration::from_millis(options.window_ms);
    // Each node beats once per interval; a window shorter than the interval sees a share.
    let beats_per_s = nodes.len() as f64 * 1000.0 / interval_ms as f64;
    let beat_count = ((beats_per_s * window.as_secs_f64()) as usize).max(1);
    let spacing = window / beat_count as u32;
    let (dispatch, beats) = tokio::join!(
        dispatch_job(pool, module, options.tasks),
        beat(nodes, &request, beat_count, spacing)
    );
    let (latency, beats) = beats?;
    Ok((latency, beats, interval_ms, dispatch?))
}

async fn dispatch_job(
    pool: &LocalPool,
    module: wire::BlobHash,
    tasks: u32,
) -> Result<Dispatch, BenchError> {
    let job = noop_job("bench-scale", module, tasks);
    let started = Instant::now();
    let job = pool.owner.submit(&job).await?.job_id;
    // A pool that cannot keep up still gives a figure: the job counts as not completed.
    let deadline = started + DISPATCH_WAIT_MAX;
    let status = pool.job_end(job, Some(deadline)).await?;
    Ok(Dispatch {
        tasks_per_s: f64::from(tasks) / started.elapsed().as_secs_f64(),
        completed: status.state == JobState::Completed,
    })
}

async fn beat(
    nodes: &[SimulatedNode],
    request: &HeartbeatRequest,
    beat_count: usize,
    spacing: Duration,
) -> Result<(Percentiles, Beats), BenchError> {
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(beat_count);
    for beat in 0..beat_count {
        let due = started + spacing * beat as u32;
        tokio::time::sleep_until(due.into()).await;
        let permit = Arc::clone(&in_flight)
            .acquire_owned()
            .await
            .expect("never closed");
        let client = nodes[beat % nodes.len()].client.clone();
        let request = request.clone();
        handles.push(tokio::spawn(async move {
            let began = Instant::now();
            let result = client.heartbeat(&request).await;
            drop(permit);
            (began.elapsed(), result.is_ok())
        }));
    }
    let mut samples = Vec::with_capacity(handles.len());
    let mut failed = 0;
    for handle in handles {
        let (elapsed, ok) = handle
            .await
            .map_err(|error| BenchError::Setup(error.to_string()))?;
        samples.push(elapsed);
        failed += u32::from(!ok);
    }
    let rate_per_s = samples.len() as f64 / started.elapsed().as_secs_f64();
    Ok((Percentiles::of(&mut samples), Beats { rate_per_s, failed }))
}
