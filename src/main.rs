//! The `drainit` binary: capture the inherited signal state, take the
//! handled signals, parse, log, run.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use drainit::child::Inherited;
use drainit::cli::Cli;

fn main() -> ExitCode {
    // First, before anything changes the mask or a disposition.
    let inherited = Inherited::capture();
    // Then, while drainit has one thread (every later one inherits the
    // mask): block the handled signals for the signalfd.
    let taken = inherited.take_signals();
    let cli = Cli::parse();
    if cli.mode.is_none() && cli.command.is_empty() {
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "no command to run: drainit [OPTIONS] [--] COMMAND [ARGS]... (or: drainit sidecar)",
            )
            .exit();
    }
    let _flush_log_on_exit = drainit::init_logging(cli.settings.verbose, cli.settings.log_format);
    if let Err(error) = taken {
        tracing::error!("failed to block the signals drainit handles: {error}");
        return ExitCode::from(1);
    }
    drainit::run(cli, inherited)
}
