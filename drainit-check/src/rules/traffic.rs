//! The rules that need the objects around a pod template: the Services that
//! send it traffic, the PodDisruptionBudgets that guard it, the Ingresses
//! and AWS load balancers in front of it, and its Namespace.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Finding, Rule};
use crate::drainit_flags::Reading;
use crate::input::Object;
use crate::inventory::{Inventory, Place, Rollout, Workload};
use crate::rules::pod::pre_stop;

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
/// The condition type prefix of an injected (or hand-written) readiness gate.
const READINESS_GATE_CONDITION: &str = "target-health.elbv2.k8s.aws/";

/// The cross-object rules.
pub fn check(inventory: &Inventory<'_>, findings: &mut Vec<Finding>) {
    for (index, workload) in inventory.workloads.iter().enumerate() {
        let services: Vec<&Service> = inventory
            .services_of(index)
            .iter()
            .map(|&s| inventory.services[s].1)
            .collect();
        if !services.is_empty() {
            serving_containers(workload, &services, findings);
            rollout(workload, findings);
            single_replica(workload, findings);
        }
        no_pdb(inventory, workload, findings);
    }
    for (object, pdb) in &inventory.pdbs {
        pdb_blocks_drain(inventory, object, pdb, findings);
    }
    for (object, ingress) in &inventory.ingresses {
        let annotations = ingress.metadata.annotations.clone().unwrap_or_default();
        let behind: Vec<usize> = inventory
            .ingress_services(ingress)
            .into_iter()
            .flat_map(|s| inventory.behind_service(s).iter().copied())
            .collect();
        let ip_mode = annotations.get(ALB_TARGET_TYPE).map(String::as_str) == Some("ip");
        load_balancer(
            inventory,
            object,
            &annotations,
            ALB_ATTRIBUTES,
            ip_mode,
            &behind,
            findings,
        );
    }
    for (index, (object, service)) in inventory.services.iter().enumerate() {
        let annotations = service.metadata.annotations.clone().unwrap_or_default();
        let ip_mode = annotations.get(NLB_TARGET_TYPE).map(String::as_str) == Some("ip")
            || annotations.get(NLB_TYPE).map(String::as_str) == Some("nlb-ip");
        let behind = inventory.behind_service(index);
        load_balancer(
            inventory,
            object,
            &annotations,
            NLB_ATTRIBUTES,
            ip_mode,
            behind,
            findings,
        );
    }
}

/// The main containers that receive a Service's traffic: those declaring a
/// port a Service targets, else every main container that is not a drainit
/// sidecar (ports need not be declared to be served).
fn serving<'w, 'a>(
    workload: &'w Workload<'a>,
    services: &[&Service],
) -> Vec<&'w crate::inventory::PodContainer<'a>> {
    let candidates: Vec<_> = workload
        .containers
        .iter()
        .filter(|c| c.place == Place::Main)
        .filter(|c| !matches!(&c.drainit, Reading::Drainit(s) if s.is_sidecar()))
        .collect();
    let targets: Vec<IntOrString> = services
        .iter()
        .flat_map(|s| s.spec.iter().flat_map(|spec| spec.ports.iter().flatten()))
        .map(|p| p.target_port.clone().unwrap_or(IntOrString::Int(p.port)))
        .collect();
    let declared: Vec<_> = candidates
        .iter()
        .copied()
        .filter(|c| {
            c.spec.ports.iter().flatten().any(|p| {
                targets.iter().any(|t| match t {
                    IntOrString::Int(n) => p.container_port == *n,
                    IntOrString::String(name) => p.name.as_deref() == Some(name.as_str()),
                })
            })
        })
        .collect();
    if declared.is_empty() {
        candidates
    } else {
        declared
    }
}

fn serving_containers(workload: &Workload<'_>, services: &[&Service], findings: &mut Vec<Finding>) {
    let sidecar = workload
        .drainits()
        .find(|(c, s)| s.is_sidecar() && c.spec.readiness_probe.is_some());
    for container in serving(workload, services) {
        let name = Some(container.spec.name.as_str());
        let wrapped = matches!(&container.drainit, Reading::Drainit(s) if !s.is_sidecar());
        if container.spec.readiness_probe.is_none() && sidecar.is_none() {
            let how = if wrapped {
                "probe drainit's /ready on its admin port"
            } else {
                "add one on the app's health endpoint"
            };
            findings.push(Finding::new(
                Rule::NoReadinessProbe,
                workload.object,
                name,
                format!(
                    "serves a Service but has no readiness probe: a new pod gets traffic before \
                     it can answer, and a draining one keeps getting it; {how}"
                ),
            ));
        }
        if pre_stop(container.spec).is_none() && !wrapped {
            let message = if workload.drainits().any(|(_, s)| s.is_sidecar()) {
                "serves a Service beside a drainit sidecar but has no preStop httpGet to the \
                 sidecar's /prestop: it gets SIGTERM at once, while load balancers still route \
                 to it; add `preStop: {httpGet: {path: /prestop, port: 9095}}`"
            } else {
                "serves a Service with neither a preStop hook nor drainit in front: SIGTERM \
                 arrives while kube-proxy and load balancers still route to the pod; run it \
                 under drainit (ENTRYPOINT [\"/drainit\", \"--\"]) or add a preStop hook"
            };
            findings.push(Finding::new(
                Rule::NoDrain,
                workload.object,
                name,
                message.into(),
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

fn rollout(workload: &Workload<'_>, findings: &mut Vec<Finding>) {
    let Some(replicas) = workload.replicas else {
        return;
    };
    let message = match &workload.rollout {
        Rollout::Recreate => Some(
            "strategy Recreate stops every pod before the new ones start: each rollout is an \
             outage for the Service; use RollingUpdate with maxUnavailable: 0 and maxSurge: 1"
                .to_string(),
        ),
        Rollout::Rolling { max_unavailable } if replicas > 1 => {
            let is_deployment = matches!(workload.object.kind, crate::input::Kind::Deployment(_));
            let default = if is_deployment {
                IntOrString::String("25%".into())
            } else {
                IntOrString::Int(1)
            };
            let value = max_unavailable.clone().unwrap_or(default);
            scaled(&value, replicas, false)
                .filter(|down| *down >= replicas)
                .map(|_| {
                    format!(
                        "maxUnavailable {} lets a rollout take all {replicas} replicas down at \
                         once: the Service has no ready pod; use maxUnavailable: 0 (with \
                         maxSurge: 1) or at most {}",
                        text(&value),
                        replicas - 1
                    )
                })
        }
        _ => None,
    };
    if let Some(message) = message {
        findings.push(Finding::new(
            Rule::RolloutDropsCapacity,
            workload.object,
            None,
            message,
        ));
    }
}

fn single_replica(workload: &Workload<'_>, findings: &mut Vec<Finding>) {
    if workload.replicas == Some(1) {
        findings.push(Finding::new(
            Rule::SingleReplica,
            workload.object,
            None,
            "one replica behind a Service: every node drain, eviction or crash is an outage \
             (spec.replicas unset means 1, unless an autoscaler sets it); run at least 2"
                .into(),
        ));
    }
}

fn no_pdb(inventory: &Inventory<'_>, workload: &Workload<'_>, findings: &mut Vec<Finding>) {
    if workload.replicas.is_some_and(|r| r > 1) && inventory.pdbs_of(workload).is_empty() {
        findings.push(Finding::new(
            Rule::NoPdb,
            workload.object,
            None,
            "no PodDisruptionBudget (among the inputs) selects these pods: a node drain may \
             evict all of them at once; add one with maxUnavailable: 1"
                .into(),
        ));
    }
}

fn pdb_blocks_drain(
    inventory: &Inventory<'_>,
    object: &Object,
    pdb: &k8s_openapi::api::policy::v1::PodDisruptionBudget,
    findings: &mut Vec<Finding>,
) {
    let Some(spec) = &pdb.spec else { return };
    let Some(selector) = &spec.selector else {
        return;
    };
    let fix = "node drains hang until someone deletes the budget; use maxUnavailable: 1";
    for workload in &inventory.workloads {
        if workload.namespace != crate::inventory::namespace_of(&pdb.metadata)
            || !crate::inventory::selects(selector, &workload.labels)
        {
            continue;
        }
        let name = workload.object.display_name();
        let blocked = match (
            &spec.max_unavailable,
            &spec.min_available,
            workload.replicas,
        ) {
            (Some(max), _, replicas) => scaled(max, replicas.unwrap_or(1), true)
                .filter(|n| *n <= 0)
                .map(|_| format!("maxUnavailable {} allows no eviction of {name}", text(max))),
            (None, Some(IntOrString::String(p)), _) if p.trim() == "100%" => {
                Some(format!("minAvailable 100% allows no eviction of {name}"))
            }
            (None, Some(min), Some(replicas)) => scaled(min, replicas, true)
                .filter(|n| *n >= replicas)
                .map(|_| {
                    format!(
                        "minAvailable {} with {replicas} replicas of {name} allows no eviction",
                        text(min)
                    )
                }),
            _ => None,
        };
        if let Some(why) = blocked {
            findings.push(Finding::new(
                Rule::PdbBlocksDrain,
                object,
                None,
                format!("{why}: {fix}"),
            ));
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

fn load_balancer(
    inventory: &Inventory<'_>,
    object: &Object,
    annotations: &BTreeMap<String, String>,
    attributes_key: &str,
    ip_mode: bool,
    behind: &[usize],
    findings: &mut Vec<Finding>,
) {
    let delay = annotations
        .get(attributes_key)
        .and_then(|a| deregistration_delay(a));
    for &index in behind {
        let workload = &inventory.workloads[index];
        let grace = workload.grace_period();
        if let Some(delay) = delay.filter(|d| *d > grace) {
            findings.push(Finding::new(
                Rule::DeregistrationExceedsGrace,
                object,
                None,
                format!(
                    "deregistration_delay.timeout_seconds={} is longer than the {}s grace \
                     period of {}: the load balancer still sends requests to targets that are \
                     already gone; keep it below terminationGracePeriodSeconds (and below \
                     drainit's --propagation-delay)",
                    delay.as_secs(),
                    grace.as_secs(),
                    workload.object.display_name()
                ),
            ));
        }
        let gated_by_pod = workload
            .pod
            .readiness_gates
            .iter()
            .flatten()
            .any(|g| g.condition_type.starts_with(READINESS_GATE_CONDITION));
        let namespace_ungated =
            inventory
                .namespaces
                .get(&workload.namespace)
                .is_some_and(|labels| {
                    labels.get(READINESS_GATE_LABEL).map(String::as_str) != Some("enabled")
                });
        if ip_mode && namespace_ungated && !gated_by_pod {
            findings.push(Finding::new(
                Rule::AlbIpNoReadinessGate,
                object,
                None,
                format!(
                    "routes to pod IPs of {}, but Namespace {} lacks the label \
                     {READINESS_GATE_LABEL}: enabled: a rollout can replace pods faster than \
                     the load balancer registers the new ones; label the namespace",
                    workload.object.display_name(),
                    workload.namespace
                ),
            ));
        }
    }
}
