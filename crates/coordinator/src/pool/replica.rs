//! A copy of the pool that changes only by events, and the check that it stays the pool.
//!
//! Debug builds keep one beside the running pool (see `service`) and the simulator beside its
//! own: after every change the change's events are serialized, read back and applied to the
//! copy, and the two must be equal. A change that moved the pool without saying so in an event,
//! or an event its apply reads differently, fails there, on the test that made it.

use super::events::{Envelope, Event};
use super::{Changes, PoolState};

impl PoolState {
    /// A copy of the pool sharing nothing with it, not even the tallies its jobs count in.
    pub(crate) fn replica(&self) -> PoolState {
        let mut held = self.held.copy();
        let mut jobs = self.jobs.clone();
        for job in jobs.values_mut() {
            job.charge = held.charge_for(job.requester);
        }
        PoolState {
            pool_name: self.pool_name.clone(),
            lease_ms_min: self.lease_ms_min,
            jobs,
            ready: self.ready.clone(),
            open_jobs: self.open_jobs.clone(),
            nodes: self.nodes.clone(),
            attempts: self.attempts.clone(),
            attempt_ids: self.attempt_ids.clone(),
            uploads: self.uploads.clone(),
            deadlines: self.deadlines.clone(),
            changes: Changes::default(),
            requester_tokens: self.requester_tokens.clone(),
            join_tokens: self.join_tokens.clone(),
            node_tokens: self.node_tokens.clone(),
            removed_nodes: self.removed_nodes.clone(),
            node_counts: self.node_counts.clone(),
            next_submitted_seq: self.next_submitted_seq,
            held,
            verifying: self.verifying.clone(),
            accounts: self.accounts.clone(),
            pipelines: self.pipelines.clone(),
            deletions: self.deletions.clone(),
            federation: self.federation.clone(),
            peers: self.peers.clone(),
        }
    }

    /// Applies `events` as a reader of the log would, each serialized with `epoch` and read
    /// back, then asserts this copy equals `leader`.
    pub(crate) fn follow_events(&mut self, epoch: u64, events: &[Event], leader: &PoolState) {
        for event in events {
            let envelope = Envelope::decode(&Envelope::encode(epoch, event))
                .expect("an event reads back as written");
            assert_eq!(envelope.epoch, epoch);
            self.apply_event(&envelope.event);
        }
        self.take_changes();
        self.assert_same(leader);
    }

    /// Panics, naming the first part that differs, unless the two pools hold the same state.
    pub(crate) fn assert_same(&self, other: &PoolState) {
        // Destructured in full, so a field added to the pool must be compared here too.
        let PoolState {
            pool_name,
            lease_ms_min,
            jobs,
            ready,
            open_jobs,
            nodes,
            attempts,
            attempt_ids,
            uploads,
            deadlines,
            changes: _,
            requester_tokens,
            join_tokens,
            node_tokens,
            removed_nodes,
            node_counts,
            next_submitted_seq,
            held,
            verifying,
            accounts,
            pipelines,
            deletions,
            federation,
            peers,
        } = self;
        assert_eq!(*pool_name, other.pool_name);
        assert_eq!(*lease_ms_min, other.lease_ms_min);
        for (id, job) in jobs {
            assert_eq!(Some(job), other.jobs.get(id), "job {id}");
        }
        assert_eq!(jobs.len(), other.jobs.len(), "jobs");
        for (id, node) in nodes {
            assert_eq!(Some(node), other.nodes.get(id), "node {id}");
        }
        assert_eq!(nodes.len(), other.nodes.len(), "nodes");
        assert_eq!(*ready, other.ready, "ready jobs");
        assert_eq!(*open_jobs, other.open_jobs, "open jobs");
        assert_eq!(*attempts, other.attempts, "attempts");
        assert_eq!(*attempt_ids, other.attempt_ids, "the attempt ids left");
        assert_eq!(*uploads, other.uploads, "uploads");
        assert_eq!(*deadlines, other.deadlines, "deadlines");
        assert_eq!(*requester_tokens, other.requester_tokens);
        assert_eq!(*join_tokens, other.join_tokens);
        assert_eq!(*node_tokens, other.node_tokens);
        assert_eq!(*removed_nodes, other.removed_nodes);
        assert_eq!(*node_counts, other.node_counts);
        assert_eq!(*next_submitted_seq, other.next_submitted_seq);
        assert!(*held == other.held, "the tallies of unfinished work");
        assert_eq!(*verifying, other.verifying, "verification and node records");
        assert_eq!(*accounts, other.accounts, "the credit ledger");
        assert!(*pipelines == other.pipelines, "the pipelines");
        assert_eq!(*deletions, other.deletions, "the deletions");
        assert_eq!(*federation, other.federation, "federation");
        assert_eq!(*peers, other.peers, "the holders of intermediates");
    }
}
