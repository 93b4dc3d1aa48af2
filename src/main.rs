//! The `drainit` binary: capture the inherited signal state, take the
//! handled signals (both before `main`), parse, log, run.

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
    let cli = parse_on_a_thread();
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

/// Parses the command line on a short-lived thread: clap's derived parser
/// takes ~60 kB of stack, which on the main thread would stay resident
/// for drainit's whole life (issue 13). It starts after the handled
/// signals are blocked, as every thread must.
///
/// Only with musl, the libc of the release build: glibc installs a
/// handler for its internal signal 33 when the first thread starts, and
/// exec resets a handled signal to the default, so the app would lose an
/// ignored signal 33 drainit inherited (`tests/pid1_signals.rs` compares
/// the masks exactly); musl installs nothing.
#[cfg(target_env = "musl")]
fn parse_on_a_thread() -> Cli {
    match std::thread::Builder::new()
        .spawn(Cli::parse_validated)
        .map(|parser| parser.join())
    {
        Ok(Ok(cli)) => cli,
        // No thread to be had (or it panicked): parse here instead.
        _ => Cli::parse_validated(),
    }
}

/// Parses on the main thread (see the musl version for why).
#[cfg(not(target_env = "musl"))]
fn parse_on_a_thread() -> Cli {
    Cli::parse_validated()
}
