//! The shutdown timeline: one state machine, only ever moving forward.
//!
//! `Starting → Running → Draining → Stopping → Exited`
//!
//! Invariants, relied on by the admin server and the tests:
//! - the phase never moves backwards: once draining, never ready again;
//! - the first drain trigger fixes the timeline; later triggers join it
//!   and never restart or extend the propagation delay;
//! - the kill deadline is measured from the start of the drain;
//! - the app exiting on its own ends the machine in any phase.
//!
//! The machine is driven by [`Event`]s and its own timers and acts on the
//! world only through [`Actions`], so every trigger order is unit-tested
//! with a paused clock. It is the only writer of [`Status`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::metrics::Metrics;
use crate::probe::CheckResult;
use crate::signals::Sig;

/// Where drainit is in the pod's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// The app is starting; `/ready` is 503 until its check first passes.
    Starting,
    /// Serving: `/ready` is 200 while the app's check passes.
    Running,
    /// A drain started: `/ready` is 503 (after the unready delay), the app still serves.
    Draining,
    /// The stop signal was sent; waiting for the app to exit.
    Stopping,
    /// The app is gone.
    Exited,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 5] = [
        Phase::Starting,
        Phase::Running,
        Phase::Draining,
        Phase::Stopping,
        Phase::Exited,
    ];

    /// The lowercase name used in answers, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Draining => "draining",
            Phase::Stopping => "stopping",
            Phase::Exited => "exited",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What started (or joined) a drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// A request to `/prestop` (the kubelet's preStop hook).
    Prestop,
    /// A signal listed in `--drain-on` reached drainit.
    Signal(Sig),
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Prestop => f.write_str("prestop"),
            Trigger::Signal(sig) => write!(f, "{sig}"),
        }
    }
}

/// How the app ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppExit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(Sig),
    /// Sidecar mode: the app stopped answering its ready check.
    Gone,
}

impl AppExit {
    /// drainit's own exit code: the app's, 128+N for death by signal N.
    pub fn exit_code(self) -> u8 {
        match self {
            AppExit::Code(code) => u8::try_from(code & 0xff).unwrap_or(1),
            AppExit::Signal(sig) => u8::try_from(128 + sig.raw()).unwrap_or(255),
            AppExit::Gone => 0,
        }
    }
}

impl fmt::Display for AppExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppExit::Code(code) => write!(f, "code={code}"),
            AppExit::Signal(sig) => write!(f, "signal={sig}"),
            AppExit::Gone => f.write_str("gone"),
        }
    }
}

/// Inputs of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The app was started with this pid.
    Spawned(i32),
    /// One `--ready-check` result.
    AppCheck(CheckResult),
    /// A drain trigger arrived.
    Drain(Trigger),
    /// The app ended.
    AppExited(AppExit),
}

/// What the state machine does to the world.
pub trait Actions {
    /// Ask the app to stop (the `--stop-signal`), once the delay is over.
    fn stop(&mut self);
    /// The drain deadline: kill the app's process group.
    fn kill(&mut self);
    /// A drain just started (the sidecar re-checks the app at once).
    fn drain_started(&mut self) {}
}

/// How the drain is timed; see the flags of the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// `--propagation-delay`.
    pub propagation_delay: Duration,
    /// `--unready-delay`.
    pub unready_delay: Duration,
    /// `--grace-period`.
    pub grace_period: Duration,
    /// `--kill-margin`.
    pub kill_margin: Duration,
    /// Whether `--ready-check` is set (else Running begins at spawn).
    pub has_ready_check: bool,
    /// Sidecar mode: the app's disappearance (check refused) ends the machine.
    pub sidecar: bool,
}

impl Timeline {
    /// How long after the drain start the app is killed.
    pub fn kill_after(&self) -> Duration {
        self.grace_period.saturating_sub(self.kill_margin)
    }

    /// The problem with this budget, if the delay and margin leave the app
    /// less than [`MIN_APP_STOP_TIME`] to stop inside the grace period.
    pub fn budget_problem(&self) -> Option<String> {
        let used = self.propagation_delay + self.kill_margin;
        let left = self.grace_period.saturating_sub(used);
        (left < MIN_APP_STOP_TIME).then(|| {
            format!(
                "propagation delay {} + kill margin {} leave the app {} of the grace period {} to stop (at least {} needed)",
                secs(self.propagation_delay),
                secs(self.kill_margin),
                secs(left),
                secs(self.grace_period),
                secs(MIN_APP_STOP_TIME)
            )
        })
    }
}

/// The least time the budget check accepts for the app to stop in.
pub const MIN_APP_STOP_TIME: Duration = Duration::from_secs(1);

/// A phase change, for `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The phase entered.
    pub phase: Phase,
    /// When, on the wall clock.
    pub at: SystemTime,
    /// When, on the monotonic clock.
    pub instant: Instant,
}

/// Everything the outside sees of the machine, published on a watch channel.
#[derive(Debug, Clone)]
pub struct Status {
    /// The current phase.
    pub phase: Phase,
    /// What `/ready` answers now.
    pub ready: bool,
    /// The last `--ready-check` result, if any ran.
    pub app_check: Option<CheckResult>,
    /// Every phase entered so far, in order.
    pub transitions: Vec<Transition>,
    /// The trigger that started the drain.
    pub drain_trigger: Option<Trigger>,
    /// When the drain started.
    pub drain_started: Option<Instant>,
    /// When the stop signal was sent.
    pub stop_sent: Option<Instant>,
    /// Whether the drain deadline was hit and the app killed.
    pub deadline_hit: bool,
    /// The app's pid (wrapper mode).
    pub child_pid: Option<i32>,
    /// How the app ended.
    pub exit: Option<AppExit>,
}

impl Status {
    fn new() -> Status {
        Status {
            phase: Phase::Starting,
            ready: false,
            app_check: None,
            transitions: vec![Transition {
                phase: Phase::Starting,
                at: SystemTime::now(),
                instant: Instant::now(),
            }],
            drain_trigger: None,
            drain_started: None,
            stop_sent: None,
            deadline_hit: false,
            child_pid: None,
            exit: None,
        }
    }

    /// When the current phase began.
    pub fn phase_since(&self) -> Instant {
        self.transitions
            .last()
            .map_or_else(Instant::now, |t| t.instant)
    }
}

/// The state machine. Build it with [`Lifecycle::new`], then [`Lifecycle::run`] it.
pub struct Lifecycle<A: Actions> {
    timeline: Timeline,
    actions: A,
    status: watch::Sender<Status>,
    metrics: Arc<Metrics>,
}

impl<A: Actions> Lifecycle<A> {
    /// A machine in Starting, with the receiver side of its status.
    pub fn new(
        timeline: Timeline,
        actions: A,
        metrics: Arc<Metrics>,
    ) -> (Lifecycle<A>, watch::Receiver<Status>) {
        let (status, receiver) = watch::channel(Status::new());
        (
            Lifecycle {
                timeline,
                actions,
                status,
                metrics,
            },
            receiver,
        )
    }

    /// Runs until the app has exited, returning how it ended.
    pub async fn run(mut self, mut events: mpsc::Receiver<Event>) -> AppExit {
        let mut events_open = true;
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                event = events.recv(), if events_open => match event {
                    Some(event) => {
                        if let Some(exit) = self.on_event(event) {
                            return exit;
                        }
                    }
                    None => events_open = false,
                },
                () = sleep_until_or_forever(deadline) => {
                    if let Some(exit) = self.on_timer() {
                        return exit;
                    }
                }
            }
        }
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn phase(&self) -> Phase {
        self.status.borrow().phase
    }

    fn drain_started(&self) -> Option<Instant> {
        self.status.borrow().drain_started
    }

    /// The next moment a timer fires, if any.
    fn next_deadline(&self) -> Option<Instant> {
        let status = self.status.borrow();
        let start = status.drain_started?;
        let kill_at = (!status.deadline_hit).then(|| start + self.timeline.kill_after());
        let during_drain =
            |offset: Duration| (status.phase == Phase::Draining).then(|| start + offset);
        let unready_at = during_drain(self.timeline.unready_delay).filter(|_| status.ready);
        let stop_at = during_drain(self.timeline.propagation_delay);
        [kill_at, unready_at, stop_at].into_iter().flatten().min()
    }

    /// Fires due timers; returns an exit only for a sidecar at its deadline.
    fn on_timer(&mut self) -> Option<AppExit> {
        let now = self.now();
        let start = self.drain_started()?;
        let elapsed = now.saturating_duration_since(start);
        let (deadline_hit, phase, ready) = {
            let status = self.status.borrow();
            (status.deadline_hit, status.phase, status.ready)
        };
        if !deadline_hit && elapsed >= self.timeline.kill_after() {
            self.hit_deadline(elapsed);
            // A sidecar cannot wait for an exit it may never see.
            return self.timeline.sidecar.then(|| self.on_exit(AppExit::Gone));
        }
        if phase != Phase::Draining {
            return None;
        }
        if ready && elapsed >= self.timeline.unready_delay {
            info!(after = %secs(elapsed), "unready delay over, /ready now answers 503");
            self.publish(|s| s.ready = false);
        }
        if elapsed >= self.timeline.propagation_delay {
            info!(after = %secs(elapsed), "propagation delay over");
            self.enter_stopping(now);
        }
        None
    }

    fn enter_stopping(&mut self, now: Instant) {
        self.transition(Phase::Stopping);
        self.publish(|s| s.stop_sent = Some(now));
        self.actions.stop();
    }

    fn hit_deadline(&mut self, elapsed: Duration) {
        if self.timeline.sidecar {
            error!(after = %secs(elapsed), "drain deadline hit, the app is still answering; sidecar exits");
        } else {
            let stop_sent = self.status.borrow().stop_sent;
            let had = stop_sent.map_or(Duration::ZERO, |t| self.now().saturating_duration_since(t));
            error!(
                after = %secs(elapsed),
                app_had = %secs(had),
                "drain deadline hit, SIGKILL: the app did not exit within {} of the stop signal",
                secs(had)
            );
        }
        self.metrics.forced_kills.inc();
        if self.phase() == Phase::Draining {
            self.transition(Phase::Stopping);
        }
        self.publish(|s| {
            s.deadline_hit = true;
            s.ready = false;
        });
        self.actions.kill();
    }

    /// Handles one event; returns the app's exit once the machine is done.
    fn on_event(&mut self, event: Event) -> Option<AppExit> {
        match event {
            Event::Spawned(pid) => {
                self.publish(|s| s.child_pid = Some(pid));
                if !self.timeline.has_ready_check && self.phase() == Phase::Starting {
                    self.transition(Phase::Running);
                    self.publish(|s| s.ready = true);
                }
            }
            Event::AppCheck(result) => return self.on_check(result),
            Event::Drain(trigger) => self.on_trigger(trigger),
            Event::AppExited(exit) => return Some(self.on_exit(exit)),
        }
        None
    }

    fn on_check(&mut self, result: CheckResult) -> Option<AppExit> {
        let previous = self.status.borrow().app_check;
        self.publish(|s| s.app_check = Some(result));
        let phase = self.phase();
        if self.timeline.sidecar && phase >= Phase::Draining && result == CheckResult::Refused {
            // A sidecar cannot see the app exit; its address refusing
            // connections during a drain is how it learns the app is gone.
            return Some(self.on_exit(AppExit::Gone));
        }
        match (phase, result) {
            (Phase::Starting, CheckResult::Ready) => {
                info!("app ready check passed");
                self.transition(Phase::Running);
                self.publish(|s| s.ready = true);
            }
            (Phase::Running, CheckResult::Ready) if previous != Some(CheckResult::Ready) => {
                info!("app ready check passes again, /ready answers 200");
                self.publish(|s| s.ready = true);
            }
            (Phase::Running, failed)
                if failed != CheckResult::Ready && previous == Some(CheckResult::Ready) =>
            {
                warn!(result = ?failed, "app ready check failed, /ready answers 503");
                self.publish(|s| s.ready = false);
            }
            _ => {}
        }
        None
    }

    fn on_trigger(&mut self, trigger: Trigger) {
        let now = self.now();
        match self.status.borrow().drain_started {
            Some(start) => {
                info!(
                    trigger = %trigger,
                    after = %secs(now.saturating_duration_since(start)),
                    "drain trigger joins the drain in progress"
                );
                return;
            }
            None if self.phase() == Phase::Exited => return,
            None => {}
        }
        info!(trigger = %trigger, "drain started");
        self.metrics.record_drain(trigger);
        self.actions.drain_started();
        let keep_ready = self.status.borrow().ready && !self.timeline.unready_delay.is_zero();
        self.transition(Phase::Draining);
        self.publish(|s| {
            s.drain_trigger = Some(trigger);
            s.drain_started = Some(now);
            s.ready = keep_ready;
        });
        if self.timeline.propagation_delay.is_zero() {
            info!("propagation delay is 0s");
            self.enter_stopping(now);
        }
        if self.timeline.kill_after().is_zero() {
            self.hit_deadline(Duration::ZERO);
        }
    }

    fn on_exit(&mut self, exit: AppExit) -> AppExit {
        let since = self
            .status
            .borrow()
            .stop_sent
            .or(self.drain_started())
            .unwrap_or_else(|| self.status.borrow().transitions[0].instant);
        let after = secs(self.now().saturating_duration_since(since));
        match exit {
            AppExit::Gone => info!(after = %after, "app is gone"),
            _ => info!(after = %after, "app exited {exit}"),
        }
        self.transition(Phase::Exited);
        self.publish(|s| {
            s.exit = Some(exit);
            s.ready = false;
        });
        exit
    }

    fn transition(&mut self, phase: Phase) {
        self.publish(|s| {
            if s.phase < phase {
                s.phase = phase;
                s.transitions.push(Transition {
                    phase,
                    at: SystemTime::now(),
                    instant: Instant::now(),
                });
            }
        });
    }

    fn publish(&self, change: impl FnOnce(&mut Status)) {
        self.status.send_modify(change);
    }
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Seconds with one decimal, as in the log lines (`5.0s`).
pub fn secs(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests;
