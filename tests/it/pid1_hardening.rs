//! The PID-1 defects of issue 9 through the real binary, each as the
//! hostile input that used to hang, crash or hit the wrong process: an
//! app dying of a real-time signal, orphans dying of them in a burst, an
//! app that left its process group, a stopped app, a second drain signal
//! during Stopping, leftovers in other sessions, the token in the app's
//! environment, the start directory, fault signals sent by `kill`, a
//! quiet run, and signals after the reap (traced with strace).

use crate::common;
use crate::pid1_support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{drainit_under_unshare, kill, scratch, wait_for, zombies_in, Proc};
use pid1_support::{arg, code, fixture, names, read_pid, signals, state, SOON};

/// A Python program as an app (the tests install python3).
fn python(program: &str) -> Vec<String> {
    vec!["python3".into(), "-c".into(), program.into()]
}

fn args<'a>(flags: &[&'a str], app: &'a [String]) -> Vec<&'a str> {
    let mut all = flags.to_vec();
    all.push("--");
    all.extend(app.iter().map(String::as_str));
    all
}

#[test]
fn an_app_killed_by_a_realtime_signal_exits_128_plus_n_at_once() {
    // Signal 36 is SIGRTMIN+2 with glibc, SIGRTMIN+1 with musl: 164 either way.
    let dir = scratch("rt-death");
    let app = python("import os; os.kill(os.getpid(), 36)");
    let mut proc = Proc::pid1(&dir, &args(&["--admin-listen", "off"], &app), &[]);
    let status = proc.wait(Duration::from_secs(15));
    assert_eq!(code(status), 164, "{}", proc.report());
}

#[test]
fn a_burst_of_orphans_dying_of_realtime_signals_is_reaped_whole() {
    let dir = scratch("rt-orphans");
    let ready = dir.join("ready");
    // 50 orphans (double fork), each killing itself with signal 36 at about
    // the same moment, then the app waits to be told to stop.
    let program = format!(
        "import os, time\n\
         for _ in range(50):\n\
         \x20   if os.fork() == 0:\n\
         \x20       if os.fork() == 0:\n\
         \x20           time.sleep(0.5); os.kill(os.getpid(), 36)\n\
         \x20       os._exit(0)\n\
         \x20   os.wait()\n\
         open('{}', 'w').close()\n\
         time.sleep(60)\n",
        arg(&ready)
    );
    let app = python(&program);
    let mut proc = Proc::pid1(
        &dir,
        &args(
            &["--admin-listen", "off", "--propagation-delay", "0s"],
            &app,
        ),
        &[],
    );
    let drainit = drainit_under_unshare(proc.pid());
    let proc_root = Path::new("/proc")
        .join(drainit.to_string())
        .join("root/proc");
    assert!(wait_for(SOON, || ready.exists()), "{}", proc.report());
    // Only drainit and the app are left, and no zombie.
    let settled = wait_for(SOON, || {
        let pids = std::fs::read_dir(&proc_root)
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_str()
                            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
                    })
                    .count()
            })
            .unwrap_or(0);
        pids == 2 && zombies_in(&proc_root).is_empty()
    });
    assert!(
        settled,
        "orphans left unreaped: {:?}\n{}",
        zombies_in(&proc_root),
        proc.report()
    );
    assert!(kill(drainit, libc::SIGTERM));
    assert_eq!(
        code(proc.wait(SOON)),
        128 + libc::SIGTERM,
        "{}",
        proc.report()
    );
}

#[test]
fn an_app_that_left_its_group_and_ignores_sigterm_is_killed_at_the_deadline() {
    let dir = scratch("setsid-ignorer");
    let ready = dir.join("ready");
    // The app moves into the group of a child of its own, leaving the
    // group drainit started it in empty.
    let program = format!(
        "import os, signal, time\n\
         pid = os.fork()\n\
         if pid == 0:\n\
         \x20   time.sleep(60); os._exit(0)\n\
         os.setpgid(pid, pid); os.setpgid(0, pid)\n\
         signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
         open('{}', 'w').close()\n\
         time.sleep(60)\n",
        arg(&ready)
    );
    let app = python(&program);
    let flags = [
        "--admin-listen",
        "off",
        "--propagation-delay",
        "0s",
        "--grace-period",
        "3s",
        "--kill-margin",
        "1s",
    ];
    let mut proc = Proc::pid1(&dir, &args(&flags, &app), &[]);
    let drainit = drainit_under_unshare(proc.pid());
    assert!(wait_for(SOON, || ready.exists()), "{}", proc.report());
    let sent = Instant::now();
    assert!(kill(drainit, libc::SIGTERM));
    let status = proc.wait(SOON);
    assert_eq!(code(status), 137, "{}", proc.report());
    assert!(
        sent.elapsed() < Duration::from_secs(12),
        "the deadline is 2 s after the drain; drainit took {:?}",
        sent.elapsed()
    );
}

/// drainit (not PID 1) in front of a signal recorder named `app`.
fn recorder(dir: &Path, flags: &[&str], recorder_flags: &[&str]) -> (Proc, i32) {
    let fixture = arg(&fixture("signal_recorder"));
    let dir_arg = arg(dir);
    let mut all = vec!["--admin-listen", "off"];
    all.extend_from_slice(flags);
    all.extend_from_slice(&["--", &fixture, &dir_arg, "app"]);
    all.extend_from_slice(recorder_flags);
    let proc = Proc::drainit(dir, &all, &[]);
    assert!(
        wait_for(SOON, || dir.join("app.ready").exists()),
        "{}",
        proc.report()
    );
    let app = read_pid(&dir.join("app.pid"));
    (proc, app)
}

#[test]
fn a_stopped_app_is_continued_so_it_acts_on_the_stop_signal() {
    let dir = scratch("stopped-app");
    let (mut proc, app) = recorder(&dir, &["--propagation-delay", "0s"], &[]);
    assert!(kill(app, libc::SIGSTOP));
    assert!(
        wait_for(SOON, || state(Path::new("/proc"), app) == Some('T')),
        "the app did not stop"
    );
    let sent = Instant::now();
    assert!(kill(proc.pid(), libc::SIGTERM));
    let status = proc.wait(SOON);
    assert_eq!(code(status), 0, "{}", proc.report());
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "a stopped app must get SIGCONT after the stop signal, not wait for the 28 s deadline ({:?})",
        sent.elapsed()
    );
    assert_eq!(names(&signals(&dir, "app")), ["SIGTERM", "SIGCONT"]);
}

#[test]
fn a_second_drain_signal_during_stopping_joins_the_drain_and_never_reaches_the_app() {
    let dir = scratch("second-term");
    let quit = libc::SIGQUIT.to_string();
    let (mut proc, _app) = recorder(
        &dir,
        &["--propagation-delay", "0s", "--stop-signal", "QUIT"],
        &["--exit-on", &quit, "--on-term", "cleanup:1500"],
    );
    assert!(kill(proc.pid(), libc::SIGTERM));
    assert!(
        wait_for(SOON, || signals(&dir, "app").contains(&libc::SIGQUIT)),
        "{}",
        proc.report()
    );
    assert!(kill(proc.pid(), libc::SIGTERM));
    assert_eq!(code(proc.wait(SOON)), 0, "{}", proc.report());
    assert_eq!(
        names(&signals(&dir, "app")),
        ["SIGQUIT"],
        "nginx-style apps must not get TERM (fast shutdown) in the middle of QUIT"
    );
    assert!(
        proc.stderr().contains("joins the drain"),
        "{}",
        proc.report()
    );
}

/// The app starts a leftover in a session of its own that records its
/// SIGTERM and exits, then exits itself.
fn leftover_in_own_session(dir: &Path) -> Vec<String> {
    let got_term = dir.join("leftover-got-term");
    let ready = dir.join("leftover-ready");
    let program = format!(
        "import os, signal, time, sys\n\
         if os.fork() == 0:\n\
         \x20   os.setsid()\n\
         \x20   def term(*_):\n\
         \x20       open('{got}', 'w').close(); os._exit(0)\n\
         \x20   signal.signal(signal.SIGTERM, term)\n\
         \x20   open('{ready}', 'w').close()\n\
         \x20   time.sleep(60); os._exit(1)\n\
         while not os.path.exists('{ready}'):\n\
         \x20   time.sleep(0.01)\n\
         sys.exit(3)\n",
        got = arg(&got_term),
        ready = arg(&ready)
    );
    python(&program)
}

#[test]
fn a_leftover_in_another_session_gets_sigterm_before_drainit_exits_as_pid1() {
    let dir = scratch("leftover-session-pid1");
    let app = leftover_in_own_session(&dir);
    let mut proc = Proc::pid1(&dir, &args(&["--admin-listen", "off"], &app), &[]);
    assert_eq!(code(proc.wait(SOON)), 3, "{}", proc.report());
    assert!(
        dir.join("leftover-got-term").exists(),
        "the kernel SIGKILLs what is left when PID 1 exits: it must get SIGTERM first\n{}",
        proc.report()
    );
}

#[test]
fn a_leftover_in_another_session_gets_sigterm_and_dies_with_a_subreaper() {
    let dir = scratch("leftover-session-subreaper");
    let app = leftover_in_own_session(&dir);
    let mut proc = Proc::drainit(&dir, &args(&["--admin-listen", "off"], &app), &[]);
    assert_eq!(code(proc.wait(SOON)), 3, "{}", proc.report());
    assert!(
        dir.join("leftover-got-term").exists(),
        "a re-parented leftover must get SIGTERM before the subreaper exits\n{}",
        proc.report()
    );
}

#[test]
fn the_prestop_token_is_not_in_the_apps_environment() {
    let dir = scratch("token-env");
    let out = dir.join("env");
    let script = format!("env > '{}'", arg(&out));
    let app = vec!["sh".to_string(), "-c".to_string(), script];
    let mut proc = Proc::drainit(
        &dir,
        &args(&["--admin-listen", "off"], &app),
        &[("DRAINIT_PRESTOP_TOKEN", "s3cret-value"), ("KEEP_ME", "1")],
    );
    assert_eq!(code(proc.wait(SOON)), 0, "{}", proc.report());
    let env = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(env.contains("KEEP_ME=1"), "{env}");
    assert!(
        !env.contains("s3cret-value"),
        "the token leaked to the app:\n{env}"
    );
}

#[test]
fn drainit_leaves_its_start_directory_and_the_app_keeps_it() {
    let dir = scratch("cwd");
    let (mut proc, app) = recorder(&dir, &["--propagation-delay", "0s"], &[]);
    let cwd = |pid: i32| std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
    // drainit leaves the directory once the app has started, which can be
    // after the app is ready: wait for it.
    wait_for(SOON, || cwd(proc.pid()).as_deref() == Some(Path::new("/")));
    assert_eq!(
        cwd(proc.pid()).as_deref(),
        Some(Path::new("/")),
        "drainit must hold no reference to its start directory"
    );
    assert_eq!(
        cwd(app),
        std::fs::canonicalize(&dir).ok(),
        "the app runs where drainit was started"
    );
    assert!(kill(proc.pid(), libc::SIGTERM));
    assert_eq!(code(proc.wait(SOON)), 0, "{}", proc.report());
}

#[test]
fn fault_signals_sent_with_kill_are_forwarded_as_pid1() {
    let dir = scratch("faults");
    let fixture = arg(&fixture("signal_recorder"));
    let dir_arg = arg(&dir);
    let all = [
        "--admin-listen",
        "off",
        "--propagation-delay",
        "0s",
        "--",
        &fixture,
        &dir_arg,
        "app",
        "--catch-faults",
    ];
    let mut proc = Proc::pid1(&dir, &all, &[]);
    assert!(
        wait_for(SOON, || dir.join("app.ready").exists()),
        "{}",
        proc.report()
    );
    let drainit = drainit_under_unshare(proc.pid());
    let faults = [
        libc::SIGSEGV,
        libc::SIGABRT,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGSYS,
    ];
    for (i, sig) in faults.iter().enumerate() {
        assert!(kill(drainit, *sig));
        assert!(
            wait_for(SOON, || signals(&dir, "app").len() > i),
            "{} was not forwarded; got {:?}\n{}",
            pid1_support::name(*sig),
            names(&signals(&dir, "app")),
            proc.report()
        );
    }
    assert_eq!(signals(&dir, "app"), faults);
    assert!(kill(drainit, libc::SIGTERM));
    assert_eq!(code(proc.wait(SOON)), 0, "{}", proc.report());
}

#[test]
fn a_run_without_a_drain_prints_nothing() {
    let dir = scratch("quiet");
    let listen = common::ANY_PORT;
    let app = vec![
        "sh".to_string(),
        "-c".to_string(),
        "echo app-output".to_string(),
    ];
    let mut proc = Proc::drainit(&dir, &args(&["--admin-listen", listen], &app), &[]);
    assert_eq!(code(proc.wait(SOON)), 0, "{}", proc.report());
    assert_eq!(proc.stdout(), "app-output\n");
    assert_eq!(
        proc.stderr(),
        "",
        "drainit must be quiet when nothing happens"
    );
}

/// The syscalls of drainit (and its children) as strace sees them.
fn traced(
    dir: &Path,
    flags: &[&str],
    app: &[String],
    during: impl FnOnce(&mut Proc),
) -> (Proc, String) {
    let log = dir.join("strace.log");
    let log_arg = arg(&log);
    let mut all = vec![
        "-f",
        "-qq",
        "-e",
        "trace=execve,wait4,kill,tgkill,pidfd_send_signal,rt_sigprocmask,poll,sigaltstack,rt_sigaction",
        "-o",
        &log_arg,
        common::drainit(),
    ];
    all.extend(args(flags, app));
    let mut proc = Proc::start(dir, "strace", &all, &[]);
    during(&mut proc);
    proc.wait(SOON);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    (proc, text)
}

#[test]
fn no_signal_reaches_the_apps_pid_after_the_reap_under_a_signal_storm() {
    let dir = scratch("storm");
    let ready = dir.join("ready");
    let program = format!(
        "import signal, time\n\
         signal.signal(signal.SIGUSR1, lambda *_: None)\n\
         open('{}', 'w').close()\n\
         time.sleep(0.3)\n",
        arg(&ready)
    );
    let app = python(&program);
    let (proc, log) = traced(&dir, &["--admin-listen", "off"], &app, |proc| {
        assert!(wait_for(SOON, || ready.exists()), "{}", proc.report());
        let drainit = common::children_of(proc.pid()).first().copied();
        let Some(drainit) = drainit else { return };
        // A storm of USR1 across the app's exit.
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until && kill(drainit, libc::SIGUSR1) {
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    // The app is the process drainit execve'd python in; find its pid.
    let app_pid = log
        .lines()
        .find(|l| l.contains("execve(\"") && l.contains("python3\", [") && l.contains("= 0"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| {
            panic!(
                "no execve of the app in the trace:\n{log}\n{}",
                proc.report()
            )
        })
        .to_string();
    let reaped = log
        .lines()
        .position(|l| l.contains("wait4(") && l.trim_end().ends_with(&format!("= {app_pid}")))
        .unwrap_or_else(|| panic!("the app {app_pid} was never reaped:\n{log}"));
    let signals_to_pid: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(&format!("kill({app_pid},")) || l.contains(&format!("kill(-{app_pid},"))
        })
        // Signal 0 only asks whether the (leftover) group still exists.
        .filter(|l| !l.contains(", 0)"))
        .collect();
    assert!(
        signals_to_pid.is_empty(),
        "signals to the app must go through its pidfd, never kill(pid): {signals_to_pid:?}"
    );
    let after_reap: Vec<&str> = log
        .lines()
        .skip(reaped + 1)
        .filter(|l| {
            l.contains("pidfd_send_signal(") && l.contains("SIGUSR1") && !l.contains("ESRCH")
        })
        .collect();
    assert!(
        after_reap.is_empty(),
        "a signal was delivered to the app's pid after it was reaped: {after_reap:?}"
    );
    let forwarded = log
        .lines()
        .filter(|l| l.contains("pidfd_send_signal("))
        .count();
    assert!(forwarded > 0, "the storm never reached the app:\n{log}");
}

#[test]
fn the_handled_signals_are_blocked_before_rusts_runtime_starts() {
    let dir = scratch("early-block");
    let app = vec!["true".to_string()];
    let (proc, log) = traced(&dir, &["--admin-listen", "off"], &app, |_| {});
    let drainit_lines: Vec<&str> = {
        let first = log
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("");
        log.lines().filter(|l| l.starts_with(first)).collect()
    };
    let position = |needle: &str| drainit_lines.iter().position(|l| l.contains(needle));
    let blocked = drainit_lines
        .iter()
        .position(|l| l.contains("rt_sigprocmask(SIG_SETMASK, ~[") && l.contains("= 0"))
        .unwrap_or_else(|| {
            panic!(
                "the handled signals were never blocked:\n{log}\n{}",
                proc.report()
            )
        });
    // Rust's runtime, before main: the stdio poll, SIGPIPE ignored, the
    // main thread's signal stack.
    for runtime in [
        "poll(",
        "rt_sigaction(SIGPIPE, {sa_handler=SIG_IGN",
        "sigaltstack(",
    ] {
        if let Some(at) = position(runtime) {
            assert!(
                blocked < at,
                "SIGTERM was blockable only after the runtime ({runtime}): a namespace init drops it meanwhile\n{}",
                drainit_lines.join("\n")
            );
        }
    }
    // Nothing but the execve itself comes before the block.
    assert_eq!(blocked, 1, "{}", drainit_lines.join("\n"));
}

#[test]
fn remap_exit_turns_a_planned_drain_into_success() {
    // 143: the app died of the SIGTERM drainit sent it, as planned.
    let dir = scratch("remap");
    let app = vec!["sleep".to_string(), "30".to_string()];
    let flags = [
        "--admin-listen",
        "off",
        "--propagation-delay",
        "0s",
        "--remap-exit",
        "143:0",
    ];
    let mut proc = Proc::drainit(&dir, &args(&flags, &app), &[]);
    assert!(
        wait_for(SOON, || !common::children_of(proc.pid()).is_empty()),
        "{}",
        proc.report()
    );
    assert!(kill(proc.pid(), libc::SIGTERM));
    assert_eq!(code(proc.wait(SOON)), 0, "{}", proc.report());
    // Codes without a rule pass unchanged.
    let mut other = Proc::drainit(
        &scratch("remap-other"),
        &args(
            &["--admin-listen", "off", "--remap-exit", "143:0"],
            &["sh".into(), "-c".into(), "exit 7".into()],
        ),
        &[],
    );
    assert_eq!(code(other.wait(SOON)), 7, "{}", other.report());
}
