//! The single writer on SQLite: one OS thread that owns a rusqlite connection to the store's
//! database file and applies each batch synchronously (BEGIN IMMEDIATE, the epoch fence, every
//! statement, COMMIT), then answers the batch's requests.
//!
//! Why not sqlx, which reads and migrates: sqlx runs each SQLite connection on a worker thread
//! of its own, so every await of a transaction (begin, the fence, each statement, the commit)
//! is a hand-off to that thread and back, and a commit of a few statements cost several times
//! its one fsync. Here a commit is one hand-off: the request reaches this thread, and the
//! answer goes back. Both executors run the same statements (`plan`), so the SQL is written
//! once. The thread's connection is a second connection to the same file: WAL lets sqlx's
//! connections read beside it, and it is the only one that writes once the store is open.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::{ToSql, ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _, TransactionBehavior};
use tokio::sync::oneshot;

use crate::statement::{Arg, Statement};
use crate::writer::{Batch, Queue, Target};
use crate::{Backend, Durability, StoreError};

/// Prepared statements the connection keeps: every fixed text a plan uses, with room for the
/// multi-row ones of the sizes that recur (rusqlite keeps 16 by default).
const STATEMENTS_CACHED: usize = 128;

impl ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Arg::Int(Some(value)) => ToSqlOutput::Owned(Value::Integer(*value)),
            Arg::Text(Some(value)) => ToSqlOutput::Borrowed(ValueRef::Text(value.as_bytes())),
            Arg::Int(None) | Arg::Text(None) => ToSqlOutput::Owned(Value::Null),
        })
    }
}

/// Opens the writer's connection to `target`'s file and starts its thread; returns once the
/// connection is open, or with why it could not be.
pub(crate) async fn spawn(target: &Target, queue: Queue) -> Result<(), StoreError> {
    let path = target
        .sqlite_path
        .clone()
        .expect("a SQLite store names its file");
    let (durability, epoch) = (target.durability, target.epoch);
    let (opened, opening) = oneshot::channel();
    let thread_path = path.clone();
    let started = std::thread::Builder::new()
        .name("store-writer".to_owned())
        .spawn(move || match open(&thread_path, durability) {
            Ok(connection) => {
                let _ = opened.send(Ok(()));
                let connection = Writer {
                    connection,
                    durability,
                    syncing: durability == Durability::Full,
                };
                run(connection, epoch, queue);
            }
            Err(error) => {
                let _ = opened.send(Err(error));
            }
        });
    let open_error = |message: String| StoreError::Open {
        url: format!("sqlite://{}", path.display()),
        message,
    };
    started.map_err(|error| open_error(format!("cannot start the writer's thread: {error}")))?;
    opening
        .await
        .map_err(|_| open_error("the writer's thread stopped while opening".to_owned()))?
        .map_err(|error| open_error(error.to_string()))
}

/// The writer's connection, set up as `Store::open` sets up sqlx's: the same PRAGMAs, so a
/// commit waits for the disk as `durability` says.
fn open(path: &Path, durability: Durability) -> Result<Connection, rusqlite::Error> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.execute_batch(crate::sqlite_pragmas(durability))?;
    // The PRAGMAs set it too; said again so a wait for the lock never depends on their text.
    connection.busy_timeout(Duration::from_secs(10))?;
    connection.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
    Ok(connection)
}

/// The writer's connection, and whether its commits wait for the disk now.
struct Writer {
    connection: Connection,
    durability: Durability,
    /// `synchronous=FULL` is set; a deferred batch sets NORMAL for its commit.
    syncing: bool,
}

impl Writer {
    /// Makes the next commit wait for the disk, or not, as `batch` needs: in WAL mode a commit
    /// under FULL syncs the log, and with it every commit before it.
    fn sync_as(&mut self, batch: &Batch) -> Result<(), rusqlite::Error> {
        let syncing = self.durability == Durability::Full && batch.synced();
        if syncing != self.syncing {
            let mode = if syncing { "FULL" } else { "NORMAL" };
            self.connection.pragma_update(None, "synchronous", mode)?;
            self.syncing = syncing;
        }
        Ok(())
    }
}

fn run(mut writer: Writer, epoch: u64, mut queue: Queue) {
    while let Some(batch) = queue.next_blocking() {
        let result = match queue.settled(&batch) {
            Some(result) => result,
            None => writer
                .sync_as(&batch)
                .map_err(StoreError::from)
                .and_then(|()| apply(&mut writer.connection, epoch, &batch)),
        };
        if let Some(closed) = queue.settle(batch, result) {
            if let Err((_, error)) = writer.connection.close() {
                tracing::warn!(%error, "the state store's writer did not close its connection cleanly");
            }
            let _ = closed.send(());
            return;
        }
    }
}

/// Applies `batch` in one transaction. IMMEDIATE takes the write lock at BEGIN, so the fence's
/// read and the writes happen under one lock: no take-over commits between them.
fn apply(connection: &mut Connection, epoch: u64, batch: &Batch) -> Result<(), StoreError> {
    let statements = crate::plan::plan(Backend::Sqlite, batch.writes());
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let value: Option<String> = transaction
        .prepare_cached(crate::epoch::fence_sql(Backend::Sqlite))?
        .query_row([], |row| row.get(0))
        .optional()?;
    crate::epoch::check(value, epoch)?;
    for statement in &statements {
        execute(&transaction, statement)?;
    }
    transaction.commit()?;
    Ok(())
}

/// Runs `statement`, binding its arguments as sqlx does on SQLite: a `$n` parameter takes the
/// `n`th argument (one text serves PostgreSQL too), a plain `?` the next one in order.
fn execute(connection: &Connection, statement: &Statement) -> Result<(), StoreError> {
    let mut prepared = connection.prepare_cached(&statement.sql)?;
    let mut next = 0;
    for index in 1..=prepared.parameter_count() {
        let number = match prepared.parameter_name(index) {
            Some(name) => name
                .strip_prefix(['$', '?'])
                .and_then(|number| number.parse::<usize>().ok())
                .ok_or_else(|| {
                    StoreError::Database(format!(
                        "the statement's parameter {name} is neither $n nor ?: {}",
                        statement.sql
                    ))
                })?,
            None => {
                next += 1;
                next
            }
        };
        let arg = statement.args.get(number - 1).ok_or_else(|| {
            StoreError::Database(format!(
                "the statement names argument {number} of the {} it was given: {}",
                statement.args.len(),
                statement.sql
            ))
        })?;
        prepared.raw_bind_parameter(index, arg)?;
    }
    prepared.raw_execute()?;
    Ok(())
}

/// The file of the database sqlx opened for `url`, as SQLite names it, so the writer opens the
/// very same file however the URL spelled it.
pub(crate) async fn database_file(pool: &sqlx::AnyPool, url: &str) -> Result<PathBuf, StoreError> {
    use sqlx::Row as _;
    let row = sqlx::query("SELECT file FROM pragma_database_list WHERE name = 'main'")
        .fetch_one(pool)
        .await?;
    let file: String = row.try_get(0)?;
    if file.is_empty() {
        return Err(StoreError::Open {
            url: url.to_owned(),
            message: "an in-memory SQLite database cannot be shared by the writer and the \
                      readers; give a file path (sqlite://PATH)"
                .to_owned(),
        });
    }
    Ok(PathBuf::from(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection() -> Connection {
        let connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("CREATE TABLE t (a BIGINT, b TEXT, c BIGINT)")
            .unwrap();
        connection
    }

    fn rows(connection: &Connection) -> Vec<(Option<i64>, Option<String>, Option<i64>)> {
        let mut query = connection
            .prepare("SELECT a, b, c FROM t ORDER BY a")
            .unwrap();
        query
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Commits `pages` pages of a table `t` in one transaction.
    fn commit_pages(connection: &Connection, pages: u32) {
        connection
            .execute_batch(&format!(
                "BEGIN;
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {pages})
                 INSERT INTO t (a, b) SELECT i, zeroblob(4000) FROM n;
                 COMMIT;"
            ))
            .unwrap();
    }

    #[test]
    fn the_writers_commits_checkpoint_the_log_past_ten_thousand_frames_not_sooner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        // The store's connections open an existing file; sqlx creates it.
        drop(Connection::open(&path).unwrap());
        let connection = open(&path, Durability::Full).unwrap();
        connection
            .execute_batch("CREATE TABLE t (a BIGINT, b BLOB)")
            .unwrap();
        let file_bytes = || std::fs::metadata(&path).unwrap().len();
        let before = file_bytes();
        commit_pages(&connection, 5_000);
        assert_eq!(file_bytes(), before, "5,000 frames stay in the log");
        commit_pages(&connection, 6_000);
        assert!(
            file_bytes() > before,
            "past 10,000 frames the commit copied the log into the database file"
        );
    }

    #[test]
    fn dollar_parameters_take_their_numbered_argument_whatever_their_order() {
        let connection = connection();
        // `$3` comes first in the text and `$1` twice, as the store's texts do.
        let statement = Statement::new("INSERT INTO t (c, b, a) VALUES ($3, $2, $1 + $1)")
            .bind(1i64)
            .bind("text")
            .bind(None::<i64>);
        execute(&connection, &statement).unwrap();
        assert_eq!(
            rows(&connection),
            [(Some(2), Some("text".to_owned()), None)]
        );
    }

    #[test]
    fn plain_parameters_take_their_arguments_in_order() {
        let connection = connection();
        let statement = Statement::new("INSERT INTO t (a, b, c) VALUES (?, ?, 7), (?, ?, 8)")
            .bind(1i64)
            .bind(None::<String>)
            .bind(2i64)
            .bind("x");
        execute(&connection, &statement).unwrap();
        assert_eq!(
            rows(&connection),
            [
                (Some(1), None, Some(7)),
                (Some(2), Some("x".to_owned()), Some(8))
            ]
        );
    }

    #[test]
    fn a_statement_missing_an_argument_is_refused_not_run_with_null() {
        let connection = connection();
        let statement = Statement::new("INSERT INTO t (a, b) VALUES ($1, $2)").bind(1i64);
        let error = execute(&connection, &statement).unwrap_err();
        assert!(error.to_string().contains("argument 2 of the 1"), "{error}");
        assert!(rows(&connection).is_empty());
    }
}
