//! The event loop both modes share: one set-up path, one owner of
//! everything that acts.
//!
//! Set-up does everything that can fail before the app exists (budget
//! check, admin bind, signalfd, admin server), then starts the app. From
//! there on a single loop owns the signal stream, the reaper, the drain
//! [`Machine`] and the app handle (inside the [`Supervised`] mode): a signal, an
//! admin or probe event, or the machine's next timer wakes it; it acts on
//! what the machine says, publishes a snapshot, and logs last. Because the
//! same loop reaps and signals, nothing can signal the app after the
//! reaper has collected it (the mode drops the handle in that same turn).
//!
//! Each mode injects only what differs: what to start, what a signal or a
//! reaped pid means, how to stop and kill the app, and what to clean up
//! after it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::admin::{self, AdminServer, PrestopReturns};
use crate::cli::Settings;
use crate::durations::secs;
use crate::error::Error;
use crate::kube::{self, Kube};
use crate::lifecycle::{
    AppExit, AppExitSeen, CheckResult, Event, Machine, Step, Timeline, Trigger,
};
use crate::metrics::Metrics;
use crate::os::{self, Inherited};
use crate::probe::{self, Checker, ProbeControl};
use crate::process_exit::ProcessExit;
use crate::reaper::{self, Pass};
use crate::settings::{AdminListen, DrainNotify, PropagationDelay};
use crate::signal_stream::{Received, SignalStream};
use crate::signals::Sig;
use crate::status;
use crate::status::Snapshot;
use crate::traffic::TrafficWatch;

/// Reaps per pass before the loop yields to the admin server and timers.
const REAPS_PER_PASS: usize = 256;

/// What a signal that is neither SIGCHLD nor a drain trigger led to.
pub enum SignalOutcome {
    /// Handled (forwarded, or ignored on purpose).
    Handled,
    /// drainit exits now with this code (a sidecar's Ctrl-C).
    Exit(u8),
}

/// Everything that differs between the wrapper and the sidecar mode: what
/// the one event loop supervises (the app as its child, or the app beside
/// it). The loop and the drain machine do not branch on the mode.
pub trait Supervised {
    /// `wrapper` or `sidecar`, for `/status`.
    const NAME: &'static str;
    /// How the drain machine learns that the app is gone.
    const APP_EXIT: AppExitSeen;
    /// When `/prestop` answers.
    const PRESTOP_RETURNS: PrestopReturns;

    /// Starts what the mode supervises; returns the app's pid if it has
    /// one, or drainit's exit code when the app could not be started.
    fn start(&mut self) -> Result<Option<i32>, u8>;
    /// A signal that is neither SIGCHLD nor a `--drain-on` trigger.
    fn on_signal(&mut self, received: Received, metrics: &Metrics) -> SignalOutcome;
    /// A child was reaped: the app's exit if it was the app.
    fn on_reaped(&mut self, pid: i32, exit: ProcessExit) -> Option<AppExit>;
    /// The drain started (the loop has told the traffic evidence).
    fn drain_started(&mut self, _probe: &ProbeControl) {}
    /// `--drain-notify SIGNAL`: send `sig` to the app as it is.
    fn notify(&mut self, sig: Sig);
    /// The propagation delay is over: send the stop signal.
    fn stop(&mut self, metrics: &Metrics);
    /// The drain deadline, `after` the drain's start and `app_had` after
    /// the stop signal: kill the app, then say so.
    fn kill(&mut self, after: Duration, app_had: Duration);
    /// After the app is gone, before drainit exits.
    fn wind_down(
        &mut self,
        signals: &mut SignalStream,
        metrics: &Metrics,
    ) -> impl Future<Output = ()>;
}

/// The timeline the machine follows, from the settings.
pub fn timeline(settings: &Settings, app_exit: AppExitSeen) -> Timeline {
    Timeline {
        propagation_delay: settings.longest_delay(),
        auto: settings.propagation_delay == PropagationDelay::Auto,
        unready_delay: settings.unready_delay,
        grace_period: settings.grace_period,
        kill_margin: settings.kill_margin,
        has_ready_check: settings.ready_check.is_some(),
        app_exit,
        await_endpoint: false,
    }
}

/// Warns about (or, with `--strict`, refuses) a budget that cannot fit.
fn check_budget(settings: &Settings, timeline: &Timeline) -> Result<(), Error> {
    match timeline.budget_problem() {
        Some(problem) if settings.strict => Err(Error::Budget(problem)),
        Some(problem) => {
            warn!("{problem}; raise --grace-period (the pod's terminationGracePeriodSeconds) or lower the delay");
            Ok(())
        }
        None => Ok(()),
    }
}

/// Binds the admin listener before the app starts, so a taken port fails
/// loudly instead of leaving a pod that never turns ready.
async fn bind_admin(settings: &Settings) -> Result<Option<tokio::net::TcpListener>, Error> {
    match settings.admin_listen {
        AdminListen::Off => Ok(None),
        AdminListen::At(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|source| Error::AdminBind { addr, source }),
    }
}

/// Everything the loop owns once set-up is done.
struct Wiring {
    signals: SignalStream,
    metrics: Arc<Metrics>,
    events: mpsc::Receiver<Event>,
    status: watch::Sender<Snapshot>,
    admin: Option<AdminServer>,
    probe: Arc<ProbeControl>,
    machine: Machine,
    traffic: TrafficWatch,
    kube: Option<Kube>,
}

/// Runs drainit in `mode` until the app is gone; returns drainit's exit code.
pub async fn run<M: Supervised>(
    mut settings: Settings,
    inherited: Inherited,
    mut mode: M,
) -> Result<u8, Error> {
    let (events_tx, events) = mpsc::channel(64);
    // Bounded (kube::START_READ): the pod's grace is the default --grace-period.
    let kube = kube::start(&mut settings, events_tx.clone()).await;
    let mut timeline = timeline(&settings, M::APP_EXIT);
    // With the API in use, auto's end waits for the endpoint's removal.
    timeline.await_endpoint = timeline.auto && kube.is_some();
    check_budget(&settings, &timeline)?;
    if let Err(error) = os::become_subreaper() {
        warn!(%error, "could not become a child subreaper; orphans will not be reaped");
    }
    let listener = bind_admin(&settings).await?;
    // The admin port as bound (`:0` picks one): never the app's traffic.
    let own_ports: Vec<u16> = listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.port())
        .into_iter()
        .collect();
    let signals = SignalStream::new().map_err(Error::Signals)?;
    inherited.prepare_drainit();
    let metrics = Arc::new(Metrics::new());
    let machine = Machine::new(timeline, Instant::now());
    let (status, status_rx) = watch::channel(Snapshot {
        machine: machine.status(),
        traffic: None,
    });
    let admin = match listener {
        Some(listener) => {
            let context = admin::Context {
                status: status_rx,
                events: events_tx.clone(),
                metrics: metrics.clone(),
                settings: status::settings_json(&settings, M::NAME),
                prestop_allow_from: settings.prestop_allow_from.clone().map(admin::admit_node),
                prestop_token: settings.prestop_token.clone(),
                prestop_returns: M::PRESTOP_RETURNS,
            };
            let max = usize::try_from(settings.admin_max_connections).unwrap_or(1024);
            Some(admin::serve(listener, context, max).map_err(Error::Admin)?)
        }
        None => None,
    };
    let probe = Arc::new(ProbeControl::default());
    let traffic = TrafficWatch::new(&settings, probe.own_clients.clone(), own_ports);
    let mut wiring = Wiring {
        signals,
        metrics,
        events,
        status,
        admin,
        probe,
        machine,
        traffic,
        kube,
    };

    // Everything fallible is behind us: once the app runs, nothing may
    // fail, every path ends in the loop below and the app's exit code.
    let pid = match mode.start() {
        Ok(pid) => pid,
        Err(code) => {
            wiring.shut_down().await;
            return Ok(code);
        }
    };
    inherited.raise_file_limit();
    os::leave_start_directory();
    wiring.machine.started(pid, Instant::now());
    wiring.traffic.app_started();
    wiring.publish();
    if let Some(check) = settings.ready_check.clone() {
        let (interval, timeout) = (settings.ready_check_interval, settings.ready_check_timeout);
        let control = wiring.probe.clone();
        tokio::spawn(probe::run(
            check,
            interval,
            timeout,
            events_tx.clone(),
            control,
        ));
    }
    drop(events_tx);

    let code = match wiring.supervise(&settings, &mut mode).await {
        Ok(exit) => {
            mode.wind_down(&mut wiring.signals, &wiring.metrics).await;
            settings.remap_exit(exit.exit_code())
        }
        Err(code) => code,
    };
    wiring.shut_down().await;
    // The last line of a drain's story; a run without a drain stays quiet.
    if wiring.machine.state().drain().is_some() {
        info!("drainit exits with {code}");
    } else {
        debug!("drainit exits with {code}");
    }
    Ok(code)
}

impl Wiring {
    /// The loop: until the machine is done (`Ok`) or the mode exits early (`Err`).
    async fn supervise<M: Supervised>(
        &mut self,
        settings: &Settings,
        mode: &mut M,
    ) -> Result<AppExit, u8> {
        loop {
            let timer = self.machine.next_timer();
            let steps = tokio::select! {
                Some(received) = self.signals.next() => {
                    if received.sig == crate::signals::Sig::CHLD {
                        self.reap(mode).await
                    } else if settings.drain_on.0.contains(&received.sig) {
                        let trigger = Event::Drain(Trigger::Signal(received.sig));
                        self.machine.handle(trigger, Instant::now())
                    } else {
                        match mode.on_signal(received, &self.metrics) {
                            SignalOutcome::Handled => Vec::new(),
                            SignalOutcome::Exit(code) => return Err(code),
                        }
                    }
                }
                Some(event) = self.events.recv() => self.machine.handle(event, Instant::now()),
                sample = self.traffic.next() => {
                    let now = Instant::now();
                    if self.traffic.on_sample(sample, now) {
                        self.machine.handle(Event::DelayOver, now)
                    } else {
                        Vec::new()
                    }
                }
                () = sleep_until_or_forever(timer) => self.machine.on_timer(Instant::now()),
            };
            for step in steps {
                self.perform(step, mode, settings);
            }
            self.publish();
            if let Some(exit) = self.machine.finished() {
                return Ok(exit);
            }
        }
    }

    /// Reaps every exited child, yielding between passes; the app's exit
    /// goes to the machine in the same turn.
    async fn reap<M: Supervised>(&mut self, mode: &mut M) -> Vec<Step> {
        let mut app_exit = None;
        loop {
            let pass = reaper::reap(REAPS_PER_PASS, |pid, exit| {
                self.metrics.zombies_reaped.inc();
                match mode.on_reaped(pid, exit) {
                    Some(exit) => app_exit = Some(exit),
                    None => debug!(pid, "reaped {exit}"),
                }
            });
            if pass == Pass::Done || app_exit.is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        match app_exit {
            Some(exit) => self.machine.handle(Event::AppExited(exit), Instant::now()),
            None => Vec::new(),
        }
    }

    /// Acts on one step, then logs it.
    fn perform<M: Supervised>(&mut self, step: Step, mode: &mut M, settings: &Settings) {
        match step {
            Step::CheckPassed => debug!("app ready check passed"),
            Step::CheckChanged(CheckResult::Ready) => {
                info!("app ready check passes again, /ready answers 200");
            }
            Step::CheckChanged(result) => {
                warn!(result = ?result, "app ready check failed, /ready answers 503");
            }
            Step::DrainStarted(trigger) => {
                if let Some(drain) = self.machine.state().drain() {
                    self.traffic.drain_started(drain.since);
                }
                mode.drain_started(&self.probe);
                self.metrics.record_drain(trigger);
                info!(trigger = %trigger, "drain started");
                match &settings.drain_notify {
                    Some(DrainNotify::Signal(sig)) => mode.notify(*sig),
                    Some(DrainNotify::Url(url)) => {
                        let checker = Checker::new(url.clone(), self.probe.own_clients.clone());
                        tokio::spawn(notify_url(checker, url.to_string()));
                    }
                    None => {}
                }
                if let Some(kube) = &mut self.kube {
                    let deadline = self.machine.deadline();
                    kube.drain_started(
                        trigger,
                        format!(
                            "propagation delay {}, grace period {}",
                            secs(deadline.propagation_delay),
                            secs(deadline.grace)
                        ),
                    );
                }
            }
            Step::Joined { trigger, after } => {
                info!(trigger = %trigger, after = %secs(after), "drain trigger joins the drain in progress");
            }
            Step::EndpointRemoved { after } => {
                info!(after = %secs(after), "endpoint removed: this pod no longer serves in its EndpointSlices");
            }
            Step::QuietHeld { after } => {
                info!(after = %secs(after), "traffic quiet, but the endpoint's removal is not seen yet: the delay goes on");
            }
            Step::DeadlineSet(deadline) => {
                info!(source = deadline.source(), "drain deadline: {deadline}");
            }
            Step::Unready { after } => {
                info!(after = %secs(after), "unready delay over, /ready now answers 503");
            }
            Step::Stop { after, cause } => {
                mode.stop(&self.metrics);
                info!(after = %secs(after), "propagation delay over");
                let endpoint = self.endpoint_removed();
                if let Some(report) = self.traffic.stopped(Instant::now(), cause) {
                    self.metrics.record_drain_report(report);
                    info!("drain traffic: {report}{endpoint}");
                } else if !endpoint.is_empty() {
                    info!("drain{endpoint}");
                }
            }
            Step::Kill { after, app_had } => {
                mode.kill(after, app_had.unwrap_or_default());
                self.metrics.forced_kills.inc();
            }
            Step::Finished {
                exit,
                after,
                drained,
            } => {
                if drained {
                    self.drain_ended_event(exit);
                }
                let after = secs(after);
                match (exit, drained) {
                    (AppExit::Gone, _) => info!(after = %after, "app is gone"),
                    (_, true) => info!(after = %after, "app exited {exit}"),
                    (_, false) => debug!(after = %after, "app exited {exit}"),
                }
                // Gone before the stop signal, during the delay: every
                // drain reports its traffic all the same.
                if drained {
                    if let Some(report) = self.traffic.app_exited(Instant::now()) {
                        self.metrics.record_drain_report(report);
                        info!("drain traffic: {report}");
                    }
                }
            }
        }
    }

    /// The drain's story in one Kubernetes Event: why the delay ended, the
    /// traffic, the deadline obeyed, the app's exit, a deadline kill.
    fn drain_ended_event(&mut self, exit: AppExit) {
        let endpoint = self.endpoint_removed();
        let Some(kube) = &mut self.kube else {
            return;
        };
        let state = self.machine.state();
        let Some(drain) = state.drain() else {
            return;
        };
        let now = Instant::now();
        let mut story = format!(
            "drain ({}) ended after {}",
            drain.trigger,
            secs(now.saturating_duration_since(drain.since))
        );
        match state.stop_sent() {
            Some(sent) => story.push_str(&format!(
                "; stop signal after {}",
                secs(sent.saturating_duration_since(drain.since))
            )),
            None => story.push_str("; no stop signal"),
        }
        if let Some(report) = self.traffic.report() {
            story.push_str(&format!("; {report}"));
        }
        story.push_str(&endpoint);
        story.push_str(&format!("; deadline: {}", self.machine.deadline()));
        story.push_str(&format!("; app exited {exit}"));
        let killed = state.deadline_hit();
        if killed {
            story.push_str("; killed at the deadline");
        }
        kube.drain_ended(story, killed);
    }

    /// "; endpoint removed at X" once the watch saw it, else "".
    fn endpoint_removed(&self) -> String {
        match (
            self.machine.endpoint_removed(),
            self.machine.state().drain(),
        ) {
            (Some(at), Some(drain)) => format!(
                "; endpoint removed at {}",
                secs(at.saturating_duration_since(drain.since))
            ),
            _ => String::new(),
        }
    }

    fn publish(&self) {
        self.status.send_replace(Snapshot {
            machine: self.machine.status(),
            traffic: self.traffic.report().cloned(),
        });
    }

    /// Lets in-flight `/prestop` answers finish, bounded, and closes the rest.
    async fn shut_down(&mut self) {
        self.publish();
        if let Some(admin) = self.admin.take() {
            admin.shutdown().await;
        }
        if let Some(kube) = self.kube.take() {
            kube.finish().await;
        }
    }
}

/// `--drain-notify URL`: one GET, bounded, its answer logged.
async fn notify_url(mut checker: Checker, url: String) {
    match checker.check(DRAIN_NOTIFY_TIMEOUT).await {
        CheckResult::Ready => info!("drain notify: GET {url} answered 2xx"),
        result => warn!(result = ?result, "drain notify: GET {url} failed"),
    }
}

/// How long `--drain-notify URL` may take.
const DRAIN_NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
