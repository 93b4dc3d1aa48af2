//! `drainit-check`: parse the command line, check the manifests, exit with the verdict.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = drainit_check::cli::Args::parse();
    drainit_check::run(&args)
}
