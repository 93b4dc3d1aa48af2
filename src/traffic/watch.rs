//! The event loop's adapter ([`TrafficWatch`]) to the drain evidence:
//! when the app's ports are sampled, what each sample changes, and the
//! report each drain gives.
//!
//! With `--propagation-delay auto` the ports are sampled from the app's
//! start ([`RUNNING_INTERVAL`]), since the quiet window comes
//! from the arrival rate before the drain; with a fixed delay only from the
//! drain's start, so that a fixed-delay pod pays nothing until then and
//! still learns when its traffic really stopped. During the drain a
//! sample is due by each moment the decision could change, not on a fixed
//! pace. The dumps run on the
//! [`Sampler`]'s thread, never on the event loop. Where `sock_diag` cannot
//! be had, `auto` waits for its ceiling and says so once.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use super::evidence::{Decision, DrainEvidence, DrainReport, TrafficHistory};
use super::sampler::Sampler;
use super::sockets::{
    OwnClients, PortCounter, Sample, TrafficError, DRAIN_INTERVAL, RUNNING_INTERVAL,
};
use crate::cli::Settings;
use crate::durations::secs;
use crate::lifecycle::StopCause;
use crate::settings::{AutoBounds, PropagationDelay, TrafficPorts};

/// The traffic evidence of one drainit run.
pub struct TrafficWatch {
    delay: PropagationDelay,
    bounds: AutoBounds,
    ports: TrafficPorts,
    own_clients: OwnClients,
    /// The ports drainit listens on (its admin port).
    own_ports: Vec<u16>,
    sampler: Option<Sampler>,
    history: TrafficHistory,
    drain: Option<DrainEvidence>,
    /// The report taken when the stop signal went out.
    report: Option<DrainReport>,
    /// Why observing is impossible, once known (said once).
    unavailable: Option<String>,
}

impl TrafficWatch {
    /// The watch for these settings; `own_clients` are drainit's own
    /// connections to the app (its ready-check), never counted, and
    /// `own_ports` the ports it listens on (its admin port), never watched.
    pub fn new(settings: &Settings, own_clients: OwnClients, own_ports: Vec<u16>) -> TrafficWatch {
        TrafficWatch {
            delay: settings.propagation_delay,
            bounds: settings.auto_bounds(),
            ports: settings.traffic_ports.clone(),
            own_clients,
            own_ports,
            sampler: None,
            history: TrafficHistory::default(),
            drain: None,
            report: None,
            unavailable: None,
        }
    }

    /// The app is up: `auto` starts counting the rate before the drain.
    pub fn app_started(&mut self) {
        if self.delay == PropagationDelay::Auto {
            self.start(RUNNING_INTERVAL);
        }
    }

    /// The drain began at `now`: a sample now, then one by each moment
    /// the delay could end (see [`Sampler::sample_by`]).
    pub fn drain_started(&mut self, now: Instant) {
        match &self.sampler {
            Some(sampler) => sampler.set_interval(RUNNING_INTERVAL),
            None if self.unavailable.is_none() && self.report.is_none() => {
                self.start(RUNNING_INTERVAL)
            }
            None => {}
        }
        // An unavailable observer is in the history too (see `give_up`).
        self.drain = Some(self.history.begin_drain(now, self.delay, self.bounds));
    }

    /// The next sample; pending forever while nothing samples.
    pub async fn next(&mut self) -> Result<Sample, TrafficError> {
        loop {
            let Some(sampler) = &mut self.sampler else {
                return std::future::pending().await;
            };
            match sampler.next().await {
                Some(result) => return result,
                // The thread ended (after a permanent error, sent first).
                None => self.sampler = None,
            }
        }
    }

    /// Takes in a sample (or the sampler's error); true when, with
    /// `auto`, the delay may end now.
    pub fn on_sample(&mut self, sample: Result<Sample, TrafficError>, now: Instant) -> bool {
        match sample {
            Ok(sample) => {
                if sample.arrivals > 0 {
                    tracing::trace!(
                        new = sample.new_connections,
                        bytes = sample.inbound_bytes,
                        closed_unseen = sample.closed_unseen,
                        ports = ?sample.ports,
                        "traffic sample"
                    );
                }
                let evidence = sample.evidence();
                match &mut self.drain {
                    Some(drain) => drain.observe(&evidence),
                    None => self.history.observe(&evidence),
                }
            }
            Err(error) if error.is_permanent() => self.give_up(error.to_string()),
            Err(error) => debug!(%error, "traffic sample failed; retrying"),
        }
        if self.report.is_some() {
            return false;
        }
        let Some(drain) = &mut self.drain else {
            return false;
        };
        // The next sample is due when the decision could change: auto's
        // earliest end (quiet for the window since the last arrival), or
        // a moment before the fixed delay's end, so that the report sees
        // the traffic up to the stop signal. Between those, the kernel's
        // stamps date every arrival: a dump more would tell nothing new.
        let sample_by = match self.delay {
            PropagationDelay::Auto => match drain.decide(now) {
                Decision::End(_) => return true,
                Decision::Wait { earliest, .. } => earliest,
            },
            PropagationDelay::Fixed(delay) => drain
                .started()
                .checked_add(delay)
                .and_then(|end| end.checked_sub(DRAIN_INTERVAL)),
        };
        if let (Some(sampler), Some(by)) = (&self.sampler, sample_by) {
            sampler.sample_by(by.into_std());
        }
        false
    }

    /// The stop signal goes out at `now`, the delay ended by `cause`: the
    /// drain's report (how the delay ended, when the traffic stopped);
    /// sampling ends here.
    pub fn stopped(&mut self, now: Instant, cause: StopCause) -> Option<&DrainReport> {
        self.take_report(now, Some(cause))
    }

    /// The app exited during the drain: the report, taken now if the stop
    /// signal has not gone out yet (an app that dies during the delay is
    /// when the operator needs it most), `None` if it was taken already.
    pub fn app_exited(&mut self, now: Instant) -> Option<&DrainReport> {
        if self.report.is_some() {
            return None;
        }
        self.take_report(now, None)
    }

    fn take_report(&mut self, now: Instant, cause: Option<StopCause>) -> Option<&DrainReport> {
        let drain = self.drain.as_mut()?;
        match cause {
            Some(cause) => drain.stop(now, cause),
            None => {
                drain.decide(now);
                None
            }
        };
        self.report = Some(drain.report());
        self.sampler = None;
        self.report.as_ref()
    }

    /// The report, once the stop signal went out (or the app exited).
    pub fn report(&self) -> Option<&DrainReport> {
        self.report.as_ref()
    }

    fn start(&mut self, interval: Duration) {
        let observer = match PortCounter::open(self.ports.clone(), self.own_clients.clone()) {
            Ok(observer) => observer.own_ports(self.own_ports.clone()),
            Err(error) => return self.give_up(error.to_string()),
        };
        match Sampler::spawn(observer, interval) {
            Ok(sampler) => self.sampler = Some(sampler),
            Err(error) => self.give_up(format!("failed to start the sampling thread: {error}")),
        }
    }

    fn give_up(&mut self, why: String) {
        if self.unavailable.is_some() {
            return;
        }
        if self.delay == PropagationDelay::Auto {
            warn!(
                ceiling = %secs(self.bounds.max),
                "cannot observe the app's traffic ({why}); --propagation-delay auto waits for --propagation-delay-max"
            );
        } else {
            debug!("cannot observe the app's traffic ({why}); the drain report will not say when it stopped");
        }
        self.history.unavailable(why.clone());
        if let Some(drain) = &mut self.drain {
            drain.unavailable(why.clone());
        }
        self.unavailable = Some(why);
        self.sampler = None;
    }
}
