//! What waits beside the pool, outside it: nodes' lease requests parked until work comes, and
//! requesters waiting for a job to change. Both are channels, so they live here in the
//! service, under the pool's lock, and the pool stays plain data.
//!
//! After each change the service hands the pool's [`Changes`] to [`Parked::follow`], which costs
//! what the change touched: new or requeued tasks are offered to every waiting node, a freed or
//! newly active node only to itself, and a job's watchers are woken only when it changed. A
//! request that goes away takes its waiter with it ([`Parked::unpark`]), so nothing scans for
//! abandoned ones.
//!
//! Offering queued work to every waiting node is a sweep over them in node order, at most
//! [`OFFERS_PER_ROUND_MAX`] at a time: `follow` does one round and says whether the sweep goes
//! on, and the service lets other requests take the lock between rounds. So a job of 10,000
//! tasks arriving at 100,000 waiting nodes holds up a heartbeat for one round, not for the
//! whole placement.

use std::collections::{BTreeMap, HashMap};

use tokio::sync::{oneshot, watch};

use wire::{JobId, LeaseResponse, NodeId};

use crate::env::Entropy;
use crate::pool::{Changes, Deliver, Outbox, Place, PoolState, Withdraw};

/// A node's lease request that found no work and waits for some.
struct Waiter {
    request: u64,
    slots_free: u32,
    sender: oneshot::Sender<LeaseResponse>,
}

/// Waiting nodes offered queued work in one round of a sweep.
pub(crate) const OFFERS_PER_ROUND_MAX: usize = 256;

#[derive(Default)]
pub(crate) struct Parked {
    /// In node order, which a sweep follows.
    waiters: BTreeMap<NodeId, Waiter>,
    /// Where the sweep offering queued work to every waiting node goes on from; `None` when
    /// none is under way.
    sweep: Option<NodeId>,
    /// Work was queued during a sweep, by its own grants: sweep again once it ends.
    sweep_again: bool,
    /// Jobs someone waits on; a sender goes when its last receiver has.
    watches: HashMap<JobId, watch::Sender<u64>>,
}

impl Parked {
    /// Parks a lease request; a newer request of the same node replaces it (the older one is
    /// answered empty).
    pub(crate) fn park(
        &mut self,
        node: NodeId,
        request: u64,
        slots_free: u32,
        sender: oneshot::Sender<LeaseResponse>,
    ) {
        self.waiters.insert(
            node,
            Waiter {
                request,
                slots_free,
                sender,
            },
        );
    }

    /// Removes the waiter of `request` if it is still parked; false if it was served already.
    pub(crate) fn unpark(&mut self, node: NodeId, request: u64) -> bool {
        match self.waiters.get(&node) {
            Some(waiter) if waiter.request == request => {
                self.waiters.remove(&node);
                true
            }
            _ => false,
        }
    }

    /// Answers a node's parked request now, empty: it stopped taking work.
    pub(crate) fn unpark_node(&mut self, node: NodeId) {
        self.waiters.remove(&node);
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// A receiver of the job's version, which changes whenever the job does.
    pub(crate) fn watch(&mut self, job: JobId, version: u64) -> watch::Receiver<u64> {
        self.watches
            .entry(job)
            .or_insert_with(|| watch::Sender::new(version))
            .subscribe()
    }

    /// Acts on what a change did: wakes the watchers of changed jobs and hands work to the
    /// waiting nodes it may now reach, in one round of at most [`OFFERS_PER_ROUND_MAX`] nodes
    /// besides those whose room grew. Returns whether a sweep is under way: call again, after
    /// letting others take the lock, until it says no. Grants that cannot be delivered go back
    /// to the queue and are offered again.
    pub(crate) fn follow(
        &mut self,
        pool: &mut PoolState,
        now_ms: u64,
        entropy: &dyn Entropy,
        out: &mut Outbox,
    ) -> bool {
        let changes = pool.take_changes();
        self.note(pool, &changes);
        // Work queued while a sweep is under way waits for the next one, so a stream of
        // submissions cannot keep a sweep from reaching the last waiting nodes.
        if changes.tasks_queued && self.sweep.is_none() {
            self.sweep = Some(NodeId(0));
        } else {
            self.sweep_again |= changes.tasks_queued;
        }
        let offers = self.offers(&changes);
        if !offers.is_empty() {
            let placed = pool.apply(Place { waiting: offers }, now_ms, entropy, out);
            for (node, response, rows) in placed {
                let Some(waiter) = self.waiters.remove(&node) else {
                    pool.apply(Withdraw { node, response }, now_ms, entropy, out);
                    continue;
                };
                match waiter.sender.send(response) {
                    Ok(()) => pool.apply(Deliver { node, rows }, now_ms, entropy, out),
                    Err(response) => pool.apply(Withdraw { node, response }, now_ms, entropy, out),
                }
            }
        }
        // Grants change their jobs, whose watchers hear of it now. Grants that went back, and
        // tasks granted short of their replicas, are queued work for the next sweep.
        let granted = pool.take_changes();
        self.note(pool, &granted);
        self.sweep_again |= granted.tasks_queued;
        if self.sweep.is_none() && std::mem::take(&mut self.sweep_again) {
            self.sweep = Some(NodeId(0));
        }
        if !pool.has_queued_work() {
            self.sweep = None;
            self.sweep_again = false;
        }
        self.sweep.is_some()
    }

    /// Wakes the watchers of the jobs that changed, and lets go of the waiters of nodes gone.
    fn note(&mut self, pool: &PoolState, changes: &Changes) {
        self.wake(pool, &changes.jobs);
        for node in &changes.nodes_gone {
            self.waiters.remove(node);
        }
    }

    /// The waiting nodes a round offers work: those whose room grew, and the next of the sweep
    /// (which moves on past them, or ends at the last waiting node).
    fn offers(&mut self, changes: &Changes) -> Vec<(NodeId, u32)> {
        let mut offered: BTreeMap<NodeId, u32> = changes
            .nodes_freed
            .iter()
            .filter_map(|node| Some((*node, self.waiters.get(node)?.slots_free)))
            .collect();
        if let Some(from) = self.sweep {
            let mut next = self.waiters.range(from..);
            for (node, waiter) in next.by_ref().take(OFFERS_PER_ROUND_MAX) {
                offered.insert(*node, waiter.slots_free);
            }
            self.sweep = next.next().map(|(node, _)| *node);
        }
        offered.into_iter().collect()
    }

    fn wake(&mut self, pool: &PoolState, jobs: &[JobId]) {
        for job in jobs {
            let Some(sender) = self.watches.get(job) else {
                continue;
            };
            match pool.job_version_now(*job) {
                Some(version) if sender.receiver_count() > 0 => {
                    sender.send_replace(version);
                }
                // Nobody waits any more, or the job is gone: its waiters' `changed` ends.
                _ => {
                    self.watches.remove(job);
                }
            }
        }
    }
}
