//! The subscriber against tracing-subscriber, the one it replaces: the
//! same events through both must give the same lines, byte for byte once
//! the timestamps are set aside (they are compared on their own below).

use std::cell::RefCell;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tracing::{debug, error, info, trace, warn};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

use super::*;

thread_local! {
    /// What the subscriber under test wrote, one entry per line.
    static LINES: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

fn capture(line: Vec<u8>) {
    LINES.with(|lines| lines.borrow_mut().push(line));
}

/// An error with a source, recorded as `&dyn Error` (`record_error`).
#[derive(Debug, thiserror::Error)]
#[error("failed to bind the admin port")]
struct Outer(#[source] io::Error);

/// Every kind of field drainit's log calls use, and the awkward values:
/// quotes, newlines, tabs, backslashes, control characters, non-ASCII,
/// Display (`%`) and Debug (`?`), format arguments in the message, every
/// level, numbers at their limits.
fn events() {
    let command = vec!["sh", "-c", "echo \"hi there\"\n"];
    let spaced =
        "with space \"quoted\"\nnewline\ttab\\ and \u{1} and \u{7f} and h\u{e9}llo \u{2713}";
    let failure = io::Error::new(io::ErrorKind::BrokenPipe, "broken \"pipe\"");
    let sig = "TERM";
    let pid = 7;
    info!("plain message");
    info!(pid = 42, command = ?command, "started app");
    warn!(error = %failure, "failed to send {} to pid {}", sig, pid);
    warn!(%failure, "failed to send {sig} to pid {pid}");
    debug!(peer = %"127.0.0.1:5", text = spaced, "admin connection ended with an error");
    debug!(display = %spaced, debug = ?spaced, "display and debug of one value");
    trace!(
        flag = true,
        ratio = 0.5,
        whole = 1.0,
        small = 1e-7,
        huge = 1e300,
        nan = f64::NAN,
        infinite = f64::INFINITY,
        big = u64::MAX,
        negative = i64::MIN,
        "numbers"
    );
    info!(wide = 1i128 << 100, widest = u128::MAX, "128-bit numbers");
    error!("{}", "message with \"quotes\" and\nnewline");
    error!(after = %"2.5s", "drain deadline hit; SIGKILL to process group {}", 12);
    info!("");
    info!(answer = 42);
    info!(message = "an explicit message field", other = 1);
    info!(
        peer.addr = "10.0.0.1",
        r#type = "raw",
        "dotted and raw names"
    );
    info!(maybe = ?Some("x"), none = ?None::<u8>, unit = ?(), "options");
    info!(bytes = &b"\x00ab\xff"[..], "bytes");
    let chained = Outer(io::Error::other("address in use"));
    warn!(
        error = &chained as &(dyn std::error::Error + 'static),
        "with a source"
    );
    let single = io::Error::other("no source");
    warn!(
        error = &single as &(dyn std::error::Error + 'static),
        "without one"
    );
}

/// Lines from drainit's subscriber.
fn ours(verbose: u8, format: LogFormat) -> Vec<String> {
    LINES.with(|lines| lines.borrow_mut().clear());
    let subscriber = LogSubscriber::new(level_for(verbose), format, capture);
    tracing::subscriber::with_default(subscriber, events);
    LINES.with(|lines| {
        lines
            .borrow()
            .iter()
            .map(|line| String::from_utf8(line.clone()).expect("UTF-8 line"))
            .collect()
    })
}

/// Collects what tracing-subscriber writes, one entry per write: it
/// writes each event with one `write_all` (a message may hold newlines).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<Vec<u8>>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("not poisoned").push(bytes.to_vec());
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Lines from tracing-subscriber, set up as drainit's `init_logging` did.
fn theirs(verbose: u8, format: LogFormat) -> Vec<String> {
    let captured = Captured::default();
    let writer = captured.clone();
    let builder = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(level_for(verbose))
        .with_target(false);
    match format {
        LogFormat::Text => tracing::subscriber::with_default(builder.finish(), events),
        LogFormat::Json => {
            tracing::subscriber::with_default(builder.json().flatten_event(true).finish(), events)
        }
    }
    let writes = captured.0.lock().expect("not poisoned").clone();
    writes
        .into_iter()
        .map(|line| String::from_utf8(line).expect("UTF-8 line"))
        .collect()
}

/// The line with its timestamp replaced by `<time>`, after checking that
/// it is an RFC 3339 time with microseconds where each format puts it.
fn without_time(line: &str, format: LogFormat) -> String {
    let at = match format {
        LogFormat::Text => 0,
        LogFormat::Json => "{\"timestamp\":\"".len(),
    };
    let stamp = line.get(at..at + 27).unwrap_or_default();
    assert!(
        humantime::parse_rfc3339(stamp).is_ok() && stamp.ends_with('Z'),
        "no timestamp at {at} in {line:?}"
    );
    format!("{}<time>{}", &line[..at], &line[at + 27..])
}

fn assert_same_lines(verbose: u8, format: LogFormat) {
    let ours: Vec<String> = ours(verbose, format)
        .iter()
        .map(|line| without_time(line, format))
        .collect();
    let theirs: Vec<String> = theirs(verbose, format)
        .iter()
        .map(|line| without_time(line, format))
        .collect();
    assert!(!ours.is_empty());
    for (number, (ours, theirs)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(
            ours, theirs,
            "line {number} differs ({format:?}, -v x{verbose})"
        );
    }
    assert_eq!(ours.len(), theirs.len(), "line counts differ");
}

#[test]
fn text_lines_are_tracing_subscribers_at_every_verbosity() {
    for verbose in 0..=2 {
        assert_same_lines(verbose, LogFormat::Text);
    }
}

#[test]
fn json_lines_are_tracing_subscribers_at_every_verbosity() {
    for verbose in 0..=2 {
        assert_same_lines(verbose, LogFormat::Json);
    }
}

#[test]
fn the_level_filter_follows_verbose() {
    let count = |verbose| ours(verbose, LogFormat::Text).len();
    let (info, debug, trace) = (count(0), count(1), count(2));
    assert!(info < debug && debug < trace, "{info} {debug} {trace}");
    assert!(ours(0, LogFormat::Text)
        .iter()
        .all(|line| !line.contains("DEBUG") && !line.contains("TRACE")));
}

#[test]
fn a_sample_of_the_exact_text() {
    let lines = ours(0, LogFormat::Text);
    let started = without_time(&lines[1], LogFormat::Text);
    assert_eq!(
        started,
        "<time>  INFO started app pid=42 command=[\"sh\", \"-c\", \"echo \\\"hi there\\\"\\n\"]\n"
    );
    let json = without_time(&ours(0, LogFormat::Json)[1], LogFormat::Json);
    assert_eq!(
        json,
        "{\"timestamp\":\"<time>\",\"level\":\"INFO\",\"message\":\"started app\",\"pid\":42,\
         \"command\":\"[\\\"sh\\\", \\\"-c\\\", \\\"echo \\\\\\\"hi there\\\\\\\"\\\\n\\\"]\"}\n"
    );
}

#[test]
fn timestamps_are_tracing_subscribers() {
    // tracing-subscriber reads the clock itself: take its text, read the
    // time back, and format that time ours way.
    for _ in 0..100 {
        let mut theirs = String::new();
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut theirs))
            .expect("format the time");
        let time = humantime::parse_rfc3339(&theirs).expect("RFC 3339");
        let mut ours = String::new();
        push_timestamp(&mut ours, time);
        assert_eq!(ours, theirs);
    }
    let mut epoch = String::new();
    push_timestamp(
        &mut epoch,
        SystemTime::UNIX_EPOCH + Duration::from_nanos(1_999_999),
    );
    assert_eq!(
        epoch, "1970-01-01T00:00:00.001999Z",
        "microseconds truncated"
    );
}

#[test]
fn a_clock_out_of_range_gives_a_placeholder_not_a_panic() {
    for time in [
        SystemTime::UNIX_EPOCH - Duration::from_secs(1),
        SystemTime::UNIX_EPOCH + Duration::from_secs(400_000_000_000),
    ] {
        let mut out = String::from("x");
        push_timestamp(&mut out, time);
        assert_eq!(out, "x<unknown time>");
    }
}
