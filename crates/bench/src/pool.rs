//! A pool of real processes on loopback for the benchmarks: the `crowdcloud` binary as the
//! coordinator (durable SQLite, as `up` runs it) and as agents, each with its own data dir.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use client::Client;
use wire::{BlobHash, JobSubmission, Limits, NodeState, TaskSpec};

use crate::BenchError;

pub struct LocalPool {
    binary: PathBuf,
    dir: tempfile::TempDir,
    pub url: String,
    pub owner: Client,
    pub owner_token: String,
    pub join_token: String,
    coordinator: Child,
    /// A second coordinator on the same database, standing by (see [`LocalPool::add_standby`]).
    standby: Option<Child>,
    options: CoordinatorOptions,
    agents: Vec<Child>,
    /// Each agent's arguments beyond the pool's, which it is started again with.
    agent_args: Vec<Vec<String>>,
}

/// A job of `tasks` runs of the no-op module, which ends at once.
pub fn noop_job(name: &str, module: BlobHash, tasks: u32) -> JobSubmission {
    JobSubmission {
        name: name.to_owned(),
        module,
        env: Default::default(),
        mounts: vec![],
        requirements: Default::default(),
        limits: Limits::default(),
        max_attempts: 3,
        replicas: 1,
        deterministic: None,
        verify: None,
        validator: None,
        success_exit_codes: Vec::new(),
        tasks: vec![TaskSpec::default(); tasks as usize],
        checkpoint: None,
        on_failure: None,
        private: None,
    }
}

/// Uploads the no-op module as `owner`.
pub async fn upload_noop(owner: &Client) -> Result<BlobHash, BenchError> {
    let wasm = wat::parse_str(guests::NOOP_WAT).map_err(|e| BenchError::Setup(e.to_string()))?;
    Ok(owner.upload_bytes(wasm.into()).await?)
}

/// How the coordinator of a benchmark pool runs.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    pub lease_ms: u64,
    /// `full` or `process`, as `crowdcloud coordinator --durability`.
    pub durability: String,
    /// `crowdcloud coordinator --nodes-per-join-token`; the coordinator's default if `None`.
    pub nodes_per_join_token: Option<u32>,
    /// `crowdcloud coordinator --connections-max`; derived from the open-files limit if `None`.
    pub connections_max: Option<usize>,
    /// More arguments, such as `--trust public`.
    pub more_args: Vec<String>,
    /// `crowdcloud coordinator --database-url`; SQLite in the data dir if `None`.
    pub database_url: Option<String>,
}

impl Default for CoordinatorOptions {
    fn default() -> Self {
        Self {
            lease_ms: 15_000,
            durability: "full".to_owned(),
            nodes_per_join_token: None,
            connections_max: None,
            more_args: Vec::new(),
            database_url: None,
        }
    }
}

impl LocalPool {
    pub async fn start(
        binary: &Path,
        options: &CoordinatorOptions,
    ) -> Result<LocalPool, BenchError> {
        let dir = tempfile::tempdir().map_err(BenchError::io("a temporary directory"))?;
        let data_dir = dir.path().join("coordinator");
        std::fs::create_dir_all(&data_dir).map_err(BenchError::io("the coordinator's data dir"))?;
        let coordinator = coordinator_process(binary, &data_dir, options)?;
        let url = wait_for_url(&data_dir).await?;
        let owner_token = read_token(&data_dir, "owner.token")?;
        let owner = Client::new(&url, Some(owner_token.clone()))?;
        Ok(LocalPool {
            owner_token,
            binary: binary.to_owned(),
            join_token: read_token(&data_dir, "join.token")?,
            dir,
            url,
            owner,
            coordinator,
            standby: None,
            options: options.clone(),
            agents: Vec::new(),
            agent_args: Vec::new(),
        })
    }

    /// Starts a second coordinator on the same database and tokens, standing by (the first
    /// must run with `--standby`), and gives both URLs to the owner and to agents started from
    /// now on; returns the standby's URL.
    pub async fn add_standby(&mut self) -> Result<String, BenchError> {
        self.wait_leading().await?;
        let data_dir = self.dir.path().join("standby");
        std::fs::create_dir_all(&data_dir).map_err(BenchError::io("the standby's data dir"))?;
        for file in ["owner.token", "join.token"] {
            std::fs::copy(
                self.dir.path().join("coordinator").join(file),
                data_dir.join(file),
            )
            .map_err(BenchError::io("copying the pool's tokens"))?;
        }
        self.standby = Some(coordinator_process(&self.binary, &data_dir, &self.options)?);
        let url = wait_for_url(&data_dir).await?;
        self.url = format!("{},{url}", self.url);
        self.owner = Client::new(&self.url, Some(self.owner_token.clone()))?;
        Ok(url)
    }

    /// Waits until the first coordinator leads its database (one started with `--standby`
    /// answers as a standby until then).
    async fn wait_leading(&self) -> Result<(), BenchError> {
        let leader = wire::CoordinatorRole::Leader;
        if reaches_role(&self.owner, leader, Duration::from_secs(60)).await {
            return Ok(());
        }
        Err(BenchError::Setup(
            "the coordinator did not lead its database within a minute".to_owned(),
        ))
    }

    /// Sends `signal` to the first coordinator: KILL, STOP (it freezes) or CONT.
    pub fn signal_coordinator(&self, signal: rustix::process::Signal) {
        if let Some(pid) = self
            .coordinator
            .id()
            .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
        {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }

    pub fn coordinator_pid(&self) -> Option<u32> {
        self.coordinator.id()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts an agent process; returns its index.
    pub fn spawn_agent(&mut self, name: &str, slots: u32) -> Result<usize, BenchError> {
        let join_token = self.join_token.clone();
        self.spawn_agent_with(name, slots, &join_token, &[])
    }

    /// Starts an agent process that joins with `join_token`, with `more_args` as well;
    /// returns its index.
    pub fn spawn_agent_with(
        &mut self,
        name: &str,
        slots: u32,
        join_token: &str,
        more_args: &[&str],
    ) -> Result<usize, BenchError> {
        let child = self.agent_process(name, slots, join_token, more_args)?;
        self.agents.push(child);
        self.agent_args
            .push(more_args.iter().map(|arg| (*arg).to_owned()).collect());
        Ok(self.agents.len() - 1)
    }

    /// Starts the agent at `index` again, under the same name and data dir (so the same
    /// identity), with the pool's join token: a machine back after its agent died.
    pub fn respawn_agent(
        &mut self,
        index: usize,
        name: &str,
        slots: u32,
    ) -> Result<(), BenchError> {
        let join_token = self.join_token.clone();
        let args = self.agent_args[index].clone();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.agents[index] = self.agent_process(name, slots, &join_token, &args)?;
        Ok(())
    }

    fn agent_process(
        &self,
        name: &str,
        slots: u32,
        join_token: &str,
        more_args: &[&str],
    ) -> Result<Child, BenchError> {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).map_err(BenchError::io("an agent's data dir"))?;
        // Appended to, so that an agent started again keeps its earlier runs' lines.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"))
            .map_err(BenchError::io("an agent's log"))?;
        Command::new(&self.binary)
            .args([
                "agent",
                "--coordinator",
                &self.url,
                "--join-token",
                join_token,
            ])
            .arg("--data-dir")
            .arg(&dir)
            .args([
                "--slots",
                &slots.to_string(),
                "--name",
                name,
                "--drain-secs",
                "2",
            ])
            // A benchmark machine is the pool's: no owner to make way for.
            .arg("--dedicated")
            .args(more_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(BenchError::io("starting an agent"))
    }

    /// Uploads the no-op module as the owner.
    pub async fn upload_noop(&self) -> Result<BlobHash, BenchError> {
        upload_noop(&self.owner).await
    }

    /// The job once it has ended, long-polling; or as it is once `until` has passed.
    pub async fn job_end(
        &self,
        job: wire::JobId,
        until: Option<Instant>,
    ) -> Result<wire::JobStatus, BenchError> {
        loop {
            let status = self
                .owner
                .wait_job_end(job, Duration::from_secs(60))
                .await?;
            if status.state.is_terminal() || until.is_some_and(|until| Instant::now() > until) {
                return Ok(status);
            }
        }
    }

    /// Waits until `count` nodes are online.
    pub async fn wait_online(&self, count: usize) -> Result<(), BenchError> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let nodes = self.owner.nodes().await?;
            let online = nodes
                .nodes
                .iter()
                .filter(|node| node.state == NodeState::Online)
                .count();
            if online >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BenchError::Setup(format!(
                    "only {online} of {count} agents came online within two minutes; their logs end:\n{}",
                    self.log_tails()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of every process's log, for errors (the data dir goes with the pool).
    pub(crate) fn log_tails(&self) -> String {
        let mut tails = String::new();
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            for name in ["agent.log", "coordinator.log"] {
                if let Ok(text) = std::fs::read_to_string(entry.path().join(name)) {
                    let lines: Vec<&str> = text.lines().collect();
                    let tail = lines[lines.len().saturating_sub(3)..].join("\n");
                    tails.push_str(&format!(
                        "{}:\n{tail}\n",
                        entry.file_name().to_string_lossy()
                    ));
                }
            }
        }
        tails
    }

    /// Waits for an agent to exit on its own for at most `limit`; whether it did.
    pub async fn agent_exited(&mut self, index: usize, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.agents[index].wait())
            .await
            .is_ok()
    }

    /// An agent's log so far.
    pub fn agent_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name).join("agent.log")).unwrap_or_default()
    }

    /// SIGTERM: the agent drains and exits, as its owner stops it.
    pub async fn stop_agent(&mut self, index: usize) {
        terminate(&mut self.agents[index]).await;
    }

    /// SIGKILL: the agent dies holding what it holds.
    pub async fn kill_agent(&mut self, index: usize) {
        let _ = self.agents[index].kill().await;
    }

    /// Stops every process gracefully (SIGTERM), then the coordinators.
    pub async fn stop(mut self) {
        for agent in &mut self.agents {
            terminate(agent).await;
        }
        // A frozen coordinator could not hear the signal to stop.
        self.signal_coordinator(rustix::process::Signal::CONT);
        terminate(&mut self.coordinator).await;
        if let Some(standby) = &mut self.standby {
            terminate(standby).await;
        }
    }
}

/// Whether the coordinator `client` reaches says, within `limit`, that it has `role`.
pub async fn reaches_role(client: &Client, role: wire::CoordinatorRole, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(health) = client.health().await
            && health.role == Some(role)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A coordinator process serving from `data_dir` on a port of its own.
fn coordinator_process(
    binary: &Path,
    data_dir: &Path,
    options: &CoordinatorOptions,
) -> Result<Child, BenchError> {
    let log = std::fs::File::create(data_dir.join("coordinator.log"))
        .map_err(BenchError::io("the coordinator's log"))?;
    let mut command = Command::new(binary);
    command.arg("coordinator");
    if let Some(nodes) = options.nodes_per_join_token {
        command.args(["--nodes-per-join-token", &nodes.to_string()]);
    }
    if let Some(connections) = options.connections_max {
        command.args(["--connections-max", &connections.to_string()]);
    }
    if let Some(url) = &options.database_url {
        command.args(["--database-url", url]);
    }
    command
        .args(&options.more_args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(["--lease-ms", &options.lease_ms.to_string()])
        .args(["--durability", &options.durability])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .map_err(BenchError::io("starting the coordinator"))
}

fn read_token(data_dir: &Path, file: &str) -> Result<String, BenchError> {
    std::fs::read_to_string(data_dir.join(file))
        .map(|text| text.trim().to_owned())
        .map_err(BenchError::io(format!("reading {file}")))
}

async fn terminate(child: &mut Child) {
    if let Some(pid) = child
        .id()
        .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

async fn wait_for_url(data_dir: &Path) -> Result<String, BenchError> {
    let path = data_dir.join("coordinator.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(url) = value["url"].as_str()
        {
            return Ok(url.to_owned());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!(
                "the coordinator did not start within a minute; see {}",
                data_dir.join("coordinator.log").display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resident memory of a process, from /proc.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    proc_status_bytes(pid, "VmRSS:")
}

/// The most memory the process `pid` has held at once since it started.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    proc_status_bytes(pid, "VmHWM:")
}

fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
