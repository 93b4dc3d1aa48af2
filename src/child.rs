//! The app's process: starting it with the signal state drainit
//! inherited, and the one handle through which drainit signals it.
//!
//! The app starts in a process group of its own, which takes the
//! terminal's foreground when stdin is a terminal, with drainit's
//! inherited mask, ignored dispositions and file limit ([`Inherited`]).
//! Usually `posix_spawn` sets them (no fork: the quickest start, see
//! [`spawn`]); a terminal or a handled signal inherited as ignored needs
//! drainit's own code between fork and exec. drainit raises its own file
//! limit only after the spawn, so the app inherits the original one.
//!
//! [`App`] holds a pidfd, opened right after the fork while the child
//! cannot yet have been reaped (only drainit's reaper waits, and it runs
//! on this same thread later). Every signal to the app goes through it,
//! so a signal can never reach another process that got the app's pid
//! after it was reaped; and the owner gives the handle up when the
//! reaper reports the app's exit, after which no code holds its pid.

use std::ffi::{CString, OsString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use tracing::debug;

use crate::os::{Inherited, PRIVATE_ENV};
use crate::signals::Sig;

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

/// A process drainit may signal: held by a pidfd where the kernel has
/// them (Linux ≥ 5.3), else by its pid alone.
#[derive(Debug)]
pub struct Process {
    pid: i32,
    pidfd: Option<OwnedFd>,
}

impl Process {
    /// Opens a handle on `pid`. The caller must know that `pid` is the
    /// process it means at this moment (its own unreaped child, or a
    /// process whose identity it checks right after, see
    /// [`Process::verified`]).
    pub fn open(pid: i32) -> Process {
        Process {
            pid,
            pidfd: pidfd_open(pid),
        }
    }

    /// Opens a handle on `pid`, then checks with `still_the_one` that the
    /// pid still names the process meant: once the pidfd is open, it
    /// refers to that process whatever happens to the number later.
    /// Without pidfd support the check narrows the race, it cannot close it.
    pub fn verified(pid: i32, still_the_one: impl FnOnce(i32) -> bool) -> Option<Process> {
        let process = Process::open(pid);
        still_the_one(pid).then_some(process)
    }

    /// The pid, for logs and for `/status`.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `sig` to this process (never to another one, with a pidfd).
    pub fn signal(&self, sig: Sig) -> nix::Result<()> {
        match &self.pidfd {
            Some(fd) => pidfd_send_signal(fd, sig),
            None => kill(self.pid, sig),
        }
    }

    /// Whether the process is stopped (state T or t in `/proc/PID/stat`),
    /// so that a SIGCONT must follow a signal it should act on.
    pub fn is_stopped(&self) -> bool {
        crate::os::with_proc_stat(self.pid, |mut fields| {
            fields.next().map(|state| state == "T" || state == "t")
        })
        .unwrap_or(false)
    }
}

/// The app: its process, and the process group it was started in.
#[derive(Debug)]
pub struct App {
    /// The app's own process.
    pub process: Process,
    /// The process group it was started in (its pid at spawn). The number
    /// cannot be reused while any member of the group lives.
    pub pgid: i32,
}

/// Starts `command` as the app, in a new process group that takes the
/// terminal's foreground when stdin is a terminal, with stdio inherited and
/// drainit's inherited signal state and file limit.
///
/// The usual case (stdin not a terminal, no handled signal inherited as
/// ignored) goes through `posix_spawn`, which musl and glibc implement
/// with `CLONE_VFORK`: the child shares drainit's memory until its exec, so
/// no page table is copied and no page is copied on write. The rest needs
/// code of drainit's between fork and exec ([`restore_in_child`]) and
/// forks.
pub fn spawn(command: &[OsString], inherited: &Inherited) -> Result<App, SpawnError> {
    let (program, _) = command.split_first().ok_or(SpawnError::Empty)?;
    let start = |command: &[OsString]| {
        if spawnable_without_fork(inherited) {
            posix_spawn(command, inherited)
        } else {
            fork_and_exec(command, inherited)
        }
    };
    let started = match start(command) {
        Err(error) if error.raw_os_error() == Some(libc::ENOEXEC) => {
            // No `#!` line: what execvp does (and tini, dumb-init and
            // catatonit with it), on both paths alike, whatever the C
            // library's own execvp and posix_spawnp do.
            match run_by_the_shell(command) {
                Some(with_shell) => start(&with_shell).map_err(|shell_error| {
                    // No /bin/sh (distroless): the script's own failure.
                    if shell_error.kind() == io::ErrorKind::NotFound {
                        error
                    } else {
                        shell_error
                    }
                }),
                None => Err(error),
            }
        }
        other => other,
    };
    let command = || program.to_string_lossy().into_owned();
    match started {
        // The reaper collects the exit status. Until it runs, the child is
        // at worst a zombie: its pid is still its own, so the pidfd opened
        // now is the app's.
        Ok(pid) => Ok(App {
            process: Process::open(pid),
            pgid: pid,
        }),
        Err(source) if source.kind() == io::ErrorKind::NotFound => {
            Err(SpawnError::NotFound { command: command() })
        }
        Err(source) => Err(SpawnError::CannotExecute {
            command: command(),
            source,
        }),
    }
}

/// The shell a file without `#!` is handed to, as execvp does on ENOEXEC.
const SHELL: &str = "/bin/sh";

/// `/bin/sh FILE ARGS...` for a `command` whose program the kernel would
/// not execute (ENOEXEC): FILE is the program as exec found it (searched
/// in `PATH` when it has no `/`, as `posix_spawnp` and execvp search).
fn run_by_the_shell(command: &[OsString]) -> Option<Vec<OsString>> {
    let (program, args) = command.split_first()?;
    let file = if program.as_bytes().contains(&b'/') {
        std::path::PathBuf::from(program)
    } else {
        let path =
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/bin:/usr/bin".into());
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable_file(candidate))?
    };
    let mut with_shell = vec![OsString::from(SHELL), file.into_os_string()];
    with_shell.extend(args.iter().cloned());
    Some(with_shell)
}

/// Whether `path` is a regular file this process may execute.
fn is_executable_file(path: &std::path::Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) reads the NUL-terminated path and touches nothing else.
    let executable = unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0;
    executable && path.is_file()
}

/// Whether `posix_spawn` can give the app exactly the state a hook would:
/// it can set the mask, the process group and default dispositions, but
/// not an ignored disposition (a handled signal drainit inherited as
/// ignored is not ignored in drainit) nor the terminal's foreground.
fn spawnable_without_fork(inherited: &Inherited) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    let stdin_is_a_terminal = unsafe { libc::isatty(libc::STDIN_FILENO) } == 1;
    inherited.ignored_again_for_the_app().next().is_none() && !stdin_is_a_terminal
}

/// `posix_spawnp(3)`: PATH search, mask, group and dispositions as
/// [`restore_in_child`] sets them; exec errors come back as its result.
fn posix_spawn(command: &[OsString], inherited: &Inherited) -> io::Result<i32> {
    let argv = c_strings(command.iter().map(|arg| arg.as_bytes().to_vec()))?;
    let env = std::env::vars_os()
        .filter(|(name, _)| !PRIVATE_ENV.iter().any(|private| name == private))
        .map(|(name, value)| [name.as_bytes(), b"=", value.as_bytes()].concat());
    let envp = c_strings(env)?;
    let argv_ptrs = null_terminated(&argv);
    let envp_ptrs = null_terminated(&envp);

    let mut defaults = MaybeUninit::<libc::sigset_t>::zeroed();
    let mut attr = MaybeUninit::<libc::posix_spawnattr_t>::zeroed();
    let mut pid: libc::pid_t = 0;
    // SAFETY: `attr` and `defaults` are initialised by their init calls
    // before any other use and `attr` is destroyed on every path; argv
    // and envp are NUL-terminated C strings in null-terminated arrays that
    // outlive the call, and `pid` is a valid place for the result.
    let status = unsafe {
        libc::sigemptyset(defaults.as_mut_ptr());
        for sig in inherited.defaults_for_the_app() {
            libc::sigaddset(defaults.as_mut_ptr(), sig.raw());
        }
        let status = libc::posix_spawnattr_init(attr.as_mut_ptr());
        if status != 0 {
            return Err(io::Error::from_raw_os_error(status));
        }
        let attr_ptr = attr.as_mut_ptr();
        let flags = libc::POSIX_SPAWN_SETPGROUP
            | libc::POSIX_SPAWN_SETSIGMASK
            | libc::POSIX_SPAWN_SETSIGDEF;
        let mut status = libc::posix_spawnattr_setflags(attr_ptr, flags as libc::c_short);
        if status == 0 {
            status = libc::posix_spawnattr_setpgroup(attr_ptr, 0);
        }
        if status == 0 {
            status = libc::posix_spawnattr_setsigmask(attr_ptr, &inherited.mask);
        }
        if status == 0 {
            status = libc::posix_spawnattr_setsigdefault(attr_ptr, defaults.as_ptr());
        }
        if status == 0 {
            status = libc::posix_spawnp(
                &mut pid,
                argv[0].as_ptr(),
                std::ptr::null(),
                attr_ptr,
                argv_ptrs.as_ptr(),
                envp_ptrs.as_ptr(),
            );
        }
        libc::posix_spawnattr_destroy(attr_ptr);
        status
    };
    if status != 0 {
        return Err(io::Error::from_raw_os_error(status));
    }
    Ok(pid)
}

/// Each item as a C string; an interior NUL cannot be passed to exec.
fn c_strings(items: impl Iterator<Item = Vec<u8>>) -> io::Result<Vec<CString>> {
    items
        .map(|bytes| {
            CString::new(bytes).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a NUL byte in an argument or in the environment",
                )
            })
        })
        .collect()
}

/// The pointer array exec takes: one per string, then a null pointer.
fn null_terminated(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|string| string.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

/// Fork, [`restore_in_child`], exec: for a terminal's foreground and for
/// handled signals inherited as ignored.
fn fork_and_exec(command: &[OsString], inherited: &Inherited) -> io::Result<i32> {
    let (program, args) = command.split_first().ok_or(io::ErrorKind::InvalidInput)?;
    let mut builder = Command::new(program);
    builder.args(args).process_group(0);
    for name in PRIVATE_ENV {
        builder.env_remove(name);
    }
    let restore = *inherited;
    // SAFETY: the hook runs in the forked child before exec. It only calls
    // async-signal-safe functions (sigfillset, sigprocmask, signal,
    // isatty, tcsetpgrp, getpid), allocates nothing and takes
    // no locks, so it is sound even if the parent had other threads.
    unsafe {
        builder.pre_exec(move || {
            restore_in_child(&restore);
            Ok(())
        });
    }
    // Dropping the handle neither waits nor kills.
    let child = builder.spawn()?;
    i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))
}

/// The child side of [`fork_and_exec`]: runs between fork and exec.
fn restore_in_child(inherited: &Inherited) {
    let mut all = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: only async-signal-safe calls on valid, initialised memory;
    // every call's failure is harmless (an invalid or reserved signal
    // number, a stdin that is not our terminal) and deliberately ignored.
    unsafe {
        // Nothing may interrupt this hook: block everything first.
        libc::sigfillset(all.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, all.as_ptr(), std::ptr::null_mut());
        // Caught signals reset to default at exec by themselves, ignored
        // ones stay ignored. So only two kinds need a call: what drainit
        // inherited as ignored but may not ignore now, and what drainit
        // ignores for itself but did not inherit so.
        for number in inherited.ignored_again_for_the_app() {
            libc::signal(number, libc::SIG_IGN);
        }
        for sig in inherited.defaults_for_the_app() {
            libc::signal(sig.raw(), libc::SIG_DFL);
        }
        // Take the terminal's foreground so Ctrl-C and job control reach the
        // app. SIGTTOU is blocked, so a background caller is not stopped.
        if libc::isatty(libc::STDIN_FILENO) == 1 {
            libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
        }
        libc::sigprocmask(libc::SIG_SETMASK, &inherited.mask, std::ptr::null_mut());
    }
}

/// `pidfd_open(2)`; `None` where the kernel (or a seccomp profile) lacks it.
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    match i32::try_from(fd) {
        Ok(fd) if fd >= 0 => {
            // SAFETY: the kernel just returned this descriptor; nothing else owns it.
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        }
        _ => {
            debug!(pid, error = %io::Error::last_os_error(), "no pidfd; signalling by pid");
            None
        }
    }
}

/// `pidfd_send_signal(2)`: ESRCH once the process has exited.
fn pidfd_send_signal(fd: &OwnedFd, sig: Sig) -> nix::Result<()> {
    let null = std::ptr::null::<libc::siginfo_t>();
    // SAFETY: a valid descriptor, a signal number, a null siginfo (the
    // kernel fills in SI_USER) and no flags.
    let status = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig.raw(),
            null,
            0,
        )
    };
    nix::errno::Errno::result(status).map(drop)
}

/// Sends a raw signal number (real-time ones included, which nix's
/// `Signal` cannot carry) to a pid, or to a process group when negative.
/// Only for targets that have no [`Process`] handle: groups, and
/// drainit's leftovers as PID 1 (`-1`).
pub fn kill(pid: i32, sig: Sig) -> nix::Result<()> {
    // SAFETY: kill(2) takes two integers and touches no memory.
    nix::errno::Errno::result(unsafe { libc::kill(pid, sig.raw()) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_of_nothing_is_esrch() {
        // A pid far above pid_max never exists.
        assert_eq!(kill(i32::MAX, Sig::TERM), Err(nix::errno::Errno::ESRCH));
    }

    #[test]
    fn a_pidfd_does_not_follow_the_pid() {
        // A child that exits at once: once it is reaped, its pidfd answers
        // ESRCH even if the number were handed out again.
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = i32::try_from(child.id()).expect("pid");
        let process = Process::open(pid);
        assert!(process.pidfd.is_some(), "this kernel has pidfd_open");
        child.wait().expect("reap true");
        assert_eq!(process.signal(Sig::TERM), Err(nix::errno::Errno::ESRCH));
    }
}
