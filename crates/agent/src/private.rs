//! Attempts of private jobs on this node: the job's key unwrapped with the node's encryption
//! key, each sealed input opened into a directory of the attempt's own and checked against the
//! plaintext hash the job's manifest names, and stdout, stderr and outputs sealed to the
//! requester before they leave.
//!
//! The cache keeps only ciphertext. Plaintext lives in the attempt's directories, which go
//! when the attempt ends whatever the outcome, as every attempt's tree does.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use client::Client;
use seal::{DataKey, EncryptionKey, Manifest, WrapContext};
use wire::{AttemptGrant, BlobHash, JobRuntime, Outcome};

use crate::runner::{ForAttempt, Runner};

/// What a private attempt holds: the job's key, its manifest, and the directory its opened
/// inputs and sealed outputs lie in, removed when this is dropped.
pub(crate) struct Unsealed {
    job_key: DataKey,
    requester: EncryptionKey,
    manifest: Manifest,
    pub(crate) dir: PathBuf,
    files: u32,
    /// The key the first output is sealed with, wrapped to the requester while the task runs:
    /// the wrap's public-key work stays off the path from the task's end to its report.
    prepared: Option<tokio::task::JoinHandle<Result<seal::PreparedKey, seal::SealError>>>,
}

impl Drop for Unsealed {
    fn drop(&mut self) {
        if self.files == 0 {
            return;
        }
        if let Err(error) = sandbox::remove_tree(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), %error, "cannot remove a private attempt's files");
        }
    }
}

fn broken(error: impl std::fmt::Display) -> Outcome {
    Outcome::SealBroken {
        message: error.to_string(),
    }
}

fn node_error(error: impl std::fmt::Display) -> Outcome {
    Outcome::NodeError {
        message: error.to_string(),
    }
}

impl Runner {
    /// The job's key and manifest for a private attempt; `None` for a job in the clear. An
    /// attempt whose key was not wrapped to this node ends as `no_key` before it reads
    /// anything.
    pub(crate) async fn unseal(
        &self,
        client: &Client,
        runtime: &JobRuntime,
        grant: &AttemptGrant,
        held: &ForAttempt<'_>,
    ) -> Result<Option<Unsealed>, Outcome> {
        let Some(private) = &runtime.private else {
            return Ok(None);
        };
        let wrapped = private
            .key
            .as_ref()
            .and_then(|key| key.0.parse::<seal::WrappedKey>().ok())
            .ok_or(Outcome::NoKey)?;
        let job_key = seal::unwrap(&wrapped, &self.secret, WrapContext::JobKey)
            .map_err(|_| Outcome::NoKey)?;
        let sealed = match (&private.manifest, private.manifest.inline_bytes()) {
            (_, Some(inline)) => inline.map_err(broken)?,
            (wire::private::ManifestRef::Blob(hash), None) => held
                .fetch(|| self.cache.bytes(client, hash))
                .await
                .map_err(node_error)?,
            (wire::private::ManifestRef::Inline(_), None) => {
                unreachable!("an inline manifest has inline bytes")
            }
        };
        let manifest = Manifest::open(&sealed, &job_key).map_err(broken)?;
        // Made with the first file that needs it: a task with no inputs and no outputs has none.
        let dir = self.work_dir.join(format!("private-{}", grant.attempt_id));
        let (requester, context) = (manifest.requester, output_context(grant.attempt_id));
        let prepared = tokio::task::spawn_blocking(move || seal::prepare_to(&requester, context));
        Ok(Some(Unsealed {
            job_key,
            requester,
            manifest,
            dir,
            files: 0,
            prepared: Some(prepared),
        }))
    }

    /// Opens the sealed blob `hash` into the attempt's directory and checks its plaintext
    /// against the manifest; gives the opened file.
    pub(crate) async fn open_sealed(
        &self,
        client: &Client,
        unsealed: &mut Unsealed,
        hash: &BlobHash,
        held: &ForAttempt<'_>,
    ) -> Result<PathBuf, Outcome> {
        let expected = unsealed.expected_plain(hash)?;
        let sealed = held
            .fetch(|| self.cache.file(client, hash))
            .await
            .map_err(node_error)?;
        let target = unsealed.next_file("in")?;
        let key = unsealed.job_key.clone();
        let opened = target.clone();
        let plain = tokio::task::spawn_blocking(move || open_file(&key, &sealed, &opened))
            .await
            .map_err(node_error)??;
        same_plain(hash, plain, expected)?;
        Ok(target)
    }

    /// The sealed blob `hash` opened into memory and checked against the manifest: a sealed
    /// module, which never lies opened on disk.
    pub(crate) async fn open_sealed_bytes(
        &self,
        client: &Client,
        unsealed: &Unsealed,
        hash: &BlobHash,
        held: &ForAttempt<'_>,
    ) -> Result<Vec<u8>, Outcome> {
        let expected = unsealed.expected_plain(hash)?;
        let sealed = held
            .fetch(|| self.cache.bytes(client, hash))
            .await
            .map_err(node_error)?;
        let plain = seal::open_bytes(&unsealed.job_key, &sealed).map_err(broken)?;
        same_plain(hash, BlobHash::of(&plain), expected)?;
        Ok(plain)
    }

    /// The job's mount as a tree of opened files in the attempt's directory.
    pub(crate) async fn open_mount(
        &self,
        client: &Client,
        unsealed: &mut Unsealed,
        mount: &wire::Mount,
        held: &ForAttempt<'_>,
    ) -> Result<PathBuf, Outcome> {
        let root = unsealed.next_file("mount")?;
        for file in &mount.files {
            let opened = self.open_sealed(client, unsealed, &file.blob, held).await?;
            // The paths were validated by the coordinator: relative, no `..`.
            let target = root.join(&file.path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(node_error)?;
            }
            std::fs::rename(&opened, &target).map_err(node_error)?;
        }
        std::fs::create_dir_all(&root).map_err(node_error)?;
        Ok(root)
    }
}

impl Unsealed {
    /// The plaintext hash the manifest gives the sealed blob `hash`; a blob it does not name
    /// belongs to another job.
    fn expected_plain(&self, hash: &BlobHash) -> Result<BlobHash, Outcome> {
        self.manifest.plain.get(hash).copied().ok_or_else(|| {
            broken(format!(
                "blob {hash} is not in the job's manifest: it belongs to another job"
            ))
        })
    }

    /// A new name in the attempt's private directory, made with the first.
    fn next_file(&mut self, kind: &str) -> Result<PathBuf, Outcome> {
        if self.files == 0 {
            make_private_dir(&self.dir).map_err(node_error)?;
        }
        self.files += 1;
        Ok(self.dir.join(format!("{kind}-{}", self.files)))
    }

    /// A fresh key wrapped to the requester for `attempt`, to seal one output with: the one
    /// made while the task ran, then new ones.
    pub(crate) async fn output_key(
        &mut self,
        attempt: wire::AttemptId,
    ) -> Result<seal::PreparedKey, String> {
        let prepared = match self.prepared.take() {
            Some(handle) => handle.await.map_err(|error| error.to_string())?,
            None => seal::prepare_to(&self.requester, output_context(attempt)),
        };
        prepared.map_err(|error| error.to_string())
    }

    /// `bytes` sealed to the requester under `key`.
    pub(crate) fn seal_bytes(key: seal::PreparedKey, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let mut sealed = Vec::with_capacity(seal::sealed_to_len(bytes.len() as u64) as usize);
        seal::seal_to_prepared(key, bytes, &mut sealed).map_err(|error| error.to_string())?;
        Ok(sealed)
    }

    /// The output file at `plain` sealed to the requester under `key`, as a file beside the
    /// attempt's other private files.
    pub(crate) fn seal_file(
        &mut self,
        key: seal::PreparedKey,
        plain: &Path,
    ) -> Result<PathBuf, String> {
        let target = self
            .next_file("out")
            .map_err(|outcome| outcome.to_string())?;
        let failed = |error: std::io::Error| format!("{}: {error}", target.display());
        let reader = BufReader::new(std::fs::File::open(plain).map_err(failed)?);
        let mut writer = BufWriter::new(std::fs::File::create(&target).map_err(failed)?);
        seal::seal_to_prepared(key, reader, &mut writer).map_err(|error| error.to_string())?;
        writer.flush().map_err(failed)?;
        Ok(target)
    }

    /// The digest replicas compare: stdout, stderr and each output by path, in plaintext,
    /// keyed by the job's key. Every part is length-prefixed, so two results never run
    /// together into the same bytes.
    pub(crate) fn result_digest(
        &self,
        stdout: &[u8],
        stderr: &[u8],
        outputs: &[sandbox::OutputFile],
    ) -> Result<String, String> {
        let mut digester = seal::ResultDigester::new(&self.job_key);
        for stream in [stdout, stderr] {
            digester.update(&(stream.len() as u64).to_le_bytes());
            digester.update(stream);
        }
        let mut sorted: Vec<&sandbox::OutputFile> = outputs.iter().collect();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        digester.update(&(sorted.len() as u64).to_le_bytes());
        for file in sorted {
            digester.update(&(file.path.len() as u64).to_le_bytes());
            digester.update(file.path.as_bytes());
            let bytes = std::fs::read(&file.host_path)
                .map_err(|error| format!("{}: {error}", file.host_path.display()))?;
            digester.update(&(bytes.len() as u64).to_le_bytes());
            digester.update(&bytes);
        }
        Ok(hex::encode(digester.finalize()))
    }
}

/// Refuses a blob that opened to other bytes than the manifest names.
fn same_plain(hash: &BlobHash, plain: BlobHash, expected: BlobHash) -> Result<(), Outcome> {
    if plain == expected {
        return Ok(());
    }
    Err(broken(format!(
        "blob {hash} opened to other bytes than the job's manifest names"
    )))
}

fn output_context(attempt: wire::AttemptId) -> WrapContext {
    WrapContext::OutputKey { attempt: attempt.0 }
}

/// Opens the sealed file `sealed` into `target`, giving the plaintext's hash; a file that does
/// not open is removed.
fn open_file(key: &DataKey, sealed: &Path, target: &Path) -> Result<BlobHash, Outcome> {
    let reader = BufReader::new(std::fs::File::open(sealed).map_err(node_error)?);
    let file = std::fs::File::create(target).map_err(node_error)?;
    let mut writer = seal::Hashing::new(BufWriter::new(file));
    let opened = seal::open(key, reader, &mut writer).and_then(|_| {
        writer.flush().map_err(|source| seal::SealError::Io {
            doing: "writing the opened plaintext",
            source,
        })
    });
    if let Err(error) = opened {
        let _ = std::fs::remove_file(target);
        return Err(match error {
            seal::SealError::Io { .. } => node_error(error),
            error => broken(error),
        });
    }
    Ok(writer.finish().1)
}

fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
