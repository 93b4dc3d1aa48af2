//! Fixture and benchmark tool for `drainit::traffic`.
//!
//! ```text
//! observe sample [--ports all|8080,8443] [--interval 100ms] [--count N]
//!                [--deny-netlink] [--own-client HOST:PORT] [--note-own-client HOST:PORT]
//!                [--listen HOST:PORT]
//! observe hold --listen HOST:PORT --connections N [--send-every 100ms] [--for 30s]
//! observe clients --to HOST:PORT --connections N [--bytes 100] [--every 200ms] [--for 30s]
//! observe deny-netlink PROGRAM [ARGS...]
//! ```
//!
//! `sample` prints one line per sample, `key=value` separated by spaces,
//! for a test or `scripts/bench-traffic.sh` to parse:
//! `sample n=3 ports=8080 new=1 bytes=30 segments=1 arrivals=1 open=2 last_inbound_ms_ago=4 dump_us=210`,
//! then `done cpu_us=… wall_us=… rss_growth_kb=…` (its own CPU time, from
//! getrusage, and how much its resident set grew while observing). On
//! an observation error it prints `error permanent=true|false message=…`
//! and exits 3.
//!
//! - `--deny-netlink` first installs a seccomp filter that fails
//!   `socket(AF_NETLINK, …)` with EPERM, as a strict container profile
//!   would (no privilege needed: `PR_SET_NO_NEW_PRIVS` first);
//! - `--own-client` opens a connection from this process to HOST:PORT and
//!   sends a byte on it before every sample: the observer must not count
//!   it (its socket's inode is in /proc/self/fd);
//! - `--listen` binds a listener of its own first (for a namespace that
//!   has none; watched only when named in `--ports`);
//! - `--note-own-client` does the same but closes the connection at once
//!   after noting its local address in `OwnClients`, as the ready-check
//!   does, so only the note can keep it out.
//!
//! `hold` listens on HOST:PORT, connects N clients to itself, accepts
//! them, and keeps them open (writing a byte on each client every
//! `--send-every`, if given); prints `holding N` once all are up; exits
//! after `--for` (default 60 s).
//!
//! `deny-netlink` installs the same seccomp filter and execs PROGRAM,
//! which inherits it: drainit itself can be run without sock_diag.
//!
//! `clients` opens N connections to HOST:PORT, writes `--bytes` on each
//! (and again every `--every`, if given), prints `connected N`, and exits
//! after `--for` (default 30 s).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use drainit::settings::TrafficPorts;
use drainit::traffic::{OwnClients, PortCounter};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("sample") => sample(&args[1..]),
        Some("hold") => hold(&args[1..]),
        Some("clients") => clients(&args[1..]),
        Some("deny-netlink") => exec_without_netlink(&args[1..]),
        _ => Err("usage: observe sample|hold [OPTIONS] (see the source)".into()),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("observe: {message}");
            ExitCode::from(2)
        }
    }
}

/// The value after `--name`, if given.
fn option<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).map(String::as_str)
}

fn duration(args: &[String], name: &str, default: Duration) -> Result<Duration, String> {
    option(args, name).map_or(Ok(default), |text| {
        humantime::parse_duration(text).map_err(|e| format!("{name}: {e}"))
    })
}

fn address(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|e| format!("{text}: {e}"))
}

fn sample(args: &[String]) -> Result<ExitCode, String> {
    let ports: TrafficPorts = option(args, "--ports")
        .unwrap_or("all")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let interval = duration(args, "--interval", drainit::traffic::DRAIN_INTERVAL)?;
    let count: u32 = option(args, "--count")
        .unwrap_or("10")
        .parse()
        .map_err(|e| format!("--count: {e}"))?;
    if args.iter().any(|a| a == "--deny-netlink") {
        deny_netlink_sockets()?;
    }
    let mut own_client = match option(args, "--own-client") {
        Some(text) => Some(TcpStream::connect(address(text)?).map_err(|e| format!("{text}: {e}"))?),
        None => None,
    };
    let noted = option(args, "--note-own-client").map(address).transpose()?;
    let _listener = match option(args, "--listen") {
        Some(text) => Some(TcpListener::bind(address(text)?).map_err(|e| format!("{text}: {e}"))?),
        None => None,
    };
    let own_clients = OwnClients::default();

    let started = Instant::now();
    let rss_before = rss_kb();
    let mut observer = match PortCounter::open(ports, own_clients.clone()) {
        Ok(observer) => observer,
        Err(error) => return Ok(report_error(&error)),
    };
    for n in 0..count {
        if let Some(stream) = own_client.as_mut() {
            stream
                .write_all(b"o")
                .map_err(|e| format!("own client: {e}"))?;
        }
        if let Some(target) = noted {
            let mut stream = TcpStream::connect(target).map_err(|e| format!("{target}: {e}"))?;
            own_clients.note(stream.local_addr().map_err(|e| e.to_string())?);
            stream
                .write_all(b"noted")
                .map_err(|e| format!("noted client: {e}"))?;
        }
        if n > 0 {
            std::thread::sleep(interval);
        }
        let sample = match observer.sample() {
            Ok(sample) => sample,
            Err(error) => return Ok(report_error(&error)),
        };
        let ports: Vec<String> = sample.ports.iter().map(u16::to_string).collect();
        let last_inbound = sample.last_inbound.map_or("-".to_string(), |t| {
            sample.at.duration_since(t).as_millis().to_string()
        });
        println!(
            "sample n={n} ports={} new={} bytes={} segments={} arrivals={} open={} last_inbound_ms_ago={last_inbound} dump_us={} dumped={}",
            if ports.is_empty() { "-".to_string() } else { ports.join(",") },
            sample.new_connections,
            sample.inbound_bytes,
            sample.inbound_segments,
            sample.arrivals,
            sample.open_connections,
            sample.dump_duration.as_micros(),
            sample.dumped_connections,
        );
    }
    let (user, system) = own_cpu();
    println!(
        "done cpu_us={} user_us={} system_us={} wall_us={} rss_growth_kb={}",
        (user + system).as_micros(),
        user.as_micros(),
        system.as_micros(),
        started.elapsed().as_micros(),
        rss_kb().saturating_sub(rss_before),
    );
    Ok(ExitCode::SUCCESS)
}

fn report_error(error: &drainit::traffic::TrafficError) -> ExitCode {
    println!("error permanent={} message={error}", error.is_permanent());
    ExitCode::from(3)
}

/// This process's resident set (VmRSS), in kB; 0 if unknown.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// This process's user and system CPU time so far.
fn own_cpu() -> (Duration, Duration) {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (
        Duration::from_micros(micros(usage.ru_utime)),
        Duration::from_micros(micros(usage.ru_stime)),
    )
}

/// Installs a seccomp filter that fails `socket(AF_NETLINK, …)` with
/// EPERM and allows every other system call.
fn deny_netlink_sockets() -> Result<(), String> {
    // AUDIT_ARCH_X86_64 / AUDIT_ARCH_AARCH64 from <linux/audit.h>.
    let arch: u32 = match std::env::consts::ARCH {
        "x86_64" => 0xc000_003e,
        "aarch64" => 0xc000_00b7,
        other => return Err(format!("--deny-netlink: no seccomp arch code for {other}")),
    };
    // struct seccomp_data: nr at 0, arch at 4, args[0] at 16 (its low
    // 32 bits on a little-endian machine).
    let load = |offset: u32| libc::sock_filter {
        code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k: offset,
    };
    let jump_if = |value: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k: value,
    };
    let ret = |value: u32| libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: value,
    };
    let mut program = [
        load(4),
        jump_if(arch, 0, 4),
        load(0),
        jump_if(libc::SYS_socket as u32, 0, 2),
        load(16),
        jump_if(libc::AF_NETLINK as u32, 1, 0),
        ret(libc::SECCOMP_RET_ALLOW),
        ret(libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
    ];
    let filter = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: prctl with integer arguments; PR_SET_SECCOMP reads the
    // program through the pointer while the call runs, and `program`
    // outlives it.
    let failed = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &filter as *const libc::sock_fprog,
            ) != 0
    };
    if failed {
        return Err(format!("seccomp: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn hold(args: &[String]) -> Result<ExitCode, String> {
    let listen = address(option(args, "--listen").ok_or("--listen is required")?)?;
    let connections: usize = option(args, "--connections")
        .unwrap_or("1000")
        .parse()
        .map_err(|e| format!("--connections: {e}"))?;
    let send_every = option(args, "--send-every")
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|e| format!("--send-every: {e}"))?;
    let lifetime = duration(args, "--for", Duration::from_secs(60))?;

    let listener = TcpListener::bind(listen).map_err(|e| format!("{listen}: {e}"))?;
    let target = listener.local_addr().map_err(|e| e.to_string())?;
    let mut clients = Vec::with_capacity(connections);
    let mut servers = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(TcpStream::connect(target).map_err(|e| format!("connect {target}: {e}"))?);
        servers.push(listener.accept().map_err(|e| format!("accept: {e}"))?.0);
    }
    println!("holding {connections} on {target}");
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + lifetime;
    let mut sink = [0u8; 64];
    while Instant::now() < deadline {
        let pause = send_every.unwrap_or(Duration::from_millis(200));
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        if send_every.is_some() {
            for (client, server) in clients.iter_mut().zip(servers.iter_mut()) {
                client.write_all(b"x").map_err(|e| format!("send: {e}"))?;
                let _ = server.read(&mut sink);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn clients(args: &[String]) -> Result<ExitCode, String> {
    let target = address(option(args, "--to").ok_or("--to is required")?)?;
    let connections: usize = option(args, "--connections")
        .unwrap_or("1")
        .parse()
        .map_err(|e| format!("--connections: {e}"))?;
    let bytes: usize = option(args, "--bytes")
        .unwrap_or("100")
        .parse()
        .map_err(|e| format!("--bytes: {e}"))?;
    let every = option(args, "--every")
        .map(humantime::parse_duration)
        .transpose()
        .map_err(|e| format!("--every: {e}"))?;
    let lifetime = duration(args, "--for", Duration::from_secs(30))?;
    let payload = vec![b'c'; bytes];
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut stream =
            TcpStream::connect(target).map_err(|e| format!("connect {target}: {e}"))?;
        stream
            .write_all(&payload)
            .map_err(|e| format!("send: {e}"))?;
        streams.push(stream);
    }
    println!("connected {connections}");
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + lifetime;
    while Instant::now() < deadline {
        let pause = every.unwrap_or(Duration::from_millis(200));
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        if every.is_some() {
            for stream in &mut streams {
                stream
                    .write_all(&payload)
                    .map_err(|e| format!("send: {e}"))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn exec_without_netlink(args: &[String]) -> Result<ExitCode, String> {
    use std::os::unix::process::CommandExt;
    let (program, rest) = args
        .split_first()
        .ok_or("deny-netlink: PROGRAM is required")?;
    deny_netlink_sockets()?;
    let error = std::process::Command::new(program).args(rest).exec();
    Err(format!("deny-netlink: cannot run {program}: {error}"))
}
