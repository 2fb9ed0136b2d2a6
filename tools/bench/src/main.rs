//! The `portcullis-bench` binary: `portcullis-bench <WORKLOAD> [FLAGS]`
//! (BENCHMARKS.md), and the hidden `portcullis-bench echo-server` that the
//! `echo-limit` workload starts.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use portcullis_bench::{BenchArgs, EchoServerArgs};

/// Load-test a Portcullis server on this machine (loopback only) and report the figures.
#[derive(Debug, Parser)]
#[command(name = "portcullis-bench", version)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

/// The minimal NDJSON JSON-RPC server that the bench measures as the limit of this machine.
#[derive(Debug, Parser)]
#[command(name = "portcullis-bench echo-server")]
struct EchoCli {
    #[command(flatten)]
    echo: EchoServerArgs,
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|arg| arg == "echo-server") {
        let cli = EchoCli::parse_from(std::env::args_os().skip(1));
        return portcullis_bench::echo::run_cli(&cli.echo, &mut std::io::stdout());
    }
    let cli = Cli::parse();
    portcullis_bench::run_cli(&cli.bench, &mut std::io::stdout(), &mut std::io::stderr())
}
