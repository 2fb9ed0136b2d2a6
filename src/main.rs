//! The `portcullis` binary: parses the command line (CLI.md) and runs a subcommand.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use portcullis::app::{ServerConfig, build_server_app};
use portcullis::cli::{Cli, Command, ServeArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Serve(args)) => serve(&args),
        None => serve(&cli.serve),
        Some(Command::Scenario(args)) => portcullis::scenario::run_cli(&args),
        Some(Command::Account(args)) => {
            let stdin = std::io::stdin();
            match portcullis::account::run(&args, &mut stdin.lock(), &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let filter = bevy_log::tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| bevy_log::tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = bevy_log::tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(filter)
        .try_init();
    let config = ServerConfig::from(args);
    let (mut app, addr, signals) = match build_server_app(&config) {
        Ok(built) => built,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = signals.install_process_handler() {
        let _ = writeln!(std::io::stderr(), "error: cannot install the signal handler: {e}");
        return ExitCode::FAILURE;
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {addr}");
    let _ = stdout.flush();
    drop(stdout);
    if app.run().is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
