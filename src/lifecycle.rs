//! The drain machine: one state, only ever moving forward.
//!
//! `Starting → Running → Draining → Stopping → Exited`
//!
//! The whole story is one [`State`] value; `/ready` is derived from it
//! ([`Status::ready`]), never stored beside it. Invariants, relied on by
//! the admin server and the tests:
//! - the phase never moves backwards: once draining, never ready again
//!   after the unready delay, and Stopping and Exited are never ready;
//! - the first drain trigger fixes the timeline; later triggers join it
//!   and never restart or extend the propagation delay, nor reach the app;
//! - the kill deadline is measured from the start of the drain;
//! - the app exiting on its own ends the machine in any phase.
//!
//! The machine does no I/O and reads no clock: the event loop hands it
//! each [`Event`] and the current time, asks [`Machine::next_timer`] when
//! to wake it, performs the [`Step`]s it returns (signals to the app), and
//! only then logs them. Every trigger order is a table row in the tests.

use std::fmt;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::durations::secs;
use crate::process_exit::ProcessExit;
use crate::signals::Sig;

/// Where drainit is in the pod's life (the name of a [`State`]).
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
    /// Its process ended (wrapper mode).
    Process(ProcessExit),
    /// Sidecar mode: the app stopped answering its ready check.
    Gone,
}

impl AppExit {
    /// drainit's own exit code: the app's, 128+N for death by signal N.
    pub fn exit_code(self) -> u8 {
        match self {
            AppExit::Process(exit) => exit.exit_code(),
            AppExit::Gone => 0,
        }
    }
}

impl fmt::Display for AppExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppExit::Process(exit) => exit.fmt(f),
            AppExit::Gone => f.write_str("gone"),
        }
    }
}

/// What one `--ready-check` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    /// The app is ready.
    Ready,
    /// The app answered (or accepted) but is not ready.
    NotReady,
    /// Nothing listens there: the app is not up, or is gone.
    Refused,
}

/// Inputs of the machine besides its timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// One `--ready-check` result.
    AppCheck(CheckResult),
    /// A drain trigger arrived.
    Drain(Trigger),
    /// The app ended.
    AppExited(AppExit),
    /// `auto`: the app's ports have been quiet long enough (the floor is
    /// the evidence's to keep); ignored with a fixed delay.
    DelayOver,
    /// What the Kubernetes API said about the pod's deletion once the
    /// drain started; ignored outside a drain or after the deadline.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    Deletion(Deletion),
    /// What the EndpointSlice watch found; see [`Timeline::await_endpoint`].
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    Endpoint(EndpointNews),
}

/// The EndpointSlice watch's news during a drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
pub enum EndpointNews {
    /// Every endpoint of this pod is gone from its slices or not serving.
    Removed,
    /// The watch cannot tell (RBAC, the API down): nothing is awaited.
    Unknown,
}

/// The pod's deletion as the API records it, read when a drain starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
pub enum Deletion {
    /// The pod is being deleted with this grace
    /// (`metadata.deletionGracePeriodSeconds`): the kubelet SIGKILLs this
    /// long after it started the stop the drain answers.
    Grace(Duration),
    /// The pod is not being deleted: no API deletion is behind the drain
    /// (node shutdown, `docker stop`, a kubelet eviction).
    None,
}

/// The deadline a drain obeys: the configured one, or a deletion's
/// shorter grace with the propagation delay cut to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// What the API said, if it answered.
    pub deletion: Option<Deletion>,
    /// The grace obeyed, from the drain's start.
    pub grace: Duration,
    /// When the app is killed, from the drain's start.
    pub kill_after: Duration,
    /// The propagation delay (with `auto`, its ceiling) obeyed.
    pub propagation_delay: Duration,
    /// The configured delay, when a shorter deletion grace cut it.
    pub delay_cut_from: Option<Duration>,
    /// `--grace-period`, for the explanation.
    pub configured_grace: Duration,
}

impl Deadline {
    /// Whether a deletion's grace, not `--grace-period`, is obeyed.
    pub fn obeys_deletion(&self) -> bool {
        matches!(self.deletion, Some(Deletion::Grace(grace)) if grace < self.configured_grace)
    }

    /// Every [`Deadline::source`].
    pub const SOURCES: [&'static str; 4] = [
        "grace_period",
        "grace_period_no_deletion",
        "grace_period_deletion_longer",
        "deletion",
    ];

    /// A short name of the source, for the metrics and `/status`.
    pub fn source(&self) -> &'static str {
        match self.deletion {
            _ if self.obeys_deletion() => "deletion",
            Some(Deletion::None) => "grace_period_no_deletion",
            Some(Deletion::Grace(_)) => "grace_period_deletion_longer",
            None => "grace_period",
        }
    }
}

impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let configured = secs(self.configured_grace);
        match self.deletion {
            Some(Deletion::Grace(grace)) if grace < self.configured_grace => {
                write!(
                    f,
                    "the deletion's grace {} (shorter than --grace-period {configured})",
                    secs(grace)
                )?;
                if let Some(from) = self.delay_cut_from {
                    write!(
                        f,
                        "; propagation delay cut from {} to {} so the app is stopped before the kubelet's SIGKILL",
                        secs(from),
                        secs(self.propagation_delay)
                    )?;
                }
                Ok(())
            }
            Some(Deletion::Grace(grace)) => write!(
                f,
                "--grace-period {configured} (the deletion's grace {} is not shorter)",
                secs(grace)
            ),
            Some(Deletion::None) => write!(
                f,
                "--grace-period {configured}: no API deletion behind this drain"
            ),
            None => write!(f, "--grace-period {configured}"),
        }
    }
}

/// How the drain is timed; see the flags of the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// `--propagation-delay`; with `auto`, its ceiling (`--propagation-delay-max`).
    pub propagation_delay: Duration,
    /// `--propagation-delay auto`: the delay may also end earlier, when
    /// the traffic evidence says so ([`Event::DelayOver`]).
    pub auto: bool,
    /// `--unready-delay`.
    pub unready_delay: Duration,
    /// `--grace-period`.
    pub grace_period: Duration,
    /// `--kill-margin`.
    pub kill_margin: Duration,
    /// Whether `--ready-check` is set (else Running begins at start).
    pub has_ready_check: bool,
    /// How the machine learns that the app is gone.
    pub app_exit: AppExitSeen,
    /// `auto` with the Kubernetes API in use: the delay does not end on
    /// quiet traffic before the endpoint's removal (or the watch's
    /// failure) is seen; the ceiling and the deadline still end it.
    pub await_endpoint: bool,
}

/// How the drain machine learns that the app is gone: the one rule in
/// which the machine of the two modes differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppExitSeen {
    /// Its exit is reaped ([`Event::AppExited`]): the app is drainit's
    /// child (wrapper mode). The deadline kills it and waits for the exit.
    Reaped,
    /// Its exit cannot be seen (sidecar mode): its check refused during a
    /// drain counts as its exit, and so does the drain deadline.
    Inferred,
}

/// The least time the budget check accepts for the app to stop in.
pub const MIN_APP_STOP_TIME: Duration = Duration::from_secs(1);

impl Timeline {
    /// How long after the drain start the app is killed.
    pub fn kill_after(&self) -> Duration {
        self.grace_period.saturating_sub(self.kill_margin)
    }

    /// The deadline before the API has said anything.
    pub fn configured_deadline(&self) -> Deadline {
        Deadline {
            deletion: None,
            grace: self.grace_period,
            kill_after: self.kill_after(),
            propagation_delay: self.propagation_delay,
            delay_cut_from: None,
            configured_grace: self.grace_period,
        }
    }

    /// The deadline once the API said `deletion`. A deletion's grace
    /// shorter than `--grace-period` moves the kill deadline earlier and,
    /// when the delay no longer fits, cuts the delay first: the app keeps
    /// the time to stop the configured budget gave it, but at most half
    /// of what is left before the kill (at least [`MIN_APP_STOP_TIME`]
    /// when there is that much), and the delay gets the rest.
    pub fn deadline_for(&self, deletion: Deletion) -> Deadline {
        let configured = Deadline {
            deletion: Some(deletion),
            ..self.configured_deadline()
        };
        let Deletion::Grace(grace) = deletion else {
            return configured;
        };
        if grace >= self.grace_period {
            return configured;
        }
        let kill_after = grace.saturating_sub(self.kill_margin);
        let configured_stop_time = self.kill_after().saturating_sub(self.propagation_delay);
        let half = kill_after / 2;
        let stop_time = configured_stop_time
            .min(half.max(MIN_APP_STOP_TIME))
            .min(kill_after);
        let fits = kill_after.saturating_sub(stop_time);
        let propagation_delay = self.propagation_delay.min(fits);
        Deadline {
            deletion: Some(deletion),
            grace,
            kill_after,
            propagation_delay,
            delay_cut_from: (propagation_delay < self.propagation_delay)
                .then_some(self.propagation_delay),
            configured_grace: self.grace_period,
        }
    }

    /// The problem with this budget, if the delay and margin leave the app
    /// less than [`MIN_APP_STOP_TIME`] to stop inside the grace period.
    pub fn budget_problem(&self) -> Option<String> {
        let used = self.propagation_delay.saturating_add(self.kill_margin);
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

/// The drain under way: when and why it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// When the first trigger arrived.
    pub since: Instant,
    /// The first trigger.
    pub trigger: Trigger,
}

/// The machine's whole state; each phase carries what it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for the app's check to pass for the first time.
    Starting,
    /// Serving; `app_ready` is the last check's verdict (true without a check).
    Running {
        /// Whether the app's check passes.
        app_ready: bool,
    },
    /// The drain started; the app still serves.
    Draining {
        /// The drain.
        drain: Drain,
        /// `/ready` still answers 200 until then (`--unready-delay`);
        /// `None` once it answers 503.
        ready_until: Option<Instant>,
    },
    /// The stop signal went out (or the deadline came first).
    Stopping {
        /// The drain.
        drain: Drain,
        /// When the stop signal was sent; `None` if the deadline came first.
        stop_sent: Option<Instant>,
        /// Whether the deadline passed and the app was killed.
        deadline_hit: bool,
    },
    /// The app is gone.
    Exited {
        /// How it ended.
        exit: AppExit,
        /// The drain, if there was one.
        drain: Option<Drain>,
        /// When the stop signal was sent, if it was.
        stop_sent: Option<Instant>,
        /// Whether the deadline passed and the app was killed.
        deadline_hit: bool,
    },
}

impl State {
    /// The phase this state is in.
    pub fn phase(&self) -> Phase {
        match self {
            State::Starting => Phase::Starting,
            State::Running { .. } => Phase::Running,
            State::Draining { .. } => Phase::Draining,
            State::Stopping { .. } => Phase::Stopping,
            State::Exited { .. } => Phase::Exited,
        }
    }

    /// What `/ready` answers at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        match self {
            State::Running { app_ready } => *app_ready,
            State::Draining { ready_until, .. } => ready_until.is_some_and(|until| now < until),
            State::Starting | State::Stopping { .. } | State::Exited { .. } => false,
        }
    }

    /// The drain, once one started.
    pub fn drain(&self) -> Option<Drain> {
        match *self {
            State::Starting | State::Running { .. } => None,
            State::Draining { drain, .. } | State::Stopping { drain, .. } => Some(drain),
            State::Exited { drain, .. } => drain,
        }
    }

    /// When the stop signal was sent, if it was.
    pub fn stop_sent(&self) -> Option<Instant> {
        match *self {
            State::Stopping { stop_sent, .. } | State::Exited { stop_sent, .. } => stop_sent,
            _ => None,
        }
    }

    /// Whether the drain deadline passed and the app was killed.
    pub fn deadline_hit(&self) -> bool {
        match *self {
            State::Stopping { deadline_hit, .. } | State::Exited { deadline_hit, .. } => {
                deadline_hit
            }
            _ => false,
        }
    }

    /// How the app ended, once it has.
    pub fn exit(&self) -> Option<AppExit> {
        match *self {
            State::Exited { exit, .. } => Some(exit),
            _ => None,
        }
    }
}

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

/// A snapshot of the machine, published on a watch channel for the admin
/// server; the machine never reads it back.
#[derive(Debug, Clone)]
pub struct Status {
    /// The state.
    pub state: State,
    /// The last `--ready-check` result, if any ran.
    pub app_check: Option<CheckResult>,
    /// Every phase entered so far, in order.
    pub transitions: Vec<Transition>,
    /// The app's pid (wrapper mode).
    pub child_pid: Option<i32>,
    /// The deadline the drain obeys.
    pub deadline: Deadline,
    /// When this pod's endpoint left its EndpointSlices (Kubernetes API).
    pub endpoint_removed: Option<Instant>,
}

impl Status {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.state.phase()
    }

    /// What `/ready` answers now.
    pub fn ready(&self) -> bool {
        self.state.ready(Instant::now())
    }

    /// When the current phase began.
    pub fn phase_since(&self) -> Option<Instant> {
        self.transitions.last().map(|t| t.instant)
    }
}

/// Why the propagation delay ended, as the machine decided it; the
/// drain's traffic report tells it (`traffic::DrainEvidence::stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// Its own length ran out: a fixed delay, or `auto`'s ceiling.
    Timer,
    /// `auto`: the ports were quiet ([`Event::DelayOver`]).
    Quiet,
    /// `auto`'s quiet came first and was held for the endpoint's removal
    /// (Kubernetes API): the removal is now seen (`seen`), or the watch
    /// failed and nothing is awaited any more.
    Endpoint {
        /// The removal was seen (else the watch failed).
        seen: bool,
    },
    /// A deletion's grace cut the delay (see [`Deadline`]).
    Cut {
        /// The delay it was cut to.
        to: Duration,
        /// The deletion's grace.
        grace: Duration,
    },
}

/// What the event loop must do (and then log) for the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The app's check passed for the first time: Running.
    CheckPassed,
    /// The app's check changed its verdict while Running.
    CheckChanged(CheckResult),
    /// A drain started: count it, hurry the probe, log it.
    DrainStarted(Trigger),
    /// A later trigger joined the drain, `after` its start: log only.
    Joined {
        /// The trigger.
        trigger: Trigger,
        /// Time since the drain started.
        after: Duration,
    },
    /// The unready delay is over: `/ready` answers 503 from now.
    Unready {
        /// Time since the drain started.
        after: Duration,
    },
    /// The API's word on the deletion fixed the deadline: log it.
    DeadlineSet(Deadline),
    /// This pod's endpoint left its EndpointSlices: log it.
    EndpointRemoved {
        /// Time since the drain started.
        after: Duration,
    },
    /// `auto`'s traffic went quiet before the endpoint's removal was
    /// seen: the delay goes on until it is (log it).
    QuietHeld {
        /// Time since the drain started.
        after: Duration,
    },
    /// The propagation delay is over: send the stop signal.
    Stop {
        /// Time since the drain started.
        after: Duration,
        /// Why it is over, for the drain's report.
        cause: StopCause,
    },
    /// The drain deadline: kill the app.
    Kill {
        /// Time since the drain started.
        after: Duration,
        /// How long the app had since the stop signal (`None`: none was sent).
        app_had: Option<Duration>,
    },
    /// The machine is done: the app ended (or, in a sidecar, is taken as gone).
    Finished {
        /// How.
        exit: AppExit,
        /// Time since the stop signal, else the drain start, else the start.
        after: Duration,
        /// Whether a drain preceded it (the story is told at info then).
        drained: bool,
    },
}

/// The drain machine. Build it with [`Machine::new`], feed it events and
/// timer wake-ups, and publish [`Machine::status`] after each.
#[derive(Debug)]
pub struct Machine {
    timeline: Timeline,
    state: State,
    app_check: Option<CheckResult>,
    transitions: Vec<Transition>,
    child_pid: Option<i32>,
    deadline: Deadline,
    /// When the drain's endpoint removal was seen.
    endpoint_removed: Option<Instant>,
    /// The watch failed: nothing to await.
    endpoint_unknown: bool,
    /// `auto`'s quiet came while the removal was awaited.
    quiet_held: bool,
}

impl Machine {
    /// A machine in Starting at `now`.
    pub fn new(timeline: Timeline, now: Instant) -> Machine {
        Machine {
            timeline,
            state: State::Starting,
            app_check: None,
            transitions: vec![Transition {
                phase: Phase::Starting,
                at: SystemTime::now(),
                instant: now,
            }],
            child_pid: None,
            deadline: timeline.configured_deadline(),
            endpoint_removed: None,
            endpoint_unknown: false,
            quiet_held: false,
        }
    }

    /// The deadline the drain obeys (the configured one until the API
    /// says otherwise).
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// When this pod's endpoint left its EndpointSlices, once seen.
    pub fn endpoint_removed(&self) -> Option<Instant> {
        self.endpoint_removed
    }

    /// The app is up (its pid, in wrapper mode): without a ready check it
    /// is Running at once.
    pub fn started(&mut self, child_pid: Option<i32>, now: Instant) {
        self.child_pid = child_pid;
        if !self.timeline.has_ready_check && self.state == State::Starting {
            self.enter(State::Running { app_ready: true }, now);
        }
    }

    /// The state now.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// How the app ended, once the machine is done.
    pub fn finished(&self) -> Option<AppExit> {
        self.state.exit()
    }

    /// The snapshot to publish.
    pub fn status(&self) -> Status {
        Status {
            state: self.state,
            app_check: self.app_check,
            transitions: self.transitions.clone(),
            child_pid: self.child_pid,
            deadline: self.deadline,
            endpoint_removed: self.endpoint_removed,
        }
    }

    /// When the machine wants [`Machine::on_timer`] next, if ever.
    pub fn next_timer(&self) -> Option<Instant> {
        let kill_at = |drain: &Drain| drain.since.checked_add(self.deadline.kill_after);
        match &self.state {
            State::Draining { drain, ready_until } => {
                let stop_at = drain.since.checked_add(self.deadline.propagation_delay);
                [kill_at(drain), stop_at, *ready_until]
                    .into_iter()
                    .flatten()
                    .min()
            }
            State::Stopping {
                drain,
                deadline_hit: false,
                ..
            } => kill_at(drain),
            _ => None,
        }
    }

    /// Fires whatever is due at `now`.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Step> {
        let mut steps = Vec::new();
        self.fire_due(now, &mut steps);
        steps
    }

    /// Handles one event at `now`.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Step> {
        let mut steps = Vec::new();
        match event {
            Event::AppCheck(result) => self.on_check(result, now, &mut steps),
            Event::Drain(trigger) => self.on_trigger(trigger, now, &mut steps),
            Event::AppExited(exit) => self.finish(exit, now, &mut steps),
            Event::DelayOver => self.on_delay_over(now, &mut steps),
            Event::Deletion(deletion) => self.on_deletion(deletion, now, &mut steps),
            Event::Endpoint(news) => self.on_endpoint(news, now, &mut steps),
        }
        steps
    }

    fn fire_due(&mut self, now: Instant, steps: &mut Vec<Step>) {
        let Some(drain) = self.state.drain() else {
            return;
        };
        let after = now.saturating_duration_since(drain.since);
        let deadline_due = !self.state.deadline_hit() && after >= self.deadline.kill_after;
        if deadline_due && self.state.phase() < Phase::Exited {
            let stop_sent = self.state.stop_sent();
            steps.push(Step::Kill {
                after,
                app_had: stop_sent.map(|sent| now.saturating_duration_since(sent)),
            });
            if self.timeline.app_exit == AppExitSeen::Inferred {
                // No waiting for an exit that may never be seen.
                self.finish(AppExit::Gone, now, steps);
                return;
            }
            self.enter(
                State::Stopping {
                    drain,
                    stop_sent,
                    deadline_hit: true,
                },
                now,
            );
            return;
        }
        if let State::Draining { ready_until, .. } = self.state {
            if ready_until.is_some_and(|until| now >= until) {
                self.state = State::Draining {
                    drain,
                    ready_until: None,
                };
                if !self.timeline.unready_delay.is_zero() {
                    steps.push(Step::Unready { after });
                }
            }
            if after >= self.deadline.propagation_delay {
                let cause = match self.deadline.delay_cut_from {
                    Some(_) => StopCause::Cut {
                        to: self.deadline.propagation_delay,
                        grace: self.deadline.grace,
                    },
                    None => StopCause::Timer,
                };
                self.stop(drain, now, cause, steps);
            }
        }
    }

    /// The propagation delay is over (its timer, or auto's evidence): the
    /// stop signal, and Stopping.
    fn stop(&mut self, drain: Drain, now: Instant, cause: StopCause, steps: &mut Vec<Step>) {
        steps.push(Step::Stop {
            after: now.saturating_duration_since(drain.since),
            cause,
        });
        self.enter(
            State::Stopping {
                drain,
                stop_sent: Some(now),
                deadline_hit: false,
            },
            now,
        );
    }

    /// The API's word on the deletion: the deadline it sets, once, while
    /// the drain has not hit its deadline; then whatever is now due.
    fn on_deletion(&mut self, deletion: Deletion, now: Instant, steps: &mut Vec<Step>) {
        let draining = matches!(self.state.phase(), Phase::Draining | Phase::Stopping);
        if !draining || self.state.deadline_hit() || self.deadline.deletion.is_some() {
            return;
        }
        self.deadline = self.timeline.deadline_for(deletion);
        steps.push(Step::DeadlineSet(self.deadline));
        self.fire_due(now, steps);
    }

    fn on_delay_over(&mut self, now: Instant, steps: &mut Vec<Step>) {
        let State::Draining { drain, .. } = self.state else {
            return;
        };
        if !self.timeline.auto {
            return;
        }
        let awaited = self.timeline.await_endpoint
            && self.endpoint_removed.is_none()
            && !self.endpoint_unknown;
        if awaited {
            // Said once: the evidence stays quiet at every later sample.
            if !self.quiet_held {
                steps.push(Step::QuietHeld {
                    after: now.saturating_duration_since(drain.since),
                });
            }
            self.quiet_held = true;
            return;
        }
        self.stop(drain, now, StopCause::Quiet, steps);
    }

    /// The watch's news: the removal is recorded once; a quiet that was
    /// held for it ends the delay now.
    fn on_endpoint(&mut self, news: EndpointNews, now: Instant, steps: &mut Vec<Step>) {
        let Some(drain) = self.state.drain() else {
            return;
        };
        match news {
            EndpointNews::Removed if self.endpoint_removed.is_none() => {
                self.endpoint_removed = Some(now);
                steps.push(Step::EndpointRemoved {
                    after: now.saturating_duration_since(drain.since),
                });
            }
            EndpointNews::Removed => return,
            EndpointNews::Unknown => self.endpoint_unknown = true,
        }
        if self.quiet_held && matches!(self.state, State::Draining { .. }) {
            let seen = news == EndpointNews::Removed;
            self.stop(drain, now, StopCause::Endpoint { seen }, steps);
        }
    }

    fn on_check(&mut self, result: CheckResult, now: Instant, steps: &mut Vec<Step>) {
        let previous = self.app_check.replace(result);
        let phase = self.state.phase();
        let inferred = self.timeline.app_exit == AppExitSeen::Inferred;
        let refused_again =
            result == CheckResult::Refused && previous == Some(CheckResult::Refused);
        if inferred && phase >= Phase::Draining && refused_again {
            // The app's exit cannot be seen; its address refusing
            // connections during a drain is how the machine learns it is gone.
            // Twice in a row: one refusal may be a restart of the listener,
            // and nothing else (a failed lookup, a timeout) means gone.
            self.finish(AppExit::Gone, now, steps);
            return;
        }
        match (self.state, result) {
            (State::Starting, CheckResult::Ready) => {
                steps.push(Step::CheckPassed);
                self.enter(State::Running { app_ready: true }, now);
            }
            (State::Running { app_ready }, result) => {
                let ready = result == CheckResult::Ready;
                // A failure only counts once the check has passed before.
                if ready != app_ready && (ready || previous == Some(CheckResult::Ready)) {
                    steps.push(Step::CheckChanged(result));
                    self.state = State::Running { app_ready: ready };
                }
            }
            _ => {}
        }
    }

    fn on_trigger(&mut self, trigger: Trigger, now: Instant, steps: &mut Vec<Step>) {
        if let Some(drain) = self.state.drain() {
            if self.state.phase() < Phase::Exited {
                steps.push(Step::Joined {
                    trigger,
                    after: now.saturating_duration_since(drain.since),
                });
            }
            return;
        }
        if self.state.phase() == Phase::Exited {
            return;
        }
        let was_ready = self.state.ready(now);
        let drain = Drain {
            since: now,
            trigger,
        };
        let keep_ready = was_ready && !self.timeline.unready_delay.is_zero();
        // An unready delay too long to compute keeps /ready up until the
        // stop signal, which is where it would have ended anyway.
        let ready_until = keep_ready.then(|| {
            now.checked_add(self.timeline.unready_delay)
                .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
        });
        steps.push(Step::DrainStarted(trigger));
        self.enter(State::Draining { drain, ready_until }, now);
        self.fire_due(now, steps);
    }

    fn finish(&mut self, exit: AppExit, now: Instant, steps: &mut Vec<Step>) {
        if self.state.phase() == Phase::Exited {
            return;
        }
        let drain = self.state.drain();
        let stop_sent = self.state.stop_sent();
        let since = stop_sent
            .or(drain.map(|d| d.since))
            .or(self.transitions.first().map(|t| t.instant))
            .unwrap_or(now);
        steps.push(Step::Finished {
            exit,
            after: now.saturating_duration_since(since),
            drained: drain.is_some(),
        });
        let deadline_hit = self.state.deadline_hit();
        self.enter(
            State::Exited {
                exit,
                drain,
                stop_sent,
                deadline_hit,
            },
            now,
        );
    }

    fn enter(&mut self, state: State, now: Instant) {
        if state.phase() > self.state.phase() {
            self.transitions.push(Transition {
                phase: state.phase(),
                at: SystemTime::now(),
                instant: now,
            });
        }
        self.state = state;
    }
}

#[cfg(test)]
mod tests;
