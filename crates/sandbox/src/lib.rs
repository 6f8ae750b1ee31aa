//! The sandbox: runs untrusted WebAssembly on a provider node: WASI preview 1 commands (core
//! modules) and WASI 0.2 `wasi:cli/command` components, with the same limits and outcomes.
//!
//! This is the only crate that touches wasmtime. It owns the agent's engines ([`Sandbox`]: one
//! for plain runs, one with NaN canonicalisation for deterministic ones), a cache of compiled
//! modules keyed by blob hash, and one [`wasmtime::Store`] per attempt ([`Sandbox::run`]).
//!
//! What a task can see is exactly: its args, the env vars its job declares, stdin, `/input`
//! (read-only), `/output` and `/scratch` (writable, size-capped), `/checkpoint` (writable,
//! size-capped, kept by the caller across restarts) in a job that checkpoints, and the job's
//! read-only mounts,
//! all under a per-attempt directory that is removed when the attempt ends, whatever the outcome.
//! No network (preview 1 has no socket creation and none are preopened; components get no
//! `wasi:sockets`), no host env, no host
//! files, clocks no finer than a millisecond (or a virtual clock in deterministic mode).
//!
//! Limits on everything: linear memory and tables (`limiter`), fuel, a wall-clock deadline by
//! epoch interruption, stdout/stderr caps (`pipe`), output bytes and files (`workdir`),
//! module size and function count before compiling (`module`). Every failure comes back as a
//! typed [`Outcome`], never as a panic of the host.
//!
//! The modules import one another in one order only, so their imports form no circle. First
//! the leaves, which import none of the others: `clock`, `control`, `limiter`, `pipe`,
//! `workdir` and `module` (admission before compiling); `compile_child` (compiling in a child
//! process that can be stopped, the parent's side) imports only `control` and `module`. Then
//! `state`, the data of an attempt's `Store` and the checks its epoch callback makes; `poll`,
//! `cputime` (the clock a task reads to know a checkpoint is due) and then `writes`, the preview 1 calls the sandbox replaces, and `component`, the linker of
//! components with the WASI 0.2 calls it replaces, all of which reach the attempt only through
//! `state`; `code`, a compiled module or component and the same linked; `disk_cache`, which
//! keeps `code` across restarts; `attempt`, which sets up and runs one attempt and classifies
//! its end; and last `engine`, which compiles, caches and links code and runs attempts
//! through all of them.

mod attempt;
mod clock;
mod code;
mod compile_child;
mod component;
mod control;
mod cputime;
mod disk_cache;
mod engine;
mod limiter;
mod module;
mod pipe;
mod poll;
mod state;
mod workdir;
mod writes;

pub use attempt::{
    Attempt, AttemptLimits, CheckpointDir, Determinism, Metering, Outcome, RunReport, Usage,
};
pub use compile_child::Compiler;
pub use control::AttemptControl;
pub use engine::{Prepared, Sandbox, SandboxConfig, WASM_FEATURES, serve_compile_order};
pub use module::{ModuleLimits, WASI_INTERFACES};
pub use workdir::{OutputFile, Outputs, remove_tree};

/// Failures of the sandbox itself, as opposed to failures of a guest (those are [`Outcome`]s).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot set up the WebAssembly engine: {0}; check the sandbox configuration")]
    Engine(String),
    #[error(
        "cannot prepare the attempt directory {path}: {source}; check free disk space and permissions of the agent's data dir"
    )]
    WorkDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
