//! Reading results within fixed bounds, and comparing two `output/` trees.
//!
//! The results come from untrusted nodes, so a result can be built to exhaust the validator: a
//! huge file, a million files, a deep chain of directories. Every read here is bounded, and a
//! result past a bound is refused (exit 2) rather than judged, since the validator could not
//! have looked at all of it. Links are never followed: a link to `/b` or to itself must not
//! change the verdict or loop.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::text::{self, Tolerance};

/// Largest file compared, in bytes; two of them are in memory at once.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Most files, links and directories one `output/` tree may hold.
pub const MAX_ENTRIES: usize = 10_000;
/// Most path components below `output/`, which also bounds the walk's recursion.
pub const MAX_DEPTH: usize = 32;

/// What stands at a path in an `output/` tree; directories are not entries of their own, so an
/// empty directory makes no difference.
#[derive(Debug, PartialEq)]
pub enum Entry {
    File,
    Link(PathBuf),
}

/// Reads a whole regular file, or says why it cannot (a missing file, a directory, too big).
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    // A FIFO or device would block or never end, so only regular files are opened.
    if !fs::metadata(path).map_err(cannot)?.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let file = File::open(path).map_err(cannot)?;
    let size = file.metadata().map_err(cannot)?.len();
    let too_big = || {
        format!(
            "{} is larger than {} MiB, the most a compared file may hold",
            path.display(),
            MAX_FILE_BYTES >> 20
        )
    };
    if size > MAX_FILE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    // Reserving the exact size up front keeps read_to_end from doubling the buffer, and a
    // failed reservation is an error message rather than an abort.
    let exact = usize::try_from(size).unwrap_or(usize::MAX);
    bytes
        .try_reserve_exact(exact)
        .map_err(|_| format!("cannot allocate {size} bytes to read {}", path.display()))?;
    // The size could have changed since it was read, so the read itself is bounded too.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Every file and link below `root`, by path relative to it, sorted by path.
pub fn walk(root: &Path) -> Result<Vec<(PathBuf, Entry)>, String> {
    let mut entries = Vec::new();
    let mut seen = 0;
    walk_dir(root, Path::new(""), &mut entries, &mut seen)?;
    entries.sort_by(|x, y| x.0.cmp(&y.0));
    Ok(entries)
}

fn walk_dir(
    root: &Path,
    relative: &Path,
    entries: &mut Vec<(PathBuf, Entry)>,
    seen: &mut usize,
) -> Result<(), String> {
    let dir = root.join(relative);
    let cannot = |e: std::io::Error| format!("cannot list {}: {e}", dir.display());
    for entry in fs::read_dir(&dir).map_err(cannot)? {
        let entry = entry.map_err(cannot)?;
        *seen += 1;
        if *seen > MAX_ENTRIES {
            return Err(format!(
                "{} holds more than {MAX_ENTRIES} files and directories, the most a compared \
                 result may hold",
                root.display()
            ));
        }
        let path = relative.join(entry.file_name());
        if path.components().count() > MAX_DEPTH {
            return Err(format!(
                "{} nests deeper than {MAX_DEPTH} levels, the most a compared result may nest",
                root.display()
            ));
        }
        // The entry's own type, as listed: std does not follow links here.
        let kind = entry.file_type().map_err(cannot)?;
        if kind.is_dir() {
            walk_dir(root, &path, entries, seen)?;
        } else if kind.is_file() {
            entries.push((path, Entry::File));
        } else if kind.is_symlink() {
            let link = root.join(&path);
            let target = fs::read_link(&link)
                .map_err(|e| format!("cannot read the link {}: {e}", link.display()))?;
            entries.push((path, Entry::Link(target)));
        } else {
            return Err(format!(
                "{} is neither a file, a directory nor a link",
                root.join(&path).display()
            ));
        }
    }
    Ok(())
}

/// Compares the trees at `a` and `b` (the two `output/` directories); `Ok(None)` means they
/// hold the same paths and every pair is equivalent, `Err` that one cannot be read.
pub fn compare_trees(a: &Path, b: &Path, tolerance: Tolerance) -> Result<Option<String>, String> {
    // Both listings come before any content, so a result past the bounds is refused even when
    // an earlier file would already differ.
    let left = walk(a)?;
    let right = walk(b)?;
    if let Some(difference) = first_unmatched(&left, &right) {
        return Ok(Some(difference));
    }
    for ((path, x), (_, y)) in left.iter().zip(&right) {
        let name = path.display();
        match (x, y) {
            (Entry::File, Entry::File) => {
                let x = read_bounded(&a.join(path))?;
                let y = read_bounded(&b.join(path))?;
                if let Some(difference) = text::compare(&x, &y, tolerance) {
                    return Ok(Some(format!("output/{name} {difference}")));
                }
            }
            (Entry::Link(x), Entry::Link(y)) if x == y => {}
            (Entry::Link(x), Entry::Link(y)) => {
                return Ok(Some(format!(
                    "output/{name} links to {} in /a and to {} in /b",
                    x.display(),
                    y.display()
                )));
            }
            (Entry::File, Entry::Link(_)) => {
                return Ok(Some(format!(
                    "output/{name} is a file in /a and a link in /b"
                )));
            }
            (Entry::Link(_), Entry::File) => {
                return Ok(Some(format!(
                    "output/{name} is a link in /a and a file in /b"
                )));
            }
        }
    }
    Ok(None)
}

/// The first path, in sorted order, that only one of the two sorted listings holds.
fn first_unmatched(left: &[(PathBuf, Entry)], right: &[(PathBuf, Entry)]) -> Option<String> {
    let (mut left, mut right) = (left.iter().peekable(), right.iter().peekable());
    loop {
        let (side, path) = match (left.peek(), right.peek()) {
            (None, None) => return None,
            (Some((x, _)), None) => ("/a", x),
            (None, Some((y, _))) => ("/b", y),
            (Some((x, _)), Some((y, _))) if x == y => {
                left.next();
                right.next();
                continue;
            }
            (Some((x, _)), Some((y, _))) => {
                if x < y {
                    ("/a", x)
                } else {
                    ("/b", y)
                }
            }
        };
        return Some(format!("output/{} is only in {side}", path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::TestDir;

    const DEFAULT: Tolerance = Tolerance {
        relative: 1e-9,
        absolute: 0.0,
    };

    fn compare(a: &TestDir, b: &TestDir) -> Result<Option<String>, String> {
        compare_trees(a.path(), b.path(), DEFAULT)
    }

    #[test]
    fn same_files_in_nested_directories_are_equivalent() {
        let a = TestDir::new("tree-same-a");
        let b = TestDir::new("tree-same-b");
        for dir in [&a, &b] {
            dir.write("top.txt", b"1 2 3");
            dir.write("deep/er/x.bin", b"\xff\x00\x01");
        }
        a.write("deep/er/y.txt", b"0.30000000000000004");
        b.write("deep/er/y.txt", b"0.3\n");
        assert_eq!(compare(&a, &b), Ok(None));
    }

    #[test]
    fn empty_directories_are_not_files() {
        let a = TestDir::new("tree-empty-a");
        let b = TestDir::new("tree-empty-b");
        a.mkdir("nothing/here");
        assert_eq!(compare(&a, &b), Ok(None));
    }

    #[test]
    fn a_file_on_one_side_only_is_a_difference() {
        let a = TestDir::new("tree-only-a");
        let b = TestDir::new("tree-only-b");
        for dir in [&a, &b] {
            dir.write("common", b"");
        }
        b.write("sub/extra", b"");
        assert_eq!(
            compare(&a, &b),
            Ok(Some("output/sub/extra is only in /b".to_string()))
        );
        a.write("a-first", b"");
        assert_eq!(
            compare(&a, &b),
            Ok(Some("output/a-first is only in /a".to_string()))
        );
    }

    #[test]
    fn file_contents_are_compared_as_text_or_bytes() {
        let a = TestDir::new("tree-content-a");
        let b = TestDir::new("tree-content-b");
        a.write("d/result.txt", b"energy -1.5 steps 10");
        b.write("d/result.txt", b"energy -1.6 steps 10");
        assert_eq!(
            compare(&a, &b),
            Ok(Some(
                "output/d/result.txt token 2: -1.5 and -1.6 differ by more than the tolerance"
                    .to_string()
            ))
        );
        b.write("d/result.txt", b"energy -1.5 steps 10");
        a.write("image.raw", b"\x80 1");
        b.write("image.raw", b"\x80  1");
        let message = compare(&a, &b).expect("readable").expect("differs");
        assert!(
            message.starts_with("output/image.raw is not UTF-8"),
            "{message}"
        );
    }

    #[test]
    fn files_past_the_size_bound_are_refused() {
        let dir = TestDir::new("tree-big");
        let path = dir.write("big", b"");
        // A sparse file: the bound is checked before anything is read or allocated.
        let file = File::options().write(true).open(&path).expect("open");
        file.set_len(MAX_FILE_BYTES + 1).expect("grow sparse file");
        let err = read_bounded(&path).expect_err("too big");
        assert!(err.contains("larger than 64 MiB"), "{err}");
        file.set_len(3).expect("shrink");
        assert_eq!(read_bounded(&path), Ok(vec![0, 0, 0]));
        assert!(read_bounded(dir.path()).is_err(), "a directory is no file");
        assert!(read_bounded(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn trees_past_the_depth_bound_are_refused() {
        let dir = TestDir::new("tree-deep");
        let ok = vec!["d"; MAX_DEPTH - 1].join("/");
        dir.write(&format!("{ok}/f"), b"");
        assert_eq!(walk(dir.path()).expect("within bounds").len(), 1);
        dir.write(&format!("{ok}/d/f"), b"");
        let err = walk(dir.path()).expect_err("too deep");
        assert!(err.contains("deeper than 32 levels"), "{err}");
    }

    #[test]
    fn trees_past_the_entry_bound_are_refused() {
        let dir = TestDir::new("tree-many");
        for i in 0..MAX_ENTRIES {
            dir.write(&format!("f{i}"), b"");
        }
        assert_eq!(walk(dir.path()).expect("within bounds").len(), MAX_ENTRIES);
        dir.write("one-more", b"");
        let err = walk(dir.path()).expect_err("too many");
        assert!(err.contains("more than 10000 files"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn links_are_compared_by_target_and_never_followed() {
        use std::os::unix::fs::symlink;
        let a = TestDir::new("tree-link-a");
        let b = TestDir::new("tree-link-b");
        symlink("/", a.path().join("root")).expect("link");
        symlink("/", b.path().join("root")).expect("link");
        symlink(".", a.path().join("loop")).expect("link");
        symlink(".", b.path().join("loop")).expect("link");
        assert_eq!(compare(&a, &b), Ok(None));
        b.write("plain", b"");
        symlink("elsewhere", a.path().join("plain")).expect("link");
        assert_eq!(
            compare(&a, &b),
            Ok(Some(
                "output/plain is a link in /a and a file in /b".to_string()
            ))
        );
    }
}
