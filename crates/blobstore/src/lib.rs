//! Content-addressed blobs (modules, inputs, outputs) through the `object_store` crate: a local
//! directory by default, any S3-compatible store for scale-out ([`BlobLocation`]). This crate
//! is the only one that knows either engine.
//!
//! Invariants:
//! - A blob is stored under the BLAKE3 hash of its bytes and nothing else: every upload is
//!   hashed as it streams in and is made visible only if the hash matches the name it was sent
//!   under. A mismatch leaves nothing behind.
//! - Blobs are immutable; storing one that exists is a no-op.
//! - No blob is held in memory whole on the way in, except one of at most `SMALL_BLOB_BYTES`
//!   (1 MiB), which is checked whole and stored in one request; reads stream.
//! - In a local directory, a stored blob is on disk (file and directory entry synced) before
//!   `put` returns, so a blob the state store records survives a power cut as the record does.
//! - A local directory is readable by its owner only (0700, tightened if it was not), and so
//!   is every blob file (0600) and shard directory (0700): blobs are other people's data.
//! - In an S3 bucket, a small upload is one PUT made only once its hash matched, and a larger
//!   one a multipart upload completed only once its hash matched, and aborted otherwise; a stored blob is as durable as the store makes a completed
//!   upload. Who may read the bucket is its owner's to set: the coordinator needs read, write
//!   and delete on the prefix, and nobody else needs anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

use wire::BlobHash;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} is not stored; upload it first")]
    NotFound(BlobHash),
    #[error(
        "the bytes hash to {actual}, not to {claimed}: the upload was corrupted or names the wrong hash"
    )]
    HashMismatch { claimed: BlobHash, actual: BlobHash },
    #[error("the blob is larger than the {max_bytes} bytes allowed")]
    TooLarge { max_bytes: u64 },
    #[error("the upload stream failed: {0}")]
    Upload(String),
    #[error("blob storage failed: {0}; check the blob directory or object store")]
    Storage(String),
    #[error(
        "{0:?} is not a place for blobs: give a directory, or s3://BUCKET/PREFIX with the endpoint \
         and keys in AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    Location(String),
}

/// Where a pool keeps its blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    /// Files under a directory of this machine.
    Dir(PathBuf),
    /// Objects under `prefix` in an S3 bucket, on AWS or any S3-compatible store (MinIO,
    /// SeaweedFS, Garage, Ceph). Its endpoint, region and keys come from the environment, as
    /// for every S3 tool: `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, and `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint.
    S3 { bucket: String, prefix: String },
}

impl std::str::FromStr for BlobLocation {
    type Err = BlobError;

    /// `s3://BUCKET[/PREFIX]`, or a directory path.
    fn from_str(text: &str) -> Result<Self, BlobError> {
        let Some(rest) = text.strip_prefix("s3://") else {
            if text.is_empty() || text.contains("://") {
                return Err(BlobError::Location(text.to_owned()));
            }
            return Ok(Self::Dir(PathBuf::from(text)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        let prefix = prefix.trim_matches('/');
        let prefix_ok = prefix
            .split('/')
            .all(|part| part != "." && part != ".." && !part.contains(['\\', '\0']))
            && !prefix.contains("//");
        if !bucket_ok || !prefix_ok {
            return Err(BlobError::Location(text.to_owned()));
        }
        Ok(Self::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

impl std::fmt::Display for BlobLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(dir) => write!(f, "{}", dir.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl From<object_store::Error> for BlobError {
    fn from(error: object_store::Error) -> Self {
        BlobError::Storage(error.to_string())
    }
}

#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// The directory of a local store, whose files `object_store` writes without syncing.
    local_dir: Option<PathBuf>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobStore({})", self.store)
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Parts of a streamed upload are gathered to this size before they are written.
const UPLOAD_CHUNK_BYTES: usize = 8 << 20;

/// Uploads that end within this many bytes are held whole, checked, and stored in one request
/// instead of a multipart upload's three.
const SMALL_BLOB_BYTES: u64 = 1 << 20;

impl BlobStore {
    /// Blobs where `location` says: a directory is created if needed; a bucket must exist.
    pub fn open(location: &BlobLocation) -> Result<Self, BlobError> {
        match location {
            BlobLocation::Dir(dir) => Self::local(dir),
            BlobLocation::S3 { bucket, prefix } => {
                Self::s3(AmazonS3Builder::from_env().with_bucket_name(bucket), prefix)
            }
        }
    }

    /// Blobs under `prefix` of the bucket `builder` names.
    fn s3(builder: AmazonS3Builder, prefix: &str) -> Result<Self, BlobError> {
        // reqwest is built without a TLS provider of its own: rustls on ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s3 = builder.build()?;
        Ok(if prefix.is_empty() {
            Self::new(Arc::new(s3))
        } else {
            Self::new(Arc::new(PrefixStore::new(s3, prefix)))
        })
    }

    /// Blobs in files under `dir`, created if needed.
    pub fn local(dir: &Path) -> Result<Self, BlobError> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .and_then(|()| set_mode(dir, 0o700))
            .map_err(|error| {
                BlobError::Storage(format!("cannot create {}: {error}", dir.display()))
            })?;
        let store = LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self {
            store: Arc::new(store),
            local_dir: Some(dir.to_owned()),
        })
    }

    /// Blobs in any object store; durability is the store's.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            local_dir: None,
        }
    }

    /// Syncs a blob just stored in a local directory: its file, then the directory entries
    /// that name it (the rename that made it visible lives in them).
    async fn sync_stored(&self, hash: &BlobHash) -> Result<(), BlobError> {
        let Some(dir) = &self.local_dir else {
            return Ok(());
        };
        let hex = hash.to_hex();
        let shard = dir.join(&hex[..2]);
        // `object_store` makes them with the process's umask, often open to everyone.
        let paths = [
            (shard.join(&hex), 0o600),
            (shard, 0o700),
            (dir.clone(), 0o700),
        ];
        tokio::task::spawn_blocking(move || {
            for (path, mode) in &paths {
                set_mode(path, *mode)
                    .and_then(|()| std::fs::File::open(path))
                    .and_then(|file| file.sync_all())
                    .map_err(|error| {
                        BlobError::Storage(format!("cannot sync {}: {error}", path.display()))
                    })?;
            }
            Ok(())
        })
        .await
        .map_err(|error| BlobError::Storage(format!("syncing a blob stopped: {error}")))?
    }

    fn path(hash: &BlobHash) -> ObjectPath {
        let hex = hash.to_hex();
        ObjectPath::from(format!("{}/{}", &hex[..2], hex))
    }

    /// Fails unless the store answers: a bucket that is missing, or keys it refuses, show
    /// here rather than at the first upload. Lists at most the top level: 256 shards.
    pub async fn check(&self) -> Result<(), BlobError> {
        self.store
            .list_with_delimiter(None)
            .await
            .map(|_| ())
            .map_err(|error| BlobError::Storage(format!("the blob store does not answer: {error}")))
    }

    pub async fn exists(&self, hash: &BlobHash) -> Result<bool, BlobError> {
        match self.store.head(&Self::path(hash)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// The size of the stored blob `hash`; `None` when it is not stored.
    pub async fn size(&self, hash: &BlobHash) -> Result<Option<u64>, BlobError> {
        match self.store.head(&Self::path(hash)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Stores `bytes` as `hash`, after checking that they hash to it.
    pub async fn put(&self, hash: BlobHash, bytes: Bytes) -> Result<u64, BlobError> {
        let actual = BlobHash::of(&bytes);
        if actual != hash {
            return Err(BlobError::HashMismatch {
                claimed: hash,
                actual,
            });
        }
        let size = bytes.len() as u64;
        if !self.exists(&hash).await? {
            self.store.put(&Self::path(&hash), bytes.into()).await?;
            self.sync_stored(&hash).await?;
        }
        Ok(size)
    }

    /// Stores a streamed upload as `hash`; refuses it past `max_bytes` or if the bytes do not
    /// hash to `hash`. Returns the size. A blob already stored is only checked, not written
    /// again: the same hash is the same bytes, and many tasks write the same small files
    /// (an empty partition, a common header), each of which would otherwise cost a write and
    /// three syncs on a disk. In a bucket a small upload is stored without asking first: the
    /// question costs a request as the write does, and writing the same bytes again changes
    /// nothing.
    pub async fn put_stream<S, E>(
        &self,
        hash: BlobHash,
        body: S,
        max_bytes: u64,
    ) -> Result<u64, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        if self.local_dir.is_some() && self.exists(&hash).await? {
            return check_only(hash, body, max_bytes).await;
        }
        self.write_stream(hash, body, max_bytes).await
    }

    /// Writes an upload not yet stored: one request once it ended within [`SMALL_BLOB_BYTES`]
    /// (most outputs, stdout and stderr are small), a multipart upload past that.
    async fn write_stream<S, E>(
        &self,
        hash: BlobHash,
        mut body: S,
        max_bytes: u64,
    ) -> Result<u64, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let mut head = Vec::new();
        let mut head_bytes = 0u64;
        while head_bytes <= SMALL_BLOB_BYTES.min(max_bytes) {
            match body.next().await {
                None => return self.write_small(hash, head, max_bytes).await,
                Some(Err(error)) => return Err(BlobError::Upload(error.to_string())),
                Some(Ok(chunk)) => {
                    head_bytes += chunk.len() as u64;
                    head.push(chunk);
                }
            }
        }
        if head_bytes > max_bytes {
            return Err(BlobError::TooLarge { max_bytes });
        }
        let whole = futures::stream::iter(head.into_iter().map(Ok::<Bytes, E>)).chain(body);
        // A large upload is worth the question a small one skips (see `put_stream`).
        if self.local_dir.is_none() && self.exists(&hash).await? {
            return check_only(hash, whole, max_bytes).await;
        }
        self.write_multipart(hash, whole, max_bytes).await
    }

    /// Stores the whole of a small upload in one request, once it hashed to its name.
    async fn write_small(
        &self,
        hash: BlobHash,
        chunks: Vec<Bytes>,
        max_bytes: u64,
    ) -> Result<u64, BlobError> {
        let mut checked = Checked::new(hash, max_bytes);
        for chunk in &chunks {
            checked.take(chunk)?;
        }
        let size = checked.finish()?;
        let payload: object_store::PutPayload = chunks.into_iter().collect();
        self.store.put(&Self::path(&hash), payload).await?;
        self.sync_stored(&hash).await?;
        Ok(size)
    }

    /// Streams `body` into a multipart upload, completed only once it hashed to its name and
    /// aborted otherwise.
    async fn write_multipart<S, E>(
        &self,
        hash: BlobHash,
        mut body: S,
        max_bytes: u64,
    ) -> Result<u64, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let upload = self.store.put_multipart(&Self::path(&hash)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_CHUNK_BYTES);
        let mut checked = Checked::new(hash, max_bytes);
        let failure = loop {
            match body.next().await {
                None => break checked.finish().err(),
                Some(Err(error)) => break Some(BlobError::Upload(error.to_string())),
                Some(Ok(chunk)) => {
                    if let Err(error) = checked.take(&chunk) {
                        break Some(error);
                    }
                    if let Err(error) = writer.wait_for_capacity(2).await {
                        break Some(error.into());
                    }
                    writer.write(&chunk);
                }
            }
        };
        match failure {
            Some(error) => {
                if let Err(abort_error) = writer.abort().await {
                    tracing::warn!(%abort_error, "could not discard a refused upload");
                }
                Err(error)
            }
            None => {
                writer.finish().await?;
                self.sync_stored(&hash).await?;
                Ok(checked.size)
            }
        }
    }

    /// Deletes a blob; one that is not there counts as deleted.
    pub async fn delete(&self, hash: &BlobHash) -> Result<(), BlobError> {
        match self.store.delete(&Self::path(hash)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// The whole blob in memory; for blobs known to be small.
    pub async fn get(&self, hash: &BlobHash) -> Result<Bytes, BlobError> {
        match self.store.get(&Self::path(hash)).await {
            Ok(result) => Ok(result.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(*hash)),
            Err(error) => Err(error.into()),
        }
    }

    /// The blob's size and a stream of its bytes.
    pub async fn get_stream(
        &self,
        hash: &BlobHash,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, BlobError>>), BlobError> {
        match self.store.get(&Self::path(hash)).await {
            Ok(result) => {
                let size = result.meta.size;
                Ok((size, result.into_stream().map_err(BlobError::from).boxed()))
            }
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound(*hash)),
            Err(error) => Err(error.into()),
        }
    }
}

/// An upload's bytes as they come: counted against its bound and hashed, to be compared with
/// the hash it claims at the end.
/// Reads an upload of a blob already stored to its end, only checking it: its size within
/// `max_bytes`, and its bytes hashing to `hash`.
async fn check_only<S, E>(hash: BlobHash, mut body: S, max_bytes: u64) -> Result<u64, BlobError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: std::fmt::Display,
{
    let mut checked = Checked::new(hash, max_bytes);
    while let Some(chunk) = body.next().await {
        checked.take(&chunk.map_err(|error| BlobError::Upload(error.to_string()))?)?;
    }
    checked.finish()
}

struct Checked {
    claimed: BlobHash,
    max_bytes: u64,
    size: u64,
    hasher: blake3::Hasher,
}

impl Checked {
    fn new(claimed: BlobHash, max_bytes: u64) -> Self {
        Self {
            claimed,
            max_bytes,
            size: 0,
            hasher: blake3::Hasher::new(),
        }
    }

    fn take(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.size += chunk.len() as u64;
        if self.size > self.max_bytes {
            return Err(BlobError::TooLarge {
                max_bytes: self.max_bytes,
            });
        }
        self.hasher.update(chunk);
        Ok(())
    }

    /// The size, once the bytes hash to the claimed hash.
    fn finish(&self) -> Result<u64, BlobError> {
        let actual = BlobHash::from(self.hasher.finalize());
        if actual != self.claimed {
            return Err(BlobError::HashMismatch {
                claimed: self.claimed,
                actual,
            });
        }
        Ok(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin + Send {
        futures::stream::iter(
            parts
                .iter()
                .map(|part| Ok(Bytes::from_static(part)))
                .collect::<Vec<_>>(),
        )
    }

    /// Every backend this machine offers: a directory, and an S3 bucket when
    /// `CROWDCLOUD_TEST_S3_ENDPOINT` names a server with the bucket `crowdcloud-test` (as
    /// `scripts/test` starts one); each store under a prefix of its own.
    fn backends() -> Vec<(String, BlobStore, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().unwrap();
        let local = BlobStore::local(dir.path()).unwrap();
        let mut backends = vec![("a directory".to_owned(), local, Some(dir))];
        match std::env::var("CROWDCLOUD_TEST_S3_ENDPOINT") {
            Ok(endpoint) => {
                let builder = AmazonS3Builder::new()
                    .with_endpoint(endpoint)
                    .with_allow_http(true)
                    .with_region("us-east-1")
                    .with_access_key_id("test")
                    .with_secret_access_key("test")
                    .with_bucket_name("crowdcloud-test");
                let prefix = format!("unit-{}", BlobHash::of(&rand_bytes()).to_hex());
                let store = BlobStore::s3(builder, &prefix).unwrap();
                backends.push(("an S3 bucket".to_owned(), store, None));
            }
            Err(_) if std::env::var("CROWDCLOUD_REQUIRE_S3").is_ok() => panic!(
                "CROWDCLOUD_TEST_S3_ENDPOINT is not set: scripts/test starts an S3 server with \
                 scripts/seaweedfs, and says above if it could not"
            ),
            Err(_) => {}
        }
        backends
    }

    /// Bytes unlike any other test run's, to keep runs apart in one bucket.
    // The clock only makes a prefix no other run uses.
    #[allow(clippy::disallowed_methods)]
    fn rand_bytes() -> Vec<u8> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        [
            now.as_nanos().to_le_bytes(),
            u128::from(std::process::id()).to_le_bytes(),
        ]
        .concat()
    }

    #[tokio::test]
    async fn a_streamed_upload_is_stored_under_its_hash_and_read_back() {
        for (backend, blobs, _dir) in backends() {
            let hash = BlobHash::of(b"hello world");
            assert!(!blobs.exists(&hash).await.unwrap(), "{backend}");
            let size = blobs
                .put_stream(hash, chunks(&[b"hello ", b"world"]), 100)
                .await
                .unwrap();
            assert_eq!(size, 11, "{backend}");
            assert_eq!(
                blobs.get(&hash).await.unwrap(),
                Bytes::from_static(b"hello world"),
                "{backend}"
            );
            let (size, stream) = blobs.get_stream(&hash).await.unwrap();
            assert_eq!(size, 11, "{backend}");
            let read: Vec<Bytes> = stream.try_collect().await.unwrap();
            assert_eq!(read.concat(), b"hello world", "{backend}");
            blobs.delete(&hash).await.unwrap();
            assert!(!blobs.exists(&hash).await.unwrap(), "{backend}");
            blobs.delete(&hash).await.unwrap();
        }
    }

    #[tokio::test]
    async fn uploads_at_and_just_past_the_small_bound_read_back_whole() {
        for (backend, blobs, _dir) in backends() {
            let small = SMALL_BLOB_BYTES as usize;
            for length in [small, small + 1, small + 64 * 1024 + 1] {
                let bytes: Vec<u8> = (0..length).map(|i| (i % 253) as u8).collect();
                let hash = BlobHash::of(&bytes);
                let parts: Vec<Result<Bytes, String>> = bytes
                    .chunks(64 * 1024)
                    .map(|part| Ok(Bytes::copy_from_slice(part)))
                    .collect();
                let size = blobs
                    .put_stream(hash, futures::stream::iter(parts), u64::MAX)
                    .await
                    .unwrap();
                assert_eq!(size, length as u64, "{backend}, {length} bytes");
                assert_eq!(
                    blobs.get(&hash).await.unwrap(),
                    bytes,
                    "{backend}, {length} bytes"
                );
                let wrong = BlobHash::of(b"another blob");
                let refused = blobs
                    .put_stream(
                        wrong,
                        futures::stream::iter(vec![Ok::<_, String>(Bytes::from(bytes))]),
                        u64::MAX,
                    )
                    .await;
                assert!(
                    matches!(refused, Err(BlobError::HashMismatch { .. })),
                    "{backend}"
                );
                assert!(
                    !blobs.exists(&wrong).await.unwrap(),
                    "{backend}: nothing left behind"
                );
            }
        }
    }

    #[tokio::test]
    async fn an_upload_of_several_parts_and_an_empty_one_read_back_whole() {
        for (backend, blobs, _dir) in backends() {
            // Three parts of the upload's chunk size and a tail: a multipart upload on S3.
            let big: Vec<u8> = (0..UPLOAD_CHUNK_BYTES * 3 + 1000)
                .map(|i| (i % 251) as u8)
                .collect();
            let hash = BlobHash::of(&big);
            let parts: Vec<Result<Bytes, String>> = big
                .chunks(1 << 20)
                .map(|part| Ok(Bytes::copy_from_slice(part)))
                .collect();
            let size = blobs
                .put_stream(hash, futures::stream::iter(parts), u64::MAX)
                .await
                .unwrap();
            assert_eq!(size, big.len() as u64, "{backend}");
            assert_eq!(blobs.get(&hash).await.unwrap(), big, "{backend}");
            let empty = BlobHash::of(b"");
            blobs.put_stream(empty, chunks(&[]), 10).await.unwrap();
            assert_eq!(blobs.get(&empty).await.unwrap(), Bytes::new(), "{backend}");
        }
    }

    #[tokio::test]
    async fn a_local_store_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("blobs");
        std::fs::create_dir(&dir).unwrap();
        // As an older version, or a umask of 022, would have left it.
        set_mode(&dir, 0o755).unwrap();
        let blobs = BlobStore::local(&dir).unwrap();
        let hash = BlobHash::of(b"private");
        blobs
            .put(hash, Bytes::from_static(b"private"))
            .await
            .unwrap();
        let streamed = BlobHash::of(b"streamed");
        blobs
            .put_stream(streamed, chunks(&[b"stream", b"ed"]), 100)
            .await
            .unwrap();
        assert_eq!(mode(&dir), 0o700);
        for stored in [hash, streamed] {
            let hex = stored.to_hex();
            assert_eq!(mode(&dir.join(&hex[..2])), 0o700);
            assert_eq!(mode(&dir.join(&hex[..2]).join(&hex)), 0o600);
        }
    }

    #[tokio::test]
    async fn a_mismatched_or_oversize_upload_leaves_nothing() {
        for (backend, blobs, _dir) in backends() {
            let claimed = BlobHash::of(b"something else");
            let error = blobs
                .put_stream(claimed, chunks(&[b"hello"]), 100)
                .await
                .unwrap_err();
            assert!(
                matches!(error, BlobError::HashMismatch { .. }),
                "{backend}: {error}"
            );
            assert!(!blobs.exists(&claimed).await.unwrap(), "{backend}");
            let hash = BlobHash::of(b"hello");
            let error = blobs
                .put_stream(hash, chunks(&[b"hel", b"lo"]), 4)
                .await
                .unwrap_err();
            assert!(
                matches!(error, BlobError::TooLarge { max_bytes: 4 }),
                "{backend}: {error}"
            );
            assert!(!blobs.exists(&hash).await.unwrap(), "{backend}");
            assert!(
                matches!(blobs.get(&hash).await, Err(BlobError::NotFound(_))),
                "{backend}"
            );
            assert!(
                matches!(
                    blobs.put(claimed, Bytes::from_static(b"hello")).await,
                    Err(BlobError::HashMismatch { .. })
                ),
                "{backend}"
            );
        }
    }

    #[tokio::test]
    async fn an_upload_of_a_stored_blob_is_checked_as_strictly_and_changes_nothing() {
        for (backend, blobs, _dir) in backends() {
            let bytes: &'static [u8] = [b"again ".as_slice(), &rand_bytes()].concat().leak();
            let hash = BlobHash::of(bytes);
            blobs.put(hash, Bytes::from_static(bytes)).await.unwrap();
            let size = blobs
                .put_stream(hash, chunks(&[&bytes[..3], &bytes[3..]]), 100)
                .await
                .unwrap();
            assert_eq!(size, bytes.len() as u64, "{backend}");
            let forged = blobs.put_stream(hash, chunks(&[b"forged"]), 100).await;
            assert!(
                matches!(forged, Err(BlobError::HashMismatch { .. })),
                "{backend}: {forged:?}"
            );
            let long = blobs.put_stream(hash, chunks(&[bytes]), 4).await;
            assert!(
                matches!(long, Err(BlobError::TooLarge { max_bytes: 4 })),
                "{backend}: {long:?}"
            );
            assert_eq!(blobs.get(&hash).await.unwrap(), bytes, "{backend}");
            blobs.delete(&hash).await.unwrap();
        }
    }

    #[test]
    fn a_location_is_a_directory_or_an_s3_bucket_and_nothing_else() {
        let parse = |text: &str| text.parse::<BlobLocation>();
        assert_eq!(
            parse("/var/lib/crowdcloud/blobs").unwrap(),
            BlobLocation::Dir(PathBuf::from("/var/lib/crowdcloud/blobs"))
        );
        assert_eq!(
            parse("s3://pool-blobs/acme/main/").unwrap(),
            BlobLocation::S3 {
                bucket: "pool-blobs".to_owned(),
                prefix: "acme/main".to_owned()
            }
        );
        assert_eq!(
            parse("s3://pool-blobs").unwrap().to_string(),
            "s3://pool-blobs"
        );
        for bad in [
            "",
            "gs://bucket",
            "s3://",
            "s3://ab",
            "s3://Upper",
            "s3://bucket/../escape",
            "s3://bucket/a//b",
        ] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains("s3://BUCKET/PREFIX"), "{bad}: {error}");
        }
    }
}
