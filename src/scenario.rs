//! `portcullis scenario` (being written).

use std::process::ExitCode;

/// Runs the scenario command.
pub fn run_cli(_args: &crate::cli::ScenarioArgs) -> ExitCode {
    ExitCode::FAILURE
}
