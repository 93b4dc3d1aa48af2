//! drainit's own log lines: a small `tracing` subscriber that renders text
//! or JSON lines and hands them to a queue that never blocks the caller.
//!
//! Why not tracing-subscriber: its `fmt` layer writes to stderr on the
//! thread that logs, so a full pipe stalls the event loop, and a write
//! error makes it print a complaint to the same broken stderr, which
//! panics and kills PID 1 (issue 9). It is also the largest dependency of
//! the binary for what drainit uses of it (issue 13). The lines are the
//! ones `tracing_subscriber::fmt().with_target(false)` printed without
//! ANSI colours, and its `.json().flatten_event(true)`: the unit tests
//! render the same events through both and compare them.
//!
//! Spans are not shown: drainit opens none and its dependencies are built
//! without their `tracing` features, so [`LogSubscriber`] disables them.
//!
//! Writing is [`queue`]'s job: one thread does the blocking `write(2)` to
//! fd 2; a line that does not fit the queue is dropped and counted
//! ([`dropped_lines`], `drainit_log_lines_dropped_total`).

mod queue;

use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use crate::settings::LogFormat;

pub use queue::dropped_lines;

/// Appends `value` as JSON (serde_json's escaping and number format).
/// Serialising a string, a bool or a number into a Vec cannot fail (a
/// non-finite float becomes `null`), hence the ignored results.
macro_rules! json_value {
    ($line:expr, $value:expr) => {{
        let _ = serde_json::to_writer(&mut *$line, $value);
    }};
}

/// How long drainit waits at exit for the queued lines to be written. A
/// blocked stderr must not hold up the exit for longer.
pub const EXIT_FLUSH: Duration = Duration::from_millis(100);

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// stderr could not be duplicated for the logging thread.
    #[error("failed to duplicate stderr: {0}")]
    Stderr(#[source] std::io::Error),
    /// Another subscriber was installed first.
    #[error("failed to install the log subscriber: {0}")]
    Install(#[source] tracing::subscriber::SetGlobalDefaultError),
}

/// The level filter `-v` selects: INFO by default, `-v` DEBUG, `-vv` TRACE.
pub fn level_for(verbose: u8) -> LevelFilter {
    match verbose {
        0 => LevelFilter::INFO,
        1 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// Installs the subscriber for the whole process; the logging thread
/// starts with the first line. Call it after the handled signals are
/// blocked: the thread inherits the signal mask of the thread that logs.
pub fn init(verbose: u8, format: LogFormat) -> Result<(), LoggingError> {
    queue::open().map_err(LoggingError::Stderr)?;
    let subscriber = LogSubscriber::new(level_for(verbose), format, queue::push);
    tracing::subscriber::set_global_default(subscriber).map_err(LoggingError::Install)
}

/// Gives the queued lines up to `EXIT_FLUSH` to be written when dropped:
/// hold it in `main` so the last lines (the exit code, an exec failure)
/// normally appear, while a stderr nobody reads delays the exit no more.
#[must_use = "the last log lines are flushed when this is dropped"]
pub struct FlushOnDrop;

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        queue::flush(EXIT_FLUSH);
    }
}

/// A `tracing` subscriber that renders each enabled event as one line and
/// passes it to `sink`.
pub struct LogSubscriber {
    max: LevelFilter,
    format: LogFormat,
    sink: fn(Vec<u8>),
}

impl LogSubscriber {
    /// Events up to `max` in `format`; `sink` takes each finished line
    /// (newline included) and must not block.
    pub fn new(max: LevelFilter, format: LogFormat, sink: fn(Vec<u8>)) -> LogSubscriber {
        LogSubscriber { max, format, sink }
    }
}

impl Subscriber for LogSubscriber {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        // Never called: `enabled` turns every span off.
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        (self.sink)(render(self.format, event, SystemTime::now()));
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// One event as one line in `format`, stamped `now`.
pub fn render(format: LogFormat, event: &Event<'_>, now: SystemTime) -> Vec<u8> {
    let level = event.metadata().level().as_str();
    match format {
        LogFormat::Text => {
            let mut line = String::with_capacity(128);
            push_timestamp(&mut line, now);
            // Writing into a String cannot fail.
            let _ = write!(line, " {level:>5} ");
            event.record(&mut TextFields {
                line: &mut line,
                first: true,
            });
            line.push('\n');
            line.into_bytes()
        }
        LogFormat::Json => {
            let mut timestamp = String::with_capacity(32);
            push_timestamp(&mut timestamp, now);
            let mut line = Vec::with_capacity(160);
            line.extend_from_slice(b"{\"timestamp\":");
            json_value!(&mut line, timestamp.as_str());
            line.extend_from_slice(b",\"level\":");
            json_value!(&mut line, level);
            event.record(&mut JsonFields { line: &mut line });
            line.extend_from_slice(b"}\n");
            line
        }
    }
}

/// RFC 3339 in UTC with microseconds, `2026-12-01T07:11:39.262941Z`.
fn push_timestamp(out: &mut String, now: SystemTime) {
    // humantime panics on a time before 1970 and fails after 9999; a clock
    // that far off must not take PID 1 down.
    let start = out.len();
    let written = now.duration_since(SystemTime::UNIX_EPOCH).is_ok()
        && write!(out, "{}", humantime::format_rfc3339_micros(now)).is_ok();
    if !written {
        out.truncate(start);
        out.push_str("<unknown time>");
    }
}

/// The text fields: the message as is, then `name=value` with the value's
/// `Debug` (so strings are quoted and escaped), separated by spaces.
struct TextFields<'a> {
    line: &'a mut String,
    first: bool,
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        match value.source() {
            Some(source) => self.record_debug(
                field,
                &format_args!("{value} {}.sources={}", field.name(), Sources(source)),
            ),
            None => self.record_debug(field, &format_args!("{value}")),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.first {
            self.line.push(' ');
        }
        self.first = false;
        let name = field.name();
        // Writing into a String fails only if a Debug impl does; keep what
        // it wrote.
        let _ = match name {
            "message" => write!(self.line, "{value:?}"),
            _ => write!(
                self.line,
                "{}={value:?}",
                name.strip_prefix("r#").unwrap_or(name)
            ),
        };
    }
}

/// An error's chain of sources as `[first, second]`.
struct Sources<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Sources<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        let mut next = Some(self.0);
        while let Some(error) = next {
            list.entry(&format_args!("{error}"));
            next = error.source();
        }
        list.finish()
    }
}

/// The JSON fields, flattened into the line's object: numbers and booleans
/// as JSON values, strings as strings, everything else as its `Debug`
/// text.
struct JsonFields<'a> {
    line: &'a mut Vec<u8>,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push(b',');
        json_value!(self.line, field.name());
        self.line.push(b':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        json_value!(self.line, &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        json_value!(self.line, &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        json_value!(self.line, &value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        json_value!(self.line, &value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        json_value!(self.line, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        json_value!(self.line, format!("{value:?}").as_str());
    }
}

#[cfg(test)]
mod tests;
