//! The admin server's connections: who gets a slot, who makes room, and
//! what happens when `accept` fails.
//!
//! Probes must be answered whoever else is connected, so the cap never
//! turns a new connection away: at the cap the **oldest connection with no
//! request in progress** is closed to make room (idle keep-alives,
//! slowloris heads, unread pipelines are all "no request in progress").
//! A probe is only at risk if the cap's worth of newer connections arrive
//! before its request head does. Connections with a request in progress
//! (a `/prestop` waiting for the app) are never closed for room; when every
//! slot holds one, new connections wait in the listen backlog.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{debug, warn};

/// File descriptors drainit keeps for itself beyond those open when the
/// admin server starts: ready-check sockets, the pidfd, `/proc` reads.
pub const FD_RESERVE: u64 = 32;

/// The connection cap that fits the open-file limit: `requested`, or less
/// when the soft limit minus the files open now and [`FD_RESERVE`] is
/// smaller (then it says so, once). Never below 1.
pub fn fit_to_file_limit(requested: usize) -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _hard)| soft);
    // The directory handle itself is one of the entries.
    let open = std::fs::read_dir("/proc/self/fd")
        .map_or(16, |entries| entries.count().saturating_sub(1) as u64);
    let available = soft.saturating_sub(open).saturating_sub(FD_RESERVE).max(1);
    let cap = usize::try_from(available).map_or(requested, |available| requested.min(available));
    if cap < requested {
        warn!(
            "--admin-max-connections {requested} lowered to {cap}: the open-file limit is {soft}, {open} files are open and drainit keeps {FD_RESERVE} for itself"
        );
    }
    cap
}

/// The first pause after a failed `accept`.
const FIRST_PAUSE: Duration = Duration::from_millis(1);
/// The longest pause between `accept` retries.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// Exponential back-off for `accept` errors (EMFILE and the like): 1 ms
/// doubling to 1 s, reset by the next success; one warning per episode.
#[derive(Debug)]
pub struct AcceptBackoff {
    failures: u64,
    next_pause: Duration,
}

impl Default for AcceptBackoff {
    fn default() -> AcceptBackoff {
        AcceptBackoff {
            failures: 0,
            next_pause: FIRST_PAUSE,
        }
    }
}

impl AcceptBackoff {
    /// Records a failure; returns how long to pause before the next try.
    pub fn failed(&mut self, error: &std::io::Error) -> Duration {
        if self.failures == 0 {
            warn!(%error, "admin accept failing; retrying with back-off up to 1s");
        }
        self.failures = self.failures.saturating_add(1);
        let pause = self.next_pause;
        self.next_pause = (self.next_pause * 2).min(MAX_PAUSE);
        pause
    }

    /// Records a success, ending the episode.
    pub fn succeeded(&mut self) {
        if self.failures > 0 {
            debug!(failures = self.failures, "admin accept works again");
            *self = AcceptBackoff::default();
        }
    }
}

/// Whether an accept error means drainit is out of file descriptors.
pub fn out_of_files(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// One open connection as the table sees it.
struct Entry {
    in_flight: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    /// Ordered by id (ids only grow), so the first entry is the oldest
    /// connection. A Vec rather than a map: smaller code, and a few
    /// thousand entries at most.
    open: Vec<(u64, Entry)>,
}

impl Table {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let index = self.open.binary_search_by_key(&id, |(id, _)| *id).ok()?;
        Some(self.open.remove(index).1)
    }
}

/// Every open admin connection, oldest first.
pub struct Connections {
    table: Mutex<Table>,
    /// Signalled whenever a connection leaves the table.
    freed: Notify,
    cap: usize,
}

/// A connection's place in the table; leaving it (on drop) frees the slot.
pub struct Slot {
    id: u64,
    connections: Arc<Connections>,
    /// Requests of this connection being answered now.
    pub in_flight: Arc<AtomicUsize>,
    /// Notified when the connection must close at once.
    pub close: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.lock().remove(self.id);
        self.connections.freed.notify_one();
    }
}

/// Marks a request as in progress on its connection while it lives.
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    /// Counts one more request in progress on `counter`.
    pub fn start(counter: &Arc<AtomicUsize>) -> InFlight {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connections {
    /// An empty table for at most `cap` connections.
    pub fn new(cap: usize) -> Arc<Connections> {
        Arc::new(Connections {
            table: Mutex::new(Table::default()),
            freed: Notify::new(),
            cap: cap.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent whatever panicked while it was held.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once a new connection may be accepted: below the cap, or
    /// after closing the oldest connection with no request in progress.
    pub async fn make_room(&self) {
        loop {
            let freed = self.freed.notified();
            {
                let table = self.lock();
                if table.open.len() < self.cap {
                    return;
                }
            }
            if self.close_oldest_idle() {
                // Let the closed connection's task drop its socket before
                // the next accept needs the descriptor.
                tokio::task::yield_now().await;
                return;
            }
            freed.await;
        }
    }

    /// Closes the oldest connection with no request in progress; whether
    /// there was one.
    pub fn close_oldest_idle(&self) -> bool {
        let mut table = self.lock();
        let oldest_idle = table
            .open
            .iter()
            .find(|(_, entry)| entry.in_flight.load(Ordering::Relaxed) == 0)
            .map(|(id, _)| *id);
        let Some(entry) = oldest_idle.and_then(|id| table.remove(id)) else {
            return false;
        };
        entry.close.notify_one();
        true
    }

    /// Takes a slot for a connection just accepted.
    pub fn register(self: &Arc<Self>) -> Slot {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let close = Arc::new(Notify::new());
        let mut table = self.lock();
        let id = table.next_id;
        table.next_id += 1;
        table.open.push((
            id,
            Entry {
                in_flight: in_flight.clone(),
                close: close.clone(),
            },
        ));
        Slot {
            id,
            connections: self.clone(),
            in_flight,
            close,
        }
    }

    /// Waits until every connection has closed.
    pub async fn all_closed(&self) {
        loop {
            let freed = self.freed.notified();
            if self.lock().open.is_empty() {
                return;
            }
            freed.await;
        }
    }

    /// Closes every connection at once.
    pub fn close_all(&self) {
        let mut table = self.lock();
        for (_, entry) in std::mem::take(&mut table.open) {
            entry.close.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_second_and_resets_on_success() {
        let mut backoff = AcceptBackoff::default();
        let error = std::io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<u64> = (0..13)
            .map(|_| backoff.failed(&error).as_millis() as u64)
            .collect();
        assert_eq!(
            pauses,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 1000, 1000]
        );
        backoff.succeeded();
        assert_eq!(backoff.failed(&error), FIRST_PAUSE);
        assert!(out_of_files(&error));
        assert!(!out_of_files(&std::io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }

    /// Whether `slot` was told to close (its stored notification, if any).
    async fn closed(slot: &Slot) -> bool {
        tokio::time::timeout(Duration::ZERO, slot.close.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let connections = Connections::new(3);
        let slots: Vec<Slot> = (0..3).map(|_| connections.register()).collect();
        // The oldest has a request in progress: the next one goes.
        let busy = InFlight::start(&slots[0].in_flight);
        connections.make_room().await;
        assert!(!closed(&slots[0]).await);
        assert!(closed(&slots[1]).await);
        assert!(!closed(&slots[2]).await);
        drop(busy);
        let _fourth = connections.register();
        connections.make_room().await;
        assert!(closed(&slots[0]).await, "idle again, now the oldest");
    }

    #[tokio::test(start_paused = true)]
    async fn with_every_slot_busy_a_new_connection_waits_for_one_to_close() {
        let connections = Connections::new(1);
        let slot = connections.register();
        let _busy = InFlight::start(&slot.in_flight);
        let waited = tokio::time::timeout(Duration::from_secs(1), connections.make_room()).await;
        assert!(waited.is_err(), "must wait while the only slot is busy");
        drop(slot);
        let waited = tokio::time::timeout(Duration::from_secs(1), connections.make_room()).await;
        assert!(waited.is_ok(), "a closed connection frees its slot");
    }

    #[test]
    fn the_cap_fits_the_file_limit() {
        let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .expect("getrlimit");
        assert_eq!(fit_to_file_limit(1), 1);
        let huge = fit_to_file_limit(usize::MAX) as u64;
        assert!(huge < soft && huge + FD_RESERVE <= soft, "{huge} of {soft}");
    }
}
