//! `/metrics`: the drain story as Prometheus counters and gauges.
//!
//! Counters are bumped where things happen (the reaper, the forwarder,
//! the lifecycle); gauges derived from the lifecycle's [`Status`] are set
//! at scrape time, so nothing ticks while nobody asks.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::lifecycle::{Phase, Status, Trigger};
use crate::signals::Sig;
use crate::traffic::DrainReport;

type Labels = [(&'static str, String); 1];

/// Every metric drainit exports, registered once at startup.
pub struct Metrics {
    registry: Registry,
    phase: Family<Labels, Gauge>,
    phase_seconds: Gauge<f64, AtomicU64>,
    drain_seconds: Gauge<f64, AtomicU64>,
    ready: Gauge,
    exit_code: Gauge,
    drains: Family<Labels, Counter>,
    signals_forwarded: Family<Labels, Counter>,
    /// Processes reaped by `waitpid`, the main child included.
    pub zombies_reaped: Counter,
    /// SIGKILLs at the drain deadline.
    pub forced_kills: Counter,
    traffic_stopped_after: Histogram,
    delay_ends: Family<Labels, Counter>,
    open_connections_at_stop: Gauge,
    deadline_seconds: Gauge<f64, AtomicU64>,
    deadline_source: Family<Labels, Gauge>,
    endpoint_removed_after: Gauge<f64, AtomicU64>,
}

/// Buckets of "traffic stopped after", in seconds: from well inside
/// kube-proxy's reaction to an NLB's minutes.
const TRAFFIC_STOPPED_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0,
];

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric under the `drainit_` prefix.
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            phase: Family::default(),
            phase_seconds: Gauge::default(),
            drain_seconds: Gauge::default(),
            ready: Gauge::default(),
            exit_code: Gauge::default(),
            drains: Family::default(),
            signals_forwarded: Family::default(),
            zombies_reaped: Counter::default(),
            forced_kills: Counter::default(),
            traffic_stopped_after: Histogram::new(TRAFFIC_STOPPED_BUCKETS),
            delay_ends: Family::default(),
            open_connections_at_stop: Gauge::default(),
            deadline_seconds: Gauge::default(),
            deadline_source: Family::default(),
            endpoint_removed_after: Gauge::default(),
            registry: Registry::with_prefix("drainit"),
        };
        // Disjoint fields: the registry is borrowed mutably, the handles not.
        let registry = &mut metrics.registry;
        registry.register(
            "phase",
            "1 for the current lifecycle phase, 0 for the others",
            metrics.phase.clone(),
        );
        registry.register(
            "phase_seconds",
            "Seconds spent in the current phase",
            metrics.phase_seconds.clone(),
        );
        registry.register(
            "drain_seconds",
            "Seconds since the drain started (0 before)",
            metrics.drain_seconds.clone(),
        );
        registry.register(
            "ready",
            "What /ready answers: 1 for 200, 0 for 503",
            metrics.ready.clone(),
        );
        registry.register(
            "app_exit_code",
            "The app's exit code as drainit passes it on (-1 while it runs)",
            metrics.exit_code.clone(),
        );
        registry.register(
            "drains",
            "Drains started, by the trigger that started them",
            metrics.drains.clone(),
        );
        registry.register(
            "signals_forwarded",
            "Signals forwarded to the app, by signal",
            metrics.signals_forwarded.clone(),
        );
        registry.register(
            "zombies_reaped",
            "Child processes reaped",
            metrics.zombies_reaped.clone(),
        );
        registry.register(
            "traffic_stopped_after_seconds",
            "When the app's traffic stopped, counted from the drain's start (observed drains only)",
            metrics.traffic_stopped_after.clone(),
        );
        registry.register(
            "propagation_delay_ends",
            "Propagation delays ended, by why: fixed, quiet (auto), ceiling (auto), endpoint (auto's quiet held for the endpoint's removal) or cut (by a deletion's shorter grace)",
            metrics.delay_ends.clone(),
        );
        registry.register(
            "open_connections_at_stop",
            "Connections open on the app's ports when the stop signal went out (last drain)",
            metrics.open_connections_at_stop.clone(),
        );
        registry.register(
            "drain_deadline_seconds",
            "The grace the drain obeys, from its start: --grace-period, or a shorter grace of the pod's deletion (Kubernetes API)",
            metrics.deadline_seconds.clone(),
        );
        registry.register(
            "drain_deadline_source",
            "1 for where the obeyed deadline comes from: grace_period, grace_period_no_deletion, grace_period_deletion_longer or deletion",
            metrics.deadline_source.clone(),
        );
        registry.register(
            "endpoint_removed_after_seconds",
            "When this pod's endpoint left its EndpointSlices (gone or not serving), from the drain's start; -1 until seen (Kubernetes API)",
            metrics.endpoint_removed_after.clone(),
        );
        registry.register(
            "forced_kills",
            "Drains that hit the deadline and SIGKILLed the app",
            metrics.forced_kills.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "drainit's own log lines dropped: stderr was full, blocked or gone",
            LogLinesDropped,
        );
        metrics
    }

    /// Records what a drain's traffic showed when the stop signal went out.
    pub fn record_drain_report(&self, report: &DrainReport) {
        if let Some(after) = report.traffic_stopped_after() {
            self.traffic_stopped_after.observe(after.as_secs_f64());
        }
        if let Some(end) = &report.ended {
            self.delay_ends
                .get_or_create(&[("reason", end.reason.name().to_string())])
                .inc();
        }
        if let Some(open) = report.open_connections {
            self.open_connections_at_stop.set(i64::from(open));
        }
    }

    /// Counts a drain, labelled by its trigger.
    pub fn record_drain(&self, trigger: Trigger) {
        self.drains
            .get_or_create(&[("trigger", trigger.to_string())])
            .inc();
    }

    /// Counts a forwarded signal.
    pub fn record_forward(&self, sig: Sig) {
        self.signals_forwarded
            .get_or_create(&[("signal", sig.to_string())])
            .inc();
    }

    /// Renders the text exposition for the current `status`.
    pub fn render(&self, status: &Status) -> String {
        let now = Instant::now();
        for phase in Phase::ALL {
            let value = i64::from(phase == status.phase());
            self.phase
                .get_or_create(&[("phase", phase.name().to_string())])
                .set(value);
        }
        let since = status.phase_since().unwrap_or(now);
        self.phase_seconds
            .set(now.saturating_duration_since(since).as_secs_f64());
        let drain = status.state.drain().map_or(0.0, |drain| {
            now.saturating_duration_since(drain.since).as_secs_f64()
        });
        self.drain_seconds.set(drain);
        self.ready.set(i64::from(status.state.ready(now)));
        self.exit_code.set(
            status
                .state
                .exit()
                .map_or(-1, |exit| i64::from(exit.exit_code())),
        );
        self.deadline_seconds
            .set(status.deadline.grace.as_secs_f64());
        for source in crate::lifecycle::Deadline::SOURCES {
            self.deadline_source
                .get_or_create(&[("source", source.to_string())])
                .set(i64::from(source == status.deadline.source()));
        }
        let removed = match (status.endpoint_removed, status.state.drain()) {
            (Some(at), Some(drain)) => at.saturating_duration_since(drain.since).as_secs_f64(),
            _ => -1.0,
        };
        self.endpoint_removed_after.set(removed);
        let mut text = String::with_capacity(2048);
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// `drainit_log_lines_dropped_total`: read from
/// [`crate::logging::dropped_lines`] when scraped, since the logging
/// thread counts drops where no `Metrics` is at hand.
#[derive(Debug)]
struct LogLinesDropped;

impl TypedMetric for LogLinesDropped {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for LogLinesDropped {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&crate::logging::dropped_lines(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_log_lines_are_read_when_scraped() {
        let metrics = Metrics::new();
        let mut text = String::new();
        encode(&mut text, &metrics.registry).expect("encode");
        assert!(
            text.contains("# TYPE drainit_log_lines_dropped counter\n"),
            "{text}"
        );
        let expected = format!(
            "drainit_log_lines_dropped_total {}\n",
            crate::logging::dropped_lines()
        );
        assert!(text.contains(&expected), "{text}");
    }
}
