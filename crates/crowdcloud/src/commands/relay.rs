//! `relay`: runs a relay for pools' remote paths until stopped.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::RelayArgs;

pub(crate) async fn run(args: RelayArgs) -> anyhow::Result<ExitCode> {
    let listen = args
        .listen
        .parse()
        .with_context(|| format!("--listen {:?}: give HOST:PORT", args.listen))?;
    let relay = remote::Relay::start(listen, args.client_bytes_per_second).await?;
    let address = relay
        .address()
        .map_or(args.listen.clone(), |a| a.to_string());
    println!("crowdcloud relay listening on http://{address}");
    println!("  pools use it with: crowdcloud up --remote --relay http://{address}");
    tokio::signal::ctrl_c().await?;
    Ok(ExitCode::SUCCESS)
}
