//! The bounded queue between the threads that log and fd 2, and the one
//! thread that writes it.
//!
//! The event loop must never wait for stderr: a pipe nobody reads would
//! stall reaping, forwarding and the drain deadline. So a line is only
//! queued (a mutex held for a push, never across a write) and a thread of
//! its own does the blocking `write(2)`. When the queue is full the line
//! is dropped and counted. Write errors (EPIPE once the reader is gone,
//! ENOSPC on `/dev/full`, EIO from a terminal that hung up) drop the line
//! too: nothing is printed about them, there is nowhere to print it. The
//! writer has its own duplicate of fd 2, so nothing drainit or a library
//! does with fd 2 later (closing it, reusing its number) reaches it; a fd
//! 2 closed before drainit started is /dev/null (Rust's runtime opens it).
//!
//! stderr is never made nonblocking: its file description is shared with
//! the app, which would see EAGAIN on its own writes. If the app makes it
//! nonblocking, the thread waits with `poll` where a write says EAGAIN.
//!
//! The writer blocks every signal for itself, so no handled signal is ever
//! delivered to it and a SIGPIPE of its writes stays pending on it instead
//! of acting (see `tests/it/logging.rs`).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::SigSet;

/// At most this many lines wait for the writer.
const MAX_LINES: usize = 256;
/// At most this many bytes wait for the writer (a pipe's buffer holds 64
/// KiB); a longer single line is still taken into an empty queue.
const MAX_BYTES: usize = 64 * 1024;
/// The writer's stack: it only moves bytes, the formatting happens in the
/// thread that logs.
const WRITER_STACK: usize = 64 * 1024;

/// drainit's queue; its writer writes to fd 2.
static QUEUE: LineQueue = LineQueue::new();

/// Log lines dropped so far: the queue was full or the write failed.
pub fn dropped_lines() -> u64 {
    QUEUE.dropped()
}

/// Queues a line for fd 2; never waits for the write.
pub(super) fn push(line: Vec<u8>) {
    QUEUE.push(line);
}

/// Gives [`QUEUE`] its output, a close-on-exec duplicate of fd 2: the
/// same file description, but a number nobody else can close or reuse.
/// The writer thread starts with the first line (a quiet drainit never
/// starts it, and it is not on the way to the app's exec).
pub(super) fn open() -> io::Result<()> {
    let output = io::stderr().as_fd().try_clone_to_owned()?;
    QUEUE.open(output);
    Ok(())
}

/// Waits up to `limit` for the queued lines to be written.
pub(super) fn flush(limit: Duration) -> bool {
    QUEUE.flush(limit)
}

/// Lines waiting for the writer, behind one mutex.
struct Pending {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    /// The writer holds a batch taken from `lines`.
    writing: bool,
    /// A writer thread runs: only then is waiting for it worth anything.
    writer: bool,
    /// Where the writer will write, until the first line starts it.
    output: Option<OwnedFd>,
}

/// A bounded queue of lines and the counter of those it dropped.
pub(super) struct LineQueue {
    pending: Mutex<Pending>,
    /// Signalled when `lines` stops being empty.
    wake: Condvar,
    /// Signalled when the writer has written everything.
    idle: Condvar,
    dropped: AtomicU64,
}

impl LineQueue {
    /// An empty queue with no writer yet.
    pub(super) const fn new() -> LineQueue {
        LineQueue {
            pending: Mutex::new(Pending {
                lines: VecDeque::new(),
                bytes: 0,
                writing: false,
                writer: false,
                output: None,
            }),
            wake: Condvar::new(),
            idle: Condvar::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// The lines dropped so far.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A poisoned lock only means a thread panicked while pushing: the
    /// queue is still consistent, go on with it.
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the output the writer will write to (once; later calls do
    /// nothing).
    pub(super) fn open(&self, output: OwnedFd) {
        let mut pending = self.lock();
        if !pending.writer && pending.output.is_none() {
            pending.output = Some(output);
        }
    }

    /// Queues `line`, or drops and counts it if the queue is full; the
    /// first line starts the writer.
    pub(super) fn push(&'static self, line: Vec<u8>) {
        let mut pending = self.lock();
        let full = pending.lines.len() >= MAX_LINES
            || (!pending.lines.is_empty() && pending.bytes.saturating_add(line.len()) > MAX_BYTES);
        if full {
            drop(pending);
            self.count_dropped(1);
            return;
        }
        let was_empty = pending.lines.is_empty();
        pending.bytes = pending.bytes.saturating_add(line.len());
        pending.lines.push_back(line);
        if let Some(output) = pending.output.as_ref().filter(|_| !pending.writer) {
            // The output stays in `pending` for good, so a thread that
            // cannot be started now (at the pod's process limit) is tried
            // again at the next line, and the started one borrows it.
            let fd = output.as_raw_fd();
            // The new thread inherits this thread's mask, in which the
            // handled signals are blocked (every thread of drainit has
            // them blocked: `main` blocks them before the first starts).
            let writer = std::thread::Builder::new()
                .name("drainit-log".into())
                .stack_size(WRITER_STACK)
                .spawn(move || {
                    // SAFETY: `fd` is the `OwnedFd` in `pending.output` of
                    // this `'static` queue, which is never taken, replaced
                    // (`open` sets it only while empty) or closed.
                    let output = unsafe { BorrowedFd::borrow_raw(fd) };
                    self.write_forever(output);
                });
            // Without a thread the lines stay queued, and the next ones
            // are dropped and counted once the queue is full.
            pending.writer = writer.is_ok();
        }
        drop(pending);
        // The writer only ever waits on an empty queue, checked under the
        // lock: a push into a non-empty one needs no wake-up.
        if was_empty {
            self.wake.notify_one();
        }
    }

    fn count_dropped(&self, lines: u64) {
        self.dropped.fetch_add(lines, Ordering::Relaxed);
    }

    /// The writer thread: takes every queued line at once, writes them
    /// outside the lock, tells [`flush`](Self::flush) when all is written.
    fn write_forever(&self, output: BorrowedFd<'_>) {
        // The thread started with the caller's mask, the handled signals
        // blocked; block the rest too (see the module's doc).
        let _ = SigSet::all().thread_block();
        let mut batch = VecDeque::new();
        loop {
            {
                let mut pending = self.lock();
                pending.writing = false;
                while pending.lines.is_empty() {
                    self.idle.notify_all();
                    pending = self
                        .wake
                        .wait(pending)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                std::mem::swap(&mut pending.lines, &mut batch);
                pending.bytes = 0;
                pending.writing = true;
            }
            for line in batch.drain(..) {
                if write_all(output, &line).is_err() {
                    self.count_dropped(1);
                }
            }
        }
    }

    /// Waits up to `limit` until the writer has written every queued line;
    /// false if it has not (no writer, or stderr blocked).
    pub(super) fn flush(&self, limit: Duration) -> bool {
        let deadline = Instant::now().checked_add(limit);
        let mut pending = self.lock();
        while pending.writer && (pending.writing || !pending.lines.is_empty()) {
            let left = deadline.map_or(limit, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return false;
            }
            pending = self
                .idle
                .wait_timeout(pending, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        pending.lines.is_empty() && !pending.writing
    }
}

/// Writes all of `bytes` to `output`, blocking as long as that takes.
fn write_all(output: BorrowedFd<'_>, mut bytes: &[u8]) -> nix::Result<()> {
    while !bytes.is_empty() {
        match nix::unistd::write(output, bytes) {
            Ok(0) => return Err(Errno::EIO),
            Ok(written) => bytes = bytes.get(written..).unwrap_or_default(),
            Err(Errno::EINTR) => {}
            // Someone made the shared description nonblocking: wait for
            // room, as a blocking write would.
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(output, PollFlags::POLLOUT)];
                match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(error) => return Err(error),
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// A queue of its own whose writer writes into a pipe the test reads.
    fn queue_into_pipe() -> (&'static LineQueue, OwnedFd) {
        let (read, write) = nix::unistd::pipe().expect("pipe");
        let queue = leaked_queue();
        queue.open(write);
        (queue, read)
    }

    fn leaked_queue() -> &'static LineQueue {
        Box::leak(Box::new(LineQueue::new()))
    }

    fn read_some(fd: &OwnedFd, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buffer = [0u8; 4096];
        while got.len() < want {
            let read = nix::unistd::read(fd.as_raw_fd(), &mut buffer).expect("read");
            assert!(read > 0, "the pipe closed early");
            got.extend_from_slice(&buffer[..read]);
        }
        got
    }

    #[test]
    fn a_blocked_writer_drops_and_counts_and_flush_gives_up_in_time() {
        // The writer thread (and the pipe's write end) live as long as
        // the test binary.
        let (queue, read) = queue_into_pipe();

        // Written in order while the reader keeps up.
        queue.push(b"one\n".to_vec());
        queue.push(b"two\n".to_vec());
        assert_eq!(read_some(&read, 8), b"one\ntwo\n");
        assert!(queue.flush(Duration::from_secs(5)), "all written");
        assert_eq!(queue.dropped(), 0);

        // Nobody reads now. Round after round the pipe fills; once it is
        // full the writer blocks in write(2) and flush gives up at its bound.
        let line = vec![b'x'; 1023];
        let mut blocked = false;
        for _ in 0..20 {
            for _ in 0..100 {
                queue.push(line.clone());
            }
            let started = Instant::now();
            if !queue.flush(Duration::from_millis(100)) {
                let waited = started.elapsed();
                assert!(
                    waited >= Duration::from_millis(100),
                    "gave up early: {waited:?}"
                );
                // A bound, not a speed claim: it gave up instead of waiting.
                assert!(waited < Duration::from_secs(10), "flush waited {waited:?}");
                blocked = true;
                break;
            }
        }
        assert!(blocked, "the pipe never filled");

        // Behind the blocked writer the queue fills and the rest is
        // dropped and counted, while push itself never waits.
        let before = queue.dropped();
        for _ in 0..MAX_LINES * 2 {
            queue.push(b"y\n".to_vec());
        }
        let dropped = queue.dropped();
        assert!(
            dropped - before >= MAX_LINES as u64,
            "only {} of {} dropped",
            dropped - before,
            MAX_LINES * 2
        );

        // Once the reader drains the pipe everything queued comes out.
        let reader = std::thread::spawn(move || {
            let mut buffer = [0u8; 65536];
            let mut total = 0usize;
            loop {
                match nix::unistd::read(read.as_raw_fd(), &mut buffer) {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
            }
        });
        assert!(queue.flush(Duration::from_secs(20)), "written once read");
        assert_eq!(queue.dropped(), dropped, "nothing more was dropped");
        drop(reader);
    }

    #[test]
    fn without_a_writer_lines_wait_and_flush_returns_at_once() {
        let queue = leaked_queue();
        for _ in 0..MAX_LINES + 10 {
            queue.push(b"line\n".to_vec());
        }
        assert_eq!(queue.dropped(), 10);
        let started = Instant::now();
        assert!(!queue.flush(Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn the_byte_bound_drops_lines_but_takes_a_long_one_into_an_empty_queue() {
        let queue = leaked_queue();
        queue.push(vec![b'a'; MAX_BYTES * 2]);
        assert_eq!(queue.dropped(), 0, "a long line alone is taken");
        queue.push(b"short\n".to_vec());
        assert_eq!(queue.dropped(), 1, "nothing fits behind it");
    }

    #[test]
    fn write_errors_are_returned_not_raised() {
        // /dev/full: ENOSPC.
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full");
        assert_eq!(write_all(full.as_fd(), b"x\n"), Err(Errno::ENOSPC));
        // A pipe without a reader: EPIPE (SIGPIPE is ignored by Rust's
        // runtime in the test binary too).
        let (read, write) = nix::unistd::pipe().expect("pipe");
        drop(read);
        assert_eq!(write_all(write.as_fd(), b"x\n"), Err(Errno::EPIPE));
    }
}
