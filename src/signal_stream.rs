//! The signal stream: every signal drainit handles, read from a `signalfd`.
//!
//! drainit installs no signal handler. `main` blocks the handled signals
//! (every forwardable one, real-time ones included, and SIGCHLD) before
//! the runtime exists, so every thread started later inherits the mask and
//! none of them ever runs a default action for them; the kernel keeps them
//! pending for the process until [`SignalStream`] reads them from a
//! nonblocking `signalfd` registered with tokio's reactor. This is tini's
//! scheme (a blocked set collected with `sigtimedwait`) on an event loop:
//!
//! - a burst coalesces in the pending set: children exiting by the
//!   thousand leave one pending SIGCHLD at a time, not one handler run and
//!   one pipe write each, and one `read` takes every signal pending;
//! - no handler and no self-pipe: nothing runs in signal context, and
//!   start-up costs one `rt_sigprocmask` and one `signalfd` instead of a
//!   `rt_sigaction` and a registry update per signal.
//!
//! Two kernel rules matter (`sig_ignored` in kernel/signal.c): a blocked
//! signal is never discarded when it is sent, whatever its disposition, so
//! a signal drainit inherited as ignored still reaches the signalfd; but an
//! ignored SIGCHLD makes the kernel reap children itself, leaving nothing
//! for `waitpid`. [`crate::os::early_init`] therefore gives
//! every handled signal drainit inherited as ignored the default
//! disposition (the app gets the ignore back before it execs).

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::error;

use crate::signals::Sig;

/// The size of one record read from a signalfd.
const SIGINFO: usize = std::mem::size_of::<libc::signalfd_siginfo>();
/// Records taken per `read`: more than the standard signals that can be
/// pending at once, so a short read is the usual case and drains the fd.
const BATCH: usize = 32;

/// Every signal drainit handles: the forwardable ones, the faults (which
/// it forwards only when another process sent them) and SIGCHLD.
pub fn handled() -> Vec<Sig> {
    let mut handled = Sig::forwardable();
    handled.extend(Sig::faults());
    handled.push(Sig::CHLD);
    handled.sort_unstable();
    handled
}

/// The set of [`handled`] signals. It starts from the full set, whose
/// real-time part is exactly `SIGRTMIN..=SIGRTMAX` of the C library in
/// use (glibc leaves out 32–33, musl 32–34, for their own threads), and
/// drops the standard signals that are not handled: nix's `Signal` names
/// every standard signal but no real-time one. It allocates nothing and
/// makes no syscall: it runs before anything else in drainit.
pub fn handled_set() -> SigSet {
    let mut set = SigSet::all();
    for number in (1..32).filter(|n| Sig::never_taken(*n)) {
        if let Ok(signal) = Signal::try_from(number) {
            set.remove(signal);
        }
    }
    set
}

/// One signal as the signalfd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The signal.
    pub sig: Sig,
    /// `ssi_code`: ≤ 0 when a process sent it (`SI_USER`, `SI_QUEUE`,
    /// `SI_TKILL`), > 0 when the kernel raised it.
    pub code: i32,
    /// `ssi_pid`: the sender's pid in drainit's namespace (0 when the
    /// sender is outside it).
    pub from_pid: u32,
}

impl Received {
    /// Whether a process sent it, rather than the kernel.
    pub fn sent_by_a_process(&self) -> bool {
        self.code <= 0
    }

    /// Whether another process sent it: neither the kernel nor drainit
    /// itself (the kernel marks the SIGPIPE of a write to a closed pipe
    /// as sent by the writer, `SI_USER` from its own pid).
    pub fn sent_by_another_process(&self) -> bool {
        self.sent_by_a_process() && self.from_pid != std::process::id()
    }
}

/// The handled signals as an async stream. Create it inside the runtime,
/// once they are blocked ([`crate::os::early_init`]).
pub struct SignalStream {
    fd: AsyncFd<SignalFd>,
    queue: VecDeque<Received>,
    failed: bool,
}

impl SignalStream {
    /// Opens a nonblocking, close-on-exec signalfd for the handled signals
    /// and registers it with the runtime's reactor.
    pub fn new() -> io::Result<SignalStream> {
        let flags = SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC;
        let fd = SignalFd::with_flags(&handled_set(), flags)?;
        let fd = register(fd)?;
        Ok(SignalStream {
            fd,
            queue: VecDeque::new(),
            failed: false,
        })
    }

    /// The next signal received, in the order the kernel hands them over.
    /// `None` only after a failure no retry can mend (logged once); the
    /// stream stays empty from then on.
    pub async fn next(&mut self) -> Option<Received> {
        loop {
            if let Some(sig) = self.queue.pop_front() {
                return Some(sig);
            }
            if self.failed {
                return None;
            }
            let mut guard = match self.fd.readable().await {
                Ok(guard) => guard,
                Err(failure) => {
                    self.fail(&failure.to_string());
                    continue;
                }
            };
            match read_batch(guard.get_inner(), &mut self.queue) {
                // A short read took everything pending: wait for the next
                // edge. Readiness is only cleared if no new event came in
                // since `readable()`, so nothing sent meanwhile is missed.
                Ok(false) | Err(Errno::EAGAIN) => guard.clear_ready(),
                // A full batch: there may be more, read again.
                Ok(true) | Err(Errno::EINTR) => {}
                Err(failure) => self.fail(&failure.to_string()),
            }
        }
    }

    fn fail(&mut self, failure: &str) {
        error!("cannot read signals from the signalfd: {failure}; signals are no longer handled");
        self.failed = true;
    }
}

/// Registers drainit's signalfd with the runtime's reactor, for reading.
/// Call it inside the runtime.
fn register(fd: SignalFd) -> io::Result<AsyncFd<SignalFd>> {
    // SAFETY: `SignalFd` owns its `OwnedFd`: the descriptor is open from
    // creation until the `SignalFd` is dropped, `as_raw_fd` always returns
    // that one, and nothing else can close or replace it while the
    // `AsyncFd` owns the `SignalFd`.
    let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
    Ok(registered?)
}

/// Reads up to [`BATCH`] records into `queue`; true when the batch was
/// full (more may be pending).
fn read_batch(fd: &SignalFd, queue: &mut VecDeque<Received>) -> nix::Result<bool> {
    let mut buffer = [0u8; SIGINFO * BATCH];
    let read = nix::unistd::read(fd.as_raw_fd(), &mut buffer)?;
    let records = buffer.get(..read).unwrap_or_default();
    queue.extend(records.chunks_exact(SIGINFO).filter_map(decode));
    Ok(read == buffer.len())
}

/// The fields of one `struct signalfd_siginfo` drainit uses: `ssi_signo`
/// (u32 at 0), `ssi_code` (i32 at 8) and `ssi_pid` (u32 at 12).
fn decode(record: &[u8]) -> Option<Received> {
    let field = |at: usize| -> Option<[u8; 4]> { record.get(at..at + 4)?.try_into().ok() };
    let signo = u32::from_ne_bytes(field(0)?);
    let sig = Sig::from_raw(i32::try_from(signo).ok()?)?;
    Some(Received {
        sig,
        code: i32::from_ne_bytes(field(8)?),
        from_pid: u32::from_ne_bytes(field(12)?),
    })
}

#[cfg(test)]
mod tests {
    /// Blocks exactly the [`handled`] signals in the calling thread (and
    /// unblocks the rest), as `os::early_init` does for drainit.
    fn block_handled() -> nix::Result<()> {
        super::handled_set().thread_set_mask()
    }

    use super::*;
    use nix::sys::signal::raise;

    /// The bits of a hex mask from /proc (`SigBlk:` etc.) as signal numbers.
    fn members(mask: u64) -> Vec<i32> {
        (1..=64).filter(|n| mask & (1 << (n - 1)) != 0).collect()
    }

    #[test]
    fn the_set_is_exactly_the_handled_signals() {
        // In a thread of its own: the mask is per thread, and the kernel
        // shows it in /proc/thread-self/status.
        let blocked = std::thread::spawn(|| {
            block_handled().expect("block the handled signals");
            let status =
                std::fs::read_to_string("/proc/thread-self/status").expect("read own status");
            status
                .lines()
                .find_map(|line| line.strip_prefix("SigBlk:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
                .expect("a SigBlk line")
        })
        .join()
        .expect("the thread ran");
        let expected: Vec<i32> = handled().iter().map(|sig| sig.raw()).collect();
        assert_eq!(members(blocked), expected);
        assert!(expected.contains(&libc::SIGCHLD));
        assert!(expected.contains(&(libc::SIGRTMIN() + 1)));
        assert!(expected.contains(&libc::SIGRTMAX()));
        assert!(expected.contains(&libc::SIGPIPE));
        assert!(!expected.contains(&libc::SIGTTOU));
    }

    #[tokio::test]
    async fn a_burst_coalesces_and_comes_out_of_the_stream() {
        // Unit tests share one process with threads that do not block
        // these signals, so raise them in this thread only: a signal sent
        // to a thread stays pending for it, and this thread (the runtime's
        // only one) reads the signalfd.
        block_handled().expect("block the handled signals");
        let mut stream = SignalStream::new().expect("signalfd");
        for signal in [
            Signal::SIGUSR2,
            Signal::SIGUSR2,
            Signal::SIGHUP,
            Signal::SIGUSR2,
        ] {
            raise(signal).expect("raise");
        }
        let wait = std::time::Duration::from_secs(5);
        let mut got = Vec::new();
        for _ in 0..2 {
            let next = tokio::time::timeout(wait, stream.next()).await;
            let received = next
                .expect("a signal within 5 s")
                .expect("the stream goes on");
            assert!(received.sent_by_a_process(), "{received:?}");
            got.push(received.sig);
        }
        // One of each, lowest number first: the three USR2 are one.
        let hup = Sig::from_raw(libc::SIGHUP).expect("HUP");
        let usr2 = Sig::from_raw(libc::SIGUSR2).expect("USR2");
        assert_eq!(got, vec![hup, usr2]);
        let quiet = std::time::Duration::from_millis(50);
        assert!(tokio::time::timeout(quiet, stream.next()).await.is_err());

        // Readiness was cleared on the way: a later signal wakes it again.
        raise(Signal::SIGCHLD).expect("raise");
        let next = tokio::time::timeout(wait, stream.next()).await;
        let received = next.expect("SIGCHLD within 5 s").expect("a signal");
        assert_eq!(received.sig, Sig::CHLD);
    }

    #[test]
    fn a_signal_drainit_caused_itself_is_not_from_another_process() {
        let pipe = Sig::from_raw(libc::SIGPIPE).expect("PIPE");
        let own = std::process::id();
        // The kernel's SIGPIPE for a write of drainit's: SI_USER, its own pid.
        let own_write = Received {
            sig: pipe,
            code: libc::SI_USER,
            from_pid: own,
        };
        assert!(own_write.sent_by_a_process() && !own_write.sent_by_another_process());
        let killed = Received {
            from_pid: own.wrapping_add(1),
            ..own_write
        };
        assert!(killed.sent_by_another_process());
        // From outside drainit's namespace the kernel reports pid 0.
        let from_outside = Received {
            from_pid: 0,
            ..own_write
        };
        assert!(from_outside.sent_by_another_process());
        let raised_by_the_kernel = Received {
            code: 1,
            from_pid: 0,
            ..own_write
        };
        assert!(!raised_by_the_kernel.sent_by_another_process());
    }
}
