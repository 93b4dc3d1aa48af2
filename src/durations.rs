//! Durations as every flag writes them: the parser with its bound.
//!
//! Every duration flag goes through [`parse_duration`], so none can
//! exceed [`MAX_DURATION`] and time arithmetic on them cannot overflow.

use std::time::Duration;

/// The longest duration any flag accepts. Far beyond any real grace
/// period (Kubernetes pods rarely get more than an hour), and small enough
/// that `Instant + duration` can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

const DURATION_FORM: &str = "a duration from 0s to at most 24h, such as 500ms, 5s or 1m30s";

/// Parses a duration flag: `0`, or humantime (`500ms`, `1m30s`), at most
/// [`MAX_DURATION`].
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let trimmed = input.trim();
    let duration = if trimmed == "0" {
        Duration::ZERO
    } else {
        humantime::parse_duration(trimmed).map_err(|e| format!("expected {DURATION_FORM} ({e})"))?
    };
    if duration > MAX_DURATION {
        return Err(format!("must be at most 24h: expected {DURATION_FORM}"));
    }
    Ok(duration)
}

/// A duration above zero (an interval or a timeout: zero would spin).
pub fn parse_positive_duration(input: &str) -> Result<Duration, String> {
    match parse_duration(input)? {
        Duration::ZERO => Err(format!("expected a duration above zero, {DURATION_FORM}")),
        duration => Ok(duration),
    }
}

/// Seconds with one decimal, as in the log lines (`5.0s`).
pub fn secs(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded() {
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for too_long in ["24h 1s", "18446744073709551615s", "1000y"] {
            let error = parse_duration(too_long).expect_err(too_long);
            assert!(error.contains("at most 24h"), "{too_long}: {error}");
        }
    }
}
