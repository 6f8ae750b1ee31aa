//! `crowdcloud bench scale`: one coordinator holding many nodes that heartbeat at their normal
//! interval, while tasks are dispatched.
//!
//! The nodes are simulated by this process: each has its own ed25519 key, registers with a
//! signed request and heartbeats with its own token, over the real HTTP protocol (sharing a
//! pool of connections). Two real agents run a no-op job meanwhile. At each pool size the
//! report gives the coordinator's RSS, the heartbeat latency and the dispatch throughput.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::Semaphore;

use client::Client;
use wire::{Capabilities, HeartbeatRequest, JobState, NodeActivity, RegisterRequest};

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
}

/// Registrations and heartbeats in flight at once.
const IN_FLIGHT_MAX: usize = 128;

struct SimulatedNode {
    client: Client,
}

pub async fn run(binary: &Path, options: &ScaleOptions) -> Result<Report, BenchError> {
    let largest = options.nodes.iter().copied().max().unwrap_or(0);
    let coordinator = CoordinatorOptions {
        // The simulated nodes all register with the pool's join token, as fast as they can:
        // its bound, and so its rate, is set far above what they need, so the benchmark
        // measures registration, not the limit on it.
        nodes_per_join_token: Some(largest.saturating_mul(20).max(1_000)),
        ..CoordinatorOptions::default()
    };
    let mut pool = LocalPool::start(binary, &coordinator).await?;
    pool.spawn_agent("worker-0", 4)?;
    pool.spawn_agent("worker-1", 4)?;
    let measured = measure(&pool, options).await;
    pool.stop().await;
    let (figures, checks) = measured?;
    Ok(Report {
        benchmark: "scale".to_owned(),
        machine: Machine::this(),
        parameters: serde_json::to_value(options).unwrap_or_default(),
        figures,
        checks,
    })
}

async fn measure(
    pool: &LocalPool,
    options: &ScaleOptions,
) -> Result<(Vec<Figure>, Vec<Check>), BenchError> {
    pool.wait_online(2).await?;
    let module = pool.upload_noop().await?;
    let anonymous = Client::new(&pool.url, None)?;
    let pid = pool
        .coordinator_pid()
        .ok_or_else(|| BenchError::Setup("the coordinator exited".to_owned()))?;
    let mut nodes: Vec<SimulatedNode> = Vec::new();
    let mut figures = Vec::new();
    let mut checks = Vec::new();
    for &size in &options.nodes {
        let registering = Instant::now();
        let more = register(&anonymous, &pool.join_token, nodes.len() as u32, size).await?;
        let registered_per_s = more.len() as f64 / registering.elapsed().as_secs_f64().max(1e-9);
        nodes.extend(more);
        let listed = pool.owner.nodes().await?.nodes.len();
        checks.push(Check::new(
            format!("{size} simulated nodes (+2 agents) registered"),
            listed == size as usize + 2,
        ));
        let (latency, beats, interval_ms, dispatch) =
            heartbeat_window(&nodes, pool, module, options).await?;
        checks.push(Check::new(
            format!("at {size} nodes, every heartbeat answered and the job completed"),
            beats.failed == 0 && dispatch.completed,
        ));
        let rss = rss_bytes(pid).unwrap_or(0) as f64 / (1u64 << 20) as f64;
        let label = |what: &str| format!("{size} nodes: {what}");
        figures
            .push(Figure::new(&label("coordinator RSS"), rss, "MiB", Better::Lower).target(1024.0));
        figures.push(
            Figure::new(&label("heartbeat p99"), latency.p99_ms, "ms", Better::Lower).target(50.0),
        );
        figures.push(Figure::new(
            &label("heartbeat p50"),
            latency.p50_ms,
            "ms",
            Better::Lower,
        ));
        figures.push(Figure::new(
            &label("heartbeats"),
            beats.rate_per_s,
            "/s",
            Better::Higher,
        ));
        figures.push(Figure::new(
            &label("heartbeat interval"),
            interval_ms as f64,
            "ms",
            Better::Lower,
        ));
        figures.push(Figure::new(
            &label("dispatch"),
            dispatch.tasks_per_s,
            "tasks/s",
            Better::Higher,
        ));
        figures.push(Figure::new(
            &label("registrations"),
            registered_per_s,
            "nodes/s",
            Better::Higher,
        ));
    }
    Ok((figures, checks))
}

async fn register(
    anonymous: &Client,
    join_token: &str,
    from: u32,
    to: u32,
) -> Result<Vec<SimulatedNode>, BenchError> {
    let results = futures::stream::iter(from..to)
        .map(|index| {
            let anonymous = anonymous.clone();
            let join_token = join_token.to_owned();
            async move {
                let mut seed = [0u8; 32];
                seed[..4].copy_from_slice(&index.to_le_bytes());
                seed[4] = 0x5c;
                let key = SigningKey::from_bytes(&seed);
                let challenge = anonymous.challenge(&join_token).await?;
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
                    },
                    labels: BTreeMap::from([("sim".to_owned(), "yes".to_owned())]),
                    slots: 4,
                    agent_version: "bench".to_owned(),
                };
                let message = wire::auth::registration_message(&request);
                request.signature = hex::encode(key.sign(&message).to_bytes());
                let registered = anonymous.register(&request).await?;
                Ok::<_, BenchError>(SimulatedNode {
                    client: anonymous.with_token(registered.node_token),
                })
            }
        })
        .buffer_unordered(IN_FLIGHT_MAX)
        .collect::<Vec<_>>()
        .await;
    results.into_iter().collect()
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
/// no-op job runs on the real agents.
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
    let job = noop_job("bench-scale", module, options.tasks);
    let dispatching = async {
        let started = Instant::now();
        let job = pool.owner.submit(&job).await?.job_id;
        let status = loop {
            let status = pool
                .owner
                .wait_job_end(job, Duration::from_secs(60))
                .await?;
            if status.state.is_terminal() {
                break status;
            }
        };
        Ok::<_, BenchError>(Dispatch {
            tasks_per_s: f64::from(options.tasks) / started.elapsed().as_secs_f64(),
            completed: status.state == JobState::Completed,
        })
    };
    let beating = async {
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
        Ok::<_, BenchError>((Percentiles::of(&mut samples), Beats { rate_per_s, failed }))
    };
    let (dispatch, beats) = tokio::join!(dispatching, beating);
    let (latency, beats) = beats?;
    Ok((latency, beats, interval_ms, dispatch?))
}
