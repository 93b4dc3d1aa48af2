//! Who may call `/prestop`, and how refusals are logged.
//!
//! With neither `--prestop-allow-from` nor `--prestop-token` only loopback
//! callers may drain: anyone else in the cluster (or an SSRF in any app)
//! could otherwise take the pod out of rotation. A browser's cross-site
//! request (a page reaching a loopback admin port through `kubectl
//! port-forward` or `--network host`) is refused on every path. A refused
//! kubelet hook fails silently: the kubelet ignores the hook's status
//! code, records no `FailedPreStopHook` and sends SIGTERM right after
//! (which starts the drain, without the hook's timeline); only drainit's
//! log says so.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, HOST, ORIGIN};
use hyper::Request;
use tracing::warn;

use super::Context;

/// Why a `/prestop` caller was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Neither `--prestop-allow-from` nor `--prestop-token`: only loopback may drain.
    NotLoopback,
    /// Not in `--prestop-allow-from`.
    NotAllowed,
    /// Missing or wrong `X-Drainit-Token`.
    BadToken,
    /// A browser's cross-site request: an `Origin` of another site,
    /// `Sec-Fetch-Site: cross-site` or `same-site`, or (for `/prestop`) a
    /// `Host` that is a name other than `localhost` (DNS rebinding).
    CrossSite,
}

impl Refusal {
    /// The body of the 403 answer.
    pub fn answer(self) -> &'static str {
        match self {
            Refusal::NotLoopback => "forbidden: only loopback callers may drain unless --prestop-allow-from or --prestop-token is set\n",
            Refusal::NotAllowed => "forbidden: caller not allowed\n",
            Refusal::BadToken => "forbidden: missing or wrong X-Drainit-Token\n",
            Refusal::CrossSite => "forbidden: cross-site request (Origin, Sec-Fetch-Site or Host of another site)\n",
        }
    }

    fn log_message(self) -> &'static str {
        match self {
            Refusal::NotLoopback => "refused /prestop: only loopback callers may drain by default; to let the kubelet's preStop hook drain, set --prestop-allow-from node,$(NODE_IP)/32 with NODE_IP from the downward API (status.hostIP), or --prestop-token",
            Refusal::NotAllowed => "refused /prestop: caller not in --prestop-allow-from (a kubelet hook on a bridge network comes from the pod's gateway: add `node`)",
            Refusal::BadToken => "refused /prestop: missing or wrong X-Drainit-Token",
            Refusal::CrossSite => "refused a cross-site request to the admin server (a browser's Origin, Sec-Fetch-Site or a Host name other than localhost); the kubelet sends none of these",
        }
    }
}

/// The rules `/prestop` callers must pass, from the settings.
pub fn refusal(context: &Context, peer: IpAddr, request: &Request<Incoming>) -> Option<Refusal> {
    let open = context.prestop_allow_from.is_none() && context.prestop_token.is_none();
    if open && !peer.to_canonical().is_loopback() {
        return Some(Refusal::NotLoopback);
    }
    if let Some(allowed) = &context.prestop_allow_from {
        if !allowed.contains(peer) {
            return Some(Refusal::NotAllowed);
        }
    }
    if let Some(expected) = &context.prestop_token {
        let given = request
            .headers()
            .get("x-drainit-token")
            .map(HeaderValue::as_bytes);
        if !given.is_some_and(|given| constant_time_eq(given, expected.as_bytes())) {
            return Some(Refusal::BadToken);
        }
    }
    if !host_is_an_address(request) {
        return Some(Refusal::CrossSite);
    }
    None
}

/// Whether a browser sent `request` for another site: an `Origin` that is
/// not the request's own (`null` included) or `Sec-Fetch-Site:
/// cross-site`/`same-site`. The kubelet's probes and hooks, Prometheus and
/// curl send neither header; a browser sends them on every cross-site
/// POST and every fetch of a current browser, so a page cannot reach a
/// loopback admin port (`kubectl port-forward`, `--network host`).
pub fn cross_site<B>(request: &Request<B>) -> bool {
    let headers = request.headers();
    let fetch_site = headers.get("sec-fetch-site").map(HeaderValue::as_bytes);
    if matches!(fetch_site, Some(b"cross-site" | b"same-site")) {
        return true;
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return false;
    };
    let host = headers.get(HOST).map(HeaderValue::as_bytes);
    let own = |scheme: &[u8]| host.is_some_and(|host| origin.as_bytes() == [scheme, host].concat());
    !(own(b"http://") || own(b"https://"))
}

/// Whether `/prestop`'s `Host` names the admin server the way the kubelet
/// does (the pod's IP literal, with or without the port) or as
/// `localhost`; any other name is a page's own site rebound to the pod's
/// address (DNS rebinding), which `Origin` cannot reveal. No `Host` at all
/// (HTTP/1.0) is no browser's.
pub fn host_is_an_address<B>(request: &Request<B>) -> bool {
    let Some(host) = request.headers().get(HOST).and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let host = host.trim();
    let name = match host.rsplit_once(':') {
        // `[v6]:port` or `name:port`; a bare IPv6 address has more colons.
        Some((name, port)) if !name.contains(':') || name.ends_with(']') => {
            if port.parse::<u16>().is_err() {
                return false;
            }
            name
        }
        _ => host,
    };
    let name = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    name.parse::<IpAddr>().is_ok() || name.eq_ignore_ascii_case("localhost")
}

/// At most one warning per [`REFUSAL_WARN_EVERY`] about refused `/prestop`
/// calls, so a caller cannot flood drainit's stderr; the next warning
/// counts the ones left out.
#[derive(Debug, Default)]
pub struct RefusalWarnings {
    state: Mutex<RefusalWarningState>,
}

#[derive(Debug, Default)]
struct RefusalWarningState {
    last: Option<Instant>,
    suppressed: u64,
}

/// How often a refused `/prestop` may be logged.
const REFUSAL_WARN_EVERY: Duration = Duration::from_secs(10);

impl RefusalWarnings {
    /// Logs a refusal, unless one was logged less than [`REFUSAL_WARN_EVERY`] ago.
    pub fn refused(&self, refusal: Refusal, peer: IpAddr) {
        let now = Instant::now();
        let suppressed = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let due = state
                .last
                .is_none_or(|last| now.saturating_duration_since(last) >= REFUSAL_WARN_EVERY);
            if !due {
                state.suppressed = state.suppressed.saturating_add(1);
                return;
            }
            state.last = Some(now);
            std::mem::take(&mut state.suppressed)
        };
        let peer = peer.to_canonical();
        if suppressed == 0 {
            warn!(%peer, "{}", refusal.log_message());
        } else {
            warn!(%peer, suppressed, "{}", refusal.log_message());
        }
    }
}

/// Compares without an early exit, so the token cannot be guessed byte by
/// byte from answer times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_site_requests_are_told_from_the_kubelets() {
        let request = |headers: &[(&str, &str)]| {
            let mut builder = Request::builder().uri("/prestop");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(()).expect("request")
        };
        let kubelet = request(&[("host", "10.1.2.3:9095"), ("user-agent", "kube-probe/1.36")]);
        assert!(!cross_site(&kubelet) && host_is_an_address(&kubelet));
        for host in [
            "127.0.0.1:9095",
            "[fd00::7]:9095",
            "fd00::7",
            "localhost:8080",
            "10.0.0.1",
        ] {
            assert!(host_is_an_address(&request(&[("host", host)])), "{host}");
        }
        for host in [
            "evil.example:9095",
            "evil.example",
            "127.0.0.1.nip.io:9095",
            "10.0.0.1:x",
        ] {
            assert!(!host_is_an_address(&request(&[("host", host)])), "{host}");
        }
        let same_origin = request(&[
            ("host", "127.0.0.1:9095"),
            ("origin", "http://127.0.0.1:9095"),
        ]);
        assert!(!cross_site(&same_origin));
        for (name, value) in [
            ("origin", "http://evil.example"),
            ("origin", "null"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
        ] {
            let foreign = request(&[("host", "127.0.0.1:9095"), (name, value)]);
            assert!(cross_site(&foreign), "{name}: {value}");
        }
        let typed = request(&[("host", "127.0.0.1:9095"), ("sec-fetch-site", "none")]);
        assert!(!cross_site(&typed));
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn refusals_are_logged_at_most_once_per_window() {
        let warnings = RefusalWarnings::default();
        let peer: IpAddr = "10.0.0.1".parse().expect("ip");
        for _ in 0..5 {
            warnings.refused(Refusal::NotLoopback, peer);
        }
        let state = warnings.state.lock().expect("not poisoned");
        assert!(state.last.is_some());
        assert_eq!(state.suppressed, 4);
    }
}
