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

/// A name that stops resolving for a while (a DNS blip: here the app's
/// line leaves a bind-mounted /etc/hosts, and the name server of
/// /etc/resolv.conf refuses at once) says nothing about the app: a
/// draining sidecar must keep to its propagation delay, answer `/prestop`
/// when the delay is over, and take the app for gone only once its
/// address refuses connections (issue 20, item 2). Before the fix the
/// first failed lookup counted as "the app is gone": `/prestop` answered
/// `app exited` at once and the sidecar exited.
#[test]
fn a_dns_blip_does_not_end_a_sidecars_drain() {
    let dir = scratch("dns-blip");
    let hosts = dir.join("hosts");
    let resolvable = "127.0.0.1 app.drainit-test.example\n";
    std::fs::write(&hosts, resolvable).expect("write hosts");
    let resolv = dir.join("resolv.conf");
    // Nothing listens there: every query is refused at once.
    std::fs::write(
        &resolv,
        "nameserver 127.77.0.54\noptions timeout:1 attempts:1\n",
    )
    .expect("write resolv.conf");

    let mut app = Proc::start(
        &scratch("dns-blip-app"),
        "python3",
        &["-m", "http.server", "0", "--bind", "127.0.0.1"],
        &[],
    );
    let app_port = common::listening_port(app.pid());
    let script = "mount --bind \"$1\" /etc/hosts && mount --bind \"$2\" /etc/resolv.conf && \
                  shift 2 && exec \"$@\"";
    let check = format!("http://app.drainit-test.example:{app_port}/");
    let proc = Proc::start(
        &dir,
        "unshare",
        &[
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
            hosts.to_str().expect("utf-8 path"),
            resolv.to_str().expect("utf-8 path"),
            common::drainit(),
            "--admin-listen",
            common::ANY_PORT,
            "--ready-check",
            &check,
            "--ready-check-interval",
            "100ms",
            "--propagation-delay",
            "3s",
            "--grace-period",
            "30s",
            "sidecar",
        ],
        &[],
    );
    let mut proc = proc;
    let admin = proc.admin_addr();
    assert!(
        common::wait_status(admin, "/ready", 200, Duration::from_secs(20)),
        "{}\n{}",
        proc.report(),
        app.report()
    );
    // The blip: the name no longer resolves (rewritten in place, so the
    // bind mount sees it).
    std::fs::write(&hosts, "").expect("blank hosts");
    let hook = std::thread::spawn(move || {
        let answer = common::http(admin, "GET", "/prestop", &[], Duration::from_secs(30));
        (answer, Instant::now())
    });
    let asked = Instant::now();
    let (answer, answered) = hook.join().expect("the hook thread");
    let took = answered.duration_since(asked);
    let (code, body) = answer.unwrap_or_else(|| panic!("no /prestop answer\n{}", proc.report()));
    assert_eq!(code, 200, "{body}\n{}", proc.report());
    assert!(
        body.contains("propagation delay over") && took >= Duration::from_millis(2_900),
        "a failed lookup ended the drain: /prestop answered {body:?} after {took:?}\n{}",
        proc.report()
    );
    assert!(
        proc.running(),
        "the sidecar left while the app still runs\n{}",
        proc.report()
    );
    // The name resolves again, and the app goes: now the sidecar follows.
    std::fs::write(&hosts, resolvable).expect("restore hosts");
    app.signal(libc::SIGKILL);
    app.wait(Duration::from_secs(10));
    let status = proc.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{}", proc.report());
    assert!(proc.stderr().contains("app is gone"), "{}", proc.report());
}
