//! Drain on evidence (pure, no I/O): when `--propagation-delay auto` ends, and what
//! every drain reports about the traffic it saw. Pure logic: times and
//! observations come in as arguments, nothing here reads a clock.
//!
//! **Arrivals.** An observation ([`Evidence`], one per socket dump)
//! counts the arrivals since the previous one, connection by connection
//! (`traffic::Sample::arrivals`): a connection that received Δb bytes in
//! Δs data segments brought max(1, Δs − ⌊Δb / MSS⌋) requests (a request
//! ends in a segment shorter than the peer's MSS, so full segments are
//! continuations: never more than the requests when each is written in
//! one go); a new connection that carried no data is one arrival (a bare
//! connect). A keep-alive client shows up only this way, as segments on
//! a connection that stays. An interval between two observations is
//! *active* when it had at least one arrival.
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
//! connection, no inbound byte, no connection that closed before a dump
//! could see its last bytes — for W, and at the ceiling
//! (`--propagation-delay-max`) at the latest. Quiet is only ever proven by
//! an observation: time that no dump has covered yet is not quiet.
//!
//! **Wiring.** [`TrafficWatch`](super::TrafficWatch) feeds this module
//! for the event loop: every sample's [`Evidence`] goes to
//! [`TrafficHistory::observe`] before the drain and to
//! [`DrainEvidence::observe`] after [`TrafficHistory::begin_drain`]; each
//! sample then asks [`DrainEvidence::decide`], whose [`Decision::Wait`]
//! `earliest` is when the next sample is due (`Sampler::sample_by`), and
//! the stop signal goes out on [`Decision::End`] with
//! [`DrainEvidence::report`]. A permanent traffic error goes to
//! `unavailable` on the history or the drain: `auto` then waits for the
//! ceiling.

mod drain;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

pub use self::drain::{Decision, DelayEnd, DrainEvidence, DrainReport, EndReason};
use crate::settings::{AutoBounds, PropagationDelay};

/// `ln(10⁶)`: a quiet window of this many mean inter-arrival times is
/// shown by a Poisson stream with probability 10⁻⁶.
pub const WINDOW_IN_MEAN_GAPS: f64 = 13.815_510_557_964_274;

/// The shortest quiet window: five drain samples (`traffic::DRAIN_INTERVAL`),
/// well above the kernel's receive stamps' resolution (1–10 ms).
pub const QUIET_WINDOW_FLOOR: Duration = Duration::from_millis(500);

/// How much of the time before the drain the rate is taken over: the last
/// 10 s, ten samples at the running pace. Short on purpose: one empty
/// interval among n caps the binned estimate at ln(n)/Δ, so a quiet
/// stretch long before the drain (the balancer's health checks still
/// rising after a first request, a lull at night) would otherwise make a
/// 200/s stream look like 3/s for a minute; long enough for a Poisson
/// stream of 5/s to show 50 arrivals. A burst that is older than this, or
/// traffic that stopped before it, reads as little or none: the delay then
/// runs longer, never shorter.
pub const RATE_HISTORY: Duration = Duration::from_secs(10);

/// What one observation of the watched ports showed since the previous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    /// When it was taken.
    pub at: Instant,
    /// Arrivals since the previous observation (0 in the first).
    pub arrivals: u64,
    /// The latest new connection in the interval.
    pub last_new_connection: Option<Instant>,
    /// The latest inbound byte in the interval.
    pub last_inbound: Option<Instant>,
    /// When a connection was found closed before its last bytes could be
    /// seen: possible traffic, so the quiet starts after it.
    pub last_close_unseen: Option<Instant>,
    /// Connections open now.
    pub open_connections: u32,
}

impl Evidence {
    /// The latest arrival (new connection, inbound byte, or connection
    /// closed unseen) in this observation's interval, if there was one.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_new_connection
            .max(self.last_inbound)
            .max(self.last_close_unseen)
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
    pub fn observe(&mut self, observation: &Evidence) {
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

    /// λ̂ over the intervals kept from the first one with an arrival on:
    /// the quiet before a new pod got its first request (the balancer's
    /// health checks still rising) says nothing about the stream it got
    /// later. `None` before two observations.
    pub fn rate(&self) -> Option<Rate> {
        let intervals = || self.intervals.iter().skip_while(|(_, _, a)| *a == 0);
        let n = intervals().count() as u32;
        let observed: Duration = intervals().map(|(_, length, _)| *length).sum();
        if n == 0 || observed.is_zero() {
            return self.idle_rate();
        }
        let arrivals: u64 = intervals().map(|(_, _, a)| a).sum();
        let active = intervals().filter(|(_, _, a)| *a > 0).count() as f64;
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

    /// No arrival in the history: a rate of zero over all of it (`None`
    /// before two observations).
    fn idle_rate(&self) -> Option<Rate> {
        let n = self.intervals.len() as u32;
        let observed: Duration = self.intervals.iter().map(|(_, length, _)| *length).sum();
        (n > 0 && !observed.is_zero()).then(|| Rate {
            per_second: 0.0,
            arrivals: 0,
            observed,
            mean_interval: observed / n,
        })
    }

    /// The drain begins at `at`: freezes the rate and starts judging.
    pub fn begin_drain(
        &self,
        at: Instant,
        delay: PropagationDelay,
        bounds: AutoBounds,
    ) -> DrainEvidence {
        let rate = self.rate();
        let window = match delay {
            PropagationDelay::Fixed(_) => None,
            PropagationDelay::Auto => Some(quiet_window(rate, bounds.quiet_window)),
        };
        DrainEvidence {
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

/// A duration in the drain's traffic report, in the one form every log
/// line uses ([`crate::durations::secs`]: `5.0s`).
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::durations::secs(self.0))
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

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
