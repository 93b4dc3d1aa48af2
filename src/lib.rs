//! drainit: a container init (PID 1) that drains traffic before it stops the app.
//!
//! Modules, one concern each; arrows point down only (entry → modes →
//! machine, plumbing, admin, probe, traffic → vocabulary):
//!
//! The vocabulary, with no runtime dependency (all `drainit-check` builds,
//! feature `runtime` off):
//! - [`cli`]: the clap struct, every flag and its environment variable;
//! - [`settings`]: each flag's value type beside its parser, the checks
//!   across flags and the values derived from them;
//! - [`durations`]: the duration parser with its bound, and the log's
//!   duration format (`5.0s`);
//! - [`signals`]: signal names, `--rewrite`, which signals are forwarded.
//!
//! The runtime (feature `runtime`, on by default):
//! - entry: `run` and `init_logging` below; `supervisor`: the one set-up
//!   path and the one event loop of both modes, and the `Supervised`
//!   trait that holds everything the modes do differently;
//! - modes: `wrapper` (the app as drainit's child), `sidecar` (the app
//!   in another container);
//! - the drain machine: `lifecycle`, one `State` enum moving
//!   `Starting → Running → Draining → Stopping → Exited`, without I/O;
//! - init plumbing: `signal_stream` (the handled signals, blocked and read
//!   from a `signalfd`), [`os`] (drainit's own process state, taken before
//!   `main`), `child` (starting the app, the pidfd every signal to it goes
//!   through), `reaper` (the only caller of `waitpid`), `process_exit`
//!   (a decoded wait status), `leftovers` (what the app left behind);
//! - `probe`: `--ready-check` against the app;
//! - `kube`: the optional Kubernetes API client (feature `kubernetes`):
//!   the pod's grace and its deletion's, an Event per drain;
//! - [`traffic`]: one front door for the app's TCP traffic: the
//!   `sock_diag` I/O, the pure evidence that ends `--propagation-delay
//!   auto` and reports every drain, and the event loop's adapter;
//! - the HTTP face: `admin` (the hyper server), `status` (the snapshot the
//!   loop publishes, and `/status`), `metrics` (`/metrics`);
//! - `install`: `drainit install DIR`, the binary copied into a volume;
//! - `logging`: drainit's own log lines, written by a thread of their own
//!   so that stderr can never block or kill PID 1; `error`: drainit's own
//!   failures.

// PID 1 never sleeps a thread (the one event loop must not block) and
// never prints (stderr may be closed; logging owns it): clippy.toml and
// [lints] in Cargo.toml.
#![deny(clippy::disallowed_methods, clippy::print_stdout, clippy::print_stderr)]

// The vocabulary: settings, signal names, durations. No mechanism, no
// runtime dependency; all that `drainit-check` builds.
pub mod cli;
pub mod durations;
pub mod settings;
pub mod signals;

// The runtime (feature `runtime`, on by default).
#[cfg(feature = "runtime")]
pub(crate) mod admin;
#[cfg(feature = "runtime")]
pub(crate) mod child;
#[cfg(feature = "runtime")]
pub(crate) mod error;
#[cfg(feature = "runtime")]
pub(crate) mod install;
#[cfg(feature = "runtime")]
pub(crate) mod kube;
#[cfg(feature = "runtime")]
pub(crate) mod leftovers;
#[cfg(feature = "runtime")]
pub(crate) mod lifecycle;
#[cfg(feature = "runtime")]
pub(crate) mod logging;
#[cfg(feature = "runtime")]
pub(crate) mod metrics;
#[cfg(feature = "runtime")]
pub mod os;
#[cfg(feature = "runtime")]
pub(crate) mod probe;
#[cfg(feature = "runtime")]
pub(crate) mod process_exit;
#[cfg(feature = "runtime")]
pub(crate) mod reaper;
#[cfg(feature = "runtime")]
pub(crate) mod sidecar;
#[cfg(feature = "runtime")]
pub(crate) mod signal_stream;
#[cfg(feature = "runtime")]
pub(crate) mod status;
#[cfg(feature = "runtime")]
pub(crate) mod supervisor;
#[cfg(feature = "runtime")]
pub mod traffic;
#[cfg(feature = "runtime")]
pub(crate) mod wrapper;

#[cfg(feature = "runtime")]
pub use self::runtime::{init_logging, run, FlushOnDrop};

/// The entry points of the PID-1 program.
#[cfg(feature = "runtime")]
mod runtime {
    use std::io::Write as _;
    use std::process::ExitCode;

    use tracing::error;

    use crate::cli::{Cli, Mode};
    use crate::error::Error;
    use crate::os::Inherited;
    use crate::settings::LogFormat;
    use crate::sidecar::Sidecar;
    use crate::wrapper::Wrapper;
    use crate::{logging, supervisor};

    pub use crate::logging::FlushOnDrop;

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

    /// How long drainit's exit waits for blocking-pool threads to finish (it
    /// uses none: `--ready-check` lookups run on `probe`'s own thread).
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
                        let sidecar = Sidecar::new(&cli.settings, &args);
                        supervisor::run(cli.settings, inherited, sidecar).await
                    }
                    Some(Mode::Install(args)) => crate::install::install(&args.dir)
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
            // The work is done: wait for no thread (a lookup of --ready-check
            // stuck on a hung name server runs on a thread of its own and
            // ends with the process).
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
}
