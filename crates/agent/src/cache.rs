//! The node's cache of blobs (modules, inputs, mount files) and of mounted directory trees.
//!
//! A blob is downloaded once, checked against its hash on the way in, and kept as a file named
//! by its hash; attempts get hard links to it, never the file itself writable. The cache has a
//! size cap and forgets the least recently used blobs past it; a link an attempt holds keeps
//! working after eviction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use client::Client;
use client::peer::PeerClient;
use wire::{BlobHash, Mount, PeerBlob};

use crate::AgentError;

pub(crate) struct BlobCache {
    blobs_dir: PathBuf,
    mounts_dir: PathBuf,
    /// The owner's policy may change it while the agent runs.
    bytes_max: AtomicU64,
    index: Mutex<Index>,
    /// One download per blob at a time; others wait for it.
    fetching: Mutex<HashMap<BlobHash, Arc<tokio::sync::Mutex<()>>>>,
    /// One build per mount at a time; others wait for it and use what it built. Two attempts
    /// of one job start together, and without it the second would clear the first's tree
    /// while the first still fills it.
    building: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Default)]
struct Index {
    entries: HashMap<BlobHash, Entry>,
    bytes: u64,
    clock: u64,
    /// Blobs only this node and its peers have, kept for them until the coordinator lets them
    /// go: never evicted. At most half the cache. In order, so that they are named and
    /// checked a window at a time.
    pinned: std::collections::BTreeSet<BlobHash>,
    pinned_bytes: u64,
}

struct Entry {
    size_bytes: u64,
    used: u64,
}

/// Why a blob could not be made available; the attempt fails as a node error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("cannot fetch blob {hash}: {message}")]
    Download {
        hash: BlobHash,
        message: String,
        /// The coordinator could not answer now (down or restarting); a later try may work.
        transient: bool,
    },
    #[error("cannot write to the cache: {0}")]
    Disk(String),
}

impl FetchError {
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            FetchError::Download {
                transient: true,
                ..
            }
        )
    }
}

impl BlobCache {
    pub(crate) fn open(cache_dir: &Path, bytes_max: u64) -> Result<Self, AgentError> {
        let blobs_dir = cache_dir.join("blobs");
        let mounts_dir = cache_dir.join("mounts");
        for dir in [&blobs_dir, &mounts_dir] {
            std::fs::create_dir_all(dir).map_err(|source| AgentError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut index = Index::default();
        for entry in std::fs::read_dir(&blobs_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            match (name.parse::<BlobHash>(), entry.metadata()) {
                (Ok(hash), Ok(metadata)) => {
                    index.bytes += metadata.len();
                    index.entries.insert(
                        hash,
                        Entry {
                            size_bytes: metadata.len(),
                            used: 0,
                        },
                    );
                }
                // Partial downloads of a previous run.
                _ => {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(Self {
            blobs_dir,
            mounts_dir,
            bytes_max: AtomicU64::new(bytes_max),
            index: Mutex::new(index),
            fetching: Mutex::new(HashMap::new()),
            building: Mutex::new(HashMap::new()),
        })
    }

    fn path(&self, hash: &BlobHash) -> PathBuf {
        self.blobs_dir.join(hash.to_hex())
    }

    fn touch(&self, hash: &BlobHash) -> bool {
        let mut index = self.index.lock();
        index.clock += 1;
        let clock = index.clock;
        match index.entries.get_mut(hash) {
            Some(entry) => {
                entry.used = clock;
                true
            }
            None => false,
        }
    }

    /// The blob as a file in the cache, downloaded first if needed.
    pub(crate) async fn file(
        &self,
        client: &Client,
        hash: &BlobHash,
    ) -> Result<PathBuf, FetchError> {
        self.file_near(client, hash, None).await
    }

    /// The blob as a file in the cache, fetched first if needed: from the nodes `near` names
    /// where one serves it, else from the coordinator.
    pub(crate) async fn file_near(
        &self,
        client: &Client,
        hash: &BlobHash,
        near: Option<(&PeerClient, &PeerBlob)>,
    ) -> Result<PathBuf, FetchError> {
        let path = self.path(hash);
        if self.touch(hash) {
            return Ok(path);
        }
        let lock = Arc::clone(self.fetching.lock().entry(*hash).or_default());
        let _fetching = lock.lock().await;
        if self.touch(hash) {
            return Ok(path);
        }
        let from_peer = match near {
            Some((peers, blob)) => match peers.fetch(blob, &path).await {
                Ok(size_bytes) => Some(size_bytes),
                Err(errors) => {
                    tracing::info!(%hash, %errors, "no holder served the blob; fetching it from the coordinator");
                    None
                }
            },
            None => None,
        };
        let size_bytes = match from_peer {
            Some(size_bytes) => size_bytes,
            None => {
                client
                    .download_to(hash, &path)
                    .await
                    .map_err(|error| FetchError::Download {
                        hash: *hash,
                        message: error.to_string(),
                        transient: error.is_transient(),
                    })?
            }
        };
        self.indexed(hash, size_bytes);
        self.fetching.lock().remove(hash);
        Ok(path)
    }

    /// Keeps the file at `source`, whose content is `hash`, in the cache as that blob: an
    /// output that later stages fetch from this node. A link when the file system allows.
    pub(crate) fn adopt(&self, hash: &BlobHash, source: &Path) -> Result<(), FetchError> {
        if self.touch(hash) {
            return Ok(());
        }
        let path = self.path(hash);
        let disk = |error: std::io::Error| FetchError::Disk(format!("{}: {error}", path.display()));
        let size_bytes = match std::fs::hard_link(source, &path) {
            Ok(()) => std::fs::metadata(&path).map_err(disk)?.len(),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::metadata(&path).map_err(disk)?.len()
            }
            Err(_) => std::fs::copy(source, &path).map_err(disk)?,
        };
        self.indexed(hash, size_bytes);
        Ok(())
    }

    /// Pins `blobs`, which are cached (adopted or fetched), so that no eviction drops them;
    /// `false`, pinning none, when they would take more than half the cache.
    pub(crate) fn pin(&self, blobs: &[BlobHash]) -> bool {
        let mut blobs = blobs.to_vec();
        blobs.sort_unstable();
        blobs.dedup();
        let mut index = self.index.lock();
        let index = &mut *index;
        let adding: Vec<(BlobHash, u64)> = blobs
            .iter()
            .filter(|hash| !index.pinned.contains(*hash))
            .filter_map(|hash| Some((*hash, index.entries.get(hash)?.size_bytes)))
            .collect();
        let bytes = adding.iter().map(|(_, size)| size).sum::<u64>();
        let room = self.bytes_max.load(Ordering::Relaxed) / 2;
        if adding.len() < blobs.iter().filter(|h| !index.pinned.contains(*h)).count()
            || index.pinned_bytes.saturating_add(bytes) > room
        {
            return false;
        }
        for (hash, _) in adding {
            index.pinned.insert(hash);
        }
        index.pinned_bytes += bytes;
        true
    }

    /// Unpins `blobs`: eviction may drop them again.
    pub(crate) fn unpin(&self, blobs: &[BlobHash]) {
        let mut index = self.index.lock();
        for hash in blobs {
            if index.pinned.remove(hash)
                && let Some(size) = index.entries.get(hash).map(|entry| entry.size_bytes)
            {
                index.pinned_bytes -= size;
            }
        }
    }

    /// Unpins everything: a new session with the coordinator counts on none of it.
    pub(crate) fn unpin_all(&self) {
        let mut index = self.index.lock();
        index.pinned.clear();
        index.pinned_bytes = 0;
    }

    /// Up to `count` pinned blobs after `after` (from the first without it), in order.
    pub(crate) fn pinned_after(&self, after: Option<BlobHash>, count: usize) -> Vec<BlobHash> {
        use std::ops::Bound::{Excluded, Unbounded};
        let index = self.index.lock();
        let start = after.map_or(Unbounded, Excluded);
        index
            .pinned
            .range((start, Unbounded))
            .take(count)
            .copied()
            .collect()
    }

    /// Checks that the files of up to `count` pinned blobs after `after` are still on disk,
    /// and forgets those that are not (the owner cleared the disk under the agent): the
    /// missing ones, and where the next check goes on from (`None`: from the first).
    pub(crate) fn check_pinned(
        &self,
        after: Option<BlobHash>,
        count: usize,
    ) -> (Vec<BlobHash>, Option<BlobHash>) {
        let window = self.pinned_after(after, count);
        let next = (window.len() == count)
            .then(|| window.last().copied())
            .flatten();
        let missing: Vec<BlobHash> = window
            .into_iter()
            .filter(|hash| self.forget_missing(hash))
            .collect();
        (missing, next)
    }

    /// Forgets `hash` if its file is gone from the disk, pinned or not; whether it was gone.
    pub(crate) fn forget_missing(&self, hash: &BlobHash) -> bool {
        if self.path(hash).exists() {
            return false;
        }
        let mut index = self.index.lock();
        if let Some(entry) = index.entries.remove(hash) {
            index.bytes -= entry.size_bytes;
            if index.pinned.remove(hash) {
                index.pinned_bytes -= entry.size_bytes;
            }
        }
        true
    }

    /// The cached file of `hash`, marked used, to serve to a peer; `None` when not cached.
    pub(crate) fn cached(&self, hash: &BlobHash) -> Option<PathBuf> {
        self.touch(hash).then(|| self.path(hash))
    }

    /// Counts a blob that just arrived in the cache, then evicts past the cap.
    fn indexed(&self, hash: &BlobHash, size_bytes: u64) {
        {
            let mut index = self.index.lock();
            index.clock += 1;
            let used = index.clock;
            index.bytes += size_bytes;
            if let Some(old) = index.entries.insert(*hash, Entry { size_bytes, used }) {
                index.bytes -= old.size_bytes;
            }
        }
        self.evict(Some(hash));
    }

    pub(crate) async fn bytes(
        &self,
        client: &Client,
        hash: &BlobHash,
    ) -> Result<Vec<u8>, FetchError> {
        let path = self.file(client, hash).await?;
        tokio::fs::read(&path)
            .await
            .map_err(|error| FetchError::Disk(format!("{}: {error}", path.display())))
    }

    /// A read-only directory tree with the mount's files, built once per distinct mount.
    pub(crate) async fn mount(
        &self,
        client: &Client,
        mount: &Mount,
    ) -> Result<PathBuf, FetchError> {
        let mut hasher = blake3::Hasher::new();
        for file in &mount.files {
            hasher.update(file.path.as_bytes());
            hasher.update(b"\0");
            hasher.update(&file.blob.0);
        }
        let key = hasher.finalize().to_hex().to_string();
        let dir = self.mounts_dir.join(&key);
        if dir.exists() {
            return Ok(dir);
        }
        let lock = Arc::clone(self.building.lock().entry(key.clone()).or_default());
        let _building = lock.lock().await;
        let built = self.build_mount(client, mount, &key, &dir).await;
        self.building.lock().remove(&key);
        built
    }

    /// Builds the tree of `mount` under a temporary name and moves it to `dir`, unless it is
    /// there already. Called holding the mount's build lock.
    async fn build_mount(
        &self,
        client: &Client,
        mount: &Mount,
        key: &str,
        dir: &Path,
    ) -> Result<PathBuf, FetchError> {
        if dir.exists() {
            return Ok(dir.to_owned());
        }
        let building = self
            .mounts_dir
            .join(format!("{key}.building-{}", std::process::id()));
        let disk =
            |error: std::io::Error| FetchError::Disk(format!("{}: {error}", building.display()));
        let _ = std::fs::remove_dir_all(&building);
        std::fs::create_dir_all(&building).map_err(disk)?;
        for file in &mount.files {
            let source = self.file(client, &file.blob).await?;
            // The paths were validated by the coordinator: relative, no `..`.
            let target = building.join(&file.path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(disk)?;
            }
            if std::fs::hard_link(&source, &target).is_err() {
                std::fs::copy(&source, &target).map_err(disk)?;
            }
        }
        match std::fs::rename(&building, dir) {
            Ok(()) => Ok(dir.to_owned()),
            // Another agent on the same data dir built the same mount meanwhile.
            Err(_) if dir.exists() => {
                let _ = std::fs::remove_dir_all(&building);
                Ok(dir.to_owned())
            }
            Err(error) => Err(disk(error)),
        }
    }

    /// A new cap, from a changed policy; the cache shrinks to it at once.
    pub(crate) fn set_bytes_max(&self, bytes_max: u64) {
        self.bytes_max.store(bytes_max, Ordering::Relaxed);
        self.evict(None);
    }

    /// Drops the cached `blobs` (every blob, with `everything`) and the mount trees built from
    /// any of them: a deleted job's copies. An attempt that holds links to them keeps those
    /// until it ends.
    pub(crate) fn forget(&self, blobs: &[BlobHash], everything: bool) {
        let doomed: Vec<BlobHash> = {
            let index = self.index.lock();
            match everything {
                true => index.entries.keys().copied().collect(),
                false => blobs
                    .iter()
                    .filter(|hash| index.entries.contains_key(*hash))
                    .copied()
                    .collect(),
            }
        };
        if doomed.is_empty() {
            return;
        }
        self.forget_mounts_of(&doomed, everything);
        let mut index = self.index.lock();
        for hash in doomed {
            if let Some(entry) = index.entries.remove(&hash) {
                index.bytes -= entry.size_bytes;
                if index.pinned.remove(&hash) {
                    index.pinned_bytes -= entry.size_bytes;
                }
            }
            let _ = std::fs::remove_file(self.path(&hash));
        }
    }

    /// Removes the mount trees that hold a link to one of `blobs` (all of them with
    /// `everything`); they are built again when needed.
    fn forget_mounts_of(&self, blobs: &[BlobHash], everything: bool) {
        use std::os::unix::fs::MetadataExt as _;
        let inodes: std::collections::HashSet<(u64, u64)> = blobs
            .iter()
            .filter_map(|hash| std::fs::metadata(self.path(hash)).ok())
            .map(|metadata| (metadata.dev(), metadata.ino()))
            .collect();
        let trees = std::fs::read_dir(&self.mounts_dir)
            .into_iter()
            .flatten()
            .flatten();
        for tree in trees {
            let holds = |path: &Path| {
                std::fs::metadata(path)
                    .is_ok_and(|metadata| inodes.contains(&(metadata.dev(), metadata.ino())))
            };
            if everything || walk_files(&tree.path()).iter().any(|path| holds(path)) {
                let _ = sandbox::remove_tree(&tree.path());
            }
        }
    }

    /// Forgets least recently used blobs until the cache fits its cap, keeping `keep`.
    fn evict(&self, keep: Option<&BlobHash>) {
        let bytes_max = self.bytes_max.load(Ordering::Relaxed);
        let mut index = self.index.lock();
        while index.bytes > bytes_max {
            let victim = index
                .entries
                .iter()
                .filter(|(hash, _)| Some(*hash) != keep && !index.pinned.contains(*hash))
                .min_by_key(|(_, entry)| entry.used)
                .map(|(hash, entry)| (*hash, entry.size_bytes));
            let Some((hash, size_bytes)) = victim else {
                break;
            };
            index.entries.remove(&hash);
            index.bytes -= size_bytes;
            let _ = std::fs::remove_file(self.path(&hash));
        }
    }
}

/// The regular files under `dir`.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => files.push(entry.path()),
                _ => {}
            }
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_cap_from_the_owner_shrinks_the_cache_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let blobs_dir = dir.path().join("blobs");
        std::fs::create_dir_all(&blobs_dir).unwrap();
        for index in 0..3u8 {
            let bytes = vec![index; 1000];
            std::fs::write(blobs_dir.join(BlobHash::of(&bytes).to_hex()), &bytes).unwrap();
        }
        let cache = BlobCache::open(dir.path(), 10_000).unwrap();
        let on_disk = || std::fs::read_dir(&blobs_dir).unwrap().count();
        assert_eq!(on_disk(), 3);
        cache.set_bytes_max(1_500);
        assert_eq!(on_disk(), 1);
        assert_eq!(cache.index.lock().bytes, 1000);
    }

    #[test]
    fn a_deleted_jobs_blobs_and_the_mounts_built_from_them_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let blobs_dir = dir.path().join("blobs");
        std::fs::create_dir_all(&blobs_dir).unwrap();
        let hashes: Vec<BlobHash> = (0..3u8)
            .map(|index| {
                let bytes = vec![index; 100];
                let hash = BlobHash::of(&bytes);
                std::fs::write(blobs_dir.join(hash.to_hex()), &bytes).unwrap();
                hash
            })
            .collect();
        let cache = BlobCache::open(dir.path(), 10_000).unwrap();
        // Two mount trees: one links blob 0, the other blob 2.
        for (tree, hash) in [("a", hashes[0]), ("b", hashes[2])] {
            let tree = dir.path().join("mounts").join(tree);
            std::fs::create_dir_all(tree.join("deep")).unwrap();
            std::fs::hard_link(blobs_dir.join(hash.to_hex()), tree.join("deep/file")).unwrap();
        }
        cache.forget(&hashes[..2], false);
        let left: Vec<String> = std::fs::read_dir(&blobs_dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, [hashes[2].to_hex()]);
        assert!(!dir.path().join("mounts/a").exists());
        assert!(dir.path().join("mounts/b/deep/file").exists());
        assert_eq!(cache.index.lock().bytes, 100);
        cache.forget(&[], true);
        assert_eq!(std::fs::read_dir(&blobs_dir).unwrap().count(), 0);
        assert!(!dir.path().join("mounts/b").exists());
    }
}
