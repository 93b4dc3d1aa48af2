//! What the test apps' signal handlers may call (async-signal-safe: no
//! allocation, no lock): the clock and decimal formatting on the stack.
//! Shared by `examples/signal_recorder.rs` and the container tests' app
//! (`tests/container_app`), both by `#[path]`.

/// CLOCK_MONOTONIC in nanoseconds: what the apps stamp their signal lines
/// with, and what the tests compare them with.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the valid timespec; it is async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Writes the decimal digits of `n` into `buf` at `at`; returns the new end.
pub fn put_decimal(buf: &mut [u8], mut at: usize, mut n: u64) -> usize {
    let mut digits = [0u8; 20];
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    while count > 0 {
        count -= 1;
        buf[at] = digits[count];
        at += 1;
    }
    at
}
