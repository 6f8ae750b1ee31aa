//! Taking back results after a ban, beside the pool. A verified result rests on the word of
//! the nodes that agreed on it (one node, for a result a later audit of it released); once
//! every one of them is banned, the result is taken back and its task runs again (see
//! `pool::recall`). The pool keeps no ended tasks, so this loop finds
//! them in the store, which names each such result's node: the store's rows are the queue, and
//! a coordinator that stopped halfway goes on at its next start.
//!
//! Each pass reads after a flush of the store, so it sees every ban, verdict and recall queued
//! before it, and waits for its own recall to commit before the next pass reads again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use store::{Recallable, StoreError};
use wire::JobId;

use crate::pool::{RECALLED_UNFINISHED_MAX, Recall, Recalled};
use crate::service::Shared;

/// Tasks read and taken back in one pass.
const RECALL_BATCH_MAX: u32 = 256;

/// How long the loop waits before it looks again when the pool has as many taken-back tasks
/// unfinished as it may, or when a pass found only tasks that changed under it.
const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// What one pass found.
enum Pass {
    /// Nothing is left to take back.
    Done,
    /// It took some back; more may wait.
    More,
    /// The pool holds as many taken-back tasks unfinished as it may, or what it read changed
    /// under it: look again shortly.
    Later,
}

/// Takes back results whose witnesses were all banned, until the coordinator stops: at start
/// (what a stopped coordinator left), and after every ban.
pub(crate) async fn recall_results(shared: Arc<Shared>) {
    let mut stopping = shared.stopping.subscribe();
    loop {
        let pass = match recall_some(&shared).await {
            Ok(pass) => pass,
            Err(error) => {
                tracing::warn!(%error, "could not take back results whose witness was banned; trying again after the next ban");
                Pass::Done
            }
        };
        let recheck = match pass {
            Pass::More => continue,
            Pass::Done => None,
            Pass::Later => Some(RECHECK_AFTER),
        };
        if !crate::service::woken(&shared.recalls, recheck, &mut stopping).await {
            return;
        }
    }
}

/// Takes back one batch.
async fn recall_some(shared: &Shared) -> Result<Pass, StoreError> {
    let unfinished = shared.read(|pool, _| pool.recalled_unfinished());
    let room = RECALLED_UNFINISHED_MAX.saturating_sub(unfinished);
    if room == 0 {
        return Ok(Pass::Later);
    }
    shared.store.flush().await?;
    let mut found = remakeable(shared, room.min(RECALL_BATCH_MAX)).await?;
    let left = room
        .min(RECALL_BATCH_MAX)
        .saturating_sub(found.len() as u32);
    found.extend(shared.store.recallable(left).await?);
    if found.is_empty() {
        // After a start, nodes name what they keep for a lease term; what none named is
        // remade once it ends.
        let census = shared.read(|pool, now_ms| pool.census_open(now_ms));
        return Ok(if census { Pass::Later } else { Pass::Done });
    }
    let mut by_job: BTreeMap<JobId, Vec<Recallable>> = BTreeMap::new();
    for task in found {
        by_job.entry(task.job_id).or_default().push(task);
    }
    let mut recalled = 0;
    for (job, tasks) in by_job {
        recalled += recall_of_job(shared, job, tasks).await?;
    }
    Ok(if recalled > 0 {
        Pass::More
    } else {
        Pass::Later
    })
}

/// Up to `count` tasks whose outputs only nodes had and every copy of which is gone, as the
/// store has them: taken back, they make their outputs again. Nothing is refunded for them.
async fn remakeable(shared: &Shared, count: u32) -> Result<Vec<Recallable>, StoreError> {
    let lost = shared.read(|pool, now_ms| pool.lost_to_remake(count as usize, now_ms));
    let mut found = Vec::with_capacity(lost.len());
    for (job_id, index) in lost {
        if let Some(task) = shared.store.remakeable(job_id, index).await? {
            found.push(Recallable {
                job_id,
                index,
                spec: task.spec,
                node: task.node,
                fuel: 0,
            });
        }
    }
    Ok(found)
}

/// Takes back `tasks` of `job`, opening the job again if it has ended; how many.
async fn recall_of_job(
    shared: &Shared,
    job: JobId,
    tasks: Vec<Recallable>,
) -> Result<u32, StoreError> {
    let Some(ended_at_version) = shared.read(|pool, _| pool.recall_view(job)) else {
        return Ok(0);
    };
    let ended = match ended_at_version {
        None => None,
        Some(version) => {
            // The job may have ended after the last flush: its last writes come first.
            shared.store.flush().await?;
            match shared.store.ended_job(job).await? {
                Some(ended) => Some((ended, version)),
                None => return Ok(0),
            }
        }
    };
    let (recalled, commit) = shared.apply(Recall { job, tasks, ended });
    shared.committed(commit).await?;
    match recalled {
        Recalled::Tasks(count) => {
            tracing::info!(%job, tasks = count, "results taken back (their only witness was banned, or every copy of what they made is gone); their tasks run again");
            Ok(count)
        }
        Recalled::Stale | Recalled::Gone => Ok(0),
    }
}
