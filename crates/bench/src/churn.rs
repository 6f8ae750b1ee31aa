//! A shuffle on a pool whose machines come and go, against the same shuffle on a calm pool,
//! side by side on one coordinator: what churn costs a pipeline.
//!
//! With `down_fraction` of the agents away at any time, the churned pool has that much less
//! capacity throughout, so against the calm pool it cannot take less than `1 / (1 - f)` of the
//! calm time (1.43× at 30 %) even if churn cost nothing else. What churn itself costs (work
//! lost with killed agents, and the time to notice them) is measured against a third run: the
//! same shuffle on a steady pool of the agents churn leaves up.
//!
//! Churn here is the volunteer case at its harshest: an agent is killed outright (SIGKILL,
//! holding its attempts and whatever they wrote) and its machine comes back `down_ms` later
//! under the same identity. Kills come at an even pace so that `down_fraction` of the agents
//! are away at any time, in a fixed round-robin order, so two runs churn alike. A killed
//! agent's attempts run elsewhere once its lease runs out, or once it is back and registered
//! again, which the coordinator allows only after the old process has been silent for a few
//! heartbeats (it cannot tell a restart from a copied data dir sooner).

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use wire::{BlobHash, JobState, PipelineSubmission, StageInput, StageSubmission};

use crate::pool::{CoordinatorOptions, LocalPool};
use crate::stages::stage_job;
use crate::{BenchError, Check};

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ChurnOptions {
    pub maps: u32,
    pub parts: u32,
    pub agents: u32,
    pub slots: u32,
    /// Share of the agents away at any time during the churned run.
    pub down_fraction: f64,
    /// How long a killed agent's machine stays away.
    pub down_ms: u64,
    /// Where the shuffle keeps the maps' parts; with `nodes`, the agents serve peers and keep
    /// one copy of each part besides its maker's.
    pub locality: wire::Locality,
}

/// The two runs of the shuffle, and what the churned one went through.
pub struct ChurnRuns {
    pub calm: Duration,
    /// Each steady run (on the agents churn leaves up, none coming or going: the churned
    /// pool's capacity) with the churned run after it.
    pub pairs: Vec<(Duration, Duration)>,
    /// Agents of the steady runs.
    pub steady_agents: u32,
    pub kills: u32,
    pub checks: Vec<Check>,
}

pub async fn run(binary: &Path, options: &ChurnOptions) -> Result<ChurnRuns, BenchError> {
    // Every comeback registers again, and a join token's registrations refill at a hundredth
    // of its bound on nodes a second: a pool that expects its machines to come and go this
    // often sets a bound that allows it.
    let coordinator = CoordinatorOptions {
        nodes_per_join_token: Some(10_000),
        ..CoordinatorOptions::default()
    };
    let mut pool = LocalPool::start(binary, &coordinator).await?;
    let serve: &[&str] = match options.locality {
        wire::Locality::Nodes => &["--peer-listen", "127.0.0.1:0"],
        wire::Locality::Coordinator => &[],
    };
    for index in 0..options.agents {
        let join_token = pool.join_token.clone();
        pool.spawn_agent_with(&agent_name(index), options.slots, &join_token, serve)?;
    }
    let runs = runs(&mut pool, options).await;
    pool.stop().await;
    runs
}

fn agent_name(index: u32) -> String {
    format!("churn-{index}")
}

async fn runs(pool: &mut LocalPool, options: &ChurnOptions) -> Result<ChurnRuns, BenchError> {
    pool.wait_online(options.agents as usize).await?;
    let module = pool.owner.upload_bytes(guests::WORDFREQ.into()).await?;
    // Every agent compiles the module, and keeps it on disk across its restarts.
    let warm_up = stage_job(
        module,
        "churn-warm-up",
        options.agents * options.slots,
        &["count"],
    );
    let warm_up = pool.owner.submit(&warm_up).await?;
    pool.job_end(warm_up.job_id, None).await?;

    let calm =
        crate::stages::wait_pipeline(pool, &shuffle(module, "calm", options), RUN_MAX).await?;
    let complete = |status: &wire::PipelineStatus| {
        status.state == JobState::Completed
            && status.stages[0].counts.succeeded == options.maps
            && status.stages[1].counts.succeeded == options.parts
    };
    let mut runs = ChurnRuns {
        calm: calm.end,
        pairs: Vec::new(),
        steady_agents: options.agents - away_of(options) as u32,
        kills: 0,
        checks: vec![Check::new(
            "the calm shuffle completed whole",
            complete(&calm.status),
        )],
    };
    // The machine's speed drifts (a file system busy with deletions, other machines' load), so
    // the steady and churned runs take turns and each churned run is set against its own pair.
    for pair in 1..=PAIRS {
        let (steady_status, steady) = steady_run(pool, module, options, pair).await?;
        let (churned_status, churned, kills) = churned_run(pool, module, options, pair).await?;
        runs.checks.push(Check::new(
            format!("steady shuffle {pair} completed whole"),
            complete(&steady_status),
        ));
        runs.checks.push(Check::new(
            format!("churned shuffle {pair} completed whole, {kills} agents killed"),
            complete(&churned_status) && kills > 0,
        ));
        runs.kills += kills;
        runs.pairs.push((steady, churned));
    }
    Ok(runs)
}

/// Steady and churned runs, taking turns.
const PAIRS: u32 = 2;

/// The shuffle while agents are killed and come back; with the agents killed.
async fn churned_run(
    pool: &mut LocalPool,
    module: BlobHash,
    options: &ChurnOptions,
    pair: u32,
) -> Result<(wire::PipelineStatus, Duration, u32), BenchError> {
    let started = Instant::now();
    let shuffle = shuffle(module, &format!("churned-{pair}"), options);
    let churned = pool.owner.submit_pipeline(&shuffle).await?;
    let mut churn = Churn::new(options);
    // The first kill comes before the first look, so even a short run has one.
    let status = loop {
        churn.step(pool).await?;
        let status = pool.owner.pipeline(churned.pipeline_id).await?;
        if status.state.is_terminal() {
            break status;
        }
        if started.elapsed() > RUN_MAX {
            return Err(BenchError::Setup(
                "the churned shuffle did not end in 30 minutes".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = started.elapsed();
    churn.bring_back_all(pool)?;
    pool.wait_online(options.agents as usize).await?;
    Ok((status, took, churn.kills))
}

const RUN_MAX: Duration = Duration::from_secs(1800);

/// How many agents churn keeps away at once.
fn away_of(options: &ChurnOptions) -> usize {
    ((f64::from(options.agents) * options.down_fraction).round() as usize)
        .clamp(1, options.agents.saturating_sub(1).max(1) as usize)
}

/// The shuffle on the agents churn leaves up: the others are stopped (SIGTERM, so they leave
/// at once) for the run and started again after it.
async fn steady_run(
    pool: &mut LocalPool,
    module: BlobHash,
    options: &ChurnOptions,
    pair: u32,
) -> Result<(wire::PipelineStatus, Duration), BenchError> {
    let away: Vec<u32> = (options.agents - away_of(options) as u32..options.agents).collect();
    for &index in &away {
        pool.stop_agent(index as usize).await;
    }
    let shuffle = shuffle(module, &format!("steady-{pair}"), options);
    let steady = crate::stages::wait_pipeline(pool, &shuffle, RUN_MAX).await?;
    for &index in &away {
        pool.respawn_agent(index as usize, &agent_name(index), options.slots)?;
    }
    pool.wait_online(options.agents as usize).await?;
    Ok((steady.status, steady.end))
}

/// `maps` maps writing `parts` parts each, and a reduce per part. `name` keeps the two runs'
/// task keys apart, so the second takes no result of the first.
fn shuffle(module: BlobHash, name: &str, options: &ChurnOptions) -> PipelineSubmission {
    let parts = options.parts.to_string();
    PipelineSubmission {
        name: format!("{name} shuffle"),
        stages: vec![
            StageSubmission {
                name: "map".to_owned(),
                input: None,
                job: stage_job(
                    module,
                    &format!("{name}-map"),
                    options.maps,
                    &["map", &parts],
                ),
            },
            StageSubmission {
                name: "reduce".to_owned(),
                input: Some(StageInput::Partition {
                    stage: "map".to_owned(),
                    parts: options.parts,
                }),
                job: stage_job(module, &format!("{name}-reduce"), 1, &["reduce"]),
            },
        ],
        locality: options.locality,
        copies: u32::from(options.locality == wire::Locality::Nodes),
    }
}

/// Kills agents at an even pace and brings each back `down_ms` later.
struct Churn {
    options: ChurnOptions,
    /// Agents away, and since when, oldest first.
    down: VecDeque<(u32, Instant)>,
    away_max: usize,
    next_kill_at: Instant,
    next_victim: u32,
    kills: u32,
}

impl Churn {
    fn new(options: &ChurnOptions) -> Self {
        let away_max = away_of(options);
        Self {
            options: *options,
            down: VecDeque::new(),
            away_max,
            next_kill_at: Instant::now(),
            next_victim: 0,
            kills: 0,
        }
    }

    fn kill_every(&self) -> Duration {
        Duration::from_millis(self.options.down_ms / self.away_max as u64)
    }

    async fn step(&mut self, pool: &mut LocalPool) -> Result<(), BenchError> {
        let now = Instant::now();
        let down_for = Duration::from_millis(self.options.down_ms);
        while let Some(&(index, since)) = self.down.front() {
            if now.duration_since(since) < down_for {
                break;
            }
            self.down.pop_front();
            pool.respawn_agent(index as usize, &agent_name(index), self.options.slots)?;
        }
        let victim = self.next_victim;
        let away = |agent: u32| self.down.iter().any(|(index, _)| *index == agent);
        if now >= self.next_kill_at && self.down.len() < self.away_max && !away(victim) {
            self.next_victim = (victim + 1) % self.options.agents;
            pool.kill_agent(victim as usize).await;
            self.down.push_back((victim, now));
            self.kills += 1;
            self.next_kill_at = now + self.kill_every();
        }
        Ok(())
    }

    fn bring_back_all(&mut self, pool: &mut LocalPool) -> Result<(), BenchError> {
        while let Some((index, _)) = self.down.pop_front() {
            pool.respawn_agent(index as usize, &agent_name(index), self.options.slots)?;
        }
        Ok(())
    }
}
