//! The simulated coordinator process: the real pool and parked requests behind the rules of
//! `Shared::mutate_parked`, the real store on a SQLite file, and between them the write queue
//! the service keeps. Writes are queued in order and committed in groups after a random delay;
//! a reply that acknowledges something a client could lose waits until its writes committed,
//! lease grants do not. A crash lets a random prefix of the queued writes reach the store and
//! loses the rest, with every reply still waiting and every parked request; a restart rebuilds
//! the pool with `PoolState::restore` from what the store holds, with the seed's settings (a
//! public pool's verification among them) set first, as `Shared::open` does.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use store::{AttemptEndState, Durability, Store, Write};
use tokio::sync::oneshot;
use wire::{AttemptId, LeaseResponse, NodeId};

use super::net::{Party, Reply};
use super::world::{Event, World};
use crate::credentials::Credentials;
use crate::env::Entropy;
use crate::gate::Gate;
use crate::parked::Parked;
use crate::pool::{Command, Outbox, PoolState};

/// The pool's name, as the store keeps nothing of it.
pub(super) const POOL_NAME: &str = "sim";

/// How often the recall loop looks for results to take back; the service's wakes at each ban
/// and looks again after a second when it could not take everything back.
const RECALL_PERIOD_MS: u64 = 1_000;

/// A lease request parked in the pool, as its HTTP handler waits on it.
pub(super) struct ParkedLease {
    pub(super) node: NodeId,
    pub(super) to: Party,
    pub(super) call: u64,
    pub(super) receiver: oneshot::Receiver<LeaseResponse>,
}

/// A reply held until the writes before it committed.
struct HeldReply {
    after: u64,
    to: Party,
    call: u64,
    reply: Reply,
}

pub(super) struct Coord {
    url: String,
    store: Option<Store>,
    pub(super) pool: PoolState,
    /// A copy of the pool that changes only by the events of each change, read back from their
    /// serialized form, as the service keeps one in debug builds.
    pub(super) follower: PoolState,
    pub(super) parked: Parked,
    /// Registration challenges, lost at a crash as the service's are.
    pub(super) gate: Gate,
    /// The index requests are authenticated by, following the writes as the service's does.
    pub(super) credentials: Credentials,
    pub(super) up: bool,
    /// Bumped at each start: the reaper, sweep and commit events of an earlier process are
    /// ignored.
    pub(super) generation: u64,
    /// Writes queued and not yet committed, by the number of their batch.
    queue: VecDeque<(u64, Vec<Write>)>,
    pub(super) queued_seq: u64,
    pub(super) committed_seq: u64,
    commit_due: bool,
    held: Vec<HeldReply>,
    pub(super) leases: BTreeMap<u64, ParkedLease>,
    pub(super) next_request: u64,
    /// Attempts the last start restored: their reports still count.
    pub(super) restored: BTreeSet<AttemptId>,
}

impl Coord {
    pub(super) async fn new(url: String, lease_ms: u64) -> Self {
        let store = Store::open(&url, Durability::Process)
            .await
            .expect("the simulation's store opens");
        Self {
            url,
            store: Some(store),
            pool: PoolState::new(POOL_NAME.to_owned(), lease_ms),
            follower: PoolState::new(POOL_NAME.to_owned(), lease_ms),
            parked: Parked::default(),
            gate: Gate::new(1),
            credentials: Credentials::default(),
            up: false,
            generation: 0,
            queue: VecDeque::new(),
            queued_seq: 0,
            committed_seq: 0,
            commit_due: false,
            held: Vec::new(),
            leases: BTreeMap::new(),
            next_request: 1,
            restored: BTreeSet::new(),
        }
    }

    pub(super) fn store(&self) -> &Store {
        self.store
            .as_ref()
            .expect("the store is open while the coordinator runs")
    }
}

impl World {
    /// Changes the pool as `Shared::mutate_parked` does: the change, then `Parked::follow`, the
    /// invariants, and the writes queued in order; returns the number of the batch to wait on
    /// (none when the change wrote nothing).
    pub(super) fn mutate<R>(
        &mut self,
        change: impl FnOnce(&mut PoolState, &mut Parked, u64, &dyn Entropy, &mut Outbox) -> R,
    ) -> (R, Option<u64>) {
        let now_ms = self.now_ms();
        let coord = &mut self.coord;
        let mut out = Outbox::new();
        let result = change(
            &mut coord.pool,
            &mut coord.parked,
            now_ms,
            &self.entropy,
            &mut out,
        );
        // The sweep's rounds, one after another: nothing else runs between them here.
        while coord
            .parked
            .follow(&mut coord.pool, now_ms, &self.entropy, &mut out)
        {}
        coord.pool.check_invariants();
        coord
            .follower
            .follow_events(coord.generation, &out.events, &coord.pool);
        coord.credentials.follow(&out.writes);
        // The index and the pool's credentials change only with tokens and nodes: compared
        // then (rebuilding the pool's costs a twentieth of a run).
        let credentials_changed = out.writes.iter().any(|write| {
            matches!(
                write,
                Write::InsertToken(_)
                    | Write::RevokeToken { .. }
                    | Write::UpsertNode(_)
                    | Write::DeleteNode { .. }
            )
        });
        assert!(
            !credentials_changed || coord.credentials == coord.pool.credentials(),
            "the credentials index follows the pool"
        );
        (result, self.enqueue(out.writes))
    }

    /// Runs a command on the pool as [`World::mutate`] changes it.
    pub(super) fn apply<C: Command>(&mut self, command: C) -> (C::Reply, Option<u64>) {
        self.mutate(|pool, _, now_ms, entropy, out| pool.apply(command, now_ms, entropy, out))
    }

    /// Queues writes behind those queued before, and has them committed soon.
    pub(super) fn enqueue(&mut self, out: Vec<Write>) -> Option<u64> {
        if out.is_empty() {
            return None;
        }
        self.memory.apply_all(&out);
        self.checks.jobs_due = true;
        for write in &out {
            self.trace
                .record(self.now_ms(), || format!("queued {write:?}"));
            if let Write::EndAttempts(ends) = write {
                let stopped = ends
                    .iter()
                    .filter(|end| end.state == AttemptEndState::Cancelled);
                self.stats.replicas_stopped += stopped.count() as u64;
            }
        }
        self.stats.writes += out.len() as u64;
        let coord = &mut self.coord;
        coord.queued_seq += 1;
        coord.queue.push_back((coord.queued_seq, out));
        let seq = coord.queued_seq;
        if std::mem::take(&mut self.crash_armed) {
            let delay_ms = self.dice.between(0, self.setup.commit_delay_max_ms);
            self.schedule(delay_ms, Event::Crash);
        }
        let coord = &mut self.coord;
        if !coord.commit_due {
            coord.commit_due = true;
            let delay_ms = self.dice.between(0, self.setup.commit_delay_max_ms);
            let generation = self.coord.generation;
            self.schedule(delay_ms, Event::Commit { generation });
        }
        Some(seq)
    }

    /// Sends `reply` once the batch `after` committed (at once without one).
    pub(super) fn reply_after(&mut self, after: Option<u64>, to: Party, call: u64, reply: Reply) {
        match after {
            Some(after) if after > self.coord.committed_seq => {
                self.coord.held.push(HeldReply {
                    after,
                    to,
                    call,
                    reply,
                });
            }
            _ => self.send_reply(to, call, reply),
        }
    }

    /// The writer: commits everything queued in one transaction, then lets go of the replies
    /// that waited on it.
    pub(super) async fn commit(&mut self) {
        self.coord.commit_due = false;
        let batches = self.coord.queue.len();
        self.write_batches(batches).await;
        let committed = self.coord.committed_seq;
        let (ready, waiting) = std::mem::take(&mut self.coord.held)
            .into_iter()
            .partition(|held| held.after <= committed);
        self.coord.held = waiting;
        for held in ready {
            self.send_reply(held.to, held.call, held.reply);
        }
    }

    /// Commits the first `batches` queued batches.
    async fn write_batches(&mut self, batches: usize) {
        let mut writes = Vec::new();
        for _ in 0..batches {
            let (seq, batch) = self.coord.queue.pop_front().expect("counted above");
            self.coord.committed_seq = seq;
            writes.extend(batch);
        }
        if writes.is_empty() {
            return;
        }
        self.durable.apply_all(&writes);
        self.stats.commits += 1;
        self.trace.record(self.now_ms(), || {
            format!("committed {} writes", writes.len())
        });
        self.coord
            .store()
            .write(writes)
            .await
            .expect("a commit to the simulation's store succeeds");
    }

    /// The coordinator dies: a random prefix of the queued writes reaches the store, the rest
    /// is lost with the replies waiting on them and the parked requests. Returns whether every
    /// queued write reached the store.
    pub(super) async fn crash_coordinator(&mut self) -> bool {
        let queued = self.coord.queue.len();
        let reaching = self.dice.between(0, queued as u64) as usize;
        self.write_batches(reaching).await;
        let lost: usize = self.coord.queue.iter().map(|(_, batch)| batch.len()).sum();
        self.stats.crashes += 1;
        self.stats.writes_lost += lost as u64;
        self.trace.record(self.now_ms(), || {
            format!("the coordinator crashes: {reaching} of {queued} queued batches reach the store, {lost} writes are lost")
        });
        let coord = &mut self.coord;
        coord.queue.clear();
        coord.held.clear();
        coord.leases.clear();
        coord.commit_due = false;
        coord.up = false;
        coord.store().close().await;
        coord.store = None;
        reaching == queued
    }

    /// The coordinator starts: opens the store, loads the pool from it and writes what the
    /// restore decided, as `Shared::open` does.
    pub(super) async fn start_coordinator(&mut self) {
        let now_ms = self.now_ms();
        if self.coord.store.is_none() {
            let store = Store::open(&self.coord.url, Durability::Process)
                .await
                .expect("the simulation's store opens again");
            self.coord.store = Some(store);
        }
        let image = self.coord.store().load().await.expect("the store loads");
        let mut pool = PoolState::new(POOL_NAME.to_owned(), self.setup.lease_ms);
        pool.set_nodes_per_join_token_max(self.setup.nodes_per_join_token_max);
        if let Some(public) = &self.setup.public {
            pool.set_verifying(wire::Trust::Public, public.policy, public.networks_apart);
        }
        let mut out = Outbox::new();
        pool.restore(image, now_ms, &mut out);
        pool.check_invariants();
        self.durable.restored();
        self.durable.apply_all(&out.writes);
        self.memory = self.durable.clone();
        self.checks.jobs_due = true;
        for write in &out.writes {
            self.trace
                .record(now_ms, || format!("restore writes {write:?}"));
        }
        self.coord
            .store()
            .write(out.writes)
            .await
            .expect("the restore's writes commit");
        let coord = &mut self.coord;
        coord.restored = self.memory.attempts.keys().copied().collect();
        coord.credentials = pool.credentials();
        coord.follower = pool.replica();
        coord.pool = pool;
        coord.gate = Gate::new(self.setup.nodes_per_join_token_max);
        coord.parked = Parked::default();
        coord.up = true;
        coord.generation += 1;
        let generation = coord.generation;
        self.trace
            .record(now_ms, || "the coordinator starts".to_owned());
        self.schedule(0, Event::Sweep { generation });
        self.schedule(self.reaper_period_ms(), Event::Reaper { generation });
        if self.setup.public.is_some() {
            self.schedule(RECALL_PERIOD_MS, Event::Recall { generation });
        }
    }

    /// A round of the coordinator's `recall` loop: after everything queued committed (its
    /// flush), it reads results whose one witness was banned from the store and hands them
    /// to the pool, job by job, reading an ended job from the store first.
    pub(super) async fn recall_round(&mut self) {
        self.commit().await;
        let unfinished = self.coord.pool.recalled_unfinished();
        let room = crate::pool::RECALLED_UNFINISHED_MAX.saturating_sub(unfinished);
        let found = self.coord.store().recallable(room.min(256)).await;
        let found = found.expect("the simulation's store reads");
        let mut by_job: BTreeMap<wire::JobId, Vec<store::Recallable>> = BTreeMap::new();
        for task in found {
            by_job.entry(task.job_id).or_default().push(task);
        }
        for (job, tasks) in by_job {
            let Some(view) = self.coord.pool.recall_view(job) else {
                continue;
            };
            let ended = match view {
                None => None,
                Some(version) => {
                    self.commit().await;
                    let ended = self.coord.store().ended_job(job).await;
                    let ended = ended.expect("the simulation's store reads");
                    ended.map(|ended| (ended, version))
                }
            };
            if view.is_some() && ended.is_none() {
                continue;
            }
            let (recalled, _) = self.apply(crate::pool::Recall { job, tasks, ended });
            self.trace
                .record(self.now_ms(), || format!("recall of {job}: {recalled:?}"));
        }
        let generation = self.coord.generation;
        self.schedule(RECALL_PERIOD_MS, Event::Recall { generation });
    }

    /// How often the lease reaper runs: `Shared::lease_check_every`.
    pub(super) fn reaper_period_ms(&self) -> u64 {
        (self.setup.lease_ms / 4).clamp(20, 1000)
    }

    /// Answers parked lease requests the last change handed work to, or whose waiter went.
    pub(super) fn deliver_parked(&mut self) {
        let mut answered = Vec::new();
        for (request, lease) in &mut self.coord.leases {
            match lease.receiver.try_recv() {
                Ok(response) => answered.push((*request, response)),
                Err(oneshot::error::TryRecvError::Closed) => {
                    answered.push((*request, LeaseResponse::default()));
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
        }
        for (request, response) in answered {
            let lease = self.coord.leases.remove(&request).expect("found above");
            self.send_reply(lease.to, lease.call, Reply::Lease(response));
        }
    }

    /// A parked request's wait ran out: it leaves the pool and answers with what it has.
    pub(super) fn park_timeout(&mut self, request: u64) {
        let Some(mut lease) = self.coord.leases.remove(&request) else {
            return;
        };
        self.coord.parked.unpark(lease.node, request);
        let response = lease.receiver.try_recv().unwrap_or_default();
        self.send_reply(lease.to, lease.call, Reply::Lease(response));
    }
}
