//! A real pool for tests: the `crowdcloud` binary as coordinator and agent processes on
//! loopback, each with its own data dir, and a requester client.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::process::{Child, Command};

use client::Client;
use wire::{BlobHash, JobId, JobStatus, JobSubmission, Limits, NodeState, TaskSpec};

pub const BINARY: &str = env!("CARGO_BIN_EXE_crowdcloud");

/// Waits for `check` to give `Some`, polling, for at most `limit`; panics with `what` after.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct Pool {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub port: u16,
    pub lease_ms: u64,
    database_url: Option<String>,
    /// More arguments for every start of the coordinator.
    coordinator_args: Vec<String>,
    coordinator: Option<Child>,
    pub owner: Client,
    pub owner_token: String,
    pub join_token: String,
}

pub struct Agent {
    pub dir: PathBuf,
    child: Child,
}

/// A second coordinator of a pool, standing by while the first leads (see [`Pool::add_standby`]).
pub struct Standby {
    pub dir: PathBuf,
    pub url: String,
    /// Killed when the test ends.
    _child: Child,
}

impl Standby {
    /// Whether this coordinator leads the pool now, by its own health.
    pub async fn leads(&self) -> bool {
        coordinator_leads(&self.url).await
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("coordinator.log")).unwrap_or_default()
    }
}

/// Whether the coordinator at `url` says it leads its pool; `false` when it does not answer.
pub async fn coordinator_leads(url: &str) -> bool {
    let Ok(client) = Client::new(url, None) else {
        return false;
    };
    matches!(
        client.health().await,
        Ok(health) if health.role == Some(wire::CoordinatorRole::Leader)
    )
}

impl Agent {
    /// SIGKILL: the process dies at once, holding whatever it held.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("killing an agent");
    }

    /// SIGTERM: the agent drains and exits; returns its exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        signal(&self.child, rustix::process::Signal::TERM);
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the agent exits after SIGTERM")
            .expect("waiting for the agent")
    }

    /// SIGSTOP: the agent stands still, as a machine that hangs or sleeps, holding its work.
    pub fn freeze(&self) {
        signal(&self.child, rustix::process::Signal::STOP);
    }

    /// SIGCONT: a frozen agent goes on.
    pub fn thaw(&self) {
        signal(&self.child, rustix::process::Signal::CONT);
    }

    /// Waits for the agent to exit on its own, for at most `limit`.
    pub async fn exited(&mut self, limit: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("the agent exits on its own")
            .expect("waiting for the agent")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the agent runs")
    }
}

fn signal(child: &Child, signal: rustix::process::Signal) {
    if let Some(pid) = child
        .id()
        .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
    {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

impl Pool {
    pub async fn start(lease_ms: u64) -> Pool {
        Pool::start_on(lease_ms, None).await
    }

    /// A pool whose coordinator keeps its state in the database at `database_url` (SQLite in
    /// its data dir when `None`).
    pub async fn start_on(lease_ms: u64, database_url: Option<String>) -> Pool {
        Pool::start_with(lease_ms, database_url, &[]).await
    }

    /// A pool whose coordinator is started with `coordinator_args` as well.
    pub async fn start_with(
        lease_ms: u64,
        database_url: Option<String>,
        coordinator_args: &[&str],
    ) -> Pool {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let coordinator_args: Vec<String> = coordinator_args
            .iter()
            .map(|arg| (*arg).to_owned())
            .collect();
        let coordinator = spawn_coordinator(
            dir.path(),
            0,
            lease_ms,
            database_url.as_deref(),
            &coordinator_args,
        );
        let url = read_url(dir.path()).await;
        let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
        let owner_token = read_token(dir.path(), "owner.token");
        let join_token = read_token(dir.path(), "join.token");
        let owner = Client::new(&url, Some(owner_token.clone())).unwrap();
        Pool {
            dir,
            url,
            port,
            lease_ms,
            database_url,
            coordinator_args,
            coordinator: Some(coordinator),
            owner,
            owner_token,
            join_token,
        }
    }

    /// The coordinator's process id, to read its memory use from `/proc`.
    pub fn coordinator_pid(&self) -> u32 {
        self.coordinator
            .as_ref()
            .and_then(Child::id)
            .expect("a running coordinator")
    }

    pub fn coordinator_dir(&self) -> PathBuf {
        self.dir.path().join("coordinator")
    }

    /// SIGKILL the coordinator process, then start it again on the same data dir and port.
    pub async fn restart_coordinator_hard(&mut self) {
        self.kill_coordinator().await;
        self.start_coordinator_again().await;
    }

    /// Waits for the coordinator to exit on its own, for at most `limit`.
    pub async fn coordinator_exited(&mut self, limit: Duration) -> std::process::ExitStatus {
        let coordinator = self.coordinator.as_mut().expect("a running coordinator");
        tokio::time::timeout(limit, coordinator.wait())
            .await
            .expect("the coordinator exits on its own")
            .expect("waiting for the coordinator")
    }

    /// SIGKILL the coordinator process and leave it down.
    pub async fn kill_coordinator(&mut self) {
        let mut old = self.coordinator.take().expect("a running coordinator");
        old.kill().await.expect("killing the coordinator");
    }

    /// Starts the coordinator again on the same data dir and port after [`Pool::kill_coordinator`].
    pub async fn start_coordinator_again(&mut self) {
        assert!(self.coordinator.is_none(), "the coordinator is down");
        let _ = std::fs::remove_file(self.coordinator_dir().join("coordinator.json"));
        self.coordinator = Some(spawn_coordinator(
            self.dir.path(),
            self.port,
            self.lease_ms,
            self.database_url.as_deref(),
            &self.coordinator_args,
        ));
        let url = read_url(self.dir.path()).await;
        assert_eq!(url, self.url, "the coordinator came back on its port");
    }

    /// SIGSTOP the coordinator: it stands still, as a machine that hangs, holding its lead.
    pub fn freeze_coordinator(&self) {
        signal(
            self.coordinator.as_ref().expect("a running coordinator"),
            rustix::process::Signal::STOP,
        );
    }

    /// SIGCONT: a frozen coordinator goes on.
    pub fn thaw_coordinator(&self) {
        signal(
            self.coordinator.as_ref().expect("a running coordinator"),
            rustix::process::Signal::CONT,
        );
    }

    /// Starts a second coordinator of this pool, on the same database and with the same tokens,
    /// that stands by (the pool's coordinator must have been started with `--standby`), and
    /// gives both URLs to the owner's client and to agents started from now on.
    pub async fn add_standby(&mut self) -> Standby {
        let dir = self.dir.path().join("standby");
        let data_dir = dir.join("coordinator");
        std::fs::create_dir_all(&data_dir).unwrap();
        for file in ["owner.token", "join.token"] {
            std::fs::copy(self.coordinator_dir().join(file), data_dir.join(file)).unwrap();
        }
        let child = spawn_coordinator(
            &dir,
            0,
            self.lease_ms,
            self.database_url.as_deref(),
            &self.coordinator_args,
        );
        let url = read_url(&dir).await;
        self.url = format!("{},{url}", self.url);
        self.owner = Client::new(&self.url, Some(self.owner_token.clone())).unwrap();
        Standby {
            dir: data_dir,
            url,
            _child: child,
        }
    }

    pub fn coordinator_log(&self) -> String {
        std::fs::read_to_string(self.coordinator_dir().join("coordinator.log")).unwrap_or_default()
    }

    pub async fn agent(&self, name: &str, slots: u32) -> Agent {
        self.agent_labeled(name, slots, &[]).await
    }

    /// An agent with owner labels such as `region=eu`.
    pub async fn agent_labeled(&self, name: &str, slots: u32, labels: &[&str]) -> Agent {
        let label_args: Vec<&str> = labels.iter().flat_map(|label| ["--label", label]).collect();
        self.agent_joined(name, slots, &self.join_token, &label_args)
    }

    /// A join token of its own: nodes that join with it are one more owner.
    pub async fn join_token_for(&self, name: &str) -> String {
        self.owner
            .create_token(&wire::tokens::TokenCreateRequest {
                name: name.to_owned(),
                kind: wire::tokens::ManagedTokenKind::Join,
            })
            .await
            .expect("the owner makes a join token")
            .token
    }

    /// An agent that joins with `join_token`, started with `more_args` as well.
    pub fn agent_joined(
        &self,
        name: &str,
        slots: u32,
        join_token: &str,
        more_args: &[&str],
    ) -> Agent {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        let child = Command::new(BINARY)
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
                "5",
                // Test machines have no owner at the keyboard to wait for.
                "--dedicated",
            ])
            .args(more_args)
            .env("CROWDCLOUD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting an agent");
        Agent { dir, child }
    }

    /// The id of the node listed under `name`, or a panic.
    pub async fn node_id(&self, name: &str) -> wire::NodeId {
        let nodes = self.owner.nodes().await.unwrap();
        let node = nodes.nodes.iter().find(|node| node.name == name);
        node.unwrap_or_else(|| panic!("no node named {name}"))
            .node_id
    }

    /// Waits until the named nodes are online.
    pub async fn wait_online(&self, names: &[&str]) {
        let owner = &self.owner;
        eventually(
            "agents to come online",
            Duration::from_secs(60),
            || async move {
                let nodes = owner.nodes().await.ok()?;
                let online = |name: &&str| {
                    nodes
                        .nodes
                        .iter()
                        .any(|node| node.name == *name && node.state == NodeState::Online)
                };
                names.iter().all(online).then_some(())
            },
        )
        .await
    }

    pub async fn upload_wasm(&self, wasm: &[u8]) -> BlobHash {
        self.owner
            .upload_bytes(Bytes::copy_from_slice(wasm))
            .await
            .expect("uploading a module")
    }

    pub async fn submit(&self, module: BlobHash, tasks: Vec<TaskSpec>, limits: Limits) -> JobId {
        let submission = self.submission(module, tasks, limits);
        self.owner
            .submit(&submission)
            .await
            .expect("submitting a job")
            .job_id
    }

    /// A node that speaks the node protocol by hand (no agent behind it), registered with the
    /// key made from `seed`; it claims whatever a test makes it claim.
    pub async fn raw_node(&self, seed: u8, name: &str, slots: u32) -> Client {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let anonymous = Client::new(&self.url, None).unwrap();
        let challenge = anonymous
            .challenge(&self.join_token)
            .await
            .expect("a registration challenge");
        let request = signed_registration(
            &self.join_token,
            challenge.nonce,
            (&key, &key),
            name,
            slots,
            Default::default(),
        );
        let registered = anonymous
            .register(&request)
            .await
            .expect("registering a node by hand");
        anonymous.with_token(registered.node_token)
    }

    pub fn submission(
        &self,
        module: BlobHash,
        tasks: Vec<TaskSpec>,
        limits: Limits,
    ) -> JobSubmission {
        JobSubmission {
            name: "test".to_owned(),
            module,
            env: Default::default(),
            mounts: vec![],
            requirements: Default::default(),
            limits,
            max_attempts: 5,
            replicas: 1,
            deterministic: None,
            verify: None,
            validator: None,
            success_exit_codes: Vec::new(),
            tasks,
            checkpoint: None,
            on_failure: None,
            private: None,
        }
    }

    /// A requester of its own, with an API token the owner made for it.
    pub async fn requester(&self, name: &str) -> Client {
        self.requester_with_token(name).await.0
    }

    /// [`Pool::requester`], and its token for requests made by hand.
    pub async fn requester_with_token(&self, name: &str) -> (Client, String) {
        let created = self
            .owner
            .create_token(&wire::tokens::TokenCreateRequest {
                name: name.to_owned(),
                kind: wire::tokens::ManagedTokenKind::Requester,
            })
            .await
            .expect("the owner makes a requester token");
        (self.owner.with_token(created.token.clone()), created.token)
    }

    /// Submits a job of `tasks` as `requester`, with default limits.
    pub async fn submit_as(
        &self,
        requester: &Client,
        module: BlobHash,
        tasks: Vec<TaskSpec>,
    ) -> JobId {
        let mut submission = self.submission(module, tasks, Limits::default());
        submission.name = "theirs".to_owned();
        requester
            .submit(&submission)
            .await
            .expect("submitting a job")
            .job_id
    }

    /// Submits a job whose tasks may be tried at most `max_attempts` times.
    pub async fn submit_with_attempts(
        &self,
        module: BlobHash,
        tasks: Vec<TaskSpec>,
        max_attempts: u32,
    ) -> JobId {
        let mut submission = self.submission(module, tasks, Limits::default());
        submission.max_attempts = max_attempts;
        self.owner
            .submit(&submission)
            .await
            .expect("submitting a job")
            .job_id
    }

    /// What a task that ended wrote to stdout, as the owner downloads it.
    pub async fn stdout(&self, task: &wire::TaskStatus) -> Bytes {
        let blob = task.stdout.expect("the task wrote to stdout");
        self.owner
            .download(&blob.hash)
            .await
            .expect("downloading stdout")
    }

    /// Runs the requester CLI against this pool as its owner, with a data dir of its own.
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(BINARY)
            .args(args)
            .env("CROWDCLOUD_COORDINATOR", &self.url)
            .env("CROWDCLOUD_TOKEN", &self.owner_token)
            .env("CROWDCLOUD_DATA_DIR", self.dir.path().join("nowhere"))
            .output()
            .await
            .expect("running the CLI")
    }

    /// Waits for the job to end, for at most `limit`.
    pub async fn finish(&self, job: JobId, limit: Duration) -> JobStatus {
        let owner = &self.owner;
        eventually("the job to end", limit, || async move {
            let status = owner
                .wait_job(job, 0, Duration::from_millis(500))
                .await
                .ok()?;
            status.state.is_terminal().then_some(status)
        })
        .await
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- coordinator log ---\n{}", self.coordinator_log());
            let standby = self.dir.path().join("standby/coordinator/coordinator.log");
            if let Ok(text) = std::fs::read_to_string(standby) {
                eprintln!("--- standby coordinator log ---\n{text}");
            }
            for entry in std::fs::read_dir(self.dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let log = entry.path().join("agent.log");
                if let Ok(text) = std::fs::read_to_string(&log) {
                    eprintln!("--- {} ---\n{text}", log.display());
                }
            }
        }
    }
}

/// The S3 server `scripts/test` started, as every S3 tool finds one: for a coordinator whose
/// blobs live in a bucket (`--blobs s3://…`). Nothing outside it.
pub fn s3_env() -> Vec<(&'static str, String)> {
    let Ok(endpoint) = std::env::var("CROWDCLOUD_TEST_S3_ENDPOINT") else {
        return Vec::new();
    };
    vec![
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
    ]
}

fn spawn_coordinator(
    dir: &Path,
    port: u16,
    lease_ms: u64,
    database_url: Option<&str>,
    extra_args: &[String],
) -> Child {
    let data_dir = dir.join("coordinator");
    std::fs::create_dir_all(&data_dir).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.join("coordinator.log"))
        .unwrap();
    Command::new(BINARY)
        .arg("coordinator")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--lease-ms", &lease_ms.to_string()])
        .args(database_url.iter().flat_map(|url| ["--database-url", url]))
        .args(extra_args)
        .envs(s3_env())
        .env("CROWDCLOUD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("starting the coordinator")
}

async fn read_url(dir: &Path) -> String {
    announced(&dir.join("coordinator"), "url").await
}

/// A field of the `coordinator.json` the coordinator in `data_dir` announces itself in, once
/// it has.
pub async fn announced(data_dir: &Path, field: &str) -> String {
    let path = data_dir.join("coordinator.json");
    let path = &path;
    eventually(
        "the coordinator to announce itself",
        Duration::from_secs(30),
        || async move {
            let text = std::fs::read_to_string(path).ok()?;
            let value: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some(value[field].as_str()?.to_owned())
        },
    )
    .await
}

fn read_token(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join("coordinator").join(file))
        .expect("the coordinator wrote its tokens")
        .trim()
        .to_owned()
}

/// A task of the probe guest.
/// A registration of `keys.0` over `nonce`, signed by `keys.1` (the same key unless a test
/// forges).
pub fn signed_registration(
    join_token: &str,
    nonce: String,
    keys: (&ed25519_dalek::SigningKey, &ed25519_dalek::SigningKey),
    name: &str,
    slots: u32,
    labels: std::collections::BTreeMap<String, String>,
) -> wire::RegisterRequest {
    use ed25519_dalek::Signer;
    let (key, signer) = keys;
    let mut request = wire::RegisterRequest {
        join_token: join_token.to_owned(),
        public_key: hex::encode(key.verifying_key().to_bytes()),
        signature: String::new(),
        nonce,
        name: name.to_owned(),
        capabilities: wire::Capabilities {
            cores: 1,
            memory_bytes: 1 << 30,
            disk_free_bytes: 1 << 30,
            arch: std::env::consts::ARCH.to_owned(),
            os: std::env::consts::OS.to_owned(),
            module_bytes_max: wire::limits::MODULE_BYTES_MAX,
            wasi_interfaces: Vec::new(),
            wasm_features: Vec::new(),
            runtime: wire::NodeRuntime::Native,
            encryption_key: None,
            peer_address: None,
        },
        labels,
        slots,
        agent_version: "test".to_owned(),
    };
    let message = wire::auth::registration_message(&request);
    request.signature = hex::encode(signer.sign(&message).to_bytes());
    request
}

pub fn probe(args: &[&str]) -> TaskSpec {
    TaskSpec {
        args: args.iter().map(|arg| (*arg).to_owned()).collect(),
        ..TaskSpec::default()
    }
}
