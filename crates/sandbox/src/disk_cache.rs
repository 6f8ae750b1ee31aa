//! Compiled modules kept on disk, so an agent that restarts does not compile again: a large
//! module (a 68 MB C++ program, a language runtime) takes minutes to compile on one core and a
//! few milliseconds to load.
//!
//! A file is named by the module's blob hash and a hash of everything that changes the code
//! the engine makes (wasmtime's version, the engine's configuration, the CPU features it
//! compiles for: `Engine::precompile_compatibility_hash`), so the plain and the deterministic
//! engine, or an upgraded agent, never load each other's code. Loading compiled code runs it
//! as native code without checking it, so only files this node wrote are loaded: the
//! directory is the agent's private data dir (mode 0700), a file is written under a temporary
//! name and renamed whole, and wasmtime checks its header and engine compatibility again on
//! load. A file that fails to load is removed and the module compiled again. The directory is
//! bounded: past `bytes_max`, the files used longest ago go first.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use wasmtime::component::Component;
use wasmtime::{Engine, Module, Precompiled};

use crate::code::Code;

/// Files of compiled code end so; temporary ones start with a dot and are never loaded.
const EXTENSION: &str = "cwasm";

pub(crate) struct DiskCache {
    dir: PathBuf,
    bytes_max: u64,
}

impl DiskCache {
    /// Opens (making it, private to this user) the cache in `dir`, and drops temporary files a
    /// crash left.
    pub(crate) fn open(dir: &Path, bytes_max: u64) -> std::io::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        for entry in std::fs::read_dir(dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            bytes_max,
        })
    }

    /// The cache in `dir` as another process of this node uses it at the same time: a child
    /// compiling into it leaves the others' temporary files alone and keeps its file whatever
    /// its size (the parent bounds the directory once it loaded it).
    pub(crate) fn shared(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            bytes_max: u64::MAX,
        }
    }

    fn path(&self, engine: &Engine, key: &[u8; 32]) -> PathBuf {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let key: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
        self.dir
            .join(format!("{key}-{:016x}.{EXTENSION}", hasher.finish()))
    }

    /// The module compiled before by this node for `engine`, if its file is there and loads.
    /// The workspace's only `unsafe` code: wasmtime has no other way to load compiled code.
    #[allow(unsafe_code)]
    pub(crate) fn load(&self, engine: &Engine, key: &[u8; 32]) -> Option<Code> {
        let path = self.path(engine, key);
        if !path.is_file() {
            return None;
        }
        // SAFETY: only this node writes the directory (private to its user) and each file
        // appears whole by a rename (see the module's doc); wasmtime checks that the file is
        // code it made for an engine configured as this one, and of the kind it says.
        let loaded = match Engine::detect_precompiled_file(&path) {
            Ok(Some(Precompiled::Component)) => unsafe {
                Component::deserialize_file(engine, &path).map(Code::Component)
            },
            Ok(_) => unsafe { Module::deserialize_file(engine, &path).map(Code::Module) },
            Err(error) => Err(error),
        };
        match loaded {
            Ok(module) => {
                // Its time of use, for the bound: a file used is kept longer. The clock is the
                // filesystem's own, which orders the files; nothing else reads it.
                if let Ok(file) = std::fs::File::options().append(true).open(&path) {
                    #[allow(clippy::disallowed_methods)]
                    let _ = file.set_modified(SystemTime::now());
                }
                Some(module)
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %format!("{error:#}"), "a compiled module on disk did not load; compiling it again");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Keeps `module`'s compiled code for the next start; a failure only costs a compile then.
    pub(crate) fn store(&self, engine: &Engine, key: &[u8; 32], module: &Code) {
        if let Err(error) = self.write(engine, key, module) {
            let path = self.path(engine, key);
            tracing::warn!(path = %path.display(), %error, "could not keep a compiled module on disk");
            return;
        }
        self.evict();
    }

    /// Writes `module`'s code whole under its name, unless it is larger than the bound.
    pub(crate) fn write(
        &self,
        engine: &Engine,
        key: &[u8; 32],
        module: &Code,
    ) -> std::io::Result<()> {
        let path = self.path(engine, key);
        let bytes = module
            .serialize()
            .map_err(|error| std::io::Error::other(format!("{error:#}")))?;
        if bytes.len() as u64 > self.bytes_max {
            return Ok(());
        }
        let name = path.file_name().expect("cache paths name a file");
        let temporary = self.dir.join(format!(".{}", name.to_string_lossy()));
        std::fs::write(&temporary, &bytes)?;
        std::fs::rename(&temporary, &path)
    }

    /// Removes the code compiled from blob `key`, for every engine configuration.
    pub(crate) fn forget(&self, key: &[u8; 32]) {
        let key: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
        let prefix = format!("{key}-");
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Removes the files used longest ago until the rest fit in `bytes_max`.
    pub(crate) fn evict(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == EXTENSION))
            .filter_map(|entry| {
                let meta = entry.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), entry.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|(_, bytes, _)| bytes).sum();
        files.sort();
        for (_, bytes, path) in files {
            if total <= self.bytes_max {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= bytes;
            }
        }
    }
}
