//! `agent`: lend this machine to a pool until stopped.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;

use crate::cli::AgentArgs;
use crate::commands::shutdown_signal;
use crate::local;

pub(crate) async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| local::default_data_dir().join("agent"));
    let mut config = agent::AgentConfig::new(&args.coordinator, &args.join_token, data_dir);
    if let Some(slots) = args.slots {
        if slots == 0 || slots > wire::limits::SLOTS_PER_NODE_MAX {
            bail!(
                "--slots {slots}: give 1 to {}",
                wire::limits::SLOTS_PER_NODE_MAX
            );
        }
        config.slots = slots;
    }
    if let Some(name) = args.name {
        config.name = name;
    }
    config.labels = labels(&args.labels)?;
    config.drain_timeout = Duration::from_secs(args.drain_secs);
    let summary = agent::run(config, shutdown_signal()).await?;
    tracing::info!(
        node = %summary.node_id,
        reported = summary.attempts_reported,
        released = summary.attempts_released,
        "agent stopped"
    );
    Ok(ExitCode::SUCCESS)
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
