//! Retention: a pool that runs for years keeps a bounded amount of state. Jobs that ended more
//! than `keep_results_ms` ago go, with their tasks, attempts and results; then blobs that no
//! job uses and that nobody stored or asked for within `keep_results_ms` go from disk and from
//! the store. Nodes not heard from within `silent_node_purge_ms` go from memory and the store.
//!
//! Blob files are deleted before their records: a sweep stopped half-way leaves records of
//! missing blobs, which the next sweep finds unused again and finishes, never files without
//! records, which nothing would find.

use std::sync::Arc;
use std::time::Duration;

use crate::pool::{PurgeEnded, PurgeSilentNodes};
use crate::service::Shared;

/// Jobs forgotten per round; more wait for the next round.
const JOBS_PER_ROUND_MAX: usize = 1_000;
/// Blobs deleted per round.
const BLOBS_PER_ROUND_MAX: u32 = 1_000;
/// Silent nodes forgotten per round, and nodes whose last-heard time is written per round.
const NODES_PER_ROUND_MAX: usize = 10_000;

/// Sweeps now and then every quarter of the retention time, at least every ten minutes.
pub(crate) async fn sweep(shared: Arc<Shared>) {
    let every = Duration::from_millis((shared.config.keep_results_ms / 4).clamp(100, 600_000));
    let mut stopping = shared.stopping.subscribe();
    loop {
        if let Err(error) = sweep_once(&shared).await {
            tracing::warn!(%error, "retention sweep failed; it runs again later");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stopping.changed() => return,
        }
    }
}

/// Forgets nodes silent for `silent_node_purge_ms`, after writing down when the others were
/// last heard from (often enough that a restart misjudges silence by an eighth of it at most).
async fn purge_silent_nodes(shared: &Shared) -> Result<(), String> {
    let silent_ms = shared.config.silent_node_purge_ms;
    let (purged, commit) = shared.apply(PurgeSilentNodes {
        silent_ms,
        store_every_ms: silent_ms / 8,
        nodes_max: NODES_PER_ROUND_MAX,
    });
    shared.committed(commit).await.map_err(|e| e.to_string())?;
    if purged > 0 {
        tracing::info!(
            nodes = purged,
            "nodes silent past --purge-silent-nodes forgotten"
        );
    }
    Ok(())
}

async fn sweep_once(shared: &Shared) -> Result<(), String> {
    let keep_ms = shared.config.keep_results_ms;
    let (purged, commit) = shared.apply(PurgeEnded {
        keep_ms,
        jobs_max: JOBS_PER_ROUND_MAX,
    });
    shared.committed(commit).await.map_err(|e| e.to_string())?;
    if purged > 0 {
        tracing::info!(jobs = purged, "ended jobs past their retention deleted");
    }
    purge_silent_nodes(shared).await?;

    let _gate = shared.blob_gate.write().await;
    // Uploads and checks queued before the gate closed count as uses.
    shared.store.flush().await.map_err(|e| e.to_string())?;
    let used_before_ms = shared.now_ms().saturating_sub(keep_ms);
    let unused = shared
        .store
        .unused_blobs(used_before_ms, BLOBS_PER_ROUND_MAX)
        .await
        .map_err(|e| e.to_string())?;
    let unused: Vec<_> = unused
        .into_iter()
        .filter(|hash| !shared.is_preset(hash))
        .collect();
    if unused.is_empty() {
        return Ok(());
    }
    shared.readable_blobs.clear();
    for hash in &unused {
        shared.blobs.delete(hash).await.map_err(|e| e.to_string())?;
        shared.module_verdicts.forget(hash);
    }
    let commit = shared.store.enqueue(vec![store::Write::ForgetBlobs {
        hashes: unused.clone(),
        used_before_ms,
    }]);
    shared.committed(commit).await.map_err(|e| e.to_string())?;
    tracing::info!(
        blobs = unused.len(),
        "unused blobs past their retention deleted"
    );
    Ok(())
}
