//! The reaper: the only caller of `waitpid` in drainit.
//!
//! SIGCHLD is coalesced (ten children exiting at once may raise it once),
//! so on every SIGCHLD the reaper loops `waitpid(-1, WNOHANG)` until
//! nothing is left; the caller recognises the main child among the pids
//! it hands back. The wait status is decoded here, from the raw integer:
//! nix's `WaitStatus` has no room for a real-time signal and fails on one,
//! which once left the rest of a burst unreaped. A status that cannot be
//! decoded is still a reaped child, and never stops the loop.

use nix::errno::Errno;
use tracing::warn;

use crate::process_exit::ProcessExit;

/// Whether a reaping pass emptied the queue of exited children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Nothing is left to reap (for now).
    Done,
    /// The pass stopped at its limit: yield to the runtime, then reap again.
    More,
}

/// Reaps up to `limit` exited children, handing each pid and exit to
/// `reaped`. Returns [`Pass::More`] when it stopped at the limit, so a
/// burst of thousands of orphans cannot starve the admin server and the
/// timers of the same event loop.
pub fn reap(limit: usize, mut reaped: impl FnMut(i32, ProcessExit)) -> Pass {
    for _ in 0..limit {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes the status into a valid, owned c_int.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => return Pass::Done,
            pid if pid > 0 => reaped(pid, ProcessExit::from_raw(status)),
            _ => match Errno::last() {
                Errno::EINTR => continue,
                Errno::ECHILD => return Pass::Done,
                error => {
                    warn!(%error, "waitpid failed");
                    return Pass::Done;
                }
            },
        }
    }
    Pass::More
}
