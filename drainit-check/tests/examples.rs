//! The manifests under `examples/kubernetes/` must not rot: the real
//! `drainit-check` binary finds nothing in them (no error, no warning, no
//! info), and each example still shows what its comments say it shows
//! (read with the checker's own library, so drainit's settings are those
//! drainit's parser gives).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use drainit::cli::Mode;
use drainit::settings::AdminListen;
use drainit::signals::Sig;
use drainit_check::container::pre_stop;
use drainit_check::drainit_flags::{DrainitSettings, Reading, HOST_IP_PLACEHOLDER};
use drainit_check::input;
use drainit_check::inventory::{Place, PodContainer, Workload};
use drainit_check::objects::{Kind, Object};

/// The examples the README promises; each must exist and be checked.
const EXPECTED_EXAMPLES: &[&str] = &[
    "entrypoint.yaml",
    "entrypoint-prestop.yaml",
    "sidecar-classic.yaml",
    "sidecar-native.yaml",
    "aws-alb.yaml",
    "nginx.yaml",
];

fn examples_dir() -> PathBuf {
    common::repo_root().join("examples").join("kubernetes")
}

fn load(name: &str) -> Vec<Object> {
    let (objects, errors) = input::load(&[examples_dir().join(name)]);
    assert!(errors.is_empty(), "{name}: {errors:?}");
    objects
}

/// Runs `inspect` on the one workload of an example and its one drainit container.
fn with_drainit(
    name: &str,
    inspect: impl FnOnce(&Workload<'_>, &PodContainer<'_>, &DrainitSettings),
) {
    let objects = load(name);
    let workloads: Vec<Workload<'_>> = objects.iter().filter_map(Workload::of).collect();
    assert_eq!(workloads.len(), 1, "{name}: one workload");
    let workload = &workloads[0];
    let drainits: Vec<_> = workload.drainits().collect();
    assert_eq!(drainits.len(), 1, "{name}: one drainit container");
    let (container, settings) = drainits[0];
    inspect(workload, container, settings);
}

#[test]
fn the_checker_finds_nothing_in_the_examples() {
    let dir = examples_dir();
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .expect("examples/kubernetes exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    found.sort();
    for expected in EXPECTED_EXAMPLES {
        assert!(
            found.iter().any(|f| f == expected),
            "missing example {expected}; found {found:?}"
        );
    }
    let run = common::check(&[
        "--format",
        "json",
        "--fail-on",
        "info",
        dir.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.report());
    assert_eq!(run.stdout.trim(), "[]", "{}", run.report());
    assert!(
        run.stderr.contains(&format!("in {} file(s)", found.len())),
        "every example read: {}",
        run.report()
    );
}

#[test]
fn entrypoint_example_drains_on_sigterm_without_a_hook() {
    with_drainit("entrypoint.yaml", |workload, container, s| {
        assert!(pre_stop(container.spec).is_none(), "mode 1 has no preStop");
        assert!(matches!(s.cli.command.first(), Some(c) if c == "/web"));
        // The settings come from DRAINIT_* variables here, grace period included.
        assert!(s.grace_period_given);
        assert_eq!(s.cli.settings.grace_period, workload.grace_period());
        assert_eq!(s.cli.settings.longest_delay(), Duration::from_secs(10));
        assert_eq!(s.cli.settings.stop_signal, Sig::TERM);
        assert!(matches!(s.cli.settings.admin_listen, AdminListen::At(a) if a.port() == 9095));
    });
}

#[test]
fn prestop_example_hooks_the_admin_port_and_allows_only_the_node() {
    with_drainit("entrypoint-prestop.yaml", |workload, container, s| {
        let hook = pre_stop(container.spec)
            .and_then(|h| h.http_get.as_ref())
            .expect("an httpGet preStop");
        assert_eq!(hook.path.as_deref(), Some("/prestop"));
        // Options as arguments here; the grace period matches the pod's.
        assert!(container
            .spec
            .command
            .iter()
            .flatten()
            .any(|a| a.starts_with("--grace-period")));
        assert_eq!(s.cli.settings.grace_period, workload.grace_period());
        // The downward-API recipe: HOST_IP = status.hostIP, expanded in the flag.
        let allowed = s
            .cli
            .settings
            .prestop_allow_from
            .as_ref()
            .expect("allow-list");
        assert!(allowed.contains(HOST_IP_PLACEHOLDER.parse().expect("ip")));
        assert!(!allowed.contains("192.0.2.11".parse().expect("ip")));
    });
}

#[test]
fn classic_sidecar_example_hooks_the_app_to_the_sidecar() {
    with_drainit("sidecar-classic.yaml", |workload, sidecar, s| {
        assert!(matches!(s.cli.mode, Some(Mode::Sidecar(_))));
        assert_eq!(sidecar.place, Place::Main);
        assert!(s.cli.settings.prestop_token.is_some());
        let app = workload
            .containers
            .iter()
            .find(|c| c.spec.name != sidecar.spec.name)
            .expect("the app container");
        assert!(
            matches!(app.drainit, Reading::NotDrainit),
            "the app image is unchanged"
        );
        let hook = pre_stop(app.spec)
            .and_then(|h| h.http_get.as_ref())
            .expect("the app's preStop httpGet");
        assert_eq!(hook.path.as_deref(), Some("/prestop"));
        let sent = hook
            .http_headers
            .iter()
            .flatten()
            .find(|h| h.name == "X-Drainit-Token");
        assert_eq!(
            sent.map(|h| &h.value),
            s.cli.settings.prestop_token.as_ref()
        );
    });
}

#[test]
fn native_sidecar_example_is_a_restartable_init_container() {
    with_drainit("sidecar-native.yaml", |workload, sidecar, s| {
        assert_eq!(sidecar.place, Place::NativeSidecar);
        assert!(matches!(s.cli.mode, Some(Mode::Sidecar(_))));
        assert!(sidecar.spec.startup_probe.is_none());
        for c in workload
            .containers
            .iter()
            .filter(|c| c.place == Place::Main)
        {
            let path = pre_stop(c.spec)
                .and_then(|h| h.http_get.as_ref())
                .and_then(|g| g.path.as_deref());
            assert_eq!(path, Some("/prestop"), "{}", c.spec.name);
        }
    });
}

#[test]
fn alb_example_fits_deregistration_into_the_propagation_delay() {
    let objects = load("aws-alb.yaml");
    let namespace = objects
        .iter()
        .find_map(|o| match &o.kind {
            Kind::Namespace(n) => Some(n),
            _ => None,
        })
        .expect("a Namespace");
    let labels = namespace.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("elbv2.k8s.aws/pod-readiness-gate-inject")
            .map(String::as_str),
        Some("enabled")
    );
    let annotations = objects
        .iter()
        .find_map(|o| match &o.kind {
            Kind::Ingress(i) => i.metadata.annotations.clone(),
            _ => None,
        })
        .expect("an annotated Ingress");
    assert_eq!(
        annotations
            .get("alb.ingress.kubernetes.io/target-type")
            .map(String::as_str),
        Some("ip")
    );
    let attributes = &annotations["alb.ingress.kubernetes.io/target-group-attributes"];
    let dereg: u64 = attributes
        .strip_prefix("deregistration_delay.timeout_seconds=")
        .and_then(|v| v.parse().ok())
        .expect("a deregistration delay");
    with_drainit("aws-alb.yaml", |_, _, s| {
        assert!(Duration::from_secs(dereg) <= s.cli.settings.longest_delay());
    });
}

#[test]
fn nginx_example_stops_with_quit() {
    let quit: Sig = "QUIT".parse().expect("a signal");
    with_drainit("nginx.yaml", |_, _, s| {
        assert_eq!(s.cli.settings.stop_signal, quit);
        assert!(s.cli.settings.drain_on.0.contains(&Sig::TERM));
        assert!(s.cli.settings.drain_on.0.contains(&quit));
        assert!(s.cli.command.iter().any(|a| a == "nginx"));
    });
}
