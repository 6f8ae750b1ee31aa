//! Results taken back after a ban. A verified result rests on the word of its witnesses (the
//! nodes whose results agreed with it, `task_witnesses`; one node for a result a later audit of
//! it released). Once every witness of a result is banned, nothing but liars' word stands
//! behind it, and its task is what the coordinator runs again: the query for them is the
//! durable queue of recalls, so a restart loses none.

use sqlx::Row;

use wire::{JobId, NodeId, TaskState};

use crate::load::{job_row, json_at, task_state, u64_at};
use crate::plan::db;
use crate::statement::Statement;
use crate::{EndedJob, Recallable, Store, StoreError, TaskRecall};

impl Store {
    /// Up to `limit` tasks whose result's witnesses were all banned since, in jobs that were
    /// not cancelled, by job then index; each names the node that gave the result.
    pub async fn recallable(&self, limit: u32) -> Result<Vec<Recallable>, StoreError> {
        // From the bans: only the results a banned node witnessed are looked at.
        let rows = sqlx::query(
            "SELECT t.job_id, t.idx, t.spec, COALESCE(a.node_id, c.node) AS vouched_by, \
             a.fuel_used FROM \
             (SELECT w.job_id, w.idx, MIN(w.node_id) AS node FROM task_witnesses w \
              JOIN node_records r ON r.node_id = w.node_id WHERE r.banned <> 0 \
              GROUP BY w.job_id, w.idx) c \
             JOIN tasks t ON t.job_id = c.job_id AND t.idx = c.idx \
             JOIN jobs j ON j.id = t.job_id \
             LEFT JOIN attempts a ON a.id = t.result_attempt_id \
             WHERE j.state <> 'cancelled' AND NOT EXISTS (SELECT 1 FROM task_witnesses o \
               LEFT JOIN node_records ro ON ro.node_id = o.node_id \
               WHERE o.job_id = t.job_id AND o.idx = t.idx AND COALESCE(ro.banned, 0) = 0) \
             ORDER BY t.job_id, t.idx LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Recallable {
                    job_id: JobId::from_db(row.try_get("job_id")?),
                    index: u64_at(row, "idx")? as u32,
                    spec: json_at(row, "spec")?,
                    node: NodeId::from_db(row.try_get("vouched_by")?),
                    fuel: row.try_get::<Option<i64>, _>("fuel_used")?.unwrap_or(0) as u64,
                })
            })
            .collect()
    }

    /// An ended job's row and the state of each of its tasks, to open it again; `None` once
    /// it is gone.
    pub async fn ended_job(&self, job_id: JobId) -> Result<Option<EndedJob>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT id, requester_id, spec, task_count, state, submitted_seq, created_at_ms, \
             finished_at_ms, module_bytes, component, wasm_features, aborted, keys_granted FROM jobs WHERE id = $1",
        )
        .bind(job_id.as_db())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let row = job_row(&row)?;
        let tasks = sqlx::query("SELECT state FROM tasks WHERE job_id = $1 ORDER BY idx")
            .bind(job_id.as_db())
            .fetch_all(&self.pool)
            .await?;
        let task_states = tasks
            .iter()
            .map(|task| task_state(&task.try_get::<String, _>("state")?))
            .collect::<Result<Vec<TaskState>, StoreError>>()?;
        if task_states.len() != row.task_count as usize {
            return Err(crate::load::corrupt(
                "tasks",
                format!(
                    "job {job_id} has {} of its {} tasks",
                    task_states.len(),
                    row.task_count
                ),
            ));
        }
        Ok(Some(EndedJob { row, task_states }))
    }

    /// Results taken back per job, for the jobs that had any.
    pub(crate) async fn recalled_counts(&self) -> Result<Vec<(JobId, u32)>, StoreError> {
        let rows = sqlx::query(
            "SELECT job_id, SUM(recalls) AS n FROM tasks WHERE recalls > 0 GROUP BY job_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    JobId::from_db(row.try_get("job_id")?),
                    u64_at(row, "n")? as u32,
                ))
            })
            .collect()
    }
}

/// Takes back the results of the recall's tasks: they are pending again, with no result, and
/// their job runs again when the recall reopens it.
pub(crate) fn recall_tasks(sql: &mut Vec<Statement>, recall: &TaskRecall) {
    let TaskRecall {
        job_id,
        tasks,
        reopen,
        at_ms,
    } = recall;
    for (index, node) in tasks {
        sql.push(
            Statement::new("DELETE FROM task_witnesses WHERE job_id = $1 AND idx = $2")
                .bind(job_id.as_db())
                .bind(i64::from(*index)),
        );
        sql.push(
            Statement::new(
                "UPDATE tasks SET state = 'pending', outcome = NULL, result_attempt_id = NULL, \
                 finished_at_ms = NULL, verification = NULL, vouched_by = NULL, \
                 recalled_from = $3, recalled_at_ms = $4, recalls = recalls + 1 \
                 WHERE job_id = $1 AND idx = $2",
            )
            .bind(job_id.as_db())
            .bind(i64::from(*index))
            .bind(node.as_db())
            .bind(db(*at_ms)),
        );
    }
    if *reopen {
        sql.push(
            Statement::new(
                "UPDATE jobs SET state = 'running', finished_at_ms = NULL WHERE id = $1",
            )
            .bind(job_id.as_db()),
        );
    }
}
