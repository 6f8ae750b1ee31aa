//! Leadership: which coordinator leads a database, as a lease row with an epoch.
//!
//! The row of `leadership` names the holder, its epoch (the fence every commit checks, see
//! `epoch`) and when its term ends, by the database's clock: the machines' clocks never
//! decide who leads. A coordinator takes the row when it opens the store and renews it well
//! inside its term. A standby takes it only once the term ran out; the conditional update is
//! atomic on both backends, so of two standbys that find it free, one takes it. Taking it
//! raises the epoch in the same transaction, so the moment a new leader exists, the old one's
//! commits are refused.
//!
//! A bare advisory lock would not do: a leader that froze (SIGSTOP, a VM paused) keeps its
//! session, and so its lock, for as long as it is frozen.

use std::time::{Duration, Instant};

use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::watch;

use crate::{Backend, StoreError};

/// How a store takes the lead of its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadTerms {
    /// Who leads, as others are told it (the coordinator's URL).
    pub holder: String,
    /// How long a taking or a renewal holds the lead, by the database's clock.
    pub term_ms: u64,
    /// Wait for the lead to be free instead of taking it at once.
    pub standby: bool,
}

/// A lead term long enough that a busy database never costs it, short enough that a standby
/// takes over within a few seconds of the leader's end.
pub const LEAD_TERM_MS_DEFAULT: u64 = 3_000;

/// The shortest term allowed: renewals come four times a term, and below this they would
/// load the database for nothing.
pub const LEAD_TERM_MS_MIN: u64 = 1_000;

/// How often a standby looks whether the lead is free, at most.
const STANDBY_LOOK_EVERY: Duration = Duration::from_millis(250);

impl LeadTerms {
    /// Takes the lead at once, as a coordinator started alone does.
    pub fn at_once(holder: &str) -> LeadTerms {
        LeadTerms {
            holder: holder.to_owned(),
            term_ms: LEAD_TERM_MS_DEFAULT,
            standby: false,
        }
    }
}

/// What a renewal found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// The lead is still this store's, for another term from the renewal.
    Held,
    /// Another coordinator took it: this one must write nothing more.
    Lost { holder: String },
}

/// The database's clock in milliseconds since the Unix epoch, as SQL of each backend.
macro_rules! now_ms {
    (Sqlite) => {
        "CAST((julianday('now') - 2440587.5) * 86400000.0 AS BIGINT)"
    };
    (Postgres) => {
        "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    };
}

/// One statement of this module for `backend`: its pieces with the database's clock between
/// each two.
macro_rules! with_now {
    ($backend:expr, $first:literal $(, $rest:literal)+) => {
        match $backend {
            Backend::Sqlite => concat!($first $(, now_ms!(Sqlite), $rest)+),
            Backend::Postgres => concat!($first $(, now_ms!(Postgres), $rest)+),
        }
    };
}

/// Takes the lead on `terms` and returns the epoch it was taken at, with the moment the
/// taking was asked for (the term counts from no earlier). A standby waits until the lead is
/// free, telling `leader` who holds it meanwhile, and rides out a database that is down.
pub(crate) async fn take(
    pool: &AnyPool,
    backend: Backend,
    terms: &LeadTerms,
    leader: &watch::Sender<Option<String>>,
) -> Result<(u64, Instant), StoreError> {
    loop {
        let asked_at = Instant::now();
        match try_take(pool, backend, terms).await {
            Ok(Ok(epoch)) => return Ok((epoch, asked_at)),
            Ok(Err((holder, left_ms))) => {
                leader.send_replace(Some(holder));
                let left = Duration::from_millis(left_ms.max(1));
                tokio::time::sleep(left.min(STANDBY_LOOK_EVERY)).await;
            }
            Err(error) if terms.standby => {
                tracing::warn!(%error, "cannot reach the database to take the lead; trying again");
                tokio::time::sleep(STANDBY_LOOK_EVERY).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Takes the lead if it is free (or at once when not standing by): the new epoch, or who
/// holds the lead and for how many more milliseconds.
async fn try_take(
    pool: &AnyPool,
    backend: Backend,
    terms: &LeadTerms,
) -> Result<Result<u64, (String, u64)>, StoreError> {
    let mut transaction = pool.begin().await?;
    if backend == Backend::Postgres {
        // A leader that froze mid-transaction holds its row locks until the server ends its
        // session: a standby looks again rather than queueing behind it.
        sqlx::query("SET LOCAL lock_timeout = 500")
            .execute(&mut *transaction)
            .await?;
    }
    sqlx::query(
        "INSERT INTO leadership (id, epoch, holder, expires_ms) VALUES (1, 0, '', 0) \
         ON CONFLICT (id) DO NOTHING",
    )
    .execute(&mut *transaction)
    .await?;
    let term_ms = i64::try_from(terms.term_ms).unwrap_or(i64::MAX);
    let taken = sqlx::query(with_now!(
        backend,
        "UPDATE leadership SET holder = $1, expires_ms = ",
        " + $2 WHERE id = 1 AND ($3 OR expires_ms <= ",
        ")"
    ))
    .bind(&terms.holder)
    .bind(term_ms)
    .bind(!terms.standby)
    .execute(&mut *transaction)
    .await?;
    if taken.rows_affected() == 0 {
        let row = sqlx::query(with_now!(
            backend,
            "SELECT holder, expires_ms - ",
            " FROM leadership WHERE id = 1"
        ))
        .fetch_one(&mut *transaction)
        .await?;
        let left_ms: i64 = row.try_get(1)?;
        return Ok(Err((row.try_get(0)?, left_ms.max(0) as u64)));
    }
    let epoch = crate::epoch::raise(&mut transaction).await?;
    sqlx::query("UPDATE leadership SET epoch = $1 WHERE id = 1")
        .bind(epoch as i64)
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(Ok(epoch))
}

/// Extends the lead of the store at `epoch` by `term_ms` from now, if it still holds it.
pub(crate) async fn renew(
    pool: &AnyPool,
    backend: Backend,
    epoch: u64,
    term_ms: u64,
) -> Result<Renewal, StoreError> {
    let mut transaction: Transaction<'static, Any> = pool.begin().await?;
    let renewed = sqlx::query(with_now!(
        backend,
        "UPDATE leadership SET expires_ms = ",
        " + $1 WHERE id = 1 AND epoch = $2"
    ))
    .bind(i64::try_from(term_ms).unwrap_or(i64::MAX))
    .bind(epoch as i64)
    .execute(&mut *transaction)
    .await?;
    let renewal = if renewed.rows_affected() == 1 {
        Renewal::Held
    } else {
        let holder: Option<String> = sqlx::query("SELECT holder FROM leadership WHERE id = 1")
            .fetch_optional(&mut *transaction)
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        Renewal::Lost {
            holder: holder.unwrap_or_default(),
        }
    };
    transaction.commit().await?;
    Ok(renewal)
}
