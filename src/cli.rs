//! The command line: every flag and its environment variable (the clap
//! struct), and the parse that validates it.
//!
//! Flag names are part of the product (they end up in pod specs), so they
//! are spelled once, here; each value's type and parser live in
//! [`crate::settings`]. Every parser error names the accepted form; clap
//! prefixes it with the flag and exits with status 2.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::durations::{parse_duration, parse_positive_duration};
use crate::settings::admin::{parse_admin_listen, parse_cidr_list, parse_token};
use crate::settings::choices::{parse_switch, parse_verbosity};
use crate::settings::delay::parse_propagation_delay;
use crate::settings::drain_notify::parse_drain_notify;
use crate::settings::exit_remap::parse_remap_exit;
use crate::settings::kubernetes::SERVICE_ACCOUNT_DIR;
use crate::settings::ready_check::parse_ready_check;
use crate::settings::signal_flags::{parse_rewrite, parse_sig_list, parse_stop_signal};
use crate::settings::traffic_ports::parse_traffic_ports;
use crate::settings::{
    AdminListen, CidrList, DrainNotify, ExitRemap, KubernetesApi, LogFormat, PropagationDelay,
    ReadyCheck, SigList, SignalTarget, TrafficPorts,
};
use crate::signals::{Rewrite, Sig};

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

    /// Only these may call /prestop: comma-separated CIDRs and `node` (the gateways of this pod's routes: the node on a bridge network), e.g. node,$(NODE_IP)/32.
    #[arg(long, env = "DRAINIT_PRESTOP_ALLOW_FROM", value_parser = parse_cidr_list, value_name = "node|CIDR[,...]", global = true)]
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

    /// Rewrite a forwarded signal: FROM:TO (TERM:QUIT, 15:3, USR1:0 drops USR1, HUP:SYS). Repeatable.
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

    /// Use the Kubernetes API when in a pod with a service account (auto): the pod's grace as the default --grace-period, a deletion's own grace, an Event per drain; off: never.
    #[arg(
        long,
        env = "DRAINIT_KUBERNETES",
        value_enum,
        default_value = "auto",
        value_name = "auto|off",
        global = true
    )]
    pub kubernetes: KubernetesApi,

    /// Where the service account's token, ca.crt and namespace files are.
    #[arg(long, env = "DRAINIT_KUBERNETES_SECRETS", default_value = SERVICE_ACCOUNT_DIR, value_name = "DIR", global = true)]
    pub kubernetes_secrets: PathBuf,

    /// This pod's name (the downward API's metadata.name); default: $HOSTNAME.
    #[arg(long, env = "DRAINIT_POD_NAME", value_name = "NAME", global = true)]
    pub pod_name: Option<String>,

    /// This pod's namespace (the downward API's metadata.namespace); default: the service account's namespace file.
    #[arg(
        long,
        env = "DRAINIT_POD_NAMESPACE",
        value_name = "NAMESPACE",
        global = true
    )]
    pub pod_namespace: Option<String>,

    /// At the drain's start, tell the app: a signal (e.g. USR1) or a GET to a loopback URL (http://127.0.0.1:PORT/PATH), for servers with a lame-duck mode.
    #[arg(long, env = "DRAINIT_DRAIN_NOTIFY", value_parser = parse_drain_notify, value_name = "SIGNAL|URL", global = true)]
    pub drain_notify: Option<DrainNotify>,

    /// Whether --grace-period was given (flag or environment), not defaulted.
    #[arg(skip)]
    pub grace_period_set: bool,
}

impl Cli {
    /// Parses `args` (the program name first) and validates the settings;
    /// a validation failure is a clap usage error (exit 2).
    pub fn try_parse_validated_from<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli =
            Cli::from_arg_matches(&matches).map_err(|error| error.format(&mut Cli::command()))?;
        cli.settings.grace_period_set = given(&matches, "grace_period");
        cli.validate().map_err(|problem| {
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

/// Whether the flag `id` was given on the command line or in the
/// environment (a global flag may sit on the sidecar subcommand's matches).
fn given(matches: &clap::ArgMatches, id: &str) -> bool {
    let explicit = |m: &clap::ArgMatches| {
        matches!(
            m.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    explicit(matches) || matches.subcommand().is_some_and(|(_, sub)| explicit(sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("drainit").chain(args.iter().copied()))
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
    fn sidecar_notify_signal_needs_a_way_to_find_the_app() {
        let validated = |extra: &[&str]| {
            Cli::try_parse_validated_from(
                ["drainit", "--drain-notify", "USR1", "sidecar"]
                    .into_iter()
                    .chain(["--ready-check", "tcp://127.0.0.1:8080"])
                    .chain(extra.iter().copied()),
            )
        };
        let refused = validated(&[]).expect_err("nothing to signal").to_string();
        assert!(
            refused.contains("--app-pid-file") && refused.contains("SIGUSR1"),
            "{refused}"
        );
        assert!(validated(&["--app-process", "nginx"]).is_ok());
        assert!(validated(&["--app-pid-file", "/run/app.pid"]).is_ok());
        let url = Cli::try_parse_validated_from([
            "drainit",
            "--drain-notify",
            "http://127.0.0.1:8080/drain",
            "sidecar",
            "--ready-check",
            "tcp://127.0.0.1:8080",
        ]);
        assert!(url.is_ok(), "a URL needs no pid: {url:?}");
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
            (&["--rewrite", "CHLD:TERM", "x"], "SIGCHLD"),
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
}

/// `--grace-period` given or defaulted: the pod's
/// terminationGracePeriodSeconds replaces only a default (issue 18).
#[cfg(test)]
mod grace_period_given {
    use super::*;

    fn given(args: &[&str]) -> bool {
        Cli::try_parse_validated_from(std::iter::once("drainit").chain(args.iter().copied()))
            .map(|cli| cli.settings.grace_period_set)
            .expect("parses")
    }

    #[test]
    fn only_a_given_flag_counts() {
        assert!(!given(&["--", "true"]));
        assert!(given(&["--grace-period", "30s", "--", "true"]));
        assert!(given(&[
            "sidecar",
            "--ready-check",
            "http://127.0.0.1:8080/",
            "--grace-period",
            "45s"
        ]));
        assert!(!given(&[
            "sidecar",
            "--ready-check",
            "http://127.0.0.1:8080/"
        ]));
    }
}
