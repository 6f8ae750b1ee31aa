//! The single writer: applies queued [`Write`]s in order, grouping whatever is queued into one
//! transaction so that many writes share one commit (and one fsync).
//!
//! What a group does to the database is planned once (`plan`); which executor runs it depends
//! on the backend: on PostgreSQL this module's task, through sqlx; on SQLite a thread of its
//! own with a connection of its own (`sqlite_writer`). This module keeps what both share: the
//! queue, the grouping, and what a failed commit means for everything after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot, watch};

use wire::{BlobHash, JobState, RequesterId, TaskSpec};

use crate::rows::{AttemptEnd, AttemptRow, JobRow, NodeRow, RequesterRow, TokenRow};
use crate::{Backend, StoreError};

/// One change of durable state.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    SetMeta {
        key: String,
        value: String,
    },
    InsertRequester(RequesterRow),
    InsertPeer(crate::PeerRow),
    DeletePeer {
        id: u64,
    },
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
        job: Box<JobRow>,
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
        /// Who is behind `latest`, in a job that verifies.
        makers: Vec<u64>,
    },
    /// Tasks that end by a verdict on their results.
    EndTasks(Vec<crate::TaskVerdict>),
    /// Takes back the results of tasks whose one witness was banned.
    RecallTasks(crate::TaskRecall),
    /// The outputs of a task's result that only nodes have, in place of any it had before.
    KeepBlobs {
        job_id: wire::JobId,
        task_index: u32,
        rows: Vec<crate::KeptRow>,
    },
    /// An ended pipeline's kept intermediates, which nothing reads now.
    ForgetKeptOfPipeline(wire::PipelineId),
    /// Node identities' records, as they stand now.
    SetRecords(Vec<crate::RecordRow>),
    /// Transfers of the credit ledger.
    InsertTransfers(Vec<wire::Transfer>),
    /// Marks every task of the job that has not ended and every running attempt cancelled,
    /// and the job cancelled, or failed when `aborted` names the task that stopped it.
    CancelJob {
        job_id: wire::JobId,
        at_ms: u64,
        aborted: Option<wire::Aborted>,
    },
    FinishJob {
        job_id: wire::JobId,
        state: JobState,
        at_ms: u64,
    },
    /// Every node a private job's key is wrapped to now, after its requester granted more.
    SetJobKeys {
        job_id: wire::JobId,
        keys: std::collections::BTreeMap<wire::NodeId, wire::WrappedKey>,
    },
    /// Marks blobs as asked for at `at_ms`, which keeps retention off them for a while.
    TouchBlobs {
        hashes: Vec<BlobHash>,
        at_ms: u64,
    },
    /// Deletes ended jobs with their tasks, attempts and blob uses.
    PurgeJobs(Vec<wire::JobId>),
    /// Writes a pipeline whole, and names the blobs its waiting stages will use under their
    /// jobs' ids, so retention keeps them until the stages run or the pipeline is purged.
    UpsertPipeline(crate::PipelineRow),
    /// A deleted job's record, as it stands.
    UpsertDeletion(crate::DeletionRow),
    /// Forgets the records of deletions.
    DropDeletions(Vec<wire::JobId>),
    /// Deletes ended pipelines (their stages' jobs are purged on their own).
    PurgePipelines(Vec<wire::PipelineId>),
    /// Ends tasks of a new job with the results of earlier tasks of the same key (see
    /// [`crate::Reusable`]), each as an attempt row of its own in state `reused`.
    ReuseResults {
        job_id: wire::JobId,
        at_ms: u64,
        tasks: Vec<(u32, wire::AttemptId, crate::Reusable)>,
    },
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
    /// Whether its commit must wait for the disk (see `Store::enqueue_deferred`).
    pub(crate) synced: bool,
    pub(crate) done: oneshot::Sender<Result<(), StoreError>>,
}

/// What the store sends its writer.
pub(crate) enum Message {
    Writes(Request),
    /// Stop once what was queued before is applied, answering everything queued after with
    /// [`StoreError::Closed`]; the sender hears back once the writer let go of the database.
    Close(oneshot::Sender<()>),
}

/// How far the writer got: every request up to `sequence` is committed, and up to `synced`
/// durable as the store's durability says, unless it failed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    pub(crate) sequence: u64,
    pub(crate) synced: u64,
    pub(crate) failure: Option<StoreError>,
}

/// Writes grouped into one transaction at most; bounds how long one commit holds the database.
const WRITES_PER_COMMIT_MAX: usize = 20_000;

/// Requests taken from the queue together, to commit as one transaction.
pub(crate) struct Batch {
    pub(crate) requests: Vec<Request>,
    /// How many writes the requests hold, for the `queued` counter.
    count: usize,
    close: Option<oneshot::Sender<()>>,
}

impl Batch {
    pub(crate) fn writes(&self) -> impl Iterator<Item = &Write> {
        self.requests.iter().flat_map(|request| &request.writes)
    }

    /// Whether its commit waits for the disk: unless every request in it may wait for a later
    /// commit's.
    pub(crate) fn synced(&self) -> bool {
        self.requests.iter().any(|request| request.synced)
    }
}

/// The writer's side of the queue, whichever executor applies the batches: groups what is
/// queued, and answers each request and the progress watch with its batch's result.
pub(crate) struct Queue {
    receiver: mpsc::UnboundedReceiver<Message>,
    queued: Arc<AtomicUsize>,
    progress: watch::Sender<Progress>,
    /// After one failed commit nothing more is applied: later writes may depend on the lost
    /// ones.
    failure: Option<StoreError>,
    /// Whether commits wait for the disk at all; when they do not, a deferred one is as
    /// durable as any.
    durability: crate::Durability,
}

impl Queue {
    pub(crate) async fn next(&mut self) -> Option<Batch> {
        let first = self.receiver.recv().await?;
        Some(self.gather(first))
    }

    /// [`Queue::next`] for a writer on a thread of its own, outside the async runtime.
    pub(crate) fn next_blocking(&mut self) -> Option<Batch> {
        let first = self.receiver.blocking_recv()?;
        Some(self.gather(first))
    }

    /// `first` and whatever is queued behind it, up to the bound or a close.
    fn gather(&mut self, first: Message) -> Batch {
        let mut batch = Batch {
            requests: Vec::new(),
            count: 0,
            close: None,
        };
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Writes(request) => {
                    batch.count += request.writes.len();
                    batch.requests.push(request);
                }
                Message::Close(closed) => {
                    batch.close = Some(closed);
                    break;
                }
            }
            if batch.count >= WRITES_PER_COMMIT_MAX {
                break;
            }
            next = self.receiver.try_recv().ok();
        }
        batch
    }

    /// The result `batch` has without being applied: the earlier failure, or nothing to do.
    pub(crate) fn settled(&self, batch: &Batch) -> Option<Result<(), StoreError>> {
        match &self.failure {
            Some(error) => Some(Err(error.clone())),
            None if batch.requests.is_empty() => Some(Ok(())),
            None => None,
        }
    }

    /// Answers `batch`'s requests with `result`. Returns the close request when the batch
    /// ended with one: the writer then lets go of the database and answers it.
    pub(crate) fn settle(
        &mut self,
        batch: Batch,
        result: Result<(), StoreError>,
    ) -> Option<oneshot::Sender<()>> {
        if let Err(error) = &result
            && self.failure.is_none()
        {
            tracing::error!(%error, "a state store commit failed; no further writes will be applied");
            self.failure = Some(error.clone());
        }
        self.queued.fetch_sub(batch.count, Ordering::Relaxed);
        if let Some(last) = batch.requests.last() {
            // A commit that waited for the disk made every earlier one durable with it.
            let durable = batch.synced() || self.durability == crate::Durability::Process;
            let synced = self.progress.borrow().synced;
            self.progress.send_replace(Progress {
                sequence: last.sequence,
                synced: if durable { last.sequence } else { synced },
                failure: self.failure.clone(),
            });
        }
        for request in batch.requests {
            let _ = request.done.send(result.clone());
        }
        let closed = batch.close?;
        self.refuse_the_rest();
        Some(closed)
    }

    /// Answers everything queued after a close with [`StoreError::Closed`], and refuses what
    /// comes later.
    fn refuse_the_rest(&mut self) {
        self.receiver.close();
        while let Ok(message) = self.receiver.try_recv() {
            match message {
                Message::Writes(request) => {
                    self.queued
                        .fetch_sub(request.writes.len(), Ordering::Relaxed);
                    let _ = request.done.send(Err(StoreError::Closed));
                }
                Message::Close(closed) => {
                    let _ = closed.send(());
                }
            }
        }
    }
}

/// Who writes: the database, its kind, and the epoch this store took it over at.
pub(crate) struct Target {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    pub(crate) epoch: u64,
    /// For SQLite: the database file the writer's own connection opens.
    pub(crate) sqlite_path: Option<std::path::PathBuf>,
    pub(crate) durability: crate::Durability,
}

/// Starts the writer for `target`'s backend.
pub(crate) async fn spawn(
    target: Target,
    queued: Arc<AtomicUsize>,
) -> Result<(mpsc::UnboundedSender<Message>, watch::Receiver<Progress>), StoreError> {
    let (sender, receiver) = mpsc::unbounded_channel();
    let (progress, watcher) = watch::channel(Progress::default());
    let queue = Queue {
        receiver,
        queued,
        progress,
        failure: None,
        durability: target.durability,
    };
    match target.backend {
        Backend::Sqlite => crate::sqlite_writer::spawn(&target, queue).await?,
        Backend::Postgres => {
            tokio::spawn(run(target, queue));
        }
    }
    Ok((sender, watcher))
}

/// The writer through sqlx, as a task of the async runtime.
async fn run(target: Target, mut queue: Queue) {
    while let Some(batch) = queue.next().await {
        let result = match queue.settled(&batch) {
            Some(result) => result,
            None => apply(&target, &batch).await,
        };
        if let Some(closed) = queue.settle(batch, result) {
            drop(target);
            let _ = closed.send(());
            return;
        }
    }
}

async fn apply(target: &Target, batch: &Batch) -> Result<(), StoreError> {
    let statements = crate::plan::plan(target.backend, batch.writes());
    let mut transaction = target.pool.begin().await?;
    if !batch.synced() {
        // Its WAL is flushed by the next commit that waits, or the server's WAL writer.
        sqlx::query("SET LOCAL synchronous_commit TO OFF")
            .execute(&mut *transaction)
            .await?;
    }
    crate::epoch::fence(&mut transaction, target.backend, target.epoch).await?;
    for statement in statements {
        crate::statement::execute(&mut transaction, statement).await?;
    }
    transaction.commit().await?;
    Ok(())
}
