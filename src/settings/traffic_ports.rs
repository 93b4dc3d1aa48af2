//! `--traffic-ports`: which of the app's ports the traffic evidence watches.

use std::str::FromStr;

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
            if let Err(at) = ports.binary_search(&port) {
                ports.insert(at, port);
            }
        }
        Ok(TrafficPorts::Only(ports))
    }
}

/// The parser of `--traffic-ports`.
pub fn parse_traffic_ports(input: &str) -> Result<TrafficPorts, String> {
    input.parse().map_err(|e: TrafficPortsError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
