//! Wrapper mode: drainit as the container's PID 1 in front of the app.
//!
//! One select loop owns the signal stream (a signalfd, see
//! [`crate::signal_stream`]): SIGCHLD wakes the reaper, the
//! `--drain-on` signals feed the lifecycle, every other signal is
//! forwarded at once. The lifecycle runs as its own task and acts on the
//! app through [`ProcessActions`]. When the app is gone, the rest of its
//! process group is stopped, in-flight `/prestop` answers are finished,
//! and drainit exits with the app's code.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::admin::{self, AdminServer, PrestopReturns};
use crate::child::{self, Inherited};
use crate::cli::{AdminListen, Settings, SignalTarget};
use crate::error::Error;
use crate::lifecycle::{secs, Actions, AppExit, Event, Lifecycle, Phase, Status, Timeline};
use crate::metrics::Metrics;
use crate::probe;
use crate::reaper;
use crate::signal_stream::SignalStream;
use crate::signals::{self, Sig};
use crate::status;

/// How often the leftover wait re-checks the process group between SIGCHLDs.
const LEFTOVER_POLL: Duration = Duration::from_millis(20);
/// How long to wait for SIGKILLed leftovers to disappear before giving up.
const KILLED_WAIT: Duration = Duration::from_secs(5);

/// Sends the stop signal and the deadline's SIGKILL to the app.
pub struct ProcessActions {
    /// The app's pid, which is also its process group id.
    pub pid: i32,
    /// `--stop-signal` after `--rewrite`; `None` when rewritten to 0.
    pub stop_signal: Option<Sig>,
    /// `--signal-target`.
    pub target: SignalTarget,
    /// Counts the stop signal as a forwarded signal.
    pub metrics: Arc<Metrics>,
}

impl Actions for ProcessActions {
    fn stop(&mut self) {
        let Some(sig) = self.stop_signal else {
            warn!("stop signal rewritten to 0: not sent; the drain deadline will end the app");
            return;
        };
        match send(self.pid, self.target, sig) {
            Ok(()) => {
                self.metrics.record_forward(sig);
                let to = match self.target {
                    SignalTarget::Child => "pid",
                    SignalTarget::Group => "process group",
                };
                info!("sent {sig} to {to} {}", self.pid);
            }
            Err(error) => warn!(%error, "failed to send {sig} to pid {}", self.pid),
        }
    }

    fn kill(&mut self) {
        if let Err(error) = killpg(Pid::from_raw(self.pid), Signal::SIGKILL) {
            if error != Errno::ESRCH {
                warn!(%error, "failed to SIGKILL process group {}", self.pid);
            }
        }
    }
}

/// Sends `sig` to the app or its process group.
fn send(pid: i32, target: SignalTarget, sig: Sig) -> nix::Result<()> {
    let pid = match target {
        SignalTarget::Child => pid,
        SignalTarget::Group => -pid,
    };
    child::send_raw(pid, sig)
}

/// The timeline the lifecycle follows, from the settings.
pub fn timeline(settings: &Settings, sidecar: bool) -> Timeline {
    Timeline {
        propagation_delay: settings.propagation_delay,
        unready_delay: settings.unready_delay,
        grace_period: settings.grace_period,
        kill_margin: settings.kill_margin,
        has_ready_check: settings.ready_check.is_some(),
        sidecar,
    }
}

/// Warns about (or, with `--strict`, refuses) a budget that cannot fit.
pub fn check_budget(settings: &Settings, timeline: &Timeline) -> Result<(), Error> {
    match timeline.budget_problem() {
        Some(problem) if settings.strict => Err(Error::Budget(problem)),
        Some(problem) => {
            warn!("{problem}; raise --grace-period (the pod's terminationGracePeriodSeconds) or lower the delay");
            Ok(())
        }
        None => Ok(()),
    }
}

/// Binds the admin listener, before the app starts, so a taken port fails
/// loudly instead of leaving a pod that never turns ready.
pub async fn bind_admin(settings: &Settings) -> Result<Option<tokio::net::TcpListener>, Error> {
    match settings.admin_listen {
        AdminListen::Off => Ok(None),
        AdminListen::At(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|source| Error::AdminBind { addr, source }),
    }
}

/// Starts the admin server on a bound listener.
pub fn start_admin(
    listener: Option<tokio::net::TcpListener>,
    settings: &Settings,
    mode: &str,
    status: watch::Receiver<Status>,
    events: mpsc::Sender<Event>,
    metrics: Arc<Metrics>,
    prestop_returns: PrestopReturns,
) -> Result<Option<AdminServer>, Error> {
    let Some(listener) = listener else {
        return Ok(None);
    };
    let context = admin::Context {
        status,
        events,
        metrics,
        settings: status::settings_json(settings, mode),
        prestop_allow_from: settings.prestop_allow_from.clone(),
        prestop_token: settings.prestop_token.clone(),
        prestop_returns,
    };
    let max = usize::try_from(settings.admin_max_connections).unwrap_or(1024);
    admin::serve(listener, context, max)
        .map(Some)
        .map_err(Error::Admin)
}

/// Starts `--ready-check`, if set, as its own task.
pub fn start_probe(
    settings: &Settings,
    events: mpsc::Sender<Event>,
    control: Arc<probe::ProbeControl>,
) {
    if let Some(check) = settings.ready_check.clone() {
        let (interval, timeout) = (settings.ready_check_interval, settings.ready_check_timeout);
        tokio::spawn(probe::run(check, interval, timeout, events, control));
    }
}

/// Opens the signal stream: every forwardable signal plus SIGCHLD, which
/// `main` blocked before the runtime started
/// ([`Inherited::take_signals`]).
pub fn install_signals() -> Result<SignalStream, Error> {
    SignalStream::new().map_err(Error::Signals)
}

/// Runs `command` under drainit; returns drainit's exit code.
pub async fn run(
    settings: Settings,
    command: Vec<OsString>,
    inherited: Inherited,
) -> Result<u8, Error> {
    let timeline = timeline(&settings, false);
    check_budget(&settings, &timeline)?;
    if let Err(error) = child::become_subreaper() {
        warn!(%error, "could not become a child subreaper; orphans will not be reaped");
    }
    let admin_listener = bind_admin(&settings).await?;
    let mut signals = install_signals()?;
    inherited.prepare_drainit();

    let pid = match child::spawn(&command, &inherited) {
        Ok(pid) => pid,
        Err(error) => {
            error!("{error}");
            return Ok(error.exit_code());
        }
    };
    info!(pid, command = ?command, "started app");
    let started = Instant::now();

    let metrics = Arc::new(Metrics::new());
    let actions = ProcessActions {
        pid,
        stop_signal: signals::rewrite(&settings.rewrites, settings.stop_signal),
        target: settings.signal_target,
        metrics: metrics.clone(),
    };
    let (lifecycle, status) = Lifecycle::new(timeline, actions, metrics.clone());
    let (events, events_rx) = mpsc::channel(64);
    let _ = events.send(Event::Spawned(pid)).await;
    let mut lifecycle = tokio::spawn(lifecycle.run(events_rx));
    let admin = start_admin(
        admin_listener,
        &settings,
        "wrapper",
        status.clone(),
        events.clone(),
        metrics.clone(),
        PrestopReturns::AppExited,
    )?;
    start_probe(&settings, events.clone(), Arc::default());

    let forwarder = Forwarder {
        pid,
        settings: &settings,
        metrics: &metrics,
        status: &status,
        events: &events,
    };
    let exit = loop {
        tokio::select! {
            exit = &mut lifecycle => break exit.unwrap_or(AppExit::Code(1)),
            Some(sig) = signals.next() => forwarder.on_signal(sig).await,
        }
    };
    debug!(after = %secs(started.elapsed()), "app ended");
    stop_leftovers(pid, settings.leftover_grace, &mut signals, &metrics).await;
    if let Some(admin) = admin {
        admin.shutdown().await;
    }
    info!("drainit exits with {}", exit.exit_code());
    Ok(exit.exit_code())
}

/// Routes each signal drainit receives.
struct Forwarder<'a> {
    pid: i32,
    settings: &'a Settings,
    metrics: &'a Metrics,
    status: &'a watch::Receiver<Status>,
    events: &'a mpsc::Sender<Event>,
}

impl Forwarder<'_> {
    async fn on_signal(&self, sig: Sig) {
        if sig == Sig::CHLD {
            let reaped = reaper::reap_all(Some(self.pid));
            self.metrics.zombies_reaped.inc_by(reaped.count);
            if let Some(exit) = reaped.main_exit {
                let _ = self.events.send(Event::AppExited(exit)).await;
            }
            return;
        }
        let phase = self.status.borrow().phase;
        if self.settings.drain_on.0.contains(&sig) && phase < Phase::Stopping {
            let _ = self
                .events
                .send(Event::Drain(crate::lifecycle::Trigger::Signal(sig)))
                .await;
            return;
        }
        self.forward(sig);
    }

    fn forward(&self, received: Sig) {
        let Some(sig) = signals::rewrite(&self.settings.rewrites, received) else {
            debug!("dropped {received} (--rewrite to 0)");
            return;
        };
        match send(self.pid, self.settings.signal_target, sig) {
            Ok(()) => {
                self.metrics.record_forward(sig);
                if sig == received {
                    debug!("forwarded {sig}");
                } else {
                    debug!("forwarded {received} as {sig}");
                }
            }
            Err(Errno::ESRCH) => debug!("{sig} not forwarded: the app is gone"),
            Err(error) => warn!(%error, "failed to forward {sig}"),
        }
    }
}

/// After the app exits: SIGTERM to the rest of its process group, up to
/// `grace` for them to go, then SIGKILL; returns once the group is empty.
/// Reaps throughout, so the group's zombies do not keep it alive.
async fn stop_leftovers(pgid: i32, grace: Duration, signals: &mut SignalStream, metrics: &Metrics) {
    let group = Pid::from_raw(pgid);
    let alive = |metrics: &Metrics| {
        metrics.zombies_reaped.inc_by(reaper::reap_all(None).count);
        killpg(group, None).is_ok()
    };
    if !alive(metrics) {
        return;
    }
    info!(
        pgid,
        "app exited; sending SIGTERM to the rest of its process group"
    );
    let _ = killpg(group, Signal::SIGTERM);
    // SIGCONT too, so a stopped leftover can act on the SIGTERM.
    let _ = killpg(group, Signal::SIGCONT);
    if wait_until_gone(grace, signals, || alive(metrics)).await {
        info!("leftover processes exited");
        return;
    }
    warn!(grace = %secs(grace), "leftover processes still running after --leftover-grace; SIGKILL");
    let _ = killpg(group, Signal::SIGKILL);
    if !wait_until_gone(KILLED_WAIT, signals, || alive(metrics)).await {
        error!("leftover processes survived SIGKILL; exiting anyway");
    }
}

/// Waits until `alive()` is false, waking on SIGCHLD and every
/// [`LEFTOVER_POLL`], for at most `limit`. Other signals are dropped: the
/// app they were meant for is gone.
async fn wait_until_gone(
    limit: Duration,
    signals: &mut SignalStream,
    mut alive: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !alive() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::select! {
            Some(_) = signals.next() => {}
            () = tokio::time::sleep(LEFTOVER_POLL) => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_pid_of_nothing_is_esrch() {
        // A pid far above pid_max never exists.
        assert_eq!(
            send(i32::MAX, SignalTarget::Child, Sig::TERM),
            Err(Errno::ESRCH)
        );
    }
}
