//! A task's key: the hash of everything its result depends on, so a task whose key already has
//! a good result need not run again ("resume for free").
//!
//! The key covers the module, the env, the mounts, the task's args, stdin and inputs (by
//! content hash, so a renamed copy of the same bytes keeps the key and one changed byte
//! changes it), what makes a deterministic run reproducible (the seed with the task index, as
//! the sandbox combines them), and what decides that a run succeeded and how far it is trusted
//! (the exit codes that mean success, the verification mode, the validator). Limits and
//! checkpoints are not in it: they decide whether a run finishes, not what a finished run
//! gives. Each part is hashed on its own ([`KeyParts`]), so a task that ran again can say which
//! part was new.
//!
//! The encoding is this module's own, versioned by [`KEY_VERSION`]: a change to it changes
//! every key, and results from before it are simply not found.

use serde::Serialize;

use crate::ids::BlobHash;
use crate::job::{JobSubmission, TaskSpec};

/// Raised whenever what goes into a key, or how, changes.
pub const KEY_VERSION: u32 = 1;

/// The hash of each part of a task's key, and the key, which hashes them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyParts {
    pub module: BlobHash,
    pub env: BlobHash,
    pub mounts: BlobHash,
    pub args: BlobHash,
    pub stdin: BlobHash,
    pub inputs: BlobHash,
    /// Determinism, success codes, verification and validator.
    pub rules: BlobHash,
}

impl KeyParts {
    pub fn of(job: &JobSubmission, index: u32, task: &TaskSpec) -> KeyParts {
        JobKey::of(job).parts(index, task)
    }

    /// The key: every part, under the version.
    pub fn key(&self) -> BlobHash {
        let parts = [
            self.module,
            self.env,
            self.mounts,
            self.args,
            self.stdin,
            self.inputs,
            self.rules,
        ];
        hash_of(&(KEY_VERSION, parts))
    }

    /// The parts that differ from `other`'s, by name.
    pub fn changed_from(&self, other: &KeyParts) -> Vec<&'static str> {
        let pairs = [
            ("module", self.module, other.module),
            ("env", self.env, other.env),
            ("mounts", self.mounts, other.mounts),
            ("args", self.args, other.args),
            ("stdin", self.stdin, other.stdin),
            ("inputs", self.inputs, other.inputs),
            ("rules", self.rules, other.rules),
        ];
        let changed = pairs.into_iter().filter(|(_, mine, theirs)| mine != theirs);
        changed.map(|(name, _, _)| name).collect()
    }
}

/// The key of task `index` of `job`. For many tasks of one job, make a [`JobKey`] once.
pub fn task_key(job: &JobSubmission, index: u32, task: &TaskSpec) -> BlobHash {
    KeyParts::of(job, index, task).key()
}

/// The parts of a key every task of a job shares, hashed once: a job's mounts may name
/// 100,000 files, and its tasks number up to a million.
#[derive(Debug, Clone)]
pub struct JobKey<'a> {
    job: &'a JobSubmission,
    module: BlobHash,
    env: BlobHash,
    mounts: BlobHash,
}

impl<'a> JobKey<'a> {
    pub fn of(job: &'a JobSubmission) -> JobKey<'a> {
        JobKey {
            job,
            module: hash_of(&job.module),
            env: hash_of(&job.env),
            mounts: hash_of(&job.mounts),
        }
    }

    /// The parts of the key of task `index`.
    pub fn parts(&self, index: u32, task: &TaskSpec) -> KeyParts {
        let job = self.job;
        let deterministic = job.deterministic.map(|d| (d.seed, index));
        let validator = job.validator.as_ref().map(|v| (v.module, &v.args));
        KeyParts {
            module: self.module,
            env: self.env,
            mounts: self.mounts,
            args: hash_of(&task.args),
            stdin: hash_of(&task.stdin),
            inputs: hash_of(&task.inputs),
            rules: hash_of(&(
                deterministic,
                &job.success_exit_codes,
                &job.verify,
                validator,
            )),
        }
    }

    /// The key of task `index`.
    pub fn key(&self, index: u32, task: &TaskSpec) -> BlobHash {
        self.parts(index, task).key()
    }
}

fn hash_of(value: &impl Serialize) -> BlobHash {
    let bytes = serde_json::to_vec(value).expect("key parts serialize: plain data");
    BlobHash::of(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::InputFile;

    fn job() -> JobSubmission {
        JobSubmission::new("j", BlobHash::of(b"module"), vec![])
    }

    fn task(input: &[u8]) -> TaskSpec {
        TaskSpec {
            args: vec!["map".to_owned()],
            stdin: None,
            inputs: vec![InputFile {
                name: "book.txt".to_owned(),
                blob: BlobHash::of(input),
            }],
        }
    }

    #[test]
    fn the_same_work_has_the_same_key_and_any_change_is_named() {
        let (job, task) = (job(), task(b"text"));
        assert_eq!(task_key(&job, 0, &task), task_key(&job, 0, &task));
        assert_eq!(
            task_key(&job, 0, &task),
            task_key(&job, 9, &task),
            "a plain task's index is not part of its work"
        );
        let changed = task_key(&job, 0, &self::task(b"other text"));
        assert_ne!(task_key(&job, 0, &task), changed);
        let parts = KeyParts::of(&job, 0, &self::task(b"other text"));
        assert_eq!(
            parts.changed_from(&KeyParts::of(&job, 0, &task)),
            ["inputs"]
        );
    }

    #[test]
    fn a_deterministic_task_is_keyed_by_its_seed_and_index_and_limits_are_not_in_it() {
        let mut deterministic = job();
        deterministic.deterministic = Some(crate::Deterministic { seed: 1 });
        let task = task(b"text");
        assert_ne!(
            task_key(&deterministic, 0, &task),
            task_key(&deterministic, 1, &task)
        );
        assert_ne!(
            task_key(&deterministic, 0, &task),
            task_key(&job(), 0, &task)
        );
        let mut limited = job();
        limited.limits.fuel_max /= 2;
        assert_eq!(task_key(&limited, 0, &task), task_key(&job(), 0, &task));
        let mut verified = job();
        verified.verify = Some(crate::VerifyMode::Replicate);
        let parts = KeyParts::of(&verified, 0, &task);
        assert_eq!(
            parts.changed_from(&KeyParts::of(&job(), 0, &task)),
            ["rules"]
        );
    }
}
