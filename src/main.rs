//! The `portcullis` binary: parses the command line (docs/cli.md) and runs a subcommand.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use bevy_ecs::prelude::*;
use clap::Parser;
use portcullis::app::{ServerConfig, build_server_app};
use portcullis::cli::{Cli, Command, ServeArgs};
use portcullis::net::{ListenFailed, Listening, Transport};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Serve(args)) => serve(&args),
        None => serve(&cli.serve),
        Some(Command::Scenario(args)) => portcullis::scenario::run_cli(&args),
        Some(Command::Cert(args)) => match portcullis::cert::write_pair(&args.out, &args.hosts) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "error: {e}");
                ExitCode::FAILURE
            }
        },
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
    let (mut app, signals) = match build_server_app(&config) {
        Ok(built) => built,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = signals.install_process_handler() {
        let _ = writeln!(std::io::stderr(), "error: {e}");
        return ExitCode::FAILURE;
    }
    if args.stop_on_stdin_eof {
        stop_on_stdin_eof(signals.clone());
    }
    app.add_observer(print_listening).add_observer(|failed: On<ListenFailed>| {
        let _ = writeln!(std::io::stderr(), "error: {}", *failed);
    });
    if app.run().is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Prints one `listening on` line per listener once every listener is bound
/// (docs/cli.md, "Output"): the TCP address as `IP:PORT`, a WebSocket one as
/// `ws://IP:PORT` (`wss://` with TLS).
fn print_listening(listening: On<Listening>) {
    let addr = listening.addr;
    let mut stdout = std::io::stdout().lock();
    let _ = match listening.kind {
        Transport::WebSocket { tls: false } => writeln!(stdout, "listening on ws://{addr}"),
        Transport::WebSocket { tls: true } => writeln!(stdout, "listening on wss://{addr}"),
        _ => writeln!(stdout, "listening on {addr}"),
    };
    let _ = stdout.flush();
}

/// Raises a shutdown signal when stdin reaches end of file (the parent is
/// gone), and a second one, the immediate exit, 15 s later.
fn stop_on_stdin_eof(signals: portcullis::runtime::Signals) {
    let spawned = std::thread::Builder::new().name("stdin-eof".into()).spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        signals.raise();
        std::thread::sleep(std::time::Duration::from_secs(15));
        signals.raise();
    });
    if let Err(e) = spawned {
        let _ = writeln!(std::io::stderr(), "warning: cannot watch stdin: {e}");
    }
}
