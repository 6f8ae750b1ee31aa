//! One attempt on this node: fetch what it needs, run it in the sandbox, upload what it left,
//! and say how it ended.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Client, ClientError};
use futures::{StreamExt as _, TryStreamExt as _};
use sandbox::{
    Attempt, AttemptControl, AttemptLimits, CheckpointDir, Determinism, RunReport, Sandbox,
};
use wire::checkpoint::{ENV_EXIT_CODE, ENV_INTERVAL_MS};
use wire::{
    AttemptGrant, AttemptId, AttemptReport, BlobHash, BlobRef, CheckpointSpec, JobRuntime, Outcome,
    OutputFile, Usage,
};

use crate::cache::{BlobCache, FetchError};
use crate::cheat::Cheat;
use crate::checkpoint::{self, CheckpointError};
use crate::private::Unsealed;

/// What became of an attempt.
pub(crate) enum Ended {
    /// It ran to an outcome; report it.
    Report(Box<AttemptReport>),
    /// It was stopped before its end (cancelled); the agent decides what to tell.
    Stopped,
    /// An input only other nodes had could be fetched from none of them (they left): the
    /// attempt goes back, not counted, and runs once the task that made the input made it
    /// again.
    InputGone(String),
}

/// Why an attempt did not run to its end.
pub(crate) enum Stop {
    Outcome(Outcome),
    /// See [`Ended::InputGone`].
    InputGone(String),
}

impl From<Outcome> for Stop {
    fn from(outcome: Outcome) -> Self {
        Stop::Outcome(outcome)
    }
}

/// How long an attempt whose kept input is gone waits before it goes back, so that a node
/// that is given it again at once asks at most this often while the input is made again.
const INPUT_GONE_WAIT: Duration = Duration::from_secs(1);

pub(crate) struct Runner {
    pub(crate) cache: Arc<BlobCache>,
    pub(crate) sandbox: Arc<Sandbox>,
    pub(crate) work_dir: PathBuf,
    /// Set by `--cheat`: attempts it says to lie about are not run but made up.
    pub(crate) cheat: Option<Arc<Cheat>>,
    /// What private jobs' keys are wrapped to for this node.
    pub(crate) secret: seal::EncryptionSecret,
    /// Fetches inputs that other nodes hold.
    pub(crate) peers: client::peer::PeerClient,
    /// The agent has a peer listener: outputs a later stage reads stay here, not uploaded.
    pub(crate) serves_peers: bool,
}

/// The shortest time between two checkpoints a node uploads for one attempt: half the shortest
/// interval a job may ask for.
const UPLOAD_EVERY_MIN: Duration = Duration::from_millis(500);

/// What every run of an attempt's task gets.
struct Setup {
    stdin: Vec<u8>,
    /// `(file name in /input, host file)`.
    inputs: Vec<(String, PathBuf)>,
    /// `(guest path, host directory)`.
    mounts: Vec<(String, PathBuf)>,
}

/// An attempt ready to run, as many times as its task checkpoints.
struct Segments<'a> {
    runtime: &'a JobRuntime,
    grant: &'a AttemptGrant,
    prepared: sandbox::Prepared,
    setup: Setup,
    checkpoint: Option<CheckpointFiles>,
}

/// What one run has left of the attempt's fuel and deadline.
#[derive(Debug, Clone, Copy)]
struct Budget {
    fuel_max: u64,
    deadline: Duration,
}

/// An attempt's `/checkpoint` on the host and the archive it is packed into; both go with the
/// attempt.
struct CheckpointFiles {
    dir: PathBuf,
    archive: PathBuf,
    spec: CheckpointSpec,
}

impl CheckpointFiles {
    fn bounds(&self) -> checkpoint::Bounds {
        checkpoint::Bounds {
            bytes_max: self.spec.bytes_max,
            entries_max: wire::checkpoint::ENTRIES_MAX,
        }
    }
}

impl Drop for CheckpointFiles {
    fn drop(&mut self) {
        if let Err(error) = sandbox::remove_tree(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot remove /checkpoint");
        }
        let _ = std::fs::remove_file(&self.archive);
    }
}

/// Output files of one attempt uploaded at once: enough that their records share commits, few
/// enough that a node with many slots does not flood the coordinator.
const UPLOADS_AT_ONCE: usize = 8;

/// Inputs of one attempt fetched at once.
const INPUTS_AT_ONCE: usize = 8;

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
        let (report, compile_ms, mut unsealed) = match self
            .prepare_and_run(client, runtime, grant, Arc::clone(&control))
            .await
        {
            Ok(ran) => ran,
            Err(Stop::Outcome(outcome)) => {
                return Ended::Report(Box::new(bare_report(grant, outcome, Usage::default())));
            }
            Err(Stop::InputGone(why)) => {
                tokio::time::sleep(INPUT_GONE_WAIT).await;
                return Ended::InputGone(why);
            }
        };
        if report.outcome == sandbox::Outcome::Cancelled {
            return Ended::Stopped;
        }
        let ran = (report, compile_ms, runtime.hold_outputs);
        Ended::Report(Box::new(
            self.upload_and_report(client, grant, ran, unsealed.as_mut(), &control)
                .await,
        ))
    }

    async fn prepare_and_run(
        &self,
        client: &Client,
        runtime: &JobRuntime,
        grant: &AttemptGrant,
        control: Arc<AttemptControl>,
    ) -> Result<(RunReport, u64, Option<Unsealed>), Stop> {
        let held = ForAttempt {
            client,
            attempt: grant.attempt_id,
            control: &control,
        };
        // Before anything is fetched: a node without the key learns nothing of the job.
        let mut unsealed = self.unseal(client, runtime, grant, &held).await?;
        let (prepared, compile_ms) = self
            .ready_module(client, runtime, &held, &control, unsealed.as_mut())
            .await?;
        let setup = match unsealed.as_mut() {
            Some(unsealed) => {
                self.open_setup(client, runtime, grant, unsealed, &held)
                    .await?
            }
            None => self.fetch_setup(client, runtime, grant, &held).await?,
        };
        let checkpoint = self.checkpoint_files(client, runtime, grant, &held).await?;
        let run = Segments {
            runtime,
            grant,
            prepared,
            setup,
            checkpoint,
        };
        let report = self.run_segments(client, run, control).await?;
        Ok((report, compile_ms, unsealed))
    }

    /// What every run of a private attempt gets, each sealed blob opened and checked.
    async fn open_setup(
        &self,
        client: &Client,
        runtime: &JobRuntime,
        grant: &AttemptGrant,
        unsealed: &mut Unsealed,
        held: &ForAttempt<'_>,
    ) -> Result<Setup, Outcome> {
        let stdin = match &grant.stdin {
            Some(hash) => {
                let path = self.open_sealed(client, unsealed, hash, held).await?;
                let bytes = std::fs::read(&path).map_err(|error| Outcome::NodeError {
                    message: format!("{}: {error}", path.display()),
                })?;
                let _ = std::fs::remove_file(&path);
                bytes
            }
            None => Vec::new(),
        };
        let mut inputs = Vec::with_capacity(grant.inputs.len());
        for input in &grant.inputs {
            let path = self
                .open_sealed(client, unsealed, &input.blob, held)
                .await?;
            inputs.push((input.name.clone(), path));
        }
        let mut mounts = Vec::with_capacity(runtime.mounts.len());
        for mount in &runtime.mounts {
            let dir = self.open_mount(client, unsealed, mount, held).await?;
            mounts.push((mount.guest_path.clone(), dir));
        }
        Ok(Setup {
            stdin,
            inputs,
            mounts,
        })
    }

    /// What every run of the attempt gets: stdin, input files and the job's mounts.
    async fn fetch_setup(
        &self,
        client: &Client,
        runtime: &JobRuntime,
        grant: &AttemptGrant,
        held: &ForAttempt<'_>,
    ) -> Result<Setup, Stop> {
        let node_error = |message: String| Outcome::NodeError { message };
        let stdin = match &grant.stdin {
            Some(hash) => held
                .fetch(|| self.cache.bytes(client, hash))
                .await
                .map_err(node_error)?,
            None => Vec::new(),
        };
        // A reduce reads a part of every map: its inputs come a few at a time, not one
        // round trip after another.
        let fetches: Vec<_> = grant
            .inputs
            .iter()
            .map(|input| self.fetch_input(client, grant, input, held))
            .collect();
        let inputs: Vec<(String, PathBuf)> = futures::stream::iter(fetches)
            .buffered(INPUTS_AT_ONCE)
            .try_collect()
            .await?;
        let mut mounts = Vec::with_capacity(runtime.mounts.len());
        for mount in &runtime.mounts {
            let dir = held
                .fetch(|| self.cache.mount(client, mount))
                .await
                .map_err(node_error)?;
            mounts.push((mount.guest_path.clone(), dir));
        }
        Ok(Setup {
            stdin,
            inputs,
            mounts,
        })
    }

    /// The attempt's `/checkpoint`, in a job that checkpoints: empty, or its task's latest
    /// checkpoint unpacked.
    async fn checkpoint_files(
        &self,
        client: &Client,
        runtime: &JobRuntime,
        grant: &AttemptGrant,
        held: &ForAttempt<'_>,
    ) -> Result<Option<CheckpointFiles>, Outcome> {
        let node_error = |message: String| Outcome::NodeError { message };
        let Some(spec) = runtime.checkpoint else {
            return Ok(None);
        };
        let files = CheckpointFiles {
            dir: self
                .work_dir
                .join(format!("{}.checkpoint", grant.attempt_id)),
            archive: self
                .work_dir
                .join(format!("{}.checkpoint.tar", grant.attempt_id)),
            spec,
        };
        std::fs::create_dir(&files.dir)
            .map_err(|error| node_error(format!("cannot make /checkpoint: {error}")))?;
        let Some(latest) = grant.checkpoint else {
            return Ok(Some(files));
        };
        let archive = held
            .fetch(|| self.cache.file(client, &latest.hash))
            .await
            .map_err(node_error)?;
        let (dir, bounds) = (files.dir.clone(), files.bounds());
        tokio::task::spawn_blocking(move || checkpoint::unpack(&archive, &dir, bounds))
            .await
            .map_err(|error| node_error(error.to_string()))?
            .map_err(|error| node_error(format!("cannot resume from the checkpoint: {error}")))?;
        tracing::info!(attempt = %grant.attempt_id, sequence = latest.sequence, fuel = latest.fuel_used, "resuming from a checkpoint");
        Ok(Some(files))
    }

    /// Runs the task until it ends: each time it exits to say its checkpoint is whole, the
    /// checkpoint is saved and the task starts again at once with `/checkpoint` as it left
    /// it, fresh `/output` and `/scratch`, and what it has left of its fuel and deadline. The
    /// report is the last run's, with the fuel of the whole task.
    async fn run_segments(
        &self,
        client: &Client,
        run: Segments<'_>,
        control: Arc<AttemptControl>,
    ) -> Result<RunReport, Outcome> {
        let limits = run.runtime.limits;
        let started = Instant::now();
        let mut fuel_before = run.grant.checkpoint.map_or(0, |latest| latest.fuel_used);
        let mut uploaded_at: Option<Instant> = None;
        for segment in 0u32.. {
            let budget = Budget {
                fuel_max: limits.fuel_max.saturating_sub(fuel_before),
                deadline: Duration::from_millis(limits.deadline_ms)
                    .saturating_sub(started.elapsed()),
            };
            let attempt = self.attempt(&run, segment, budget, Arc::clone(&control));
            let (sandbox, prepared) = (Arc::clone(&self.sandbox), run.prepared.clone());
            let mut report = in_place(move || sandbox.run(&prepared, attempt))
                .await
                .map_err(|error| Outcome::NodeError {
                    message: format!("the sandbox thread failed: {error}"),
                })?;
            let files = match (&run.checkpoint, &report.outcome) {
                (Some(files), sandbox::Outcome::ExitCode(code))
                    if *code == files.spec.exit_code =>
                {
                    files
                }
                _ => {
                    report.usage.fuel_used = report.usage.fuel_used.saturating_add(fuel_before);
                    report.usage.wall = started.elapsed();
                    return Ok(report);
                }
            };
            fuel_before = fuel_before.saturating_add(report.usage.fuel_used);
            // The run's own directory goes now: only /checkpoint carries on.
            drop(report);
            // A task may checkpoint as often as it likes; the pool hears of it at most twice a
            // second, and the node keeps the latest whole state for its own restarts anyway.
            if uploaded_at.is_none_or(|at| at.elapsed() >= UPLOAD_EVERY_MIN) {
                self.save_checkpoint(client, run.grant, files, fuel_before, &control)
                    .await?;
                uploaded_at = Some(Instant::now());
            }
        }
        unreachable!("a task runs fewer than 2^32 times")
    }

    /// One run of the attempt's task.
    fn attempt(
        &self,
        run: &Segments<'_>,
        segment: u32,
        budget: Budget,
        control: Arc<AttemptControl>,
    ) -> Attempt {
        let (runtime, grant) = (run.runtime, run.grant);
        let limits = runtime.limits;
        let mut env: Vec<(String, String)> = runtime
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(files) = &run.checkpoint {
            env.push((
                ENV_INTERVAL_MS.to_owned(),
                files.spec.interval_ms.to_string(),
            ));
            env.push((ENV_EXIT_CODE.to_owned(), files.spec.exit_code.to_string()));
        }
        Attempt {
            work_dir: self
                .work_dir
                .join(format!("{}.{segment}", grant.attempt_id)),
            program_name: runtime.name.clone(),
            args: grant.args.clone(),
            env,
            stdin: run.setup.stdin.clone(),
            inputs: run.setup.inputs.clone(),
            mounts: run.setup.mounts.clone(),
            limits: AttemptLimits {
                memory_bytes_max: grant.memory_bytes_max.unwrap_or(limits.memory_bytes_max),
                fuel_max: budget.fuel_max,
                deadline: budget.deadline,
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
            checkpoint: run.checkpoint.as_ref().map(|files| {
                let bounds = files.bounds();
                CheckpointDir {
                    host: files.dir.clone(),
                    bytes_max: bounds.bytes_max,
                    entries_max: bounds.entries_max,
                }
            }),
        }
    }

    /// Packs `/checkpoint` and uploads it as the task's latest, saved at `fuel_used` in all.
    async fn save_checkpoint(
        &self,
        client: &Client,
        grant: &AttemptGrant,
        files: &CheckpointFiles,
        fuel_used: u64,
        control: &AttemptControl,
    ) -> Result<(), Outcome> {
        let node_error = |message: String| Outcome::NodeError { message };
        let poison = || match &self.cheat {
            Some(cheat) => cheat
                .poison(&files.dir)
                .map_err(|error| node_error(error.to_string())),
            None => Ok(()),
        };
        poison()?;
        let (dir, archive, bounds) = (files.dir.clone(), files.archive.clone(), files.bounds());
        let packed = tokio::task::spawn_blocking(move || checkpoint::pack(&dir, &archive, bounds))
            .await
            .map_err(|error| node_error(error.to_string()))?;
        // The saved copy is poisoned; the node's own run goes on from the honest state.
        poison()?;
        let (hash, size_bytes) = match packed {
            Ok(packed) => packed,
            Err(CheckpointError::Refused(message)) => {
                return Err(Outcome::InvalidOutput {
                    message: format!("/checkpoint: {message}"),
                });
            }
            Err(error) => return Err(node_error(error.to_string())),
        };
        let uploader = ForAttempt {
            client,
            attempt: grant.attempt_id,
            control,
        };
        let put = || async {
            match client
                .put_checkpoint_file(grant.attempt_id, hash, fuel_used, &files.archive)
                .await
            {
                // Another replica of the task is further on; this one keeps its own state and
                // goes on.
                Err(error) if error.code() == Some(wire::ErrorCode::Conflict) => Ok(false),
                other => other.map(|()| true),
            }
        };
        let taken = uploader
            .retry("save a checkpoint", ClientError::is_transient, put)
            .await
            .map_err(|message| node_error(format!("could not save the checkpoint: {message}")))?;
        if !taken {
            tracing::info!(attempt = %grant.attempt_id, fuel_used, "another replica's checkpoint is further on; going on");
            return Ok(());
        }
        tracing::info!(attempt = %grant.attempt_id, fuel_used, size_bytes, "checkpoint saved");
        Ok(())
    }

    /// The job's module compiled and linked, from memory, the disk cache or the compiler; and
    /// the milliseconds that took when it was not in memory.
    async fn ready_module(
        &self,
        client: &Client,
        runtime: &JobRuntime,
        held: &ForAttempt<'_>,
        control: &Arc<AttemptControl>,
        unsealed: Option<&mut Unsealed>,
    ) -> Result<(sandbox::Prepared, u64), Outcome> {
        let node_error = |message: String| Outcome::NodeError { message };
        let deterministic = runtime.deterministic.is_some();
        if let Some(prepared) = self.sandbox.cached(&runtime.module.0, deterministic) {
            return Ok((prepared, 0));
        }
        let sealed_module = unsealed.filter(|_| {
            runtime
                .private
                .as_ref()
                .is_some_and(|private| private.module_sealed)
        });
        let is_sealed = sealed_module.is_some();
        let wasm = match sealed_module {
            Some(unsealed) => {
                self.open_sealed_bytes(client, unsealed, &runtime.module, held)
                    .await?
            }
            None => held
                .fetch(|| self.cache.bytes(client, &runtime.module))
                .await
                .map_err(node_error)?,
        };
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
        if is_sealed {
            self.sandbox.forget_on_disk(&key);
        }
        // Tests read `from_disk` to see the compiled-module cache work across restarts.
        tracing::info!(module = %runtime.module, compile_ms, from_disk = prepared.from_disk(), "module ready");
        Ok((prepared, compile_ms))
    }

    async fn upload_and_report(
        &self,
        client: &Client,
        grant: &AttemptGrant,
        (run, compile_ms, hold_outputs): (RunReport, u64, bool),
        unsealed: Option<&mut Unsealed>,
        control: &AttemptControl,
    ) -> AttemptReport {
        let usage = Usage {
            fuel_used: run.usage.fuel_used,
            wall_ms: run.usage.wall.as_millis() as u64,
            memory_peak_bytes: run.usage.memory_peak_bytes,
            output_bytes: run.usage.output_bytes,
            compile_ms,
        };
        let outcome = outcome_of(run.outcome.clone());
        let uploader = ForAttempt {
            client,
            attempt: grant.attempt_id,
            control,
        };
        let uploaded = match unsealed {
            Some(unsealed) => uploader.sealed(unsealed, &run).await,
            None => {
                async {
                    let stdout = uploader.bytes(run.stdout.clone()).await?;
                    let stderr = uploader.bytes(run.stderr.clone()).await?;
                    let keeps = hold_outputs && outcome.is_success();
                    let outputs = match self.keep(&run.outputs.files, keeps).await {
                        Some(kept) => kept,
                        None => {
                            let outputs = uploader.files(&run.outputs.files).await?;
                            if hold_outputs {
                                self.hold(&run.outputs.files, &outputs);
                            }
                            outputs
                        }
                    };
                    Ok((stdout, stderr, outputs, None))
                }
                .await
            }
        };
        // The attempt directory goes as soon as its outputs are uploaded.
        drop(run.outputs);
        match uploaded {
            Ok((stdout, stderr, outputs, sealed_digest)) => AttemptReport {
                ran_on: None,
                attempt_id: grant.attempt_id,
                outcome,
                usage,
                stdout,
                stderr,
                outputs,
                sealed_digest,
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

impl Runner {
    /// Keeps the outputs `files` in the cache, pinned for peers, instead of uploading them,
    /// when `keeps` and this node serves peers; `None` (upload them) otherwise, or when the
    /// cache has no room to pin them.
    async fn keep(&self, files: &[sandbox::OutputFile], keeps: bool) -> Option<Vec<OutputFile>> {
        if !keeps || !self.serves_peers {
            return None;
        }
        let mut outputs = Vec::with_capacity(files.len());
        for file in files {
            let (hash, _) = client::hash_file(&file.host_path).await.ok()?;
            self.cache.adopt(&hash, &file.host_path).ok()?;
            outputs.push(OutputFile {
                path: file.path.clone(),
                hash,
                size_bytes: file.size_bytes,
            });
        }
        let hashes: Vec<BlobHash> = outputs.iter().map(|output| output.hash).collect();
        self.cache.pin(&hashes).then_some(outputs)
    }

    /// One input of `grant` as a file in the cache: from the nodes that hold it, if any, else
    /// from the coordinator.
    async fn fetch_input(
        &self,
        client: &Client,
        grant: &AttemptGrant,
        input: &wire::InputFile,
        held: &ForAttempt<'_>,
    ) -> Result<(String, PathBuf), Stop> {
        let near = grant.peers.iter().find(|peer| peer.hash == input.blob);
        let fetched = held
            .fetch(|| {
                let near = near.map(|blob| (&self.peers, blob));
                self.cache.file_near(client, &input.blob, near)
            })
            .await;
        match (fetched, near) {
            (Ok(path), _) => Ok((input.name.clone(), path)),
            (Err(why), Some(_)) => Err(Stop::InputGone(why)),
            (Err(message), None) => Err(Outcome::NodeError { message }.into()),
        }
    }

    /// Keeps the uploaded outputs of an attempt whose job a later stage reads node to node in
    /// the cache too, for the peer listener; `reported` are the same files with their hashes.
    fn hold(&self, files: &[sandbox::OutputFile], reported: &[OutputFile]) {
        for (file, output) in files.iter().zip(reported) {
            if let Err(error) = self.cache.adopt(&output.hash, &file.host_path) {
                // Later stages fetch it from the coordinator instead.
                tracing::warn!(%error, hash = %output.hash, "could not keep an output for peers");
            }
        }
    }
}

pub(crate) fn bare_report(grant: &AttemptGrant, outcome: Outcome, usage: Usage) -> AttemptReport {
    AttemptReport {
        ran_on: None,
        attempt_id: grant.attempt_id,
        outcome,
        usage,
        stdout: None,
        stderr: None,
        outputs: Vec::new(),
        sealed_digest: None,
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

/// What an attempt uploads: stdout, stderr, the outputs, and a private job's sealed digest.
type Uploaded = (
    Option<BlobRef>,
    Option<BlobRef>,
    Vec<OutputFile>,
    Option<String>,
);

impl ForAttempt<'_> {
    /// Seals a private attempt's stdout, stderr and outputs to the requester and uploads them,
    /// with the digest replicas are compared by.
    async fn sealed(&self, unsealed: &mut Unsealed, run: &RunReport) -> Result<Uploaded, String> {
        let sealed_digest = unsealed.result_digest(&run.stdout, &run.stderr, &run.outputs.files)?;
        let stdout = self.sealed_bytes(unsealed, &run.stdout).await?;
        let stderr = self.sealed_bytes(unsealed, &run.stderr).await?;
        let mut sealed_files = Vec::with_capacity(run.outputs.files.len());
        for file in &run.outputs.files {
            let key = unsealed.output_key(self.attempt).await?;
            let sealed = unsealed.seal_file(key, &file.host_path)?;
            let size_bytes = std::fs::metadata(&sealed).map_err(|e| e.to_string())?.len();
            sealed_files.push(sandbox::OutputFile {
                path: file.path.clone(),
                size_bytes,
                host_path: sealed,
            });
        }
        let outputs = self.files(&sealed_files).await?;
        Ok((stdout, stderr, outputs, Some(sealed_digest)))
    }

    async fn sealed_bytes(
        &self,
        unsealed: &mut Unsealed,
        bytes: &[u8],
    ) -> Result<Option<BlobRef>, String> {
        if bytes.is_empty() {
            return Ok(None);
        }
        let key = unsealed.output_key(self.attempt).await?;
        self.bytes(Unsealed::seal_bytes(key, bytes)?).await
    }

    pub(crate) async fn fetch<T, F, Fut>(&self, call: F) -> Result<T, String>
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

    async fn file(&self, hash: BlobHash, path: PathBuf) -> Result<(), String> {
        self.upload(|| self.client.put_output_file(self.attempt, hash, &path))
            .await
    }

    /// Uploads an attempt's output files: each distinct content once (a map's empty
    /// partitions are one blob), [`UPLOADS_AT_ONCE`] at a time, so that their records share
    /// the coordinator's commits instead of waiting for one each.
    async fn files(&self, files: &[sandbox::OutputFile]) -> Result<Vec<OutputFile>, String> {
        let mut outputs = Vec::with_capacity(files.len());
        let mut distinct: HashMap<BlobHash, PathBuf> = HashMap::new();
        for file in files {
            let (hash, _) = client::hash_file(&file.host_path)
                .await
                .map_err(|error| error.to_string())?;
            distinct
                .entry(hash)
                .or_insert_with(|| file.host_path.clone());
            outputs.push(OutputFile {
                path: file.path.clone(),
                hash,
                size_bytes: file.size_bytes,
            });
        }
        let uploads: Vec<_> = distinct
            .into_iter()
            .map(|(hash, path)| self.file(hash, path))
            .collect();
        futures::stream::iter(uploads)
            .buffer_unordered(UPLOADS_AT_ONCE)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(outputs)
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

/// Runs `work`, which blocks for as long as the attempt runs, from the attempt's task. On a
/// multi-threaded runtime it runs in place: the worker hands its other tasks to another thread,
/// and the attempt goes on where it is, which spares the two hand-offs between threads that the
/// blocking pool costs (`bench dispatch`: 11,430 -> 14,749 no-op tasks/s). A single-threaded
/// runtime (the agent's unit tests) cannot give its one thread away, so there it goes to the pool.
async fn in_place<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => Ok(tokio::task::block_in_place(work)),
        _ => tokio::task::spawn_blocking(work).await,
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
