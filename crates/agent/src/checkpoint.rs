//! A task's `/checkpoint` directory as one blob: packed into a tar archive when the task says
//! it is whole, and unpacked for the attempt that resumes from it.
//!
//! The archive is deterministic (entries sorted by name, no owners, times or modes beyond what
//! tar must say), so equal directories give equal blobs on every node. Unpacking trusts nothing
//! in it: another node made it. Only plain files and directories with plain relative names are
//! taken, and the entry count and the bytes are bounded as the job bounds the checkpoint.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Component, Path};

use wire::BlobHash;

/// Directories deeper than this are refused: far past what any task's state needs, well short
/// of what a recursive walk could not take.
const DEPTH_MAX: usize = 64;

/// What went wrong with a checkpoint; the task's fault (too large, a link) or the node's (I/O).
#[derive(Debug)]
pub(crate) enum CheckpointError {
    /// The task left more than the job allows, or something no checkpoint may hold.
    Refused(String),
    Io(io::Error),
}

impl From<io::Error> for CheckpointError {
    fn from(error: io::Error) -> Self {
        // Only `HashingWriter` says a file is too large: the archive passed the job's bound.
        match error.kind() {
            io::ErrorKind::FileTooLarge => CheckpointError::Refused(error.to_string()),
            _ => CheckpointError::Io(error),
        }
    }
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointError::Refused(message) => f.write_str(message),
            CheckpointError::Io(error) => write!(f, "cannot read or write the checkpoint: {error}"),
        }
    }
}

/// The bounds one checkpoint is held to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) bytes_max: u64,
    pub(crate) entries_max: u64,
}

/// Packs `dir` into a new archive at `archive`; its hash and size. The archive, headers
/// included, must fit `bounds.bytes_max`.
pub(crate) fn pack(
    dir: &Path,
    archive: &Path,
    bounds: Bounds,
) -> Result<(BlobHash, u64), CheckpointError> {
    let mut names = Vec::new();
    list(dir, Path::new(""), 0, bounds, &mut names)?;
    let out = HashingWriter {
        inner: BufWriter::new(File::create(archive)?),
        hasher: blake3::Hasher::new(),
        written: 0,
        bytes_max: bounds.bytes_max,
    };
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    for name in &names {
        builder.append_path_with_name(dir.join(name), name)?;
    }
    let mut out = builder.into_inner()?;
    out.inner.flush()?;
    out.inner.get_ref().sync_all()?;
    Ok((BlobHash(*out.hasher.finalize().as_bytes()), out.written))
}

/// The entries below `dir`, sorted, directories before what they hold; refuses links and
/// devices, and more entries or file bytes than the bounds.
fn list(
    dir: &Path,
    prefix: &Path,
    depth: usize,
    bounds: Bounds,
    names: &mut Vec<std::path::PathBuf>,
) -> Result<(), CheckpointError> {
    if depth > DEPTH_MAX {
        return Err(refused(format!(
            "/checkpoint is nested deeper than {DEPTH_MAX}"
        )));
    }
    let mut entries: Vec<_> = fs::read_dir(dir.join(prefix))?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let name = prefix.join(entry.file_name());
        let kind = entry.file_type()?;
        if !kind.is_file() && !kind.is_dir() {
            return Err(refused(format!(
                "/checkpoint/{} is neither a file nor a directory",
                name.display()
            )));
        }
        names.push(name.clone());
        if names.len() as u64 > bounds.entries_max {
            return Err(refused(format!(
                "/checkpoint holds more than {} files and directories",
                bounds.entries_max
            )));
        }
        if kind.is_dir() {
            list(dir, &name, depth + 1, bounds, names)?;
        }
    }
    Ok(())
}

/// Unpacks `archive` into the empty directory `dir`, refusing anything but plain files and
/// directories under plain names, and more than the bounds.
pub(crate) fn unpack(archive: &Path, dir: &Path, bounds: Bounds) -> Result<(), CheckpointError> {
    let mut archive = tar::Archive::new(io::BufReader::new(File::open(archive)?));
    archive.set_preserve_permissions(false);
    archive.set_preserve_mtime(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(false);
    let (mut entries, mut bytes) = (0u64, 0u64);
    for entry in archive.entries()? {
        let mut entry = entry?;
        entries += 1;
        bytes = bytes.saturating_add(entry.size());
        if entries > bounds.entries_max || bytes > bounds.bytes_max {
            return Err(refused("the checkpoint holds more than its job allows"));
        }
        let kind = entry.header().entry_type();
        if !matches!(kind, tar::EntryType::Regular | tar::EntryType::Directory) {
            return Err(refused(
                "the checkpoint holds an entry that is not a file or directory",
            ));
        }
        let path = entry.path()?.into_owned();
        let plain = path
            .components()
            .all(|part| matches!(part, Component::Normal(_)));
        if !plain || path.components().count() > DEPTH_MAX {
            return Err(refused(format!("the checkpoint names {}", path.display())));
        }
        if !entry.unpack_in(dir)? {
            return Err(refused(format!("the checkpoint names {}", path.display())));
        }
    }
    Ok(())
}

fn refused(message: impl Into<String>) -> CheckpointError {
    CheckpointError::Refused(message.into())
}

/// Writes the archive while hashing and counting it, and stops once it passes its bound.
struct HashingWriter {
    inner: BufWriter<File>,
    hasher: blake3::Hasher,
    written: u64,
    bytes_max: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.written += written as u64;
        if self.written > self.bytes_max {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "the checkpoint's archive passes the job's {} bytes",
                    self.bytes_max
                ),
            ));
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        bytes_max: 1 << 20,
        entries_max: 100,
    };

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::write(root.join("a"), b"first").unwrap();
        fs::write(root.join("b/c/d"), vec![7u8; 5000]).unwrap();
    }

    #[test]
    fn equal_directories_pack_to_equal_blobs_and_unpack_to_the_same_files() {
        let temp = tempfile::tempdir().unwrap();
        let (one, two) = (temp.path().join("one"), temp.path().join("two"));
        tree(&one);
        tree(&two);
        let packed = |dir: &Path, name: &str| pack(dir, &temp.path().join(name), BOUNDS).unwrap();
        let (hash, size) = packed(&one, "one.tar");
        assert_eq!(packed(&two, "two.tar"), (hash, size));
        let back = temp.path().join("back");
        fs::create_dir(&back).unwrap();
        unpack(&temp.path().join("one.tar"), &back, BOUNDS).unwrap();
        assert_eq!(fs::read(back.join("a")).unwrap(), b"first");
        assert_eq!(fs::read(back.join("b/c/d")).unwrap(), vec![7u8; 5000]);
    }

    #[test]
    fn a_checkpoint_past_its_bounds_is_refused_both_ways() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("dir");
        tree(&dir);
        let small = Bounds {
            bytes_max: 4096,
            entries_max: 100,
        };
        let archive = temp.path().join("a.tar");
        assert!(matches!(
            pack(&dir, &archive, small),
            Err(CheckpointError::Refused(_))
        ));
        let few = Bounds {
            bytes_max: 1 << 20,
            entries_max: 2,
        };
        assert!(matches!(
            pack(&dir, &archive, few),
            Err(CheckpointError::Refused(_))
        ));
        pack(&dir, &archive, BOUNDS).unwrap();
        let back = temp.path().join("back");
        fs::create_dir(&back).unwrap();
        assert!(matches!(
            unpack(&archive, &back, few),
            Err(CheckpointError::Refused(_))
        ));
    }

    /// Another node made the archive: one that names a path outside the directory, or a link,
    /// is refused and writes nothing outside it.
    #[test]
    fn hostile_archives_are_refused() {
        let temp = tempfile::tempdir().unwrap();
        let archive = temp.path().join("evil.tar");
        let mut builder = tar::Builder::new(File::create(&archive).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder.append_link(&mut header, "escape", "/etc").unwrap();
        builder.finish().unwrap();
        let dir = temp.path().join("dir");
        fs::create_dir(&dir).unwrap();
        assert!(matches!(
            unpack(&archive, &dir, BOUNDS),
            Err(CheckpointError::Refused(_))
        ));
        assert!(fs::symlink_metadata(dir.join("escape")).is_err());

        let archive = temp.path().join("dots.tar");
        let mut raw = tar::Header::new_old();
        raw.as_old_mut().name[..10].copy_from_slice(b"../outside");
        raw.set_entry_type(tar::EntryType::Regular);
        raw.set_size(1);
        raw.set_cksum();
        let mut bytes = raw.as_bytes().to_vec();
        bytes.extend(b"x".iter().chain([0u8; 511].iter()));
        bytes.extend([0u8; 1024]);
        fs::write(&archive, bytes).unwrap();
        assert!(matches!(
            unpack(&archive, &dir, BOUNDS),
            Err(CheckpointError::Refused(_))
        ));
        assert!(!temp.path().join("outside").exists());
    }
}
