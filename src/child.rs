//! Starting the app: its own process group, the terminal's foreground, and
//! the signal state drainit itself inherited.
//!
//! drainit changes its own signal state to do its job (it blocks exactly
//! the signals it handles and reads them from a signalfd, gives those it
//! inherited as ignored the default disposition, ignores SIGTTIN/SIGTTOU,
//! and Rust's runtime ignores SIGPIPE), and raises its open-file limit for
//! the admin server. The app must see none of that: it starts with the
//! mask, the ignored dispositions and the file limit drainit was given.
//! Rust's `Command` resets the mask in the child, so it is re-applied in a
//! `pre_exec` hook. All `unsafe` of the crate lives in this module,
//! including the registration of drainit's signalfd with tokio's reactor
//! ([`register_signalfd`]), whose constructor is `unsafe`.

use std::ffi::OsString;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signalfd::SignalFd;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::debug;

use crate::signal_stream;
use crate::signals::Sig;

/// Highest signal number tracked (SIGRTMAX is 64 on Linux).
const MAX_SIG: usize = 65;

/// The signal state and file limit drainit was started with, captured
/// before it changes any of them, to hand on to the app unchanged.
#[derive(Clone, Copy)]
pub struct Inherited {
    mask: libc::sigset_t,
    ignored: [bool; MAX_SIG],
    nofile: (libc::rlim_t, libc::rlim_t),
}

impl Inherited {
    /// Reads the current mask, ignored dispositions and RLIMIT_NOFILE.
    /// Call it first thing in `main`, before anything changes them.
    pub fn capture() -> Inherited {
        let mut mask = MaybeUninit::<libc::sigset_t>::zeroed();
        // SAFETY: with a null `set`, pthread_sigmask only writes the current
        // mask into `mask`, which is valid, writable memory of the right type.
        let mask = unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), mask.as_mut_ptr());
            mask.assume_init()
        };
        let mut ignored = [false; MAX_SIG];
        for (number, slot) in ignored.iter_mut().enumerate().skip(1) {
            let mut action = MaybeUninit::<libc::sigaction>::zeroed();
            // SAFETY: with a null `act`, sigaction only reads the current
            // disposition into `action`; invalid numbers return -1, checked.
            let status = unsafe {
                libc::sigaction(number as libc::c_int, std::ptr::null(), action.as_mut_ptr())
            };
            if status == 0 {
                // SAFETY: sigaction succeeded, so it initialised `action`.
                let action = unsafe { action.assume_init() };
                *slot = action.sa_sigaction == libc::SIG_IGN;
            }
        }
        // Rust's runtime set SIGPIPE to ignored before `main`; what drainit
        // was given cannot be known, so the app gets the default, as from a shell.
        ignored[libc::SIGPIPE as usize] = false;
        let nofile = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
        Inherited {
            mask,
            ignored,
            nofile,
        }
    }

    /// Whether `sig` was ignored when drainit started.
    pub fn was_ignored(&self, sig: Sig) -> bool {
        usize::try_from(sig.raw())
            .ok()
            .and_then(|n| self.ignored.get(n).copied())
            .unwrap_or(false)
    }

    /// Takes the handled signals for drainit's signalfd: blocks exactly
    /// them (see [`signal_stream::block_handled`]) and gives each one
    /// drainit inherited as ignored the default disposition, which while
    /// blocked only means "not ignored". SIGCHLD needs it: ignored, it
    /// makes the kernel reap children itself, so `waitpid` would never see
    /// the app's exit. The others would reach the signalfd anyway (a
    /// blocked signal is kept pending even when ignored); resetting them
    /// too leaves drainit's state the same whatever it inherited.
    /// Call it in `main` after [`Inherited::capture`], before the runtime
    /// starts any thread.
    pub fn take_signals(&self) -> nix::Result<()> {
        signal_stream::block_handled()?;
        for sig in signal_stream::handled() {
            if self.was_ignored(sig) {
                // SAFETY: SIG_DFL installs no handler code, the number is a
                // valid, catchable signal, and the signal is blocked.
                if unsafe { libc::signal(sig.raw(), libc::SIG_DFL) } == libc::SIG_ERR {
                    debug!("could not stop ignoring {sig}");
                }
            }
        }
        Ok(())
    }

    /// Sets the rest of drainit's own signal state, the handled signals
    /// staying blocked for the signalfd: SIGTTIN/SIGTTOU (and SIGPIPE)
    /// ignored, since drainit may write logs while the app owns the
    /// terminal, and the open-file limit raised to its hard maximum for
    /// the admin server's connections.
    pub fn prepare_drainit(&self) {
        for sig in Sig::ignored_by_drainit() {
            // SAFETY: setting SIG_IGN installs no handler code; the numbers are valid.
            unsafe { libc::signal(sig.raw(), libc::SIG_IGN) };
        }
        let (soft, hard) = self.nofile;
        if soft < hard {
            if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                debug!(%error, "could not raise the open-file limit");
            }
        }
    }
}

/// Why the app could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// No command was given.
    #[error("no command to run")]
    Empty,
    /// execve said ENOENT: exit 127, as a shell does.
    #[error("{command}: command not found")]
    NotFound {
        /// The program as given.
        command: String,
    },
    /// Any other exec failure (permission, format): exit 126.
    #[error("{command}: cannot execute: {source}")]
    CannotExecute {
        /// The program as given.
        command: String,
        /// What execve said.
        source: io::Error,
    },
}

impl SpawnError {
    /// drainit's exit status for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            SpawnError::Empty => 2,
            SpawnError::NotFound { .. } => 127,
            SpawnError::CannotExecute { .. } => 126,
        }
    }
}

/// Starts `command` as the app, in a new process group that takes the
/// terminal's foreground when stdin is a terminal, with stdio inherited and
/// drainit's inherited signal state and file limit. Returns its pid.
pub fn spawn(command: &[OsString], inherited: &Inherited) -> Result<i32, SpawnError> {
    let (program, args) = command.split_first().ok_or(SpawnError::Empty)?;
    let mut builder = Command::new(program);
    builder.args(args).process_group(0);
    let restore = *inherited;
    // SAFETY: the hook runs in the forked child before exec. It only calls
    // async-signal-safe functions (sigfillset, sigprocmask, signal,
    // isatty, tcsetpgrp, getpid, setrlimit), allocates nothing and takes
    // no locks, so it is sound even if the parent had other threads.
    unsafe {
        builder.pre_exec(move || {
            restore_in_child(&restore);
            Ok(())
        });
    }
    match builder.spawn() {
        // The reaper, not `Child::wait`, collects the exit status; dropping
        // the handle neither waits nor kills.
        Ok(child) => i32::try_from(child.id()).map_err(|_| SpawnError::CannotExecute {
            command: program.to_string_lossy().into_owned(),
            source: io::Error::other("pid out of range"),
        }),
        Err(source) if source.kind() == io::ErrorKind::NotFound => Err(SpawnError::NotFound {
            command: program.to_string_lossy().into_owned(),
        }),
        Err(source) => Err(SpawnError::CannotExecute {
            command: program.to_string_lossy().into_owned(),
            source,
        }),
    }
}

/// The child side of [`spawn`]: runs between fork and exec.
fn restore_in_child(inherited: &Inherited) {
    let mut all = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: only async-signal-safe calls on valid, initialised memory;
    // every call's failure is harmless (an invalid or reserved signal
    // number, a stdin that is not our terminal) and deliberately ignored.
    unsafe {
        // Nothing may interrupt this hook: block everything first.
        libc::sigfillset(all.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, all.as_ptr(), std::ptr::null_mut());
        // Caught signals reset to default at exec by themselves; ignored
        // ones do not, so set each disposition to what drainit inherited.
        for number in 1..MAX_SIG {
            let number = number as libc::c_int;
            if number == libc::SIGKILL || number == libc::SIGSTOP {
                continue;
            }
            let disposition = if inherited.ignored[number as usize] {
                libc::SIG_IGN
            } else {
                libc::SIG_DFL
            };
            libc::signal(number, disposition);
        }
        // Take the terminal's foreground so Ctrl-C and job control reach the
        // app. SIGTTOU is blocked, so a background caller is not stopped.
        if libc::isatty(libc::STDIN_FILENO) == 1 {
            libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
        }
        let limit = libc::rlimit {
            rlim_cur: inherited.nofile.0,
            rlim_max: inherited.nofile.1,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::sigprocmask(libc::SIG_SETMASK, &inherited.mask, std::ptr::null_mut());
    }
}

/// Sends a raw signal number (real-time ones included, which nix's
/// `Signal` cannot carry) to a pid, or to a process group when negative.
pub fn send_raw(pid: i32, sig: Sig) -> nix::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory.
    nix::errno::Errno::result(unsafe { libc::kill(pid, sig.raw()) }).map(drop)
}

/// Makes drainit a child subreaper when it is not PID 1, so orphans of
/// the app are re-parented to it and reaped, as they would be by PID 1.
pub fn become_subreaper() -> nix::Result<()> {
    if std::process::id() == 1 {
        return Ok(());
    }
    nix::sys::prctl::set_child_subreaper(true)
}

/// Registers drainit's signalfd with the runtime's reactor, for reading.
/// Call it inside the runtime.
pub fn register_signalfd(fd: SignalFd) -> io::Result<AsyncFd<SignalFd>> {
    // SAFETY: `SignalFd` owns its `OwnedFd`: the descriptor is open from
    // creation until the `SignalFd` is dropped, `as_raw_fd` always returns
    // that one, and nothing else can close or replace it while the
    // `AsyncFd` owns the `SignalFd`.
    let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
    Ok(registered?)
}
