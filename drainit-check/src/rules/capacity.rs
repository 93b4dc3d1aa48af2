//! The rules about how many pods stay through a rollout or a node drain:
//! the pods behind a Service (every workload it selects, at an
//! autoscaler's `minReplicas`), the rollout strategy, and the
//! PodDisruptionBudgets (of every version) that guard them.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::item::{Check, Hit, Placed, RuleDef, Severity};
use super::traffic::{place, pods_behind, serving};
use crate::cluster::Cluster;
use crate::inventory::Rollout;

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
        if matters && workload.pods().is_some_and(|r| r > 1) && cluster.pdbs_of(w).is_empty() {
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
    for (index, pdb) in cluster.pdbs.iter().enumerate() {
        for &w in cluster.guarded_by(index) {
            let workload = &cluster.workloads[w];
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
