//! Resume for free in the store: finding a requester's good results by task key, and ending a
//! new job's tasks with copies of them.
//!
//! A copy is an attempt row of its own (state `reused`, the original's node named), so the
//! task keeps its result when the original's job is purged, and the blobs it names are named
//! by the new job too, so retention keeps them. It rests on the same witnesses as the
//! original, so a ban that takes the original back takes the copy back as well.

use std::collections::HashMap;

use sqlx::Row;

use wire::{BlobHash, BlobRef, JobId, NodeId, Outcome, OutputFile, RequesterId, Usage};

use crate::load::{json_at, opt_json_at, u64_at};
use crate::plan::{db, json};
use crate::statement::{Statement, placeholder, placeholder_list};
use crate::{Backend, Store, StoreError};

/// Keys per `IN (…)` query.
const KEYS_PER_QUERY: usize = 500;

/// A succeeded task's result, as another task of the same key takes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reusable {
    pub job_id: JobId,
    pub index: u32,
    pub node_id: NodeId,
    pub outcome: Outcome,
    pub usage: Usage,
    pub stdout: Option<BlobRef>,
    pub stderr: Option<BlobRef>,
    pub outputs: Vec<OutputFile>,
    pub verification: Option<wire::Verification>,
}

impl Store {
    /// For each `(task, key)`, a succeeded task of `requester` with that key, if any: the
    /// newest.
    pub async fn reusable(
        &self,
        requester: RequesterId,
        keys: &[(u32, BlobHash)],
    ) -> Result<Vec<(u32, Reusable)>, StoreError> {
        let mut found: HashMap<String, Reusable> = HashMap::new();
        let mut unique: Vec<String> = keys.iter().map(|(_, key)| key.to_hex()).collect();
        unique.sort_unstable();
        unique.dedup();
        for chunk in unique.chunks(KEYS_PER_QUERY) {
            let sql = format!(
                "SELECT t.task_key, t.job_id, t.idx, t.outcome, t.verification, a.node_id, \
                 a.fuel_used, a.wall_ms, a.memory_peak_bytes, a.output_bytes, a.compile_ms, a.stdout, \
                 a.stderr, a.outputs FROM tasks t JOIN jobs j ON j.id = t.job_id \
                 JOIN attempts a ON a.id = t.result_attempt_id \
                 WHERE j.requester_id = {} AND t.state = 'succeeded' AND t.task_key IN {} \
                 ORDER BY j.submitted_seq",
                placeholder(self.backend, 1),
                placeholder_list(self.backend, 2, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(requester.as_db());
            for key in chunk {
                query = query.bind(key.clone());
            }
            for row in query.fetch_all(&self.pool).await? {
                found.insert(row.try_get("task_key")?, reusable_at(&row)?);
            }
        }
        Ok(keys
            .iter()
            .filter_map(|(task, key)| Some((*task, found.get(&key.to_hex())?.clone())))
            .collect())
    }
}

fn reusable_at(row: &sqlx::any::AnyRow) -> Result<Reusable, StoreError> {
    Ok(Reusable {
        job_id: JobId::from_db(row.try_get("job_id")?),
        index: u64_at(row, "idx")? as u32,
        node_id: NodeId::from_db(row.try_get("node_id")?),
        outcome: json_at(row, "outcome")?,
        usage: crate::read::usage_at(row)?.unwrap_or_default(),
        stdout: opt_json_at(row, "stdout")?,
        stderr: opt_json_at(row, "stderr")?,
        outputs: opt_json_at(row, "outputs")?.unwrap_or_default(),
        verification: opt_json_at(row, "verification")?,
    })
}

/// The statements of a [`Write::ReuseResults`].
pub(crate) fn plan(sql: &mut Vec<Statement>, backend: Backend, write: &crate::Write) {
    let crate::Write::ReuseResults {
        job_id,
        at_ms,
        tasks,
    } = write
    else {
        unreachable!("reuse::plan plans reused results only");
    };
    reuse_results(sql, backend, *job_id, *at_ms, tasks);
}

/// Ends tasks of `job_id` with copies of the results they take.
fn reuse_results(
    sql: &mut Vec<Statement>,
    backend: Backend,
    job_id: JobId,
    at_ms: u64,
    tasks: &[(u32, wire::AttemptId, Reusable)],
) {
    let mut uses = Vec::new();
    let mut witnesses = Vec::new();
    for (index, attempt, reused) in tasks {
        sql.push(copied_attempt(job_id, *index, *attempt, at_ms, reused));
        sql.push(
            Statement::new(
                "UPDATE tasks SET state = 'succeeded', outcome = $3, result_attempt_id = $4, \
                 finished_at_ms = $5, verification = $6, reused_job_id = $7, reused_idx = $8 \
                 WHERE job_id = $1 AND idx = $2",
            )
            .bind(job_id.as_db())
            .bind(i64::from(*index))
            .bind(json(&reused.outcome))
            .bind(attempt.as_db())
            .bind(db(at_ms))
            .bind(reused.verification.as_ref().map(json))
            .bind(reused.job_id.as_db())
            .bind(i64::from(reused.index)),
        );
        let nodes = reused.verification.iter().flat_map(|v| &v.nodes);
        witnesses.extend(nodes.map(|node| (job_id, *index, *node)));
        let blobs = reused
            .stdout
            .iter()
            .chain(&reused.stderr)
            .map(|blob| blob.hash);
        let blobs = blobs.chain(reused.outputs.iter().map(|file| file.hash));
        uses.extend(blobs.map(|hash| (job_id, hash)));
    }
    crate::plan::insert_witness_rows(sql, backend, &witnesses);
    crate::retention::insert_job_blobs(sql, backend, &uses);
}

fn copied_attempt(
    job_id: JobId,
    index: u32,
    attempt: wire::AttemptId,
    at_ms: u64,
    reused: &Reusable,
) -> Statement {
    Statement::new(
        "INSERT INTO attempts (id, job_id, task_idx, node_id, state, granted_at_ms, \
         finished_at_ms, outcome, fuel_used, wall_ms, memory_peak_bytes, output_bytes, stdout, \
         stderr, outputs) VALUES ($1, $2, $3, $4, 'reused', $5, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13)",
    )
    .bind(attempt.as_db())
    .bind(job_id.as_db())
    .bind(i64::from(index))
    .bind(reused.node_id.as_db())
    .bind(db(at_ms))
    .bind(json(&reused.outcome))
    .bind(db(reused.usage.fuel_used))
    .bind(db(reused.usage.wall_ms))
    .bind(db(reused.usage.memory_peak_bytes))
    .bind(db(reused.usage.output_bytes))
    .bind(reused.stdout.as_ref().map(json))
    .bind(reused.stderr.as_ref().map(json))
    .bind((!reused.outputs.is_empty()).then(|| json(&reused.outputs)))
}

/// What says why a task ran: the task as stored, and the same task of the latest earlier job
/// of its requester with the same name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskHistory {
    pub job: wire::JobSubmission,
    pub task: wire::TaskSpec,
    pub reused_from: Option<wire::ReusedFrom>,
    /// The earlier job, and its task of the same index if it had one.
    pub earlier: Option<(JobId, wire::JobSubmission, Option<wire::TaskSpec>)>,
}

impl Store {
    /// Task `index` of `job_id` of `requester`, with its earlier namesake; `None` when there
    /// is no such task.
    pub async fn task_history(
        &self,
        requester: RequesterId,
        job_id: JobId,
        index: u32,
    ) -> Result<Option<TaskHistory>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT j.name, j.spec AS job_spec, j.submitted_seq, t.spec, t.reused_job_id, \
             t.reused_idx FROM tasks t JOIN jobs j ON j.id = t.job_id \
             WHERE j.id = $1 AND j.requester_id = $2 AND t.idx = $3",
        )
        .bind(job_id.as_db())
        .bind(requester.as_db())
        .bind(i64::from(index))
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let reused_from = match row.try_get::<Option<i64>, _>("reused_job_id")? {
            Some(job) => Some(wire::ReusedFrom {
                job_id: JobId::from_db(job),
                index: u64_at(&row, "reused_idx")? as u32,
            }),
            None => None,
        };
        let name: String = row.try_get("name")?;
        let seq = row.try_get::<i64, _>("submitted_seq")?;
        let earlier = self.earlier_namesake(requester, &name, seq, index).await?;
        Ok(Some(TaskHistory {
            job: json_at(&row, "job_spec")?,
            task: json_at(&row, "spec")?,
            reused_from,
            earlier,
        }))
    }

    async fn earlier_namesake(
        &self,
        requester: RequesterId,
        name: &str,
        before_seq: i64,
        index: u32,
    ) -> Result<Option<(JobId, wire::JobSubmission, Option<wire::TaskSpec>)>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT j.id, j.spec AS job_spec, t.spec FROM jobs j \
             LEFT JOIN tasks t ON t.job_id = j.id AND t.idx = $4 \
             WHERE j.requester_id = $1 AND j.name = $2 AND j.submitted_seq < $3 \
             ORDER BY j.submitted_seq DESC LIMIT 1",
        )
        .bind(requester.as_db())
        .bind(name.to_owned())
        .bind(before_seq)
        .bind(i64::from(index))
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some((
            JobId::from_db(row.try_get("id")?),
            json_at(&row, "job_spec")?,
            opt_json_at(&row, "spec")?,
        )))
    }
}
