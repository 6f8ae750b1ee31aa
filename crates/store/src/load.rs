//! Rebuilding the pool after a restart: everything the coordinator keeps in memory, read back in
//! a handful of queries.

use std::collections::BTreeMap;
use std::ops::Range;

use sqlx::Row;
use sqlx::any::AnyRow;

use wire::{BlobHash, JobId, JobState, NodeId, Outcome, RequesterId, TaskState};

use crate::rows::{AttemptRow, JobRow, NodeRow, RequesterRow, TaskRow, TokenRole, TokenRow};
use crate::{Store, StoreError};

/// The durable state of a pool, as loaded at start.
#[derive(Debug, Default)]
pub struct PoolImage {
    pub meta: BTreeMap<String, String>,
    pub requesters: Vec<RequesterRow>,
    pub tokens: Vec<TokenRow>,
    pub nodes: Vec<NodeRow>,
    pub jobs: Vec<JobRow>,
    /// Tasks per job and state, for every job.
    pub task_counts: Vec<(JobId, TaskState, u32)>,
    /// Every task of every running job, by job then index.
    pub open_tasks: Vec<TaskRow>,
    /// Attempts whose leases were live when the coordinator stopped.
    pub live_attempts: Vec<AttemptRow>,
    /// Attempts made and fuel used, per job.
    pub job_usage: Vec<(JobId, u64, u64)>,
    /// Tasks each node finished, per job.
    pub node_shares: Vec<(JobId, NodeId, u32)>,
    /// What the nodes of live attempts uploaded for them: attempt, blob, measured size.
    pub attempt_uploads: Vec<(wire::AttemptId, BlobHash, u64)>,
    /// What a pool that verifies knows of each node identity.
    pub records: Vec<crate::RecordRow>,
    /// Results taken back after a ban, per job, for jobs that had any.
    pub recalled: Vec<(JobId, u32)>,
    pub ledger: crate::LedgerImage,
    pub pipelines: Vec<crate::PipelineRow>,
    pub deletions: Vec<crate::DeletionRow>,
    pub peers: Vec<crate::PeerRow>,
    /// The attempt ids this lead may issue, in order: its epoch's span, past any stored there.
    pub attempt_ids: Range<u64>,
    /// Intermediates only nodes have, by job, task and hash.
    pub kept: Vec<crate::KeptRow>,
}

/// The low bits of an attempt id, which count the attempts one lead granted; the bits above
/// them are its epoch's.
const ATTEMPT_COUNT_BITS: u32 = 40;

/// Epochs past this wrap around, so that every attempt id is a positive BIGINT.
const ATTEMPT_EPOCHS: u64 = 1 << 23;

/// The span of attempt ids that the lead of `epoch` issues from: 2^40 of them.
///
/// Ids are issued in order, not drawn at random, because the store indexes them: an id drawn at
/// random lands on a page of the index of its own, so a commit of grants alone wrote 8 pages
/// (the median in `bench dispatch`) where ids in order, sharing the index's last page, write 4.
/// Each lead's span is its own, so two leads never issue the same id, whatever their clocks
/// say.
fn attempt_ids_of_epoch(epoch: u64) -> Range<u64> {
    let first = (epoch % ATTEMPT_EPOCHS) << ATTEMPT_COUNT_BITS;
    first..first + (1 << ATTEMPT_COUNT_BITS)
}

/// The span of the low bits a fuel sum is split at (2^20); see [`Store::load`].
const FUEL_LOW_BITS_SPAN: u64 = 1 << 20;

pub(crate) fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}

pub(crate) fn u64_at(row: &AnyRow, column: &str) -> Result<u64, StoreError> {
    Ok(row.try_get::<i64, _>(column)? as u64)
}

pub(crate) fn opt_u64_at(row: &AnyRow, column: &str) -> Result<Option<u64>, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(column)?.map(|v| v as u64))
}

pub(crate) fn json_at<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &str,
) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|error| corrupt(column, error))
}

pub(crate) fn opt_json_at<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &str,
) -> Result<Option<T>, StoreError> {
    match row.try_get::<Option<String>, _>(column)? {
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|error| corrupt(column, error)),
        None => Ok(None),
    }
}

pub(crate) fn job_row(row: &AnyRow) -> Result<JobRow, StoreError> {
    Ok(JobRow {
        id: JobId::from_db(row.try_get("id")?),
        requester_id: RequesterId::from_db(row.try_get("requester_id")?),
        spec: json_at(row, "spec")?,
        task_count: u64_at(row, "task_count")? as u32,
        state: job_state(&row.try_get::<String, _>("state")?)?,
        submitted_seq: u64_at(row, "submitted_seq")?,
        created_at_ms: u64_at(row, "created_at_ms")?,
        finished_at_ms: opt_u64_at(row, "finished_at_ms")?,
        module_bytes: u64_at(row, "module_bytes")?,
        component: u64_at(row, "component")? != 0,
        wasm_features: json_at(row, "wasm_features")?,
        aborted: opt_json_at(row, "aborted")?,
        keys_granted: opt_json_at(row, "keys_granted")?,
    })
}

pub(crate) fn job_state(text: &str) -> Result<JobState, StoreError> {
    Ok(match text {
        "running" => JobState::Running,
        "completed" => JobState::Completed,
        "failed" => JobState::Failed,
        "cancelled" => JobState::Cancelled,
        other => return Err(corrupt("job state", other)),
    })
}

pub(crate) fn task_state(text: &str) -> Result<TaskState, StoreError> {
    Ok(match text {
        "pending" => TaskState::Pending,
        "running" => TaskState::Running,
        "succeeded" => TaskState::Succeeded,
        "failed" => TaskState::Failed,
        "cancelled" => TaskState::Cancelled,
        other => return Err(corrupt("task state", other)),
    })
}

impl Store {
    pub async fn load(&self) -> Result<PoolImage, StoreError> {
        let mut image = PoolImage::default();
        for row in sqlx::query("SELECT key, value FROM meta")
            .fetch_all(&self.pool)
            .await?
        {
            image
                .meta
                .insert(row.try_get("key")?, row.try_get("value")?);
        }
        for row in sqlx::query("SELECT id, name, created_at_ms FROM requesters")
            .fetch_all(&self.pool)
            .await?
        {
            image.requesters.push(RequesterRow {
                id: RequesterId::from_db(row.try_get("id")?),
                name: row.try_get("name")?,
                created_at_ms: u64_at(&row, "created_at_ms")?,
            });
        }
        image.tokens = self.tokens().await?;
        image.peers = self.peers().await?;
        image.nodes = self.nodes().await?;
        image.jobs = self.jobs().await?;
        image.pipelines = self.pipelines().await?;
        image.deletions = self.deletions().await?;
        for row in
            sqlx::query("SELECT job_id, state, COUNT(*) AS n FROM tasks GROUP BY job_id, state")
                .fetch_all(&self.pool)
                .await?
        {
            image.task_counts.push((
                JobId::from_db(row.try_get("job_id")?),
                task_state(&row.try_get::<String, _>("state")?)?,
                u64_at(&row, "n")? as u32,
            ));
        }
        image.open_tasks = self.open_tasks().await?;
        for row in sqlx::query(
            "SELECT id, job_id, task_idx, node_id, granted_at_ms FROM attempts WHERE state = 'running'",
        )
        .fetch_all(&self.pool)
        .await?
        {
            image.live_attempts.push(AttemptRow {
                id: wire::AttemptId::from_db(row.try_get("id")?),
                job_id: JobId::from_db(row.try_get("job_id")?),
                task_index: u64_at(&row, "task_idx")? as u32,
                node_id: NodeId::from_db(row.try_get("node_id")?),
                granted_at_ms: u64_at(&row, "granted_at_ms")?,
            });
        }
        image.job_usage = self.job_usage().await?;
        image.attempt_uploads = self.live_attempt_uploads().await?;
        image.records = self.records().await?;
        image.ledger = self.ledger().await?;
        image.node_shares = self.node_shares().await?;
        image.recalled = self.recalled_counts().await?;
        image.attempt_ids = self.attempt_ids().await?;
        image.kept = self.kept_blobs().await?;
        Ok(image)
    }

    /// The ids this lead may issue: its epoch's span, past any stored there already. A span
    /// holds ids before its lead issues any only when the lead loads again, when its epoch
    /// comes round again (after 2^23 leads), or by ids drawn at random before ids were issued
    /// in order.
    async fn attempt_ids(&self) -> Result<Range<u64>, StoreError> {
        let span = attempt_ids_of_epoch(self.epoch());
        let row = sqlx::query("SELECT MAX(id) AS last FROM attempts WHERE id >= $1 AND id < $2")
            .bind(crate::plan::db(span.start))
            .bind(crate::plan::db(span.end))
            .fetch_one(&self.pool)
            .await?;
        let last: Option<i64> = row.try_get("last")?;
        Ok(last.map_or(span.start, |last| last as u64 + 1)..span.end)
    }

    /// Attempts made and fuel used, per job.
    async fn job_usage(&self) -> Result<Vec<(JobId, u64, u64)>, StoreError> {
        let mut usage = Vec::new();
        // A plain SUM of fuel overflows a BIGINT long before a job's attempts run out (a million
        // tasks at the fuel ceiling), and an overflow there would keep the pool from starting. So
        // the database sums the high and the low bits apart, neither of which can overflow, and
        // they are joined here, saturating.
        for row in sqlx::query(
            "SELECT job_id, COUNT(*) AS n, \
             CAST(COALESCE(SUM(fuel_used / 1048576), 0) AS BIGINT) AS fuel_high, \
             CAST(COALESCE(SUM(fuel_used % 1048576), 0) AS BIGINT) AS fuel_low \
             FROM attempts WHERE state NOT IN ('released', 'reused') GROUP BY job_id",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let fuel = u64_at(&row, "fuel_high")?
                .saturating_mul(FUEL_LOW_BITS_SPAN)
                .saturating_add(u64_at(&row, "fuel_low")?);
            usage.push((
                JobId::from_db(row.try_get("job_id")?),
                u64_at(&row, "n")?,
                fuel,
            ));
        }
        Ok(usage)
    }

    /// Tasks each node finished, per job: the node of each succeeded task's result. Not every
    /// succeeded attempt: in a job that verifies, an attempt whose result a check turned down
    /// (or whose result only witnessed another's) ended succeeded too.
    async fn node_shares(&self) -> Result<Vec<(JobId, NodeId, u32)>, StoreError> {
        let mut shares = Vec::new();
        for row in sqlx::query(
            "SELECT t.job_id, a.node_id, COUNT(*) AS n FROM tasks t \
             JOIN attempts a ON a.id = t.result_attempt_id WHERE t.state = 'succeeded' \
             AND a.state <> 'reused' GROUP BY t.job_id, a.node_id",
        )
        .fetch_all(&self.pool)
        .await?
        {
            shares.push((
                JobId::from_db(row.try_get("job_id")?),
                NodeId::from_db(row.try_get("node_id")?),
                u64_at(&row, "n")? as u32,
            ));
        }
        Ok(shares)
    }

    async fn records(&self) -> Result<Vec<crate::RecordRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT node_id, owner, join_token_hash, verified, audits_passed, mismatches, banned \
             FROM node_records ORDER BY node_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(crate::RecordRow {
                    node_id: NodeId::from_db(row.try_get("node_id")?),
                    owner: u64_at(row, "owner")?,
                    join_token_hash: row.try_get("join_token_hash")?,
                    verified: u64_at(row, "verified")?,
                    audits_passed: u64_at(row, "audits_passed")?,
                    mismatches: u64_at(row, "mismatches")?,
                    banned: row.try_get::<i32, _>("banned")? != 0,
                })
            })
            .collect()
    }

    async fn live_attempt_uploads(
        &self,
    ) -> Result<Vec<(wire::AttemptId, BlobHash, u64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.attempt_id, u.hash, u.size_bytes FROM attempt_uploads u \
             JOIN attempts a ON a.id = u.attempt_id WHERE a.state = 'running'",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let hash: String = row.try_get("hash")?;
                Ok((
                    wire::AttemptId::from_db(row.try_get("attempt_id")?),
                    hash.parse()
                        .map_err(|error| corrupt("upload hash", error))?,
                    u64_at(row, "size_bytes")?,
                ))
            })
            .collect()
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT hash, kind, requester_id, name, created_at_ms, revoked_at_ms FROM tokens",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let role = match row.try_get::<String, _>("kind")?.as_str() {
                    "join" => TokenRole::Join,
                    "federation" => TokenRole::Federation,
                    "requester" => TokenRole::Requester(RequesterId::from_db(
                        row.try_get::<Option<i64>, _>("requester_id")?
                            .ok_or_else(|| corrupt("token", "requester token without requester"))?,
                    )),
                    other => return Err(corrupt("token kind", other)),
                };
                Ok(TokenRow {
                    hash: row.try_get("hash")?,
                    role,
                    name: row.try_get("name")?,
                    created_at_ms: u64_at(row, "created_at_ms")?,
                    revoked_at_ms: opt_u64_at(row, "revoked_at_ms")?,
                })
            })
            .collect()
    }

    async fn peers(&self) -> Result<Vec<crate::PeerRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, url, fingerprint, token, requester_id, added_at_ms FROM federation_peers",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let fingerprint: String = row.try_get("fingerprint")?;
                Ok(crate::PeerRow {
                    id: u64_at(row, "id")?,
                    url: row.try_get("url")?,
                    fingerprint: fingerprint
                        .parse()
                        .map_err(|error| corrupt("peer fingerprint", error))?,
                    token: row.try_get("token")?,
                    requester_id: RequesterId::from_db(row.try_get("requester_id")?),
                    added_at_ms: u64_at(row, "added_at_ms")?,
                })
            })
            .collect()
    }

    async fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, public_key, token_hash, name, capabilities, labels, slots, agent_version, \
             join_token_hash, COALESCE(seen_at_ms, registered_at_ms) AS seen_at_ms, \
             registered_at_ms, network FROM nodes",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(NodeRow {
                    id: NodeId::from_db(row.try_get("id")?),
                    public_key: row.try_get("public_key")?,
                    token_hash: row.try_get("token_hash")?,
                    name: row.try_get("name")?,
                    capabilities: json_at(row, "capabilities")?,
                    labels: json_at(row, "labels")?,
                    slots: u64_at(row, "slots")? as u32,
                    agent_version: row.try_get("agent_version")?,
                    join_token_hash: row.try_get("join_token_hash")?,
                    network: row.try_get("network")?,
                    seen_at_ms: u64_at(row, "seen_at_ms")?,
                    registered_at_ms: u64_at(row, "registered_at_ms")?,
                })
            })
            .collect()
    }

    async fn deletions(&self) -> Result<Vec<crate::DeletionRow>, StoreError> {
        let rows = sqlx::query("SELECT body FROM deletions ORDER BY deleted_at_ms, job_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| json_at(row, "body")).collect()
    }

    async fn pipelines(&self) -> Result<Vec<crate::PipelineRow>, StoreError> {
        let rows = sqlx::query("SELECT body FROM pipelines ORDER BY created_at_ms, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| json_at(row, "body")).collect()
    }

    async fn jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, requester_id, spec, task_count, state, submitted_seq, created_at_ms, \
             finished_at_ms, module_bytes, component, wasm_features, aborted, keys_granted FROM jobs \
             ORDER BY submitted_seq",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_row).collect()
    }

    /// The outcomes of the failed attempts of every task of a running job that has not ended,
    /// since it was last recalled, oldest first: a failure policy counts them.
    async fn failed_outcomes(&self) -> Result<BTreeMap<(i64, i64), Vec<Outcome>>, StoreError> {
        let mut failed: BTreeMap<(i64, i64), Vec<Outcome>> = BTreeMap::new();
        for row in sqlx::query(
            "SELECT a.job_id, a.task_idx, a.outcome FROM attempts a \
             JOIN jobs j ON j.id = a.job_id \
             JOIN tasks t ON t.job_id = a.job_id AND t.idx = a.task_idx \
             WHERE j.state = 'running' AND t.state IN ('pending', 'running') \
             AND a.state = 'failed' AND a.outcome IS NOT NULL \
             AND a.granted_at_ms >= COALESCE(t.recalled_at_ms, 0) \
             ORDER BY a.job_id, a.task_idx, a.granted_at_ms, a.id",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let key = (row.try_get("job_id")?, row.try_get("task_idx")?);
            failed
                .entry(key)
                .or_default()
                .push(json_at(&row, "outcome")?);
        }
        Ok(failed)
    }

    async fn open_tasks(&self) -> Result<Vec<TaskRow>, StoreError> {
        let mut attempts: BTreeMap<(i64, i64), u32> = BTreeMap::new();
        for row in sqlx::query(
            "SELECT a.job_id, a.task_idx, COUNT(*) AS n FROM attempts a \
             JOIN jobs j ON j.id = a.job_id \
             JOIN tasks t ON t.job_id = a.job_id AND t.idx = a.task_idx \
             WHERE j.state = 'running' AND a.state NOT IN ('released', 'reused') \
             AND a.granted_at_ms >= COALESCE(t.recalled_at_ms, 0) \
             GROUP BY a.job_id, a.task_idx",
        )
        .fetch_all(&self.pool)
        .await?
        {
            attempts.insert(
                (row.try_get("job_id")?, row.try_get("task_idx")?),
                u64_at(&row, "n")? as u32,
            );
        }
        let mut failed = self.failed_outcomes().await?;
        let rows = sqlx::query(
            "SELECT t.job_id, t.idx, t.state, t.recalled_from, t.checkpoint, \
             t.checkpoints_lost_ms, t.checkpoint_makers, CASE WHEN t.state = 'pending' THEN t.spec ELSE NULL END AS spec \
             FROM tasks t JOIN jobs j ON j.id = t.job_id \
             WHERE j.state = 'running' ORDER BY t.job_id, t.idx",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let job: i64 = row.try_get("job_id")?;
                let index: i64 = row.try_get("idx")?;
                Ok(TaskRow {
                    job_id: JobId::from_db(job),
                    index: index as u32,
                    spec: opt_json_at(row, "spec")?,
                    state: task_state(&row.try_get::<String, _>("state")?)?,
                    attempts: attempts.get(&(job, index)).copied().unwrap_or(0),
                    failed: failed.remove(&(job, index)).unwrap_or_default(),
                    recalled_from: row
                        .try_get::<Option<i64>, _>("recalled_from")?
                        .map(NodeId::from_db),
                    checkpoint: opt_json_at(row, "checkpoint")?,
                    checkpoints_lost_ms: u64_at(row, "checkpoints_lost_ms")?,
                    checkpoint_makers: opt_json_at(row, "checkpoint_makers")?.unwrap_or_default(),
                })
            })
            .collect()
    }
}
