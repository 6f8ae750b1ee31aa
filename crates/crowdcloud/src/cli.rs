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
    /// List the nodes of the pool.
    Nodes(NodesArgs),
    /// Render a picture across several local agents: the pool end to end on one machine.
    Demo(DemoArgs),
}

impl Command {
    /// Long-running services log at info; client commands only warn.
    pub(crate) fn is_daemon(&self) -> bool {
        matches!(
            self,
            Command::Up(_) | Command::Coordinator(_) | Command::Agent(_)
        )
    }
}

/// How requester commands find the coordinator.
#[derive(Debug, Args, Clone)]
pub(crate) struct Connection {
    /// The coordinator, e.g. http://192.168.1.10:7878; found from a local `up` when absent.
    #[arg(long, env = "CROWDCLOUD_COORDINATOR")]
    pub(crate) coordinator: Option<String>,
    /// Your API token (ccr_…); read from the local `up` when absent.
    #[arg(long, env = "CROWDCLOUD_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Where a local `up` keeps its state [default: the XDG data dir]
    #[arg(long, env = "CROWDCLOUD_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServiceArgs {
    /// Where state, blobs and tokens live [default: the XDG data dir, e.g. ~/.local/share/crowdcloud]
    #[arg(long, env = "CROWDCLOUD_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Address to serve the API and dashboard on.
    #[arg(long, default_value = "127.0.0.1:7878")]
    pub(crate) listen: String,
    /// The pool's name, shown to those who join it.
    #[arg(long, default_value = "family")]
    pub(crate) pool_name: String,
    /// How long a node's lease lasts without a heartbeat, in ms.
    #[arg(long, default_value_t = 15_000)]
    pub(crate) lease_ms: u64,
    /// Commit durability: `full` survives a power cut, `process` survives a crash of the process.
    #[arg(long, default_value = "full")]
    pub(crate) durability: String,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    pub(crate) service: ServiceArgs,
    /// Slots of the local agent (0: no local agent).
    #[arg(long)]
    pub(crate) slots: Option<u32>,
}

#[derive(Debug, Args)]
pub(crate) struct CoordinatorArgs {
    #[command(flatten)]
    pub(crate) service: ServiceArgs,
    /// Database URL (sqlite://PATH or postgres://…) [default: sqlite in the data dir]
    #[arg(long, env = "CROWDCLOUD_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// The coordinator to join, e.g. http://192.168.1.10:7878.
    #[arg(long, env = "CROWDCLOUD_COORDINATOR")]
    pub(crate) coordinator: String,
    /// The pool's join token (ccj_…), printed by `crowdcloud up`.
    #[arg(long, env = "CROWDCLOUD_JOIN_TOKEN", hide_env_values = true)]
    pub(crate) join_token: String,
    /// Where the node keeps its identity and cache [default: the XDG data dir]
    #[arg(long, env = "CROWDCLOUD_AGENT_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Attempts to run at once [default: the number of cores]
    #[arg(long)]
    pub(crate) slots: Option<u32>,
    /// A name for people [default: the host name]
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// An owner label, e.g. --label region=eu (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub(crate) labels: Vec<String>,
    /// Seconds running attempts may take to finish on shutdown before they are given back.
    #[arg(long, default_value_t = 10)]
    pub(crate) drain_secs: u64,
}

#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// A job spec (.toml) or a WebAssembly module (.wasm).
    pub(crate) spec_or_module: PathBuf,
    /// With a module: run this many tasks, `{i}` in the args being the task index.
    #[arg(long, conflicts_with = "inputs")]
    pub(crate) tasks: Option<u32>,
    /// With a module: one task per file of this directory, the file in /input; `{name}` in the
    /// args is its name.
    #[arg(long)]
    pub(crate) inputs: Option<PathBuf>,
    /// Follow the job with a progress bar until it ends.
    #[arg(long)]
    pub(crate) wait: bool,
    /// With a module: the task arguments (after `--`).
    #[arg(last = true)]
    pub(crate) args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
    /// The job; all your jobs when absent.
    pub(crate) job: Option<String>,
    /// Say why pending tasks are not placed.
    #[arg(long)]
    pub(crate) why: bool,
    /// List every task with its result.
    #[arg(long)]
    pub(crate) tasks: bool,
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
    pub(crate) job: String,
    /// Directory to write into: one directory per task with stdout, stderr and output/.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct NodesArgs {
    #[command(flatten)]
    pub(crate) connection: Connection,
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
