//! Issue 2, behaviour 6, through the real binary: when the app exits, the
//! rest of its process group gets SIGTERM, then SIGKILL after
//! `--leftover-grace`, and drainit exits only once they are gone.
//!
//! The app is `sh`, which starts `examples/signal_recorder.rs` in the
//! background (same process group), waits until it is ready and exits 5.
//!
//! "drainit exits only after they are gone" is checked by parentage, not
//! by timing: this test process makes itself a child subreaper, so a
//! leftover still alive (or unreaped) when drainit exits would be
//! re-parented to it and `waitpid(leftover)` would find it. ECHILD means
//! drainit reaped it before exiting. That is why these tests have a test
//! binary of their own.

mod common;
mod pid1_support;

use std::path::Path;
use std::time::Duration;

use common::{monotonic_ns, scratch, wait_for, Proc};
use pid1_support::{arg, code, fixture, names, read_pid, records, signals, state, SOON};

/// Makes this test process a child subreaper (see the module docs).
fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes integers only.
    let status = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(status, 0, "PR_SET_CHILD_SUBREAPER failed");
}

/// Whether `pid` was reaped by someone else: it is not (or no longer) our child.
fn reaped_by_drainit(pid: i32) -> Result<(), String> {
    let mut status = 0;
    // SAFETY: waitpid writes into `status`; WNOHANG never blocks.
    let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    match got {
        -1 if errno == Some(libc::ECHILD) => Ok(()),
        0 => Err(format!(
            "leftover {pid} was still running when drainit exited"
        )),
        -1 => Err(format!("waitpid({pid}): errno {errno:?}")),
        _ => Err(format!(
            "leftover {pid} was left unreaped when drainit exited (wait status {status:#x})"
        )),
    }
}

/// drainit in front of `sh`, which backgrounds a recorder named `leftover`
/// with `recorder` options, waits for it to be ready (and, with `gate`,
/// for the file `go`) and exits 5.
fn start(dir: &Path, grace: &str, recorder: &str, gate: bool) -> Proc {
    become_subreaper();
    let go = if gate {
        arg(&dir.join("go"))
    } else {
        arg(&dir.join("leftover.ready"))
    };
    let script = format!(
        "'{}' '{}' leftover {recorder} &\n\
         while [ ! -e '{}' ] || [ ! -e '{go}' ]; do sleep 0.01; done\n\
         exit 5",
        arg(&fixture("signal_recorder")),
        arg(dir),
        arg(&dir.join("leftover.ready")),
    );
    Proc::drainit(
        dir,
        &[
            "--admin-listen",
            "off",
            "--leftover-grace",
            grace,
            "sh",
            "-c",
            &script,
        ],
        &[],
    )
}

#[test]
fn a_leftover_that_handles_sigterm_finishes_its_cleanup_before_drainit_exits() {
    let dir = scratch("leftover-cleanup");
    // A generous grace: the cleanup (1 s) must end by itself, well before it.
    let mut proc = start(&dir, "30s", "--on-term cleanup:1000", false);
    let leftover = read_pid(&dir.join("leftover.pid"));
    let started = monotonic_ns();
    let status = proc.wait(Duration::from_secs(40));
    let took = Duration::from_nanos(monotonic_ns() - started);
    assert!(
        dir.join("leftover.cleanup-done").exists(),
        "drainit exited before the leftover finished its cleanup\n{}",
        proc.report()
    );
    reaped_by_drainit(leftover).unwrap_or_else(|e| panic!("{e}\n{}", proc.report()));
    let got = signals(&dir, "leftover");
    // A running leftover gets SIGTERM alone: SIGCONT is for stopped ones.
    assert_eq!(
        got,
        [libc::SIGTERM],
        "the leftover should get SIGTERM only, got {:?}\n{}",
        names(&got),
        proc.report()
    );
    assert_eq!(
        code(status),
        5,
        "drainit must exit with the app's code\n{}",
        proc.report()
    );
    assert!(
        took < Duration::from_secs(25),
        "drainit waited {took:?}: it should exit once the leftover is gone, not at --leftover-grace"
    );
}

#[test]
fn a_leftover_that_ignores_sigterm_is_killed_after_the_grace() {
    let dir = scratch("leftover-ignorer");
    let mut proc = start(&dir, "1s", "--on-term ignore --heartbeat", false);
    let leftover = read_pid(&dir.join("leftover.pid"));
    let status = proc.wait(SOON);
    reaped_by_drainit(leftover).unwrap_or_else(|e| panic!("{e}\n{}", proc.report()));
    assert_eq!(code(status), 5, "{}", proc.report());

    let got = records(&dir, "leftover");
    let term_at = got
        .iter()
        .find(|(sig, _)| *sig == libc::SIGTERM)
        .map(|(_, at)| *at)
        .unwrap_or_else(|| panic!("the leftover got no SIGTERM: {got:?}\n{}", proc.report()));
    // It kept running after SIGTERM, so the SIGKILL came later, not at once.
    let beats = std::fs::read_to_string(dir.join("leftover.heartbeat")).unwrap_or_default();
    let last_beat: u64 = beats
        .lines()
        .filter_map(|l| l.parse().ok())
        .max()
        .unwrap_or(0);
    let lived = Duration::from_nanos(last_beat.saturating_sub(term_at));
    assert!(
        lived >= Duration::from_millis(500),
        "the leftover lived only {lived:?} after SIGTERM, --leftover-grace is 1 s\n{}",
        proc.report()
    );
    assert!(
        proc.stderr().contains("SIGKILL"),
        "drainit should log the SIGKILL\n{}",
        proc.report()
    );
}

#[test]
fn a_stopped_leftover_is_continued_so_it_can_act_on_sigterm() {
    let dir = scratch("leftover-stopped");
    let mut proc = start(&dir, "30s", "--on-term exit", true);
    let leftover = read_pid(&dir.join("leftover.pid"));
    // Stop it while the app still runs (the app waits for `go`).
    assert!(common::kill(leftover, libc::SIGSTOP));
    assert!(
        wait_for(SOON, || state(Path::new("/proc"), leftover) == Some('T')),
        "the leftover did not stop\n{}",
        proc.report()
    );
    std::fs::write(dir.join("go"), "").expect("write go");
    let status = proc.wait(Duration::from_secs(40));
    reaped_by_drainit(leftover).unwrap_or_else(|e| panic!("{e}\n{}", proc.report()));
    assert_eq!(code(status), 5, "{}", proc.report());
    assert!(
        signals(&dir, "leftover").contains(&libc::SIGTERM),
        "the stopped leftover never handled SIGTERM\n{}",
        proc.report()
    );
    assert!(
        !proc.stderr().contains("SIGKILL"),
        "it should have exited on SIGTERM, not been killed\n{}",
        proc.report()
    );
}
