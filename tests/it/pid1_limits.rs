//! No resource limit may take PID 1 down (issue 20, item 1): drainit as
//! PID 1 under a pids cgroup at its `pids.max`, under `RLIMIT_NPROC` and
//! with its file descriptors used up keeps running, keeps its drain
//! timeline and exits with the app's code. Before the fix a
//! `--ready-check` lookup needed a new thread of tokio's blocking pool
//! (its idle one exits after 10 s); tokio panics when it cannot create
//! one, and with `panic = "abort"` PID 1 died with the whole container.

use crate::common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::{drainit_under_unshare, get, scratch, wait_for, wait_status, Proc};

/// How long a start or an expected change may take on a loaded machine.
const PROMPT: Duration = Duration::from_secs(20);

/// A pids cgroup of the test's own (cgroup v2 with the pids controller, or
/// the v1 pids hierarchy), removed with everything in it on drop.
struct PidsCgroup {
    path: PathBuf,
}

impl PidsCgroup {
    fn new(name: &str) -> PidsCgroup {
        let v2 = Path::new("/sys/fs/cgroup");
        let v2_has_pids = std::fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|controllers| controllers.split_whitespace().any(|c| c == "pids"));
        let root = if v2_has_pids {
            // Children get the controller only when the parent hands it down.
            let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+pids");
            v2.to_path_buf()
        } else if Path::new("/sys/fs/cgroup/pids/pids.max").exists()
            || Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists()
        {
            PathBuf::from("/sys/fs/cgroup/pids")
        } else {
            panic!(
                "no pids cgroup controller under /sys/fs/cgroup (neither cgroup v2 with pids \
                 nor the v1 pids hierarchy): this test needs one and root"
            );
        };
        let path = root.join(format!("drainit-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("cannot create the cgroup {}: {e}", path.display()));
        PidsCgroup { path }
    }

    fn procs(&self) -> String {
        self.path.join("cgroup.procs").display().to_string()
    }

    fn set_max(&self, max: &str) {
        std::fs::write(self.path.join("pids.max"), max)
            .unwrap_or_else(|e| panic!("cannot set pids.max of {}: {e}", self.path.display()));
    }

    fn current(&self) -> u64 {
        std::fs::read_to_string(self.path.join("pids.current"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .expect("pids.current")
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path.join("pids.max"), "max");
        wait_for(Duration::from_secs(10), || {
            let procs = std::fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
                common::kill(pid, libc::SIGKILL);
            }
            procs.trim().is_empty()
        });
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Python's HTTP server as the app the checks go to; it logs one line per
/// request to its stderr.
fn start_check_target(dir: &Path) -> (Proc, u16) {
    let port = common::free_port();
    let port_arg = port.to_string();
    let server = Proc::start(
        dir,
        "python3",
        &["-m", "http.server", &port_arg, "--bind", "127.0.0.1"],
        &[],
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert!(
        wait_status(addr, "/", 200, PROMPT),
        "the check target did not start\n{}",
        server.report()
    );
    (server, port)
}

/// The requests the check target has answered to `/?check`.
fn checks_seen(target: &Proc) -> usize {
    target.stderr().matches("GET /?check").count()
}

/// drainit as PID 1 (under `unshare`), started inside `cgroup`, in front of `sleep 300`.
fn pid1_in_cgroup(dir: &Path, cgroup: &PidsCgroup, flags: &[&str]) -> Proc {
    let mut args = vec![
        "-c",
        "echo $$ > \"$1\" && shift && exec unshare --pid --fork --mount-proc --kill-child \"$@\"",
        "sh",
    ];
    let procs = cgroup.procs();
    args.push(&procs);
    args.push(common::drainit());
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--", "sleep", "300"]);
    Proc::start(dir, "sh", &args, &[])
}

fn admin_flags(admin: &str) -> Vec<&str> {
    vec!["--admin-listen", admin, "--propagation-delay", "0s", "-v"]
}

/// At `pids.max` before the first lookup: no thread can be made for it.
/// drainit stays up and not ready, and turns ready once the limit allows
/// the lookup's thread.
#[test]
fn no_thread_for_a_lookup_is_not_ready_not_a_dead_pid1() {
    let (target, port) = start_check_target(&scratch("limits-target"));
    let listen = common::ANY_PORT;
    let by_ip = format!("http://127.0.0.1:{port}/?check");
    let by_name = format!("http://localhost:{port}/?check");

    // First how many tasks drainit and its app need without a lookup.
    let cgroup = PidsCgroup::new("measure");
    let mut flags = admin_flags(listen);
    flags.extend_from_slice(&["--ready-check", &by_ip, "--ready-check-interval", "100ms"]);
    let mut measured = pid1_in_cgroup(&scratch("limits-measure"), &cgroup, &flags);
    let admin = measured.admin_addr();
    assert!(
        wait_status(admin, "/ready", 200, PROMPT),
        "{}",
        measured.report()
    );
    let needed = cgroup.current();
    common::kill(drainit_under_unshare(measured.pid()), libc::SIGTERM);
    measured.wait(PROMPT);
    drop(cgroup);

    // Then with exactly that many allowed, and a check by name.
    let cgroup = PidsCgroup::new("full");
    cgroup.set_max(&needed.to_string());
    let mut flags = admin_flags(listen);
    flags.extend_from_slice(&["--ready-check", &by_name, "--ready-check-interval", "100ms"]);
    let mut proc = pid1_in_cgroup(&scratch("limits-full"), &cgroup, &flags);
    let admin = proc.admin_addr();
    assert!(
        proc.wait_stderr("no thread for the --ready-check lookup", PROMPT),
        "drainit must find no thread for its lookup and go on\n{}",
        proc.report()
    );
    assert!(proc.running(), "PID 1 died at the limit\n{}", proc.report());
    assert_eq!(
        get(admin, "/ready").map(|(code, _)| code),
        Some(503),
        "{}",
        proc.report()
    );
    assert_eq!(
        get(admin, "/live").map(|(code, _)| code),
        Some(200),
        "{}",
        proc.report()
    );
    let before = checks_seen(&target);
    cgroup.set_max("max");
    assert!(
        wait_status(admin, "/ready", 200, PROMPT),
        "ready once the limit allows the lookup\n{}",
        proc.report()
    );
    assert!(checks_seen(&target) > before);
    common::kill(drainit_under_unshare(proc.pid()), libc::SIGTERM);
    let status = proc.wait(PROMPT);
    assert_eq!(status.code(), Some(143), "{}", proc.report());
}

/// At `pids.max` after the first lookup, past the 10 s tokio's idle
/// blocking thread lived: the next lookup must still run.
#[test]
fn lookups_go_on_at_pids_max() {
    let (target, port) = start_check_target(&scratch("limits-later-target"));
    let listen = common::ANY_PORT;
    let by_name = format!("http://localhost:{port}/?check");
    let cgroup = PidsCgroup::new("later");
    let mut flags = admin_flags(listen);
    flags.extend_from_slice(&["--ready-check", &by_name, "--ready-check-interval", "12s"]);
    let mut proc = pid1_in_cgroup(&scratch("limits-later"), &cgroup, &flags);
    let admin = proc.admin_addr();
    assert!(
        wait_status(admin, "/ready", 200, PROMPT),
        "{}",
        proc.report()
    );
    let first = checks_seen(&target);
    // Nothing more may start in the cgroup from here on.
    cgroup.set_max("1");
    assert!(
        wait_for(Duration::from_secs(40), || checks_seen(&target) > first
            || !proc.running()),
        "{}",
        proc.report()
    );
    assert!(
        proc.running(),
        "PID 1 died when its lookup needed a thread at pids.max\n{}",
        proc.report()
    );
    assert_eq!(
        get(admin, "/ready").map(|(code, _)| code),
        Some(200),
        "{}",
        proc.report()
    );
    common::kill(drainit_under_unshare(proc.pid()), libc::SIGTERM);
    let status = proc.wait(PROMPT);
    assert_eq!(status.code(), Some(143), "{}", proc.report());
}

/// The same under `RLIMIT_NPROC` (set with `prlimit --nproc` on the
/// running PID 1, as an unprivileged user, where the limit applies).
#[test]
fn lookups_go_on_at_rlimit_nproc() {
    let (target, port) = start_check_target(&scratch("nproc-target"));
    let listen = common::ANY_PORT;
    let by_name = format!("http://localhost:{port}/?check");
    let mut args = vec![
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        "setpriv",
        "--reuid=64120",
        "--regid=64120",
        "--clear-groups",
        common::drainit(),
    ];
    let mut flags = admin_flags(listen);
    flags.extend_from_slice(&["--ready-check", &by_name, "--ready-check-interval", "12s"]);
    args.extend_from_slice(&flags);
    args.extend_from_slice(&["--", "sleep", "300"]);
    let mut proc = Proc::start(&scratch("nproc"), "unshare", &args, &[]);
    let admin = proc.admin_addr();
    assert!(
        wait_status(admin, "/ready", 200, PROMPT),
        "{}",
        proc.report()
    );
    let first = checks_seen(&target);
    let drainit = drainit_under_unshare(proc.pid());
    // As drainit's own user: lowering a limit of one's own processes needs
    // no capability.
    let limited = std::process::Command::new("setpriv")
        .args([
            "--reuid=64120",
            "--regid=64120",
            "--clear-groups",
            "prlimit",
        ])
        .args(["--pid", &drainit.to_string(), "--nproc=1:1"])
        .status()
        .expect("run prlimit");
    assert!(limited.success(), "prlimit --nproc failed");
    assert!(
        wait_for(Duration::from_secs(40), || checks_seen(&target) > first
            || !proc.running()),
        "{}",
        proc.report()
    );
    assert!(
        proc.running(),
        "PID 1 died when its lookup needed a thread at RLIMIT_NPROC\n{}",
        proc.report()
    );
    common::kill(drainit, libc::SIGTERM);
    let status = proc.wait(PROMPT);
    assert_eq!(status.code(), Some(143), "{}", proc.report());
}

/// A sidecar as PID 1 whose descriptors are used up (`RLIMIT_NOFILE`
/// lowered to its lowest free descriptor): its checks cannot open a
/// socket, which says nothing about the app. It must neither die nor take
/// the app for gone: it keeps the drain until the deadline.
#[test]
fn out_of_descriptors_is_not_the_app_gone() {
    let (_target, port) = start_check_target(&scratch("nofile-target"));
    let listen = common::ANY_PORT;
    let check = format!("http://127.0.0.1:{port}/?check");
    let mut proc = Proc::pid1(
        &scratch("nofile"),
        &[
            "--admin-listen",
            listen,
            "--ready-check",
            &check,
            "--ready-check-interval",
            "100ms",
            "--propagation-delay",
            "1s",
            "--grace-period",
            "5s",
            "--kill-margin",
            "1s",
            "sidecar",
        ],
        &[],
    );
    let admin = proc.admin_addr();
    assert!(
        wait_status(admin, "/ready", 200, PROMPT),
        "{}",
        proc.report()
    );
    let drainit = drainit_under_unshare(proc.pid());
    let open: Vec<i32> = std::fs::read_dir(format!("/proc/{drainit}/fd"))
        .expect("fd dir")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    let lowest_free = (0..).find(|fd| !open.contains(fd)).expect("a free fd");
    let limited = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &drainit.to_string(),
            &format!("--nofile={lowest_free}:"),
        ])
        .status()
        .expect("run prlimit");
    assert!(limited.success(), "prlimit --nofile failed");
    let drained = Instant::now();
    common::kill(drainit, libc::SIGTERM);
    let status = proc.wait(PROMPT);
    let took = drained.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "the sidecar took failing checks for the app gone after {took:?}\n{}",
        proc.report()
    );
    assert!(
        proc.stderr().contains("drain deadline hit"),
        "{}",
        proc.report()
    );
    assert!(!proc.stderr().contains("panicked"), "{}", proc.report());
    assert_eq!(status.code(), Some(0), "{}", proc.report());
}

/// At `pids.max` from the start, with room for `unshare`, drainit and its
/// app only: the thread that writes drainit's log lines cannot start at
/// the first line. drainit keeps running, queues its lines, and writes
/// them once a later line finds room for the thread. Before the fix the
/// first failed start lost stderr for good: not one line of the drain.
#[test]
fn log_lines_wait_for_a_thread_at_pids_max() {
    let cgroup = PidsCgroup::new("log");
    // unshare, drainit, the app: nothing else.
    cgroup.set_max("3");
    let listen = common::ANY_PORT;
    let mut proc = pid1_in_cgroup(
        &scratch("limits-log"),
        &cgroup,
        &["--admin-listen", listen, "--propagation-delay", "3s"],
    );
    let admin = proc.admin_addr();
    assert!(
        wait_status(admin, "/live", 200, PROMPT),
        "{}",
        proc.report()
    );
    let drainit = drainit_under_unshare(proc.pid());
    common::kill(drainit, libc::SIGTERM);
    // The drain's first line finds no room for the writer thread.
    assert!(
        wait_status(admin, "/ready", 503, PROMPT),
        "{}",
        proc.report()
    );
    assert!(proc.running(), "{}", proc.report());
    cgroup.set_max("max");
    let status = proc.wait(PROMPT);
    assert_eq!(status.code(), Some(143), "{}", proc.report());
    for line in [
        "drain started",
        "propagation delay over",
        "drainit exits with 143",
    ] {
        assert!(
            proc.stderr().contains(line),
            "{line:?} never reached stderr\n{}",
            proc.report()
        );
    }
}
