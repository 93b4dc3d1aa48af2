//! The `drainit` binary: capture the inherited signal state, parse, log, run.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use drainit::child::Inherited;
use drainit::cli::Cli;

fn main() -> ExitCode {
    // First, before anything installs a handler or changes the mask.
    let inherited = Inherited::capture();
    let cli = Cli::parse();
    if cli.mode.is_none() && cli.command.is_empty() {
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "no command to run: drainit [OPTIONS] [--] COMMAND [ARGS]... (or: drainit sidecar)",
            )
            .exit();
    }
    drainit::init_logging(cli.settings.verbose, cli.settings.log_format);
    drainit::run(cli, inherited)
}
