//! The large-module part of `crowdcloud bench sandbox`: what it costs a node to make a module
//! of tens of MB ready (a C++ program, a language runtime): compiling it cold, loading what it
//! compiled before from disk after a restart, and finding it in memory.
//!
//! The module is made here: many functions of straight-line integer code, so the compiler has
//! real work, as in a large program, and a `_start` that calls one of them. Its size is asked
//! for in MiB.

use std::path::Path;
use std::time::{Duration, Instant};

use guests::binary::section;
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

    // A restarted agent: a new sandbox, the same compiled dir.
    let restarted = Sandbox::new(config())?;
    let began = Instant::now();
    let prepared = restarted
        .prepare(key, &wasm, false)
        .map_err(BenchError::Setup)?;
    let report = restarted.run(&prepared, attempt(work, "from-disk"));
    let from_disk = began.elapsed();
    checks.push(Check::new(
        "the restarted sandbox loaded the module from disk",
        prepared.from_disk(),
    ));
    checks.push(Check::new(
        "the large module ran from the disk cache",
        report.outcome == Outcome::Succeeded,
    ));
    let began = Instant::now();
    let prepared = restarted
        .prepare(key, &wasm, false)
        .map_err(BenchError::Setup)?;
    let report = restarted.run(&prepared, attempt(work, "from-memory"));
    let from_memory = began.elapsed();
    checks.push(Check::new(
        "the large module ran from memory",
        report.outcome == Outcome::Succeeded,
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

/// A valid WASI command of about `bytes` bytes: functions of straight-line arithmetic on a
/// local, and a `_start` that calls the first.
pub(crate) fn generated(bytes: usize) -> Vec<u8> {
    let functions = (bytes / FUNCTION_BYTES).max(1);
    let body = function_body();
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    // Types: 0 = [] -> [], 1 = [i32] -> [i32].
    section(1, &[2, 0x60, 0, 0, 0x60, 1, 0x7f, 1, 0x7f], &mut module);
    let mut declared = leb(functions + 1);
    declared.push(0);
    declared.extend(std::iter::repeat_n(1, functions));
    section(3, &declared, &mut module);
    section(5, &[1, 0, 1], &mut module);
    let mut exports = vec![2];
    exports.extend(name(b"_start"));
    exports.extend([0, 0]);
    exports.extend(name(b"memory"));
    exports.extend([2, 0]);
    section(7, &exports, &mut module);
    let start: &[u8] = &[0, 0x41, 7, 0x10, 1, 0x1a, 0x0b];
    let mut code = leb(functions + 1);
    code.extend(leb(start.len()));
    code.extend_from_slice(start);
    for _ in 0..functions {
        code.extend(leb(body.len()));
        code.extend_from_slice(&body);
    }
    section(10, &code, &mut module);
    module
}

/// `(param i32) (result i32)`: the parameter mixed by additions and multiplications, about
/// [`FUNCTION_BYTES`] long.
fn function_body() -> Vec<u8> {
    let mut body = vec![0];
    body.extend([0x20, 0]);
    let mut constant = 1u8;
    while body.len() + 8 < FUNCTION_BYTES {
        // i32.const k; i32.add; i32.const 3; i32.mul
        body.extend([0x41, constant & 0x3f, 0x6a, 0x41, 3, 0x6c]);
        constant = constant.wrapping_add(1);
    }
    body.push(0x0b);
    body
}

fn name(text: &[u8]) -> Vec<u8> {
    let mut out = leb(text.len());
    out.extend_from_slice(text);
    out
}

fn leb(value: usize) -> Vec<u8> {
    let mut out = Vec::new();
    guests::binary::leb128(value as u64, &mut out);
    out
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
