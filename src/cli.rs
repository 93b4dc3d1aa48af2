//! The command line: every flag, its environment variable and its parser.
//!
//! Flag names are part of the product (they end up in pod specs), so they
//! are spelled once, here. Every parser error names the accepted form;
//! clap prefixes it with the flag and exits with status 2.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::probe::ReadyCheck;
use crate::signals::{self, Rewrite, Sig};

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
    override_usage = "drainit [OPTIONS] [--] COMMAND [ARGS]...\n       drainit [OPTIONS] sidecar --ready-check URL [--app-pid-file PATH | --app-process NAME]",
    after_help = "Every flag can also be set by an environment variable DRAINIT_<FLAG>, e.g. DRAINIT_PROPAGATION_DELAY=10s.\nDurations are written like 500ms, 5s, 1m30s."
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
    /// How long the app keeps serving after a drain starts, while load balancers catch up.
    #[arg(long, env = "DRAINIT_PROPAGATION_DELAY", default_value = "5s", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub propagation_delay: Duration,

    /// How long into the drain /ready still answers 200 before it turns 503.
    #[arg(long, env = "DRAINIT_UNREADY_DELAY", default_value = "0s", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub unready_delay: Duration,

    /// The signal that asks the app to stop once the delay is over (QUIT for nginx).
    #[arg(long, env = "DRAINIT_STOP_SIGNAL", default_value = "TERM", value_parser = parse_sig, value_name = "SIGNAL", global = true)]
    pub stop_signal: Sig,

    /// The pod's terminationGracePeriodSeconds, counted from the start of the drain.
    #[arg(long, env = "DRAINIT_GRACE_PERIOD", default_value = "30s", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub grace_period: Duration,

    /// drainit SIGKILLs the app this long before the grace period ends, so it has the last word.
    #[arg(long, env = "DRAINIT_KILL_MARGIN", default_value = "2s", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub kill_margin: Duration,

    /// After the app exits: how long the rest of its process group has between SIGTERM and SIGKILL.
    #[arg(long, env = "DRAINIT_LEFTOVER_GRACE", default_value = "2s", value_parser = parse_duration, value_name = "DURATION", global = true)]
    pub leftover_grace: Duration,

    /// Signals that start the drain instead of being forwarded at once (comma-separated).
    #[arg(long, env = "DRAINIT_DRAIN_ON", default_value = "TERM", value_parser = parse_sig_list, value_name = "SIGNALS", global = true)]
    pub drain_on: SigList,

    /// Make a timing budget that does not fit the grace period an error (exit 2) instead of a warning.
    #[arg(long, env = "DRAINIT_STRICT", global = true)]
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

    /// At most this many admin connections at once; more are closed at accept.
    #[arg(long, env = "DRAINIT_ADMIN_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..), value_name = "N", global = true)]
    pub admin_max_connections: u32,

    /// Only these networks may call /prestop (comma-separated CIDRs, e.g. the node's IP/32).
    #[arg(long, env = "DRAINIT_PRESTOP_ALLOW_FROM", value_parser = parse_cidr_list, value_name = "CIDR[,CIDR]", global = true)]
    pub prestop_allow_from: Option<CidrList>,

    /// /prestop requires this value in the X-Drainit-Token header.
    #[arg(
        long,
        env = "DRAINIT_PRESTOP_TOKEN",
        value_name = "TOKEN",
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

    /// More log detail (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

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
    /// Whether `ip` lies in one of the networks.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// Maps IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, as seen on a dual-stack
/// listener) to plain IPv4, so an IPv4 CIDR matches them.
pub fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    }
}

const DURATION_FORM: &str = "a duration such as 500ms, 5s, 1m30s or 0s";

fn parse_duration(input: &str) -> Result<Duration, String> {
    let trimmed = input.trim();
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(trimmed).map_err(|e| format!("expected {DURATION_FORM} ({e})"))
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

fn parse_sig_list(input: &str) -> Result<SigList, String> {
    signals::parse_list(input)
        .map(SigList)
        .map_err(|e| format!("{e} (a comma-separated list, e.g. TERM,INT)"))
}

fn parse_rewrite(input: &str) -> Result<Rewrite, String> {
    input.parse()
}

fn parse_ready_check(input: &str) -> Result<ReadyCheck, String> {
    input.parse()
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
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("drainit").chain(args.iter().copied()))
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
        assert_eq!(cli.settings.propagation_delay, Duration::ZERO);
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
        assert_eq!(s.propagation_delay, Duration::from_secs(5));
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
}
