//! `bench`: runs one benchmark, prints its table, writes its JSON, and fails if any of its
//! correctness checks failed (never because of speed).

use std::process::ExitCode;

use anyhow::Context;

use bench::dispatch::DispatchOptions;
use bench::recover::RecoverOptions;
use bench::recover_checkpoints::CheckpointOptions;
use bench::sandbox::SandboxOptions;
use bench::scale::ScaleOptions;
use bench::verify::VerifyOptions;

use crate::cli::{BenchArgs, BenchCommand, BenchFailoverArgs, BenchStagesArgs, BenchVerifyArgs};

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

/// `bench dispatch`: on loopback, or with `--remote` over each path away from home.
async fn dispatch(binary: &std::path::Path, which: BenchCommand) -> anyhow::Result<bench::Report> {
    Ok(match which {
        BenchCommand::Dispatch {
            tasks,
            slots,
            round_trips,
            durability,
            remote: true,
            ..
        } => {
            let options = bench::remote::RemoteOptions {
                tasks,
                slots,
                round_trips,
                durability,
            };
            bench::remote::run(binary, &options).await?
        }
        BenchCommand::Dispatch {
            tasks,
            agents,
            slots,
            round_trips,
            durability,
            ray,
            s3,
            remote: false,
        } => {
            let options = DispatchOptions {
                tasks,
                agents,
                slots,
                round_trips,
                durability,
                ray_python: ray,
                s3,
            };
            bench::dispatch::run(binary, &options).await?
        }
        _ => unreachable!("called for dispatch only"),
    })
}

/// A benchmark's report, and the same for people.
type Measured = (bench::Report, String);

/// Runs the benchmark `which` names with this program as its pool's processes: its report, and
/// the report for people.
async fn measure(binary: &std::path::Path, which: BenchCommand) -> anyhow::Result<Measured> {
    let report = match which {
        which @ BenchCommand::Dispatch { .. } => dispatch(binary, which).await?,
        BenchCommand::Stages(args) => bench::stages::run(binary, &stages_options(args)?).await?,
        BenchCommand::Private {
            round_trips,
            input_mib,
            input_files,
            slots,
        } => {
            let options = bench::private::PrivateOptions {
                round_trips,
                input_mib,
                input_files,
                slots,
            };
            bench::private::run(binary, &options).await?
        }
        BenchCommand::Failover(args) => failover(binary, args).await?,
        which @ BenchCommand::Sandbox {
            large_module_mib, ..
        } => {
            let mut report = sandbox(which).await?;
            if large_module_mib > 0 {
                let (figures, checks) =
                    bench::sandbox::restarted_agent(binary, large_module_mib).await?;
                report.figures.extend(figures);
                report.checks.extend(checks);
            }
            report
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
        recover @ BenchCommand::Recover { .. } => self::recover(binary, recover).await?,
        BenchCommand::Verify(args) => return verify(binary, args).await,
    };
    let table = report.to_table();
    Ok((report, table))
}

/// `bench failover`, its faults named as on the command line.
async fn failover(
    binary: &std::path::Path,
    args: BenchFailoverArgs,
) -> anyhow::Result<bench::Report> {
    let faults = args
        .faults
        .iter()
        .map(|fault| match fault.as_str() {
            "kill" => Ok(bench::failover::Fault::Kill),
            "freeze" => Ok(bench::failover::Fault::Freeze),
            other => anyhow::bail!("--faults {other:?}: give kill, freeze or both"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let options = bench::failover::FailoverOptions {
        database_url: args.database_url,
        faults,
        runs: args.runs,
        tasks: args.tasks,
        task_ms: args.task_ms,
        agents: args.agents,
        slots: args.slots,
    };
    Ok(bench::failover::run(binary, &options).await?)
}

/// `bench sandbox`, off the async threads: it times code on the calling thread.
async fn sandbox(which: BenchCommand) -> anyhow::Result<bench::Report> {
    let BenchCommand::Sandbox {
        instantiations,
        kernel_scale,
        repeats,
        large_module_mib,
    } = which
    else {
        unreachable!("called for the sandbox benchmark only");
    };
    let options = SandboxOptions {
        instantiations,
        kernel_scale,
        repeats,
        large_module_mib,
    };
    Ok(tokio::task::spawn_blocking(move || bench::sandbox::run(&options)).await??)
}

/// The model of `bench verify`, off the async threads: a table with a row per scenario and
/// scheme, which the generic report of figures would spread over hundreds of lines.
async fn verify(binary: &std::path::Path, args: BenchVerifyArgs) -> anyhow::Result<Measured> {
    let live = live_options(&args)?;
    let options = VerifyOptions {
        model_tasks: args.model_tasks,
        model_nodes: args.model_nodes,
        seed: args.seed,
        cheaters_percent: args.cheaters,
        alt_audit_per_million: args.alt_audit_per_million,
    };
    let model = tokio::task::spawn_blocking(move || bench::verify::model(&options)).await??;
    let mut report = model.report();
    if let Some(live) = live {
        let (figures, checks) = bench::verify::end_to_end(binary, &live).await?;
        report.figures.extend(figures);
        report.checks.extend(checks);
        report.parameters["end_to_end"] = serde_json::to_value(&live)?;
    }
    let table = model.to_table(&report);
    Ok((report, table))
}

/// The end-to-end part's pool: `--agents`, of which `--cheaters` percent (20 % unless given)
/// cheat; `None` with `--model-only`.
fn live_options(args: &BenchVerifyArgs) -> anyhow::Result<Option<bench::verify::LiveOptions>> {
    if args.model_only {
        return Ok(None);
    }
    let percent = args.cheaters.unwrap_or(20.0);
    if !(0.0..100.0).contains(&percent) || args.agents < 2 || args.tasks == 0 {
        anyhow::bail!(
            "bench verify needs at least 2 agents, 1 task, and cheaters under 100 %; \
             or pass --model-only"
        );
    }
    let cheaters = ((f64::from(args.agents) * percent / 100.0).round() as u32).max(1);
    Ok(Some(bench::verify::LiveOptions {
        honest: args.agents - cheaters.min(args.agents - 1),
        cheaters: cheaters.min(args.agents - 1),
        tasks: args.tasks,
        ..bench::verify::LiveOptions::default()
    }))
}

/// `bench recover`, with long tasks that checkpoint or with short ones that do not.
async fn recover(binary: &std::path::Path, which: BenchCommand) -> anyhow::Result<bench::Report> {
    Ok(match which {
        BenchCommand::Recover {
            agents,
            slots,
            kill,
            lease_ms,
            checkpoints: true,
            interval_ms,
            state_mib,
            limit,
            ..
        } => {
            let options = CheckpointOptions {
                agents,
                slots,
                kill,
                lease_ms,
                interval_ms,
                state_mib,
                limit,
            };
            bench::recover_checkpoints::run(binary, &options).await?
        }
        BenchCommand::Recover {
            tasks,
            agents,
            slots,
            kill,
            task_ms,
            lease_ms,
            ..
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
        _ => unreachable!("`measure` hands only `bench recover` here"),
    })
}

/// What `bench stages` runs, from its arguments.
fn stages_options(args: BenchStagesArgs) -> anyhow::Result<bench::stages::StagesOptions> {
    if !(0.0..1.0).contains(&args.churn) || args.churn_agents < 2 {
        anyhow::bail!(
            "--churn is the share of agents away at once, from 0 to below 1, and \
             --churn-agents at least 2, so that one is always working"
        );
    }
    Ok(bench::stages::StagesOptions {
        maps: args.maps,
        parts: args.parts,
        agents: args.agents,
        slots: args.slots,
        scale: bench::stages::ScaleGraph {
            maps: args.scale_maps,
            reduces: args.scale_reduces,
            fanout: args.scale_fanout,
        },
        churn: bench::churn::ChurnOptions {
            maps: args.churn_maps,
            parts: args.churn_parts,
            agents: args.churn_agents,
            slots: args.churn_slots,
            down_fraction: args.churn,
            down_ms: args.churn_down_ms,
            locality: match args.churn_locality.as_str() {
                "nodes" => wire::Locality::Nodes,
                _ => wire::Locality::Coordinator,
            },
        },
        locality: bench::locality::LocalityOptions {
            books: args.locality_books,
            words: args.locality_words,
            parts: args.parts,
            agents: args.agents,
            slots: args.slots,
        },
    })
}
