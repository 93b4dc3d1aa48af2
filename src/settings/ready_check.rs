//! `--ready-check`: how to ask the app whether it is ready (the URL and
//! its parser; `probe` runs it).

use std::fmt;
use std::str::FromStr;

/// How to ask the app whether it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyCheck {
    /// `http://HOST:PORT/PATH`: ready on a 2xx answer.
    Http {
        /// `HOST:PORT`, resolved at every check.
        authority: String,
        /// Path and query, starting with `/`.
        path: String,
    },
    /// `tcp://HOST:PORT`: ready when a connection is accepted.
    Tcp {
        /// `HOST:PORT`, resolved at every check.
        authority: String,
    },
}

const FORM: &str =
    "expected http://HOST:PORT/PATH or tcp://HOST:PORT, e.g. http://127.0.0.1:8080/healthz";

/// Why a `--ready-check` URL was refused; each message quotes the accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseReadyCheckError {
    /// Neither `http://` nor `tcp://`.
    #[error("'{0}' is not a ready check: {FORM}")]
    Scheme(String),
    /// No `:PORT`, or a port that is not a number.
    #[error("'{0}' has no HOST:PORT: {FORM}")]
    NoPort(String),
    /// Port 0: nothing can listen there.
    #[error("'{0}' has port 0, where nothing can listen: {FORM}")]
    PortZero(String),
    /// The host is not an IP address or a DNS name.
    #[error(
        "'{0}' has no valid host (an IP address, [IPv6] or a DNS name, without user@): {FORM}"
    )]
    Host(String),
    /// Spaces or control characters in the path.
    #[error("'{0}' has spaces or control characters in its path: {FORM}")]
    Path(String),
    /// A `tcp://` check with a path.
    #[error("'{0}' has a path, which a tcp:// check cannot use: {FORM}")]
    TcpPath(String),
}

/// Whether `host` is an IPv4 address, a bracketed IPv6 address or a DNS name.
fn valid_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    !host.is_empty() && host.len() <= 253 && host.trim_end_matches('.').split('.').all(label_ok)
}

/// Checks `HOST:PORT` of `input` and returns it.
fn authority_of(input: &str, authority: &str) -> Result<String, ParseReadyCheckError> {
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(ParseReadyCheckError::NoPort(input.to_string()));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| ParseReadyCheckError::NoPort(input.to_string()))?;
    if port == 0 {
        return Err(ParseReadyCheckError::PortZero(input.to_string()));
    }
    if !valid_host(host) {
        return Err(ParseReadyCheckError::Host(input.to_string()));
    }
    Ok(authority.to_string())
}

impl FromStr for ReadyCheck {
    type Err = ParseReadyCheckError;

    fn from_str(input: &str) -> Result<ReadyCheck, ParseReadyCheckError> {
        let input = input.trim();
        if let Some(rest) = input.strip_prefix("http://") {
            let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
            if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                return Err(ParseReadyCheckError::Path(input.to_string()));
            }
            return Ok(ReadyCheck::Http {
                authority: authority_of(input, authority)?,
                path: path.to_string(),
            });
        }
        if let Some(rest) = input.strip_prefix("tcp://") {
            let rest = rest.strip_suffix('/').unwrap_or(rest);
            if rest.contains('/') {
                return Err(ParseReadyCheckError::TcpPath(input.to_string()));
            }
            return Ok(ReadyCheck::Tcp {
                authority: authority_of(input, rest)?,
            });
        }
        Err(ParseReadyCheckError::Scheme(input.to_string()))
    }
}

impl fmt::Display for ReadyCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadyCheck::Http { authority, path } => write!(f, "http://{authority}{path}"),
            ReadyCheck::Tcp { authority } => write!(f, "tcp://{authority}"),
        }
    }
}

impl ReadyCheck {
    /// The address to connect to.
    pub fn authority(&self) -> &str {
        match self {
            ReadyCheck::Http { authority, .. } | ReadyCheck::Tcp { authority } => authority,
        }
    }
}

/// The parser of `--ready-check`.
pub fn parse_ready_check(input: &str) -> Result<ReadyCheck, String> {
    input
        .parse()
        .map_err(|e: ParseReadyCheckError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            "http://127.0.0.1:8080/healthz?x=1".parse(),
            Ok(ReadyCheck::Http {
                authority: "127.0.0.1:8080".into(),
                path: "/healthz?x=1".into()
            })
        );
        assert_eq!(
            "http://localhost:80".parse(),
            Ok(ReadyCheck::Http {
                authority: "localhost:80".into(),
                path: "/".into()
            })
        );
        assert_eq!(
            "tcp://app.default.svc.cluster.local.:80/".parse(),
            Ok(ReadyCheck::Tcp {
                authority: "app.default.svc.cluster.local.:80".into()
            })
        );
        assert_eq!(
            "tcp://[::1]:5432".parse(),
            Ok(ReadyCheck::Tcp {
                authority: "[::1]:5432".into()
            })
        );
        for bad in [
            "ftp://x:1",
            "http://nohost",
            "tcp://:80",
            "http://h:99999/",
            "127.0.0.1:80",
            "http://h:1/a b",
            "http://127.0.0.1:0/",
            "tcp://127.0.0.1:0",
            "http://user@h:80/",
            "http://a b:80/",
            "http://[::1:80/",
            "http://[nope]:80/",
            "tcp://h:80/healthz",
            "http://h:/",
            "http://h..x:80/",
        ] {
            assert!(bad.parse::<ReadyCheck>().is_err(), "{bad}");
        }
    }
}
