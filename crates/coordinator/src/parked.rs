//! What waits beside the pool, outside it: nodes' lease requests parked until work comes, and
//! requesters waiting for a job to change. Both are channels, so they live here in the
//! service, under the pool's lock, and the pool stays plain data.
//!
//! After each change the service hands the pool's [`Changes`] to [`Parked::follow`], which costs
//! what the change touched: new or requeued tasks are offered to every waiting node, a freed or
//! newly active node only to itself, and a job's watchers are woken only when it changed. A
//! request that goes away takes its waiter with it ([`Parked::unpark`]), so nothing scans for
//! abandoned ones.

use std::collections::{BTreeSet, HashMap};

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

#[derive(Default)]
pub(crate) struct Parked {
    waiters: HashMap<NodeId, Waiter>,
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
    /// waiting nodes it may now reach. Grants that cannot be delivered go back to the queue,
    /// and are offered again to the nodes still waiting.
    pub(crate) fn follow(
        &mut self,
        pool: &mut PoolState,
        now_ms: u64,
        entropy: &dyn Entropy,
        out: &mut Outbox,
    ) {
        // A round goes on only after one that answered or dropped a waiter, so rounds are
        // bounded by the waiters.
        let mut changes = pool.take_changes();
        loop {
            self.wake(pool, &changes.jobs);
            for node in &changes.nodes_gone {
                self.waiters.remove(node);
            }
            let offers = self.offers(&changes);
            if offers.is_empty() {
                return;
            }
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
            // Grants change their jobs, whose watchers hear of it. Grants that went back, and
            // tasks granted short of their replicas, are queued work for the nodes still
            // waiting: another round.
            changes = pool.take_changes();
            if !changes.tasks_queued {
                self.wake(pool, &changes.jobs);
                return;
            }
        }
    }

    /// The waiting nodes a change may give work: all of them when tasks joined the queue,
    /// else those whose room grew.
    fn offers(&self, changes: &Changes) -> Vec<(NodeId, u32)> {
        if changes.tasks_queued {
            return self
                .waiters
                .iter()
                .map(|(node, waiter)| (*node, waiter.slots_free))
                .collect();
        }
        let freed: BTreeSet<NodeId> = changes.nodes_freed.iter().copied().collect();
        freed
            .into_iter()
            .filter_map(|node| Some((node, self.waiters.get(&node)?.slots_free)))
            .collect()
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
