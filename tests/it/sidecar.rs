//! `drainit sidecar` through the real binary: the app container's preStop
//! hook and the sidecar's own SIGTERM in every order the kubelet produces,
//! the native-sidecar order, a restart, and the shared-process-namespace
//! stop signal.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{get, http, scratch, wait_for, wait_status, Proc};

/// The "app container": Python's HTTP server, which dies on SIGTERM.
fn start_app(dir: &Path) -> (Proc, u16) {
    let app = Proc::start(
        dir,
        "python3",
        &["-m", "http.server", "0", "--bind", "127.0.0.1"],
        &[],
    );
    let port = common::listening_port(app.pid());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert!(
        wait_status(addr, "/", 200, Duration::from_secs(20)),
        "app did not start\n{}",
        app.report()
    );
    (app, port)
}

/// The sidecar container, following the app on `app_port`.
fn start_sidecar(dir: &Path, app_port: u16, flags: &[&str]) -> (Proc, SocketAddr) {
    start_sidecar_with(dir, app_port, flags, &[])
}

/// As [`start_sidecar`], with flags of the `sidecar` subcommand itself.
fn start_sidecar_with(
    dir: &Path,
    app_port: u16,
    flags: &[&str],
    sidecar_flags: &[&str],
) -> (Proc, SocketAddr) {
    let listen = common::ANY_PORT;
    let check = format!("tcp://127.0.0.1:{app_port}");
    let mut args = vec!["--admin-listen", listen, "--ready-check", check.as_str()];
    if !flags.contains(&"--ready-check-interval") {
        args.extend_from_slice(&["--ready-check-interval", "100ms"]);
    }
    args.extend_from_slice(flags);
    args.push("sidecar");
    args.extend_from_slice(sidecar_flags);
    let proc = Proc::drainit(dir, &args, &[]);
    let admin = proc.admin_addr();
    (proc, admin)
}

/// A pod: the app container and a sidecar following it, the sidecar ready.
fn start_ready_pod(name: &str, flags: &[&str]) -> (Proc, Proc, SocketAddr) {
    let (app, port) = start_app(&scratch(name));
    let (sidecar, admin) = start_sidecar(&scratch(&format!("{name}-s")), port, flags);
    assert!(
        wait_status(admin, "/ready", 200, Duration::from_secs(10)),
        "{}",
        sidecar.report()
    );
    (app, sidecar, admin)
}

fn prestop_in_background(admin: SocketAddr) -> thread::JoinHandle<Option<(u16, String, Instant)>> {
    thread::spawn(move || {
        http(admin, "GET", "/prestop", &[], Duration::from_secs(60))
            .map(|(c, b)| (c, b, Instant::now()))
    })
}

#[test]
fn classic_sidecar_hook_and_sigterm_together() {
    let (mut app, mut sidecar, admin) =
        start_ready_pod("sidecar-classic", &["--propagation-delay", "2s"]);

    // Deletion: the app container's preStop hook and the sidecar's SIGTERM
    // start at the same moment.
    let deleted = Instant::now();
    let hook = prestop_in_background(admin);
    sidecar.signal(libc::SIGTERM);
    assert!(
        wait_status(admin, "/ready", 503, Duration::from_secs(1)),
        "{}",
        sidecar.report()
    );
    assert_eq!(get(admin, "/live").map(|(c, _)| c), Some(200));

    let (code, body, answered) = hook.join().expect("hook").expect("/prestop answered");
    assert_eq!(code, 200);
    assert!(body.contains("propagation delay over"), "{body}");
    let waited = answered - deleted;
    assert!(
        waited >= Duration::from_secs(2),
        "hook returned after {waited:?}, before the delay"
    );
    assert!(
        waited < Duration::from_secs(5),
        "hook returned after {waited:?}: not prompt"
    );

    // The app still serves, so the sidecar stays up for it.
    thread::sleep(Duration::from_millis(300));
    assert!(
        sidecar.running(),
        "the sidecar left while the app still served\n{}",
        sidecar.report()
    );
    // The kubelet now sends the app SIGTERM; once it is gone the sidecar exits 0.
    app.signal(libc::SIGTERM);
    app.wait(Duration::from_secs(10));
    let status = sidecar.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", sidecar.report());
    assert!(
        sidecar.stderr().contains("app is gone"),
        "{}",
        sidecar.report()
    );
}

#[test]
fn sidecar_sigterm_first_then_hook_joins() {
    let (app, mut sidecar, admin) =
        start_ready_pod("sidecar-term-first", &["--propagation-delay", "3s"]);
    let deleted = Instant::now();
    sidecar.signal(libc::SIGTERM);
    assert!(
        sidecar.wait_stderr("drain started trigger=SIGTERM", Duration::from_secs(5)),
        "{}",
        sidecar.report()
    );
    thread::sleep(Duration::from_secs(1));
    let (_, _, answered) = prestop_in_background(admin)
        .join()
        .expect("hook")
        .expect("answered");
    let waited = answered - deleted;
    assert!(
        (Duration::from_secs(3)..Duration::from_millis(3900)).contains(&waited),
        "hook returned {waited:?} after the drain began: it must join, not restart"
    );
    app.signal(libc::SIGTERM);
    assert_eq!(
        sidecar.wait(Duration::from_secs(10)).code(),
        Some(0),
        "{}",
        sidecar.report()
    );
}

#[test]
fn native_sidecar_exits_promptly_after_the_app() {
    // Native sidecars (initContainers, restartPolicy: Always) get SIGTERM
    // only after the app has exited: no reason to wait out the delay.
    let (mut app, mut sidecar, admin) = start_ready_pod(
        "sidecar-native",
        &["--propagation-delay", "10s", "--grace-period", "30s"],
    );
    app.signal(libc::SIGTERM);
    app.wait(Duration::from_secs(10));
    assert!(
        wait_status(admin, "/ready", 503, Duration::from_secs(5)),
        "/ready must follow the app's check"
    );
    assert!(
        sidecar.running(),
        "the app going away alone must not end the sidecar\n{}",
        sidecar.report()
    );
    let signalled = Instant::now();
    sidecar.signal(libc::SIGTERM);
    let status = sidecar.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", sidecar.report());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?}, not prompt",
        signalled.elapsed()
    );
}

#[test]
fn restarted_sidecar_starts_fresh() {
    let dir = scratch("sidecar-restart");
    let (_app, port) = start_app(&dir);
    let first_dir = scratch("sidecar-restart-1");
    let (mut first, admin) = start_sidecar(
        &first_dir,
        port,
        &["--propagation-delay", "30s", "--grace-period", "60s"],
    );
    assert!(
        wait_status(admin, "/ready", 200, Duration::from_secs(10)),
        "{}",
        first.report()
    );
    let _hook = prestop_in_background(admin);
    assert!(wait_status(admin, "/ready", 503, Duration::from_secs(5)));
    // The container crashes mid-drain and is restarted on the same port.
    first.signal(libc::SIGKILL);
    first.wait(Duration::from_secs(5));
    let listen = admin.to_string();
    let check = format!("tcp://127.0.0.1:{port}");
    let second_dir = scratch("sidecar-restart-2");
    let args = [
        "--admin-listen",
        listen.as_str(),
        "--ready-check",
        check.as_str(),
        "--ready-check-interval",
        "100ms",
        "sidecar",
    ];
    let second = Proc::drainit(&second_dir, &args, &[]);
    assert!(
        wait_status(admin, "/ready", 200, Duration::from_secs(10)),
        "a restarted sidecar must not stay drained\n{}",
        second.report()
    );
    let status = get(admin, "/status").expect("/status").1;
    assert!(
        status.contains("\"phase\":\"running\"") && status.contains("\"drain\":null"),
        "{status}"
    );
}

#[test]
fn shared_process_namespace_sends_the_stop_signal_itself() {
    let dir = scratch("sidecar-pidfile");
    let (mut app, port) = start_app(&dir);
    let pid_file = dir.join("app.pid");
    std::fs::write(&pid_file, app.pid().to_string()).expect("pid file");
    let sidecar_dir = scratch("sidecar-pidfile-s");
    let pid_arg = pid_file.to_string_lossy().into_owned();
    let (mut sidecar, admin) = start_sidecar_with(
        &sidecar_dir,
        port,
        &["--propagation-delay", "1s"],
        &["--app-pid-file", &pid_arg],
    );
    assert_sidecar_stops_the_app_after_1s(&sidecar, admin, &mut app);
    assert_eq!(
        sidecar.wait(Duration::from_secs(10)).code(),
        Some(0),
        "{}",
        sidecar.report()
    );
    assert!(
        sidecar.stderr().contains("sent SIGTERM to pid"),
        "{}",
        sidecar.report()
    );
}

/// With shareProcessNamespace: once ready, a SIGTERM to the sidecar makes
/// it send the app SIGTERM itself, after the 1 s propagation delay.
fn assert_sidecar_stops_the_app_after_1s(sidecar: &Proc, admin: SocketAddr, app: &mut Proc) {
    assert!(
        wait_status(admin, "/ready", 200, Duration::from_secs(10)),
        "{}",
        sidecar.report()
    );
    let started = Instant::now();
    sidecar.signal(libc::SIGTERM);
    let status = app.wait(Duration::from_secs(10));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the app was stopped before the delay"
    );
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGTERM),
        "{}",
        sidecar.report()
    );
}

#[test]
fn sidecar_requires_a_ready_check() {
    let dir = scratch("sidecar-no-check");
    let mut proc = Proc::drainit(&dir, &["--admin-listen", "off", "sidecar"], &[]);
    assert_eq!(proc.wait(Duration::from_secs(10)).code(), Some(2));
    assert!(proc.stderr().contains("--ready-check"), "{}", proc.report());
}

#[test]
fn app_process_name_finds_the_oldest_of_that_name() {
    let dir = scratch("sidecar-app-process");
    let (_listener, port) = start_app(&dir);
    // Two processes with a unique name: the older one is the "master".
    let name = format!("drn{}", std::process::id() % 100_000);
    let program = dir.join(&name);
    std::fs::copy("/bin/sleep", &program).expect("copy sleep");
    let program = program.to_string_lossy().into_owned();
    let mut master = Proc::start(&dir, &program, &["300"], &[]);
    assert!(common::wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{}/comm", master.pid()))
            .is_ok_and(|c| c.trim_end() == name)
    }));
    thread::sleep(Duration::from_millis(20));
    let mut worker = Proc::start(&dir, &program, &["300"], &[]);
    let sidecar_dir = scratch("sidecar-app-process-s");
    let (sidecar, admin) = start_sidecar_with(
        &sidecar_dir,
        port,
        &["--propagation-delay", "1s", "--grace-period", "10s"],
        &["--app-process", &name],
    );
    assert_sidecar_stops_the_app_after_1s(&sidecar, admin, &mut master);
    assert!(
        worker.running(),
        "only the oldest process of that name gets the stop signal"
    );
    // The sidecar still runs: its logging thread may write the line a
    // moment after the app died. Poll.
    assert!(
        sidecar.wait_stderr(
            &format!("sent SIGTERM to pid {}", master.pid()),
            Duration::from_secs(5)
        ),
        "{}",
        sidecar.report()
    );
}

#[test]
fn draining_sidecar_notices_the_app_leaving_within_a_fraction_of_its_interval() {
    // A slow check interval: without hurrying, the exit could lag 5 s.
    let flags = ["--propagation-delay", "1s", "--ready-check-interval", "5s"];
    let (mut app, mut sidecar, admin) = start_ready_pod("sidecar-hurry", &flags);
    let hook = prestop_in_background(admin);
    assert_eq!(hook.join().expect("hook").map(|(c, _, _)| c), Some(200));
    app.signal(libc::SIGTERM);
    app.wait(Duration::from_secs(10));
    let gone = Instant::now();
    assert_eq!(
        sidecar.wait(Duration::from_secs(10)).code(),
        Some(0),
        "{}",
        sidecar.report()
    );
    assert!(
        gone.elapsed() < Duration::from_secs(2),
        "the sidecar took {:?} to notice the app left",
        gone.elapsed()
    );
}

#[test]
fn app_process_matches_names_longer_than_the_kernels_comm() {
    let dir = scratch("sidecar-long-name");
    let (_listener, port) = start_app(&dir);
    // 30 bytes: /proc/PID/comm keeps 15 of them.
    let name = format!("drainit-app-{:018}", std::process::id());
    let program = dir.join(&name);
    std::fs::copy("/bin/sleep", &program).expect("copy sleep");
    let program = program.to_string_lossy().into_owned();
    let mut app = Proc::start(&dir, &program, &["300"], &[]);
    assert!(common::wait_for(Duration::from_secs(5), || {
        std::fs::read_link(format!("/proc/{}/exe", app.pid()))
            .is_ok_and(|exe| exe.to_string_lossy().ends_with(&name))
    }));
    let sidecar_dir = scratch("sidecar-long-name-s");
    let (sidecar, admin) = start_sidecar_with(
        &sidecar_dir,
        port,
        &["--propagation-delay", "1s", "--grace-period", "10s"],
        &["--app-process", &name],
    );
    assert_sidecar_stops_the_app_after_1s(&sidecar, admin, &mut app);
}

#[test]
fn a_stale_app_pid_file_is_never_signalled() {
    let dir = scratch("sidecar-stale-pidfile");
    let (_listener, port) = start_app(&dir);
    // A process that started after the pid file was written cannot be the
    // one that wrote it: the app is gone and its number was reused.
    let mut stranger = Proc::start(&dir, "sleep", &["300"], &[]);
    let pid_file = dir.join("app.pid");
    std::fs::write(&pid_file, stranger.pid().to_string()).expect("pid file");
    let written_long_ago = std::time::SystemTime::now() - Duration::from_secs(600);
    std::fs::File::options()
        .write(true)
        .open(&pid_file)
        .and_then(|f| f.set_modified(written_long_ago))
        .expect("age the pid file");
    let sidecar_dir = scratch("sidecar-stale-pidfile-s");
    let pid_arg = pid_file.to_string_lossy().into_owned();
    let (mut sidecar, admin) = start_sidecar_with(
        &sidecar_dir,
        port,
        &[
            "--propagation-delay",
            "1s",
            "--grace-period",
            "3s",
            "--kill-margin",
            "1s",
        ],
        &["--app-pid-file", &pid_arg],
    );
    assert!(
        wait_status(admin, "/ready", 200, Duration::from_secs(10)),
        "{}",
        sidecar.report()
    );
    sidecar.signal(libc::SIGTERM);
    // Past the stop signal (1 s) and the deadline (2 s): the sidecar exits.
    sidecar.wait(Duration::from_secs(15));
    assert!(
        stranger.running(),
        "a stale pid file's process got a signal\n{}",
        sidecar.report()
    );
    assert!(
        sidecar.stderr().contains("stale"),
        "the sidecar must say why it did not signal\n{}",
        sidecar.report()
    );
}

/// `--app-pid-file` is read off the event loop and only as a small
/// regular file (issue 20, item 3): a FIFO (which blocks a plain read
/// for good), `/dev/zero` and a 1 GiB file (read without bound before) are
/// refused with a warning naming the file, and the drain keeps its
/// timeline: `/prestop` answers when the delay is over, `/live` answers.
/// Before the fix the stop at the delay's end read the FIFO on the event
/// loop and froze it: `/prestop` never answered.
#[test]
fn a_pid_file_that_blocks_or_never_ends_never_stalls_the_sidecar() {
    let dir = scratch("sidecar-bad-pidfile");
    let fifo = dir.join("app.pid.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    let huge = dir.join("huge.pid");
    std::fs::File::create(&huge)
        .and_then(|file| file.set_len(1 << 30))
        .expect("a sparse 1 GiB file");
    for bad in [fifo.clone(), "/dev/zero".into(), huge.clone()] {
        let (mut app, port) = start_app(&scratch("sidecar-bad-pidfile-app"));
        let shown = bad.to_string_lossy().into_owned();
        let (mut sidecar, admin) = start_sidecar_with(
            &scratch("sidecar-bad-pidfile-s"),
            port,
            &["--propagation-delay", "1s", "--grace-period", "30s"],
            &["--app-pid-file", &shown],
        );
        assert!(
            wait_status(admin, "/ready", 200, Duration::from_secs(10)),
            "{}",
            sidecar.report()
        );
        let answer = http(admin, "GET", "/prestop", &[], Duration::from_secs(10));
        assert!(
            answer
                .as_ref()
                .is_some_and(|(code, body)| *code == 200 && body.contains("delay over")),
            "{shown}: /prestop must answer once the delay is over, got {answer:?}\n{}",
            sidecar.report()
        );
        assert_eq!(
            get(admin, "/live").map(|(code, _)| code),
            Some(200),
            "{shown}\n{}",
            sidecar.report()
        );
        assert!(
            sidecar.stderr().contains(&shown),
            "{shown}: the sidecar must say why it found no app\n{}",
            sidecar.report()
        );
        app.signal(libc::SIGKILL);
        app.wait(Duration::from_secs(10));
        assert_eq!(
            sidecar.wait(Duration::from_secs(20)).code(),
            Some(0),
            "{shown}\n{}",
            sidecar.report()
        );
    }
}

/// A pid file dated at the end of time (tmpfs keeps any `touch -d`): its
/// time plus drainit's one second of slack overflows. Before the fix that
/// addition panicked and took the sidecar down at the stop signal; now the
/// app is found and stopped as with any other date (issue 20, item 1).
#[test]
fn a_pid_file_from_the_end_of_time_does_not_panic() {
    let dir = scratch("sidecar-pidfile-future");
    let (mut app, port) = start_app(&dir);
    assert!(
        Path::new("/dev/shm").is_dir(),
        "this test needs a tmpfs at /dev/shm"
    );
    let pid_file = Path::new("/dev/shm").join(format!("drainit-test-{}.pid", std::process::id()));
    std::fs::write(&pid_file, app.pid().to_string()).expect("pid file");
    let dated = std::process::Command::new("touch")
        .args(["-d", "@9223372036854775807"])
        .arg(&pid_file)
        .status()
        .expect("run touch");
    assert!(dated.success(), "touch -d failed");
    let pid_arg = pid_file.to_string_lossy().into_owned();
    let (mut sidecar, admin) = start_sidecar_with(
        &scratch("sidecar-pidfile-future-s"),
        port,
        &["--propagation-delay", "1s"],
        &["--app-pid-file", &pid_arg],
    );
    assert_sidecar_stops_the_app_after_1s(&sidecar, admin, &mut app);
    let status = sidecar.wait(Duration::from_secs(10));
    let _ = std::fs::remove_file(&pid_file);
    assert_eq!(status.code(), Some(0), "{}", sidecar.report());
    assert!(
        !sidecar.stderr().contains("panicked"),
        "{}",
        sidecar.report()
    );
}

/// `--drain-notify` in sidecar mode: the app hears of the drain at its
/// start, while it still serves, by a GET to its loopback URL (any sidecar)
/// or by a signal (only when the sidecar can find the app: shared process
/// namespace); its stop signal comes after the delay.
#[test]
fn sidecar_drain_notify_tells_the_app_at_the_drain_start() {
    for notify in ["URL", "USR1"] {
        let dir = scratch("sidecar-drain-notify");
        std::fs::write(dir.join("app.py"), common::LAME_DUCK_APP).expect("write app");
        let port = common::free_port();
        let record = dir.join("notes");
        let record_arg = record.to_string_lossy().into_owned();
        let port_arg = port.to_string();
        let mut app = Proc::start(&dir, "python3", &["app.py", &record_arg, &port_arg], &[]);
        assert!(
            wait_for(Duration::from_secs(20), || record
                .with_extension("started")
                .exists()),
            "{}",
            app.report()
        );
        let pid_file = dir.join("app.pid");
        std::fs::write(&pid_file, app.pid().to_string()).expect("pid file");
        let pid_arg = pid_file.to_string_lossy().into_owned();
        let url = format!("http://127.0.0.1:{port}/drain");
        let (flag, sidecar_flags): (&str, &[&str]) = if notify == "URL" {
            // A classic sidecar: the app is in another container.
            (url.as_str(), &[])
        } else {
            (notify, &["--app-pid-file", pid_arg.as_str()])
        };
        let (mut sidecar, admin) = start_sidecar_with(
            &scratch("sidecar-drain-notify-s"),
            port,
            &["--propagation-delay", "1s", "--drain-notify", flag],
            sidecar_flags,
        );
        assert!(
            wait_status(admin, "/ready", 200, Duration::from_secs(10)),
            "{}",
            sidecar.report()
        );
        let drained_at = common::now();
        let hook = prestop_in_background(admin);
        let hook_returned = hook.join().expect("hook thread");
        let Some((200, _, _)) = hook_returned else {
            panic!(
                "{notify}: /prestop gave {hook_returned:?}\n{}",
                sidecar.report()
            );
        };
        let hook_done = common::now();
        if notify == "URL" {
            // The kubelet stops the app container once its hook returned.
            app.signal(libc::SIGTERM);
        }
        assert_eq!(
            app.wait(Duration::from_secs(10)).code(),
            Some(0),
            "{}",
            app.report()
        );
        let (told, stopped, notes) = common::lame_duck_record(&record, notify);
        let (Some(told), Some(stopped)) = (told, stopped) else {
            panic!("{notify}: {notes}\n{}", sidecar.report());
        };
        assert!(
            told >= drained_at && told < drained_at + 0.9,
            "{notify}: told at {told}, drain at {drained_at}: {notes}\n{}",
            sidecar.report()
        );
        assert!(
            hook_done >= drained_at + 1.0 && stopped >= drained_at + 1.0 && stopped > told,
            "{notify}: {notes}\n{}",
            sidecar.report()
        );
        sidecar.signal(libc::SIGTERM);
        assert_eq!(
            sidecar.wait(Duration::from_secs(10)).code(),
            Some(0),
            "{}",
            sidecar.report()
        );
        assert!(
            sidecar.stderr().contains("drain notify"),
            "{}",
            sidecar.report()
        );
    }
}

/// A sidecar that could never deliver `--drain-notify SIGNAL` refuses to
/// start and says what would make it work, instead of warning at each drain.
#[test]
fn sidecar_refuses_a_notify_signal_it_cannot_deliver() {
    let dir = scratch("sidecar-notify-unreachable");
    let mut proc = Proc::drainit(
        &dir,
        &[
            "--admin-listen",
            "off",
            "--ready-check",
            "tcp://127.0.0.1:9",
            "--drain-notify",
            "USR1",
            "sidecar",
        ],
        &[],
    );
    assert_eq!(
        proc.wait(Duration::from_secs(10)).code(),
        Some(2),
        "{}",
        proc.report()
    );
    let stderr = proc.stderr();
    assert!(
        stderr.contains("--drain-notify SIGUSR1") && stderr.contains("--app-pid-file"),
        "{}",
        proc.report()
    );
}
