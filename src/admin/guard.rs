//! Who may call `/prestop`, and how refusals are logged.
//!
//! With neither `--prestop-allow-from` nor `--prestop-token` only loopback
//! callers may drain: anyone else in the cluster (or an SSRF in any app)
//! could otherwise take the pod out of rotation. A refused kubelet hook
//! loses nothing: the kubelet records `FailedPreStopHook` and sends
//! SIGTERM, which starts the same drain.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::HeaderValue;
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
}

impl Refusal {
    /// The body of the 403 answer.
    pub fn answer(self) -> &'static str {
        match self {
            Refusal::NotLoopback => "forbidden: only loopback callers may drain unless --prestop-allow-from or --prestop-token is set\n",
            Refusal::NotAllowed => "forbidden: caller not allowed\n",
            Refusal::BadToken => "forbidden: missing or wrong X-Drainit-Token\n",
        }
    }

    fn log_message(self) -> &'static str {
        match self {
            Refusal::NotLoopback => "refused /prestop: only loopback callers may drain by default; to let the kubelet's preStop hook drain, set --prestop-allow-from $(NODE_IP)/32 with NODE_IP from the downward API (status.hostIP), or --prestop-token",
            Refusal::NotAllowed => "refused /prestop: caller not in --prestop-allow-from",
            Refusal::BadToken => "refused /prestop: missing or wrong X-Drainit-Token",
        }
    }
}

/// The rules `/prestop` callers must pass, from the settings.
pub fn refusal(context: &Context, peer: IpAddr, request: &Request<Incoming>) -> Option<Refusal> {
    if context.prestop_allow_from.is_none() && context.prestop_token.is_none() {
        return (!peer.to_canonical().is_loopback()).then_some(Refusal::NotLoopback);
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
    None
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
