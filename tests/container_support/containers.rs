//! What a case runs: a docker container or a containerd task (each
//! removed on drop), and what it reads from them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::commands::run_bounded;
use super::{Engines, APP_IMAGE, ENGINE_LIMIT};
use crate::common;

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
        Container::run_image(engines, APP_IMAGE, docker_flags, drainit_flags, app_flags)
    }

    /// The same with another image, whose entrypoint (or `--entrypoint`
    /// among `docker_flags`) is a drainit.
    pub fn run_image(
        engines: &'e Engines,
        image: &str,
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
            image,
            "--admin-listen",
            &admin_listen,
            "--ready-check",
            &ready_check,
            "--ready-check-interval",
            "100ms",
            // With the host network every listener of the machine is in the
            // container's namespace; in a pod the app's port is all there is.
            "--traffic-ports",
            &app_port,
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
