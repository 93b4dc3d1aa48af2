//! Traffic observation: what the app's listening TCP ports receive, read
//! from the kernel through netlink `sock_diag` (inet_diag), unprivileged.
//!
//! The pod's containers share one network namespace, so drainit sees the
//! app's sockets whichever container it runs in. Each [`Observer::sample`]
//! dumps the namespace's TCP sockets (IPv4 and IPv6) with their `tcp_info`
//! and compares them with the previous dump, keyed by the kernel's socket
//! cookie (unique for the socket's life, kept into TIME_WAIT):
//!
//! - a **new connection** is a socket on a watched port whose cookie the
//!   previous dump did not have: accepted since then, in any state but
//!   LISTEN (a short connection the server closed first is still seen, in
//!   TIME_WAIT, for a minute);
//! - **inbound bytes** are the growth of `tcpi_bytes_received` (all of it
//!   for a new connection), and `tcpi_last_data_recv` dates the last byte
//!   to the kernel's tick rather than to the sampling interval;
//! - **open connections** are the ESTABLISHED ones: those whose client can
//!   still send.
//!
//! drainit's own connections never count: sockets drainit holds (their
//! inodes are in `/proc/self/fd`) mark their local address as drainit's,
//! and so do addresses noted in [`OwnClients`] by the ready-check (its
//! connections live a millisecond, far less than a sampling interval);
//! the app-side socket whose peer is such an address is skipped. Listening
//! sockets drainit holds itself (the admin port) are never watched.
//!
//! A dump is a synchronous kernel round trip of a few milliseconds, most
//! of it the walk over the kernel's connection hash table, more with
//! thousands of sockets (`scripts/bench-traffic.sh`), so [`Sampler`] runs
//! the observer on a thread of its own and hands samples to the event
//! loop over a channel: the loop never waits on the kernel.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{
    nlas::Nla, ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NetlinkAddr};
use nix::sys::socket::{getpeername, getsockname, SockaddrStorage};
use tokio::sync::mpsc;

use crate::evidence::Observation;
use tokio::time::Instant;

/// How often the sampler dumps the sockets during a drain: 100 ms. Fine
/// enough that the quiet window's floor
/// ([`crate::evidence::QUIET_WINDOW_FLOOR`]) spans several samples and the
/// delay ends within 0.1 s of being provably quiet; a dump costs a few
/// milliseconds of kernel time (BENCHMARKS.md, "Traffic observation"), a
/// few percent of one core for the seconds a drain lasts.
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

/// The netlink receive buffer: the kernel fills at most 32 KiB per
/// datagram of a dump (`max_recvmsg_len` is capped there).
const RECEIVE_BUFFER: usize = 32 * 1024;

/// TCP states from `include/net/tcp_states.h`.
const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;
/// The states with tcp_info after the peer's FIN: CLOSE_WAIT, LAST_ACK,
/// CLOSING.
const PEER_CLOSED: [u8; 3] = [8, 9, 11];

/// Which ports carry the app's traffic (`--traffic-ports`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TrafficPorts {
    /// Every listening TCP port of the network namespace, except those
    /// drainit listens on itself (its admin port).
    #[default]
    AllListening,
    /// Only these ports.
    Only(Vec<u16>),
}

/// A `--traffic-ports` value that is neither `all` nor a list of ports.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid port list '{input}': expected `all` or comma-separated ports 1-65535, e.g. 8080,8443"
)]
pub struct TrafficPortsError {
    /// What was given.
    pub input: String,
}

impl FromStr for TrafficPorts {
    type Err = TrafficPortsError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = || TrafficPortsError {
            input: input.to_string(),
        };
        if input.trim().eq_ignore_ascii_case("all") {
            return Ok(TrafficPorts::AllListening);
        }
        let mut ports = Vec::new();
        for part in input.split(',') {
            let port: u16 = part.trim().parse().map_err(|_| invalid())?;
            if port == 0 {
                return Err(invalid());
            }
            ports.push(port);
        }
        ports.sort_unstable();
        ports.dedup();
        Ok(TrafficPorts::Only(ports))
    }
}

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
    fn classify(error: io::Error, otherwise: fn(io::Error) -> TrafficError) -> TrafficError {
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
    /// none (see [`crate::evidence`] for how they are used).
    pub arrivals: u64,
    /// ESTABLISHED connections on those ports now.
    pub open_connections: u32,
    /// The latest new connection's arrival (the kernel's last-receive
    /// stamp, which a new socket sets when it is created), if any.
    pub last_new_connection: Option<Instant>,
    /// The latest inbound byte since the previous dump, if any.
    pub last_inbound: Option<Instant>,
    /// How long the dump itself took.
    pub dump_duration: Duration,
}

impl Sample {
    /// The latest arrival (new connection or inbound byte) in this
    /// sample's interval, if there was one.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_new_connection.max(self.last_inbound)
    }

    /// What the drain's decision takes from this sample.
    pub fn observation(&self) -> Observation {
        Observation {
            at: self.at,
            arrivals: self.arrivals,
            last_new_connection: self.last_new_connection,
            last_inbound: self.last_inbound,
            open_connections: self.open_connections,
        }
    }
}

/// Watches the listening ports' sockets through one netlink socket.
pub struct Observer {
    socket: Socket,
    ports: TrafficPorts,
    own_clients: OwnClients,
    /// The watched connections of the previous dump, by socket cookie.
    known: HashMap<u64, Tracked>,
    /// When the previous dump completed; `None` before the first one.
    previous: Option<Instant>,
    /// The address families the kernel can dump (IPv6 may be disabled).
    families: Vec<u8>,
    sequence: u32,
    buffer: Vec<u8>,
}

/// What the previous dump recorded of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tracked {
    bytes_received: u64,
    segments_in: u32,
    /// One of drainit's own connections: skipped for its whole life.
    own: bool,
}

/// The connection states dumped: all but LISTEN (dumped apart), CLOSE
/// (unbound sockets) and SYN_SENT (outgoing handshakes).
fn connection_states() -> StateFlags {
    StateFlags::all() - StateFlags::LISTEN - StateFlags::CLOSE - StateFlags::SYN_SENT
}

impl Observer {
    /// Opens the netlink socket. Fails with [`TrafficError::Denied`] or
    /// [`TrafficError::Unsupported`] where sock_diag cannot be had; the
    /// first [`sample`](Observer::sample) finds out whether the TCP dump
    /// itself is allowed.
    pub fn open(ports: TrafficPorts, own_clients: OwnClients) -> Result<Observer, TrafficError> {
        let open_error = |e| TrafficError::classify(e, TrafficError::Open);
        let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(open_error)?;
        socket.bind_auto().map_err(open_error)?;
        socket
            .connect(&NetlinkAddr::new(0, 0))
            .map_err(open_error)?;
        Ok(Observer {
            socket,
            ports,
            own_clients,
            known: HashMap::new(),
            previous: None,
            families: vec![AF_INET, AF_INET6],
            sequence: 0,
            // Filled through its spare capacity: only the pages the
            // kernel writes are ever touched.
            buffer: Vec::with_capacity(RECEIVE_BUFFER),
        })
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
        let mut listeners = Vec::new();
        let mut supported = Vec::with_capacity(2);
        let mut unsupported = None;
        for family in self.families.clone() {
            match self.dump(family, StateFlags::LISTEN, 0) {
                Ok(found) => {
                    listeners.extend(found);
                    supported.push(family);
                }
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
        let own = OwnSockets::of_this_process(self.own_clients.recent(Instant::now()));
        let watched = watched_listeners(&listeners, &own, &self.ports);
        let mut connections = Vec::new();
        for family in self.families.clone() {
            let mut ports: Vec<u16> = watched
                .iter()
                .filter(|(f, _)| *f == family)
                .map(|(_, port)| *port)
                .collect();
            ports.dedup();
            let only_port = match ports.as_slice() {
                [] => continue,
                [port] => *port,
                _ => 0,
            };
            connections.extend(self.dump(family, connection_states(), only_port)?);
        }
        let dump_duration = started.elapsed();
        let at = Instant::now();
        let mut ports: Vec<u16> = watched.iter().map(|(_, port)| *port).collect();
        ports.sort_unstable();
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
        self.previous = Some(at);
        Ok(Sample {
            dump_duration,
            ..sample
        })
    }

    /// One `SOCK_DIAG_BY_FAMILY` dump of the TCP sockets of `family` in
    /// `states`; `port` other than 0 asks the kernel for that local port
    /// only.
    fn dump(
        &mut self,
        family: u8,
        states: StateFlags,
        port: u16,
    ) -> Result<Vec<SocketRecord>, TrafficError> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        header.sequence_number = self.sequence;
        let mut socket_id = if family == AF_INET {
            SocketId::new_v4()
        } else {
            SocketId::new_v6()
        };
        socket_id.source_port = port;
        let mut request = NetlinkMessage::new(
            header,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::INFO,
                states,
                socket_id,
            })
            .into(),
        );
        request.finalize();
        let mut bytes = vec![0; request.buffer_len()];
        request.serialize(&mut bytes);
        self.socket
            .send(&bytes, 0)
            .map_err(|e| TrafficError::classify(e, TrafficError::Send))?;

        let mut sockets = Vec::new();
        loop {
            self.buffer.clear();
            // MSG_TRUNC: the datagram's real length, to notice truncation.
            let length = self
                .socket
                .recv(&mut self.buffer, libc::MSG_TRUNC)
                .map_err(|e| TrafficError::classify(e, TrafficError::Receive))?;
            let Some(datagram) = self.buffer.get(..length) else {
                return Err(TrafficError::Decode(format!(
                    "a {length}-byte datagram does not fit the {RECEIVE_BUFFER}-byte buffer"
                )));
            };
            if decode_datagram(datagram, self.sequence, &mut sockets)? {
                return Ok(sockets);
            }
        }
    }
}

/// Decodes one datagram of a dump into `sockets`; true once the dump is
/// complete (`NLMSG_DONE`).
fn decode_datagram(
    mut datagram: &[u8],
    sequence: u32,
    sockets: &mut Vec<SocketRecord>,
) -> Result<bool, TrafficError> {
    while !datagram.is_empty() {
        let message = NetlinkMessage::<SockDiagMessage>::deserialize(datagram)
            .map_err(|e| TrafficError::Decode(e.to_string()))?;
        let length = message.header.length as usize;
        if length == 0 || length > datagram.len() {
            return Err(TrafficError::Decode(format!(
                "message length {length} does not fit the {} bytes left",
                datagram.len()
            )));
        }
        // Netlink messages are padded to 4 bytes.
        datagram = datagram
            .get(length.next_multiple_of(4)..)
            .unwrap_or_default();
        if message.header.sequence_number != sequence {
            continue; // an answer to an earlier, abandoned request
        }
        match message.payload {
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(error) => {
                return Err(TrafficError::classify(error.to_io(), TrafficError::Refused));
            }
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                if let Some(record) = SocketRecord::from_response(&response) {
                    sockets.push(record);
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

/// The parts of one dumped socket the observer uses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SocketRecord {
    family: u8,
    state: u8,
    local: SocketAddr,
    remote: SocketAddr,
    inode: u32,
    cookie: u64,
    /// `None` for TIME_WAIT and request sockets, which carry no tcp_info.
    counters: Option<TcpCounters>,
}

impl SocketRecord {
    fn from_response(response: &InetResponse) -> Option<SocketRecord> {
        let id = &response.header.socket_id;
        let counters = response.nlas.iter().find_map(|nla| match nla {
            Nla::TcpInfo(raw) => TcpCounters::parse(raw),
            _ => None,
        });
        Some(SocketRecord {
            family: response.header.family,
            state: response.header.state,
            local: canonical(SocketAddr::new(id.source_address, id.source_port)),
            remote: canonical(SocketAddr::new(id.destination_address, id.destination_port)),
            inode: response.header.inode,
            cookie: u64::from_ne_bytes(id.cookie),
            counters,
        })
    }
}

/// The `struct tcp_info` fields the observer reads.
///
/// Read at their offsets in the kernel's ABI (`include/uapi/linux/tcp.h`;
/// the struct only ever grows at its end) rather than through the crate's
/// full `TcpInfo` (its `rich_nlas` feature), which rejects a tcp_info
/// shorter than the newest kernel's and so fails on older nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TcpCounters {
    /// `tcpi_rcv_mss`: the peer's segment size as the kernel estimates it.
    receive_mss: u32,
    /// `tcpi_bytes_received` (Linux ≥ 4.1).
    bytes_received: u64,
    /// `tcpi_data_segs_in` (Linux ≥ 4.6); 0 where the kernel lacks it.
    segments_in: u32,
    /// `tcpi_last_data_recv`: time since the last data (or, for a
    /// connection without data yet, since it was created).
    since_last_receive: Duration,
}

impl TcpCounters {
    const RCV_MSS: usize = 20;
    const LAST_DATA_RECV: usize = 52;
    const BYTES_RECEIVED: usize = 128;
    const DATA_SEGS_IN: usize = 152;

    fn parse(raw: &[u8]) -> Option<TcpCounters> {
        let u32_at = |offset: usize| {
            raw.get(offset..offset + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
        };
        let bytes_received = raw
            .get(Self::BYTES_RECEIVED..Self::BYTES_RECEIVED + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_ne_bytes)?;
        Some(TcpCounters {
            receive_mss: u32_at(Self::RCV_MSS)?,
            bytes_received,
            segments_in: u32_at(Self::DATA_SEGS_IN).unwrap_or(0),
            since_last_receive: Duration::from_millis(u64::from(u32_at(Self::LAST_DATA_RECV)?)),
        })
    }
}

/// Requests carried by `bytes` in `segments` data segments: a request
/// ends in a segment shorter than the peer's MSS, so the full-size
/// segments are continuations. Never more than the segments, at least 1
/// when there are bytes (and where the kernel has no segment count).
fn requests_in(bytes: u64, segments: u32, receive_mss: u32) -> u64 {
    if bytes == 0 {
        return 0;
    }
    let continuations = bytes / u64::from(receive_mss.max(1));
    u64::from(segments).saturating_sub(continuations).max(1)
}

/// What marks a socket as drainit's own.
#[derive(Debug, Default)]
struct OwnSockets {
    /// Inodes of the sockets drainit holds open (its listeners).
    inodes: HashSet<u32>,
    /// Local addresses of drainit's connected sockets and of the client
    /// connections noted in [`OwnClients`]: the app-side socket whose
    /// peer is one of these is drainit's.
    endpoints: HashSet<SocketAddr>,
}

impl OwnSockets {
    /// drainit's sockets now (`/proc/self/fd/N` links `socket:[INODE]`,
    /// and the local address of each connected one), plus `noted`. If
    /// /proc cannot be read, only `noted` and the port selection keep
    /// drainit's own traffic out.
    fn of_this_process(noted: Vec<SocketAddr>) -> OwnSockets {
        let mut own = OwnSockets {
            inodes: HashSet::new(),
            endpoints: noted.into_iter().collect(),
        };
        let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
            return own;
        };
        for entry in entries.flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            let inode = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok());
            let fd = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<RawFd>().ok());
            let (Some(inode), Some(fd)) = (inode, fd) else {
                continue;
            };
            own.inodes.insert(inode);
            // Only a connected socket has a peer; its local address is
            // what the app side of the connection sees as its peer.
            if getpeername::<SockaddrStorage>(fd).is_ok() {
                if let Some(local) = getsockname::<SockaddrStorage>(fd)
                    .ok()
                    .and_then(|a| socket_addr(&a))
                {
                    own.endpoints.insert(canonical(local));
                }
            }
        }
        own
    }
}

/// A socket address as std spells it, for IPv4 and IPv6.
fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
}

/// The (family, port) of every listener to watch, sorted by port.
fn watched_listeners(
    listeners: &[SocketRecord],
    own: &OwnSockets,
    ports: &TrafficPorts,
) -> Vec<(u8, u16)> {
    let is_own = |s: &SocketRecord| s.inode != 0 && own.inodes.contains(&s.inode);
    // A port drainit listens on is its own, whatever else shares it.
    let drainit_ports: HashSet<u16> = listeners
        .iter()
        .filter(|s| is_own(s))
        .map(|s| s.local.port())
        .collect();
    let mut watched: Vec<(u8, u16)> = listeners
        .iter()
        .filter(|s| s.state == TCP_LISTEN)
        .map(|s| (s.family, s.local.port()))
        .filter(|(_, port)| match ports {
            TrafficPorts::AllListening => !drainit_ports.contains(port),
            TrafficPorts::Only(list) => list.contains(port),
        })
        .collect();
    watched.sort_unstable_by_key(|(family, port)| (*port, *family));
    watched.dedup();
    watched
}

/// Compares one dump of the connections on `ports` with the previous
/// one: the sample, and what to remember for the next comparison.
fn account(
    ports: Vec<u16>,
    connections: &[SocketRecord],
    own_endpoints: &HashSet<SocketAddr>,
    known: &HashMap<u64, Tracked>,
    previous: Option<Instant>,
    at: Instant,
) -> (Sample, HashMap<u64, Tracked>) {
    let mut sample = Sample {
        at,
        ports,
        new_connections: 0,
        inbound_bytes: 0,
        inbound_segments: 0,
        arrivals: 0,
        open_connections: 0,
        last_new_connection: None,
        last_inbound: None,
        dump_duration: Duration::ZERO,
    };
    // A stamp the kernel dates before the previous dump can only be the
    // rounding of its tick: clamp it into this sample's interval.
    let stamp = |counters: Option<&TcpCounters>| {
        let stamp = counters
            .and_then(|c| at.checked_sub(c.since_last_receive))
            .unwrap_or(at);
        previous.map_or(stamp, |p| stamp.max(p))
    };
    let mut remembered = HashMap::with_capacity(known.len());
    for socket in connections {
        if socket.state == TCP_LISTEN || sample.ports.binary_search(&socket.local.port()).is_err() {
            continue;
        }
        let before = known.get(&socket.cookie);
        let own = before.is_some_and(|t| t.own) || own_endpoints.contains(&socket.remote);
        let counters = socket.counters.as_ref();
        // The peer's FIN advances tcpi_bytes_received by one; a client
        // closing is no traffic.
        let fin = u64::from(PEER_CLOSED.contains(&socket.state));
        let tracked = Tracked {
            bytes_received: counters.map_or(before.map_or(0, |t| t.bytes_received), |c| {
                c.bytes_received.saturating_sub(fin)
            }),
            segments_in: counters.map_or(before.map_or(0, |t| t.segments_in), |c| c.segments_in),
            own,
        };
        remembered.insert(socket.cookie, tracked);
        if own {
            continue;
        }
        if socket.state == TCP_ESTABLISHED {
            sample.open_connections += 1;
        }
        if previous.is_none() {
            continue; // the first dump is the baseline
        }
        let (bytes, segments) = match before {
            Some(t) => (
                tracked.bytes_received.saturating_sub(t.bytes_received),
                tracked.segments_in.saturating_sub(t.segments_in),
            ),
            None => {
                sample.new_connections += 1;
                sample.last_new_connection = sample.last_new_connection.max(Some(stamp(counters)));
                (tracked.bytes_received, tracked.segments_in)
            }
        };
        let requests = requests_in(bytes, segments, counters.map_or(1, |c| c.receive_mss));
        // A new connection is one arrival even without data (a bare
        // connect); with data, its opening belongs to its first request.
        sample.arrivals += requests.max(u64::from(before.is_none()));
        if bytes > 0 {
            sample.inbound_bytes += bytes;
            sample.inbound_segments += u64::from(segments);
            sample.last_inbound = sample.last_inbound.max(Some(stamp(counters)));
        }
    }
    (sample, remembered)
}

/// An IPv4 address an IPv6 socket shows as `::ffff:a.b.c.d`, as plain
/// IPv4, so both sides of a dual-stack connection compare equal.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => SocketAddr::new(v6.to_canonical(), addr.port()),
        IpAddr::V4(_) => addr,
    }
}

/// The observer on a thread of its own, handing samples to the event
/// loop over a channel, so that no dump ever runs on the event loop.
///
/// Sampling is slow while the app runs ([`RUNNING_INTERVAL`]: enough to
/// count the arrival rate, the kernel's counters are cumulative) and fast
/// once the drain begins ([`DRAIN_INTERVAL`], via
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
    pub fn spawn(mut observer: Observer, interval: Duration) -> io::Result<Sampler> {
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
    /// [`DRAIN_INTERVAL`] when it begins).
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    fn connection(local: u16, remote: u16, cookie: u64, bytes: u64) -> SocketRecord {
        SocketRecord {
            family: AF_INET,
            state: TCP_ESTABLISHED,
            local: addr(local),
            remote: addr(remote),
            inode: 1000 + cookie as u32,
            cookie,
            counters: Some(TcpCounters {
                receive_mss: 1000,
                bytes_received: bytes,
                segments_in: u32::from(bytes > 0),
                since_last_receive: Duration::from_millis(10),
            }),
        }
    }

    fn listener(family: u8, port: u16, inode: u32) -> SocketRecord {
        SocketRecord {
            family,
            state: TCP_LISTEN,
            local: addr(port),
            remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            inode,
            cookie: u64::from(inode),
            counters: None,
        }
    }

    /// `account` over a first (baseline) and a second dump 100 ms later.
    fn two_dumps(
        first: &[SocketRecord],
        second: &[SocketRecord],
        own: &HashSet<SocketAddr>,
    ) -> (Sample, HashMap<u64, Tracked>) {
        let t0 = Instant::now();
        let (_, known) = account(vec![8080], first, own, &HashMap::new(), None, t0);
        account(
            vec![8080],
            second,
            own,
            &known,
            Some(t0),
            t0 + Duration::from_millis(100),
        )
    }

    #[test]
    fn traffic_ports_parse_all_or_a_list() {
        let table: &[(&str, Option<TrafficPorts>)] = &[
            ("all", Some(TrafficPorts::AllListening)),
            ("ALL", Some(TrafficPorts::AllListening)),
            ("8080", Some(TrafficPorts::Only(vec![8080]))),
            (
                "8443, 8080,8080",
                Some(TrafficPorts::Only(vec![8080, 8443])),
            ),
            ("0", None),
            ("65536", None),
            ("8080,", None),
            ("http", None),
            ("", None),
        ];
        for (input, expected) in table {
            assert_eq!(input.parse::<TrafficPorts>().ok(), *expected, "{input:?}");
        }
        let error = "x"
            .parse::<TrafficPorts>()
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(error.contains("8080,8443"), "{error}");
    }

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

    #[test]
    fn tcp_info_fields_are_read_at_their_abi_offsets() {
        let mut raw = vec![0u8; 232];
        raw[20..24].copy_from_slice(&1448u32.to_ne_bytes());
        raw[52..56].copy_from_slice(&250u32.to_ne_bytes());
        raw[128..136].copy_from_slice(&123_456u64.to_ne_bytes());
        raw[152..156].copy_from_slice(&7u32.to_ne_bytes());
        let counters = TcpCounters::parse(&raw).expect("long enough");
        assert_eq!(counters.receive_mss, 1448);
        assert_eq!(counters.bytes_received, 123_456);
        assert_eq!(counters.segments_in, 7);
        assert_eq!(counters.since_last_receive, Duration::from_millis(250));
        // An old kernel's tcp_info without data_segs_in still gives bytes.
        assert_eq!(
            TcpCounters::parse(&raw[..136]).map(|c| c.segments_in),
            Some(0)
        );
        // One without bytes_received is of no use.
        assert_eq!(TcpCounters::parse(&raw[..104]), None);
    }

    #[test]
    fn requests_are_estimated_from_bytes_and_segments() {
        // (bytes, segments, mss) -> requests
        let table = [
            (0, 0, 1448, 0),
            (300, 1, 1448, 1),     // one small request
            (3000, 10, 1448, 8),   // ten small requests: undercounted, never over
            (14_480, 10, 1448, 1), // one upload of ten full segments
            (14_780, 11, 1448, 1), // the same upload and its last partial segment
            (500, 0, 1448, 1),     // no segment count (old kernel): at least 1
            (500, 3, 0, 1),        // no MSS estimate yet
        ];
        for (bytes, segments, mss, expected) in table {
            assert_eq!(
                requests_in(bytes, segments, mss),
                expected,
                "{bytes} bytes in {segments} segments"
            );
        }
    }

    #[test]
    fn new_connections_and_inbound_bytes_are_counted_from_the_second_dump_on() {
        let t0 = Instant::now();
        let first = [connection(8080, 40000, 1, 100)];
        let (baseline, known) = account(
            vec![8080],
            &first,
            &HashSet::new(),
            &HashMap::new(),
            None,
            t0,
        );
        assert_eq!(
            (
                baseline.new_connections,
                baseline.inbound_bytes,
                baseline.arrivals
            ),
            (0, 0, 0)
        );
        assert_eq!(baseline.open_connections, 1);

        let t1 = t0 + Duration::from_millis(100);
        let second = [
            connection(8080, 40000, 1, 150),
            connection(8080, 40001, 2, 30),
            // The client side of a connection within the namespace.
            connection(40001, 8080, 3, 999),
        ];
        let (sample, _) = account(vec![8080], &second, &HashSet::new(), &known, Some(t0), t1);
        assert_eq!(sample.new_connections, 1);
        assert_eq!(sample.inbound_bytes, 50 + 30);
        assert_eq!(sample.arrivals, 2);
        assert_eq!(sample.open_connections, 2);
        assert_eq!(sample.last_inbound, Some(t1 - Duration::from_millis(10)));
        assert_eq!(
            sample.last_new_connection,
            Some(t1 - Duration::from_millis(10))
        );
    }

    #[test]
    fn drainit_listeners_are_not_watched() {
        let own = OwnSockets {
            inodes: [9].into_iter().collect(),
            endpoints: HashSet::new(),
        };
        let listeners = [
            listener(AF_INET, 8080, 1),
            listener(AF_INET6, 8080, 2),
            listener(AF_INET, 9901, 9),
            listener(AF_INET6, 9901, 10), // drainit's port, someone else's socket
            listener(AF_INET6, 8443, 3),
        ];
        let all = watched_listeners(&listeners, &own, &TrafficPorts::AllListening);
        assert_eq!(
            all,
            vec![(AF_INET, 8080), (AF_INET6, 8080), (AF_INET6, 8443)]
        );
        let only = watched_listeners(&listeners, &own, &TrafficPorts::Only(vec![8443, 7000]));
        assert_eq!(only, vec![(AF_INET6, 8443)]);
    }

    #[test]
    fn drainit_own_clients_are_left_out_for_their_whole_life() {
        let own: HashSet<SocketAddr> = [addr(45000)].into_iter().collect();
        let app_side_of_probe = connection(8080, 45000, 8, 40);
        let (sample, known) = two_dumps(&[], std::slice::from_ref(&app_side_of_probe), &own);
        assert_eq!(
            (
                sample.new_connections,
                sample.open_connections,
                sample.inbound_bytes
            ),
            (0, 0, 0)
        );
        // The probe's socket is gone (not in `own` any more); the app side
        // lingers in TIME_WAIT: still drainit's.
        let mut later = app_side_of_probe;
        later.counters = None;
        later.state = 6;
        let t2 = Instant::now() + Duration::from_millis(200);
        let (sample, _) = account(vec![8080], &[later], &HashSet::new(), &known, Some(t2), t2);
        assert_eq!((sample.new_connections, sample.arrivals), (0, 0));
    }

    #[test]
    fn a_connection_seen_first_in_time_wait_is_one_arrival_dated_in_its_interval() {
        let mut short = connection(8080, 40000, 5, 0);
        short.counters = None;
        short.state = 6; // TIME_WAIT
        let (sample, _) = two_dumps(&[], &[short], &HashSet::new());
        assert_eq!((sample.new_connections, sample.arrivals), (1, 1));
        assert_eq!(sample.open_connections, 0);
        assert_eq!(sample.last_new_connection, Some(sample.at));
        assert_eq!(sample.last_arrival(), Some(sample.at));
    }

    #[test]
    fn the_peers_fin_is_not_an_inbound_byte() {
        let open = connection(8080, 40000, 5, 100);
        let mut closed = connection(8080, 40000, 5, 101);
        closed.state = 8; // CLOSE_WAIT: the client's FIN is in
        let (sample, _) = two_dumps(&[open], &[closed], &HashSet::new());
        assert_eq!((sample.inbound_bytes, sample.arrivals), (0, 0));
        assert_eq!(sample.open_connections, 0);
    }

    #[test]
    fn kernel_stamps_older_than_the_previous_dump_are_clamped_into_the_interval() {
        let mut stale = connection(8080, 40000, 5, 10);
        if let Some(c) = stale.counters.as_mut() {
            c.since_last_receive = Duration::from_secs(5);
        }
        let (sample, _) = two_dumps(&[], &[stale], &HashSet::new());
        let previous = sample.at - Duration::from_millis(100);
        assert_eq!(sample.last_inbound, Some(previous));
    }
}
