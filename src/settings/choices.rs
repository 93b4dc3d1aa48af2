//! The flags that pick from a few words: `--signal-target`,
//! `--log-format`, `--strict`'s switch and `--verbose`.

use clap::ValueEnum;

/// Where forwarded signals go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignalTarget {
    /// The direct child only.
    Child,
    /// The child's whole process group.
    Group,
}

/// How drainit's own log lines are written (always to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// The spellings of an on/off switch in an environment variable.
const SWITCH_FORMS: &str = "expected 1, yes, true, on (enable) or 0, no, false, off (disable)";

/// The parser of `--strict` (and of `DRAINIT_STRICT`).
pub fn parse_switch(input: &str) -> Result<bool, String> {
    match input.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(SWITCH_FORMS.to_string()),
    }
}

/// `-v` counts up through this parser too (clap hands it "1", "2", ...),
/// so any small number is accepted; the names are for DRAINIT_VERBOSE.
pub fn parse_verbosity(input: &str) -> Result<u8, String> {
    let trimmed = input.trim().to_ascii_lowercase();
    match trimmed.as_str() {
        "info" => Ok(0),
        "debug" => Ok(1),
        "trace" => Ok(2),
        number => number.parse::<u8>().map_err(|_| {
            "expected -v, -vv, or DRAINIT_VERBOSE=0, 1, 2 (or info, debug, trace)".to_string()
        }),
    }
}
