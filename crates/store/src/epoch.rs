//! The epoch that fences a coordinator that has been replaced.
//!
//! Taking the lead of the database (see `lead`) raises the `epoch` row of `meta` by one in a
//! single atomic statement, so two stores that take it get different epochs. Every commit
//! then first reads, in its own transaction, that the row still holds its epoch; a store that
//! finds a newer one writes nothing more (`StoreError::Fenced`). A coordinator that froze, or
//! one started by mistake on the same database, can so never interleave its writes with the
//! newer one's, whatever the timing: the check and the writes commit or fail together.

use sqlx::{Any, Row, Transaction};

use crate::{Backend, StoreError};

/// Raises the database's epoch inside `transaction` and returns it: the lead is taken in the
/// same transaction (see `lead`).
pub(crate) async fn raise(transaction: &mut Transaction<'static, Any>) -> Result<u64, StoreError> {
    sqlx::query("INSERT INTO meta (key, value) VALUES ('epoch', '0') ON CONFLICT (key) DO NOTHING")
        .execute(&mut **transaction)
        .await?;
    let row = sqlx::query(
        "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) \
         WHERE key = 'epoch' RETURNING value",
    )
    .fetch_one(&mut **transaction)
    .await?;
    let value: String = row.try_get(0)?;
    value
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("the epoch {value:?} is not a number")))
}

/// The read of the database's epoch that opens every commit. It reads, not writes, so a commit
/// costs no extra page: on PostgreSQL the row is locked `FOR SHARE` until the transaction
/// ends, so a newer store's take-over waits for it or comes first; on SQLite the writer's
/// transaction is IMMEDIATE, so it holds the write lock from its start and no take-over can
/// commit between this read and the writes.
pub(crate) fn fence_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SELECT value FROM meta WHERE key = 'epoch'",
        Backend::Postgres => "SELECT value FROM meta WHERE key = 'epoch' FOR SHARE",
    }
}

/// Refuses the commit unless the epoch it read, `value`, is still the store's `epoch`.
pub(crate) fn check(value: Option<String>, epoch: u64) -> Result<(), StoreError> {
    if value == Some(epoch.to_string()) {
        Ok(())
    } else {
        Err(StoreError::Fenced { epoch })
    }
}

/// Refuses the transaction unless the database's epoch is still `epoch` (see [`fence_sql`]).
pub(crate) async fn fence(
    transaction: &mut Transaction<'static, Any>,
    backend: Backend,
    epoch: u64,
) -> Result<(), StoreError> {
    let value: Option<String> = sqlx::query(fence_sql(backend))
        .fetch_optional(&mut **transaction)
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    check(value, epoch)
}
