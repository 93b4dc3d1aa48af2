//! drainit's own logging can neither block nor kill PID 1 (issue 9): a
//! stderr whose reader is gone, `/dev/full`, or a pipe nobody reads, and
//! the logging thread's signal mask. Through the real binary.

use crate::common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{
    descendants, drainit, get, http, kill, listening_port, scratch, wait_for, wait_status,
};

/// A drainit whose stderr the test chose (not a file like `Proc`'s), in
/// a process group of its own, killed with all its descendants on drop.
struct Started {
    child: Child,
    description: String,
}

impl Started {
    /// `drainit args`, or with `pid1` as PID 1 of a fresh PID namespace.
    fn new(dir: &Path, pid1: bool, args: &[&str], stderr: Stdio) -> Started {
        Started::ignoring(dir, pid1, args, stderr, None)
    }

    /// As [`Started::new`], with `ignored` ignored in drainit (and so in
    /// the app: drainit hands on what it inherited).
    fn ignoring(
        dir: &Path,
        pid1: bool,
        args: &[&str],
        stderr: Stdio,
        ignored: Option<i32>,
    ) -> Started {
        let mut command = if pid1 {
            let mut command = Command::new("unshare");
            command.args(["--pid", "--fork", "--mount-proc", "--kill-child", drainit()]);
            command
        } else {
            Command::new(drainit())
        };
        command
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .process_group(0);
        if let Some(signal) = ignored {
            // SAFETY: signal(2) is async-signal-safe; nothing else runs
            // between fork and exec here.
            unsafe {
                command.pre_exec(move || {
                    libc::signal(signal, libc::SIG_IGN);
                    Ok(())
                });
            }
        }
        let child = common::without_cluster_env(&mut command, &[])
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start drainit: {e}"));
        Started {
            child,
            description: format!("pid1={pid1} drainit {args:?}"),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits up to `limit` for the exit; panics naming the command if none.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}",
                self.description
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        for pid in descendants(self.pid()) {
            kill(pid, libc::SIGKILL);
        }
        kill(-self.pid(), libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// An app that lives long enough for drainit to log a few lines, then
/// exits 7; drainit logs at debug and serves its admin port meanwhile.
fn short_app_args(port: &str) -> Vec<&str> {
    vec![
        "-v",
        "--admin-listen",
        port,
        "--",
        "sh",
        "-c",
        "sleep 0.3; exit 7",
    ]
}

fn assert_exits_with_the_apps_code(mut drainit: Started, what: &str) {
    let status = drainit.wait(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(7),
        "{what}: {} ended {status:?} (signal {:?}), not with the app's code 7",
        drainit.description,
        status.signal()
    );
}

#[test]
fn a_stderr_whose_reader_is_gone_neither_kills_nor_stops_drainit() {
    for pid1 in [false, true] {
        let dir = scratch("stderr-epipe");
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let port = common::ANY_PORT;
        let drainit = Started::new(&dir, pid1, &short_app_args(port), writer.into());
        // Not PID 1, a SIGPIPE that drainit did not ignore would end it
        // with signal 13; as PID 1 the write error itself used to.
        assert_exits_with_the_apps_code(drainit, "stderr a pipe without a reader");
    }
}

#[test]
fn a_stderr_on_dev_full_neither_kills_nor_stops_drainit() {
    for pid1 in [false, true] {
        let dir = scratch("stderr-full");
        let full = File::options()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        let port = common::ANY_PORT;
        let drainit = Started::new(&dir, pid1, &short_app_args(port), full.into());
        assert_exits_with_the_apps_code(drainit, "stderr /dev/full");
    }
}

/// A request hyper cannot parse: answered 400, and drainit logs the
/// connection's error at debug. True once the connection was answered.
fn malformed_request(addr: SocketAddr, timeout: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 ")
}

/// The value of an unlabelled sample in a Prometheus text answer.
fn sample(metrics: &str, name: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

#[test]
fn a_stderr_nobody_reads_stalls_neither_the_admin_server_nor_the_drain() {
    let dir = scratch("stderr-unread");
    let (reader, writer) = std::io::pipe().expect("pipe");
    // The smallest pipe (one page), so that fewer lines fill it; it is
    // never read from.
    nix::fcntl::fcntl(reader.as_raw_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096))
        .expect("F_SETPIPE_SZ");
    let listen = common::ANY_PORT;
    let app = "trap 'echo stopped > got-term; exit 0' TERM; while :; do sleep 0.05; done";
    // Real-time signals queue one by one, and drainit forwards each (at
    // debug): one more source of lines. The app ignores it, as drainit
    // was started ignoring it.
    let forwarded = libc::SIGRTMIN() + 5;
    let mut drainit = Started::ignoring(
        &dir,
        false,
        &[
            "-vv",
            "--admin-listen",
            listen,
            // 127.0.0.1 is refused, with a warning each time (perhaps
            // rate-limited: the malformed requests below log too).
            "--prestop-allow-from",
            "10.0.0.0/8",
            "--propagation-delay",
            "1s",
            "--grace-period",
            "20s",
            "--",
            "sh",
            "-c",
            app,
        ],
        writer.into(),
        Some(forwarded),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], listening_port(drainit.pid())));
    assert!(
        wait_status(addr, "/ready", 200, Duration::from_secs(20)),
        "/ready never answered 200"
    );

    // Each request (and each signal) makes drainit log a line: far more
    // lines than the pipe and the queue hold. Stop at the first request
    // left unanswered: that is the event loop stuck in a write to stderr.
    let timeout = Duration::from_secs(5);
    let flood = 3_000;
    let bound = Instant::now() + Duration::from_secs(120);
    for sent in 0..flood {
        kill(drainit.pid(), forwarded);
        let answered = if sent % 2 == 0 {
            http(addr, "GET", "/prestop", &[], timeout).map(|(code, _)| code) == Some(403)
        } else {
            malformed_request(addr, timeout)
        };
        assert!(
            answered,
            "request {sent} of {flood} went unanswered: drainit blocks on its stderr"
        );
        if Instant::now() > bound {
            break;
        }
    }

    let ready = http(addr, "GET", "/ready", &[], timeout);
    assert_eq!(
        ready.map(|(code, _)| code),
        Some(200),
        "/ready after the flood"
    );
    let metrics = get(addr, "/metrics").expect("/metrics answers").1;
    let dropped = sample(&metrics, "drainit_log_lines_dropped_total");
    assert!(
        dropped.is_some_and(|dropped| dropped > 0),
        "no dropped lines counted: {dropped:?}\n{metrics}"
    );

    // The drain still runs to its end: /ready turns 503, the app gets its
    // stop signal after the propagation delay, drainit exits with the
    // app's code well before the grace period is over.
    let started = Instant::now();
    kill(drainit.pid(), libc::SIGTERM);
    assert!(
        wait_status(addr, "/ready", 503, Duration::from_secs(10)),
        "/ready did not turn 503 after SIGTERM"
    );
    assert!(
        wait_for(Duration::from_secs(15), || dir.join("got-term").exists()),
        "the app never got its stop signal"
    );
    let status = drainit.wait(Duration::from_secs(18));
    assert_eq!(status.code(), Some(0), "drainit ended {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the drain took longer than its grace period"
    );
    drop(reader);
}

/// The signals of a `SigBlk:`/`SigIgn:` hex mask in /proc.
fn signals_in(status: &str, field: &str) -> Vec<i32> {
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    (1..=64).filter(|n| mask & (1 << (n - 1)) != 0).collect()
}

#[test]
fn no_thread_of_drainit_takes_a_handled_signal_and_sigpipe_is_ignored() {
    let dir = scratch("log-thread-mask");
    let listen = common::ANY_PORT;
    let drainit = Started::new(
        &dir,
        false,
        &[
            "-v",
            "--admin-listen",
            listen,
            "--prestop-allow-from",
            "10.0.0.0/8",
            "--",
            "sleep",
            "30",
        ],
        Stdio::null(),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], listening_port(drainit.pid())));
    // The logging thread starts with the first line: make sure there is
    // one (a refused /prestop is a warning).
    assert!(
        wait_status(addr, "/prestop", 403, Duration::from_secs(20)),
        "/prestop from 127.0.0.1 was not refused"
    );
    let tasks = format!("/proc/{}/task", drainit.pid());
    let logging_thread = || {
        std::fs::read_dir(&tasks).ok().and_then(|entries| {
            entries.flatten().find(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|comm| comm.trim() == "drainit-log")
            })
        })
    };
    assert!(
        wait_for(Duration::from_secs(20), || logging_thread().is_some()),
        "no thread named drainit-log"
    );
    let handled = [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGPIPE,
        libc::SIGUSR1,
        libc::SIGCHLD,
        libc::SIGWINCH,
        libc::SIGRTMIN() + 2,
        libc::SIGRTMAX(),
    ];
    let entries = std::fs::read_dir(&tasks).expect("drainit's tasks");
    let mut threads = 0;
    for task in entries.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).expect("task status");
        let blocked = signals_in(&status, "SigBlk:");
        for sig in handled {
            assert!(
                blocked.contains(&sig),
                "signal {sig} is not blocked in {:?}:\n{status}",
                task.path()
            );
        }
        threads += 1;
    }
    assert!(threads >= 2, "the main thread and the logging thread");
    let status = std::fs::read_to_string(format!("/proc/{}/status", drainit.pid()))
        .expect("drainit's status");
    // Blocked in every thread (checked above with the handled ones), so a
    // write to a closed pipe only fails with EPIPE; not ignored, so that a
    // SIGPIPE sent with kill still reaches the app.
    assert!(
        !signals_in(&status, "SigIgn:").contains(&libc::SIGPIPE),
        "drainit ignores SIGPIPE: a kill -PIPE would be lost\n{status}"
    );
}

#[test]
fn the_last_lines_are_written_before_drainit_exits() {
    // An exec failure is logged just before drainit exits: the exit must
    // give the logging thread the time to write it.
    for round in 0..5 {
        let dir = scratch("log-flush");
        let stderr = File::create(dir.join("stderr")).expect("stderr file");
        let missing = format!("/nonexistent/drainit-test-app-{round}");
        let mut drainit = Started::new(
            &dir,
            false,
            &["--admin-listen", "off", "--", &missing],
            stderr.into(),
        );
        let status = drainit.wait(Duration::from_secs(30));
        assert_eq!(status.code(), Some(127), "exec failure exit code");
        let written = std::fs::read_to_string(dir.join("stderr")).expect("read stderr");
        assert!(
            written.contains(&missing) && written.ends_with('\n'),
            "round {round}: the exec failure line is missing: {written:?}"
        );
    }
}
