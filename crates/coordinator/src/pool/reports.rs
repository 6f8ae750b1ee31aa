//! What a node may upload for an attempt it holds, and the reports that end attempts.
//!
//! A node's report is a claim; the pool believes of it only what it can check. It may name only
//! blobs this node uploaded for this attempt, their sizes are the ones measured on upload, and
//! the job's limits (file count, bytes of stdout, stderr and `/output`) hold on what it names.
//! No number in it is taken beyond what the attempt allowed: fuel past the job's fuel refuses
//! the report, and wall time and memory are cut to what the attempt could have used.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use store::{AttemptEnd, AttemptEndState, TaskEnd};
use wire::failure::Step;
use wire::{
    Aborted, AttemptId, AttemptReport, BlobHash, Limits, NodeId, Outcome, ReportAck, TaskState,
};

use super::credits::Move;
use super::events::Event;
use super::{Attempt, Outbox, PoolState};
use crate::env::Entropy;
use wire::{Account, Memo};

impl PoolState {
    /// The largest blob `node_id` may upload for `attempt_id` now: the most the attempt may
    /// leave in one stream, within what it has left of its stdout, stderr and output caps.
    pub(crate) fn upload_bytes_max(
        &self,
        node_id: NodeId,
        attempt_id: AttemptId,
    ) -> Result<u64, String> {
        let attempt = self.held_attempt(node_id, attempt_id)?;
        self.upload_room(attempt_id, &attempt)
    }

    /// What `attempt_id` may still upload in one blob; refused once it uploaded as many blobs
    /// as its job allows outputs.
    fn upload_room(&self, attempt_id: AttemptId, attempt: &Attempt) -> Result<u64, String> {
        let job = &self.jobs[&attempt.job];
        let limits = job.blob_limits(job.runtime.limits);
        let uploads = self.uploads.get(&attempt_id);
        if uploads.map_or(0, HashMap::len) >= uploads_per_attempt_max(&limits) {
            return Err(format!(
                "attempt {attempt_id} uploaded as many blobs as its job allows outputs ({} files \
                 plus stdout and stderr)",
                limits.output_files_max
            ));
        }
        let uploaded_bytes = uploads.map_or(0, |uploads| {
            uploads
                .values()
                .fold(0u64, |total, size| total.saturating_add(*size))
        });
        let blob_bytes_max = limits
            .output_bytes_max
            .max(limits.stdout_bytes_max)
            .max(limits.stderr_bytes_max);
        Ok(blob_bytes_max.min(upload_bytes_total_max(&limits).saturating_sub(uploaded_bytes)))
    }

    /// Records a blob `node_id` uploaded for `attempt_id`, `size_bytes` as measured; its report
    /// may name it from now on.
    pub(crate) fn record_upload(
        &mut self,
        node_id: NodeId,
        attempt_id: AttemptId,
        hash: BlobHash,
        size_bytes: u64,
        now_ms: u64,
        out: &mut Outbox,
    ) -> Result<(), String> {
        let attempt = self.held_attempt(node_id, attempt_id)?;
        let known = self
            .uploads
            .get(&attempt_id)
            .is_some_and(|uploads| uploads.contains_key(&hash));
        if known {
            return Ok(());
        }
        // Checked again after the stream: uploads of one attempt may run side by side.
        if size_bytes > self.upload_room(attempt_id, &attempt)? {
            return Err(format!(
                "attempt {attempt_id} may not upload {size_bytes} more bytes: that passes its \
                 job's caps on stdout, stderr and /output"
            ));
        }
        let event = Event::UploadRecorded {
            attempt: attempt_id,
            hash,
            size_bytes,
            at_ms: now_ms,
        };
        self.record(event, out);
        Ok(())
    }

    /// Takes the reports of attempts a node ended; each is taken or refused on its own, and a
    /// refused one changes nothing.
    pub(crate) fn report(
        &mut self,
        node_id: NodeId,
        reports: Vec<AttemptReport>,
        now_ms: u64,
        entropy: &dyn Entropy,
        out: &mut Outbox,
    ) -> Vec<ReportAck> {
        self.heard(node_id, now_ms, out);
        let mut acks = Vec::with_capacity(reports.len());
        // In id order: jobs that finish are written in the same order in every run.
        let mut finished_jobs = BTreeSet::new();
        // What a family pool's requesters pay for these executions: one event for the batch.
        let mut paid = Vec::new();
        // Only another pool may say which of its nodes ran an attempt.
        let federated = self
            .nodes
            .get(&node_id)
            .is_some_and(|node| self.is_federated(node));
        for mut report in reports {
            if !federated {
                report.ran_on = None;
            }
            let attempt_id = report.attempt_id;
            let sealed_digest = report
                .sealed_digest
                .as_deref()
                .and_then(sealed_digest_bytes);
            let (accepted, message) = match self.checked_end(node_id, report, now_ms) {
                Ok((end, aborted)) => {
                    let job_id = end.job_id;
                    finished_jobs.insert(job_id);
                    self.hold_after_success(node_id, &end, out);
                    paid.extend(self.family_payment(&end));
                    self.end_reported(end, sealed_digest, now_ms, entropy, out);
                    if let Some(aborted) = aborted {
                        self.abort_job(job_id, aborted, now_ms, out);
                    }
                    (true, None)
                }
                Err(message) => (false, Some(message)),
            };
            acks.push(ReportAck {
                attempt_id,
                accepted,
                message,
            });
        }
        self.move_credits(paid, now_ms, out);
        for job_id in finished_jobs {
            self.finish_job_if_done(job_id, now_ms, out);
        }
        acks
    }

    /// The end a report makes of its attempt, once checked, and the job's stop when the
    /// attempt's exit code calls for one: refused unless the node holds the attempt and the
    /// report stays within what it allowed.
    fn checked_end(
        &self,
        node_id: NodeId,
        report: AttemptReport,
        now_ms: u64,
    ) -> Result<(AttemptEnd, Option<Aborted>), String> {
        let attempt = self.held_attempt(node_id, report.attempt_id)?;
        let job = &self.jobs[&attempt.job];
        let limits = job.blob_limits(job.runtime.limits);
        let uploads = self.nameable(node_id, &attempt, &report);
        let memory_bytes_max = job
            .attempt_memory_bytes(attempt.task, u64::MAX)
            .unwrap_or(limits.memory_bytes_max);
        let report = checked_report(
            report,
            &Limits {
                memory_bytes_max,
                ..limits
            },
            &uploads,
            &attempt,
            now_ms,
        )?;
        if job.keys.is_some()
            && job.verify.is_some()
            && verify::is_claim(&report.outcome)
            && report.sealed_digest.is_none()
        {
            return Err(
                "a result of a private job that is checked needs its sealed_digest: replicas \
                 are compared by it"
                    .to_owned(),
            );
        }
        let task = &job.tasks[attempt.task as usize];
        // Another replica running, or an attempt left, may still give the task a result.
        let may_go_on = task.live.len() > 1 || job.attempts_left(attempt.task);
        // In a job that verifies, a result is one voice among several (the checks decide the
        // task's end), and what is not a result says nothing of the task: another node may
        // still run it.
        let verifies = job.verify.is_some();
        let succeeded = job.succeeded(&report.outcome);
        let step = job.failure_step(attempt.task, &report.outcome);
        let aborted = match step {
            Some(Step::Abort { exit_code }) => Some(Aborted {
                task_index: attempt.task,
                exit_code,
            }),
            _ => None,
        };
        let task_end = if verifies && verify::is_claim(&report.outcome) {
            None
        } else if succeeded {
            Some(TaskState::Succeeded)
        } else if step == Some(Step::Retry)
            || ((report.outcome.is_retryable() || report.outcome == Outcome::Cancelled || verifies)
                && may_go_on)
        {
            // Retried by the job's failure policy, or the node's fault with attempts left.
            None
        } else {
            Some(TaskState::Failed)
        };
        let end = attempt_end(report, &attempt, (succeeded, task_end), now_ms);
        Ok((end, aborted))
    }
}

impl PoolState {
    /// Records a reported end: a result of a job that verifies first, so the task keeps
    /// running on it, then the end, then what the task's results call for.
    fn end_reported(
        &mut self,
        end: AttemptEnd,
        sealed_digest: Option<[u8; 32]>,
        now_ms: u64,
        entropy: &dyn Entropy,
        out: &mut Outbox,
    ) {
        if end.task_end.is_some() {
            self.stop_replicas(&end, now_ms, out);
            // Results that waited for a check are never verified now: their payment goes back.
            self.refund(end.job_id, end.task_index, None, now_ms, out);
        }
        let claim = self.claim_of(&end, sealed_digest);
        let attempt = self.attempts[&end.attempt_id];
        let node = attempt.node;
        // A resumed attempt counts the task's fuel in all; its checkpoint covered the rest.
        let fuel = end
            .usage
            .map_or(0, |u| u.fuel_used)
            .saturating_sub(attempt.resumed_fuel);
        let payee = self.payee_of(node);
        if let Some(digest) = claim {
            let makers = self.makers_behind(&attempt);
            let event = Event::ResultClaimed {
                attempt: end.attempt_id,
                digest,
                outcome: end.outcome.clone().expect("results have outcomes"),
                owner: self.witness_of(node),
                trusted: self.is_trusted(node),
                makers,
                fuel,
                payee,
                files: self.jobs[&end.job_id].validator.as_ref().map(|_| {
                    Box::new(super::ResultFiles {
                        stdout: end.stdout,
                        stderr: end.stderr,
                        outputs: end.outputs.clone(),
                    })
                }),
            };
            self.record(event, out);
        }
        let (job_id, index) = (end.job_id, end.task_index);
        self.record(Event::AttemptEnded { end }, out);
        if claim.is_some() {
            let payment = Move {
                from: Account::Requester(self.jobs[&job_id].requester),
                to: Account::Pending(payee),
                fuel,
                memo: Memo::Execution,
                job: Some(job_id),
            };
            self.move_credits(vec![payment], now_ms, out);
            self.judge(job_id, index, now_ms, entropy, out);
        }
    }

    /// What the requester of a job that does not verify pays for an execution that gave a
    /// result: straight to the node's owner.
    fn family_payment(&self, end: &AttemptEnd) -> Option<Move> {
        let job = &self.jobs[&end.job_id];
        let outcome = end.outcome.as_ref()?;
        if job.verify.is_some() || !verify::is_claim(outcome) {
            return None;
        }
        let attempt = &self.attempts[&end.attempt_id];
        // A resumed attempt counts the task's fuel in all; what its checkpoint covered was
        // this attempt's predecessors' work.
        let fuel = end.usage?.fuel_used.saturating_sub(attempt.resumed_fuel);
        Some(Move {
            from: Account::Requester(job.requester),
            to: Account::Owner(self.payee_of(attempt.node)),
            fuel,
            memo: Memo::Execution,
            job: Some(end.job_id),
        })
    }

    /// The task of `end` ends with it: its other replicas stop first (their nodes hear so at
    /// their next heartbeat), so a task never ends while attempts of it run.
    fn stop_replicas(&mut self, end: &AttemptEnd, now_ms: u64, out: &mut Outbox) {
        let others: Vec<AttemptId> = self.jobs[&end.job_id].tasks[end.task_index as usize]
            .live
            .iter()
            .copied()
            .filter(|attempt_id| *attempt_id != end.attempt_id)
            .collect();
        for attempt_id in others {
            let attempt = self.attempts[&attempt_id];
            let state = AttemptEndState::Cancelled;
            let end = super::leases::unreported_end(attempt_id, &attempt, state, None, now_ms);
            self.record(Event::AttemptEnded { end }, out);
        }
    }
}

impl PoolState {
    /// The blobs `report` may name, with their sizes: what its node uploaded for the attempt,
    /// and, when the outputs may stay on a node that serves them (a later stage reads them),
    /// the outputs it did not upload, at the sizes it gives, within the same caps.
    fn nameable(
        &self,
        node_id: NodeId,
        attempt: &Attempt,
        report: &AttemptReport,
    ) -> Cow<'_, HashMap<BlobHash, u64>> {
        let uploads = match self.uploads.get(&report.attempt_id) {
            Some(uploads) => Cow::Borrowed(uploads),
            None => Cow::Owned(HashMap::new()),
        };
        let job = &self.jobs[&attempt.job];
        if !job.succeeded(&report.outcome) || !self.keeps_outputs(attempt.job, node_id) {
            return uploads;
        }
        let mut sizes = uploads.into_owned();
        for file in &report.outputs {
            sizes.entry(file.hash).or_insert(file.size_bytes);
        }
        Cow::Owned(sizes)
    }
}

/// Blobs an attempt may upload: one per output file, plus stdout and stderr.
fn uploads_per_attempt_max(limits: &Limits) -> usize {
    (limits.output_files_max as usize).saturating_add(2)
}

/// Bytes an attempt may upload in all: its stdout, stderr and `/output` caps together.
fn upload_bytes_total_max(limits: &Limits) -> u64 {
    limits
        .output_bytes_max
        .saturating_add(limits.stdout_bytes_max)
        .saturating_add(limits.stderr_bytes_max)
}

/// The report as the pool believes it: every blob one this attempt uploaded, with its measured
/// size, within the job's limits, and its usage within what the attempt allowed.
fn checked_report(
    mut report: AttemptReport,
    limits: &Limits,
    uploads: &HashMap<BlobHash, u64>,
    attempt: &Attempt,
    now_ms: u64,
) -> Result<AttemptReport, String> {
    let measured = |hash: &BlobHash| {
        uploads.get(hash).copied().ok_or_else(|| {
            format!(
                "blob {hash} was not uploaded by this node for attempt {}; upload each output \
                 for the attempt before reporting it",
                report.attempt_id
            )
        })
    };
    let stream_caps = [
        ("stdout", limits.stdout_bytes_max),
        ("stderr", limits.stderr_bytes_max),
    ];
    for ((what, cap), blob) in stream_caps
        .into_iter()
        .zip([report.stdout.as_ref(), report.stderr.as_ref()])
    {
        if let Some(blob) = blob
            && measured(&blob.hash)? > cap
        {
            return Err(format!("{what} is larger than the job's {cap} bytes"));
        }
    }
    if report.outputs.len() > limits.output_files_max as usize {
        return Err(format!(
            "the report names {} output files; the job allows {}",
            report.outputs.len(),
            limits.output_files_max
        ));
    }
    let mut output_bytes: u64 = 0;
    for file in &report.outputs {
        output_bytes = output_bytes.saturating_add(measured(&file.hash)?);
    }
    if output_bytes > limits.output_bytes_max {
        return Err(format!(
            "the outputs come to {output_bytes} bytes; the job allows {}",
            limits.output_bytes_max
        ));
    }
    if report.usage.fuel_used > limits.fuel_max {
        return Err(format!(
            "the report claims {} fuel; the job allows {}",
            report.usage.fuel_used, limits.fuel_max
        ));
    }
    measure_blobs(&mut report, uploads);
    report.usage.output_bytes = output_bytes;
    report.usage.memory_peak_bytes = report.usage.memory_peak_bytes.min(limits.memory_bytes_max);
    // No node spends longer on an attempt than since its grant, compiling or running.
    let since_grant_ms = now_ms.saturating_sub(attempt.granted_at_ms);
    report.usage.wall_ms = report.usage.wall_ms.min(since_grant_ms);
    report.usage.compile_ms = report.usage.compile_ms.min(since_grant_ms);
    Ok(report)
}

/// Replaces the sizes the node claimed with the ones measured on upload.
fn measure_blobs(report: &mut AttemptReport, uploads: &HashMap<BlobHash, u64>) {
    for blob in report.stdout.iter_mut().chain(report.stderr.iter_mut()) {
        blob.size_bytes = uploads[&blob.hash];
    }
    for file in &mut report.outputs {
        file.size_bytes = uploads[&file.hash];
    }
}

/// The end of `attempt` its report makes: whether the attempt succeeded (by its job's exit
/// codes), and the end of its task, if it ends the task.
fn attempt_end(
    report: AttemptReport,
    attempt: &Attempt,
    (succeeded, task_end): (bool, Option<TaskState>),
    now_ms: u64,
) -> AttemptEnd {
    AttemptEnd {
        ran_on: report.ran_on,
        attempt_id: report.attempt_id,
        job_id: attempt.job,
        task_index: attempt.task,
        state: if succeeded {
            AttemptEndState::Succeeded
        } else {
            AttemptEndState::Failed
        },
        at_ms: now_ms,
        task_end: task_end.map(|state| TaskEnd {
            state,
            outcome: report.outcome.clone(),
        }),
        outcome: Some(report.outcome),
        usage: Some(report.usage),
        stdout: report.stdout,
        stderr: report.stderr,
        outputs: report.outputs,
    }
}

/// The 32 bytes of a report's sealed digest; its shape was checked with the request.
fn sealed_digest_bytes(hex_digits: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut bytes).ok()?;
    Some(bytes)
}
