//! drainit: a container init (PID 1) that drains traffic before it stops the app.
//!
//! Modules, one concern each:
//! - [`cli`]: every flag, its environment variable and its parser;
//! - [`signals`]: signal names, `--rewrite`, which signals are forwarded;
//! - [`signal_stream`]: the handled signals, blocked and read from a
//!   `signalfd` (no handler, no self-pipe);
//! - [`os`]: drainit's own process state: what it inherited, what it
//!   changes about itself (taken before `main`, from a constructor);
//! - [`child`]: starting the app with the inherited signal state, and the
//!   pidfd handle every signal to it goes through;
//! - [`reaper`]: the only caller of `waitpid`, decoding raw wait statuses;
//! - [`lifecycle`]: the drain machine, one `State` enum moving
//!   `Starting → Running → Draining → Stopping → Exited`, without I/O;
//! - [`supervisor`]: the one set-up path and the one event loop of both modes;
//! - [`wrapper`]: wrapper mode, the app as drainit's child;
//! - [`leftovers`]: what the app left behind, stopped before drainit exits;
//! - [`sidecar`]: sidecar mode, without an app of its own;
//! - [`probe`]: `--ready-check` against the app;
//! - [`traffic`]: the app's TCP traffic, from netlink `sock_diag`; [`evidence`]
//!   decides from it when `--propagation-delay auto` ends; [`observation`]
//!   feeds one to the other for the event loop;
//! - [`admin`]: the hyper admin server; [`status`] and [`metrics`] render
//!   its `/status` and `/metrics` answers;
//! - [`logging`]: drainit's own log lines, written by a thread of their
//!   own so that stderr can never block or kill PID 1;
//! - [`install`]: `drainit install DIR`, the binary copied into a volume;
//! - [`error`](mod@error): drainit's own failures.

pub mod admin;
pub mod child;
pub mod cli;
pub mod error;
pub mod evidence;
pub mod install;
pub mod leftovers;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod observation;
pub mod os;
pub mod probe;
pub mod reaper;
pub mod sidecar;
pub mod signal_stream;
pub mod signals;
pub mod status;
pub mod supervisor;
pub mod traffic;
pub mod wrapper;

use std::io::Write as _;
use std::process::ExitCode;

use tracing::error;

use crate::cli::{Cli, LogFormat, Mode};
use crate::error::Error;
use crate::os::Inherited;
use crate::sidecar::Sidecar;
use crate::wrapper::Wrapper;

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

/// How long drainit's exit waits for blocking-pool threads to finish.
const RUNTIME_SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs drainit as parsed from the command line; returns its exit code.
pub fn run(cli: Cli, inherited: Inherited) -> ExitCode {
    // 64 events a wake-up, not tokio's 1 024: a 12 KiB event buffer
    // becomes ~1 KiB (idle RssAnon −6 kB, issue 13); a flood of ready
    // sockets costs an epoll_wait per 64 instead.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_io_events_per_tick(64)
        .build()
        .map_err(Error::Runtime);
    let result = runtime.and_then(|runtime| {
        let result = runtime.block_on(async move {
            match cli.mode {
                Some(Mode::Sidecar(args)) => {
                    if cli.settings.ready_check.is_none() {
                        return Err(Error::SidecarNeedsReadyCheck);
                    }
                    let sidecar = Sidecar::new(&cli.settings, &args);
                    supervisor::run(cli.settings, inherited, sidecar).await
                }
                Some(Mode::Install(args)) => install::install(&args.dir)
                    .map(|(path, size)| {
                        tracing::info!(path = %path.display(), size, "installed drainit");
                        0
                    })
                    .map_err(Error::Install),
                None => {
                    let wrapper = Wrapper::new(&cli.settings, cli.command, inherited);
                    supervisor::run(cli.settings, inherited, wrapper).await
                }
            }
        });
        // The work is done: do not wait on blocking-pool threads (a DNS
        // lookup of --ready-check stuck on a hung name server) to exit.
        runtime.shutdown_timeout(RUNTIME_SHUTDOWN_LIMIT);
        result
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            error!("{failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
