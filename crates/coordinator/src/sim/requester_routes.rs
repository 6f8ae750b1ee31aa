//! The requester's side of the coordinator, as `http/jobs.rs` and `http/nodes.rs` make it: a
//! submission checked and admitted under one change, with its id drawn from the entropy; a
//! cancellation answered with a status that is flushed first; and the owner removing a node.

use wire::{JobId, JobSubmission, NodeId};

use super::net::{Party, Reply};
use super::routes::refusal;
use super::world::World;
use crate::pool::{Held, NewJob, PoolError};

impl World {
    pub(super) fn submit_route(
        &mut self,
        requester: usize,
        call: u64,
        token: &str,
        submission: JobSubmission,
    ) {
        let to = Party::Requester(requester);
        let Some(requester_id) = self.coord.credentials.requester(token) else {
            return self.send_reply(to, call, Reply::Unauthorized);
        };
        wire::validate::job_submission(&submission).expect("requesters submit valid jobs");
        let unfinished_max = self.setup.unfinished_max();
        let adding = Held::of_submission(&submission);
        let (submitted, after) = self.mutate(|pool, _, now_ms, entropy, out| {
            pool.admit(requester_id, adding, unfinished_max)?;
            let id = loop {
                let id = JobId(entropy.next_u64());
                if !pool.has_job(id) {
                    break id;
                }
            };
            let new = NewJob {
                id,
                requester: requester_id,
                submission,
            };
            Ok::<_, PoolError>(pool.add_job(new, now_ms, out))
        });
        match submitted {
            Err(error) => self.send_reply(to, call, refusal(error)),
            Ok(submitted) => self.reply_after(after, to, call, Reply::Submitted(submitted)),
        }
    }

    pub(super) fn cancel_route(&mut self, requester: usize, call: u64, token: &str, job: JobId) {
        let to = Party::Requester(requester);
        let Some(requester_id) = self.coord.credentials.requester(token) else {
            return self.send_reply(to, call, Reply::Unauthorized);
        };
        let (result, _) =
            self.mutate(|pool, _, now_ms, _, out| pool.cancel_job(job, requester_id, now_ms, out));
        match result {
            Err(error) => self.send_reply(to, call, refusal(error)),
            // The status it answers with is read, then flushed: it waits for every write queued
            // so far.
            Ok(()) => {
                let flushed = Some(self.coord.queued_seq).filter(|seq| *seq > 0);
                self.reply_after(flushed, to, call, Reply::Cancelled(job));
            }
        }
    }

    /// The owner removes a node (the route's owner check is the first requester here).
    pub(super) fn remove_node_route(
        &mut self,
        requester: usize,
        call: u64,
        token: &str,
        node: NodeId,
    ) {
        let to = Party::Requester(requester);
        let owner = self.requesters[0].id;
        if self.coord.credentials.requester(token) != Some(owner) {
            return self.send_reply(to, call, Reply::Unauthorized);
        }
        let (removed, after) =
            self.mutate(|pool, _, now_ms, _, out| pool.remove_node(node, now_ms, out));
        match removed {
            Err(error) => self.send_reply(to, call, refusal(error)),
            Ok(requeued) => self.reply_after(after, to, call, Reply::Removed(requeued)),
        }
    }
}
