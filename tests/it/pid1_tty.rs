//! Issue 2, behaviour 7, through the real binary and a pseudo-terminal:
//! the app gets its own process group, which is the terminal's foreground
//! group, so Ctrl-C reaches it and an interactive shell under drainit works.
//!
//! [`DRIVER`] (Python's `pty` module) runs drainit as the session leader
//! of a new pseudo-terminal, writes keystrokes to the master side and
//! waits for expected output, every step under a deadline.

use crate::common;
use crate::pid1_support;

use std::path::Path;
use std::time::Duration;

use common::{scratch, Proc};
use pid1_support::arg;

/// `driver.py TRANSCRIPT STEPS -- COMMAND...`: runs COMMAND on a new pty;
/// STEPS is a JSON list of `["expect", TEXT]` (wait until TEXT appears in
/// the output after the previous match) and `["send", TEXT]`; then reads
/// until the terminal closes and prints `EXIT <code>` (128+N for signal N)
/// or `FAILED <why>`. The whole output goes to TRANSCRIPT.
const DRIVER: &str = r#"
import json, os, pty, select, signal, sys, time
transcript, steps, command = sys.argv[1], json.loads(sys.argv[2]), sys.argv[4:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(command[0], command)
buf, seen = b"", 0
deadline = time.monotonic() + 40
def read_some():
    global buf
    r, _, _ = select.select([fd], [], [], 0.05)
    if not r:
        return True
    try:
        data = os.read(fd, 65536)
    except OSError:
        data = b""
    buf += data
    with open(transcript, "wb") as f:
        f.write(buf)
    return bool(data)
def fail(why):
    print("FAILED " + why, flush=True)
    os.killpg(pid, signal.SIGKILL)
    sys.exit(1)
for kind, text in steps:
    if kind == "send":
        os.write(fd, text.encode())
        continue
    want = text.encode()
    while buf.find(want, seen) < 0:
        if time.monotonic() > deadline:
            fail("timeout expecting %r" % text)
        if not read_some():
            fail("terminal closed while expecting %r" % text)
    seen = buf.find(want, seen) + len(want)
while read_some():
    if time.monotonic() > deadline:
        fail("timeout waiting for the end")
_, status = os.waitpid(pid, 0)
code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
print("EXIT %d" % code, flush=True)
"#;

/// The interactive app: reports its process groups and the terminal's
/// foreground group, then waits for SIGINT.
const APP: &str = r#"
import os, signal, sys, time
got = []
signal.signal(signal.SIGINT, lambda s, f: got.append(s))
print("FG=%d PGRP=%d PID=%d PARENT_PGRP=%d END" % (
    os.tcgetpgrp(0), os.getpgrp(), os.getpid(), os.getpgid(os.getppid())), flush=True)
print("READY", flush=True)
deadline = time.monotonic() + 30
while not got and time.monotonic() < deadline:
    time.sleep(0.01)
print("GOT-SIGINT" if got else "NO-SIGINT", flush=True)
sys.exit(0 if got else 9)
"#;

/// Runs `command` under the driver with `steps`; returns the exit code
/// and the terminal transcript.
fn on_a_terminal(dir: &Path, steps: &str, command: &[&str]) -> (i32, String) {
    std::fs::write(dir.join("driver.py"), DRIVER).expect("write driver");
    let transcript = dir.join("transcript");
    let transcript_arg = arg(&transcript);
    let mut args = vec!["driver.py", &transcript_arg, steps, "--"];
    args.extend_from_slice(command);
    let mut proc = Proc::start(dir, "python3", &args, &[]);
    proc.wait(Duration::from_secs(60));
    let text =
        String::from_utf8_lossy(&std::fs::read(&transcript).unwrap_or_default()).into_owned();
    let out = proc.stdout();
    let code = out
        .lines()
        .find_map(|l| l.strip_prefix("EXIT "))
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or_else(|| panic!("{}\n--- terminal ---\n{text}", proc.report()));
    (code, text)
}

/// A `NAME=NUMBER` field of the app's report line.
fn field(text: &str, name: &str) -> i64 {
    let line = text
        .lines()
        .find(|l| l.starts_with("FG="))
        .unwrap_or_else(|| panic!("no report line in:\n{text}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

#[test]
fn the_app_is_the_terminal_foreground_group_and_gets_ctrl_c() {
    let dir = scratch("tty-fg");
    std::fs::write(dir.join("app.py"), APP).expect("write app");
    let steps = r#"[["expect", "READY"], ["send", "\u0003"], ["expect", "GOT-SIGINT"]]"#;
    let (code, text) = on_a_terminal(
        &dir,
        steps,
        &[
            common::drainit(),
            "--admin-listen",
            "off",
            "python3",
            "app.py",
        ],
    );
    assert_eq!(
        field(&text, "PGRP"),
        field(&text, "PID"),
        "the app must lead its own process group\n{text}"
    );
    assert_ne!(
        field(&text, "PGRP"),
        field(&text, "PARENT_PGRP"),
        "the app must not share drainit's process group\n{text}"
    );
    assert_eq!(
        field(&text, "FG"),
        field(&text, "PGRP"),
        "the app's group must be the terminal's foreground group\n{text}"
    );
    assert!(text.contains("GOT-SIGINT"), "{text}");
    assert_eq!(code, 0, "drainit must exit with the app's code\n{text}");
}

#[test]
fn an_interactive_shell_works_and_ctrl_c_interrupts_its_job() {
    let dir = scratch("tty-shell");
    // Outputs are computed so that the terminal's echo of the typed line
    // never matches them; `sleep 30` outlasts the driver's deadline, so
    // `after-6` appears in time only if Ctrl-C ended it.
    let steps = r#"[
        ["send", "echo alive-$((6*7))\n"], ["expect", "alive-42"],
        ["send", "sh -c 'echo SLEEP\"\"ING; exec sleep 30'\n"], ["expect", "SLEEPING"],
        ["send", "\u0003"],
        ["send", "echo after-$((2*3))\n"], ["expect", "after-6"],
        ["send", "exit 4\n"]
    ]"#;
    let (code, text) = on_a_terminal(
        &dir,
        steps,
        &[common::drainit(), "--admin-listen", "off", "sh", "-i"],
    );
    assert!(
        !text.contains("job control turned off"),
        "the shell could not take the terminal:\n{text}"
    );
    assert_eq!(code, 4, "drainit must exit with the shell's code\n{text}");
}
