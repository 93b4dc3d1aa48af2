//! Issue 2 through the real binary: zombies as PID 1 and as a subreaper
//! (behaviours 1, 2), exit codes (5), inherited stdout/stderr (8), working
//! directory and environment (9), and the command line.
//!
//! Fixtures: `examples/zombie_maker.rs` (orphans grandchildren that exit at
//! once) and `examples/byte_pump.rs` (a large deterministic byte stream).
//! Signals are in `pid1_signals.rs`, leftovers in `pid1_leftovers.rs`, the
//! terminal in `pid1_tty.rs`.

use crate::common;
use crate::pid1_support;

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{drainit_under_unshare, scratch, wait_for, zombies_in, Proc};
use pid1_support::{arg, code, fixture, state, status_field, SOON};

/// Forking and reaping a thousand processes on a loaded machine takes a while.
const SLOW: Duration = Duration::from_secs(60);

fn touch(path: &Path) {
    std::fs::write(path, "").expect("touch");
}

fn pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .expect("pid list")
        .lines()
        .map(|l| l.trim().parse().expect("a pid"))
        .collect()
}

/// Waits for the zombie maker in `dir` to have orphaned its grandchildren.
fn await_orphans(proc: &Proc, dir: &Path) {
    assert!(
        wait_for(SLOW, || dir.join("orphaned").exists()),
        "the zombie maker did not orphan its grandchildren\n{}",
        proc.report()
    );
}

#[test]
fn as_pid1_a_thousand_orphans_exiting_at_once_leave_no_zombie() {
    let dir = scratch("zombies-pid1");
    let maker = arg(&fixture("zombie_maker"));
    let dir_arg = arg(&dir);
    let mut proc = Proc::pid1(
        &dir,
        &["--admin-listen", "off", "--", &maker, &dir_arg, "1000", "7"],
        &[],
    );
    await_orphans(&proc, &dir);
    let drainit = drainit_under_unshare(proc.pid());
    // The namespace's own /proc, seen through drainit's root.
    let ns_proc = PathBuf::from(format!("/proc/{drainit}/root/proc"));
    assert_eq!(
        status_field(&ns_proc, 1, "Name").as_deref(),
        Some("drainit"),
        "{} is not the namespace's /proc\n{}",
        ns_proc.display(),
        proc.report()
    );
    let grandchildren = pids(&dir.join("grandchildren"));
    assert_eq!(grandchildren.len(), 1000);
    for pid in &grandchildren {
        assert_eq!(
            status_field(&ns_proc, *pid, "PPid").as_deref(),
            Some("1"),
            "orphan {pid} was not re-parented to drainit (PID 1)"
        );
        assert_ne!(state(&ns_proc, *pid), Some('Z'));
    }
    // The detector sees zombies there: the maker's own unreaped child is one.
    let own = pids(&dir.join("own_zombie"))[0];
    assert_eq!(state(&ns_proc, own), Some('Z'));
    assert!(
        !zombies_in(&ns_proc).is_empty(),
        "zombies_in sees no zombie in {}",
        ns_proc.display()
    );

    touch(&dir.join("release"));
    assert!(
        wait_for(SOON, || dir.join("released").exists()),
        "{}",
        proc.report()
    );
    let mut left = Vec::new();
    let mut alive = 0;
    let reaped = wait_for(SLOW, || {
        left = zombies_in(&ns_proc);
        alive = grandchildren
            .iter()
            .filter(|p| state(&ns_proc, **p).is_some())
            .count();
        left.is_empty() && alive == 0
    });
    assert!(
        reaped,
        "{} zombies left ({} grandchildren still listed): {:?}\n{}",
        left.len(),
        alive,
        left.iter().take(5).collect::<Vec<_>>(),
        proc.report()
    );
    touch(&dir.join("done"));
    let status = proc.wait(SOON);
    assert_eq!(
        code(status),
        7,
        "the main child's code must come through\n{}",
        proc.report()
    );
}

#[test]
fn not_pid1_drainit_is_a_subreaper_and_reaps_orphans() {
    let dir = scratch("subreaper");
    let maker = arg(&fixture("zombie_maker"));
    let dir_arg = arg(&dir);
    let mut proc = Proc::drainit(
        &dir,
        &["--admin-listen", "off", "--", &maker, &dir_arg, "200", "0"],
        &[],
    );
    await_orphans(&proc, &dir);
    let drainit = proc.pid().to_string();
    let host = Path::new("/proc");
    let grandchildren = pids(&dir.join("grandchildren"));
    assert_eq!(grandchildren.len(), 200);
    for pid in &grandchildren {
        assert_eq!(
            status_field(host, *pid, "PPid").as_deref(),
            Some(drainit.as_str()),
            "orphan {pid} was not re-parented to drainit {drainit}\n{}",
            proc.report()
        );
    }
    // The check below can see zombies: the maker's unreaped child is one.
    let own = pids(&dir.join("own_zombie"))[0];
    assert_eq!(state(host, own), Some('Z'));

    touch(&dir.join("release"));
    assert!(
        wait_for(SOON, || dir.join("released").exists()),
        "{}",
        proc.report()
    );
    let mut left = Vec::new();
    let reaped = wait_for(SLOW, || {
        left = grandchildren
            .iter()
            .filter_map(|p| Some((*p, state(host, *p)?)))
            .collect();
        left.is_empty()
    });
    assert!(
        reaped,
        "orphans not reaped (pid, state): {:?}\n{}",
        left.iter().take(10).collect::<Vec<_>>(),
        proc.report()
    );
    touch(&dir.join("done"));
    assert_eq!(code(proc.wait(SOON)), 0, "{}", proc.report());
}

/// Runs drainit to its end; returns its exit code, stdout and stderr.
fn run(test: &str, args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let dir = scratch(test);
    let mut proc = Proc::drainit(&dir, args, envs);
    let status = proc.wait(SOON);
    (code(status), proc.stdout(), proc.stderr())
}

#[test]
fn exit_codes_pass_through() {
    let cases = [
        ("exit 0", 0),
        ("exit 3", 3),
        ("exit 255", 255),
        ("kill -KILL $$", 137),
        ("kill -TERM $$", 143),
    ];
    for (script, expected) in cases {
        let args = ["--admin-listen", "off", "sh", "-c", script];
        let (got, _, stderr) = run("exit-code", &args, &[]);
        assert_eq!(got, expected, "sh -c '{script}'\n{stderr}");
    }
}

#[test]
fn exit_codes_pass_through_as_pid1() {
    for (script, expected) in [("exit 3", 3), ("kill -KILL $$", 137)] {
        let dir = scratch("exit-code-pid1");
        let mut proc = Proc::pid1(&dir, &["--admin-listen", "off", "sh", "-c", script], &[]);
        let status = proc.wait(SOON);
        assert_eq!(code(status), expected, "{}", proc.report());
    }
}

/// The failure is one line on stderr that names the command.
fn assert_one_line_naming(stderr: &str, command: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got:\n{stderr}"
    );
    assert!(
        lines[0].contains(command),
        "the message does not name {command}: {stderr}"
    );
}

#[test]
fn a_missing_command_exits_127_with_one_line() {
    for command in ["drainit-test-no-such-command", "/nonexistent/dir/app"] {
        let (got, _, stderr) = run("missing", &["--admin-listen", "off", command], &[]);
        assert_eq!(got, 127, "{command}: {stderr}");
        assert_one_line_naming(&stderr, command);
    }
}

#[test]
fn a_non_executable_file_exits_126_with_one_line() {
    let dir = scratch("not-executable");
    let file = dir.join("not-executable.sh");
    std::fs::write(&file, "#!/bin/sh\nexit 0\n").expect("write file");
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let file = arg(&file);
    let (got, _, stderr) = run("not-executable", &["--admin-listen", "off", &file], &[]);
    assert_eq!(got, 126, "{stderr}");
    assert_one_line_naming(&stderr, &file);
}

/// The stream `byte_pump` writes (the same generator as `examples/byte_pump.rs`).
fn expected_stream(total: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut data = vec![0u8; total];
    for chunk in data.chunks_mut(8) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let word = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    data
}

/// `FD LINK DEV INO` lines written by `byte_pump`, by fd.
fn fd_ids(path: &Path) -> Vec<(String, u64, u64)> {
    std::fs::read_to_string(path)
        .expect("byte_pump wrote its fd ids")
        .lines()
        .map(|line| {
            let parts: Vec<&str> = line.split(' ').collect();
            let n = parts.len();
            (
                parts[1..n - 2].join(" "),
                parts[n - 2].parse().expect("dev"),
                parts[n - 1].parse().expect("ino"),
            )
        })
        .collect()
}

/// Where two byte strings first differ, for the failure message.
fn first_difference(got: &[u8], want: &[u8]) -> String {
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    format!(
        "got {} bytes, expected {}; first difference at byte {at}",
        got.len(),
        want.len()
    )
}

const BYTES: usize = 50 * 1024 * 1024;

#[test]
fn stdout_to_a_file_is_inherited_byte_for_byte() {
    let dir = scratch("stdout-file");
    let pump = arg(&fixture("byte_pump"));
    let ids = arg(&dir.join("ids"));
    let bytes = BYTES.to_string();
    let mut proc = Proc::drainit(
        &dir,
        &["--admin-listen", "off", &pump, &bytes, "42", &ids],
        &[],
    );
    let status = proc.wait(SOON);
    assert_eq!(code(status), 0, "{}", proc.report());

    // The child's fds 1 and 2 are the very files drainit was given.
    let ids = fd_ids(&dir.join("ids"));
    for (fd, file) in [(0, "stdout"), (1, "stderr")] {
        let meta = std::fs::metadata(dir.join(file)).expect("stat");
        assert_eq!(
            (ids[fd].1, ids[fd].2),
            (meta.dev(), meta.ino()),
            "the child's fd {} is {}, not drainit's {file}",
            fd + 1,
            ids[fd].0
        );
    }
    let got = std::fs::read(dir.join("stdout")).expect("read stdout");
    let want = expected_stream(BYTES, 42);
    assert!(
        got == want,
        "stdout differs: {}",
        first_difference(&got, &want)
    );
    let stderr = std::fs::read(dir.join("stderr")).expect("read stderr");
    let start = stderr
        .windows(b"<stderr-block 42>".len())
        .position(|w| w == b"<stderr-block 42>")
        .unwrap_or_else(|| panic!("no stderr block\n{}", proc.report()));
    let block = &stderr[start..];
    assert!(
        block.len() >= 65_536 && block[..65_536].ends_with(b"</stderr-block>"),
        "the child's 64 KiB stderr write is not intact"
    );
}

/// Kills the process group of a `Command` child on drop.
struct Group(std::process::Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            common::kill(-(self.0.id() as i32), libc::SIGKILL);
            let _ = self.0.wait();
        }
    }
}

#[test]
fn stdout_to_a_pipe_is_the_same_pipe_byte_for_byte() {
    use std::os::fd::AsRawFd;
    let dir = scratch("stdout-pipe");
    let pump = fixture("byte_pump");
    let ids = dir.join("ids");
    let mut child = Group(
        common::without_cluster_env(
            Command::new(common::drainit())
                .args(["--admin-listen", "off"])
                .arg(&pump)
                .arg(BYTES.to_string())
                .arg("7")
                .arg(&ids)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(dir.join("stderr")).expect("stderr file"))
                .process_group(0),
            &[],
        )
        .spawn()
        .expect("start drainit"),
    );
    let mut stdout = child.0.stdout.take().expect("piped stdout");
    let pipe = std::fs::read_link(format!("/proc/self/fd/{}", stdout.as_raw_fd()))
        .expect("readlink our end");
    assert!(pipe.to_string_lossy().starts_with("pipe:"), "{pipe:?}");
    // The pump blocks on the full pipe until we read, so drainit is alive.
    let drainit_fd1 =
        std::fs::read_link(format!("/proc/{}/fd/1", child.0.id())).expect("readlink drainit fd 1");
    assert_eq!(drainit_fd1, pipe, "drainit's stdout is not our pipe");

    let mut got = Vec::with_capacity(BYTES);
    stdout.read_to_end(&mut got).expect("read the pipe");
    let deadline = std::time::Instant::now() + SOON;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "drainit did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    assert_eq!(code(status), 0, "{stderr}");
    let ids = fd_ids(&ids);
    assert_eq!(
        PathBuf::from(&ids[0].0),
        pipe,
        "the child's stdout is not drainit's pipe: no pipe may sit in between"
    );
    let want = expected_stream(BYTES, 7);
    assert!(
        got == want,
        "stdout differs: {}",
        first_difference(&got, &want)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `env -0` output as a sorted list of `KEY=VALUE` byte strings.
fn env_entries(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut entries: Vec<Vec<u8>> = bytes
        .split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    entries.sort();
    entries
}

#[test]
fn working_directory_and_environment_pass_through() {
    let dir = scratch("cwd-env");
    let work = dir.join("work dir ü");
    std::fs::create_dir(&work).expect("mkdir");
    let extra: Vec<(OsString, OsString)> = vec![
        (
            "DRAINIT_TEST_PLAIN".into(),
            "hello world\twith=equals".into(),
        ),
        (
            "DRAINIT_TEST_BYTES".into(),
            OsString::from_vec(vec![0xff, b'\n', 0xfe, b'x']),
        ),
        ("PID1_TEST_VALUE".into(), "42".into()),
        // Real settings: drainit reads them and passes them on (documented).
        ("DRAINIT_PROPAGATION_DELAY".into(), "0s".into()),
        ("DRAINIT_LOG_FORMAT".into(), "json".into()),
    ];
    let run_in_work = |program: &[&str], out: &str| {
        let mut child = Group(
            common::without_cluster_env(
                Command::new(common::drainit())
                    .args(["--admin-listen", "off", "-v"])
                    .args(program)
                    .envs(extra.iter().map(|(k, v)| (k, v)))
                    .current_dir(&work)
                    .stdin(Stdio::null())
                    .stdout(std::fs::File::create(dir.join(out)).expect("out"))
                    .stderr(std::fs::File::create(dir.join(format!("{out}.err"))).expect("err"))
                    .process_group(0),
                &[],
            )
            .spawn()
            .expect("start drainit"),
        );
        assert!(wait_for(SOON, || matches!(child.0.try_wait(), Ok(Some(_)))));
        let status = child.0.wait().expect("status");
        let err = std::fs::read_to_string(dir.join(format!("{out}.err"))).unwrap_or_default();
        assert_eq!(code(status), 0, "{program:?}: {err}");
        assert!(
            err.contains("\"level\""),
            "DRAINIT_LOG_FORMAT=json was not applied: {err}"
        );
        std::fs::read(dir.join(out)).expect("read output")
    };

    let cwd = run_in_work(&["pwd", "-P"], "cwd");
    let want = std::fs::canonicalize(&work).expect("canonical work dir");
    assert_eq!(
        cwd.strip_suffix(b"\n").unwrap_or(&cwd),
        want.as_os_str().as_bytes(),
        "the child must run in drainit's working directory"
    );

    let env = env_entries(&run_in_work(&["env", "-0"], "env"));
    // The Kubernetes API's environment is never handed on by the tests.
    let mut expected: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .filter(|(k, _)| !k.to_str().is_some_and(common::is_cluster_env))
        .collect();
    expected.extend(extra.iter().cloned());
    let expected = env_entries(
        &expected
            .iter()
            .flat_map(|(k, v)| {
                let mut entry = k.as_bytes().to_vec();
                entry.push(b'=');
                entry.extend_from_slice(v.as_bytes());
                entry.push(0);
                entry
            })
            .collect::<Vec<u8>>(),
    );
    let show = |list: &[Vec<u8>]| {
        list.iter()
            .map(|e| String::from_utf8_lossy(e).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        show(&env),
        show(&expected),
        "the child's environment must be drainit's, DRAINIT_* included"
    );
    assert!(env == expected, "environment bytes differ");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_lists_the_flags() {
    let (got, stdout, stderr) = run("help", &["--help"], &[]);
    assert_eq!(got, 0, "{stderr}");
    for flag in [
        "--signal-target",
        "--rewrite",
        "--propagation-delay",
        "--leftover-grace",
        "--admin-listen",
        "--verbose",
        "--log-format",
        "--version",
    ] {
        assert!(
            stdout.contains(flag),
            "--help does not list {flag}:\n{stdout}"
        );
    }
    let (got, stdout, _) = run("version", &["--version"], &[]);
    assert_eq!(got, 0);
    assert_eq!(
        stdout.trim(),
        concat!("drainit ", env!("CARGO_PKG_VERSION"))
    );
}

/// Bad input exits 2, names the flag, and runs nothing.
fn assert_refused(test: &str, args: &[&str], envs: &[(&str, &str)], needles: &[&str]) {
    let dir = scratch(test);
    let marker = dir.join("ran");
    let script = format!("touch '{}'", marker.display());
    let mut full = vec!["--admin-listen", "off"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["sh", "-c", &script]);
    let mut proc = Proc::drainit(&dir, &full, envs);
    let status = proc.wait(SOON);
    assert_eq!(code(status), 2, "{args:?} {envs:?}\n{}", proc.report());
    let stderr = proc.stderr();
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?} {envs:?}: stderr does not name {needle}:\n{stderr}"
        );
    }
    assert!(!marker.exists(), "{args:?}: the command ran anyway");
}

#[test]
fn an_unknown_flag_exits_2_naming_it() {
    assert_refused("bad-flag", &["--no-such-flag"], &[], &["--no-such-flag"]);
}

#[test]
fn bad_values_exit_2_naming_the_flag() {
    assert_refused(
        "bad-rewrite",
        &["--rewrite", "USR1:NOPE"],
        &[],
        &["--rewrite", "NOPE"],
    );
    assert_refused(
        "bad-stop-signal",
        &["--stop-signal", "TERMINATE"],
        &[],
        &["--stop-signal", "TERMINATE"],
    );
    assert_refused(
        "bad-target",
        &["--signal-target", "everyone"],
        &[],
        &["--signal-target", "child"],
    );
    assert_refused(
        "bad-duration",
        &["--propagation-delay", "5parsecs"],
        &[],
        &["--propagation-delay", "5parsecs"],
    );
    assert_refused(
        "bad-env-duration",
        &[],
        &[("DRAINIT_LEFTOVER_GRACE", "soon")],
        &["--leftover-grace", "soon"],
    );
}

#[test]
fn a_missing_command_exits_2() {
    let (got, _, stderr) = run("no-command", &["--admin-listen", "off"], &[]);
    assert_eq!(got, 2, "{stderr}");
    assert!(stderr.contains("no command"), "{stderr}");
}

#[test]
fn options_stop_at_the_first_non_option_and_double_dash_is_accepted() {
    let (got, stdout, stderr) = run(
        "first-non-option",
        &["--admin-listen", "off", "sh", "-c", "exit 3", "--version"],
        &[],
    );
    assert_eq!(got, 3, "{stderr}");
    assert!(!stdout.contains("drainit"), "{stdout}");
    let (got, _, stderr) = run(
        "double-dash",
        &["--admin-listen", "off", "--", "sh", "-c", "exit 4"],
        &[],
    );
    assert_eq!(got, 4, "{stderr}");
}

/// A script without `#!` runs through `/bin/sh` (execvp's ENOEXEC
/// fallback, as under tini, dumb-init and catatonit), by path and by
/// `PATH` search, on both spawn paths: `posix_spawn` (the usual case) and
/// fork + exec (forced here by a handled signal inherited as ignored, as a
/// terminal forces it). Before the fix the `posix_spawn` path exited 126
/// while the fork path ran the script (glibc's execvp falls back itself).
#[test]
fn a_script_without_a_shebang_runs_through_sh_on_both_spawn_paths() {
    let dir = scratch("no-shebang");
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).expect("bin dir");
    let script = bin.join("drainit-test-start");
    std::fs::write(&script, "echo \"ran by sh with $1\"\nexit 7\n").expect("write script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let path = format!("{}:/usr/bin:/bin", arg(&bin));
    let by_path = arg(&script);
    for (spawn_path, ignore) in [("posix_spawn", ""), ("fork", "trap '' USR1; ")] {
        for program in [by_path.as_str(), "drainit-test-start"] {
            let line = format!(
                "{ignore}exec unshare --pid --fork --mount-proc --kill-child \"$0\" \
                 --admin-listen off {program} an-argument"
            );
            let case_dir = scratch("no-shebang-case");
            let mut proc = Proc::start(
                &case_dir,
                "sh",
                &["-c", &line, common::drainit()],
                &[("PATH", &path)],
            );
            let status = proc.wait(SOON);
            assert_eq!(
                code(status),
                7,
                "{spawn_path}, {program}: the script must run through sh\n{}",
                proc.report()
            );
            assert!(
                proc.stdout().contains("ran by sh with an-argument"),
                "{spawn_path}, {program}\n{}",
                proc.report()
            );
        }
    }
}
