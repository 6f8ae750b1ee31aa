//! `crowdcloud bench sandbox`: what the sandbox costs the provider.
//!
//! Start-up: a cached module instantiated with WASI set up and its per-attempt directories
//! made and removed, as every attempt does. CPU: kernels of the `kernels` crate run in the
//! sandbox against the same code compiled natively in this process, with fuel metering and
//! epoch interruption measured apart and together.

use std::time::{Duration, Instant};

use serde::Serialize;

use kernels::Kernel;
use sandbox::{Attempt, AttemptLimits, Metering, Outcome, Sandbox, SandboxConfig};

use crate::report::{Better, Machine};
use crate::{BenchError, Check, Figure, Percentiles, Report};

#[derive(Debug, Clone, Serialize)]
pub struct SandboxOptions {
    pub instantiations: u32,
    /// Kernel sizes are their defaults times this (below 1 for a quick run).
    pub kernel_scale: f64,
    /// Runs of each kernel and mode; the best is kept.
    pub repeats: u32,
    /// The size of the generated module whose compile and starts are measured, in MiB; 0
    /// leaves that part out.
    pub large_module_mib: u32,
}

fn limits() -> AttemptLimits {
    AttemptLimits {
        memory_bytes_max: 256 << 20,
        fuel_max: u64::MAX / 4,
        deadline: Duration::from_secs(600),
        output_bytes_max: 1 << 20,
        output_files_max: 16,
        stdout_bytes_max: 1 << 20,
        stderr_bytes_max: 1 << 20,
    }
}

/// An attempt with nothing but arguments, under the benchmark's limits.
fn plain_attempt(work_dir: std::path::PathBuf, program_name: &str, args: Vec<String>) -> Attempt {
    Attempt::plain(work_dir, program_name, args, limits())
}

/// The end-to-end part for a large module: a restarted agent's first task, through a real
/// coordinator and agent processes of `binary` (see `sandbox_restart`).
pub async fn restarted_agent(
    binary: &std::path::Path,
    mib: u32,
) -> Result<(Vec<crate::Figure>, Vec<crate::Check>), BenchError> {
    crate::sandbox_restart::measure(binary, mib).await
}

pub fn run(options: &SandboxOptions) -> Result<Report, BenchError> {
    let work = tempfile::tempdir().map_err(BenchError::io("a temporary directory"))?;
    let mut figures = Vec::new();
    let mut checks = Vec::new();

    let (start_figures, start_checks) = starts(work.path(), options.instantiations)?;
    figures.extend(start_figures);
    checks.extend(start_checks);
    let modes = [
        ("plain", false, false),
        ("fuel", true, false),
        ("epoch", false, true),
        ("fuel + epoch (as agents run)", true, true),
    ];
    let sandboxes = modes
        .iter()
        .map(|(_, fuel, epoch)| {
            let sandbox = Sandbox::new(SandboxConfig {
                metering: Metering {
                    fuel: *fuel,
                    epoch: *epoch,
                },
                ..SandboxConfig::default()
            })?;
            let prepared = sandbox
                .prepare(
                    *blake3::hash(guests::KERNELS).as_bytes(),
                    guests::KERNELS,
                    false,
                )
                .map_err(BenchError::Setup)?;
            Ok((sandbox, prepared))
        })
        .collect::<Result<Vec<_>, BenchError>>()?;
    for kernel in Kernel::ALL {
        let size = ((f64::from(kernel.default_size()) * options.kernel_scale) as u32).max(1);
        // Native and sandboxed runs take turns, so a change in the machine's speed during the
        // run (other load, frequency) hits all of them alike; the fastest run of each counts.
        let mut native = Duration::MAX;
        let mut native_checksum = String::new();
        let mut wasm = vec![Duration::MAX; modes.len()];
        let mut outputs = vec![String::new(); modes.len()];
        for repeat in 0..options.repeats.max(1) {
            let began = Instant::now();
            native_checksum = std::hint::black_box(kernel.run(size));
            native = native.min(began.elapsed());
            for (mode, (sandbox, prepared)) in sandboxes.iter().enumerate() {
                let attempt = plain_attempt(
                    work.path()
                        .join(format!("{}-{mode}-{repeat}", kernel.name())),
                    "kernels",
                    vec![kernel.name().to_owned(), size.to_string()],
                );
                let began = Instant::now();
                let report = sandbox.run(prepared, attempt);
                wasm[mode] = wasm[mode].min(began.elapsed());
                outputs[mode] = match report.outcome {
                    Outcome::Succeeded => String::from_utf8_lossy(&report.stdout).into_owned(),
                    other => format!("{other:?}"),
                };
            }
        }
        figures.push(Figure::new(
            &format!("{} natively", kernel.name()),
            native.as_secs_f64() * 1000.0,
            "ms",
            Better::Lower,
        ));
        let expected = format!("{} {size} {native_checksum}\n", kernel.name());
        for (index, (mode, _, _)) in modes.iter().enumerate() {
            checks.push(Check::new(
                format!("{} ({mode}) gives the native checksum", kernel.name()),
                outputs[index] == expected,
            ));
            let ratio = wasm[index].as_secs_f64() / native.as_secs_f64();
            let mut figure = Figure::new(
                &format!("{} in the sandbox, {mode} / native", kernel.name()),
                ratio,
                "x",
                Better::Lower,
            );
            if mode.starts_with("fuel + epoch") {
                figure = figure.target(1.25).baseline("browsers' wasm", Some(1.5));
            }
            figures.push(figure);
        }
    }
    if options.large_module_mib > 0 {
        let attempt =
            |dir: &std::path::Path, name: &str| plain_attempt(dir.join(name), "large", vec![]);
        let (large, large_checks) =
            crate::sandbox_large::measure(work.path(), options.large_module_mib, attempt)?;
        figures.extend(large);
        checks.extend(large_checks);
    }
    Ok(Report {
        benchmark: "sandbox".to_owned(),
        machine: Machine::this(),
        parameters: serde_json::to_value(options).unwrap_or_default(),
        figures,
        checks,
    })
}

/// Start-up figures: a cached module started with recycled directories, as agents run, and
/// with fresh ones.
fn starts(work: &std::path::Path, count: u32) -> Result<(Vec<Figure>, Vec<Check>), BenchError> {
    let (mut figures, mut checks) = (Vec::new(), Vec::new());
    let (start, start_checks) = instantiation(work, count, true)?;
    figures.push(
        Figure::new(
            "start, cached module, WASI + dirs (recycled, as agents run): p50",
            start.p50_ms * 1000.0,
            "µs",
            Better::Lower,
        )
        .target(40.0)
        .baseline("wasmtime on-demand instantiate", Some(20.0)),
    );
    figures.push(
        Figure::new(
            "start (recycled) p99",
            start.p99_ms * 1000.0,
            "µs",
            Better::Lower,
        )
        .target(100.0),
    );
    checks.extend(start_checks);
    let (fresh, fresh_checks) = instantiation(work, count, false)?;
    figures.push(Figure::new(
        "start with fresh dirs made and removed each time: p50",
        fresh.p50_ms * 1000.0,
        "µs",
        Better::Lower,
    ));
    checks.extend(fresh_checks);
    Ok((figures, checks))
}

fn instantiation(
    base: &std::path::Path,
    count: u32,
    recycle: bool,
) -> Result<(Percentiles, Vec<Check>), BenchError> {
    let dir = &base.join(if recycle {
        "recycled-starts"
    } else {
        "fresh-starts"
    });
    std::fs::create_dir_all(dir).map_err(BenchError::io("the attempts' directory"))?;
    let sandbox = Sandbox::new(SandboxConfig {
        recycle_dir: recycle.then(|| base.join("recycled")),
        ..SandboxConfig::default()
    })?;
    let noop =
        wat::parse_str(guests::NOOP_WAT).map_err(|error| BenchError::Setup(error.to_string()))?;
    let prepared = sandbox
        .prepare(*blake3::hash(&noop).as_bytes(), &noop, false)
        .map_err(BenchError::Setup)?;
    let mut samples = Vec::with_capacity(count as usize);
    let mut succeeded = 0u32;
    for index in 0..count.max(1) {
        let attempt = plain_attempt(dir.join(format!("start-{index}")), "noop", vec![]);
        let began = Instant::now();
        let report = sandbox.run(&prepared, attempt);
        drop(report.outputs);
        samples.push(began.elapsed());
        succeeded += u32::from(report.outcome == Outcome::Succeeded);
    }
    let left = std::fs::read_dir(dir)
        .map(|entries| entries.count())
        .unwrap_or(0);
    Ok((
        Percentiles::of(&mut samples),
        vec![
            Check::new(
                format!("all {count} starts succeeded"),
                succeeded == count.max(1),
            ),
            Check::new("no attempt directory was left behind", left == 0),
        ],
    ))
}
