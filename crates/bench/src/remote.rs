//! `crowdcloud bench dispatch --remote`: no-op tasks for a pool whose one agent is away from
//! home, over each path a device may take, side by side in one run: the LAN (the device on
//! the home router's LAN, plain HTTPS), a hole punched through two home routers (the remote
//! path, direct), and two routers that let no hole through (the remote path, through a relay
//! of our own). Each path is a `netlab` internet of its own: the coordinator (`up --remote`)
//! at home, the agent in a café joined by code, the relay on a public address.
//!
//! Per path: the time from the agent's start to its first lease (a task seen running), the
//! throughput of one job of no-op tasks, and the round trip of one-task jobs submitted at home
//! with a wait, as in `bench dispatch`. After the run, the café's `doctor` says which path it
//! took, so a path's label is checked, not assumed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use client::Client;
use wire::JobState;

use crate::netlab::{Home, Nat, Netlab, home_address, public_address};
use crate::report::{Better, Machine};
use crate::{BenchError, Check, Figure, Percentiles, Report};

#[derive(Debug, Clone, Serialize)]
pub struct RemoteOptions {
    pub tasks: u32,
    pub slots: u32,
    pub round_trips: u32,
    pub durability: String,
}

/// How the café reaches home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Lan,
    Direct,
    Relay,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Lan => "LAN",
            Way::Direct => "direct",
            Way::Relay => "relay",
        }
    }

    /// The first words of the café's `doctor` line for this path.
    fn doctor_says(self) -> Option<&'static str> {
        match self {
            Way::Lan => None,
            Way::Direct => Some("direct to"),
            Way::Relay => Some("through the relay"),
        }
    }
}

/// What one path measured.
struct Measured {
    first_lease_ms: f64,
    tasks_per_s: f64,
    round_trip: Percentiles,
    checks: Vec<Check>,
}

pub async fn run(binary: &Path, options: &RemoteOptions) -> Result<Report, BenchError> {
    let mut measured = Vec::new();
    for way in [Way::Lan, Way::Direct, Way::Relay] {
        measured.push((way, on_a_thread_of_its_own(binary, options, way).await?));
    }
    let lan = &measured[0].1;
    let mut figures = Vec::new();
    let mut checks = Vec::new();
    for (way, path) in &measured {
        let baseline = |figure: Figure, lan_value: f64| match way {
            Way::Lan => figure,
            _ => figure.baseline("LAN path, same run", Some(lan_value)),
        };
        let name = way.name();
        figures.push(baseline(
            Figure::new(
                &format!("agent start to first lease, {name}"),
                path.first_lease_ms,
                "ms",
                Better::Lower,
            ),
            lan.first_lease_ms,
        ));
        figures.push(baseline(
            Figure::new(
                &format!("throughput, {name}"),
                path.tasks_per_s,
                "tasks/s",
                Better::Higher,
            ),
            lan.tasks_per_s,
        ));
        for (which, value, lan_value) in [
            ("p50", path.round_trip.p50_ms, lan.round_trip.p50_ms),
            ("p99", path.round_trip.p99_ms, lan.round_trip.p99_ms),
        ] {
            let figure = Figure::new(
                &format!("round trip {which}, {name}"),
                value,
                "ms",
                Better::Lower,
            );
            figures.push(baseline(figure, lan_value));
        }
        checks.extend(path.checks.iter().cloned());
    }
    Ok(Report {
        benchmark: "dispatch --remote".to_owned(),
        machine: Machine::this(),
        parameters: serde_json::to_value(options).unwrap_or_default(),
        figures,
        checks,
    })
}

/// Measures `way` from a thread that lives on home's network, with a runtime of its own: a
/// thread of a shared pool must not be moved to another network.
async fn on_a_thread_of_its_own(
    binary: &Path,
    options: &RemoteOptions,
    way: Way,
) -> Result<Measured, BenchError> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let (binary, options) = (binary.to_owned(), options.clone());
    std::thread::spawn(move || {
        let _ = sender.send(measure_away(&binary, &options, way));
    });
    receiver
        .await
        .map_err(|_| BenchError::Setup(format!("measuring the {} path stopped", way.name())))?
}

fn measure_away(binary: &Path, options: &RemoteOptions, way: Way) -> Result<Measured, BenchError> {
    let lab = match way {
        Way::Lan => {
            let home = Home {
                router: "homegw",
                nat: Nat::Easy,
                machines: &["home", "cafe"],
            };
            Netlab::internet(&[home], &["relay"])?
        }
        Way::Direct | Way::Relay => {
            let nat = if way == Way::Direct {
                Nat::Easy
            } else {
                Nat::Hard
            };
            let homes = [
                Home {
                    router: "homegw",
                    nat,
                    machines: &["home"],
                },
                Home {
                    router: "cafegw",
                    nat,
                    machines: &["cafe"],
                },
            ];
            Netlab::internet(&homes, &["relay"])?
        }
    };
    lab.enter("home")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(BenchError::io("a runtime on home's network"))?;
    let relay_ip = public_address(if way == Way::Lan { 1 } else { 2 });
    runtime.block_on(measure_on(&lab, binary, options, way, &relay_ip))
}

/// The processes of one path's lab, each with its data dir; killed on drop.
struct Processes<'a> {
    lab: &'a Netlab,
    binary: PathBuf,
    dir: tempfile::TempDir,
    children: Vec<tokio::process::Child>,
}

impl Processes<'_> {
    fn data_dir(&self, machine: &str) -> PathBuf {
        self.dir.path().join(machine)
    }

    fn command(&self, machine: &str, args: &[&str]) -> Result<tokio::process::Command, BenchError> {
        let data_dir = self.data_dir(machine);
        std::fs::create_dir_all(&data_dir).map_err(BenchError::io("a machine's data dir"))?;
        let mut command = self.lab.command(machine, &self.binary);
        command
            .args(args)
            .env("CROWDCLOUD_DATA_DIR", &data_dir)
            .env_remove("CROWDCLOUD_COORDINATOR")
            .env_remove("CROWDCLOUD_TOKEN")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        Ok(command)
    }

    /// Starts `crowdcloud ARGS` on `machine`; the file its stdout goes to.
    fn spawn(&mut self, machine: &str, args: &[&str]) -> Result<PathBuf, BenchError> {
        let mut command = self.command(machine, args)?;
        let out = self.data_dir(machine).join(format!("{}.out", args[0]));
        let err = self.data_dir(machine).join(format!("{}.err", args[0]));
        let file = |path: &Path| std::fs::File::create(path).map_err(BenchError::io("a log"));
        command.stdout(file(&out)?).stderr(file(&err)?);
        let child = command
            .spawn()
            .map_err(BenchError::io("starting crowdcloud"))?;
        self.children.push(child);
        Ok(out)
    }

    /// Runs `crowdcloud ARGS` on `machine` to its end; its stdout.
    async fn run(&self, machine: &str, args: &[&str]) -> Result<String, BenchError> {
        let output = self
            .command(machine, args)?
            .output()
            .await
            .map_err(BenchError::io("running crowdcloud"))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// The rest of the line of `out` (a process's stdout, as a file) that starts with `label`,
/// once it is written, looking for at most a minute: a banner line of `up` or `relay`.
pub async fn banner_line(out: &Path, label: &str) -> Result<String, BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        let found = text
            .lines()
            .find_map(|line| line.trim_start().strip_prefix(label));
        if let Some(rest) = found {
            return Ok(rest.trim().to_owned());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!(
                "{} never said {label:?}",
                out.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the café is given to join: the pool's URL or address, and its join code.
struct Pool {
    owner: Client,
    reach: String,
    code: String,
}

/// The arguments of `crowdcloud up` for a family server on its LAN with no slots of its own,
/// reachable away from home through `relay`, whose certificate it pins as `relay_fingerprint`:
/// the pool of the remote benchmark and of the remote tests alike.
pub fn up_through(relay: &str, relay_fingerprint: &str) -> Vec<String> {
    let up = ["up", "--lan", "--no-advertise", "--slots", "0", "--remote"];
    let mut args: Vec<String> = up.iter().map(|arg| (*arg).to_owned()).collect();
    args.extend(["--relay", relay, "--relay-fingerprint", relay_fingerprint].map(str::to_owned));
    args
}

/// The relay, then the pool at home reachable through it.
async fn relay_and_home(
    machines: &mut Processes<'_>,
    options: &RemoteOptions,
    way: Way,
    relay_ip: &str,
) -> Result<Pool, BenchError> {
    let listen = format!("{relay_ip}:3340");
    let relay_out = machines.spawn("relay", &["relay", "--listen", &listen])?;
    let relay_fingerprint = banner_line(&relay_out, "certificate:").await?;
    let relay = format!("http://{listen}");
    let mut up = up_through(&relay, &relay_fingerprint);
    up.extend(["--durability".to_owned(), options.durability.clone()]);
    let up: Vec<&str> = up.iter().map(String::as_str).collect();
    let home_out = machines.spawn("home", &up)?;
    let fingerprint = banner_line(&home_out, "certificate:").await?;
    let address = banner_line(&home_out, "remote:").await?;
    let code = banner_line(&home_out, "join code:").await?;
    let token_file = machines.data_dir("home").join("owner.token");
    let token = std::fs::read_to_string(&token_file).map_err(BenchError::io("owner.token"))?;
    let url = format!("https://{}:7878", home_address(0, 0));
    let fingerprint = fingerprint
        .parse()
        .map_err(|_| BenchError::Setup(format!("home printed no fingerprint: {fingerprint}")))?;
    Ok(Pool {
        owner: Client::pinned(&url, Some(token.trim().to_owned()), fingerprint)?,
        reach: if way == Way::Lan { url } else { address },
        code: code
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned(),
    })
}

async fn measure_on(
    lab: &Netlab,
    binary: &Path,
    options: &RemoteOptions,
    way: Way,
    relay_ip: &str,
) -> Result<Measured, BenchError> {
    let mut machines = Processes {
        lab,
        binary: binary.to_owned(),
        dir: tempfile::tempdir().map_err(BenchError::io("a temporary directory"))?,
        children: Vec::new(),
    };
    let pool = relay_and_home(&mut machines, options, way, relay_ip).await?;
    let join = ["join", "--code", &pool.code, "--coordinator", &pool.reach];
    machines.run("cafe", &join).await?;
    let owner = &pool.owner;
    let module = crate::pool::upload_noop(owner).await?;
    let first = owner.submit(&noop_job(module, 1)).await?;
    let started = Instant::now();
    let slots = options.slots.to_string();
    let agent = ["agent", "--slots", &slots, "--name", "cafe", "--dedicated"];
    machines.spawn("cafe", &agent)?;
    let first_lease_ms = first_lease(owner, first.job_id, started).await?;
    let mut checks = Vec::new();
    let name = way.name();
    let warm_up = owner.submit(&noop_job(module, options.slots * 4)).await?;
    owner
        .wait_job_end(warm_up.job_id, Duration::from_secs(60))
        .await?;

    let began = Instant::now();
    let job = owner.submit(&noop_job(module, options.tasks)).await?;
    let status = job_end(owner, job.job_id).await?;
    let tasks_per_s = f64::from(options.tasks) / began.elapsed().as_secs_f64();
    checks.push(Check::new(
        format!("{name}: all {} tasks succeeded", options.tasks),
        status.state == JobState::Completed && status.tasks.succeeded == options.tasks,
    ));
    let round_trip = round_trips(owner, module, options.round_trips, name, &mut checks).await?;
    if let Some(said) = way.doctor_says() {
        let report = machines
            .run("cafe", &["doctor", "--json", "--discovery-ms", "200"])
            .await?;
        checks.push(Check::new(
            format!("{name}: the café's doctor says it reaches the pool {said}"),
            doctor_path(&report).is_some_and(|path| path.starts_with(said)),
        ));
    }
    Ok(Measured {
        first_lease_ms,
        tasks_per_s,
        round_trip,
        checks,
    })
}

fn noop_job(module: wire::BlobHash, tasks: u32) -> wire::JobSubmission {
    crate::pool::noop_job("bench-remote", module, tasks)
}

/// Milliseconds from `started` until the job's one task is seen leased (running or ended),
/// looking every 5 ms.
async fn first_lease(
    owner: &Client,
    job: wire::JobId,
    started: Instant,
) -> Result<f64, BenchError> {
    let deadline = started + Duration::from_secs(120);
    loop {
        let status = owner.job(job).await?;
        if status.tasks.running + status.tasks.ended() > 0 {
            return Ok(started.elapsed().as_secs_f64() * 1000.0);
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(
                "the café's agent leased nothing within 120 s".to_owned(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn job_end(owner: &Client, job: wire::JobId) -> Result<wire::JobStatus, BenchError> {
    loop {
        let status = owner.wait_job_end(job, Duration::from_secs(60)).await?;
        if status.state.is_terminal() {
            return Ok(status);
        }
    }
}

async fn round_trips(
    owner: &Client,
    module: wire::BlobHash,
    count: u32,
    name: &str,
    checks: &mut Vec<Check>,
) -> Result<Percentiles, BenchError> {
    let mut samples = Vec::with_capacity(count as usize);
    let mut completed = 0;
    for _ in 0..count.max(1) {
        let began = Instant::now();
        let job = owner
            .submit_and_wait(&noop_job(module, 1), Duration::from_secs(60))
            .await?;
        let state = match job.status {
            Some(status) if status.state.is_terminal() => status.state,
            _ => job_end(owner, job.job_id).await?.state,
        };
        samples.push(began.elapsed());
        completed += u32::from(state == JobState::Completed);
    }
    checks.push(Check::new(
        format!("{name}: all {} round trips completed", samples.len()),
        completed as usize == samples.len(),
    ));
    Ok(Percentiles::of(&mut samples))
}

/// What `doctor --json` says of the remote path, if it checked one.
fn doctor_path(report: &str) -> Option<String> {
    let report: serde_json::Value = serde_json::from_str(report).ok()?;
    let checks = report["joined"]["checks"].as_array()?;
    let path = checks.iter().find(|check| check["what"] == "remote path")?;
    Some(path["detail"].as_str()?.to_owned())
}
