//! Who may start a drain through `/prestop`, through the real binary
//! (issue 9, defects 16, 19, 20): loopback only by default, a caller from
//! another address refused (in a network namespace the test makes, so the
//! non-loopback traffic never leaves it), HEAD never drains, and IPv6-form
//! allow-lists match IPv4 clients on a `[::]` listener.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::{get, http, scratch, wait_for, wait_status, Proc};

const SOON: Duration = Duration::from_secs(10);

/// drainit in front of a long sleep, admin on `listen`.
fn start(name: &str, listen: &str, flags: &[&str]) -> Proc {
    Proc::drainit_in_front_of_sleep(&scratch(name), listen, flags)
}

/// Sends one raw request and returns the whole answer, head included.
fn raw(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, SOON).expect("connect");
    stream.set_read_timeout(Some(SOON)).expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Starts a drain with `POST /prestop` in the background (its answer waits
/// for the app) and reports whether `/ready` turned 503.
fn prestop_drains(proc: &Proc, admin: SocketAddr) -> bool {
    std::thread::spawn(move || http(admin, "POST", "/prestop", &[], Duration::from_secs(2)));
    let drained = wait_status(admin, "/ready", 503, SOON);
    drained && proc.stderr().contains("drain started trigger=prestop")
}

#[test]
fn head_prestop_is_not_allowed_and_starts_nothing() {
    let listen = common::ANY_PORT;
    let proc = start("head", listen, &[]);
    let admin = proc.admin_addr();
    assert!(wait_status(admin, "/ready", 200, SOON), "{}", proc.report());
    let answer = raw(
        admin,
        "HEAD /prestop HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("allow: get, post\r\n"),
        "{answer}"
    );
    assert_eq!(
        get(admin, "/ready").map(|(c, _)| c),
        Some(200),
        "HEAD /prestop must not drain\n{}",
        proc.report()
    );
    assert!(
        !proc.stderr().contains("drain started"),
        "{}",
        proc.report()
    );
}

#[test]
fn ipv6_form_allow_lists_match_ipv4_clients_on_a_dual_stack_listener() {
    for cidr in ["::ffff:0:0/96", "::/0", "::ffff:127.0.0.1/128"] {
        let proc = start("dual-stack", "[::]:0", &["--prestop-allow-from", cidr]);
        let admin = proc.admin_addr();
        assert!(wait_status(admin, "/ready", 200, SOON), "{}", proc.report());
        assert!(
            prestop_drains(&proc, admin),
            "--prestop-allow-from {cidr} must let 127.0.0.1 drain\n{}",
            proc.report()
        );
    }
}

#[test]
fn by_default_loopback_callers_may_drain() {
    let listen = common::ANY_PORT;
    let proc = start("default-loopback", listen, &[]);
    let admin = proc.admin_addr();
    assert!(wait_status(admin, "/ready", 200, SOON), "{}", proc.report());
    assert!(prestop_drains(&proc, admin), "{}", proc.report());
}

/// The IPv4 address the test gives the namespace's loopback device: a
/// caller connecting to it from inside has it as its (non-loopback) source.
const NAMESPACE_ADDRESS: &str = "10.200.0.1";

/// Runs `work` on a thread that joined the network namespace of `pid`.
fn in_network_namespace<T: Send>(pid: i32, work: impl FnOnce() -> T + Send) -> T {
    let namespace = std::fs::File::open(format!("/proc/{pid}/ns/net")).expect("open netns");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns(2) takes a file descriptor we keep open and a
                // flag; a network namespace may be joined by one thread.
                let joined = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(joined, 0, "setns: {}", std::io::Error::last_os_error());
                work()
            })
            .join()
            .expect("namespace thread")
    })
}

#[test]
fn by_default_other_callers_are_refused_and_told_how_to_allow_the_kubelet() {
    let dir = scratch("default-deny");
    let script = format!(
        "ip link set lo up && ip addr add {NAMESPACE_ADDRESS}/32 dev lo && exec \"$0\" \
         --admin-listen 0.0.0.0:9095 --propagation-delay 30s --grace-period 60s -- sleep 300"
    );
    let mut proc = Proc::start(
        &dir,
        "unshare",
        &["--net", "sh", "-c", &script, common::drainit()],
        &[],
    );
    // unshare and sh exec: the process is drainit itself once it runs.
    assert!(
        wait_for(SOON, || std::fs::read_link(format!(
            "/proc/{}/exe",
            proc.pid()
        ))
        .is_ok_and(|exe| exe.ends_with("drainit"))),
        "{}",
        proc.report()
    );
    let outside: SocketAddr = format!("{NAMESPACE_ADDRESS}:9095").parse().expect("addr");
    let inside: SocketAddr = "127.0.0.1:9095".parse().expect("addr");
    let (refused, still_ready, drained) = in_network_namespace(proc.pid(), || {
        assert!(wait_status(outside, "/ready", 200, SOON), "never ready");
        let refused: Vec<Option<u16>> = (0..3)
            .map(|_| http(outside, "POST", "/prestop", &[], SOON).map(|(c, _)| c))
            .collect();
        let still_ready = get(outside, "/ready").map(|(c, _)| c);
        std::thread::spawn(move || http(inside, "POST", "/prestop", &[], Duration::from_secs(2)));
        (
            refused,
            still_ready,
            wait_status(outside, "/ready", 503, SOON),
        )
    });
    assert_eq!(refused, [Some(403); 3], "{}", proc.report());
    assert_eq!(
        still_ready,
        Some(200),
        "a refused /prestop must start nothing"
    );
    assert!(drained, "loopback must still drain\n{}", proc.report());
    let stderr = proc.stderr();
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("refused /prestop"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning for three refusals (rate-limited)\n{}",
        proc.report()
    );
    for needle in [
        NAMESPACE_ADDRESS,
        "--prestop-allow-from",
        "status.hostIP",
        "--prestop-token",
    ] {
        assert!(warnings[0].contains(needle), "{needle}\n{}", proc.report());
    }
    assert!(proc.running(), "{}", proc.report());
}
