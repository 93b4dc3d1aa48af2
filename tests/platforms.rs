//! drainit on every architecture of a release (issue 21): `scripts/release.sh`
//! builds them all here (the cheap `cross-test` profile: drainit's code
//! as in release, without LTO, its dependencies and std unoptimized; see
//! Cargo.toml), and each one runs as PID 1 of a
//! fresh PID namespace under qemu's user-mode emulation (Debian's
//! `qemu-user-static`; x86_64 runs natively), in front of a static C app of
//! the same architecture (`tests/emulated_app.c`, built with the same
//! Debian cross gcc, started through the same qemu): the exit code passes
//! through, an orphaned zombie is reaped, SIGUSR1 reaches the app, SIGTERM
//! drains (/ready 503 during the delay, the stop signal after it), and
//! /prestop answers once the app has exited.
//!
//! Also checked on the same build: every artifact is there, `SHA256SUMS`
//! verifies, the detached signatures (a throwaway gpg key) verify and
//! reject a changed file, the `.deb` packages carry their architecture and
//! binary, and the image index lists every platform.
//!
//! qemu-user cannot show what needs the kernel's view of the emulated
//! process: it has no netlink sock_diag (`--propagation-delay auto` falls
//! back to its ceiling there) and emulation says nothing about speed.

mod common;

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{drainit, drainit_under_unshare, free_port, get, scratch, wait_for, Proc};

/// Emulation is slow and the machine is shared: what "soon" means here.
const SOON: Duration = Duration::from_secs(60);
/// The propagation delay of the drain cases.
const DELAY: Duration = Duration::from_secs(2);

/// One architecture of the release: its name in the file names, how to
/// run its binaries here, and its Debian cross compiler.
struct Arch {
    name: &'static str,
    /// qemu-user binary and CPU; None: the host's own.
    qemu: Option<(&'static str, Option<&'static str>)>,
    gcc: &'static str,
    deb_arch: &'static str,
    /// What `readelf -h` calls the machine.
    elf_machine: &'static str,
}

const ARCHES: &[Arch] = &[
    Arch {
        name: "x86_64",
        qemu: None,
        gcc: "x86_64-linux-gnu-gcc",
        deb_arch: "amd64",
        elf_machine: "X86-64",
    },
    Arch {
        name: "aarch64",
        qemu: Some(("qemu-aarch64-static", None)),
        gcc: "aarch64-linux-gnu-gcc",
        deb_arch: "arm64",
        elf_machine: "AArch64",
    },
    Arch {
        name: "armv7",
        qemu: Some(("qemu-arm-static", Some("cortex-a7"))),
        gcc: "arm-linux-gnueabihf-gcc",
        deb_arch: "armhf",
        elf_machine: "ARM",
    },
    // An ARMv6 CPU (the Raspberry Pi 1's): an ARMv7 instruction in the
    // binary would fail here.
    Arch {
        name: "armv6",
        qemu: Some(("qemu-arm-static", Some("arm1176"))),
        gcc: "arm-linux-gnueabi-gcc",
        deb_arch: "armel",
        elf_machine: "ARM",
    },
    Arch {
        name: "i686",
        qemu: Some(("qemu-i386-static", None)),
        gcc: "i686-linux-gnu-gcc",
        deb_arch: "i386",
        elf_machine: "Intel 80386",
    },
    Arch {
        name: "powerpc64le",
        qemu: Some(("qemu-ppc64le-static", None)),
        gcc: "powerpc64le-linux-gnu-gcc",
        deb_arch: "ppc64el",
        elf_machine: "PowerPC64",
    },
    Arch {
        name: "riscv64",
        qemu: Some(("qemu-riscv64-static", None)),
        gcc: "riscv64-linux-gnu-gcc",
        deb_arch: "riscv64",
        elf_machine: "RISC-V",
    },
];

fn arch(name: &str) -> &'static Arch {
    ARCHES
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no architecture {name}"))
}

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The cargo target directory of the drainit under test (target/debug/drainit).
fn target_dir() -> PathBuf {
    Path::new(drainit())
        .ancestors()
        .nth(2)
        .expect("the binary is in <target>/<profile>/")
        .to_path_buf()
}

/// Runs a command to success within `limit`; returns its stdout.
fn succeed(command: &mut Command, limit: Duration) -> String {
    let description = format!("{command:?}");
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {description}: {e}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{description} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    assert!(
        status.success(),
        "{description} failed ({status}):\n--- stdout ---\n{out}\n--- stderr ---\n{}",
        // The last lines of a cargo build are the ones that matter.
        err.lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    out
}

/// What the release build left: its directory and the throwaway gpg home.
struct Release {
    dist: PathBuf,
    gnupg: PathBuf,
}

/// `scripts/release.sh` once for all tests of this binary (drainit only:
/// drainit-check's build for every architecture is for real releases),
/// signed with a throwaway key.
fn release() -> &'static Release {
    static RELEASE: OnceLock<Release> = OnceLock::new();
    RELEASE.get_or_init(|| {
        let work = target_dir().join("platforms-test");
        let gnupg = work.join("gnupg");
        let dist = work.join("dist");
        // An agent of an earlier run in this target directory would answer
        // for a home that is about to be removed: stop it first.
        stop_gpg_agent(&gnupg);
        let _ = std::fs::remove_dir_all(&gnupg);
        std::fs::create_dir_all(&gnupg).expect("create the gpg home");
        let mut permissions = std::fs::metadata(&gnupg).expect("stat").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o700);
        std::fs::set_permissions(&gnupg, permissions).expect("chmod the gpg home");
        succeed(
            Command::new("gpg")
                .env("GNUPGHOME", &gnupg)
                .args(["--batch", "--passphrase", "", "--quick-generate-key"])
                .args(["drainit release test <release-test@drainit.invalid>"])
                .args(["ed25519", "sign", "never"]),
            Duration::from_secs(120),
        );
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        succeed(
            Command::new(repo.join("scripts/release.sh"))
                .arg(version())
                .args(["--profile", "cross-test", "--no-check", "--out"])
                .arg(&dist)
                .args(["--sign-key", "release-test@drainit.invalid"])
                .env("GNUPGHOME", &gnupg)
                .env("CARGO_TARGET_DIR", target_dir()),
            Duration::from_secs(40 * 60),
        );
        // Signing started gpg's agent, a daemon: no test leaves one behind
        // (verifying needs none).
        stop_gpg_agent(&gnupg);
        Release { dist, gnupg }
    })
}

/// Stops the gpg agent of the home `gnupg`, if one runs.
fn stop_gpg_agent(gnupg: &Path) {
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", gnupg)
        .args(["--kill", "gpg-agent"])
        .status();
}

/// The release's drainit for `arch`.
fn binary(arch: &Arch) -> PathBuf {
    release()
        .dist
        .join(format!("drainit-{}-{}", version(), arch.name))
}

/// The emulated app, built static for `arch` with its cross gcc.
fn app(arch: &Arch) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emulated_app.c");
    let out = target_dir()
        .join("platforms-test")
        .join(format!("emulated_app-{}", arch.name));
    succeed(
        Command::new(arch.gcc)
            .args(["-static", "-O2", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(&source),
        Duration::from_secs(120),
    );
    out
}

/// `program args` as run on this machine: through qemu for a foreign one.
fn run_as(arch: &Arch, program: &Path, args: &[&str]) -> Vec<String> {
    let mut line = Vec::new();
    if let Some((qemu, cpu)) = arch.qemu {
        line.push(qemu.to_string());
        if let Some(cpu) = cpu {
            line.extend(["-cpu".to_string(), cpu.to_string()]);
        }
    }
    line.push(program.to_string_lossy().into_owned());
    line.extend(args.iter().map(|a| a.to_string()));
    line
}

/// drainit of `arch` as PID 1 of a fresh PID namespace, with `flags`, in
/// front of the app of `arch` with `app_args`.
fn pid1(arch: &Arch, dir: &Path, flags: &[&str], app_args: &[&str]) -> Proc {
    let app = app(arch);
    let mut line: Vec<String> = ["--pid", "--fork", "--mount-proc", "--kill-child"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut drainit_args: Vec<&str> = flags.to_vec();
    drainit_args.push("--");
    let app_line = run_as(arch, &app, app_args);
    let app_line: Vec<&str> = app_line.iter().map(String::as_str).collect();
    drainit_args.extend_from_slice(&app_line);
    line.extend(run_as(arch, &binary(arch), &drainit_args));
    let line: Vec<&str> = line.iter().map(String::as_str).collect();
    Proc::start(dir, "unshare", &line, &[])
}

/// The lines of the app's record file.
fn records(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// When the app caught `signal` (CLOCK_MONOTONIC ns), if it did.
fn caught_at(file: &Path, signal: i32) -> Option<u64> {
    records(file).iter().find_map(|line| {
        let rest = line.strip_prefix("signal ")?;
        let (sig, at) = rest.split_once(' ')?;
        (sig.parse::<i32>().ok()? == signal).then(|| at.parse().ok())?
    })
}

fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let (_, body) = get(admin, "/metrics")?;
    body.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The exit code passes through drainit as PID 1.
fn exit_code_passes_through(arch: &Arch) {
    let dir = scratch(&format!("emulated-exit-{}", arch.name));
    let mut proc = pid1(arch, &dir, &["--admin-listen", "off"], &["exit", "7"]);
    let status = proc.wait(SOON);
    assert_eq!(status.code(), Some(7), "{}: {}", arch.name, proc.report());
}

/// drainit as PID 1 for `arch` with the [`DELAY`] propagation delay and a
/// long grace period, its admin server on a loopback port picked here, in
/// front of the test app's `mode` writing to the returned record file.
fn start_draining(arch: &Arch, test: &str, mode: &str) -> (Proc, SocketAddr, PathBuf) {
    let dir = scratch(&format!("emulated-{test}-{}", arch.name));
    let record = dir.join("record");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let admin: SocketAddr = listen.parse().expect("address");
    let delay = format!("{}s", DELAY.as_secs());
    let proc = pid1(
        arch,
        &dir,
        &[
            "--admin-listen",
            &listen,
            "--propagation-delay",
            &delay,
            "--grace-period",
            "60s",
        ],
        &[mode, &record.to_string_lossy()],
    );
    (proc, admin, record)
}

/// A zombie is reaped, SIGUSR1 reaches the app, SIGTERM drains: /ready
/// 503 during the delay, the stop signal after it, the app's code out.
fn reaps_forwards_and_drains_on_sigterm(arch: &Arch) {
    let (mut proc, admin, record) = start_draining(arch, "drain", "orphan");
    let pid1 = drainit_under_unshare(proc.pid());
    let name = arch.name;
    assert!(
        wait_for(SOON, || get(admin, "/ready").map(|r| r.0) == Some(200)),
        "{name}: /ready never 200\n{}",
        proc.report()
    );
    assert!(
        wait_for(SOON, || records(&record)
            .iter()
            .any(|l| l.starts_with("orphan "))),
        "{name}: the orphan never ran: {:?}\n{}",
        records(&record),
        proc.report()
    );
    assert!(
        wait_for(SOON, || metric(admin, "drainit_zombies_reaped_total")
            .is_some_and(|n| n >= 1.0)),
        "{name}: the orphan was not reaped\n{}",
        proc.report()
    );

    common::kill(pid1, libc::SIGUSR1);
    assert!(
        wait_for(SOON, || caught_at(&record, libc::SIGUSR1).is_some()),
        "{name}: SIGUSR1 did not reach the app: {:?}\n{}",
        records(&record),
        proc.report()
    );

    let drain_start = common::monotonic_ns();
    common::kill(pid1, libc::SIGTERM);
    assert!(
        wait_for(SOON, || get(admin, "/ready").map(|r| r.0) == Some(503)),
        "{name}: /ready never 503 after SIGTERM\n{}",
        proc.report()
    );
    let still_draining = caught_at(&record, libc::SIGTERM).is_none();
    assert!(
        still_draining,
        "{name}: the app got SIGTERM before /ready turned 503: {:?}",
        records(&record)
    );
    let status = proc.wait(SOON);
    assert_eq!(status.code(), Some(0), "{name}: {}", proc.report());
    let stopped_at = caught_at(&record, libc::SIGTERM)
        .unwrap_or_else(|| panic!("{name}: the app never got SIGTERM: {:?}", records(&record)));
    let waited = Duration::from_nanos(stopped_at.saturating_sub(drain_start));
    assert!(
        waited >= DELAY,
        "{name}: the stop signal came {waited:?} after SIGTERM, before the {DELAY:?} delay\n{}",
        proc.report()
    );
}

/// GET /prestop starts the drain and answers once the app has exited
/// (after the delay and the stop signal).
fn prestop_answers_when_the_app_exits(arch: &Arch) {
    let (mut proc, admin, record) = start_draining(arch, "prestop", "record");
    let name = arch.name;
    assert!(
        wait_for(SOON, || get(admin, "/ready").map(|r| r.0) == Some(200)),
        "{name}: /ready never 200\n{}",
        proc.report()
    );
    let asked = Instant::now();
    let answer = common::http(admin, "GET", "/prestop", &[], SOON + DELAY);
    let answered_after = asked.elapsed();
    assert_eq!(
        answer.as_ref().map(|a| a.0),
        Some(200),
        "{name}: /prestop answered {answer:?}\n{}",
        proc.report()
    );
    assert!(
        answered_after >= DELAY,
        "{name}: /prestop answered after {answered_after:?}, before the {DELAY:?} delay"
    );
    assert!(
        caught_at(&record, libc::SIGTERM).is_some(),
        "{name}: /prestop answered before the app got its stop signal: {:?}",
        records(&record)
    );
    assert_eq!(proc.wait(SOON).code(), Some(0), "{name}: {}", proc.report());
}

/// What docs/install.md says emulation cannot show: qemu-user translates no
/// netlink sock_diag, so `--propagation-delay auto` says so once and waits
/// for its ceiling. (Natively, tests/auto_delay.rs shows it end on evidence.)
fn auto_waits_for_its_ceiling_under_emulation(arch: &Arch) {
    let dir = scratch(&format!("emulated-auto-{}", arch.name));
    let record = dir.join("record");
    let ceiling = Duration::from_secs(2);
    let mut proc = pid1(
        arch,
        &dir,
        &[
            "--admin-listen",
            "off",
            "--propagation-delay",
            "auto",
            "--propagation-delay-min",
            "500ms",
            "--propagation-delay-max",
            "2s",
        ],
        &["record", &record.to_string_lossy()],
    );
    let name = arch.name;
    assert!(
        wait_for(SOON, || records(&record)
            .iter()
            .any(|l| l.starts_with("ready "))),
        "{name}: the app never started\n{}",
        proc.report()
    );
    let pid1 = drainit_under_unshare(proc.pid());
    let drain_start = common::monotonic_ns();
    common::kill(pid1, libc::SIGTERM);
    assert_eq!(proc.wait(SOON).code(), Some(0), "{name}: {}", proc.report());
    let stopped_at = caught_at(&record, libc::SIGTERM)
        .unwrap_or_else(|| panic!("{name}: the app never got SIGTERM: {:?}", records(&record)));
    let waited = Duration::from_nanos(stopped_at.saturating_sub(drain_start));
    assert!(
        waited >= ceiling,
        "{name}: auto ended after {waited:?}\n{}",
        proc.report()
    );
    assert_eq!(
        proc.stderr()
            .matches("cannot observe the app's traffic")
            .count(),
        1,
        "{name}: one warning that sock_diag is missing\n{}",
        proc.report()
    );
}

/// Every check of one architecture, in turn (each starts its own drainit).
fn pid1_checks(name: &str) {
    let arch = arch(name);
    exit_code_passes_through(arch);
    reaps_forwards_and_drains_on_sigterm(arch);
    prestop_answers_when_the_app_exits(arch);
    if arch.qemu.is_some() {
        auto_waits_for_its_ceiling_under_emulation(arch);
    }
}

#[test]
fn pid1_on_x86_64() {
    pid1_checks("x86_64");
}

#[test]
fn pid1_on_aarch64_under_qemu() {
    pid1_checks("aarch64");
}

#[test]
fn pid1_on_armv7_under_qemu() {
    pid1_checks("armv7");
}

#[test]
fn pid1_on_armv6_under_qemu() {
    pid1_checks("armv6");
}

#[test]
fn pid1_on_i686_under_qemu() {
    pid1_checks("i686");
}

#[test]
fn pid1_on_powerpc64le_under_qemu() {
    pid1_checks("powerpc64le");
}

#[test]
fn pid1_on_riscv64_under_qemu() {
    pid1_checks("riscv64");
}

#[test]
fn every_binary_is_there_for_its_architecture_and_in_the_sizes() {
    let sizes = std::fs::read_to_string(release().dist.join("SIZES")).expect("SIZES");
    for arch in ARCHES {
        let path = binary(arch);
        let header = succeed(
            Command::new("readelf").arg("-h").arg(&path),
            Duration::from_secs(30),
        );
        assert!(
            header
                .lines()
                .any(|l| l.trim_start().starts_with("Machine:") && l.contains(arch.elf_machine)),
            "{}: {header}",
            path.display()
        );
        let name = format!("drainit-{}-{}: ", version(), arch.name);
        let line = sizes
            .lines()
            .find(|l| l.starts_with(&name))
            .unwrap_or_else(|| panic!("no size line for {name} in SIZES:\n{sizes}"));
        assert!(
            line.contains("static") && line.ends_with(" bytes"),
            "{line}"
        );
    }
}

#[test]
fn sha256sums_and_signatures_verify_and_reject_a_changed_file() {
    let release = release();
    succeed(
        Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(&release.dist),
        Duration::from_secs(60),
    );
    let listed = std::fs::read_to_string(release.dist.join("SHA256SUMS")).expect("SHA256SUMS");
    for arch in ARCHES {
        for file in [
            format!("drainit-{}-{}", version(), arch.name),
            format!("drainit_{}-1_{}.deb", version(), arch.deb_arch),
        ] {
            assert!(
                listed.contains(&format!("  {file}\n")),
                "{file} not in SHA256SUMS"
            );
            let signed = release.dist.join(&file);
            let signature = release.dist.join(format!("{file}.asc"));
            succeed(
                Command::new("gpg")
                    .env("GNUPGHOME", &release.gnupg)
                    .args(["--batch", "--verify"])
                    .arg(&signature)
                    .arg(&signed),
                Duration::from_secs(60),
            );
        }
    }
    // A changed file no longer matches its signature.
    let dir = scratch("release-tampered");
    let file = format!("drainit-{}-x86_64", version());
    let mut bytes = std::fs::read(release.dist.join(&file)).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(dir.join(&file), &bytes).expect("write");
    let verdict = Command::new("gpg")
        .env("GNUPGHOME", &release.gnupg)
        .args(["--batch", "--verify"])
        .arg(release.dist.join(format!("{file}.asc")))
        .arg(dir.join(&file))
        .output()
        .expect("run gpg");
    assert!(
        !verdict.status.success(),
        "gpg accepted a changed binary: {}",
        String::from_utf8_lossy(&verdict.stderr)
    );
    assert!(String::from_utf8_lossy(&verdict.stderr).contains("BAD signature"));
}

#[test]
fn deb_packages_carry_their_architecture_and_the_binary() {
    for arch in ARCHES {
        let deb = release()
            .dist
            .join(format!("drainit_{}-1_{}.deb", version(), arch.deb_arch));
        let field = |name: &str| {
            succeed(
                Command::new("dpkg-deb").arg("--field").arg(&deb).arg(name),
                Duration::from_secs(30),
            )
            .trim()
            .to_string()
        };
        assert_eq!(field("Architecture"), arch.deb_arch, "{}", deb.display());
        assert_eq!(field("Package"), "drainit");
        assert_eq!(field("Version"), format!("{}-1", version()));
        assert_eq!(field("Depends"), "", "a static binary depends on nothing");
        let contents = succeed(
            Command::new("dpkg-deb").arg("--contents").arg(&deb),
            Duration::from_secs(30),
        );
        assert!(
            contents
                .lines()
                .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with(" ./usr/bin/drainit")),
            "{}:\n{contents}",
            deb.display()
        );
    }
    // The host's package installs (into a root of its own) and runs.
    let root = scratch("release-dpkg-root");
    std::fs::create_dir_all(root.join("var/lib/dpkg/updates")).expect("dpkg dirs");
    std::fs::create_dir_all(root.join("var/lib/dpkg/info")).expect("dpkg dirs");
    std::fs::write(root.join("var/lib/dpkg/status"), b"").expect("dpkg status");
    succeed(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--force-not-root", "--force-script-chrootless", "--install"])
            .arg(
                release()
                    .dist
                    .join(format!("drainit_{}-1_amd64.deb", version())),
            ),
        Duration::from_secs(120),
    );
    let said = succeed(
        Command::new(root.join("usr/bin/drainit")).arg("--version"),
        Duration::from_secs(30),
    );
    assert_eq!(said.trim(), format!("drainit {}", version()));
}

#[test]
fn image_index_lists_every_platform_with_its_binary() {
    let image = release()
        .dist
        .join(format!("drainit-{}-image.tar", version()));
    let dir = scratch("release-image");
    succeed(
        Command::new("tar")
            .arg("-xf")
            .arg(&image)
            .arg("-C")
            .arg(&dir),
        Duration::from_secs(60),
    );
    let read_json = |path: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&path).expect("read blob")).expect("JSON")
    };
    let blob = |digest: &serde_json::Value| {
        let digest = digest.as_str().expect("digest string");
        dir.join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").expect("sha256 digest"))
    };
    let top = read_json(dir.join("index.json"));
    let index = read_json(blob(&top["manifests"][0]["digest"]));
    let manifests = index["manifests"].as_array().expect("manifests");
    let mut platforms: Vec<String> = manifests
        .iter()
        .map(|m| {
            let p = &m["platform"];
            match p["variant"].as_str() {
                Some(v) if p["architecture"] == "arm" => format!("arm/{v}"),
                _ => p["architecture"].as_str().unwrap_or("?").to_string(),
            }
        })
        .collect();
    platforms.sort();
    assert_eq!(
        platforms,
        ["386", "amd64", "arm/v6", "arm/v7", "arm64", "ppc64le", "riscv64"]
    );
    // Each layer holds exactly that architecture's drainit as /drainit.
    for manifest in manifests {
        let manifest = read_json(blob(&manifest["digest"]));
        let config = read_json(blob(&manifest["config"]["digest"]));
        assert_eq!(config["config"]["Entrypoint"][0], "/drainit");
        assert_eq!(config["config"]["StopSignal"], "SIGTERM");
        let layer = blob(&manifest["layers"][0]["digest"]);
        let listing = succeed(
            Command::new("tar").arg("-tvf").arg(&layer),
            Duration::from_secs(30),
        );
        assert!(
            listing.starts_with("-rwxr-xr-x") && listing.trim_end().ends_with(" drainit"),
            "{listing}"
        );
    }
}
