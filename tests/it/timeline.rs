//! The shutdown timeline through the real binary, real sockets and real
//! signals: /prestop, SIGTERM, the kubelet's sequence, the drain deadline
//! and readiness gating.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{get, http, now, scratch, wait_for, wait_status, Proc, LAME_DUCK_APP};

/// An app written like most apps: on SIGTERM it records the time and exits
/// with the code given (or, with `ignore`, records and keeps running).
const APP: &str = r#"
import os, signal, sys, time
out, code, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def on_term(signum, frame):
    with open(out, "a") as f:
        f.write("%d %.6f\n" % (signum, time.time()))
    if mode != "ignore":
        sys.exit(code)
signal.signal(signal.SIGTERM, on_term)
open(out + ".started", "w").close()
while True:
    signal.pause()
"#;

/// An HTTP app that starts listening only after a delay, and records when.
/// Its socket is the test's, bound but not listening, at fd 3.
const SLOW_APP: &str = r#"
import http.server, socket, sys, time
delay, out = float(sys.argv[1]), sys.argv[2]
listener = socket.socket(fileno=3)
time.sleep(delay)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
server = http.server.HTTPServer(listener.getsockname(), H, bind_and_activate=False)
server.socket.close()
server.socket = listener
server.server_activate()
with open(out, "w") as f:
    f.write("%.6f" % time.time())
server.serve_forever()
"#;

struct App {
    proc: Proc,
    admin: SocketAddr,
    record: std::path::PathBuf,
}

/// Starts drainit (as PID 1 when `pid1`) in front of [`APP`].
fn start(name: &str, pid1: bool, flags: &[&str], code: i32, mode: &str) -> App {
    let dir = scratch(name);
    std::fs::write(dir.join("app.py"), APP).expect("write app");
    let record = dir.join("signals");
    let listen = common::ANY_PORT;
    let code = code.to_string();
    let record_arg = record.to_string_lossy().into_owned();
    let mut args = vec!["--admin-listen", listen];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--", "python3", "app.py", &record_arg, &code, mode]);
    let proc = if pid1 {
        Proc::pid1(&dir, &args, &[])
    } else {
        Proc::drainit(&dir, &args, &[])
    };
    let admin = proc.admin_addr();
    let started = record.with_extension("started");
    assert!(
        wait_for(Duration::from_secs(20), || started.exists()),
        "app did not start\n{}",
        proc.report()
    );
    assert!(
        wait_status(admin, "/ready", 200, Duration::from_secs(10)),
        "never ready\n{}",
        proc.report()
    );
    App {
        proc,
        admin,
        record,
    }
}

/// The times (unix seconds) at which the app recorded SIGTERM.
fn terms(record: &Path) -> Vec<f64> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once(' ').and_then(|(_, t)| t.parse().ok()))
        .collect()
}

/// Waits for the app's first SIGTERM and returns its time (unix seconds).
fn first_term(app: &App) -> f64 {
    assert!(
        wait_for(Duration::from_secs(15), || !terms(&app.record).is_empty()),
        "the app never got SIGTERM\n{}",
        app.proc.report()
    );
    terms(&app.record)[0]
}

/// Calls /prestop on a thread; yields (status, body, unix time of the answer).
fn prestop_in_background(admin: SocketAddr) -> thread::JoinHandle<Option<(u16, String, f64)>> {
    thread::spawn(move || {
        let answer = http(admin, "POST", "/prestop", &[], Duration::from_secs(60));
        answer.map(|(code, body)| (code, body, now()))
    })
}

/// Asserts that /ready is 503 and /live is 200 now.
fn assert_draining(app: &App) {
    assert!(
        wait_status(app.admin, "/ready", 503, Duration::from_secs(1)),
        "/ready did not turn 503 at once\n{}",
        app.proc.report()
    );
    assert_eq!(
        get(app.admin, "/live").map(|(c, _)| c),
        Some(200),
        "/live must stay 200 while draining"
    );
}

#[test]
fn prestop_drains_then_stops_the_app() {
    let mut app = start("prestop", true, &["--propagation-delay", "2s"], 5, "exit");
    let triggered = now();
    let hook = prestop_in_background(app.admin);
    assert_draining(&app);
    let term_at = first_term(&app);
    assert!(
        term_at - triggered >= 2.0,
        "stop signal {:.3}s after the trigger, before the 2s delay",
        term_at - triggered
    );
    assert!(
        term_at - triggered < 6.0,
        "stop signal {:.3}s after the trigger: not prompt",
        term_at - triggered
    );
    let (code, body, answered) = hook
        .join()
        .expect("hook thread")
        .expect("/prestop answered");
    assert_eq!(code, 200);
    assert!(body.contains("app exited"), "{body}");
    assert!(
        answered >= term_at,
        "/prestop answered before the app was stopped"
    );
    let status = app.proc.wait(Duration::from_secs(15));
    assert_eq!(status.code(), Some(5), "{}", app.proc.report());
    let log = app.proc.stderr();
    for line in [
        "drain started trigger=prestop",
        "propagation delay over after=2.",
        "sent SIGTERM to pid",
        "app exited code=5",
    ] {
        assert!(log.contains(line), "missing log line {line:?}\n{log}");
    }
}

#[test]
fn sigterm_alone_gives_the_same_timeline() {
    let mut app = start("sigterm", true, &["--propagation-delay", "2s"], 0, "exit");
    let triggered = now();
    // The pod's PID 1 is unshare's child; unshare forwards nothing, so
    // signal drainit inside the namespace directly.
    let pid = common::drainit_under_unshare(app.proc.pid());
    assert!(common::kill(pid, libc::SIGTERM));
    assert_draining(&app);
    let delay = first_term(&app) - triggered;
    assert!(
        (2.0..6.0).contains(&delay),
        "stop signal {delay:.3}s after SIGTERM"
    );
    assert_eq!(
        app.proc.wait(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        app.proc.report()
    );
    assert!(
        app.proc.stderr().contains("drain started trigger=SIGTERM"),
        "{}",
        app.proc.report()
    );
}

#[test]
fn kubelet_sequence_has_one_delay_only() {
    // preStop hook first; the kubelet's SIGTERM comes while drainit is
    // already draining (here 1 s in, as when the hook is slow to return).
    let mut app = start("kubelet", true, &["--propagation-delay", "3s"], 0, "exit");
    let triggered = now();
    let hook = prestop_in_background(app.admin);
    assert_draining(&app);
    thread::sleep(Duration::from_secs(1));
    let pid = common::drainit_under_unshare(app.proc.pid());
    assert!(common::kill(pid, libc::SIGTERM));
    let delay = first_term(&app) - triggered;
    assert!(
        (3.0..3.9).contains(&delay),
        "stop signal {delay:.3}s after /prestop: the SIGTERM must join, not restart"
    );
    assert_eq!(hook.join().expect("hook").map(|(c, _, _)| c), Some(200));
    assert_eq!(
        app.proc.wait(Duration::from_secs(15)).code(),
        Some(0),
        "{}",
        app.proc.report()
    );
    assert_eq!(
        terms(&app.record).len(),
        1,
        "the app must get exactly one SIGTERM"
    );
    assert!(
        app.proc.stderr().contains("joins the drain in progress"),
        "{}",
        app.proc.report()
    );
}

#[test]
fn app_ignoring_sigterm_is_killed_at_the_deadline() {
    let flags = [
        "--propagation-delay",
        "1s",
        "--grace-period",
        "4s",
        "--kill-margin",
        "1s",
    ];
    let mut app = start("deadline", false, &flags, 0, "ignore");
    let triggered = Instant::now();
    let hook = prestop_in_background(app.admin);
    let status = app.proc.wait(Duration::from_secs(20));
    let took = triggered.elapsed();
    assert_eq!(status.code(), Some(137), "{}", app.proc.report());
    assert!(
        took >= Duration::from_secs(3),
        "killed after {took:?}, before grace − margin = 3s"
    );
    assert!(
        took < Duration::from_secs(8),
        "killed after {took:?}: deadline not enforced"
    );
    assert_eq!(terms(&app.record).len(), 1, "the stop signal came first");
    let (code, body, _) = hook.join().expect("hook").expect("/prestop answered");
    assert_eq!(code, 200);
    assert!(body.contains("deadline"), "{body}");
    let log = app.proc.stderr();
    assert!(log.contains("drain deadline hit, SIGKILL"), "{log}");
    assert!(
        log.contains("app_had=2."),
        "the log must say how long the app had: {log}"
    );
}

#[test]
fn metrics_and_status_follow_the_drain() {
    // The forced-kill counter itself is asserted by the lifecycle unit
    // test: after the deadline's SIGKILL drainit exits within a millisecond,
    // too soon for a scrape to land reliably.
    let flags = [
        "--propagation-delay",
        "1s",
        "--grace-period",
        "5s",
        "--kill-margin",
        "1s",
    ];
    let mut app = start("metrics", false, &flags, 0, "ignore");
    let before = get(app.admin, "/metrics").expect("/metrics").1;
    assert!(
        before.contains("drainit_phase{phase=\"running\"} 1"),
        "{before}"
    );
    assert!(before.contains("drainit_forced_kills_total 0"), "{before}");
    let _hook = prestop_in_background(app.admin);
    first_term(&app);
    let during = get(app.admin, "/metrics").expect("/metrics").1;
    for needle in [
        "drainit_phase{phase=\"stopping\"} 1",
        "drainit_drains_total{trigger=\"prestop\"} 1",
        "drainit_signals_forwarded_total{signal=\"SIGTERM\"} 1",
        "drainit_ready 0",
        "drainit_app_exit_code -1",
    ] {
        assert!(during.contains(needle), "missing {needle:?} in\n{during}");
    }
    let status = get(app.admin, "/status").expect("/status").1;
    for needle in [
        "\"phase\":\"stopping\"",
        "\"trigger\":\"prestop\"",
        "\"propagation_delay\":\"1s\"",
        "\"deadline_hit\":false",
    ] {
        assert!(status.contains(needle), "missing {needle:?} in {status}");
    }
    assert_eq!(app.proc.wait(Duration::from_secs(15)).code(), Some(137));
}

#[test]
fn ready_check_gates_readiness_until_the_app_listens() {
    let dir = scratch("ready-check");
    std::fs::write(dir.join("slow.py"), SLOW_APP).expect("write app");
    // The app's socket, bound by the test and handed in (through drainit)
    // at fd 3; the app listens on it after 2 s.
    let app_socket = common::AppSocket::bind();
    let check = format!("http://{}/healthz", app_socket.addr());
    let listening_file = dir.join("listening");
    let listen = common::ANY_PORT;
    let listening_arg = listening_file.to_string_lossy().into_owned();
    let args = [
        "--admin-listen",
        listen,
        "--ready-check",
        &check,
        "--ready-check-interval",
        "100ms",
        "--propagation-delay",
        "0s",
        "--",
        "python3",
        "slow.py",
        "2",
        &listening_arg,
    ];
    let proc = Proc::start_with_socket(&dir, common::drainit(), &args, &[], app_socket);
    let admin = proc.admin_addr();
    let mut observations = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let before = now();
        if let Some((code, body)) = get(admin, "/ready") {
            observations.push((before, code, body));
            if code == 200 {
                break;
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    let listening: f64 = std::fs::read_to_string(&listening_file)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("the app never listened\n{}", proc.report()));
    let first_ok = observations
        .iter()
        .find(|(_, code, _)| *code == 200)
        .unwrap_or_else(|| panic!("/ready never 200\n{}", proc.report()));
    assert!(
        first_ok.0 >= listening - 0.05,
        "/ready was 200 before the app listened"
    );
    assert!(
        first_ok.0 - listening < 5.0,
        "/ready took {:.2}s to follow the app",
        first_ok.0 - listening
    );
    let early: Vec<_> = observations
        .iter()
        .filter(|(t, _, _)| *t < listening - 0.2)
        .collect();
    assert!(
        !early.is_empty(),
        "no observation before the app listened: the test proved nothing"
    );
    assert!(
        early
            .iter()
            .all(|(_, code, body)| *code == 503 && body.contains("starting")),
        "{early:?}"
    );
}

#[test]
fn unready_delay_keeps_ready_after_the_trigger() {
    let app = start(
        "unready",
        false,
        &["--propagation-delay", "3s", "--unready-delay", "1500ms"],
        0,
        "exit",
    );
    let triggered = Instant::now();
    let _hook = prestop_in_background(app.admin);
    assert!(
        wait_for(Duration::from_secs(5), || app
            .proc
            .stderr()
            .contains("drain started")),
        "{}",
        app.proc.report()
    );
    if triggered.elapsed() < Duration::from_millis(1200) {
        assert_eq!(
            get(app.admin, "/ready").map(|(c, _)| c),
            Some(200),
            "ready must hold during --unready-delay"
        );
    }
    assert!(wait_status(
        app.admin,
        "/ready",
        503,
        Duration::from_secs(5)
    ));
    assert!(
        triggered.elapsed() >= Duration::from_millis(1500),
        "turned 503 before --unready-delay"
    );
}

#[test]
fn budget_that_does_not_fit_warns_or_fails_with_strict() {
    let dir = scratch("budget");
    let tight = [
        "--admin-listen",
        "off",
        "--propagation-delay",
        "29s",
        "--grace-period",
        "30s",
    ];
    let mut strict_args = tight.to_vec();
    strict_args.extend_from_slice(&["--strict", "sh", "-c", "echo ran"]);
    let mut strict = Proc::drainit(&dir, &strict_args, &[]);
    assert_eq!(
        strict.wait(Duration::from_secs(10)).code(),
        Some(2),
        "{}",
        strict.report()
    );
    let message = strict.stderr();
    assert!(
        message.contains("29.0s") && message.contains("30.0s") && message.contains("--strict"),
        "{message}"
    );
    assert!(!strict.stdout().contains("ran"), "the app must not start");

    let dir = scratch("budget-warn");
    let mut warn_args = tight.to_vec();
    warn_args.extend_from_slice(&["sh", "-c", "echo ran"]);
    let mut lenient = Proc::drainit(&dir, &warn_args, &[]);
    assert_eq!(
        lenient.wait(Duration::from_secs(10)).code(),
        Some(0),
        "{}",
        lenient.report()
    );
    assert!(
        lenient.stderr().contains("WARN") && lenient.stderr().contains("29.0s"),
        "{}",
        lenient.report()
    );
    assert_eq!(lenient.stdout(), "ran\n");
}

#[test]
fn json_logs_are_one_object_per_line_on_stderr() {
    let dir = scratch("json-logs");
    // -v: the routine start and exit lines are debug (quiet by default).
    let args = [
        "-v",
        "--log-format",
        "json",
        "--admin-listen",
        "off",
        "--propagation-delay",
        "0s",
        "sh",
        "-c",
        "echo out; exit 4",
    ];
    let mut proc = Proc::drainit(&dir, &args, &[]);
    assert_eq!(
        proc.wait(Duration::from_secs(10)).code(),
        Some(4),
        "{}",
        proc.report()
    );
    assert_eq!(proc.stdout(), "out\n", "drainit must not write to stdout");
    let lines: Vec<serde_json::Value> = proc
        .stderr()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}")))
        .collect();
    assert!(lines.len() >= 2, "{}", proc.report());
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["timestamp"].is_string()),
        "{lines:?}"
    );
    let exited = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("app exited"))
        })
        .unwrap_or_else(|| panic!("no 'app exited' line: {lines:?}"));
    assert_eq!(exited["message"], "app exited code=4");
}

/// `--drain-notify SIGNAL|URL`: the app hears of the drain at its start,
/// while it still serves, and gets its stop signal after the delay.
#[test]
fn drain_notify_tells_the_app_at_the_drain_start() {
    for notify in ["USR1", "URL"] {
        let dir = scratch("drain-notify");
        std::fs::write(dir.join("app.py"), LAME_DUCK_APP).expect("write app");
        let port = common::free_port().to_string();
        let url = format!("http://127.0.0.1:{port}/drain");
        let flag = if notify == "URL" {
            url.as_str()
        } else {
            notify
        };
        let record = dir.join("notes");
        let record_arg = record.to_string_lossy().into_owned();
        let mut proc = Proc::drainit(
            &dir,
            &[
                "--admin-listen",
                "off",
                "--propagation-delay",
                "1s",
                "--drain-notify",
                flag,
                "--",
                "python3",
                "app.py",
                &record_arg,
                &port,
            ],
            &[],
        );
        assert!(
            wait_for(Duration::from_secs(20), || record
                .with_extension("started")
                .exists()),
            "{}",
            proc.report()
        );
        let drained_at = now();
        proc.signal(libc::SIGTERM);
        assert_eq!(
            proc.wait(Duration::from_secs(20)).code(),
            Some(0),
            "{}",
            proc.report()
        );
        let (told, stopped, notes) = common::lame_duck_record(&record, notify);
        let (Some(told), Some(stopped)) = (told, stopped) else {
            panic!("{notify}: {notes}\n{}", proc.report());
        };
        assert!(
            told >= drained_at && told < drained_at + 0.9,
            "{notify}: {notes}"
        );
        assert!(
            stopped >= drained_at + 1.0 && stopped > told,
            "{notify}: {notes}"
        );
    }
}
