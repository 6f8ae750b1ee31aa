//! `bench`: runs one benchmark, prints its table, writes its JSON, and fails if any of its
//! correctness checks failed (never because of speed).

use std::process::ExitCode;

use anyhow::Context;

use bench::dispatch::DispatchOptions;
use bench::recover::RecoverOptions;
use bench::sandbox::SandboxOptions;
use bench::scale::ScaleOptions;
use bench::verify::VerifyOptions;

use crate::cli::{BenchArgs, BenchCommand, BenchVerifyArgs};

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let binary = std::env::current_exe().context("cannot find this program's path")?;
    let (report, table) = measure(&binary, args.which).await?;
    print!("{table}");
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if report.all_checks_pass() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A benchmark's report, and the same for people.
type Measured = (bench::Report, String);

/// Runs the benchmark `which` names with this program as its pool's processes: its report, and
/// the report for people.
async fn measure(binary: &std::path::Path, which: BenchCommand) -> anyhow::Result<Measured> {
    let report = match which {
        BenchCommand::Dispatch {
            tasks,
            agents,
            slots,
            round_trips,
            durability,
            ray,
        } => {
            let options = DispatchOptions {
                tasks,
                agents,
                slots,
                round_trips,
                durability,
                ray_python: ray,
            };
            bench::dispatch::run(binary, &options).await?
        }
        BenchCommand::Sandbox {
            instantiations,
            kernel_scale,
            repeats,
        } => {
            let options = SandboxOptions {
                instantiations,
                kernel_scale,
                repeats,
            };
            tokio::task::spawn_blocking(move || bench::sandbox::run(&options)).await??
        }
        BenchCommand::Scale {
            nodes,
            window_ms,
            tasks,
            baseline,
        } => {
            let options = ScaleOptions {
                nodes,
                window_ms,
                tasks,
                baseline,
            };
            bench::scale::run(binary, &options).await?
        }
        BenchCommand::Recover {
            tasks,
            agents,
            slots,
            kill,
            task_ms,
            lease_ms,
        } => {
            let options = RecoverOptions {
                tasks,
                agents,
                slots,
                kill,
                task_ms,
                lease_ms,
            };
            bench::recover::run(binary, &options).await?
        }
        BenchCommand::Verify(args) => return verify(args).await,
    };
    let table = report.to_table();
    Ok((report, table))
}

/// The model of `bench verify`, off the async threads: a table with a row per scenario and
/// scheme, which the generic report of figures would spread over hundreds of lines.
async fn verify(args: BenchVerifyArgs) -> anyhow::Result<Measured> {
    let options = VerifyOptions {
        model_tasks: args.model_tasks,
        model_nodes: args.model_nodes,
        seed: args.seed,
        cheaters_percent: args.cheaters,
        alt_audit_per_million: args.alt_audit_per_million,
    };
    let model = tokio::task::spawn_blocking(move || bench::verify::model(&options)).await??;
    let report = model.report();
    let table = model.to_table(&report);
    Ok((report, table))
}
