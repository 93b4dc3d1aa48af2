//! Commands with a time bound, the engine tools' paths, and the static
//! builds the image is made of.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `command` with its output captured, killing it after `limit`.
pub fn run_bounded(command: &mut Command, limit: Duration) -> Result<Output, String> {
    use std::io::Read;
    let description = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {description}: {e}"))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stdout.read_to_end(&mut buffer);
        buffer
    });
    let err = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = stderr.read_to_end(&mut buffer);
        buffer
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{description} did not finish within {limit:?}"));
            }
            Err(e) => return Err(format!("waiting for {description}: {e}")),
        }
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Whether a daemon's client command succeeds within 10 s (the daemon is up).
pub(super) fn answers(command: &mut Command) -> bool {
    run_bounded(command, Duration::from_secs(10)).is_ok_and(|output| output.status.success())
}

/// Runs `command` within `limit`, asserts it succeeds, returns its stdout.
pub fn succeed(command: &mut Command, limit: Duration) -> String {
    let description = format!("{command:?}");
    let output = run_bounded(command, limit).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        output.status.success(),
        "{description} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The static drainit (`scripts/build-static.sh`) and the static test app
/// (`tests/container_app`, for the same target, beside it).
pub(super) fn build_static_binaries() -> (PathBuf, PathBuf) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let build_limit = Duration::from_secs(30 * 60);
    let printed = succeed(
        &mut Command::new(repo.join("scripts/build-static.sh")),
        build_limit,
    );
    let drainit = PathBuf::from(
        printed
            .lines()
            .last()
            .expect("build-static.sh prints the binary's path"),
    );
    // <target dir>/<triple>/release/drainit
    let release_dir = drainit.parent().expect("the binary is in a directory");
    let triple_dir = release_dir
        .parent()
        .expect("release/ is in the triple's directory");
    let triple = triple_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a target triple");
    let target_dir = triple_dir
        .parent()
        .expect("the triple's directory is in the target directory");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            triple,
            "--manifest-path",
        ])
        .arg(repo.join("tests/container_app/Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir.join("container-app"));
    if triple.ends_with("-gnu") {
        // build-static.sh's glibc fallback: static the same way.
        build.env("RUSTFLAGS", "-C target-feature=+crt-static");
    }
    succeed(&mut build, build_limit);
    let app = target_dir
        .join("container-app")
        .join(triple)
        .join("release/http_app");
    assert!(app.exists(), "{} was not built", app.display());
    (drainit, app)
}

/// PATH with the sbin directories (where Debian puts dockerd and runc) added.
pub(super) fn search_path() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{path}:/usr/local/sbin:/usr/sbin:/sbin")
}

/// The absolute path of an engine tool; panics, naming the packages, if missing.
pub fn tool(name: &str) -> String {
    std::env::split_paths(&search_path())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .and_then(|found| found.to_str().map(str::to_string))
        .unwrap_or_else(|| {
            panic!("{name} is not installed: the container tests need Debian's docker.io, containerd and runc (scripts/test.sh installs them)")
        })
}
