//! The flags that name signals: `--stop-signal`, `--drain-on`,
//! `--rewrite`, each refusing what drainit cannot act on.

use crate::signals::{self, Rewrite, Sig};

/// A list of signals; a newtype so clap treats it as one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigList(pub Vec<Sig>);

fn parse_sig(input: &str) -> Result<Sig, String> {
    input
        .parse()
        .map_err(|e: signals::ParseSigError| e.to_string())
}

/// SIGSTOP cannot be caught: it freezes the app instead of asking it to
/// stop, and a frozen app only ends at the deadline's SIGKILL. SIGKILL is
/// accepted: it ends the app at once after the propagation delay, which is
/// what an app without a graceful stop needs.
pub fn parse_stop_signal(input: &str) -> Result<Sig, String> {
    let sig = parse_sig(input)?;
    if sig.raw() == libc::SIGSTOP {
        return Err(format!(
            "{sig} cannot be caught: it freezes the app instead of stopping it; use TERM, QUIT, INT or the app's own stop signal"
        ));
    }
    Ok(sig)
}

/// Whether drainit takes `sig` from its signal stream (and so can act on it).
fn is_handled(sig: Sig) -> bool {
    Sig::forwardable().contains(&sig)
}

/// The parser of `--drain-on`.
pub fn parse_sig_list(input: &str) -> Result<SigList, String> {
    let list = signals::parse_list(input)
        .map_err(|e| format!("{e} (a comma-separated list, e.g. TERM,INT)"))?;
    if list.is_empty() {
        // A blank ConfigMap key would otherwise mean "drain on nothing":
        // SIGTERM straight to the app, the drain switched off unnoticed.
        return Err(
            "names no signal (is a ConfigMap key blank?): expected a comma-separated list of signals, e.g. TERM or TERM,INT".into(),
        );
    }
    if let Some(sig) = list.iter().find(|sig| !is_handled(**sig)) {
        return Err(format!(
            "{sig} never reaches drainit as a drain trigger (it cannot be caught, is a fault, or drainit uses it itself); use TERM, INT, QUIT, HUP, USR1, USR2 or a real-time signal"
        ));
    }
    Ok(SigList(list))
}

/// The parser of `--rewrite`.
pub fn parse_rewrite(input: &str) -> Result<Rewrite, String> {
    let rule: Rewrite = input.parse()?;
    // Every signal drainit forwards, the faults and SIGPIPE included
    // (forwarded when another process sends them): dumb-init's
    // `-r 1:31 -r 31:1` swaps HUP and SYS.
    if !is_handled(rule.from) && !rule.from.is_fault() {
        return Err(format!(
            "{} is never forwarded, so it cannot be rewritten (it cannot be caught, or drainit uses it itself)",
            rule.from
        ));
    }
    if rule.to.is_some_and(|to| to.raw() == libc::SIGSTOP) {
        return Err(format!(
            "{} into SIGSTOP would freeze the app instead of passing a signal on",
            rule.from
        ));
    }
    Ok(rule)
}
