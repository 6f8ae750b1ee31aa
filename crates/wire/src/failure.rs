//! What a task whose program fails does next: run again (with more memory, if it ran out), fail
//! for good, or stop its whole job. HTCondor DAGMan's `RETRY … UNLESS-EXIT` and `ABORT-DAG-ON`
//! are the model.
//!
//! A node that vanishes or fails on its own (`node_error`) is not the program's failure: the job's
//! `max_attempts` covers those, as before. The policy here covers the program's own failures,
//! which would end the same way on any node unless something changes: a flaky input it reads, a
//! deadline a slow node missed, or memory it ran out of.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Outcome;
use crate::limits::ceiling;

/// Further attempts a job may give one task after its program failed.
pub const RETRIES_MAX: u32 = 10;
/// Exit codes one list of [`OnFailure`] may name.
pub const EXIT_CODES_MAX: usize = 32;
/// The largest factor memory may grow by from one attempt to the next.
pub const MEMORY_ESCALATE_MAX: u32 = 16;

/// How a job's tasks meet their program's failures. Absent: a failed task fails at once.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnFailure {
    /// Attempts a task gets after its program failed (an exit code that is no success, a
    /// trap, running out of fuel, memory, output or time), at most [`RETRIES_MAX`]. They come
    /// on top of `max_attempts`, which covers vanished nodes.
    #[serde(default)]
    #[schema(maximum = 10)]
    pub retries: u32,
    /// Exit codes that fail the task at once, whatever retries are left: the program says
    /// that running it again is no use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 32)]
    pub unless_exit: Vec<i32>,
    /// Exit codes that stop the whole job: the task fails, every task not yet ended is
    /// cancelled, and the job fails. In a pipeline, the whole pipeline stops.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(max_items = 32)]
    pub abort_on: Vec<i32>,
    /// After an attempt ran out of memory, the next one gets this many times the memory of
    /// the last, up to 4 GiB and to the memory its node lends. 0 or 1: the same memory.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schema(maximum = 16)]
    pub memory_escalate: u32,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// What a task does after its program failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// It runs again.
    Retry,
    /// It fails for good.
    Fail,
    /// It fails, and its job stops.
    Abort { exit_code: i32 },
}

impl OnFailure {
    /// What a task does after an attempt ended with `outcome`, a failure of its program (see
    /// [`is_program_failure`]), when `failures` earlier failures were retried.
    pub fn step(&self, outcome: &Outcome, failures: u32) -> Step {
        let code = match outcome {
            Outcome::ExitCode { code } => Some(*code),
            _ => None,
        };
        match code {
            Some(code) if self.abort_on.contains(&code) => Step::Abort { exit_code: code },
            Some(code) if self.unless_exit.contains(&code) => Step::Fail,
            _ if failures < self.retries => Step::Retry,
            _ => Step::Fail,
        }
    }

    /// The memory the next attempt of a task gets when `memory_failures` earlier attempts ran
    /// out of memory under `memory_bytes_max`: multiplied once per such failure, up to the
    /// ceiling of any job.
    pub fn memory_bytes(&self, memory_bytes_max: u64, memory_failures: u32) -> u64 {
        let factor = u64::from(self.memory_escalate.max(1));
        let mut memory = memory_bytes_max;
        for _ in 0..memory_failures {
            memory = memory.saturating_mul(factor);
            if memory >= ceiling::MEMORY_BYTES_MAX {
                return ceiling::MEMORY_BYTES_MAX.max(memory_bytes_max);
            }
        }
        memory
    }
}

/// Whether an attempt that ended with `outcome` failed by its program, not by its node: what
/// [`OnFailure`] decides about. A success, a node's own error, a rejected module, a
/// cancellation and a lost attempt are not.
pub fn is_program_failure(outcome: &Outcome, success_exit_codes: &[i32]) -> bool {
    match outcome {
        Outcome::ExitCode { code } => !success_exit_codes.contains(code),
        Outcome::Trap { .. }
        | Outcome::OutOfFuel
        | Outcome::MemoryLimit
        | Outcome::DeadlineExceeded
        | Outcome::OutputTooLarge { .. }
        | Outcome::InvalidOutput { .. } => true,
        Outcome::Succeeded
        | Outcome::ModuleRejected { .. }
        | Outcome::NodeError { .. }
        | Outcome::NoKey
        | Outcome::SealBroken { .. }
        | Outcome::Cancelled
        | Outcome::Lost { .. }
        | Outcome::Inconclusive { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MIB;

    fn exit(code: i32) -> Outcome {
        Outcome::ExitCode { code }
    }

    #[test]
    fn a_failure_is_retried_until_retries_run_out_unless_its_code_says_otherwise() {
        let policy = OnFailure {
            retries: 2,
            unless_exit: vec![2],
            abort_on: vec![42],
            memory_escalate: 0,
        };
        assert_eq!(policy.step(&exit(1), 0), Step::Retry);
        assert_eq!(policy.step(&Outcome::OutOfFuel, 1), Step::Retry);
        assert_eq!(
            policy.step(&exit(1), 2),
            Step::Fail,
            "two retries were made"
        );
        assert_eq!(policy.step(&exit(2), 0), Step::Fail, "unless_exit");
        assert_eq!(
            policy.step(&exit(42), 0),
            Step::Abort { exit_code: 42 },
            "abort_on wins over retries left"
        );
        assert_eq!(OnFailure::default().step(&exit(1), 0), Step::Fail);
    }

    #[test]
    fn memory_grows_by_its_factor_per_memory_failure_up_to_the_ceiling() {
        let policy = OnFailure {
            retries: 5,
            memory_escalate: 4,
            ..OnFailure::default()
        };
        assert_eq!(policy.memory_bytes(256 * MIB, 0), 256 * MIB);
        assert_eq!(policy.memory_bytes(256 * MIB, 1), 1024 * MIB);
        assert_eq!(policy.memory_bytes(256 * MIB, 2), ceiling::MEMORY_BYTES_MAX);
        assert_eq!(policy.memory_bytes(256 * MIB, 9), ceiling::MEMORY_BYTES_MAX);
        let same = OnFailure::default();
        assert_eq!(same.memory_bytes(256 * MIB, 3), 256 * MIB);
    }

    #[test]
    fn only_the_programs_own_failures_are_its_failures() {
        assert!(is_program_failure(&exit(1), &[]));
        assert!(!is_program_failure(&exit(10), &[10]), "a success code");
        assert!(is_program_failure(&Outcome::MemoryLimit, &[]));
        assert!(is_program_failure(&Outcome::DeadlineExceeded, &[]));
        assert!(!is_program_failure(&Outcome::Succeeded, &[]));
        let node = Outcome::NodeError {
            message: "disk full".into(),
        };
        assert!(!is_program_failure(&node, &[]));
        assert!(!is_program_failure(&Outcome::Cancelled, &[]));
    }
}
