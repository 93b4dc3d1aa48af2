//! What the cross-object rules read, kept once each object is checked: a
//! small summary of every workload, Service, PodDisruptionBudget,
//! Ingress, Namespace and autoscaler, linked once every object is read
//! (which Services select which workloads, which autoscaler sets a
//! workload's floor). Only these summaries outlive an object, so memory
//! grows with what those rules read, not with the input.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::container::{self, hook_without_delay, pre_stop};
use crate::drainit_flags::Reading;
use crate::inventory::{namespace_of, Place, Rollout, Site, Workload};
use crate::objects::{Kind, Object};
use crate::rbac::Rbac;

/// Labels as a sorted list: a few pairs cost a few dozen bytes, where a
/// `BTreeMap` node costs half a kilobyte (the summary keeps one per
/// workload, Service and PodDisruptionBudget).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    /// The labels of a map.
    pub fn of(map: &BTreeMap<String, String>) -> Self {
        // A BTreeMap iterates sorted by key.
        Labels(
            map.iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
        )
    }

    /// The value of a label.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.0[i].1.as_ref())
    }

    /// Whether every pair of `self` is among `labels` (a Service's selector).
    pub fn subset_of(&self, labels: &Labels) -> bool {
        self.0
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v.as_ref()))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every pair.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

/// A label selector's requirement (`matchExpressions`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: Box<str>,
    operator: Box<str>,
    values: Box<[Box<str>]>,
}

/// A label selector (policy/v1 semantics: `{}` selects every pod), compact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: Labels,
    requirements: Box<[Requirement]>,
}

impl Selector {
    /// The compact form of a selector.
    pub fn of(selector: &LabelSelector) -> Self {
        Selector {
            labels: selector
                .match_labels
                .as_ref()
                .map(Labels::of)
                .unwrap_or_default(),
            requirements: selector
                .match_expressions
                .iter()
                .flatten()
                .map(|e| Requirement {
                    key: e.key.as_str().into(),
                    operator: e.operator.as_str().into(),
                    values: e
                        .values
                        .iter()
                        .flatten()
                        .map(|v| v.as_str().into())
                        .collect(),
                })
                .collect(),
        }
    }

    /// A pair every selected pod carries, if the selector has one.
    fn required_pair(&self) -> Option<(&str, &str)> {
        self.labels.iter().next()
    }

    /// Whether the selector matches `labels`.
    pub fn selects(&self, labels: &Labels) -> bool {
        self.labels.subset_of(labels)
            && self.requirements.iter().all(|r| {
                let value = labels.get(&r.key);
                let listed = |v: &str| r.values.iter().any(|x| x.as_ref() == v);
                match r.operator.as_ref() {
                    "In" => value.is_some_and(listed),
                    "NotIn" => value.is_none_or(|v| !listed(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }
}

/// drainit's part in a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainitRole {
    /// No drainit.
    None,
    /// drainit in front of the app (PID 1).
    Wrapper,
    /// `drainit sidecar` (with a readiness probe of its own, or not).
    Sidecar {
        /// The sidecar has a readiness probe (its /ready gates the pod).
        probed: bool,
    },
}

/// What a cross-object rule needs of one container.
#[derive(Debug)]
pub struct ContainerInfo {
    /// Its name.
    pub name: String,
    /// Where it runs.
    pub place: Place,
    /// Declared ports: (name, number).
    pub ports: Vec<(Option<String>, i32)>,
    /// It has a readiness probe.
    pub readiness: bool,
    /// It has a preStop hook.
    pub pre_stop: bool,
    /// The preStop hook stops the app without waiting first: what it runs.
    pub pre_stop_without_delay: Option<String>,
    /// drainit's part.
    pub drainit: DrainitRole,
    /// It runs a known data store (by its image's name or its own).
    pub data_store: bool,
    /// The image keeps its own database in the pod (Grafana).
    pub local_database: bool,
    /// The image only answers metrics scrapes.
    pub metrics_only: bool,
    /// The command keeps it idle (`sleep infinity`).
    pub idle: bool,
}

/// What the cross-object rules need of one workload.
#[derive(Debug)]
pub struct WorkloadInfo {
    /// Where findings about it go.
    pub site: Site,
    /// Its kind (`Deployment`).
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The pod template's labels.
    pub labels: Labels,
    /// Replicas as written (replicated kinds; `None` for the others).
    pub replicas: Option<i32>,
    /// An autoscaler's `minReplicas`, once linked.
    pub min_replicas: Option<i32>,
    /// How pods are replaced.
    pub rollout: Rollout,
    /// `terminationGracePeriodSeconds`.
    pub grace: Duration,
    /// The pod has an AWS load balancer readiness gate.
    pub aws_gated: bool,
    /// The pods keep state in a PersistentVolumeClaim.
    pub claims_storage: bool,
    /// `app.kubernetes.io/component: exporter`: the pods answer scrapes only.
    pub exporter: bool,
    /// Its containers.
    pub containers: Vec<ContainerInfo>,
    /// A drainit in it uses the Kubernetes API (`--kubernetes` not off).
    pub api_use: Option<ApiUse>,
}

/// A pod whose drainit uses the Kubernetes API: what its RBAC must allow whom.
#[derive(Debug)]
pub struct ApiUse {
    /// The drainit container.
    pub container: String,
    /// `serviceAccountName` (`default` when unset).
    pub service_account: String,
    /// `automountServiceAccountToken: false` and no token mounted by hand
    /// where drainit looks (`--kubernetes-secrets` at its default).
    pub no_token: bool,
}

impl ApiUse {
    /// The first drainit container of a pod that uses the API, if any.
    fn of(workload: &Workload<'_>) -> Option<Self> {
        let (container, settings) = workload
            .drainits()
            .find(|(_, s)| s.cli.settings.kubernetes != drainit::settings::KubernetesApi::Off)?;
        let pod = workload.pod;
        let projected_token = pod.volumes.iter().flatten().any(|v| {
            v.projected.as_ref().is_some_and(|p| {
                p.sources
                    .iter()
                    .flatten()
                    .any(|s| s.service_account_token.is_some())
            })
        });
        let default_dir = settings.cli.settings.kubernetes_secrets.as_os_str()
            == drainit::settings::kubernetes::SERVICE_ACCOUNT_DIR;
        Some(ApiUse {
            container: container.spec.name.clone(),
            service_account: pod
                .service_account_name
                .clone()
                .or_else(|| pod.service_account.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".into()),
            no_token: pod.automount_service_account_token == Some(false)
                && !projected_token
                && default_dir,
        })
    }
}

impl WorkloadInfo {
    /// The pods that normally run: the autoscaler's floor, else `replicas`.
    pub fn pods(&self) -> Option<i32> {
        self.min_replicas.or(self.replicas)
    }

    /// A store: a data store image, or state on a claim. Its clients lose
    /// what a restart loses, which no drain delay saves.
    pub fn store(&self) -> bool {
        self.claims_storage || self.containers.iter().any(|c| c.data_store)
    }

    /// One instance by design: a store, an app with its database in the pod,
    /// or a Recreate rollout (a single writer that must not run twice).
    pub fn single_writer(&self) -> bool {
        self.store()
            || self.rollout == Rollout::Recreate
            || self.containers.iter().any(|c| c.local_database)
    }
}

/// The condition type prefix of an AWS load balancer readiness gate.
pub const READINESS_GATE_CONDITION: &str = "target-health.elbv2.k8s.aws/";

impl WorkloadInfo {
    /// The summary of a workload.
    pub fn of(workload: &Workload<'_>) -> Self {
        let (kind, meta) = workload.object.kind.meta();
        let containers = workload
            .containers
            .iter()
            .map(|c| ContainerInfo {
                name: c.spec.name.clone(),
                place: c.place,
                ports: c
                    .spec
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| (p.name.clone(), p.container_port))
                    .collect(),
                readiness: c.spec.readiness_probe.is_some(),
                pre_stop: pre_stop(c.spec).is_some(),
                pre_stop_without_delay: pre_stop(c.spec).and_then(hook_without_delay),
                drainit: match &c.drainit {
                    Reading::Drainit(s) if s.is_sidecar() => DrainitRole::Sidecar {
                        probed: c.spec.readiness_probe.is_some(),
                    },
                    Reading::Drainit(_) => DrainitRole::Wrapper,
                    _ => DrainitRole::None,
                },
                data_store: container::is_data_store(c.spec),
                local_database: c
                    .spec
                    .image
                    .as_deref()
                    .is_some_and(container::has_local_database),
                metrics_only: c
                    .spec
                    .image
                    .as_deref()
                    .is_some_and(container::is_metrics_only),
                idle: container::is_idle(c.spec),
            })
            .collect();
        WorkloadInfo {
            site: Site::of(workload.object),
            kind,
            name: meta.name.clone().unwrap_or_default(),
            namespace: workload.namespace.clone(),
            labels: Labels::of(&workload.labels),
            replicas: workload.replicas,
            min_replicas: None,
            rollout: workload.rollout.clone(),
            grace: workload.grace_period(),
            aws_gated: workload
                .pod
                .readiness_gates
                .iter()
                .flatten()
                .any(|g| g.condition_type.starts_with(READINESS_GATE_CONDITION)),
            claims_storage: workload.claims_storage,
            exporter: workload
                .labels
                .get("app.kubernetes.io/component")
                .is_some_and(|c| c == "exporter"),
            containers,
            api_use: ApiUse::of(workload),
        }
    }
}

/// A Service port: name, port and target.
#[derive(Debug)]
pub struct ServicePortInfo {
    /// `name`.
    pub name: Option<String>,
    /// `targetPort` (`port` when unset).
    pub target: IntOrString,
}

/// What the cross-object rules need of one Service.
#[derive(Debug)]
pub struct ServiceInfo {
    /// Where findings about it go.
    pub site: Site,
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its selector (`None`: no selector, endpoints managed by hand).
    pub selector: Option<Labels>,
    /// Its ports.
    pub ports: Vec<ServicePortInfo>,
    /// `type: LoadBalancer` or `NodePort`: reachable from outside the cluster.
    pub exposed: bool,
    /// Its AWS load balancer annotations.
    pub annotations: BTreeMap<String, String>,
}

/// What the cross-object rules need of one PodDisruptionBudget.
#[derive(Debug)]
pub struct PdbInfo {
    /// Where findings about it go.
    pub site: Site,
    /// Its namespace.
    pub namespace: String,
    /// Its selector (`None` selects nothing).
    pub selector: Option<Selector>,
    /// `maxUnavailable`.
    pub max_unavailable: Option<IntOrString>,
    /// `minAvailable`.
    pub min_available: Option<IntOrString>,
}

/// What the cross-object rules need of one Ingress.
#[derive(Debug)]
pub struct IngressInfo {
    /// Where findings about it go.
    pub site: Site,
    /// Its namespace.
    pub namespace: String,
    /// The Services it routes to.
    pub backends: Vec<String>,
    /// Its AWS load balancer annotations.
    pub annotations: BTreeMap<String, String>,
}

/// The annotations the load balancer rules read (the AWS Load Balancer
/// Controller's); the rest (Helm's, tools') are not kept.
fn load_balancer_annotations(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.annotations
        .iter()
        .flatten()
        .filter(|(k, _)| {
            k.starts_with("alb.ingress.kubernetes.io/") || k.contains("aws-load-balancer")
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// An autoscaler: (namespace, target kind, target name, minReplicas).
type AutoscalerInfo = (String, String, String, i32);

/// Everything the cross-object rules need, from one run's objects.
#[derive(Debug, Default)]
pub struct Cluster {
    /// Every pod template.
    pub workloads: Vec<WorkloadInfo>,
    /// Services.
    pub services: Vec<ServiceInfo>,
    /// PodDisruptionBudgets.
    pub pdbs: Vec<PdbInfo>,
    /// Ingresses.
    pub ingresses: Vec<IngressInfo>,
    /// Namespaces given: name → labels.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// What the RBAC objects grant drainit's API use.
    pub rbac: Rbac,
    autoscalers: Vec<AutoscalerInfo>,
    /// Per Service: the workloads it selects.
    service_workloads: Vec<Vec<usize>>,
    /// Per workload: the Services that select it.
    workload_services: Vec<Vec<usize>>,
    /// (namespace, name) → Service index.
    service_names: HashMap<(String, String), usize>,
    /// Services an Ingress among the inputs routes to.
    routed: HashSet<usize>,
    /// Per PodDisruptionBudget: the workloads it selects.
    pdb_workloads: Vec<Vec<usize>>,
    /// Per workload: the PodDisruptionBudgets that select it.
    workload_pdbs: Vec<Vec<usize>>,
}

impl Cluster {
    /// Keeps what the cross-object rules need of `object` (and of its pod
    /// template, `workload`).
    pub fn add(&mut self, object: &Object, workload: Option<&Workload<'_>>) {
        if let Some(workload) = workload {
            self.workloads.push(WorkloadInfo::of(workload));
            return;
        }
        match &object.kind {
            Kind::Service(s) => {
                let spec = s.spec.as_ref();
                self.services.push(ServiceInfo {
                    site: Site::of(object),
                    name: s.metadata.name.clone().unwrap_or_default(),
                    namespace: namespace_of(&s.metadata),
                    selector: spec
                        .and_then(|s| s.selector.as_ref())
                        .map(Labels::of)
                        .filter(|s| !s.is_empty()),
                    ports: spec
                        .iter()
                        .flat_map(|s| s.ports.iter().flatten())
                        .map(|p| ServicePortInfo {
                            name: p.name.clone(),
                            target: p.target_port.clone().unwrap_or(IntOrString::Int(p.port)),
                        })
                        .collect(),
                    exposed: spec
                        .and_then(|s| s.type_.as_deref())
                        .is_some_and(|t| t == "LoadBalancer" || t == "NodePort"),
                    annotations: load_balancer_annotations(&s.metadata),
                })
            }
            Kind::Pdb(p) => self.pdbs.push(PdbInfo {
                site: Site::of(object),
                namespace: namespace_of(&p.metadata),
                selector: p
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .map(Selector::of),
                max_unavailable: p.spec.as_ref().and_then(|s| s.max_unavailable.clone()),
                min_available: p.spec.as_ref().and_then(|s| s.min_available.clone()),
            }),
            Kind::Ingress(i) => {
                let spec = i.spec.as_ref();
                let backends = spec
                    .iter()
                    .flat_map(|s| s.rules.iter().flatten())
                    .flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter()))
                    .filter_map(|p| p.backend.service.as_ref().map(|s| s.name.clone()))
                    .chain(
                        spec.and_then(|s| s.default_backend.as_ref())
                            .and_then(|b| b.service.as_ref())
                            .map(|s| s.name.clone()),
                    )
                    .collect();
                self.ingresses.push(IngressInfo {
                    site: Site::of(object),
                    namespace: namespace_of(&i.metadata),
                    backends,
                    annotations: load_balancer_annotations(&i.metadata),
                })
            }
            Kind::Namespace(n) => {
                if let Some(name) = &n.metadata.name {
                    let labels = n.metadata.labels.clone().unwrap_or_default();
                    self.namespaces.insert(name.clone(), labels);
                }
            }
            Kind::Role(_)
            | Kind::ClusterRole(_)
            | Kind::RoleBinding(_)
            | Kind::ClusterRoleBinding(_) => self.rbac.add(object),
            Kind::Autoscaler(a) => self.autoscalers.push((
                namespace_of(&a.metadata),
                a.target_kind.clone(),
                a.target_name.clone(),
                a.min_replicas,
            )),
            _ => {}
        }
    }

    /// Links Services to the workloads they select and autoscalers to
    /// their targets; call once every object is added.
    pub fn link(&mut self) {
        let mut targets: HashMap<(&str, &str, &str), i32> = HashMap::new();
        for (namespace, kind, name, min) in &self.autoscalers {
            targets.insert((namespace, kind, name), *min);
        }
        for w in &mut self.workloads {
            if let Some(min) = targets.get(&(w.namespace.as_str(), w.kind, w.name.as_str())) {
                w.min_replicas = Some(*min);
            }
        }
        // Candidates by namespace and by (namespace, label, value): a
        // selector is matched against the workloads carrying one of its
        // pairs, not against every workload of the namespace.
        let mut by_namespace: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_label: HashMap<(String, String, String), Vec<usize>> = HashMap::new();
        for (index, w) in self.workloads.iter().enumerate() {
            by_namespace
                .entry(w.namespace.clone())
                .or_default()
                .push(index);
            for (k, v) in w.labels.iter() {
                by_label
                    .entry((w.namespace.clone(), k.to_string(), v.to_string()))
                    .or_default()
                    .push(index);
            }
        }
        let candidates = |namespace: &str, pair: Option<(&str, &str)>| -> Vec<usize> {
            match pair {
                Some((k, v)) => by_label
                    .get(&(namespace.to_string(), k.to_string(), v.to_string()))
                    .cloned()
                    .unwrap_or_default(),
                None => by_namespace.get(namespace).cloned().unwrap_or_default(),
            }
        };
        let mut workload_services = vec![Vec::new(); self.workloads.len()];
        let mut service_workloads = Vec::with_capacity(self.services.len());
        for (service_index, service) in self.services.iter().enumerate() {
            let selected: Vec<usize> = match &service.selector {
                Some(selector) => candidates(&service.namespace, selector.iter().next())
                    .into_iter()
                    .filter(|&w| selector.subset_of(&self.workloads[w].labels))
                    .collect(),
                None => Vec::new(),
            };
            for &w in &selected {
                workload_services[w].push(service_index);
            }
            service_workloads.push(selected);
            self.service_names.insert(
                (service.namespace.clone(), service.name.clone()),
                service_index,
            );
        }
        let mut workload_pdbs = vec![Vec::new(); self.workloads.len()];
        let mut pdb_workloads = Vec::with_capacity(self.pdbs.len());
        for (pdb_index, pdb) in self.pdbs.iter().enumerate() {
            let selected: Vec<usize> = match &pdb.selector {
                Some(selector) => candidates(&pdb.namespace, selector.required_pair())
                    .into_iter()
                    .filter(|&w| selector.selects(&self.workloads[w].labels))
                    .collect(),
                None => Vec::new(),
            };
            for &w in &selected {
                workload_pdbs[w].push(pdb_index);
            }
            pdb_workloads.push(selected);
        }
        self.service_workloads = service_workloads;
        self.workload_services = workload_services;
        self.pdb_workloads = pdb_workloads;
        self.workload_pdbs = workload_pdbs;
        let routed: HashSet<usize> = self
            .ingresses
            .iter()
            .flat_map(|i| self.ingress_services(i))
            .collect();
        self.routed = routed;
    }

    /// The workloads a Service's selector picks (by index into `workloads`).
    pub fn behind_service(&self, service: usize) -> &[usize] {
        self.service_workloads
            .get(service)
            .map_or(&[], Vec::as_slice)
    }

    /// The Services (indices into `services`) that select a workload.
    pub fn services_of(&self, workload: usize) -> &[usize] {
        self.workload_services
            .get(workload)
            .map_or(&[], Vec::as_slice)
    }

    /// The PodDisruptionBudgets (indices into `pdbs`) that select a workload's pods.
    pub fn pdbs_of(&self, workload: usize) -> &[usize] {
        self.workload_pdbs.get(workload).map_or(&[], Vec::as_slice)
    }

    /// The workloads (indices) a PodDisruptionBudget selects.
    pub fn guarded_by(&self, pdb: usize) -> &[usize] {
        self.pdb_workloads.get(pdb).map_or(&[], Vec::as_slice)
    }

    /// The Services (indices) an Ingress routes to, among the inputs.
    pub fn ingress_services(&self, ingress: &IngressInfo) -> Vec<usize> {
        let mut found: Vec<usize> = ingress
            .backends
            .iter()
            .filter_map(|name| {
                self.service_names
                    .get(&(ingress.namespace.clone(), name.clone()))
                    .copied()
            })
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    /// Whether an Ingress among the inputs routes to a Service (by index).
    pub fn routed_by_ingress(&self, service: usize) -> bool {
        self.routed.contains(&service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_as_the_api_server_matches() {
        let labels = Labels::of(&BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("tier".to_string(), "front".to_string()),
        ]));
        let selector = |json: serde_json::Value| {
            Selector::of(&serde_json::from_value::<LabelSelector>(json).expect("a selector"))
        };
        let table = [
            (serde_json::json!({}), true),
            (serde_json::json!({"matchLabels": {"app": "web"}}), true),
            (serde_json::json!({"matchLabels": {"app": "api"}}), false),
            (
                serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]}]}),
                true,
            ),
            (
                serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}),
                false,
            ),
            (
                serde_json::json!({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}),
                true,
            ),
            (
                serde_json::json!({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}),
                false,
            ),
        ];
        for (json, want) in table {
            assert_eq!(selector(json.clone()).selects(&labels), want, "{json}");
        }
        assert_eq!(labels.get("tier"), Some("front"));
        assert_eq!(labels.get("zone"), None);
    }
}
