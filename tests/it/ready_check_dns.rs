//! A `--ready-check` host name whose DNS server never answers must not
//! hold up drainit's exit (issue 9, defect 15). drainit runs in a mount
//! namespace of its own with a bind-mounted /etc/resolv.conf that points
//! at a loopback UDP socket this test holds and never answers.

use crate::common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{scratch, wait_for, Proc};

/// Binds the silent name server on port 53 (resolv.conf takes no port) of
/// a loopback address of its own, so no real resolver on 127.0.0.1:53 is
/// in the way: the first of 127.77.N.53 that is free (another run of this
/// test, in another checkout on the same machine, may hold one).
fn silent_name_server() -> UdpSocket {
    let first = std::process::id() % 256;
    (0..256)
        .map(|n| (first + n) % 256)
        .find_map(|n| UdpSocket::bind(format!("127.77.{n}.53:53")).ok())
        .expect("bind the silent name server: every 127.77.N.53:53 is taken")
}

#[test]
fn a_hung_dns_lookup_does_not_delay_the_exit() {
    let dir = scratch("dns-hang");
    let silent = silent_name_server();
    let name_server = silent.local_addr().expect("name server address").ip();
    silent
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let resolv = dir.join("resolv.conf");
    std::fs::write(
        &resolv,
        format!("nameserver {name_server}\noptions timeout:30 attempts:3\n"),
    )
    .expect("write resolv.conf");
    let script = "mount --bind \"$1\" /etc/resolv.conf && exec \"$0\" --admin-listen off \
                  --propagation-delay 0s --ready-check http://app.drainit-test.example:8080/ \
                  --ready-check-interval 100ms --ready-check-timeout 300ms -- sleep 300";
    let resolv_arg = resolv.to_str().expect("utf-8 path");
    let mut proc = Proc::start(
        &dir,
        "unshare",
        &["--mount", "sh", "-c", script, common::drainit(), resolv_arg],
        &[],
    );
    // The lookup is in flight once its query reaches the silent server.
    let mut buffer = [0u8; 512];
    let mut first = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            first = silent.recv_from(&mut buffer).ok().map(|(_, from)| from);
            first.is_some()
        }),
        "drainit never asked the name server\n{}",
        proc.report()
    );
    // Several checks (100 ms apart, 300 ms timeout) run meanwhile: they
    // must wait for the one lookup, not start one each (glibc sends every
    // lookup's queries from a socket of its own).
    let mut lookups = std::collections::BTreeSet::from([first.expect("a query")]);
    let asked = Instant::now();
    while asked.elapsed() < Duration::from_millis(1500) {
        if let Ok((_, from)) = silent.recv_from(&mut buffer) {
            lookups.insert(from);
        }
    }
    assert_eq!(
        lookups.len(),
        1,
        "one lookup at a time, not one per check: queries came from {lookups:?}\n{}",
        proc.report()
    );
    assert!(proc.running(), "{}", proc.report());
    proc.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let status = proc.wait(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(143), "{}", proc.report());
    assert!(
        took < Duration::from_secs(2),
        "drainit took {took:?} to exit after SIGTERM with a DNS lookup hanging\n{}",
        proc.report()
    );
}
