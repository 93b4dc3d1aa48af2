//! Test fixture: writes a large, deterministic stream of varied bytes.
//!
//! ```text
//! byte_pump BYTES SEED IDFILE
//! ```
//!
//! First writes to IDFILE what its stdout and stderr are, one line each:
//! `FD LINK DEV INO` (the `/proc/self/fd/FD` link and the device and inode
//! of the open file), so a test can check they are the very file or pipe
//! it gave drainit. Then writes BYTES bytes to stdout, in writes of
//! varying sizes (1 byte to 64 KiB), every byte value included; the
//! stream is xorshift64* seeded with SEED ([`stream`], repeated in the
//! tests that check it). Last, one 64 KiB write to stderr: `<stderr-block
//! SEED>`, then letters, then `</stderr-block>`.

use std::fmt::Write as _;
use std::io::Write;
use std::os::unix::fs::MetadataExt;

/// The generator; `tests/it/pid1.rs` has the same one.
struct Stream(u64);

impl Stream {
    fn next_word(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_word().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

fn stream(seed: u64) -> Stream {
    Stream(seed | 1)
}

fn main() {
    let usage = "usage: byte_pump BYTES SEED IDFILE";
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().and_then(|s| s.parse().ok()).expect(usage);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).expect(usage);
    let idfile = args.next().expect(usage);

    let mut ids = String::new();
    for fd in [1, 2] {
        let path = format!("/proc/self/fd/{fd}");
        let link = std::fs::read_link(&path).expect("readlink fd");
        let meta = std::fs::metadata(&path).expect("stat fd");
        let _ = writeln!(ids, "{fd} {} {} {}", link.display(), meta.dev(), meta.ino());
    }
    std::fs::write(&idfile, ids).expect("write IDFILE");

    let mut data = vec![0u8; total];
    stream(seed).fill(&mut data);
    let mut sizes = stream(seed ^ 0x5eed);
    let mut stdout = std::io::stdout().lock();
    let mut at = 0;
    while at < total {
        let size = (1 + (sizes.next_word() % 65_536) as usize).min(total - at);
        stdout
            .write_all(&data[at..at + size])
            .expect("write stdout");
        at += size;
    }
    stdout.flush().expect("flush stdout");

    let head = format!("<stderr-block {seed}>");
    let tail = "</stderr-block>";
    let mut block = head.into_bytes();
    let fill = 65_536 - block.len() - tail.len();
    block.extend((0..fill).map(|i| b'a' + ((i as u64 + seed) % 26) as u8));
    block.extend_from_slice(tail.as_bytes());
    std::io::stderr().write_all(&block).expect("write stderr");
}
