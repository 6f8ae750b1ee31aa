//! Checking results in a pool that verifies: what a task's results wait for, each node's
//! record, the audit window, and bans. The rules themselves are the `verify` crate's; this
//! file applies them to the pool.
//!
//! A result of a job that verifies does not end its task. The task keeps running with a
//! [`Check`] that holds its results (claims) and how many more attempts it wants at once,
//! until `verify::tally` says a quorum of distinct owners agrees (the task ends with the
//! agreed result), or the task is inconclusive (it fails, no result accepted). A trusted
//! node's first result may instead be held in the node's audit window, and ends its task only
//! when an audit of a later result of the same node passes. A node whose result disagrees with
//! a quorum is banned, with every node of its owner: their held results run again, and their
//! join token stops working.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use verify::{Claim, Digest, First, Policy, Tally, Window};
use wire::{
    Account, AttemptId, JobId, JobState, Memo, NodeId, NodeStanding, Outcome, Standing, Trust,
    VerifiedBy, VerifyMode,
};

use super::credits::Move;
use super::events::Event;
use super::{Outbox, PoolError, PoolState};
use crate::env::Entropy;

/// How the pool checks results, and what it knows of each node identity.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verifying {
    pub(crate) trust: Trust,
    pub(crate) policy: Policy,
    /// Whether replicas are kept off nodes of one network as well as of one owner.
    pub(crate) networks_apart: bool,
    /// Every identity that gave a result of a job that verifies, or was banned.
    pub(crate) records: HashMap<NodeId, NodeRecord>,
}

impl Default for Verifying {
    fn default() -> Self {
        Self {
            trust: Trust::Family,
            policy: Policy::PUBLIC,
            networks_apart: true,
            records: HashMap::new(),
        }
    }
}

/// One node identity's record: it outlives the node's sessions, so leaving and coming back
/// does not wipe it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeRecord {
    /// Who brought it, as results are counted by: one owner is one witness.
    pub(crate) owner: u64,
    pub(crate) join_token_hash: String,
    pub(crate) network: Option<u64>,
    pub(crate) record: verify::Record,
    /// Its held results: the tasks they belong to, by the order it gave them.
    pub(crate) window: Window<(JobId, u32)>,
    /// Results it gave; the sequence of the next.
    pub(crate) results: u64,
}

/// A task's results so far and what they wait for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Check {
    pub(crate) claims: Vec<Claimed>,
    /// Attempts it wants running at once for more results.
    pub(crate) wanted: u32,
    /// Why its first result was run again: the kind of check it passes when a quorum agrees.
    pub(crate) by: Option<VerifiedBy>,
    /// Its one result waits in this node's window, at this sequence.
    pub(crate) held: Option<(NodeId, u64)>,
}

/// How a quorum's results split (see `verify::Tally::Agreed`).
struct Votes<'a> {
    by: VerifiedBy,
    agreeing: &'a [usize],
    dissenting: &'a [usize],
}

/// One result of a task.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Claimed {
    pub(crate) attempt: AttemptId,
    pub(crate) node: NodeId,
    pub(crate) owner: u64,
    /// Who else it counts as a witness for: the makers of the checkpoints it resumed from.
    pub(crate) makers: Vec<u64>,
    pub(crate) network: Option<u64>,
    pub(crate) digest: Digest,
    /// What it votes as in the tally: its digest, or with a validator the label of the results
    /// it is equivalent to; `None` while it waits to be compared (see `comparison`).
    pub(crate) label: Option<Digest>,
    /// Labels the validator found it different from.
    pub(crate) unlike: Vec<Digest>,
    /// Its blobs, kept for the validator of a job that has one.
    pub(crate) files: Option<Box<super::ResultFiles>>,
    pub(crate) outcome: Outcome,
    /// Its place among its node's results.
    pub(crate) seq: u64,
    /// Whether its node was trusted when it gave it.
    pub(crate) trusted: bool,
    /// What the requester paid for it, pending in `payee`'s account until it is verified.
    pub(crate) fuel: u64,
    pub(crate) payee: u64,
}

impl Claimed {
    /// Whether it is the work of one of `nodes`, or resumed from a checkpoint `witness`'s
    /// nodes saved.
    pub(crate) fn rests_on(&self, nodes: &BTreeSet<NodeId>, witness: u64) -> bool {
        nodes.contains(&self.node) || self.makers.contains(&witness)
    }
}

impl PoolState {
    /// Sets how the pool checks results, at start. A public pool checks every job.
    pub(crate) fn set_verifying(&mut self, trust: Trust, policy: Policy, networks_apart: bool) {
        assert!(policy.check().is_ok(), "the caller checked the policy");
        self.verifying.trust = trust;
        self.verifying.policy = policy;
        self.verifying.networks_apart = networks_apart;
    }

    pub(crate) fn trust(&self) -> wire::PoolTrust {
        wire::PoolTrust {
            trust: self.verifying.trust,
            networks_apart: self.verifying.networks_apart,
            probation_results: self.verifying.policy.probation_results,
            audit_per_million: self.verifying.policy.audit_per_million,
        }
    }

    /// The check a submitted job gets: at least the pool's, never less. Checking compares
    /// results byte for byte, so it needs deterministic mode, unless the job names a validator
    /// that says which results are equivalent.
    pub(crate) fn checked_mode(
        &self,
        asked: Option<VerifyMode>,
        deterministic: bool,
        replicas: u32,
        validator: bool,
    ) -> Result<Option<VerifyMode>, PoolError> {
        let floor = match self.verifying.trust {
            Trust::Family => None,
            Trust::Public => Some(VerifyMode::Adaptive),
        };
        let mode = asked.max(floor);
        if mode.is_some() && !deterministic && !validator {
            return Err(PoolError::Invalid(
                "this job's results are verified by running tasks again on other nodes, which \
                 needs the same bytes on every node: add `deterministic = { seed = 1 }` to the \
                 job spec (or `--deterministic` to submit), or name a `validator` that says \
                 whether two results are equivalent"
                    .to_owned(),
            ));
        }
        if mode.is_none() && validator {
            return Err(PoolError::Invalid(
                "a validator compares results only where they are verified, and this pool \
                 takes them as reported: add `verify = \"replicate\"` to the job spec, or \
                 remove the validator"
                    .to_owned(),
            ));
        }
        if mode.is_some() && replicas > 1 {
            return Err(PoolError::Invalid(
                "this job's results are verified, and verification runs the replicas it \
                 needs: remove `replicas` from the job spec"
                    .to_owned(),
            ));
        }
        Ok(mode)
    }

    /// Where a node stands, in a pool that verifies.
    pub(crate) fn standing_of(&self, node_id: NodeId) -> Option<NodeStanding> {
        if self.verifying.trust == Trust::Family {
            return None;
        }
        let record = self.verifying.records.get(&node_id);
        let verify_record = record.map(|r| r.record).unwrap_or_default();
        let standing = wire_standing(verify_record.standing(&self.verifying.policy));
        Some(NodeStanding {
            standing,
            record: wire::Record {
                verified: verify_record.verified,
                audits_passed: verify_record.audits_passed,
                mismatches: verify_record.mismatches,
                held: record.map_or(0, |r| r.window.len() as u32),
            },
        })
    }

    /// Everyone who brought nodes that gave results, with their nodes' records summed; an
    /// owner is banned once any of its nodes is.
    pub(crate) fn list_owners(&self) -> Vec<wire::OwnerView> {
        if self.verifying.trust == Trust::Family {
            return Vec::new();
        }
        let mut owners: BTreeMap<u64, (u32, verify::Record, u32)> = BTreeMap::new();
        for record in self.verifying.records.values() {
            let (nodes, sum, held) = owners.entry(record.owner).or_default();
            *nodes += 1;
            sum.verified += record.record.verified;
            sum.audits_passed += record.record.audits_passed;
            sum.mismatches += record.record.mismatches;
            sum.banned |= record.record.banned;
            *held += record.window.len() as u32;
        }
        owners
            .into_iter()
            .map(|(owner, (nodes, sum, held))| wire::OwnerView {
                owner: format!("{owner:016x}"),
                nodes,
                standing: wire_standing(sum.standing(&self.verifying.policy)),
                record: wire::Record {
                    verified: sum.verified,
                    audits_passed: sum.audits_passed,
                    mismatches: sum.mismatches,
                    held,
                },
            })
            .collect()
    }

    /// How many attempts a node may take at once: a node on probation in a public pool runs
    /// one, so a flood of new identities under one join token cannot take much of the pool.
    pub(crate) fn slots_offered(&self, node_id: NodeId, slots_free: u32) -> u32 {
        let on_probation = self
            .standing_of(node_id)
            .is_some_and(|s| s.standing == Standing::Probation);
        if !on_probation {
            return slots_free;
        }
        let running = self
            .nodes
            .get(&node_id)
            .map_or(0, |node| node.running.len());
        slots_free.min(1u32.saturating_sub(running as u32))
    }

    /// Whether a node's results are taken on trust (and audited) rather than replicated.
    pub(super) fn is_trusted(&self, node_id: NodeId) -> bool {
        self.verifying
            .records
            .get(&node_id)
            .is_some_and(|r| r.record.standing(&self.verifying.policy) == verify::Standing::Trusted)
    }

    /// Whether replicas are kept off nodes of one owner, and of one network: in a public pool,
    /// where nodes of one owner or one network may collude.
    pub(super) fn keeps_apart(&self) -> (bool, bool) {
        match self.verifying.trust {
            Trust::Public => (true, self.verifying.networks_apart),
            Trust::Family => (false, false),
        }
    }

    /// Who a node's result counts as a witness for: its owner in a public pool, where owners
    /// are strangers to each other; the node itself in a family pool, whose nodes share one
    /// owner.
    pub(super) fn witness_of(&self, node_id: NodeId) -> u64 {
        match self.verifying.trust {
            Trust::Public => self.payee_of(node_id),
            Trust::Family => node_id.0,
        }
    }

    /// The digest of a report's result when its job verifies and the outcome is a result.
    pub(super) fn claim_of(
        &self,
        end: &store::AttemptEnd,
        sealed_digest: Option<[u8; 32]>,
    ) -> Option<Digest> {
        self.jobs[&end.job_id].verify?;
        let outcome = end.outcome.as_ref()?;
        let fuel_used = end.usage.map_or(0, |usage| usage.fuel_used);
        if let Some(plain) = sealed_digest.filter(|_| self.jobs[&end.job_id].keys.is_some()) {
            return verify::is_claim(outcome)
                .then(|| verify::sealed_digest_of(outcome, &plain, fuel_used));
        }
        verify::is_claim(outcome).then(|| {
            verify::digest_of(
                outcome,
                end.stdout.as_ref(),
                end.stderr.as_ref(),
                &end.outputs,
                fuel_used,
            )
        })
    }
}

impl PoolState {
    /// Decides what task `index` of `job_id` does with its results: wait for more, end with
    /// the agreed one, end inconclusive, or hold its one result in its node's window.
    pub(super) fn judge(
        &mut self,
        job_id: JobId,
        index: u32,
        now_ms: u64,
        entropy: &dyn Entropy,
        out: &mut Outbox,
    ) {
        let job = &self.jobs[&job_id];
        let Some(check) = job.tasks[index as usize].check.as_deref() else {
            return;
        };
        // A result waiting for the validator has no vote yet.
        let unlabelled = check.claims.iter().any(|claim| claim.label.is_none());
        if check.held.is_some() || job.state != JobState::Running || unlabelled {
            return;
        }
        let policy = self.verifying.policy;
        if check.claims.len() == 1 && check.by.is_none() && job.verify == Some(VerifyMode::Adaptive)
        {
            self.judge_first(job_id, index, now_ms, entropy, out);
            return;
        }
        let claims: Vec<Claim> = check
            .claims
            .iter()
            .map(|c| Claim {
                owner: c.owner,
                makers: c.makers.clone(),
                digest: c.label.expect("only labelled results are judged"),
                trusted: c.trusted,
            })
            .collect();
        let by = check.by.unwrap_or(VerifiedBy::Replicas);
        match verify::tally(&claims, by == VerifiedBy::Audit, &policy) {
            Tally::Wanting { more } => self.want_checks(job_id, index, more, by, now_ms, out),
            Tally::Agreed {
                agreeing,
                dissenting,
                ..
            } => {
                let votes = Votes {
                    by,
                    agreeing: &agreeing,
                    dissenting: &dissenting,
                };
                self.agree(job_id, index, votes, now_ms, entropy, out);
            }
            Tally::Inconclusive => self.inconclusive_because(job_id, index, None, now_ms, out),
        }
    }

    /// The task's results can never agree, or the validator could not compare them
    /// (`validator_failed`): it fails with none accepted, and what was paid for them goes
    /// back.
    pub(super) fn inconclusive_because(
        &mut self,
        job_id: JobId,
        index: u32,
        validator_failed: Option<String>,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        self.stop_live(job_id, index, now_ms, out);
        self.refund(job_id, index, None, now_ms, out);
        let check = self.jobs[&job_id].tasks[index as usize].check.as_deref();
        let results = check.map_or(0, |check| check.claims.len() as u32);
        let event = Event::TaskInconclusive {
            job: job_id,
            task: index,
            results,
            validator_failed,
            at_ms: now_ms,
        };
        self.record(event, out);
    }

    /// A task's first result in an adaptive job: replicated (its node is on probation),
    /// audited, or held in its node's window.
    fn judge_first(
        &mut self,
        job_id: JobId,
        index: u32,
        now_ms: u64,
        entropy: &dyn Entropy,
        out: &mut Outbox,
    ) {
        let check = self.jobs[&job_id].tasks[index as usize]
            .check
            .as_deref()
            .expect("judged tasks have results");
        let first = &check.claims[0];
        if !first.makers.is_empty() {
            // It rests on checkpoints no one checked: only a run from the start elsewhere can.
            self.want_checks(job_id, index, 1, VerifiedBy::Replicas, now_ms, out);
            return;
        }
        let node = &self.verifying.records[&first.node];
        let roll = entropy.next_u64();
        let by = match verify::first(
            &node.record,
            node.window.len(),
            roll,
            &self.verifying.policy,
        ) {
            First::Hold => {
                // A held result waits for an audit of a later one; nothing else of its task
                // runs meanwhile (an attempt restored after a restart may still).
                self.stop_live(job_id, index, now_ms, out);
                let event = Event::ResultHeld {
                    job: job_id,
                    task: index,
                };
                self.record(event, out);
                return;
            }
            First::Audit => VerifiedBy::Audit,
            First::Replicate => VerifiedBy::Probation,
        };
        self.want_checks(job_id, index, 1, by, now_ms, out);
    }

    /// The task wants `wanted` more results at once. When none runs and the task has no
    /// attempt left (results a restart forgot, or a ban took away, still count against its
    /// attempts), no result can come: it is inconclusive rather than waiting for ever.
    fn want_checks(
        &mut self,
        job: JobId,
        task: u32,
        wanted: u32,
        by: VerifiedBy,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        let job_state = &self.jobs[&job];
        if !job_state.attempts_left(task) && job_state.tasks[task as usize].live.is_empty() {
            self.inconclusive_because(job, task, None, now_ms, out);
            return;
        }
        let check = job_state.tasks[task as usize].check.as_deref();
        if check.is_some_and(|c| c.wanted == wanted && c.by == Some(by) && c.held.is_none()) {
            return;
        }
        let event = Event::ChecksWanted {
            job,
            task,
            wanted,
            by,
        };
        self.record(event, out);
    }

    /// A quorum agrees: the task ends with the first agreeing result, an audit that passed
    /// releases what its node held before, and the owners of results that disagreed are
    /// banned.
    fn agree(
        &mut self,
        job_id: JobId,
        index: u32,
        votes: Votes<'_>,
        now_ms: u64,
        entropy: &dyn Entropy,
        out: &mut Outbox,
    ) {
        let Votes {
            by,
            agreeing,
            dissenting,
        } = votes;
        self.stop_live(job_id, index, now_ms, out);
        let check = self.jobs[&job_id].tasks[index as usize]
            .check
            .as_deref()
            .expect("judged tasks have results");
        let first = &check.claims[0];
        // An audit passes when the audited result is among the agreeing ones; when it is not,
        // the replicas settled the task.
        let audit_passed = by == VerifiedBy::Audit && agreeing.contains(&0);
        let by = match by {
            VerifiedBy::Audit if !audit_passed => VerifiedBy::Replicas,
            by => by,
        };
        let audited = audit_passed.then_some((first.node, first.seq));
        // A result built on others' checkpoints may be wrong by their fault or its node's: it
        // is refused, and no one is banned for it.
        let liars: BTreeSet<NodeId> = dissenting
            .iter()
            .map(|i| &check.claims[*i])
            .filter(|claim| claim.makers.is_empty())
            .map(|claim| claim.node)
            .collect();
        let requester = Account::Requester(self.jobs[&job_id].requester);
        let moves: Vec<Move> = check
            .claims
            .iter()
            .enumerate()
            .map(|(i, claim)| {
                let to = if agreeing.contains(&i) {
                    Account::Owner(claim.payee)
                } else {
                    requester
                };
                settle(claim, to, job_id)
            })
            .collect();
        let result = &check.claims[agreeing[0]];
        let event = Event::TaskVerified {
            job: job_id,
            task: index,
            attempt: result.attempt,
            outcome: result.outcome.clone(),
            by,
            nodes: agreeing.iter().map(|i| check.claims[*i].node).collect(),
            at_ms: now_ms,
        };
        self.record(event, out);
        self.move_credits(moves, now_ms, out);
        if let Some((node, seq)) = audited {
            self.release_window(node, seq, now_ms, out);
        }
        for node in liars {
            self.ban(node, now_ms, entropy, out);
        }
    }

    /// An audit of `node`'s result `seq` passed: its results held before are verified.
    fn release_window(&mut self, node: NodeId, seq: u64, now_ms: u64, out: &mut Outbox) {
        let released: Vec<(JobId, u32)> = self.verifying.records[&node]
            .window
            .iter()
            .take_while(|(held_seq, _)| *held_seq < seq)
            .map(|(_, task)| *task)
            .collect();
        let mut jobs = BTreeSet::new();
        let mut moves = Vec::new();
        for (job_id, index) in released {
            let check = self.jobs[&job_id].tasks[index as usize]
                .check
                .as_deref()
                .expect("held tasks have results");
            let claim = &check.claims[0];
            moves.push(settle(claim, Account::Owner(claim.payee), job_id));
            let event = Event::TaskVerified {
                job: job_id,
                task: index,
                attempt: check.claims[0].attempt,
                outcome: check.claims[0].outcome.clone(),
                by: VerifiedBy::LaterAudit,
                nodes: vec![node],
                at_ms: now_ms,
            };
            self.record(event, out);
            jobs.insert(job_id);
        }
        self.move_credits(moves, now_ms, out);
        for job_id in jobs {
            self.finish_job_if_done(job_id, now_ms, out);
        }
    }

    /// What was paid for the results of a task whose results are not accepted goes back to
    /// its requester; only the results that rest on `(nodes, witness)` (see
    /// [`Claimed::rests_on`]), when given.
    pub(super) fn refund(
        &mut self,
        job_id: JobId,
        index: u32,
        banned: Option<(&BTreeSet<NodeId>, u64)>,
        now_ms: u64,
        out: &mut Outbox,
    ) {
        let job = &self.jobs[&job_id];
        let Some(check) = job.tasks[index as usize].check.as_deref() else {
            return;
        };
        let requester = Account::Requester(job.requester);
        let moves = check
            .claims
            .iter()
            .filter(|claim| banned.is_none_or(|(nodes, witness)| claim.rests_on(nodes, witness)))
            .map(|claim| settle(claim, requester, job_id))
            .collect();
        self.move_credits(moves, now_ms, out);
    }

    /// Ends the live attempts of a task whose results are settled; their nodes hear so at
    /// their next heartbeat.
    fn stop_live(&mut self, job_id: JobId, index: u32, now_ms: u64, out: &mut Outbox) {
        let live = self.jobs[&job_id].tasks[index as usize].live.clone();
        for attempt_id in live {
            let attempt = self.attempts[&attempt_id];
            let state = store::AttemptEndState::Cancelled;
            let end = super::leases::unreported_end(attempt_id, &attempt, state, None, now_ms);
            self.record(Event::AttemptEnded { end }, out);
        }
    }
}

impl PoolState {
    /// Bans the owner of `node`: every node it brought leaves the pool for good, their held
    /// results run again, their results still being checked no longer count, and its join
    /// token stops working.
    pub(super) fn ban(
        &mut self,
        node: NodeId,
        now_ms: u64,
        entropy: &dyn Entropy,
        out: &mut Outbox,
    ) {
        let Some(record) = self.verifying.records.get(&node) else {
            return;
        };
        let (owner, join_token_hash) = (record.owner, record.join_token_hash.clone());
        let mut banned: BTreeSet<NodeId> = self
            .verifying
            .records
            .iter()
            .filter(|(_, r)| r.owner == owner && !r.record.banned)
            .map(|(id, _)| *id)
            .collect();
        banned.extend(
            self.nodes
                .values()
                .filter(|n| self.verifying.trust == Trust::Public && n.owner == Some(owner))
                .map(|n| n.id),
        );
        let touched = self.tasks_with_claims_of(&banned, owner);
        for (job_id, index) in &touched {
            self.refund(*job_id, *index, Some((&banned, owner)), now_ms, out);
        }
        self.drop_checkpoints_of(owner, now_ms, out);
        let earned = self.balance(Account::Owner(owner));
        if earned > 0 {
            let clawback = Move {
                from: Account::Owner(owner),
                to: Account::Pool,
                fuel: earned as u64,
                memo: Memo::Clawback,
                job: None,
            };
            self.move_credits(vec![clawback], now_ms, out);
        }
        for node_id in banned {
            if let Some(node) = self.nodes.get(&node_id) {
                let held: Vec<AttemptId> = node.running.iter().copied().collect();
                self.release(node_id, &held, now_ms, out);
            }
            self.record(
                Event::NodeBanned {
                    node: node_id,
                    at_ms: now_ms,
                },
                out,
            );
        }
        // A family pool's nodes share the owner's join token: one faulty machine must not
        // lock every other out.
        if self.verifying.trust == Trust::Public && !join_token_hash.is_empty() {
            self.revoke_token(&join_token_hash, now_ms, out);
        }
        self.rejudge(touched, now_ms, entropy, out);
    }

    /// Drops every latest checkpoint `witness`'s nodes saved or led to, and gives back the
    /// attempts that resumed from one: their tasks start again from the beginning.
    fn drop_checkpoints_of(&mut self, witness: u64, now_ms: u64, out: &mut Outbox) {
        for (job, task) in self.checkpoints_made_by(witness) {
            let resumed: Vec<AttemptId> = self.jobs[&job].tasks[task as usize]
                .live
                .iter()
                .copied()
                .filter(|attempt| self.attempts[attempt].resumed_fuel > 0)
                .collect();
            self.record(Event::CheckpointDropped { job, task }, out);
            for attempt_id in resumed {
                let attempt = self.attempts[&attempt_id];
                let state = store::AttemptEndState::Released;
                let end = super::leases::unreported_end(attempt_id, &attempt, state, None, now_ms);
                self.record(Event::AttemptEnded { end }, out);
            }
        }
    }

    /// Open tasks with results from these nodes, or resting on `witness`'s checkpoints, in a
    /// fixed order.
    fn tasks_with_claims_of(&self, nodes: &BTreeSet<NodeId>, witness: u64) -> Vec<(JobId, u32)> {
        self.open_tasks_where(|task| {
            task.check
                .as_deref()
                .is_some_and(|check| check.claims.iter().any(|c| c.rests_on(nodes, witness)))
        })
    }

    /// Judges again the tasks a ban took results from, and ends the jobs that ended.
    fn rejudge(
        &mut self,
        touched: Vec<(JobId, u32)>,
        now_ms: u64,
        entropy: &dyn Entropy,
        out: &mut Outbox,
    ) {
        let mut jobs = BTreeSet::new();
        for (job_id, index) in touched {
            self.judge(job_id, index, now_ms, entropy, out);
            jobs.insert(job_id);
        }
        for job_id in jobs {
            self.finish_job_if_done(job_id, now_ms, out);
        }
    }

    /// When every task of a job that has not ended waits in an audit window, nothing else of
    /// the job runs to bring the audits that would release them: the newest held result of
    /// each such node is audited now, and its passing releases the older ones. An audit that
    /// cannot run (its task has no attempt left) ends its task inconclusive instead, and the
    /// node's next newest result is audited.
    pub(super) fn audit_tail(&mut self, job_id: JobId, now_ms: u64, out: &mut Outbox) {
        while self.audit_newest_held(job_id, now_ms, out) {}
    }

    /// Audits the newest held result of each node, if every unfinished task of the job is
    /// held; whether one of them ended instead.
    fn audit_newest_held(&mut self, job_id: JobId, now_ms: u64, out: &mut Outbox) -> bool {
        let Some(job) = self.jobs.get(&job_id) else {
            return false;
        };
        if job.held == 0 || !job.pending.is_empty() || job.counts.running != job.held {
            return false;
        }
        let mut newest: BTreeMap<NodeId, (u64, u32)> = BTreeMap::new();
        for (index, task) in job.tasks.iter().enumerate() {
            if let Some((node, seq)) = task.check.as_deref().and_then(|c| c.held) {
                let entry = newest.entry(node).or_insert((seq, index as u32));
                *entry = (*entry).max((seq, index as u32));
            }
        }
        let mut ended = false;
        for (_, (_, index)) in newest {
            self.want_checks(job_id, index, 1, VerifiedBy::Audit, now_ms, out);
            let slot = self.jobs[&job_id].tasks[index as usize].slot;
            ended |= matches!(slot, super::Slot::Ended(_));
        }
        ended
    }
}

fn wire_standing(standing: verify::Standing) -> Standing {
    match standing {
        verify::Standing::Probation => Standing::Probation,
        verify::Standing::Trusted => Standing::Trusted,
        verify::Standing::Banned => Standing::Banned,
    }
}

/// The pending payment for `claim` leaves its payee's pending account for `to`: the payee's
/// earned account once verified, the requester's when not accepted.
fn settle(claim: &Claimed, to: Account, job: JobId) -> Move {
    let memo = match to {
        Account::Owner(_) => Memo::Verified,
        _ => Memo::Refund,
    };
    Move {
        from: Account::Pending(claim.payee),
        to,
        fuel: claim.fuel,
        memo,
        job: Some(job),
    }
}
