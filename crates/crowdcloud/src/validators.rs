//! Jobs' validators, run for the coordinator in the sandbox: the `coordinator::ValidatorRunner`
//! this binary hands it. A validator is the requester's code running on the owner's machine,
//! so it gets the sandbox and limits a task gets on a node, nothing more: the two results
//! mounted read-only, no env, no network, a fresh `Store` per comparison.

use std::sync::Arc;

use coordinator::{ValidatorRun, ValidatorRunner, Verdict};
use sandbox::{Attempt, AttemptControl, AttemptLimits, Determinism, Outcome, Sandbox};

/// Validators whose compiled code is kept: jobs running at once seldom need more.
const COMPILED_VALIDATORS_MAX: usize = 8;
/// What a validator may leave in `/output` and `/scratch`; it is thrown away.
const SCRATCH_BYTES_MAX: u64 = 16 * wire::limits::MIB;

/// One engine for every validator the coordinator runs.
pub(crate) struct SandboxValidators {
    sandbox: Sandbox,
}

impl SandboxValidators {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let config = sandbox::SandboxConfig {
            compiled_modules_max: COMPILED_VALIDATORS_MAX,
            ..sandbox::SandboxConfig::default()
        };
        Ok(Self {
            sandbox: Sandbox::new(config)?,
        })
    }
}

impl ValidatorRunner for SandboxValidators {
    fn compare(&self, run: ValidatorRun<'_>) -> Verdict {
        let prepared = match self.sandbox.prepare(run.module_hash.0, run.module, false) {
            Ok(prepared) => prepared,
            Err(why) => return Verdict::Failed(format!("its module {why}")),
        };
        let Some(work_dir) = run.first.parent().map(|dir| dir.join("run")) else {
            return Verdict::Failed("the results were laid out at the root".to_owned());
        };
        let limits = run.limits;
        let attempt = Attempt {
            work_dir,
            program_name: "validator".to_owned(),
            args: run.args.to_vec(),
            env: Vec::new(),
            stdin: Vec::new(),
            inputs: Vec::new(),
            mounts: vec![
                ("/a".to_owned(), run.first.to_path_buf()),
                ("/b".to_owned(), run.second.to_path_buf()),
            ],
            limits: AttemptLimits {
                memory_bytes_max: limits.memory_bytes_max,
                fuel_max: limits.fuel_max,
                deadline: limits.deadline,
                output_bytes_max: SCRATCH_BYTES_MAX,
                output_files_max: 64,
                stdout_bytes_max: limits.print_bytes_max,
                stderr_bytes_max: limits.print_bytes_max,
            },
            determinism: Determinism::Off,
            control: Arc::new(AttemptControl::new()),
            checkpoint: None,
        };
        let report = self.sandbox.run(&prepared, attempt);
        verdict_of(&report.outcome, &report.stdout)
    }
}

/// What a validator's end means: exit 0 equivalent, exit 1 different, anything else no
/// answer.
fn verdict_of(outcome: &Outcome, stdout: &[u8]) -> Verdict {
    match outcome {
        Outcome::Succeeded => Verdict::Equivalent,
        Outcome::ExitCode(1) => {
            let said = String::from_utf8_lossy(stdout);
            tracing::debug!(said = %said.lines().next().unwrap_or(""), "a validator found two results different");
            Verdict::Different
        }
        Outcome::ExitCode(code) => Verdict::Failed(format!(
            "it exited with {code}, and a validator exits 0 (equivalent) or 1 (different)"
        )),
        Outcome::Trap(message) => Verdict::Failed(format!("it trapped: {message}")),
        Outcome::OutOfFuel => Verdict::Failed("it ran out of fuel".to_owned()),
        Outcome::DeadlineExceeded => Verdict::Failed("it ran out of time".to_owned()),
        Outcome::MemoryLimit => Verdict::Failed("it reached its memory limit".to_owned()),
        Outcome::OutputTooLarge(what) => Verdict::Failed(format!("it wrote too much to {what}")),
        Outcome::InvalidOutput(why) => Verdict::Failed(format!("it left bad output: {why}")),
        Outcome::ModuleRejected(why) => Verdict::Failed(format!("its module was refused: {why}")),
        Outcome::Cancelled => Verdict::Failed("it was stopped".to_owned()),
        Outcome::SetupFailed(why) => Verdict::Failed(format!("it could not be set up: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A result laid out as the coordinator lays it out, printing `stdout`.
    fn result(dir: &Path, stdout: &str) {
        std::fs::create_dir_all(dir.join("output")).unwrap();
        std::fs::write(dir.join("outcome"), "succeeded\n").unwrap();
        std::fs::write(dir.join("stdout"), stdout).unwrap();
        std::fs::write(dir.join("stderr"), "").unwrap();
    }

    fn run_on(module: &[u8], args: &[&str], second: &str, fuel_max: u64) -> Verdict {
        let dir = tempfile::tempdir().unwrap();
        let (first_dir, second_dir) = (dir.path().join("a"), dir.path().join("b"));
        result(&first_dir, "pi 3.1415\n");
        result(&second_dir, second);
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        let module = bytes::Bytes::copy_from_slice(module);
        SandboxValidators::new().unwrap().compare(ValidatorRun {
            module_hash: wire::BlobHash::of(&module),
            module: &module,
            args: &args,
            first: &first_dir,
            second: &second_dir,
            limits: coordinator::ValidatorLimits {
                fuel_max,
                ..coordinator::VALIDATOR_LIMITS
            },
        })
    }

    #[test]
    fn the_example_validator_sees_both_results_mounted() {
        let fuel = coordinator::VALIDATOR_LIMITS.fuel_max;
        let args = ["--absolute", "0.01"];
        assert_eq!(
            run_on(guests::COMPARE, &args, "pi 3.1402\n", fuel),
            Verdict::Equivalent
        );
        assert_eq!(
            run_on(guests::COMPARE, &args, "pi 3.2\n", fuel),
            Verdict::Different
        );
    }

    #[test]
    fn a_validator_that_runs_out_of_fuel_or_traps_gives_no_answer() {
        let spin = wat::parse_str(guests::SPIN_WAT).unwrap();
        let verdict = run_on(&spin, &[], "pi 3.1415\n", 1_000_000);
        assert!(
            matches!(&verdict, Verdict::Failed(why) if why.contains("fuel")),
            "{verdict:?}"
        );
        let verdict = run_on(guests::PROBE, &["panic"], "pi 3.1415\n", 1_000_000_000);
        assert!(
            matches!(&verdict, Verdict::Failed(why) if why.contains("trapped")),
            "{verdict:?}"
        );
    }

    #[test]
    fn only_exit_zero_and_one_are_answers() {
        assert_eq!(verdict_of(&Outcome::Succeeded, b""), Verdict::Equivalent);
        assert_eq!(verdict_of(&Outcome::ExitCode(1), b"x"), Verdict::Different);
        for outcome in [
            Outcome::ExitCode(2),
            Outcome::Trap("unreachable".to_owned()),
            Outcome::OutOfFuel,
            Outcome::DeadlineExceeded,
            Outcome::MemoryLimit,
        ] {
            assert!(
                matches!(verdict_of(&outcome, b""), Verdict::Failed(_)),
                "{outcome:?}"
            );
        }
    }
}
