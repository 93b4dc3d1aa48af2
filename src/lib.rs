//! drainit: a container init (PID 1) that drains traffic before it stops the app.
//!
//! Modules, one concern each:
//! - [`cli`]: every flag, its environment variable and its parser;
//! - [`signals`]: signal names, `--rewrite`, which signals are forwarded;
//! - [`signal_stream`]: the handled signals, blocked and read from a
//!   `signalfd` (no handler, no self-pipe);
//! - [`child`]: starting the app with the signal state drainit inherited
//!   (all `unsafe` lives here);
//! - [`reaper`]: the only caller of `waitpid`;
//! - [`lifecycle`]: the `Starting → Running → Draining → Stopping → Exited`
//!   state machine and its timers;
//! - [`supervisor`]: wrapper mode, the select loop of PID 1;
//! - [`sidecar`]: sidecar mode, without an app of its own;
//! - [`probe`]: `--ready-check` against the app;
//! - [`admin`]: the hyper admin server; [`status`] and [`metrics`] render
//!   its `/status` and `/metrics` answers;
//! - [`logging`]: drainit's own log lines, written by a thread of their
//!   own so that stderr can never block or kill PID 1;
//! - [`error`](mod@error): drainit's own failures.

pub mod admin;
pub mod child;
pub mod cli;
pub mod error;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod reaper;
pub mod sidecar;
pub mod signal_stream;
pub mod signals;
pub mod status;
pub mod supervisor;

use std::io::Write as _;
use std::process::ExitCode;

use tracing::error;

use crate::child::Inherited;
use crate::cli::{Cli, LogFormat, Mode};
use crate::error::Error;

/// Sends drainit's log lines to stderr, as text or JSON lines, without
/// ever blocking the caller. Hold the result until drainit exits: dropping
/// it gives the last lines a short, bounded time to be written.
pub fn init_logging(verbose: u8, format: LogFormat) -> logging::FlushOnDrop {
    if let Err(error) = logging::init(verbose, format) {
        // Not eprintln!: it panics when stderr is gone.
        let _ = writeln!(std::io::stderr(), "drainit: logging not set up: {error}");
    }
    logging::FlushOnDrop
}

/// Runs drainit as parsed from the command line; returns its exit code.
pub fn run(cli: Cli, inherited: Inherited) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(Error::Runtime);
    let result = runtime.and_then(|runtime| {
        runtime.block_on(async move {
            match cli.mode {
                Some(Mode::Sidecar(args)) => sidecar::run(cli.settings, args).await,
                None => supervisor::run(cli.settings, cli.command, inherited).await,
            }
        })
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            error!("{failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
