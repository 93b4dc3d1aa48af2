//! Helpers of the PID-1 tests (`tests/it/pid1*.rs`,
//! `tests/pid1_leftovers.rs`), next to `common`: the fixtures of
//! `examples/`, pids across the PID namespace, signal records.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::common::wait_for;

/// Generous bound for anything that should happen "soon" on a loaded machine.
pub const SOON: Duration = Duration::from_secs(20);

/// The path of the example fixture `name` (`examples/<name>.rs`), built for
/// the profile of the drainit under test. `cargo test` builds the examples
/// before running tests, `cargo test --test it` does not: then (or when
/// a fixture's source is newer than its binary) this runs
/// `cargo build --examples` once per test process.
pub fn fixture(name: &str) -> PathBuf {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_drainit"))
        .parent()
        .expect("the binary has a directory");
    let binary = bin_dir.join("examples").join(name);
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.rs"));
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !*built && !is_fresh(&binary, &source) {
        let mut cargo = Command::new(env!("CARGO"));
        cargo.args([
            "build",
            "--quiet",
            "--examples",
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ]);
        match bin_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => {}
            Some(profile) => {
                cargo.args(["--profile", profile]);
            }
        }
        let status = cargo.status().expect("run cargo build --examples");
        assert!(status.success(), "cargo build --examples failed: {status}");
        *built = true;
    }
    assert!(
        binary.is_file(),
        "fixture {} is missing: run `cargo build --examples`",
        binary.display()
    );
    binary
}

fn is_fresh(binary: &Path, source: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(binary), modified(source)) {
        (Some(bin), Some(src)) => bin >= src,
        _ => false,
    }
}

/// A path as an owned `String` argument.
pub fn arg(path: &Path) -> String {
    path.to_str().expect("test paths are UTF-8").to_string()
}

/// The signals a `signal_recorder` wrote to `DIR/NAME.signals`, in order,
/// with their CLOCK_MONOTONIC times (complete lines only).
pub fn records(dir: &Path, name: &str) -> Vec<(i32, u64)> {
    let text = std::fs::read_to_string(dir.join(format!("{name}.signals"))).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .filter_map(|line| {
            let (sig, at) = line.trim_end().split_once(' ')?;
            Some((sig.parse().ok()?, at.parse().ok()?))
        })
        .collect()
}

/// Just the signal numbers of [`records`].
pub fn signals(dir: &Path, name: &str) -> Vec<i32> {
    records(dir, name).into_iter().map(|(sig, _)| sig).collect()
}

/// A signal number written the usual way (`SIGUSR1`, `SIGRTMIN+1`), for messages.
pub fn name(sig: i32) -> String {
    let names = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGCONT, "SIGCONT"),
        (libc::SIGWINCH, "SIGWINCH"),
        (libc::SIGKILL, "SIGKILL"),
    ];
    if let Some((_, n)) = names.iter().find(|(s, _)| *s == sig) {
        return (*n).to_string();
    }
    if sig == libc::SIGRTMAX() {
        return "SIGRTMAX".to_string();
    }
    if sig >= libc::SIGRTMIN() {
        return format!("SIGRTMIN+{}", sig - libc::SIGRTMIN());
    }
    format!("signal {sig}")
}

/// [`name`] over a list.
pub fn names(sigs: &[i32]) -> Vec<String> {
    sigs.iter().map(|s| name(*s)).collect()
}

/// The pid written to `DIR/NAME.pid` by a fixture, once it is there.
pub fn read_pid(path: &Path) -> i32 {
    let mut pid = None;
    wait_for(SOON, || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap_or_else(|| panic!("no pid in {}", path.display()))
}

/// A field of /proc/PID/status (`PPid`, `State`, `NSpid`, ...), if the process exists.
pub fn status_field(proc_root: &Path, pid: i32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|value| value.trim().to_string())
}

/// The state letter of a process (`R`, `S`, `Z`, ...), if it exists.
pub fn state(proc_root: &Path, pid: i32) -> Option<char> {
    status_field(proc_root, pid, "State").and_then(|s| s.chars().next())
}

/// The host pid of the process that is `nspid` in the PID namespace of `member`.
pub fn host_pid(member: i32, nspid: i32) -> Option<i32> {
    let namespace = std::fs::read_link(format!("/proc/{member}/ns/pid")).ok()?;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .ok()
                .as_ref()
                == Some(&namespace)
                && status_field(Path::new("/proc"), *pid, "NSpid")
                    .and_then(|ids| ids.split_whitespace().last()?.parse().ok())
                    == Some(nspid)
        })
}

/// The exit code, or 128+N for death by signal N (as a shell reports it).
pub fn code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}
