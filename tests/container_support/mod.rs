//! The container engines of `tests/container.rs`: Debian's `dockerd` (with
//! the containerd it starts) and a containerd of the test's own for `ctr`,
//! all state under one scratch directory, started once per test run and
//! stopped by pid when the run ends, also after a failed case. Plus the
//! static binaries and the image the cases run.
//!
//! Clean-up does not rely on the test process ending well: it makes itself
//! a child subreaper, so the containerd shims (which daemonise) stay its
//! descendants and are killed by pid at the end; a run that was killed
//! outright leaves its directory behind, and the next run kills what still
//! names that directory, unmounts it and deletes it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, kill, wait_for, Proc};

/// Debian's docker client: the daemon's own version, which builds with
/// BuildKit without the buildx plugin (a newer client elsewhere in PATH may not).
pub const DOCKER: &str = "/usr/bin/docker";
/// The image every docker case runs: the Dockerfile's runtime stage plus the app.
pub const APP_IMAGE: &str = "drainit-test-app:latest";
/// The Dockerfile's runtime stage, built from the static drainit.
pub const RUNTIME_IMAGE: &str = "drainit-test-runtime:latest";
/// The containerd namespace of the `ctr` cases.
pub const CTR_NAMESPACE: &str = "drainit-test";
/// Where every run keeps its state: `run-<pid>` per test process.
const RUNS_ROOT: &str = "/tmp/drainit-container-tests";
/// Generous bound for engine commands on a loaded machine.
pub const ENGINE_LIMIT: Duration = Duration::from_secs(120);

/// The running engines; dropping it stops them and removes their state.
pub struct Engines {
    /// This run's directory (`RUNS_ROOT/run-<pid>`).
    pub dir: PathBuf,
    /// The storage driver dockerd runs with (overlay2, or vfs where overlay does not work).
    pub storage_driver: &'static str,
    /// The app image's reference in the test's containerd.
    pub ctr_image: String,
    dockerd: Option<Proc>,
    containerd: Option<Proc>,
}

impl Engines {
    /// Builds the binaries, starts both engines and builds the image;
    /// panics (after cleaning up) with the reason if any step fails.
    pub fn start() -> Engines {
        // SAFETY: geteuid cannot fail.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "the container tests start dockerd and containerd: run them as root"
        );
        for name in ["dockerd", "containerd", "ctr", "runc", "tar"] {
            tool(name);
        }
        assert!(
            Path::new(DOCKER).exists(),
            "{DOCKER} is missing: install docker.io"
        );
        become_subreaper();
        clean_stale_runs();
        let dir = Path::new(RUNS_ROOT).join(format!("run-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the run directory");
        let mut engines = Engines {
            dir,
            storage_driver: "overlay2",
            ctr_image: String::new(),
            dockerd: None,
            containerd: None,
        };
        let (drainit, app) = build_static_binaries();
        engines.start_dockerd();
        engines.build_images(&drainit, &app);
        engines.start_containerd();
        engines.import_image();
        engines
    }

    /// A docker command against this run's daemon.
    pub fn docker(&self, args: &[&str]) -> Command {
        let mut command = Command::new(DOCKER);
        command
            .args(args)
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.dir.join("docker.sock").display()),
            )
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .env("DOCKER_BUILDKIT", "1");
        command
    }

    /// Runs a docker command, asserts it succeeds, returns its stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        succeed(&mut self.docker(args), ENGINE_LIMIT)
    }

    /// A ctr command against this run's own containerd, in its namespace.
    pub fn ctr(&self, args: &[&str]) -> Command {
        let mut command = Command::new(tool("ctr"));
        command
            .arg("--address")
            .arg(self.dir.join("containerd/containerd.sock"))
            .args(["--namespace", CTR_NAMESPACE])
            .args(args);
        command
    }

    /// `--snapshotter native` where overlay does not work, else nothing.
    pub fn ctr_snapshotter(&self) -> &'static [&'static str] {
        if self.storage_driver == "vfs" {
            &["--snapshotter", "native"]
        } else {
            &[]
        }
    }

    /// What dockerd has logged so far.
    pub fn dockerd_log(&self) -> String {
        self.dockerd.as_ref().map(Proc::stderr).unwrap_or_default()
    }

    /// Copies the daemons' logs out of the run directory (which the drop
    /// deletes), for a failed run; returns where they are.
    pub fn keep_logs(&self) -> PathBuf {
        let kept = Path::new(RUNS_ROOT).join(format!("failed-{}.log", std::process::id()));
        let containerd_log = self
            .containerd
            .as_ref()
            .map(Proc::stderr)
            .unwrap_or_default();
        let text = format!(
            "--- dockerd ---\n{}\n--- containerd ---\n{containerd_log}",
            self.dockerd_log()
        );
        if let Err(error) = std::fs::write(&kept, text) {
            eprintln!("container tests: cannot write {}: {error}", kept.display());
        }
        kept
    }

    /// `docker inspect -f FORMAT TARGET`, trimmed.
    pub fn inspect(&self, target: &str, format: &str) -> String {
        self.docker_ok(&["inspect", "-f", format, target])
            .trim()
            .to_string()
    }

    /// The files in `image`'s layers (directories left out), sorted.
    pub fn image_files(&self, image: &str) -> Vec<String> {
        let unpacked = self.dir.join("image-files");
        let _ = std::fs::remove_dir_all(&unpacked);
        std::fs::create_dir_all(&unpacked).expect("create the unpack directory");
        let archive = unpacked.join("image.tar");
        let archive_arg = archive.to_str().expect("the run directory is UTF-8");
        self.docker_ok(&["save", "-o", archive_arg, image]);
        succeed(
            Command::new(tool("tar"))
                .arg("-xf")
                .arg(&archive)
                .arg("-C")
                .arg(&unpacked),
            ENGINE_LIMIT,
        );
        let manifest = std::fs::read_to_string(unpacked.join("manifest.json"))
            .expect("manifest.json in the saved image");
        let manifest: serde_json::Value =
            serde_json::from_str(&manifest).expect("manifest.json is JSON");
        let layers = manifest[0]["Layers"]
            .as_array()
            .expect("the manifest lists layers");
        let mut files: Vec<String> = layers
            .iter()
            .filter_map(|layer| layer.as_str())
            .flat_map(|layer| {
                succeed(
                    Command::new(tool("tar"))
                        .arg("-tf")
                        .arg(unpacked.join(layer)),
                    ENGINE_LIMIT,
                )
                .lines()
                .filter(|entry| !entry.ends_with('/'))
                .map(|entry| entry.trim_start_matches("./").to_string())
                .collect::<Vec<_>>()
            })
            .collect();
        files.sort();
        files.dedup();
        files
    }

    /// Starts dockerd on overlay2, or on vfs if overlay2 cannot run here.
    fn start_dockerd(&mut self) {
        let mut failures = String::new();
        for driver in ["overlay2", "vfs"] {
            let log_dir = self.dir.join(format!("dockerd-{driver}"));
            std::fs::create_dir_all(&log_dir).expect("create the dockerd log directory");
            let path = |name: &str| {
                self.dir
                    .join(name)
                    .to_str()
                    .expect("the run directory is UTF-8")
                    .to_string()
            };
            let host = format!("unix://{}", path("docker.sock"));
            let args = [
                "--data-root",
                &path("docker-data"),
                "--exec-root",
                &path("docker-exec"),
                "--pidfile",
                &path("docker.pid"),
                "-H",
                &host,
                "--storage-driver",
                driver,
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
            ];
            let mut dockerd = Proc::start(
                &log_dir,
                &tool("dockerd"),
                &args,
                &[("PATH", &search_path())],
            );
            let up = wait_for(Duration::from_secs(60), || {
                !dockerd.running() || answers(&mut self.docker(&["info"]))
            });
            if up && dockerd.running() {
                self.storage_driver = driver;
                if driver != "overlay2" {
                    eprintln!("container tests: dockerd cannot use overlay2 here, running on vfs:\n{failures}");
                }
                self.dockerd = Some(dockerd);
                return;
            }
            failures.push_str(&format!(
                "--- dockerd with {driver} ---\n{}\n",
                dockerd.report()
            ));
            stop(&mut dockerd);
        }
        panic!("dockerd did not start with overlay2 nor with vfs:\n{failures}");
    }

    /// Builds the Dockerfile's runtime stage from the static drainit
    /// (`DRAINIT_BINARY=prebuilt`), then the app image on top of it.
    fn build_images(&self, drainit: &Path, app: &Path) {
        let runtime_context = self.dir.join("context-runtime");
        std::fs::create_dir_all(&runtime_context).expect("create the build context");
        let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile");
        std::fs::copy(&dockerfile, runtime_context.join("Dockerfile"))
            .expect("copy the Dockerfile");
        std::fs::copy(drainit, runtime_context.join("drainit-static"))
            .expect("copy the static drainit");
        let context = runtime_context
            .to_str()
            .expect("the run directory is UTF-8");
        self.docker_ok(&[
            "build",
            "--quiet",
            "--build-arg",
            "DRAINIT_BINARY=prebuilt",
            "-t",
            RUNTIME_IMAGE,
            context,
        ]);

        let app_context = self.dir.join("context-app");
        std::fs::create_dir_all(&app_context).expect("create the build context");
        std::fs::write(
            app_context.join("Dockerfile"),
            format!("FROM {RUNTIME_IMAGE}\nCOPY http_app /http_app\n"),
        )
        .expect("write the app's Dockerfile");
        std::fs::copy(app, app_context.join("http_app")).expect("copy the static app");
        let context = app_context.to_str().expect("the run directory is UTF-8");
        self.docker_ok(&["build", "--quiet", "-t", APP_IMAGE, context]);
    }

    /// Starts a containerd of our own (no CRI plugin), for `ctr`.
    fn start_containerd(&mut self) {
        let dir = self.dir.join("containerd");
        std::fs::create_dir_all(&dir).expect("create the containerd directory");
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{socket}\"\n[ttrpc]\n  address = \"{socket}.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            socket = dir.join("containerd.sock").display(),
            opt = dir.join("opt").display(),
        );
        std::fs::write(dir.join("config.toml"), config).expect("write containerd's config");
        let mut containerd = Proc::start(
            &dir,
            &tool("containerd"),
            // Absolute: a killed run's clean-up finds its daemons by the
            // run directory in their command lines.
            &[
                "--config",
                dir.join("config.toml").to_str().expect("UTF-8 path"),
            ],
            &[("PATH", &search_path())],
        );
        let up = wait_for(Duration::from_secs(60), || {
            !containerd.running() || answers(&mut self.ctr(&["version"]))
        });
        assert!(
            up && containerd.running(),
            "containerd did not start:\n{}",
            containerd.report()
        );
        self.containerd = Some(containerd);
    }

    /// `docker save` the app image, `ctr image import` it.
    fn import_image(&mut self) {
        let archive = self.dir.join("app-image.tar");
        let archive_arg = archive
            .to_str()
            .expect("the run directory is UTF-8")
            .to_string();
        self.docker_ok(&["save", "-o", &archive_arg, APP_IMAGE]);
        let mut import = vec!["image", "import"];
        import.extend_from_slice(self.ctr_snapshotter());
        import.push(&archive_arg);
        succeed(&mut self.ctr(&import), ENGINE_LIMIT);
        let images = succeed(&mut self.ctr(&["image", "ls", "-q"]), ENGINE_LIMIT);
        self.ctr_image = images
            .lines()
            .find(|name| name.contains("drainit-test-app"))
            .unwrap_or_else(|| panic!("the imported image is not in containerd: {images}"))
            .to_string();
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        if self.dockerd.as_mut().is_some_and(Proc::running) {
            if let Ok(ids) = run_bounded(&mut self.docker(&["ps", "-aq"]), ENGINE_LIMIT) {
                let ids = String::from_utf8_lossy(&ids.stdout).into_owned();
                let mut remove = vec!["rm", "-f"];
                remove.extend(ids.split_whitespace());
                if remove.len() > 2 {
                    let _ = run_bounded(&mut self.docker(&remove), ENGINE_LIMIT);
                }
            }
        }
        for daemon in [self.dockerd.as_mut(), self.containerd.as_mut()]
            .into_iter()
            .flatten()
        {
            stop(daemon);
        }
        self.dockerd = None;
        self.containerd = None;
        // The shims and anything they left: our descendants, as we are a subreaper.
        kill_descendants(std::process::id() as i32);
        clean_run_dir(&self.dir);
    }
}

/// A docker container of a case, removed on drop.
pub struct Container<'e> {
    engines: &'e Engines,
    /// Its name (also what docker commands take).
    pub name: String,
    /// drainit's admin address (host network: loopback).
    pub admin: SocketAddr,
    /// The app's address.
    pub app: SocketAddr,
}

impl<'e> Container<'e> {
    /// `docker run -d --network host [docker_flags] APP_IMAGE [drainit_flags] -- /http_app PORT [app_flags]`,
    /// with drainit's admin server and ready check on free loopback ports;
    /// returns once `/ready` answers 200.
    pub fn run(
        engines: &'e Engines,
        docker_flags: &[&str],
        drainit_flags: &[&str],
        app_flags: &[&str],
    ) -> Container<'e> {
        let admin = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
        let app = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
        let name = format!("drainit-test-{}-{}", std::process::id(), admin.port());
        let admin_listen = admin.to_string();
        let ready_check = format!("http://{app}/healthz");
        let app_port = app.port().to_string();
        let mut args = vec!["run", "-d", "--name", &name, "--network", "host"];
        args.extend_from_slice(docker_flags);
        args.extend([
            APP_IMAGE,
            "--admin-listen",
            &admin_listen,
            "--ready-check",
            &ready_check,
            "--ready-check-interval",
            "100ms",
        ]);
        args.extend_from_slice(drainit_flags);
        args.extend(["--", "/http_app", &app_port]);
        args.extend_from_slice(app_flags);
        engines.docker_ok(&args);
        let container = Container {
            engines,
            name,
            admin,
            app,
        };
        assert!(
            common::wait_status(admin, "/ready", 200, Duration::from_secs(30)),
            "/ready never answered 200\n{}",
            container.logs()
        );
        container
    }

    /// `docker logs`: drainit's and the app's output (both write stderr).
    pub fn logs(&self) -> String {
        let output = run_bounded(
            &mut self.engines.docker(&["logs", &self.name]),
            ENGINE_LIMIT,
        )
        .unwrap_or_else(|e| panic!("docker logs: {e}"));
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// `docker stop -t TIMEOUT`; returns how long it took.
    pub fn stop(&self, timeout_seconds: u32) -> Duration {
        let started = Instant::now();
        self.engines
            .docker_ok(&["stop", "-t", &timeout_seconds.to_string(), &self.name]);
        started.elapsed()
    }

    /// `docker inspect -f FORMAT` of this container.
    pub fn inspect(&self, format: &str) -> String {
        self.engines.inspect(&self.name, format)
    }

    /// The exit code docker records.
    pub fn exit_code(&self) -> i32 {
        let code = self.inspect("{{.State.ExitCode}}");
        code.parse()
            .unwrap_or_else(|_| panic!("exit code {code:?}"))
    }

    /// The host pid of the container's PID 1 (drainit).
    pub fn host_pid(&self) -> i32 {
        let pid = self.inspect("{{.State.Pid}}");
        pid.parse().unwrap_or_else(|_| panic!("pid {pid:?}"))
    }

    /// The full container id, as dockerd's log names it.
    pub fn id(&self) -> String {
        self.inspect("{{.Id}}")
    }

    /// Whether dockerd logged that it SIGKILLed this container at the end of its timeout.
    pub fn docker_used_force(&self) -> bool {
        let id = self.id();
        self.engines
            .dockerd_log()
            .lines()
            .any(|line| line.contains("using the force") && line.contains(&id))
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = run_bounded(
            &mut self.engines.docker(&["rm", "-f", &self.name]),
            ENGINE_LIMIT,
        );
    }
}

/// A containerd task of a case, killed and deleted on drop.
pub struct CtrTask<'e> {
    engines: &'e Engines,
    /// The container id (also the task's).
    pub id: String,
}

impl<'e> CtrTask<'e> {
    /// Names the task `id` so it is cleaned up however the case ends.
    pub fn guard(engines: &'e Engines, id: String) -> CtrTask<'e> {
        CtrTask { engines, id }
    }
}

impl Drop for CtrTask<'_> {
    fn drop(&mut self) {
        let _ = run_bounded(
            &mut self
                .engines
                .ctr(&["task", "kill", "--signal", "SIGKILL", &self.id]),
            ENGINE_LIMIT,
        );
        let _ = run_bounded(
            &mut self.engines.ctr(&["task", "delete", "--force", &self.id]),
            ENGINE_LIMIT,
        );
        let _ = run_bounded(
            &mut self.engines.ctr(&["container", "delete", &self.id]),
            ENGINE_LIMIT,
        );
    }
}

/// CLOCK_MONOTONIC in ns: what the app stamps its signal lines with (a
/// container shares the host's clock).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// When the app received `signal`, from its `http_app: signal N at NS` lines.
pub fn signal_times(output: &str, signal: i32) -> Vec<u64> {
    let prefix = format!("http_app: signal {signal} at ");
    output
        .lines()
        .filter_map(|line| line.split_once(&prefix))
        .filter_map(|(_, ns)| ns.trim().parse().ok())
        .collect()
}

/// A counter or gauge of drainit's `/metrics` (`None` if absent).
pub fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let (_, body) = common::get(admin, "/metrics")?;
    body.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

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
fn answers(command: &mut Command) -> bool {
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
fn build_static_binaries() -> (PathBuf, PathBuf) {
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

/// Asks the kernel to re-parent orphans of our descendants to us, so the
/// daemonised containerd shims are ours to stop.
fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    let result = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(
        result,
        0,
        "cannot become a child subreaper: {}",
        std::io::Error::last_os_error()
    );
}

/// SIGTERM, up to 30 s to exit, then SIGKILL (the `Proc` drop).
fn stop(daemon: &mut Proc) {
    if !daemon.running() {
        return;
    }
    daemon.signal(libc::SIGTERM);
    if !wait_for(Duration::from_secs(30), || !daemon.running()) {
        eprintln!(
            "container tests: {} ignored SIGTERM for 30 s; SIGKILL",
            daemon.description
        );
    }
}

/// SIGKILLs every descendant of `pid` and reaps them, for up to 20 s.
fn kill_descendants(pid: i32) {
    wait_for(Duration::from_secs(20), || {
        let left = common::descendants(pid);
        for &child in &left {
            kill(child, libc::SIGKILL);
        }
        reap_orphans();
        common::descendants(pid).iter().all(|&p| is_zombie(p))
    });
    reap_orphans();
}

/// Reaps the exited orphans handed to us as subreaper.
fn reap_orphans() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into the valid int.
        if unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } <= 0 {
            return;
        }
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Deletes the directories of earlier runs whose test process is gone:
/// kills what still names them (their shims and daemons), unmounts them.
fn clean_stale_runs() {
    let Ok(entries) = std::fs::read_dir(RUNS_ROOT) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("run-"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        eprintln!(
            "container tests: cleaning up the stale run {}",
            dir.display()
        );
        for process in processes_naming(&dir) {
            for child in common::descendants(process) {
                kill(child, libc::SIGKILL);
            }
            kill(process, libc::SIGKILL);
        }
        clean_run_dir(&dir);
    }
}

/// Processes whose command line or working directory names `dir`
/// (the daemons and shims of a run).
fn processes_naming(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
                || std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                    String::from_utf8_lossy(&cmdline)
                        .replace('\0', " ")
                        .contains(&needle)
                })
        })
        .collect()
}

/// Unmounts everything under `dir` (deepest first), then removes it.
fn clean_run_dir(dir: &Path) {
    let prefix = format!("{}/", dir.display());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in mounts {
        let Ok(path) = std::ffi::CString::new(point) else {
            continue;
        };
        // SAFETY: umount2 reads the NUL-terminated path.
        if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
            eprintln!(
                "container tests: cannot unmount {point}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    if let Err(error) = std::fs::remove_dir_all(dir) {
        eprintln!("container tests: cannot remove {}: {error}", dir.display());
    }
}

/// PATH with the sbin directories (where Debian puts dockerd and runc) added.
fn search_path() -> String {
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
