//! `--drain-notify`: how the app is told, at a drain's start, that it is
//! being drained (so a server with a "lame duck" mode starts answering
//! `Connection: close` or GOAWAY while it still serves).

use std::fmt;
use std::net::SocketAddr;

use super::ready_check::ReadyCheck;
use super::signal_flags::parse_stop_signal;
use crate::signals::Sig;

/// How the app hears that the drain started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainNotify {
    /// A signal to the app (e.g. USR1).
    Signal(Sig),
    /// A GET to a loopback URL of the app (`http://127.0.0.1:PORT/PATH`).
    Url(ReadyCheck),
}

impl fmt::Display for DrainNotify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainNotify::Signal(sig) => sig.fmt(f),
            DrainNotify::Url(url) => url.fmt(f),
        }
    }
}

const FORM: &str =
    "expected a signal (USR1, SIGUSR2, 10) or a loopback URL (http://127.0.0.1:PORT/PATH)";

/// The parser of `--drain-notify`.
pub fn parse_drain_notify(input: &str) -> Result<DrainNotify, String> {
    let trimmed = input.trim();
    if !trimmed.starts_with("http://") {
        return parse_stop_signal(trimmed)
            .map(DrainNotify::Signal)
            .map_err(|why| format!("{why}; {FORM}"));
    }
    match trimmed.parse::<ReadyCheck>() {
        Ok(ReadyCheck::Http { authority, path }) => {
            let loopback = authority
                .parse::<SocketAddr>()
                .is_ok_and(|address| address.ip().is_loopback());
            if !loopback {
                return Err(format!(
                    "{authority} is not a loopback address: the app is told on 127.0.0.1 or [::1] only; {FORM}"
                ));
            }
            Ok(DrainNotify::Url(ReadyCheck::Http { authority, path }))
        }
        Ok(ReadyCheck::Tcp { .. }) => Err(FORM.to_string()),
        Err(error) => Err(format!("{error}; {FORM}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_or_a_loopback_url() {
        assert_eq!(
            parse_drain_notify("USR1"),
            Ok(DrainNotify::Signal(
                Sig::from_raw(libc::SIGUSR1).expect("USR1")
            ))
        );
        let url = parse_drain_notify("http://127.0.0.1:8080/drain").expect("a URL");
        assert_eq!(url.to_string(), "http://127.0.0.1:8080/drain");
        assert!(parse_drain_notify("http://[::1]:8080/").is_ok());
        let remote = parse_drain_notify("http://10.0.0.1:8080/drain").unwrap_err();
        assert!(remote.contains("not a loopback address"), "{remote}");
        let named = parse_drain_notify("http://localhost:8080/drain").unwrap_err();
        assert!(named.contains("not a loopback address"), "{named}");
        let junk = parse_drain_notify("NOPE").unwrap_err();
        assert!(junk.contains("expected a signal"), "{junk}");
    }
}
