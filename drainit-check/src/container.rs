//! What one container's spec says about its shutdown, read the way the
//! kubelet reads it: the preStop hook and how long it waits, named ports,
//! the command's shell script, and what kind of program the image is.
//! Shared by the per-pod rules and the cross-object summary.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The container's preStop hook, if any.
pub fn pre_stop(container: &Container) -> Option<&LifecycleHandler> {
    container.lifecycle.as_ref()?.pre_stop.as_ref()
}

/// The last component of a path (`/bin/sh` → `sh`).
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A port of a probe or hook, resolved like the kubelet does: a name among
/// the ports of the container that owns the probe or hook.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// The words of an exec hook's command (a shell script split on blanks).
fn hook_words(hook: &LifecycleHandler) -> Vec<&str> {
    hook.exec
        .iter()
        .flat_map(|e| e.command.iter().flatten())
        .flat_map(|arg| arg.split_whitespace())
        .collect()
}

/// How long a preStop hook sleeps: the `sleep` action, or `sleep N` in an
/// exec hook (directly or in a shell script).
pub fn hook_sleep(hook: &LifecycleHandler) -> Option<Duration> {
    if let Some(sleep) = &hook.sleep {
        return Some(Duration::from_secs(
            u64::try_from(sleep.seconds).unwrap_or(0),
        ));
    }
    let words = hook_words(hook);
    let total: Duration = words
        .windows(2)
        .filter(|pair| basename(pair[0]) == "sleep")
        .filter_map(|pair| parse_sleep(pair[1].trim_end_matches([';', '&', '|'])))
        .sum();
    (total > Duration::ZERO).then_some(total)
}

/// `sleep`'s argument: seconds, with an optional s, m, h or d suffix.
pub fn parse_sleep(arg: &str) -> Option<Duration> {
    let (number, unit) = match arg.char_indices().last()? {
        (i, 's') => (&arg[..i], 1.0),
        (i, 'm') => (&arg[..i], 60.0),
        (i, 'h') => (&arg[..i], 3600.0),
        (i, 'd') => (&arg[..i], 86400.0),
        _ => (arg, 1.0),
    };
    let seconds: f64 = number.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::try_from_secs_f64(seconds * unit).ok())
        .flatten()
}

/// Programs that signal the app.
const SIGNAL_SENDERS: &[&str] = &["kill", "pkill", "killall"];

/// `-s` arguments that stop nginx and its kin at once (`nginx -s quit`).
const STOP_SIGNALS: &[&str] = &["quit", "stop"];

/// Whether an exec preStop hook stops the app before it waits for the
/// endpoints still routing to the pod: `Some(what it runs)` when a signal
/// (`kill`, `pkill`, `killall`) or `-s quit`/`-s stop` (nginx) comes before
/// any `sleep` or wait loop. A hook that calls the app's own shutdown (an
/// HTTP call, `nodetool drain`, `envoy shutdown`) may wait inside and is
/// not judged.
pub fn hook_without_delay(hook: &LifecycleHandler) -> Option<String> {
    let command = hook.exec.as_ref()?.command.as_ref()?;
    let words = hook_words(hook);
    let clean = |w: &str| {
        w.trim_matches(|c: char| matches!(c, ';' | '&' | '|' | '"' | '\'' | '(' | ')'))
            .to_ascii_lowercase()
    };
    let first_sleep = words.iter().position(|w| basename(&clean(w)) == "sleep");
    let cleaned: Vec<String> = words.iter().map(|w| clean(w)).collect();
    // A signal sender, or `-s quit|stop`; an app's own subcommand (`envoy
    // shutdown`, `nodetool drain`) may wait inside and is not judged.
    let first_stop = cleaned.iter().enumerate().position(|(i, w)| {
        SIGNAL_SENDERS.contains(&basename(w))
            || (w == "-s"
                && cleaned
                    .get(i + 1)
                    .is_some_and(|s| STOP_SIGNALS.contains(&s.as_str())))
    });
    let first_wait = words.iter().position(|w| {
        matches!(
            basename(&clean(w)),
            "sleep" | "while" | "until" | "wait" | "timeout"
        )
    });
    let stop = first_stop?;
    match first_sleep.into_iter().chain(first_wait).min() {
        Some(wait) if wait < stop => None,
        _ => Some(command.join(" ")),
    }
}

/// The image's name without registry, path, tag or digest (`redis`).
pub fn image_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = basename(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// Images of data stores and single-writer servers: one instance is a
/// deliberate design (a second replica is a second, separate store), so
/// "run two" and "roll without downtime" are no advice for them.
const DATA_STORES: &[&str] = &[
    "redis",
    "valkey",
    "keydb",
    "memcached",
    "postgres",
    "postgresql",
    "mysql",
    "mariadb",
    "mongo",
    "mongodb",
    "etcd",
    "zookeeper",
    "rabbitmq",
    "kafka",
    "elasticsearch",
    "opensearch",
    "cassandra",
    "influxdb",
    "prometheus",
    "victoria-metrics",
    "clickhouse",
    "couchdb",
    "neo4j",
    "minio",
    "loki",
    "jaeger",
    "all-in-one",
];

/// Apps that keep their database in the pod by default (Grafana's SQLite):
/// a second replica is a second, separate database, yet a drain delay still
/// helps the clients of the one there is.
const LOCAL_DATABASE_APPS: &[&str] = &["grafana"];

/// Whether the image is an app with its database inside the pod.
pub fn has_local_database(image: &str) -> bool {
    LOCAL_DATABASE_APPS.contains(&image_name(image))
}

/// Whether a name (an image's or a container's) names a known data store:
/// one of its words (split at `-`, `_`, `.`) is a store's name, alone or
/// with `db` (`mysqldb`): `redis`, `bitnami/postgresql`, `valkey-cart`.
pub fn names_data_store(name: &str) -> bool {
    DATA_STORES.contains(&name)
        || name.split(['-', '_', '.']).any(|word| {
            let word = word.to_ascii_lowercase();
            DATA_STORES
                .iter()
                .any(|store| word == *store || word.strip_suffix("db") == Some(store))
        })
}

/// Whether the container runs a known data store (by its image's name or its own).
pub fn is_data_store(container: &Container) -> bool {
    container
        .image
        .as_deref()
        .is_some_and(|i| names_data_store(image_name(i)))
        || names_data_store(&container.name)
}

/// Whether the image only answers Prometheus' scrapes: an exporter, or
/// kube-rbac-proxy (an authorising proxy in front of a metrics endpoint).
pub fn is_metrics_only(image: &str) -> bool {
    let name = image_name(image);
    name.contains("exporter") || name.starts_with("kube-rbac-proxy")
}

/// Whether the command keeps the container idle (`sleep infinity`,
/// `tail -f /dev/null`): a client or toolbox pod that serves nothing.
pub fn is_idle(container: &Container) -> bool {
    let argv: Vec<&str> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .map(String::as_str)
        .collect();
    match argv.first().map(|p| basename(p)) {
        Some("sleep") => true,
        Some("tail") => argv.contains(&"/dev/null"),
        Some("pause") => argv.len() == 1,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_arguments() {
        let table = [
            ("5", Some(5.0)),
            ("1.5", Some(1.5)),
            ("2m", Some(120.0)),
            ("10s", Some(10.0)),
            ("inf", None),
            ("x", None),
            ("-3", None),
        ];
        for (arg, want) in table {
            assert_eq!(
                parse_sleep(arg).map(|d| d.as_secs_f64()),
                want,
                "sleep {arg}"
            );
        }
    }

    #[test]
    fn hooks_that_do_not_delay() {
        let hook = |argv: &[&str]| -> LifecycleHandler {
            serde_json::from_value(serde_json::json!({"exec": {"command": argv}}))
                .expect("a handler")
        };
        let table: [(&[&str], bool); 9] = [
            (&["/bin/sh", "-c", "nginx -s quit"], true),
            (&["/bin/sh", "-c", "kill -TERM 1; sleep 10"], true),
            (&["/app/flush-cache"], false),
            (&["/bin/contour", "envoy", "shutdown"], false),
            (&["/usr/sbin/nginx", "-s", "quit"], true),
            (
                &[
                    "/bin/sh",
                    "-c",
                    "while pgrep -f worker; do sleep 1; done; kill 1",
                ],
                false,
            ),
            (&["/bin/sh", "-c", "sleep 10; nginx -s quit"], false),
            (&["sleep", "5"], false),
            (
                &[
                    "/bin/sh",
                    "-c",
                    "curl -X POST localhost/drain && while curl localhost/status; do sleep 1; done",
                ],
                false,
            ),
        ];
        for (argv, no_delay) in table {
            assert_eq!(
                hook_without_delay(&hook(argv)).is_some(),
                no_delay,
                "{argv:?}"
            );
        }
    }

    #[test]
    fn image_kinds() {
        for store in [
            "redis",
            "postgresql",
            "valkey-cart",
            "examples-bookinfo-mysqldb",
            "mongodb",
            "all-in-one",
        ] {
            assert!(names_data_store(store), "{store}");
        }
        for app in ["shop-frontend", "redisslave-exporter-x", "details", "all"] {
            assert!(!names_data_store(app), "{app}");
        }
        assert!(is_metrics_only("quay.io/prometheus/node-exporter:v1.8.0"));
        assert!(is_metrics_only("quay.io/brancz/kube-rbac-proxy:v0.18.0"));
        assert!(!is_metrics_only("nginx:1.27"));
    }
}
