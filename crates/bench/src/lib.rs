//! The benchmarks behind `crowdcloud bench`: figures for the questions people comparing us with
//! Ray, HTCondor or BOINC ask, printed as a table and written as JSON so anyone can rerun them.
//!
//! - [`dispatch`]: a real coordinator and agents (processes, durable SQLite) on loopback run
//!   no-op tasks: throughput and the latency of one round trip, against Ray side by side; with
//!   `--s3`, tasks that leave a blob each with blobs in a bucket against blobs on the disk.
//! - [`sandbox`]: instantiation of a cached module with WASI and per-attempt dirs; CPU-bound
//!   kernels in the sandbox against the same code compiled natively, with the cost of fuel and
//!   of epoch interruption shown apart.
//! - [`scale`]: one coordinator holding many nodes that heartbeat, simulated by one process
//!   speaking the real protocol: RSS, heartbeat latency and dispatch as the pool grows.
//! - [`recover`]: agents killed during a run: how long until their tasks run elsewhere and how
//!   much work was lost; [`recover_checkpoints`], the same for long tasks that checkpoint, with
//!   what checkpointing costs.
//! - [`stages`]: a map → shuffle → reduce pipeline against the same tasks as independent jobs,
//!   side by side, and the pipeline run again, which takes every result by key; a graph of
//!   100,000 tasks; and, with [`churn`], a shuffle on a pool whose agents keep dying against
//!   the same on a calm pool.
//! - [`private`]: private jobs against the same jobs in the clear, side by side: the round
//!   trip, and a run over a large input, sealed on the requester's machine and opened on the
//!   node.
//! - [`failover`]: the leading coordinator killed or frozen during a sweep, with a standby on
//!   the same database: time until the new leader's first grant, attempts run again, and
//!   whether any acknowledged submission was lost.
//! - [`verify`]: the verification policy of a public pool against cheating nodes (colluding,
//!   honest until trusted, rejoining under new identities), in a seeded model of a million
//!   tasks: wrong results delivered, executions per task and time to ban, against fixed 2×
//!   replication and BOINC's adaptive replication.
//!
//! Benchmarks measure; they never assert speed. Each report carries correctness checks (every
//! task done, counts right), which the test suite asserts on a short run of each.

mod blob_stores;
pub mod churn;
pub mod dispatch;
pub mod failover;
pub mod locality;
pub mod netlab;
pub mod pool;
pub mod private;
pub mod recover;
pub mod recover_checkpoints;
pub mod remote;
pub mod report;
pub mod sandbox;
mod sandbox_large;
mod sandbox_restart;
pub mod scale;
pub mod stages;
pub mod verify;

pub use report::{Check, Figure, Report};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error(transparent)]
    Sandbox(#[from] ::sandbox::SandboxError),
    #[error("{0}")]
    Setup(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl BenchError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }
}

/// Latency percentiles of a set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(samples: &mut [std::time::Duration]) -> Percentiles {
        assert!(!samples.is_empty(), "percentiles of no samples");
        samples.sort();
        let at = |fraction: f64| {
            let index = ((samples.len() as f64 * fraction) as usize).min(samples.len() - 1);
            samples[index].as_secs_f64() * 1000.0
        };
        Percentiles {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: samples[samples.len() - 1].as_secs_f64() * 1000.0,
        }
    }
}
