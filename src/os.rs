//! drainit's own process state: what it inherited, and what it changes
//! about itself to do its job.
//!
//! drainit blocks exactly the signals it handles and reads them from a
//! signalfd, gives those it inherited as ignored the default disposition,
//! ignores SIGTTIN/SIGTTOU (and blocks SIGPIPE instead of ignoring it), raises its open-file limit for the admin
//! server, becomes a child subreaper when it is not PID 1 and leaves the
//! directory it was started in. The app must see none of that: it gets the
//! captured [`Inherited`] state back in `child`.
//!
//! The capture and the blocking happen in [`early_init`], which the binary
//! runs from an `.init_array` constructor, before Rust's runtime and
//! `main`: a namespace's PID 1 is sent SIGTERM by its engine at any time,
//! and the kernel drops a signal whose disposition is the default when it
//! is sent to a namespace init (`sig_task_ignored`), unless it is blocked.
//! Blocking first shrinks the window in which a SIGTERM is lost to the
//! time the kernel and the loader need to reach the constructor.

use std::mem::MaybeUninit;
use std::str::SplitWhitespace;
use std::sync::OnceLock;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::SigmaskHow;
use tracing::debug;

use crate::signal_stream;
use crate::signals::Sig;

/// Highest signal number tracked (SIGRTMAX is 64 on Linux).
pub const MAX_SIG: usize = 65;

/// The signal state and file limit drainit was started with, captured
/// before it changes any of them, to hand on to the app unchanged.
#[derive(Clone, Copy)]
pub struct Inherited {
    /// The signal mask.
    pub mask: libc::sigset_t,
    /// Which signals were ignored (index = signal number).
    pub ignored: [bool; MAX_SIG],
    /// RLIMIT_NOFILE, soft and hard.
    pub nofile: (libc::rlim_t, libc::rlim_t),
}

/// What [`early_init`] captured, and whether taking the signals worked.
static EARLY: OnceLock<(Inherited, Result<(), nix::Error>)> = OnceLock::new();

/// Captures the inherited state, then takes the handled signals. Runs once;
/// later calls return what the first one found. The binary calls it from
/// an `.init_array` constructor, while the process has a single thread;
/// `main` calls it again to read the result.
pub fn early_init() -> (Inherited, Result<(), nix::Error>) {
    *EARLY.get_or_init(|| {
        // One syscall blocks the handled signals and reads the inherited
        // mask: from its return on, no SIGTERM can be dropped.
        let (mask, blocked) =
            match signal_stream::handled_set().thread_swap_mask(SigmaskHow::SIG_SETMASK) {
                Ok(old) => (*old.as_ref(), Ok(())),
                Err(error) => (current_mask(), Err(error)),
            };
        let inherited = Inherited::capture(mask);
        inherited.reset_ignored_handled();
        (inherited, blocked)
    })
}

/// The calling thread's signal mask.
fn current_mask() -> libc::sigset_t {
    let mut mask = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: with a null `set`, pthread_sigmask only writes the current
    // mask into `mask`, which is valid, writable memory of the right type.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), mask.as_mut_ptr());
        mask.assume_init()
    }
}

impl Inherited {
    /// Reads the ignored dispositions and RLIMIT_NOFILE, with the mask
    /// read when the handled signals were blocked.
    fn capture(mask: libc::sigset_t) -> Inherited {
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
        // Rust's runtime sets SIGPIPE to ignored before `main` (and may have
        // done so before this ran); what drainit was given cannot be known
        // for sure, so the app gets the default, as from a shell.
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

    /// What the app must get back from drainit's own ignores (SIGPIPE,
    /// SIGTTIN, SIGTTOU): the default, unless drainit was started with it
    /// ignored too.
    pub fn defaults_for_the_app(&self) -> impl Iterator<Item = Sig> + '_ {
        Sig::defaults_for_the_app()
            .into_iter()
            .filter(|&sig| !self.was_ignored(sig))
    }

    /// The signal numbers drainit was started with ignored that drainit
    /// may not ignore any more (a handled one is only blocked, see
    /// `Inherited::reset_ignored_handled`): exec would not make them
    /// ignored again for the app, so the app's start must.
    pub fn ignored_again_for_the_app(&self) -> impl Iterator<Item = libc::c_int> + '_ {
        let own = Sig::ignored_by_drainit();
        self.ignored
            .iter()
            .enumerate()
            .filter(move |&(number, &ignored)| {
                ignored
                    && !own
                        .iter()
                        .any(|sig| usize::try_from(sig.raw()) == Ok(number))
            })
            .filter_map(|(number, _)| libc::c_int::try_from(number).ok())
    }

    /// Gives each handled signal drainit inherited as ignored the default
    /// disposition, which while blocked only means "not ignored". SIGCHLD
    /// needs it: ignored, it makes the kernel reap children itself, so
    /// `waitpid` would never see the app's exit.
    fn reset_ignored_handled(&self) {
        for sig in signal_stream::handled() {
            if self.was_ignored(sig) {
                // SAFETY: SIG_DFL installs no handler code, the number is a
                // valid, catchable signal, and the signal is blocked.
                unsafe { libc::signal(sig.raw(), libc::SIG_DFL) };
            }
        }
    }

    /// Sets the rest of drainit's own signal state, the handled signals
    /// staying blocked for the signalfd: SIGTTIN/SIGTTOU ignored, since
    /// drainit may write logs while the app owns the terminal; SIGPIPE
    /// back to the default (Rust's runtime ignores it before `main`, and
    /// the kernel discards an ignored signal when it is sent, so a
    /// `kill -PIPE 1` would never reach the app). Blocked in every thread,
    /// a SIGPIPE never acts: drainit's own writes to a closed pipe only
    /// fail with EPIPE.
    pub fn prepare_drainit(&self) {
        for sig in Sig::ignored_by_drainit() {
            // SAFETY: setting SIG_IGN installs no handler code; the numbers are valid.
            unsafe { libc::signal(sig.raw(), libc::SIG_IGN) };
        }
        // SAFETY: SIG_DFL installs no handler code; SIGPIPE is blocked in
        // every thread (the handled set, from the constructor on).
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }

    /// Raises drainit's open-file limit to its hard maximum, for the admin
    /// server's connections. Only once the app runs: the app inherits
    /// drainit's limit on both spawn paths, and must get the one drainit
    /// was given.
    pub fn raise_file_limit(&self) {
        let (soft, hard) = self.nofile;
        if soft < hard {
            if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                debug!(%error, "could not raise the open-file limit");
            }
        }
    }
}

/// Reads `/proc/PID/stat` and hands `fields` its fields from the third
/// (the state) on. The command name (field 2) may hold spaces and
/// parentheses, so they are counted from the last `)`.
pub fn with_proc_stat<T>(
    pid: i32,
    fields: impl FnOnce(SplitWhitespace<'_>) -> Option<T>,
) -> Option<T> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    fields(stat_fields(&stat)?)
}

/// The fields of a `/proc/PID/stat` line from the third (the state) on.
pub fn stat_fields(stat: &str) -> Option<SplitWhitespace<'_>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace())
}

/// Environment variables drainit reads that the app must not see: the
/// `/prestop` token is a secret of drainit's, not of the app's. The app
/// starts without them (`child`); [`hide_private_environment`]
/// hides them in drainit itself.
pub const PRIVATE_ENV: &[&str] = &["DRAINIT_PRESTOP_TOKEN"];

/// Keeps drainit's secrets from the app, which usually runs as drainit's
/// user: the values of [`PRIVATE_ENV`] (the `/prestop` token) are overwritten in
/// drainit's own environment block, which `/proc/PID/environ` shows, and,
/// when `secret_in_use`, drainit makes itself non-dumpable, so that a
/// process of the same user can neither read its `/proc/PID/environ` or
/// `/proc/PID/mem` nor ptrace it (a core dump is not written either).
/// drainit's own reads of `/proc/self` (`fd`, `stat`, `maps`) stay
/// allowed to itself, and the app is dumpable again once it execs. Call
/// it after the command line is parsed (clap copied every value), before
/// any other thread exists.
pub fn hide_private_environment(secret_in_use: bool) {
    wipe_environment_values(PRIVATE_ENV);
    if secret_in_use {
        if let Err(error) = nix::sys::prctl::set_dumpable(false) {
            debug!(%error, "could not make drainit non-dumpable");
        }
    }
}

/// Overwrites with NULs the value of every `NAME=value` entry of drainit's
/// environment block whose name is in `names`.
fn wipe_environment_values(names: &[&str]) {
    let Some((start, end)) = environment_block() else {
        return;
    };
    let Some(length) = end.checked_sub(start).filter(|length| *length > 0) else {
        return;
    };
    // SAFETY: [start, end) is this process's environment block as the
    // kernel reports it (`env_start`/`env_end`): the strings execve copied
    // to the top of the main thread's stack, mapped, writable and alive
    // for the whole process. No other thread runs yet, and no Rust
    // reference points into it (std::env hands out copies); libc's
    // `environ` points at these strings and reads them as shorter values.
    let block = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, length) };
    for entry in block.split_mut(|byte| *byte == 0) {
        for name in names {
            let named = entry.starts_with(name.as_bytes()) && entry.get(name.len()) == Some(&b'=');
            if let Some(value) = entry.get_mut(name.len() + 1..).filter(|_| named) {
                value.fill(0);
            }
        }
    }
}

/// `env_start` and `env_end` (fields 50 and 51) of `/proc/self/stat`.
fn environment_block() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut fields = stat_fields(&stat)?;
    let start = fields.nth(47)?.parse().ok()?;
    let end = fields.next()?.parse().ok()?;
    Some((start, end))
}

/// Makes drainit a child subreaper when it is not PID 1, so orphans of
/// the app are re-parented to it and reaped, as they would be by PID 1.
pub fn become_subreaper() -> nix::Result<()> {
    if is_pid1() {
        return Ok(());
    }
    nix::sys::prctl::set_child_subreaper(true)
}

/// Whether drainit is the init of its PID namespace.
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Leaves the directory drainit was started in (the app, already started,
/// keeps it), so that drainit holds no reference to a directory a user
/// may want to unmount or remove, as tini and dumb-init do not either.
pub fn leave_start_directory() {
    if let Err(error) = std::env::set_current_dir("/") {
        debug!(%error, "could not chdir to /");
    }
}

/// Gives the kernel back the main thread's stack pages below the current
/// frame: clap's derived parser runs ~60 kB deep, and those pages would
/// stay resident for drainit's whole life although nothing uses them
/// again until the stack grows that deep anew. Call it from `main`, right
/// after parsing. A failure changes nothing but the footprint.
pub fn release_unused_stack() {
    const KEEP: usize = 16 * 1024;
    let marker = 0u8;
    let here = std::ptr::addr_of!(marker) as usize;
    let Some(low) = main_stack_low() else {
        return;
    };
    let page = 4096;
    let end = here.saturating_sub(KEEP) & !(page - 1);
    if end <= low {
        return;
    }
    // SAFETY: [low, end) lies in the main thread's own stack mapping, more
    // than KEEP bytes below the live frame of this call: no frame, red zone
    // or signal frame lives there (drainit installs no handler that runs
    // on this stack; Rust's fault handlers use an alternate stack).
    // MADV_DONTNEED on private anonymous memory only drops the pages; the
    // stack reads zeros there if it grows that deep again.
    let released =
        unsafe { libc::madvise(low as *mut libc::c_void, end - low, libc::MADV_DONTNEED) };
    if released != 0 {
        debug!(error = %std::io::Error::last_os_error(), "could not release unused stack pages");
    }
}

/// The lowest address of the `[stack]` mapping of `/proc/self/maps` (the
/// main thread's stack).
fn main_stack_low() -> Option<usize> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|line| line.ends_with("[stack]"))?;
    let (low, _) = line.split_once('-')?;
    usize::from_str_radix(low, 16).ok()
}
