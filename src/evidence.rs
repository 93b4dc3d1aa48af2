//! Drain on evidence: when `--propagation-delay auto` ends, and what
//! every drain reports about the traffic it saw. Pure logic: times and
//! observations come in as arguments, nothing here reads a clock.
//!
//! **Arrivals.** An observation ([`Observation`], one per socket dump)
//! counts the arrivals since the previous one: requests estimated from
//! each connection's inbound bytes and data segments (a keep-alive
//! client's requests show up only there), and new connections that
//! carried no data (see `traffic::Sample::arrivals`).
//!
//! **The rate before the drain**, λ̂, is taken over the last
//! [`RATE_HISTORY`] of observations while the app runs, as the smaller of
//! two estimates of a Poisson stream's rate:
//! - counted: arrivals ÷ time observed;
//! - binned: with n observation intervals of mean length Δ, k of which
//!   saw an arrival, −ln((n − k)/n) / Δ (a Poisson stream leaves an
//!   interval empty with probability e^{−λΔ}); infinite when every
//!   interval saw traffic. It is what catches bursty traffic, whose
//!   quiet intervals a Poisson stream of the counted rate would not show.
//!
//! **The quiet window.** A stream of rate λ still routed to the pod shows
//! a gap of W or more with probability e^{−λW}; W = ln(10⁶)/λ̂ ≈ 13.8/λ̂
//! makes that ≤ 10⁻⁶. W is at least the mean interval between the
//! observations λ̂ came from (gaps shorter than that are invisible to the
//! estimate), and at least [`QUIET_WINDOW_FLOOR`]; `--quiet-window`
//! replaces the formula. Without arrivals before the drain W is
//! unbounded: silence proves nothing, the delay runs to the ceiling.
//!
//! **The end.** The delay ends at the first observation at or after the
//! floor (`--propagation-delay-min`) that shows the ports quiet — no new
//! connection, no inbound byte — for W, and at the ceiling
//! (`--propagation-delay-max`) at the latest. Quiet is only ever proven by
//! an observation: time that no dump has covered yet is not quiet.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio::time::Instant;

/// `ln(10⁶)`: a quiet window of this many mean inter-arrival times is
/// shown by a Poisson stream with probability 10⁻⁶.
pub const WINDOW_IN_MEAN_GAPS: f64 = 13.815_510_557_964_274;

/// The shortest quiet window: five drain samples (`traffic::DRAIN_INTERVAL`),
/// well above the kernel's receive stamps' resolution (1–10 ms).
pub const QUIET_WINDOW_FLOOR: Duration = Duration::from_millis(500);

/// How much of the time before the drain the rate is taken over.
pub const RATE_HISTORY: Duration = Duration::from_secs(60);

/// Proposed default of `--propagation-delay-min`: no balancer has let go
/// of the pod within the first second (endpoints controller, then
/// kube-proxy), so silence before it is a pause, not a reroute.
pub const DEFAULT_DELAY_MIN: Duration = Duration::from_secs(1);

/// Proposed default of `--propagation-delay-max`: fits the default 30 s
/// grace period with the 2 s kill margin and 8 s for the app to stop.
/// Raise it (with the grace period) behind an NLB.
pub const DEFAULT_DELAY_MAX: Duration = Duration::from_secs(20);

/// `--propagation-delay`: a fixed time, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropagationDelay {
    /// Wait exactly this long (the default, `5s`).
    Fixed(Duration),
    /// End when the traffic has stopped, between the floor and the ceiling.
    Auto,
}

/// A `--propagation-delay` that is neither `auto` nor a duration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid propagation delay '{input}': expected `auto` or a duration like 500ms, 5s, 1m30s")]
pub struct PropagationDelayError {
    /// What was given.
    pub input: String,
}

impl FromStr for PropagationDelay {
    type Err = PropagationDelayError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let trimmed = input.trim();
        if trimmed.eq_ignore_ascii_case("auto") {
            return Ok(PropagationDelay::Auto);
        }
        humantime::parse_duration(trimmed)
            .map(PropagationDelay::Fixed)
            .map_err(|_| PropagationDelayError {
                input: input.to_string(),
            })
    }
}

impl fmt::Display for PropagationDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropagationDelay::Fixed(d) => write!(f, "{}", humantime::format_duration(*d)),
            PropagationDelay::Auto => f.write_str("auto"),
        }
    }
}

/// The bounds of `auto` (`--propagation-delay-min`, `-max`,
/// `--quiet-window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoBounds {
    /// The floor: the delay never ends before it.
    pub min: Duration,
    /// The ceiling: the delay always ends by it (the budget check uses it).
    pub max: Duration,
    /// Replaces the window computed from the rate.
    pub quiet_window: Option<Duration>,
}

impl Default for AutoBounds {
    fn default() -> Self {
        AutoBounds {
            min: DEFAULT_DELAY_MIN,
            max: DEFAULT_DELAY_MAX,
            quiet_window: None,
        }
    }
}

/// Bounds of `auto` that contradict each other.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AutoBoundsError {
    /// The floor is above the ceiling.
    #[error("--propagation-delay-min ({min:?}) is above --propagation-delay-max ({max:?})")]
    FloorAboveCeiling {
        /// The floor given.
        min: Duration,
        /// The ceiling given.
        max: Duration,
    },
    /// A zero quiet window would end every delay at the floor.
    #[error("--quiet-window must be longer than 0s")]
    ZeroWindow,
}

impl AutoBounds {
    /// Checks the bounds at startup.
    pub fn validate(&self) -> Result<(), AutoBoundsError> {
        if self.min > self.max {
            return Err(AutoBoundsError::FloorAboveCeiling {
                min: self.min,
                max: self.max,
            });
        }
        if self.quiet_window == Some(Duration::ZERO) {
            return Err(AutoBoundsError::ZeroWindow);
        }
        Ok(())
    }
}

/// What one observation of the watched ports showed since the previous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// When it was taken.
    pub at: Instant,
    /// Arrivals since the previous observation (0 in the first).
    pub arrivals: u64,
    /// The latest new connection in the interval.
    pub last_new_connection: Option<Instant>,
    /// The latest inbound byte in the interval.
    pub last_inbound: Option<Instant>,
    /// Connections open now.
    pub open_connections: u32,
}

impl Observation {
    fn last_arrival(&self) -> Option<Instant> {
        self.last_new_connection.max(self.last_inbound)
    }
}

/// The arrival rate before the drain, as estimated from observations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// λ̂ in arrivals per second: the smaller of the counted and the
    /// binned estimate.
    pub per_second: f64,
    /// Arrivals counted.
    pub arrivals: u64,
    /// Time observed.
    pub observed: Duration,
    /// Mean length of the observation intervals.
    pub mean_interval: Duration,
}

/// Observations while the app runs: the rate and the last arrival the
/// drain starts from. Owned by whoever receives the samples.
#[derive(Debug, Clone, Default)]
pub struct TrafficHistory {
    /// (end, length, arrivals) of each interval in the last [`RATE_HISTORY`].
    intervals: VecDeque<(Instant, Duration, u64)>,
    first: Option<Instant>,
    latest: Option<Instant>,
    last_arrival: Option<Instant>,
    unavailable: Option<String>,
}

impl TrafficHistory {
    /// Takes in one observation (in order).
    pub fn observe(&mut self, observation: &Observation) {
        if let Some(latest) = self.latest {
            let length = observation.at.saturating_duration_since(latest);
            self.intervals
                .push_back((observation.at, length, observation.arrivals));
        }
        self.first.get_or_insert(observation.at);
        self.latest = Some(observation.at);
        self.last_arrival = self.last_arrival.max(observation.last_arrival());
        while let Some((end, _, _)) = self.intervals.front() {
            if observation.at.saturating_duration_since(*end) <= RATE_HISTORY {
                break;
            }
            self.intervals.pop_front();
        }
    }

    /// Observing cannot work here (`why` goes into the report); `auto`
    /// will wait for the ceiling.
    pub fn unavailable(&mut self, why: impl Into<String>) {
        self.unavailable = Some(why.into());
    }

    /// λ̂ over the intervals kept; `None` before two observations.
    pub fn rate(&self) -> Option<Rate> {
        let n = self.intervals.len() as u32;
        let observed: Duration = self.intervals.iter().map(|(_, length, _)| *length).sum();
        if n == 0 || observed.is_zero() {
            return None;
        }
        let arrivals: u64 = self.intervals.iter().map(|(_, _, a)| a).sum();
        let active = self.intervals.iter().filter(|(_, _, a)| *a > 0).count() as f64;
        let mean_interval = observed / n;
        let counted = arrivals as f64 / observed.as_secs_f64();
        let quiet_share = (f64::from(n) - active) / f64::from(n);
        let binned = if quiet_share > 0.0 {
            -quiet_share.ln() / mean_interval.as_secs_f64()
        } else {
            f64::INFINITY
        };
        Some(Rate {
            per_second: counted.min(binned),
            arrivals,
            observed,
            mean_interval,
        })
    }

    /// The drain begins at `at`: freezes the rate and starts judging.
    pub fn begin_drain(&self, at: Instant, delay: PropagationDelay, bounds: AutoBounds) -> Drain {
        let rate = self.rate();
        let window = match delay {
            PropagationDelay::Fixed(_) => None,
            PropagationDelay::Auto => Some(quiet_window(rate, bounds.quiet_window)),
        };
        Drain {
            started: at,
            delay,
            bounds,
            rate,
            window,
            quiet_since: self.last_arrival.or(self.first),
            observed_until: self.latest,
            last_new_connection: None,
            last_inbound: None,
            open_connections: None,
            unavailable: self.unavailable.clone(),
            ended: None,
        }
    }
}

/// The quiet window and where it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QuietWindow {
    /// `--quiet-window`.
    Given(Duration),
    /// From the rate before the drain (possibly raised to its floor).
    FromRate {
        /// The window.
        window: Duration,
        /// The rate it came from.
        rate: Rate,
    },
    /// No arrival before the drain, or nothing observed: no window can be
    /// trusted, the delay runs to the ceiling.
    Unbounded {
        /// What was observed, if anything.
        rate: Option<Rate>,
    },
}

impl QuietWindow {
    /// The window's length; `None` when unbounded.
    pub fn duration(&self) -> Option<Duration> {
        match self {
            QuietWindow::Given(window) | QuietWindow::FromRate { window, .. } => Some(*window),
            QuietWindow::Unbounded { .. } => None,
        }
    }
}

/// W = max(ln(10⁶)/λ̂, mean observation interval, [`QUIET_WINDOW_FLOOR`]),
/// or `given`.
pub fn quiet_window(rate: Option<Rate>, given: Option<Duration>) -> QuietWindow {
    if let Some(window) = given {
        return QuietWindow::Given(window);
    }
    match rate {
        Some(rate) if rate.per_second > 0.0 => {
            let seconds = WINDOW_IN_MEAN_GAPS / rate.per_second;
            // Beyond any ceiling: as good as unbounded, and a finite
            // Duration either way.
            let window = Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX);
            QuietWindow::FromRate {
                window: window.max(rate.mean_interval).max(QUIET_WINDOW_FLOOR),
                rate,
            }
        }
        rate => QuietWindow::Unbounded { rate },
    }
}

/// What the drain machine does next about the delay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Not yet. Ask again after the next observation, and at `until` (a
    /// timer): the only moment the answer changes without one.
    Wait {
        /// The ceiling (auto) or the end of the fixed delay.
        until: Instant,
        /// When the delay would end if nothing more arrives (for logs and
        /// /status); `None` while no window can be trusted.
        earliest: Option<Instant>,
    },
    /// The delay is over: send the stop signal.
    End(DelayEnd),
}

/// How the propagation delay ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelayEnd {
    /// When it ended, counted from the drain's start.
    pub after: Duration,
    /// Why.
    pub reason: EndReason,
}

/// Why the propagation delay ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EndReason {
    /// The fixed delay ran out.
    Fixed,
    /// The ports were quiet for the window.
    Quiet {
        /// How long they had been quiet.
        quiet_for: Duration,
        /// The window that was asked for.
        window: QuietWindow,
    },
    /// The ceiling came first.
    Ceiling {
        /// The window that was asked for (`None`: observation unavailable).
        window: Option<QuietWindow>,
    },
}

/// One drain's evidence from its start: decides the end of the delay
/// (auto) and measures the traffic (always).
#[derive(Debug, Clone)]
pub struct Drain {
    started: Instant,
    delay: PropagationDelay,
    bounds: AutoBounds,
    rate: Option<Rate>,
    window: Option<QuietWindow>,
    /// The last arrival, or the first observation if there was none.
    quiet_since: Option<Instant>,
    observed_until: Option<Instant>,
    last_new_connection: Option<Instant>,
    last_inbound: Option<Instant>,
    open_connections: Option<u32>,
    unavailable: Option<String>,
    ended: Option<DelayEnd>,
}

impl Drain {
    /// Takes in one observation (in order).
    pub fn observe(&mut self, observation: &Observation) {
        let after_start = |t: Option<Instant>| t.filter(|t| *t >= self.started);
        self.last_new_connection = self
            .last_new_connection
            .max(after_start(observation.last_new_connection));
        self.last_inbound = self.last_inbound.max(after_start(observation.last_inbound));
        if let Some(arrival) = observation.last_arrival() {
            self.quiet_since = self.quiet_since.max(Some(arrival));
        }
        self.quiet_since.get_or_insert(observation.at);
        self.observed_until = self.observed_until.max(Some(observation.at));
        self.open_connections = Some(observation.open_connections);
    }

    /// Observing stopped working (`why` goes into the report): `auto`
    /// waits for the ceiling from now on.
    pub fn unavailable(&mut self, why: impl Into<String>) {
        self.unavailable = Some(why.into());
    }

    /// May the delay end at `now`? Once it has ended, the same end again.
    pub fn decide(&mut self, now: Instant) -> Decision {
        if let Some(end) = self.ended {
            return Decision::End(end);
        }
        let after = now.saturating_duration_since(self.started);
        let end = |reason| DelayEnd { after, reason };
        let decision = match self.delay {
            PropagationDelay::Fixed(delay) => match self.started.checked_add(delay) {
                Some(until) if now < until => Decision::Wait {
                    until,
                    earliest: Some(until),
                },
                _ => Decision::End(end(EndReason::Fixed)),
            },
            PropagationDelay::Auto => self.decide_auto(now, after),
        };
        if let Decision::End(end) = decision {
            self.ended = Some(end);
        }
        decision
    }

    fn decide_auto(&self, now: Instant, after: Duration) -> Decision {
        let window = self.window.filter(|_| self.unavailable.is_none());
        let ceiling = DelayEnd {
            after,
            reason: EndReason::Ceiling { window },
        };
        let Some(until) = self.started.checked_add(self.bounds.max) else {
            return Decision::End(ceiling);
        };
        if now >= until {
            return Decision::End(ceiling);
        }
        let floor = self.started.checked_add(self.bounds.min).unwrap_or(until);
        let (Some(window), Some(length)) = (window, window.and_then(|w| w.duration())) else {
            return Decision::Wait {
                until,
                earliest: None,
            };
        };
        let (Some(since), Some(observed)) = (self.quiet_since, self.observed_until) else {
            return Decision::Wait {
                until,
                earliest: None,
            };
        };
        let quiet_for = observed.saturating_duration_since(since);
        if observed >= floor && quiet_for >= length {
            return Decision::End(DelayEnd {
                after,
                reason: EndReason::Quiet { quiet_for, window },
            });
        }
        let earliest = since.checked_add(length).map(|t| t.max(floor).min(until));
        Decision::Wait { until, earliest }
    }

    /// The drain's traffic report, taken when the stop signal goes out.
    pub fn report(&self) -> DrainReport {
        let since_start = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(self.started));
        DrainReport {
            observed: self.unavailable.is_none() && self.observed_until.is_some(),
            unavailable: self.unavailable.clone(),
            last_new_connection: since_start(self.last_new_connection),
            last_inbound: since_start(self.last_inbound),
            open_connections: self.open_connections,
            rate_before: self.rate.map(|r| r.per_second),
            ended: self.ended,
        }
    }
}

/// What every drain reports, fixed or auto: for the log line, /status and
/// /metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct DrainReport {
    /// Whether the traffic was observed at all.
    pub observed: bool,
    /// Why not, if it was not (or stopped being).
    pub unavailable: Option<String>,
    /// The last new connection, counted from the drain's start; `None`:
    /// none came after the drain began.
    pub last_new_connection: Option<Duration>,
    /// The last inbound byte, counted from the drain's start.
    pub last_inbound: Option<Duration>,
    /// Connections open at the latest observation (the stop signal's).
    pub open_connections: Option<u32>,
    /// λ̂ before the drain, arrivals per second.
    pub rate_before: Option<f64>,
    /// How the delay ended, once it has.
    pub ended: Option<DelayEnd>,
}

impl DrainReport {
    /// When the traffic stopped, counted from the drain's start (0: it had
    /// stopped already); `None` if it was not observed. The value for the
    /// "traffic stopped after" histogram.
    pub fn traffic_stopped_after(&self) -> Option<Duration> {
        if !self.observed {
            return None;
        }
        Some(
            self.last_new_connection
                .max(self.last_inbound)
                .unwrap_or(Duration::ZERO),
        )
    }
}

/// Seconds with one decimal, as the log lines say them.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} s", self.0.as_secs_f64())
    }
}

impl fmt::Display for QuietWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuietWindow::Given(window) => write!(f, "window {} (--quiet-window)", Seconds(*window)),
            QuietWindow::FromRate { window, rate } => write!(
                f,
                "window {} from {:.1} arrivals/s before the drain",
                Seconds(*window),
                rate.per_second
            ),
            QuietWindow::Unbounded { rate: Some(rate) } => write!(
                f,
                "no traffic in the {} before the drain: silence proves nothing",
                Seconds(rate.observed)
            ),
            QuietWindow::Unbounded { rate: None } => {
                f.write_str("no traffic observed before the drain")
            }
        }
    }
}

impl fmt::Display for DelayEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            EndReason::Fixed => write!(f, "fixed delay of {}", Seconds(self.after)),
            EndReason::Quiet { quiet_for, window } => write!(
                f,
                "quiet for {} after {}; {window}",
                Seconds(*quiet_for),
                Seconds(self.after)
            ),
            EndReason::Ceiling {
                window: Some(window),
            } => {
                write!(f, "ceiling after {}; {window}", Seconds(self.after))
            }
            EndReason::Ceiling { window: None } => write!(
                f,
                "ceiling after {}; traffic not observable",
                Seconds(self.after)
            ),
        }
    }
}

impl fmt::Display for DrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.observed {
            let why = self.unavailable.as_deref().unwrap_or("no observation");
            return write!(f, "traffic not observed ({why})");
        }
        let moment =
            |t: Option<Duration>| t.map_or("none".to_string(), |t| format!("at {}", Seconds(t)));
        write!(
            f,
            "last new connection {}, last inbound byte {} into the drain; {} connections open",
            moment(self.last_new_connection),
            moment(self.last_inbound),
            self.open_connections.unwrap_or(0)
        )?;
        if let Some(end) = &self.ended {
            write!(f, "; delay ended: {end}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const DRAIN_STEP: Duration = Duration::from_millis(100);

    /// Arrivals at a steady `rate` per second over [from, to) seconds of
    /// drain time (negative: before the drain).
    #[derive(Debug, Clone, Copy)]
    struct Traffic {
        from: f64,
        to: f64,
        rate: f64,
    }

    fn traffic(from: f64, to: f64, rate: f64) -> Traffic {
        Traffic { from, to, rate }
    }

    /// The arrival times (seconds of drain time) of `segments`.
    fn arrivals(segments: &[Traffic]) -> Vec<f64> {
        let mut times = Vec::new();
        for s in segments {
            let mut k = 0.0;
            while s.from + k / s.rate < s.to {
                times.push(s.from + k / s.rate);
                k += 1.0;
            }
        }
        times
    }

    /// Runs a drain on the paused clock: 60 s of observations every
    /// second before it, then every 100 ms from its start; returns the
    /// end and the report.
    async fn run(
        segments: &[Traffic],
        delay: PropagationDelay,
        bounds: AutoBounds,
    ) -> (DelayEnd, DrainReport) {
        let times = arrivals(segments);
        let origin = Instant::now() + Duration::from_secs(60);
        let at = |seconds: f64| {
            if seconds >= 0.0 {
                origin + Duration::from_secs_f64(seconds)
            } else {
                origin - Duration::from_secs_f64(-seconds)
            }
        };
        let mut previous = -60.0;
        let observe = |previous: f64, now: f64| {
            let inside: Vec<f64> = times
                .iter()
                .copied()
                .filter(|t| *t > previous && *t <= now)
                .collect();
            let last = inside.iter().copied().reduce(f64::max).map(at);
            Observation {
                at: at(now),
                arrivals: inside.len() as u64,
                last_new_connection: None,
                last_inbound: last,
                open_connections: 3,
            }
        };
        let mut history = TrafficHistory::default();
        history.observe(&observe(-61.0, -60.0));
        for step in -59..=0 {
            tokio::time::advance(SECOND).await;
            let now = f64::from(step);
            history.observe(&observe(previous, now));
            previous = now;
        }
        assert_eq!(Instant::now(), origin);
        let mut drain = history.begin_drain(Instant::now(), delay, bounds);
        loop {
            if let Decision::End(end) = drain.decide(Instant::now()) {
                return (end, drain.report());
            }
            tokio::time::advance(DRAIN_STEP).await;
            let now = Instant::now().duration_since(origin).as_secs_f64();
            drain.observe(&observe(previous, now));
            previous = now;
            assert!(now < 120.0, "the drain never ended");
        }
    }

    fn seconds(end: &DelayEnd) -> f64 {
        (end.after.as_secs_f64() * 10.0).round() / 10.0
    }

    #[tokio::test(start_paused = true)]
    async fn auto_ends_when_the_traffic_has_really_stopped() {
        let auto = PropagationDelay::Auto;
        let bounds = AutoBounds::default(); // 1 s floor, 20 s ceiling
                                            // (what, traffic, expected end in seconds, ends quiet?)
        let table: &[(&str, Vec<Traffic>, f64, bool)] = &[
            (
                "200/s that stops 3 s into the drain: window 1 s (the observation interval)",
                vec![traffic(-60.0, 3.0, 200.0)],
                4.0,
                true,
            ),
            (
                "200/s that never stops: the ceiling",
                vec![traffic(-60.0, 100.0, 200.0)],
                20.0,
                false,
            ),
            (
                "5/s that stops at 2 s: window 13.8/5 = 2.8 s",
                vec![traffic(-60.0, 2.0, 5.0)],
                4.6,
                true,
            ),
            (
                "sparse, 0.5/s: window 27.6 s beyond the ceiling",
                vec![traffic(-60.0, 5.0, 0.5)],
                20.0,
                false,
            ),
            (
                "no traffic at all: silence proves nothing",
                vec![],
                20.0,
                false,
            ),
            (
                "200/s, a 0.9 s gap at 1 s, a burst at 1.9 s, then silence",
                vec![traffic(-60.0, 1.0, 200.0), traffic(1.9, 2.0, 200.0)],
                3.0,
                true,
            ),
            (
                "traffic gone 10 s before the drain: ends at the floor",
                vec![traffic(-60.0, -10.0, 200.0)],
                1.0,
                true,
            ),
            (
                "bursts of 100 in 1 s every 5 s: the binned rate (0.22/s) wins, the ceiling",
                (0..12)
                    .map(|k| {
                        traffic(
                            -60.0 + 5.0 * f64::from(k),
                            -59.0 + 5.0 * f64::from(k),
                            100.0,
                        )
                    })
                    .collect(),
                20.0,
                false,
            ),
        ];
        for (what, segments, expected, quiet) in table {
            let (end, report) = run(segments, auto, bounds).await;
            assert_eq!(seconds(&end), *expected, "{what}: {end}");
            assert_eq!(
                matches!(end.reason, EndReason::Quiet { .. }),
                *quiet,
                "{what}: {end}"
            );
            assert_eq!(report.ended, Some(end), "{what}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_quiet_window_can_be_given() {
        let bounds = AutoBounds {
            quiet_window: Some(Duration::from_secs(3)),
            ..AutoBounds::default()
        };
        let (end, _) = run(
            &[traffic(-60.0, 2.0, 200.0)],
            PropagationDelay::Auto,
            bounds,
        )
        .await;
        assert_eq!(seconds(&end), 5.0, "{end}");
        assert_eq!(
            end.to_string(),
            "quiet for 3.0 s after 5.0 s; window 3.0 s (--quiet-window)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_delay_is_measured_but_not_shortened() {
        let fixed = PropagationDelay::Fixed(Duration::from_secs(8));
        let (end, report) = run(&[traffic(-60.0, 2.5, 200.0)], fixed, AutoBounds::default()).await;
        assert_eq!((seconds(&end), end.reason), (8.0, EndReason::Fixed));
        let stopped = report.traffic_stopped_after().expect("observed");
        assert!((stopped.as_secs_f64() - 2.5).abs() < 0.01, "{stopped:?}");
        assert_eq!(report.open_connections, Some(3));
        assert!(
            report.to_string().contains("last inbound byte at 2.5 s"),
            "{report}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_reason_names_the_window_and_the_rate() {
        let (end, report) = run(
            &[traffic(-60.0, 3.0, 200.0)],
            PropagationDelay::Auto,
            AutoBounds::default(),
        )
        .await;
        assert_eq!(
            end.to_string(),
            "quiet for 1.0 s after 4.0 s; window 1.0 s from 200.0 arrivals/s before the drain"
        );
        assert!(
            report.rate_before.is_some_and(|r| (r - 200.0).abs() < 1.0),
            "{report:?}"
        );
        let (end, _) = run(&[], PropagationDelay::Auto, AutoBounds::default()).await;
        assert_eq!(
            end.to_string(),
            "ceiling after 20.0 s; no traffic in the 60.0 s before the drain: silence proves nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unobservable_traffic_waits_for_the_ceiling_and_says_why() {
        let mut history = TrafficHistory::default();
        history.unavailable("sock_diag is denied here");
        let start = Instant::now();
        let mut drain = history.begin_drain(start, PropagationDelay::Auto, AutoBounds::default());
        let until = start + DEFAULT_DELAY_MAX;
        assert_eq!(
            drain.decide(start),
            Decision::Wait {
                until,
                earliest: None
            }
        );
        tokio::time::advance(DEFAULT_DELAY_MAX).await;
        let Decision::End(end) = drain.decide(Instant::now()) else {
            panic!("the ceiling must end it");
        };
        assert_eq!(
            end.to_string(),
            "ceiling after 20.0 s; traffic not observable"
        );
        let report = drain.report();
        assert_eq!(report.traffic_stopped_after(), None);
        assert!(
            report.to_string().contains("sock_diag is denied"),
            "{report}"
        );
    }

    #[test]
    fn quiet_is_proven_only_by_an_observation() {
        let start = Instant::now();
        let mut history = TrafficHistory::default();
        for k in 0..=60u64 {
            history.observe(&Observation {
                at: start + Duration::from_secs(k),
                arrivals: 200,
                last_new_connection: None,
                last_inbound: Some(start + Duration::from_secs(k)),
                open_connections: 1,
            });
        }
        let drain_start = start + Duration::from_secs(60);
        let mut drain =
            history.begin_drain(drain_start, PropagationDelay::Auto, AutoBounds::default());
        // No observation since the drain began: 5 s later, still waiting.
        let later = drain_start + Duration::from_secs(5);
        assert_eq!(
            drain.decide(later),
            Decision::Wait {
                until: drain_start + DEFAULT_DELAY_MAX,
                earliest: Some(drain_start + DEFAULT_DELAY_MIN),
            }
        );
        drain.observe(&Observation {
            at: later,
            arrivals: 0,
            last_new_connection: None,
            last_inbound: None,
            open_connections: 1,
        });
        assert!(matches!(
            drain.decide(later),
            Decision::End(DelayEnd {
                reason: EndReason::Quiet { .. },
                ..
            })
        ));
    }

    #[test]
    fn propagation_delay_parses_auto_or_a_duration() {
        let table = [
            ("auto", Some(PropagationDelay::Auto)),
            ("AUTO", Some(PropagationDelay::Auto)),
            ("5s", Some(PropagationDelay::Fixed(Duration::from_secs(5)))),
            (
                "1m30s",
                Some(PropagationDelay::Fixed(Duration::from_secs(90))),
            ),
            (
                "500ms",
                Some(PropagationDelay::Fixed(Duration::from_millis(500))),
            ),
            ("0s", Some(PropagationDelay::Fixed(Duration::ZERO))),
            ("5", None),
            ("automatic", None),
            ("", None),
        ];
        for (input, expected) in table {
            assert_eq!(
                input.parse::<PropagationDelay>().ok(),
                expected,
                "{input:?}"
            );
        }
        let error = "soon"
            .parse::<PropagationDelay>()
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`auto`") && error.contains("1m30s"),
            "{error}"
        );
        assert_eq!(
            PropagationDelay::Fixed(Duration::from_secs(90)).to_string(),
            "1m 30s"
        );
    }

    #[test]
    fn auto_bounds_are_checked() {
        assert_eq!(AutoBounds::default().validate(), Ok(()));
        let inverted = AutoBounds {
            min: Duration::from_secs(30),
            max: Duration::from_secs(10),
            quiet_window: None,
        };
        assert!(matches!(
            inverted.validate(),
            Err(AutoBoundsError::FloorAboveCeiling { .. })
        ));
        let zero = AutoBounds {
            quiet_window: Some(Duration::ZERO),
            ..AutoBounds::default()
        };
        assert_eq!(zero.validate(), Err(AutoBoundsError::ZeroWindow));
    }

    #[test]
    fn the_window_follows_the_formula_and_its_floors() {
        let rate = |per_second: f64, mean_interval: Duration| Rate {
            per_second,
            arrivals: 0,
            observed: RATE_HISTORY,
            mean_interval,
        };
        let fast = Duration::from_millis(100);
        let table = [
            (rate(1.0, fast), Some(13.8)),
            (rate(10.0, fast), Some(1.4)),
            (rate(1000.0, fast), Some(0.5)),   // QUIET_WINDOW_FLOOR
            (rate(1000.0, SECOND), Some(1.0)), // the observation interval
            (rate(0.0, SECOND), None),
        ];
        for (rate, expected) in table {
            let window = quiet_window(Some(rate), None).duration();
            let rounded = window.map(|w| (w.as_secs_f64() * 10.0).round() / 10.0);
            assert_eq!(rounded, expected, "{rate:?}");
        }
        assert_eq!(
            quiet_window(None, None),
            QuietWindow::Unbounded { rate: None }
        );
    }
}
