//! The command line through the real binary: values that cannot work are
//! refused at parse time with exit 2 and a message naming the flag and
//! what it accepts (issue 9, defects 4, 11, 17, 21), and the accepted
//! spellings of switches and environment variables start the app.

use crate::common;

use std::time::Duration;

use common::{scratch, Proc};

/// How long a refused (or accepted, `true`-running) start may take.
const PROMPT: Duration = Duration::from_secs(20);

/// Runs drainit with `args` (and the app `true`) and `envs`; returns the
/// exit code and stderr.
fn run(name: &str, args: &[&str], envs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let dir = scratch(name);
    let mut full = vec!["--admin-listen", "off"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--", "true"]);
    let mut proc = Proc::drainit(&dir, &full, envs);
    let status = proc.wait(PROMPT);
    (status.code(), proc.stderr(), proc.report())
}

/// Asserts that `args`/`envs` are refused with exit 2 and that stderr
/// names every needle.
fn assert_refused(args: &[&str], envs: &[(&str, &str)], needles: &[&str]) {
    let (code, stderr, report) = run("refused", args, envs);
    assert_eq!(code, Some(2), "{args:?} {envs:?} must exit 2\n{report}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?} {envs:?}: stderr must name {needle:?}\n{report}"
        );
    }
    assert!(
        !stderr.contains("panicked"),
        "{args:?}: a refusal, not a panic\n{report}"
    );
}

/// Asserts that `args`/`envs` start the app (`true`, so exit 0).
fn assert_accepted(args: &[&str], envs: &[(&str, &str)]) {
    let (code, _, report) = run("accepted", args, envs);
    assert_eq!(
        code,
        Some(0),
        "{args:?} {envs:?} must run the app\n{report}"
    );
}

#[test]
fn huge_durations_are_refused_naming_the_flag_and_the_range() {
    let huge = "18446744073709551615s";
    for flag in [
        "--propagation-delay",
        "--unready-delay",
        "--grace-period",
        "--kill-margin",
        "--leftover-grace",
        "--ready-check-interval",
        "--ready-check-timeout",
    ] {
        assert_refused(&[flag, huge], &[], &[flag, "at most 24h"]);
    }
    assert_refused(
        &[],
        &[("DRAINIT_GRACE_PERIOD", "25h")],
        &["--grace-period", "at most 24h"],
    );
    // The bound itself is accepted.
    assert_accepted(&["--grace-period", "24h", "--kill-margin", "2s"], &[]);
}

#[test]
fn an_unready_delay_not_shorter_than_the_propagation_delay_is_refused() {
    assert_refused(
        &["--propagation-delay", "5s", "--unready-delay", "5s"],
        &[],
        &["--unready-delay", "--propagation-delay"],
    );
    assert_refused(
        &["--propagation-delay", "0s", "--unready-delay", "1s"],
        &[],
        &["--unready-delay", "--propagation-delay"],
    );
    assert_accepted(&["--propagation-delay", "5s", "--unready-delay", "4s"], &[]);
    assert_accepted(&["--propagation-delay", "0s", "--unready-delay", "0s"], &[]);
}

#[test]
fn empty_or_blank_edged_tokens_are_refused() {
    for token in ["", " s3cret", "s3cret ", "\ts3cret", "   "] {
        assert_refused(&["--prestop-token", token], &[], &["--prestop-token"]);
        assert_refused(
            &[],
            &[("DRAINIT_PRESTOP_TOKEN", token)],
            &["--prestop-token"],
        );
    }
    assert_accepted(&["--prestop-token", "s3cret"], &[]);
}

/// Empty lists switch safety off silently (issue 20, item 7): an empty
/// `--drain-on` meant "drain on nothing" (SIGTERM straight to the app), an
/// empty `--prestop-allow-from` a list that refuses every caller. Refused
/// like every other empty value, naming the flag and the accepted form.
/// Before the fix all of these started the app (exit 0).
#[test]
fn empty_signal_and_network_lists_are_refused() {
    for value in ["", ",", " , "] {
        assert_refused(&["--drain-on", value], &[], &["--drain-on", "TERM,INT"]);
        assert_refused(
            &[],
            &[("DRAINIT_DRAIN_ON", value)],
            &["--drain-on", "TERM,INT"],
        );
        assert_refused(
            &["--prestop-allow-from", value],
            &[],
            &["--prestop-allow-from", "10.0.0.7/32"],
        );
        assert_refused(
            &[],
            &[("DRAINIT_PRESTOP_ALLOW_FROM", value)],
            &["--prestop-allow-from", "10.0.0.7/32"],
        );
    }
    assert_accepted(&["--drain-on", "TERM,"], &[]);
    assert_accepted(&[], &[("DRAINIT_PRESTOP_ALLOW_FROM", "10.0.0.7/32")]);
}

#[test]
fn signals_that_cannot_work_are_refused() {
    let table: &[(&[&str], &[&str])] = &[
        (&["--stop-signal", "STOP"], &["--stop-signal", "SIGSTOP"]),
        (&["--stop-signal", "19"], &["--stop-signal", "SIGSTOP"]),
        (&["--drain-on", "PIPE"], &["--drain-on", "SIGPIPE"]),
        (&["--drain-on", "TERM,KILL"], &["--drain-on", "SIGKILL"]),
        (&["--drain-on", "STOP"], &["--drain-on", "SIGSTOP"]),
        (&["--drain-on", "CHLD"], &["--drain-on", "SIGCHLD"]),
        (&["--rewrite", "CHLD:TERM"], &["--rewrite", "SIGCHLD"]),
        (&["--rewrite", "KILL:TERM"], &["--rewrite", "SIGKILL"]),
        (&["--rewrite", "TERM:STOP"], &["--rewrite", "SIGSTOP"]),
        // Offsets that overflow a signal number: refused, not a panic.
        (&["--stop-signal", "RTMIN+2147483647"], &["--stop-signal"]),
        (&["--rewrite", "RTMAX--2147483648:TERM"], &["--rewrite"]),
    ];
    for (args, needles) in table {
        assert_refused(args, &[], needles);
    }
    assert_refused(&[], &[("DRAINIT_DRAIN_ON", "TERM,PIPE")], &["--drain-on"]);
    // KILL as the stop signal is accepted: it works (the app dies at once
    // after the propagation delay), for apps that have no graceful stop.
    assert_accepted(&["--stop-signal", "KILL"], &[]);
    assert_accepted(&["--drain-on", "TERM,INT,USR2"], &[]);
    assert_accepted(&["--rewrite", "TERM:QUIT,USR1:0"], &[]);
    // Every forwarded signal can be rewritten, the faults and PIPE too
    // (forwarded when sent with kill), both ways (issue 20, item 15).
    assert_accepted(&["--rewrite", "SYS:HUP"], &[]);
    assert_accepted(&["--rewrite", "1:31", "--rewrite", "31:1"], &[]);
    assert_accepted(&["--rewrite", "PIPE:USR1", "--rewrite", "SEGV:0"], &[]);
}

#[test]
fn malformed_or_port_zero_ready_checks_are_refused() {
    // One of each through the binary (exit 2, the flag named); every form
    // refused is the parser's table (src/settings/ready_check.rs).
    for url in ["http://127.0.0.1:0/healthz", "tcp://127.0.0.1:80/healthz"] {
        assert_refused(&["--ready-check", url], &[], &["--ready-check"]);
    }
}

#[test]
fn strict_takes_the_usual_switch_spellings_and_names_them() {
    for yes in ["1", "yes", "true", "on", "TRUE", "Yes"] {
        assert_accepted(&[], &[("DRAINIT_STRICT", yes)]);
    }
    for no in ["0", "no", "false", "off"] {
        assert_accepted(&[], &[("DRAINIT_STRICT", no)]);
    }
    assert_refused(
        &[],
        &[("DRAINIT_STRICT", "maybe")],
        &["--strict", "1, yes, true, on", "0, no, false, off"],
    );
    // Strict on really is on: a budget that does not fit is an error.
    assert_refused(
        &["--propagation-delay", "30s", "--grace-period", "30s"],
        &[("DRAINIT_STRICT", "yes")],
        &["--strict"],
    );
    // ... and off is off: the same budget is a warning.
    assert_accepted(
        &["--propagation-delay", "0s", "--grace-period", "1s"],
        &[("DRAINIT_STRICT", "off")],
    );
}

#[test]
fn verbose_has_an_environment_variable() {
    // At debug level drainit logs its routine start ("started app").
    let (code, quiet, report) = run("verbose-0", &[], &[]);
    assert_eq!(code, Some(0), "{report}");
    assert!(!quiet.to_lowercase().contains("debug"), "{report}");
    for value in ["1", "debug"] {
        let (code, stderr, report) = run("verbose-1", &[], &[("DRAINIT_VERBOSE", value)]);
        assert_eq!(code, Some(0), "{report}");
        assert!(
            stderr.to_lowercase().contains("debug"),
            "DRAINIT_VERBOSE={value}\n{report}"
        );
    }
    assert_refused(
        &[],
        &[("DRAINIT_VERBOSE", "loud")],
        &["DRAINIT_VERBOSE", "0, 1, 2"],
    );
}

#[test]
fn remap_exit_rules_are_checked() {
    // One malformed rule through the binary; every malformed form is the
    // parser's table (src/cli.rs, remap_exit_table).
    assert_refused(&["--remap-exit=256:0"], &[], &["--remap-exit", "FROM:TO"]);
    assert_refused(
        &["--remap-exit", "143:0,143:1"],
        &[],
        &["--remap-exit", "143"],
    );
    assert_accepted(&["--remap-exit", "143:0", "--remap-exit", "1:0"], &[]);
    assert_accepted(&[], &[("DRAINIT_REMAP_EXIT", "143:0,137:1")]);
}

/// docs/flags.md is the full flag reference: it must hold the real
/// `--help` of drainit and of each subcommand, verbatim in a fenced block,
/// so the document cannot drift from the binary. `scripts/gen-flags-doc.sh`
/// rewrites it. The help is the same in every build (the `kubernetes`
/// feature's flags are declared without it too).
#[test]
fn docs_flags_md_holds_the_real_help_of_every_command() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/flags.md");
    let doc = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    for args in [
        &["--help"][..],
        &["sidecar", "--help"],
        &["install", "--help"],
    ] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_drainit"));
        command.args(args);
        // A DRAINIT_* variable would show in the help as its value.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("DRAINIT_") {
                command.env_remove(name);
            }
        }
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run drainit {args:?}: {e}"));
        assert!(
            output.status.success(),
            "drainit {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let help = String::from_utf8_lossy(&output.stdout);
        let block = format!("```text\n{help}```\n");
        assert!(
            doc.contains(&block),
            "docs/flags.md lacks the output of `drainit {}` verbatim: run scripts/gen-flags-doc.sh\n{help}",
            args.join(" ")
        );
    }
}
