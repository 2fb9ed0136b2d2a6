//! The `portcullis` binary: parses the command line (docs/cli.md) and runs a subcommand.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use bevy_ecs::prelude::*;
use clap::Parser;
use portcullis::admin::{AdminListenFailed, AdminListening};
use portcullis::app::{ServerConfig, build_server_app};
use portcullis::cli::{Cli, Command, LogFormat, ServeArgs};
use portcullis::net::{ListenFailed, Listening, Transport};

/// The allocator of the binary (Cargo.toml explains why; the library leaves
/// the choice to the application that embeds it).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Some(Command::Admin(args)) => match portcullis::admin_cli::run(&args, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
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

/// A usage error of `serve` (docs/cli.md): exit status 2, as clap's own.
const USAGE: u8 = 2;

fn serve(args: &ServeArgs) -> ExitCode {
    if let Err(e) = init_logs(args) {
        let _ = writeln!(std::io::stderr(), "error: {e}");
        return ExitCode::from(USAGE);
    }
    if let Some(listen) = args.admin_listen
        && let Err(e) = portcullis::admin::check_exposure(listen, args.admin_token.as_deref())
    {
        let _ = writeln!(std::io::stderr(), "error: {e}");
        return ExitCode::from(USAGE);
    }
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
    app.add_observer(print_listening)
        .add_observer(|failed: On<ListenFailed>| {
            let _ = writeln!(std::io::stderr(), "error: {}", *failed);
        })
        .add_observer(|admin: On<AdminListening>| {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "listening on http://{}", admin.addr);
            let _ = stdout.flush();
        })
        .add_observer(|failed: On<AdminListenFailed>| {
            let _ = writeln!(std::io::stderr(), "error: {}", *failed);
        });
    if app.run().is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Starts the log subscriber on stderr (docs/cli.md `--log`, `--log-format`):
/// the filter is `--log` (or `PORTCULLIS_LOG`), else `RUST_LOG`, else `info`;
/// one that does not parse is an error, not a silent `info`.
fn init_logs(args: &ServeArgs) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let (text, source) = match &args.log {
        Some(filter) => (filter.clone(), "--log"),
        None => match std::env::var("RUST_LOG") {
            Ok(filter) if !filter.trim().is_empty() => (filter, "RUST_LOG"),
            _ => ("info".to_owned(), "the default"),
        },
    };
    let filter =
        EnvFilter::builder().parse(&text).map_err(|e| format!("invalid log filter {text:?} (from {source}): {e}"))?;
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    // A second subscriber (tests running `serve` in-process) keeps the first.
    let _ = match args.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
    };
    Ok(())
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
