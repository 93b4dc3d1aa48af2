//! The admin server through the real binary: routes, /prestop
//! restrictions, and abuse that must not stop /ready and /live.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{get, http, scratch, wait_for, wait_status, Proc};

/// drainit in front of a long sleep, admin on a loopback port it bound.
fn start(name: &str, flags: &[&str]) -> (Proc, SocketAddr) {
    let dir = scratch(name);
    let proc = Proc::drainit_in_front_of_sleep(&dir, common::ANY_PORT, flags);
    let admin = proc.admin_addr();
    assert!(
        wait_status(admin, "/ready", 200, Duration::from_secs(10)),
        "never ready\n{}",
        proc.report()
    );
    (proc, admin)
}

#[test]
fn routes_methods_and_bodies() {
    let (_proc, admin) = start("routes", &[]);
    let table: &[(&str, &str, u16, &str)] = &[
        ("GET", "/ready", 200, "running"),
        ("HEAD", "/ready", 200, ""),
        ("GET", "/live", 200, "alive"),
        ("GET", "/status", 200, "\"phase\":\"running\""),
        ("GET", "/metrics", 200, "drainit_phase{phase=\"running\"} 1"),
        ("GET", "/nope", 404, "not found"),
        ("POST", "/ready", 405, "method not allowed"),
        ("DELETE", "/prestop", 405, "method not allowed"),
        ("PUT", "/metrics", 405, ""),
    ];
    for (method, path, code, needle) in table {
        let (got, body) = http(admin, method, path, &[], Duration::from_secs(5)).expect("answer");
        assert_eq!(got, *code, "{method} {path}: {body}");
        assert!(body.contains(needle), "{method} {path}: {body}");
    }
    // Nothing above may have started a drain.
    assert_eq!(get(admin, "/ready").map(|(c, _)| c), Some(200));
}

#[test]
fn prestop_from_outside_the_allowed_networks_is_refused() {
    let (proc, admin) = start(
        "allow-from",
        &["--prestop-allow-from", "10.0.0.0/8,192.168.1.1"],
    );
    let (code, body) =
        http(admin, "POST", "/prestop", &[], Duration::from_secs(5)).expect("answer");
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        get(admin, "/ready").map(|(c, _)| c),
        Some(200),
        "a refused /prestop must start nothing"
    );
    assert!(
        !proc.stderr().contains("drain started"),
        "{}",
        proc.report()
    );
    // drainit's logging thread writes the line soon after, not before
    // the answer: poll.
    assert!(
        proc.wait_stderr("refused /prestop", Duration::from_secs(5)),
        "{}",
        proc.report()
    );
}

#[test]
fn prestop_needs_the_token() {
    let flags = [
        "--prestop-allow-from",
        "127.0.0.0/8",
        "--prestop-token",
        "s3cret",
    ];
    let (proc, admin) = start("token", &flags);
    let short = Duration::from_secs(5);
    for headers in [
        vec![],
        vec![("X-Drainit-Token", "wrong")],
        vec![("X-Drainit-Token", "s3cre")],
    ] {
        let (code, _) = http(admin, "GET", "/prestop", &headers, short).expect("answer");
        assert_eq!(code, 403, "{headers:?}");
    }
    assert_eq!(
        get(admin, "/ready").map(|(c, _)| c),
        Some(200),
        "a refused /prestop must start nothing"
    );
    // The right token starts the drain (the answer itself waits for the app).
    let right = std::thread::spawn(move || {
        http(
            admin,
            "POST",
            "/prestop",
            &[("X-Drainit-Token", "s3cret")],
            Duration::from_secs(2),
        )
    });
    assert!(
        wait_status(admin, "/ready", 503, Duration::from_secs(5)),
        "{}",
        proc.report()
    );
    let _ = right.join();
    assert!(
        proc.wait_stderr("drain started trigger=prestop", Duration::from_secs(5)),
        "{}",
        proc.report()
    );
}

/// Times one `GET /ready` on a fresh connection.
fn timed_ready(admin: SocketAddr) -> (Option<u16>, Duration) {
    let start = Instant::now();
    let code = get(admin, "/ready").map(|(c, _)| c);
    (code, start.elapsed())
}

#[test]
fn abuse_does_not_stop_ready_and_live() {
    let (mut proc, admin) = start("abuse", &[]);
    // Junk bytes: answered with 400 or closed, never a hang.
    let mut junk = TcpStream::connect(admin).expect("connect");
    junk.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    junk.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    let _ = junk.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    // An oversized head: refused (431) or cut off, with bounded memory.
    let mut big = TcpStream::connect(admin).expect("connect");
    big.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let header = format!(
        "GET /ready HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = big.write_all(header.as_bytes());
    let mut answer = Vec::new();
    let _ = big.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.starts_with("HTTP/1.1 200"),
        "an oversized head must not be served: {answer}"
    );

    // A slowloris client, trickling a header byte by byte.
    let mut slow = TcpStream::connect(admin).expect("connect");
    slow.write_all(b"GET /ready HTTP/1.1\r\nX-Slow: ")
        .expect("write");
    let slow_thread = std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if slow.write_all(b"a").is_err() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    });

    // 1 000 idle connections.
    let idle: Vec<TcpStream> = (0..1000)
        .filter_map(|_| TcpStream::connect(admin).ok())
        .collect();
    assert_eq!(idle.len(), 1000, "could not open 1 000 connections");

    let mut times = Vec::new();
    for _ in 0..20 {
        let (code, took) = timed_ready(admin);
        assert_eq!(
            code,
            Some(200),
            "/ready failed under abuse\n{}",
            proc.report()
        );
        times.push(took);
    }
    assert_eq!(get(admin, "/live").map(|(c, _)| c), Some(200));
    times.sort();
    assert!(
        times[10] < Duration::from_millis(100),
        "median /ready took {:?} under abuse: {times:?}",
        times[10]
    );
    assert!(
        times[19] < Duration::from_secs(1),
        "slowest /ready took {:?}: {times:?}",
        times[19]
    );

    // The slowloris client is cut off by the header read timeout.
    let cut = slow_thread.join().expect("slowloris thread");
    assert!(cut.is_some(), "the slowloris connection was never closed");
    drop(idle);
    assert!(
        proc.running(),
        "drainit died under abuse\n{}",
        proc.report()
    );
    assert!(wait_for(Duration::from_secs(5), || get(admin, "/live").is_some()));
}
