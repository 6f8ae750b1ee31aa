//! The end-to-end part of `bench verify`: honest and cheating agents, real processes, through a
//! real coordinator of a public pool on loopback. Cheaters are agents started with `--cheat`;
//! one banned comes back at once under a new identity and a new join token, as long as the job
//! runs. What requesters got is read back as they would: every task's stdout.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use wire::{Deterministic, JobId, JobState, JobStatus, Limits, Standing, TaskSpec};

use crate::pool::{CoordinatorOptions, LocalPool};
use crate::report::Better;
use crate::{BenchError, Check, Figure};

/// What the end-to-end run is made of.
#[derive(Debug, Clone, Serialize)]
pub struct LiveOptions {
    pub honest: u32,
    /// Cheating agents at once: a ring that tells the same lie once trusted, and liars.
    pub cheaters: u32,
    pub tasks: u32,
    /// Verified results before a node is trusted; far below the public default of 100, so
    /// that a short run sees trusted nodes audited.
    pub probation_results: u32,
    pub audit_percent: f64,
    /// Identities the cheaters may come back as, in all.
    pub rejoins_max: u32,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            honest: 12,
            cheaters: 3,
            tasks: 400,
            probation_results: 5,
            audit_percent: 5.0,
            rejoins_max: 20,
        }
    }
}

/// How each cheater lies, in turn: always, or as one of a ring that tells the same lie once
/// its members are trusted.
fn strategy(index: u32) -> Vec<&'static str> {
    match index % 3 {
        0 => vec!["--cheat", "always"],
        _ => vec!["--cheat", "after=5", "--cheat-group", "ring"],
    }
}

/// A cheater process and when it started.
struct Cheater {
    index: usize,
    name: String,
    started: Instant,
    strategy: u32,
    /// Its exit (a ban) is counted.
    gone: bool,
}

/// What the run measured.
struct Measured {
    status: JobStatus,
    wrong: u32,
    unverified: u32,
    bans_s: Vec<f64>,
    liars: u32,
    /// Owners the coordinator banned by the job's end, as it lists them.
    banned_owners: u32,
    took_s: f64,
}

pub async fn end_to_end(
    binary: &Path,
    options: &LiveOptions,
) -> Result<(Vec<Figure>, Vec<Check>), BenchError> {
    let audit = options.audit_percent.to_string();
    let probation = options.probation_results.to_string();
    let coordinator = CoordinatorOptions {
        lease_ms: 5_000,
        more_args: [
            "--trust",
            "public",
            "--one-network",
            "--probation-results",
            &probation,
            "--audit-percent",
            &audit,
        ]
        .map(str::to_owned)
        .to_vec(),
        ..CoordinatorOptions::default()
    };
    let mut pool = LocalPool::start(binary, &coordinator).await?;
    let measured = run(&mut pool, options).await.map_err(|error| {
        BenchError::Setup(format!("{error}; the logs end:\n{}", pool.log_tails()))
    });
    pool.stop().await;
    let measured = measured?;
    Ok((figures(&measured, options), checks(&measured)))
}

async fn run(pool: &mut LocalPool, options: &LiveOptions) -> Result<Measured, BenchError> {
    for index in 0..options.honest {
        let name = format!("honest-{index}");
        let token = join_token(pool, &name).await?;
        pool.spawn_agent_with(&name, 1, &token, &[])?;
    }
    let mut cheaters = Vec::new();
    for index in 0..options.cheaters {
        cheaters.push(spawn_cheater(pool, index, index).await?);
    }
    pool.wait_online((options.honest + options.cheaters) as usize)
        .await?;
    let grant = wire::CreditGrant {
        requester: "owner".to_owned(),
        credits: 1_000_000,
    };
    pool.owner.grant_credits(&grant).await?;
    let started = Instant::now();
    let job = submit(pool, options.tasks).await?;
    let (status, bans_s, liars) = follow(pool, job, &mut cheaters, options).await?;
    let took_s = started.elapsed().as_secs_f64();
    let (wrong, unverified) = read_back(pool, job).await?;
    let banned_owners = pool
        .owner
        .nodes()
        .await?
        .owners
        .iter()
        .filter(|owner| owner.standing == Standing::Banned)
        .count() as u32;
    Ok(Measured {
        status,
        wrong,
        unverified,
        bans_s,
        liars,
        banned_owners,
        took_s,
    })
}

async fn join_token(pool: &LocalPool, name: &str) -> Result<String, BenchError> {
    let request = wire::tokens::TokenCreateRequest {
        name: name.to_owned(),
        kind: wire::tokens::ManagedTokenKind::Join,
    };
    Ok(pool.owner.create_token(&request).await?.token)
}

async fn spawn_cheater(
    pool: &mut LocalPool,
    strategy: u32,
    serial: u32,
) -> Result<Cheater, BenchError> {
    let name = format!("cheater-{serial}");
    let token = join_token(pool, &name).await?;
    let index = pool.spawn_agent_with(&name, 1, &token, &self::strategy(strategy))?;
    Ok(Cheater {
        index,
        name,
        started: Instant::now(),
        strategy,
        gone: false,
    })
}

async fn submit(pool: &LocalPool, tasks: u32) -> Result<JobId, BenchError> {
    let module = pool.owner.upload_bytes(guests::PROBE.into()).await?;
    let mut job = crate::pool::noop_job("verify", module, tasks);
    job.tasks = (0..tasks)
        .map(|i| TaskSpec {
            args: vec!["echo".to_owned(), "task".to_owned(), i.to_string()],
            ..TaskSpec::default()
        })
        .collect();
    job.limits = Limits::default();
    job.deterministic = Some(Deterministic { seed: 1 });
    Ok(pool.owner.submit(&job).await?.job_id)
}

/// Waits for the job to end; a cheater that exits (banned) comes back at once as a new
/// identity, up to the bound. Returns the job's status, the seconds each ban took from the
/// cheater's start, and how many cheaters lied.
async fn follow(
    pool: &mut LocalPool,
    job: JobId,
    cheaters: &mut [Cheater],
    options: &LiveOptions,
) -> Result<(JobStatus, Vec<f64>, u32), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut bans_s, mut liars, mut serial) = (Vec::new(), 0, options.cheaters);
    loop {
        let status = pool
            .owner
            .wait_job(job, 0, Duration::from_millis(200))
            .await?;
        for cheater in cheaters.iter_mut() {
            if cheater.gone || !pool.agent_exited(cheater.index, Duration::ZERO).await {
                continue;
            }
            cheater.gone = true;
            bans_s.push(cheater.started.elapsed().as_secs_f64());
            liars += u32::from(lied(pool, &cheater.name));
            if serial - options.cheaters < options.rejoins_max && !status.state.is_terminal() {
                *cheater = spawn_cheater(pool, cheater.strategy, serial).await?;
                serial += 1;
            }
        }
        if status.state.is_terminal() {
            liars += cheaters
                .iter()
                .map(|c| u32::from(lied(pool, &c.name)))
                .sum::<u32>();
            return Ok((status, bans_s, liars));
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!(
                "the job did not end within ten minutes: {status:?}"
            )));
        }
    }
}

/// Whether the coordinator accepted a made-up result of the agent: the line a cheating agent
/// logs then (`agent::LIE_TAKEN`).
fn lied(pool: &LocalPool, name: &str) -> bool {
    pool.agent_log(name)
        .contains("the pool took a made-up result")
}

/// Tasks whose delivered stdout is not theirs, and tasks that ended without a verification.
async fn read_back(pool: &LocalPool, job: JobId) -> Result<(u32, u32), BenchError> {
    let (mut wrong, mut unverified) = (0, 0);
    for task in pool.owner.all_tasks(job).await? {
        unverified += u32::from(task.verification.is_none());
        let right = format!("task {}\n", task.index);
        let delivered = match task.stdout {
            Some(blob) => pool.owner.download(&blob.hash).await?,
            None => Default::default(),
        };
        wrong += u32::from(delivered.as_ref() != right.as_bytes());
    }
    Ok((wrong, unverified))
}

fn figures(measured: &Measured, options: &LiveOptions) -> Vec<Figure> {
    let tasks = f64::from(options.tasks);
    let mut figures = vec![
        Figure::new(
            "end to end: wrong results delivered",
            f64::from(measured.wrong),
            "tasks",
            Better::Lower,
        )
        .target(0.0),
        Figure::new(
            "end to end: executions per task",
            measured.status.attempts as f64 / tasks,
            "executions",
            Better::Lower,
        ),
        Figure::new(
            "end to end: cheaters banned",
            f64::from(measured.banned_owners),
            "identities",
            Better::Higher,
        ),
        Figure::new("end to end: whole job", measured.took_s, "s", Better::Lower),
    ];
    if !measured.bans_s.is_empty() {
        let mean = measured.bans_s.iter().sum::<f64>() / measured.bans_s.len() as f64;
        figures.push(Figure::new(
            "end to end: time from joining to ban, mean",
            mean,
            "s",
            Better::Lower,
        ));
    }
    figures
}

fn checks(measured: &Measured) -> Vec<Check> {
    vec![
        Check::new(
            "end to end: the job completed",
            measured.status.state == JobState::Completed,
        ),
        Check::new(
            "end to end: no wrong result delivered, every result verified",
            measured.wrong == 0 && measured.unverified == 0,
        ),
        // A job completes only once each of its results is verified, so every liar whose lie
        // the pool took is caught by then: counted from the coordinator, not from how soon a
        // banned agent's process gives up and exits.
        Check::new(
            "end to end: cheaters lied and each one that lied was banned",
            measured.liars > 0 && measured.banned_owners >= measured.liars,
        ),
    ]
}
