//! The reaper: the only caller of `waitpid` in drainit.
//!
//! SIGCHLD is coalesced (ten children exiting at once may raise it once),
//! so on every SIGCHLD the reaper loops `waitpid(-1, WNOHANG)` until
//! nothing is left, and recognises the main child inside that loop. The
//! app's `std::process::Child` is never waited on, so no status is lost
//! between two waiters.

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tracing::{debug, warn};

use crate::lifecycle::AppExit;
use crate::signals::Sig;

/// What one reaping pass found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    /// How many processes were reaped (the main child included).
    pub count: u64,
    /// How the main child ended, if it was among them.
    pub main_exit: Option<AppExit>,
}

/// Reaps every child that has exited; `main` is the app's pid.
pub fn reap_all(main: Option<i32>) -> Reaped {
    let mut reaped = Reaped::default();
    loop {
        let (pid, exit) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, AppExit::Code(code)),
            Ok(WaitStatus::Signaled(pid, signal, _core)) => {
                let sig = Sig::from_raw(signal as i32).unwrap_or(Sig::KILL);
                (pid, AppExit::Signal(sig))
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return reaped,
            Ok(other) => {
                debug!(status = ?other, "ignored wait status");
                continue;
            }
            Err(Errno::EINTR) => continue,
            Err(error) => {
                warn!(%error, "waitpid failed");
                return reaped;
            }
        };
        reaped.count += 1;
        if Some(pid.as_raw()) == main {
            reaped.main_exit = Some(exit);
        } else {
            debug!(pid = pid.as_raw(), "reaped {exit}");
        }
    }
}
