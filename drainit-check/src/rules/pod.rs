//! The rules that need only one pod template: the timing budget, PID 1,
//! the preStop hook and the probes.

use std::time::Duration;

use drainit::cli::{AdminListen, SignalTarget};
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{human, longest_delay, Finding, Rule, MIN_APP_DRAIN};
use crate::drainit_flags::{image_is_drainit, DrainitSettings, Reading};
use crate::inventory::{PodContainer, Workload};

/// Shells whose `-c` script runs the app as a child unless it `exec`s it.
const SHELLS: &[&str] = &["sh", "bash", "ash", "dash", "zsh", "ksh", "mksh"];

/// Programs an exec preStop hook typically needs and a shell-less image lacks.
const NEEDS_SHELL_TOOLS: &[&str] = &["sh", "bash", "ash", "dash", "sleep", "busybox"];

/// Images without a shell or `sleep`, as a name fragment (and the tag fragment
/// that marks the variant that does have one).
const SHELL_LESS_IMAGES: &[(&str, &str)] = &[
    ("gcr.io/distroless/", "debug"),
    ("/distroless", "debug"),
    ("cgr.dev/chainguard/", "dev"),
    ("registry.k8s.io/pause", "\0"),
    ("chiseled", "\0"),
];

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
        grace_too_short(workload, container, &mut report);
        shell_swallows_sigterm(container, &mut report);
        prestop_needs_shell(container.spec, &mut report);
        liveness_on_ready(container.spec, &admin_ports, &mut report);
        prestop_named_port(container.spec, &mut report);
        prestop_misses_drainit(workload, container.spec, &mut report);
        prestop_open(workload, container, &mut report);
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
                "{given} but terminationGracePeriodSeconds is {}s: drainit's deadline must come \
                 before the kubelet's SIGKILL; set --grace-period (DRAINIT_GRACE_PERIOD) to {}",
                grace.as_secs(),
                human(grace)
            ),
        );
    }
    let delay = longest_delay(s);
    let used = delay.saturating_add(s.kill_margin);
    if used.saturating_add(MIN_APP_DRAIN) > grace {
        report(
            Rule::DrainitBudget,
            format!(
                "propagation delay {} + kill margin {} leaves the app {} of the {}s grace period \
                 (at least {} needed): lower --propagation-delay or raise \
                 terminationGracePeriodSeconds and --grace-period to {}s or more",
                human(delay),
                human(s.kill_margin),
                human(grace.saturating_sub(used)),
                grace.as_secs(),
                human(MIN_APP_DRAIN),
                used.saturating_add(MIN_APP_DRAIN).as_secs(),
            ),
        );
    }
}

/// How long a preStop hook sleeps: the `sleep` action, or `sleep N` in an
/// exec hook (directly or in a shell script).
fn hook_sleep(hook: &LifecycleHandler) -> Option<Duration> {
    if let Some(sleep) = &hook.sleep {
        return Some(Duration::from_secs(
            u64::try_from(sleep.seconds).unwrap_or(0),
        ));
    }
    let command = hook.exec.as_ref()?.command.as_deref()?;
    let words: Vec<&str> = command
        .iter()
        .flat_map(|arg| arg.split_whitespace())
        .collect();
    let total: Duration = words
        .windows(2)
        .filter(|pair| basename(pair[0]) == "sleep")
        .filter_map(|pair| parse_sleep(pair[1].trim_end_matches([';', '&', '|'])))
        .sum();
    (total > Duration::ZERO).then_some(total)
}

/// `sleep`'s argument: seconds, with an optional s, m, h or d suffix.
fn parse_sleep(arg: &str) -> Option<Duration> {
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

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn grace_too_short(
    workload: &Workload<'_>,
    container: &PodContainer<'_>,
    report: &mut impl FnMut(Rule, String),
) {
    let Some(sleep) = pre_stop(container.spec).and_then(hook_sleep) else {
        return;
    };
    let grace = workload.grace_period();
    // The hook runs before the kubelet's SIGTERM; a drainit in front starts
    // its own delay only then, and still keeps its kill margin.
    let (after, how) = match &container.drainit {
        Reading::Drainit(s) if !s.is_sidecar() => {
            let delay = longest_delay(&s.cli.settings);
            let margin = s.cli.settings.kill_margin;
            (
                delay.saturating_add(margin),
                format!(
                    ", then drainit's propagation delay {} and kill margin {}",
                    human(delay),
                    human(margin)
                ),
            )
        }
        _ => (Duration::ZERO, String::new()),
    };
    let used = sleep.saturating_add(after);
    if used.saturating_add(MIN_APP_DRAIN) > grace {
        report(
            Rule::GraceTooShort,
            format!(
                "the preStop hook sleeps {}{how}: that leaves the app {} of the {}s grace period \
                 before SIGKILL (at least {} needed); shorten the sleep or raise \
                 terminationGracePeriodSeconds to {}s or more",
                human(sleep),
                human(grace.saturating_sub(used)),
                grace.as_secs(),
                human(MIN_APP_DRAIN),
                used.saturating_add(MIN_APP_DRAIN).as_secs(),
            ),
        );
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

/// Whether an image is known to have no shell and no `sleep`.
fn shell_less(image: &str) -> bool {
    if image_is_drainit(Some(image)) {
        return true;
    }
    let tag = image
        .rsplit('/')
        .next()
        .and_then(|last| last.split_once(':'))
        .map_or("", |(_, tag)| tag);
    SHELL_LESS_IMAGES
        .iter()
        .any(|(fragment, has_shell)| image.contains(fragment) && !tag.contains(has_shell))
}

fn prestop_needs_shell(spec: &Container, report: &mut impl FnMut(Rule, String)) {
    let Some(program) = pre_stop(spec)
        .and_then(|h| h.exec.as_ref())
        .and_then(|e| e.command.as_ref())
        .and_then(|c| c.first())
    else {
        return;
    };
    let Some(image) = spec.image.as_deref() else {
        return;
    };
    if NEEDS_SHELL_TOOLS.contains(&basename(program)) && shell_less(image) {
        report(
            Rule::PrestopNeedsShell,
            format!(
                "the preStop hook runs `{program}`, but {image} has no shell and no sleep: the \
                 hook fails at once and the app gets SIGTERM while still in rotation; use the \
                 `sleep` action (`preStop: {{sleep: {{seconds: N}}}}`) or drainit"
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

fn prestop_named_port(spec: &Container, report: &mut impl FnMut(Rule, String)) {
    let Some(get) = pre_stop(spec).and_then(|h| h.http_get.as_ref()) else {
        return;
    };
    if let IntOrString::String(name) = &get.port {
        if resolve_port(&get.port, spec).is_none() {
            report(
                Rule::PrestopNamedPort,
                format!(
                    "the preStop httpGet names port {name:?}, which this container does not \
                     declare (named ports in a hook resolve among the hook's own container's \
                     ports, not a sidecar's): the hook fails and the drain starts only at \
                     SIGTERM; give the port number"
                ),
            );
        }
    }
}

/// The header drainit reads `--prestop-token` from.
const TOKEN_HEADER: &str = "X-Drainit-Token";

fn prestop_misses_drainit(
    workload: &Workload<'_>,
    spec: &Container,
    report: &mut impl FnMut(Rule, String),
) {
    let Some(get) = pre_stop(spec).and_then(|h| h.http_get.as_ref()) else {
        return;
    };
    let Some(port) = resolve_port(&get.port, spec) else {
        return;
    };
    let Some((drainit, settings)) = workload
        .drainits()
        .find(|(_, s)| admin_port(s) == Some(port))
    else {
        return;
    };
    let path = get.path.as_deref().unwrap_or("/");
    if path.split('?').next() != Some("/prestop") {
        report(
            Rule::PrestopMissesDrainit,
            format!(
                "the preStop httpGet goes to {path} on drainit's admin port {port}: only \
                 /prestop starts the drain (anything else is a 404 and the hook fails); use \
                 path: /prestop"
            ),
        );
        return;
    }
    if let Some(token) = &settings.cli.settings.prestop_token {
        let sent = get
            .http_headers
            .iter()
            .flatten()
            .find(|h| h.name.eq_ignore_ascii_case(TOKEN_HEADER));
        let from_secret = token == crate::drainit_flags::SECRET_TOKEN_PLACEHOLDER;
        let wrong = match sent {
            None => true,
            Some(header) => !from_secret && &header.value != token,
        };
        if wrong {
            report(
                Rule::PrestopMissesDrainit,
                format!(
                    "the preStop httpGet does not send the {TOKEN_HEADER} header with the token \
                     container {} expects (--prestop-token): drainit refuses the hook and the drain starts \
                     only at SIGTERM; add httpHeaders: [{{name: {TOKEN_HEADER}, value: …}}]",
                    drainit.spec.name
                ),
            );
        }
    }
}

fn prestop_open(
    workload: &Workload<'_>,
    container: &PodContainer<'_>,
    report: &mut impl FnMut(Rule, String),
) {
    let Reading::Drainit(settings) = &container.drainit else {
        return;
    };
    let s = &settings.cli.settings;
    if s.prestop_allow_from.is_some() || s.prestop_token.is_some() {
        return;
    }
    let Some(port) = admin_port(settings) else {
        return;
    };
    let hooked = workload.containers.iter().any(|c| {
        pre_stop(c.spec)
            .and_then(|h| h.http_get.as_ref())
            .and_then(|g| resolve_port(&g.port, c.spec))
            == Some(port)
    });
    if hooked {
        report(
            Rule::PrestopOpen,
            "drainit's /prestop has neither --prestop-allow-from nor --prestop-token, so only \
             loopback callers may use it: the kubelet's preStop httpGet will be refused (403) \
             and the drain starts only at SIGTERM; set --prestop-allow-from $(HOST_IP)/32 \
             (HOST_IP from status.hostIP) or --prestop-token"
                .into(),
        );
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

    #[test]
    fn shell_less_images() {
        let table = [
            ("gcr.io/distroless/static-debian12:nonroot", true),
            ("gcr.io/distroless/base:debug", false),
            ("cgr.dev/chainguard/static:latest", true),
            ("cgr.dev/chainguard/python:latest-dev", false),
            ("ghcr.io/example/drainit:0.1.0", true),
            ("mcr.microsoft.com/dotnet/aspnet:8.0-jammy-chiseled", true),
            ("nginx:1.27", false),
            ("debian:12-slim", false),
        ];
        for (image, want) in table {
            assert_eq!(shell_less(image), want, "{image}");
        }
    }
}
