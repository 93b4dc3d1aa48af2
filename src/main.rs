//! The `drainit` binary: capture the inherited signal state, take the
//! handled signals (both before `main`), parse, log, run.

#![deny(clippy::disallowed_methods, clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::CommandFactory;
use drainit::cli::Cli;

/// Runs [`drainit::os::early_init`] from the ELF constructors, before
/// Rust's runtime and `main`: while drainit has a single thread (every
/// later one inherits the mask), and as early as a process can, since a
/// namespace init drops a SIGTERM whose disposition is still the default.
/// Only in the binary: the library's test and checker builds must keep
/// their own signal state.
#[used]
#[unsafe(link_section = ".init_array")]
static EARLY_INIT: extern "C" fn() = early_init;

extern "C" fn early_init() {
    let _ = drainit::os::early_init();
}

fn main() -> ExitCode {
    // What the constructor captured (it runs again here only if the
    // constructor did not, and then captures now).
    let (inherited, taken) = drainit::os::early_init();
    let cli = parse_command_line();
    drainit::os::hide_private_environment(cli.settings.prestop_token.is_some());
    drainit::os::release_unused_stack();
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

/// Parses the command line on the main thread. A short-lived parse
/// thread saves ~50 kB of resident stack (issue 13), but every thread
/// takes a pid of the namespace: as PID 1 the app would be pid 3, not
/// pid 2 as under tini and dumb-init, which scripts and the CI's static
/// check rely on.
fn parse_command_line() -> Cli {
    Cli::parse_validated()
}
