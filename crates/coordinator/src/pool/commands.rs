//! The commands the pool takes: what clients ask for and what the coordinator's own rounds
//! (the lease reaper, retention) do. [`PoolState::apply`] is the one way in.
//!
//! A command reads the pool, checks its rules, and records the events of what it did (see
//! [`super::events`]); its reply is what the caller answers with. A command refused changes
//! nothing and records nothing. Each takes `now_ms` and, where it makes ids or chooses, the
//! [`Entropy`] from the caller, so a command's events are the same in every run with the same
//! seed.

use store::AttemptRow;
use wire::{
    AttemptId, AttemptReport, BlobHash, HeartbeatRequest, HeartbeatResponse, JobId, JobSubmission,
    JobSubmitted, LeaseResponse, NodeId, PipelineId, PipelineSubmission, PipelineSubmitted,
    ReportAck, RequesterId, TaskSpec,
};

use super::held::Held;
use super::pipelines::StageModule;
use super::{NewJob, NewNode, Outbox, PoolError, PoolState, UnfinishedMax};
use crate::env::Entropy;

/// Something asked of the pool; see the module's doc.
pub(crate) trait Command {
    type Reply;

    fn run(
        self,
        pool: &mut PoolState,
        now_ms: u64,
        entropy: &dyn Entropy,
        out: &mut Outbox,
    ) -> Self::Reply;
}

impl PoolState {
    /// Runs `command` at `now_ms`: the pool changes by the events it records in `out`, and
    /// only by them.
    pub(crate) fn apply<C: Command>(
        &mut self,
        command: C,
        now_ms: u64,
        entropy: &dyn Entropy,
        out: &mut Outbox,
    ) -> C::Reply {
        command.run(self, now_ms, entropy, out)
    }
}

/// Defines a command: its fields, its reply, and how it runs.
macro_rules! command {
    (
        $(#[$doc:meta])*
        $name:ident { $($field:ident: $ty:ty),* $(,)? } -> $reply:ty,
        |$this:pat_param, $pool:ident, $now:pat_param, $entropy:pat_param, $out:ident| $body:block
    ) => {
        $(#[$doc])*
        pub(crate) struct $name {
            $(pub(crate) $field: $ty),*
        }

        impl Command for $name {
            type Reply = $reply;

            fn run(
                self,
                $pool: &mut PoolState,
                $now: u64,
                $entropy: &dyn Entropy,
                $out: &mut Outbox,
            ) -> $reply {
                let $this = self;
                $body
            }
        }
    };
}

command! {
    /// A requester's new job, admitted when the unfinished work it adds stays within bounds.
    Submit {
        requester: RequesterId,
        submission: JobSubmission,
        module_bytes: u64,
        component_imports: Option<Vec<String>>,
        wasm_features: Vec<String>,
        adding: Held,
        unfinished_max: UnfinishedMax,
        reusable: super::Found,
    } -> Result<JobSubmitted, PoolError>,
    |this, pool, now_ms, entropy, out| {
        pool.admit(this.requester, this.adding, this.unfinished_max)?;
        pool.check_credit(this.requester)?;
        let imports = this.component_imports.as_deref();
        let submission =
            pool.checked_job(this.submission, this.module_bytes, imports, &this.wasm_features)?;
        let id = pool.new_job_id((now_ms, entropy));
        let reused = super::reuse::matching(&submission, this.reusable);
        let new = NewJob {
            id,
            requester: this.requester,
            submission,
            module_bytes: this.module_bytes,
            component: this.component_imports.is_some(),
            wasm_features: this.wasm_features,
        };
        let submitted = pool.add_job(new, now_ms, out);
        pool.reuse_results(id, reused, now_ms, out);
        Ok(submitted)
    }
}

command! {
    /// A requester's new pipeline; see `PoolState::submit_pipeline`.
    SubmitPipeline {
        requester: RequesterId,
        submission: PipelineSubmission,
        modules: Vec<StageModule>,
        reusable: Vec<super::Found>,
        unfinished_max: UnfinishedMax,
    } -> Result<PipelineSubmitted, PoolError>,
    |this, pool, now_ms, entropy, out| {
        pool.submit_pipeline(
            this.requester,
            this.submission,
            (this.modules, this.reusable),
            this.unfinished_max,
            (now_ms, entropy),
            out,
        )
    }
}

command! {
    /// The stage driver made a waiting stage's tasks from the outputs of the stage it reads.
    StartStage {
        pipeline: PipelineId,
        stage: usize,
        tasks: Vec<TaskSpec>,
        reusable: super::Found,
        unfinished_max: UnfinishedMax,
    } -> Result<JobId, PoolError>,
    |this, pool, now_ms, entropy, out| {
        pool.start_derived_stage(
            this.pipeline,
            this.stage,
            (this.tasks, this.reusable),
            this.unfinished_max,
            (now_ms, entropy),
            out,
        )
    }
}

command! {
    /// A waiting stage will never run, for `reason`.
    GiveUpStage {
        pipeline: PipelineId,
        stage: usize,
        reason: String,
    } -> (),
    |this, pool, _now_ms, _entropy, out| {
        pool.give_up_stage(this.pipeline, this.stage, this.reason, out);
    }
}

command! {
    /// Its requester cancels a pipeline.
    CancelPipeline { pipeline: PipelineId, requester: RequesterId } -> Result<(), PoolError>,
    |this, pool, now_ms, _entropy, out| {
        pool.cancel_pipeline(this.pipeline, this.requester, now_ms, out)
    }
}

command! {
    /// Every stage of the pipeline ended.
    EndPipeline {
        pipeline: PipelineId,
    } -> (),
    |this, pool, now_ms, _entropy, out| {
        pool.end_pipeline(this.pipeline, now_ms, out);
    }
}

command! {
    /// The job's validator compared `attempt`'s result with `with`'s, of task `task`.
    Compare {
        job: JobId,
        task: u32,
        attempt: AttemptId,
        with: AttemptId,
        verdict: super::Verdict,
    } -> (),
    |this, pool, now_ms, entropy, out| {
        let comparison = (this.job, this.task, this.attempt, this.with);
        pool.compared(comparison, this.verdict, now_ms, entropy, out);
    }
}

command! {
    /// Results whose one witness was banned run again: `tasks` of `job` as the store has them,
    /// and the job as stored with its version, when it had ended.
    Recall {
        job: JobId,
        tasks: Vec<store::Recallable>,
        ended: Option<(store::EndedJob, u64)>,
    } -> super::recall::Recalled,
    |this, pool, now_ms, _, out| { pool.recall(this.job, this.tasks, this.ended, now_ms, out) }
}

command! {
    /// A requester cancels a job of theirs that runs.
    Cancel { job: JobId, requester: RequesterId } -> Result<(), PoolError>,
    |this, pool, now_ms, _, out| { pool.cancel_job(this.job, this.requester, now_ms, out) }
}

command! {
    /// A requester deletes an ended job for good; `scope` is what the store holds of it.
    DeleteJob { job: JobId, requester: RequesterId, scope: super::DeletionScope }
        -> Result<wire::JobDeletion, PoolError>,
    |this, pool, now_ms, _, out| {
        pool.delete_job(this.requester, this.job, this.scope, now_ms, out)
    }
}

command! {
    /// A requester wraps a private job's key to more nodes.
    GrantKeys { job: JobId, requester: RequesterId, grant: wire::KeyGrant }
        -> Result<Vec<NodeId>, PoolError>,
    |this, pool, _, _, out| { pool.grant_keys(this.requester, this.job, this.grant, out) }
}

command! {
    /// A node asks for up to `slots_free` attempts now.
    Lease { node: NodeId, slots_free: u32 } -> LeaseResponse,
    |this, pool, now_ms, _, out| {
        pool.take_work(this.node, this.slots_free, now_ms, out)
    }
}

command! {
    /// Pending work for the nodes that wait for some, each offering so many slots; the grants
    /// are the caller's to deliver ([`Deliver`]) or take back ([`Withdraw`]).
    Place { waiting: Vec<(NodeId, u32)> } -> Vec<(NodeId, LeaseResponse, Vec<AttemptRow>)>,
    |this, pool, now_ms, _, out| { pool.place(&this.waiting, now_ms, out) }
}

command! {
    /// Placed grants reached their waiting node.
    Deliver { node: NodeId, rows: Vec<AttemptRow> } -> (),
    |this, pool, now_ms, _, out| { pool.delivered(this.node, this.rows, now_ms, out) }
}

command! {
    /// Placed grants never reached their node: its request went away.
    Withdraw { node: NodeId, response: LeaseResponse } -> (),
    |this, pool, _, _, out| { pool.revert(this.node, &this.response, out) }
}

command! {
    /// A node says it is alive, what it runs, and whether it takes work.
    Heartbeat { node: NodeId, request: HeartbeatRequest } -> HeartbeatResponse,
    |this, pool, now_ms, _, out| { pool.heartbeat(this.node, &this.request, now_ms, out) }
}

command! {
    /// A node reports attempts it ended.
    Report { node: NodeId, reports: Vec<AttemptReport> } -> Vec<ReportAck>,
    |this, pool, now_ms, entropy, out| {
        pool.report(this.node, this.reports, now_ms, entropy, out)
    }
}

command! {
    /// A node gives attempts back unfinished; the reply names those it held.
    Release { node: NodeId, attempts: Vec<AttemptId> } -> Vec<AttemptId>,
    |this, pool, now_ms, _, out| { pool.release(this.node, &this.attempts, now_ms, out) }
}

command! {
    /// A node uploaded a blob for an attempt it holds; `size_bytes` as measured.
    RecordUpload {
        node: NodeId,
        attempt: AttemptId,
        hash: BlobHash,
        size_bytes: u64,
    } -> Result<(), String>,
    |this, pool, now_ms, _, out| {
        pool.record_upload(this.node, this.attempt, this.hash, this.size_bytes, now_ms, out)
    }
}

command! {
    /// A node uploaded a checkpoint of an attempt it holds, `size_bytes` as measured, saved
    /// when its task had used `fuel_used` in all.
    SaveCheckpoint {
        node: NodeId,
        attempt: AttemptId,
        hash: BlobHash,
        size_bytes: u64,
        fuel_used: u64,
    } -> Result<wire::CheckpointRef, PoolError>,
    |this, pool, now_ms, _, out| {
        let blob = (this.hash, this.size_bytes, this.fuel_used);
        pool.save_checkpoint(this.node, this.attempt, blob, now_ms, out)
    }
}

command! {
    /// A node that proved its key and spent a challenge registers. Refused when its join token
    /// may bring no more nodes; when its identity is online from another process, nothing
    /// happens and the reply says how long ago that process was heard from.
    Register { node: NewNode, old_process_gone: bool } -> Result<Option<u64>, PoolError>,
    |this, pool, now_ms, _, out| {
        pool.may_bring(&this.node.join_token_hash, this.node.id)?;
        // A node whose presence closed is no clone of a live process: it restarted.
        let clash = match this.old_process_gone {
            true => None,
            false => pool.node_online_elsewhere(this.node.id, now_ms),
        };
        if clash.is_none() {
            pool.register(this.node, now_ms, out);
        }
        Ok(clash)
    }
}

command! {
    /// The owner takes a node out of the pool; the reply counts the attempts that went back.
    RemoveNode { node: NodeId } -> Result<usize, PoolError>,
    |this, pool, now_ms, _, out| { pool.remove_node(this.node, now_ms, out) }
}

/// Which token [`CreateToken`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NewToken {
    /// An API token of a new requester.
    Requester,
    Join,
    /// Lets another pool join as a node that lends this one capacity.
    Federation,
}

command! {
    /// A new token, unless the pool holds `live_max` live tokens already; whether it was made.
    CreateToken { hash: String, name: String, kind: NewToken, live_max: usize } -> bool,
    |this, pool, now_ms, entropy, out| {
        if pool.live_token_count() >= this.live_max {
            return false;
        }
        match this.kind {
            NewToken::Requester => {
                let requester = RequesterId(entropy.next_u64());
                pool.create_requester_token(this.hash, &this.name, requester, now_ms, out);
            }
            NewToken::Join => {
                pool.create_join_token(this.hash, &this.name, store::TokenRole::Join, now_ms, out)
            }
            NewToken::Federation => pool.create_join_token(
                this.hash,
                &this.name,
                store::TokenRole::Federation,
                now_ms,
                out,
            ),
        }
        true
    }
}

command! {
    /// The owner revokes a token; whether it was live.
    RevokeToken { hash: String } -> bool,
    |this, pool, now_ms, _, out| { pool.revoke_token(&this.hash, now_ms, out) }
}

command! {
    /// The lease reaper's round: attempts of nodes whose lease ran out and attempts past their
    /// deadline end, and the live nodes are counted again. The reply counts the attempts.
    Expire {} -> usize,
    |_, pool, now_ms, _, out| {
        let expired = pool.expire(now_ms, out);
        // Nodes whose lease ran out stop stretching everyone's heartbeat interval.
        pool.recount_live_nodes(now_ms, out);
        expired
    }
}

command! {
    /// A node's presence request closed unanswered and none is open: its process died or its
    /// network went, so it is silent now rather than after half a lease. The reply says
    /// whether it was marked (a node holding no attempts, or silent already, is not).
    Silence { node: NodeId } -> bool,
    |this, pool, now_ms, _, out| { pool.silence(this.node, now_ms, out) }
}

command! {
    /// Retention forgets up to `jobs_max` jobs that ended more than `keep_ms` ago.
    PurgeEnded { keep_ms: u64, jobs_max: usize } -> usize,
    |this, pool, now_ms, _, out| {
        let ended_before_ms = now_ms.saturating_sub(this.keep_ms);
        // Pipelines go first: a pipeline purged with its jobs still here reads as completed.
        pool.purge_ended_pipelines(ended_before_ms, this.jobs_max, out)
            + pool.purge_ended(ended_before_ms, this.jobs_max, out)
    }
}

command! {
    /// Retention writes down when nodes were heard from (when it moved by `store_every_ms`),
    /// then forgets up to `nodes_max` nodes silent for `silent_ms` that hold nothing.
    PurgeSilentNodes { silent_ms: u64, store_every_ms: u64, nodes_max: usize } -> usize,
    |this, pool, now_ms, _, out| {
        pool.store_heard(this.store_every_ms, this.nodes_max, out);
        let heard_before_ms = now_ms.saturating_sub(this.silent_ms);
        pool.purge_silent_nodes(now_ms, heard_before_ms, this.nodes_max, out)
    }
}

command! {
    /// The pool's owner gives a requester credit.
    GrantCredits { requester: RequesterId, credits: u64 } -> Result<wire::Balance, PoolError>,
    |this, pool, now_ms, _, out| {
        pool.grant_credits(this.requester, this.credits, now_ms, out)
    }
}

command! {
    /// The owner adds a pool to lend this one's idle slots to (see [`super::federation`]); its
    /// id and account are made here.
    AddPeer { url: String, fingerprint: wire::Fingerprint, token: String } -> Result<store::PeerRow, PoolError>,
    |this, pool, now_ms, entropy, out| {
        let id = pool.peers().map(|peer| peer.id).max().unwrap_or(0) + 1;
        let peer = store::PeerRow {
            id,
            url: this.url,
            fingerprint: this.fingerprint,
            token: this.token,
            requester_id: RequesterId(entropy.next_u64()),
            added_at_ms: now_ms,
        };
        pool.add_peer(peer, out)
    }
}

command! {
    /// The owner stops lending to a peer.
    RemovePeer { id: u64 } -> Result<store::PeerRow, PoolError>,
    |this, pool, now_ms, _, out| { pool.remove_peer(this.id, now_ms, out) }
}

command! {
    /// A fresh API token for the bridge to a peer, in place of the one before; whether the peer
    /// is still there.
    BridgeToken { peer: u64, hash: String } -> bool,
    |this, pool, now_ms, _, out| { pool.bridge_token(this.peer, this.hash, now_ms, out) }
}
