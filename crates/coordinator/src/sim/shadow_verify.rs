//! The shadow's rules for jobs that verify, from the writes alone. A reported result of such a
//! job (an end whose outcome is a result of the task) ends its attempt but not its task, which
//! keeps running with the results that wait for a check. A verdict (`EndTasks`) ends the task:
//! with one of its results, which a quorum of distinct owners agreed on (or, for a held result,
//! a later audit of its node passed) and which is the task's honest result; or inconclusive,
//! with none. Every node whose result disagreed with an accepted one is banned by the same
//! change, and a ban takes its results out of every task. A restart forgets every result that
//! waited, and those tasks run again.

use std::collections::BTreeSet;

use store::{AttemptEnd, AttemptEndState, TaskVerdict};
use wire::{AttemptId, JobState, NodeId, Outcome, TaskState, VerifiedBy};

use super::results;
use super::shadow::{Shadow, Slot};

/// A result of a task, waiting for a check.
#[derive(Debug, Clone)]
pub(super) struct ShadowClaim {
    pub(super) attempt: AttemptId,
    pub(super) node: NodeId,
    pub(super) digest: verify::Digest,
    pub(super) outcome: Outcome,
}

impl ShadowClaim {
    /// The result an end of a job that verifies reported, if it is one.
    pub(super) fn of(verifies: bool, end: &AttemptEnd, node: NodeId) -> Option<Self> {
        let reported = matches!(
            end.state,
            AttemptEndState::Succeeded | AttemptEndState::Failed
        );
        let outcome = end.outcome.as_ref()?;
        if !verifies || !reported || !verify::is_claim(outcome) {
            return None;
        }
        assert!(
            end.task_end.is_none(),
            "a result of a job that verifies ended its task {}/{} unchecked",
            end.job_id,
            end.task_index
        );
        let fuel = end.usage.map_or(0, |usage| usage.fuel_used);
        let digest = verify::digest_of(
            outcome,
            end.stdout.as_ref(),
            end.stderr.as_ref(),
            &end.outputs,
            fuel,
        );
        Some(Self {
            attempt: end.attempt_id,
            node,
            digest,
            outcome: outcome.clone(),
        })
    }
}

/// Whoever brought a node: the first 64 bits of its join token's hash.
pub(super) fn owner_key(join_token_hash: Option<&str>) -> Option<u64> {
    u64::from_str_radix(join_token_hash?.get(..16)?, 16).ok()
}

/// An end's state agrees with what it does to a task of a job that verifies: a result never
/// ends it, and a replica is stopped only beside another one or once results wait for a
/// verdict.
pub(super) fn check_verified_end_state(
    end: &AttemptEnd,
    task_end: Option<TaskState>,
    others_live: bool,
    checked: bool,
) {
    let what = || format!("the end of {} ({:?})", end.attempt_id, end.state);
    match end.state {
        AttemptEndState::Released | AttemptEndState::Succeeded => {
            assert_eq!(task_end, None, "{}", what());
        }
        AttemptEndState::Expired | AttemptEndState::Failed => {
            assert!(
                task_end.is_none_or(|s| s == TaskState::Failed),
                "{}",
                what()
            );
        }
        AttemptEndState::Cancelled => {
            assert!(task_end.is_none() && (others_live || checked), "{}", what());
        }
    }
}

impl Shadow {
    pub(super) fn owner(&self, node: NodeId) -> u64 {
        self.owners.get(&node).copied().unwrap_or(node.0)
    }

    /// A task of a job that verifies ends with a verdict.
    pub(super) fn verdict(&mut self, verdict: &TaskVerdict) {
        let (job_id, index) = (verdict.job_id, verdict.index);
        let job = self
            .jobs
            .get_mut(&job_id)
            .expect("verdicts name known jobs");
        assert!(
            job.verifies,
            "a verdict on {job_id}/{index}, which does not verify"
        );
        let slot = &mut job.tasks[index as usize];
        assert!(
            matches!(slot, Slot::Running(live) if live.is_empty()),
            "a verdict on {job_id}/{index} while it is {slot:?}"
        );
        *slot = Slot::Ended(verdict.state);
        let claims = job.claims.remove(&index).unwrap_or_default();
        assert!(
            !claims.is_empty(),
            "a verdict on {job_id}/{index}, which has no results"
        );
        let honest = results::honest(job_id, index).digest();
        let liars = claims.iter().filter(|claim| claim.digest != honest);
        self.liars_weighed.extend(liars.map(|claim| claim.node));
        let Some(attempt) = verdict.result_attempt else {
            self.inconclusive += 1;
            assert!(
                verdict.state == TaskState::Failed
                    && matches!(verdict.outcome, Outcome::Inconclusive { .. }),
                "{verdict:?}"
            );
            return;
        };
        let result = claims
            .iter()
            .find(|claim| claim.attempt == attempt)
            .unwrap_or_else(|| {
                panic!("{job_id}/{index} ended with {attempt}, not one of its results")
            })
            .clone();
        assert_eq!(
            verdict.outcome, result.outcome,
            "the outcome of {job_id}/{index}"
        );
        let state = if result.outcome.is_success() {
            TaskState::Succeeded
        } else {
            TaskState::Failed
        };
        assert_eq!(verdict.state, state, "the state of {job_id}/{index}");
        self.accept(verdict, &result, &claims, state);
    }

    /// What a verdict that accepts `result` (of `claims`, the task's results) says: who
    /// witnessed it, whether it rests on one node's word, and who must be banned.
    fn accept(
        &mut self,
        verdict: &TaskVerdict,
        result: &ShadowClaim,
        claims: &[ShadowClaim],
        state: TaskState,
    ) {
        let (job_id, index) = (verdict.job_id, verdict.index);
        let honest = results::honest(job_id, index).digest();
        self.check_witnesses(verdict, result, claims);
        let verification = verdict.verification.as_ref().expect("checked above");
        self.vouched
            .insert((job_id, index), verification.nodes.clone());
        if verification.by == VerifiedBy::LaterAudit {
            self.vouched_alone += 1;
        }
        // Only one node's word can carry a lie past the rules: a later audit's release of a
        // result of a node that lies now and then. It is taken back once the node is caught.
        let vouched_alone = verification.by == VerifiedBy::LaterAudit;
        assert!(
            result.digest == honest || vouched_alone,
            "{job_id}/{index} ended with a result that is not the honest one, from {}",
            result.node
        );
        self.wrong_vouched += u64::from(result.digest != honest);
        self.verified += 1;
        for liar in claims.iter().filter(|claim| claim.digest != result.digest) {
            self.must_ban.insert(liar.node, (job_id, index));
        }
        if state == TaskState::Succeeded {
            let job = self.jobs.get_mut(&job_id).expect("found above");
            *job.shares.entry(result.node).or_default() += 1;
        }
    }

    /// The nodes a verdict names gave the result it accepts, the one that gave it first; a
    /// result accepted on others' word has at least two witnesses, each of its own owner.
    fn check_witnesses(&self, verdict: &TaskVerdict, result: &ShadowClaim, claims: &[ShadowClaim]) {
        let (job_id, index) = (verdict.job_id, verdict.index);
        let verification = verdict
            .verification
            .as_ref()
            .unwrap_or_else(|| panic!("{job_id}/{index} accepted a result unchecked"));
        assert_eq!(
            verification.nodes.first(),
            Some(&result.node),
            "{verdict:?}"
        );
        for node in &verification.nodes {
            assert!(
                claims
                    .iter()
                    .any(|c| c.node == *node && c.digest == result.digest),
                "{job_id}/{index}: {node} is named a witness of a result it did not give"
            );
        }
        if verification.by != VerifiedBy::LaterAudit {
            let owners: BTreeSet<u64> = verification.nodes.iter().map(|n| self.owner(*n)).collect();
            assert!(
                owners.len() >= 2 && owners.len() == verification.nodes.len(),
                "{job_id}/{index} was accepted without two witnesses of distinct owners: {verdict:?}"
            );
        }
    }

    /// A node identity is banned: its results no longer count, and a task left without
    /// results and attempts waits again.
    pub(super) fn ban(&mut self, node: NodeId) {
        self.banned.insert(node);
        for job in self.jobs.values_mut() {
            let mut emptied = Vec::new();
            for (index, claims) in &mut job.claims {
                claims.retain(|claim| claim.node != node);
                if claims.is_empty() {
                    emptied.push(*index);
                }
            }
            for index in emptied {
                job.claims.remove(&index);
                let slot = &mut job.tasks[index as usize];
                if matches!(slot, Slot::Running(live) if live.is_empty()) {
                    *slot = Slot::Pending;
                }
            }
        }
    }

    /// Results taken back: each was ended on the word of witnesses now all banned, the recall
    /// naming one; the task is pending again, and an ended job (not a cancelled one) runs
    /// again.
    pub(super) fn recall(&mut self, recall: &store::TaskRecall) {
        let job_id = recall.job_id;
        let job = self.jobs.get_mut(&job_id).expect("recalls name known jobs");
        if recall.reopen {
            assert!(
                matches!(job.state, JobState::Completed | JobState::Failed),
                "job {job_id} reopened while {}",
                job.state
            );
            job.state = JobState::Running;
            self.open += 1;
        } else {
            assert_eq!(
                job.state,
                JobState::Running,
                "a recall in ended job {job_id}"
            );
        }
        for &(index, node) in &recall.tasks {
            let witnesses = self.vouched.remove(&(job_id, index)).unwrap_or_default();
            assert!(
                witnesses.contains(&node),
                "{job_id}/{index} taken back from {node}, not a witness of it: {witnesses:?}"
            );
            assert!(
                witnesses
                    .iter()
                    .all(|witness| self.banned.contains(witness)),
                "{job_id}/{index} taken back while a witness of {witnesses:?} is not banned"
            );
            let slot = &mut job.tasks[index as usize];
            if *slot == Slot::Ended(TaskState::Succeeded) {
                // The result's node is its first witness.
                let share = job
                    .shares
                    .get_mut(&witnesses[0])
                    .expect("its result counted");
                *share -= 1;
                if *share == 0 {
                    job.shares.remove(&witnesses[0]);
                }
            }
            assert!(
                matches!(slot, Slot::Ended(TaskState::Succeeded | TaskState::Failed)),
                "{job_id}/{index} taken back while {slot:?}"
            );
            *slot = Slot::Pending;
            self.recalled += 1;
        }
    }

    /// Results whose witnesses are all banned, in jobs not cancelled: what the coordinator has
    /// yet to take back.
    pub(super) fn recalls_left(&self) -> usize {
        let left = self.vouched.iter().filter(|((job, _), witnesses)| {
            witnesses
                .iter()
                .all(|witness| self.banned.contains(witness))
                && self
                    .jobs
                    .get(job)
                    .is_some_and(|job| job.state != JobState::Cancelled)
        });
        left.count()
    }

    /// A restart forgets the results that waited for a check: their tasks run again.
    pub(super) fn drop_checks(&mut self) {
        for job in self.jobs.values_mut() {
            for (index, _) in std::mem::take(&mut job.claims) {
                let slot = &mut job.tasks[index as usize];
                if matches!(slot, Slot::Running(live) if live.is_empty()) {
                    *slot = Slot::Pending;
                }
            }
        }
    }
}
