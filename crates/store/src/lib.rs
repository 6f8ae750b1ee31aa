//! Durable state of the coordinator through sqlx, with one code path for SQLite (the embedded
//! default, in WAL mode) and PostgreSQL.
//!
//! The coordinator keeps the live pool in memory and uses this crate as its log and its memory
//! across restarts: every change is a [`Write`], applied in order by one writer that groups
//! whatever is queued into one transaction (group commit), and [`Store::load`] rebuilds the pool
//! after a restart. On SQLite the writer is a thread of its own with a rusqlite connection
//! (`sqlite_writer`), so a commit is one hand-off rather than one per statement; everything
//! else, and PostgreSQL's writer, goes through sqlx.
//!
//! Invariants:
//! - The store never makes ids or timestamps: every [`Write`] carries them (Nomad's rule), so
//!   the coordinator's injected clock and random source are the only ones.
//! - Writes are applied in the order they were queued, across batches: a report written after
//!   the lease it ends always finds the lease's row.
//! - `write` returns only after the transaction holding the write committed.
//! - Only the store that holds the lead writes: taking it raises the epoch every commit checks
//!   (`lead`, `epoch`), and the lead's term is kept by the database's clock.

mod epoch;
mod kept;
mod lead;
mod ledger;
mod load;
mod plan;
mod read;
mod recall;
mod retention;
mod reuse;
mod rows;
mod schema;
mod sqlite_writer;
mod statement;
mod writer;

pub use lead::{LEAD_TERM_MS_DEFAULT, LEAD_TERM_MS_MIN, LeadTerms, Renewal};
pub use ledger::LedgerImage;
pub use load::PoolImage;
pub use reuse::{Reusable, TaskHistory};
pub use rows::*;
pub use writer::Write;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};
use tokio::sync::{mpsc, oneshot, watch};

/// Failures of durable storage. A coordinator cannot go on safely after a failed write: its
/// memory would be ahead of its disk.
#[derive(Debug, thiserror::Error, Clone)]
pub enum StoreError {
    #[error(
        "cannot open the database {url}: {message}; check the path or URL and that the server runs"
    )]
    Open { url: String, message: String },
    #[error(
        "cannot migrate the database schema: {0}; the database may belong to a newer crowdcloud"
    )]
    Migrate(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the state store is shut down")]
    Closed,
    #[error(
        "another coordinator took over this database (this one holds epoch {epoch}, an older \
         one); this coordinator stops writing so two never change one pool: run one \
         coordinator per database"
    )]
    Fenced { epoch: u64 },
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Database(error.to_string())
    }
}

/// Which database is behind the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Survives a power cut: fsync on every commit (group commit shares one fsync among all
    /// writes queued together).
    #[default]
    Full,
    /// Survives a crash of the coordinator process, not of the machine (SQLite
    /// `synchronous=NORMAL` in WAL mode).
    Process,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    epoch: u64,
    /// When the taking of the lead was asked for: its first term counts from no earlier.
    lead_asked_at: std::time::Instant,
    /// The number of the last request queued, held while it is sent so numbers follow the
    /// queue's order.
    sequence: Arc<std::sync::Mutex<u64>>,
    writes: mpsc::UnboundedSender<writer::Message>,
    progress: watch::Receiver<writer::Progress>,
    queued: Arc<AtomicUsize>,
}

/// The commit of writes queued with [`Store::enqueue`]; dropping it does not cancel them.
#[derive(Debug)]
pub struct Commit(Option<oneshot::Receiver<Result<(), StoreError>>>);

impl Commit {
    /// Returns once the transaction holding the writes committed.
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.0 {
            None => Ok(()),
            Some(receiver) => receiver.await.map_err(|_| StoreError::Closed)?,
        }
    }
}

/// Makes the SQLite database and its WAL and shared-memory files readable by the owner only,
/// also when an older version made them open to everyone. SQLite gives the WAL and
/// shared-memory files it makes later the database file's mode.
fn keep_sqlite_files_private(url: &str) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path.starts_with(':') {
        return Ok(());
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{path}{suffix}");
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::Open {
                    url: url.to_owned(),
                    message: format!("cannot make {file} private: {error}"),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// How SQLite connections are set up for `durability`: sqlx's, and the writer's own.
///
/// The log is copied into the database file (a checkpoint) by the commit that takes it past
/// `wal_autocheckpoint` frames. That commit, and every request queued behind it, waits about a
/// millisecond for it: two fsyncs and the pages. At SQLite's default of 1,000 frames, a busy
/// pool did so every fifty commits or so, about 4 % of round trips, which made the round trip's
/// p99. At 10,000 frames, ten times fewer, the round trip p99 went from 2.61 to 1.88 ms
/// (`bench dispatch`, four alternating runs), for a log of up to 40 MiB. `journal_size_limit`
/// cuts the log back to 64 MiB after a checkpoint, should one huge commit have grown it past.
fn sqlite_pragmas(durability: Durability) -> &'static str {
    // The two settings differ only in how a commit waits for the disk.
    macro_rules! pragmas {
        ($synchronous:literal) => {
            concat!(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=",
                $synchronous,
                "; PRAGMA busy_timeout=10000; PRAGMA temp_store=MEMORY; \
                 PRAGMA wal_autocheckpoint=10000; PRAGMA journal_size_limit=67108864;"
            )
        };
    }
    match durability {
        Durability::Full => pragmas!("FULL"),
        Durability::Process => pragmas!("NORMAL"),
    }
}

/// A pool of connections to the database at `url`, set up for `durability`.
async fn connect(
    url: &str,
    backend: Backend,
    durability: Durability,
) -> Result<AnyPool, StoreError> {
    let open_error = |error: sqlx::Error| StoreError::Open {
        url: url.to_owned(),
        message: error.to_string(),
    };
    let url_with_create = match backend {
        Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
        _ => url.to_owned(),
    };
    let options = AnyConnectOptions::from_str(&url_with_create)
        .map_err(open_error)?
        .disable_statement_logging();
    let pragmas = match backend {
        Backend::Sqlite => sqlite_pragmas(durability),
        // A coordinator that froze inside a transaction would hold its locks, and so the lead
        // and the epoch, for as long as it is frozen: the server ends its session instead,
        // within a lead's shortest term. Healthy transactions never wait on the coordinator
        // for anywhere near this long.
        Backend::Postgres => "SET idle_in_transaction_session_timeout = 1000",
    };
    AnyPoolOptions::new()
        .max_connections(match backend {
            Backend::Sqlite => 4,
            Backend::Postgres => 8,
        })
        .acquire_timeout(Duration::from_secs(30))
        // A SQLite connection is a file this process holds open: it does not go stale, so the
        // round trip to its worker thread that checks it before each use (on every commit and
        // read) buys nothing. A PostgreSQL connection can be cut by the server: checked.
        .test_before_acquire(backend == Backend::Postgres)
        .after_connect(move |connection, _meta| {
            Box::pin(async move {
                connection.execute(pragmas).await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(open_error)
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `url`: `sqlite://PATH` or
    /// `postgres://…`, and takes its lead at once.
    pub async fn open(url: &str, durability: Durability) -> Result<Store, StoreError> {
        let (leader, _) = watch::channel(None);
        Store::open_leading(url, durability, &LeadTerms::at_once(""), &leader).await
    }

    /// [`Store::open`] that takes the lead on `terms`: a standby waits until the lead is free,
    /// telling `leader` who holds it meanwhile.
    pub async fn open_leading(
        url: &str,
        durability: Durability,
        terms: &LeadTerms,
        leader: &watch::Sender<Option<String>>,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Open {
                url: url.to_owned(),
                message: "the URL must start with sqlite: or postgres:".to_owned(),
            });
        };
        let pool = connect(url, backend, durability).await?;
        if backend == Backend::Sqlite {
            keep_sqlite_files_private(url)?;
        }
        schema::migrate(&pool).await?;
        retention::fill_job_blobs(&pool, backend).await?;
        let (epoch, lead_asked_at) = lead::take(&pool, backend, terms, leader).await?;
        let sqlite_path = match backend {
            Backend::Sqlite => Some(sqlite_writer::database_file(&pool, url).await?),
            Backend::Postgres => None,
        };
        let queued = Arc::new(AtomicUsize::new(0));
        let target = writer::Target {
            pool: pool.clone(),
            backend,
            epoch,
            sqlite_path,
            durability,
        };
        let (writes, progress) = writer::spawn(target, Arc::clone(&queued)).await?;
        Ok(Store {
            pool,
            backend,
            epoch,
            lead_asked_at,
            sequence: Arc::new(std::sync::Mutex::new(0)),
            writes,
            progress,
            queued,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The epoch this store took the lead at: one more than any store that led the database
    /// before. Writes are refused once another store has taken the lead.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// When the lead was asked for: the first term runs from no earlier than this.
    pub fn lead_asked_at(&self) -> std::time::Instant {
        self.lead_asked_at
    }

    /// Extends this store's lead by `term_ms` from now, by the database's clock, unless
    /// another coordinator has taken it.
    pub async fn renew_lead(&self, term_ms: u64) -> Result<Renewal, StoreError> {
        lead::renew(&self.pool, self.backend, self.epoch, term_ms).await
    }

    /// Queues `writes` behind everything queued before and returns at once; the order of
    /// `enqueue` calls is the order of application. Call it while holding whatever lock orders
    /// the changes the writes record. Their commit is as durable as the store's [`Durability`].
    pub fn enqueue(&self, writes: Vec<Write>) -> Commit {
        self.enqueue_with(writes, true)
    }

    /// [`Store::enqueue`] for writes no one is told of before a later commit: theirs need not
    /// wait for the disk, and the next that does (or [`Store::flush`]) makes them durable with
    /// it. A crash before then loses them, and nothing acknowledged. So a submission that waits
    /// for its job's result shares the result's fsync instead of paying one of its own.
    pub fn enqueue_deferred(&self, writes: Vec<Write>) -> Commit {
        self.enqueue_with(writes, false)
    }

    fn enqueue_with(&self, writes: Vec<Write>, synced: bool) -> Commit {
        if writes.is_empty() {
            return Commit(None);
        }
        let (done, committed) = oneshot::channel();
        let writes_len = writes.len();
        self.queued.fetch_add(writes_len, Ordering::Relaxed);
        let mut sequence = self
            .sequence
            .lock()
            .expect("no panic while holding the sequence");
        *sequence += 1;
        let request = writer::Request {
            sequence: *sequence,
            writes,
            synced,
            done,
        };
        match self.writes.send(writer::Message::Writes(request)) {
            Ok(()) => Commit(Some(committed)),
            Err(_) => {
                // The writer is closed: these writes will never be applied, nor counted down.
                self.queued.fetch_sub(writes_len, Ordering::Relaxed);
                let (failed, receiver) = oneshot::channel();
                let _ = failed.send(Err(StoreError::Closed));
                Commit(Some(receiver))
            }
        }
    }

    /// Writes queued and not yet committed; callers refuse new work when it grows too large.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Applies `writes` and returns once they committed.
    pub async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.enqueue(writes).wait().await
    }

    /// Waits until everything queued so far is committed and durable: a read after it sees
    /// every change queued before it, and a crash loses none of them. It waits for the commits
    /// already under way, and adds one only when the last of them were deferred (see
    /// [`Store::enqueue_deferred`]).
    pub async fn flush(&self) -> Result<(), StoreError> {
        let target = *self
            .sequence
            .lock()
            .expect("no panic while holding the sequence");
        let mut progress = self.progress.clone();
        let synced = {
            let reached = progress
                .wait_for(|progress| progress.sequence >= target || progress.failure.is_some())
                .await
                .map_err(|_| StoreError::Closed)?;
            if let Some(failure) = &reached.failure {
                return Err(failure.clone());
            }
            reached.synced
        };
        if synced >= target {
            return Ok(());
        }
        // A commit that waits for the disk makes every one before it durable too. Its value
        // changes on every call, so the commit is never empty.
        let sync = Write::SetMeta {
            key: "synced".to_owned(),
            value: format!("{}.{target}", self.epoch),
        };
        self.enqueue(vec![sync]).wait().await
    }

    /// Commits what is queued and closes the database. Writes queued after it fail with
    /// [`StoreError::Closed`].
    pub async fn close(&self) {
        let _ = self.flush().await;
        let (close, closed) = oneshot::channel();
        if self.writes.send(writer::Message::Close(close)).is_ok() {
            // The writer answers once it let go of the database (on SQLite, its connection).
            let _ = closed.await;
        }
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[tokio::test]
    async fn sqlite_files_are_readable_by_their_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        // As an older version, or a umask of 022, would have left it.
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let url = format!("sqlite://{}", path.display());
        let _store = Store::open(&url, Durability::Full).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
}
