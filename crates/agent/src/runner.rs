//! One attempt on this node: fetch what it needs, run it in the sandbox, upload what it left,
//! and say how it ended.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use client::{Client, ClientError};
use sandbox::{Attempt, AttemptControl, AttemptLimits, Determinism, RunReport, Sandbox};
use wire::{
    AttemptGrant, AttemptId, AttemptReport, BlobHash, BlobRef, JobRuntime, Outcome, OutputFile,
    Usage,
};

use crate::cache::{BlobCache, FetchError};
use crate::cheat::Cheat;

/// What became of an attempt.
pub(crate) enum Ended {
    /// It ran to an outcome; report it.
    Report(AttemptReport),
    /// It was stopped before its end (cancelled); the agent decides what to tell.
    Stopped,
}

pub(crate) struct Runner {
    pub(crate) cache: Arc<BlobCache>,
    pub(crate) sandbox: Arc<Sandbox>,
    pub(crate) work_dir: PathBuf,
    /// Set by `--cheat`: attempts it says to lie about are not run but made up.
    pub(crate) cheat: Option<Arc<Cheat>>,
}

/// How long a fetch or an upload is retried while the coordinator cannot answer. It stops
/// sooner when the coordinator ends the attempt (its lease ran out).
const RETRY_FOR: Duration = Duration::from_secs(3600);
/// The longest wait between two tries.
const RETRY_DELAY_MAX: Duration = Duration::from_secs(5);

impl Runner {
    pub(crate) async fn run(
        &self,
        client: &Client,
        runtime: &JobRuntime,
        grant: &AttemptGrant,
        control: Arc<AttemptControl>,
    ) -> Ended {
        if let Some(cheat) = self.cheat.as_deref().filter(|cheat| cheat.cheats_now()) {
            return cheat.lie(client, runtime, grant, &control).await;
        }
        let (report, compile_ms) = match self
            .prepare_and_run(client, runtime, grant, Arc::clone(&control))
            .await
        {
            Ok(ran) => ran,
            Err(outcome) => return Ended::Report(bare_report(grant, outcome, Usage::default())),
        };
        if report.outcome == sandbox::Outcome::Cancelled {
            return Ended::Stopped;
        }
        Ended::Report(
            self.upload_and_report(client, grant, (report, compile_ms), &control)
                .await,
        )
    }

    async fn prepare_and_run(
        &self,
        client: &Client,
        runtime: &JobRuntime,
        grant: &AttemptGrant,
        control: Arc<AttemptControl>,
    ) -> Result<(RunReport, u64), Outcome> {
        let node_error = |message: String| Outcome::NodeError { message };
        let held = ForAttempt {
            client,
            attempt: grant.attempt_id,
            control: &control,
        };
        let (prepared, compile_ms) = self.ready_module(client, runtime, &held, &control).await?;
        let stdin = match &grant.stdin {
            Some(hash) => held
                .fetch(|| self.cache.bytes(client, hash))
                .await
                .map_err(node_error)?,
            None => Vec::new(),
        };
        let mut inputs = Vec::with_capacity(grant.inputs.len());
        for input in &grant.inputs {
            let path = held
                .fetch(|| self.cache.file(client, &input.blob))
                .await
                .map_err(node_error)?;
            inputs.push((input.name.clone(), path));
        }
        let mut mounts = Vec::with_capacity(runtime.mounts.len());
        for mount in &runtime.mounts {
            let dir = held
                .fetch(|| self.cache.mount(client, mount))
                .await
                .map_err(node_error)?;
            mounts.push((mount.guest_path.clone(), dir));
        }
        let limits = runtime.limits;
        let attempt = Attempt {
            work_dir: self.work_dir.join(grant.attempt_id.to_string()),
            program_name: runtime.name.clone(),
            args: grant.args.clone(),
            env: runtime
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            stdin,
            inputs,
            mounts,
            limits: AttemptLimits {
                memory_bytes_max: limits.memory_bytes_max,
                fuel_max: limits.fuel_max,
                deadline: Duration::from_millis(limits.deadline_ms),
                output_bytes_max: limits.output_bytes_max,
                output_files_max: limits.output_files_max,
                stdout_bytes_max: limits.stdout_bytes_max,
                stderr_bytes_max: limits.stderr_bytes_max,
            },
            determinism: match runtime.deterministic {
                Some(options) => Determinism::Seeded(task_seed(options.seed, grant.task_index)),
                None => Determinism::Off,
            },
            control,
        };
        let sandbox = Arc::clone(&self.sandbox);
        let report = tokio::task::spawn_blocking(move || sandbox.run(&prepared, attempt))
            .await
            .map_err(|error| node_error(format!("the sandbox thread failed: {error}")))?;
        Ok((report, compile_ms))
    }

    /// The job's module compiled and linked, from memory, the disk cache or the compiler; and
    /// the milliseconds that took when it was not in memory.
    async fn ready_module(
        &self,
        client: &Client,
        runtime: &JobRuntime,
        held: &ForAttempt<'_>,
        control: &Arc<AttemptControl>,
    ) -> Result<(sandbox::Prepared, u64), Outcome> {
        let node_error = |message: String| Outcome::NodeError { message };
        let deterministic = runtime.deterministic.is_some();
        if let Some(prepared) = self.sandbox.cached(&runtime.module.0, deterministic) {
            return Ok((prepared, 0));
        }
        let wasm = held
            .fetch(|| self.cache.bytes(client, &runtime.module))
            .await
            .map_err(node_error)?;
        let sandbox = Arc::clone(&self.sandbox);
        let key = runtime.module.0;
        let started = std::time::Instant::now();
        let compiling = Arc::clone(control);
        let prepared = tokio::task::spawn_blocking(move || {
            sandbox.prepare_for(key, &wasm, deterministic, &compiling)
        })
        .await
        .map_err(|error| node_error(error.to_string()))?;
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(_) if control.is_cancelled() => return Err(Outcome::Cancelled),
            Err(message) => return Err(Outcome::ModuleRejected { message }),
        };
        let compile_ms = started.elapsed().as_millis() as u64;
        // Tests read `from_disk` to see the compiled-module cache work across restarts.
        tracing::info!(module = %runtime.module, compile_ms, from_disk = prepared.from_disk(), "module ready");
        Ok((prepared, compile_ms))
    }

    async fn upload_and_report(
        &self,
        client: &Client,
        grant: &AttemptGrant,
        (run, compile_ms): (RunReport, u64),
        control: &AttemptControl,
    ) -> AttemptReport {
        let usage = Usage {
            fuel_used: run.usage.fuel_used,
            wall_ms: run.usage.wall.as_millis() as u64,
            memory_peak_bytes: run.usage.memory_peak_bytes,
            output_bytes: run.usage.output_bytes,
            compile_ms,
        };
        let outcome = outcome_of(run.outcome);
        let uploader = ForAttempt {
            client,
            attempt: grant.attempt_id,
            control,
        };
        let uploaded: Result<_, String> = async {
            let stdout = uploader.bytes(run.stdout).await?;
            let stderr = uploader.bytes(run.stderr).await?;
            let mut outputs = Vec::with_capacity(run.outputs.files.len());
            for file in &run.outputs.files {
                let hash = uploader.file(&file.host_path).await?;
                outputs.push(OutputFile {
                    path: file.path.clone(),
                    hash,
                    size_bytes: file.size_bytes,
                });
            }
            Ok((stdout, stderr, outputs))
        }
        .await;
        // The attempt directory goes as soon as its outputs are uploaded.
        drop(run.outputs);
        match uploaded {
            Ok((stdout, stderr, outputs)) => AttemptReport {
                attempt_id: grant.attempt_id,
                outcome,
                usage,
                stdout,
                stderr,
                outputs,
            },
            Err(message) => bare_report(
                grant,
                Outcome::NodeError {
                    message: format!("could not upload the outputs: {message}"),
                },
                usage,
            ),
        }
    }
}

pub(crate) fn bare_report(grant: &AttemptGrant, outcome: Outcome, usage: Usage) -> AttemptReport {
    AttemptReport {
        attempt_id: grant.attempt_id,
        outcome,
        usage,
        stdout: None,
        stderr: None,
        outputs: Vec::new(),
    }
}

/// What one attempt fetches from and uploads to the coordinator, retried with backoff while
/// the coordinator cannot answer (it is down or restarting) and the attempt is still held: only
/// when the coordinator ends the attempt (its lease ran out) is the work given up.
pub(crate) struct ForAttempt<'a> {
    pub(crate) client: &'a Client,
    pub(crate) attempt: AttemptId,
    pub(crate) control: &'a AttemptControl,
}

impl ForAttempt<'_> {
    async fn fetch<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, FetchError>>,
    {
        self.retry("fetch an input", FetchError::is_transient, call)
            .await
    }

    pub(crate) async fn bytes(&self, bytes: Vec<u8>) -> Result<Option<BlobRef>, String> {
        if bytes.is_empty() {
            return Ok(None);
        }
        let bytes = bytes::Bytes::from(bytes);
        let hash = BlobHash::of(&bytes);
        let size_bytes = bytes.len() as u64;
        self.upload(|| self.client.put_output(self.attempt, hash, bytes.clone()))
            .await?;
        Ok(Some(BlobRef { hash, size_bytes }))
    }

    async fn file(&self, path: &Path) -> Result<BlobHash, String> {
        let (hash, _) = client::hash_file(path)
            .await
            .map_err(|error| error.to_string())?;
        self.upload(|| self.client.put_output_file(self.attempt, hash, path))
            .await?;
        Ok(hash)
    }

    async fn upload<F, Fut>(&self, call: F) -> Result<(), String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = client::Result<()>>,
    {
        self.retry("upload an output", ClientError::is_transient, call)
            .await
    }

    async fn retry<T, E, F, Fut>(
        &self,
        what: &str,
        transient: fn(&E) -> bool,
        mut call: F,
    ) -> Result<T, String>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let give_up_at = tokio::time::Instant::now() + RETRY_FOR;
        let mut delay = Duration::from_millis(100);
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(error)
                    if transient(&error)
                        && !self.control.is_cancelled()
                        && tokio::time::Instant::now() + delay < give_up_at =>
                {
                    tracing::warn!(attempt = %self.attempt, %error, "cannot {what} yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_DELAY_MAX);
                }
                Err(error) => return Err(error.to_string()),
            }
        }
    }
}

/// Each task of a deterministic job gets its own seed, the same on every node.
fn task_seed(job_seed: u64, task_index: u32) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&job_seed.to_le_bytes());
    hasher.update(&task_index.to_le_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    u64::from_le_bytes(first)
}

fn outcome_of(outcome: sandbox::Outcome) -> Outcome {
    match outcome {
        sandbox::Outcome::Succeeded => Outcome::Succeeded,
        sandbox::Outcome::ExitCode(code) => Outcome::ExitCode { code },
        sandbox::Outcome::Trap(message) => Outcome::Trap { message },
        sandbox::Outcome::OutOfFuel => Outcome::OutOfFuel,
        sandbox::Outcome::DeadlineExceeded => Outcome::DeadlineExceeded,
        sandbox::Outcome::MemoryLimit => Outcome::MemoryLimit,
        sandbox::Outcome::OutputTooLarge(what) => Outcome::OutputTooLarge { what },
        sandbox::Outcome::InvalidOutput(message) => Outcome::InvalidOutput { message },
        sandbox::Outcome::ModuleRejected(message) => Outcome::ModuleRejected { message },
        sandbox::Outcome::Cancelled => Outcome::Cancelled,
        sandbox::Outcome::SetupFailed(message) => Outcome::NodeError { message },
    }
}
