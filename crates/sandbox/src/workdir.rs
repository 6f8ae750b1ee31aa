//! The per-attempt directory on the host: `input/`, `output/` and `scratch/` under one root that
//! is removed when the attempt's [`Outputs`] are dropped, whatever the outcome.
//!
//! The guest can write only to `output/` and `scratch/`; their size and entry count are measured
//! while it runs and again at the end. Only regular files and directories count as output:
//! anything else (a symlink, a fifo) makes the output invalid rather than being followed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Directory depth the walker follows; deeper trees are refused as output.
const DEPTH_MAX: usize = 64;

const SUBDIRS: [&str; 3] = ["input", "output", "scratch"];

#[derive(Debug)]
pub(crate) struct AttemptDir {
    root: PathBuf,
    bin: Option<Arc<RecycleBin>>,
    /// Set once the guest is gone and `/output` and `/scratch` were found empty, with no
    /// input placed: the tree is then empty, so recycling it lists nothing.
    left_empty: bool,
    inputs_placed: bool,
}

impl AttemptDir {
    /// Makes the attempt's directories: an emptied tree of `bin`, where it lies, when there is
    /// one; a new tree in `bin` when it has none free; a new tree at `root`, which must not
    /// exist yet, without a bin.
    pub(crate) fn create(root: &Path, bin: Option<&Arc<RecycleBin>>) -> io::Result<Self> {
        let root = match bin {
            Some(bin) => match bin.take() {
                Some(tree) => return Ok(Self::new(tree, Some(bin))),
                None => bin.new_path(),
            },
            None => root.to_owned(),
        };
        fs::create_dir(&root)?;
        for sub in SUBDIRS {
            fs::create_dir(root.join(sub))?;
        }
        Ok(Self::new(root, bin))
    }

    fn new(root: PathBuf, bin: Option<&Arc<RecycleBin>>) -> Self {
        Self {
            root,
            bin: bin.cloned(),
            left_empty: false,
            inputs_placed: false,
        }
    }

    /// Records that the guest, now gone, left `/output` and `/scratch` empty (as measured
    /// after its end), so the tree needs no listing to be emptied.
    pub(crate) fn found_empty(&mut self) {
        self.left_empty = !self.inputs_placed;
    }

    pub(crate) fn input(&self) -> PathBuf {
        self.root.join("input")
    }

    pub(crate) fn output(&self) -> PathBuf {
        self.root.join("output")
    }

    pub(crate) fn scratch(&self) -> PathBuf {
        self.root.join("scratch")
    }

    /// Places input files by hard link where the filesystem allows it (no copy of large
    /// inputs), by copy otherwise. The guest sees `/input` read-only, so it cannot change the
    /// linked file.
    ///
    /// `name` must be a plain file name. It comes from the coordinator, and joining a name
    /// such as `../../x` or `/home/owner/x` would link the file anywhere the agent can write,
    /// outside the attempt directory and beyond its removal.
    pub(crate) fn place_input(&mut self, name: &str, source: &Path) -> io::Result<()> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a plain file name; name inputs without '/', '\\', NUL, '.' or '..'",
            ));
        }
        let target = self.input().join(name);
        self.inputs_placed = true;
        match fs::hard_link(source, &target) {
            Ok(()) => Ok(()),
            Err(_) => fs::copy(source, &target).map(|_| ()),
        }
    }
}

impl Drop for AttemptDir {
    fn drop(&mut self) {
        if let Some(bin) = &self.bin
            && bin.give(&self.root, self.left_empty)
        {
            return;
        }
        if let Err(error) = remove_tree(&self.root)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::error!(path = %self.root.display(), %error, "could not remove an attempt directory");
        }
    }
}

/// Emptied attempt trees kept for the next attempts.
///
/// Making and removing four directories costs hundreds of microseconds on a journaling
/// filesystem, more than everything else an attempt start does, and even moving a tree in and
/// out by two renames costs tens. So every tree lives in the bin's directory for good: a
/// finished attempt's tree is emptied where it lies (every byte the task wrote is deleted, as
/// with removal) and the next attempt runs in it. A tree that cannot be emptied and checked,
/// or one beyond the bin's capacity, is removed instead. Trees are never shared: one attempt
/// at a time holds each, and nothing of one attempt is left when the next gets it.
#[derive(Debug)]
pub(crate) struct RecycleBin {
    dir: PathBuf,
    free: Mutex<Vec<PathBuf>>,
    next: AtomicU64,
    capacity: usize,
}

impl RecycleBin {
    /// A bin in `dir`, emptied of anything an earlier process left.
    pub(crate) fn open(dir: &Path, capacity: usize) -> io::Result<Arc<Self>> {
        if dir.exists() {
            remove_tree(dir)?;
        }
        fs::create_dir_all(dir)?;
        Ok(Arc::new(Self {
            dir: dir.to_owned(),
            free: Mutex::new(Vec::with_capacity(capacity)),
            next: AtomicU64::new(0),
            capacity,
        }))
    }

    /// An emptied tree, for one attempt to hold; `None` when none is free.
    fn take(&self) -> Option<PathBuf> {
        self.free.lock().pop()
    }

    /// A path in the bin no tree has had, for a new one.
    fn new_path(&self) -> PathBuf {
        self.dir
            .join(self.next.fetch_add(1, Ordering::Relaxed).to_string())
    }

    /// Empties the tree at `root` (unless `left_empty` says it is) and keeps it; false when it
    /// must be removed instead.
    fn give(&self, root: &Path, left_empty: bool) -> bool {
        if self.free.lock().len() >= self.capacity {
            return false;
        }
        if !left_empty && empty_tree(root).is_err() {
            return false;
        }
        self.free.lock().push(root.to_owned());
        true
    }
}

/// Deletes everything below the three subdirectories of an attempt tree and checks that the
/// tree is exactly those three real directories again.
fn empty_tree(root: &Path) -> io::Result<()> {
    for sub in SUBDIRS {
        let dir = root.join(sub);
        if !fs::symlink_metadata(&dir)?.is_dir() {
            return Err(io::Error::other("not a directory"));
        }
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                remove_tree(&entry.path())?;
            } else {
                fs::remove_file(entry.path())?;
            }
        }
    }
    if fs::read_dir(root)?.count() != SUBDIRS.len() {
        return Err(io::Error::other("unexpected entries in the attempt tree"));
    }
    Ok(())
}

/// Removes `root` and everything under it, however deep, without following symlinks. Use it
/// for whatever may hold an attempt's tree, such as the work directory an agent wipes after a
/// crash.
///
/// `std::fs::remove_dir_all` keeps a descriptor open for every level it descends, so a guest
/// that nests directories deeper than the agent's descriptor limit (often 1024) would leave
/// its tree behind for good. Instead, each pass empties the directories directly under `root`
/// by deleting their files and moving their subdirectories up into `root`, so every path used
/// is at most two names below `root` and every directory moves up at most once. A symlink is
/// removed as a file, never followed.
pub fn remove_tree(root: &Path) -> io::Result<()> {
    let mut hoisted = 0u64;
    loop {
        let mut moved_up = false;
        for entry in fs::read_dir(root)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                fs::remove_file(entry.path())?;
                continue;
            }
            let dir = entry.path();
            for child in fs::read_dir(&dir)? {
                let child = child?;
                if !child.file_type()?.is_dir() {
                    fs::remove_file(child.path())?;
                    continue;
                }
                // A name not taken in `root`: renaming onto an existing empty directory would
                // silently replace it.
                let target = loop {
                    hoisted += 1;
                    let target = root.join(format!(".hoisted-{hoisted}"));
                    if fs::symlink_metadata(&target).is_err() {
                        break target;
                    }
                };
                fs::rename(child.path(), target)?;
                moved_up = true;
            }
            fs::remove_dir(&dir)?;
        }
        if !moved_up {
            return fs::remove_dir(root);
        }
    }
}

/// What the guest has written, as measured by [`measure`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DiskUsage {
    pub(crate) bytes: u64,
    pub(crate) entries: u64,
}

/// A limit the written data ran past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exceeded {
    Bytes,
    Entries,
    /// Directories nested deeper than [`DEPTH_MAX`], or a directory the host cannot list.
    Depth,
}

/// Walks `roots` (not following symlinks), stopping as soon as a limit is passed, so a flood of
/// files cannot make the walk itself expensive.
///
/// A directory that cannot be listed fails the measurement instead of being skipped: the walk
/// lists by path, and a guest can nest long names until the path is longer than the host
/// accepts (`PATH_MAX`), which would otherwise hide everything below from the count. Only a
/// directory that vanished since its parent was listed (the guest removed it) is skipped.
pub(crate) fn measure(
    roots: &[PathBuf],
    bytes_max: u64,
    entries_max: u64,
) -> Result<DiskUsage, Exceeded> {
    let mut usage = DiskUsage::default();
    let mut pending: Vec<(PathBuf, usize)> = roots.iter().map(|root| (root.clone(), 0)).collect();
    while let Some((dir, depth)) = pending.pop() {
        if depth > DEPTH_MAX {
            return Err(Exceeded::Depth);
        }
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => return Err(Exceeded::Depth),
        };
        for entry in entries.flatten() {
            usage.entries += 1;
            if usage.entries > entries_max {
                return Err(Exceeded::Entries);
            }
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                pending.push((entry.path(), depth + 1));
            } else {
                usage.bytes = usage.bytes.saturating_add(metadata.len());
                if usage.bytes > bytes_max {
                    return Err(Exceeded::Bytes);
                }
            }
        }
    }
    Ok(usage)
}

/// A file the guest left in `/output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Relative to `/output`, `/`-separated.
    pub path: String,
    pub size_bytes: u64,
    /// Where to read it on the host until the [`Outputs`] are dropped.
    pub host_path: PathBuf,
}

/// The files an attempt produced. Holding this keeps the attempt directory; dropping it removes
/// the directory with everything in it.
#[derive(Debug)]
pub struct Outputs {
    pub files: Vec<OutputFile>,
    pub(crate) _dir: Option<AttemptDir>,
}

impl Outputs {
    pub(crate) fn none(dir: Option<AttemptDir>) -> Self {
        Self {
            files: Vec::new(),
            _dir: dir,
        }
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|file| file.size_bytes).sum()
    }
}

/// Why the output directory cannot be taken as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CollectError {
    TooLarge(&'static str),
    Invalid(String),
}

/// Lists the regular files under `output`, sorted by path, checking every limit.
pub(crate) fn collect(
    output: &Path,
    bytes_max: u64,
    files_max: u64,
) -> Result<Vec<OutputFile>, CollectError> {
    let mut files = Vec::new();
    let mut bytes = 0u64;
    let mut pending = vec![(output.to_owned(), String::new(), 0usize)];
    while let Some((dir, prefix, depth)) = pending.pop() {
        if depth > DEPTH_MAX {
            return Err(CollectError::Invalid(format!(
                "directories nested deeper than {DEPTH_MAX} levels"
            )));
        }
        let entries = fs::read_dir(&dir).map_err(|error| {
            CollectError::Invalid(format!("cannot list /output/{prefix}: {error}"))
        })?;
        for entry in entries {
            let entry = entry.map_err(|error| CollectError::Invalid(error.to_string()))?;
            let name = entry.file_name().into_string().map_err(|name| {
                CollectError::Invalid(format!("file name {name:?} is not UTF-8"))
            })?;
            // The coordinator refuses such names (a terminal would obey the controls), and a
            // refused report loses the whole attempt; failing it here says why.
            if name.chars().any(|c| c.is_control() || c == '\\') {
                return Err(CollectError::Invalid(format!(
                    "the name {name:?} in /output/{prefix} holds a control character or '\\'; \
                     name output files with printable characters"
                )));
            }
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let file_type = entry
                .file_type()
                .map_err(|error| CollectError::Invalid(error.to_string()))?;
            if file_type.is_dir() {
                pending.push((entry.path(), path, depth + 1));
            } else if file_type.is_file() {
                let size_bytes = entry
                    .metadata()
                    .map_err(|error| CollectError::Invalid(error.to_string()))?
                    .len();
                bytes = bytes.saturating_add(size_bytes);
                if bytes > bytes_max {
                    return Err(CollectError::TooLarge("/output"));
                }
                if files.len() as u64 >= files_max {
                    return Err(CollectError::TooLarge("/output file count"));
                }
                files.push(OutputFile {
                    path,
                    size_bytes,
                    host_path: entry.path(),
                });
            } else {
                return Err(CollectError::Invalid(format!(
                    "/output/{path} is not a regular file or directory"
                )));
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_dir_is_removed_on_drop_even_with_planted_symlinks() {
        let base = tempfile::tempdir().unwrap();
        let precious = base.path().join("precious");
        fs::write(&precious, b"keep me").unwrap();
        let root = base.path().join("attempt");
        let dir = AttemptDir::create(&root, None).unwrap();
        std::os::unix::fs::symlink(&precious, dir.output().join("link")).unwrap();
        std::os::unix::fs::symlink(base.path(), dir.scratch().join("up")).unwrap();
        drop(dir);
        assert!(!root.exists());
        assert_eq!(fs::read(&precious).unwrap(), b"keep me");
    }

    #[test]
    fn inputs_are_placed_only_under_plain_names() {
        let base = tempfile::tempdir().unwrap();
        let source = base.path().join("source");
        fs::write(&source, b"data").unwrap();
        let mut dir = AttemptDir::create(&base.path().join("attempt"), None).unwrap();
        let outside = base.path().join("escaped");
        let absolute = outside.to_str().unwrap();
        for name in [
            "../escaped",
            "../../attempt/escaped",
            absolute,
            "sub/x",
            "..",
            ".",
            "",
        ] {
            let error = dir.place_input(name, &source).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
        assert!(!outside.exists());
        dir.place_input("data.txt", &source).unwrap();
        assert_eq!(fs::read(dir.input().join("data.txt")).unwrap(), b"data");
    }

    #[test]
    fn measure_stops_at_the_first_limit() {
        let base = tempfile::tempdir().unwrap();
        fs::create_dir(base.path().join("d")).unwrap();
        fs::write(base.path().join("d/a"), [0u8; 100]).unwrap();
        fs::write(base.path().join("b"), [0u8; 50]).unwrap();
        let roots = [base.path().to_owned()];
        assert_eq!(
            measure(&roots, 1000, 10),
            Ok(DiskUsage {
                bytes: 150,
                entries: 3
            })
        );
        assert_eq!(measure(&roots, 120, 10), Err(Exceeded::Bytes));
        assert_eq!(measure(&roots, 1000, 2), Err(Exceeded::Entries));
    }

    #[test]
    fn measure_refuses_trees_too_deep_to_count() {
        let base = tempfile::tempdir().unwrap();
        let mut deep = base.path().to_owned();
        for _ in 0..=DEPTH_MAX {
            deep.push("d");
        }
        fs::create_dir_all(&deep).unwrap();
        let roots = [base.path().to_owned()];
        assert_eq!(measure(&roots, 1000, 1000), Err(Exceeded::Depth));

        // Names of 250 bytes pass PATH_MAX (4096) in 17 levels, well within the depth limit,
        // so the bytes at the bottom cannot be reached by path: the measurement must fail
        // rather than count nothing.
        let long = base.path().join("long");
        fs::create_dir(&long).unwrap();
        let bottom = nest_by_renaming(&long, &"n".repeat(250), 17);
        assert!(bottom.as_os_str().len() > 4096);
        assert!(
            fs::metadata(&bottom).is_err(),
            "the host cannot reach it by path"
        );
        assert_eq!(measure(&[long], 1000, 1000), Err(Exceeded::Depth));
    }

    #[test]
    fn trees_deeper_than_the_descriptor_limit_are_removed() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("attempt");
        fs::create_dir(&root).unwrap();
        // Deeper than the usual soft limit of 1024 descriptors, with a side branch, a file at
        // every kind of level and a symlink that must not be followed.
        let bottom = nest_by_renaming(&root, "d", 2100);
        assert!(
            fs::metadata(&bottom).is_err(),
            "deeper than a host path reaches"
        );
        fs::create_dir_all(root.join("chain/d/side/branch")).unwrap();
        fs::write(root.join("chain/d/side/file"), b"x").unwrap();
        fs::write(root.join("top"), b"x").unwrap();
        let precious = base.path().join("precious");
        fs::create_dir(&precious).unwrap();
        fs::write(precious.join("keep"), b"keep me").unwrap();
        std::os::unix::fs::symlink(&precious, root.join("chain/d/link")).unwrap();
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        assert_eq!(fs::read(precious.join("keep")).unwrap(), b"keep me");
    }

    /// Makes `parent/chain/name/name/.../payload` with `levels` directories called `name` and
    /// returns the deepest one. Each level is made at the top and renamed into the next, so no
    /// path used is long: this is how a guest, working from descriptors, outgrows host paths.
    fn nest_by_renaming(parent: &Path, name: &str, levels: usize) -> PathBuf {
        let chain = parent.join("chain");
        fs::create_dir(&chain).unwrap();
        fs::write(chain.join("payload"), [0u8; 100]).unwrap();
        for _ in 0..levels {
            let next = parent.join("next");
            fs::create_dir(&next).unwrap();
            fs::rename(&chain, next.join(name)).unwrap();
            fs::rename(&next, &chain).unwrap();
        }
        let mut bottom = chain;
        for _ in 0..levels {
            bottom.push(name);
        }
        bottom
    }

    #[test]
    fn collect_lists_nested_files_and_refuses_symlinks() {
        let base = tempfile::tempdir().unwrap();
        fs::create_dir(base.path().join("sub")).unwrap();
        fs::write(base.path().join("sub/x.txt"), b"x").unwrap();
        fs::write(base.path().join("a.txt"), b"aa").unwrap();
        let files = collect(base.path(), 100, 10).unwrap();
        let listed: Vec<_> = files
            .iter()
            .map(|f| (f.path.as_str(), f.size_bytes))
            .collect();
        assert_eq!(listed, [("a.txt", 2), ("sub/x.txt", 1)]);
        assert_eq!(
            collect(base.path(), 2, 10),
            Err(CollectError::TooLarge("/output"))
        );
        assert_eq!(
            collect(base.path(), 100, 1),
            Err(CollectError::TooLarge("/output file count"))
        );
        std::os::unix::fs::symlink("/etc/passwd", base.path().join("link")).unwrap();
        assert!(matches!(
            collect(base.path(), 100, 10),
            Err(CollectError::Invalid(_))
        ));
    }

    #[test]
    fn collect_refuses_names_a_terminal_would_obey() {
        for name in ["\u{1b}]0;owned\u{7}", "a\u{9b}2J", "back\\slash"] {
            let base = tempfile::tempdir().unwrap();
            fs::create_dir(base.path().join("sub")).unwrap();
            fs::write(base.path().join("sub").join(name), b"x").unwrap();
            let refused = collect(base.path(), 100, 10);
            assert!(
                matches!(&refused, Err(CollectError::Invalid(message)) if message.contains("printable")),
                "{name:?}: {refused:?}"
            );
        }
    }
}
