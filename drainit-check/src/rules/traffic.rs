//! Who sends a pod template client traffic, and the rules about the
//! containers that receive it (a readiness probe, a drain, a preStop that
//! waits). [`super::capacity`] counts the pods behind it, and
//! [`super::balancers`] checks the AWS load balancers in front of it.
//!
//! A drain loses requests only where clients send them. A Service port
//! counts as client traffic unless its name (or its container port's)
//! says it is for metrics scrapes or health checks (`metrics`,
//! `prometheus`, `health`), telemetry whose senders retry by protocol
//! (`otlp`, `jaeger`, `zipkin`), a cluster's members among themselves
//! (`peer`, `gossip`, `raft`), or a webhook nobody outside reaches (no
//! Ingress, not exposed); a container
//! that only answers scrapes (an exporter, kube-rbac-proxy) or idles
//! (`sleep infinity`) serves no client. The pods behind a Service are
//! those of every workload it selects, at the autoscaler's `minReplicas`
//! where one targets the workload.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::item::{Check, Hit, Placed, RuleDef, Severity};
use crate::cluster::{Cluster, DrainitRole, ServiceInfo, ServicePortInfo, WorkloadInfo};
use crate::inventory::{Place, Site};

/// A serving container without a readiness probe.
pub const NO_READINESS_PROBE: RuleDef = RuleDef {
    id: "no-readiness-probe",
    severity: Severity::Warning,
    summary: "a container that receives client traffic through a Service has no readiness probe (and no drainit sidecar's probe covers the pod)",
    help: "Without a readiness probe a new pod gets traffic before it can answer, and a \
           draining one has no way to leave rotation early. Add a readiness probe on the app's \
           health endpoint (or drainit's /ready).",
    check: Check::Cluster(no_readiness_probe),
};

/// A serving container with no preStop and no drainit.
pub const NO_DRAIN: RuleDef = RuleDef {
    id: "no-drain",
    severity: Severity::Warning,
    summary: "a container that receives client traffic through a Service has neither a preStop hook nor drainit in front: SIGTERM races the endpoint removal (not reported for a lone data store, whose clients a delay does not help)",
    help: "The kubelet sends SIGTERM at the moment the endpoints controller starts removing the \
           pod; kube-proxy, ingress controllers and cloud load balancers keep routing to it for \
           seconds. An app that stops at SIGTERM drops those requests. Run it under drainit or \
           add a preStop delay.",
    check: Check::Cluster(no_drain),
};

/// A preStop hook that stops the app without waiting first.
pub const PRESTOP_NO_DELAY: RuleDef = RuleDef {
    id: "prestop-no-delay",
    severity: Severity::Warning,
    summary: "a container that receives client traffic has an exec preStop hook that stops the app (`kill`, `pkill`, `nginx -s quit`) before any `sleep` or wait: it is no delay in front of the endpoint removal",
    help: "A preStop hook only protects requests if it waits while the pod leaves every \
           load balancer. A hook that shuts the app down at once (or returns at once) lets \
           SIGTERM, or the shutdown itself, race the endpoint removal as if there were no hook. \
           Sleep first (`sleep 10 && nginx -s quit`), or run the app under drainit.",
    check: Check::Cluster(prestop_no_delay),
};

/// Port names of metrics scrapes and health checks (the kubelet probes
/// the pod directly, never through a Service).
const SCRAPE_WORDS: &[&str] = &["metrics", "prometheus", "telemetry", "monitoring", "health"];
/// Port names of a cluster's own members talking to each other.
const PEER_WORDS: &[&str] = &["peer", "gossip", "intra", "raft", "election"];
/// Port names of telemetry protocols whose senders retry and buffer.
const TELEMETRY_WORDS: &[&str] = &["otlp", "jaeger", "zipkin", "opencensus"];

/// Who sends a Service port's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRole {
    Client,
    Scrape,
    Telemetry,
    Webhook,
    Peer,
}

fn role_of_name(name: &str) -> Option<PortRole> {
    let name = name.to_ascii_lowercase();
    if SCRAPE_WORDS.iter().any(|w| name.contains(w)) {
        Some(PortRole::Scrape)
    } else if TELEMETRY_WORDS.iter().any(|w| name.contains(w)) {
        Some(PortRole::Telemetry)
    } else if name.contains("webhook") {
        Some(PortRole::Webhook)
    } else if PEER_WORDS.iter().any(|w| name.contains(w)) {
        Some(PortRole::Peer)
    } else {
        None
    }
}

/// The containers of `workload` (indices) a Service port's traffic reaches:
/// those declaring the target port, else every main container that could
/// serve (ports need not be declared to be served).
fn receivers(workload: &WorkloadInfo, port: &ServicePortInfo) -> Vec<usize> {
    let candidates: Vec<usize> = workload
        .containers
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            c.place == Place::Main && !matches!(c.drainit, DrainitRole::Sidecar { .. })
        })
        .map(|(i, _)| i)
        .collect();
    let declared: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| {
            workload.containers[i]
                .ports
                .iter()
                .any(|(name, number)| match &port.target {
                    IntOrString::Int(n) => number == n,
                    IntOrString::String(target) => name.as_deref() == Some(target.as_str()),
                })
        })
        .collect();
    if declared.is_empty() {
        candidates
    } else {
        declared
    }
}

/// Who sends the traffic of a Service port to `workload`.
fn port_role(workload: &WorkloadInfo, port: &ServicePortInfo, receivers: &[usize]) -> PortRole {
    let target_name = match &port.target {
        IntOrString::String(name) => Some(name.as_str()),
        IntOrString::Int(_) => None,
    };
    let container_names = receivers.iter().flat_map(|&i| {
        workload.containers[i]
            .ports
            .iter()
            .filter(|(_, n)| matches!(port.target, IntOrString::Int(t) if t == *n))
            .filter_map(|(name, _)| name.as_deref())
    });
    let named = port
        .name
        .as_deref()
        .into_iter()
        .chain(target_name)
        .chain(container_names)
        .find_map(role_of_name);
    if let Some(role) = named {
        return role;
    }
    if !receivers.is_empty()
        && receivers
            .iter()
            .all(|&i| workload.containers[i].metrics_only)
    {
        PortRole::Scrape
    } else {
        PortRole::Client
    }
}

/// The containers (indices) of a workload that receive client traffic through a Service.
fn client_receivers(cluster: &Cluster, workload: &WorkloadInfo, s: usize) -> BTreeSet<usize> {
    let service: &ServiceInfo = &cluster.services[s];
    let mut serving = BTreeSet::new();
    if workload.exporter {
        return serving;
    }
    let reachable = service.exposed || cluster.routed_by_ingress(s);
    for port in &service.ports {
        let receivers = receivers(workload, port);
        let role = port_role(workload, port, &receivers);
        let client = role == PortRole::Client || (role == PortRole::Webhook && reachable);
        if client {
            serving.extend(
                receivers.into_iter().filter(|&i| {
                    !workload.containers[i].idle && !workload.containers[i].metrics_only
                }),
            );
        }
    }
    serving
}

/// Per workload: the containers that receive client traffic, and the
/// client Services (indices) that reach it.
pub(super) struct Serving {
    /// Per workload: the containers (indices) that receive client traffic.
    pub(super) containers: Vec<BTreeSet<usize>>,
    /// Per workload: the client Services (indices) that reach it.
    pub(super) services: Vec<Vec<usize>>,
}

pub(super) fn serving(cluster: &Cluster) -> Serving {
    let mut containers = vec![BTreeSet::new(); cluster.workloads.len()];
    let mut services = vec![Vec::new(); cluster.workloads.len()];
    for (w, workload) in cluster.workloads.iter().enumerate() {
        for &s in cluster.services_of(w) {
            let reached = client_receivers(cluster, workload, s);
            if !reached.is_empty() {
                containers[w].extend(reached);
                services[w].push(s);
            }
        }
    }
    Serving {
        containers,
        services,
    }
}

/// The fewest pods behind any client Service of workload `w` (`None`: a
/// kind without a count, such as a DaemonSet, is among them).
pub(super) fn pods_behind(cluster: &Cluster, serving: &Serving, w: usize) -> Option<i32> {
    serving.services[w]
        .iter()
        .map(|&s| {
            cluster
                .behind_service(s)
                .iter()
                .filter(|&&other| serving.services[other].contains(&s))
                .map(|&other| cluster.workloads[other].pods())
                .try_fold(0i32, |sum, pods| Some(sum.saturating_add(pods?)))
        })
        .min_by_key(|pods| pods.unwrap_or(i32::MAX))
        .flatten()
}

/// A lone store: a data store (or state on a claim) that is the only pod
/// behind its Services; a drain delay saves its clients nothing, as they
/// lose the instance itself.
fn lone_store(cluster: &Cluster, serving: &Serving, w: usize) -> bool {
    cluster.workloads[w].store() && pods_behind(cluster, serving, w) == Some(1)
}

pub(super) fn place(site: &Site, container: Option<&str>, hit: Hit) -> Placed {
    Placed {
        site: site.clone(),
        container: container.map(str::to_string),
        hit,
    }
}

fn no_readiness_probe(cluster: &Cluster, out: &mut Vec<Placed>) {
    let serving = serving(cluster);
    for (w, workload) in cluster.workloads.iter().enumerate() {
        let probed_sidecar = workload
            .containers
            .iter()
            .any(|c| c.drainit == DrainitRole::Sidecar { probed: true });
        for &c in &serving.containers[w] {
            let container = &workload.containers[c];
            if container.readiness || probed_sidecar {
                continue;
            }
            let how = if container.drainit == DrainitRole::Wrapper {
                "probe drainit's /ready on its admin port"
            } else {
                "add one on the app's health endpoint"
            };
            out.push(place(
                &workload.site,
                Some(&container.name),
                Hit::new(format!(
                    "receives a Service's client traffic but has no readiness probe: a new pod \
                     gets traffic before it can answer, and a draining one keeps getting it; {how}"
                )),
            ));
        }
    }
}

fn no_drain(cluster: &Cluster, out: &mut Vec<Placed>) {
    let serving = serving(cluster);
    for (w, workload) in cluster.workloads.iter().enumerate() {
        if lone_store(cluster, &serving, w) {
            continue;
        }
        let has_sidecar = workload
            .containers
            .iter()
            .any(|c| matches!(c.drainit, DrainitRole::Sidecar { .. }));
        for &c in &serving.containers[w] {
            let container = &workload.containers[c];
            if container.pre_stop || container.drainit == DrainitRole::Wrapper {
                continue;
            }
            let message = if has_sidecar {
                "receives client traffic beside a drainit sidecar but has no preStop httpGet to \
                 the sidecar's /prestop: it gets SIGTERM at once, while load balancers still \
                 route to it; add `preStop: {httpGet: {path: /prestop, port: 9095}}`"
            } else {
                "receives a Service's client traffic with neither a preStop hook nor drainit in \
                 front: SIGTERM arrives while kube-proxy and load balancers still route to the \
                 pod; run it under drainit (ENTRYPOINT [\"/drainit\", \"--\"]) or add a preStop \
                 hook"
            };
            out.push(place(
                &workload.site,
                Some(&container.name),
                Hit::new(message),
            ));
        }
    }
}

fn prestop_no_delay(cluster: &Cluster, out: &mut Vec<Placed>) {
    let serving = serving(cluster);
    for (w, workload) in cluster.workloads.iter().enumerate() {
        if lone_store(cluster, &serving, w) {
            continue;
        }
        for &c in &serving.containers[w] {
            let container = &workload.containers[c];
            if container.drainit == DrainitRole::Wrapper {
                continue;
            }
            let Some(command) = &container.pre_stop_without_delay else {
                continue;
            };
            out.push(place(
                &workload.site,
                Some(&container.name),
                Hit::new(format!(
                    "the preStop hook `{command}` stops the app without waiting first: the pod \
                     still receives client traffic until every load balancer has removed it, \
                     so requests are dropped as if there were no hook; sleep first (`sleep 10 \
                     && …`) or run the app under drainit"
                )),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_names_say_who_sends_the_traffic() {
        let table = [
            ("http", None),
            ("http-metrics", Some(PortRole::Scrape)),
            ("otlp-grpc", Some(PortRole::Telemetry)),
            ("jaeger-thrift", Some(PortRole::Telemetry)),
            ("webhook", Some(PortRole::Webhook)),
            ("https-webhook", Some(PortRole::Webhook)),
            ("intra-node", Some(PortRole::Peer)),
            ("leader-election", Some(PortRole::Peer)),
            ("healthz", Some(PortRole::Scrape)),
            ("tcp-redis", None),
            ("grpc", None),
        ];
        for (name, want) in table {
            assert_eq!(role_of_name(name), want, "{name}");
        }
    }
}
