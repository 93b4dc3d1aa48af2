//! The rules that read one container with its pod template: drainit's
//! settings and timing budget, PID 1, and the probes. (The preStop hook's
//! rules are in [`super::hooks`].)

use drainit::settings::SignalTarget;
use k8s_openapi::api::core::v1::Probe;

use super::item::{human, longest_delay, Check, Hit, RuleDef, Severity, MIN_APP_DRAIN};
use crate::container::{basename, image_name, resolve_port};
use crate::drainit_flags::Reading;
use crate::inventory::{Place, PodContainer, Workload};

/// Shells whose `-c` script may run the app as a child.
const SHELLS: &[&str] = &["sh", "bash", "ash", "dash", "zsh", "ksh", "mksh"];

/// Shells that `exec` the last command of a `-c` list themselves
/// (`bash -c 'a; b'` ends as `b`, PID 1): only a pipeline or a background
/// job keeps them in front of the app.
const EXEC_LAST: &[&str] = &["bash", "ash", "zsh", "ksh", "mksh"];

/// PID 1 is a shell running the app as its child.
pub const SHELL_SWALLOWS_SIGTERM: RuleDef = RuleDef {
    id: "shell-swallows-sigterm",
    severity: Severity::Error,
    summary: "a container stopped with SIGTERM (not an init container) runs `sh -c '…'` as PID 1 (or as drainit's app) and the shell stays in front of the app: a pipeline or background job in any shell, or a command list in dash (Debian's and Ubuntu's `/bin/sh`; a warning for a plain `sh` outside Alpine/busybox images); bash and busybox `sh` exec the last command themselves",
    help: "The kubelet (or drainit) sends the stop signal to PID 1. A shell that keeps the app as \
           its child does not pass SIGTERM on, and the app is SIGKILLed at the end of the grace \
           period with requests in flight. dash (Debian's and Ubuntu's /bin/sh) keeps the shell \
           for `a; b`; bash 5 and busybox sh exec the last command of a list, but no shell does \
           for a pipeline or a background job. End the script with `exec the-app …`, or run the \
           app directly. Init containers are not checked: they finish before the pod is stopped.",
    check: Check::Container(shell_swallows_sigterm),
};

/// Liveness on drainit's `/ready`, or on the readiness probe's readiness endpoint.
pub const LIVENESS_ON_READY: RuleDef = RuleDef {
    id: "liveness-on-ready",
    severity: Severity::Warning,
    summary: "a liveness probe on drainit's `/ready`, or the same HTTP readiness endpoint (`/ready`, `/readyz`, …) as the readiness probe: every spell of unreadiness (overload, a dependency down) restarts the container, and so does a drain that starts without an API deletion (`docker stop`, node shutdown)",
    help: "The kubelet stops liveness probes once a pod's deletion is requested, so a liveness \
           probe on a readiness endpoint does not kill a pod mid-drain after `kubectl delete`, a \
           rollout or an eviction. It still restarts the container whenever the app is merely \
           not ready (overloaded, a dependency down), which turns a brownout into an outage, and \
           it keeps probing during a drain started without a deletion (SIGTERM from `docker \
           stop`, a node shutdown, ECS): drainit's /ready answers 503 then. Give liveness its \
           own check of the process alone (drainit's /live).",
    check: Check::Container(liveness_on_ready),
};

/// drainit's delay + kill margin does not fit the grace period.
pub const DRAINIT_BUDGET: RuleDef = RuleDef {
    id: "drainit-budget",
    severity: Severity::Error,
    summary: "drainit's `--propagation-delay` (for `auto`: its ceiling) + `--kill-margin` leaves the app less than 5 s of the grace period (or of drainit's `--grace-period`, if that is shorter)",
    help: "drainit keeps the app serving for the propagation delay, then stops it, and kills it \
           at the grace period minus the kill margin. When delay and margin use up the grace \
           period, the app has no time to finish its requests. Lower --propagation-delay or \
           raise terminationGracePeriodSeconds and --grace-period.",
    check: Check::Container(drainit_budget),
};

/// drainit's `--grace-period` is not the pod's.
pub const DRAINIT_GRACE_MISMATCH: RuleDef = RuleDef {
    id: "drainit-grace-mismatch",
    severity: Severity::Error,
    summary: "drainit's `--grace-period` (set, or its 30 s default) differs from `terminationGracePeriodSeconds`",
    help: "drainit places its kill deadline by --grace-period: longer than the pod's, the \
           kubelet's SIGKILL comes first; shorter, drainit ends the drain too early. Set \
           --grace-period (DRAINIT_GRACE_PERIOD) to terminationGracePeriodSeconds.",
    check: Check::Container(drainit_grace_mismatch),
};

/// drainit would refuse (or ignore) the settings it is given.
pub const DRAINIT_FLAGS: RuleDef = RuleDef {
    id: "drainit-flags",
    severity: Severity::Error,
    summary: "drainit would refuse its flags or `DRAINIT_*` values (clap's own message), or a `DRAINIT_*` variable is no drainit setting (drainit ignores it)",
    help: "drainit's flags and DRAINIT_* variables are read with drainit's own parser: what it \
           would refuse at start-up (the container never becomes ready) or ignore (a misspelt \
           variable) is reported with the parser's message.",
    check: Check::Container(drainit_flags),
};

fn drainit_flags(_: &Workload<'_>, container: &PodContainer<'_>, hits: &mut Vec<Hit>) {
    match &container.drainit {
        Reading::Refused(why) => {
            hits.push(Hit::new(format!("drainit would refuse to start: {why}")))
        }
        Reading::Drainit(settings) => {
            for name in &settings.unknown_variables {
                hits.push(Hit::new(format!(
                    "{name} is no drainit setting and drainit ignores it: check the \
                     spelling against `drainit --help`"
                )));
            }
        }
        Reading::NotDrainit => {}
    }
}

fn drainit_grace_mismatch(
    workload: &Workload<'_>,
    container: &PodContainer<'_>,
    hits: &mut Vec<Hit>,
) {
    let Reading::Drainit(settings) = &container.drainit else {
        return;
    };
    let grace = workload.grace_period();
    let s = &settings.cli.settings;
    if s.grace_period != grace {
        let given = if settings.grace_period_given {
            format!("drainit's --grace-period is {}", human(s.grace_period))
        } else {
            format!(
                "drainit's --grace-period is not set (its default is {})",
                human(s.grace_period)
            )
        };
        hits.push(Hit::new(format!(
            "{given} but terminationGracePeriodSeconds is {}s: drainit places its kill \
             deadline by it, so it ends the drain too early or the kubelet's SIGKILL comes \
             first; set --grace-period (DRAINIT_GRACE_PERIOD) to {}",
            grace.as_secs(),
            human(grace)
        )));
    }
}

fn drainit_budget(workload: &Workload<'_>, container: &PodContainer<'_>, hits: &mut Vec<Hit>) {
    let Reading::Drainit(settings) = &container.drainit else {
        return;
    };
    let grace = workload.grace_period();
    let s = &settings.cli.settings;
    let delay = longest_delay(s);
    let used = delay.saturating_add(s.kill_margin);
    // drainit kills at its own --grace-period minus the margin; when that is
    // shorter than the pod's, it is the one the app lives by.
    let (budget, whose) = if s.grace_period < grace {
        let text = format!("drainit's {} --grace-period", human(s.grace_period));
        (s.grace_period, text)
    } else {
        (grace, format!("the {} grace period", human(grace)))
    };
    if used.saturating_add(MIN_APP_DRAIN) > budget {
        hits.push(Hit::new(format!(
            "propagation delay {} + kill margin {} leaves the app {} of {whose} \
             (at least {} needed): lower --propagation-delay or raise \
             terminationGracePeriodSeconds and --grace-period to {}s or more",
            human(delay),
            human(s.kill_margin),
            human(budget.saturating_sub(used)),
            human(MIN_APP_DRAIN),
            used.saturating_add(MIN_APP_DRAIN).as_secs(),
        )));
    }
}

/// The script of `sh -c SCRIPT` (any shell, `-c` alone or in `-ec`, `-xc`).
fn shell_script(argv: &[String]) -> Option<&str> {
    let shell = basename(argv.first()?);
    if !SHELLS.contains(&shell) {
        return None;
    }
    let c = argv[1..]
        .iter()
        .position(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('c'))?;
    argv.get(c + 2).map(String::as_str)
}

/// How a `-c` script keeps the app a child of the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keeps {
    /// It does not: one command, an `exec`, or a `trap` that forwards.
    No,
    /// A list (`a; b`, `a && b`): only shells that don't exec the last command (dash).
    List,
    /// A pipeline or a background job: every shell stays.
    Always,
}

/// How a `-c` script leaves the app: a script that sets a `trap` is taken to forward.
fn script_keeps_child(script: &str) -> Keeps {
    if script.contains("trap ") {
        return Keeps::No;
    }
    let commands: Vec<&str> = script
        .split(['\n', ';', '|', '&'])
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.starts_with('#'))
        .collect();
    let Some(last) = commands.last() else {
        return Keeps::No;
    };
    if last.starts_with("exec ") {
        return Keeps::No;
    }
    let without_lists = script.replace("||", " ").replace("&&", " ");
    if without_lists.contains('|') || without_lists.trim_end().ends_with('&') {
        Keeps::Always
    } else if commands.len() > 1 {
        Keeps::List
    } else {
        Keeps::No
    }
}

/// Tags of Debian- and Ubuntu-based images (official `python:3.12-slim`,
/// `node:22-bookworm`): their `/bin/sh` is dash.
const DEBIAN_TAGS: &[&str] = &[
    "slim", "bookworm", "bullseye", "buster", "trixie", "jammy", "focal", "noble",
];

/// What `/bin/sh` is in an image, where its name tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sh {
    /// Alpine's and busybox's: execs the last command.
    Busybox,
    /// Debian's and Ubuntu's: keeps the shell for a list.
    Dash,
    /// Not known.
    Unknown,
}

fn image_sh(image: Option<&str>) -> Sh {
    let Some(image) = image else {
        return Sh::Unknown;
    };
    let name = image_name(image);
    let tag = basename(image).split_once(':').map_or("", |(_, t)| t);
    if name == "busybox" || name == "alpine" || tag.contains("alpine") {
        Sh::Busybox
    } else if name == "debian" || name == "ubuntu" || DEBIAN_TAGS.iter().any(|t| tag.contains(t)) {
        Sh::Dash
    } else {
        Sh::Unknown
    }
}

fn shell_swallows_sigterm(_: &Workload<'_>, container: &PodContainer<'_>, hits: &mut Vec<Hit>) {
    if container.place == Place::Init {
        // Runs to completion before the app starts; never sent the pod's SIGTERM.
        return;
    }
    let spec = container.spec;
    let (argv, who): (Vec<String>, &str) = match &container.drainit {
        Reading::Drainit(s) if !s.is_sidecar() => {
            if s.cli.settings.signal_target == SignalTarget::Group {
                return;
            }
            let app = s
                .cli
                .command
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            (app, "drainit's stop signal goes to the shell")
        }
        Reading::Drainit(_) | Reading::Refused(_) => return,
        Reading::NotDrainit => {
            let Some(command) = &spec.command else { return };
            let argv = command
                .iter()
                .chain(spec.args.iter().flatten())
                .cloned()
                .collect();
            (argv, "the kubelet's SIGTERM goes to the shell (PID 1)")
        }
    };
    let Some(script) = shell_script(&argv) else {
        return;
    };
    let shell = basename(&argv[0]);
    let fix = "end the script with `exec the-app …` (or run the app directly)";
    let hit = match script_keeps_child(script) {
        Keeps::No => return,
        Keeps::Always => Hit::new(format!(
            "`{shell} -c` runs the app in a pipeline or in the background: {who}, which no \
             shell passes on, and the app is SIGKILLed at the end of the grace period; {fix}"
        )),
        Keeps::List if EXEC_LAST.contains(&shell) => return,
        Keeps::List if shell == "dash" || image_sh(spec.image.as_deref()) == Sh::Dash => {
            Hit::new(format!(
                "`{shell} -c` with a command list keeps the shell (dash, Debian's and Ubuntu's \
                 /bin/sh) as the app's parent: {who}, which does not pass it on, and the app is \
                 SIGKILLed at the end of the grace period; {fix}"
            ))
        }
        Keeps::List if image_sh(spec.image.as_deref()) == Sh::Busybox => return,
        Keeps::List => Hit::new(format!(
            "`sh -c` with a command list keeps the shell as the app's parent where /bin/sh is \
             dash (Debian's and Ubuntu's images): {who}, which does not pass it on, and the app \
             is SIGKILLed at the end of the grace period (bash and busybox sh exec the last \
             command and are not affected); {fix}"
        ))
        .at(Severity::Warning),
    };
    hits.push(hit);
}

/// A probe's handler as JSON, to compare two probes by what they check.
fn handler(probe: &Probe) -> serde_json::Value {
    serde_json::json!([
        serde_json::to_value(&probe.http_get).ok(),
        serde_json::to_value(&probe.tcp_socket).ok(),
        serde_json::to_value(&probe.exec).ok(),
        serde_json::to_value(&probe.grpc).ok(),
    ])
}

/// Whether an HTTP path names a readiness endpoint (`/ready`, `/readyz`, `/health/readiness`).
fn names_readiness(path: &str) -> bool {
    path.split('?')
        .next()
        .unwrap_or(path)
        .to_ascii_lowercase()
        .contains("ready")
}

fn liveness_on_ready(workload: &Workload<'_>, container: &PodContainer<'_>, hits: &mut Vec<Hit>) {
    let spec = container.spec;
    let Some(liveness) = &spec.liveness_probe else {
        return;
    };
    let Some(get) = &liveness.http_get else {
        return;
    };
    let path = get.path.as_deref().unwrap_or("/");
    let on_admin =
        resolve_port(&get.port, spec).is_some_and(|p| workload.admin_ports().contains(&p));
    if on_admin && path.split('?').next() == Some("/ready") {
        hits.push(Hit::new(
            "the liveness probe is on drainit's /ready, which answers 503 whenever the app is \
             not ready and for the whole drain: an overload becomes a restart, and so does a \
             drain that starts without an API deletion (docker stop, a node shutdown), which \
             the kubelet keeps probing; probe /live instead",
        ));
        return;
    }
    let same = spec
        .readiness_probe
        .as_ref()
        .is_some_and(|readiness| handler(readiness) == handler(liveness));
    if same && names_readiness(path) {
        hits.push(Hit::new(format!(
            "the liveness probe checks the readiness endpoint {path}, as the readiness probe \
             does: whenever the app is merely not ready (overload, a dependency down) the \
             kubelet restarts it instead of just taking it out of rotation; give liveness its \
             own check of the process alone"
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drainit_flags;
    use k8s_openapi::api::core::v1::Container;

    /// The `shell-swallows-sigterm` hits for a container given as JSON.
    fn shell_findings(container: serde_json::Value, place: Place) -> Vec<Hit> {
        let spec: Container = serde_json::from_value(container).expect("a Container");
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": []}});
        let (objects, _) = crate::input::parse_text("p.yaml", &pod.to_string());
        let workload = Workload::of(&objects[0]).expect("a workload");
        let container = PodContainer {
            drainit: drainit_flags::read(&spec),
            spec: &spec,
            place,
        };
        let mut found = Vec::new();
        shell_swallows_sigterm(&workload, &container, &mut found);
        found
    }

    #[test]
    fn a_shell_behind_drainit_swallows_the_stop_signal_unless_the_group_gets_it() {
        let script = "/app/migrate && /app/server";
        let wrapped = shell_findings(
            serde_json::json!({
                "name": "app",
                "command": ["/drainit", "--", "/bin/dash", "-ec", script],
            }),
            Place::Main,
        );
        assert_eq!(wrapped.len(), 1, "{wrapped:?}");
        assert!(wrapped[0]
            .message
            .contains("drainit's stop signal goes to the shell"));
        assert_eq!(wrapped[0].severity, None, "dash: the rule's own severity");
        let group = shell_findings(
            serde_json::json!({
                "name": "app",
                "command": ["/drainit", "--signal-target=group", "--", "dash", "-c", script],
            }),
            Place::Main,
        );
        assert!(group.is_empty(), "{group:?}");
        let plain = shell_findings(
            serde_json::json!({"name": "app", "command": ["sh", "-c"], "args": [script]}),
            Place::Main,
        );
        assert!(plain[0].message.contains("(PID 1)"), "{plain:?}");
        assert_eq!(
            plain[0].severity,
            Some(Severity::Warning),
            "sh may be dash or not"
        );
        let debian = shell_findings(
            serde_json::json!({"name": "app", "image": "debian:12-slim", "command": ["sh", "-c", script]}),
            Place::Main,
        );
        assert_eq!(debian[0].severity, None, "Debian's sh is dash: {debian:?}");
        // bash and busybox exec the last command of a list.
        for (shell, image) in [("bash", "debian:12"), ("sh", "alpine:3.20")] {
            let found = shell_findings(
                serde_json::json!({"name": "app", "image": image, "command": [shell, "-c", script]}),
                Place::Main,
            );
            assert!(found.is_empty(), "{shell} in {image}: {found:?}");
        }
        // A pipeline keeps every shell.
        let piped = shell_findings(
            serde_json::json!({"name": "app", "command": ["bash", "-c", "/app/server | tee /log"]}),
            Place::Main,
        );
        assert_eq!(piped.len(), 1, "{piped:?}");
        // An init container is never sent SIGTERM.
        let init = shell_findings(
            serde_json::json!({"name": "wait", "command": ["dash", "-c", "until nc -z db 5432; do sleep 1; done; echo ok"]}),
            Place::Init,
        );
        assert!(init.is_empty(), "{init:?}");
        // No command: the image's ENTRYPOINT is unknown, so nothing is said.
        let unknown = shell_findings(
            serde_json::json!({"name": "app", "args": ["sh", "-c", script]}),
            Place::Main,
        );
        assert!(unknown.is_empty(), "{unknown:?}");
    }

    #[test]
    fn scripts_that_keep_the_app_a_child() {
        let table = [
            ("my-app --port 80", Keeps::No),
            ("exec my-app", Keeps::No),
            ("set -e; migrate; exec my-app", Keeps::No),
            ("migrate && my-app", Keeps::List),
            ("my-app | tee /log", Keeps::Always),
            ("my-app &", Keeps::Always),
            ("trap 'kill $pid' TERM; my-app & pid=$!; wait", Keeps::No),
            ("echo start\nmy-app", Keeps::List),
            ("test -f /x || my-app", Keeps::List),
        ];
        for (script, keeps) in table {
            assert_eq!(script_keeps_child(script), keeps, "{script:?}");
        }
    }
}
