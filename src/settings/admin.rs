//! The admin server's flags: `--admin-listen`, `--prestop-allow-from`
//! (with the address matching the guard uses) and `--prestop-token`.

use std::net::SocketAddr;

use ipnet::IpNet;

/// The admin server's address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminListen {
    /// No admin server (plain init).
    Off,
    /// Listen here.
    At(SocketAddr),
}

/// The parser of `--admin-listen`.
pub fn parse_admin_listen(input: &str) -> Result<AdminListen, String> {
    if input.trim().eq_ignore_ascii_case("off") {
        return Ok(AdminListen::Off);
    }
    input
        .trim()
        .parse::<SocketAddr>()
        .map(AdminListen::At)
        .map_err(|_| "expected IP:PORT such as 0.0.0.0:9095, [::]:9095, or off".to_string())
}

/// The parser of `--prestop-allow-from`.
pub fn parse_cidr_list(input: &str) -> Result<CidrList, String> {
    if input.split(',').all(|part| part.trim().is_empty()) {
        // An empty list would refuse every caller, the kubelet included.
        return Err(
            "names no network (is a ConfigMap key blank?): expected `node` and CIDRs such as 10.0.0.7/32,192.168.0.0/16 or fd00::/8".into(),
        );
    }
    let mut list = CidrList {
        networks: Vec::new(),
        node: false,
    };
    for part in input
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        if part.eq_ignore_ascii_case("node") {
            list.node = true;
            continue;
        }
        let network = part
            .parse::<IpNet>()
            .or_else(|_| part.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| format!("'{part}' is not a network: expected `node` and CIDRs such as 10.0.0.7/32,192.168.0.0/16 or fd00::/8"))?;
        list.networks.push(network);
    }
    Ok(list)
}

/// `--prestop-allow-from`: networks, and whether `node` was given; one
/// type so clap treats it as one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrList {
    /// The CIDRs given (and, once resolved at start, the node's addresses).
    pub networks: Vec<IpNet>,
    /// `node`: the addresses this pod's routes name as gateways (see
    /// `admin::routes`), added to `networks` when drainit starts.
    pub node: bool,
}

impl CidrList {
    /// Whether `ip` lies in one of the networks, in either of its forms: a
    /// dual-stack (`[::]`) listener sees IPv4 callers as `::ffff:a.b.c.d`,
    /// so `10.0.0.0/8` and `::ffff:0:0/96` must both match them.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let plain = ip.to_canonical();
        let mapped = match plain {
            std::net::IpAddr::V4(v4) => std::net::IpAddr::V6(v4.to_ipv6_mapped()),
            v6 => v6,
        };
        self.networks
            .iter()
            .any(|net| net.contains(&plain) || net.contains(&mapped))
    }
}

/// The parser of `--prestop-token`.
pub fn parse_token(input: &str) -> Result<String, String> {
    if input.is_empty() {
        return Err(
            "must not be empty (is a Secret key missing?): an empty header would match it".into(),
        );
    }
    if input.trim() != input {
        return Err(
            "has blanks at its start or end, which an HTTP header value cannot carry: it could never match"
                .into(),
        );
    }
    if input.chars().any(char::is_control) {
        return Err("has control characters, which an HTTP header value cannot carry".into());
    }
    Ok(input.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_lists_match_mapped_addresses() {
        let list = parse_cidr_list("10.1.2.3/32, 192.168.0.0/16").expect("valid");
        assert!(list.contains("10.1.2.3".parse().expect("ip")));
        assert!(list.contains("::ffff:192.168.4.4".parse().expect("ip")));
        assert!(!list.contains("10.1.2.4".parse().expect("ip")));
        let single = parse_cidr_list("127.0.0.1").expect("a bare IP is a /32");
        assert!(single.contains("127.0.0.1".parse().expect("ip")));
        let node = parse_cidr_list("node, 192.0.2.2/32").expect("valid");
        assert!(node.node && !list.node);
        assert_eq!(node.networks.len(), 1);
        let error = parse_cidr_list("nodes").expect_err("not a keyword");
        assert!(error.contains("`node`"), "{error}");
    }

    #[test]
    fn cidr_lists_match_both_forms_of_an_address() {
        let mapped = parse_cidr_list("::ffff:0:0/96").expect("valid");
        assert!(mapped.contains("10.1.2.3".parse().expect("ip")));
        assert!(mapped.contains("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!mapped.contains("fd00::1".parse().expect("ip")));
        let everything = parse_cidr_list("::/0").expect("valid");
        assert!(everything.contains("127.0.0.1".parse().expect("ip")));
        let v4 = parse_cidr_list("10.0.0.0/8").expect("valid");
        assert!(v4.contains("::ffff:10.9.9.9".parse().expect("ip")));
        assert!(!v4.contains("fd00::a00:1".parse().expect("ip")));
    }
}
