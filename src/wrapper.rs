//! Wrapper mode: drainit as the container's PID 1 in front of the app.
//!
//! The [`Wrapper`] owns the app's handle ([`App`], a pidfd) from spawn to
//! reap: every forwarded signal, the stop signal and the deadline's
//! SIGKILL go through it, and it gives the handle up in the same turn of
//! the event loop in which the reaper reports the app's exit. When the app
//! is gone, what it left behind is stopped by [`crate::leftovers`].

use std::ffi::OsString;
use std::time::Duration;

use nix::errno::Errno;
use tracing::{debug, error, info, warn};

use crate::admin::PrestopReturns;
use crate::child::{self, App};
use crate::cli::Settings;
use crate::durations::secs;
use crate::leftovers;
use crate::lifecycle::{AppExit, AppExitSeen};
use crate::metrics::Metrics;
use crate::os::Inherited;
use crate::process_exit::ProcessExit;
use crate::settings::SignalTarget;
use crate::signal_stream::{Received, SignalStream};
use crate::signals::{self, Rewrite, Sig};
use crate::supervisor::{SignalOutcome, Supervised};

/// The app under drainit, from spawn to reap.
pub struct Wrapper {
    command: Vec<OsString>,
    inherited: Inherited,
    /// The app while it lives; `None` before spawn and once reaped.
    app: Option<App>,
    /// The app's process group, kept after the reap for the leftovers.
    pgid: Option<i32>,
    stop_signal: Option<Sig>,
    target: SignalTarget,
    rewrites: Vec<Rewrite>,
    leftover_grace: Duration,
}

impl Wrapper {
    /// The wrapper for `command`, with the settings that shape its signals.
    pub fn new(settings: &Settings, command: Vec<OsString>, inherited: Inherited) -> Wrapper {
        Wrapper {
            command,
            inherited,
            app: None,
            pgid: None,
            stop_signal: signals::rewrite(&settings.rewrites, settings.stop_signal),
            target: settings.signal_target,
            rewrites: settings.rewrites.clone(),
            leftover_grace: settings.leftover_grace,
        }
    }

    /// Sends `sig` to the app (`--signal-target child`) or its process
    /// group (`group`), and SIGCONT after it when `wake` and the app is
    /// stopped, so that it can act on the signal. Nothing once reaped.
    fn send(&self, sig: Sig, wake: bool) -> nix::Result<&'static str> {
        let Some(app) = &self.app else {
            return Err(Errno::ESRCH);
        };
        let stopped = wake && app.process.is_stopped();
        let to = match self.target {
            SignalTarget::Child => {
                app.process.signal(sig)?;
                if stopped {
                    let _ = app.process.signal(Sig::CONT);
                }
                "pid"
            }
            SignalTarget::Group => {
                // The group id cannot name another group while the app,
                // a member until it calls setpgid, is alive and unreaped.
                child::kill(-app.pgid, sig)?;
                if stopped {
                    let _ = child::kill(-app.pgid, Sig::CONT);
                }
                "process group"
            }
        };
        Ok(to)
    }

    /// SIGKILL to the app and to the process group it was started in.
    fn kill_app(&self) {
        let Some(app) = &self.app else { return };
        // The app itself, wherever its group is now (it may have called
        // setpgid or setsid), then the group it was started in.
        if let Err(error) = app.process.signal(Sig::KILL) {
            if error != Errno::ESRCH {
                warn!(%error, "failed to SIGKILL pid {}", app.process.pid());
            }
        }
        if let Err(error) = child::kill(-app.pgid, Sig::KILL) {
            if error != Errno::ESRCH {
                warn!(%error, "failed to SIGKILL process group {}", app.pgid);
            }
        }
    }
}

impl Supervised for Wrapper {
    const NAME: &'static str = "wrapper";
    const APP_EXIT: AppExitSeen = AppExitSeen::Reaped;
    const PRESTOP_RETURNS: PrestopReturns = PrestopReturns::AppExited;

    fn start(&mut self) -> Result<Option<i32>, u8> {
        match child::spawn(&self.command, &self.inherited) {
            Ok(app) => {
                let pid = app.process.pid();
                debug!(pid, command = ?self.command, "started app");
                self.pgid = Some(app.pgid);
                self.app = Some(app);
                Ok(Some(pid))
            }
            Err(error) => {
                error!("{error}");
                Err(error.exit_code())
            }
        }
    }

    fn notify(&mut self, sig: Sig) {
        match self.send(sig, false) {
            Ok(_) => info!("drain notify: sent {sig} to the app"),
            Err(error) => warn!(%error, "drain notify: {sig} not sent"),
        }
    }

    fn on_signal(&mut self, received: Received, metrics: &Metrics) -> SignalOutcome {
        let sig = received.sig;
        if sig.is_fault() && !received.sent_by_another_process() {
            debug!(
                code = received.code,
                "{sig} raised for drainit itself, not forwarded"
            );
            return SignalOutcome::Handled;
        }
        let Some(forward) = signals::rewrite(&self.rewrites, sig) else {
            debug!("dropped {sig} (--rewrite to 0)");
            return SignalOutcome::Handled;
        };
        match self.send(forward, false) {
            Ok(_) => {
                metrics.record_forward(forward);
                if forward == sig {
                    debug!("forwarded {sig}");
                } else {
                    debug!("forwarded {sig} as {forward}");
                }
            }
            Err(Errno::ESRCH) => debug!("{forward} not forwarded: the app is gone"),
            Err(error) => warn!(%error, "failed to forward {forward}"),
        }
        SignalOutcome::Handled
    }

    fn on_reaped(&mut self, pid: i32, exit: ProcessExit) -> Option<AppExit> {
        // The handle goes with the reap: from here on the pid is free for
        // the kernel to hand out again, and no code holds it.
        let is_app = self
            .app
            .as_ref()
            .is_some_and(|app| app.process.pid() == pid);
        is_app.then(|| {
            self.app = None;
            AppExit::Process(exit)
        })
    }

    fn stop(&mut self, metrics: &Metrics) {
        let Some(sig) = self.stop_signal else {
            warn!("stop signal rewritten to 0: not sent; the drain deadline will end the app");
            return;
        };
        let pid = self.app.as_ref().map_or(0, |app| app.process.pid());
        match self.send(sig, true) {
            Ok(to) => {
                metrics.record_forward(sig);
                info!("sent {sig} to {to} {pid}");
            }
            Err(Errno::ESRCH) => debug!("{sig} not sent: the app is gone"),
            Err(error) => warn!(%error, "failed to send {sig} to pid {pid}"),
        }
    }

    fn kill(&mut self, after: Duration, app_had: Duration) {
        self.kill_app();
        error!(
            after = %secs(after),
            app_had = %secs(app_had),
            "drain deadline hit, SIGKILL: the app did not exit within {} of the stop signal",
            secs(app_had)
        );
    }

    async fn wind_down(&mut self, signals: &mut SignalStream, metrics: &Metrics) {
        let reaped = || {
            metrics.zombies_reaped.inc();
        };
        leftovers::stop(self.pgid, self.leftover_grace, signals, &reaped).await;
    }
}
