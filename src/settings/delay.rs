//! `--propagation-delay`: a fixed time or `auto`, and the bounds of `auto`.

use std::fmt;
use std::time::Duration;

use crate::durations::parse_duration;

/// `--propagation-delay`: a fixed time, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropagationDelay {
    /// Wait exactly this long (the default, `5s`).
    Fixed(Duration),
    /// End when the traffic has stopped, between the floor and the ceiling.
    Auto,
}

impl fmt::Display for PropagationDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropagationDelay::Fixed(d) => write!(f, "{}", humantime::format_duration(*d)),
            PropagationDelay::Auto => f.write_str("auto"),
        }
    }
}

/// The bounds of `auto` (`--propagation-delay-min`, `-max`,
/// `--quiet-window`). Their defaults are stated once, on the flags in
/// `cli.rs`: a 1 s floor, since no balancer has let go of the pod within
/// the first second (endpoints controller, then kube-proxy), so silence
/// before it is a pause, not a reroute; a 20 s ceiling, which fits the
/// default 30 s grace period with the 2 s kill margin and 8 s for the app
/// to stop (raise it, with the grace period, behind an NLB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoBounds {
    /// The floor: the delay never ends before it.
    pub min: Duration,
    /// The ceiling: the delay always ends by it (the budget check uses it).
    pub max: Duration,
    /// Replaces the window computed from the rate.
    pub quiet_window: Option<Duration>,
}

/// The parser of `--propagation-delay`.
pub fn parse_propagation_delay(input: &str) -> Result<PropagationDelay, String> {
    if input.trim().eq_ignore_ascii_case("auto") {
        return Ok(PropagationDelay::Auto);
    }
    parse_duration(input)
        .map(PropagationDelay::Fixed)
        .map_err(|e| format!("{e}, or `auto`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagation_delay_displays_as_given() {
        assert_eq!(
            PropagationDelay::Fixed(Duration::from_secs(90)).to_string(),
            "1m 30s"
        );
        assert_eq!(PropagationDelay::Auto.to_string(), "auto");
    }

    #[test]
    fn propagation_delay_parses_auto_or_a_duration() {
        let table = [
            ("auto", Some(PropagationDelay::Auto)),
            ("AUTO", Some(PropagationDelay::Auto)),
            ("5s", Some(PropagationDelay::Fixed(Duration::from_secs(5)))),
            (
                "1m30s",
                Some(PropagationDelay::Fixed(Duration::from_secs(90))),
            ),
            (
                "500ms",
                Some(PropagationDelay::Fixed(Duration::from_millis(500))),
            ),
            ("0s", Some(PropagationDelay::Fixed(Duration::ZERO))),
            ("0", Some(PropagationDelay::Fixed(Duration::ZERO))),
            ("5", None),
            ("automatic", None),
            ("", None),
        ];
        for (input, expected) in table {
            assert_eq!(parse_propagation_delay(input).ok(), expected, "{input:?}");
        }
        let error = parse_propagation_delay("soon").unwrap_err();
        assert!(
            error.contains("`auto`") && error.contains("1m30s"),
            "{error}"
        );
    }
}
