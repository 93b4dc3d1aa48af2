//! Sidecar mode: drainit in its own container of the pod, without the app.
//!
//! It cannot see the app's process (unless the pod shares its process
//! namespace), so it learns the app's state from `--ready-check`: `/ready`
//! mirrors the check and turns 503 while draining; `/prestop`, the target
//! of the app container's preStop hook, answers once the propagation delay
//! is over, and the kubelet then stops the app. On its own SIGTERM the
//! sidecar joins the drain and stays up until the delay is over, every
//! `/prestop` has been answered and the app's address refuses connections,
//! bounded by the grace period. Nothing is persisted: a restarted sidecar
//! starts fresh in Starting, never stuck in Draining.

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{debug, error, info, warn};

use crate::admin::PrestopReturns;
use crate::child::Process;
use crate::cli::{Settings, SidecarArgs};
use crate::durations::secs;
use crate::lifecycle::{AppExit, AppExitSeen};
use crate::metrics::Metrics;
use crate::os;
use crate::probe::ProbeControl;
use crate::process_exit::ProcessExit;
use crate::signal_stream::{Received, SignalStream};
use crate::signals::{self, Sig};
use crate::supervisor::{SignalOutcome, Supervised};

/// How the sidecar finds the app's pid when the pod shares its process namespace.
#[derive(Debug, Clone)]
pub enum AppLocator {
    /// The app runs in another container the sidecar cannot signal.
    Unreachable,
    /// `--app-pid-file`.
    PidFile(PathBuf),
    /// `--app-process`: the program's name, as in its command line.
    ProcessName(String),
}

impl AppLocator {
    /// From the sidecar's flags.
    pub fn from_args(args: &SidecarArgs) -> AppLocator {
        match (&args.app_pid_file, &args.app_process) {
            (Some(path), _) => AppLocator::PidFile(path.clone()),
            (None, Some(name)) => AppLocator::ProcessName(name.clone()),
            (None, None) => AppLocator::Unreachable,
        }
    }

    /// The app's pid and start time now, or why it is not found. Reads a
    /// file of the user's and other processes' `/proc` entries: run only on
    /// the [`Finder`]'s thread, never on the event loop.
    fn locate(&self) -> Result<(i32, u64), String> {
        match self {
            AppLocator::Unreachable => Err("no --app-pid-file or --app-process".into()),
            AppLocator::PidFile(path) => read_pid_file(path),
            AppLocator::ProcessName(name) => {
                find_process(name).ok_or_else(|| format!("no process named {name}"))
            }
        }
    }
}

/// How often the finder's thread looks for the app again.
const FIND_INTERVAL: Duration = Duration::from_secs(1);

/// The finder thread's stack: it reads small files and `/proc`.
const FINDER_STACK: usize = 64 * 1024;

/// The largest `--app-pid-file` read: a pid and a newline, with room to spare.
const MAX_PID_FILE: u64 = 64;

/// The longest command line read to match `--app-process` (argv[0] is a
/// path, at most `PATH_MAX`).
const MAX_CMDLINE: u64 = 4096;

/// Looks for the app on a thread of its own, every [`FIND_INTERVAL`], and
/// keeps the last answer for the event loop. The pid file may be a FIFO,
/// `/dev/zero` or sit on a hung volume, and reading another process's
/// command line waits for that process's memory lock: none of that may
/// ever stall the loop that reaps, forwards and enforces the deadline.
#[derive(Debug)]
pub struct Finder {
    how: AppLocator,
    latest: Arc<Mutex<Option<(i32, u64)>>>,
    thread: Option<std::thread::Thread>,
}

impl Finder {
    /// A finder that has not started looking yet.
    pub fn new(how: AppLocator) -> Finder {
        Finder {
            how,
            latest: Arc::default(),
            thread: None,
        }
    }

    /// Starts the thread (nothing for [`AppLocator::Unreachable`]); where
    /// it cannot start now, the next [`Finder::find`] tries again.
    fn start(&mut self) {
        if self.thread.is_some() || matches!(self.how, AppLocator::Unreachable) {
            return;
        }
        let how = self.how.clone();
        let latest = Arc::clone(&self.latest);
        let spawned = std::thread::Builder::new()
            .name("drainit-find".into())
            .stack_size(FINDER_STACK)
            .spawn(move || {
                // Signals are the event loop's: block every one here.
                let _ = nix::sys::signal::SigSet::all().thread_block();
                let mut last_problem = None;
                loop {
                    let found = how.locate();
                    match &found {
                        Err(problem) if last_problem.as_ref() != Some(problem) => {
                            warn!("{problem}");
                        }
                        _ => {}
                    }
                    last_problem = found.as_ref().err().cloned();
                    *latest.lock().unwrap_or_else(PoisonError::into_inner) = found.ok();
                    std::thread::park_timeout(FIND_INTERVAL);
                }
            });
        match spawned {
            Ok(handle) => self.thread = Some(handle.thread().clone()),
            Err(error) => {
                warn!(%error, "cannot start the thread that finds the app; trying again later")
            }
        }
    }

    /// The app as last found, held by a pidfd opened while its identity
    /// was checked; asks the thread to look again.
    pub fn find(&mut self) -> Option<Process> {
        self.start();
        let thread = self.thread.as_ref()?;
        thread.unpark();
        let (pid, started) = (*self.latest.lock().unwrap_or_else(PoisonError::into_inner))?;
        // Same pid, same start time, after the pidfd is open: the same process.
        Process::verified(pid, |pid| start_ticks(pid) == Some(started))
    }
}

/// The pid in the file, if the process of that pid can have written it:
/// a process that started after the file was last written is a stranger
/// that got a stale pid (the app is gone, the number was reused). Only a
/// regular file is read, and only its first [`MAX_PID_FILE`] bytes.
fn read_pid_file(path: &Path) -> Result<(i32, u64), String> {
    let shown = path.display();
    let problem =
        |what: &dyn std::fmt::Display| format!("cannot read --app-pid-file {shown}: {what}");
    // Non-blocking: opening a FIFO for reading would wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|error| problem(&error))?;
    let metadata = file.metadata().map_err(|error| problem(&error))?;
    if !metadata.file_type().is_file() {
        return Err(problem(&"not a regular file"));
    }
    if metadata.len() > MAX_PID_FILE {
        return Err(problem(&format!(
            "{} bytes, too large for a pid file",
            metadata.len()
        )));
    }
    let mut text = String::new();
    file.take(MAX_PID_FILE)
        .read_to_string(&mut text)
        .map_err(|error| problem(&error))?;
    let written = metadata.modified().map_err(|error| problem(&error))?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| problem(&"no pid in it"))?;
    let started =
        start_ticks(pid).ok_or_else(|| format!("--app-pid-file {shown}: no process {pid}"))?;
    let started_at = boot_time()
        .and_then(|boot| boot.checked_add(ticks_to_duration(started)))
        .ok_or_else(|| problem(&"no boot time in /proc/stat"))?;
    // Clock ticks and second-granular boot time: allow a second of slack.
    // Checked: the file's time is whatever its writer set, the far future too.
    let slack = Duration::from_secs(1);
    if written
        .checked_add(slack)
        .is_some_and(|latest| started_at > latest)
    {
        return Err(format!("--app-pid-file {shown} names pid {pid}, a process started after the file was written: stale, not signalled"));
    }
    Ok((pid, started))
}

/// The oldest process whose program is `name`: with several (nginx's
/// master and its workers share a name) the one started first is the one
/// to signal. The name is matched against the command line (argv[0] and
/// its file name) and the executable's file name, so names longer than
/// the 15 bytes the kernel keeps in `comm` still match.
fn find_process(name: &str) -> Option<(i32, u64)> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            if pid == me || !names_match(&entry.path(), name) {
                return None;
            }
            let pid = i32::try_from(pid).ok()?;
            Some((start_ticks(pid)?, pid))
        })
        .min()
        .map(|(started, pid)| (pid, started))
}

/// Whether the process at `/proc/PID` runs the program `name`.
fn names_match(proc_dir: &Path, name: &str) -> bool {
    let file_name = |path: &str| path.rsplit('/').next().unwrap_or(path).to_string();
    let mut cmdline = Vec::new();
    if let Ok(file) = std::fs::File::open(proc_dir.join("cmdline")) {
        let _ = file.take(MAX_CMDLINE).read_to_end(&mut cmdline);
    }
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv0);
    // nginx rewrites its argv[0] to "nginx: master process ...".
    let argv0_program = argv0.split(':').next().unwrap_or_default();
    let exe = std::fs::read_link(proc_dir.join("exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    argv0 == name
        || file_name(&argv0) == name
        || file_name(argv0_program) == name
        || exe.as_deref() == Some(name)
}

/// Field 22 of `/proc/PID/stat`, the start time in clock ticks after boot.
fn start_ticks(pid: i32) -> Option<u64> {
    os::with_proc_stat(pid, start_time)
}

/// Field 22 of `/proc/PID/stat`, from its fields that start at the third
/// ([`os::stat_fields`]).
fn start_time(mut fields: std::str::SplitWhitespace<'_>) -> Option<u64> {
    fields.nth(19)?.parse().ok()
}

/// When the machine booted (`btime` in `/proc/stat`).
fn boot_time() -> Option<SystemTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let seconds = stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// `/proc` counts in USER_HZ, which the kernel fixes at 100 on every
/// architecture (whatever its internal HZ).
fn ticks_to_duration(ticks: u64) -> Duration {
    const USER_HZ: u64 = 100;
    Duration::from_millis(ticks.saturating_mul(1000 / USER_HZ))
}

/// The sidecar: no child of its own; signals to the app only when it can
/// be found, through the handle found at the stop signal.
pub struct Sidecar {
    app: Finder,
    stop_signal: Option<Sig>,
    /// The app as found when the stop signal went out, for the deadline.
    stopped: Option<Process>,
}

impl Sidecar {
    /// The sidecar for these settings and flags.
    pub fn new(settings: &Settings, args: &SidecarArgs) -> Sidecar {
        Sidecar {
            app: Finder::new(AppLocator::from_args(args)),
            stop_signal: signals::rewrite(&settings.rewrites, settings.stop_signal),
            stopped: None,
        }
    }
}

impl Supervised for Sidecar {
    const NAME: &'static str = "sidecar";
    const APP_EXIT: AppExitSeen = AppExitSeen::Inferred;
    const PRESTOP_RETURNS: PrestopReturns = PrestopReturns::DelayOver;

    fn start(&mut self) -> Result<Option<i32>, u8> {
        info!("sidecar started");
        self.app.start();
        Ok(None)
    }

    fn on_signal(&mut self, received: Received, _metrics: &Metrics) -> SignalOutcome {
        if received.sig == Sig::INT {
            // Ctrl-C on a sidecar run by hand: stop, as any program would.
            info!("interrupted");
            return SignalOutcome::Exit(128 + 2);
        }
        debug!(
            "ignored {}: a sidecar has no app to forward it to",
            received.sig
        );
        SignalOutcome::Handled
    }

    fn on_reaped(&mut self, _pid: i32, _exit: ProcessExit) -> Option<AppExit> {
        None
    }

    fn stop(&mut self, _metrics: &Metrics) {
        let Some(app) = self.app.find() else {
            info!("/prestop answers now; the kubelet stops the app when its preStop hook returns");
            return;
        };
        if let Some(sig) = self.stop_signal {
            match app.signal(sig) {
                Ok(()) => info!("sent {sig} to pid {}", app.pid()),
                Err(error) => warn!(%error, "failed to send {sig} to pid {}", app.pid()),
            }
        }
        self.stopped = Some(app);
    }

    fn notify(&mut self, sig: Sig) {
        let Some(app) = self.app.find() else {
            warn!("drain notify: {sig} not sent: the app's process is not found");
            return;
        };
        match app.signal(sig) {
            Ok(()) => info!("drain notify: sent {sig} to pid {}", app.pid()),
            Err(error) => warn!(%error, "drain notify: {sig} not sent to pid {}", app.pid()),
        }
    }

    fn drain_started(&mut self, probe: &ProbeControl) {
        // A native sidecar gets SIGTERM after the app is gone: find out
        // now, and from here on within a tenth of a second.
        probe.hurry();
    }

    fn kill(&mut self, after: Duration, _app_had: Duration) {
        if let Some(app) = self.stopped.take().or_else(|| self.app.find()) {
            let _ = app.signal(Sig::KILL);
        }
        error!(after = %secs(after), "drain deadline hit, the app is still answering; sidecar exits");
    }

    async fn wind_down(&mut self, _signals: &mut SignalStream, _metrics: &Metrics) {
        info!("sidecar exits");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_counts_from_the_last_parenthesis() {
        let stat =
            "42 (a (weird) name) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1234 56";
        assert_eq!(os::stat_fields(stat).and_then(start_time), Some(987654));
        assert_eq!(os::stat_fields("garbage").and_then(start_time), None);
    }

    #[test]
    fn never_finds_itself_nor_a_name_nobody_runs() {
        let exe = std::env::current_exe().expect("exe");
        let name = exe
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        // The search skips its own pid, so this test binary's name finds nothing.
        assert_eq!(
            find_process(&name).filter(|(p, _)| *p == std::process::id() as i32),
            None
        );
        assert_eq!(find_process("no-such-process-name"), None);
    }
}
