//! drainit under real container engines (issue 12): Debian's dockerd and
//! containerd, started by the test, run the image users get (the
//! Dockerfile's runtime stage: FROM scratch, USER, STOPSIGNAL, ENTRYPOINT)
//! with a static test app, and stop it with `docker stop` and `ctr task
//! kill`, so the engine's seccomp profile, user, read-only root, stop
//! signal and SIGKILL timeout are part of what is tested.
//!
//! A test target with its own `main` (`harness = false`): the engines are
//! started once, every case runs in turn against them (a failed case does
//! not stop the others), and they are stopped by pid before the process
//! exits. The summary line has the form of libtest's, so scripts/test.sh
//! counts these cases with the others. Arguments that are not flags filter
//! the cases by name, as libtest's do; with none selected, nothing starts.
//!
//! Each case is one function taking the engines; a variation of a drain is
//! one call of `drain_on_docker_stop` with other flags and exit code.

mod common;
mod container_support;

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{get, monotonic_ns, wait_for, wait_status, Proc};
use container_support::{
    metric, run_bounded, signal_times, succeed, Container, CtrTask, Engines, APP_IMAGE,
    ENGINE_LIMIT,
};

/// The propagation delay of the drain cases.
const DELAY: Duration = Duration::from_secs(2);
/// Generous slack over an expected duration, for a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(8);
/// What an app that dies by SIGTERM exits with through drainit (128 + 15).
const EXIT_SIGTERM: i32 = 143;
/// ... and one killed by SIGKILL (128 + 9).
const EXIT_SIGKILL: i32 = 137;

/// One case: it gets the running engines and panics on failure.
type Case = fn(&Engines);

/// Every case, in the order they run.
const CASES: &[(&str, Case)] = &[
    (
        "docker_stop_drains_then_stops_the_app",
        docker_stop_drains_then_stops_the_app,
    ),
    (
        "docker_stop_with_remap_exit_reports_success",
        docker_stop_with_remap_exit_reports_success,
    ),
    (
        "non_root_read_only_image_of_two_files",
        non_root_read_only_image_of_two_files,
    ),
    (
        "drainit_kills_before_docker_does",
        drainit_kills_before_docker_does,
    ),
    (
        "reaps_orphans_and_forwards_docker_kill",
        reaps_orphans_and_forwards_docker_kill,
    ),
    (
        "prestop_hook_drains_and_answers_once_the_app_exited",
        prestop_hook_drains_and_answers_once_the_app_exited,
    ),
    (
        "ctr_task_kill_drains_then_stops_the_app",
        ctr_task_kill_drains_then_stops_the_app,
    ),
    (
        "auto_delay_under_docker_as_nobody",
        auto_delay_under_docker_as_nobody,
    ),
    (
        "install_into_a_volume_drains_an_unmodified_image",
        install_into_a_volume_drains_an_unmodified_image,
    ),
];

/// 1. `docker stop`: drain, then the stop signal, exit code 143.
fn docker_stop_drains_then_stops_the_app(engines: &Engines) {
    drain_on_docker_stop(engines, &[], EXIT_SIGTERM);
}

/// 1b. The same drain with `--remap-exit 143:0`: the engine records 0, so
/// a pod that drained to plan ends Completed, not Error.
fn docker_stop_with_remap_exit_reports_success(engines: &Engines) {
    drain_on_docker_stop(engines, &["--remap-exit", "143:0"], 0);
}

/// Case 7, `--propagation-delay auto` as nobody under the engine's default
/// seccomp profile: sock_diag works there, and `docker stop` returns soon
/// after the traffic stops, long before the 20 s ceiling.
fn auto_delay_under_docker_as_nobody(engines: &Engines) {
    let container = Container::run(
        engines,
        &["--user", "65534:65534"],
        &[
            "--propagation-delay",
            "auto",
            "--propagation-delay-max",
            "20s",
            "--grace-period",
            "40s",
        ],
        &[],
    );
    let stop_traffic = AtomicBool::new(false);
    let traffic_for = Duration::from_secs(2);
    let (took, stopped_after, failed) = std::thread::scope(|scope| {
        let client = scope.spawn(|| {
            let mut failed = 0u32;
            let limit = Instant::now() + Duration::from_secs(60);
            while !stop_traffic.load(Ordering::SeqCst) && Instant::now() < limit {
                if get(container.app, "/healthz").map(|(code, _)| code) != Some(200) {
                    failed += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            failed
        });
        // The rate before the drain is measured from 1 s samples.
        std::thread::sleep(Duration::from_secs(3));
        let began = Instant::now();
        let stop = scope.spawn(|| container.stop(40));
        std::thread::sleep(traffic_for);
        stop_traffic.store(true, Ordering::SeqCst);
        let failed = client.join().unwrap_or(u32::MAX);
        let stopped_after = began.elapsed();
        let took = stop
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (took, stopped_after, failed)
    });
    let logs = container.logs();
    println!("    auto: docker stop returned after {took:.2?}, the traffic stopped after {stopped_after:.2?} (ceiling 20 s)");
    assert_eq!(failed, 0, "requests failed during the drain\n{logs}");
    assert!(
        took >= stopped_after && took < stopped_after + Duration::from_secs(8),
        "docker stop took {took:?}; the traffic stopped after {stopped_after:?}\n{logs}"
    );
    assert!(
        logs.contains("delay ended: quiet for"),
        "the delay must end on evidence\n{logs}"
    );
    assert!(
        !logs.contains("cannot observe the app's traffic"),
        "sock_diag must work under the default seccomp profile as nobody\n{logs}"
    );
}

/// `docker stop -t 30` on an app that dies by SIGTERM: /ready turns 503
/// while the app still serves and has had no signal; the app gets SIGTERM
/// once, DELAY after `docker stop` began; `docker stop` returns after about
/// DELAY (drainit ended it, not docker's SIGKILL); docker records `exit_code`.
fn drain_on_docker_stop(engines: &Engines, drainit_flags: &[&str], exit_code: i32) {
    let delay = format!("{}s", DELAY.as_secs());
    let mut flags = vec!["--propagation-delay", &delay];
    flags.extend_from_slice(drainit_flags);
    let container = Container::run(engines, &[], &flags, &[]);
    assert_drains_on_docker_stop(&container, exit_code);
}

/// The checks of [`drain_on_docker_stop`] on a running container whose
/// drainit has the propagation delay DELAY.
fn assert_drains_on_docker_stop(container: &Container, exit_code: i32) {
    let stop_began = monotonic_ns();
    let (took, draining) = std::thread::scope(|scope| {
        let stop = scope.spawn(|| container.stop(30));
        let draining = observe_drain(container.admin, container.app);
        (
            stop.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            draining,
        )
    });
    let logs = container.logs();
    println!("    docker stop -t 30 returned after {took:.2?} (propagation delay {DELAY:?})");
    draining.assert_seen(&logs);
    assert!(
        took >= DELAY && took < DELAY + SLACK,
        "docker stop took {took:?}, expected the delay {DELAY:?} (docker's own timeout is 30 s)\n{logs}"
    );
    let terms = signal_times(&logs, libc::SIGTERM);
    assert_eq!(terms.len(), 1, "the app should get SIGTERM once\n{logs}");
    let after = Duration::from_nanos(terms[0].saturating_sub(stop_began));
    assert!(
        after >= DELAY,
        "the app got SIGTERM {after:?} after docker stop began, before the delay {DELAY:?}\n{logs}"
    );
    assert_eq!(container.exit_code(), exit_code, "{logs}");
    assert!(
        !container.docker_used_force(),
        "dockerd SIGKILLed the container\n{logs}"
    );
}

/// 9. drainit into an image nobody rebuilds (issue 21): the image as
///    `scripts/release.sh` makes it (`scripts/oci-image.py`, from the
///    static drainit) loaded with `docker load`; a named volume filled by
///    its `drainit install` (refused with a clear error as the image's
///    non-root user, whom a fresh volume does not let write); an app image
///    without drainit (FROM scratch, the app alone) started through the
///    volume's drainit; `docker stop` drains it.
fn install_into_a_volume_drains_an_unmodified_image(engines: &Engines) {
    let work = engines.dir.join("install-case");
    std::fs::create_dir_all(&work).expect("create the case directory");
    let archive = work.join("drainit-image.tar");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    succeed(
        std::process::Command::new("python3")
            .arg(repo.join("scripts/oci-image.py"))
            .args(["--version", "itest", "--name", "drainit-release", "--out"])
            .arg(&archive)
            .arg(format!("amd64={}", engines.static_drainit.display())),
        ENGINE_LIMIT,
    );
    let loaded = engines.docker_ok(&["load", "-i", archive.to_str().expect("UTF-8 path")]);
    assert!(
        loaded.contains("drainit-release:itest"),
        "docker load said: {loaded}"
    );

    let app_context = work.join("context-plain-app");
    std::fs::create_dir_all(&app_context).expect("create the build context");
    std::fs::write(
        app_context.join("Dockerfile"),
        "FROM scratch\nCOPY http_app /http_app\nENTRYPOINT [\"/http_app\"]\n",
    )
    .expect("write the app's Dockerfile");
    std::fs::copy(&engines.static_app, app_context.join("http_app")).expect("copy the app");
    let plain_image = "drainit-test-plain-app:latest";
    engines.docker_ok(&[
        "build",
        "--quiet",
        "-t",
        plain_image,
        app_context.to_str().expect("UTF-8 path"),
    ]);
    assert_eq!(engines.image_files(plain_image), ["http_app"]);

    let volume = format!("drainit-bin-{}", std::process::id());
    engines.docker_ok(&["volume", "create", &volume]);
    let mount = format!("{volume}:/drainit-bin");
    // As the image's user (65532) a fresh volume, owned by root, is not writable.
    let refused = run_bounded(
        &mut engines.docker(&[
            "run",
            "--rm",
            "-v",
            &mount,
            "drainit-release:itest",
            "install",
            "/drainit-bin",
        ]),
        ENGINE_LIMIT,
    )
    .unwrap_or_else(|e| panic!("docker run: {e}"));
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("permission denied"), "{said}");
    let installed = run_bounded(
        &mut engines.docker(&[
            "run",
            "--rm",
            "--user",
            "0",
            "-v",
            &mount,
            "drainit-release:itest",
            "install",
            "/drainit-bin",
        ]),
        ENGINE_LIMIT,
    )
    .unwrap_or_else(|e| panic!("docker run: {e}"));
    let said = String::from_utf8_lossy(&installed.stderr).into_owned();
    assert!(installed.status.success(), "{said}");
    assert!(said.contains("installed drainit"), "{said}");

    let read_only_mount = format!("{volume}:/drainit-bin:ro");
    let delay = format!("{}s", DELAY.as_secs());
    let container = Container::run_image(
        engines,
        plain_image,
        &[
            "-v",
            &read_only_mount,
            "--entrypoint",
            "/drainit-bin/drainit",
        ],
        &["--propagation-delay", &delay],
        &[],
    );
    assert_drains_on_docker_stop(&container, EXIT_SIGTERM);
    drop(container);
    let _ = run_bounded(
        &mut engines.docker(&["volume", "rm", "-f", &volume]),
        ENGINE_LIMIT,
    );
}

/// 2. As nobody, read-only root, an image holding only drainit and the app,
///    under the engine's default seccomp profile and no capabilities.
fn non_root_read_only_image_of_two_files(engines: &Engines) {
    assert_eq!(
        engines.image_files(APP_IMAGE),
        ["drainit", "http_app"],
        "files in {APP_IMAGE}"
    );
    // What the Dockerfile's runtime stage sets, as the engine reads it.
    assert_eq!(
        engines.inspect(
            APP_IMAGE,
            "{{.Config.User}} {{.Config.StopSignal}} {{json .Config.Entrypoint}}"
        ),
        r#"65532:65532 SIGTERM ["/drainit"]"#
    );
    let container = Container::run(
        engines,
        &["--user", "65534:65534", "--read-only"],
        &["--propagation-delay", "1s"],
        &["--on-term", "exit:3"],
    );
    assert_eq!(container.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");
    assert_eq!(
        get(container.app, "/whoami").map(|(_, body)| body),
        Some("65534 65534\n".to_string())
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", container.host_pid()))
        .expect("drainit's /proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|value| value.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert_eq!(
        field("Uid:"),
        "65534 65534 65534 65534",
        "drainit's uids\n{status}"
    );
    assert_eq!(
        field("Gid:"),
        "65534 65534 65534 65534",
        "drainit's gids\n{status}"
    );
    assert_eq!(
        field("Seccomp:"),
        "2",
        "drainit runs under a seccomp filter (docker's default profile)\n{status}"
    );
    assert_eq!(
        field("CapEff:"),
        "0000000000000000",
        "drainit has no effective capabilities\n{status}"
    );

    let took = container.stop(30);
    let logs = container.logs();
    assert!(
        took >= Duration::from_secs(1),
        "docker stop took {took:?}, less than the 1 s delay\n{logs}"
    );
    assert_eq!(signal_times(&logs, libc::SIGTERM).len(), 1, "{logs}");
    assert_eq!(
        container.exit_code(),
        3,
        "the app's own exit code passes through\n{logs}"
    );
}

/// 3. An app that ignores SIGTERM, `docker stop -t 10`, drainit's deadline
///    at 3 s: drainit's SIGKILL (and its log line) end it, exit 137, long
///    before docker would. Then the control: with drainit's deadline past
///    docker's timeout, docker's SIGKILL ends it and the same checks see that.
fn drainit_kills_before_docker_does(engines: &Engines) {
    let container = Container::run(
        engines,
        &[],
        &[
            "--propagation-delay",
            "1s",
            "--grace-period",
            "4s",
            "--kill-margin",
            "1s",
        ],
        &["--on-term", "ignore"],
    );
    let took = container.stop(10);
    let logs = container.logs();
    println!("    docker stop -t 10 returned after {took:.2?} (drainit's SIGKILL due 3 s into the drain)");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(9),
        "docker stop -t 10 took {took:?}: drainit's deadline is 3 s into the drain\n{logs}"
    );
    assert_eq!(
        signal_times(&logs, libc::SIGTERM).len(),
        1,
        "the app got (and ignored) SIGTERM once\n{logs}"
    );
    assert!(
        logs.contains("drain deadline hit"),
        "drainit logs its SIGKILL\n{logs}"
    );
    assert!(
        logs.contains("drainit exits with 137"),
        "drainit itself exits, not killed\n{logs}"
    );
    assert_eq!(container.exit_code(), EXIT_SIGKILL, "{logs}");
    assert!(
        !container.docker_used_force(),
        "dockerd SIGKILLed the container\n{logs}"
    );

    let late = Container::run(
        engines,
        &[],
        &["--propagation-delay", "0s", "--grace-period", "60s"],
        &["--on-term", "ignore"],
    );
    late.stop(1);
    assert_eq!(late.exit_code(), EXIT_SIGKILL);
    assert!(
        wait_for(Duration::from_secs(10), || late.docker_used_force()),
        "dockerd's log should say it used the force on {}:\n{}",
        late.name,
        engines.dockerd_log()
    );
    assert!(
        !late.logs().contains("drain deadline hit"),
        "{}",
        late.logs()
    );
}

/// 4. Orphans re-parented to drainit (PID 1) are reaped; `docker kill -s
///    USR1` reaches the app, and is no drain.
fn reaps_orphans_and_forwards_docker_kill(engines: &Engines) {
    let container = Container::run(engines, &[], &[], &[]);
    let orphans = 20;
    assert_eq!(
        get(container.app, &format!("/orphans?n={orphans}")).map(|(_, body)| body),
        Some(format!("{orphans}\n"))
    );
    let reaped = || metric(container.admin, "drainit_zombies_reaped_total").unwrap_or(0.0);
    assert!(
        wait_for(Duration::from_secs(20), || reaped() >= f64::from(orphans)),
        "drainit reaped {} of {orphans} orphans\n{}",
        reaped(),
        container.logs()
    );
    let host_pid = container.host_pid();
    let zombies = || {
        common::descendants(host_pid)
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                    stat.rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
                })
            })
            .count()
    };
    assert!(
        wait_for(Duration::from_secs(10), || zombies() == 0),
        "{} zombies left in the container",
        zombies()
    );

    engines.docker_ok(&["kill", "-s", "USR1", &container.name]);
    let usr1_line = format!("{} 1\n", libc::SIGUSR1);
    assert!(
        wait_for(Duration::from_secs(10), || get(container.app, "/signals")
            .is_some_and(|(_, body)| body.contains(&usr1_line))),
        "the app never got SIGUSR1: {:?}\n{}",
        get(container.app, "/signals"),
        container.logs()
    );
    assert_eq!(container.inspect("{{.State.Running}}"), "true");
    assert_eq!(
        get(container.admin, "/ready").map(|(code, _)| code),
        Some(200),
        "USR1 is forwarded, not a drain"
    );
}

/// 5. The preStop hook (mode 2): `GET /prestop`, as the kubelet's httpGet
///    would send it (here over the host network's loopback), drains, is
///    answered once the app has exited, and the container ends by itself.
fn prestop_hook_drains_and_answers_once_the_app_exited(engines: &Engines) {
    let delay = format!("{}s", DELAY.as_secs());
    let container = Container::run(engines, &[], &["--propagation-delay", &delay], &[]);
    let started = Instant::now();
    let (answer, draining) = std::thread::scope(|scope| {
        let hook = scope.spawn(|| {
            let answer = common::http(container.admin, "GET", "/prestop", &[], DELAY + SLACK);
            (answer, started.elapsed())
        });
        let draining = observe_drain(container.admin, container.app);
        (
            hook.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            draining,
        )
    });
    let (answer, took) = answer;
    assert!(
        wait_for(SLACK, || container.inspect("{{.State.Running}}") == "false"),
        "the container still runs after /prestop was answered\n{}",
        container.logs()
    );
    let logs = container.logs();
    println!("    /prestop answered after {took:.2?} (propagation delay {DELAY:?})");
    draining.assert_seen(&logs);
    assert_eq!(
        answer.map(|(code, _)| code),
        Some(200),
        "/prestop's answer\n{logs}"
    );
    assert!(
        took >= DELAY && took < DELAY + SLACK,
        "/prestop answered after {took:?}, expected after the delay {DELAY:?}\n{logs}"
    );
    assert_eq!(signal_times(&logs, libc::SIGTERM).len(), 1, "{logs}");
    assert_eq!(container.exit_code(), EXIT_SIGTERM, "{logs}");
}

/// 6. The same drain through containerd itself, the kubelet's runtime:
///    `ctr run --net-host`, `ctr task kill` (the image's stop signal).
fn ctr_task_kill_drains_then_stops_the_app(engines: &Engines) {
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let app = std::net::SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let task = CtrTask::guard(
        engines,
        format!("drainit-test-{}-{}", std::process::id(), admin.port()),
    );
    let dir = common::scratch("ctr-run");
    let address = engines.dir.join("containerd/containerd.sock");
    let (admin_listen, ready_check, app_port) = (
        admin.to_string(),
        format!("http://{app}/healthz"),
        app.port().to_string(),
    );
    let delay = format!("{}s", DELAY.as_secs());
    let mut args = vec![
        "--address",
        address.to_str().expect("UTF-8 path"),
        "--namespace",
        container_support::CTR_NAMESPACE,
    ];
    args.extend(["run", "--rm", "--net-host"]);
    args.extend_from_slice(engines.ctr_snapshotter());
    args.extend([engines.ctr_image.as_str(), &task.id, "/drainit"]);
    args.extend([
        "--admin-listen",
        &admin_listen,
        "--ready-check",
        &ready_check,
        "--ready-check-interval",
        "100ms",
    ]);
    args.extend(["--propagation-delay", &delay, "--", "/http_app", &app_port]);
    let mut run = Proc::start(&dir, &container_support::tool("ctr"), &args, &[]);
    assert!(
        wait_status(admin, "/ready", 200, Duration::from_secs(30)),
        "/ready never answered 200\n{}",
        run.report()
    );

    let kill_began = monotonic_ns();
    let started = Instant::now();
    succeed(&mut engines.ctr(&["task", "kill", &task.id]), ENGINE_LIMIT);
    let draining = observe_drain(admin, app);
    let status = run.wait(DELAY + SLACK);
    let took = started.elapsed();
    let output = run.report();
    println!("    ctr run exited {took:.2?} after ctr task kill (propagation delay {DELAY:?})");
    draining.assert_seen(&output);
    assert!(
        took >= DELAY,
        "the task ended {took:?} after ctr task kill, before the delay {DELAY:?}\n{output}"
    );
    let terms = signal_times(&run.stderr(), libc::SIGTERM);
    assert_eq!(terms.len(), 1, "the app should get SIGTERM once\n{output}");
    let after = Duration::from_nanos(terms[0].saturating_sub(kill_began));
    assert!(
        after >= DELAY,
        "the app got SIGTERM {after:?} after ctr task kill, before the delay\n{output}"
    );
    assert_eq!(
        status.code(),
        Some(EXIT_SIGTERM),
        "ctr run passes on the task's exit status\n{output}"
    );
}

/// What a client saw while the drain was on.
struct DrainSeen {
    /// /ready answered 503.
    unready: bool,
    /// /live's answer right after that.
    live_code: Option<u16>,
    /// The app's /healthz answer right after that.
    app_code: Option<u16>,
    /// The app's /signals right after that.
    app_signals: Option<String>,
}

/// Waits for /ready to turn 503, then asks the app whether it still serves.
fn observe_drain(admin: std::net::SocketAddr, app: std::net::SocketAddr) -> DrainSeen {
    let unready = wait_status(admin, "/ready", 503, Duration::from_secs(20));
    DrainSeen {
        unready,
        live_code: get(admin, "/live").map(|(code, _)| code),
        app_code: get(app, "/healthz").map(|(code, _)| code),
        app_signals: get(app, "/signals").map(|(_, body)| body),
    }
}

impl DrainSeen {
    /// /ready 503 (/live 200) while the app served and had no SIGTERM yet.
    fn assert_seen(&self, output: &str) {
        assert!(
            self.unready,
            "/ready never answered 503 during the drain\n{output}"
        );
        assert_eq!(
            self.live_code,
            Some(200),
            "/live must stay 200 through the drain\n{output}"
        );
        assert_eq!(
            self.app_code,
            Some(200),
            "the app stopped serving when /ready turned 503\n{output}"
        );
        let term_line = format!("{} ", libc::SIGTERM);
        assert!(
            self.app_signals
                .as_ref()
                .is_some_and(|signals| !signals.lines().any(|l| l.starts_with(&term_line))),
            "the app had SIGTERM when /ready turned 503: {:?}\n{output}",
            self.app_signals
        );
    }
}

/// libtest's command line, as far as these cases need it: name filters,
/// `--skip NAME`, `--exact`, `--list`; other flags are accepted and
/// ignored, with the values of those that take one.
#[derive(Default)]
struct Selection {
    filters: Vec<String>,
    skips: Vec<String>,
    exact: bool,
    list: bool,
}

impl Selection {
    fn parse(args: impl Iterator<Item = String>) -> Selection {
        let mut selection = Selection::default();
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--list" => selection.list = true,
                "--exact" => selection.exact = true,
                "--skip" => selection.skips.extend(args.next()),
                "--test-threads" | "--color" | "--format" | "--logfile" | "-Z"
                | "--shuffle-seed" => {
                    if args.peek().is_some_and(|value| !value.starts_with('-')) {
                        args.next();
                    }
                }
                flag if flag.starts_with('-') => {}
                _ => selection.filters.push(arg),
            }
        }
        selection
    }

    fn matches(&self, name: &str) -> bool {
        let hit = |pattern: &String| {
            if self.exact {
                name == pattern
            } else {
                name.contains(pattern.as_str())
            }
        };
        (self.filters.is_empty() || self.filters.iter().any(hit)) && !self.skips.iter().any(hit)
    }
}

fn main() -> ExitCode {
    let selection = Selection::parse(std::env::args().skip(1));
    if selection.list {
        for (name, _) in CASES {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let selected: Vec<_> = CASES
        .iter()
        .filter(|(name, _)| selection.matches(name))
        .collect();
    let filtered_out = CASES.len() - selected.len();
    println!("\nrunning {} tests", selected.len());
    let began = Instant::now();
    let summary = |passed: usize, failed: usize| {
        let verdict = if failed == 0 { "ok" } else { "FAILED" };
        println!(
            "\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {filtered_out} filtered out; finished in {:.2}s\n",
            began.elapsed().as_secs_f64()
        );
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(101)
        }
    };
    if selected.is_empty() {
        return summary(0, 0);
    }

    let engines = match std::panic::catch_unwind(Engines::start) {
        Ok(engines) => engines,
        Err(_) => {
            for (name, _) in &selected {
                println!("test {name} ... FAILED (the engines did not start, see above)");
            }
            return summary(0, selected.len());
        }
    };
    println!(
        "container engines ready in {:.1}s (storage driver {})",
        began.elapsed().as_secs_f64(),
        engines.storage_driver
    );
    let mut failed = Vec::new();
    for (name, case) in &selected {
        let case_began = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| case(&engines)));
        let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
        println!(
            "test {name} ... {verdict} ({:.1}s)",
            case_began.elapsed().as_secs_f64()
        );
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:\n    {}", failed.join("\n    "));
        println!("the engines' logs: {}", engines.keep_logs().display());
    }
    drop(engines);
    summary(selected.len() - failed.len(), failed.len())
}
