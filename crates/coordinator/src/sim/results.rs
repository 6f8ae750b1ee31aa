//! What a task of a public seed's job leaves. Its jobs run in deterministic mode, where a task
//! gives the same result on every honest node, so a simulated agent derives the result from
//! the job and the task alone ([`honest`]); a cheater reports another one ([`lie`]), the same
//! for both members of a ring. The shadow knows every task's honest result from the same
//! function, and so can tell a delivered lie.

use wire::{BlobHash, BlobRef, JobId, Outcome, OutputFile};

/// The largest blob a result names: well within the simulated jobs' caps.
const BLOB_BYTES_MAX: u64 = 1_024;

/// The most fuel an honest result uses; a lie adds a little, staying within the jobs' limit.
const FUEL_MAX: u64 = 500_000;

/// A task's result, as a report carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TaskResult {
    pub(super) outcome: Outcome,
    pub(super) stdout: Option<BlobRef>,
    pub(super) outputs: Vec<OutputFile>,
    pub(super) fuel: u64,
}

impl TaskResult {
    /// The digest the pool compares results by.
    pub(super) fn digest(&self) -> verify::Digest {
        verify::digest_of(
            &self.outcome,
            self.stdout.as_ref(),
            None,
            &self.outputs,
            self.fuel,
        )
    }

    /// Every blob it names, with its size.
    pub(super) fn blobs(&self) -> impl Iterator<Item = (BlobHash, u64)> + '_ {
        let stdout = self.stdout.iter().map(|b| (b.hash, b.size_bytes));
        stdout.chain(self.outputs.iter().map(|f| (f.hash, f.size_bytes)))
    }
}

/// A stream of numbers drawn from one seed (SplitMix64).
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number from 1 to `max`.
    fn up_to(&mut self, max: u64) -> u64 {
        1 + self.next() % max
    }

    fn blob(&mut self) -> (BlobHash, u64) {
        let mut bytes = [0u8; 32];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        (BlobHash(bytes), self.up_to(BLOB_BYTES_MAX))
    }
}

/// What task `task` of `job` gives on any honest node: mostly a success, now and then an exit
/// code or a trap (a deterministic failure is a result too), with its stdout, output files
/// and fuel.
pub(super) fn honest(job: JobId, task: u32) -> TaskResult {
    let mut draws = Draws(job.0 ^ u64::from(task).rotate_left(40));
    let outcome = match draws.next() % 100 {
        0..85 => Outcome::Succeeded,
        85..95 => Outcome::ExitCode {
            code: draws.up_to(3) as i32,
        },
        _ => Outcome::Trap {
            message: "unreachable".to_owned(),
        },
    };
    let stdout = draws.next().is_multiple_of(2).then(|| {
        let (hash, size_bytes) = draws.blob();
        BlobRef { hash, size_bytes }
    });
    let outputs = (0..draws.next() % 3)
        .map(|index| {
            let (hash, size_bytes) = draws.blob();
            OutputFile {
                path: format!("out-{index}"),
                hash,
                size_bytes,
            }
        })
        .collect();
    TaskResult {
        outcome,
        stdout,
        outputs,
        fuel: draws.up_to(FUEL_MAX),
    }
}

/// A cheater's result for the task: the honest one with other fuel, so it names the same
/// blobs. Cheaters of one `salt` tell the same lie; no lie is the honest result.
pub(super) fn lie(job: JobId, task: u32, salt: u64) -> TaskResult {
    let mut result = honest(job, task);
    result.fuel += 1 + salt;
    result
}
