//! What a group of [`Write`]s does to the database, as [`Statement`]s: made once here and run
//! by whichever executor the backend's writer uses, so no SQL is written twice.

use wire::{BlobHash, JobState, Outcome, RequesterId, TaskSpec, TaskState};

use crate::rows::{AttemptEnd, AttemptRow, JobRow, NodeRow, TokenRole};
use crate::statement::{Statement, placeholder_list, values_sql};
use crate::writer::Write;
use crate::{Backend, retention};

/// Rows per multi-row INSERT; well under SQLite's and PostgreSQL's bound-parameter limits.
const ROWS_PER_INSERT: usize = 200;

/// Rows per multi-row UPDATE; each attempt row binds 12 parameters.
const ROWS_PER_UPDATE: usize = 64;

pub(crate) fn db(value: u64) -> i64 {
    value as i64
}

pub(crate) fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("wire types serialize to JSON")
}

/// The statements that apply `writes` in order, in one transaction.
pub(crate) fn plan<'a>(
    backend: Backend,
    writes: impl IntoIterator<Item = &'a Write>,
) -> Vec<Statement> {
    let mut sql = Vec::new();
    // Ledger rows touch no other table and commit with the rest, so the whole group's go in
    // as one multi-row statement at the end rather than one per request.
    let mut transfers: Vec<&wire::Transfer> = Vec::new();
    for write in writes {
        match write {
            Write::InsertTransfers(rows) => transfers.extend(rows),
            write => statements(&mut sql, backend, write),
        }
    }
    insert_transfers(&mut sql, backend, &transfers);
    sql
}

fn statements(sql: &mut Vec<Statement>, backend: Backend, write: &Write) {
    match write {
        Write::SetMeta { .. }
        | Write::InsertRequester(_)
        | Write::InsertPeer(_)
        | Write::DeletePeer { .. }
        | Write::InsertToken(_)
        | Write::RevokeToken { .. } => accounts(sql, write),
        Write::UpsertNode(_)
        | Write::DeleteNode { .. }
        | Write::SetNodesSeen(_)
        | Write::SetNodeCapabilities { .. }
        | Write::SetRecords(_) => nodes(sql, write),
        Write::InsertBlob { .. }
        | Write::AddBlobReaders { .. }
        | Write::RecordAttemptUpload { .. }
        | Write::TouchBlobs { .. }
        | Write::ForgetBlobs { .. } => blobs(sql, backend, write),
        Write::InsertJob { job, tasks } => insert_job(sql, backend, job, tasks),
        Write::GrantAttempts(rows) => grant_attempts(sql, backend, rows),
        Write::EndAttempts(ends) => end_attempts(sql, backend, ends),
        Write::SetTaskCheckpoint {
            job_id,
            task_index,
            latest,
            lost_ms,
            makers,
        } => sql.push(
            Statement::new(
                "UPDATE tasks SET checkpoint = $1, checkpoint_hash = $2, \
                 checkpoints_lost_ms = $3, checkpoint_makers = $4 WHERE job_id = $5 AND idx = $6",
            )
            .bind(latest.map(|latest| json(&latest)))
            .bind(latest.map(|latest| latest.hash.to_hex()))
            .bind(db(*lost_ms))
            .bind((!makers.is_empty()).then(|| json(makers)))
            .bind(job_id.as_db())
            .bind(i64::from(*task_index)),
        ),
        Write::EndTasks(verdicts) => end_tasks(sql, backend, verdicts),
        Write::RecallTasks(recall) => crate::recall::recall_tasks(sql, recall),
        Write::CancelJob {
            job_id,
            at_ms,
            aborted,
        } => cancel_job(sql, *job_id, *at_ms, *aborted),
        Write::FinishJob {
            job_id,
            state,
            at_ms,
        } => sql.push(
            Statement::new("UPDATE jobs SET state = $2, finished_at_ms = $3 WHERE id = $1")
                .bind(job_id.as_db())
                .bind(state.as_str())
                .bind(db(*at_ms)),
        ),
        Write::SetJobKeys { .. } | Write::UpsertDeletion(_) | Write::DropDeletions(_) => {
            private_data(sql, backend, write)
        }
        Write::PurgeJobs(job_ids) => retention::purge_jobs(sql, backend, job_ids),
        Write::UpsertPipeline(row) => upsert_pipeline(sql, backend, row),
        Write::ReuseResults { .. } => crate::reuse::plan(sql, backend, write),
        Write::PurgePipelines(ids) => retention::purge_pipelines(sql, backend, ids),
        Write::KeepBlobs { .. } | Write::ForgetKeptOfPipeline(_) => crate::kept::plan(sql, write),
        Write::InsertTransfers(_) => unreachable!("`plan` inserts a group's ledger rows at once"),
    }
}

/// Private jobs' keys and deleted jobs' records.
fn private_data(sql: &mut Vec<Statement>, backend: Backend, write: &Write) {
    match write {
        Write::SetJobKeys { job_id, keys } => sql.push(
            Statement::new("UPDATE jobs SET keys_granted = $2 WHERE id = $1")
                .bind(job_id.as_db())
                .bind(json(keys)),
        ),
        Write::UpsertDeletion(row) => sql.push(
            Statement::new(
                "INSERT INTO deletions (job_id, requester_id, deleted_at_ms, body) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (job_id) DO UPDATE SET body = excluded.body",
            )
            .bind(row.job_id.as_db())
            .bind(row.requester_id.as_db())
            .bind(db(row.deleted_at_ms))
            .bind(json(row)),
        ),
        Write::DropDeletions(ids) => retention::drop_deletions(sql, backend, ids),
        _ => unreachable!("private_data plans keys and deletions only"),
    }
}

/// Meta, requesters and tokens.
fn accounts(sql: &mut Vec<Statement>, write: &Write) {
    let statement = match write {
        Write::SetMeta { key, value } => Statement::new(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key.clone())
        .bind(value.clone()),
        Write::InsertPeer(row) => Statement::new(
            "INSERT INTO federation_peers \
             (id, url, fingerprint, token, requester_id, added_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(db(row.id))
        .bind(row.url.clone())
        .bind(row.fingerprint.to_string())
        .bind(row.token.clone())
        .bind(row.requester_id.as_db())
        .bind(db(row.added_at_ms)),
        Write::DeletePeer { id } => {
            Statement::new("DELETE FROM federation_peers WHERE id = $1").bind(db(*id))
        }
        Write::InsertRequester(row) => {
            Statement::new("INSERT INTO requesters (id, name, created_at_ms) VALUES ($1, $2, $3)")
                .bind(row.id.as_db())
                .bind(row.name.clone())
                .bind(db(row.created_at_ms))
        }
        Write::InsertToken(row) => {
            let (kind, requester) = match row.role {
                TokenRole::Requester(id) => ("requester", Some(id.as_db())),
                TokenRole::Join => ("join", None),
                TokenRole::Federation => ("federation", None),
            };
            Statement::new(
                "INSERT INTO tokens (hash, kind, requester_id, name, created_at_ms, revoked_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(row.hash.clone())
            .bind(kind)
            .bind(requester)
            .bind(row.name.clone())
            .bind(db(row.created_at_ms))
            .bind(row.revoked_at_ms.map(db))
        }
        Write::RevokeToken { hash, at_ms } => Statement::new(
            "UPDATE tokens SET revoked_at_ms = $2 WHERE hash = $1 AND revoked_at_ms IS NULL",
        )
        .bind(hash.clone())
        .bind(db(*at_ms)),
        _ => unreachable!("`statements` gives `accounts` only its writes"),
    };
    sql.push(statement);
}

/// Nodes and their records.
fn nodes(sql: &mut Vec<Statement>, write: &Write) {
    match write {
        Write::UpsertNode(row) => sql.push(upsert_node(row)),
        Write::DeleteNode { node_id } => {
            sql.push(Statement::new("DELETE FROM nodes WHERE id = $1").bind(node_id.as_db()));
        }
        Write::SetNodesSeen(seen) => {
            for (node_id, at_ms) in seen {
                sql.push(
                    Statement::new("UPDATE nodes SET seen_at_ms = $2 WHERE id = $1")
                        .bind(node_id.as_db())
                        .bind(db(*at_ms)),
                );
            }
        }
        Write::SetNodeCapabilities {
            node_id,
            capabilities,
        } => sql.push(
            Statement::new("UPDATE nodes SET capabilities = $2 WHERE id = $1")
                .bind(node_id.as_db())
                .bind(json(capabilities)),
        ),
        Write::SetRecords(rows) => sql.extend(rows.iter().map(set_record)),
        _ => unreachable!("`statements` gives `nodes` only its writes"),
    }
}

/// Blobs, who may read them, and what nodes uploaded.
fn blobs(sql: &mut Vec<Statement>, backend: Backend, write: &Write) {
    match write {
        Write::InsertBlob {
            hash,
            size_bytes,
            at_ms,
            reader,
        } => {
            insert_blob(sql, hash, *size_bytes, *at_ms, *reader);
            if let Some(uploader) = reader {
                // Its uploads count against the reader's quota; results of its jobs do not.
                sql.push(
                    Statement::new(
                        "UPDATE blob_refs SET uploaded = 1 WHERE hash = $1 AND requester_id = $2",
                    )
                    .bind(hash.to_hex())
                    .bind(uploader.as_db()),
                );
            }
        }
        Write::AddBlobReaders {
            hashes,
            reader,
            at_ms,
        } => {
            for (hash, size_bytes) in hashes {
                insert_blob(sql, hash, *size_bytes, *at_ms, Some(*reader));
            }
        }
        Write::RecordAttemptUpload {
            attempt_id,
            job_id,
            hash,
            size_bytes,
            at_ms,
        } => {
            insert_blob(sql, hash, *size_bytes, *at_ms, None);
            sql.push(
                Statement::new(
                    "INSERT INTO attempt_uploads (attempt_id, job_id, hash, size_bytes) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (attempt_id, hash) DO NOTHING",
                )
                .bind(attempt_id.as_db())
                .bind(job_id.as_db())
                .bind(hash.to_hex())
                .bind(db(*size_bytes)),
            );
        }
        Write::TouchBlobs { hashes, at_ms } => sql.extend(hashes.iter().map(|hash| {
            Statement::new("UPDATE blobs SET used_at_ms = $2 WHERE hash = $1")
                .bind(hash.to_hex())
                .bind(db(*at_ms))
        })),
        Write::ForgetBlobs {
            hashes,
            used_before_ms,
        } => retention::forget_blobs(sql, backend, hashes, *used_before_ms),
        _ => unreachable!("`statements` gives `blobs` only its writes"),
    }
}

/// The node whose word alone a verdict's result rests on: the node whose later audit released
/// it. Every other verdict had more than one witness.
fn vouched_by(verdict: &crate::TaskVerdict) -> Option<wire::NodeId> {
    let verification = verdict.verification.as_ref()?;
    (verification.by == wire::VerifiedBy::LaterAudit)
        .then(|| verification.nodes.first().copied())
        .flatten()
}

fn end_tasks(sql: &mut Vec<Statement>, backend: Backend, verdicts: &[crate::TaskVerdict]) {
    for verdict in verdicts {
        sql.push(
            Statement::new(
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
            .bind(vouched_by(verdict).map(|node| node.as_db())),
        );
    }
    insert_witnesses(sql, backend, verdicts);
}

/// The nodes each verdict's result rests on.
fn insert_witnesses(sql: &mut Vec<Statement>, backend: Backend, verdicts: &[crate::TaskVerdict]) {
    let witnesses: Vec<(wire::JobId, u32, wire::NodeId)> = verdicts
        .iter()
        .flat_map(|verdict| {
            let nodes = verdict.verification.iter().flat_map(|v| &v.nodes);
            nodes.map(move |node| (verdict.job_id, verdict.index, *node))
        })
        .collect();
    insert_witness_rows(sql, backend, &witnesses);
}

/// `(job, task, node)` rows of `task_witnesses`, a statement per group of rows.
pub(crate) fn insert_witness_rows(
    sql: &mut Vec<Statement>,
    backend: Backend,
    witnesses: &[(wire::JobId, u32, wire::NodeId)],
) {
    for chunk in witnesses.chunks(ROWS_PER_INSERT) {
        let mut values = values_sql(
            backend,
            "INSERT INTO task_witnesses (job_id, idx, node_id) VALUES ",
            chunk.len(),
            &[""; 3],
        );
        values.push_str(" ON CONFLICT DO NOTHING");
        let mut statement = Statement::new(values);
        for (job_id, index, node) in chunk {
            statement = statement
                .bind(job_id.as_db())
                .bind(i64::from(*index))
                .bind(node.as_db());
        }
        sql.push(statement);
    }
}

fn insert_transfers(sql: &mut Vec<Statement>, backend: Backend, transfers: &[&wire::Transfer]) {
    for chunk in transfers.chunks(ROWS_PER_INSERT) {
        let mut statement = Statement::new(values_sql(
            backend,
            "INSERT INTO ledger (seq, at_ms, from_account, to_account, fuel, memo, job_id) \
             VALUES ",
            chunk.len(),
            &[""; 7],
        ));
        for transfer in chunk {
            statement = statement
                .bind(db(transfer.seq))
                .bind(db(transfer.at_ms))
                .bind(transfer.from.to_string())
                .bind(transfer.to.to_string())
                .bind(db(transfer.fuel))
                .bind(json(&transfer.memo))
                .bind(transfer.job_id.map(|job| job.as_db()));
        }
        sql.push(statement);
    }
}

fn set_record(row: &crate::RecordRow) -> Statement {
    Statement::new(
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
    .bind(i64::from(row.banned))
}

fn upsert_node(row: &NodeRow) -> Statement {
    Statement::new(
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
}

fn insert_blob(
    sql: &mut Vec<Statement>,
    hash: &BlobHash,
    size_bytes: u64,
    at_ms: u64,
    reader: Option<RequesterId>,
) {
    sql.push(
        Statement::new(
            "INSERT INTO blobs (hash, size_bytes, created_at_ms, used_at_ms) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (hash) DO UPDATE SET used_at_ms = excluded.used_at_ms",
        )
        .bind(hash.to_hex())
        .bind(db(size_bytes))
        .bind(db(at_ms)),
    );
    if let Some(reader) = reader {
        sql.push(
            Statement::new(
                "INSERT INTO blob_refs (hash, requester_id) VALUES ($1, $2) \
                 ON CONFLICT (hash, requester_id) DO NOTHING",
            )
            .bind(hash.to_hex())
            .bind(reader.as_db()),
        );
    }
}

fn insert_job(sql: &mut Vec<Statement>, backend: Backend, job: &JobRow, tasks: &[TaskSpec]) {
    debug_assert!(
        job.spec.tasks.is_empty(),
        "tasks are stored as rows of their own"
    );
    debug_assert_eq!(job.task_count as usize, tasks.len());
    sql.push(
        Statement::new(
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
        .bind(json(&job.wasm_features)),
    );
    let keys = wire::key::JobKey::of(&job.spec);
    for (chunk_index, chunk) in tasks.chunks(ROWS_PER_INSERT).enumerate() {
        let mut statement = Statement::new(values_sql(
            backend,
            "INSERT INTO tasks (job_id, idx, spec, state, task_key) VALUES ",
            chunk.len(),
            &["", "", "", "'pending'", ""],
        ));
        for (offset, task) in chunk.iter().enumerate() {
            let index = chunk_index * ROWS_PER_INSERT + offset;
            let key = keys.key(index as u32, task);
            statement = statement
                .bind(job.id.as_db())
                .bind(index as i64)
                .bind(json(task))
                .bind(key.to_hex());
        }
        sql.push(statement);
    }
    let uses: Vec<(wire::JobId, BlobHash)> = job
        .spec
        .blobs_named(tasks)
        .into_iter()
        .map(|hash| (job.id, hash))
        .collect();
    retention::insert_job_blobs(sql, backend, &uses);
}

fn upsert_pipeline(sql: &mut Vec<Statement>, backend: Backend, row: &crate::PipelineRow) {
    sql.push(
        Statement::new(
            "INSERT INTO pipelines (id, requester_id, created_at_ms, ended_at_ms, body) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
             ended_at_ms = excluded.ended_at_ms, body = excluded.body",
        )
        .bind(row.id.as_db())
        .bind(row.requester_id.as_db())
        .bind(db(row.created_at_ms))
        .bind(row.ended_at_ms.map(db))
        .bind(json(row)),
    );
    let uses: Vec<(wire::JobId, BlobHash)> = row
        .stages
        .iter()
        .filter_map(|stage| Some((stage.job_id, stage.waiting.as_ref()?)))
        .flat_map(|(job_id, waiting)| {
            waiting
                .job
                .blobs_named(&waiting.job.tasks)
                .into_iter()
                .map(move |hash| (job_id, hash))
        })
        .collect();
    retention::insert_job_blobs(sql, backend, &uses);
}

fn grant_attempts(sql: &mut Vec<Statement>, backend: Backend, rows: &[AttemptRow]) {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut statement = Statement::new(values_sql(
            backend,
            "INSERT INTO attempts (id, job_id, task_idx, node_id, granted_at_ms, state) VALUES ",
            chunk.len(),
            &["", "", "", "", "", "'running'"],
        ));
        for row in chunk {
            statement = statement
                .bind(row.id.as_db())
                .bind(row.job_id.as_db())
                .bind(i64::from(row.task_index))
                .bind(row.node_id.as_db())
                .bind(db(row.granted_at_ms));
        }
        sql.push(statement);
    }
}

/// Ends attempts (and the tasks they end) with one `UPDATE … FROM (VALUES …)` per chunk rather
/// than two statements per attempt: the same SQL runs on SQLite (3.33+) and PostgreSQL, whose
/// `VALUES` columns are both named column1, column2, ….
fn end_attempts(sql: &mut Vec<Statement>, backend: Backend, ends: &[AttemptEnd]) {
    let uses: Vec<(wire::JobId, BlobHash)> = ends
        .iter()
        .flat_map(|end| retention::attempt_blobs(end).map(|hash| (end.job_id, hash)))
        .collect();
    retention::insert_job_blobs(sql, backend, &uses);
    for chunk in ends.chunks(ROWS_PER_UPDATE) {
        // An ended attempt takes no more reports, so what its node uploaded for it is no longer
        // needed to check one.
        let mut statement = Statement::new(format!(
            "DELETE FROM attempt_uploads WHERE attempt_id IN {}",
            placeholder_list(backend, 1, chunk.len())
        ));
        for end in chunk {
            statement = statement.bind(end.attempt_id.as_db());
        }
        sql.push(statement);
        let mut statement = Statement::new(
            values_sql(
                backend,
                "UPDATE attempts SET state = v.column2, finished_at_ms = v.column3, \
                 outcome = v.column4, fuel_used = v.column5, wall_ms = v.column6, \
                 memory_peak_bytes = v.column7, output_bytes = v.column8, stdout = v.column9, \
                 stderr = v.column10, outputs = v.column11, compile_ms = v.column12, \
                 ran_on = v.column13 FROM (VALUES ",
                chunk.len(),
                &[""; 13],
            ) + ") AS v WHERE attempts.id = v.column1",
        );
        for end in chunk {
            let usage = end.usage.unwrap_or_default();
            let measured = |value: u64| end.usage.map(|_| db(value));
            statement = statement
                .bind(end.attempt_id.as_db())
                .bind(end.state.as_str())
                .bind(db(end.at_ms))
                .bind(end.outcome.as_ref().map(json))
                .bind(measured(usage.fuel_used))
                .bind(measured(usage.wall_ms))
                .bind(measured(usage.memory_peak_bytes))
                .bind(measured(usage.output_bytes))
                .bind(end.stdout.as_ref().map(json))
                .bind(end.stderr.as_ref().map(json))
                .bind((!end.outputs.is_empty()).then(|| json(&end.outputs)))
                .bind(measured(usage.compile_ms))
                .bind(end.ran_on.clone());
        }
        sql.push(statement);
        end_tasks_of(sql, backend, chunk);
    }
}

/// Ends the tasks that attempts of `chunk` end, with the attempts' results.
fn end_tasks_of(sql: &mut Vec<Statement>, backend: Backend, chunk: &[AttemptEnd]) {
    let task_ends: Vec<(&AttemptEnd, &crate::rows::TaskEnd)> = chunk
        .iter()
        .filter_map(|end| end.task_end.as_ref().map(|task_end| (end, task_end)))
        .collect();
    if task_ends.is_empty() {
        return;
    }
    let mut statement = Statement::new(
        values_sql(
            backend,
            "UPDATE tasks SET state = v.column3, outcome = v.column4, \
             result_attempt_id = v.column5, finished_at_ms = v.column6 FROM (VALUES ",
            task_ends.len(),
            &[""; 6],
        ) + ") AS v WHERE tasks.job_id = v.column1 AND tasks.idx = v.column2",
    );
    for (end, task_end) in task_ends {
        statement = statement
            .bind(end.job_id.as_db())
            .bind(i64::from(end.task_index))
            .bind(task_end.state.as_str())
            .bind(json(&task_end.outcome))
            .bind(end.attempt_id.as_db())
            .bind(db(end.at_ms));
    }
    sql.push(statement);
}

fn cancel_job(
    sql: &mut Vec<Statement>,
    job_id: wire::JobId,
    at_ms: u64,
    aborted: Option<wire::Aborted>,
) {
    let state = match aborted {
        Some(_) => JobState::Failed,
        None => JobState::Cancelled,
    };
    sql.push(
        Statement::new(
            "UPDATE jobs SET state = $2, finished_at_ms = $3, aborted = $5 \
             WHERE id = $1 AND state = $4",
        )
        .bind(job_id.as_db())
        .bind(state.as_str())
        .bind(db(at_ms))
        .bind(JobState::Running.as_str())
        .bind(aborted.as_ref().map(json)),
    );
    sql.push(
        Statement::new(
            "UPDATE tasks SET state = $2, outcome = $3, finished_at_ms = $4 \
             WHERE job_id = $1 AND state = $5",
        )
        .bind(job_id.as_db())
        .bind(TaskState::Cancelled.as_str())
        .bind(json(&Outcome::Cancelled))
        .bind(db(at_ms))
        .bind(TaskState::Pending.as_str()),
    );
    sql.push(Statement::new("DELETE FROM attempt_uploads WHERE job_id = $1").bind(job_id.as_db()));
    sql.push(
        Statement::new(
            "UPDATE attempts SET state = $2, finished_at_ms = $3 \
             WHERE job_id = $1 AND state = 'running'",
        )
        .bind(job_id.as_db())
        .bind(crate::rows::AttemptEndState::Cancelled.as_str())
        .bind(db(at_ms)),
    );
}
