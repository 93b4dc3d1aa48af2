//! One object arranged for the rules while it is checked: a [`Workload`]
//! borrows its pod template and containers (with the drainit settings each
//! runs with), a [`Site`] says where findings about it go and which rules
//! its annotations ignore. What outlives the object is in
//! [`crate::cluster`].

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::drainit_flags::{self, Reading};
use crate::objects::{Kind, Object};
use drainit::settings::AdminListen;

/// Kubernetes' default `terminationGracePeriodSeconds`.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

/// The annotation prefix that ignores a rule on one object:
/// `ignore.drainit-check/RULE: "the reason"`.
pub const IGNORE_PREFIX: &str = "ignore.drainit-check/";

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
    /// A plain init container (runs to completion before the app; never sent SIGTERM).
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

/// Where a finding is reported: the object, its place in the input, and the
/// rules its annotations ignore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The file (`-` for stdin).
    pub file: Rc<str>,
    /// The first line of the object's document.
    pub line: usize,
    /// `Kind/name`.
    pub name: String,
    /// (rule id, reason) of each `ignore.drainit-check/RULE` annotation.
    pub ignores: Vec<(String, String)>,
}

impl Site {
    /// The site of an object.
    pub fn of(object: &Object) -> Self {
        let (_, meta) = object.kind.meta();
        let ignores = meta
            .annotations
            .iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.strip_prefix(IGNORE_PREFIX)?.to_string(), v.clone())))
            .collect();
        Site {
            file: object.file.clone(),
            line: object.line,
            name: object.display_name(),
            ignores,
        }
    }
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
    /// Whether the pods keep state in a PersistentVolumeClaim.
    pub claims_storage: bool,
}

impl Workload<'_> {
    /// `terminationGracePeriodSeconds` (Kubernetes' default when unset).
    pub fn grace_period(&self) -> Duration {
        grace_period(self.pod)
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

    /// drainit's admin ports in this pod.
    pub fn admin_ports(&self) -> Vec<u16> {
        self.drainits().filter_map(|(_, s)| admin_port(s)).collect()
    }
}

fn grace_period(pod: &PodSpec) -> Duration {
    let seconds = pod
        .termination_grace_period_seconds
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// drainit's admin port, unless `--admin-listen off`.
pub fn admin_port(settings: &drainit_flags::DrainitSettings) -> Option<u16> {
    match settings.cli.settings.admin_listen {
        AdminListen::Off => None,
        AdminListen::At(addr) => Some(addr.port()),
    }
}

/// The namespace an object lives in (`default` when unset).
pub fn namespace_of(meta: &ObjectMeta) -> String {
    meta.namespace.clone().unwrap_or_else(|| "default".into())
}

impl<'a> Workload<'a> {
    /// The pod template of a workload object (`None` for other kinds).
    pub fn of(object: &'a Object) -> Option<Self> {
        let deployment_rollout = |strategy: Option<
            &k8s_openapi::api::apps::v1::DeploymentStrategy,
        >| match strategy.and_then(|s| s.type_.as_deref()) {
            Some("Recreate") => Rollout::Recreate,
            _ => Rollout::Rolling {
                max_unavailable: strategy
                    .and_then(|s| s.rolling_update.as_ref())
                    .and_then(|r| r.max_unavailable.clone()),
            },
        };
        let mut claims_storage = false;
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
                claims_storage = s
                    .spec
                    .volume_claim_templates
                    .as_ref()
                    .is_some_and(|v| !v.is_empty());
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
                let pod = p.spec.as_ref()?;
                return Some(Self::new(
                    object,
                    &p.metadata,
                    p.metadata.labels.clone().unwrap_or_default(),
                    pod,
                    (None, Rollout::Other),
                    false,
                ));
            }
            _ => return None,
        };
        let labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let pod = template.spec.as_ref()?;
        Some(Self::new(
            object,
            meta,
            labels,
            pod,
            (replicas, rollout),
            claims_storage,
        ))
    }

    fn new(
        object: &'a Object,
        meta: &ObjectMeta,
        labels: BTreeMap<String, String>,
        pod: &'a PodSpec,
        (replicas, rollout): (Option<i32>, Rollout),
        claims_storage: bool,
    ) -> Self {
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
        let claims_volume = pod
            .volumes
            .iter()
            .flatten()
            .any(|v| v.persistent_volume_claim.is_some());
        Workload {
            object,
            namespace: namespace_of(meta),
            labels,
            pod,
            replicas,
            rollout,
            containers,
            claims_storage: claims_storage || claims_volume,
        }
    }
}
