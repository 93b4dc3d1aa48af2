//! Helpers for the checker's tests: run the real `drainit-check` binary,
//! bounded in time, and report everything when an assertion fails.
//! (The root crate's `tests/common` runs the `drainit` binary, which is
//! not built for this package's tests.)
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A run of the checker must end within this (it takes milliseconds).
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The repository's root (the workspace, one level above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives inside the workspace")
        .to_path_buf()
}

/// One finished run of the checker.
pub struct Run {
    /// The command line, for reports.
    pub args: Vec<String>,
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl Run {
    /// Command, status and output, for assertion messages.
    pub fn report(&self) -> String {
        format!(
            "drainit-check {:?} exited {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.code, self.stdout, self.stderr
        )
    }

    /// stdout parsed as the JSON array `--format json` prints.
    pub fn json(&self) -> Vec<serde_json::Value> {
        match serde_json::from_str(&self.stdout) {
            Ok(serde_json::Value::Array(items)) => items,
            other => panic!("not a JSON array ({other:?}):\n{}", self.report()),
        }
    }
}

/// Runs the checker with `args`.
pub fn check(args: &[&str]) -> Run {
    check_with(args, None, &[])
}

/// Runs the checker with `args`, `stdin` (else /dev/null) and extra environment variables.
pub fn check_with(args: &[&str], stdin: Option<&str>, envs: &[(&str, &str)]) -> Run {
    run_checker(None, args, stdin, envs)
}

/// Runs the checker with `args` in the directory `dir` (where it looks for its config file).
pub fn check_in(dir: &Path, args: &[&str]) -> Run {
    run_checker(Some(dir), args, None, &[])
}

fn run_checker(
    dir: Option<&Path>,
    args: &[&str],
    stdin: Option<&str>,
    envs: &[(&str, &str)],
) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_drainit-check"));
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let mut child = command
        .args(args)
        .envs(envs.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start drainit-check");
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let text = text.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for drainit-check") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("drainit-check {args:?} did not finish within {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}
