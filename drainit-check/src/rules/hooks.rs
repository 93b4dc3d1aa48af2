//! The rules about the preStop hook: how long it sleeps, what it needs in
//! the image, and whether it reaches drainit's `/prestop` (port, path, who
//! may call it).

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::item::{human, longest_delay, Check, Hit, RuleDef, Severity, MIN_APP_DRAIN};
use crate::container::{basename, hook_sleep, pre_stop, resolve_port};
use crate::drainit_flags::{image_is_drainit, Reading, HOST_IP_PLACEHOLDER};
use crate::inventory::{admin_port, PodContainer, Workload};

/// A preStop sleep (plus drainit's delay) leaves the app no time.
pub const GRACE_TOO_SHORT: RuleDef = RuleDef {
    id: "grace-too-short",
    severity: Severity::Error,
    summary: "a preStop sleep (`sleep` action, or `sleep N` in an exec hook), plus drainit's delay and kill margin when drainit is in front, leaves the app less than 5 s of `terminationGracePeriodSeconds`",
    help: "The grace period counts from the start of the preStop hook. A sleep that uses it up \
           leaves the app no time to finish its requests after SIGTERM before the kubelet's \
           SIGKILL. Shorten the sleep or raise terminationGracePeriodSeconds.",
    check: Check::Container(grace_too_short),
};

/// An exec preStop needs a shell or `sleep` the image lacks.
pub const PRESTOP_NEEDS_SHELL: RuleDef = RuleDef {
    id: "prestop-needs-shell",
    severity: Severity::Error,
    summary: "an `exec` preStop runs `sh`/`bash`/`sleep`/`busybox` in an image without them: `gcr.io/distroless/*` (not `:debug`), `cgr.dev/chainguard/*` (not `-dev`), `registry.k8s.io/pause`, Ubuntu `chiseled`, drainit's own `FROM scratch` image",
    help: "An exec hook whose program is missing fails at once; the kubelet sends SIGTERM while \
           the pod is still in every load balancer's rotation. Use the `sleep` action \
           (`preStop: {sleep: {seconds: N}}`) or drainit.",
    check: Check::Container(prestop_needs_shell),
};

/// A preStop httpGet names a port its own container lacks.
pub const PRESTOP_NAMED_PORT: RuleDef = RuleDef {
    id: "prestop-named-port",
    severity: Severity::Error,
    summary: "a preStop `httpGet` names a port its own container does not declare (named ports in hooks resolve in the hook's container, not the sidecar's)",
    help: "A named port in a hook resolves among the ports of the hook's own container. A name \
           only a sidecar declares fails the hook, and the drain starts only at SIGTERM. Give \
           the port number.",
    check: Check::Container(prestop_named_port),
};

/// A preStop httpGet reaches drainit's admin port but not its `/prestop`.
pub const PRESTOP_MISSES_DRAINIT: RuleDef = RuleDef {
    id: "prestop-misses-drainit",
    severity: Severity::Error,
    summary: "a preStop `httpGet` reaches a drainit's admin port but not its `/prestop`: another path (404), or no `X-Drainit-Token` header (or the wrong one) where drainit has `--prestop-token` (403)",
    help: "Only /prestop on drainit's admin port starts the drain from the hook; another path \
           is a 404, and a missing or wrong X-Drainit-Token is a 403 where drainit has \
           --prestop-token. The hook fails and the drain starts only at SIGTERM.",
    check: Check::Container(prestop_misses_drainit),
};

/// drainit's `/prestop` refuses the kubelet's hook on some pod network.
pub const PRESTOP_OPEN: RuleDef = RuleDef {
    id: "prestop-open",
    severity: Severity::Warning,
    summary: "a preStop `httpGet` calls a drainit `/prestop` that refuses the kubelet (403) on some pod network: neither `--prestop-allow-from` nor `--prestop-token` (loopback only), or an allow-list without both `node` (bridge networks: flannel, kubenet, the `bridge` plugin, Cilium) and the node's address (routed networks: Calico, the AWS VPC CNI); the refusal is silent and the drain starts only at SIGTERM",
    help: "Without --prestop-allow-from or --prestop-token drainit lets only loopback callers \
           use /prestop. The kubelet's hook comes from the pod's gateway on bridge networks \
           (flannel, kubenet, the bridge CNI plugin, Cilium), which `node` admits, and from the \
           node's address on routed ones (Calico, the AWS VPC CNI), which $(HOST_IP)/32 admits. \
           A refused hook is silent: the kubelet ignores its status code, records no \
           FailedPreStopHook and sends SIGTERM right after. Set --prestop-allow-from \
           node,$(HOST_IP)/32 (HOST_IP from status.hostIP), or --prestop-token with an \
           X-Drainit-Token entry in the hook's httpHeaders.",
    check: Check::Container(prestop_open),
};

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

fn grace_too_short(workload: &Workload<'_>, container: &PodContainer<'_>, hits: &mut Vec<Hit>) {
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
        hits.push(Hit::new(format!(
            "the preStop hook sleeps {}{how}: that leaves the app {} of the {}s grace period \
             before SIGKILL (at least {} needed); shorten the sleep or raise \
             terminationGracePeriodSeconds to {}s or more",
            human(sleep),
            human(grace.saturating_sub(used)),
            grace.as_secs(),
            human(MIN_APP_DRAIN),
            used.saturating_add(MIN_APP_DRAIN).as_secs(),
        )));
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

fn prestop_needs_shell(_: &Workload<'_>, container: &PodContainer<'_>, hits: &mut Vec<Hit>) {
    let spec = container.spec;
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
        hits.push(Hit::new(format!(
            "the preStop hook runs `{program}`, but {image} has no shell and no sleep: the \
             hook fails at once and the app gets SIGTERM while still in rotation; use the \
             `sleep` action (`preStop: {{sleep: {{seconds: N}}}}`) or drainit"
        )));
    }
}

fn prestop_named_port(_: &Workload<'_>, container: &PodContainer<'_>, hits: &mut Vec<Hit>) {
    let spec = container.spec;
    let Some(get) = pre_stop(spec).and_then(|h| h.http_get.as_ref()) else {
        return;
    };
    if let IntOrString::String(name) = &get.port {
        if resolve_port(&get.port, spec).is_none() {
            hits.push(Hit::new(format!(
                "the preStop httpGet names port {name:?}, which this container does not \
                 declare (named ports in a hook resolve among the hook's own container's \
                 ports, not a sidecar's): the hook fails and the drain starts only at \
                 SIGTERM; give the port number"
            )));
        }
    }
}

/// The header drainit reads `--prestop-token` from.
const TOKEN_HEADER: &str = "X-Drainit-Token";

fn prestop_misses_drainit(
    workload: &Workload<'_>,
    container: &PodContainer<'_>,
    hits: &mut Vec<Hit>,
) {
    let spec = container.spec;
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
        hits.push(Hit::new(format!(
            "the preStop httpGet goes to {path} on drainit's admin port {port}: only \
             /prestop starts the drain (anything else is a 404 and the hook fails); use \
             path: /prestop"
        )));
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
            hits.push(Hit::new(format!(
                "the preStop httpGet does not send the {TOKEN_HEADER} header with the token \
                 container {} expects (--prestop-token): drainit refuses the hook and the drain \
                 starts only at SIGTERM; add httpHeaders: [{{name: {TOKEN_HEADER}, value: …}}]",
                drainit.spec.name
            )));
        }
    }
}

/// What a refused hook does, said in every prestop-open finding.
const SILENT_REFUSAL: &str = "the refusal is silent: the kubelet ignores the hook's status code, \
     records no FailedPreStopHook and sends SIGTERM right after, so the drain starts only at \
     SIGTERM";

fn prestop_open(workload: &Workload<'_>, container: &PodContainer<'_>, hits: &mut Vec<Hit>) {
    let Reading::Drainit(settings) = &container.drainit else {
        return;
    };
    let Some(port) = admin_port(settings) else {
        return;
    };
    let hooked = workload.containers.iter().any(|c| {
        pre_stop(c.spec)
            .and_then(|h| h.http_get.as_ref())
            .and_then(|g| resolve_port(&g.port, c.spec))
            == Some(port)
    });
    if !hooked {
        return;
    }
    let s = &settings.cli.settings;
    // drainit asks every check that is set: an allow-list refuses the
    // kubelet even when the hook sends the right token. A token the hook
    // does not send is prestop-misses-drainit's finding.
    let (refused, fix) = match &s.prestop_allow_from {
        None if s.prestop_token.is_some() => return,
        None => (
            "drainit's /prestop has neither --prestop-allow-from nor --prestop-token, so \
             only loopback callers may use it: the kubelet's preStop httpGet is refused (403)",
            "set --prestop-allow-from node,$(HOST_IP)/32 (HOST_IP from status.hostIP), or \
             --prestop-token with an X-Drainit-Token header in the hook",
        ),
        Some(list) => {
            let node_ip = HOST_IP_PLACEHOLDER
                .parse::<IpAddr>()
                .is_ok_and(|ip| list.contains(ip));
            let refused = match (list.node, node_ip) {
                (true, true) => return,
                (false, true) => {
                    "--prestop-allow-from admits the node's address (status.hostIP) but not \
                     `node`: on bridge networks (flannel, kubenet, the bridge CNI plugin, \
                     Cilium) the kubelet's hook comes from the pod's gateway and is refused \
                     (403)"
                }
                (true, false) => {
                    "--prestop-allow-from has `node` but not the node's address \
                     (status.hostIP): on routed networks (Calico, the AWS VPC CNI) the \
                     kubelet's hook comes from the node's address and is refused (403)"
                }
                (false, false) => {
                    "--prestop-allow-from has neither `node` nor the node's address \
                     (status.hostIP): the kubelet's hook comes from one of them and is refused \
                     (403) unless the networks listed happen to hold it"
                }
            };
            // A token does not help here: drainit asks the allow-list too.
            (
                refused,
                "use --prestop-allow-from node,$(HOST_IP)/32 (HOST_IP from status.hostIP)",
            )
        }
    };
    hits.push(Hit::new(format!("{refused}; {SILENT_REFUSAL}; {fix}")));
}

#[cfg(test)]
mod tests {
    use super::*;

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
