//! The subcommands. Each takes its parsed arguments and returns the process exit code.

mod agent;
mod bench;
mod credits;
mod delete;
mod demo;
mod doctor;
mod federation;
mod forward;
mod jobs;
mod join;
mod keys;
mod pipelines;
mod relay;
mod results;
mod runtimes;
mod service;
mod submit;
mod tokens;
mod trust;
mod web;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up(args) => service::up(args).await,
        Command::Coordinator(args) => service::coordinator(args).await,
        Command::Agent(args) => agent::run(args).await,
        Command::Submit(args) => submit::run(args).await,
        Command::Status(args) => jobs::status(args).await,
        Command::Watch(args) => jobs::watch(args).await,
        Command::Results(args) => results::run(args).await,
        Command::Cancel(args) => jobs::cancel(args).await,
        Command::Delete(args) => delete::run(args).await,
        Command::Nodes(args) => jobs::nodes(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Join(args) => join::join(args).await,
        Command::JoinCode(args) => join::join_code(args).await,
        Command::Tokens(command) => tokens::run(command).await,
        Command::Federation(command) => federation::run(command).await,
        Command::Keys(command) => keys::run(command).await,
        Command::Credits(args) => credits::run(args).await,
        Command::Runtimes(args) => runtimes::run(args),
        Command::Doctor(args) => doctor::run(args).await,
        Command::Relay(args) => relay::run(args).await,
        Command::Forward(args) => forward::run(args).await,
        Command::Web(args) => web::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::CompileModule(_) => unreachable!("main compiles before it starts a runtime"),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
