//! Running jobs' validators beside the pool: the seam to whatever runs WebAssembly, and the
//! loop that takes each comparison the pool waits for, lays the two results out as files, runs
//! the validator and gives its verdict back.
//!
//! The coordinator does not run WebAssembly itself (only `sandbox` depends on wasmtime): the
//! binary hands it a [`ValidatorRunner`]. A coordinator without one refuses jobs that name a
//! validator. Comparisons run one at a time, so a requester's validator takes at most one core
//! of the coordinator's machine, within [`VALIDATOR_LIMITS`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wire::{BlobHash, BlobRef};

use crate::pool::{Compare, ComparedResult, Comparison, Verdict};
use crate::service::Shared;

/// What one run of a validator may use: it runs on the owner's machine, beside the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidatorLimits {
    pub fuel_max: u64,
    pub memory_bytes_max: u64,
    pub deadline: Duration,
    /// What it may print, on each of stdout and stderr; its verdict is its exit code.
    pub print_bytes_max: u64,
}

/// A few seconds of work on one core, far more than comparing two results takes.
pub const VALIDATOR_LIMITS: ValidatorLimits = ValidatorLimits {
    fuel_max: 20_000_000_000,
    memory_bytes_max: 256 * wire::limits::MIB,
    deadline: Duration::from_secs(30),
    print_bytes_max: 64 * wire::limits::KIB,
};

/// One run of a validator: its module, its arguments, and the two results laid out as
/// directories (`outcome`, `stdout`, `stderr`, `output/`), to be mounted read-only at `/a`
/// and `/b`.
#[derive(Debug)]
pub struct ValidatorRun<'a> {
    pub module_hash: BlobHash,
    pub module: &'a Bytes,
    pub args: &'a [String],
    pub first: &'a Path,
    pub second: &'a Path,
    pub limits: ValidatorLimits,
}

/// Runs a validator to the end and says what its exit meant. It blocks: the coordinator calls
/// it off its async workers.
pub trait ValidatorRunner: Send + Sync + 'static {
    fn compare(&self, run: ValidatorRun<'_>) -> Verdict;
}

/// Runs the comparisons the pool waits for, one at a time, until the coordinator stops.
pub(crate) async fn compare_results(shared: Arc<Shared>, runner: Arc<dyn ValidatorRunner>) {
    let mut stopping = shared.stopping.subscribe();
    let mut module: Option<(BlobHash, Bytes)> = None;
    // What a coordinator that stopped mid-comparison left: its comparisons run again.
    if let Err(error) = tokio::fs::remove_dir_all(&shared.config.work_dir).await
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %shared.config.work_dir.display(), %error, "could not clear the scratch space");
    }
    loop {
        while let Some(comparison) = shared.read(|pool, _| pool.next_comparison()) {
            let verdict = run_one(&shared, &runner, &comparison, &mut module).await;
            tracing::debug!(job = %comparison.job, task = comparison.task, ?verdict, "results compared");
            let (_, commit) = shared.apply(Compare {
                job: comparison.job,
                task: comparison.task,
                attempt: comparison.attempt,
                with: comparison.with,
                verdict,
            });
            if shared.committed(commit).await.is_err() {
                return;
            }
        }
        tokio::select! {
            () = shared.comparisons.notified() => {}
            _ = stopping.changed() => return,
        }
    }
}

/// Lays out the two results, runs the validator on them and clears up.
async fn run_one(
    shared: &Arc<Shared>,
    runner: &Arc<dyn ValidatorRunner>,
    comparison: &Comparison,
    module: &mut Option<(BlobHash, Bytes)>,
) -> Verdict {
    let dir = shared
        .config
        .work_dir
        .join(format!("compare-{}-{}", comparison.job, comparison.attempt));
    let laid_out = lay_out_both(shared, comparison, &dir, module).await;
    let verdict = match laid_out {
        Ok(bytes) => {
            let runner = Arc::clone(runner);
            let (hash, args) = (
                comparison.validator.module,
                comparison.validator.args.clone(),
            );
            let (first, second) = (dir.join("a"), dir.join("b"));
            tokio::task::spawn_blocking(move || {
                runner.compare(ValidatorRun {
                    module_hash: hash,
                    module: &bytes,
                    args: &args,
                    first: &first,
                    second: &second,
                    limits: VALIDATOR_LIMITS,
                })
            })
            .await
            .unwrap_or_else(|error| Verdict::Failed(format!("the validator's run failed: {error}")))
        }
        Err(why) => Verdict::Failed(why),
    };
    if let Err(error) = tokio::fs::remove_dir_all(&dir).await {
        tracing::warn!(dir = %dir.display(), %error, "could not remove a comparison's files");
    }
    verdict
}

/// The validator's module (kept for the next comparison, which is most often of the same job)
/// and both results under `dir`.
async fn lay_out_both(
    shared: &Shared,
    comparison: &Comparison,
    dir: &Path,
    module: &mut Option<(BlobHash, Bytes)>,
) -> Result<Bytes, String> {
    let hash = comparison.validator.module;
    let bytes = match module.take() {
        Some((cached, bytes)) if cached == hash => bytes,
        _ => shared
            .blobs
            .get(&hash)
            .await
            .map_err(|error| format!("the validator's module could not be read: {error}"))?,
    };
    *module = Some((hash, bytes.clone()));
    let _ = tokio::fs::remove_dir_all(dir).await;
    lay_out(shared, &comparison.first, &dir.join("a")).await?;
    lay_out(shared, &comparison.second, &dir.join("b")).await?;
    Ok(bytes)
}

/// One result as files: `outcome`, `stdout`, `stderr` and `output/`.
async fn lay_out(shared: &Shared, result: &ComparedResult, dir: &Path) -> Result<(), String> {
    let written = |error: std::io::Error| format!("the results could not be laid out: {error}");
    tokio::fs::create_dir_all(dir.join("output"))
        .await
        .map_err(written)?;
    tokio::fs::write(
        dir.join("outcome"),
        format!("{}\n", outcome_line(&result.outcome)),
    )
    .await
    .map_err(written)?;
    let files = &result.files;
    for (name, blob) in [("stdout", &files.stdout), ("stderr", &files.stderr)] {
        copy_blob(shared, blob.as_ref(), &dir.join(name)).await?;
    }
    for output in &files.outputs {
        // The report's paths were checked on the way in: relative, no `..`, `/` separators.
        let path: PathBuf = dir.join("output").join(&output.path);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(written)?;
        }
        let blob = BlobRef {
            hash: output.hash,
            size_bytes: output.size_bytes,
        };
        copy_blob(shared, Some(&blob), &path).await?;
    }
    Ok(())
}

/// Streams a blob's bytes (none when absent) to `path`: results may be as large as their job
/// allows, so they never sit in memory whole.
async fn copy_blob(shared: &Shared, blob: Option<&BlobRef>, path: &Path) -> Result<(), String> {
    use futures::TryStreamExt as _;
    use tokio::io::AsyncWriteExt as _;
    let written = |error: std::io::Error| format!("the results could not be laid out: {error}");
    let unread =
        |error: blobstore::BlobError| format!("a result's blob could not be read: {error}");
    let mut file = tokio::fs::File::create(path).await.map_err(written)?;
    if let Some(blob) = blob {
        let (_, mut chunks) = shared.blobs.get_stream(&blob.hash).await.map_err(unread)?;
        while let Some(chunk) = chunks.try_next().await.map_err(unread)? {
            file.write_all(&chunk).await.map_err(written)?;
        }
    }
    file.flush().await.map_err(written)
}

/// The outcome as the validator reads it in `outcome`: one word, or `exit N`.
fn outcome_line(outcome: &wire::Outcome) -> String {
    use wire::Outcome;
    match outcome {
        Outcome::Succeeded => "succeeded".to_owned(),
        Outcome::ExitCode { code } => format!("exit {code}"),
        Outcome::Trap { .. } => "trap".to_owned(),
        Outcome::OutOfFuel => "out_of_fuel".to_owned(),
        Outcome::MemoryLimit => "memory_limit".to_owned(),
        Outcome::OutputTooLarge { .. } => "output_too_large".to_owned(),
        Outcome::InvalidOutput { .. } => "invalid_output".to_owned(),
        // Not results of the task (`verify::is_claim`), so never compared.
        Outcome::DeadlineExceeded
        | Outcome::ModuleRejected { .. }
        | Outcome::NodeError { .. }
        | Outcome::NoKey
        | Outcome::SealBroken { .. }
        | Outcome::Cancelled
        | Outcome::Lost { .. }
        | Outcome::Inconclusive { .. } => "not_a_result".to_owned(),
    }
}
