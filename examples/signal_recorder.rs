//! Test fixture: a process that records every signal it receives.
//!
//! ```text
//! signal_recorder DIR NAME [--grandchild NAME2] [--on-term exit|ignore|cleanup:MS]
//!                 [--exit-on SIGNUM] [--exit-code N] [--heartbeat] [--catch-faults]
//! ```
//!
//! Files it writes in DIR:
//! - `NAME.pid`: its pid (as seen in its own pid namespace);
//! - `NAME.signals`: one line `SIGNUM MONOTONIC_NS` per signal received,
//!   written by the signal handler itself (one `write(2)` per line);
//! - `NAME.ready`: created once every handler is installed;
//! - `NAME.heartbeat` (with `--heartbeat`): a line `MONOTONIC_NS` every 10 ms;
//! - `NAME.cleanup-done` (with `--on-term cleanup:MS`): written MS ms after
//!   the exit signal arrived, just before exiting.
//!
//! `--catch-faults` also records SEGV, ABRT, BUS, FPE, ILL, TRAP and SYS
//! (sent with `kill`; they are left alone otherwise, as real faults).
//! `--grandchild NAME2` forks a second recorder (same options, same process
//! group) that writes the files of NAME2. The exit signal (`--exit-on`,
//! SIGTERM unless told) ends the process with `--exit-code` (0), after the
//! cleanup with `cleanup:MS`, or is only recorded with `ignore`.
//! CLOCK_MONOTONIC is system-wide, so tests compare these times with their own.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

#[path = "support/signal_safe.rs"]
mod signal_safe;
use signal_safe::{monotonic_ns, put_decimal};

/// Where the handler appends its lines.
static RECORD_FD: AtomicI32 = AtomicI32::new(-1);
/// The signal that ends the recorder.
static EXIT_ON: AtomicI32 = AtomicI32::new(libc::SIGTERM);
/// When the exit signal arrived (CLOCK_MONOTONIC ns), 0 until then.
static EXIT_SIGNAL_AT: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy)]
enum OnTerm {
    Exit,
    Ignore,
    Cleanup(u64),
}

struct Options {
    dir: PathBuf,
    name: String,
    grandchild: Option<String>,
    on_term: OnTerm,
    exit_code: i32,
    heartbeat: bool,
    catch_faults: bool,
}

/// The handler: only async-signal-safe work (clock, formatting on the stack, write).
extern "C" fn on_signal(sig: libc::c_int) {
    let now = monotonic_ns();
    let mut line = [0u8; 48];
    let mut end = put_decimal(&mut line, 0, sig as u64);
    line[end] = b' ';
    end = put_decimal(&mut line, end + 1, now);
    line[end] = b'\n';
    end += 1;
    let fd = RECORD_FD.load(Ordering::SeqCst);
    // SAFETY: write(2) reads `end` initialised bytes of `line`.
    unsafe { libc::write(fd, line.as_ptr().cast(), end) };
    if sig == EXIT_ON.load(Ordering::SeqCst) {
        let _ = EXIT_SIGNAL_AT.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
    }
}

fn install_handlers(catch_faults: bool) {
    let faults = [
        libc::SIGILL,
        libc::SIGTRAP,
        libc::SIGABRT,
        libc::SIGBUS,
        libc::SIGFPE,
        libc::SIGSEGV,
        libc::SIGSYS,
    ];
    for sig in 1..=libc::SIGRTMAX() {
        let uncatchable = [libc::SIGKILL, libc::SIGSTOP, libc::SIGCHLD].contains(&sig);
        if uncatchable || (!catch_faults && faults.contains(&sig)) {
            continue;
        }
        // SAFETY: a zeroed sigaction is valid; the handler only does
        // async-signal-safe work. glibc refuses its two reserved real-time
        // signals with EINVAL, which is fine.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            // Block every signal while one is handled: handlers never nest,
            // so the record is in delivery order, lowest pending number first.
            libc::sigfillset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

fn file(dir: &Path, name: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{name}.{suffix}"))
}

/// Points the handler at NAME.signals and announces the pid, then readiness.
fn become_recorder(options: &Options, name: &str) {
    let record = OpenOptions::new()
        .create(true)
        .append(true)
        .open(file(&options.dir, name, "signals"))
        .expect("open the signal record");
    let old = RECORD_FD.swap(record.into_raw_fd(), Ordering::SeqCst);
    if old >= 0 {
        // SAFETY: closing the fd inherited from the parent recorder, owned here.
        unsafe { libc::close(old) };
    }
    std::fs::write(
        file(&options.dir, name, "pid"),
        std::process::id().to_string(),
    )
    .expect("write the pid file");
}

fn parse_args() -> Options {
    let mut args = std::env::args().skip(1);
    let usage = "usage: signal_recorder DIR NAME [--grandchild NAME2] [--on-term exit|ignore|cleanup:MS] [--exit-on SIGNUM] [--exit-code N] [--heartbeat]";
    let dir = PathBuf::from(args.next().expect(usage));
    let name = args.next().expect(usage);
    let mut options = Options {
        dir,
        name,
        grandchild: None,
        on_term: OnTerm::Exit,
        exit_code: 0,
        heartbeat: false,
        catch_faults: false,
    };
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--grandchild" => options.grandchild = Some(args.next().expect(usage)),
            "--catch-faults" => options.catch_faults = true,
            "--on-term" => {
                let value = args.next().expect(usage);
                options.on_term = match value.as_str() {
                    "exit" => OnTerm::Exit,
                    "ignore" => OnTerm::Ignore,
                    other => OnTerm::Cleanup(
                        other
                            .strip_prefix("cleanup:")
                            .and_then(|ms| ms.parse().ok())
                            .expect(usage),
                    ),
                };
            }
            "--exit-on" => {
                let sig: i32 = args.next().and_then(|s| s.parse().ok()).expect(usage);
                EXIT_ON.store(sig, Ordering::SeqCst);
            }
            "--exit-code" => {
                options.exit_code = args.next().and_then(|s| s.parse().ok()).expect(usage)
            }
            "--heartbeat" => options.heartbeat = true,
            _ => panic!("{usage}"),
        }
    }
    options
}

fn main() {
    let options = parse_args();
    install_handlers(options.catch_faults);
    become_recorder(&options, &options.name);
    let mut name = options.name.clone();
    if let Some(grandchild) = &options.grandchild {
        // SAFETY: the process is single-threaded, so the forked child may run Rust code.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            name = grandchild.clone();
            become_recorder(&options, &name);
        }
    }
    std::fs::write(file(&options.dir, &name, "ready"), "").expect("write the ready file");
    let mut heartbeat = options.heartbeat.then(|| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(file(&options.dir, &name, "heartbeat"))
            .expect("open the heartbeat file")
    });
    loop {
        let exit_at = EXIT_SIGNAL_AT.load(Ordering::SeqCst);
        if exit_at != 0 {
            match options.on_term {
                OnTerm::Exit => std::process::exit(options.exit_code),
                OnTerm::Ignore => {}
                OnTerm::Cleanup(ms) => {
                    std::thread::sleep(Duration::from_millis(ms));
                    let done = format!("{exit_at} {}\n", monotonic_ns());
                    std::fs::write(file(&options.dir, &name, "cleanup-done"), done)
                        .expect("write the cleanup file");
                    std::process::exit(options.exit_code);
                }
            }
        }
        if let Some(beat) = heartbeat.as_mut() {
            let _ = writeln!(beat, "{}", monotonic_ns());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
