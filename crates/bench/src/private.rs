//! `crowdcloud bench private`: what sealing costs, against the same jobs in the clear, side by
//! side in one run on one pool (a real coordinator and agent, processes, on loopback).
//!
//! - Round trip: one-task jobs that print their one argument, a number of their own, submit to
//!   result, as a requester's client does it end to end (its plan uploaded, the job submitted
//!   with a wait). Clear and private take turns, so drift on the machine touches both alike.
//!   Each prints something new, as real tasks do: a clear job printing what another already
//!   printed would find its stdout stored, while a private one's is new ciphertext each time.
//!   Private adds two key wraps on the requester's side, and on the node the key's unwrap and
//!   the sealing of stdout to the requester.
//! - Inputs: one task per input file, together `input_mib`, each task reading its file whole;
//!   from the first upload to the last result. Private adds sealing every file before upload,
//!   and opening and checking it on the node. Each run has files of its own random bytes, so
//!   neither finds the other's blobs uploaded already.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::RngExt as _;
use serde::Serialize;

use client::Client;
use client::private::KeyHolders;
use jobspec::JobPlan;
use wire::JobState;

use crate::pool::{CoordinatorOptions, LocalPool};
use crate::report::{Better, Machine};
use crate::{BenchError, Check, Figure, Percentiles, Report};

#[derive(Debug, Clone, Serialize)]
pub struct PrivateOptions {
    /// One-task round trips of each kind, taking turns.
    pub round_trips: u32,
    /// Input bytes of each run of the inputs measurement, in MiB.
    pub input_mib: u32,
    /// Files (and tasks) the input is split into.
    pub input_files: u32,
    pub slots: u32,
}

/// One kind of job: in the clear, or sealed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Clear,
    Private,
}

struct Requester<'a> {
    client: &'a Client,
    secret: seal::EncryptionSecret,
    holders: KeyHolders,
}

impl Requester<'_> {
    /// Uploads the plan's files as `kind` wants them, submits it and waits for its end.
    async fn run(&self, plan: &JobPlan, kind: Kind) -> Result<wire::JobStatus, BenchError> {
        let submission = match kind {
            Kind::Clear => self.client.upload_plan(plan).await?,
            Kind::Private => {
                self.client
                    .upload_private_plan(plan, &self.secret, &self.holders)
                    .await?
            }
        };
        let submitted = self
            .client
            .submit_and_wait(&submission, Duration::from_secs(600))
            .await?;
        match submitted.status {
            Some(status) if status.state.is_terminal() => Ok(status),
            _ => Ok(self
                .client
                .wait_job_end(submitted.job_id, Duration::from_secs(600))
                .await?),
        }
    }
}

pub async fn run(binary: &Path, options: &PrivateOptions) -> Result<Report, BenchError> {
    let mut pool = LocalPool::start(binary, &CoordinatorOptions::default()).await?;
    pool.spawn_agent("bench-private", options.slots)?;
    let measured = measure(&pool, options).await;
    pool.stop().await;
    let (round_trips, inputs, checks) = measured?;
    let [clear, private] = round_trips;
    let input_ms = |seconds: f64| seconds * 1000.0;
    let figures = vec![
        Figure::new(
            "round trip p50, private",
            private.p50_ms,
            "ms",
            Better::Lower,
        )
        .target(clear.p50_ms + 0.2)
        .baseline("the same in the clear", Some(clear.p50_ms)),
        Figure::new(
            "round trip p99, private",
            private.p99_ms,
            "ms",
            Better::Lower,
        )
        .baseline("the same in the clear", Some(clear.p99_ms)),
        Figure::new(
            "round trip p50, added by sealing",
            private.p50_ms - clear.p50_ms,
            "ms",
            Better::Lower,
        )
        .target(0.2),
        Figure::new(
            &format!("{} MiB of inputs, private", options.input_mib),
            input_ms(inputs[1]),
            "ms",
            Better::Lower,
        )
        .target(input_ms(inputs[0]) * 1.10)
        .baseline("the same in the clear", Some(input_ms(inputs[0]))),
    ];
    Ok(Report {
        benchmark: "private".to_owned(),
        machine: Machine::this(),
        parameters: serde_json::to_value(options).unwrap_or_default(),
        figures,
        checks,
    })
}

type Measured = ([Percentiles; 2], [f64; 2], Vec<Check>);

async fn measure(pool: &LocalPool, options: &PrivateOptions) -> Result<Measured, BenchError> {
    pool.wait_online(1).await?;
    let nodes = pool.owner.nodes().await?;
    let trust = jobspec::PrivatePlan::default();
    let holders = client::private::pick_key_holders(&nodes.nodes, &trust, &Default::default())?;
    let requester = Requester {
        client: &pool.owner,
        secret: seal::EncryptionSecret::generate(),
        holders,
    };
    let dir = tempfile::tempdir().map_err(BenchError::io("a temporary directory"))?;
    let noop = noop_plan(dir.path())?;
    let mut checks = Vec::new();
    // The agent compiles the module once, for both kinds, before anything is timed.
    for kind in [Kind::Clear, Kind::Private] {
        requester.run(&noop, kind).await?;
    }
    let mut samples = [Vec::new(), Vec::new()];
    let mut completed = [0u32; 2];
    let mut noop = noop;
    for round in 0..options.round_trips {
        for (slot, kind) in [Kind::Clear, Kind::Private].into_iter().enumerate() {
            noop.tasks[0].args = vec!["echo".to_owned(), format!("{round}-{slot}")];
            let started = Instant::now();
            let status = requester.run(&noop, kind).await?;
            samples[slot].push(started.elapsed());
            completed[slot] += u32::from(status.state == JobState::Completed);
        }
    }
    checks.push(Check::new(
        format!(
            "all {} round trips of each kind succeeded",
            options.round_trips
        ),
        completed == [options.round_trips; 2],
    ));
    let mut inputs = [0.0; 2];
    for (slot, kind) in [Kind::Clear, Kind::Private].into_iter().enumerate() {
        let run_dir = dir.path().join(format!("inputs-{slot}"));
        let plan = inputs_plan(&run_dir, options)?;
        let started = Instant::now();
        let status = requester.run(&plan, kind).await?;
        inputs[slot] = started.elapsed().as_secs_f64();
        checks.push(Check::new(
            format!(
                "every task of the {} input run read its whole file",
                name(kind)
            ),
            status.state == JobState::Completed && status.tasks.succeeded == options.input_files,
        ));
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    let round_trips = samples.map(|mut samples| Percentiles::of(&mut samples));
    Ok((round_trips, inputs, checks))
}

fn name(kind: Kind) -> &'static str {
    match kind {
        Kind::Clear => "clear",
        Kind::Private => "private",
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), BenchError> {
    std::fs::write(path, bytes).map_err(BenchError::io(format!("writing {}", path.display())))
}

/// A one-task job of the probe guest that prints its argument and exits.
fn noop_plan(dir: &Path) -> Result<JobPlan, BenchError> {
    write(&dir.join("probe.wasm"), guests::PROBE)?;
    let spec = "module = \"probe.wasm\"\n[[tasks]]\nargs = [\"echo\", \"0\"]\n";
    jobspec::parse(spec, dir).map_err(|error| BenchError::Setup(error.to_string()))
}

/// `input_files` files of random bytes, `input_mib` together, and one task per file that
/// reads it whole.
fn inputs_plan(dir: &Path, options: &PrivateOptions) -> Result<JobPlan, BenchError> {
    let files = dir.join("files");
    std::fs::create_dir_all(&files).map_err(BenchError::io("making the input directory"))?;
    let file_bytes = (u64::from(options.input_mib) << 20) / u64::from(options.input_files.max(1));
    let mut random = rand::rng();
    let mut bytes = vec![0u8; file_bytes as usize];
    for index in 0..options.input_files {
        random.fill(&mut bytes[..]);
        write(&files.join(format!("part-{index:04}")), &bytes)?;
    }
    write(&dir.join("probe.wasm"), guests::PROBE)?;
    let spec = "module = \"probe.wasm\"\n[limits]\ndeadline = \"10m\"\n\
                [per_input]\ndir = \"files\"\nargs = [\"read\", \"/input/{name}\"]\n";
    jobspec::parse(spec, dir).map_err(|error| BenchError::Setup(error.to_string()))
}
