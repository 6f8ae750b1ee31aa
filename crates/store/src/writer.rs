//! The single writer: applies queued [`Write`]s in order, grouping whatever is queued into one
//! transaction so that many writes share one commit (and one fsync).

use sqlx::{Any, AnyPool, Transaction};
use tokio::sync::{mpsc, oneshot, watch};

use wire::{BlobHash, JobState, Outcome, RequesterId, TaskSpec, TaskState};

use crate::rows::{AttemptEnd, AttemptRow, JobRow, NodeRow, RequesterRow, TokenRole, TokenRow};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Backend, StoreError, retention};

/// One change of durable state.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    SetMeta {
        key: String,
        value: String,
    },
    InsertRequester(RequesterRow),
    InsertToken(TokenRow),
    RevokeToken {
        hash: String,
        at_ms: u64,
    },
    UpsertNode(NodeRow),
    /// Forgets a node the owner removed, or one silent for a long time.
    DeleteNode {
        node_id: wire::NodeId,
    },
    /// When nodes were last heard from.
    SetNodesSeen(Vec<(wire::NodeId, u64)>),
    /// What a registered node lends now.
    SetNodeCapabilities {
        node_id: wire::NodeId,
        capabilities: wire::Capabilities,
    },
    /// Records a blob (if new) and lets `reader` read it; a reader is the blob's uploader, whose
    /// quota it counts against.
    InsertBlob {
        hash: BlobHash,
        size_bytes: u64,
        at_ms: u64,
        reader: Option<RequesterId>,
    },
    /// Lets `reader` read blobs that already exist (outputs of the reader's job).
    AddBlobReaders {
        hashes: Vec<(BlobHash, u64)>,
        reader: RequesterId,
        at_ms: u64,
    },
    /// Records a blob a node uploaded for an attempt it holds, with the size the coordinator
    /// measured; the attempt's report may name it.
    RecordAttemptUpload {
        attempt_id: wire::AttemptId,
        job_id: wire::JobId,
        hash: BlobHash,
        size_bytes: u64,
        at_ms: u64,
    },
    InsertJob {
        job: JobRow,
        tasks: Vec<TaskSpec>,
    },
    GrantAttempts(Vec<AttemptRow>),
    EndAttempts(Vec<AttemptEnd>),
    /// A task's checkpoints as they stand: its latest (which keeps that blob from retention)
    /// and the work its attempts lost.
    SetTaskCheckpoint {
        job_id: wire::JobId,
        task_index: u32,
        latest: Option<wire::CheckpointRef>,
        lost_ms: u64,
    },
    /// Tasks that end by a verdict on their results.
    EndTasks(Vec<crate::TaskVerdict>),
    /// Takes back the results of tasks whose one witness was banned.
    RecallTasks(crate::TaskRecall),
    /// Node identities' records, as they stand now.
    SetRecords(Vec<crate::RecordRow>),
    /// Transfers of the credit ledger.
    InsertTransfers(Vec<wire::Transfer>),
    /// Marks the job cancelled with every task that has not ended and every running attempt.
    CancelJob {
        job_id: wire::JobId,
        at_ms: u64,
    },
    FinishJob {
        job_id: wire::JobId,
        state: JobState,
        at_ms: u64,
    },
    /// Marks blobs as asked for at `at_ms`, which keeps retention off them for a while.
    TouchBlobs {
        hashes: Vec<BlobHash>,
        at_ms: u64,
    },
    /// Deletes ended jobs with their tasks, attempts and blob uses.
    PurgeJobs(Vec<wire::JobId>),
    /// Deletes the records of those blobs that are still unused: named by no job, neither
    /// stored nor asked for since `used_before_ms`.
    ForgetBlobs {
        hashes: Vec<BlobHash>,
        used_before_ms: u64,
    },
}

pub(crate) struct Request {
    /// Requests are numbered from 1 in the order they are queued.
    pub(crate) sequence: u64,
    pub(crate) writes: Vec<Write>,
    pub(crate) done: oneshot::Sender<Result<(), StoreError>>,
}

/// How far the writer got: every request up to `sequence` is committed, unless it failed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    pub(crate) sequence: u64,
    pub(crate) failure: Option<StoreError>,
}

/// Writes grouped into one transaction at most; bounds how long one commit holds the database.
const WRITES_PER_COMMIT_MAX: usize = 20_000;

/// Rows per multi-row INSERT; well under SQLite's and PostgreSQL's bound-parameter limits.
const ROWS_PER_INSERT: usize = 200;

/// Who writes: the database, its kind, and the epoch this store took it over at.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    pub(crate) epoch: u64,
}

pub(crate) fn spawn(
    target: Target,
    queued: Arc<AtomicUsize>,
) -> (mpsc::UnboundedSender<Request>, watch::Receiver<Progress>) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let (progress, watcher) = watch::channel(Progress::default());
    tokio::spawn(run(target, queued, receiver, progress));
    (sender, watcher)
}

async fn run(
    target: Target,
    queued: Arc<AtomicUsize>,
    mut queue: mpsc::UnboundedReceiver<Request>,
    progress: watch::Sender<Progress>,
) {
    // After one failed commit nothing more is applied: later writes may depend on the lost ones.
    let mut failure: Option<StoreError> = None;
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        let mut writes = batch[0].writes.len();
        while writes < WRITES_PER_COMMIT_MAX {
            let Ok(next) = queue.try_recv() else { break };
            writes += next.writes.len();
            batch.push(next);
        }
        let result = match &failure {
            Some(error) => Err(error.clone()),
            None => apply(&target, &batch).await,
        };
        if let Err(error) = &result
            && failure.is_none()
        {
            tracing::error!(%error, "a state store commit failed; no further writes will be applied");
            failure = Some(error.clone());
        }
        queued.fetch_sub(writes, Ordering::Relaxed);
        let last = batch.last().map_or(0, |request| request.sequence);
        progress.send_replace(Progress {
            sequence: last,
            failure: failure.clone(),
        });
        for request in batch {
            let _ = request.done.send(result.clone());
        }
    }
}

async fn apply(target: &Target, batch: &[Request]) -> Result<(), StoreError> {
    let mut transaction = target.pool.begin().await?;
    crate::epoch::fence(&mut transaction, target.backend, target.epoch).await?;
    // Ledger rows touch no other table and commit with the rest, so the whole group's go in
    // as one multi-row statement at the end rather than one per request.
    let mut transfers: Vec<&wire::Transfer> = Vec::new();
    for request in batch {
        for write in &request.writes {
            match write {
                Write::InsertTransfers(rows) => transfers.extend(rows),
                write => apply_one(&mut transaction, target.backend, write).await?,
            }
        }
    }
    insert_transfers(&mut transaction, target.backend, &transfers).await?;
    transaction.commit().await?;
    Ok(())
}

pub(crate) fn db(value: u64) -> i64 {
    value as i64
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("wire types serialize to JSON")
}

async fn apply_one(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    write: &Write,
) -> Result<(), StoreError> {
    match write {
        Write::SetMeta { key, value } => {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key.clone())
            .bind(value.clone())
            .execute(&mut **tx)
            .await?;
        }
        Write::InsertRequester(row) => {
            sqlx::query("INSERT INTO requesters (id, name, created_at_ms) VALUES ($1, $2, $3)")
                .bind(row.id.as_db())
                .bind(row.name.clone())
                .bind(db(row.created_at_ms))
                .execute(&mut **tx)
                .await?;
        }
        Write::InsertToken(row) => {
            let (kind, requester) = match row.role {
                TokenRole::Requester(id) => ("requester", Some(id.as_db())),
                TokenRole::Join => ("join", None),
            };
            sqlx::query(
                "INSERT INTO tokens (hash, kind, requester_id, name, created_at_ms, revoked_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(row.hash.clone())
            .bind(kind)
            .bind(requester)
            .bind(row.name.clone())
            .bind(db(row.created_at_ms))
            .bind(row.revoked_at_ms.map(db))
            .execute(&mut **tx)
            .await?;
        }
        Write::RevokeToken { hash, at_ms } => {
            sqlx::query(
                "UPDATE tokens SET revoked_at_ms = $2 WHERE hash = $1 AND revoked_at_ms IS NULL",
            )
            .bind(hash.clone())
            .bind(db(*at_ms))
            .execute(&mut **tx)
            .await?;
        }
        Write::UpsertNode(row) => upsert_node(tx, row).await?,
        Write::DeleteNode { node_id } => {
            sqlx::query("DELETE FROM nodes WHERE id = $1")
                .bind(node_id.as_db())
                .execute(&mut **tx)
                .await?;
        }
        Write::SetNodesSeen(seen) => {
            for (node_id, at_ms) in seen {
                sqlx::query("UPDATE nodes SET seen_at_ms = $2 WHERE id = $1")
                    .bind(node_id.as_db())
                    .bind(db(*at_ms))
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Write::SetNodeCapabilities {
            node_id,
            capabilities,
        } => {
            sqlx::query("UPDATE nodes SET capabilities = $2 WHERE id = $1")
                .bind(node_id.as_db())
                .bind(json(capabilities))
                .execute(&mut **tx)
                .await?;
        }
        Write::InsertBlob {
            hash,
            size_bytes,
            at_ms,
            reader,
        } => {
            insert_blob(tx, hash, *size_bytes, *at_ms, *reader).await?;
            if let Some(uploader) = reader {
                // Its uploads count against the reader's quota; results of its jobs do not.
                sqlx::query(
                    "UPDATE blob_refs SET uploaded = 1 WHERE hash = $1 AND requester_id = $2",
                )
                .bind(hash.to_hex())
                .bind(uploader.as_db())
                .execute(&mut **tx)
                .await?;
            }
        }
        Write::AddBlobReaders {
            hashes,
            reader,
            at_ms,
        } => {
            for (hash, size_bytes) in hashes {
                insert_blob(tx, hash, *size_bytes, *at_ms, Some(*reader)).await?;
            }
        }
        Write::RecordAttemptUpload {
            attempt_id,
            job_id,
            hash,
            size_bytes,
            at_ms,
        } => {
            insert_blob(tx, hash, *size_bytes, *at_ms, None).await?;
            sqlx::query(
                "INSERT INTO attempt_uploads (attempt_id, job_id, hash, size_bytes) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (attempt_id, hash) DO NOTHING",
            )
            .bind(attempt_id.as_db())
            .bind(job_id.as_db())
            .bind(hash.to_hex())
            .bind(db(*size_bytes))
            .execute(&mut **tx)
            .await?;
        }
        Write::InsertJob { job, tasks } => insert_job(tx, backend, job, tasks).await?,
        Write::GrantAttempts(rows) => grant_attempts(tx, backend, rows).await?,
        Write::EndAttempts(ends) => end_attempts(tx, backend, ends).await?,
        Write::SetTaskCheckpoint {
            job_id,
            task_index,
            latest,
            lost_ms,
        } => {
            sqlx::query(
                "UPDATE tasks SET checkpoint = $1, checkpoint_hash = $2, \
                 checkpoints_lost_ms = $3 WHERE job_id = $4 AND idx = $5",
            )
            .bind(latest.map(|latest| json(&latest)))
            .bind(latest.map(|latest| latest.hash.to_hex()))
            .bind(db(*lost_ms))
            .bind(job_id.as_db())
            .bind(i64::from(*task_index))
            .execute(&mut **tx)
            .await?;
        }
        Write::EndTasks(verdicts) => end_tasks(tx, verdicts).await?,
        Write::RecallTasks(recall) => crate::recall::recall_tasks(tx, recall).await?,
        Write::SetRecords(rows) => set_records(tx, rows).await?,
        Write::InsertTransfers(_) => unreachable!("`apply` inserts a group's ledger rows at once"),
        Write::CancelJob { job_id, at_ms } => cancel_job(tx, *job_id, *at_ms).await?,
        Write::FinishJob {
            job_id,
            state,
            at_ms,
        } => finish_job(tx, *job_id, *state, *at_ms).await?,
        Write::TouchBlobs { hashes, at_ms } => touch_blobs(tx, hashes, *at_ms).await?,
        Write::PurgeJobs(job_ids) => retention::purge_jobs(tx, backend, job_ids).await?,
        Write::ForgetBlobs {
            hashes,
            used_before_ms,
        } => retention::forget_blobs(tx, backend, hashes, *used_before_ms).await?,
    }
    Ok(())
}

async fn touch_blobs(
    tx: &mut Transaction<'static, Any>,
    hashes: &[BlobHash],
    at_ms: u64,
) -> Result<(), StoreError> {
    for hash in hashes {
        sqlx::query("UPDATE blobs SET used_at_ms = $2 WHERE hash = $1")
            .bind(hash.to_hex())
            .bind(db(at_ms))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn finish_job(
    tx: &mut Transaction<'static, Any>,
    job_id: wire::JobId,
    state: JobState,
    at_ms: u64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE jobs SET state = $2, finished_at_ms = $3 WHERE id = $1")
        .bind(job_id.as_db())
        .bind(state.as_str())
        .bind(db(at_ms))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The node whose word alone a verdict's result rests on: the node whose later audit released
/// it. Every other verdict had more than one witness.
fn vouched_by(verdict: &crate::TaskVerdict) -> Option<wire::NodeId> {
    let verification = verdict.verification.as_ref()?;
    (verification.by == wire::VerifiedBy::LaterAudit)
        .then(|| verification.nodes.first().copied())
        .flatten()
}

async fn end_tasks(
    tx: &mut Transaction<'static, Any>,
    verdicts: &[crate::TaskVerdict],
) -> Result<(), StoreError> {
    for verdict in verdicts {
        sqlx::query(
            "UPDATE tasks SET state = $3, outcome = $4, result_attempt_id = $5, \
             finished_at_ms = $6, verification = $7, vouched_by = $8 \
             WHERE job_id = $1 AND idx = $2",
        )
        .bind(verdict.job_id.as_db())
        .bind(i64::from(verdict.index))
        .bind(verdict.state.as_str())
        .bind(json(&verdict.outcome))
        .bind(verdict.result_attempt.map(|attempt| attempt.as_db()))
        .bind(db(verdict.at_ms))
        .bind(verdict.verification.as_ref().map(json))
        .bind(vouched_by(verdict).map(|node| node.as_db()))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn insert_transfers(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    transfers: &[&wire::Transfer],
) -> Result<(), StoreError> {
    for chunk in transfers.chunks(ROWS_PER_INSERT) {
        let sql = values_sql(
            backend,
            "INSERT INTO ledger (seq, at_ms, from_account, to_account, fuel, memo, job_id) \
             VALUES ",
            chunk.len(),
            &[""; 7],
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for transfer in chunk {
            query = query
                .bind(db(transfer.seq))
                .bind(db(transfer.at_ms))
                .bind(transfer.from.to_string())
                .bind(transfer.to.to_string())
                .bind(db(transfer.fuel))
                .bind(json(&transfer.memo))
                .bind(transfer.job_id.map(|job| job.as_db()));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn set_records(
    tx: &mut Transaction<'static, Any>,
    rows: &[crate::RecordRow],
) -> Result<(), StoreError> {
    for row in rows {
        sqlx::query(
            "INSERT INTO node_records (node_id, owner, join_token_hash, verified, \
             audits_passed, mismatches, banned) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (node_id) DO UPDATE SET verified = excluded.verified, \
             audits_passed = excluded.audits_passed, mismatches = excluded.mismatches, \
             banned = excluded.banned",
        )
        .bind(row.node_id.as_db())
        .bind(row.owner as i64)
        .bind(row.join_token_hash.clone())
        .bind(db(row.verified))
        .bind(db(row.audits_passed))
        .bind(db(row.mismatches))
        .bind(i32::from(row.banned))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn upsert_node(tx: &mut Transaction<'static, Any>, row: &NodeRow) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO nodes (id, public_key, token_hash, name, capabilities, labels, slots, \
         agent_version, join_token_hash, seen_at_ms, registered_at_ms, network) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (id) DO UPDATE SET public_key = excluded.public_key, \
         token_hash = excluded.token_hash, name = excluded.name, \
         capabilities = excluded.capabilities, labels = excluded.labels, slots = excluded.slots, \
         agent_version = excluded.agent_version, join_token_hash = excluded.join_token_hash, \
         seen_at_ms = excluded.seen_at_ms, registered_at_ms = excluded.registered_at_ms, \
         network = excluded.network",
    )
    .bind(row.id.as_db())
    .bind(row.public_key.clone())
    .bind(row.token_hash.clone())
    .bind(row.name.clone())
    .bind(json(&row.capabilities))
    .bind(json(&row.labels))
    .bind(i64::from(row.slots))
    .bind(row.agent_version.clone())
    .bind(row.join_token_hash.clone())
    .bind(db(row.seen_at_ms))
    .bind(db(row.registered_at_ms))
    .bind(row.network.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_blob(
    tx: &mut Transaction<'static, Any>,
    hash: &BlobHash,
    size_bytes: u64,
    at_ms: u64,
    reader: Option<RequesterId>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO blobs (hash, size_bytes, created_at_ms, used_at_ms) VALUES ($1, $2, $3, $3) \
         ON CONFLICT (hash) DO UPDATE SET used_at_ms = excluded.used_at_ms",
    )
    .bind(hash.to_hex())
    .bind(db(size_bytes))
    .bind(db(at_ms))
    .execute(&mut **tx)
    .await?;
    if let Some(reader) = reader {
        sqlx::query(
            "INSERT INTO blob_refs (hash, requester_id) VALUES ($1, $2) \
             ON CONFLICT (hash, requester_id) DO NOTHING",
        )
        .bind(hash.to_hex())
        .bind(reader.as_db())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn insert_job(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    job: &JobRow,
    tasks: &[TaskSpec],
) -> Result<(), StoreError> {
    debug_assert!(
        job.spec.tasks.is_empty(),
        "tasks are stored as rows of their own"
    );
    debug_assert_eq!(job.task_count as usize, tasks.len());
    sqlx::query(
        "INSERT INTO jobs (id, requester_id, name, spec, task_count, state, submitted_seq, \
         created_at_ms, finished_at_ms, module_bytes, component, wasm_features) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(job.id.as_db())
    .bind(job.requester_id.as_db())
    .bind(job.spec.name.clone())
    .bind(json(&job.spec))
    .bind(i64::from(job.task_count))
    .bind(job.state.as_str())
    .bind(db(job.submitted_seq))
    .bind(db(job.created_at_ms))
    .bind(job.finished_at_ms.map(db))
    .bind(db(job.module_bytes))
    .bind(i64::from(job.component))
    .bind(json(&job.wasm_features))
    .execute(&mut **tx)
    .await?;
    for (chunk_index, chunk) in tasks.chunks(ROWS_PER_INSERT).enumerate() {
        let sql = values_sql(
            backend,
            "INSERT INTO tasks (job_id, idx, spec, state) VALUES ",
            chunk.len(),
            &["", "", "", "'pending'"],
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (offset, task) in chunk.iter().enumerate() {
            let index = chunk_index * ROWS_PER_INSERT + offset;
            query = query
                .bind(job.id.as_db())
                .bind(index as i64)
                .bind(json(task));
        }
        query.execute(&mut **tx).await?;
    }
    let uses: Vec<(wire::JobId, BlobHash)> = retention::submission_blobs(&job.spec, tasks)
        .into_iter()
        .map(|hash| (job.id, hash))
        .collect();
    retention::insert_job_blobs(tx, backend, &uses).await?;
    Ok(())
}

/// `prefix` followed by `rows` tuples; a column given as a literal in `literals` takes no
/// parameter.
/// Parameters are `$n` on PostgreSQL and `?` on SQLite: SQLite finds a named parameter by a
/// linear search, so binding a statement of hundreds of `$n`s costs time quadratic in their
/// number, while plain `?`s bind in order.
pub(crate) fn values_sql(backend: Backend, prefix: &str, rows: usize, literals: &[&str]) -> String {
    let mut sql = String::with_capacity(prefix.len() + rows * literals.len() * 6);
    sql.push_str(prefix);
    let mut parameter = 0;
    for row in 0..rows {
        if row > 0 {
            sql.push(',');
        }
        sql.push('(');
        for (column, literal) in literals.iter().enumerate() {
            if column > 0 {
                sql.push(',');
            }
            if literal.is_empty() {
                parameter += 1;
                sql.push_str(&placeholder(backend, parameter));
            } else {
                sql.push_str(literal);
            }
        }
        sql.push(')');
    }
    sql
}

/// The `number`th parameter of a statement (from 1): `$n` on PostgreSQL, a plain `?` on
/// SQLite, which binds them in order (see [`values_sql`]).
pub(crate) fn placeholder(backend: Backend, number: usize) -> String {
    match backend {
        Backend::Postgres => format!("${number}"),
        Backend::Sqlite => "?".to_owned(),
    }
}

/// `(…)` of `count` parameters numbered from `first`, for `IN` lists.
pub(crate) fn placeholder_list(backend: Backend, first: usize, count: usize) -> String {
    let placeholders: Vec<String> = (first..first + count)
        .map(|number| placeholder(backend, number))
        .collect();
    format!("({})", placeholders.join(","))
}

async fn grant_attempts(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    rows: &[AttemptRow],
) -> Result<(), StoreError> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = values_sql(
            backend,
            "INSERT INTO attempts (id, job_id, task_idx, node_id, granted_at_ms, state) VALUES ",
            chunk.len(),
            &["", "", "", "", "", "'running'"],
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for row in chunk {
            query = query
                .bind(row.id.as_db())
                .bind(row.job_id.as_db())
                .bind(i64::from(row.task_index))
                .bind(row.node_id.as_db())
                .bind(db(row.granted_at_ms));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Rows per multi-row UPDATE; each attempt row binds 11 parameters.
const ROWS_PER_UPDATE: usize = 64;

/// Ends attempts (and the tasks they end) with one `UPDATE … FROM (VALUES …)` per chunk rather
/// than two statements per attempt: the same SQL runs on SQLite (3.33+) and PostgreSQL, whose
/// `VALUES` columns are both named column1, column2, ….
async fn end_attempts(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    ends: &[AttemptEnd],
) -> Result<(), StoreError> {
    let uses: Vec<(wire::JobId, BlobHash)> = ends
        .iter()
        .flat_map(|end| retention::attempt_blobs(end).map(|hash| (end.job_id, hash)))
        .collect();
    retention::insert_job_blobs(tx, backend, &uses).await?;
    for chunk in ends.chunks(ROWS_PER_UPDATE) {
        // An ended attempt takes no more reports, so what its node uploaded for it is no longer
        // needed to check one.
        let sql = format!(
            "DELETE FROM attempt_uploads WHERE attempt_id IN {}",
            placeholder_list(backend, 1, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for end in chunk {
            query = query.bind(end.attempt_id.as_db());
        }
        query.execute(&mut **tx).await?;
        let sql = values_sql(
            backend,
            "UPDATE attempts SET state = v.column2, finished_at_ms = v.column3, \
             outcome = v.column4, fuel_used = v.column5, wall_ms = v.column6, \
             memory_peak_bytes = v.column7, output_bytes = v.column8, stdout = v.column9, \
             stderr = v.column10, outputs = v.column11, compile_ms = v.column12 FROM (VALUES ",
            chunk.len(),
            &[""; 12],
        ) + ") AS v WHERE attempts.id = v.column1";
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for end in chunk {
            let usage = end.usage.unwrap_or_default();
            query = query
                .bind(end.attempt_id.as_db())
                .bind(end.state.as_str())
                .bind(db(end.at_ms))
                .bind(end.outcome.as_ref().map(json))
                .bind(end.usage.map(|_| db(usage.fuel_used)))
                .bind(end.usage.map(|_| db(usage.wall_ms)))
                .bind(end.usage.map(|_| db(usage.memory_peak_bytes)))
                .bind(end.usage.map(|_| db(usage.output_bytes)))
                .bind(end.stdout.as_ref().map(json))
                .bind(end.stderr.as_ref().map(json))
                .bind((!end.outputs.is_empty()).then(|| json(&end.outputs)))
                .bind(end.usage.map(|_| db(usage.compile_ms)));
        }
        query.execute(&mut **tx).await?;
        end_tasks_of(tx, backend, chunk).await?;
    }
    Ok(())
}

/// Ends the tasks that attempts of `chunk` end, with the attempts' results.
async fn end_tasks_of(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    chunk: &[AttemptEnd],
) -> Result<(), StoreError> {
    let task_ends: Vec<(&AttemptEnd, &crate::rows::TaskEnd)> = chunk
        .iter()
        .filter_map(|end| end.task_end.as_ref().map(|task_end| (end, task_end)))
        .collect();
    if task_ends.is_empty() {
        return Ok(());
    }
    let sql = values_sql(
        backend,
        "UPDATE tasks SET state = v.column3, outcome = v.column4, \
         result_attempt_id = v.column5, finished_at_ms = v.column6 FROM (VALUES ",
        task_ends.len(),
        &[""; 6],
    ) + ") AS v WHERE tasks.job_id = v.column1 AND tasks.idx = v.column2";
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (end, task_end) in task_ends {
        query = query
            .bind(end.job_id.as_db())
            .bind(i64::from(end.task_index))
            .bind(task_end.state.as_str())
            .bind(json(&task_end.outcome))
            .bind(end.attempt_id.as_db())
            .bind(db(end.at_ms));
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

async fn cancel_job(
    tx: &mut Transaction<'static, Any>,
    job_id: wire::JobId,
    at_ms: u64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE jobs SET state = $2, finished_at_ms = $3 WHERE id = $1 AND state = $4")
        .bind(job_id.as_db())
        .bind(JobState::Cancelled.as_str())
        .bind(db(at_ms))
        .bind(JobState::Running.as_str())
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE tasks SET state = $2, outcome = $3, finished_at_ms = $4 \
         WHERE job_id = $1 AND state = $5",
    )
    .bind(job_id.as_db())
    .bind(TaskState::Cancelled.as_str())
    .bind(json(&Outcome::Cancelled))
    .bind(db(at_ms))
    .bind(TaskState::Pending.as_str())
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM attempt_uploads WHERE job_id = $1")
        .bind(job_id.as_db())
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE attempts SET state = $2, finished_at_ms = $3 WHERE job_id = $1 AND state = 'running'",
    )
    .bind(job_id.as_db())
    .bind(crate::rows::AttemptEndState::Cancelled.as_str())
    .bind(db(at_ms))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_sql_numbers_parameters_and_keeps_literals() {
        assert_eq!(
            values_sql(
                Backend::Postgres,
                "INSERT INTO t VALUES ",
                2,
                &["", "'x'", ""]
            ),
            "INSERT INTO t VALUES ($1,'x',$2),($3,'x',$4)"
        );
        assert_eq!(
            values_sql(
                Backend::Sqlite,
                "INSERT INTO t VALUES ",
                2,
                &["", "'x'", ""]
            ),
            "INSERT INTO t VALUES (?,'x',?),(?,'x',?)"
        );
    }
}
