//! The admin server's connections through the real binary (issue 9,
//! defects 12, 13, 14): probes are answered above the connection cap, the
//! cap fits the file limit, and no client can hold up drainit's exit.

use crate::common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{get, http, scratch, wait_for, wait_status, Proc};

const SOON: Duration = Duration::from_secs(10);

/// Raises this process's soft file limit to its hard limit: the tests
/// below hold over a thousand sockets.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    assert!(
        limit.rlim_cur >= 2400,
        "the tests need 2 400 open files, the hard limit is {}",
        limit.rlim_cur
    );
}

/// Opens `count` connections that never send a byte.
fn idle_connections(admin: SocketAddr, count: usize) -> Vec<TcpStream> {
    let idle: Vec<TcpStream> = (0..count)
        .filter_map(|_| TcpStream::connect_timeout(&admin, SOON).ok())
        .collect();
    assert_eq!(idle.len(), count, "could not open {count} connections");
    idle
}

/// `count` probes on `path`, each on a fresh connection; the failures.
fn failed_probes(admin: SocketAddr, path: &str, count: usize) -> Vec<Option<u16>> {
    (0..count)
        .map(|_| get(admin, path).map(|(code, _)| code))
        .filter(|code| *code != Some(200))
        .collect()
}

#[test]
fn probes_are_answered_with_more_idle_connections_than_the_cap() {
    raise_file_limit();
    let dir = scratch("above-cap");
    let listen = common::ANY_PORT;
    let proc = Proc::drainit(&dir, &["--admin-listen", listen, "--", "sleep", "300"], &[]);
    let admin = proc.admin_addr();
    assert!(wait_status(admin, "/ready", 200, SOON), "{}", proc.report());
    // The default cap is 1 024.
    let idle = idle_connections(admin, 1100);
    let failed_ready = failed_probes(admin, "/ready", 50);
    let failed_live = failed_probes(admin, "/live", 50);
    assert!(
        failed_ready.is_empty() && failed_live.is_empty(),
        "with 1 100 idle connections {} of 50 /ready and {} of 50 /live probes failed\n{}",
        failed_ready.len(),
        failed_live.len(),
        proc.report()
    );
    drop(idle);
}

#[test]
fn the_cap_fits_the_file_limit_and_accept_errors_do_not_flood_the_log() {
    raise_file_limit();
    let dir = scratch("file-limit");
    let listen = common::ANY_PORT;
    // A hard limit of 64 files: drainit cannot raise its soft limit above it.
    let drainit = common::drainit();
    let proc = Proc::start(
        &dir,
        "prlimit",
        &[
            "--nofile=64:64",
            drainit,
            "--admin-listen",
            listen,
            "--",
            "sleep",
            "300",
        ],
        &[],
    );
    let admin = proc.admin_addr();
    assert!(wait_status(admin, "/ready", 200, SOON), "{}", proc.report());
    let idle = idle_connections(admin, 200);
    // Long enough for today's 50 ms retry to have logged many times.
    let watched = Instant::now();
    let mut failed = Vec::new();
    while watched.elapsed() < Duration::from_secs(1) {
        failed.extend(failed_probes(admin, "/ready", 1));
    }
    assert!(
        failed.is_empty(),
        "{} /ready probes failed at the file limit\n{}",
        failed.len(),
        proc.report()
    );
    let stderr = proc.stderr();
    let lowered: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("--admin-max-connections"))
        .collect();
    assert_eq!(
        lowered.len(),
        1,
        "the cap is lowered, said once\n{}",
        proc.report()
    );
    assert!(lowered[0].contains("1024"), "{}", proc.report());
    let accept_warnings = stderr.lines().filter(|l| l.contains("accept")).count();
    assert!(
        accept_warnings <= 1,
        "{accept_warnings} accept warnings: at most one per episode\n{}",
        proc.report()
    );
    drop(idle);
}

#[test]
fn clients_cannot_hold_up_the_exit_but_prestop_gets_its_answer() {
    let dir = scratch("exit-clients");
    let listen = common::ANY_PORT;
    let mut proc = Proc::drainit(
        &dir,
        &[
            "--admin-listen",
            listen,
            "--propagation-delay",
            "0s",
            "--kill-margin",
            "2s",
            "--",
            "sleep",
            "300",
        ],
        &[],
    );
    let admin = proc.admin_addr();
    assert!(wait_status(admin, "/ready", 200, SOON), "{}", proc.report());
    // A slowloris client, one header byte at a time.
    let mut slow = TcpStream::connect(admin).expect("connect");
    slow.write_all(b"GET /ready HTTP/1.1\r\nX-Slow: a")
        .expect("write");
    let slowloris = std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) && slow.write_all(b"a").is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    // A pipelined burst whose answers are never read.
    let mut burst = TcpStream::connect(admin).expect("connect");
    burst
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
    let _ = burst.write_all(request.as_bytes());
    // The drain: /prestop from loopback; with no delay the app gets its
    // SIGTERM at once and dies of it.
    let started = Instant::now();
    let prestop =
        std::thread::spawn(move || http(admin, "POST", "/prestop", &[], Duration::from_secs(10)));
    proc.wait(SOON);
    let exit_took = started.elapsed();
    let answer = prestop.join().expect("prestop thread");
    assert_eq!(
        answer.as_ref().map(|(code, body)| (*code, body.trim())),
        Some((200, "app exited")),
        "the in-flight /prestop gets its answer\n{}",
        proc.report()
    );
    assert!(
        exit_took < Duration::from_millis(1500),
        "drainit took {exit_took:?} from /prestop to exit with a slowloris and an unread burst open\n{}",
        proc.report()
    );
    assert!(
        wait_for(SOON, || slowloris.is_finished()),
        "the slowloris connection outlived drainit"
    );
    drop(burst);
}
