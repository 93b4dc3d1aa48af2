//! The rules about the AWS load balancers in front of a pod template (an
//! ALB Ingress, an NLB Service): how long they keep routing to a pod that
//! is gone, and whether a rollout can outrun their registration.

use std::collections::BTreeMap;
use std::time::Duration;

use super::item::{Check, Hit, Placed, RuleDef, Severity};
use super::traffic::place;
use crate::cluster::Cluster;
use crate::inventory::Site;

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
