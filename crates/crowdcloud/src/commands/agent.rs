//! `agent`: lend this machine to a pool until stopped, within the owner's policy; and
//! `agent status`: what the agent on this machine is doing and why.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use agent::{OwnerPolicy, PolicyOverrides};

use crate::cli::{AgentArgs, AgentCommand, AgentRunArgs, AgentStatusArgs};
use crate::commands::shutdown_signal;
use crate::output::print_json;

pub(crate) async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(AgentCommand::Status(status_args)) => status(status_args),
        None => serve(*args.run).await,
    }
}

async fn serve(args: AgentRunArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| crate::remembered::base_dir(&None).join("agent"));
    let target = crate::remembered::agent_target(
        args.coordinator.as_ref(),
        args.join_token.as_ref(),
        args.fingerprint.as_ref(),
        &data_dir,
    )
    .await?;
    let url = crate::tunnels::reachable_later(&target.url).await?;
    let mut config = agent::AgentConfig::new(&url, &target.join_token, data_dir);
    config.coordinator_fingerprint = target.fingerprint;
    config.identity_clash_wait = Duration::from_secs(args.identity_wait_secs);
    let overrides = overrides(&args)?;
    config.policy = OwnerPolicy::load(args.policy.as_deref(), &overrides)?;
    config.policy_file = args.policy.clone();
    config.policy_overrides = overrides;
    // The policy decides the slots; this is only the ceiling no reload can pass.
    config.slots = wire::limits::SLOTS_PER_NODE_MAX;
    if let Some(name) = args.name {
        config.name = name;
    }
    config.sandbox.compiler = child_compiler(Duration::from_secs(args.compile_deadline_secs));
    if let Some(size) = &args.module_bytes_max {
        config.sandbox.module_limits.module_bytes_max = module_bytes_max(size)?;
    }
    config.labels = labels(&args.labels)?;
    config.drain_timeout = Duration::from_secs(args.drain_secs);
    config.cheat = args.cheat.map(|strategy| agent::CheatConfig {
        strategy,
        group_key: args.cheat_group,
    });
    config.peer_listen = args.peer_listen;
    config.peer_address = args.peer_address;
    let summary = agent::run(config, shutdown_signal()).await?;
    tracing::info!(
        node = %summary.node_id,
        reported = summary.attempts_reported,
        released = summary.attempts_released,
        "agent stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// Compiling in a child of this program, so a compile can be stopped; in this process when the
/// program cannot name itself.
pub(crate) fn child_compiler(deadline: Duration) -> sandbox::Compiler {
    match std::env::current_exe() {
        Ok(program) => sandbox::Compiler::Child {
            program,
            args: vec!["compile-module".into()],
            deadline,
        },
        Err(error) => {
            tracing::warn!(%error, "cannot find this program to compile in a child; compiling in-process, where a compile cannot be stopped");
            sandbox::Compiler::InProcess
        }
    }
}

/// `--module-bytes-max`: a size within what a node may report.
fn module_bytes_max(text: &str) -> anyhow::Result<usize> {
    let (min, max) = (
        wire::validate::MODULE_BYTES_MIN,
        wire::limits::MODULE_BYTES_MAX,
    );
    let bytes = jobspec::parse_bytes(text, "--module-bytes-max")?;
    if !(min..=max).contains(&bytes) {
        bail!("--module-bytes-max {text}: give 1MiB to 256MiB");
    }
    Ok(bytes as usize)
}

/// The policy fields the flags set, written as they would be in the policy file.
fn overrides(args: &AgentRunArgs) -> anyhow::Result<PolicyOverrides> {
    let mut overrides = PolicyOverrides::default();
    if args.dedicated {
        overrides.dedicated();
    }
    if let Some(slots) = args.slots {
        if slots == 0 || slots > wire::limits::SLOTS_PER_NODE_MAX {
            bail!(
                "--slots {slots}: give 1 to {}",
                wire::limits::SLOTS_PER_NODE_MAX
            );
        }
        overrides.set("slots", i64::from(slots));
    }
    let text_fields = [
        ("cores", &args.max_cores),
        ("memory", &args.max_memory),
        ("disk", &args.max_disk),
        ("idle_for", &args.only_when_idle),
        ("owner_cpu_max", &args.pause_above_cpu),
        ("release_after", &args.release_after),
    ];
    for (field, value) in text_fields {
        if let Some(text) = value {
            overrides.set(field, flag_value(text));
        }
    }
    if args.only_on_ac {
        overrides.set("ac_only", true);
    }
    let list = |items: &[String]| {
        toml::Value::Array(items.iter().map(|item| item.clone().into()).collect())
    };
    if !args.hours.is_empty() {
        overrides.set("hours", list(&args.hours));
    }
    if !args.pools.is_empty() {
        overrides.set("pools", list(&args.pools));
    }
    Ok(overrides)
}

/// A flag's text as the policy file would hold it: a bare number is a number.
fn flag_value(text: &str) -> toml::Value {
    match text.trim().parse::<i64>() {
        Ok(number) => toml::Value::Integer(number),
        Err(_) => toml::Value::String(text.to_owned()),
    }
}

fn status(args: AgentStatusArgs) -> anyhow::Result<ExitCode> {
    // The same default as the running agent's, so both look in one place.
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| crate::remembered::base_dir(&None).join("agent"));
    let status = agent::owner::status::read_status(&data_dir)
        .with_context(|| format!("reading the agent's status in {}", data_dir.display()))?;
    let now_ms = agent::owner::status::now_ms();
    let live = status.as_ref().is_some_and(|status| status.is_live(now_ms));
    let headline = status.as_ref().map_or_else(
        || "not running".to_owned(),
        |status| status.headline(now_ms),
    );
    if args.json {
        print_json(&serde_json::json!({
            "running": live,
            "headline": headline,
            "status": status,
        }))?;
    } else {
        println!("{headline}");
        if let Some(status) = status.as_ref().filter(|_| live) {
            if !status.reason.is_empty() && !headline.contains(&status.reason) {
                println!("  why:     {}", status.reason);
            }
            println!(
                "  pool:    {} at {}",
                status.pool_name.as_deref().unwrap_or("(joining)"),
                status.coordinator
            );
            println!("  slots:   {}", status.slots);
            println!("  policy:  {}", status.policy);
            for attempt in &status.running {
                println!(
                    "  {} job {} task {}{}: fuel used {}",
                    attempt.attempt_id,
                    attempt.job_id,
                    attempt.task_index,
                    if attempt.paused { " (paused)" } else { "" },
                    attempt.fuel_used
                );
            }
        }
    }
    // Scripts can tell a running agent by the exit code.
    Ok(if live {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn labels(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--label {pair:?}: write it as KEY=VALUE, e.g. region=eu");
        };
        labels.insert(key.to_owned(), value.to_owned());
    }
    wire::validate::labels(&labels, "--label")?;
    Ok(labels)
}
