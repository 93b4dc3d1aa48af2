//! How a process ended: a wait status decoded, and the exit code an init
//! passes on for it. A plain value, so the drain machine can speak of the
//! app's exit without importing the reaper that produces it.

use std::fmt;

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
