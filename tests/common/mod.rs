//! Helpers shared by the integration tests: run the real binary, poll
//! with deadlines, speak just enough HTTP, and clean up on drop.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn drainit() -> &'static str {
    env!("CARGO_BIN_EXE_drainit")
}

/// CLOCK_MONOTONIC in nanoseconds: the clock the test apps stamp their
/// signal lines with (`signal_recorder`, the container app; a container
/// shares the host's clock).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("drainit-test-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Polls `condition` every 10 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The admin address to give drainit: loopback, port 0. The kernel picks
/// a free port when drainit binds; [`Proc::admin_addr`] reads it back.
/// No port is picked beforehand and hoped to stay free.
pub const ANY_PORT: &str = "127.0.0.1:0";

/// A loopback port that was free a moment ago, and that another process
/// may take before ours binds it. Only where nothing better works: the
/// app's port in the container cases (the engine starts drainit and the
/// app, so no socket can be handed in) and in `auto_delay`'s wrapper cases
/// (`--traffic-ports` names it before the app starts, and a socket handed
/// through drainit would stay open in drainit after the app closes its
/// listener, which those tests watch). Everything else binds port 0:
/// [`ANY_PORT`] and [`Proc::admin_addr`], [`AppSocket`].
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Whether `name` is an environment variable by which drainit finds a
/// Kubernetes API (the in-cluster convention) or takes its API settings.
pub fn is_cluster_env(name: &str) -> bool {
    matches!(name, "KUBERNETES_SERVICE_HOST" | "KUBERNETES_SERVICE_PORT")
        || name.starts_with("DRAINIT_KUBERNETES")
        || name.starts_with("DRAINIT_POD_")
}

/// Of the `inherited` environment variables' names, those a process under
/// test must not get ([`is_cluster_env`]) unless the test `given` them:
/// a test run inside a pod (a CI job on Kubernetes) would otherwise hand
/// drainit's kubernetes build the real cluster's API. tests/kube.rs
/// passes its emulation's explicitly.
pub fn cluster_env_to_remove(
    inherited: impl IntoIterator<Item = std::ffi::OsString>,
    given: &[&str],
) -> Vec<std::ffi::OsString> {
    inherited
        .into_iter()
        .filter(|name| {
            name.to_str()
                .is_some_and(|name| is_cluster_env(name) && !given.contains(&name))
        })
        .collect()
}

/// Removes from `command` the [`cluster_env_to_remove`] of this process's
/// environment; `given` are the names the test sets on it.
pub fn without_cluster_env<'c>(command: &'c mut Command, given: &[&str]) -> &'c mut Command {
    let inherited = std::env::vars_os().map(|(name, _)| name);
    for name in cluster_env_to_remove(inherited, given) {
        command.env_remove(name);
    }
    command
}

/// The TCP ports `pid` listens on now: its sockets' inodes looked up in
/// the kernel's tables of its network namespace (`/proc/PID/net/tcp`,
/// `tcp6`), so a process that bound port 0 needs to report nothing.
pub fn listening_ports(pid: i32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|target| {
                    let target = target.to_string_lossy().into_owned();
                    let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
                    Some(inode.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(&"0A"), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let port = local
                .rsplit_once(':')
                .and_then(|(_, port)| u16::from_str_radix(port, 16).ok());
            if let Some(port) = port.filter(|_| inodes.iter().any(|own| own == inode)) {
                if !ports.contains(&port) {
                    ports.push(port);
                }
            }
        }
    }
    ports
}

/// The one TCP port `pid` listens on, once it does (up to 20 s).
pub fn listening_port(pid: i32) -> u16 {
    let mut ports = Vec::new();
    wait_for(Duration::from_secs(20), || {
        ports = listening_ports(pid);
        !ports.is_empty()
    });
    match ports[..] {
        [port] => port,
        [] => panic!("process {pid} listens on no TCP port"),
        _ => panic!("process {pid} listens on several TCP ports: {ports:?}"),
    }
}

/// A loopback TCP socket bound to a port the kernel picked, not yet
/// listening: the test holds the port from the start, and hands the socket
/// to the app it starts ([`Proc::start_with_socket`], as fd 3), which
/// listens on it when it wants to. Connections are refused until then.
/// (Handed through drainit, the socket stays open in drainit too.)
pub struct AppSocket {
    pub fd: std::os::fd::OwnedFd,
    pub port: u16,
}

impl AppSocket {
    /// The fd number the app finds the socket at.
    pub const FD: i32 = 3;

    /// Binds 127.0.0.1:0 (close-on-exec: only [`Proc::start_with_socket`]
    /// hands it on).
    pub fn bind() -> AppSocket {
        use nix::sys::socket::{
            bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn,
        };
        use std::os::fd::AsRawFd;
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .expect("socket");
        bind(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, 0)).expect("bind 127.0.0.1:0");
        let port = getsockname::<SockaddrIn>(fd.as_raw_fd())
            .expect("getsockname")
            .port();
        AppSocket { fd, port }
    }

    /// Where the app answers once it listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

/// A process under test: stdout and stderr go to files (never a pipe that
/// could fill up), and the whole process group is killed on drop. It
/// inherits no Kubernetes API environment ([`without_cluster_env`]) but
/// what the test passes.
pub struct Proc {
    pub child: Child,
    pub dir: PathBuf,
    pub description: String,
    /// The port of the [`AppSocket`] handed to the process, if any.
    handed_port: Option<u16>,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `program args` in its own process group, in `dir`.
    pub fn start(dir: &Path, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        Proc::spawn(dir, program, args, envs, None)
    }

    /// As [`Proc::start`], with `socket` at fd [`AppSocket::FD`] of the
    /// program (drainit passes it on to the app). The test's own copy is
    /// closed once the program runs: the app's listener is the app's.
    pub fn start_with_socket(
        dir: &Path,
        program: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        socket: AppSocket,
    ) -> Proc {
        Proc::spawn(dir, program, args, envs, Some(&socket))
    }

    fn spawn(
        dir: &Path,
        program: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        socket: Option<&AppSocket>,
    ) -> Proc {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let stdout = std::fs::File::create(dir.join("stdout")).expect("stdout file");
        let stderr = std::fs::File::create(dir.join("stderr")).expect("stderr file");
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(envs.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        let given: Vec<&str> = envs.iter().map(|(name, _)| *name).collect();
        without_cluster_env(&mut command, &given);
        if let Some(socket) = socket {
            let source = socket.fd.as_raw_fd();
            // SAFETY: dup2 and fcntl are async-signal-safe and the closure
            // allocates nothing. The copy at fd 3 has no FD_CLOEXEC, so it
            // survives exec; a socket that is fd 3 already keeps its flag
            // through dup2, so that one is cleared by hand.
            unsafe {
                command.pre_exec(move || {
                    let done = if source == AppSocket::FD {
                        libc::fcntl(source, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(source, AppSocket::FD)
                    };
                    if done < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Proc {
            child,
            dir: dir.to_path_buf(),
            description: format!("{program} {args:?}"),
            handed_port: socket.map(|s| s.port),
            status: None,
        }
    }

    /// The loopback address drainit's admin server listens on, once it
    /// does: drainit is this process, or (under [`Proc::pid1`]) the child
    /// of `unshare`.
    pub fn admin_addr(&self) -> SocketAddr {
        let drainit = self.drainit_pid();
        // drainit holds the app's socket too when the test handed it one.
        let mut ports = Vec::new();
        wait_for(Duration::from_secs(20), || {
            ports = listening_ports(drainit);
            ports.retain(|port| Some(*port) != self.handed_port);
            !ports.is_empty()
        });
        match ports[..] {
            [port] => SocketAddr::from(([127, 0, 0, 1], port)),
            _ => panic!(
                "drainit listens on {ports:?}, not one admin port\n{}",
                self.report()
            ),
        }
    }

    /// drainit's own pid: this process, or the outermost of its
    /// descendants that runs the drainit binary (under `unshare --fork`,
    /// or after `sh`, `setpriv` or `unshare` exec'd into it).
    fn drainit_pid(&self) -> i32 {
        let binary = std::fs::canonicalize(drainit()).ok();
        let runs_drainit =
            |pid: &i32| std::fs::read_link(format!("/proc/{pid}/exe")).ok() == binary;
        let mut found = None;
        wait_for(Duration::from_secs(20), || {
            found = std::iter::once(self.pid())
                .chain(descendants(self.pid()))
                .find(runs_drainit);
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no drainit among the processes\n{}", self.report()))
    }

    /// Runs drainit as PID 1 of a fresh PID namespace.
    pub fn pid1(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let mut full = vec!["--pid", "--fork", "--mount-proc", "--kill-child", drainit()];
        full.extend_from_slice(args);
        Proc::start(dir, "unshare", &full, envs)
    }

    /// Runs drainit as a plain process.
    pub fn drainit(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Proc {
        Proc::start(dir, drainit(), args, envs)
    }

    /// drainit in front of a long sleep, admin on `listen`, with a drain
    /// (30 s delay, 60 s grace) that outlasts any admin test.
    pub fn drainit_in_front_of_sleep(dir: &Path, listen: &str, flags: &[&str]) -> Proc {
        let mut args = vec![
            "--admin-listen",
            listen,
            "--propagation-delay",
            "30s",
            "--grace-period",
            "60s",
        ];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "sleep", "300"]);
        Proc::drainit(dir, &args, &[])
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// Everything worth printing when a test fails.
    pub fn report(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.description,
            self.status,
            self.stdout(),
            self.stderr()
        )
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.status = Some(status);
                return status;
            }
            if Instant::now() >= deadline {
                panic!("did not exit within {limit:?}\n{}", self.report());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.status = Some(status);
                false
            }
            _ => true,
        }
    }

    /// Sends `signal` to the process itself.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) takes two integers.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Waits for a line containing `needle` in stderr.
    pub fn wait_stderr(&self, needle: &str, limit: Duration) -> bool {
        wait_for(limit, || self.stderr().contains(needle))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The app runs in a process group of its own: kill every
        // descendant, not only our group, so a failed test leaks nothing.
        for pid in descendants(self.pid()) {
            kill(pid, libc::SIGKILL);
        }
        if self.running() {
            kill(-self.pid(), libc::SIGKILL);
            let _ = self.child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Sends `signal` to `pid`.
pub fn kill(pid: i32, signal: i32) -> bool {
    // SAFETY: kill(2) takes two integers.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// One HTTP/1.1 request on a fresh connection; `None` if the connection failed.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text.get(9..12)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// `GET path`, with a 5 s bound.
pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http(addr, "GET", path, &[], Duration::from_secs(5))
}

/// Waits until `GET path` answers `code`.
pub fn wait_status(addr: SocketAddr, path: &str, code: u16, limit: Duration) -> bool {
    wait_for(limit, || get(addr, path).map(|(c, _)| c) == Some(code))
}

/// The processes in state Z among those visible in /proc (of the caller's namespace).
pub fn zombies_in(proc_root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .collect()
}

/// The children of `pid` (from /proc/PID/task/*/children).
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// The host pid of drainit started by `Proc::pid1` (the child of `unshare`).
pub fn drainit_under_unshare(unshare: i32) -> i32 {
    let mut found = None;
    wait_for(Duration::from_secs(20), || {
        found = children_of(unshare).first().copied();
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("unshare {unshare} has no child"))
}

/// Every descendant of `pid`.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        for child in children_of(parent) {
            if !found.contains(&child) {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}

/// The wall clock as seconds since the epoch, to compare with the times a
/// test app writes (Python's `time.time()`).
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// An app with a lame-duck mode: records USR1, a GET to /drain and
/// SIGTERM, each with its time; exits 0 on SIGTERM.
pub const LAME_DUCK_APP: &str = r#"
import http.server, signal, sys, threading, time
out, port = sys.argv[1], int(sys.argv[2])
def note(what):
    with open(out, "a") as f:
        f.write("%s %.6f\n" % (what, time.time()))
def on_signal(signum, frame):
    note(signal.Signals(signum).name)
    if signum == signal.SIGTERM:
        sys.exit(0)
signal.signal(signal.SIGUSR1, on_signal)
signal.signal(signal.SIGTERM, on_signal)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        note("GET" + self.path)
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
server = http.server.HTTPServer(("127.0.0.1", port), H)
threading.Thread(target=server.serve_forever, daemon=True).start()
open(out + ".started", "w").close()
while True:
    signal.pause()
"#;

/// What a [`LAME_DUCK_APP`] wrote to `record`: when it was told of the
/// drain (a GET to `/drain` when `notify` is `"URL"`, else SIGUSR1), when
/// it got SIGTERM, and the record itself for failure messages.
pub fn lame_duck_record(record: &Path, notify: &str) -> (Option<f64>, Option<f64>, String) {
    let notes = std::fs::read_to_string(record).unwrap_or_default();
    let at = |what: &str| {
        notes.lines().find_map(|l| {
            l.strip_prefix(what)
                .and_then(|t| t.trim().parse::<f64>().ok())
        })
    };
    let told = at(if notify == "URL" {
        "GET/drain "
    } else {
        "SIGUSR1 "
    });
    let stopped = at("SIGTERM ");
    (told, stopped, notes)
}
