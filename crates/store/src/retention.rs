//! Retention: which blobs each job uses, and deleting the jobs and blobs whose time is up.
//!
//! `job_blobs` names every blob a job uses: its module, mount files, task stdin and inputs
//! (written with the job) and what its attempts left (written with their ends). A task's latest
//! checkpoint is named by its row (`tasks.checkpoint_hash`), and only while it is the latest. A
//! blob may go only when no job or task names it and it was neither stored nor asked for since
//! the cutoff the caller gives. The coordinator holds uploads and submissions back while it deletes, which
//! is what makes looking for unused blobs and then deleting them safe.

use std::collections::BTreeSet;

use sqlx::{AnyPool, Row};

use wire::{BlobHash, JobId, JobSubmission, OutputFile, TaskSpec};

use crate::load::{corrupt, opt_json_at};
use crate::rows::AttemptEnd;
use crate::statement::{Statement, placeholder, placeholder_list, values_sql};
use crate::{Backend, Store, StoreError};

/// Set in `meta` once `job_blobs` names the blobs of every job stored before it existed.
const JOB_BLOBS_FILLED: &str = "job_blobs_filled";

/// Rows per multi-row statement.
const ROWS_PER_STATEMENT: usize = 200;

/// The blobs an ended attempt left: stdout, stderr and output files.
pub(crate) fn attempt_blobs(end: &AttemptEnd) -> impl Iterator<Item = BlobHash> + '_ {
    end.stdout
        .iter()
        .chain(&end.stderr)
        .map(|blob| blob.hash)
        .chain(end.outputs.iter().map(|output| output.hash))
}

/// Records that `job_id` uses each of `hashes`.
pub(crate) fn insert_job_blobs(
    sql: &mut Vec<Statement>,
    backend: Backend,
    pairs: &[(JobId, BlobHash)],
) {
    for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
        let mut statement = Statement::new(
            values_sql(
                backend,
                "INSERT INTO job_blobs (job_id, hash) VALUES ",
                chunk.len(),
                &["", ""],
            ) + " ON CONFLICT (job_id, hash) DO NOTHING",
        );
        for (job_id, hash) in chunk {
            statement = statement.bind(job_id.as_db()).bind(hash.to_hex());
        }
        sql.push(statement);
    }
}

/// Deletes jobs with their tasks, attempts and blob uses.
pub(crate) fn purge_jobs(sql: &mut Vec<Statement>, backend: Backend, job_ids: &[JobId]) {
    for chunk in job_ids.chunks(ROWS_PER_STATEMENT) {
        let list = placeholder_list(backend, 1, chunk.len());
        for table_and_column in [
            "attempts WHERE job_id",
            "attempt_uploads WHERE job_id",
            "tasks WHERE job_id",
            "task_witnesses WHERE job_id",
            "job_blobs WHERE job_id",
            "jobs WHERE id",
        ] {
            let mut statement = Statement::new(format!("DELETE FROM {table_and_column} IN {list}"));
            for job_id in chunk {
                statement = statement.bind(job_id.as_db());
            }
            sql.push(statement);
        }
    }
}

/// Deletes pipelines; the blob uses of stages that never ran go with `purge_jobs` of their ids.
pub(crate) fn purge_pipelines(
    sql: &mut Vec<Statement>,
    backend: Backend,
    ids: &[wire::PipelineId],
) {
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let list = placeholder_list(backend, 1, chunk.len());
        let mut statement = Statement::new(format!("DELETE FROM pipelines WHERE id IN {list}"));
        for id in chunk {
            statement = statement.bind(id.as_db());
        }
        sql.push(statement);
    }
}

pub(crate) fn drop_deletions(sql: &mut Vec<Statement>, backend: Backend, ids: &[wire::JobId]) {
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let list = placeholder_list(backend, 1, chunk.len());
        let mut statement = Statement::new(format!("DELETE FROM deletions WHERE job_id IN {list}"));
        for id in chunk {
            statement = statement.bind(id.as_db());
        }
        sql.push(statement);
    }
}

/// Deletes the records of those `hashes` that are still unused (no job names them, not stored
/// or asked for since `used_before_ms`), with who may read them.
pub(crate) fn forget_blobs(
    sql: &mut Vec<Statement>,
    backend: Backend,
    hashes: &[BlobHash],
    used_before_ms: u64,
) {
    for chunk in hashes.chunks(ROWS_PER_STATEMENT) {
        let list = placeholder_list(backend, 2, chunk.len());
        let first = placeholder(backend, 1);
        let mut statement = Statement::new(format!(
            "DELETE FROM blobs WHERE COALESCE(used_at_ms, created_at_ms) < {first} \
             AND hash IN {list} \
             AND NOT EXISTS (SELECT 1 FROM job_blobs j WHERE j.hash = blobs.hash) \
             AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.checkpoint_hash = blobs.hash)"
        ))
        .bind(used_before_ms as i64);
        for hash in chunk {
            statement = statement.bind(hash.to_hex());
        }
        sql.push(statement);
        let list = placeholder_list(backend, 1, chunk.len());
        let mut statement = Statement::new(format!(
            "DELETE FROM blob_refs WHERE hash IN {list} \
             AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.hash = blob_refs.hash)"
        ));
        for hash in chunk {
            statement = statement.bind(hash.to_hex());
        }
        sql.push(statement);
    }
}

/// Names the blobs of the jobs stored before `job_blobs` existed, once, so that no blob a job
/// still uses looks unused.
pub(crate) async fn fill_job_blobs(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let filled = sqlx::query("SELECT value FROM meta WHERE key = $1")
        .bind(JOB_BLOBS_FILLED)
        .fetch_optional(pool)
        .await?;
    if filled.is_some() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    if backend == Backend::Postgres {
        // Run once, before the lead is taken, over every job: reading the specs between its
        // queries may take longer than a frozen coordinator is allowed to sit in a transaction.
        sqlx::query("SET LOCAL idle_in_transaction_session_timeout = 0")
            .execute(&mut *tx)
            .await?;
    }
    let mut pairs: BTreeSet<(JobId, BlobHash)> = BTreeSet::new();
    for row in sqlx::query("SELECT id, spec FROM jobs")
        .fetch_all(&mut *tx)
        .await?
    {
        let job_id = JobId::from_db(row.try_get("id")?);
        let spec: JobSubmission = crate::load::json_at(&row, "spec")?;
        pairs.extend(spec.blobs_named(&[]).into_iter().map(|hash| (job_id, hash)));
    }
    for row in sqlx::query("SELECT job_id, spec FROM tasks")
        .fetch_all(&mut *tx)
        .await?
    {
        let job_id = JobId::from_db(row.try_get("job_id")?);
        let task: TaskSpec = crate::load::json_at(&row, "spec")?;
        pairs.extend(task.blobs().map(|hash| (job_id, hash)));
    }
    for row in sqlx::query(
        "SELECT job_id, stdout, stderr, outputs FROM attempts \
         WHERE stdout IS NOT NULL OR stderr IS NOT NULL OR outputs IS NOT NULL",
    )
    .fetch_all(&mut *tx)
    .await?
    {
        let job_id = JobId::from_db(row.try_get("job_id")?);
        for column in ["stdout", "stderr"] {
            if let Some(blob) = opt_json_at::<wire::BlobRef>(&row, column)? {
                pairs.insert((job_id, blob.hash));
            }
        }
        let outputs: Vec<OutputFile> = opt_json_at(&row, "outputs")?.unwrap_or_default();
        pairs.extend(outputs.iter().map(|output| (job_id, output.hash)));
    }
    let pairs: Vec<(JobId, BlobHash)> = pairs.into_iter().collect();
    let mut statements = Vec::new();
    insert_job_blobs(&mut statements, backend, &pairs);
    for statement in statements {
        crate::statement::execute(&mut tx, statement).await?;
    }
    sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2)")
        .bind(JOB_BLOBS_FILLED)
        .bind(pairs.len().to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

impl Store {
    /// What deleting `job_id` touches: every blob it names, those of them no other job names
    /// (nor a task's checkpoint), and the nodes that ran its attempts.
    pub async fn deletion_scope(
        &self,
        job_id: wire::JobId,
    ) -> Result<(Vec<BlobHash>, Vec<BlobHash>, Vec<wire::NodeId>), StoreError> {
        let all = sqlx::query("SELECT hash FROM job_blobs WHERE job_id = $1 ORDER BY hash")
            .bind(job_id.as_db())
            .fetch_all(&self.pool)
            .await?;
        let only = sqlx::query(
            "SELECT hash FROM job_blobs j WHERE j.job_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM job_blobs o WHERE o.hash = j.hash AND o.job_id <> $1) \
             AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.checkpoint_hash = j.hash) ORDER BY hash",
        )
        .bind(job_id.as_db())
        .fetch_all(&self.pool)
        .await?;
        let nodes = sqlx::query("SELECT DISTINCT node_id FROM attempts WHERE job_id = $1")
            .bind(job_id.as_db())
            .fetch_all(&self.pool)
            .await?;
        let hashes = |rows: &[sqlx::any::AnyRow]| -> Result<Vec<BlobHash>, StoreError> {
            rows.iter()
                .map(|row| {
                    let hex: String = row.try_get("hash")?;
                    hex.parse().map_err(|error| corrupt("blob hash", error))
                })
                .collect()
        };
        let nodes = nodes
            .iter()
            .map(|row| Ok(wire::NodeId::from_db(row.try_get("node_id")?)))
            .collect::<Result<_, StoreError>>()?;
        Ok((hashes(&all)?, hashes(&only)?, nodes))
    }

    /// Up to `limit` blobs no job names that were neither stored nor asked for since
    /// `used_before_ms`: what retention may delete.
    pub async fn unused_blobs(
        &self,
        used_before_ms: u64,
        limit: u32,
    ) -> Result<Vec<BlobHash>, StoreError> {
        let rows = sqlx::query(
            "SELECT hash FROM blobs b WHERE COALESCE(b.used_at_ms, b.created_at_ms) < $1 \
             AND NOT EXISTS (SELECT 1 FROM job_blobs j WHERE j.hash = b.hash) \
             AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.checkpoint_hash = b.hash) LIMIT $2",
        )
        .bind(used_before_ms as i64)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let hex: String = row.try_get("hash")?;
                hex.parse().map_err(|error| corrupt("blob hash", error))
            })
            .collect()
    }
}
