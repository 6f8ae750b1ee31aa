//! Temporary directories for the tests, made without crates and removed when dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Tests run in parallel threads and in parallel runs, so names carry the process and a count.
static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct TestDir(PathBuf);

impl TestDir {
    pub fn new(name: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("compare-{name}-{}-{n}", std::process::id()));
        // A directory left by a crashed run of the same process id must not leak into this one.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create a test directory");
        TestDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `relative`, making its parent directories, and returns its full path.
    pub fn write(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent directories");
        }
        fs::write(&path, bytes).expect("write a test file");
        path
    }

    pub fn mkdir(&self, relative: &str) {
        fs::create_dir_all(self.0.join(relative)).expect("create a test directory");
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
