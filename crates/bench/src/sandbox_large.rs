//! The large-module part of `crowdcloud bench sandbox`: what it costs a node to make a module
//! of tens of MB ready (a C++ program, a language runtime): compiling it cold, loading what it
//! compiled before from disk after a restart, and finding it in memory.
//!
//! The module is made of many functions of straight-line integer code, so the compiler has
//! real work, as in a large program. Its size is asked for in MiB.

use std::path::Path;
use std::time::{Duration, Instant};

use sandbox::{Attempt, Outcome, Sandbox, SandboxConfig};

use crate::report::Better;
use crate::{BenchError, Check, Figure};

/// Bytes of one generated function body: large enough that the module is mostly code, small
/// enough that the compiler's work is spread over many functions, as in a real program.
const FUNCTION_BYTES: usize = 16 << 10;

/// The figures and checks of the large-module part, for a module of `mib` MiB.
pub(crate) fn measure(
    work: &Path,
    mib: u32,
    attempt: impl Fn(&Path, &str) -> Attempt,
) -> Result<(Vec<Figure>, Vec<Check>), BenchError> {
    let wasm = generated(mib as usize * (1 << 20));
    let key = *blake3::hash(&wasm).as_bytes();
    let compiled_dir = work.join("compiled");
    let config = || SandboxConfig {
        compiled_dir: Some(compiled_dir.clone()),
        compiled_dir_bytes_max: u64::MAX,
        ..SandboxConfig::default()
    };
    let mut checks = Vec::new();
    let cold = Sandbox::new(config())?;
    let began = Instant::now();
    cold.prepare(key, &wasm, false).map_err(BenchError::Setup)?;
    let compile = began.elapsed();
    drop(cold);

    // A restarted agent: a new sandbox, the same compiled dir; then the same module again.
    let restarted = Sandbox::new(config())?;
    let start = |name: &str| -> Result<_, BenchError> {
        let began = Instant::now();
        let prepared = restarted
            .prepare(key, &wasm, false)
            .map_err(BenchError::Setup)?;
        let report = restarted.run(&prepared, attempt(work, name));
        Ok((began.elapsed(), prepared.from_disk(), report.outcome))
    };
    let (from_disk, loaded, outcome) = start("from-disk")?;
    checks.push(Check::new(
        "the restarted sandbox loaded the module from disk",
        loaded,
    ));
    checks.push(Check::new(
        "the large module ran from the disk cache",
        outcome == Outcome::Succeeded,
    ));
    let (from_memory, _, outcome) = start("from-memory")?;
    checks.push(Check::new(
        "the large module ran from memory",
        outcome == Outcome::Succeeded,
    ));
    Ok((figures(wasm.len(), compile, from_disk, from_memory), checks))
}

fn figures(bytes: usize, compile: Duration, from_disk: Duration, memory: Duration) -> Vec<Figure> {
    let mb = bytes as f64 / 1e6;
    vec![
        Figure::new(
            &format!("{mb:.0} MB module: cold compile"),
            compile.as_secs_f64(),
            "s",
            Better::Lower,
        ),
        Figure::new(
            &format!("{mb:.0} MB module: start from the disk cache (load + one run)"),
            from_disk.as_secs_f64() * 1000.0,
            "ms",
            Better::Lower,
        )
        .target(50.0)
        .baseline("cold compile", Some(compile.as_secs_f64() * 1000.0)),
        Figure::new(
            &format!("{mb:.0} MB module: start from memory (one run)"),
            memory.as_secs_f64() * 1000.0,
            "ms",
            Better::Lower,
        ),
    ]
}

/// A valid WASI command of about `bytes` bytes: functions of straight-line integer code of
/// about [`FUNCTION_BYTES`] each, all called from `_start` (see
/// [`guests::binary::costly_to_compile`]).
pub(crate) fn generated(bytes: usize) -> Vec<u8> {
    let functions = (bytes / FUNCTION_BYTES).max(1) as u32;
    // Each addition is three bytes: `i32.const 1; i32.add`.
    guests::binary::costly_to_compile(functions, (FUNCTION_BYTES / 3) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_module_is_of_the_size_asked_and_runs() {
        let wasm = generated(1 << 20);
        assert!(wasm.len() > (1 << 20) - FUNCTION_BYTES && wasm.len() < (1 << 20) + 4096);
        let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
        let prepared = sandbox
            .prepare(*blake3::hash(&wasm).as_bytes(), &wasm, false)
            .unwrap();
        let work = tempfile::tempdir().unwrap();
        let limits = sandbox::AttemptLimits {
            memory_bytes_max: 1 << 20,
            fuel_max: 1 << 30,
            deadline: Duration::from_secs(60),
            output_bytes_max: 0,
            output_files_max: 0,
            stdout_bytes_max: 0,
            stderr_bytes_max: 0,
        };
        let attempt = Attempt::plain(work.path().join("run"), "large", vec![], limits);
        assert_eq!(sandbox.run(&prepared, attempt).outcome, Outcome::Succeeded);
    }
}
