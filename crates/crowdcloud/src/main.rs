//! `crowdcloud`: one binary for the whole pool. `main` parses the command line, sets up logging
//! and the runtime, and hands over to a command in [`commands`].

mod cli;
mod commands;
mod local;
mod output;
mod picture;
mod remembered;
mod tunnels;
mod validators;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if let cli::Command::CompileModule(args) = &cli.command {
        return match sandbox::serve_compile_order(&args.order) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("{message}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    output::init_logging(cli.command.is_daemon(), cli.verbose);
    if cli.command.is_daemon() {
        local::keep_files_private();
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = worker_threads(&cli.command) {
        builder.worker_threads(workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Worker threads of the async runtime of a coordinator or an agent; `None` leaves tokio's
/// default, a worker per core.
///
/// Their async work is small: HTTP, JSON and transfers. A coordinator's commits run on its
/// store's writer thread, and an agent's attempts on threads of their own (the worker that starts
/// one hands its other tasks on). Fewer workers than cores leave the writer, the attempts and the
/// other processes of the machine their CPUs, and spare the idle workers' hunting for work on
/// each other's. On 2 cores (`bench dispatch`, five alternating runs) this took the round trip
/// p50 from 1.064 to 0.915 ms and throughput from 15,182 to 17,446 tasks/s, against a worker per
/// core.
/// `TOKIO_WORKER_THREADS` overrides it, as it overrides tokio's own default.
fn worker_threads(command: &cli::Command) -> Option<usize> {
    if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    match command {
        cli::Command::Up(_) | cli::Command::Coordinator(_) => Some((cores / 2).max(1)),
        cli::Command::Agent(cli::AgentArgs { command: None, .. }) => Some(1),
        _ => None,
    }
}
