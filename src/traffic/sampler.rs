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
/// Sampling is slow while the app runs ([`RUNNING_INTERVAL`](super::RUNNING_INTERVAL): enough to
/// count the arrival rate, the kernel's counters are cumulative) and fast
/// once the drain begins ([`DRAIN_INTERVAL`](super::DRAIN_INTERVAL), via
/// [`set_interval`](Sampler::set_interval)). Dropping it ends the thread.
pub struct Sampler {
    samples: mpsc::Receiver<Result<Sample, TrafficError>>,
    control: Arc<SamplerControl>,
    thread: std::thread::Thread,
}

/// What the event loop tells the sampling thread.
#[derive(Debug)]
struct SamplerControl {
    interval_micros: AtomicU64,
    stop: AtomicBool,
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
            interval_micros: AtomicU64::new(micros(interval)),
            stop: AtomicBool::new(false),
        });
        let shared = Arc::clone(&control);
        let handle = std::thread::Builder::new()
            .name("drainit-traffic".into())
            .spawn(move || loop {
                let started = std::time::Instant::now();
                let result = observer.sample();
                let permanent = result.as_ref().is_err_and(TrafficError::is_permanent);
                if sender.blocking_send(result).is_err() || permanent {
                    return;
                }
                let interval =
                    Duration::from_micros(shared.interval_micros.load(Ordering::Relaxed));
                // An unpark (a new interval, or stop) ends the wait early.
                if let Some(wait) =
                    (started + interval).checked_duration_since(std::time::Instant::now())
                {
                    std::thread::park_timeout(wait);
                }
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
            })?;
        Ok(Sampler {
            samples,
            control,
            thread: handle.thread().clone(),
        })
    }

    /// Samples now, then every `interval` (the drain calls this with
    /// [`DRAIN_INTERVAL`](super::DRAIN_INTERVAL) when it begins).
    pub fn set_interval(&self, interval: Duration) {
        self.control
            .interval_micros
            .store(micros(interval), Ordering::Relaxed);
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
