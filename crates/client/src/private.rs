//! Private jobs on the requester's side: choosing the nodes trusted with a job's key (each
//! node's encryption key checked against its identity), sealing the job's files before they
//! leave this machine, wrapping more nodes in later, and opening results.
//!
//! The module stays in the clear: the coordinator checks it before any node compiles it.
//! Inputs, stdin and mount files are sealed under the job's key; the manifest, sealed under
//! the same key, names the requester's key (outputs are sealed to it) and each sealed blob's
//! plaintext hash, which nodes check after opening.

use std::collections::{BTreeMap, HashMap};

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use jobspec::{JobPlan, PrivatePlan};
use seal::{DataKey, EncryptionKey, EncryptionSecret, Manifest, WrapContext};
use wire::{BlobHash, JobId, JobSubmission, NodeId, NodeView};

use crate::{Client, ClientError, Result};

/// The nodes a job's key is wrapped to, with their encryption keys.
pub type KeyHolders = BTreeMap<NodeId, EncryptionKey>;

fn sealing(error: seal::SealError) -> ClientError {
    ClientError::Seal(error.to_string())
}

/// The node's encryption key, when it has one that its identity signed and its identity is
/// the one its id derives from: what a coordinator cannot forge for a node named by id.
pub fn verified_encryption_key(node: &NodeView) -> Option<EncryptionKey> {
    let public_key: [u8; 32] = hex::decode(&node.public_key).ok()?.try_into().ok()?;
    if wire::auth::node_id_of(&public_key) != node.node_id {
        return None;
    }
    let published = node.capabilities.encryption_key.as_ref()?;
    published.verify(&public_key).ok()?;
    published.key.parse().ok()
}

/// Of `nodes`, those `trust` picks: each node it names (which must be there with a key), and
/// each node with a verified key that carries every label it and `required` name. With nothing
/// named, every node with a verified key and the required labels.
pub fn pick_key_holders(
    nodes: &[NodeView],
    trust: &PrivatePlan,
    required: &BTreeMap<String, String>,
) -> Result<KeyHolders> {
    let mut holders = KeyHolders::new();
    for wanted in &trust.nodes {
        let node = nodes.iter().find(|node| node.node_id == *wanted);
        let key = node.and_then(verified_encryption_key).ok_or_else(|| {
            ClientError::Seal(format!(
                "node {wanted} is not in the pool with an encryption key signed by its \
                 identity: list the nodes that can run private jobs with `crowdcloud nodes`"
            ))
        })?;
        holders.insert(*wanted, key);
    }
    let by_labels = !trust.labels.is_empty() || trust.nodes.is_empty();
    let has = |node: &NodeView, labels: &BTreeMap<String, String>| {
        labels.iter().all(|(k, v)| node.labels.get(k) == Some(v))
    };
    for node in nodes.iter().filter(|_| by_labels) {
        if has(node, &trust.labels)
            && has(node, required)
            && let Some(key) = verified_encryption_key(node)
        {
            holders.insert(node.node_id, key);
        }
    }
    if holders.is_empty() {
        return Err(ClientError::Seal(
            "no node of the pool can be trusted with this private job: none has an encryption \
             key and the labels asked for; let an agent join, or name nodes (`crowdcloud nodes`)"
                .to_owned(),
        ));
    }
    Ok(holders)
}

impl Client {
    /// Seals every file the plan names but the module, uploads them and the manifest, and
    /// returns the private submission with the job's key wrapped to `holders` and to the
    /// requester.
    pub async fn upload_private_plan(
        &self,
        plan: &JobPlan,
        requester: &EncryptionSecret,
        holders: &KeyHolders,
    ) -> Result<JobSubmission> {
        let job_key = DataKey::generate();
        let requester_public = requester.public();
        let module_sealed = plan.private.as_ref().is_some_and(|private| private.module);
        let walked = crate::submit::walk_mounts(plan)?;
        let mut paths = crate::submit::data_files(plan, &walked);
        if module_sealed {
            paths.push(&plan.module);
        }
        let sealed = self.seal_and_upload(&job_key, paths).await?;
        let manifest = Manifest {
            requester: requester_public,
            plain: sealed.values().copied().collect(),
        };
        let manifest = self.manifest_ref(manifest.seal(&job_key)).await?;
        // The wraps' public-key work runs while the module's upload waits on the network.
        let wrapping = {
            let (job_key, holders) = (job_key.clone(), holders.clone());
            tokio::task::spawn_blocking(move || {
                private_job(&job_key, &requester_public, manifest, &holders)
            })
        };
        let module = match module_sealed {
            true => sealed[&plan.module].0,
            false => self.upload_file(&plan.module).await?.0,
        };
        let mut private = wrapping
            .await
            .map_err(|error| ClientError::Seal(error.to_string()))??;
        private.module_sealed = module_sealed;
        let blob = |path: &Path| sealed[path].0;
        Ok(JobSubmission {
            mounts: walked
                .iter()
                .map(|(mount, files)| crate::submit::mount_of(mount, files, &blob))
                .collect(),
            tasks: plan
                .tasks
                .iter()
                .map(|task| crate::submit::task_of(task, &blob))
                .collect(),
            private: Some(Box::new(private)),
            ..plan.bare_submission(module)
        })
    }

    /// A small sealed manifest travels in the job; a large one is uploaded.
    async fn manifest_ref(&self, sealed: Vec<u8>) -> Result<wire::private::ManifestRef> {
        if sealed.len() <= wire::private::MANIFEST_INLINE_BYTES_MAX {
            return Ok(wire::private::ManifestRef::inline(&sealed));
        }
        Ok(wire::private::ManifestRef::Blob(
            self.upload_bytes(sealed.into()).await?,
        ))
    }

    /// The job's key wrapped to its requester and every node that may run it.
    pub async fn job_keys(&self, job: JobId) -> Result<wire::PrivateJob> {
        self.get(&format!("/v1/jobs/{job}/keys")).await
    }

    /// Wraps a private job's key to `holders` too: unwrapped with the requester's key, so the
    /// coordinator never sees it.
    pub async fn grant_keys(
        &self,
        job: JobId,
        requester: &EncryptionSecret,
        holders: &KeyHolders,
    ) -> Result<wire::KeysGranted> {
        let private = self.job_keys(job).await?;
        let wrapped: seal::WrappedKey = private.requester_wrap.0.parse().map_err(sealing)?;
        let job_key = seal::unwrap(&wrapped, requester, WrapContext::JobKey).map_err(|_| {
            ClientError::Seal(
                "this job's key was not wrapped to your key: grant it from the device that \
                 submitted it, or import that device's key (`crowdcloud keys import`)"
                    .to_owned(),
            )
        })?;
        let grant = wire::KeyGrant {
            keys: wrap_to(&job_key, holders)?,
        };
        self.post(&format!("/v1/jobs/{job}/keys"), &grant).await
    }
}

fn private_job(
    job_key: &DataKey,
    requester: &EncryptionKey,
    manifest: wire::private::ManifestRef,
    holders: &KeyHolders,
) -> Result<wire::PrivateJob> {
    let requester_wrap = seal::wrap(job_key, requester, WrapContext::JobKey).map_err(sealing)?;
    Ok(wire::PrivateJob {
        requester_key: requester.to_hex(),
        requester_wrap: wire::WrappedKey(requester_wrap.to_hex()),
        manifest,
        keys: wrap_to(job_key, holders)?,
        module_sealed: false,
    })
}

fn wrap_to(job_key: &DataKey, holders: &KeyHolders) -> Result<BTreeMap<NodeId, wire::WrappedKey>> {
    holders
        .iter()
        .map(|(node, key)| {
            let wrapped = seal::wrap(job_key, key, WrapContext::JobKey).map_err(sealing)?;
            Ok((*node, wire::WrappedKey(wrapped.to_hex())))
        })
        .collect()
}

impl Client {
    /// Seals each distinct file of `paths` under `job_key` and uploads it, a few at a time so
    /// that sealing one overlaps uploading another; gives each file's ciphertext and
    /// plaintext hashes.
    async fn seal_and_upload(
        &self,
        job_key: &DataKey,
        paths: Vec<&Path>,
    ) -> Result<HashMap<PathBuf, (BlobHash, BlobHash)>> {
        crate::submit::each_file_once(paths, SEALS_AT_ONCE, |path| async move {
            self.seal_one(job_key, &path).await
        })
        .await
    }

    /// Seals one file and uploads the ciphertext: from memory when it is small, else through a
    /// temporary file. Gives the ciphertext's and the plaintext's hashes.
    async fn seal_one(&self, job_key: &DataKey, path: &Path) -> Result<(BlobHash, BlobHash)> {
        let size = std::fs::metadata(path)
            .map_err(|error| io(path, error))?
            .len();
        let key = job_key.clone();
        let source = path.to_owned();
        if size <= SEAL_IN_MEMORY_BYTES_MAX {
            let (plain, sealed) =
                tokio::task::spawn_blocking(move || seal_to_memory(&key, &source))
                    .await
                    .map_err(|error| ClientError::Seal(error.to_string()))??;
            let ciphertext = BlobHash::of(&sealed);
            self.put_blob(ciphertext, bytes::Bytes::from(sealed))
                .await?;
            return Ok((ciphertext, plain));
        }
        let sealed_file = tempfile::NamedTempFile::new().map_err(|error| io(path, error))?;
        let target = sealed_file.path().to_owned();
        let (plain, ciphertext) =
            tokio::task::spawn_blocking(move || seal_file(&key, &source, &target))
                .await
                .map_err(|error| ClientError::Seal(error.to_string()))??;
        self.put_file(ciphertext, sealed_file.path()).await?;
        Ok((ciphertext, plain))
    }
}

/// Files sealed and uploaded at once: one seals while another uploads.
const SEALS_AT_ONCE: usize = 2;
/// A file up to this size is sealed in memory; a larger one through a temporary file.
const SEAL_IN_MEMORY_BYTES_MAX: u64 = 64 << 20;

/// Seals the file at `source` into memory; gives the plaintext's hash and the ciphertext.
fn seal_to_memory(key: &DataKey, source: &Path) -> Result<(BlobHash, Vec<u8>)> {
    let file = std::fs::File::open(source).map_err(|error| io(source, error))?;
    let mut reader = seal::Hashing::new(BufReader::new(file));
    let mut sealed = Vec::new();
    seal::seal(key, &mut reader, &mut sealed).map_err(sealing)?;
    Ok((reader.finish().1, sealed))
}

fn io(path: &Path, source: std::io::Error) -> ClientError {
    ClientError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Seals `source` into `target`, streaming; gives the hashes of the plaintext and of the
/// ciphertext.
fn seal_file(key: &DataKey, source: &Path, target: &Path) -> Result<(BlobHash, BlobHash)> {
    let file = std::fs::File::open(source).map_err(|error| io(source, error))?;
    let mut reader = seal::Hashing::new(BufReader::new(file));
    let file = std::fs::File::create(target).map_err(|error| io(target, error))?;
    let mut writer = seal::Hashing::new(BufWriter::new(file));
    seal::seal(key, &mut reader, &mut writer).map_err(sealing)?;
    writer.flush().map_err(|error| io(target, error))?;
    Ok((reader.finish().1, writer.finish().1))
}

/// Opens a result blob of a private job, sealed to the requester for `attempt`, from `sealed`
/// into `target`; a file that does not open is removed.
pub fn open_result(
    secret: &EncryptionSecret,
    attempt: wire::AttemptId,
    sealed: &Path,
    target: &Path,
) -> Result<u64> {
    let reader = BufReader::new(std::fs::File::open(sealed).map_err(|error| io(sealed, error))?);
    let file = std::fs::File::create(target).map_err(|error| io(target, error))?;
    let mut writer = BufWriter::new(file);
    let context = WrapContext::OutputKey { attempt: attempt.0 };
    let opened = seal::open_from(secret, context, reader, &mut writer)
        .map_err(sealing)
        .and_then(|size| {
            writer
                .flush()
                .map(|()| size)
                .map_err(|error| io(target, error))
        });
    if opened.is_err() {
        drop(writer);
        let _ = std::fs::remove_file(target);
    }
    opened
}
