//! The objects of one run, arranged for the rules: each workload's pod
//! template with its containers (and the drainit settings each one runs
//! with), and which Services, PodDisruptionBudgets and Ingresses select it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, PodSpec, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::drainit_flags::{self, Reading};
use crate::input::{Kind, Object};

/// Kubernetes' default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// How a workload replaces its pods.
#[derive(Debug, Clone, PartialEq)]
pub enum Rollout {
    /// Deployment `Recreate`: every old pod goes before a new one starts.
    Recreate,
    /// A rolling update with at most this many pods unavailable (absent: the kind's default).
    Rolling {
        /// `maxUnavailable` as written.
        max_unavailable: Option<IntOrString>,
    },
    /// Not replaced by a rollout the rules judge (DaemonSet, Job, Pod, OnDelete).
    Other,
}

/// Where a container runs in the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// In `containers`.
    Main,
    /// In `initContainers` with `restartPolicy: Always`.
    NativeSidecar,
    /// A plain init container (runs to completion before the app).
    Init,
}

/// One container of a pod template.
#[derive(Debug)]
pub struct PodContainer<'a> {
    /// Its spec.
    pub spec: &'a Container,
    /// Where it runs.
    pub place: Place,
    /// drainit in it, if any.
    pub drainit: Reading,
}

/// A pod template and the object that owns it.
#[derive(Debug)]
pub struct Workload<'a> {
    /// The owning object (file, line, `Kind/name`).
    pub object: &'a Object,
    /// Its namespace (`default` when unset).
    pub namespace: String,
    /// The pod template's labels.
    pub labels: BTreeMap<String, String>,
    /// The pod spec.
    pub pod: &'a PodSpec,
    /// Replicas of a replicated kind (Deployment, StatefulSet, ReplicaSet); `None` otherwise.
    pub replicas: Option<i32>,
    /// How pods are replaced.
    pub rollout: Rollout,
    /// Every container, init containers first.
    pub containers: Vec<PodContainer<'a>>,
}

impl Workload<'_> {
    /// `terminationGracePeriodSeconds` (Kubernetes' default when unset).
    pub fn grace_period(&self) -> Duration {
        let seconds = self
            .pod
            .termination_grace_period_seconds
            .unwrap_or(DEFAULT_GRACE_SECONDS);
        Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
    }

    /// The drainit containers: (container, its settings).
    pub fn drainits(
        &self,
    ) -> impl Iterator<Item = (&PodContainer<'_>, &drainit_flags::DrainitSettings)> {
        self.containers.iter().filter_map(|c| match &c.drainit {
            Reading::Drainit(settings) => Some((c, settings.as_ref())),
            _ => None,
        })
    }
}

/// Everything the cross-object rules need, from one run's objects.
pub struct Inventory<'a> {
    /// Every pod template.
    pub workloads: Vec<Workload<'a>>,
    /// Services.
    pub services: Vec<(&'a Object, &'a Service)>,
    /// PodDisruptionBudgets.
    pub pdbs: Vec<(&'a Object, &'a PodDisruptionBudget)>,
    /// Ingresses.
    pub ingresses: Vec<(&'a Object, &'a Ingress)>,
    /// Namespaces given: name → labels.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Per Service: the workloads it selects.
    service_workloads: Vec<Vec<usize>>,
    /// Per workload: the Services that select it.
    workload_services: Vec<Vec<usize>>,
}

/// The namespace an object lives in (`default` when unset).
pub fn namespace_of(meta: &ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_else(|| "default".into())
}

impl<'a> Inventory<'a> {
    /// Sorts the objects into workloads and the objects that select them.
    pub fn new(objects: &'a [Object]) -> Self {
        let mut inventory = Inventory {
            workloads: Vec::new(),
            services: Vec::new(),
            pdbs: Vec::new(),
            ingresses: Vec::new(),
            namespaces: BTreeMap::new(),
            service_workloads: Vec::new(),
            workload_services: Vec::new(),
        };
        for object in objects {
            match &object.kind {
                Kind::Service(s) => inventory.services.push((object, s)),
                Kind::Pdb(p) => inventory.pdbs.push((object, p)),
                Kind::Ingress(i) => inventory.ingresses.push((object, i)),
                Kind::Namespace(n) => {
                    if let Some(name) = &n.metadata.name {
                        let labels = n.metadata.labels.clone().unwrap_or_default();
                        inventory.namespaces.insert(name.clone(), labels);
                    }
                }
                _ => inventory.workloads.extend(workload(object)),
            }
        }
        inventory.link_services();
        inventory
    }

    /// Matches every Service's selector against the workloads of its namespace.
    fn link_services(&mut self) {
        let mut by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, w) in self.workloads.iter().enumerate() {
            by_namespace
                .entry(w.namespace.as_str())
                .or_default()
                .push(index);
        }
        let mut workload_services = vec![Vec::new(); self.workloads.len()];
        let mut service_workloads = Vec::with_capacity(self.services.len());
        for (service_index, (_, service)) in self.services.iter().enumerate() {
            let namespace = namespace_of(&service.metadata);
            let selector = service.spec.as_ref().and_then(|s| s.selector.as_ref());
            let selected: Vec<usize> = match (selector, by_namespace.get(namespace.as_str())) {
                // An empty selector selects nothing: its endpoints are managed by hand.
                (Some(selector), Some(candidates)) if !selector.is_empty() => candidates
                    .iter()
                    .copied()
                    .filter(|&w| {
                        let labels = &self.workloads[w].labels;
                        selector.iter().all(|(k, v)| labels.get(k) == Some(v))
                    })
                    .collect(),
                _ => Vec::new(),
            };
            for &w in &selected {
                workload_services[w].push(service_index);
            }
            service_workloads.push(selected);
        }
        self.service_workloads = service_workloads;
        self.workload_services = workload_services;
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

    /// The PodDisruptionBudgets that select a workload's pods.
    pub fn pdbs_of(&self, workload: &Workload<'_>) -> Vec<&'a PodDisruptionBudget> {
        self.pdbs
            .iter()
            .map(|(_, p)| *p)
            .filter(|p| namespace_of(&p.metadata) == workload.namespace)
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|s| selects(s, &workload.labels))
            })
            .collect()
    }

    /// The Services (indices) an Ingress routes to, among the inputs.
    pub fn ingress_services(&self, ingress: &Ingress) -> Vec<usize> {
        let namespace = namespace_of(&ingress.metadata);
        let spec = ingress.spec.as_ref();
        let names: Vec<&str> = spec
            .iter()
            .flat_map(|s| s.rules.iter().flatten())
            .flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter()))
            .filter_map(|p| p.backend.service.as_ref().map(|s| s.name.as_str()))
            .chain(
                spec.and_then(|s| s.default_backend.as_ref())
                    .and_then(|b| b.service.as_ref())
                    .map(|s| s.name.as_str()),
            )
            .collect();
        self.services
            .iter()
            .enumerate()
            .filter(|(_, (_, s))| namespace_of(&s.metadata) == namespace)
            .filter(|(_, (_, s))| {
                s.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| names.contains(&n))
            })
            .map(|(index, _)| index)
            .collect()
    }
}

/// Whether a label selector (policy/v1 semantics: `{}` selects every pod) matches.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

fn workload(object: &Object) -> Option<Workload<'_>> {
    let deployment_rollout =
        |strategy: Option<&k8s_openapi::api::apps::v1::DeploymentStrategy>| match strategy
            .and_then(|s| s.type_.as_deref())
        {
            Some("Recreate") => Rollout::Recreate,
            _ => Rollout::Rolling {
                max_unavailable: strategy
                    .and_then(|s| s.rolling_update.as_ref())
                    .and_then(|r| r.max_unavailable.clone()),
            },
        };
    let (meta, template, replicas, rollout) = match &object.kind {
        Kind::Deployment(d) => (
            &d.metadata,
            &d.spec.template,
            Some(d.spec.replicas.unwrap_or(1)),
            deployment_rollout(d.spec.strategy.as_ref()),
        ),
        Kind::StatefulSet(s) => {
            let strategy = s.spec.update_strategy.as_ref();
            let rollout = match strategy.and_then(|u| u.type_.as_deref()) {
                Some("OnDelete") => Rollout::Other,
                _ => Rollout::Rolling {
                    max_unavailable: strategy
                        .and_then(|u| u.rolling_update.as_ref())
                        .and_then(|r| r.max_unavailable.clone()),
                },
            };
            (
                &s.metadata,
                &s.spec.template,
                Some(s.spec.replicas.unwrap_or(1)),
                rollout,
            )
        }
        Kind::ReplicaSet(r) => (
            &r.metadata,
            r.spec.template.as_ref()?,
            Some(r.spec.replicas.unwrap_or(1)),
            Rollout::Other,
        ),
        Kind::DaemonSet(d) => (&d.metadata, &d.spec.template, None, Rollout::Other),
        Kind::Job(j) => (
            &j.metadata,
            &j.spec.as_ref()?.template,
            None,
            Rollout::Other,
        ),
        Kind::CronJob(c) => (
            &c.metadata,
            &c.spec.job_template.spec.as_ref()?.template,
            None,
            Rollout::Other,
        ),
        Kind::Pod(p) => {
            return Some(new_workload(
                object,
                &p.metadata,
                p.metadata.labels.clone().unwrap_or_default(),
                p.spec.as_ref()?,
                None,
                Rollout::Other,
            ))
        }
        _ => return None,
    };
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    Some(new_workload(
        object,
        meta,
        labels,
        template.spec.as_ref()?,
        replicas,
        rollout,
    ))
}

fn new_workload<'a>(
    object: &'a Object,
    meta: &ObjectMeta,
    labels: BTreeMap<String, String>,
    pod: &'a PodSpec,
    replicas: Option<i32>,
    rollout: Rollout,
) -> Workload<'a> {
    let init = pod.init_containers.iter().flatten().map(|c| {
        let place = if c.restart_policy.as_deref() == Some("Always") {
            Place::NativeSidecar
        } else {
            Place::Init
        };
        (c, place)
    });
    let main = pod.containers.iter().map(|c| (c, Place::Main));
    let containers = init
        .chain(main)
        .map(|(spec, place)| PodContainer {
            spec,
            place,
            drainit: match place {
                Place::Init => Reading::NotDrainit,
                _ => drainit_flags::read(spec),
            },
        })
        .collect();
    Workload {
        object,
        namespace: namespace_of(meta),
        labels,
        pod,
        replicas,
        rollout,
        containers,
    }
}
