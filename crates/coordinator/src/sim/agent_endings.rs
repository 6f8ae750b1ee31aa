//! How a simulated agent ends an attempt: what the attempt left (an outcome, usage, stdout and
//! output files, now and then a claim the pool must refuse), its uploads, then its report,
//! batched with the others ready, and sent again until answered or retried too long. In a
//! public pool what a task leaves is its result (`results`): the honest one, or a cheater's
//! lie.

use std::collections::BTreeMap;

use wire::{AttemptId, AttemptReport, BlobHash, BlobRef, Limits, Outcome, OutputFile, Usage};

use super::agent::{CALL_TIMEOUT_MS, Call, Ending, Run};
use super::net::Request;
use super::results;
use super::setup::Cheat;
use super::world::World;

/// How long the real agent goes on retrying a report.
const REPORT_RETRY_MS: u64 = 120_000;

impl World {
    /// An attempt's run is over: it uploads what it left, then reports.
    pub(super) fn attempt_ended(&mut self, agent: usize, attempt: AttemptId) {
        let Some(run) = self.agents[agent].running.remove(&attempt) else {
            return;
        };
        let limits = self.agents[agent]
            .runtimes
            .get(&run.job)
            .copied()
            .unwrap_or_default();
        let ending = if self.setup.public.is_some() {
            self.turn_if_due(agent);
            self.public_ending(agent, attempt, &run, &limits)
        } else {
            self.ending_of(attempt, &run, &limits)
        };
        self.agents[agent].ending.insert(attempt, ending);
        self.send_ending(agent, attempt);
        self.try_lease(agent);
    }

    /// The usage a simulated agent reports: what it claims of wall time and memory is rolled;
    /// the pool bounds both.
    fn usage(&mut self, fuel_used: u64) -> Usage {
        Usage {
            fuel_used,
            wall_ms: self.dice.between(0, 10_000),
            memory_peak_bytes: self.dice.between(0, 1 << 20),
            output_bytes: 0,
            compile_ms: 0,
        }
    }

    /// What an attempt ends with: mostly success, sometimes a failure of the guest or the node,
    /// and now and then a report the pool must refuse (too much fuel, a blob never uploaded).
    fn ending_of(&mut self, attempt: AttemptId, run: &Run, limits: &Limits) -> Ending {
        let roll = self.dice.below(100);
        let outcome = match roll {
            _ if run.past_deadline => Outcome::DeadlineExceeded,
            0..80 => Outcome::Succeeded,
            80..88 => Outcome::ExitCode { code: 1 },
            88..96 => Outcome::NodeError {
                message: "the disk is full".to_owned(),
            },
            _ => Outcome::Trap {
                message: "unreachable".to_owned(),
            },
        };
        let mut uploads = BTreeMap::new();
        let mut blob = |dice: &mut super::dice::Dice, size_max: u64| {
            let hash = blob_hash(dice);
            let size = dice.between(1, size_max.max(1));
            uploads.insert(hash, size);
            (hash, size)
        };
        let stdout = self.dice.chance(0.5).then(|| {
            let (hash, size_bytes) = blob(&mut self.dice, limits.stdout_bytes_max);
            BlobRef { hash, size_bytes }
        });
        let files = self
            .dice
            .between(0, u64::from(limits.output_files_max.min(2)));
        let per_file = limits.output_bytes_max / 2;
        let outputs = (0..files)
            .map(|index| {
                let (hash, size_bytes) = blob(&mut self.dice, per_file);
                OutputFile {
                    path: format!("out-{index}"),
                    hash,
                    size_bytes,
                }
            })
            .collect();
        let fuel_used = if self.dice.chance(0.02) {
            limits.fuel_max + 1
        } else {
            self.dice.between(0, limits.fuel_max)
        };
        if self.dice.chance(0.02) {
            // A blob it names but never uploads: the pool must refuse the report.
            uploads.pop_first();
        }
        let report = AttemptReport {
            ran_on: None,
            attempt_id: attempt,
            outcome,
            usage: self.usage(fuel_used),
            stdout,
            stderr: None,
            outputs,
            sealed_digest: None,
        };
        Ending {
            report,
            uploads,
            in_flight: false,
            since_ms: self.now_ms(),
            lie: false,
        }
    }

    /// A cheater `After` enough accepted reports starts lying, once no report of its is on
    /// its way: every result it reports from then on is a lie, and reaches the pool after its
    /// honest ones.
    fn turn_if_due(&mut self, agent: usize) {
        let state = &mut self.agents[agent];
        let Some(Cheat::After(results)) = state.cheat else {
            return;
        };
        let reporting = state
            .calls
            .values()
            .any(|call| matches!(call, Call::Report(..) | Call::Upload(..)));
        if state.lying || state.accepted < results || reporting || !state.ending.is_empty() {
            return;
        }
        state.lying = true;
        self.stats.cheaters_turned += 1;
        self.trace
            .record(self.now_ms(), || format!("agent {agent} starts lying"));
    }

    /// What an attempt of a public pool's job ends with: mostly the task's result (the honest
    /// one, or the agent's lie), else the node's own failure, which is no result; now and then
    /// a report the pool must refuse.
    fn public_ending(
        &mut self,
        agent: usize,
        attempt: AttemptId,
        run: &Run,
        limits: &Limits,
    ) -> Ending {
        let state = &self.agents[agent];
        let salt = match state.cheat {
            Some(Cheat::Ring) => 0,
            _ => 1 + agent as u64,
        };
        let lying = state.lying || (state.cheat == Some(Cheat::Sometimes) && self.dice.chance(0.1));
        let result = (!run.past_deadline && self.dice.below(100) < 88).then(|| {
            if lying {
                results::lie(run.job, run.task, salt)
            } else {
                results::honest(run.job, run.task)
            }
        });
        let mut uploads: BTreeMap<BlobHash, u64> = result.iter().flat_map(|r| r.blobs()).collect();
        if self.dice.chance(0.02) {
            // A blob it names but never uploads: the pool must refuse the report.
            uploads.pop_first();
        }
        let outcome = match &result {
            Some(result) => result.outcome.clone(),
            None if run.past_deadline => Outcome::DeadlineExceeded,
            None => Outcome::NodeError {
                message: "the disk is full".to_owned(),
            },
        };
        let fuel_used = if self.dice.chance(0.02) {
            limits.fuel_max + 1
        } else {
            result.as_ref().map_or(0, |r| r.fuel)
        };
        let report = AttemptReport {
            ran_on: None,
            attempt_id: attempt,
            outcome,
            usage: self.usage(fuel_used),
            stdout: result.as_ref().and_then(|r| r.stdout),
            stderr: None,
            outputs: result
                .as_ref()
                .map(|r| r.outputs.clone())
                .unwrap_or_default(),
            sealed_digest: None,
        };
        Ending {
            report,
            uploads,
            in_flight: false,
            since_ms: self.now_ms(),
            lie: lying && result.is_some(),
        }
    }

    /// Sends what an ended attempt needs next: its uploads, else its report (with any other
    /// reports ready, in one request).
    pub(super) fn send_ending(&mut self, agent: usize, attempt: AttemptId) {
        let state = &mut self.agents[agent];
        let (Some(token), Some(ending)) = (state.token.clone(), state.ending.get_mut(&attempt))
        else {
            return;
        };
        if ending.in_flight {
            return;
        }
        ending.in_flight = true;
        if !ending.uploads.is_empty() {
            let uploads: Vec<(BlobHash, u64)> =
                ending.uploads.iter().map(|(h, s)| (*h, *s)).collect();
            for (hash, size_bytes) in uploads {
                let request = Request::Upload {
                    token: token.clone(),
                    attempt,
                    hash,
                    size_bytes,
                };
                self.agent_call(agent, Call::Upload(attempt, hash), request, CALL_TIMEOUT_MS);
            }
            return;
        }
        let ready: Vec<AttemptId> = state
            .ending
            .iter()
            .filter(|(id, e)| **id == attempt || (!e.in_flight && e.uploads.is_empty()))
            .map(|(id, _)| *id)
            .collect();
        let mut reports = Vec::new();
        for id in &ready {
            let ending = state.ending.get_mut(id).expect("listed above");
            ending.in_flight = true;
            reports.push(ending.report.clone());
        }
        if self.dice.chance(0.02) {
            // A careless agent names an attempt twice in one request: it ends once.
            reports.push(reports[0].clone());
        }
        // As the agent does, a report asks for the node's free slots when no lease request
        // does already; now and then it does not, as an agent of an older version.
        let now_ms = self.now_ms();
        let state = &self.agents[agent];
        let stopped = now_ms < state.paused_until || state.draining_until.is_some();
        let slots_free = match state.leasing || stopped || self.dice.chance(0.2) {
            true => 0,
            false => state.slots_free(),
        };
        let asked = slots_free > 0;
        self.agents[agent].leasing |= asked;
        let request = Request::Report {
            token,
            reports,
            slots_free,
        };
        self.agent_call(agent, Call::Report(ready, asked), request, CALL_TIMEOUT_MS);
    }

    /// Sends again the uploads and reports that went unanswered; drops those retried too long.
    pub(super) fn resend(&mut self, agent: usize) {
        let now_ms = self.now_ms();
        let state = &mut self.agents[agent];
        state
            .ending
            .retain(|_, ending| now_ms.saturating_sub(ending.since_ms) < REPORT_RETRY_MS);
        let waiting: Vec<AttemptId> = state
            .ending
            .iter()
            .filter(|(_, ending)| !ending.in_flight)
            .map(|(id, _)| *id)
            .collect();
        for attempt in waiting {
            self.send_ending(agent, attempt);
        }
    }
}

pub(super) fn blob_hash(dice: &mut super::dice::Dice) -> BlobHash {
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&dice.bits().to_le_bytes());
    }
    BlobHash(bytes)
}
