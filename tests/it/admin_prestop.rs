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
    // drainit's log lines are written by a thread of their own: wait for it.
    drained
        && wait_for(SOON, || {
            proc.stderr().contains("drain started trigger=prestop")
        })
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
    wait_for(SOON, || proc.stderr().contains("refused /prestop"));
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

/// A browser cannot drain the pod over a loopback admin port (issue 20,
/// item 5): a foreign `Origin`, `Sec-Fetch-Site: cross-site`/`same-site`
/// or (DNS rebinding) a `Host` that names another site gets 403 and
/// starts nothing; the kubelet's form (an IP literal `Host`, none of the
/// browser headers) and a same-origin request still work. Before the fix
/// the first of these requests drained the pod.
#[test]
fn cross_site_requests_are_refused_and_the_kubelets_are_not() {
    let proc = start("cross-site", common::ANY_PORT, &[]);
    let admin = proc.admin_addr();
    assert!(wait_status(admin, "/ready", 200, SOON), "{}", proc.report());
    let own_host = format!("Host: {admin}\r\n");
    for (path, headers) in [
        (
            "/prestop",
            format!("{own_host}Origin: http://evil.example\r\n"),
        ),
        ("/prestop", format!("{own_host}Origin: null\r\n")),
        (
            "/prestop",
            format!("{own_host}Sec-Fetch-Site: cross-site\r\n"),
        ),
        (
            "/prestop",
            format!("{own_host}Sec-Fetch-Site: same-site\r\n"),
        ),
        (
            "/prestop",
            format!("Host: evil.example:{}\r\n", admin.port()),
        ),
        (
            "/status",
            format!("{own_host}Origin: https://evil.example\r\n"),
        ),
    ] {
        for method in ["GET", "POST"] {
            let answer = raw(
                admin,
                &format!(
                    "{method} {path} HTTP/1.1\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
                ),
            );
            assert!(
                answer.starts_with("HTTP/1.1 403"),
                "{method} {path} with {headers:?} must be refused: {answer}\n{}",
                proc.report()
            );
        }
    }
    assert_eq!(
        get(admin, "/ready").map(|(code, _)| code),
        Some(200),
        "a refused request must start no drain\n{}",
        proc.report()
    );
    // drainit's log lines are written by a thread of their own: wait for it.
    assert!(
        wait_for(SOON, || proc.stderr().contains("cross-site")),
        "{}",
        proc.report()
    );
    // The kubelet's probe form still reads, and a same-origin POST drains.
    let probe = raw(
        admin,
        &format!(
            "GET /ready HTTP/1.1\r\nHost: {admin}\r\nUser-Agent: kube-probe/1.36\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(probe.starts_with("HTTP/1.1 200"), "{probe}");
    std::thread::spawn(move || {
        raw(
            admin,
            &format!(
                "POST /prestop HTTP/1.1\r\nHost: localhost:{}\r\nOrigin: http://localhost:{}\r\nSec-Fetch-Site: same-origin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                admin.port(),
                admin.port()
            ),
        )
    });
    assert!(
        wait_status(admin, "/ready", 503, SOON),
        "a same-origin /prestop must drain\n{}",
        proc.report()
    );
}

/// The `/prestop` token is no secret the app can read (issue 20, item 4):
/// the app runs as drainit's user (not root), as PID 1's child, and tries
/// `/proc/1/environ`. drainit is non-dumpable (the app cannot open it)
/// and has wiped the value from its own environment block (so not even
/// root, who can open it, finds it there), while the app itself is
/// dumpable again (it reads its own `/proc/self/environ`) and drainit's
/// own `/proc/self` reads still work: the token still drains. Before the
/// fix the app read the token from `/proc/1/environ`.
#[test]
fn the_prestop_token_is_not_readable_by_the_app() {
    let dir = scratch("token-hidden");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod the scratch dir");
    let listen = common::ANY_PORT;
    let out = dir.to_str().expect("utf-8 path").to_string();
    let app = "cat /proc/1/environ > \"$0/seen\" 2> \"$0/seen.err\"; \
               cat /proc/self/environ > /dev/null && touch \"$0/app-dumpable\"; \
               touch \"$0/done\"; exec sleep 300";
    let proc = Proc::start(
        &dir,
        "unshare",
        &[
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "setpriv",
            "--reuid=64121",
            "--regid=64121",
            "--clear-groups",
            common::drainit(),
            "--admin-listen",
            listen,
            "--propagation-delay",
            "30s",
            "--grace-period",
            "60s",
            "--",
            "sh",
            "-c",
            app,
            &out,
        ],
        &[("DRAINIT_PRESTOP_TOKEN", "s3cret-token-value")],
    );
    let admin = proc.admin_addr();
    assert!(
        wait_for(SOON, || dir.join("done").exists()),
        "{}",
        proc.report()
    );
    let seen = std::fs::read(dir.join("seen")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&seen).contains("s3cret-token-value"),
        "the app read the token from /proc/1/environ\n{}",
        proc.report()
    );
    assert!(
        dir.join("app-dumpable").exists(),
        "the app must not inherit drainit's non-dumpable state\n{}",
        proc.report()
    );
    let drainit = common::drainit_under_unshare(proc.pid());
    if let Ok(environ) = std::fs::read(format!("/proc/{drainit}/environ")) {
        assert!(
            !String::from_utf8_lossy(&environ).contains("s3cret-token-value"),
            "the token is still in drainit's environment block"
        );
    }
    assert!(wait_status(admin, "/ready", 200, SOON), "{}", proc.report());
    assert_eq!(
        http(admin, "POST", "/prestop", &[], SOON).map(|(code, _)| code),
        Some(403),
        "{}",
        proc.report()
    );
    std::thread::spawn(move || {
        http(
            admin,
            "POST",
            "/prestop",
            &[("X-Drainit-Token", "s3cret-token-value")],
            Duration::from_secs(2),
        )
    });
    assert!(
        wait_status(admin, "/ready", 503, SOON),
        "the token must still drain\n{}",
        proc.report()
    );
}
