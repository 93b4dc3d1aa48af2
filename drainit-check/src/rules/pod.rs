//! The rules that need only one pod template: drainit's settings and
//! timing budget, PID 1 and the probes; the preStop hook's rules are in
//! [`super::hooks`], called from here.

use drainit::settings::{AdminListen, SignalTarget};
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::hooks;
use super::{human, longest_delay, Finding, Rule, MIN_APP_DRAIN};
use crate::drainit_flags::{DrainitSettings, Reading};
use crate::inventory::{PodContainer, Workload};

/// Shells whose `-c` script runs the app as a child unless it `exec`s it.
const SHELLS: &[&str] = &["sh", "bash", "ash", "dash", "zsh", "ksh", "mksh"];

/// The per-pod rules.
pub fn check(workload: &Workload<'_>, findings: &mut Vec<Finding>) {
    let admin_ports: Vec<u16> = workload
        .drainits()
        .filter_map(|(_, s)| admin_port(s))
        .collect();
    for container in &workload.containers {
        let mut report = |rule: Rule, message: String| {
            findings.push(Finding::new(
                rule,
                workload.object,
                Some(&container.spec.name),
                message,
            ))
        };
        drainit_flags(container, &mut report);
        if let Reading::Drainit(settings) = &container.drainit {
            drainit_budget(workload, settings, &mut report);
        }
        shell_swallows_sigterm(container, &mut report);
        liveness_on_ready(container.spec, &admin_ports, &mut report);
        hooks::grace_too_short(workload, container, &mut report);
        hooks::prestop_needs_shell(container.spec, &mut report);
        hooks::prestop_named_port(container.spec, &mut report);
        hooks::prestop_misses_drainit(workload, container.spec, &mut report);
        hooks::prestop_open(workload, container, &mut report);
    }
}

/// drainit's admin port, unless `--admin-listen off`.
pub fn admin_port(settings: &DrainitSettings) -> Option<u16> {
    match settings.cli.settings.admin_listen {
        AdminListen::Off => None,
        AdminListen::At(addr) => Some(addr.port()),
    }
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

/// The container's preStop hook, if any.
pub fn pre_stop(container: &Container) -> Option<&LifecycleHandler> {
    container.lifecycle.as_ref()?.pre_stop.as_ref()
}

fn drainit_flags(container: &PodContainer<'_>, report: &mut impl FnMut(Rule, String)) {
    match &container.drainit {
        Reading::Refused(why) => report(
            Rule::DrainitFlags,
            format!("drainit would refuse to start: {why}"),
        ),
        Reading::Drainit(settings) => {
            for name in &settings.unknown_variables {
                report(
                    Rule::DrainitFlags,
                    format!(
                        "{name} is no drainit setting and drainit ignores it: check the \
                         spelling against `drainit --help`"
                    ),
                );
            }
        }
        Reading::NotDrainit => {}
    }
}

fn drainit_budget(
    workload: &Workload<'_>,
    settings: &DrainitSettings,
    report: &mut impl FnMut(Rule, String),
) {
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
        report(
            Rule::DrainitGraceMismatch,
            format!(
                "{given} but terminationGracePeriodSeconds is {}s: drainit places its kill \
                 deadline by it, so it ends the drain too early or the kubelet's SIGKILL comes \
                 first; set --grace-period (DRAINIT_GRACE_PERIOD) to {}",
                grace.as_secs(),
                human(grace)
            ),
        );
    }
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
        report(
            Rule::DrainitBudget,
            format!(
                "propagation delay {} + kill margin {} leaves the app {} of {whose} \
                 (at least {} needed): lower --propagation-delay or raise \
                 terminationGracePeriodSeconds and --grace-period to {}s or more",
                human(delay),
                human(s.kill_margin),
                human(budget.saturating_sub(used)),
                human(MIN_APP_DRAIN),
                used.saturating_add(MIN_APP_DRAIN).as_secs(),
            ),
        );
    }
}

/// The last component of a path (`/bin/sh` → `sh`).
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
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

/// Whether a `-c` script leaves the app a child of the shell: more than one
/// command, and the last does not `exec` (bash and dash `exec` a lone simple
/// command themselves); a script that sets a `trap` is taken to forward.
fn script_keeps_child(script: &str) -> bool {
    if script.contains("trap ") {
        return false;
    }
    let commands: Vec<&str> = script
        .split(['\n', ';', '|', '&'])
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.starts_with('#'))
        .collect();
    match commands.last() {
        None => false,
        Some(last) if last.starts_with("exec ") => false,
        Some(_) => commands.len() > 1 || script.trim_end().ends_with('&'),
    }
}

fn shell_swallows_sigterm(container: &PodContainer<'_>, report: &mut impl FnMut(Rule, String)) {
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
    if script_keeps_child(script) {
        report(
            Rule::ShellSwallowsSigterm,
            format!(
                "`{} -c` runs the app as its child: {who}, which does not pass it on, and the \
                 app is SIGKILLed at the end of the grace period; end the script with \
                 `exec the-app …` (or run the app directly)",
                basename(&argv[0])
            ),
        );
    }
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

fn liveness_on_ready(spec: &Container, admin_ports: &[u16], report: &mut impl FnMut(Rule, String)) {
    let Some(liveness) = &spec.liveness_probe else {
        return;
    };
    if let Some(get) = &liveness.http_get {
        let path = get.path.as_deref().unwrap_or("/");
        let on_admin = resolve_port(&get.port, spec).is_some_and(|p| admin_ports.contains(&p));
        if on_admin && path.split('?').next() == Some("/ready") {
            report(
                Rule::LivenessOnReady,
                "the liveness probe is on drainit's /ready, which answers 503 for the whole \
                 drain: the kubelet restarts the container mid-drain; probe /live instead"
                    .into(),
            );
            return;
        }
    }
    if spec
        .readiness_probe
        .as_ref()
        .is_some_and(|readiness| handler(readiness) == handler(liveness))
    {
        report(
            Rule::LivenessOnReady,
            "the liveness probe checks the same thing as the readiness probe: whatever makes \
             the pod unready (a drain, an overloaded dependency) also gets it restarted; give \
             liveness its own, simpler check (drainit's /live)"
                .into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drainit_flags;

    /// The `shell-swallows-sigterm` messages for a container given as JSON.
    fn shell_findings(container: serde_json::Value) -> Vec<String> {
        let spec: Container = serde_json::from_value(container).expect("a Container");
        let container = PodContainer {
            drainit: drainit_flags::read(&spec),
            spec: &spec,
            place: crate::inventory::Place::Main,
        };
        let mut found = Vec::new();
        shell_swallows_sigterm(&container, &mut |rule, message| {
            assert_eq!(rule, Rule::ShellSwallowsSigterm);
            found.push(message);
        });
        found
    }

    #[test]
    fn a_shell_behind_drainit_swallows_the_stop_signal_unless_the_group_gets_it() {
        let script = "/app/migrate && /app/server";
        let wrapped = shell_findings(serde_json::json!({
            "name": "app",
            "command": ["/drainit", "--", "/bin/bash", "-ec", script],
        }));
        assert_eq!(wrapped.len(), 1, "{wrapped:?}");
        assert!(
            wrapped[0].contains("drainit's stop signal goes to the shell"),
            "{wrapped:?}"
        );
        let group = shell_findings(serde_json::json!({
            "name": "app",
            "command": ["/drainit", "--signal-target=group", "--", "sh", "-c", script],
        }));
        assert!(group.is_empty(), "{group:?}");
        let plain = shell_findings(serde_json::json!({
            "name": "app",
            "command": ["sh", "-c"],
            "args": [script],
        }));
        assert!(plain[0].contains("(PID 1)"), "{plain:?}");
        // No command: the image's ENTRYPOINT is unknown, so nothing is said.
        let unknown =
            shell_findings(serde_json::json!({"name": "app", "args": ["sh", "-c", script]}));
        assert!(unknown.is_empty(), "{unknown:?}");
    }

    #[test]
    fn scripts_that_keep_the_app_a_child() {
        let table = [
            ("my-app --port 80", false),
            ("exec my-app", false),
            ("set -e; migrate; exec my-app", false),
            ("migrate && my-app", true),
            ("my-app | tee /log", true),
            ("my-app &", true),
            ("trap 'kill $pid' TERM; my-app & pid=$!; wait", false),
            ("echo start\nmy-app", true),
        ];
        for (script, keeps) in table {
            assert_eq!(script_keeps_child(script), keeps, "{script:?}");
        }
    }
}
