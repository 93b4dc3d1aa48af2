//! The netlink side of the observer: one `SOCK_DIAG_BY_FAMILY` dump of
//! TCP sockets, filtered by the kernel, its answer decoded into
//! [`SocketRecord`]s.
//!
//! What a dump costs follows what the kernel hands over: every socket
//! that passes the state mask and the port filter is locked for its
//! `tcp_info`, copied into the netlink buffer and decoded here. So the
//! kernel filters (the state mask; one port in the request itself, more
//! with an `inet_diag` bytecode program of port comparisons), listeners
//! come without `tcp_info`, and each answer is read in place (the fixed
//! `inet_diag_msg` and its attributes) rather than into owned values.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use netlink_packet_core::{
    NetlinkBuffer, NetlinkHeader, NetlinkMessage, NlasIterator, NLMSG_DONE, NLMSG_ERROR,
    NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{AF_INET, IPPROTO_TCP, SOCK_DIAG_BY_FAMILY};
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr as NetlinkAddr};

use super::TrafficError;

/// The netlink receive buffer: the kernel fills at most 32 KiB per
/// datagram of a dump (`max_recvmsg_len` is capped there).
const RECEIVE_BUFFER: usize = 32 * 1024;

/// TCP states from `include/net/tcp_states.h`.
pub(super) const TCP_ESTABLISHED: u8 = 1;
pub(super) const TCP_LISTEN: u8 = 10;
/// The states in which the peer can still send data: ESTABLISHED,
/// SYN_RECV, FIN_WAIT1, FIN_WAIT2.
pub(super) const PEER_MAY_SEND: [u8; 4] = [1, 3, 4, 5];
/// The states with tcp_info after the peer's FIN: CLOSE_WAIT, LAST_ACK,
/// CLOSING.
pub(super) const PEER_CLOSED: [u8; 3] = [8, 9, 11];

/// The connection states dumped: those an accepted connection goes
/// through, SYN_RECV to TIME_WAIT. Not LISTEN (dumped apart), CLOSE
/// (unbound sockets) nor SYN_SENT (outgoing handshakes).
pub(super) fn connection_states() -> StateFlags {
    StateFlags::all() - StateFlags::LISTEN - StateFlags::CLOSE - StateFlags::SYN_SENT
}

/// `struct inet_diag_msg`: the fixed part of each answer.
const INET_DIAG_MSG_LEN: usize = 72;
/// `INET_DIAG_INFO`: the answer's attribute carrying `struct tcp_info`.
const INET_DIAG_INFO: u16 = 2;
/// `INET_DIAG_REQ_BYTECODE`: the request's attribute carrying a filter.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// `idiag_timer` of a TIME_WAIT socket, whose `idiag_expires` is what is
/// left of its TIME_WAIT period.
const TIMER_TIME_WAIT: u8 = 3;
/// Bytecode op codes (`include/uapi/linux/inet_diag.h`) every kernel
/// with inet_diag has (`S_EQ` came only in 4.16).
const BC_JMP: u8 = 1;
const BC_S_GE: u8 = 2;
const BC_S_LE: u8 = 3;
/// The most ports one bytecode program filters by (20 bytes each, all
/// jumps within a u16); past it the kernel sends the connections of every
/// port and the accounting filters them.
const MOST_FILTERED_PORTS: usize = 1024;

/// Which local ports a dump asks the kernel for.
#[derive(Debug, Clone, Copy)]
pub(super) enum PortFilter<'a> {
    /// Every socket (the listeners' dump).
    Any,
    /// Only these (sorted, unique, not empty).
    Only(&'a [u16]),
}

/// The `inet_diag` bytecode that accepts a socket whose local port is in
/// `ports` (at most [`MOST_FILTERED_PORTS`]) and rejects every other.
///
/// An op is `{ code: u8, yes: u8, no: u16 }`, `yes`/`no` the byte offsets
/// to go on by when its condition holds or not; a program accepts when it
/// runs off its end exactly, rejects when it jumps 4 bytes past it. The
/// kernel accepts only programs whose `yes` chain runs to the end, so
/// every `yes` steps to the next op and the misses jump: per port
/// `sport >= p` (miss: the next port), `sport <= p` (miss: the next
/// port), then a jump to the end (accept); the last port's misses reject
/// and its match runs off the end. A port comparison's operand is the
/// `no` of the op after it.
fn port_filter(ports: &[u16]) -> Vec<u8> {
    const BLOCK: usize = 20;
    let length = (ports.len() * BLOCK).saturating_sub(4);
    let mut program = Vec::with_capacity(length);
    let mut op = |code: u8, yes: u8, no: usize| {
        program.push(code);
        program.push(yes);
        program.extend_from_slice(&u16::try_from(no).unwrap_or(u16::MAX).to_ne_bytes());
    };
    for (index, &port) in ports.iter().enumerate() {
        let start = index * BLOCK;
        let last = index + 1 == ports.len();
        // From the op at `at`: the next port's first op, or past the end.
        let miss = |at: usize| {
            if last {
                length + 4 - at
            } else {
                start + BLOCK - at
            }
        };
        op(BC_S_GE, 8, miss(start));
        op(0, 0, usize::from(port));
        op(BC_S_LE, 8, miss(start + 8));
        op(0, 0, usize::from(port));
        if !last {
            op(BC_JMP, 4, length - (start + 16));
        }
    }
    program
}

/// One netlink `sock_diag` socket and the state of its requests.
pub(super) struct SockDiag {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl SockDiag {
    /// Opens and connects the netlink socket (to the kernel).
    pub(super) fn open() -> Result<SockDiag, TrafficError> {
        let open_error = |e| TrafficError::classify(e, TrafficError::Open);
        let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(open_error)?;
        socket.bind_auto().map_err(open_error)?;
        socket
            .connect(&NetlinkAddr::new(0, 0))
            .map_err(open_error)?;
        Ok(SockDiag {
            socket,
            sequence: 0,
            // Filled through its spare capacity: only the pages the
            // kernel writes are ever touched.
            buffer: Vec::with_capacity(RECEIVE_BUFFER),
        })
    }

    /// One `SOCK_DIAG_BY_FAMILY` dump of the TCP sockets of `family` in
    /// `states` on the local ports of `ports`, appended to `into`; with
    /// `tcp_info` when `with_info`.
    pub(super) fn dump(
        &mut self,
        family: u8,
        states: StateFlags,
        ports: PortFilter<'_>,
        with_info: bool,
        into: &mut Vec<SocketRecord>,
    ) -> Result<(), TrafficError> {
        self.sequence = self.sequence.wrapping_add(1);
        let request = dump_request(self.sequence, family, states, ports, with_info);
        self.socket
            .send(&request, 0)
            .map_err(|e| TrafficError::classify(e, TrafficError::Send))?;

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
            if decode_datagram(datagram, self.sequence, into)? {
                return Ok(());
            }
        }
    }
}

/// The bytes of a dump request: the netlink header and `inet_diag_req_v2`
/// (written by the crate), then the port filter's bytecode attribute when
/// more than one port is asked for (one goes in the request itself).
fn dump_request(
    sequence: u32,
    family: u8,
    states: StateFlags,
    ports: PortFilter<'_>,
    with_info: bool,
) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = sequence;
    let mut socket_id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    let bytecode = match ports {
        PortFilter::Only(&[port]) => {
            socket_id.source_port = port;
            None
        }
        PortFilter::Only(list) if list.len() <= MOST_FILTERED_PORTS => Some(port_filter(list)),
        PortFilter::Only(_) | PortFilter::Any => None,
    };
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: if with_info {
                ExtensionFlags::INFO
            } else {
                ExtensionFlags::empty()
            },
            states,
            socket_id,
        })
        .into(),
    );
    request.finalize();
    let mut bytes = vec![0; request.buffer_len()];
    request.serialize(&mut bytes);
    if let Some(program) = bytecode {
        // struct nlattr { u16 len; u16 type; } and the program (its length
        // a multiple of 4: no padding).
        let attribute_length = 4 + program.len();
        bytes.extend_from_slice(
            &u16::try_from(attribute_length)
                .unwrap_or(u16::MAX)
                .to_ne_bytes(),
        );
        bytes.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        bytes.extend_from_slice(&program);
        let total = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        NetlinkBuffer::new(&mut bytes[..]).set_length(total);
    }
    bytes
}

/// Decodes one datagram of a dump into `sockets`; true once the dump is
/// complete (`NLMSG_DONE`).
fn decode_datagram(
    mut datagram: &[u8],
    sequence: u32,
    sockets: &mut Vec<SocketRecord>,
) -> Result<bool, TrafficError> {
    while !datagram.is_empty() {
        let message = NetlinkBuffer::new_checked(datagram)
            .map_err(|e| TrafficError::Decode(e.to_string()))?;
        let length = message.length() as usize;
        let (kind, number) = (message.message_type(), message.sequence_number());
        // Netlink messages are padded to 4 bytes.
        datagram = datagram
            .get(length.next_multiple_of(4)..)
            .unwrap_or_default();
        if number != sequence {
            continue; // an answer to an earlier, abandoned request
        }
        match kind {
            SOCK_DIAG_BY_FAMILY => sockets.push(SocketRecord::parse(message.payload())?),
            NLMSG_DONE => return Ok(true),
            // struct nlmsgerr: a negative errno (0: an acknowledgement),
            // then the request's header. Read by hand: the crate's decoder
            // of whole messages would come into the binary for this alone.
            NLMSG_ERROR => match message
                .payload()
                .get(..4)
                .map(|b| i32::from_ne_bytes(b.try_into().unwrap_or_default()))
            {
                Some(0) => {}
                Some(code) => {
                    let error = std::io::Error::from_raw_os_error(code.saturating_neg());
                    return Err(TrafficError::classify(error, TrafficError::Refused));
                }
                None => {
                    return Err(TrafficError::Decode(
                        "an error message without its code".to_string(),
                    ))
                }
            },
            _ => {}
        }
    }
    Ok(false)
}

/// The parts of one dumped socket the observer uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SocketRecord {
    pub(super) family: u8,
    pub(super) state: u8,
    pub(super) local_port: u16,
    pub(super) remote: SocketAddr,
    pub(super) inode: u32,
    pub(super) cookie: u64,
    /// `None` for TIME_WAIT and request sockets, which carry no tcp_info
    /// (and for listeners, dumped without it).
    pub(super) counters: Option<TcpCounters>,
    /// For a TIME_WAIT socket (and a FIN_WAIT2 one its process closed),
    /// what is left of the period it stays (`idiag_expires`).
    pub(super) time_wait_left: Option<Duration>,
}

impl SocketRecord {
    /// Reads one `struct inet_diag_msg` and its attributes in place:
    /// family, state, timer at 0, 1, 2; the socket id at 4 (ports in
    /// network order, addresses of 16 bytes, interface, cookie); expires
    /// at 52, inode at 68.
    fn parse(payload: &[u8]) -> Result<SocketRecord, TrafficError> {
        let Some(fixed) = payload
            .get(..INET_DIAG_MSG_LEN)
            .and_then(|b| <&[u8; INET_DIAG_MSG_LEN]>::try_from(b).ok())
        else {
            return Err(TrafficError::Decode(format!(
                "an inet_diag_msg of {} bytes, fewer than {INET_DIAG_MSG_LEN}",
                payload.len()
            )));
        };
        let [family, state, timer, ..] = *fixed;
        // Within the 72 bytes by construction: every offset below is.
        fn array<const N: usize>(fixed: &[u8], at: usize) -> [u8; N] {
            fixed
                .get(at..at + N)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0; N])
        }
        let u16_be = |at: usize| u16::from_be_bytes(array(fixed, at));
        let u32_ne = |at: usize| u32::from_ne_bytes(array(fixed, at));
        let remote_ip = if family == AF_INET {
            IpAddr::V4(Ipv4Addr::from(array::<4>(fixed, 24)))
        } else {
            IpAddr::V6(Ipv6Addr::from(array::<16>(fixed, 24)))
        };
        let counters = NlasIterator::new(payload.get(INET_DIAG_MSG_LEN..).unwrap_or_default())
            .filter_map(Result::ok)
            .find(|nla| nla.kind() == INET_DIAG_INFO)
            .and_then(|nla| TcpCounters::parse(nla.value()));
        Ok(SocketRecord {
            family,
            state,
            local_port: u16_be(4),
            remote: canonical(SocketAddr::new(remote_ip, u16_be(6))),
            inode: u32_ne(68),
            cookie: u64::from_ne_bytes(array(fixed, 44)),
            counters,
            time_wait_left: (timer == TIMER_TIME_WAIT)
                .then(|| Duration::from_millis(u64::from(u32_ne(52)))),
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
pub(super) struct TcpCounters {
    /// `tcpi_rcv_mss`: the peer's segment size as the kernel estimates it.
    pub(super) receive_mss: u32,
    /// `tcpi_bytes_received` (Linux ≥ 4.1).
    pub(super) bytes_received: u64,
    /// `tcpi_data_segs_in` (Linux ≥ 4.6); 0 where the kernel lacks it.
    pub(super) segments_in: u32,
    /// `tcpi_last_data_recv`: time since the last data (or, for a
    /// connection without data yet, since it was created).
    pub(super) since_last_receive: Duration,
}

impl TcpCounters {
    const RCV_MSS: usize = 20;
    const LAST_DATA_RECV: usize = 52;
    const BYTES_RECEIVED: usize = 128;
    const DATA_SEGS_IN: usize = 152;

    pub(super) fn parse(raw: &[u8]) -> Option<TcpCounters> {
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

/// An IPv4 address an IPv6 socket shows as `::ffff:a.b.c.d`, as plain
/// IPv4, so both sides of a dual-stack connection compare equal.
pub(super) fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => SocketAddr::new(v6.to_canonical(), addr.port()),
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{DoneMessage, ErrorMessage, NetlinkPayload};
    use std::num::NonZeroI32;

    /// One serialized netlink message with `payload`, numbered `sequence`.
    fn datagram(sequence: u32, payload: NetlinkPayload<SockDiagMessage>) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.sequence_number = sequence;
        let mut message = NetlinkMessage::new(header, payload);
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        bytes
    }

    #[test]
    fn a_dumped_socket_is_decoded_with_its_counters_and_plain_ipv4_addresses() {
        use netlink_packet_sock_diag::constants::AF_INET6;
        use netlink_packet_sock_diag::inet::{nlas::Nla, InetResponse, InetResponseHeader};
        let mut tcp_info = vec![0u8; 232];
        tcp_info[128..136].copy_from_slice(&4321u64.to_ne_bytes());
        let mut response = InetResponse {
            header: InetResponseHeader {
                family: AF_INET6,
                state: TCP_ESTABLISHED,
                timer: None,
                socket_id: SocketId {
                    source_port: 8080,
                    destination_port: 40000,
                    source_address: "::ffff:127.0.0.1".parse().expect("address"),
                    destination_address: "::ffff:127.0.0.2".parse().expect("address"),
                    interface_id: 0,
                    cookie: 42u64.to_ne_bytes(),
                },
                recv_queue: 0,
                send_queue: 0,
                uid: 65534,
                inode: 99,
            },
            nlas: Default::default(),
        };
        response.nlas.push(Nla::TcpInfo(tcp_info));
        let bytes = datagram(
            3,
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(Box::new(response))),
        );
        let mut sockets = Vec::new();
        assert!(matches!(
            decode_datagram(&bytes, 3, &mut sockets),
            Ok(false)
        ));
        let [socket] = sockets.as_slice() else {
            panic!("one socket expected: {sockets:?}");
        };
        assert_eq!(
            (socket.family, socket.state, socket.local_port),
            (AF_INET6, TCP_ESTABLISHED, 8080)
        );
        assert_eq!(socket.remote, "127.0.0.2:40000".parse().expect("address"));
        assert_eq!((socket.inode, socket.cookie), (99, 42));
        assert_eq!(socket.counters.map(|c| c.bytes_received), Some(4321));
        assert_eq!(socket.time_wait_left, None);
    }

    /// The kernel's `inet_diag_bc_audit` (which refuses the dump with
    /// EINVAL) and `inet_diag_bc_run` for the port ops used here: Err on a
    /// program the kernel refuses, else whether it accepts `port`.
    fn kernel_runs(program: &[u8], port: u16) -> Result<bool, String> {
        let op = |at: usize| -> (u8, usize, usize) {
            let b = &program[at..at + 4];
            (
                b[0],
                usize::from(b[1]),
                usize::from(u16::from_ne_bytes([b[2], b[3]])),
            )
        };
        // Audit: every op valid, its jumps aligned, within len + 4, and
        // the yes chain ends exactly at the end.
        let len = program.len() as isize;
        let mut at = 0usize;
        while (at as isize) < len {
            let left = len - at as isize;
            let (code, yes, no) = op(at);
            let min = match code {
                BC_S_GE | BC_S_LE => 8,
                BC_JMP => 4,
                _ => return Err(format!("op {code} at {at}")),
            };
            for jump in [yes, no] {
                if jump < min || jump as isize > left + 4 || jump % 4 != 0 {
                    return Err(format!("jump {jump} at {at}, {left} left"));
                }
            }
            at += yes;
        }
        if at as isize != len {
            return Err("the yes chain does not end at the end".into());
        }
        // Run.
        let mut at = 0isize;
        while at < len {
            let (code, yes, no) = op(at as usize);
            let operand = || op(at as usize + 4).2 as u16;
            let holds = match code {
                BC_S_GE => port >= operand(),
                BC_S_LE => port <= operand(),
                _ => false, // BC_JMP
            };
            at += if holds { yes } else { no } as isize;
        }
        Ok(at == len)
    }

    #[test]
    fn the_port_filter_accepts_exactly_its_ports_and_passes_the_kernels_audit() {
        let table: &[&[u16]] = &[&[8080], &[80, 8080], &[1, 443, 8443, 65535], &[65535]];
        for ports in table {
            let program = port_filter(ports);
            for port in [
                0, 1, 2, 79, 80, 81, 442, 443, 444, 8079, 8080, 8081, 8443, 65534, 65535,
            ] {
                assert_eq!(
                    kernel_runs(&program, port),
                    Ok(ports.contains(&port)),
                    "port {port} against {ports:?}"
                );
            }
        }
        let many: Vec<u16> = (1..=MOST_FILTERED_PORTS as u16).map(|p| p * 3).collect();
        let program = port_filter(&many);
        assert_eq!(kernel_runs(&program, 3 * 1024), Ok(true));
        assert_eq!(kernel_runs(&program, 3 * 1024 + 1), Ok(false));
        assert_eq!(kernel_runs(&program, 3), Ok(true));
    }

    #[test]
    fn more_than_one_port_goes_into_the_request_as_bytecode() {
        let one = dump_request(
            1,
            AF_INET,
            connection_states(),
            PortFilter::Only(&[8080]),
            true,
        );
        let two = dump_request(
            1,
            AF_INET,
            connection_states(),
            PortFilter::Only(&[80, 8080]),
            true,
        );
        // nlmsghdr (16) + inet_diag_req_v2 (56); then nlattr + 36 bytes.
        assert_eq!(one.len(), 72);
        assert_eq!(u16::from_be_bytes([one[24], one[25]]), 8080, "idiag_sport");
        assert_eq!(two.len(), 72 + 4 + 36);
        assert_eq!(u32::from_ne_bytes([two[0], two[1], two[2], two[3]]), 112);
        assert_eq!(u16::from_be_bytes([two[24], two[25]]), 0, "no idiag_sport");
        assert_eq!(
            &two[72..76],
            &[40, 0, 1, 0],
            "INET_DIAG_REQ_BYTECODE, 40 bytes"
        );
        assert_eq!(two[18], 1 << (INET_DIAG_INFO - 1), "tcp_info asked for");
        let listeners = dump_request(1, AF_INET, StateFlags::LISTEN, PortFilter::Any, false);
        assert_eq!((listeners.len(), listeners[18]), (72, 0));
    }

    #[test]
    fn the_kernels_answers_are_decoded_into_an_end_or_a_typed_error() {
        let mut sockets = Vec::new();
        let done = datagram(7, NetlinkPayload::Done(DoneMessage::default()));
        assert!(matches!(decode_datagram(&done, 7, &mut sockets), Ok(true)));
        // An answer to another request is skipped, not taken for the end.
        assert!(matches!(decode_datagram(&done, 8, &mut sockets), Ok(false)));
        let refusal = |errno: i32| {
            let mut error = ErrorMessage::default();
            error.code = NonZeroI32::new(-errno);
            datagram(7, NetlinkPayload::Error(error))
        };
        let denied = decode_datagram(&refusal(libc::EPERM), 7, &mut sockets);
        assert!(matches!(denied, Err(TrafficError::Denied(_))), "{denied:?}");
        let missing = decode_datagram(&refusal(libc::ENOENT), 7, &mut sockets);
        assert!(
            matches!(missing, Err(TrafficError::Unsupported(_))),
            "{missing:?}"
        );
        let other = decode_datagram(&refusal(libc::EBUSY), 7, &mut sockets);
        assert!(matches!(other, Err(TrafficError::Refused(_))), "{other:?}");
        let garbage = decode_datagram(&[1, 2, 3], 7, &mut sockets);
        assert!(
            matches!(garbage, Err(TrafficError::Decode(_))),
            "{garbage:?}"
        );
        assert!(sockets.is_empty());
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
}
