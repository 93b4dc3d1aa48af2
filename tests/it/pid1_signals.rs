//! Issue 2, behaviours 3 and 4, through the real binary: every catchable
//! signal drainit receives reaches the app (or its process group),
//! `--rewrite` changes or drops it, SIGTERM waits for the propagation
//! delay, and the app starts with the signal state drainit was given.
//!
//! The app is `examples/signal_recorder.rs`, which appends one line per
//! signal (number and CLOCK_MONOTONIC time) from its handler. Signals are
//! sent one at a time, each awaited in the record, so the records must
//! equal the sent list exactly. A "nothing else arrived" check uses a
//! barrier: Linux delivers pending signals lowest number first and the
//! recorder blocks all signals while it handles one, so once a later-sent
//! SIGRTMAX is recorded, any earlier signal still pending would have been
//! recorded before it.

use crate::common;
use crate::pid1_support;

use std::path::Path;
use std::time::Duration;

use common::{drainit_under_unshare, kill, monotonic_ns, scratch, wait_for, Proc};
use pid1_support::{arg, code, fixture, host_pid, name, names, read_pid, records, signals, SOON};

/// The signals of the issue's list that are forwarded at once, and one real-time signal.
fn forwarded() -> Vec<i32> {
    vec![
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGWINCH,
        libc::SIGCONT,
        libc::SIGALRM,
        libc::SIGRTMIN() + 1,
    ]
}

/// drainit (as PID 1 when `pid1`) in front of a signal recorder named
/// `child`, with `recorder` options appended; returns it with drainit's
/// host pid once the recorder(s) are ready.
fn start(dir: &Path, pid1: bool, flags: &[&str], recorder: &[&str]) -> (Proc, i32) {
    let fixture = arg(&fixture("signal_recorder"));
    let dir_arg = arg(dir);
    let mut args = vec!["--admin-listen", "off"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--", &fixture, &dir_arg, "child"]);
    args.extend_from_slice(recorder);
    let proc = if pid1 {
        Proc::pid1(dir, &args, &[])
    } else {
        Proc::drainit(dir, &args, &[])
    };
    let mut ready = vec![dir.join("child.ready")];
    if recorder.contains(&"--grandchild") {
        ready.push(dir.join("grandchild.ready"));
    }
    assert!(
        wait_for(SOON, || ready.iter().all(|r| r.exists())),
        "the recorder did not get ready\n{}",
        proc.report()
    );
    let drainit = if pid1 {
        drainit_under_unshare(proc.pid())
    } else {
        proc.pid()
    };
    (proc, drainit)
}

/// Waits until `who` has recorded at least `count` signals.
fn await_records(proc: &Proc, dir: &Path, who: &str, count: usize, what: &str) {
    assert!(
        wait_for(SOON, || records(dir, who).len() >= count),
        "{who} did not receive {what}; it has {:?}\n{}",
        names(&signals(dir, who)),
        proc.report()
    );
}

/// Sends SIGTERM (forwarded at once with `--propagation-delay 0s`) and
/// checks drainit ends with the recorder's exit code 0.
fn finish(mut proc: Proc, drainit: i32) {
    assert!(kill(drainit, libc::SIGTERM));
    let status = proc.wait(SOON);
    assert_eq!(code(status), 0, "{}", proc.report());
}

/// Every signal of [`forwarded`], sent to drainit, reaches the app; with
/// `--signal-target group` also a grandchild in its process group, with
/// `child` not the grandchild.
fn forwards_each_signal(test: &str, pid1: bool, target: &str) {
    let dir = scratch(test);
    let (proc, drainit) = start(
        &dir,
        pid1,
        &["--propagation-delay", "0s", "--signal-target", target],
        &["--grandchild", "grandchild"],
    );
    let sent = forwarded();
    for (i, sig) in sent.iter().enumerate() {
        assert!(kill(drainit, *sig), "kill {} failed", name(*sig));
        await_records(&proc, &dir, "child", i + 1, &name(*sig));
        if target == "group" {
            await_records(&proc, &dir, "grandchild", i + 1, &name(*sig));
        }
    }
    assert_eq!(
        names(&signals(&dir, "child")),
        names(&sent),
        "the app must get each signal once, in order\n{}",
        proc.report()
    );
    if target == "group" {
        assert_eq!(
            names(&signals(&dir, "grandchild")),
            names(&sent),
            "with --signal-target group the grandchild gets each signal too\n{}",
            proc.report()
        );
    } else {
        let nspid = read_pid(&dir.join("grandchild.pid"));
        let grandchild = if pid1 {
            host_pid(drainit, nspid).expect("the grandchild is in drainit's namespace")
        } else {
            nspid
        };
        assert!(kill(grandchild, libc::SIGRTMAX()));
        await_records(&proc, &dir, "grandchild", 1, "the SIGRTMAX barrier");
        assert_eq!(
            names(&signals(&dir, "grandchild")),
            names(&[libc::SIGRTMAX()]),
            "with --signal-target child the grandchild must get nothing\n{}",
            proc.report()
        );
    }
    finish(proc, drainit);
}

#[test]
fn forwards_every_signal_to_the_child() {
    forwards_each_signal("fwd-child", false, "child");
}

#[test]
fn forwards_every_signal_to_the_child_as_pid1() {
    forwards_each_signal("fwd-child-pid1", true, "child");
}

#[test]
fn forwards_every_signal_to_the_group() {
    forwards_each_signal("fwd-group", false, "group");
}

#[test]
fn forwards_every_signal_to_the_group_as_pid1() {
    forwards_each_signal("fwd-group-pid1", true, "group");
}

#[test]
fn rewrite_delivers_the_new_signal_only() {
    let dir = scratch("rewrite-usr2");
    let (proc, drainit) = start(
        &dir,
        false,
        &["--propagation-delay", "0s", "--rewrite", "USR1:USR2"],
        &[],
    );
    assert!(kill(drainit, libc::SIGUSR1));
    await_records(&proc, &dir, "child", 1, "the rewritten SIGUSR1");
    // Barrier: anything sent along with SIGUSR2 is delivered before SIGRTMAX.
    assert!(kill(drainit, libc::SIGRTMAX()));
    await_records(&proc, &dir, "child", 2, "SIGRTMAX");
    assert_eq!(
        names(&signals(&dir, "child")),
        names(&[libc::SIGUSR2, libc::SIGRTMAX()]),
        "--rewrite USR1:USR2 must deliver SIGUSR2 instead of SIGUSR1\n{}",
        proc.report()
    );
    finish(proc, drainit);
}

#[test]
fn rewrite_to_zero_drops_the_signal() {
    let dir = scratch("rewrite-drop");
    let (proc, drainit) = start(
        &dir,
        false,
        &["-v", "--propagation-delay", "0s", "--rewrite", "USR1:0"],
        &[],
    );
    assert!(kill(drainit, libc::SIGUSR1));
    // drainit's debug log says when it has handled (and dropped) it.
    assert!(
        proc.wait_stderr("dropped SIGUSR1", SOON),
        "drainit did not log dropping SIGUSR1\n{}",
        proc.report()
    );
    assert!(kill(drainit, libc::SIGRTMAX()));
    await_records(&proc, &dir, "child", 1, "SIGRTMAX");
    assert_eq!(
        names(&signals(&dir, "child")),
        names(&[libc::SIGRTMAX()]),
        "--rewrite USR1:0 must drop SIGUSR1\n{}",
        proc.report()
    );
    finish(proc, drainit);
}

#[test]
fn rewrite_term_to_quit_changes_the_stop_signal() {
    let dir = scratch("rewrite-term");
    let quit = libc::SIGQUIT.to_string();
    let (mut proc, drainit) = start(
        &dir,
        false,
        &["--propagation-delay", "0s", "--rewrite", "TERM:QUIT"],
        &["--exit-on", &quit, "--exit-code", "4"],
    );
    assert!(kill(drainit, libc::SIGTERM));
    let status = proc.wait(SOON);
    assert_eq!(
        names(&signals(&dir, "child")),
        names(&[libc::SIGQUIT]),
        "{}",
        proc.report()
    );
    assert_eq!(code(status), 4, "{}", proc.report());
}

/// Sends SIGTERM with `flags`; returns how long after the send the app got it.
fn term_arrives_after(test: &str, flags: &[&str]) -> Duration {
    let dir = scratch(test);
    let (mut proc, drainit) = start(&dir, false, flags, &[]);
    let sent = monotonic_ns();
    assert!(kill(drainit, libc::SIGTERM));
    let status = proc.wait(SOON);
    let got = records(&dir, "child");
    assert_eq!(
        names(&got.iter().map(|(s, _)| *s).collect::<Vec<_>>()),
        names(&[libc::SIGTERM]),
        "{}",
        proc.report()
    );
    assert_eq!(code(status), 0, "{}", proc.report());
    Duration::from_nanos(got[0].1.saturating_sub(sent))
}

#[test]
fn sigterm_with_zero_delay_is_forwarded_at_once() {
    let after = term_arrives_after("term-now", &["--propagation-delay", "0s"]);
    // The default delay is 5 s: arriving well before it means no delay applied.
    assert!(
        after < Duration::from_secs(4),
        "SIGTERM took {after:?} to arrive"
    );
}

#[test]
fn sigterm_waits_for_the_propagation_delay() {
    let after = term_arrives_after("term-delay", &["--propagation-delay", "2s"]);
    assert!(
        after >= Duration::from_secs(2),
        "SIGTERM reached the app {after:?} after it was sent, before the 2 s delay"
    );
}

/// Reads `SigIgn` and `SigBlk` (hex masks) from one /proc/PID/status text.
fn masks(status: &str) -> (u64, u64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("SigIgn:"), field("SigBlk:"))
}

/// The soft "Max open files" limit in a /proc/PID/limits text.
fn nofile(limits: &str) -> String {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no Max open files in {limits}"))
}

fn bit(sig: i32) -> u64 {
    1 << (sig - 1)
}

/// Starts drainit with one signal ignored (`IGNORE`, a name such as
/// SIGUSR1), SIGUSR2 blocked and a lower soft file limit, then execs
/// drainit with `cat` of its own status and limits and of drainit's status
/// (same pid as the wrapper).
const WRAPPER: &str = r#"
import os, resource, signal, sys
# Only the signal named is ignored: whatever the test runner ignores (nohup
# ignores SIGHUP) would otherwise reach drainit too, and rightly make it
# fork to ignore that signal again for the app.
for sig in signal.valid_signals():
    if sig not in (signal.SIGKILL, signal.SIGSTOP):
        try:
            signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass
signal.signal(getattr(signal, os.environ["IGNORE"]), signal.SIG_IGN)
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(777, hard), hard))
with open(sys.argv[1], "w") as out:
    out.write(open("/proc/self/status").read())
    out.write("=====\n")
    out.write(open("/proc/self/limits").read())
argv = [a.replace("{PID}", str(os.getpid())) for a in sys.argv[2:]]
os.execv(argv[0], argv)
"#;

/// How drainit started the app, from an strace of its process-creating
/// calls: "posix_spawn" (clone or clone3 with CLONE_VM|CLONE_VFORK: no copy of
/// drainit's memory) or "fork".
fn how_the_app_was_started(strace_log: &str) -> &'static str {
    // A call another thread's event interrupts is printed in two lines:
    // `clone3({flags=...} <unfinished ...>`, then `<... clone3 resumed>)
    // = PID`, which has no flags; only the first says what was asked for.
    let calls = || strace_log.lines().filter(|l| !l.contains("resumed>"));
    let vfork =
        calls().any(|l| l.contains("clone") && l.contains("CLONE_VM") && l.contains("CLONE_VFORK"));
    let fork =
        calls().any(|l| l.contains("fork(") || (l.contains("clone") && !l.contains("CLONE_VM")));
    match (vfork, fork) {
        (true, false) => "posix_spawn",
        (false, true) => "fork",
        _ => panic!("no single way of starting the app in the trace:\n{strace_log}"),
    }
}

/// Runs the wrapper (one signal ignored, SIGUSR2 blocked, a low file
/// limit) with drainit under strace and `true` as the app; returns how
/// drainit started the app.
fn how_drainit_starts_the_app(test: &str, ignored: &str) -> &'static str {
    let dir = &scratch(test);
    std::fs::write(dir.join("wrapper.py"), WRAPPER).expect("write wrapper");
    let before = arg(&dir.join("before-traced"));
    let trace = dir.join("strace.log");
    let trace_arg = arg(&trace);
    let mut proc = Proc::start(
        dir,
        "python3",
        &[
            "wrapper.py",
            &before,
            "/usr/bin/strace",
            "-f",
            "-qq",
            "-e",
            "trace=fork,vfork,clone,clone3",
            "-o",
            &trace_arg,
            common::drainit(),
            "--admin-listen",
            "off",
            "--",
            "true",
        ],
        &[("IGNORE", ignored)],
    );
    let status = proc.wait(SOON);
    assert_eq!(code(status), 0, "{}", proc.report());
    let log = std::fs::read_to_string(&trace).unwrap_or_default();
    let how = how_the_app_was_started(&log);
    eprintln!("{test}: the app was started by {how}; strace:\n{log}");
    how
}

/// Once `cat` (the app) reads the FIFO at `fifo`, writes drainit's
/// `/proc/PID/status` into it. Not at once: the app can run before drainit
/// is back from `posix_spawn`, which keeps every signal blocked in drainit
/// until the child has exec'd; so it waits (up to 20 s) until drainit's
/// mask is no longer that all-blocked one (`fffffffffffbfeff`: all but
/// SIGKILL and SIGSTOP).
fn hand_drainits_steady_status(
    fifo: std::path::PathBuf,
    drainit: i32,
) -> std::thread::JoinHandle<()> {
    const ALL_BLOCKED: &str = "fffffffffffbfeff";
    std::thread::spawn(move || {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut writer = None;
        // Without a reader, a non-blocking open for writing fails (ENXIO).
        let opened = wait_for(SOON, || {
            writer = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
                .ok();
            writer.is_some()
        });
        assert!(opened, "the app never opened {}", fifo.display());
        let status_path = format!("/proc/{drainit}/status");
        let mut status = String::new();
        wait_for(SOON, || {
            status = std::fs::read_to_string(&status_path).unwrap_or_default();
            !status
                .lines()
                .any(|l| l.starts_with("SigBlk:") && l.trim_end().ends_with(ALL_BLOCKED))
        });
        if let Some(mut writer) = writer {
            // The reader is there; a status is far less than a pipe holds.
            let _ = writer.write_all(status.as_bytes());
        }
    })
}

/// Runs the wrapper (one signal ignored, SIGUSR2 blocked, a low file
/// limit) → drainit → `cat` of the states; checks that the app got
/// exactly what drainit was started with.
fn child_gets_the_signal_state_drainit_inherited(test: &str, ignored: &str) {
    let dir = &scratch(test);
    std::fs::write(dir.join("wrapper.py"), WRAPPER).expect("write wrapper");
    let before = arg(&dir.join("before"));
    let fifo = dir.join("drainit-status");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let fifo_arg = arg(&fifo);
    let mut proc = Proc::start(
        dir,
        "python3",
        &[
            "wrapper.py",
            &before,
            common::drainit(),
            "--admin-listen",
            "off",
            "--",
            "cat",
            "/proc/self/status",
            "/proc/self/limits",
            &fifo_arg,
        ],
        &[("IGNORE", ignored)],
    );
    // The wrapper execs drainit: same pid.
    let handing = hand_drainits_steady_status(fifo, proc.pid());
    let status = proc.wait(SOON);
    handing.join().expect("drainit's status handed to the app");
    assert_eq!(code(status), 0, "{}", proc.report());
    let wrapper = std::fs::read_to_string(&before).expect("wrapper wrote its state");
    let (wrapper_status, wrapper_limits) = wrapper.split_once("=====\n").expect("two parts");
    let (wrapper_ign, wrapper_blk) = masks(wrapper_status);
    assert!(
        wrapper_ign != 0 && wrapper_blk & bit(libc::SIGUSR2) != 0,
        "the wrapper did not set up the state: {wrapper_status}"
    );

    // cat's status, cat's limits, then drainit's status (Name: drainit).
    let out = proc.stdout();
    let (child, drainit) = out
        .split_once("Name:\tdrainit")
        .unwrap_or_else(|| panic!("no status of drainit in the output\n{}", proc.report()));
    let (child_ign, child_blk) = masks(child);
    let (drainit_ign, drainit_blk) = masks(drainit);
    // drainit itself changed its state (it blocks the signals it reads
    // from its signalfd, stops ignoring SIGUSR1, ignores SIGTTOU), so what
    // the child has was restored, not just left over.
    for sig in [
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGCHLD,
        libc::SIGRTMIN() + 1,
    ] {
        assert_ne!(
            drainit_blk & bit(sig),
            0,
            "drainit itself should block {}, a signal it handles",
            name(sig)
        );
    }
    assert_eq!(
        drainit_blk & bit(libc::SIGTTOU),
        0,
        "drainit should block only the signals it handles"
    );
    assert_eq!(
        drainit_ign & bit(libc::SIGUSR1),
        0,
        "drainit itself should not ignore a signal it handles"
    );
    // SIGPIPE is blocked and read like a fault, not ignored: an ignored
    // signal is discarded when sent, and `kill -PIPE` must reach the app.
    assert_eq!(
        drainit_ign & bit(libc::SIGPIPE),
        0,
        "drainit itself should not ignore SIGPIPE"
    );
    assert_ne!(
        drainit_blk & bit(libc::SIGPIPE),
        0,
        "drainit itself should block SIGPIPE"
    );
    assert_ne!(
        drainit_ign & bit(libc::SIGTTOU),
        0,
        "drainit itself should ignore SIGTTOU"
    );
    assert_eq!(
        (child_ign, child_blk),
        (wrapper_ign, wrapper_blk),
        "the child's SigIgn/SigBlk must be those drainit was started with\n{}",
        proc.report()
    );
    assert_eq!(
        nofile(child),
        nofile(wrapper_limits),
        "the child's soft RLIMIT_NOFILE must be the one drainit was started with"
    );
}

#[test]
fn the_child_gets_the_signal_state_drainit_inherited() {
    // SIGUSR1 is a signal drainit handles (blocked, not ignored, in
    // drainit): only a hook between fork and exec can ignore it again.
    child_gets_the_signal_state_drainit_inherited("inherited", "SIGUSR1");
    assert_eq!(
        how_drainit_starts_the_app("inherited-traced", "SIGUSR1"),
        "fork"
    );
}

#[test]
fn without_a_signal_to_ignore_again_the_app_is_spawned_without_a_fork_and_gets_the_same_state() {
    // SIGTTOU, ignored by drainit too, stays ignored through exec; the
    // mask, the group, SIGPIPE's default and the file limit are what
    // posix_spawn sets (drainit raises its own limit after the spawn).
    child_gets_the_signal_state_drainit_inherited("inherited-spawned", "SIGTTOU");
    assert_eq!(
        how_drainit_starts_the_app("inherited-spawned-traced", "SIGTTOU"),
        "posix_spawn"
    );
}

/// Ignores SIGUSR1, SIGHUP and SIGCHLD, then execs the rest of its
/// arguments (drainit), which keeps the pid and the ignored dispositions.
const IGNORING_WRAPPER: &str = r#"
import os, signal, sys
for sig in (signal.SIGUSR1, signal.SIGHUP, signal.SIGCHLD):
    signal.signal(sig, signal.SIG_IGN)
os.execv(sys.argv[1], sys.argv[1:])
"#;

/// drainit started with SIGUSR1, SIGHUP and SIGCHLD ignored still forwards
/// the first two (blocked for its signalfd, they are kept pending), and
/// still sees the app's exit code (an ignored SIGCHLD would make the
/// kernel reap the app itself, leaving nothing for waitpid).
fn inherited_ignored_signals_still_work(test: &str, pid1: bool) {
    let dir = scratch(test);
    std::fs::write(dir.join("wrapper.py"), IGNORING_WRAPPER).expect("write wrapper");
    let fixture = arg(&fixture("signal_recorder"));
    let dir_arg = arg(&dir);
    let mut args = vec!["python3", "wrapper.py"];
    if pid1 {
        args.splice(0..0, ["--pid", "--fork", "--mount-proc", "--kill-child"]);
    }
    args.extend_from_slice(&[
        common::drainit(),
        "--admin-listen",
        "off",
        "--propagation-delay",
        "0s",
        "--",
        &fixture,
        &dir_arg,
        "child",
        "--exit-code",
        "7",
    ]);
    let (program, rest) = if pid1 {
        ("unshare", &args[..])
    } else {
        ("python3", &args[1..])
    };
    let mut proc = Proc::start(&dir, program, rest, &[]);
    assert!(
        wait_for(SOON, || dir.join("child.ready").exists()),
        "the recorder did not get ready\n{}",
        proc.report()
    );
    let drainit = if pid1 {
        drainit_under_unshare(proc.pid())
    } else {
        proc.pid()
    };
    let sent = [libc::SIGUSR1, libc::SIGHUP];
    for (i, sig) in sent.iter().enumerate() {
        assert!(kill(drainit, *sig), "kill {} failed", name(*sig));
        await_records(&proc, &dir, "child", i + 1, &name(*sig));
    }
    assert_eq!(names(&signals(&dir, "child")), names(&sent));
    assert!(kill(drainit, libc::SIGTERM));
    let status = proc.wait(SOON);
    assert_eq!(
        code(status),
        7,
        "drainit must exit with the app's code\n{}",
        proc.report()
    );
}

#[test]
fn inherited_ignored_signals_are_forwarded_and_the_exit_is_seen() {
    inherited_ignored_signals_still_work("inherited-ignored", false);
}

#[test]
fn inherited_ignored_signals_are_forwarded_and_the_exit_is_seen_as_pid1() {
    inherited_ignored_signals_still_work("inherited-ignored-pid1", true);
}

/// `kill -PIPE` reaches the app, as under tini and dumb-init (issue 20,
/// item 14); drainit blocks SIGPIPE and drops only the ones the kernel
/// raises for its own writes. Before the fix drainit ignored SIGPIPE, so
/// the kernel discarded a sent one and the app never got it.
fn sigpipe_sent_with_kill_is_forwarded(test: &str, pid1: bool) {
    let dir = scratch(test);
    let (proc, drainit) = start(&dir, pid1, &["--propagation-delay", "0s"], &[]);
    assert!(kill(drainit, libc::SIGPIPE));
    await_records(&proc, &dir, "child", 1, "SIGPIPE");
    assert!(kill(drainit, libc::SIGUSR1));
    await_records(&proc, &dir, "child", 2, "SIGUSR1 after SIGPIPE");
    assert_eq!(
        names(&signals(&dir, "child")),
        names(&[libc::SIGPIPE, libc::SIGUSR1]),
        "{}",
        proc.report()
    );
    finish(proc, drainit);
}

#[test]
fn sigpipe_sent_with_kill_is_forwarded_to_the_app() {
    sigpipe_sent_with_kill_is_forwarded("sigpipe", false);
}

#[test]
fn sigpipe_sent_with_kill_is_forwarded_to_the_app_as_pid1() {
    sigpipe_sent_with_kill_is_forwarded("sigpipe-pid1", true);
}

/// `--rewrite` takes every forwarded signal, both ways: dumb-init's
/// `-r 1:31 -r 31:1` swaps SIGHUP and SIGSYS (a fault signal, forwarded
/// when sent with kill). Before the fix `--rewrite 31:1` was refused
/// ("SIGSYS is never forwarded") and drainit exited 2 (issue 20, item 15).
#[test]
fn rewrite_swaps_a_signal_and_a_fault_both_ways_as_pid1() {
    let dir = scratch("rewrite-swap");
    let (proc, drainit) = start(
        &dir,
        true,
        &[
            "--propagation-delay",
            "0s",
            "--rewrite",
            "1:31",
            "--rewrite",
            "31:1",
        ],
        &["--catch-faults"],
    );
    assert!(kill(drainit, libc::SIGHUP));
    await_records(&proc, &dir, "child", 1, "SIGSYS for SIGHUP");
    assert!(kill(drainit, libc::SIGSYS));
    await_records(&proc, &dir, "child", 2, "SIGHUP for SIGSYS");
    assert_eq!(
        names(&signals(&dir, "child")),
        names(&[libc::SIGSYS, libc::SIGHUP]),
        "{}",
        proc.report()
    );
    finish(proc, drainit);
}
