//! Reads that serve requesters directly from the database: task results page by page, and
//! whether a requester may read a blob; and the outputs a pipeline's next stage is made from.

use sqlx::Row;

use wire::{
    AttemptId, AttemptView, BlobHash, CheckpointProgress, JobId, NodeId, RequesterId, TaskSpec,
    TaskStatus, Usage,
};

use crate::load::{opt_json_at, opt_u64_at, task_state, u64_at};
use crate::statement::{placeholder, placeholder_list};
use crate::{Store, StoreError};

/// Hashes per `IN (…)` query.
const HASHES_PER_QUERY: usize = 500;

impl Store {
    /// The output files of each succeeded task of a job, in task order: what a stage that reads
    /// the job is made from.
    pub async fn task_outputs(
        &self,
        job_id: JobId,
    ) -> Result<Vec<(u32, Vec<wire::OutputFile>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.idx, a.outputs FROM tasks t JOIN attempts a ON a.id = t.result_attempt_id \
             WHERE t.job_id = $1 AND t.state = 'succeeded' ORDER BY t.idx",
        )
        .bind(job_id.as_db())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let outputs = opt_json_at(row, "outputs")?.unwrap_or_default();
                Ok((u64_at(row, "idx")? as u32, outputs))
            })
            .collect()
    }

    /// Tasks `offset..offset+limit` of a job with the result of the attempt that ended each.
    pub async fn task_page(
        &self,
        job_id: JobId,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<TaskStatus>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.idx, t.spec, t.state, t.outcome AS task_outcome, t.result_attempt_id, \
             t.verification, t.recalled_from, t.checkpoint, t.checkpoints_lost_ms, \
             a.node_id, a.fuel_used, a.wall_ms, a.memory_peak_bytes, a.output_bytes, a.compile_ms, \
             a.stdout, a.stderr, a.outputs, a.ran_on, \
             (SELECT COUNT(*) FROM attempts c WHERE c.job_id = t.job_id AND c.task_idx = t.idx \
               AND c.state NOT IN ('released', 'reused')) AS attempts, t.reused_job_id, t.reused_idx, \
             (SELECT r.id FROM attempts r WHERE r.job_id = t.job_id AND r.task_idx = t.idx \
               AND r.state = 'running' LIMIT 1) AS running_attempt, \
             (SELECT r.node_id FROM attempts r WHERE r.job_id = t.job_id AND r.task_idx = t.idx \
               AND r.state = 'running' LIMIT 1) AS running_node, \
             (SELECT COUNT(*) FROM attempts v WHERE v.job_id = t.job_id AND v.task_idx = t.idx \
               AND v.state = 'succeeded' \
               AND v.granted_at_ms >= COALESCE(t.recalled_at_ms, 0)) AS results \
             FROM tasks t LEFT JOIN attempts a ON a.id = t.result_attempt_id \
             WHERE t.job_id = $1 AND t.idx >= $2 ORDER BY t.idx LIMIT $3",
        )
        .bind(job_id.as_db())
        .bind(i64::from(offset))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_status_at).collect()
    }

    /// Attempts `offset..offset+limit` of a job, in the order they were granted: what a
    /// timeline of the job's nodes is drawn from.
    pub async fn attempt_page(
        &self,
        job_id: JobId,
        offset: u32,
        limit: u32,
    ) -> Result<Vec<AttemptView>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, task_idx, node_id, state, granted_at_ms, finished_at_ms, outcome \
             FROM attempts WHERE job_id = $1 AND state <> 'reused' \
             ORDER BY granted_at_ms, id LIMIT $3 OFFSET $2",
        )
        .bind(job_id.as_db())
        .bind(i64::from(offset))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AttemptView {
                    attempt_id: AttemptId::from_db(row.try_get("id")?),
                    task_index: u64_at(row, "task_idx")? as u32,
                    node_id: NodeId::from_db(row.try_get("node_id")?),
                    granted_at_ms: u64_at(row, "granted_at_ms")?,
                    finished_at_ms: opt_u64_at(row, "finished_at_ms")?,
                    state: row.try_get("state")?,
                    outcome: opt_json_at(row, "outcome")?,
                })
            })
            .collect()
    }

    /// The blob's size if it exists and `reader` may read it.
    pub async fn readable_blob(
        &self,
        hash: &BlobHash,
        reader: RequesterId,
    ) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query(
            "SELECT b.size_bytes FROM blobs b JOIN blob_refs r ON r.hash = b.hash \
             WHERE b.hash = $1 AND r.requester_id = $2",
        )
        .bind(hash.to_hex())
        .bind(reader.as_db())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| u64_at(&row, "size_bytes")).transpose()
    }

    /// Of `hashes`, those `reader` may not read (never uploaded by it, or unknown).
    pub async fn unreadable_blobs(
        &self,
        hashes: &[BlobHash],
        reader: RequesterId,
    ) -> Result<Vec<BlobHash>, StoreError> {
        let mut unique: Vec<BlobHash> = hashes.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let mut readable = std::collections::HashSet::new();
        for chunk in unique.chunks(HASHES_PER_QUERY) {
            let sql = format!(
                "SELECT hash FROM blob_refs WHERE requester_id = {} AND hash IN {}",
                placeholder(self.backend, 1),
                placeholder_list(self.backend, 2, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(reader.as_db());
            for hash in chunk {
                query = query.bind(hash.to_hex());
            }
            for row in query.fetch_all(&self.pool).await? {
                readable.insert(row.try_get::<String, _>("hash")?);
            }
        }
        Ok(unique
            .into_iter()
            .filter(|hash| !readable.contains(&hash.to_hex()))
            .collect())
    }

    /// The bytes of the stored blobs `uploader` uploaded: what counts against its quota.
    pub async fn uploaded_bytes(&self, uploader: RequesterId) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(b.size_bytes), 0) AS BIGINT) AS total \
             FROM blob_refs r JOIN blobs b ON b.hash = r.hash \
             WHERE r.requester_id = $1 AND r.uploaded = 1",
        )
        .bind(uploader.as_db())
        .fetch_one(&self.pool)
        .await?;
        u64_at(&row, "total")
    }
}

/// The usage of the attempt a task page row joins, if it ended with one.
pub(crate) fn usage_at(row: &sqlx::any::AnyRow) -> Result<Option<Usage>, StoreError> {
    let Some(fuel_used) = opt_u64_at(row, "fuel_used")? else {
        return Ok(None);
    };
    Ok(Some(Usage {
        fuel_used,
        wall_ms: opt_u64_at(row, "wall_ms")?.unwrap_or(0),
        memory_peak_bytes: opt_u64_at(row, "memory_peak_bytes")?.unwrap_or(0),
        output_bytes: opt_u64_at(row, "output_bytes")?.unwrap_or(0),
        compile_ms: opt_u64_at(row, "compile_ms")?.unwrap_or(0),
    }))
}

/// A task of a job page, from its row.
fn task_status_at(row: &sqlx::any::AnyRow) -> Result<TaskStatus, StoreError> {
    let spec: TaskSpec = crate::load::json_at(row, "spec")?;
    let mut state = task_state(&row.try_get::<String, _>("state")?)?;
    let running_attempt = row.try_get::<Option<i64>, _>("running_attempt")?;
    // A task with results that wait for a check runs on: its results are not
    // delivered until they are verified.
    let checking = u64_at(row, "results")? > 0;
    if state == wire::TaskState::Pending && (running_attempt.is_some() || checking) {
        state = wire::TaskState::Running;
    }
    let (attempt_id, node_id) = match row.try_get::<Option<i64>, _>("result_attempt_id")? {
        Some(id) => (
            Some(AttemptId::from_db(id)),
            row.try_get::<Option<i64>, _>("node_id")?
                .map(NodeId::from_db),
        ),
        None => (
            running_attempt.map(AttemptId::from_db),
            row.try_get::<Option<i64>, _>("running_node")?
                .map(NodeId::from_db),
        ),
    };
    let usage = usage_at(row)?;
    Ok(TaskStatus {
        index: u64_at(row, "idx")? as u32,
        state,
        args: spec.args,
        attempts: u64_at(row, "attempts")? as u32,
        attempt_id,
        node_id,
        ran_on: row.try_get("ran_on")?,
        outcome: opt_json_at(row, "task_outcome")?,
        usage,
        stdout: opt_json_at(row, "stdout")?,
        stderr: opt_json_at(row, "stderr")?,
        outputs: opt_json_at(row, "outputs")?.unwrap_or_default(),
        verification: opt_json_at(row, "verification")?,
        recalled_from: row
            .try_get::<Option<i64>, _>("recalled_from")?
            .map(NodeId::from_db),
        checkpoints: checkpoints_at(row)?,
        reused_from: match row.try_get::<Option<i64>, _>("reused_job_id")? {
            Some(job) => Some(wire::ReusedFrom {
                job_id: JobId::from_db(job),
                index: u64_at(row, "reused_idx")? as u32,
            }),
            None => None,
        },
    })
}

/// What a task's checkpoints did, if it saved one or lost work.
fn checkpoints_at(row: &sqlx::any::AnyRow) -> Result<Option<CheckpointProgress>, StoreError> {
    let latest: Option<wire::CheckpointRef> = opt_json_at(row, "checkpoint")?;
    let lost_ms = u64_at(row, "checkpoints_lost_ms")?;
    if latest.is_none() && lost_ms == 0 {
        return Ok(None);
    }
    Ok(Some(CheckpointProgress {
        saved: latest.map_or(0, |latest| latest.sequence),
        fuel_covered: latest.map_or(0, |latest| latest.fuel_used),
        size_bytes: latest.map_or(0, |latest| latest.size_bytes),
        lost_ms,
    }))
}
