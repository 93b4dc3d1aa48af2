//! `--ready-check` as the app sees it (issue 20, item 10): each check
//! reads the answer to its end and closes cleanly, so the app never gets
//! a connection reset (ECONNRESET: a traceback per check in many
//! frameworks).

use std::time::Duration;

use crate::common::{free_port, scratch, wait_for, Proc};

/// Generous bound for anything that should happen "soon" on a loaded machine.
const SOON: Duration = Duration::from_secs(30);

/// An app that answers every request with a 4 000-byte body (more than a
/// status line), keeps the connection open until the client closes it,
/// and counts how each connection ended: `clean` (the client's FIN) or
/// `reset` (ECONNRESET); it writes `clean=N reset=M` to its file.
const COUNTING_APP: &str = r#"
import socket, sys
port, out = int(sys.argv[1]), sys.argv[2]
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(64)
body = b"ok" * 2000
clean = reset = 0
while True:
    conn, _ = listener.accept()
    conn.settimeout(10)
    try:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        if conn.recv(1) == b"":
            clean += 1
    except ConnectionResetError:
        reset += 1
    except socket.timeout:
        pass
    finally:
        conn.close()
    with open(out + ".tmp", "w") as f:
        f.write(f"clean={clean} reset={reset}\n")
    import os
    os.replace(out + ".tmp", out)
"#;

/// (clean, reset) as the app counted them so far.
fn counts(file: &std::path::Path) -> (u32, u32) {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or(0)
    };
    (field("clean"), field("reset"))
}

#[test]
fn ready_checks_close_cleanly_without_resetting_the_apps_connection() {
    let dir = scratch("ready-check-resets");
    let port = free_port();
    let script = dir.join("app.py");
    std::fs::write(&script, COUNTING_APP).expect("write the app");
    let counted = dir.join("counts");
    let check = format!("http://127.0.0.1:{port}/healthz");
    let port_arg = port.to_string();
    let proc = Proc::drainit(
        &dir,
        &[
            "--admin-listen",
            "off",
            "--ready-check",
            &check,
            "--ready-check-interval",
            "100ms",
            "--",
            "python3",
            script.to_str().expect("utf-8 path"),
            &port_arg,
            counted.to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert!(
        wait_for(SOON, || {
            let (clean, reset) = counts(&counted);
            clean + reset >= 8
        }),
        "fewer than 8 checks reached the app: {:?}\n{}",
        counts(&counted),
        proc.report()
    );
    let (clean, reset) = counts(&counted);
    assert_eq!(
        reset,
        0,
        "{reset} of {} checks reset the app's connection\n{}",
        clean + reset,
        proc.report()
    );
}
