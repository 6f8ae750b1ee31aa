//! Build script: compiles the guest workspace in `guests/` for wasm32-wasip1 with a nested cargo
//! and puts the modules in `OUT_DIR`, or falls back to the committed copies in `prebuilt/` when
//! the target is missing, the build fails, or `CROWDCLOUD_GUESTS_PREBUILT=1` asks for them.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip1";
const GUESTS: [&str; 7] = [
    "render",
    "wordcount",
    "probe",
    "kernels",
    "compare",
    "collatz",
    "wordfreq",
];
const PREBUILT_ENV: &str = "CROWDCLOUD_GUESTS_PREBUILT";
const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Variables that carry the outer build's settings; the guests must build the same way whatever
/// profile, wrapper (clippy, sccache) or flags the outer build uses.
const LEAKY_VARS: [&str; 12] = [
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_INCREMENTAL",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_PRIMARY_PACKAGE",
];
const LEAKY_PREFIXES: [&str; 4] = [
    "CARGO_PROFILE_",
    "CARGO_BUILD_",
    "CARGO_TARGET_WASM32_WASIP1_",
    "__CARGO",
];

fn main() {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env_var("OUT_DIR"));
    // crates/guests -> the repository root, which holds the guest workspace.
    let repo = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("crates/guests sits two levels below the repository root");
    let guests_dir = repo.join("guests");
    let prebuilt_dir = manifest_dir.join("prebuilt");

    println!("cargo:rerun-if-env-changed={PREBUILT_ENV}");
    println!("cargo:rerun-if-changed={}", prebuilt_dir.display());
    for file in ["Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", guests_dir.join(file).display());
    }
    for guest in GUESTS {
        // A directory is scanned recursively, so this covers each guest's manifest and sources.
        println!(
            "cargo:rerun-if-changed={}",
            guests_dir.join(guest).display()
        );
    }
    // Libraries the guests share: the helper that checkpoints.
    println!(
        "cargo:rerun-if-changed={}",
        guests_dir.join("checkpoint").display()
    );
    // The kernels guest compiles the workspace's `kernels` crate.
    println!(
        "cargo:rerun-if-changed={}",
        repo.join("crates/kernels").display()
    );

    let built = if env::var_os(PREBUILT_ENV).is_some_and(|v| v == "1") {
        Err(format!(
            "{PREBUILT_ENV}=1 is set; unset it to build the guests from source"
        ))
    } else {
        build_from_source(&guests_dir, &out_dir)
    };
    let source_dir = match &built {
        Ok(dir) => dir.clone(),
        Err(why) => {
            for line in why.lines() {
                println!("cargo:warning=guests: {line}");
            }
            println!(
                "cargo:warning=guests: using the committed modules in {}",
                prebuilt_dir.display()
            );
            prebuilt_dir.clone()
        }
    };

    copy_modules(&source_dir, &prebuilt_dir, &out_dir, built.is_ok());

    let probe = fs::read(out_dir.join("probe.wasm")).expect("the probe guest was just written");
    let component = out_dir.join("probe-component.wasm");
    fs::write(&component, componentize(&probe))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}; check the disk", component.display()));

    let flag = out_dir.join("built_from_source.rs");
    fs::write(&flag, if built.is_ok() { "true" } else { "false" })
        .unwrap_or_else(|e| panic!("cannot write {}: {e}; check the disk", flag.display()));
}

/// Copies every guest from `source_dir` into `out_dir`, warning when modules built from source
/// differ from the committed ones in `prebuilt_dir`.
fn copy_modules(source_dir: &Path, prebuilt_dir: &Path, out_dir: &Path, built_from_source: bool) {
    let mut stale = Vec::new();
    for guest in GUESTS {
        let from = source_dir.join(format!("{guest}.wasm"));
        let bytes = fs::read(&from).unwrap_or_else(|e| {
            panic!(
                "cannot read guest module {}: {e}; install the target with `rustup target add \
                 {TARGET}` or restore crates/guests/prebuilt from git",
                from.display()
            )
        });
        assert!(
            bytes.starts_with(WASM_MAGIC),
            "{} is not a WebAssembly module; rebuild it with scripts/refresh-guests",
            from.display()
        );
        let prebuilt = fs::read(prebuilt_dir.join(format!("{guest}.wasm"))).ok();
        if built_from_source && prebuilt.as_deref() != Some(&bytes[..]) {
            stale.push(guest);
        }
        let to = out_dir.join(format!("{guest}.wasm"));
        fs::write(&to, &bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}; check the disk", to.display()));
    }
    if !stale.is_empty() {
        println!(
            "cargo:warning=guests: the committed prebuilt modules differ from the sources for {}; \
             run scripts/refresh-guests and commit crates/guests/prebuilt",
            stale.join(", ")
        );
    }
}

/// `module`, a WASI preview 1 command, as a WASI 0.2 `wasi:cli/command` component: its
/// preview 1 imports are met by wasmtime's adapter, which calls WASI 0.2 interfaces.
fn componentize(module: &[u8]) -> Vec<u8> {
    use wasi_preview1_component_adapter_provider::{
        WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    };
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|encoder| {
            encoder.adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
            )
        })
        .and_then(|encoder| encoder.validate(true).encode())
        .unwrap_or_else(|e| panic!("cannot make the probe guest a component: {e:#}"))
}

fn env_var(name: &str) -> OsString {
    env::var_os(name).unwrap_or_else(|| panic!("{name} is not set; build this crate with cargo"))
}

/// Builds every guest and returns the directory holding the `.wasm` files, or why it could not.
fn build_from_source(guests_dir: &Path, out_dir: &Path) -> Result<PathBuf, String> {
    let manifest = guests_dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(format!("{} is missing", manifest.display()));
    }
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rustc.to_string_lossy()))?;
    if !sysroot.status.success() {
        return Err(format!(
            "`{} --print sysroot` failed: {}",
            rustc.to_string_lossy(),
            String::from_utf8_lossy(&sysroot.stderr).trim()
        ));
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if !sysroot.join("lib").join("rustlib").join(TARGET).is_dir() {
        return Err(format!(
            "the {TARGET} target is not installed; run `rustup target add {TARGET}` to build \
             the guests from source"
        ));
    }

    let target_dir = out_dir.join("guests-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "--release",
        "--locked",
        "--offline",
        "--target",
        TARGET,
    ])
    .arg("--manifest-path")
    .arg(&manifest)
    .arg("--target-dir")
    .arg(&target_dir)
    .current_dir(guests_dir);
    for (key, _) in env::vars_os() {
        let key_str = key.to_string_lossy();
        if LEAKY_VARS.contains(&key_str.as_ref())
            || LEAKY_PREFIXES.iter().any(|p| key_str.starts_with(p))
        {
            cmd.env_remove(&key);
        }
    }
    // Empty flags override any rustflags from cargo config files, so the modules come out the
    // same as from scripts/refresh-guests, which sets the same.
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "");
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", cargo.to_string_lossy()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut lines: Vec<&str> = stderr.lines().rev().take(12).collect();
        lines.reverse();
        let mut why = format!(
            "building the guests for {TARGET} failed ({}); run scripts/refresh-guests to see \
             the whole error",
            output.status
        );
        for line in lines {
            why.push_str("\n  ");
            why.push_str(line);
        }
        return Err(why);
    }
    Ok(target_dir.join(TARGET).join("release"))
}
