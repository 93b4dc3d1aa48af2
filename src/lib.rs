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
//! - [`traffic`]: the app's TCP traffic, from netlink `sock_diag`; [`evidence`]
//!   decides from it when `--propagation-delay auto` ends;
//! - [`admin`]: the hyper admin server; [`status`] and [`metrics`] render
//!   its `/status` and `/metrics` answers;
//! - [`error`](mod@error): drainit's own failures.

pub mod admin;
pub mod child;
pub mod cli;
pub mod error;
pub mod evidence;
pub mod lifecycle;
pub mod metrics;
pub mod probe;
pub mod reaper;
pub mod sidecar;
pub mod signal_stream;
pub mod signals;
pub mod status;
pub mod supervisor;
pub mod traffic;

use std::process::ExitCode;

use tracing::error;

use crate::child::Inherited;
use crate::cli::{Cli, LogFormat, Mode};
use crate::error::Error;

/// Sends drainit's log lines to stderr, as text or JSON lines.
pub fn init_logging(verbose: u8, format: LogFormat) {
    let level = match verbose {
        0 => tracing::Level::INFO,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(error) = result {
        eprintln!("drainit: logging not set up: {error}");
    }
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
