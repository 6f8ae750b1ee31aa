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
use wire::{
    BlobHash, InputFile, JobId, JobSubmission, Mount, MountFile, NodeId, NodeView, TaskSpec,
};

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
        let mut sealer = Sealer {
            client: self,
            job_key: &job_key,
            sealed: HashMap::new(),
            manifest: Manifest {
                requester: requester.public(),
                plain: BTreeMap::new(),
            },
        };
        let mut mounts = Vec::with_capacity(plan.mounts.len());
        for mount in &plan.mounts {
            let mut files = Vec::new();
            for (relative, path) in crate::submit::walk(&mount.dir)? {
                let blob = sealer.upload(&path).await?;
                files.push(MountFile {
                    path: relative,
                    blob,
                });
            }
            mounts.push(Mount {
                guest_path: mount.guest_path.clone(),
                files,
            });
        }
        let mut tasks = Vec::with_capacity(plan.tasks.len());
        for task in &plan.tasks {
            let stdin = match &task.stdin {
                Some(path) => Some(sealer.upload(path).await?),
                None => None,
            };
            let mut inputs = Vec::with_capacity(task.inputs.len());
            for (name, path) in &task.inputs {
                let blob = sealer.upload(path).await?;
                inputs.push(InputFile {
                    name: name.clone(),
                    blob,
                });
            }
            tasks.push(TaskSpec {
                args: task.args.clone(),
                stdin,
                inputs,
            });
        }
        let manifest = self
            .upload_bytes(sealer.manifest.seal(&job_key).into())
            .await?;
        let private = private_job(&job_key, requester, manifest, holders)?;
        let mut submission = self.upload_plan(&clear_part(plan)).await?;
        submission.mounts = mounts;
        submission.tasks = tasks;
        submission.private = Some(Box::new(private));
        Ok(submission)
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

/// The plan without the files that are sealed: what `upload_plan` uploads in the clear.
fn clear_part(plan: &JobPlan) -> JobPlan {
    JobPlan {
        mounts: Vec::new(),
        tasks: plan
            .tasks
            .iter()
            .map(|task| jobspec::TaskPlan {
                args: task.args.clone(),
                ..jobspec::TaskPlan::default()
            })
            .collect(),
        ..plan.clone()
    }
}

fn private_job(
    job_key: &DataKey,
    requester: &EncryptionSecret,
    manifest: BlobHash,
    holders: &KeyHolders,
) -> Result<wire::PrivateJob> {
    let requester_wrap =
        seal::wrap(job_key, &requester.public(), WrapContext::JobKey).map_err(sealing)?;
    Ok(wire::PrivateJob {
        requester_key: requester.public().to_hex(),
        requester_wrap: wire::WrappedKey(requester_wrap.to_hex()),
        manifest,
        keys: wrap_to(job_key, holders)?,
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

/// Seals each local file once per job and uploads it, noting its plaintext hash.
struct Sealer<'a> {
    client: &'a Client,
    job_key: &'a DataKey,
    sealed: HashMap<PathBuf, BlobHash>,
    manifest: Manifest,
}

impl Sealer<'_> {
    async fn upload(&mut self, path: &Path) -> Result<BlobHash> {
        if let Some(hash) = self.sealed.get(path) {
            return Ok(*hash);
        }
        let key = self.job_key.clone();
        let source = path.to_owned();
        let sealed_file = tempfile::NamedTempFile::new().map_err(|error| io(path, error))?;
        let target = sealed_file.path().to_owned();
        let (plain, ciphertext) =
            tokio::task::spawn_blocking(move || seal_file(&key, &source, &target))
                .await
                .map_err(|error| ClientError::Seal(error.to_string()))??;
        self.client
            .put_file(ciphertext, sealed_file.path())
            .await
            .map_err(|source| ClientError::Upload {
                path: path.display().to_string(),
                source: Box::new(source),
            })?;
        self.manifest.plain.insert(ciphertext, plain);
        self.sealed.insert(path.to_owned(), ciphertext);
        Ok(ciphertext)
    }
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
    let mut reader = Hashing {
        inner: BufReader::new(file),
        hasher: blake3::Hasher::new(),
    };
    let file = std::fs::File::create(target).map_err(|error| io(target, error))?;
    let mut writer = Hashing {
        inner: BufWriter::new(file),
        hasher: blake3::Hasher::new(),
    };
    seal::seal(key, &mut reader, &mut writer).map_err(sealing)?;
    writer.inner.flush().map_err(|error| io(target, error))?;
    Ok((
        BlobHash::from(reader.hasher.finalize()),
        BlobHash::from(writer.hasher.finalize()),
    ))
}

/// Reads or writes through, hashing what passes.
struct Hashing<T> {
    inner: T,
    hasher: blake3::Hasher,
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..read]);
        Ok(read)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
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
