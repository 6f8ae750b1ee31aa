//! The end-to-end part of `crowdcloud bench sandbox --large-module-mib N`: a real coordinator
//! and agent processes, and the time from starting an agent again to its first task of a large
//! module done. The agent compiled the module before it stopped, so it loads the code from its
//! data dir; what remains is the process starting, registering, leasing, loading and running,
//! and reporting. Measured side by side: the same task on the agent that first compiled it.

use std::path::Path;
use std::time::{Duration, Instant};

use wire::JobState;

use crate::pool::{CoordinatorOptions, LocalPool, noop_job};
use crate::report::Better;
use crate::{BenchError, Check, Figure};

/// How long the first compile of the module may take end to end.
const COLD_LIMIT: Duration = Duration::from_secs(1800);

/// The restarted agent's first task, for a generated module of `mib` MiB.
pub(crate) async fn measure(
    binary: &Path,
    mib: u32,
) -> Result<(Vec<Figure>, Vec<Check>), BenchError> {
    let mut pool = LocalPool::start(binary, &CoordinatorOptions::default()).await?;
    let agent = pool.spawn_agent("restarted", 1)?;
    pool.wait_online(1).await?;
    let wasm = crate::sandbox_large::generated(mib as usize * (1 << 20));
    let module = pool.owner.upload_bytes(wasm.into()).await?;
    let first = pool
        .owner
        .submit(&noop_job("cold", module, 1))
        .await?
        .job_id;
    let began = Instant::now();
    let cold = pool.owner.wait_job_end(first, COLD_LIMIT).await?;
    let cold_elapsed = began.elapsed();
    pool.stop_agent(agent).await;

    // The job waits for the agent: the clock runs from the agent's start to its result.
    let second = pool
        .owner
        .submit(&noop_job("restarted", module, 1))
        .await?
        .job_id;
    let began = Instant::now();
    pool.spawn_agent("restarted", 1)?;
    let restarted = pool.owner.wait_job_end(second, COLD_LIMIT).await?;
    let restarted_elapsed = began.elapsed();
    let from_disk = pool.agent_log("restarted").contains("from_disk=true");
    pool.stop().await;

    let checks = vec![
        Check::new(
            "the first agent compiled and ran the large module",
            cold.state == JobState::Completed,
        ),
        Check::new(
            "the restarted agent ran it",
            restarted.state == JobState::Completed,
        ),
        Check::new(
            "the restarted agent loaded the module from its disk cache",
            from_disk,
        ),
    ];
    let figures = vec![
        Figure::new(
            &format!("{mib} MiB module: first task on a restarted agent, end to end"),
            restarted_elapsed.as_secs_f64() * 1000.0,
            "ms",
            Better::Lower,
        )
        .target(1000.0)
        .baseline(
            "the agent that compiled it (end to end)",
            Some(cold_elapsed.as_secs_f64() * 1000.0),
        ),
    ];
    Ok((figures, checks))
}
