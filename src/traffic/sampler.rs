//! The observer on a thread of its own: no dump ever runs on the event
//! loop.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{PortCounter, Sample, TrafficError};

/// The observer on a thread of its own, handing samples to the event
/// loop over a channel, so that no dump ever runs on the event loop.
///
/// Sampling runs at [`RUNNING_INTERVAL`](super::RUNNING_INTERVAL) (enough
/// to count the arrival rate: the kernel's counters are cumulative and its
/// stamps date each arrival), and the drain asks for a sample by the
/// moment its decision can change ([`sample_by`](Sampler::sample_by)):
/// a dump costs a walk over the kernel's whole connection table, so none
/// is taken that cannot matter. Never two within
/// [`DRAIN_INTERVAL`](super::DRAIN_INTERVAL). Dropping it ends the thread.
pub struct Sampler {
    samples: mpsc::Receiver<Result<Sample, TrafficError>>,
    control: Arc<SamplerControl>,
    thread: std::thread::Thread,
}

/// What the event loop tells the sampling thread.
#[derive(Debug)]
struct SamplerControl {
    /// What `due_micros` counts from.
    base: std::time::Instant,
    interval_micros: AtomicU64,
    /// When the next sample is due at the latest, in µs since `base`;
    /// `NOT_DUE` when only the interval says.
    due_micros: AtomicU64,
    stop: AtomicBool,
}

const NOT_DUE: u64 = u64::MAX;

impl SamplerControl {
    /// When the sample after the one begun at `started` is due (`None`:
    /// beyond any clock, never).
    fn next_after(&self, started: std::time::Instant) -> Option<std::time::Instant> {
        let interval = Duration::from_micros(self.interval_micros.load(Ordering::Relaxed));
        let by_interval = started.checked_add(interval);
        let due = match self.due_micros.load(Ordering::Relaxed) {
            NOT_DUE => None,
            due => self.base.checked_add(Duration::from_micros(due)),
        };
        let next = match (by_interval, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let soonest = started
            .checked_add(super::DRAIN_INTERVAL)
            .unwrap_or(started);
        next.map(|next| next.max(soonest))
    }
}

impl Sampler {
    /// Starts the thread: one sample at once, then one every `interval`.
    ///
    /// The thread ends after a permanent error (sent first), or when the
    /// `Sampler` is dropped. A loop that falls behind by 64 samples makes
    /// the thread wait, never drop a sample (each one counts arrivals
    /// since the one before).
    pub fn spawn(mut observer: PortCounter, interval: Duration) -> io::Result<Sampler> {
        let (sender, samples) = mpsc::channel(64);
        let control = Arc::new(SamplerControl {
            base: std::time::Instant::now(),
            interval_micros: AtomicU64::new(micros(interval)),
            due_micros: AtomicU64::new(NOT_DUE),
            stop: AtomicBool::new(false),
        });
        let shared = Arc::clone(&control);
        let handle = std::thread::Builder::new()
            .name("drainit-traffic".into())
            .spawn(move || loop {
                let started = std::time::Instant::now();
                // A due time set from here on is about this sample's successor.
                shared.due_micros.store(NOT_DUE, Ordering::Relaxed);
                let result = observer.sample();
                let permanent = result.as_ref().is_err_and(TrafficError::is_permanent);
                if sender.blocking_send(result).is_err() || permanent {
                    return;
                }
                // An unpark (a new interval or due time, or stop) ends a
                // wait early: the next sample's time is worked out again.
                loop {
                    if shared.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let now = std::time::Instant::now();
                    match shared
                        .next_after(started)
                        .map(|next| next.checked_duration_since(now))
                    {
                        // Never due: until an unpark.
                        None => std::thread::park(),
                        Some(Some(wait)) if !wait.is_zero() => std::thread::park_timeout(wait),
                        Some(_) => break,
                    }
                }
            })?;
        Ok(Sampler {
            samples,
            control,
            thread: handle.thread().clone(),
        })
    }

    /// Samples now (or [`DRAIN_INTERVAL`](super::DRAIN_INTERVAL) after
    /// the last one began), then every `interval`.
    pub fn set_interval(&self, interval: Duration) {
        self.control
            .interval_micros
            .store(micros(interval), Ordering::Relaxed);
        self.sample_by(std::time::Instant::now());
    }

    /// The next sample is due by `at` at the latest (the drain's earliest
    /// end); not before [`DRAIN_INTERVAL`](super::DRAIN_INTERVAL) after
    /// the last one began.
    pub fn sample_by(&self, at: std::time::Instant) {
        let due = micros(at.saturating_duration_since(self.control.base));
        self.control.due_micros.store(due, Ordering::Relaxed);
        self.thread.unpark();
    }

    /// The next sample, in order; `None` once the thread has ended.
    pub async fn next(&mut self) -> Option<Result<Sample, TrafficError>> {
        self.samples.recv().await
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.control.stop.store(true, Ordering::Relaxed);
        self.thread.unpark();
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_next_sample_is_due_by_the_interval_or_the_due_time_never_within_the_shortest_gap() {
        let base = Instant::now();
        let control = SamplerControl {
            base,
            interval_micros: AtomicU64::new(1_000_000),
            due_micros: AtomicU64::new(NOT_DUE),
            stop: AtomicBool::new(false),
        };
        let ms = Duration::from_millis;
        let started = base + ms(2000);
        let due_at = |at: Duration| {
            control.due_micros.store(micros(at), Ordering::Relaxed);
            control.next_after(started).map(|t| t - started)
        };
        // (due since base, next sample after `started`)
        assert_eq!(
            due_at(Duration::from_micros(u64::MAX)),
            Some(ms(1000)),
            "interval only"
        );
        assert_eq!(due_at(ms(2400)), Some(ms(400)), "the drain's earliest end");
        assert_eq!(due_at(ms(5000)), Some(ms(1000)), "the interval comes first");
        assert_eq!(
            due_at(ms(2010)),
            Some(ms(100)),
            "never within DRAIN_INTERVAL"
        );
        assert_eq!(due_at(ms(0)), Some(ms(100)), "overdue: as soon as allowed");
    }
}
