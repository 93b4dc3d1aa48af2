//! The app of the container tests (tests/container.rs): a tiny HTTP app that needs nothing
//! but the kernel, so it runs in a `FROM scratch` image (built static for
//! the musl target) beside drainit, with no shell and no files to write.
//!
//! ```text
//! http_app PORT [--on-term die|ignore|exit:N]
//! ```
//!
//! It serves on 127.0.0.1:PORT, one connection at a time:
//! - `GET /healthz`: 200 `ok` (what drainit's `--ready-check` polls);
//! - `GET /signals`: one line `SIGNUM COUNT` per signal received so far;
//! - `GET /whoami`: `UID GID`, the ids it runs as;
//! - `GET /orphans?n=K`: forks a child that forks K grandchildren and
//!   exits; the grandchildren, orphaned to PID 1, exit as soon as they see
//!   their new parent. Answers `K` once the child is reaped.
//!
//! Every signal it catches is written to stderr by the handler itself, as
//! `http_app: signal SIGNUM at MONOTONIC_NS`. The container shares the
//! host's CLOCK_MONOTONIC, so a test compares these times with its own.
//! On SIGTERM it dies by that signal (`die`, the default, as most runtimes
//! do: exit status 143 through drainit), keeps serving (`ignore`), or exits
//! with status N (`exit:N`).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

#[path = "../../../examples/support/signal_safe.rs"]
mod signal_safe;
use signal_safe::{monotonic_ns, put_decimal};

/// How many times each signal (by number) arrived.
static SIGNAL_COUNTS: [AtomicU32; 65] = [const { AtomicU32::new(0) }; 65];
/// What SIGTERM does: -1 die by it, -2 ignore, N >= 0 exit with N.
static ON_TERM: AtomicI32 = AtomicI32::new(ON_TERM_DIE);
const ON_TERM_DIE: i32 = -1;
const ON_TERM_IGNORE: i32 = -2;

/// The handler: only async-signal-safe work (clock, stack formatting, write, _exit).
extern "C" fn on_signal(sig: libc::c_int) {
    let now = monotonic_ns();
    let prefix = b"http_app: signal ";
    let mut line = [0u8; 80];
    line[..prefix.len()].copy_from_slice(prefix);
    let mut end = put_decimal(&mut line, prefix.len(), sig as u64);
    line[end..end + 4].copy_from_slice(b" at ");
    end = put_decimal(&mut line, end + 4, now);
    line[end] = b'\n';
    end += 1;
    // SAFETY: write(2) reads `end` initialised bytes of `line`.
    unsafe { libc::write(libc::STDERR_FILENO, line.as_ptr().cast(), end) };
    if let Some(count) = SIGNAL_COUNTS.get(sig as usize) {
        count.fetch_add(1, Ordering::SeqCst);
    }
    if sig != libc::SIGTERM {
        return;
    }
    match ON_TERM.load(Ordering::SeqCst) {
        ON_TERM_IGNORE => {}
        ON_TERM_DIE => {
            // SAFETY: signal and raise are async-signal-safe. SIGTERM is
            // blocked while this handler runs, so it is delivered, now with
            // the default action, as soon as the handler returns.
            unsafe {
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                libc::raise(libc::SIGTERM);
            }
        }
        // SAFETY: _exit is async-signal-safe.
        code => unsafe { libc::_exit(code) },
    }
}

fn install_handlers() {
    let caught = [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGTERM,
        libc::SIGWINCH,
    ];
    for sig in caught {
        // SAFETY: a zeroed sigaction is valid; the handler only does
        // async-signal-safe work.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigfillset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

fn fork() -> libc::pid_t {
    // SAFETY: the app is single-threaded, so a forked child may run Rust code;
    // the children below only call async-signal-safe functions anyway.
    unsafe { libc::fork() }
}

/// Makes `count` orphans that exit once re-parented; returns when the
/// intermediate process is reaped (so every orphan has a new parent).
fn make_orphans(count: u32) -> std::io::Result<()> {
    let middle = fork();
    if middle < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if middle == 0 {
        // SAFETY: getpid, fork, getppid, usleep and _exit are async-signal-safe.
        unsafe {
            let middle_pid = libc::getpid();
            for _ in 0..count {
                if libc::fork() == 0 {
                    // Exit once orphaned (bounded: 10 s), so PID 1 reaps us.
                    for _ in 0..10_000 {
                        if libc::getppid() != middle_pid {
                            libc::_exit(0);
                        }
                        libc::usleep(1_000);
                    }
                    libc::_exit(1);
                }
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waitpid writes the status into the valid int.
    if unsafe { libc::waitpid(middle, &mut status, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// One response per path; `None` is a 404.
fn route(path: &str) -> Option<String> {
    match path.split_once('?') {
        None if path == "/healthz" => Some("ok\n".to_string()),
        None if path == "/signals" => Some(
            SIGNAL_COUNTS
                .iter()
                .enumerate()
                .filter_map(|(sig, count)| {
                    let count = count.load(Ordering::SeqCst);
                    (count > 0).then(|| format!("{sig} {count}\n"))
                })
                .collect(),
        ),
        // SAFETY: getuid and getgid cannot fail.
        None if path == "/whoami" => {
            Some(unsafe { format!("{} {}\n", libc::getuid(), libc::getgid()) })
        }
        Some(("/orphans", query)) => {
            let count: u32 = query.strip_prefix("n=")?.parse().ok()?;
            match make_orphans(count) {
                Ok(()) => Some(format!("{count}\n")),
                Err(error) => Some(format!("error: {error}\n")),
            }
        }
        _ => None,
    }
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Read the headers up to the blank line; the requests carry no body.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = match route(path) {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", "not found\n".to_string()),
    };
    let mut stream = &stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn usage() -> ! {
    eprintln!("usage: http_app PORT [--on-term die|ignore|exit:N]");
    std::process::exit(2);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(port) = args.first().and_then(|p| p.parse::<u16>().ok()) else {
        usage()
    };
    let on_term = match args.get(1..) {
        Some([]) | None => ON_TERM_DIE,
        Some([flag, mode]) if flag == "--on-term" => match mode.as_str() {
            "die" => ON_TERM_DIE,
            "ignore" => ON_TERM_IGNORE,
            other => match other
                .strip_prefix("exit:")
                .and_then(|n| n.parse::<u8>().ok())
            {
                Some(code) => i32::from(code),
                None => usage(),
            },
        },
        Some(_) => usage(),
    };
    ON_TERM.store(on_term, Ordering::SeqCst);
    install_handlers();
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("http_app: cannot listen on 127.0.0.1:{port}: {error}");
            std::process::exit(1);
        }
    };
    eprintln!("http_app: serving on 127.0.0.1:{port}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                match serve(stream) {
                    // drainit's ready check reads the status line and hangs up.
                    Err(error)
                        if matches!(
                            error.kind(),
                            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                        ) => {}
                    Err(error) => eprintln!("http_app: request failed: {error}"),
                    Ok(()) => {}
                }
            }
            Err(error) => eprintln!("http_app: accept failed: {error}"),
        }
    }
}
