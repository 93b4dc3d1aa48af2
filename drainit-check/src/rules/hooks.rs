//! The rules about the preStop hook: how long it sleeps, what it needs in
//! the image, and whether it reaches drainit's `/prestop` (port, path, who
//! may call it).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::{admin_port, basename, pre_stop, resolve_port};
use super::{human, longest_delay, Rule, MIN_APP_DRAIN};
use crate::drainit_flags::{image_is_drainit, Reading};
use crate::inventory::{PodContainer, Workload};

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

pub(super) fn grace_too_short(
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

pub(super) fn prestop_needs_shell(spec: &Container, report: &mut impl FnMut(Rule, String)) {
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

pub(super) fn prestop_named_port(spec: &Container, report: &mut impl FnMut(Rule, String)) {
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

pub(super) fn prestop_misses_drainit(
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

pub(super) fn prestop_open(
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
