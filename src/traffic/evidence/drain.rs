//! One drain's evidence: whether the propagation delay may end now, and
//! the traffic report every drain gives.

use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::{AutoBounds, Evidence, PropagationDelay, QuietWindow, Rate, Seconds};
use crate::lifecycle::StopCause;

/// What the drain machine does next about the delay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Not yet: ask again after the next sample.
    Wait {
        /// When the delay could end if nothing more arrives (the end of a
        /// fixed delay; auto: quiet for the window since the last
        /// arrival, within the floor and the ceiling): the next sample is
        /// due then. `None` while no window can be trusted.
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
    /// `auto`'s quiet, when it came earlier and the delay was held past it
    /// for the endpoint's removal (Kubernetes API): without it a reader
    /// would take the quiet's moment for the delay's end.
    pub held: Option<HeldQuiet>,
}

/// `auto`'s quiet that did not end the delay: it was held for the
/// endpoint's removal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldQuiet {
    /// When the ports had been quiet for the window, from the drain's start.
    pub after: Duration,
    /// How long they had been quiet then.
    pub quiet_for: Duration,
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
    /// `auto`'s quiet was held (see [`DelayEnd::held`]) until the
    /// endpoint's removal was seen, or until the watch failed.
    Endpoint {
        /// The removal was seen (else the watch failed).
        seen: bool,
        /// The window that was asked for.
        window: Option<QuietWindow>,
    },
    /// A deletion's grace shorter than the delay plus the kill margin cut
    /// the delay (Kubernetes API).
    Cut {
        /// The delay it was cut to.
        to: Duration,
        /// The deletion's grace.
        grace: Duration,
        /// `auto`: the window that was asked for.
        window: Option<QuietWindow>,
    },
}

impl EndReason {
    /// A short name, for the metrics and `/status`.
    pub fn name(&self) -> &'static str {
        match self {
            EndReason::Fixed => "fixed",
            EndReason::Quiet { .. } => "quiet",
            EndReason::Ceiling { .. } => "ceiling",
            EndReason::Endpoint { .. } => "endpoint",
            EndReason::Cut { .. } => "cut",
        }
    }
}

/// One drain's evidence from its start: decides the end of the delay
/// (auto) and measures the traffic (always).
#[derive(Debug, Clone)]
pub struct DrainEvidence {
    pub(super) started: Instant,
    pub(super) delay: PropagationDelay,
    pub(super) bounds: AutoBounds,
    pub(super) rate: Option<Rate>,
    pub(super) window: Option<QuietWindow>,
    /// The last arrival, or the first observation if there was none.
    pub(super) quiet_since: Option<Instant>,
    pub(super) observed_until: Option<Instant>,
    pub(super) last_new_connection: Option<Instant>,
    pub(super) last_inbound: Option<Instant>,
    pub(super) open_connections: Option<u32>,
    pub(super) unavailable: Option<String>,
    pub(super) ended: Option<DelayEnd>,
}

impl DrainEvidence {
    /// When the drain began.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Takes in one observation (in order).
    pub fn observe(&mut self, observation: &Evidence) {
        let after_start = |t: Option<Instant>| t.filter(|t| *t >= self.started);
        self.last_new_connection = self
            .last_new_connection
            .max(after_start(observation.last_new_connection));
        self.last_inbound = self.last_inbound.max(after_start(observation.last_inbound));
        self.quiet_since = self.quiet_since.max(observation.last_arrival());
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
        let end = |reason| DelayEnd {
            after,
            reason,
            held: None,
        };
        let decision = match self.delay {
            PropagationDelay::Fixed(delay) => match self.started.checked_add(delay) {
                Some(until) if now < until => Decision::Wait {
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
        let window = self.window();
        let ceiling = DelayEnd {
            after,
            reason: EndReason::Ceiling { window },
            held: None,
        };
        let Some(until) = self.started.checked_add(self.bounds.max) else {
            return Decision::End(ceiling);
        };
        if now >= until {
            return Decision::End(ceiling);
        }
        let floor = self.started.checked_add(self.bounds.min).unwrap_or(until);
        let (Some(window), Some(length), Some(since), Some(observed)) = (
            window,
            window.and_then(|w| w.duration()),
            self.quiet_since,
            self.observed_until,
        ) else {
            return Decision::Wait { earliest: None };
        };
        let quiet_for = observed.saturating_duration_since(since);
        if observed >= floor && quiet_for >= length {
            return Decision::End(DelayEnd {
                after,
                reason: EndReason::Quiet { quiet_for, window },
                held: None,
            });
        }
        let earliest = since.checked_add(length).map(|t| t.max(floor).min(until));
        Decision::Wait { earliest }
    }

    /// The window `auto` asked for, while observing works.
    fn window(&self) -> Option<QuietWindow> {
        self.window.filter(|_| self.unavailable.is_none())
    }

    /// The drain machine ended the delay at `now` for `cause`: the end the
    /// report gives. The traffic's own verdict stands when it is the cause
    /// (quiet, the fixed delay, the ceiling); an earlier quiet that the
    /// machine held for the endpoint's removal is kept beside the real end.
    pub fn stop(&mut self, now: Instant, cause: StopCause) -> Option<DelayEnd> {
        let held = match self.ended {
            Some(DelayEnd {
                after,
                reason: EndReason::Quiet { quiet_for, .. },
                ..
            }) if cause != StopCause::Quiet => Some(HeldQuiet { after, quiet_for }),
            _ => None,
        };
        let after = now.saturating_duration_since(self.started);
        let window = self.window();
        let reason = match cause {
            StopCause::Quiet => return self.decide_once(now),
            StopCause::Timer => {
                self.ended = None;
                let end = self.decide_once(now)?;
                end.reason
            }
            StopCause::Endpoint { seen } => EndReason::Endpoint { seen, window },
            StopCause::Cut { to, grace } => EndReason::Cut { to, grace, window },
        };
        let end = DelayEnd {
            after,
            reason,
            held,
        };
        self.ended = Some(end);
        Some(end)
    }

    /// [`DrainEvidence::decide`], the end if it came.
    fn decide_once(&mut self, now: Instant) -> Option<DelayEnd> {
        match self.decide(now) {
            Decision::End(end) => Some(end),
            Decision::Wait { .. } => None,
        }
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

    /// The report as `/status` shows it (`serde_json::json!`, like
    /// `status.rs`: no serde derives in the binary). Seconds as numbers,
    /// `null` where there is nothing to say.
    pub fn to_json(&self) -> Value {
        let seconds = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        let ended = self.ended.map(|end| {
            let length = |w: Option<QuietWindow>| w.and_then(|w| w.duration());
            let (quiet_for, window) = match end.reason {
                EndReason::Fixed => (None, None),
                EndReason::Quiet { quiet_for, window } => (Some(quiet_for), window.duration()),
                EndReason::Ceiling { window }
                | EndReason::Endpoint { window, .. }
                | EndReason::Cut { window, .. } => (None, length(window)),
            };
            let (cut_to, deletion_grace) = match end.reason {
                EndReason::Cut { to, grace, .. } => (Some(to), Some(grace)),
                _ => (None, None),
            };
            let held = end.held.map(|held| {
                json!({
                    "after_seconds": held.after.as_secs_f64(),
                    "quiet_for_seconds": held.quiet_for.as_secs_f64(),
                })
            });
            json!({
                "after_seconds": end.after.as_secs_f64(),
                "reason": end.reason.name(),
                "quiet_for_seconds": seconds(quiet_for),
                "window_seconds": seconds(window),
                "quiet_held": held,
                "cut_to_seconds": seconds(cut_to),
                "deletion_grace_seconds": seconds(deletion_grace),
                "text": end.to_string(),
            })
        });
        json!({
            "observed": self.observed,
            "unavailable": self.unavailable,
            "last_new_connection_seconds": seconds(self.last_new_connection),
            "last_inbound_seconds": seconds(self.last_inbound),
            "traffic_stopped_after_seconds": seconds(self.traffic_stopped_after()),
            "open_connections": self.open_connections,
            "rate_before_per_second": self.rate_before,
            "delay_end": ended,
        })
    }
}

impl fmt::Display for DelayEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let after = Seconds(self.after);
        let window = match &self.reason {
            EndReason::Fixed => return write!(f, "fixed delay of {after}"),
            EndReason::Quiet { quiet_for, window } => {
                return write!(
                    f,
                    "quiet for {} after {after}; {window}",
                    Seconds(*quiet_for)
                )
            }
            EndReason::Ceiling { window } => {
                write!(f, "ceiling after {after}")?;
                window
            }
            EndReason::Endpoint { seen: true, window } => {
                write!(f, "endpoint's removal after {after}")?;
                window
            }
            EndReason::Endpoint {
                seen: false,
                window,
            } => {
                write!(f, "endpoint watch's failure after {after}")?;
                window
            }
            EndReason::Cut { to, grace, window } => {
                write!(
                    f,
                    "cut to {} by the deletion's grace {}",
                    Seconds(*to),
                    Seconds(*grace)
                )?;
                // The API's answer came after the cut delay had passed.
                if crate::durations::secs(*to) != crate::durations::secs(self.after) {
                    write!(f, ", ended after {after}")?;
                }
                window
            }
        };
        if let Some(held) = &self.held {
            write!(
                f,
                ", held since quiet for {} after {}",
                Seconds(held.quiet_for),
                Seconds(held.after)
            )?;
            if !matches!(self.reason, EndReason::Endpoint { .. }) {
                f.write_str(" (the endpoint's removal not seen)")?;
            }
        }
        match window {
            Some(window) => write!(f, "; {window}"),
            None if matches!(self.reason, EndReason::Ceiling { .. }) => {
                f.write_str("; traffic not observable")
            }
            None => Ok(()),
        }
    }
}

impl fmt::Display for DrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.observed {
            let why = self.unavailable.as_deref().unwrap_or("no observation");
            write!(f, "traffic not observed ({why})")?;
            if let Some(end) = &self.ended {
                write!(f, "; delay ended: {end}")?;
            }
            return Ok(());
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
    use super::super::TrafficHistory;
    use super::*;

    /// `auto`'s bounds as drainit's flags default them (a 1 s floor, a
    /// 20 s ceiling), read from the flags so they are stated once.
    fn default_bounds() -> AutoBounds {
        use clap::Parser as _;
        crate::cli::Cli::try_parse_from(["drainit", "app"])
            .expect("the defaults parse")
            .settings
            .auto_bounds()
    }

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
            Evidence {
                at: at(now),
                arrivals: inside.len() as u64,
                last_new_connection: None,
                last_inbound: last,
                last_close_unseen: None,
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
        let bounds = default_bounds(); // 1 s floor, 20 s ceiling
                                       // (what, traffic, expected end in seconds, ends quiet?)
        let table: &[(&str, Vec<Traffic>, f64, bool)] = &[
            (
                "200/s that stops 3 s into the drain: window 1 s (the observation interval)",
                vec![traffic(-60.0, 3.0, 200.0)],
                4.0,
                true,
            ),
            (
                "a new pod: idle for 50 s (the balancer's checks rising), then 200/s that stops 3 s into the drain: the idle start does not lower the rate",
                vec![traffic(-10.0, 3.0, 200.0)],
                4.0,
                true,
            ),
            (
                "one early request, 4 s of quiet (the balancer's checks rising), then 200/s for 15 s that stops 3 s into the drain: the old quiet is out of the rate's history",
                vec![traffic(-20.0, -19.9, 1.0), traffic(-15.0, 3.0, 200.0)],
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
                "5/s that stops at 2 s: window 13.8/5 = 2.8s",
                vec![traffic(-60.0, 2.0, 5.0)],
                4.6,
                true,
            ),
            (
                "sparse, 0.5/s: window 27.6s beyond the ceiling",
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
                "200/s, a 0.9s gap at 1 s, a burst at 1.9s, then silence",
                vec![traffic(-60.0, 1.0, 200.0), traffic(1.9, 2.0, 200.0)],
                3.0,
                true,
            ),
            (
                "traffic gone 10 s before the drain: out of the rate's history, so silence proves nothing (the ceiling)",
                vec![traffic(-60.0, -10.0, 200.0)],
                20.0,
                false,
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
            ..default_bounds()
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
            "quiet for 3.0s after 5.0s; window 3.0s (--quiet-window)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_delay_is_measured_but_not_shortened() {
        let fixed = PropagationDelay::Fixed(Duration::from_secs(8));
        let (end, report) = run(&[traffic(-60.0, 2.5, 200.0)], fixed, default_bounds()).await;
        assert_eq!((seconds(&end), end.reason), (8.0, EndReason::Fixed));
        let stopped = report.traffic_stopped_after().expect("observed");
        assert!((stopped.as_secs_f64() - 2.5).abs() < 0.01, "{stopped:?}");
        assert_eq!(report.open_connections, Some(3));
        assert!(
            report.to_string().contains("last inbound byte at 2.5s"),
            "{report}"
        );
        let json = report.to_json();
        assert_eq!(json["delay_end"]["reason"], "fixed", "{json}");
        assert_eq!(json["open_connections"], 3, "{json}");
        assert_eq!(
            json["last_new_connection_seconds"],
            serde_json::Value::Null,
            "{json}"
        );
        let stopped = json["traffic_stopped_after_seconds"]
            .as_f64()
            .unwrap_or(-1.0);
        assert!((stopped - 2.5).abs() < 0.01, "{json}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_reason_names_the_window_and_the_rate() {
        let (end, report) = run(
            &[traffic(-60.0, 3.0, 200.0)],
            PropagationDelay::Auto,
            default_bounds(),
        )
        .await;
        assert_eq!(
            end.to_string(),
            "quiet for 1.0s after 4.0s; window 1.0s from 200.0 arrivals/s before the drain"
        );
        assert!(
            report.rate_before.is_some_and(|r| (r - 200.0).abs() < 1.0),
            "{report:?}"
        );
        let (end, _) = run(&[], PropagationDelay::Auto, default_bounds()).await;
        assert_eq!(
            end.to_string(),
            "ceiling after 20.0s; no traffic in the 11.0s before the drain: silence proves nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unobservable_traffic_waits_for_the_ceiling_and_says_why() {
        let mut history = TrafficHistory::default();
        history.unavailable("sock_diag is denied here");
        let start = Instant::now();
        let mut drain = history.begin_drain(start, PropagationDelay::Auto, default_bounds());
        assert!(matches!(drain.decide(start), Decision::Wait { .. }));
        tokio::time::advance(default_bounds().max).await;
        let Decision::End(end) = drain.decide(Instant::now()) else {
            panic!("the ceiling must end it");
        };
        assert_eq!(
            end.to_string(),
            "ceiling after 20.0s; traffic not observable"
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
        let (drain_start, mut drain) = drain_after_busy_minute(PropagationDelay::Auto);
        // No observation since the drain began: 5 s later, still waiting.
        let later = drain_start + Duration::from_secs(5);
        assert!(matches!(drain.decide(later), Decision::Wait { .. }));
        drain.observe(&quiet_observation(later));
        assert!(matches!(
            drain.decide(later),
            Decision::End(DelayEnd {
                reason: EndReason::Quiet { .. },
                ..
            })
        ));
    }

    #[test]
    fn a_connection_closed_unseen_restarts_the_quiet() {
        let second = Duration::from_secs(1);
        let (drain_start, mut drain) = drain_after_busy_minute(PropagationDelay::Auto);
        let observation = |at: Instant, close: Option<Instant>| Evidence {
            at,
            arrivals: 0,
            last_new_connection: None,
            last_inbound: None,
            last_close_unseen: close,
            open_connections: 0,
        };
        // 1.5s in: a connection closed unseen; the 1 s window restarts.
        let closed = drain_start + Duration::from_millis(1500);
        drain.observe(&observation(closed, Some(closed)));
        let almost = closed + Duration::from_millis(900);
        drain.observe(&observation(almost, None));
        assert!(matches!(drain.decide(almost), Decision::Wait { .. }));
        let after = closed + second;
        drain.observe(&observation(after, None));
        assert!(matches!(
            drain.decide(after),
            Decision::End(DelayEnd {
                reason: EndReason::Quiet { .. },
                ..
            })
        ));
    }

    /// A drain at `start` + 60 s after a minute of 200 arrivals/s (a 1 s
    /// window), the ports quiet from the drain's start.
    fn drain_after_busy_minute(delay: PropagationDelay) -> (Instant, DrainEvidence) {
        let start = Instant::now();
        let mut history = TrafficHistory::default();
        for k in 0..=60u64 {
            history.observe(&Evidence {
                at: start + Duration::from_secs(k),
                arrivals: 200,
                last_new_connection: None,
                last_inbound: Some(start + Duration::from_secs(k)),
                last_close_unseen: None,
                open_connections: 1,
            });
        }
        let drain_start = start + Duration::from_secs(60);
        let drain = history.begin_drain(drain_start, delay, default_bounds());
        (drain_start, drain)
    }

    fn quiet_observation(at: Instant) -> Evidence {
        Evidence {
            at,
            arrivals: 0,
            last_new_connection: None,
            last_inbound: None,
            last_close_unseen: None,
            open_connections: 1,
        }
    }

    /// `auto`'s quiet at 1.5 s, held by the drain machine for the
    /// endpoint's removal at 4.6 s: the report says the removal ended the
    /// delay, and when the quiet came; held to the ceiling, that the
    /// ceiling ended it.
    #[test]
    fn a_quiet_held_for_the_endpoint_says_what_ended_the_delay() {
        let at = |start: Instant, millis: u64| start + Duration::from_millis(millis);
        let (start, mut drain) = drain_after_busy_minute(PropagationDelay::Auto);
        drain.observe(&quiet_observation(at(start, 1500)));
        assert!(matches!(
            drain.decide(at(start, 1500)),
            Decision::End(DelayEnd {
                reason: EndReason::Quiet { .. },
                ..
            })
        ));
        drain.observe(&quiet_observation(at(start, 4500)));
        let end = drain
            .stop(at(start, 4600), StopCause::Endpoint { seen: true })
            .expect("ended");
        assert_eq!(
            end.to_string(),
            "endpoint's removal after 4.6s, held since quiet for 1.5s after 1.5s; window 1.0s from 200.0 arrivals/s before the drain"
        );
        let report = drain.report();
        assert!(
            report
                .to_string()
                .ends_with("; delay ended: endpoint's removal after 4.6s, held since quiet for 1.5s after 1.5s; window 1.0s from 200.0 arrivals/s before the drain"),
            "{report}"
        );
        let json = report.to_json();
        assert_eq!(json["delay_end"]["reason"], "endpoint", "{json}");
        assert_eq!(json["delay_end"]["after_seconds"], 4.6, "{json}");
        assert_eq!(
            json["delay_end"]["quiet_held"]["after_seconds"], 1.5,
            "{json}"
        );

        let (start, mut drain) = drain_after_busy_minute(PropagationDelay::Auto);
        drain.observe(&quiet_observation(at(start, 1500)));
        drain.decide(at(start, 1500));
        let end = drain
            .stop(at(start, 20_000), StopCause::Timer)
            .expect("ended");
        assert_eq!(
            end.to_string(),
            "ceiling after 20.0s, held since quiet for 1.5s after 1.5s (the endpoint's removal not seen); window 1.0s from 200.0 arrivals/s before the drain"
        );
        assert_eq!(end.reason.name(), "ceiling");

        // Not held: the quiet is the end, as the machine was told.
        let (start, mut drain) = drain_after_busy_minute(PropagationDelay::Auto);
        drain.observe(&quiet_observation(at(start, 1500)));
        drain.decide(at(start, 1500));
        let end = drain
            .stop(at(start, 1500), StopCause::Quiet)
            .expect("ended");
        assert_eq!((end.reason.name(), end.held), ("quiet", None));
    }

    /// A deletion's grace cut the delay: the report says so (a fixed delay
    /// and `auto` alike), and when the cut came late, when it ended.
    #[test]
    fn a_delay_cut_by_the_deletion_says_so() {
        let at = |start: Instant, millis: u64| start + Duration::from_millis(millis);
        let cut = StopCause::Cut {
            to: Duration::from_secs(2),
            grace: Duration::from_secs(5),
        };
        let (start, mut drain) = drain_after_busy_minute(PropagationDelay::Fixed(8 * SECOND));
        drain.observe(&quiet_observation(at(start, 1900)));
        let end = drain.stop(at(start, 2000), cut).expect("ended");
        assert_eq!(end.to_string(), "cut to 2.0s by the deletion's grace 5.0s");
        let report = drain.report();
        assert!(
            report
                .to_string()
                .ends_with("; delay ended: cut to 2.0s by the deletion's grace 5.0s"),
            "{report}"
        );
        let json = report.to_json();
        assert_eq!(json["delay_end"]["reason"], "cut", "{json}");
        assert_eq!(json["delay_end"]["cut_to_seconds"], 2.0, "{json}");
        assert_eq!(json["delay_end"]["deletion_grace_seconds"], 5.0, "{json}");

        let (start, mut drain) = drain_after_busy_minute(PropagationDelay::Auto);
        let end = drain.stop(at(start, 3100), cut).expect("ended");
        assert_eq!(
            end.to_string(),
            "cut to 2.0s by the deletion's grace 5.0s, ended after 3.1s; window 1.0s from 200.0 arrivals/s before the drain"
        );
    }
}
