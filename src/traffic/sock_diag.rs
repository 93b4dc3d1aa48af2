//! The netlink side of the observer: one `SOCK_DIAG_BY_FAMILY` dump of
//! TCP sockets, its answer decoded into [`SocketRecord`]s.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_sock_diag::constants::{AF_INET, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::{
    nlas::Nla, ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags,
};
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

/// The connection states dumped: all but LISTEN (dumped apart), CLOSE
/// (unbound sockets) and SYN_SENT (outgoing handshakes).
pub(super) fn connection_states() -> StateFlags {
    StateFlags::all() - StateFlags::LISTEN - StateFlags::CLOSE - StateFlags::SYN_SENT
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
    /// `states`, appended to `into`; `port` other than 0 asks the kernel
    /// for that local port only.
    pub(super) fn dump(
        &mut self,
        family: u8,
        states: StateFlags,
        port: u16,
        into: &mut Vec<SocketRecord>,
    ) -> Result<(), TrafficError> {
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
                sockets.push(SocketRecord::from_response(&response));
            }
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
    /// `None` for TIME_WAIT and request sockets, which carry no tcp_info.
    pub(super) counters: Option<TcpCounters>,
}

impl SocketRecord {
    pub(super) fn from_response(response: &InetResponse) -> SocketRecord {
        let id = &response.header.socket_id;
        let counters = response.nlas.iter().find_map(|nla| match nla {
            Nla::TcpInfo(raw) => TcpCounters::parse(raw),
            _ => None,
        });
        SocketRecord {
            family: response.header.family,
            state: response.header.state,
            local_port: id.source_port,
            remote: canonical(SocketAddr::new(id.destination_address, id.destination_port)),
            inode: response.header.inode,
            cookie: u64::from_ne_bytes(id.cookie),
            counters,
        }
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
    use netlink_packet_core::{DoneMessage, ErrorMessage};
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
        use netlink_packet_sock_diag::inet::InetResponseHeader;
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
