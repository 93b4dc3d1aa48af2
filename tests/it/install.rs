//! `drainit install DIR` through the real binary: the copy is the running
//! binary byte for byte, runnable by everyone, replaces an older one in
//! place, and a missing, read-only or full directory gets a clear error
//! and keeps what was there (tmpfs mounts in a private mount namespace
//! made with `unshare --mount`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{drainit, scratch};

/// Runs `drainit install DIR` (or whatever `args` say) and returns its output.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("failed to run {program} {args:?}: {e}"))
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn copies_the_running_binary_with_mode_0755_and_replaces_an_older_one() {
    let dir = scratch("install");
    std::fs::write(dir.join("drainit"), b"an older drainit").expect("seed");
    let output = run(drainit(), &["install", &dir.to_string_lossy()]);
    assert!(output.status.success(), "{}", describe(&output));
    let installed = dir.join("drainit");
    let original = std::fs::read(drainit()).expect("read the binary under test");
    let copy = std::fs::read(&installed).expect("read the installed binary");
    assert!(
        copy == original,
        "the installed file differs from the binary"
    );
    let mode = std::fs::metadata(&installed)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o755, "mode of the installed binary");
    assert_eq!(entries(&dir), ["drainit"], "no temporary file may be left");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("installed drainit"),
        "{}",
        describe(&output)
    );
    // The copy is a working drainit.
    let version = run(&installed.to_string_lossy(), &["--version"]);
    assert!(version.status.success(), "{}", describe(&version));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("drainit "));
}

#[test]
fn a_missing_directory_or_a_file_is_refused_by_name() {
    let dir = scratch("install-missing");
    let missing = dir.join("not-mounted");
    let output = run(drainit(), &["install", &missing.to_string_lossy()]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no such directory"),
        "{}",
        describe(&output)
    );
    assert!(stderr.contains("not-mounted"), "{}", describe(&output));

    let file = dir.join("a-file");
    std::fs::write(&file, b"x").expect("write");
    let output = run(drainit(), &["install", &file.to_string_lossy()]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("not a directory"),
        "{}",
        describe(&output)
    );
}

#[test]
fn no_directory_argument_is_a_usage_error() {
    let output = run(drainit(), &["install"]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("<DIR>"),
        "{}",
        describe(&output)
    );
}

/// Runs `script` in a private mount namespace (`unshare --mount`, whose
/// default propagation is private: nothing leaks to the host), with
/// `$DRAINIT` and `$DIR` set; returns its output.
fn in_mount_namespace(dir: &Path, script: &str) -> Output {
    let output = Command::new("unshare")
        .args(["--mount", "sh", "-c", script])
        .env("DRAINIT", drainit())
        .env("DIR", dir)
        .output()
        .expect("run unshare (util-linux)");
    assert!(
        output.status.success(),
        "the script itself failed: {}",
        describe(&output)
    );
    output
}

#[test]
fn a_full_directory_gets_a_clear_error_and_keeps_the_older_binary() {
    let dir = scratch("install-full");
    // 64 KiB cannot hold the test build of drainit (megabytes).
    let output = in_mount_namespace(
        &dir,
        r#"mount -t tmpfs -o size=64k drainit-test "$DIR" &&
           printf 'older drainit' > "$DIR/drainit" &&
           { "$DRAINIT" install "$DIR"; echo "rc=$?"; } &&
           echo "left: $(ls -A "$DIR" | tr '\n' ' ')" &&
           echo "content: $(cat "$DIR/drainit")""#,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains("rc=1"), "{}", describe(&output));
    assert!(stderr.contains("no space left"), "{}", describe(&output));
    assert!(
        stderr.contains(&*dir.to_string_lossy()),
        "{}",
        describe(&output)
    );
    // The failed copy removed its temporary file and left the old binary.
    assert!(stdout.contains("left: drainit \n"), "{}", describe(&output));
    assert!(
        stdout.contains("content: older drainit"),
        "{}",
        describe(&output)
    );
}

#[test]
fn a_read_only_directory_gets_a_clear_error() {
    let dir = scratch("install-ro");
    let output = in_mount_namespace(
        &dir,
        r#"mount -t tmpfs -o ro drainit-test "$DIR" &&
           { "$DRAINIT" install "$DIR"; echo "rc=$?"; } &&
           echo "left: $(ls -A "$DIR" | tr '\n' ' ')""#,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.contains("rc=1"), "{}", describe(&output));
    assert!(
        stderr.contains("read-only file system"),
        "{}",
        describe(&output)
    );
    assert!(stdout.contains("left: \n"), "{}", describe(&output));
}
