//! Test fixture: orphans COUNT grandchildren that all exit at the same moment.
//!
//! ```text
//! zombie_maker DIR COUNT EXIT_CODE
//! ```
//!
//! 1. Makes a zombie of its own (a child it does not reap yet) and writes
//!    its pid to `DIR/own_zombie`, so a test can check that its zombie
//!    detector sees zombies at all.
//! 2. Forks an intermediate process that forks COUNT grandchildren, writes
//!    their pids (one a line) to `DIR/grandchildren` and exits; it reaps
//!    the intermediate, so the grandchildren are orphans (re-parented to
//!    PID 1 or the nearest subreaper). Each grandchild blocks reading a
//!    pipe. Then `DIR/orphaned` is created.
//! 3. Waits for `DIR/release`; reaps its own zombie, closes the pipe, so
//!    every grandchild exits at once, and creates `DIR/released`.
//! 4. Waits for `DIR/done`, then exits with EXIT_CODE.
//!
//! Pids are as seen in the fixture's own pid namespace. Each wait gives up
//! (exit 99) after two minutes, so a broken test never leaves it behind.

use std::path::Path;
use std::time::{Duration, Instant};

fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        if Instant::now() > deadline {
            eprintln!("zombie_maker: gave up waiting for {}", path.display());
            std::process::exit(99);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn fork() -> libc::pid_t {
    // SAFETY: the fixture is single-threaded, so a forked child may run Rust code.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    pid
}

fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) ends the process without running the parent's atexit handlers.
    unsafe { libc::_exit(code) }
}

fn main() {
    let usage = "usage: zombie_maker DIR COUNT EXIT_CODE";
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect(usage));
    let count: usize = args.next().and_then(|s| s.parse().ok()).expect(usage);
    let exit_code: i32 = args.next().and_then(|s| s.parse().ok()).expect(usage);

    // 1. A zombie of our own, exited but not reaped (WNOWAIT).
    let own = fork();
    if own == 0 {
        exit_now(0);
    }
    // SAFETY: waitid writes into the zeroed siginfo; WNOWAIT leaves the child a zombie.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(
            libc::P_PID,
            own as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        );
    }
    std::fs::write(dir.join("own_zombie"), own.to_string()).expect("write own_zombie");

    // 2. COUNT grandchildren blocked on a pipe, orphaned.
    let mut fds = [0; 2];
    // SAFETY: pipe(2) writes two fds into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe failed");
    let (read_end, write_end) = (fds[0], fds[1]);
    let intermediate = fork();
    if intermediate == 0 {
        let mut pids = String::new();
        for _ in 0..count {
            let pid = fork();
            if pid == 0 {
                // SAFETY: plain fd syscalls on fds this process owns.
                unsafe {
                    libc::close(write_end);
                    let mut byte = 0u8;
                    while libc::read(read_end, (&mut byte as *mut u8).cast(), 1) < 0 {}
                }
                exit_now(0);
            }
            pids.push_str(&format!("{pid}\n"));
        }
        let written = std::fs::write(dir.join("grandchildren"), pids).is_ok();
        exit_now(if written { 0 } else { 1 });
    }
    let mut status = 0;
    // SAFETY: waitpid writes the status of our own child into `status`.
    unsafe { libc::waitpid(intermediate, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "intermediate failed: {status}"
    );
    // SAFETY: the read end is not ours to use any more.
    unsafe { libc::close(read_end) };
    std::fs::write(dir.join("orphaned"), "").expect("write orphaned");

    // 3. Release them all at once.
    wait_for_file(&dir.join("release"));
    // SAFETY: reaping our own zombie, then closing the last write end.
    unsafe {
        libc::waitpid(own, &mut status, 0);
        libc::close(write_end);
    }
    std::fs::write(dir.join("released"), "").expect("write released");

    // 4. Exit when told.
    wait_for_file(&dir.join("done"));
    std::process::exit(exit_code);
}
