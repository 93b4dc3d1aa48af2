//! The rules that need the objects around a pod template: the Services that
//! send it client traffic, the autoscaler and PodDisruptionBudgets that set
//! how many pods stay, the Ingresses and AWS load balancers in front of it,
//! and its Namespace.
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

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::item::{Check, Hit, Placed, RuleDef, Severity};
use crate::cluster::{Cluster, DrainitRole, ServiceInfo, ServicePortInfo, WorkloadInfo};
use crate::inventory::{selects, Place, Rollout, Site};

/// A PodDisruptionBudget that allows no eviction.
pub const PDB_BLOCKS_DRAIN: RuleDef = RuleDef {
    id: "pdb-blocks-drain",
    severity: Severity::Error,
    summary: "a PodDisruptionBudget (policy/v1 or v1beta1) allows no eviction (`maxUnavailable: 0`, `minAvailable` ≥ the pods or `100%`): node drains hang",
    help: "A budget that allows no eviction blocks `kubectl drain` and every node upgrade until \
           someone deletes it. Use maxUnavailable: 1 (or a minAvailable below the replicas).",
    check: Check::Cluster(pdb_blocks_drain),
};

/// A rollout that can take every pod down.
pub const ROLLOUT_DROPS_CAPACITY: RuleDef = RuleDef {
    id: "rollout-drops-capacity",
    severity: Severity::Error,
    summary: "a workload with more than one pod serving client traffic rolls out with `Recreate` (and keeps no state on a volume claim, no data store image) or with a `maxUnavailable` that can take every pod down",
    help: "Recreate stops every pod before the new ones start, and a maxUnavailable as large as \
           the replicas lets a rollout do the same: the Service has no ready pod. A single \
           writer (state on a ReadWriteOnce claim, a data store, one replica that must not run \
           twice) needs Recreate and is not reported. Use RollingUpdate with maxUnavailable: 0 \
           and maxSurge: 1.",
    check: Check::Cluster(rollout_drops_capacity),
};

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

/// No PodDisruptionBudget for a replicated workload.
pub const NO_PDB: RuleDef = RuleDef {
    id: "no-pdb",
    severity: Severity::Warning,
    summary: "more than one pod (replicas, or an autoscaler's `minReplicas`) serving client traffic or keeping state on a claim, and no PodDisruptionBudget (of any version) among the inputs selects them",
    help: "Without a budget a node drain may evict every pod of the workload at once. Add a \
           PodDisruptionBudget with maxUnavailable: 1.",
    check: Check::Cluster(no_pdb),
};

/// One pod behind a Service.
pub const SINGLE_REPLICA: RuleDef = RuleDef {
    id: "single-replica",
    severity: Severity::Warning,
    summary: "the only pod that receives a Service's client traffic (counting every workload the Service selects, and an autoscaler's `minReplicas`): any node drain is an outage (not reported for a data store or single writer, which is one instance by design)",
    help: "With one pod behind a Service every eviction, node drain or crash is an outage. Run \
           at least two (replicas, or the autoscaler's minReplicas). A data store or a single \
           writer is one instance by design and is not reported.",
    check: Check::Cluster(single_replica),
};

/// A target group's deregistration delay outlives the pod.
pub const DEREGISTRATION_EXCEEDS_GRACE: RuleDef = RuleDef {
    id: "deregistration-exceeds-grace",
    severity: Severity::Warning,
    summary: "an AWS target group's `deregistration_delay.timeout_seconds` (Ingress or Service annotation) is longer than the pods' grace period",
    help: "The load balancer keeps sending requests to a deregistering target for the \
           deregistration delay; a pod that is gone before then drops them. Keep it below \
           terminationGracePeriodSeconds (and below drainit's --propagation-delay).",
    check: Check::Cluster(deregistration_exceeds_grace),
};

/// An ALB/NLB in IP mode without pod readiness gates.
pub const ALB_IP_NO_READINESS_GATE: RuleDef = RuleDef {
    id: "alb-ip-no-readiness-gate",
    severity: Severity::Warning,
    summary: "an ALB/NLB in IP mode routes to the pods and their Namespace (when among the inputs) lacks `elbv2.k8s.aws/pod-readiness-gate-inject: enabled` (and the pods have no such readiness gate)",
    help: "In IP mode the load balancer routes straight to pod IPs. Without the controller's \
           readiness gate a rollout can replace pods faster than the load balancer registers \
           the new ones. Label the namespace elbv2.k8s.aws/pod-readiness-gate-inject=enabled.",
    check: Check::Cluster(alb_ip_no_readiness_gate),
};

/// The AWS Load Balancer Controller's target-group attributes, on an Ingress.
const ALB_ATTRIBUTES: &str = "alb.ingress.kubernetes.io/target-group-attributes";
/// The same, on a Service (NLB).
const NLB_ATTRIBUTES: &str = "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes";
/// `ip` routes straight to pod IPs (Ingress).
const ALB_TARGET_TYPE: &str = "alb.ingress.kubernetes.io/target-type";
/// `ip` routes straight to pod IPs (Service).
const NLB_TARGET_TYPE: &str = "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type";
/// The legacy spelling of an NLB in IP mode (`nlb-ip`).
const NLB_TYPE: &str = "service.beta.kubernetes.io/aws-load-balancer-type";
/// The Namespace label that makes the controller inject readiness gates.
const READINESS_GATE_LABEL: &str = "elbv2.k8s.aws/pod-readiness-gate-inject";

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
struct Serving {
    containers: Vec<BTreeSet<usize>>,
    services: Vec<Vec<usize>>,
}

fn serving(cluster: &Cluster) -> Serving {
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
fn pods_behind(cluster: &Cluster, serving: &Serving, w: usize) -> Option<i32> {
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

fn place(site: &Site, container: Option<&str>, hit: Hit) -> Placed {
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

/// `IntOrString` as a count of `total`: percentages round down or up.
fn scaled(value: &IntOrString, total: i32, round_up: bool) -> Option<i32> {
    match value {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(s) => {
            let percent: i64 = s.strip_suffix('%')?.trim().parse().ok()?;
            let product = percent.checked_mul(i64::from(total))?;
            let count = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(count).ok()
        }
    }
}

fn text(value: &IntOrString) -> String {
    match value {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

fn rollout_drops_capacity(cluster: &Cluster, out: &mut Vec<Placed>) {
    let serving = serving(cluster);
    for (w, workload) in cluster.workloads.iter().enumerate() {
        if serving.services[w].is_empty() {
            continue;
        }
        let Some(pods) = workload.pods().filter(|p| *p > 1) else {
            continue;
        };
        let message = match &workload.rollout {
            Rollout::Recreate if !workload.store() => Some(format!(
                "strategy Recreate stops all {pods} pods before the new ones start: each \
                 rollout is an outage for the Service's clients; use RollingUpdate with \
                 maxUnavailable: 0 and maxSurge: 1"
            )),
            Rollout::Rolling { max_unavailable } => {
                let default = if workload.kind == "Deployment" {
                    IntOrString::String("25%".into())
                } else {
                    IntOrString::Int(1)
                };
                let value = max_unavailable.clone().unwrap_or(default);
                scaled(&value, pods, false)
                    .filter(|down| *down >= pods)
                    .map(|_| {
                        format!(
                            "maxUnavailable {} lets a rollout take all {pods} pods down at \
                             once: the Service has no ready pod; use maxUnavailable: 0 (with \
                             maxSurge: 1) or at most {}",
                            text(&value),
                            pods - 1
                        )
                    })
            }
            _ => None,
        };
        if let Some(message) = message {
            out.push(place(&workload.site, None, Hit::new(message)));
        }
    }
}

fn single_replica(cluster: &Cluster, out: &mut Vec<Placed>) {
    let serving = serving(cluster);
    for (w, workload) in cluster.workloads.iter().enumerate() {
        if pods_behind(cluster, &serving, w) != Some(1) || workload.single_writer() {
            continue;
        }
        let count = match workload.min_replicas {
            Some(_) => "its autoscaler's minReplicas is 1",
            None => "one replica (spec.replicas unset means 1)",
        };
        out.push(place(
            &workload.site,
            None,
            Hit::new(format!(
                "the only pod behind its Service's client traffic, {count}: every node drain, \
                 eviction or crash is an outage; run at least 2"
            )),
        ));
    }
}

fn no_pdb(cluster: &Cluster, out: &mut Vec<Placed>) {
    let serving = serving(cluster);
    for (w, workload) in cluster.workloads.iter().enumerate() {
        let matters = !serving.services[w].is_empty() || workload.claims_storage;
        if matters
            && workload.pods().is_some_and(|r| r > 1)
            && cluster.pdbs_of(workload).next().is_none()
        {
            out.push(place(
                &workload.site,
                None,
                Hit::new(
                    "no PodDisruptionBudget (among the inputs) selects these pods: a node drain \
                     may evict all of them at once; add one with maxUnavailable: 1",
                ),
            ));
        }
    }
}

fn pdb_blocks_drain(cluster: &Cluster, out: &mut Vec<Placed>) {
    let fix = "node drains hang until someone deletes the budget; use maxUnavailable: 1";
    for pdb in &cluster.pdbs {
        let Some(selector) = &pdb.selector else {
            continue;
        };
        for &w in cluster.workloads_in(&pdb.namespace) {
            let workload = &cluster.workloads[w];
            if !selects(selector, &workload.labels) {
                continue;
            }
            let name = &workload.site.name;
            let blocked = match (&pdb.max_unavailable, &pdb.min_available, workload.pods()) {
                (Some(max), _, pods) => scaled(max, pods.unwrap_or(1), true)
                    .filter(|n| *n <= 0)
                    .map(|_| format!("maxUnavailable {} allows no eviction of {name}", text(max))),
                (None, Some(IntOrString::String(p)), _) if p.trim() == "100%" => {
                    Some(format!("minAvailable 100% allows no eviction of {name}"))
                }
                (None, Some(min), Some(pods)) => {
                    scaled(min, pods, true).filter(|n| *n >= pods).map(|_| {
                        format!(
                            "minAvailable {} with {pods} pods of {name} allows no eviction",
                            text(min)
                        )
                    })
                }
                _ => None,
            };
            if let Some(why) = blocked {
                out.push(place(&pdb.site, None, Hit::new(format!("{why}: {fix}"))));
            }
        }
    }
}

/// `deregistration_delay.timeout_seconds` from target-group attributes.
fn deregistration_delay(attributes: &str) -> Option<Duration> {
    attributes
        .split(',')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| k.trim() == "deregistration_delay.timeout_seconds")
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A load balancer among the inputs and the workloads behind it.
struct LoadBalancer<'c> {
    site: &'c Site,
    annotations: &'c BTreeMap<String, String>,
    /// The annotation holding its target-group attributes.
    attributes_key: &'static str,
    /// It routes straight to pod IPs.
    ip_mode: bool,
    behind: Vec<usize>,
}

fn load_balancers(cluster: &Cluster) -> Vec<LoadBalancer<'_>> {
    let mut all = Vec::new();
    for ingress in &cluster.ingresses {
        let behind: Vec<usize> = cluster
            .ingress_services(ingress)
            .into_iter()
            .flat_map(|s| cluster.behind_service(s).iter().copied())
            .collect();
        all.push(LoadBalancer {
            site: &ingress.site,
            annotations: &ingress.annotations,
            attributes_key: ALB_ATTRIBUTES,
            ip_mode: ingress.annotations.get(ALB_TARGET_TYPE).map(String::as_str) == Some("ip"),
            behind,
        });
    }
    for (index, service) in cluster.services.iter().enumerate() {
        let a = &service.annotations;
        all.push(LoadBalancer {
            site: &service.site,
            annotations: a,
            attributes_key: NLB_ATTRIBUTES,
            ip_mode: a.get(NLB_TARGET_TYPE).map(String::as_str) == Some("ip")
                || a.get(NLB_TYPE).map(String::as_str) == Some("nlb-ip"),
            behind: cluster.behind_service(index).to_vec(),
        });
    }
    all
}

fn deregistration_exceeds_grace(cluster: &Cluster, out: &mut Vec<Placed>) {
    for lb in load_balancers(cluster) {
        let site = lb.site;
        let Some(delay) = lb
            .annotations
            .get(lb.attributes_key)
            .and_then(|a| deregistration_delay(a))
        else {
            continue;
        };
        for w in lb.behind {
            let workload = &cluster.workloads[w];
            if delay > workload.grace {
                out.push(place(
                    site,
                    None,
                    Hit::new(format!(
                        "deregistration_delay.timeout_seconds={} is longer than the {}s grace \
                         period of {}: the load balancer still sends requests to targets that \
                         are already gone; keep it below terminationGracePeriodSeconds (and \
                         below drainit's --propagation-delay)",
                        delay.as_secs(),
                        workload.grace.as_secs(),
                        workload.site.name
                    )),
                ));
            }
        }
    }
}

fn alb_ip_no_readiness_gate(cluster: &Cluster, out: &mut Vec<Placed>) {
    for lb in load_balancers(cluster) {
        let site = lb.site;
        if !lb.ip_mode {
            continue;
        }
        for w in lb.behind {
            let workload = &cluster.workloads[w];
            let namespace_ungated =
                cluster
                    .namespaces
                    .get(&workload.namespace)
                    .is_some_and(|labels| {
                        labels.get(READINESS_GATE_LABEL).map(String::as_str) != Some("enabled")
                    });
            if namespace_ungated && !workload.aws_gated {
                out.push(place(
                    site,
                    None,
                    Hit::new(format!(
                        "routes to pod IPs of {}, but Namespace {} lacks the label \
                         {READINESS_GATE_LABEL}: enabled: a rollout can replace pods faster \
                         than the load balancer registers the new ones; label the namespace",
                        workload.site.name, workload.namespace
                    )),
                ));
            }
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
