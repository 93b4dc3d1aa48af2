//! `--propagation-delay auto` through the real binary (issue 10): a
//! keep-alive client on loopback sends R requests/s and stops at T; the
//! stop signal comes after T (and after the quiet window), never before,
//! and long before the ceiling. A client that never stops: the ceiling.
//! The same as uid 65534, in sidecar mode, and with sock_diag denied by a
//! seccomp filter (the ceiling, and one warning saying why).

use crate::common;
use crate::pid1_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{free_port, scratch, wait_for, wait_status, AppSocket, Proc};
use pid1_support::{arg, fixture, SOON};

/// The app: examples/app_server.py (keep-alive HTTP, exits on SIGTERM),
/// on `port`, or with no port on the [`AppSocket`] the test hands it.
fn app_command(port: Option<u16>) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/app_server.py");
    let listen = match port {
        Some(port) => ["--port".to_string(), port.to_string()],
        None => ["--fd".to_string(), AppSocket::FD.to_string()],
    };
    vec![
        "python3".into(),
        arg(&script),
        listen[0].clone(),
        listen[1].clone(),
        "--work-ms".into(),
        "0".into(),
    ]
}

/// A client sending `rate` requests/s on one keep-alive connection until
/// told to stop (or `limit` passes); counts answers and failures.
struct Client {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Client {
    fn start(addr: SocketAddr, rate: f64, limit: Duration) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, a, f) = (stop.clone(), answered.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            let gap = Duration::from_secs_f64(1.0 / rate);
            let until = Instant::now() + limit;
            let mut connection: Option<BufReader<TcpStream>> = None;
            while !s.load(Ordering::SeqCst) && Instant::now() < until {
                let next = Instant::now() + gap;
                let conn = match connection.take() {
                    Some(conn) => Some(conn),
                    None => TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                        .ok()
                        .map(BufReader::new),
                };
                match conn.and_then(|conn| request(conn).ok()) {
                    Some(conn) => {
                        a.fetch_add(1, Ordering::SeqCst);
                        connection = Some(conn);
                    }
                    None => {
                        f.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        });
        Client {
            stop,
            answered,
            failed,
            thread: Some(thread),
        }
    }

    /// Stops the client; returns when its last request was answered.
    fn stop(&mut self) -> Instant {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        Instant::now()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One keep-alive GET; gives the connection back for the next one.
fn request(mut conn: BufReader<TcpStream>) -> std::io::Result<BufReader<TcpStream>> {
    conn.get_mut()
        .set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.get_mut()
        .write_all(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n")?;
    let mut length = 0usize;
    let mut status = String::new();
    conn.read_line(&mut status)?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(status));
    }
    loop {
        let mut line = String::new();
        if conn.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body)?;
    Ok(conn)
}

/// drainit (wrapped by `prefix`, e.g. setpriv) in front of the app, its
/// admin server and the app answering.
fn start(dir: &Path, prefix: &[String], flags: &[&str]) -> (Proc, SocketAddr, SocketAddr) {
    start_on(dir, prefix, flags, free_port(), &[])
}

/// [`start`] with the app on `app_port`, given `app_flags` too.
fn start_on(
    dir: &Path,
    prefix: &[String],
    flags: &[&str],
    app_port: u16,
    app_flags: &[&str],
) -> (Proc, SocketAddr, SocketAddr) {
    let listen = common::ANY_PORT.to_string();
    let mut all: Vec<String> = prefix.to_vec();
    all.push(common::drainit().to_string());
    // The machine's other listeners (other tests) are no pod's traffic:
    // in a pod the app's ports are all there is; here, name the app's.
    all.extend([
        "--admin-listen".to_string(),
        listen,
        "--traffic-ports".to_string(),
        app_port.to_string(),
    ]);
    all.extend(flags.iter().map(|f| f.to_string()));
    all.push("--".into());
    all.extend(app_command(Some(app_port)));
    all.extend(app_flags.iter().map(|f| f.to_string()));
    let (program, rest) = all.split_first().expect("a program");
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let proc = Proc::start(dir, program, &rest, &[]);
    let admin = proc.admin_addr();
    let app: SocketAddr = format!("127.0.0.1:{app_port}").parse().expect("addr");
    assert!(
        wait_for(SOON, || TcpStream::connect(app).is_ok())
            && wait_status(admin, "/ready", 200, SOON),
        "drainit and the app did not come up\n{}",
        proc.report()
    );
    (proc, admin, app)
}

/// How the delay ended, from `/status` (taken before drainit exits) or the log.
fn delay_end(proc: &Proc) -> String {
    proc.stderr()
        .lines()
        .find_map(|line| {
            line.split_once("delay ended: ")
                .map(|(_, end)| end.to_string())
        })
        .unwrap_or_default()
}

/// The common story: traffic at `rate` for a while, SIGTERM, traffic
/// stops `stop_after` into the drain; returns (client stop, drainit exit).
fn drain_with_traffic(
    proc: &mut Proc,
    app: SocketAddr,
    rate: f64,
    stop_after: Duration,
) -> (Instant, Instant, Client) {
    let mut client = Client::start(app, rate, Duration::from_secs(40));
    // Long enough for the rate before the drain to be measured (1 s samples).
    std::thread::sleep(Duration::from_secs(3));
    proc.signal(libc::SIGTERM);
    std::thread::sleep(stop_after);
    let stopped = client.stop();
    proc.wait(Duration::from_secs(30));
    (stopped, Instant::now(), client)
}

const AUTO: [&str; 6] = [
    "--propagation-delay",
    "auto",
    "--propagation-delay-max",
    "15s",
    "--grace-period",
    "30s",
];

/// auto with a ceiling short enough to wait for in a test.
const AUTO_4S_CEILING: [&str; 6] = [
    "--propagation-delay",
    "auto",
    "--propagation-delay-max",
    "4s",
    "--grace-period",
    "30s",
];

#[test]
fn auto_ends_after_the_traffic_stopped_and_long_before_the_ceiling() {
    let dir = scratch("auto-stops");
    let (mut proc, _admin, app) = start(&dir, &[], &AUTO);
    let (stopped, exited, client) =
        drain_with_traffic(&mut proc, app, 100.0, Duration::from_secs(2));
    assert_eq!(
        client.failed.load(Ordering::SeqCst),
        0,
        "requests failed\n{}",
        proc.report()
    );
    assert!(client.answered.load(Ordering::SeqCst) > 300);
    let after = exited.saturating_duration_since(stopped);
    assert!(
        after < Duration::from_secs(6),
        "traffic stopped {after:?} before drainit's exit: the window at 100 req/s is about 1 s, the ceiling 13 s away\n{}",
        proc.report()
    );
    let end = delay_end(&proc);
    assert!(end.starts_with("quiet for"), "{end}\n{}", proc.report());
    // app_server.py exits 0 on SIGTERM, once its requests are done.
    assert_eq!(pid1_support::code(proc.wait(SOON)), 0, "{}", proc.report());
}

#[test]
fn auto_runs_to_the_ceiling_while_the_traffic_never_stops() {
    let dir = scratch("auto-never-stops");
    let (mut proc, _admin, app) = start(&dir, &[], &AUTO_4S_CEILING);
    let mut client = Client::start(app, 100.0, Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(2));
    let drain = Instant::now();
    proc.signal(libc::SIGTERM);
    proc.wait(Duration::from_secs(30));
    let took = drain.elapsed();
    client.stop();
    assert!(
        took >= Duration::from_secs(4),
        "the stop signal came {took:?} into the drain, before the 4 s ceiling, while traffic still flowed\n{}",
        proc.report()
    );
    let end = delay_end(&proc);
    assert!(end.starts_with("ceiling after"), "{end}\n{}", proc.report());
}

#[test]
fn auto_works_as_uid_65534() {
    let dir = scratch("auto-nobody");
    let setpriv: Vec<String> = [
        "setpriv",
        "--reuid",
        "65534",
        "--regid",
        "65534",
        "--clear-groups",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (mut proc, _admin, app) = start(&dir, &setpriv, &AUTO);
    let (stopped, exited, client) =
        drain_with_traffic(&mut proc, app, 100.0, Duration::from_secs(2));
    assert_eq!(client.failed.load(Ordering::SeqCst), 0, "{}", proc.report());
    assert!(
        exited.saturating_duration_since(stopped) < Duration::from_secs(6),
        "{}",
        proc.report()
    );
    let end = delay_end(&proc);
    assert!(end.starts_with("quiet for"), "{end}\n{}", proc.report());
}

#[test]
fn without_sock_diag_auto_waits_for_the_ceiling_and_says_why() {
    let dir = scratch("auto-denied");
    let deny: Vec<String> = vec![arg(&fixture("observe")), "deny-netlink".into()];
    let (mut proc, _admin, app) = start(&dir, &deny, &AUTO_4S_CEILING);
    let mut client = Client::start(app, 100.0, Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(2));
    client.stop();
    let drain = Instant::now();
    proc.signal(libc::SIGTERM);
    proc.wait(Duration::from_secs(30));
    let took = drain.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "without evidence auto must wait for the ceiling, it took {took:?}\n{}",
        proc.report()
    );
    let stderr = proc.stderr();
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("cannot observe the app's traffic"))
        .count();
    assert_eq!(warnings, 1, "one warning saying why\n{}", proc.report());
    assert!(
        delay_end(&proc).starts_with("ceiling after"),
        "{}",
        proc.report()
    );
}

#[test]
fn a_sidecar_in_auto_mode_answers_the_hook_once_the_traffic_stopped() {
    let dir = scratch("auto-sidecar");
    let app_socket = AppSocket::bind();
    let app_port = app_socket.port;
    let app = app_socket.addr();
    let app_cmd = app_command(None);
    let (program, rest) = app_cmd.split_first().expect("program");
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let app_proc = Proc::start_with_socket(&dir, program, &rest, &[], app_socket);
    assert!(
        wait_for(SOON, || TcpStream::connect(app).is_ok()),
        "{}",
        app_proc.report()
    );
    let listen = common::ANY_PORT;
    let check = format!("tcp://{app}");
    let ports = app_port.to_string();
    let sidecar_dir = scratch("auto-sidecar-s");
    let mut sidecar = Proc::drainit(
        &sidecar_dir,
        &[
            "--admin-listen",
            listen,
            "--ready-check",
            &check,
            "--ready-check-interval",
            "200ms",
            "--propagation-delay",
            "auto",
            "--propagation-delay-max",
            "15s",
            "--traffic-ports",
            &ports,
            "sidecar",
        ],
        &[],
    );
    let admin = sidecar.admin_addr();
    assert!(
        wait_status(admin, "/ready", 200, SOON),
        "{}",
        sidecar.report()
    );
    let mut client = Client::start(app, 100.0, Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(3));
    let hook = std::thread::spawn(move || {
        let answer = common::http(admin, "GET", "/prestop", &[], Duration::from_secs(30));
        (answer, Instant::now())
    });
    std::thread::sleep(Duration::from_secs(2));
    let stopped = client.stop();
    let (answer, answered) = hook.join().expect("hook thread");
    assert_eq!(
        answer.map(|(code, _)| code),
        Some(200),
        "{}",
        sidecar.report()
    );
    let after = answered.saturating_duration_since(stopped);
    assert!(
        answered > stopped && after < Duration::from_secs(6),
        "the hook must answer after the traffic stopped, within the window ({after:?})\n{}",
        sidecar.report()
    );
    assert_eq!(client.failed.load(Ordering::SeqCst), 0);
    // The kubelet stops the app when the hook returns; the sidecar follows.
    app_proc.signal(libc::SIGTERM);
    sidecar.signal(libc::SIGTERM);
    assert_eq!(sidecar.wait(SOON).code(), Some(0), "{}", sidecar.report());
    let status_line = sidecar
        .stderr()
        .lines()
        .any(|l| l.contains("delay ended: quiet for"));
    assert!(status_line, "{}", sidecar.report());
}

#[test]
fn drainits_own_ready_checks_are_never_the_apps_traffic() {
    // No client at all: the only connections to the app's port are the
    // ready-check's, every 10 ms.
    let dir = scratch("auto-own-checks");
    let app_port = free_port();
    let check = format!("http://127.0.0.1:{app_port}/healthz");
    let ports = app_port.to_string();
    let mut args: Vec<String> = [
        "--admin-listen",
        common::ANY_PORT,
        "--ready-check",
        &check,
        "--ready-check-interval",
        "10ms",
        "--traffic-ports",
        &ports,
        "--propagation-delay",
        "auto",
        "--propagation-delay-max",
        "2s",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(app_command(Some(app_port)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut proc = Proc::drainit(&dir, &args, &[]);
    let admin = proc.admin_addr();
    assert!(wait_status(admin, "/ready", 200, SOON), "{}", proc.report());
    // Long enough for hundreds of checks before and during the drain.
    std::thread::sleep(Duration::from_secs(3));
    proc.signal(libc::SIGTERM);
    proc.wait(SOON);
    let line = proc
        .stderr()
        .lines()
        .find(|l| l.contains("drain traffic:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("last new connection none, last inbound byte none")
            && line.contains("no traffic in the"),
        "the ready-check's own connections were counted: {line}\n{}",
        proc.report()
    );
}

/// The rate before the drain in the delay's report ("from R arrivals/s").
fn rate_before(proc: &Proc) -> Option<f64> {
    let end = delay_end(proc);
    let (_, rest) = end.split_once(" from ")?;
    rest.split_once(" arrivals/s")?.0.parse().ok()
}

#[test]
fn sockets_a_previous_server_left_on_the_port_are_no_arrivals() {
    // The previous server on the app's port (a restarted container): 3000
    // connections it closed first, left in TIME_WAIT there for a minute.
    let app_port = free_port();
    let leftovers = 3000;
    {
        let listener = std::net::TcpListener::bind(("127.0.0.1", app_port)).expect("bind");
        for _ in 0..leftovers {
            let client = TcpStream::connect(("127.0.0.1", app_port)).expect("connect");
            let (server, _) = listener.accept().expect("accept");
            drop(server);
            drop(client);
        }
    }
    let time_wait = || {
        let out = std::process::Command::new("ss")
            .args([
                "-Htn",
                "state",
                "time-wait",
                "sport",
                "=",
                &format!(":{app_port}"),
            ])
            .output()
            .expect("ss (iproute2) runs");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert!(
        wait_for(SOON, || time_wait() >= leftovers * 9 / 10),
        "only {} TIME_WAIT sockets on the port",
        time_wait()
    );
    // The new app listens 2 s after its start: drainit watches the port
    // from then on and meets the leftovers at once.
    let dir = scratch("auto-port-reuse");
    let (mut proc, _admin, app) = start_on(&dir, &[], &AUTO, app_port, &["--slow-start", "2"]);
    // 5 requests/s really sent, for 5 s, then the drain; the client stops
    // at once.
    let mut client = Client::start(app, 5.0, Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(5));
    proc.signal(libc::SIGTERM);
    client.stop();
    proc.wait(Duration::from_secs(30));
    let answered = client.answered.load(Ordering::SeqCst);
    assert!(
        answered >= 15,
        "only {answered} requests answered\n{}",
        proc.report()
    );
    let rate = rate_before(&proc);
    assert!(
        rate.is_some_and(|r| r > 1.0 && r < 15.0),
        "5 requests/s were sent, {} TIME_WAIT sockets left on the port: the rate before the drain must be the 5/s, got {rate:?}\n{}",
        leftovers,
        proc.report()
    );
}

#[test]
fn an_app_that_dies_during_the_delay_still_gets_its_traffic_report() {
    let dir = scratch("report-app-dies");
    // auto samples from the app's start: the drain has its traffic from
    // the first moment, however soon the app dies.
    let (mut proc, admin, app) = start(&dir, &[], &AUTO);
    let mut client = Client::start(app, 20.0, Duration::from_secs(40));
    assert!(
        wait_for(SOON, || client.answered.load(Ordering::SeqCst) >= 5),
        "the app answered nothing\n{}",
        proc.report()
    );
    proc.signal(libc::SIGTERM);
    assert!(
        wait_for(SOON, || common::get(admin, "/ready")
            .is_some_and(|(code, _)| code == 503)),
        "the drain did not start\n{}",
        proc.report()
    );
    // The app dies on its own while the traffic goes on: long before the
    // delay could end.
    let children = common::children_of(proc.pid());
    assert!(!children.is_empty(), "no app process\n{}", proc.report());
    for child in children {
        common::kill(child, libc::SIGKILL);
    }
    proc.wait(SOON);
    client.stop();
    let stderr = proc.stderr();
    let report = stderr.lines().find(|line| line.contains("drain traffic: "));
    assert!(
        report.is_some_and(|line| line.contains("last inbound byte")),
        "no traffic report for a drain whose app died during the delay\n{}",
        proc.report()
    );
}

#[test]
fn without_a_readable_proc_auto_never_watches_drainits_own_admin_port() {
    // A network namespace of its own (drainit's and the app's listeners
    // are all there is), /proc hidden under a tmpfs, and a prober like the
    // kubelet's on drainit's admin port, 20 times a second (the kubelet
    // sends `Connection: close`: drainit closes first, and its side stays
    // in TIME_WAIT on the admin port). The app gets no traffic at all.
    // The prober stops when drainit is gone (`$$` is the shell's pid,
    // which drainit keeps through exec) and after 600 probes at most: it
    // is not in drainit's process group, and before it ran for ever after
    // each run of the suite.
    let dir = scratch("auto-no-proc");
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/app_server.py");
    let inner = format!(
        r#"ip link set lo up
mount -t tmpfs none /proc
( n=0; while [ $n -lt 600 ] && kill -0 $$ 2>/dev/null; do curl -s -o /dev/null -H 'Connection: close' --max-time 1 http://127.0.0.1:9901/ready; sleep 0.05; n=$((n+1)); done ) &
exec "$0" --admin-listen 127.0.0.1:9901 --propagation-delay auto --propagation-delay-max 4s \
    --grace-period 30s -- python3 {} --port 8080 --work-ms 0"#,
        arg(&app)
    );
    let mut proc = Proc::start(
        &dir,
        "unshare",
        &["--mount", "--net", "sh", "-c", &inner, common::drainit()],
        &[],
    );
    assert!(
        proc.wait_stderr("listening on", SOON),
        "the app did not start\n{}",
        proc.report()
    );
    // Long enough for the rate before the drain (1 s samples) to see the
    // prober, were its port watched.
    std::thread::sleep(Duration::from_secs(4));
    proc.signal(libc::SIGTERM);
    proc.wait(Duration::from_secs(30));
    let end = delay_end(&proc);
    assert!(
        end.contains("no traffic"),
        "the app had no traffic; the probes on drainit's own admin port were counted: {end}\n{}",
        proc.report()
    );
}
