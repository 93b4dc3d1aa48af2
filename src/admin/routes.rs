//! `--prestop-allow-from node`: the addresses the node reaches this pod
//! from, as the pod's own routes show them.
//!
//! The kubelet's preStop hook connects from the node, from the address
//! the node's routing picks for the pod:
//! - on a bridge network (the `bridge` CNI plugin, flannel's `cni0`,
//!   kubenet's `cbr0`) and behind Cilium's `cilium_host`, the address of
//!   that interface: the pod's default gateway;
//! - on a routed network whose host-side veth has no address (Calico, the
//!   AWS VPC CNI) the node's own address, which the pod's routes never
//!   show (their gateway is a link-local placeholder, 169.254.1.1): there
//!   `$(NODE_IP)/32` from the downward API (`status.hostIP`) admits it.
//!
//! So `node,$(NODE_IP)/32` admits the kubelet on both. `node` is every
//! route's gateway and the destination of every on-link host route (a /32
//! or /128 without gateway, such as Calico's 169.254.1.1), read once at
//! start from `/proc/net/route` and `/proc/net/ipv6_route` (the pod's
//! network namespace; small procfs files). Never a subnet: a bridge's
//! subnet holds the node's other pods, which must not drain this one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use tracing::{info, warn};

use crate::settings::CidrList;

/// `RTF_GATEWAY`, `RTF_HOST` (`include/uapi/linux/route.h`).
const RTF_GATEWAY: u32 = 0x2;
const RTF_HOST: u32 = 0x4;
/// `RTF_ANYCAST`, `RTF_LOCAL` (`include/uapi/linux/ipv6_route.h`): the
/// pod's own addresses.
const RTF_ANYCAST: u32 = 0x0010_0000;
const RTF_LOCAL: u32 = 0x8000_0000;

/// `list` with `node` resolved: the node's addresses added as /32 and
/// /128 networks, and said once in the log.
pub fn admit_node(mut list: CidrList) -> CidrList {
    if !list.node {
        return list;
    }
    let mut read_error = None;
    let mut addresses = Vec::new();
    for (path, parse) in [
        ("/proc/net/route", ipv4_gateways as fn(&str) -> Vec<IpAddr>),
        ("/proc/net/ipv6_route", ipv6_gateways),
    ] {
        match std::fs::read_to_string(path) {
            Ok(text) => addresses.extend(parse(&text)),
            // No IPv6 in the namespace: no ipv6_route. Said only if
            // nothing at all is found.
            Err(error) => read_error = Some(format!("{path}: {error}")),
        }
    }
    addresses.sort_unstable();
    addresses.dedup();
    if addresses.is_empty() {
        warn!(
            error = read_error.as_deref().unwrap_or("none"),
            "--prestop-allow-from node: this pod's routes name no gateway; /prestop admits only the CIDRs given"
        );
    } else {
        let shown: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        info!(
            addresses = %shown.join(","),
            "--prestop-allow-from node: /prestop admits the gateways of this pod's routes"
        );
    }
    list.networks.extend(addresses.into_iter().map(IpNet::from));
    list
}

/// Gateways and on-link host routes of `/proc/net/route`: per line
/// `Iface Destination Gateway Flags …`, addresses as the hex of their
/// bytes in memory (network order) read as a native u32.
fn ipv4_gateways(text: &str) -> Vec<IpAddr> {
    let hex = |field: &str| u32::from_str_radix(field, 16).ok();
    let address = |value: u32| IpAddr::V4(Ipv4Addr::from(value.to_ne_bytes()));
    let mut found = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [iface, destination, gateway, flags, ..] = fields.as_slice() else {
            continue;
        };
        let (Some(destination), Some(gateway), Some(flags)) =
            (hex(destination), hex(gateway), hex(flags))
        else {
            continue;
        };
        if flags & RTF_GATEWAY != 0 {
            found.push(address(gateway));
        } else if flags & RTF_HOST != 0 && *iface != "lo" {
            found.push(address(destination));
        }
    }
    found
}

/// Gateways and on-link host routes of `/proc/net/ipv6_route`: per line
/// `dest plen src plen next_hop metric refcnt use flags iface`, addresses
/// as 32 hex digits in network order.
fn ipv6_gateways(text: &str) -> Vec<IpAddr> {
    let address = |field: &str| {
        u128::from_str_radix(field, 16)
            .ok()
            .map(|bits| IpAddr::V6(Ipv6Addr::from(bits)))
    };
    let mut found = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [destination, plen, _, _, next_hop, _, _, _, flags, iface] = fields.as_slice() else {
            continue;
        };
        let (Some(flags), Some(plen)) = (
            u32::from_str_radix(flags, 16).ok(),
            u8::from_str_radix(plen, 16).ok(),
        ) else {
            continue;
        };
        if flags & (RTF_LOCAL | RTF_ANYCAST) != 0 || *iface == "lo" {
            continue;
        }
        let found_here = if flags & RTF_GATEWAY != 0 {
            address(next_hop)
        } else if plen == 128 {
            address(destination).filter(|a| !a.is_multicast())
        } else {
            None
        };
        found.extend(found_here.filter(|a| !a.is_unspecified()));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bridge pod (10.88.0.5/24, gateway 10.88.0.1) and a Calico pod
    /// (10.1.2.3/32, gateway 169.254.1.1 on-link), as the kernel prints
    /// them on a little-endian machine; the table is written the machine's
    /// way so that the test holds on both byte orders.
    #[test]
    fn gateways_and_on_link_host_routes_are_read_never_subnets() {
        let hex = |a: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(a));
        let route = format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t{}\t{}\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t{}\t{}\t0001\t0\t0\t0\t{}\t0\t0\t0\n\
             eth1\t{}\t{}\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n",
            hex([0, 0, 0, 0]),
            hex([10, 88, 0, 1]),
            hex([10, 88, 0, 0]),
            hex([0, 0, 0, 0]),
            hex([255, 255, 255, 0]),
            hex([169, 254, 1, 1]),
            hex([0, 0, 0, 0]),
        );
        let found = ipv4_gateways(&route);
        assert_eq!(
            found,
            vec![
                "10.88.0.1".parse::<IpAddr>().expect("ip"),
                "169.254.1.1".parse().expect("ip")
            ]
        );
        let ipv6 = "\
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0
fd000000000000000000000000000005 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001 eth0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001 lo
ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001 eth0
";
        assert_eq!(
            ipv6_gateways(ipv6),
            vec!["fe80::1".parse::<IpAddr>().expect("ip")]
        );
    }
}
