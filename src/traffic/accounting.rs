//! Comparing one dump with the previous: which connections are new, what
//! arrived on them, which are drainit's own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use nix::sys::socket::{getpeername, getsockname, SockaddrStorage};
use tokio::time::Instant;

use super::sock_diag::{
    canonical, SocketRecord, TcpCounters, PEER_CLOSED, PEER_MAY_SEND, TCP_ESTABLISHED, TCP_LISTEN,
};

/// How long Linux keeps a socket in TIME_WAIT (`TCP_TIMEWAIT_LEN`), and an
/// orphaned FIN_WAIT2 one by default (`tcp_fin_timeout`): what a TIME_WAIT
/// socket's timer has left dates its entry into that state.
const TIME_WAIT_PERIOD: Duration = Duration::from_secs(60);

/// The kernel's stamps are counted in ticks (1–10 ms): a stamp this much
/// before the previous dump's start may still be from after it.
const KERNEL_TICK: Duration = Duration::from_millis(20);
use super::{Sample, TrafficPorts};

/// What the previous dump recorded of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tracked {
    state: u8,
    bytes_received: u64,
    segments_in: u32,
    /// One of drainit's own connections: skipped for its whole life.
    own: bool,
}

/// Requests carried by `bytes` in `segments` data segments: a request
/// ends in a segment shorter than the peer's MSS, so the full-size
/// segments are continuations. Never more than the segments, at least 1
/// when there are bytes (and where the kernel has no segment count).
pub(super) fn requests_in(bytes: u64, segments: u32, receive_mss: u32) -> u64 {
    if bytes == 0 {
        return 0;
    }
    let continuations = bytes / u64::from(receive_mss.max(1));
    u64::from(segments).saturating_sub(continuations).max(1)
}

/// What marks a socket as drainit's own.
#[derive(Debug, Default)]
pub(super) struct OwnSockets {
    /// Inodes of the sockets drainit holds open (its listeners).
    pub(super) inodes: Vec<u32>,
    /// Local addresses of drainit's connected sockets and of the client
    /// connections noted in [`OwnClients`]: the app-side socket whose
    /// peer is one of these is drainit's.
    pub(super) endpoints: Vec<SocketAddr>,
    /// The ports drainit listens on as it bound them (its admin port):
    /// never watched, even where /proc cannot show its sockets.
    pub(super) ports: Vec<u16>,
}

impl OwnSockets {
    /// drainit's sockets now (`/proc/self/fd/N` links `socket:[INODE]`,
    /// and the local address of each connected one); the caller adds the
    /// noted client addresses. If /proc cannot be read, only those notes
    /// and the port selection keep drainit's own traffic out.
    pub(super) fn of_this_process() -> OwnSockets {
        let mut own = OwnSockets::default();
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
            own.inodes.push(inode);
            // Only a connected socket has a peer; its local address is
            // what the app side of the connection sees as its peer.
            if getpeername::<SockaddrStorage>(fd).is_ok() {
                if let Some(local) = getsockname::<SockaddrStorage>(fd)
                    .ok()
                    .and_then(|a| socket_addr(&a))
                {
                    own.endpoints.push(canonical(local));
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

/// Inserts `value` into the sorted `list` unless it is there: keeps the
/// few ports and listeners sorted and unique without a sort routine in
/// the binary.
pub(super) fn insert_sorted<T: Ord>(list: &mut Vec<T>, value: T) {
    if let Err(at) = list.binary_search(&value) {
        list.insert(at, value);
    }
}

/// The (port, family) of every listener to watch, sorted.
pub(super) fn watched_listeners(
    listeners: &[SocketRecord],
    own: &OwnSockets,
    ports: &TrafficPorts,
) -> Vec<(u16, u8)> {
    let is_own = |s: &SocketRecord| s.inode != 0 && own.inodes.contains(&s.inode);
    // A port drainit listens on is its own, whatever else shares it.
    let drainit_ports: Vec<u16> = listeners
        .iter()
        .filter(|s| is_own(s))
        .map(|s| s.local_port)
        .chain(own.ports.iter().copied())
        .collect();
    let mut watched = Vec::new();
    for listener in listeners.iter().filter(|s| s.state == TCP_LISTEN) {
        let port = listener.local_port;
        let wanted = match ports {
            TrafficPorts::AllListening => !drainit_ports.contains(&port),
            TrafficPorts::Only(list) => list.contains(&port),
        };
        if wanted {
            insert_sorted(&mut watched, (port, listener.family));
        }
    }
    watched
}

/// Compares one dump of the connections on `ports` with the previous
/// one, which began at `previous` (`None`: this dump is the first, the
/// baseline): the sample, and what to remember for the next comparison.
///
/// A connection the previous dump did not show is new only when the
/// kernel dates it after that dump began: by its TIME_WAIT timer, or by
/// its last receive (a new socket's creation). Every other one was there
/// unseen (left on the port by an earlier server, a restarted container,
/// a port the previous dump did not watch yet): it is remembered, never
/// counted, so the rate is what the app really served while observed.
pub(super) fn account(
    ports: Vec<u16>,
    connections: &[SocketRecord],
    own_endpoints: &[SocketAddr],
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
        closed_unseen: 0,
        last_close_unseen: None,
        dump_duration: Duration::ZERO,
        dumped_connections: 0,
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
        if socket.state == TCP_LISTEN || sample.ports.binary_search(&socket.local_port).is_err() {
            continue;
        }
        let before = known.get(&socket.cookie);
        let own = before.is_some_and(|t| t.own) || own_endpoints.contains(&socket.remote);
        let counters = socket.counters.as_ref();
        // The peer's FIN advances tcpi_bytes_received by one; a client
        // closing is no traffic.
        let fin = u64::from(PEER_CLOSED.contains(&socket.state));
        let tracked = Tracked {
            state: socket.state,
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
            None => match previous.and_then(|p| dated_after(socket, p, at)) {
                Some(opened) => {
                    sample.new_connections += 1;
                    let opened = previous.map_or(opened, |p| opened.max(p));
                    sample.last_new_connection = sample.last_new_connection.max(Some(opened));
                    (tracked.bytes_received, tracked.segments_in)
                }
                // There before the previous dump, unseen: a baseline.
                None => continue,
            },
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
    // A connection gone since the previous dump, last seen where its
    // client could still send: its last bytes, if any, went unseen.
    if previous.is_some() {
        for (cookie, tracked) in known {
            if !tracked.own
                && PEER_MAY_SEND.contains(&tracked.state)
                && !remembered.contains_key(cookie)
            {
                sample.closed_unseen += 1;
                sample.last_close_unseen = Some(at);
            }
        }
    }
    (sample, remembered)
}

/// When the kernel says a socket absent from the dump that began at
/// `previous` last did something (entered TIME_WAIT, received data, or
/// was created), if that is after `previous` (less a tick): only then
/// can it be a connection made since. A request socket (SYN_RECV, no
/// tcp_info, no timer) is always that young.
fn dated_after(socket: &SocketRecord, previous: Instant, at: Instant) -> Option<Instant> {
    let dated = match (socket.time_wait_left, &socket.counters) {
        (Some(left), _) => at.checked_sub(TIME_WAIT_PERIOD.saturating_sub(left))?,
        (None, Some(counters)) => at.checked_sub(counters.since_last_receive)?,
        (None, None) => at,
    };
    let late_enough = dated
        .checked_add(KERNEL_TICK)
        .is_none_or(|dated| dated >= previous);
    late_enough.then_some(dated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6};
    use std::net::{IpAddr, Ipv4Addr};

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    fn connection(local: u16, remote: u16, cookie: u64, bytes: u64) -> SocketRecord {
        SocketRecord {
            family: AF_INET,
            state: TCP_ESTABLISHED,
            local_port: local,
            remote: addr(remote),
            inode: 1000 + cookie as u32,
            cookie,
            counters: Some(TcpCounters {
                receive_mss: 1000,
                bytes_received: bytes,
                segments_in: u32::from(bytes > 0),
                since_last_receive: Duration::from_millis(10),
            }),
            time_wait_left: None,
        }
    }

    fn listener(family: u8, port: u16, inode: u32) -> SocketRecord {
        SocketRecord {
            family,
            state: TCP_LISTEN,
            local_port: port,
            remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            inode,
            cookie: u64::from(inode),
            counters: None,
            time_wait_left: None,
        }
    }

    /// `account` over a first (baseline) and a second dump 100 ms later.
    fn two_dumps(
        first: &[SocketRecord],
        second: &[SocketRecord],
        own: &[SocketAddr],
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
        let (baseline, known) = account(vec![8080], &first, &[], &HashMap::new(), None, t0);
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
        let (sample, _) = account(vec![8080], &second, &[], &known, Some(t0), t1);
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
            inodes: vec![9],
            ..OwnSockets::default()
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
            vec![(8080, AF_INET), (8080, AF_INET6), (8443, AF_INET6)]
        );
        let only = watched_listeners(&listeners, &own, &TrafficPorts::Only(vec![8443, 7000]));
        assert_eq!(only, vec![(8443, AF_INET6)]);
        // No /proc: no inode is known, the bound port still is.
        let bound = OwnSockets {
            ports: vec![9901],
            ..OwnSockets::default()
        };
        let all = watched_listeners(&listeners, &bound, &TrafficPorts::AllListening);
        assert_eq!(
            all,
            vec![(8080, AF_INET), (8080, AF_INET6), (8443, AF_INET6)]
        );
    }

    #[test]
    fn drainit_own_clients_are_left_out_for_their_whole_life() {
        let own = [addr(45000)];
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
        let (sample, _) = account(vec![8080], &[later], &[], &known, Some(t2), t2);
        assert_eq!((sample.new_connections, sample.arrivals), (0, 0));
    }

    /// A socket in TIME_WAIT whose timer has `left` of its 60 s.
    fn in_time_wait(cookie: u64, left: Duration) -> SocketRecord {
        let mut socket = connection(8080, 40000 + cookie as u16, cookie, 0);
        socket.counters = None;
        socket.state = 6; // TIME_WAIT
        socket.time_wait_left = Some(left);
        socket
    }

    #[test]
    fn a_connection_seen_first_in_time_wait_is_one_arrival_dated_by_its_timer() {
        // Entered TIME_WAIT 30 ms ago, after the previous dump (100 ms ago).
        let short = in_time_wait(5, Duration::from_millis(59_970));
        let (sample, _) = two_dumps(&[], &[short], &[]);
        assert_eq!((sample.new_connections, sample.arrivals), (1, 1));
        assert_eq!(sample.open_connections, 0);
        let entered = sample.at - Duration::from_millis(30);
        assert_eq!(sample.last_new_connection, Some(entered));
        assert_eq!(sample.evidence().last_arrival(), Some(entered));
    }

    #[test]
    fn sockets_left_on_the_port_before_the_previous_dump_are_no_arrivals() {
        // A previous server's TIME_WAIT sockets (entered 1-3 s ago), a
        // FIN_WAIT2 orphan, and an idle connection first seen now (a port
        // just watched): the kernel dates each before the previous dump.
        let mut leftovers: Vec<SocketRecord> = (0..3000)
            .map(|n| in_time_wait(100 + n, Duration::from_millis(57_000 + n % 2000)))
            .collect();
        let mut orphan = in_time_wait(9000, Duration::from_secs(50));
        orphan.state = 5; // FIN_WAIT2
        leftovers.push(orphan);
        let mut idle = connection(8080, 39000, 9001, 300);
        if let Some(c) = idle.counters.as_mut() {
            c.since_last_receive = Duration::from_secs(4);
        }
        leftovers.push(idle);
        let (sample, known) = two_dumps(&[], &leftovers, &[]);
        assert_eq!(
            (
                sample.new_connections,
                sample.arrivals,
                sample.inbound_bytes
            ),
            (0, 0, 0)
        );
        assert_eq!(sample.last_new_connection, None);
        assert_eq!(sample.open_connections, 1, "the idle connection is open");
        // Remembered: what the idle one receives later counts.
        let mut later = connection(8080, 39000, 9001, 420);
        if let Some(c) = later.counters.as_mut() {
            c.since_last_receive = Duration::from_millis(5);
        }
        let t = Instant::now() + Duration::from_millis(300);
        let (sample, _) = account(
            vec![8080],
            &[later],
            &[],
            &known,
            Some(t - Duration::from_millis(100)),
            t,
        );
        assert_eq!((sample.inbound_bytes, sample.new_connections), (120, 0));
    }

    #[test]
    fn the_peers_fin_is_not_an_inbound_byte() {
        let open = connection(8080, 40000, 5, 100);
        let mut closed = connection(8080, 40000, 5, 101);
        closed.state = 8; // CLOSE_WAIT: the client's FIN is in
        let (sample, _) = two_dumps(&[open], &[closed], &[]);
        assert_eq!((sample.inbound_bytes, sample.arrivals), (0, 0));
        assert_eq!(sample.open_connections, 0);
    }

    #[test]
    fn a_connection_gone_while_its_client_could_send_is_a_possible_unseen_arrival() {
        let open = connection(8080, 40000, 5, 100);
        let (sample, _) = two_dumps(std::slice::from_ref(&open), &[], &[]);
        assert_eq!(sample.closed_unseen, 1);
        assert_eq!(sample.last_close_unseen, Some(sample.at));
        assert_eq!(sample.evidence().last_arrival(), Some(sample.at));
        assert_eq!(
            (sample.arrivals, sample.inbound_bytes),
            (0, 0),
            "not counted in the rate"
        );
        // Seen after the client's FIN (no byte can follow), then gone: nothing unseen.
        let mut closing = open;
        closing.state = 8; // CLOSE_WAIT
        let (sample, _) = two_dumps(&[closing], &[], &[]);
        assert_eq!((sample.closed_unseen, sample.last_close_unseen), (0, None));
    }

    #[test]
    fn kernel_stamps_older_than_the_previous_dump_are_clamped_into_the_interval() {
        let seen = connection(8080, 40000, 5, 10);
        let mut stale = connection(8080, 40000, 5, 30);
        if let Some(c) = stale.counters.as_mut() {
            c.since_last_receive = Duration::from_secs(5);
        }
        let (sample, _) = two_dumps(&[seen], &[stale], &[]);
        let previous = sample.at - Duration::from_millis(100);
        assert_eq!(sample.inbound_bytes, 20);
        assert_eq!(sample.last_inbound, Some(previous));
    }
}
