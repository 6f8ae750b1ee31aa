//! `bench`: runs one benchmark, prints its table, writes its JSON, and fails if any of its
//! correctness checks failed (never because of speed).

use std::process::ExitCode;

use anyhow::Context;

use bench::dispatch::DispatchOptions;
use bench::recover::RecoverOptions;
use bench::sandbox::SandboxOptions;
use bench::scale::ScaleOptions;

use crate::cli::{BenchArgs, BenchCommand};

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let binary = std::env::current_exe().context("cannot find this program's path")?;
    let report = measure(&binary, args.which).await?;
    print!("{}", report.to_table());
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

/// Runs the benchmark `which` names with this program as its pool's processes.
async fn measure(binary: &std::path::Path, which: BenchCommand) -> anyhow::Result<bench::Report> {
    Ok(match which {
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
    })
}
