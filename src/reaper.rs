//! The reaper: the only caller of `waitpid` in drainit.
//!
//! SIGCHLD is coalesced (ten children exiting at once may raise it once),
//! so on every SIGCHLD the reaper loops `waitpid(-1, WNOHANG)` until
//! nothing is left; the caller recognises the main child among the pids
//! it hands back. The wait status is decoded here, from the raw integer:
//! nix's `WaitStatus` has no room for a real-time signal and fails on one,
//! which once left the rest of a burst unreaped. A status that cannot be
//! decoded is still a reaped child, and never stops the loop.

use std::fmt;

use nix::errno::Errno;
use tracing::warn;

use crate::signals::Sig;

/// How a process ended, decoded from its wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessExit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal (real-time ones included).
    Signal(Sig),
    /// A status that is neither (never seen without `WUNTRACED`); the raw value.
    Undecoded(i32),
}

impl ProcessExit {
    /// Decodes a raw wait status as `<sys/wait.h>` lays it out.
    pub fn from_raw(status: i32) -> ProcessExit {
        if libc::WIFEXITED(status) {
            return ProcessExit::Code(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            let number = libc::WTERMSIG(status);
            return Sig::from_raw(number)
                .map_or(ProcessExit::Undecoded(status), ProcessExit::Signal);
        }
        ProcessExit::Undecoded(status)
    }

    /// The exit code an init passes on: the code, or 128+N for death by
    /// signal N (164 for signal 36, as tini and dumb-init do).
    pub fn exit_code(self) -> u8 {
        match self {
            ProcessExit::Code(code) => u8::try_from(code & 0xff).unwrap_or(1),
            ProcessExit::Signal(sig) => u8::try_from(128 + sig.raw()).unwrap_or(255),
            ProcessExit::Undecoded(_) => 255,
        }
    }
}

impl fmt::Display for ProcessExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessExit::Code(code) => write!(f, "code={code}"),
            ProcessExit::Signal(sig) => write!(f, "signal={sig}"),
            ProcessExit::Undecoded(raw) => write!(f, "status={raw:#x}"),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_raw_statuses() {
        // <sys/wait.h>: exit code in bits 8-15; signal in bits 0-6.
        let table: &[(i32, ProcessExit, u8)] = &[
            (0, ProcessExit::Code(0), 0),
            (3 << 8, ProcessExit::Code(3), 3),
            (255 << 8, ProcessExit::Code(255), 255),
            (
                libc::SIGTERM,
                ProcessExit::Signal(Sig::TERM),
                128 + libc::SIGTERM as u8,
            ),
            // A core dump sets bit 7 and changes nothing else.
            (
                libc::SIGSEGV | 0x80,
                ProcessExit::Signal(Sig::from_raw(libc::SIGSEGV).expect("SEGV")),
                139,
            ),
            // Real-time signal 36 (SIGRTMIN+2 with glibc, RTMIN+1 with musl).
            (
                36,
                ProcessExit::Signal(Sig::from_raw(36).expect("signal 36")),
                164,
            ),
            (64, ProcessExit::Signal(Sig::from_raw(64).expect("64")), 192),
            // Stopped (0x7f) is not an exit; decoded as such, never a panic.
            (0x137f, ProcessExit::Undecoded(0x137f), 255),
        ];
        for (raw, exit, code) in table {
            assert_eq!(ProcessExit::from_raw(*raw), *exit, "{raw:#x}");
            assert_eq!(exit.exit_code(), *code, "{raw:#x}");
        }
    }
}
