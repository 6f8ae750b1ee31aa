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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
