//! Stopping what a run started, by pid: the daemons, the shims re-parented
//! to the test process (a subreaper), the mounts under the run directory,
//! and the leftovers of runs that were killed outright.

use std::path::Path;
use std::time::Duration;

use super::RUNS_ROOT;
use crate::common::{self, kill, wait_for, Proc};

/// Asks the kernel to re-parent orphans of our descendants to us, so the
/// daemonised containerd shims are ours to stop.
pub(super) fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    let result = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(
        result,
        0,
        "cannot become a child subreaper: {}",
        std::io::Error::last_os_error()
    );
}

/// SIGTERM, up to 30 s to exit, then SIGKILL (the `Proc` drop).
pub(super) fn stop(daemon: &mut Proc) {
    if !daemon.running() {
        return;
    }
    daemon.signal(libc::SIGTERM);
    if !wait_for(Duration::from_secs(30), || !daemon.running()) {
        eprintln!(
            "container tests: {} ignored SIGTERM for 30 s; SIGKILL",
            daemon.description
        );
    }
}

/// SIGKILLs every descendant of `pid` and reaps them, for up to 20 s.
pub(super) fn kill_descendants(pid: i32) {
    wait_for(Duration::from_secs(20), || {
        let left = common::descendants(pid);
        for &child in &left {
            kill(child, libc::SIGKILL);
        }
        reap_orphans();
        common::descendants(pid).iter().all(|&p| is_zombie(p))
    });
    reap_orphans();
}

/// Reaps the exited orphans handed to us as subreaper.
fn reap_orphans() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into the valid int.
        if unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } <= 0 {
            return;
        }
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Deletes the directories of earlier runs whose test process is gone:
/// kills what still names them (their shims and daemons), unmounts them.
pub(super) fn clean_stale_runs() {
    let Ok(entries) = std::fs::read_dir(RUNS_ROOT) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("run-"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        eprintln!(
            "container tests: cleaning up the stale run {}",
            dir.display()
        );
        for process in processes_naming(&dir) {
            for child in common::descendants(process) {
                kill(child, libc::SIGKILL);
            }
            kill(process, libc::SIGKILL);
        }
        clean_run_dir(&dir);
    }
}

/// Processes whose command line or working directory names `dir`
/// (the daemons and shims of a run).
fn processes_naming(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
                || std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                    String::from_utf8_lossy(&cmdline)
                        .replace('\0', " ")
                        .contains(&needle)
                })
        })
        .collect()
}

/// Unmounts everything under `dir` (deepest first), then removes it.
pub(super) fn clean_run_dir(dir: &Path) {
    let prefix = format!("{}/", dir.display());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in mounts {
        let Ok(path) = std::ffi::CString::new(point) else {
            continue;
        };
        // SAFETY: umount2 reads the NUL-terminated path.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
            eprintln!(
                "container tests: cannot unmount {point}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    if let Err(error) = std::fs::remove_dir_all(dir) {
        eprintln!("container tests: cannot remove {}: {error}", dir.display());
    }
}
