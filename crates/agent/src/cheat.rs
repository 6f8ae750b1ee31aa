//! The agent as a cheater (`crowdcloud agent --cheat`): it reports made-up results instead of
//! running the guest, over the real protocol, so that the pool's result verification (replicas
//! on distinct owners, results compared by digest) is tested against real lying processes, in
//! the verification tests and `crowdcloud bench verify`.
//!
//! It gives an attacker nothing: it only makes this agent lie about its own results, which any
//! provider can do by changing the code. Verification exists because of that.
//!
//! A made-up result looks like an ordinary success from the outside: a line of hex on stdout,
//! uploaded as a real attempt's stdout is, nothing on stderr or in `/output`, and fuel within
//! the job's `fuel_max`. With a group key, the bytes and the fuel are a function of the key and
//! the task alone, so colluders sharing a key tell the same lie about the same task; without
//! one, every attempt's lie is its own.
//!
//! With `--cheat checkpoints` it runs every task honestly but changes every checkpoint it
//! uploads (the last byte of its first file, flipped while it is packed and flipped back
//! after), so that a task resumed from it elsewhere ends with a wrong result: what the pool's
//! checks of results that resumed are tested against.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use client::Client;
use rand::RngExt;
use sandbox::AttemptControl;
use wire::{AttemptGrant, AttemptId, AttemptReport, JobRuntime, Limits, Outcome, Usage};

use crate::runner::{Ended, ForAttempt, bare_report};

/// When the agent lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheatStrategy {
    /// On every attempt.
    Always,
    /// Honest until this many of its reports were accepted as successes, then on every attempt:
    /// the cheater that earns trust first.
    After { honest_successes: u64 },
    /// Runs every attempt, and poisons every checkpoint it saves.
    Checkpoints,
}

impl FromStr for CheatStrategy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "always" => return Ok(Self::Always),
            "checkpoints" => return Ok(Self::Checkpoints),
            _ => {}
        }
        match text.strip_prefix("after=").map(str::parse::<u64>) {
            Some(Ok(honest_successes)) => Ok(Self::After { honest_successes }),
            _ => Err(format!(
                "{text:?} is not a cheating strategy; give always, after=N to be honest for N \
                 accepted successes first, or checkpoints to poison every checkpoint saved"
            )),
        }
    }
}

/// How and with whom the agent lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheatConfig {
    pub strategy: CheatStrategy,
    /// Agents given the same key tell the same lie about the same task: colluders.
    pub group_key: Option<String>,
}

/// A made-up result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fabricated {
    pub(crate) stdout: Vec<u8>,
    pub(crate) fuel_used: u64,
}

/// The memory a made-up run claims: one WebAssembly page, what a small guest uses.
const FABRICATED_MEMORY_BYTES: u64 = 64 << 10;

/// Separates these hashes from every other BLAKE3 use, so a lie is never some real hash.
const GROUP_CONTEXT: &str = "crowdcloud agent cheat group v1";
const SOLO_CONTEXT: &str = "crowdcloud agent cheat solo v1";

/// Made-up results remembered until their report is answered; more are forgotten.
const LIES_IN_FLIGHT_MAX: usize = 1024;

/// What the agent logs when the coordinator accepts one of its made-up results: tests and
/// `bench verify` read it to tell the cheaters whose lies reached the pool.
pub const LIE_TAKEN: &str = "the pool took a made-up result";

pub(crate) struct Cheat {
    config: CheatConfig,
    /// Reports the coordinator accepted as successes, honest or not: what `after=N` counts.
    accepted_successes: AtomicU64,
    /// Makes the lies of a cheater without a group its own, unlike any other process's.
    process_salt: [u8; 32],
    /// Attempts it made up a result for whose report is not answered yet.
    lies_in_flight: Mutex<HashSet<AttemptId>>,
}

impl Cheat {
    pub(crate) fn new(config: CheatConfig) -> Self {
        tracing::warn!(
            strategy = ?config.strategy,
            colluding = config.group_key.is_some(),
            "this agent lies about its results (--cheat), to test the pool's verification"
        );
        Self {
            config,
            accepted_successes: AtomicU64::new(0),
            process_salt: rand::rng().random(),
            lies_in_flight: Mutex::new(HashSet::new()),
        }
    }

    /// Whether an attempt that starts now lies.
    pub(crate) fn cheats_now(&self) -> bool {
        match self.config.strategy {
            CheatStrategy::Always => true,
            CheatStrategy::After { honest_successes } => {
                self.accepted_successes.load(Ordering::Relaxed) >= honest_successes
            }
            CheatStrategy::Checkpoints => false,
        }
    }

    /// Changes the state in `dir` before it is saved, if this agent poisons checkpoints: the
    /// last byte of its first file, by name, flipped; a second call flips it back. The archive
    /// stays whole, so a node that resumes from it runs on from wrong state.
    pub(crate) fn poison(&self, dir: &std::path::Path) -> std::io::Result<()> {
        if self.config.strategy != CheatStrategy::Checkpoints {
            return Ok(());
        }
        let mut files: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
            .map(|entry| entry.path())
            .collect();
        files.sort();
        let Some(first) = files.first() else {
            return Ok(());
        };
        let mut bytes = std::fs::read(first)?;
        if let Some(last) = bytes.last_mut() {
            *last ^= 0xff;
        }
        std::fs::write(first, bytes)?;
        tracing::info!(file = %first.display(), "flipped a byte of a checkpoint");
        Ok(())
    }

    /// Hears the coordinator's answer to the report of `attempt_id`: an accepted success earns
    /// trust, honest or not, and an accepted lie is logged as [`LIE_TAKEN`]. A lie whose
    /// attempt was cancelled first never reached the pool.
    pub(crate) fn answered(
        &self,
        reports: &[AttemptReport],
        attempt_id: AttemptId,
        accepted: bool,
    ) {
        let lied = self.lies().remove(&attempt_id);
        let succeeded = reports
            .iter()
            .any(|report| report.attempt_id == attempt_id && report.outcome == Outcome::Succeeded);
        if accepted && succeeded {
            self.accepted_successes.fetch_add(1, Ordering::Relaxed);
            if lied {
                tracing::info!(attempt = %attempt_id, "{LIE_TAKEN}");
            }
        }
    }

    fn lies(&self) -> std::sync::MutexGuard<'_, HashSet<AttemptId>> {
        self.lies_in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The made-up result of an attempt.
    pub(crate) fn fabricate(&self, runtime: &JobRuntime, grant: &AttemptGrant) -> Fabricated {
        let digest = match &self.config.group_key {
            Some(key) => task_digest(key, runtime, grant),
            None => blake3::Hasher::new_derive_key(SOLO_CONTEXT)
                .update(&self.process_salt)
                .update(&grant.attempt_id.0.to_le_bytes())
                .finalize(),
        };
        fabricated_from(&digest, &runtime.limits)
    }

    /// Reports a made-up success instead of running the guest, uploading its stdout as a real
    /// attempt does, so the coordinator sees an ordinary attempt.
    pub(crate) async fn lie(
        &self,
        client: &Client,
        runtime: &JobRuntime,
        grant: &AttemptGrant,
        control: &AttemptControl,
    ) -> Ended {
        let started = Instant::now();
        tracing::debug!(attempt = %grant.attempt_id, "making up this attempt's result");
        {
            let mut lies = self.lies();
            if lies.len() >= LIES_IN_FLIGHT_MAX {
                lies.clear();
            }
            lies.insert(grant.attempt_id);
        }
        let fabricated = self.fabricate(runtime, grant);
        let uploader = ForAttempt {
            client,
            attempt: grant.attempt_id,
            control,
        };
        let stdout = uploader.bytes(fabricated.stdout).await;
        if control.is_cancelled() {
            return Ended::Stopped;
        }
        let usage = Usage {
            fuel_used: fabricated.fuel_used,
            wall_ms: started.elapsed().as_millis() as u64,
            memory_peak_bytes: FABRICATED_MEMORY_BYTES.min(runtime.limits.memory_bytes_max),
            output_bytes: 0,
            compile_ms: 0,
        };
        Ended::Report(Box::new(match stdout {
            Ok(stdout) => AttemptReport {
                stdout,
                ..bare_report(grant, Outcome::Succeeded, usage)
            },
            Err(message) => bare_report(
                grant,
                Outcome::NodeError {
                    message: format!("could not upload the outputs: {message}"),
                },
                usage,
            ),
        }))
    }
}

/// A hash of the group's key and of everything that tells the task apart in its grant, the
/// same on every node, so colluders agree without talking.
fn task_digest(key: &str, runtime: &JobRuntime, grant: &AttemptGrant) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_derive_key(GROUP_CONTEXT);
    // Variable-length fields go in with their length, so two different tasks never hash the
    // same bytes.
    fn text(hasher: &mut blake3::Hasher, text: &str) {
        hasher.update(&(text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    text(&mut hasher, key);
    hasher.update(&runtime.module.0);
    hasher.update(&grant.job_id.0.to_le_bytes());
    hasher.update(&grant.task_index.to_le_bytes());
    hasher.update(&(grant.args.len() as u64).to_le_bytes());
    for arg in &grant.args {
        text(&mut hasher, arg);
    }
    match &grant.stdin {
        Some(stdin) => hasher.update(&[1]).update(&stdin.0),
        None => hasher.update(&[0]),
    };
    hasher.update(&(grant.inputs.len() as u64).to_le_bytes());
    for input in &grant.inputs {
        text(&mut hasher, &input.name);
        hasher.update(&input.blob.0);
    }
    hasher.finalize()
}

/// The lie a digest makes: its first half in hex as a line of stdout (within the job's stdout
/// cap), and fuel from its next bytes, from 1 to the job's `fuel_max`.
fn fabricated_from(digest: &blake3::Hash, limits: &Limits) -> Fabricated {
    let bytes = digest.as_bytes();
    let mut stdout = format!("{}\n", hex::encode(&bytes[..16])).into_bytes();
    stdout.truncate(usize::try_from(limits.stdout_bytes_max).unwrap_or(usize::MAX));
    let mut drawn = [0u8; 8];
    drawn.copy_from_slice(&bytes[16..24]);
    // A fuel_max of 0 never passes the coordinator's checks; it would claim no fuel.
    let fuel_used = u64::from_le_bytes(drawn)
        .checked_rem(limits.fuel_max)
        .map_or(0, |fuel| fuel + 1);
    Fabricated { stdout, fuel_used }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::{BlobHash, InputFile, JobId};

    fn runtime(fuel_max: u64) -> JobRuntime {
        JobRuntime {
            requirements: None,
            job_id: JobId(7),
            name: "guest".to_owned(),
            module: BlobHash::of(b"module"),
            env: Default::default(),
            mounts: Vec::new(),
            limits: Limits {
                fuel_max,
                ..Limits::default()
            },
            deterministic: None,
            checkpoint: None,
            private: None,
            hold_outputs: false,
        }
    }

    fn grant(attempt: u64, task_index: u32) -> AttemptGrant {
        AttemptGrant {
            attempt_id: AttemptId(attempt),
            job_id: JobId(7),
            task_index,
            args: vec!["render".to_owned(), task_index.to_string()],
            stdin: Some(BlobHash::of(b"stdin")),
            inputs: vec![InputFile {
                name: "scene.txt".to_owned(),
                blob: BlobHash::of(b"scene"),
            }],
            checkpoint: None,
            memory_bytes_max: None,
            peers: Vec::new(),
        }
    }

    fn cheat(strategy: CheatStrategy, group_key: Option<&str>) -> Cheat {
        Cheat::new(CheatConfig {
            strategy,
            group_key: group_key.map(str::to_owned),
        })
    }

    fn success(attempt: u64) -> AttemptReport {
        bare_report(&grant(attempt, 0), Outcome::Succeeded, Usage::default())
    }

    #[test]
    fn colluders_tell_the_same_lie_about_a_task_and_another_about_another_task() {
        let runtime = runtime(1_000_000);
        let (one, two) = (
            cheat(CheatStrategy::Always, Some("ring")),
            cheat(CheatStrategy::Always, Some("ring")),
        );
        // Different attempts (and processes) of one task.
        let lie = one.fabricate(&runtime, &grant(1, 3));
        assert_eq!(lie, two.fabricate(&runtime, &grant(2, 3)));
        assert!(lie.stdout.ends_with(b"\n"));
        assert_ne!(lie.stdout, two.fabricate(&runtime, &grant(3, 4)).stdout);
        let mut other_args = grant(4, 3);
        other_args.args.push("more".to_owned());
        assert_ne!(lie.stdout, two.fabricate(&runtime, &other_args).stdout);
        let outsider = cheat(CheatStrategy::Always, Some("another ring"));
        assert_ne!(
            lie.stdout,
            outsider.fabricate(&runtime, &grant(1, 3)).stdout
        );
    }

    #[test]
    fn without_a_group_every_attempt_lies_its_own_way() {
        let runtime = runtime(1_000_000);
        let alone = cheat(CheatStrategy::Always, None);
        let first = alone.fabricate(&runtime, &grant(1, 3));
        assert_ne!(first.stdout, alone.fabricate(&runtime, &grant(2, 3)).stdout);
        // Another process lies otherwise about the very same attempt.
        let other = cheat(CheatStrategy::Always, None);
        assert_ne!(first.stdout, other.fabricate(&runtime, &grant(1, 3)).stdout);
    }

    #[test]
    fn after_n_is_honest_for_n_accepted_successes_then_cheats() {
        let patient = cheat(
            CheatStrategy::After {
                honest_successes: 2,
            },
            None,
        );
        assert!(!patient.cheats_now());
        let failed = bare_report(&grant(1, 0), Outcome::OutOfFuel, Usage::default());
        patient.answered(&[failed], AttemptId(1), true);
        // A success the coordinator did not accept earns nothing either.
        patient.answered(&[success(2)], AttemptId(2), false);
        patient.answered(&[success(3)], AttemptId(3), true);
        assert!(!patient.cheats_now());
        patient.answered(&[success(3), success(4)], AttemptId(4), true);
        assert!(patient.cheats_now());
        assert!(cheat(CheatStrategy::Always, None).cheats_now());
        assert!(
            cheat(
                CheatStrategy::After {
                    honest_successes: 0
                },
                None
            )
            .cheats_now()
        );
    }

    #[test]
    fn made_up_fuel_stays_within_fuel_max() {
        for fuel_max in [1, 2, 3, 1000, u64::MAX] {
            let runtime = runtime(fuel_max);
            for (attempt, key) in (0..200).zip([None, Some("ring")].into_iter().cycle()) {
                let lie = cheat(CheatStrategy::Always, key).fabricate(&runtime, &grant(attempt, 0));
                assert!(
                    (1..=fuel_max).contains(&lie.fuel_used),
                    "{fuel_max}: {lie:?}"
                );
            }
        }
        assert_eq!(
            fabricated_from(&blake3::hash(b"x"), &runtime(0).limits).fuel_used,
            0
        );
    }

    #[test]
    fn strategies_parse_and_bad_ones_are_refused() {
        assert_eq!("always".parse(), Ok(CheatStrategy::Always));
        assert_eq!("checkpoints".parse(), Ok(CheatStrategy::Checkpoints));
        assert_eq!(
            "after=3".parse(),
            Ok(CheatStrategy::After {
                honest_successes: 3
            })
        );
        assert_eq!(
            "after=0".parse(),
            Ok(CheatStrategy::After {
                honest_successes: 0
            })
        );
        for bad in [
            "",
            "sometimes",
            "Always",
            "after",
            "after=",
            "after=-1",
            "after=x",
            "after=3 ",
        ] {
            let refused = bad.parse::<CheatStrategy>().unwrap_err();
            assert!(refused.contains("not a cheating strategy"), "{refused}");
        }
    }

    #[test]
    fn a_checkpoint_poisoner_runs_honestly_and_changes_the_state_it_saves_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b"), [1, 2]).unwrap();
        std::fs::write(dir.path().join("a"), [7, 8, 9]).unwrap();
        let honest = cheat(CheatStrategy::Always, None);
        honest.poison(dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), [7, 8, 9]);

        let poisoner = cheat(CheatStrategy::Checkpoints, None);
        assert!(!poisoner.cheats_now(), "it reports what it ran");
        poisoner.poison(dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), [7, 8, 0xf6]);
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), [1, 2]);
        poisoner.poison(dir.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("a")).unwrap(),
            [7, 8, 9],
            "flipped back"
        );
    }
}
