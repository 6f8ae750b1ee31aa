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
    let report = match args.which {
        BenchCommand::Dispatch {
            tasks,
            agents,
            slots,
            round_trips,
            durability,
            ray,
        } => {
            bench::dispatch::run(
                &binary,
                &DispatchOptions {
                    tasks,
                    agents,
                    slots,
                    round_trips,
                    durability,
                    ray_python: ray,
                },
            )
            .await?
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
        } => {
            bench::scale::run(
                &binary,
                &ScaleOptions {
                    nodes,
                    window_ms,
                    tasks,
                },
            )
            .await?
        }
        BenchCommand::Recover {
            tasks,
            agents,
            slots,
            kill,
            task_ms,
            lease_ms,
        } => {
            bench::recover::run(
                &binary,
                &RecoverOptions {
                    tasks,
                    agents,
                    slots,
                    kill,
                    task_ms,
                    lease_ms,
                },
            )
            .await?
        }
    };
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
