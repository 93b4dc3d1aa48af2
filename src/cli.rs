//! The command line: every flag, its environment variable and its parser.
//!
//! Flag names are part of the product (they end up in pod specs), so they
//! are spelled once, here. Every parser error names the accepted form;
//! clap prefixes it with the flag and exits with status 2.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::evidence::{AutoBounds, PropagationDelay};
use crate::probe::{ParseReadyCheckError, ReadyCheck};
use crate::signals::{self, Rewrite, Sig};
use crate::traffic::TrafficPorts;

/// drainit: a container init (PID 1) that drains traffic before it stops the app.
///
/// It forwards signals, reaps zombies and passes on the exit code like
/// tini; on /prestop or SIGTERM it turns /ready to 503, keeps the app
/// serving for --propagation-delay, then sends --stop-signal and enforces
/// a deadline before --grace-period runs out.
#[derive(Debug, Parser)]
#[command(
    name = "drainit",
    version,
    about,
    subcommand_precedence_over_arg = true,
    disable_help_subcommand = true,
    override_usage = "drainit [OPTIONS] [--] COMMAND [ARGS]...\n       drainit [OPTIONS] sidecar --ready-check URL [--app-pid-file PATH | --app-process NAME]\n       drainit install DIR",
    after_help = "Every flag can also be set by an environment variable DRAINIT_<FLAG>, e.g. DRAINIT_PROPAGATION_DELAY=10s.\nDurations are written like 500ms, 5s, 1m30s, and are at most 24h."
)]
pub struct Cli {
    /// Settings shared by the wrapper and the sidecar mode.
    #[command(flatten)]
    pub settings: Settings,

    /// `sidecar` runs without an app command, beside the app's container.
    #[command(subcommand)]
    pub mode: Option<Mode>,

    /// The app to run, with its arguments (option parsing stops at the first non-option).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        num_args = 0..
    )]
    pub command: Vec<OsString>,
}

/// The subcommands besides the default (wrapper) mode.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Run as a sidecar container: serve /ready and /prestop for an app in another container.
    Sidecar(SidecarArgs),
    /// Copy this binary into DIR as DIR/drainit (atomically, mode 0755), e.g. from an init container into a shared volume.
    Install(InstallArgs),
}

/// Where `drainit install` puts the binary.
#[derive(Debug, Args, Clone)]
pub struct InstallArgs {
    /// The directory to install into (it must exist: a mounted volume).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Flags only the sidecar mode has.
#[derive(Debug, Args, Clone, Default)]
pub struct SidecarArgs {
    /// With shareProcessNamespace: file holding the app's pid, to send it the stop signal after the delay.
    #[arg(
        long,
        env = "DRAINIT_APP_PID_FILE",
        value_name = "PATH",
        conflicts_with = "app_process"
    )]
    pub app_pid_file: Option<PathBuf>,

    /// With shareProcessNamespace: the app's process name (as in /proc/PID/comm), to send it the stop signal.
    #[arg(long, env = "DRAINIT_APP_PROCESS", value_name = "NAME")]
    pub app_process: Option<String>,
}

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

/// The admin server's address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminListen {
    /// No admin server (plain init).
    Off,
    /// Listen here.
    At(SocketAddr),
}

/// Every setting, shared by both modes.
#[derive(Debug, Args, Clone)]
pub struct Settings {
    /// How long the app keeps serving after a drain starts, while load balancers catch up (at most 24h), or `auto`: until the app's ports are quiet.
    #[arg(long, env = "DRAINIT_PROPAGATION_DELAY", default_value = "5s", value_parser = parse_propagation_delay, value_name = "DURATION|auto", global = true)]
    pub propagation_delay: PropagationDelay,

    /// With --propagation-delay auto: the delay never ends before this.
    #[arg(long, env = "DRAINIT_PROPAGATION_DELAY_MIN", default_value = "1s", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub propagation_delay_min: Duration,

    /// With --propagation-delay auto: the delay ends by this at the latest (the budget check uses it).
    #[arg(long, env = "DRAINIT_PROPAGATION_DELAY_MAX", default_value = "20s", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub propagation_delay_max: Duration,

    /// With --propagation-delay auto: how long the ports must be quiet, instead of the window computed from the traffic before the drain.
    #[arg(long, env = "DRAINIT_QUIET_WINDOW", value_parser = parse_positive_duration, value_name = "DURATION", global = true)]
    pub quiet_window: Option<Duration>,

    /// The app's TCP ports whose traffic drainit watches in a drain: `all` listening ports but its own, or a list such as 8080,8443.
    #[arg(long, env = "DRAINIT_TRAFFIC_PORTS", default_value = "all", value_parser = parse_traffic_ports, value_name = "all|PORT[,PORT]", global = true)]
    pub traffic_ports: TrafficPorts,

    /// How long into the drain /ready still answers 200 before it turns 503 (shorter than --propagation-delay).
    #[arg(long, env = "DRAINIT_UNREADY_DELAY", default_value = "0s", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub unready_delay: Duration,

    /// The signal that asks the app to stop once the delay is over (QUIT for nginx; not STOP, which only freezes it).
    #[arg(long, env = "DRAINIT_STOP_SIGNAL", default_value = "TERM", value_parser = parse_stop_signal, value_name = "SIGNAL", global = true)]
    pub stop_signal: Sig,

    /// The pod's terminationGracePeriodSeconds, counted from the start of the drain (at most 24h).
    #[arg(long, env = "DRAINIT_GRACE_PERIOD", default_value = "30s", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub grace_period: Duration,

    /// drainit SIGKILLs the app this long before the grace period ends, so it has the last word.
    #[arg(long, env = "DRAINIT_KILL_MARGIN", default_value = "2s", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub kill_margin: Duration,

    /// After the app exits: how long the rest of its process group has between SIGTERM and SIGKILL.
    #[arg(long, env = "DRAINIT_LEFTOVER_GRACE", default_value = "2s", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub leftover_grace: Duration,

    /// Signals that start the drain instead of being forwarded at once (comma-separated; only signals drainit forwards).
    #[arg(long, env = "DRAINIT_DRAIN_ON", default_value = "TERM", value_parser = parse_sig_list, value_name = "SIGNALS", global = true)]
    pub drain_on: SigList,

    /// Make a timing budget that does not fit the grace period an error (exit 2) instead of a warning (DRAINIT_STRICT=1|yes|true|on or 0|no|false|off).
    #[arg(long, env = "DRAINIT_STRICT", action = clap::ArgAction::SetTrue, value_parser = parse_switch, global = true)]
    pub strict: bool,

    /// The app's readiness: http://HOST:PORT/PATH (2xx = ready) or tcp://HOST:PORT (connect = ready).
    #[arg(long, env = "DRAINIT_READY_CHECK", value_parser = parse_ready_check, value_name = "URL", global = true)]
    pub ready_check: Option<ReadyCheck>,

    /// How often --ready-check runs.
    #[arg(long, env = "DRAINIT_READY_CHECK_INTERVAL", default_value = "1s", value_parser = parse_positive_duration, value_name = "DURATION", global = true)]
    pub ready_check_interval: Duration,

    /// How long one --ready-check may take before it counts as failed.
    #[arg(long, env = "DRAINIT_READY_CHECK_TIMEOUT", default_value = "1s", value_parser = parse_positive_duration, value_name = "DURATION", global = true)]
    pub ready_check_timeout: Duration,

    /// The admin HTTP server's address (/ready /live /prestop /status /metrics), or `off`.
    #[arg(long, env = "DRAINIT_ADMIN_LISTEN", default_value = "0.0.0.0:9095", value_parser = parse_admin_listen, value_name = "ADDR|off", global = true)]
    pub admin_listen: AdminListen,

    /// At most this many admin connections at once (lowered to fit the file limit); at the cap the oldest idle one is closed.
    #[arg(long, env = "DRAINIT_ADMIN_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..), value_name = "N", global = true)]
    pub admin_max_connections: u32,

    /// Only these networks may call /prestop (comma-separated CIDRs, e.g. the node's IP/32).
    #[arg(long, env = "DRAINIT_PRESTOP_ALLOW_FROM", value_parser = parse_cidr_list, value_name = "CIDR[,CIDR]", global = true)]
    pub prestop_allow_from: Option<CidrList>,

    /// /prestop requires this value in the X-Drainit-Token header (not empty, no surrounding blanks).
    #[arg(
        long,
        env = "DRAINIT_PRESTOP_TOKEN",
        value_name = "TOKEN",
        value_parser = parse_token,
        hide_env_values = true,
        global = true
    )]
    pub prestop_token: Option<String>,

    /// Forward signals to the direct child or to its whole process group.
    #[arg(
        long,
        env = "DRAINIT_SIGNAL_TARGET",
        value_enum,
        default_value = "child",
        value_name = "child|group",
        global = true
    )]
    pub signal_target: SignalTarget,

    /// Rewrite a forwarded signal: FROM:TO (TERM:QUIT, 15:3, USR1:0 drops USR1). Repeatable.
    #[arg(long = "rewrite", env = "DRAINIT_REWRITE", value_delimiter = ',', value_parser = parse_rewrite, value_name = "FROM:TO", global = true)]
    pub rewrites: Vec<Rewrite>,

    /// More log detail (-v debug, -vv trace; DRAINIT_VERBOSE=0|1|2 or info|debug|trace).
    #[arg(short, long, env = "DRAINIT_VERBOSE", action = clap::ArgAction::Count, value_parser = parse_verbosity, global = true)]
    pub verbose: u8,

    /// Replace the exit code FROM by TO (0..=255): 143:0 makes a drain that ended in SIGTERM exit 0. Repeatable.
    #[arg(long = "remap-exit", env = "DRAINIT_REMAP_EXIT", value_delimiter = ',', value_parser = parse_remap_exit, value_name = "FROM:TO", global = true)]
    pub remap_exit: Vec<ExitRemap>,

    /// Log line format on stderr.
    #[arg(
        long,
        env = "DRAINIT_LOG_FORMAT",
        value_enum,
        default_value = "text",
        value_name = "text|json",
        global = true
    )]
    pub log_format: LogFormat,
}

/// A list of signals; a newtype so clap treats it as one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigList(pub Vec<Sig>);

/// A list of networks; a newtype so clap treats it as one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrList(pub Vec<IpNet>);

impl CidrList {
    /// Whether `ip` lies in one of the networks, in either of its forms: a
    /// dual-stack (`[::]`) listener sees IPv4 callers as `::ffff:a.b.c.d`,
    /// so `10.0.0.0/8` and `::ffff:0:0/96` must both match them.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let plain = ip.to_canonical();
        let mapped = match plain {
            std::net::IpAddr::V4(v4) => std::net::IpAddr::V6(v4.to_ipv6_mapped()),
            v6 => v6,
        };
        self.0
            .iter()
            .any(|net| net.contains(&plain) || net.contains(&mapped))
    }
}

/// The longest duration any flag accepts. Far beyond any real grace
/// period (Kubernetes pods rarely get more than an hour), and small enough
/// that `Instant + duration` can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

const DURATION_FORM: &str = "a duration from 0s to at most 24h, such as 500ms, 5s or 1m30s";

fn parse_duration(input: &str) -> Result<Duration, String> {
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

fn parse_propagation_delay(input: &str) -> Result<PropagationDelay, String> {
    if input.trim().eq_ignore_ascii_case("auto") {
        return Ok(PropagationDelay::Auto);
    }
    parse_duration(input)
        .map(PropagationDelay::Fixed)
        .map_err(|e| format!("{e}, or `auto`"))
}

fn parse_traffic_ports(input: &str) -> Result<TrafficPorts, String> {
    input
        .parse()
        .map_err(|e: crate::traffic::TrafficPortsError| e.to_string())
}

fn parse_positive_duration(input: &str) -> Result<Duration, String> {
    match parse_duration(input)? {
        Duration::ZERO => Err(format!("expected a duration above zero, {DURATION_FORM}")),
        duration => Ok(duration),
    }
}

fn parse_sig(input: &str) -> Result<Sig, String> {
    input
        .parse()
        .map_err(|e: signals::ParseSigError| e.to_string())
}

/// SIGSTOP cannot be caught: it freezes the app instead of asking it to
/// stop, and a frozen app only ends at the deadline's SIGKILL. SIGKILL is
/// accepted: it ends the app at once after the propagation delay, which is
/// what an app without a graceful stop needs.
fn parse_stop_signal(input: &str) -> Result<Sig, String> {
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

fn parse_sig_list(input: &str) -> Result<SigList, String> {
    let list = signals::parse_list(input)
        .map_err(|e| format!("{e} (a comma-separated list, e.g. TERM,INT)"))?;
    if let Some(sig) = list.iter().find(|sig| !is_handled(**sig)) {
        return Err(format!(
            "{sig} never reaches drainit as a drain trigger (it cannot be caught, is a fault, or drainit uses it itself); use TERM, INT, QUIT, HUP, USR1, USR2 or a real-time signal"
        ));
    }
    Ok(SigList(list))
}

fn parse_rewrite(input: &str) -> Result<Rewrite, String> {
    let rule: Rewrite = input.parse()?;
    if !is_handled(rule.from) {
        return Err(format!(
            "{} is never forwarded, so it cannot be rewritten (it cannot be caught, is a fault, or drainit uses it itself)",
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

fn parse_ready_check(input: &str) -> Result<ReadyCheck, String> {
    input
        .parse()
        .map_err(|e: ParseReadyCheckError| e.to_string())
}

/// The spellings of an on/off switch in an environment variable.
const SWITCH_FORMS: &str = "expected 1, yes, true, on (enable) or 0, no, false, off (disable)";

fn parse_switch(input: &str) -> Result<bool, String> {
    match input.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(SWITCH_FORMS.to_string()),
    }
}

/// `-v` counts up through this parser too (clap hands it "1", "2", ...),
/// so any small number is accepted; the names are for DRAINIT_VERBOSE.
fn parse_verbosity(input: &str) -> Result<u8, String> {
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

fn parse_token(input: &str) -> Result<String, String> {
    if input.is_empty() {
        return Err(
            "must not be empty (is a Secret key missing?): an empty header would match it".into(),
        );
    }
    if input.trim() != input {
        return Err(
            "has blanks at its start or end, which an HTTP header value cannot carry: it could never match"
                .into(),
        );
    }
    if input.chars().any(char::is_control) {
        return Err("has control characters, which an HTTP header value cannot carry".into());
    }
    Ok(input.to_string())
}

/// One `--remap-exit FROM:TO` rule: drainit exits TO where it would have exited FROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRemap {
    /// The exit code drainit would have used (the app's, or 128+N).
    pub from: u8,
    /// The exit code it uses instead.
    pub to: u8,
}

const REMAP_FORM: &str = "expected FROM:TO with exit codes 0..=255, e.g. 143:0";

impl std::str::FromStr for ExitRemap {
    type Err = String;

    fn from_str(input: &str) -> Result<ExitRemap, String> {
        let (from, to) = input
            .trim()
            .split_once(':')
            .ok_or_else(|| REMAP_FORM.to_string())?;
        let code = |part: &str| {
            part.trim()
                .parse::<u8>()
                .map_err(|_| REMAP_FORM.to_string())
        };
        Ok(ExitRemap {
            from: code(from)?,
            to: code(to)?,
        })
    }
}

fn parse_remap_exit(input: &str) -> Result<ExitRemap, String> {
    input.parse()
}

/// A combination of flags that cannot work together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// `/ready` would still answer 200 when the app is told to stop.
    #[error(
        "--unready-delay {unready} must be shorter than --propagation-delay {propagation}: /ready would still answer 200 when the app is told to stop"
    )]
    UnreadyDelayTooLong {
        /// `--unready-delay`, formatted.
        unready: String,
        /// `--propagation-delay`, formatted.
        propagation: String,
    },
    /// The floor of `auto` above its ceiling.
    #[error("--propagation-delay-min {min} is above --propagation-delay-max {max}")]
    FloorAboveCeiling {
        /// `--propagation-delay-min`, formatted.
        min: String,
        /// `--propagation-delay-max`, formatted.
        max: String,
    },
    /// The same exit code is remapped to two different codes.
    #[error(
        "--remap-exit maps {from} twice (to {first} and to {second}): keep one rule per exit code"
    )]
    AmbiguousRemap {
        /// The code listed twice.
        from: u8,
        /// Its first target.
        first: u8,
        /// Its other target.
        second: u8,
    },
}

impl Settings {
    /// Checks the combinations of flags no single parser can see.
    pub fn validate(&self) -> Result<(), SettingsError> {
        // Refused rather than clamped: the user asked for /ready to stay up
        // for a time that never comes, and a pod that fails to start shows
        // the mistake at deploy time, while a clamp warning is easily missed.
        let format = |d: Duration| humantime::format_duration(d).to_string();
        if !self.unready_delay.is_zero() && self.unready_delay >= self.shortest_delay() {
            return Err(SettingsError::UnreadyDelayTooLong {
                unready: format(self.unready_delay),
                propagation: match self.propagation_delay {
                    PropagationDelay::Fixed(delay) => format(delay),
                    PropagationDelay::Auto => {
                        format!(
                            "auto (--propagation-delay-min {})",
                            format(self.propagation_delay_min)
                        )
                    }
                },
            });
        }
        if self.propagation_delay_min > self.propagation_delay_max {
            return Err(SettingsError::FloorAboveCeiling {
                min: format(self.propagation_delay_min),
                max: format(self.propagation_delay_max),
            });
        }
        for (i, rule) in self.remap_exit.iter().enumerate() {
            let other = self.remap_exit[..i]
                .iter()
                .find(|earlier| earlier.from == rule.from && earlier.to != rule.to);
            if let Some(earlier) = other {
                return Err(SettingsError::AmbiguousRemap {
                    from: rule.from,
                    first: earlier.to,
                    second: rule.to,
                });
            }
        }
        Ok(())
    }

    /// The bounds of `--propagation-delay auto`.
    pub fn auto_bounds(&self) -> AutoBounds {
        AutoBounds {
            min: self.propagation_delay_min,
            max: self.propagation_delay_max,
            quiet_window: self.quiet_window,
        }
    }

    /// The longest the app may keep serving after a drain starts: the
    /// fixed delay, or the ceiling of `auto`. The budget is checked with it.
    pub fn longest_delay(&self) -> Duration {
        match self.propagation_delay {
            PropagationDelay::Fixed(delay) => delay,
            PropagationDelay::Auto => self.propagation_delay_max,
        }
    }

    /// The soonest the stop signal can go out: the fixed delay, or the
    /// floor of `auto`.
    pub fn shortest_delay(&self) -> Duration {
        match self.propagation_delay {
            PropagationDelay::Fixed(delay) => delay,
            PropagationDelay::Auto => self.propagation_delay_min,
        }
    }

    /// drainit's exit code after `--remap-exit`: the first rule for `code`
    /// wins; codes without a rule pass unchanged.
    pub fn remap_exit(&self, code: u8) -> u8 {
        self.remap_exit
            .iter()
            .find(|rule| rule.from == code)
            .map_or(code, |rule| rule.to)
    }
}

impl Cli {
    /// Parses `args` (the program name first) and validates the settings;
    /// a validation failure is a clap usage error (exit 2).
    pub fn try_parse_validated_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let cli = Cli::try_parse_from(args)?;
        cli.settings.validate().map_err(|problem| {
            Cli::command().error(clap::error::ErrorKind::ArgumentConflict, problem)
        })?;
        Ok(cli)
    }

    /// Parses the process's arguments and environment; on a bad value or
    /// combination prints the error with the usage and exits 2.
    pub fn parse_validated() -> Cli {
        match Cli::try_parse_validated_from(std::env::args_os()) {
            Ok(cli) => cli,
            Err(error) => error.exit(),
        }
    }
}

fn parse_admin_listen(input: &str) -> Result<AdminListen, String> {
    if input.trim().eq_ignore_ascii_case("off") {
        return Ok(AdminListen::Off);
    }
    input
        .trim()
        .parse::<SocketAddr>()
        .map(AdminListen::At)
        .map_err(|_| "expected IP:PORT such as 0.0.0.0:9095, [::]:9095, or off".to_string())
}

fn parse_cidr_list(input: &str) -> Result<CidrList, String> {
    input
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<IpNet>()
                .or_else(|_| part.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("'{part}' is not a network: expected CIDRs such as 10.0.0.7/32,192.168.0.0/16 or fd00::/8"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(CidrList)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("drainit").chain(args.iter().copied()))
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

    #[test]
    fn auto_bounds_are_checked() {
        let validated = |args: &[&str]| {
            Cli::try_parse_validated_from(
                ["drainit", "--propagation-delay", "auto"]
                    .into_iter()
                    .chain(args.iter().copied())
                    .chain(["--", "true"]),
            )
        };
        assert!(validated(&[]).is_ok());
        let inverted = validated(&[
            "--propagation-delay-min",
            "30s",
            "--propagation-delay-max",
            "10s",
        ])
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(
            inverted.contains("--propagation-delay-min 30s is above --propagation-delay-max 10s"),
            "{inverted}"
        );
        let zero = validated(&["--quiet-window", "0s"])
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            zero.kind(),
            clap::error::ErrorKind::ValueValidation,
            "{zero}"
        );
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_stop_at_the_first_non_option() {
        let cli = parse(&[
            "--propagation-delay",
            "0s",
            "sh",
            "-c",
            "exit 3",
            "--version",
        ])
        .expect("parses");
        assert_eq!(cli.command, ["sh", "-c", "exit 3", "--version"]);
        assert_eq!(
            cli.settings.propagation_delay,
            PropagationDelay::Fixed(Duration::ZERO)
        );
        assert!(cli.mode.is_none());
    }

    #[test]
    fn an_unknown_flag_before_the_command_is_refused() {
        let error = parse(&["--bogus-flag", "true"]).expect_err("unknown flag");
        assert_eq!(error.kind(), clap::error::ErrorKind::UnknownArgument);
        assert!(error.to_string().contains("--bogus-flag"), "{error}");
        // After the command, flags belong to the command.
        let cli = parse(&["true", "--bogus-flag"]).expect("parses");
        assert_eq!(cli.command, ["true", "--bogus-flag"]);
    }

    #[test]
    fn double_dash_is_accepted_and_shields_sidecar() {
        let cli = parse(&["--", "sidecar", "-x"]).expect("parses");
        assert_eq!(cli.command, ["sidecar", "-x"]);
        assert!(cli.mode.is_none());
        let cli = parse(&["--", "ls", "--", "x"]).expect("parses");
        assert_eq!(cli.command, ["ls", "--", "x"]);
    }

    #[test]
    fn sidecar_subcommand_with_global_flags() {
        let cli = parse(&[
            "sidecar",
            "--ready-check",
            "tcp://127.0.0.1:8080",
            "--app-process",
            "nginx",
        ])
        .expect("parses");
        assert!(
            matches!(cli.mode, Some(Mode::Sidecar(ref s)) if s.app_process.as_deref() == Some("nginx"))
        );
        assert!(cli.settings.ready_check.is_some());
        assert!(cli.command.is_empty());
    }

    #[test]
    fn defaults() {
        let s = parse(&["true"]).expect("parses").settings;
        assert_eq!(
            s.propagation_delay,
            PropagationDelay::Fixed(Duration::from_secs(5))
        );
        assert_eq!(s.propagation_delay_min, Duration::from_secs(1));
        assert_eq!(s.propagation_delay_max, Duration::from_secs(20));
        assert_eq!(s.traffic_ports, TrafficPorts::AllListening);
        assert_eq!(s.grace_period, Duration::from_secs(30));
        assert_eq!(s.kill_margin, Duration::from_secs(2));
        assert_eq!(s.stop_signal, Sig::TERM);
        assert_eq!(s.drain_on, SigList(vec![Sig::TERM]));
        assert_eq!(s.signal_target, SignalTarget::Child);
        assert_eq!(
            s.admin_listen,
            AdminListen::At("0.0.0.0:9095".parse().expect("addr"))
        );
    }

    #[test]
    fn bad_values_name_the_flag_and_the_form() {
        let table: &[(&[&str], &str)] = &[
            (
                &["--propagation-delay", "5 parsecs", "x"],
                "--propagation-delay",
            ),
            (&["--stop-signal", "TERMINATE", "x"], "TERM, SIGTERM, 15"),
            (&["--rewrite", "TERM", "x"], "FROM:TO"),
            (&["--admin-listen", "localhost", "x"], "IP:PORT"),
            (&["--prestop-allow-from", "10.0.0.0/99", "x"], "CIDR"),
            (&["--ready-check", "ftp://x", "x"], "http://"),
            (&["--signal-target", "everyone", "x"], "child"),
            (&["--ready-check-interval", "0s", "x"], "above zero"),
            (&["--grace-period", "25h", "x"], "at most 24h"),
            (
                &["--kill-margin", "99999999999999999999s", "x"],
                "at most 24h",
            ),
            (&["--stop-signal", "STOP", "x"], "freezes"),
            (&["--drain-on", "TERM,SEGV", "x"], "SIGSEGV"),
            (&["--rewrite", "PIPE:TERM", "x"], "SIGPIPE"),
            (&["--rewrite", "TERM:STOP", "x"], "SIGSTOP"),
            (&["--ready-check", "tcp://h:0", "x"], "port 0"),
            (&["--prestop-token", "", "x"], "empty"),
            (&["--prestop-token", " x", "x"], "blanks"),
            (&["--remap-exit", "143", "x"], "FROM:TO"),
        ];
        for (args, needle) in table {
            let error = parse(args).expect_err("must be refused").to_string();
            assert!(error.contains(needle), "{args:?}: {error}");
        }
    }

    #[test]
    fn cidr_lists_match_mapped_addresses() {
        let list = parse_cidr_list("10.1.2.3/32, 192.168.0.0/16").expect("valid");
        assert!(list.contains("10.1.2.3".parse().expect("ip")));
        assert!(list.contains("::ffff:192.168.4.4".parse().expect("ip")));
        assert!(!list.contains("10.1.2.4".parse().expect("ip")));
        let single = parse_cidr_list("127.0.0.1").expect("a bare IP is a /32");
        assert!(single.contains("127.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn switches_take_the_usual_spellings() {
        let table: &[(&str, Option<bool>)] = &[
            ("1", Some(true)),
            ("yes", Some(true)),
            ("TRUE", Some(true)),
            ("on", Some(true)),
            ("0", Some(false)),
            ("No", Some(false)),
            ("false", Some(false)),
            ("off", Some(false)),
            ("", None),
            ("y", None),
            ("2", None),
        ];
        for (input, expected) in table {
            assert_eq!(parse_switch(input).ok(), *expected, "{input:?}");
        }
        assert!(parse(&["--strict", "x"]).expect("parses").settings.strict);
        assert!(!parse(&["x"]).expect("parses").settings.strict);
    }

    #[test]
    fn verbosity_counts_and_names() {
        assert_eq!(parse(&["-vv", "x"]).expect("parses").settings.verbose, 2);
        assert_eq!(parse(&["-v", "x"]).expect("parses").settings.verbose, 1);
        let table: &[(&str, Option<u8>)] = &[
            ("0", Some(0)),
            ("2", Some(2)),
            ("info", Some(0)),
            ("DEBUG", Some(1)),
            ("trace", Some(2)),
            ("loud", None),
            ("-1", None),
        ];
        for (input, expected) in table {
            assert_eq!(parse_verbosity(input).ok(), *expected, "{input:?}");
        }
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(parse_duration("24h"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for too_long in ["24h 1s", "18446744073709551615s", "1000y"] {
            let error = parse_duration(too_long).expect_err(too_long);
            assert!(error.contains("at most 24h"), "{too_long}: {error}");
        }
    }

    #[test]
    fn remap_exit_table() {
        let cli =
            parse(&["--remap-exit", "143:0,137:1", "--remap-exit", "2:0", "x"]).expect("parses");
        let table: &[(u8, u8)] = &[(143, 0), (137, 1), (2, 0), (0, 0), (1, 1), (255, 255)];
        for (code, expected) in table {
            assert_eq!(cli.settings.remap_exit(*code), *expected, "{code}");
        }
        for bad in [
            "143", "143:", ":0", "256:0", "0:256", "-1:0", "a:1", "1:2:3",
        ] {
            assert!(bad.parse::<ExitRemap>().is_err(), "{bad}");
        }
        assert_eq!(
            " 143 : 0 ".parse::<ExitRemap>(),
            Ok(ExitRemap { from: 143, to: 0 })
        );
    }

    #[test]
    fn validation_refuses_unworkable_combinations() {
        let validate = |args: &[&str]| {
            Cli::try_parse_validated_from(std::iter::once("drainit").chain(args.iter().copied()))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let table: &[(&[&str], Option<&str>)] = &[
            (&["--unready-delay", "5s", "x"], Some("--unready-delay 5s")),
            (&["--unready-delay", "4s", "x"], None),
            (
                &["--propagation-delay", "0s", "--unready-delay", "1s", "x"],
                Some("--propagation-delay 0s"),
            ),
            (&["--propagation-delay", "0s", "x"], None),
            (&["--remap-exit", "1:0,1:2", "x"], Some("maps 1 twice")),
            (&["--remap-exit", "1:0,1:0", "x"], None),
        ];
        for (args, expected) in table {
            match (validate(args), expected) {
                (Ok(()), None) => {}
                (Err(error), Some(needle)) => assert!(error.contains(needle), "{args:?}: {error}"),
                (got, _) => panic!("{args:?}: {got:?}, expected {expected:?}"),
            }
        }
    }
    #[test]
    fn cidr_lists_match_both_forms_of_an_address() {
        let mapped = parse_cidr_list("::ffff:0:0/96").expect("valid");
        assert!(mapped.contains("10.1.2.3".parse().expect("ip")));
        assert!(mapped.contains("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!mapped.contains("fd00::1".parse().expect("ip")));
        let everything = parse_cidr_list("::/0").expect("valid");
        assert!(everything.contains("127.0.0.1".parse().expect("ip")));
        let v4 = parse_cidr_list("10.0.0.0/8").expect("valid");
        assert!(v4.contains("::ffff:10.9.9.9".parse().expect("ip")));
        assert!(!v4.contains("fd00::a00:1".parse().expect("ip")));
    }
}
