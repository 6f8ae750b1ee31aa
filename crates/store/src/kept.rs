//! Intermediates kept on nodes: the outputs only nodes have (`kept_blobs`), read at start so
//! that a coordinator that starts again runs their tasks again, and the result of such a task
//! as the store has it, to take it back and make it again.

use sqlx::Row;

use wire::{JobId, NodeId, PipelineId};

use crate::load::{corrupt, json_at, u64_at};
use crate::plan::db;
use crate::statement::Statement;
use crate::{KeptRow, Remakeable, Store, StoreError, Write};

impl Store {
    /// Every kept intermediate, by job, task and hash.
    pub(crate) async fn kept_blobs(&self) -> Result<Vec<KeptRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT hash, pipeline_id, job_id, task_idx, size_bytes, copies FROM kept_blobs \
             ORDER BY job_id, task_idx, hash",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let hash: String = row.try_get("hash")?;
                Ok(KeptRow {
                    hash: hash.parse().map_err(|error| corrupt("kept blob", error))?,
                    pipeline_id: PipelineId::from_db(row.try_get("pipeline_id")?),
                    job_id: JobId::from_db(row.try_get("job_id")?),
                    task_index: u64_at(row, "task_idx")? as u32,
                    size_bytes: u64_at(row, "size_bytes")?,
                    copies: u64_at(row, "copies")? as u32,
                })
            })
            .collect()
    }

    /// Task `index` of `job_id` with the node of its result, while it has succeeded; `None`
    /// otherwise.
    pub async fn remakeable(
        &self,
        job_id: JobId,
        index: u32,
    ) -> Result<Option<Remakeable>, StoreError> {
        let row = sqlx::query(
            "SELECT t.spec, a.node_id FROM tasks t JOIN attempts a ON a.id = t.result_attempt_id \
             WHERE t.job_id = $1 AND t.idx = $2 AND t.state = 'succeeded'",
        )
        .bind(job_id.as_db())
        .bind(i64::from(index))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Remakeable {
                spec: json_at(&row, "spec")?,
                node: NodeId::from_db(row.try_get("node_id")?),
            })
        })
        .transpose()
    }
}

/// The statements of a kept-blob write.
pub(crate) fn plan(sql: &mut Vec<Statement>, write: &Write) {
    match write {
        Write::KeepBlobs {
            job_id,
            task_index,
            rows,
        } => {
            // Its pipeline's end lets the nodes drop what it made, so no later job may take
            // this result by its key.
            sql.push(
                Statement::new("UPDATE tasks SET task_key = NULL WHERE job_id = $1 AND idx = $2")
                    .bind(job_id.as_db())
                    .bind(i64::from(*task_index)),
            );
            sql.push(
                Statement::new("DELETE FROM kept_blobs WHERE job_id = $1 AND task_idx = $2")
                    .bind(job_id.as_db())
                    .bind(i64::from(*task_index)),
            );
            for row in rows {
                sql.push(
                    Statement::new(
                        "INSERT INTO kept_blobs (hash, pipeline_id, job_id, task_idx, size_bytes, \
                         copies) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (job_id, task_idx, hash) DO NOTHING",
                    )
                    .bind(row.hash.to_hex())
                    .bind(row.pipeline_id.as_db())
                    .bind(row.job_id.as_db())
                    .bind(i64::from(row.task_index))
                    .bind(db(row.size_bytes))
                    .bind(i64::from(row.copies)),
                );
            }
        }
        Write::ForgetKeptOfPipeline(pipeline) => sql.push(
            Statement::new("DELETE FROM kept_blobs WHERE pipeline_id = $1").bind(pipeline.as_db()),
        ),
        _ => unreachable!("kept::plan plans kept-blob writes only"),
    }
}
