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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

mod cleanup;
mod commands;
mod containers;

use cleanup::{become_subreaper, clean_run_dir, clean_stale_runs, kill_descendants, stop};
use commands::{answers, build_static_binaries, search_path};
pub use commands::{run_bounded, succeed, tool};
pub use containers::{metric, signal_times, Container, CtrTask};

use crate::common::{wait_for, Proc};

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
    /// The static drainit the images hold (`scripts/build-static.sh`).
    pub static_drainit: PathBuf,
    /// The static test app (`tests/container_app`).
    pub static_app: PathBuf,
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
            static_drainit: PathBuf::new(),
            static_app: PathBuf::new(),
            dockerd: None,
            containerd: None,
        };
        let (drainit, app) = build_static_binaries();
        engines.static_drainit = drainit.clone();
        engines.static_app = app.clone();
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
