//! The requester's side of the coordinator, as `http/jobs.rs` and `http/nodes.rs` make it: a
//! submission checked and admitted under one change, with its id drawn from the entropy; a
//! cancellation answered with a status that is flushed first; the owner removing a node; and
//! the owner granting credit (`http/credits.rs`), answered once it committed.

use wire::{JobId, JobSubmission, NodeId, RequesterId};

use super::net::{Party, Reply};
use super::routes::refusal;
use super::world::World;
use crate::pool::{Cancel, GrantCredits, GrantKeys, Held, RemoveNode, Submit};

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
        let (submitted, after) = self.apply(Submit {
            requester: requester_id,
            submission,
            module_bytes: 1 << 10,
            component_imports: None,
            wasm_features: Vec::new(),
            adding,
            unfinished_max,
            reusable: Vec::new(),
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
        let (result, _) = self.apply(Cancel {
            job,
            requester: requester_id,
        });
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

    /// A requester wraps a private job's key to one more node, as `POST /v1/jobs/{job}/keys`.
    pub(super) fn grant_keys_route(
        &mut self,
        requester: usize,
        call: u64,
        token: &str,
        (job, node): (JobId, NodeId),
    ) {
        let to = Party::Requester(requester);
        let Some(requester_id) = self.coord.credentials.requester(token) else {
            return self.send_reply(to, call, Reply::Unauthorized);
        };
        let wrap = wire::WrappedKey("c".repeat(wire::private::WRAPPED_KEY_HEX_DIGITS));
        let grant = wire::KeyGrant {
            keys: [(node, wrap)].into(),
        };
        wire::validate::key_grant(&grant).expect("the simulation grants well-formed keys");
        let (result, _) = self.apply(GrantKeys {
            job,
            requester: requester_id,
            grant,
        });
        match result {
            Err(error) => self.send_reply(to, call, refusal(error)),
            Ok(holders) => {
                let flushed = Some(self.coord.queued_seq).filter(|seq| *seq > 0);
                self.reply_after(flushed, to, call, Reply::KeysGranted(holders.len()));
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
        let (removed, after) = self.apply(RemoveNode { node });
        match removed {
            Err(error) => self.send_reply(to, call, refusal(error)),
            Ok(requeued) => self.reply_after(after, to, call, Reply::Removed(requeued)),
        }
    }

    /// The owner grants a requester credit (the route's owner check is the first requester
    /// here, and it names the requester by id rather than by name).
    pub(super) fn grant_route(
        &mut self,
        from: usize,
        call: u64,
        token: &str,
        requester: RequesterId,
        credits: u64,
    ) {
        let to = Party::Requester(from);
        let owner = self.requesters[0].id;
        if self.coord.credentials.requester(token) != Some(owner) {
            return self.send_reply(to, call, Reply::Unauthorized);
        }
        let (granted, after) = self.apply(GrantCredits { requester, credits });
        match granted {
            Err(error) => self.send_reply(to, call, refusal(error)),
            Ok(balance) => self.reply_after(after, to, call, Reply::Granted(balance)),
        }
    }
}
