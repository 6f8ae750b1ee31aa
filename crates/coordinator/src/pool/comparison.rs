//! Comparing a task's results with its job's validator, for jobs whose results need not be the
//! same bytes to agree.
//!
//! Every result of a task that is checked carries a *label*, what `verify::tally` counts votes
//! by. Without a validator a result's label is its digest. With one, results that are
//! equivalent share a label: a new result takes the label of an earlier result with the same
//! digest at once, and otherwise is compared, one earlier label at a time (in the order the
//! labels first appeared), until the validator finds it equivalent to one (it takes that label)
//! or different from all (it gets a label of its own, its digest). The task is judged only once
//! every result has a label; until then it runs nothing more.
//!
//! The comparisons themselves run outside the pool: the coordinator asks for the next one
//! ([`PoolState::next_comparison`]), runs the validator, and gives back its verdict
//! ([`super::Compare`]). A verdict that no longer fits the task (it ended, or a ban took a result
//! away) changes nothing. A validator that fails (traps, runs out of fuel or time, exits with
//! neither 0 nor 1) leaves the task inconclusive: no result is accepted on a comparison that
//! did not happen.

use serde::{Deserialize, Serialize};
use wire::{AttemptId, BlobRef, JobId, Outcome, OutputFile};

use super::events::Event;
use super::verification::Check;
use super::{Outbox, PoolState};
use crate::env::Entropy;

/// The blobs of one result a validator compares, besides its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ResultFiles {
    pub(crate) stdout: Option<BlobRef>,
    pub(crate) stderr: Option<BlobRef>,
    pub(crate) outputs: Vec<OutputFile>,
}

/// One result as a validator gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ComparedResult {
    pub(crate) outcome: Outcome,
    pub(crate) files: ResultFiles,
}

/// A comparison the pool waits for: is `attempt`'s result (`second`) equivalent to `with`'s
/// (`first`), which stands for one label among the task's results?
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Comparison {
    pub(crate) job: JobId,
    pub(crate) task: u32,
    pub(crate) attempt: AttemptId,
    pub(crate) with: AttemptId,
    pub(crate) validator: std::sync::Arc<wire::Validator>,
    pub(crate) first: ComparedResult,
    pub(crate) second: ComparedResult,
}

/// What the validator said of two results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Equivalent,
    Different,
    /// It could not say: it trapped, ran out of fuel or time, exited otherwise, or could not
    /// be run. The reason is for the requester.
    Failed(String),
}

/// Longest reason of a failed comparison kept in a task's outcome, in bytes.
const FAILURE_BYTES_MAX: usize = 512;

/// Labels what needs no validator, in order: a result with the digest of a labelled one takes
/// its label, and one left with nothing to be compared with gets its own. Stops at the first
/// result that must be compared first; whether there is one.
pub(super) fn label_results(check: &mut Check) -> bool {
    for index in 0..check.claims.len() {
        if check.claims[index].label.is_some() {
            continue;
        }
        let digest = check.claims[index].digest;
        let same = check
            .claims
            .iter()
            .find(|claim| claim.digest == digest && claim.label.is_some())
            .and_then(|claim| claim.label);
        if let Some(label) = same {
            check.claims[index].label = Some(label);
        } else if comparison_target(check, index).is_none() {
            check.claims[index].label = Some(digest);
        } else {
            return true;
        }
    }
    false
}

/// The earliest labelled result whose label result `index` was not found different from: what
/// it is compared with next.
fn comparison_target(check: &Check, index: usize) -> Option<usize> {
    let unlike = &check.claims[index].unlike;
    check
        .claims
        .iter()
        .position(|claim| claim.label.is_some_and(|label| !unlike.contains(&label)))
}

/// The result of `check` waiting for a comparison, and the one it is compared with.
fn waiting(check: &Check) -> Option<(usize, usize)> {
    let index = check.claims.iter().position(|c| c.label.is_none())?;
    Some((index, comparison_target(check, index)?))
}

impl PoolState {
    /// The next comparison to run, of the oldest job that waits for one.
    pub(crate) fn next_comparison(&self) -> Option<Comparison> {
        let mut jobs: Vec<JobId> = self
            .open_jobs
            .iter()
            .filter(|id| self.jobs[id].validator.is_some())
            .copied()
            .collect();
        jobs.sort_unstable();
        jobs.into_iter()
            .find_map(|job_id| self.comparison_in(job_id))
    }

    fn comparison_in(&self, job_id: JobId) -> Option<Comparison> {
        let job = &self.jobs[&job_id];
        let validator = job.validator.as_ref()?;
        job.tasks.iter().enumerate().find_map(|(index, task)| {
            let check = task.check.as_deref()?;
            let (second, first) = waiting(check)?;
            let result = |i: usize| ComparedResult {
                outcome: check.claims[i].outcome.clone(),
                files: check.claims[i]
                    .files
                    .as_deref()
                    .cloned()
                    .expect("results of jobs with a validator keep their files"),
            };
            Some(Comparison {
                job: job_id,
                task: index as u32,
                attempt: check.claims[second].attempt,
                with: check.claims[first].attempt,
                validator: std::sync::Arc::clone(validator),
                first: result(first),
                second: result(second),
            })
        })
    }

    /// The validator's verdict on a comparison: the result takes a label or is compared with
    /// the next, and the task is judged once all have one; a failed comparison leaves the task
    /// inconclusive. A verdict the task no longer waits for changes nothing.
    pub(super) fn compared(
        &mut self,
        comparison: (JobId, u32, AttemptId, AttemptId),
        verdict: Verdict,
        now_ms: u64,
        entropy: &dyn Entropy,
        out: &mut Outbox,
    ) {
        let (job, task, attempt, with) = comparison;
        let Some(check) = self
            .jobs
            .get(&job)
            .and_then(|job| job.tasks.get(task as usize))
            .and_then(|task| task.check.as_deref())
        else {
            return;
        };
        let awaited =
            waiting(check).map(|(s, f)| (check.claims[s].attempt, check.claims[f].attempt));
        if awaited != Some((attempt, with)) || self.jobs[&job].state != wire::JobState::Running {
            return;
        }
        let equivalent = match verdict {
            Verdict::Failed(mut why) => {
                wire::validate::cut_to_bytes(&mut why, FAILURE_BYTES_MAX);
                self.inconclusive_because(job, task, Some(why), now_ms, out);
                self.finish_job_if_done(job, now_ms, out);
                return;
            }
            Verdict::Equivalent => true,
            Verdict::Different => false,
        };
        let event = Event::ResultsCompared {
            job,
            task,
            attempt,
            with,
            equivalent,
        };
        self.record(event, out);
        self.judge(job, task, now_ms, entropy, out);
        self.finish_job_if_done(job, now_ms, out);
    }

    /// Applies a verdict recorded in [`Event::ResultsCompared`].
    pub(super) fn apply_compared(
        &mut self,
        comparison: (JobId, u32, AttemptId, AttemptId),
        equivalent: bool,
    ) {
        let (job, task, attempt, with) = comparison;
        let check = self
            .jobs
            .get_mut(&job)
            .expect("events name live jobs")
            .tasks[task as usize]
            .check
            .as_deref_mut()
            .expect("compared tasks have results");
        let label = check
            .claims
            .iter()
            .find(|claim| claim.attempt == with)
            .and_then(|claim| claim.label)
            .expect("results are compared with labelled ones");
        let claim = check
            .claims
            .iter_mut()
            .find(|claim| claim.attempt == attempt)
            .expect("compared results are the task's");
        if equivalent {
            claim.label = Some(label);
        } else {
            claim.unlike.push(label);
        }
        self.changes.comparisons |= label_results(check);
    }
}
