//! The traffic I/O: what the app's listening TCP ports receive, read
//! from the kernel through netlink `sock_diag` (inet_diag), unprivileged;
//! one [`Sample`] per dump, counted by the [`PortCounter`].
//!
//! The pod's containers share one network namespace, so drainit sees the
//! app's sockets whichever container it runs in. Each [`PortCounter::sample`]
//! dumps the namespace's TCP sockets (IPv4 and IPv6) with their `tcp_info`
//! and compares them with the previous dump, keyed by the kernel's socket
//! cookie (unique for the socket's life, kept into TIME_WAIT):
//!
//! - a **new connection** is a socket on a watched port whose cookie the
//!   previous dump did not have and that the kernel dates after that
//!   dump began: by its last receive (which a new socket's creation
//!   sets), or, in TIME_WAIT, by what its timer has left (a short
//!   connection the server closed first is still seen there for a
//!   minute). A socket left on the port earlier (by a previous server, a
//!   restarted container, before the port was watched) is only
//!   remembered: what it receives from then on counts, it never does;
//! - **inbound bytes** are the growth of `tcpi_bytes_received` (all of it
//!   for a new connection), and `tcpi_last_data_recv` dates the last byte
//!   to the kernel's tick rather than to the sampling interval;
//! - **open connections** are the ESTABLISHED ones: those whose client can
//!   still send;
//! - a connection gone since the previous dump while its client could
//!   still send (a last request and a close between two dumps) is
//!   **closed unseen**: it restarts the quiet, though no byte was seen.
//!
//! drainit's own connections never count. Its sockets are listed in
//! `/proc/self/fd`: a listener there (the admin port) is never watched,
//! and the local address of a connected one marks the app-side socket
//! whose peer it is as drainit's, for that connection's whole life. The
//! ready-check's connections live a millisecond, less than a sampling
//! interval, so the check notes its local address in [`OwnClients`] right
//! after connecting.
//!
//! A dump is a synchronous kernel round trip of a few milliseconds (most
//! of it the walk over the kernel's connection hash table, which all
//! namespaces share), tens of milliseconds on a loaded node
//! (`scripts/bench-traffic.sh`), so [`Sampler`](super::Sampler) runs the counter on a
//! thread of its own and hands samples to the event loop over a channel:
//! the loop never waits on the kernel.
//!
//! Not seen: connections opened and closed (client first) between two
//! dumps, and anything that is not TCP. The app's own health checks from
//! the kubelet or a balancer straight to its port count as traffic.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6};
use netlink_packet_sock_diag::inet::StateFlags;
use tokio::time::Instant;

use super::accounting::{account, watched_listeners, OwnSockets, Tracked};
use super::sock_diag::{canonical, connection_states, PortFilter, SockDiag};
use super::Evidence;
use crate::settings::TrafficPorts;

/// The shortest gap between two samples: 100 ms. During a drain the
/// sampler dumps by each moment the delay could end (the earliest end
/// the quiet window allows, or just before a fixed delay's end), at least
/// every [`RUNNING_INTERVAL`], never more often than this: the quiet
/// window's floor (`evidence::QUIET_WINDOW_FLOOR`) spans several of
/// these. A dump walks the kernel's whole connection table, every
/// namespace's (BENCHMARKS.md, "Sampling while draining"), so a dump that
/// cannot change the decision is not taken.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(100);

/// How often the sampler dumps the sockets while the app runs: 1 s. The
/// arrival rate is counted from the kernel's cumulative counters, so a
/// slow pace loses only connections that open and close (client first)
/// between two dumps, and costs a tenth of the drain pace for the pod's
/// whole life.
pub const RUNNING_INTERVAL: Duration = Duration::from_secs(1);

/// How long an address noted in [`OwnClients`] stays drainit's: TIME_WAIT
/// lasts 60 s on Linux, so the app side of a closed check connection is
/// gone by then.
const OWN_CLIENT_MEMORY: Duration = Duration::from_secs(120);

/// Why the sockets could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    /// The kernel or a filter refused the netlink socket or the dump:
    /// a seccomp profile, an LSM policy. Permanent.
    #[error("sock_diag is denied here (seccomp or a security module): {0}")]
    Denied(#[source] io::Error),
    /// The kernel has no netlink `sock_diag`, or no TCP diag module
    /// (`inet_diag`/`tcp_diag`) for this family. Permanent.
    #[error("this kernel offers no TCP sock_diag: {0}")]
    Unsupported(#[source] io::Error),
    /// Opening the netlink socket failed for another reason.
    #[error("failed to open the sock_diag socket: {0}")]
    Open(#[source] io::Error),
    /// Sending the dump request failed.
    #[error("failed to send the sock_diag request: {0}")]
    Send(#[source] io::Error),
    /// Reading the dump failed.
    #[error("failed to read the sock_diag dump: {0}")]
    Receive(#[source] io::Error),
    /// The kernel answered the dump with an error.
    #[error("the kernel refused the sock_diag dump: {0}")]
    Refused(#[source] io::Error),
    /// The answer could not be decoded.
    #[error("failed to decode the sock_diag dump: {0}")]
    Decode(String),
}

impl TrafficError {
    /// Whether observing can never work here (so `auto` falls back to the
    /// ceiling at once), as opposed to a failure worth retrying.
    pub fn is_permanent(&self) -> bool {
        matches!(self, TrafficError::Denied(_) | TrafficError::Unsupported(_))
    }

    /// Sorts an errno from `socket(2)` or from the dump.
    pub(super) fn classify(
        error: io::Error,
        otherwise: fn(io::Error) -> TrafficError,
    ) -> TrafficError {
        match error.raw_os_error() {
            // seccomp profiles answer EPERM (Docker's default) or ENOSYS.
            Some(libc::EPERM | libc::EACCES | libc::ENOSYS) => TrafficError::Denied(error),
            // No NETLINK_SOCK_DIAG, or no handler for inet/inet6 TCP
            // (request_module found no tcp_diag: ENOENT).
            Some(libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT | libc::ENOENT | libc::EOPNOTSUPP) => {
                TrafficError::Unsupported(error)
            }
            _ => otherwise(error),
        }
    }
}

/// Local addresses of drainit's own client connections to the app (the
/// ready-check), shared between the code that connects and the observer.
/// Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct OwnClients(Arc<Mutex<Vec<(SocketAddr, Instant)>>>);

impl OwnClients {
    /// Records that `local` is the local address of a connection drainit
    /// opened itself; call it right after `connect`, before any byte is
    /// sent, so that not one sample can count it.
    pub fn note(&self, local: SocketAddr) {
        let now = Instant::now();
        let mut noted = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        noted.retain(|(_, at)| now.duration_since(*at) < OWN_CLIENT_MEMORY);
        noted.push((canonical(local), now));
    }

    /// The addresses noted in the last [`OWN_CLIENT_MEMORY`].
    fn recent(&self, now: Instant) -> Vec<SocketAddr> {
        let noted = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        noted
            .iter()
            .filter(|(_, at)| now.duration_since(*at) < OWN_CLIENT_MEMORY)
            .map(|(addr, _)| *addr)
            .collect()
    }
}

/// What one dump showed on the watched ports, compared with the dump
/// before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// When the dump completed.
    pub at: Instant,
    /// The ports watched in this dump (sorted).
    pub ports: Vec<u16>,
    /// Connections on those ports the previous dump did not have (0 in
    /// the first sample, which only sets the baseline).
    pub new_connections: u32,
    /// Bytes received on those ports since the previous dump.
    pub inbound_bytes: u64,
    /// Data segments received since the previous dump
    /// (`tcpi_data_segs_in`), a proxy for requests on keep-alive
    /// connections.
    pub inbound_segments: u64,
    /// Arrivals since the previous dump: requests estimated from each
    /// connection's bytes and segments, and new connections that carried
    /// none (see the `evidence` module for how they are used).
    pub arrivals: u64,
    /// ESTABLISHED connections on those ports now.
    pub open_connections: u32,
    /// The latest new connection's arrival (the kernel's last-receive
    /// stamp, which a new socket sets when it is created), if any.
    pub last_new_connection: Option<Instant>,
    /// The latest inbound byte since the previous dump, if any.
    pub last_inbound: Option<Instant>,
    /// Connections gone since the previous dump that were last seen
    /// where their client could still send (a request and a close
    /// between two dumps): bytes may have arrived unseen. Not counted as
    /// arrivals (each would count twice with its opening), but the quiet
    /// starts after them.
    pub closed_unseen: u32,
    /// When such a connection was found gone (this dump's time).
    pub last_close_unseen: Option<Instant>,
    /// How long the dump itself took.
    pub dump_duration: Duration,
    /// How many connections the kernel handed over (what a dump costs
    /// follows it): only those on the watched ports.
    pub dumped_connections: u32,
}

impl Sample {
    /// What the drain's decision takes from this sample.
    pub fn evidence(&self) -> Evidence {
        Evidence {
            at: self.at,
            arrivals: self.arrivals,
            last_new_connection: self.last_new_connection,
            last_inbound: self.last_inbound,
            last_close_unseen: self.last_close_unseen,
            open_connections: self.open_connections,
        }
    }
}

/// Watches the listening ports' sockets through one netlink socket.
pub struct PortCounter {
    diag: SockDiag,
    ports: TrafficPorts,
    own_clients: OwnClients,
    /// The watched connections of the previous dump, by socket cookie.
    known: HashMap<u64, Tracked>,
    /// When the previous dump began; `None` before the first one.
    previous: Option<Instant>,
    /// The address families the kernel can dump (IPv6 may be disabled).
    families: Vec<u8>,
    /// The ports drainit itself listens on (see [`PortCounter::own_ports`]).
    own_ports: Vec<u16>,
}

impl PortCounter {
    /// Opens the netlink socket. Fails with [`TrafficError::Denied`] or
    /// [`TrafficError::Unsupported`] where sock_diag cannot be had; the
    /// first [`sample`](PortCounter::sample) finds out whether the TCP dump
    /// itself is allowed.
    pub fn open(ports: TrafficPorts, own_clients: OwnClients) -> Result<PortCounter, TrafficError> {
        let diag = SockDiag::open()?;
        Ok(PortCounter {
            diag,
            ports,
            own_clients,
            known: HashMap::new(),
            previous: None,
            families: vec![AF_INET, AF_INET6],
            own_ports: Vec::new(),
        })
    }

    /// The ports drainit listens on, as it bound them (its admin port):
    /// never watched. `/proc/self/fd` shows drainit's listeners too, but
    /// only where /proc is readable.
    pub fn own_ports(mut self, ports: Vec<u16>) -> PortCounter {
        self.own_ports = ports;
        self
    }

    /// Dumps the sockets and compares them with the previous dump.
    ///
    /// Listeners first (both families; the kernel then skips the big
    /// connection table), then the connections of only the families that
    /// have a watched listener, filtered by the kernel to the port when
    /// there is one: the walk over the kernel's connection hash table is
    /// most of a dump's cost, whatever the number of sockets.
    pub fn sample(&mut self) -> Result<Sample, TrafficError> {
        let started = std::time::Instant::now();
        let began = Instant::now();
        let mut listeners = Vec::new();
        let mut supported = Vec::with_capacity(2);
        let mut unsupported = None;
        for &family in &self.families {
            match self.diag.dump(
                family,
                StateFlags::LISTEN,
                PortFilter::Any,
                false,
                &mut listeners,
            ) {
                Ok(()) => supported.push(family),
                // IPv6 disabled on the node (ipv6.disable=1): no inet6
                // diag handler. Go on with IPv4, and never ask again.
                Err(error @ TrafficError::Unsupported(_)) => unsupported = Some(error),
                Err(error) => return Err(error),
            }
        }
        match (supported.is_empty(), unsupported) {
            (true, Some(error)) => return Err(error),
            _ => self.families = supported,
        }
        let mut own = OwnSockets::of_this_process();
        own.ports.clone_from(&self.own_ports);
        let watched = watched_listeners(&listeners, &own, &self.ports);
        let mut connections = Vec::new();
        for &family in &self.families {
            let ports: Vec<u16> = watched
                .iter()
                .filter(|(_, f)| *f == family)
                .map(|(port, _)| *port)
                .collect();
            if ports.is_empty() {
                continue;
            }
            self.diag.dump(
                family,
                connection_states(),
                PortFilter::Only(&ports),
                true,
                &mut connections,
            )?;
        }
        let dump_duration = started.elapsed();
        let at = Instant::now();
        // drainit's clients note their address before they connect: read
        // the notes again now, so that every connection this dump can show
        // was noted before they were read (read before the dump, one made
        // in between would count as the app's traffic).
        own.endpoints.extend(self.own_clients.recent(at));
        // Sorted by port already: only the families' duplicates go.
        let mut ports: Vec<u16> = watched.iter().map(|(port, _)| *port).collect();
        ports.dedup();
        let (sample, known) = account(
            ports,
            &connections,
            &own.endpoints,
            &self.known,
            self.previous,
            at,
        );
        self.known = known;
        self.previous = Some(began);
        Ok(Sample {
            dump_duration,
            dumped_connections: u32::try_from(connections.len()).unwrap_or(u32::MAX),
            ..sample
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_are_sorted_into_permanent_and_transient() {
        let table = [
            (libc::EPERM, true),
            (libc::EACCES, true),
            (libc::ENOSYS, true),
            (libc::EPROTONOSUPPORT, true),
            (libc::ENOENT, true),
            (libc::ENOBUFS, false),
            (libc::EINTR, false),
        ];
        for (errno, permanent) in table {
            let error =
                TrafficError::classify(io::Error::from_raw_os_error(errno), TrafficError::Receive);
            assert_eq!(error.is_permanent(), permanent, "errno {errno}: {error}");
        }
    }
}
