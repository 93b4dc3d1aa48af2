//! Signal names, parsing and the forwarding rules.
//!
//! drainit forwards real-time signals too, which `nix::sys::signal::Signal`
//! cannot represent, so signals are carried as a small `Sig` newtype over
//! the raw number. Its parser accepts `15`, `TERM`, `sigterm`, `SIGTERM`
//! and `RTMIN+3`, so a user never has to guess the spelling.

use std::fmt;
use std::str::FromStr;

/// A signal number, valid on this platform (1..=SIGRTMAX).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sig(i32);

/// The standard signals by name, without the `SIG` prefix.
const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// The accepted spellings, quoted in every parse error.
pub const SIGNAL_FORMS: &str = "a signal name or number such as TERM, SIGTERM, 15 or RTMIN+2";

/// The signals the kernel raises for something drainit itself did:
/// synchronous faults, and SIGPIPE for a write to a closed pipe. drainit
/// forwards them only when another process sent them (`kill`, `sigqueue`):
/// a real fault of drainit's own is delivered by the kernel even while
/// blocked, and still kills drainit; its own SIGPIPE (which the kernel
/// marks as sent by drainit itself) stays blocked, is read and dropped,
/// and the write just fails with EPIPE.
const FAULTS: &[i32] = &[
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGABRT,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGSEGV,
    libc::SIGSYS,
    libc::SIGPIPE,
];

/// Standard signals drainit never forwards, besides the [`FAULTS`]
/// (forwarded only when sent): the ones that cannot be caught (KILL,
/// STOP), CHLD (drainit reaps instead) and TTIN/TTOU (sent by the
/// terminal to drainit itself when it is in the background; it ignores
/// them).
const NOT_FORWARDED: &[i32] = &[
    libc::SIGKILL,
    libc::SIGSTOP,
    libc::SIGCHLD,
    libc::SIGTTIN,
    libc::SIGTTOU,
];

impl Sig {
    /// SIGTERM: the default stop and drain signal.
    pub const TERM: Sig = Sig(libc::SIGTERM);
    /// SIGINT: Ctrl-C, forwarded at once by default.
    pub const INT: Sig = Sig(libc::SIGINT);
    /// SIGKILL: the last word at the drain deadline.
    pub const KILL: Sig = Sig(libc::SIGKILL);
    /// SIGCHLD: wakes the reaper.
    pub const CHLD: Sig = Sig(libc::SIGCHLD);
    /// SIGCONT: wakes a stopped process so it can act on the stop signal.
    pub const CONT: Sig = Sig(libc::SIGCONT);

    /// Wraps a raw number, checking it is a signal this platform knows.
    pub fn from_raw(number: i32) -> Option<Sig> {
        (1..=libc::SIGRTMAX())
            .contains(&number)
            .then_some(Sig(number))
    }

    /// The raw signal number.
    pub fn raw(self) -> i32 {
        self.0
    }

    /// Every signal drainit takes (blocked, read from its signalfd) and
    /// forwards to the app.
    pub fn forwardable() -> Vec<Sig> {
        let standard = (1..32).filter(|n| !NOT_FORWARDED.contains(n) && !FAULTS.contains(n));
        let realtime = libc::SIGRTMIN()..=libc::SIGRTMAX();
        standard.chain(realtime).map(Sig).collect()
    }

    /// Whether drainit leaves the standard signal `number` alone: never
    /// blocked, never read from the signalfd (KILL and STOP cannot be;
    /// TTIN and TTOU are ignored by drainit for itself). Without
    /// allocating, for the constructor that blocks the rest first thing.
    pub fn never_taken(number: i32) -> bool {
        // Every one not forwarded but SIGCHLD, which wakes the reaper.
        number != libc::SIGCHLD && NOT_FORWARDED.contains(&number)
    }

    /// The fault signals, forwarded only when another process sent them.
    pub fn faults() -> Vec<Sig> {
        FAULTS.iter().copied().map(Sig).collect()
    }

    /// Whether this is one of the [`Sig::faults`].
    pub fn is_fault(self) -> bool {
        FAULTS.contains(&self.0)
    }

    /// Signals drainit ignores for itself (but restores for the child).
    pub fn ignored_by_drainit() -> [Sig; 2] {
        [Sig(libc::SIGTTIN), Sig(libc::SIGTTOU)]
    }

    /// Dispositions the app gets as the default unless drainit inherited
    /// them ignored: drainit's own ignores, and SIGPIPE, which Rust's
    /// runtime ignores before `main`.
    pub fn defaults_for_the_app() -> [Sig; 3] {
        [Sig(libc::SIGPIPE), Sig(libc::SIGTTIN), Sig(libc::SIGTTOU)]
    }
}

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((name, _)) = NAMES.iter().find(|(_, n)| *n == self.0) {
            return write!(f, "SIG{name}");
        }
        let rtmin = libc::SIGRTMIN();
        if self.0 >= rtmin {
            return match self.0 - rtmin {
                0 => write!(f, "SIGRTMIN"),
                offset => write!(f, "SIGRTMIN+{offset}"),
            };
        }
        write!(f, "signal {}", self.0)
    }
}

/// Why a signal could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown signal '{0}': expected {SIGNAL_FORMS}")]
pub struct ParseSigError(String);

impl FromStr for Sig {
    type Err = ParseSigError;

    fn from_str(input: &str) -> Result<Sig, ParseSigError> {
        let error = || ParseSigError(input.to_string());
        let trimmed = input.trim();
        if let Ok(number) = trimmed.parse::<i32>() {
            return Sig::from_raw(number).ok_or_else(error);
        }
        let upper = trimmed.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some((_, number)) = NAMES.iter().find(|(n, _)| *n == name) {
            return Ok(Sig(*number));
        }
        let rtmin = libc::SIGRTMIN();
        let rtmax = libc::SIGRTMAX();
        let realtime = if name == "RTMIN" {
            Some(rtmin)
        } else if name == "RTMAX" {
            Some(rtmax)
        } else if let Some(offset) = name.strip_prefix("RTMIN+") {
            offset
                .parse::<i32>()
                .ok()
                .and_then(|o| rtmin.checked_add(o))
        } else if let Some(offset) = name.strip_prefix("RTMAX-") {
            offset
                .parse::<i32>()
                .ok()
                .and_then(|o| rtmax.checked_sub(o))
        } else {
            None
        };
        realtime
            .filter(|n| (rtmin..=rtmax).contains(n))
            .map(Sig)
            .ok_or_else(error)
    }
}

/// One `--rewrite FROM:TO` rule; `to == None` drops the signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// The signal drainit receives.
    pub from: Sig,
    /// What the app gets instead; `None` (written `0`) means nothing.
    pub to: Option<Sig>,
}

/// The accepted form of `--rewrite`, quoted in its parse error.
pub const REWRITE_FORM: &str =
    "FROM:TO with signal names or numbers, e.g. TERM:QUIT, 15:3 or USR1:0 (0 drops the signal)";

impl FromStr for Rewrite {
    type Err = String;

    fn from_str(input: &str) -> Result<Rewrite, String> {
        let (from, to) = input
            .split_once(':')
            .ok_or_else(|| format!("expected {REWRITE_FORM}"))?;
        let from: Sig = from.parse().map_err(|e: ParseSigError| e.to_string())?;
        let to = match to.trim() {
            "0" => None,
            other => Some(other.parse().map_err(|e: ParseSigError| e.to_string())?),
        };
        Ok(Rewrite { from, to })
    }
}

/// Applies the `--rewrite` table: the first rule for `sig` wins;
/// signals without a rule pass unchanged.
pub fn rewrite(rules: &[Rewrite], sig: Sig) -> Option<Sig> {
    rules
        .iter()
        .find(|rule| rule.from == sig)
        .map_or(Some(sig), |rule| rule.to)
}

/// Parses a comma-separated list of signals (`TERM,INT`).
pub fn parse_list(input: &str) -> Result<Vec<Sig>, ParseSigError> {
    input
        .split(',')
        .filter(|part| !part.trim().is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        let table: &[(&str, i32)] = &[
            ("15", libc::SIGTERM),
            ("TERM", libc::SIGTERM),
            ("term", libc::SIGTERM),
            ("SIGTERM", libc::SIGTERM),
            ("sigquit", libc::SIGQUIT),
            ("3", libc::SIGQUIT),
            ("WINCH", libc::SIGWINCH),
            ("RTMIN", libc::SIGRTMIN()),
            ("RTMIN+2", libc::SIGRTMIN() + 2),
            ("SIGRTMAX-1", libc::SIGRTMAX() - 1),
        ];
        for (input, expected) in table {
            assert_eq!(input.parse::<Sig>().map(Sig::raw), Ok(*expected), "{input}");
        }
    }

    #[test]
    fn rejects_nonsense() {
        for input in [
            "",
            "0",
            "-1",
            "65",
            "TERMINATE",
            "SIG",
            "RTMIN+99",
            "RTMIN+2147483647",
            "RTMAX--2147483648",
            "RTMIN+x",
        ] {
            assert!(input.parse::<Sig>().is_err(), "{input} should not parse");
        }
    }

    #[test]
    fn display_round_trips() {
        for sig in Sig::forwardable() {
            assert_eq!(sig.to_string().parse::<Sig>(), Ok(sig));
        }
    }

    #[test]
    fn rewrite_rules() {
        let rules: Vec<Rewrite> = ["TERM:QUIT", "15:3", "USR1:0"]
            .iter()
            .map(|r| r.parse().expect("valid rule"))
            .collect();
        assert_eq!(rules[0], rules[1]);
        assert_eq!(rewrite(&rules, Sig::TERM), "QUIT".parse().ok());
        assert_eq!(rewrite(&rules, "USR1".parse().expect("USR1")), None);
        assert_eq!(rewrite(&rules, Sig::INT), Some(Sig::INT));
        assert!("TERM".parse::<Rewrite>().is_err());
        assert!("TERM:NOPE".parse::<Rewrite>().is_err());
    }

    #[test]
    fn forwards_the_usual_and_not_the_uncatchable() {
        let forwarded = Sig::forwardable();
        for name in [
            "HUP", "INT", "QUIT", "USR1", "USR2", "WINCH", "CONT", "ALRM", "TERM",
        ] {
            let sig: Sig = name.parse().expect("known name");
            assert!(forwarded.contains(&sig), "{name} must be forwarded");
        }
        for sig in [Sig::KILL, Sig::CHLD] {
            assert!(!forwarded.contains(&sig));
        }
    }
}
