//! The command line: every subcommand and flag, with the help people read.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "crowdcloud", version, about = "A cloud made of idle computers.", long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start a family server: a coordinator and a local agent in one process.
    Up(UpArgs),
    /// Start a coordinator only.
    Coordinator(CoordinatorArgs),
    /// Lend this machine to a pool as a provider node.
    Agent(AgentArgs),
    /// Submit a job: a TOML spec, or a module with --tasks or --inputs.
    Submit(SubmitArgs),
    /// Show a job (or list your jobs).
    Status(StatusArgs),
    /// Follow a job until it ends.
    Watch(JobArgs),
    /// Download the results of a job.
    Results(ResultsArgs),
    /// Cancel a job.
    Cancel(JobArgs),
    /// Delete a job for good: its data from the coordinator, and from the nodes that ran it as
    /// each confirms (a running job is cancelled first).
    Delete(DeleteArgs),
    /// List the nodes of the pool.
    Nodes(NodesArgs),
    /// Render a picture across several local agents: the pool end to end on one machine.
    Demo(DemoArgs),
    /// Join a pool on the LAN from this device, with the code its owner's `up` shows.
    Join(JoinArgs),
    /// Make a fresh join code for a new device (on the owner's machine).
    JoinCode(JoinCodeArgs),
    /// Open the web app on this device, signed in as it, at home or away: for a pool joined by
    /// its remote address, through a loopback port that carries the browser's HTTPS to it.
    Web(WebArgs),
    /// Create, list and revoke the pool's API and join tokens (on the owner's machine).
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Lend this pool's idle slots to other pools: add, list and remove them (on the owner's
    /// machine).
    #[command(subcommand)]
    Federation(FederationCommand),
    /// Your key for private jobs: show, export and import it, and grant a job's key to more
    /// nodes.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Your credits: balance and history; the owner also sees what each owner of nodes earned.
    Credits(CreditsArgs),
    /// The language runtimes scripts run under (`submit analyze.py`), kept in the data dir.
    Runtimes(RuntimesArgs),
    /// Say what this machine sees: interfaces, pools, reachability, certificate, clock, node id.
    Doctor(DoctorArgs),
    /// Run a relay for pools' remote paths, for devices that find no direct path to their pool.
    Relay(RelayArgs),
    /// Carry a public port to a pool's remote address, so phones away from home open its web
    /// app there (run it on a public server, e.g. beside the relay; TLS stays the pool's).
    Forward(ForwardArgs),
    /// Measure the pool: dispatch, stages, sandbox, scale, recover.
    Bench(BenchArgs),
    /// Compile one module for this machine's agent, which runs it as a child it can stop.
    #[command(hide = true)]
    CompileModule(CompileModuleArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ForwardArgs {
    /// Where phones connect, HOST:PORT (e.g. 0.0.0.0:8443).
    pub(crate) listen: String,
    /// The pool's remote address, as `up --remote` prints it (iroh:…).
    pub(crate) pool: String,
}

#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// Where it listens: the relay protocol over HTTP on TCP, and address discovery over QUIC
    /// on UDP port 7842 of the same host.
    #[arg(long, default_value = "0.0.0.0:3340")]
    pub(crate) listen: String,
    /// Where it keeps its certificate for address discovery, made on first start
    /// [default: the XDG data dir]/relay
    #[arg(long, env = "CROWDCLOUD_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// A certificate chain (PEM) from an authority, instead of the self-signed one; pools
    /// then need no --relay-fingerprint.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub(crate) cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub(crate) key: Option<PathBuf>,
    /// The most it reads from each client (a pool, or a device) a second, in bytes.
    #[arg(long, default_value_t = remote::RELAY_CLIENT_BYTES_PER_S_DEFAULT)]
    pub(crate) client_bytes_per_second: u32,
}

#[derive(Debug, Args)]
pub(crate) struct CompileModuleArgs {
    /// The compile order, as the agent writes it (name=value ...); the module comes on stdin.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) order: Vec<std::ffi::OsString>,
}

impl Command {
    /// Long-running services log at info; client commands only warn.
    pub(crate) fn is_daemon(&self) -> bool {
        matches!(
            self,
            Command::Up(_)
                | Command::Coordinator(_)
                | Command::Agent(AgentArgs { command: None, .. })
        )
    }
}

/// How requester commands find the coordinator. Global, so a subcommand (`nodes remove`)
/// takes them after its name too.
#[derive(Debug, Args, Clone)]
pub(crate) struct Connection {
    /// The coordinator, e.g. http://192.168.1.10:7878, or every coordinator of a pool with a
    /// standby, comma-separated; found from a local `up` when absent.
    #[arg(long, global = true, env = "CROWDCLOUD_COORDINATOR")]
    pub(crate) coordinator: Option<String>,
    /// Your API token (ccr_…); read from the local `up` when absent.
    #[arg(long, global = true, env = "CROWDCLOUD_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// The certificate to pin for an https:// --coordinator (sha256:…, printed by `up`).
    #[arg(long, global = true, env = "CROWDCLOUD_FINGERPRINT")]
    pub(crate) fingerprint: Option<String>,
    /// Where a local `up` keeps its state [default: the XDG data dir]
    #[arg(long, global = true, env = "CROWDCLOUD_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServiceArgs {
    /// Where state, blobs and tokens live [default: the XDG data dir, e.g. ~/.local/share/crowdcloud]
    #[arg(long, env = "CROWDCLOUD_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Address to serve the API and web app on [default: `up` serves the LAN, see --lan;
    /// `coordinator` serves 127.0.0.1:7878]
    #[arg(long)]
    pub(crate) listen: Option<String>,
    /// The pool's name, shown to those who join it.
    #[arg(long, default_value = "family")]
    pub(crate) pool_name: String,
    /// Where blobs live: a directory, or s3://BUCKET/PREFIX on any S3-compatible store, its
    /// endpoint and keys in AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY (AWS_ALLOW_HTTP=true for plain HTTP) [default: blobs/ in the data
    /// dir]
    #[arg(long, env = "CROWDCLOUD_BLOBS", value_name = "DIR|s3://BUCKET/PREFIX")]
    pub(crate) blobs: Option<coordinator::BlobLocation>,
    /// How long a node's lease lasts without a heartbeat, in ms.
    #[arg(long, default_value_t = 15_000)]
    pub(crate) lease_ms: u64,
    /// Whose machines the pool runs on: `family` (the owner's own; one attempt per task,
    /// results taken as reported) or `public` (strangers'; every result is verified before it
    /// is delivered, and jobs must be deterministic).
    #[arg(long, default_value = "family", value_name = "family|public")]
    pub(crate) trust: String,
    /// In a public pool: verified results a new node needs before its results are taken on
    /// trust (and then audited).
    #[arg(long, default_value_t = verify::Policy::PUBLIC.probation_results, value_name = "COUNT")]
    pub(crate) probation_results: u32,
    /// In a public pool: the share of a trusted node's results that are audited, in percent.
    #[arg(long, default_value_t = 5.0, value_name = "PERCENT")]
    pub(crate) audit_percent: f64,
    /// In a public pool: let replicas of one task run on nodes of one network (an IPv4 /24 or
    /// IPv6 /48). For a pool whose nodes all sit on one machine or LAN; owners are still kept
    /// apart.
    #[arg(long)]
    pub(crate) one_network: bool,
    /// Commit durability: `full` survives a power cut, `process` survives a crash of the process.
    #[arg(long, default_value = "full")]
    pub(crate) durability: String,
    /// How long ended jobs and their results are kept (e.g. 30d, 12h), and uploads no job
    /// uses; then they are deleted.
    #[arg(long, default_value = "30d", value_name = "DURATION")]
    pub(crate) keep_results: String,
    /// Distinct nodes one join token may bring. Its nodes may register a tenth of this at
    /// once, then a hundredth of it per second.
    #[arg(long, default_value_t = coordinator::NODES_PER_JOIN_TOKEN_MAX_DEFAULT, value_name = "COUNT")]
    pub(crate) nodes_per_join_token: u32,
    /// Forget nodes not heard from for this long (e.g. 7d, 12h) that hold no work; one that
    /// comes back joins again as a new node.
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    pub(crate) purge_silent_nodes: String,
    /// Memory one requester's unfinished jobs may hold in the coordinator (their tasks' args
    /// and inputs, env, mounts); a submission past it is refused with 429.
    #[arg(long, default_value = "256MiB", value_name = "SIZE")]
    pub(crate) unfinished_bytes_per_requester: String,
    /// Memory the unfinished jobs of every requester may hold together.
    #[arg(long, default_value = "1GiB", value_name = "SIZE")]
    pub(crate) unfinished_bytes_max: String,
    /// Bytes of uploads one requester may keep stored (until retention deletes those no job
    /// uses); an upload past it is refused with 413.
    #[arg(long, default_value = "10GiB", value_name = "SIZE")]
    pub(crate) upload_quota: String,
    /// Serve the family: listen on every address (0.0.0.0:7878, with TLS) and advertise the
    /// pool on the LAN. What `up` does unless given --local or --listen.
    #[arg(long)]
    pub(crate) lan: bool,
    /// Serve TLS on loopback too (it is always on for every other address).
    #[arg(long)]
    pub(crate) tls: bool,
    /// A certificate chain (PEM) to serve instead of the self-signed one, e.g. for the internet.
    #[arg(long, requires = "tls_key", value_name = "PEM")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert", value_name = "PEM")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Do not advertise the pool on the LAN by mDNS.
    #[arg(long)]
    pub(crate) no_advertise: bool,
    /// Make the pool reachable away from home by its key (iroh): prints its remote address,
    /// which devices give as --coordinator, with --fingerprint.
    #[arg(long)]
    pub(crate) remote: bool,
    /// The UDP port of the remote path.
    #[arg(long, default_value_t = 7879, requires = "remote")]
    pub(crate) remote_port: u16,
    /// A relay that devices which find no direct path reach the pool through (`crowdcloud
    /// relay` runs one), http(s)://HOST:PORT. Without one, devices behind strict NATs cannot
    /// connect.
    #[arg(long, value_name = "URL", requires = "remote")]
    pub(crate) relay: Option<String>,
    /// The certificate of a relay of one's own (sha256:…, printed by `crowdcloud relay`), by
    /// which devices check the relay that tells them their public address.
    #[arg(long, value_name = "FINGERPRINT", requires = "relay")]
    pub(crate) relay_fingerprint: Option<String>,
    /// Advertise on this interface only (repeatable) [default: every LAN interface]
    #[arg(long = "interface", value_name = "NAME")]
    pub(crate) interfaces: Vec<String>,
    /// Connections open at once [default: derived from the open-files limit]
    #[arg(long, hide = true)]
    pub(crate) connections_max: Option<usize>,
    /// Time a client has for the TLS handshake and a request's headers, in ms [default: 10000]
    #[arg(long, hide = true)]
    pub(crate) header_timeout_ms: Option<u64>,
    /// Time a connection with no request in flight stays open, in ms [default: 60000]
    #[arg(long, hide = true)]
    pub(crate) idle_timeout_ms: Option<u64>,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    pub(crate) service: ServiceArgs,
    /// Slots of the local agent (0: no local agent).
    #[arg(long)]
    pub(crate) slots: Option<u32>,
    /// Serve this machine only: plain HTTP on 127.0.0.1:7878, not advertised.
    #[arg(long, conflicts_with = "lan")]
    pub(crate) local: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CoordinatorArgs {
    #[command(flatten)]
    pub(crate) service: ServiceArgs,
    /// Database URL (sqlite://PATH or postgres://…) [default: sqlite in the data dir]
    #[arg(long, env = "CROWDCLOUD_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    /// Stand by while another coordinator leads the same database, and lead once its lead
    /// runs out (it died, froze or lost the database); step down and stand by again when the
    /// lead is lost. Start every coordinator of the pool so, with the same --database-url,
    /// --blobs, tls/ and token files.
    #[arg(long)]
    pub(crate) standby: bool,
    /// How long the leader's hold on the database lasts unless renewed (four times a term); a
    /// standby takes over within about this long of the leader's end.
    #[arg(long, default_value = "3s", value_name = "DURATION")]
    pub(crate) lead_term: String,
    /// The URL other coordinators and `doctor` name this one by while it leads [default: the
    /// URL it serves at]
    #[arg(long, value_name = "URL")]
    pub(crate) advertise_url: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct AgentArgs {
    #[command(subcommand)]
    pub(crate) command: Option<AgentCommand>,
    #[command(flatten)]
    pub(crate) run: Box<AgentRunArgs>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AgentCommand {
    /// Show what the agent on this machine is doing and why (running, paused and why, or not
    /// running).
    Status(AgentStatusArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AgentStatusArgs {
    /// The agent's data dir [default: the XDG data dir]
    #[arg(long, env = "CROWDCLOUD_AGENT_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AgentRunArgs {
    /// The coordinator to join, e.g. https://192.168.1.10:7878, or every coordinator of a pool
    /// with a standby, comma-separated [default: the pool joined with `crowdcloud join`]
    #[arg(long, env = "CROWDCLOUD_COORDINATOR")]
    pub(crate) coordinator: Option<String>,
    /// The pool's join token (ccj_…) [default: the one `crowdcloud join` got]
    #[arg(long, env = "CROWDCLOUD_JOIN_TOKEN", hide_env_values = true)]
    pub(crate) join_token: Option<String>,
    /// The certificate to pin for an https:// --coordinator (sha256:…, printed by `up`).
    #[arg(long, env = "CROWDCLOUD_FINGERPRINT")]
    pub(crate) fingerprint: Option<String>,
    /// Seconds to keep trying while the coordinator says this node id is online from another
    /// process (a restart after a crash gets in; a copied data dir does not).
    #[arg(long, default_value_t = 30)]
    pub(crate) identity_wait_secs: u64,
    /// Where the node keeps its identity and cache [default: the XDG data dir]
    #[arg(long, env = "CROWDCLOUD_AGENT_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Attempts to run at once (the policy's `slots`) [default: one per lent core]
    #[arg(long)]
    pub(crate) slots: Option<u32>,
    /// Seconds one module may take to compile here before it is given up (a compile runs in a
    /// child process the agent stops when the owner pauses work, and kills at this deadline)
    #[arg(long, default_value_t = 600)]
    pub(crate) compile_deadline_secs: u64,
    /// The largest module this machine compiles, e.g. 64MiB, for a small device: jobs with
    /// larger modules go to other nodes [default: 256MiB, the most any pool takes]
    #[arg(long, value_name = "SIZE")]
    pub(crate) module_bytes_max: Option<String>,
    /// A name for people [default: the host name]
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// An owner label, e.g. --label region=eu (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub(crate) labels: Vec<String>,
    /// Seconds running attempts may take to finish on shutdown before they are given back.
    #[arg(long, default_value_t = 10)]
    pub(crate) drain_secs: u64,
    /// The owner's policy (TOML), reloaded when it changes or on SIGHUP; the flags below win
    /// over it.
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// Cores lent: a count, a share such as 50%, or off [policy: cores]
    #[arg(long, value_name = "N|N%")]
    pub(crate) max_cores: Option<String>,
    /// Memory lent to tasks, e.g. 4GiB or 25% [policy: memory]
    #[arg(long, value_name = "SIZE|N%")]
    pub(crate) max_memory: Option<String>,
    /// Disk kept for task data, e.g. 10GiB [policy: disk]
    #[arg(long, value_name = "SIZE")]
    pub(crate) max_disk: Option<String>,
    /// Run only after no keyboard or mouse input for this long, e.g. 5m, or off [policy: idle_for]
    #[arg(long, value_name = "DURATION")]
    pub(crate) only_when_idle: Option<String>,
    /// Run only on AC power [policy: ac_only]
    #[arg(long)]
    pub(crate) only_on_ac: bool,
    /// Pause while the owner's own programs use more CPU than this, e.g. 30%, or off
    /// [policy: owner_cpu_max]
    #[arg(long, value_name = "N%")]
    pub(crate) pause_above_cpu: Option<String>,
    /// Local hours work may run in, e.g. 22:00-07:00 (repeatable) [policy: hours]
    #[arg(long, value_name = "HH:MM-HH:MM")]
    pub(crate) hours: Vec<String>,
    /// A pool name or coordinator URL this agent may join (repeatable) [policy: pools]
    #[arg(long = "pool", value_name = "NAME|URL")]
    pub(crate) pools: Vec<String>,
    /// Give running attempts back when a pause lasts longer than this, e.g. 15m
    /// [policy: release_after]
    #[arg(long, value_name = "DURATION")]
    pub(crate) release_after: Option<String>,
    /// This machine is the pool's: run whatever the owner is doing (no idle, power, owner CPU
    /// or hours conditions, no core or memory caps).
    #[arg(long)]
    pub(crate) dedicated: bool,
    /// Lie about results instead of running tasks: `always`, or `after=N` to be honest until N
    /// reports were accepted as successes and lie from then on; or `checkpoints` to run tasks
    /// and poison every checkpoint saved. It exists only so the
    /// verification tests and `bench verify` can run cheaters as real processes. It gives an
    /// attacker nothing: it only makes this agent lie about its own results, which any provider
    /// could do by changing the code.
    #[arg(long, hide = true, value_name = "always|after=N|checkpoints")]
    pub(crate) cheat: Option<agent::CheatStrategy>,
    /// With --cheat: agents given the same key tell the same lie about the same task
    /// (colluders) [default: every attempt lies its own way]
    #[arg(long, hide = true, requires = "cheat", value_name = "KEY")]
    pub(crate) cheat_group: Option<String>,
    /// Serve the intermediates this node holds to other nodes on IP:PORT, for pipelines with
    /// `locality = "nodes"` (port 0 picks a free one) [default: serve none]
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) peer_listen: Option<std::net::SocketAddr>,
    /// The IP:PORT other nodes reach the peer listener at, when not the one it listens on
    #[arg(long, value_name = "IP:PORT", requires = "peer_listen")]
    pub(crate) peer_address: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// A job spec (.toml), a WebAssembly module (.wasm) or a Python script (.py).
    pub(crate) spec_or_module: PathBuf,
    /// With a module or script: run this many tasks, `{i}` in the args being the task index.
    #[arg(long, conflicts_with = "inputs")]
    pub(crate) tasks: Option<u32>,
    /// With a module: one task per file of this directory, the file in /input; `{name}` in the
    /// args is its name.
    #[arg(long)]
    pub(crate) inputs: Option<PathBuf>,
    /// Exit codes besides 0 that mean a task succeeded (`10,20`); with a spec, they replace
    /// its `success_exit_codes`.
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    pub(crate) success_exit_codes: Vec<i32>,
    /// Follow the job with a progress bar until it ends.
    #[arg(long)]
    pub(crate) wait: bool,
    /// Seal the job's inputs, stdin and mounts here, and its outputs on the nodes, so that
    /// only you and the nodes trusted with its key can read them (a spec's `private`).
    #[arg(long)]
    pub(crate) private: bool,
    /// With a module: the task arguments (after `--`).
    #[arg(last = true)]
    pub(crate) args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    pub(crate) job: String,
    /// How long to wait for the nodes that ran the job to confirm, in seconds.
    #[arg(long, default_value_t = 30)]
    pub(crate) wait: u64,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// The job, or a pipeline (p-…) with each stage; all your jobs when absent.
    pub(crate) job: Option<String>,
    /// Say why pending tasks are not placed.
    #[arg(long)]
    pub(crate) why: bool,
    /// List every task with its result.
    #[arg(long)]
    pub(crate) tasks: bool,
    /// Say why this task ran, or whose result it took (a pipeline's tasks take the result of
    /// an earlier task of the same key).
    #[arg(long, value_name = "TASK")]
    pub(crate) explain: Option<u32>,
}

#[derive(Debug, Args)]
pub(crate) struct JobArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    pub(crate) job: String,
}

#[derive(Debug, Args)]
pub(crate) struct ResultsArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// The job, or a pipeline (p-…): then its last stage's results, or `--stage`'s.
    pub(crate) job: String,
    /// With a pipeline: the stage whose results to fetch.
    #[arg(long)]
    pub(crate) stage: Option<String>,
    /// Directory to write into: one directory per task with stdout, stderr and output/.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct RuntimesArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    #[command(subcommand)]
    pub(crate) action: RuntimesAction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RuntimesAction {
    /// Install a runtime from its module file, checked against the build crowdcloud pins.
    Add {
        /// The runtime: `python`.
        name: String,
        /// Its WASI module, e.g. python-3.12.0.wasm.
        file: PathBuf,
    },
    /// The runtimes and whether each is installed.
    List,
}

#[derive(Debug, Args)]
pub(crate) struct CreditsArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// Show what the nodes you lend earned and have pending, by your join token: the one this
    /// machine joined with, the local `up`'s, or --token ccj_….
    #[arg(long)]
    pub(crate) provider: bool,
    #[command(subcommand)]
    pub(crate) action: Option<CreditsAction>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CreditsAction {
    /// Give a requester credit (owner only); in a public pool a requester submits only with
    /// credit.
    Grant {
        /// The requester's name, as its token was created with.
        requester: String,
        /// Whole credits to give.
        credits: u64,
    },
}

#[derive(Debug, Args)]
pub(crate) struct NodesArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    #[command(subcommand)]
    pub(crate) action: Option<NodesAction>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum NodesAction {
    /// Take a node out of the pool for good (owner only): its tasks run elsewhere, and its
    /// identity may not join again. Revoke the join token it used too.
    Remove {
        /// The node's id (n-…), as `crowdcloud nodes` lists it.
        node: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Local agents to start, each a separate process with its own identity.
    #[arg(long, default_value_t = 3)]
    pub(crate) agents: u32,
    /// Slots of each agent.
    #[arg(long, default_value_t = 2)]
    pub(crate) slots: u32,
    /// Width of the picture in pixels.
    #[arg(long, default_value_t = 960)]
    pub(crate) width: u32,
    /// Height of the picture in pixels.
    #[arg(long, default_value_t = 540)]
    pub(crate) height: u32,
    /// Side of a square tile in pixels: one task per tile.
    #[arg(long, default_value_t = 60)]
    pub(crate) tile: u32,
    /// Rays per pixel, a perfect square (1, 4, 9, …).
    #[arg(long, default_value_t = 4)]
    pub(crate) samples: u32,
    /// Where to write the picture.
    #[arg(long, default_value = "crowdcloud-demo.png")]
    pub(crate) out: PathBuf,
    /// Where the demo pool keeps its state [default: a temporary directory]
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    pub(crate) which: BenchCommand,
    /// Also write the report as JSON to this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct WebArgs {
    /// The loopback port the browser opens, for a pool joined by its remote address (0: any
    /// free one). A browser keeps what it stores per port: the same port finds it again.
    #[arg(long, default_value_t = 7880)]
    pub(crate) port: u16,
    /// Where this device keeps the pool it joined [default: the XDG data dir]
    #[arg(long, env = "CROWDCLOUD_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Print the link as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// No-op tasks through a real coordinator and agents: throughput and round-trip latency.
    Dispatch {
        #[arg(long, default_value_t = 20_000)]
        tasks: u32,
        #[arg(long, default_value_t = 2)]
        agents: u32,
        #[arg(long, default_value_t = 16)]
        slots: u32,
        /// Sequential one-task round trips timed for latency.
        #[arg(long, default_value_t = 1000)]
        round_trips: u32,
        /// The coordinator's commit durability: full or process.
        #[arg(long, default_value = "full")]
        durability: String,
        /// A Python with ray==2.60.0 installed: measure Ray side by side.
        #[arg(long, value_name = "PYTHON")]
        ray: Option<PathBuf>,
        /// Also run tasks that each leave a blob with blobs in this bucket and on the disk, side
        /// by side (the endpoint and keys as for `coordinator --blobs`).
        #[arg(long, value_name = "s3://BUCKET/PREFIX")]
        s3: Option<String>,
        /// Instead: one agent away from home (network namespaces, root), over the LAN, a hole
        /// punched through two home routers, and a relay, side by side.
        #[arg(long, conflicts_with_all = ["ray", "s3"])]
        remote: bool,
    },
    /// A map → shuffle → reduce pipeline against the same tasks as independent jobs, and the
    /// pipeline run again.
    Stages(BenchStagesArgs),
    /// Private jobs against the same jobs in the clear, side by side: the round trip, and a
    /// run over a large input.
    Private {
        /// One-task round trips of each kind, taking turns.
        #[arg(long, default_value_t = 300)]
        round_trips: u32,
        /// Input bytes of each input run, in MiB.
        #[arg(long, default_value_t = 1024)]
        input_mib: u32,
        /// Files (and tasks) the input is split into.
        #[arg(long, default_value_t = 64)]
        input_files: u32,
        #[arg(long, default_value_t = 2)]
        slots: u32,
    },
    /// Sandbox start-up, and CPU-bound kernels in the sandbox against native code.
    Sandbox {
        #[arg(long, default_value_t = 2000)]
        instantiations: u32,
        /// Kernel sizes times this (below 1 for a quick run).
        #[arg(long, default_value_t = 1.0)]
        kernel_scale: f64,
        /// Runs of each kernel in each mode, taking turns with native; the fastest counts.
        #[arg(long, default_value_t = 5)]
        repeats: u32,
        /// Size of a generated module, in MiB, whose cold compile and starts from the disk
        /// cache and from memory are measured; 0 leaves it out.
        #[arg(long, default_value_t = 60)]
        large_module_mib: u32,
    },
    /// Many simulated nodes parked on lease requests and heartbeating while tasks are dispatched.
    Scale {
        /// Pool sizes, growing, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        nodes: Vec<u32>,
        /// How long heartbeats are measured at each size, in ms.
        #[arg(long, default_value_t = 10_000)]
        window_ms: u64,
        /// No-op tasks dispatched during each window.
        #[arg(long, default_value_t = 10_000)]
        tasks: u32,
        /// Another `crowdcloud` binary (the code before a change) measured the same way in
        /// the same run, side by side.
        #[arg(long, value_name = "BINARY")]
        baseline: Option<std::path::PathBuf>,
    },
    /// The leading coordinator killed or frozen mid-sweep, with a standby on the same
    /// database: time until the new leader's first grant, attempts run again, and whether any
    /// acknowledged submission was lost.
    Failover(BenchFailoverArgs),
    /// Agents killed mid-run: time until their tasks run elsewhere, and work lost.
    Recover {
        #[arg(long, default_value_t = 200)]
        tasks: u32,
        #[arg(long, default_value_t = 4)]
        agents: u32,
        #[arg(long, default_value_t = 2)]
        slots: u32,
        /// Agents killed once the run is under way.
        #[arg(long, default_value_t = 2)]
        kill: u32,
        /// How long each task runs, in ms.
        #[arg(long, default_value_t = 500)]
        task_ms: u32,
        /// The coordinator's lease: how long a silent node keeps its work.
        #[arg(long, default_value_t = 3000)]
        lease_ms: u64,
        /// Long tasks that checkpoint instead (the collatz guest, one per agent; give agents a
        /// spare slot for a killed agent's task): work lost,
        /// time to resume elsewhere, and the cost against a run without checkpoints.
        #[arg(long)]
        checkpoints: bool,
        /// With --checkpoints: how often tasks checkpoint, in ms.
        #[arg(long, default_value_t = 2000, requires = "checkpoints")]
        interval_ms: u64,
        /// With --checkpoints: the state each checkpoint carries, in MiB.
        #[arg(long, default_value_t = 64, requires = "checkpoints")]
        state_mib: u32,
        /// With --checkpoints: each task's work, the bound of its Collatz search.
        #[arg(long, default_value_t = 40_000_000, requires = "checkpoints")]
        limit: u64,
    },
    /// Cheating nodes against result verification: wrong results delivered, executions per
    /// task and time to ban, in a seeded model of the pool's policy, fixed 2× replication and
    /// BOINC's adaptive replication.
    Verify(BenchVerifyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct BenchFailoverArgs {
    /// A PostgreSQL server's admin URL (postgres://…/postgres): each run gets a database of
    /// its own there [default: SQLite in a directory both coordinators share]
    #[arg(long, value_name = "URL")]
    pub(crate) database_url: Option<String>,
    /// What happens to the leader: kill, freeze, or both (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "kill,freeze")]
    pub(crate) faults: Vec<String>,
    /// Runs of each fault.
    #[arg(long, default_value_t = 5)]
    pub(crate) runs: u32,
    #[arg(long, default_value_t = 3000)]
    pub(crate) tasks: u32,
    /// How long each task of the sweep runs, in ms.
    #[arg(long, default_value_t = 20)]
    pub(crate) task_ms: u32,
    #[arg(long, default_value_t = 2)]
    pub(crate) agents: u32,
    #[arg(long, default_value_t = 4)]
    pub(crate) slots: u32,
}

#[derive(Debug, Args)]
pub(crate) struct BenchStagesArgs {
    #[arg(long, default_value_t = 200)]
    pub(crate) maps: u32,
    /// Partitions: reduce tasks, and files each map writes.
    #[arg(long, default_value_t = 50)]
    pub(crate) parts: u32,
    #[arg(long, default_value_t = 2)]
    pub(crate) agents: u32,
    #[arg(long, default_value_t = 8)]
    pub(crate) slots: u32,
    /// The large graph: maps, each writing as many parts as there are reduces, whose
    /// shuffle has maps x reduces edges (1,000 x 1,000 = 10^6).
    #[arg(long, default_value_t = 1000)]
    pub(crate) scale_maps: u32,
    #[arg(long, default_value_t = 1000)]
    pub(crate) scale_reduces: u32,
    /// Files each reduce of the large graph writes, each the input of one task of its last
    /// stage: maps + reduces x (1 + this) tasks in all (100,000 by default).
    #[arg(long, default_value_t = 98)]
    pub(crate) scale_fanout: u32,
    /// The shuffle run with and without churn: maps, and parts (reduces).
    #[arg(long, default_value_t = 1000)]
    pub(crate) churn_maps: u32,
    #[arg(long, default_value_t = 100)]
    pub(crate) churn_parts: u32,
    /// Agents of the churned pool, each with `--churn-slots` slots.
    #[arg(long, default_value_t = 10)]
    pub(crate) churn_agents: u32,
    #[arg(long, default_value_t = 2)]
    pub(crate) churn_slots: u32,
    /// Share of those agents away at any time: killed (SIGKILL), and back after
    /// `--churn-down-ms`.
    #[arg(long, default_value_t = 0.3)]
    pub(crate) churn: f64,
    #[arg(long, default_value_t = 10_000)]
    pub(crate) churn_down_ms: u64,
    /// Where the churned shuffle keeps the maps' parts: `coordinator`, or `nodes` (agents
    /// serving peers, one copy of each part)
    #[arg(long, default_value = "coordinator", value_parser = ["coordinator", "nodes"])]
    pub(crate) churn_locality: String,
    /// The word count run with `locality = "coordinator"` and `"nodes"` side by side: books
    /// (maps), and words in each; its reduces are `--parts`, its agents `--agents`.
    #[arg(long, default_value_t = 48)]
    pub(crate) locality_books: u32,
    #[arg(long, default_value_t = 20_000)]
    pub(crate) locality_words: u32,
}

#[derive(Debug, Args)]
pub(crate) struct BenchVerifyArgs {
    /// Tasks each run of the model streams through (one run per scenario and scheme).
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) model_tasks: u64,
    /// Nodes in the model's pool, each its own owner.
    #[arg(long, default_value_t = 1000)]
    pub(crate) model_nodes: u32,
    /// Seeds the model, so a run repeats exactly.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// The share of cheating nodes in every scenario with cheaters [default: 10, 20 and 10, as
    /// each scenario says]
    #[arg(long, value_name = "PERCENT")]
    pub(crate) cheaters: Option<f64>,
    /// The audit rate of the policy compared with the public one (5 %), per million results.
    #[arg(long, default_value_t = 200_000)]
    pub(crate) alt_audit_per_million: u32,
    /// Run only the model, not the end-to-end part with real agents.
    #[arg(long)]
    pub(crate) model_only: bool,
    /// Agents of the end-to-end part, honest and cheating (20 % cheat, or --cheaters).
    #[arg(long, default_value_t = 15)]
    pub(crate) agents: u32,
    /// Tasks of the end-to-end part's job.
    #[arg(long, default_value_t = 400)]
    pub(crate) tasks: u32,
}

#[derive(Debug, Args)]
pub(crate) struct JoinArgs {
    /// The pool to join when several answer on the LAN.
    #[arg(long, value_name = "NAME")]
    pub(crate) pool: Option<String>,
    /// The code `crowdcloud up` shows (e.g. 4821-0937) [default: asked for]
    #[arg(long)]
    pub(crate) code: Option<String>,
    /// Skip the code and remember this join token (ccj_…) instead.
    #[arg(long, hide_env_values = true, env = "CROWDCLOUD_JOIN_TOKEN")]
    pub(crate) join_token: Option<String>,
    /// The coordinator's URL, when discovery cannot reach it (another subnet, the internet), or
    /// the pool's remote address (`iroh:…`, which `up --remote` prints) away from home.
    #[arg(long)]
    pub(crate) coordinator: Option<String>,
    /// The certificate to expect (sha256:…); with a code it is checked by the exchange anyway.
    #[arg(long)]
    pub(crate) fingerprint: Option<String>,
    /// This device's name in the pool [default: the host name]
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Where to remember the pool [default: the XDG data dir]
    #[arg(long, env = "CROWDCLOUD_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// How long to look for pools on the LAN, in ms.
    #[arg(long, default_value_t = 3000)]
    pub(crate) discovery_ms: u64,
    /// Browse on this interface only (repeatable) [default: every LAN interface]
    #[arg(long = "interface", value_name = "NAME")]
    pub(crate) interfaces: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct JoinCodeArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// Also let the device submit jobs: it gets an API token of its own.
    #[arg(long)]
    pub(crate) requests: bool,
    /// Instead of a code, a link (and its QR code) that opens the web app on a phone or
    /// tablet, signed in with an API token made for it.
    #[arg(long, conflicts_with = "requests")]
    pub(crate) web: bool,
    /// With --web: the address the phone opens the web app at instead of this pool's own, such
    /// as `crowdcloud forward`'s public port for a phone away from home (https://HOST:PORT).
    #[arg(long, value_name = "URL", requires = "web")]
    pub(crate) url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Print your public key and where your key is kept (made on first use).
    Show {
        #[command(flatten)]
        connection: Connection,
    },
    /// Write your key to FILE, to import on another device you submit private jobs from.
    Export {
        #[command(flatten)]
        connection: Connection,
        file: PathBuf,
    },
    /// Take the key in FILE (from `keys export`) as yours on this device.
    Import {
        #[command(flatten)]
        connection: Connection,
        file: PathBuf,
        /// Replace a different key this device already has; its private jobs' results can no
        /// longer be opened here.
        #[arg(long)]
        force: bool,
    },
    /// Wrap a private job's key to more nodes, which may run its tasks from then on.
    Grant {
        #[command(flatten)]
        connection: Connection,
        job: String,
        /// A node to trust (n-…); repeat for more.
        #[arg(long = "node", value_name = "NODE")]
        nodes: Vec<wire::NodeId>,
        /// Trust every node with this label (key=value); repeat for more.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("a label is key=value, not {text:?}"))?;
    Ok((key.to_owned(), value.to_owned()))
}

#[derive(Debug, Subcommand)]
pub(crate) enum FederationCommand {
    /// Lend this pool's idle slots to the pool at URL, with the ccf_… token its owner made
    /// (`crowdcloud tokens create NAME --kind federation` there). Its tasks run here only on
    /// slots no job of this pool wants.
    Add {
        #[command(flatten)]
        connection: Connection,
        /// The other pool's coordinator, https://HOST:PORT.
        url: String,
        /// Its certificate's fingerprint, sha256:… (its owner's `crowdcloud up` prints it);
        /// not --fingerprint, which pins this pool's own coordinator.
        #[arg(long)]
        peer_fingerprint: String,
        /// The ccf_… token its owner made for this pool; not --token, which is this pool's
        /// owner's API token.
        #[arg(long)]
        peer_token: String,
    },
    /// The pools this one lends to.
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Stop lending to a pool, by its id (f-…, from `federation list`).
    Remove {
        #[command(flatten)]
        connection: Connection,
        peer: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// Make a token; its secret is shown this once.
    Create {
        #[command(flatten)]
        connection: Connection,
        /// A name for people, e.g. the person or script that will use it.
        name: String,
        /// `requester` (an API token, ccr_…), `join` (a join token, ccj_…) or `federation`
        /// (ccf_…: another pool may lend this one its idle slots; give it to that pool's owner
        /// for `crowdcloud federation add`).
        #[arg(long, default_value = "requester")]
        kind: String,
    },
    /// List the tokens: names, kinds, dates; never the secrets.
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Revoke a token by its id or name; it stops working at once.
    Revoke {
        #[command(flatten)]
        connection: Connection,
        /// The token's id (from `tokens list`) or its name. Named apart from the global
        /// --token (the API token the request is sent with), which clap keeps by field name.
        #[arg(value_name = "TOKEN")]
        which: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Where this machine keeps its state [default: the XDG data dir]
    #[arg(long, env = "CROWDCLOUD_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// The agent's data dir, for the node id check [default: DATA_DIR/agent]
    #[arg(long, env = "CROWDCLOUD_AGENT_DIR")]
    pub(crate) agent_dir: Option<PathBuf>,
    /// How long to look for pools on the LAN, in ms.
    #[arg(long, default_value_t = 3000)]
    pub(crate) discovery_ms: u64,
    /// Browse on this interface only (repeatable) [default: every LAN interface]
    #[arg(long = "interface", value_name = "NAME")]
    pub(crate) interfaces: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}
