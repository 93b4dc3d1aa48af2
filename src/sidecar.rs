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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::admin::PrestopReturns;
use crate::child;
use crate::cli::{Settings, SidecarArgs};
use crate::error::Error;
use crate::lifecycle::{Actions, Event, Lifecycle, Phase, Trigger};
use crate::metrics::Metrics;
use crate::probe::ProbeControl;
use crate::reaper;
use crate::signals::{self, Sig};
use crate::supervisor::{
    bind_admin, check_budget, install_signals, start_admin, start_probe, timeline,
};

/// How the sidecar finds the app's pid when the pod shares its process namespace.
#[derive(Debug, Clone)]
pub enum AppLocator {
    /// The app runs in another container the sidecar cannot signal.
    Unreachable,
    /// `--app-pid-file`.
    PidFile(PathBuf),
    /// `--app-process`: the name in `/proc/PID/comm`.
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

    /// The app's pid now, if it can be found.
    pub fn find(&self) -> Option<i32> {
        match self {
            AppLocator::Unreachable => None,
            AppLocator::PidFile(path) => read_pid_file(path),
            AppLocator::ProcessName(name) => find_process(name),
        }
    }
}

fn read_pid_file(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| warn!(path = %path.display(), %error, "cannot read --app-pid-file"))
        .ok()?;
    text.trim().parse::<i32>().ok().filter(|pid| *pid > 0)
}

/// The oldest process named `name`: with several (nginx's master and its
/// workers share a name) the one started first is the one to signal.
fn find_process(name: &str) -> Option<i32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            if pid == me || comm.trim_end() != name {
                return None;
            }
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            Some((start_time(&stat)?, i32::try_from(pid).ok()?))
        })
        .min()
        .map(|(_, pid)| pid)
}

/// Field 22 of `/proc/PID/stat`, the start time in clock ticks after boot.
/// The command name (field 2) may hold spaces and parentheses, so count
/// from the last `)`.
fn start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The sidecar's hands: a re-check of the app at drain start, and signals
/// to the app only when it can be found.
struct SidecarActions {
    app: AppLocator,
    stop_signal: Option<Sig>,
    probe: Arc<ProbeControl>,
}

impl Actions for SidecarActions {
    fn stop(&mut self) {
        let Some(pid) = self.app.find() else {
            info!("/prestop answers now; the kubelet stops the app when its preStop hook returns");
            return;
        };
        let Some(sig) = self.stop_signal else { return };
        match child::send_raw(pid, sig) {
            Ok(()) => info!("sent {sig} to pid {pid}"),
            Err(error) => warn!(%error, "failed to send {sig} to pid {pid}"),
        }
    }

    fn kill(&mut self) {
        if let Some(pid) = self.app.find() {
            let _ = child::send_raw(pid, Sig::KILL);
        }
    }

    fn drain_started(&mut self) {
        // A native sidecar gets SIGTERM after the app is gone: find out now,
        // and from here on notice the app's exit within a tenth of a second.
        self.probe.hurry();
    }
}

/// Runs the sidecar until the drain is over; returns drainit's exit code.
pub async fn run(settings: Settings, args: SidecarArgs) -> Result<u8, Error> {
    if settings.ready_check.is_none() {
        return Err(Error::SidecarNeedsReadyCheck);
    }
    let timeline = timeline(&settings, true);
    check_budget(&settings, &timeline)?;
    let admin_listener = bind_admin(&settings).await?;
    let mut signals = install_signals()?;
    let metrics = Arc::new(Metrics::new());
    let probe = Arc::new(ProbeControl::default());
    let actions = SidecarActions {
        app: AppLocator::from_args(&args),
        stop_signal: signals::rewrite(&settings.rewrites, settings.stop_signal),
        probe: probe.clone(),
    };
    let (lifecycle, status) = Lifecycle::new(timeline, actions, metrics.clone());
    let (events, events_rx) = mpsc::channel(64);
    let mut lifecycle = tokio::spawn(lifecycle.run(events_rx));
    let admin = start_admin(
        admin_listener,
        &settings,
        "sidecar",
        status.clone(),
        events.clone(),
        metrics.clone(),
        PrestopReturns::DelayOver,
    )?;
    start_probe(&settings, events.clone(), probe);
    info!("sidecar started");

    let code = loop {
        tokio::select! {
            _ = &mut lifecycle => break 0,
            Some(sig) = signals.next() => {
                if sig == Sig::CHLD {
                    metrics.zombies_reaped.inc_by(reaper::reap_all(None).count);
                } else if settings.drain_on.0.contains(&sig) && status.borrow().phase < Phase::Exited {
                    let _ = events.send(Event::Drain(Trigger::Signal(sig))).await;
                } else if sig == Sig::INT {
                    // Ctrl-C on a sidecar run by hand: stop, as any program would.
                    info!("interrupted");
                    break 128 + 2;
                } else {
                    debug!("ignored {sig}: a sidecar has no app to forward it to");
                }
            }
        }
    };
    // Every /prestop in flight gets its answer before the sidecar goes.
    if let Some(admin) = admin {
        admin.shutdown().await;
    }
    info!("sidecar exits");
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_counts_from_the_last_parenthesis() {
        let stat =
            "42 (a (weird) name) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1234 56";
        assert_eq!(start_time(stat), Some(987654));
        assert_eq!(start_time("garbage"), None);
    }

    #[test]
    fn finds_this_test_process_by_name_but_never_itself_as_drainit() {
        let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
        // The search skips its own pid, so a unique name finds nothing.
        assert_eq!(
            find_process(comm.trim_end()).filter(|p| *p == std::process::id() as i32),
            None
        );
        assert_eq!(find_process("no-such-process-name"), None);
    }
}
