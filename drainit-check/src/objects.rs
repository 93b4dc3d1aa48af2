//! The Kubernetes objects the rules read, typed into k8s-openapi's API
//! types from a parsed YAML document, and the fields those types dropped.
//!
//! serde ignores a field the API type does not know; serialising the object
//! back and comparing with the document finds it, so a misspelt
//! `livenesProbe` is reported instead of passing unnoticed.
//!
//! Objects of older API versions (`extensions/v1beta1`, `apps/v1beta1`,
//! `policy/v1beta1`, …) are read as their current version, as the API
//! server converted them while it still served them, and the object says
//! what it was read as (the `old-api-version` rule reports it).
//! HorizontalPodAutoscalers of every version are read for the two fields
//! the rules need: the target and `minReplicas`.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::serde::{de::DeserializeOwned, Serialize};
use k8s_openapi::Resource;
use std::rc::Rc;

use serde_json::{json, Value};

use crate::yaml::{self, Document};

/// A HorizontalPodAutoscaler (any version): what scales, and its floor.
#[derive(Debug)]
pub struct Autoscaler {
    /// Its metadata.
    pub metadata: ObjectMeta,
    /// `scaleTargetRef.kind`.
    pub target_kind: String,
    /// `scaleTargetRef.name`.
    pub target_name: String,
    /// `minReplicas` (Kubernetes' default 1 when unset).
    pub min_replicas: i32,
}

/// A Kubernetes object the rules look at.
#[derive(Debug)]
pub enum Kind {
    /// apps/v1 Deployment.
    Deployment(Box<Deployment>),
    /// apps/v1 StatefulSet.
    StatefulSet(Box<StatefulSet>),
    /// apps/v1 DaemonSet.
    DaemonSet(Box<DaemonSet>),
    /// apps/v1 ReplicaSet.
    ReplicaSet(Box<ReplicaSet>),
    /// batch/v1 Job.
    Job(Box<Job>),
    /// batch/v1 CronJob.
    CronJob(Box<CronJob>),
    /// v1 Pod.
    Pod(Box<Pod>),
    /// v1 Service.
    Service(Box<Service>),
    /// policy/v1 PodDisruptionBudget.
    Pdb(Box<PodDisruptionBudget>),
    /// networking.k8s.io/v1 Ingress.
    Ingress(Box<Ingress>),
    /// v1 Namespace.
    Namespace(Box<Namespace>),
    /// autoscaling HorizontalPodAutoscaler (any version).
    Autoscaler(Box<Autoscaler>),
    /// rbac.authorization.k8s.io/v1 Role.
    Role(Box<Role>),
    /// rbac.authorization.k8s.io/v1 ClusterRole.
    ClusterRole(Box<ClusterRole>),
    /// rbac.authorization.k8s.io/v1 RoleBinding.
    RoleBinding(Box<RoleBinding>),
    /// rbac.authorization.k8s.io/v1 ClusterRoleBinding.
    ClusterRoleBinding(Box<ClusterRoleBinding>),
}

/// An object and where it was written.
#[derive(Debug)]
pub struct Object {
    /// The file (`-` for stdin), shared by every object of the file.
    pub file: Rc<str>,
    /// The first line of its document.
    pub line: usize,
    /// The typed object.
    pub kind: Kind,
    /// Fields the API type does not know (dropped on the way in).
    pub unknown_fields: Vec<String>,
    /// An older API version read as the current one: what was read, and how.
    pub read_as: Option<String>,
}

impl Kind {
    /// The object's kind name and metadata.
    pub fn meta(&self) -> (&'static str, &ObjectMeta) {
        match self {
            Kind::Deployment(o) => (Deployment::KIND, &o.metadata),
            Kind::StatefulSet(o) => (StatefulSet::KIND, &o.metadata),
            Kind::DaemonSet(o) => (DaemonSet::KIND, &o.metadata),
            Kind::ReplicaSet(o) => (ReplicaSet::KIND, &o.metadata),
            Kind::Job(o) => (Job::KIND, &o.metadata),
            Kind::CronJob(o) => (CronJob::KIND, &o.metadata),
            Kind::Pod(o) => (Pod::KIND, &o.metadata),
            Kind::Service(o) => (Service::KIND, &o.metadata),
            Kind::Pdb(o) => (PodDisruptionBudget::KIND, &o.metadata),
            Kind::Ingress(o) => (Ingress::KIND, &o.metadata),
            Kind::Namespace(o) => (Namespace::KIND, &o.metadata),
            Kind::Autoscaler(o) => ("HorizontalPodAutoscaler", &o.metadata),
            Kind::Role(o) => (Role::KIND, &o.metadata),
            Kind::ClusterRole(o) => (ClusterRole::KIND, &o.metadata),
            Kind::RoleBinding(o) => (RoleBinding::KIND, &o.metadata),
            Kind::ClusterRoleBinding(o) => (ClusterRoleBinding::KIND, &o.metadata),
        }
    }
}

impl Object {
    /// `Kind/name`, as findings name the object.
    pub fn display_name(&self) -> String {
        let (kind, meta) = self.kind.meta();
        format!("{kind}/{}", meta.name.as_deref().unwrap_or("<unnamed>"))
    }
}

/// An older API version that is read as a current one.
struct Legacy {
    api_version: &'static str,
    kind: &'static str,
    /// The version it is read as.
    current: &'static str,
    /// The Kubernetes release that stopped serving it.
    removed_in: &'static str,
}

const LEGACY: &[Legacy] = &[
    Legacy {
        api_version: "extensions/v1beta1",
        kind: "Deployment",
        current: "apps/v1",
        removed_in: "1.16",
    },
    Legacy {
        api_version: "apps/v1beta1",
        kind: "Deployment",
        current: "apps/v1",
        removed_in: "1.16",
    },
    Legacy {
        api_version: "apps/v1beta2",
        kind: "Deployment",
        current: "apps/v1",
        removed_in: "1.16",
    },
    Legacy {
        api_version: "apps/v1beta1",
        kind: "StatefulSet",
        current: "apps/v1",
        removed_in: "1.16",
    },
    Legacy {
        api_version: "apps/v1beta2",
        kind: "StatefulSet",
        current: "apps/v1",
        removed_in: "1.16",
    },
    Legacy {
        api_version: "extensions/v1beta1",
        kind: "DaemonSet",
        current: "apps/v1",
        removed_in: "1.16",
    },
    Legacy {
        api_version: "apps/v1beta2",
        kind: "DaemonSet",
        current: "apps/v1",
        removed_in: "1.16",
    },
    Legacy {
        api_version: "extensions/v1beta1",
        kind: "ReplicaSet",
        current: "apps/v1",
        removed_in: "1.16",
    },
    Legacy {
        api_version: "apps/v1beta2",
        kind: "ReplicaSet",
        current: "apps/v1",
        removed_in: "1.16",
    },
    Legacy {
        api_version: "extensions/v1beta1",
        kind: "Ingress",
        current: "networking.k8s.io/v1",
        removed_in: "1.22",
    },
    Legacy {
        api_version: "networking.k8s.io/v1beta1",
        kind: "Ingress",
        current: "networking.k8s.io/v1",
        removed_in: "1.22",
    },
    Legacy {
        api_version: "policy/v1beta1",
        kind: "PodDisruptionBudget",
        current: "policy/v1",
        removed_in: "1.25",
    },
    Legacy {
        api_version: "batch/v1beta1",
        kind: "CronJob",
        current: "batch/v1",
        removed_in: "1.25",
    },
    Legacy {
        api_version: "batch/v2alpha1",
        kind: "CronJob",
        current: "batch/v1",
        removed_in: "1.21",
    },
    Legacy {
        api_version: "autoscaling/v2beta1",
        kind: "HorizontalPodAutoscaler",
        current: "autoscaling/v2",
        removed_in: "1.25",
    },
    Legacy {
        api_version: "autoscaling/v2beta2",
        kind: "HorizontalPodAutoscaler",
        current: "autoscaling/v2",
        removed_in: "1.26",
    },
];

/// A typed object, and what an older API version was read as.
pub type Typed = (Kind, Option<String>);

/// `value` as the API type its apiVersion and kind name; `None` for a kind
/// the rules don't need. `in_list`: an item of a `kind: List`, whose line
/// can't be found by parsing its document again.
pub fn typed_object(
    value: &Value,
    doc: &Document,
    in_list: bool,
) -> Result<Option<Typed>, (usize, String)> {
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    let kind = value.get("kind").and_then(Value::as_str);
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        let what = if value.is_object() {
            "a document without apiVersion and kind is no Kubernetes object"
        } else {
            "a document that is not a mapping"
        };
        return Err((doc.content_line(), what.into()));
    };
    if kind == "HorizontalPodAutoscaler" && api_version.starts_with("autoscaling/") {
        let read_as = legacy(api_version, kind).map(|l| legacy_note(l, ""));
        return Ok(Some((
            Kind::Autoscaler(Box::new(autoscaler(value))),
            read_as,
        )));
    }
    if let Some(old) = legacy(api_version, kind) {
        let (converted, how) = convert(value, old);
        let read_as = legacy_note(old, how);
        // The document's lines no longer match the converted value.
        return Ok(
            typed_current(&converted, old.current, kind, doc, false)?.map(|k| (k, Some(read_as)))
        );
    }
    Ok(typed_current(value, api_version, kind, doc, !in_list)?.map(|k| (k, None)))
}

fn legacy(api_version: &str, kind: &str) -> Option<&'static Legacy> {
    LEGACY
        .iter()
        .find(|l| l.api_version == api_version && l.kind == kind)
}

fn legacy_note(old: &Legacy, how: &str) -> String {
    format!(
        "{} {} is no longer served since Kubernetes {}; read as {} {}{how}",
        old.api_version, old.kind, old.removed_in, old.current, old.kind
    )
}

/// The value as the current version, and what had to change beyond `apiVersion`.
fn convert(value: &Value, old: &Legacy) -> (Value, &'static str) {
    let mut value = value.clone();
    value["apiVersion"] = json!(old.current);
    let mut how = "";
    match old.kind {
        "Deployment" | "DaemonSet" | "ReplicaSet" => {
            let spec = &mut value["spec"];
            if spec.get("selector").is_none() {
                if let Some(labels) = spec.pointer("/template/metadata/labels").cloned() {
                    spec["selector"] = json!({ "matchLabels": labels });
                    how =
                        " (its selector taken from the pod template's labels, as that version did)";
                }
            }
            if let Some(spec) = spec.as_object_mut() {
                spec.remove("rollbackTo");
                spec.remove("templateGeneration");
            }
        }
        // policy/v1beta1: an empty selector selects no pod (policy/v1: every pod).
        "PodDisruptionBudget"
            if value
                .pointer("/spec/selector")
                .is_some_and(|s| s.as_object().is_some_and(|m| m.values().all(is_empty))) =>
        {
            if let Some(spec) = value["spec"].as_object_mut() {
                spec.remove("selector");
            }
            how = " (its empty selector selects no pod, as in policy/v1beta1)";
        }
        "Ingress" => convert_ingress(&mut value),
        _ => {}
    }
    (value, how)
}

/// `serviceName`/`servicePort` backends as `service: {name, port}`.
fn convert_ingress(value: &mut Value) {
    fn backend(b: &mut Value) {
        let name = b.get("serviceName").cloned();
        let port = b.get("servicePort").cloned();
        if let Some(name) = name {
            let port = match port {
                Some(Value::String(s)) => match s.parse::<i64>() {
                    Ok(n) => json!({ "number": n }),
                    Err(_) => json!({ "name": s }),
                },
                Some(Value::Number(n)) => json!({ "number": n }),
                _ => json!({}),
            };
            *b = json!({ "service": { "name": name, "port": port } });
        }
    }
    let Some(spec) = value.get_mut("spec") else {
        return;
    };
    if let Some(mut b) = spec.as_object_mut().and_then(|s| s.remove("backend")) {
        backend(&mut b);
        spec["defaultBackend"] = b;
    }
    if let Some(rules) = spec.get_mut("rules").and_then(Value::as_array_mut) {
        for rule in rules {
            let paths = rule
                .pointer_mut("/http/paths")
                .and_then(Value::as_array_mut);
            for path in paths.into_iter().flatten() {
                if let Some(b) = path.get_mut("backend") {
                    backend(b);
                }
                if path.get("pathType").is_none() {
                    path["pathType"] = json!("ImplementationSpecific");
                }
            }
        }
    }
}

/// An HPA of any version: its target and `minReplicas`.
fn autoscaler(value: &Value) -> Autoscaler {
    let text = |pointer: &str| {
        value
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let metadata = value
        .get("metadata")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default();
    Autoscaler {
        metadata,
        target_kind: text("/spec/scaleTargetRef/kind"),
        target_name: text("/spec/scaleTargetRef/name"),
        min_replicas: value
            .pointer("/spec/minReplicas")
            .and_then(Value::as_i64)
            .and_then(|n| i32::try_from(n).ok())
            .unwrap_or(1),
    }
}

fn typed_current(
    value: &Value,
    api_version: &str,
    kind: &str,
    doc: &Document,
    relocate: bool,
) -> Result<Option<Kind>, (usize, String)> {
    fn is<T: Resource>(api_version: &str, kind: &str) -> bool {
        api_version == T::API_VERSION && kind == T::KIND
    }
    let relocate = relocate.then_some(doc);
    let object = if is::<Deployment>(api_version, kind) {
        Kind::Deployment(typed(value, doc, relocate)?)
    } else if is::<StatefulSet>(api_version, kind) {
        Kind::StatefulSet(typed(value, doc, relocate)?)
    } else if is::<DaemonSet>(api_version, kind) {
        Kind::DaemonSet(typed(value, doc, relocate)?)
    } else if is::<ReplicaSet>(api_version, kind) {
        Kind::ReplicaSet(typed(value, doc, relocate)?)
    } else if is::<Job>(api_version, kind) {
        Kind::Job(typed(value, doc, relocate)?)
    } else if is::<CronJob>(api_version, kind) {
        Kind::CronJob(typed(value, doc, relocate)?)
    } else if is::<Pod>(api_version, kind) {
        Kind::Pod(typed(value, doc, relocate)?)
    } else if is::<Service>(api_version, kind) {
        Kind::Service(typed(value, doc, relocate)?)
    } else if is::<PodDisruptionBudget>(api_version, kind) {
        Kind::Pdb(typed(value, doc, relocate)?)
    } else if is::<Ingress>(api_version, kind) {
        Kind::Ingress(typed(value, doc, relocate)?)
    } else if is::<Namespace>(api_version, kind) {
        Kind::Namespace(typed(value, doc, relocate)?)
    } else if is::<Role>(api_version, kind) {
        Kind::Role(typed(value, doc, relocate)?)
    } else if is::<ClusterRole>(api_version, kind) {
        Kind::ClusterRole(typed(value, doc, relocate)?)
    } else if is::<RoleBinding>(api_version, kind) {
        Kind::RoleBinding(typed(value, doc, relocate)?)
    } else if is::<ClusterRoleBinding>(api_version, kind) {
        Kind::ClusterRoleBinding(typed(value, doc, relocate)?)
    } else {
        return Ok(None);
    };
    Ok(Some(object))
}

/// The value as `T`. On a type error the document is parsed again straight
/// from its YAML (`relocate`), which knows the line of the offending value.
fn typed<T: DeserializeOwned + Resource>(
    value: &Value,
    doc: &Document,
    relocate: Option<&Document>,
) -> Result<Box<T>, (usize, String)> {
    match T::deserialize(value) {
        Ok(object) => Ok(Box::new(object)),
        Err(json_error) => {
            let what = format!("not a valid {} {}", T::API_VERSION, T::KIND);
            let from_yaml = relocate
                .map(|doc| serde_saphyr::from_str_with_options::<T>(&doc.text, yaml::options()));
            match from_yaml {
                Some(Err(e)) => {
                    let (line, message) = yaml::locate(&e, doc);
                    Err((line, format!("{what}: {message}")))
                }
                // A List item, or a value only serde_json refuses.
                _ => Err((doc.content_line(), format!("{what}: {json_error}"))),
            }
        }
    }
}

/// The paths of `original` that the typed object no longer has.
pub fn unknown_fields(original: &Value, kind: &Kind) -> Vec<String> {
    let back = match kind {
        Kind::Deployment(o) => round_trip(o.as_ref()),
        Kind::StatefulSet(o) => round_trip(o.as_ref()),
        Kind::DaemonSet(o) => round_trip(o.as_ref()),
        Kind::ReplicaSet(o) => round_trip(o.as_ref()),
        Kind::Job(o) => round_trip(o.as_ref()),
        Kind::CronJob(o) => round_trip(o.as_ref()),
        Kind::Pod(o) => round_trip(o.as_ref()),
        Kind::Service(o) => round_trip(o.as_ref()),
        Kind::Pdb(o) => round_trip(o.as_ref()),
        Kind::Ingress(o) => round_trip(o.as_ref()),
        Kind::Namespace(o) => round_trip(o.as_ref()),
        Kind::Role(o) => round_trip(o.as_ref()),
        Kind::ClusterRole(o) => round_trip(o.as_ref()),
        Kind::RoleBinding(o) => round_trip(o.as_ref()),
        Kind::ClusterRoleBinding(o) => round_trip(o.as_ref()),
        // Read for two fields only; the rest is not the checker's to judge.
        Kind::Autoscaler(_) => None,
    };
    let mut lost = Vec::new();
    if let Some(back) = back {
        lost_fields(original, &back, "", &mut lost);
    }
    lost
}

fn round_trip<T: Serialize>(object: &T) -> Option<Value> {
    serde_json::to_value(object).ok()
}

/// Paths present in `original` that `round_tripped` does not have.
fn lost_fields(original: &Value, round_tripped: &Value, path: &str, lost: &mut Vec<String>) {
    match (original, round_tripped) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match b.get(key) {
                    Some(other) => lost_fields(value, other, &sub, lost),
                    // An explicit null, {} or [] and an absent field are the same thing.
                    None if is_empty(value) => {}
                    None => lost.push(sub),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                lost_fields(x, y, &format!("{path}[{i}]"), lost);
            }
        }
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.values().all(is_empty),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_fields_ignore_empty_values() {
        let original: Value = serde_json::json!({"a": {"b": 1, "c": null, "d": {}}, "e": 2});
        let back: Value = serde_json::json!({"a": {"b": 1}});
        let mut lost = Vec::new();
        lost_fields(&original, &back, "", &mut lost);
        assert_eq!(lost, ["e"]);
    }

    #[test]
    fn an_old_ingress_reads_as_networking_v1() {
        let old = serde_json::json!({
            "apiVersion": "extensions/v1beta1", "kind": "Ingress",
            "metadata": {"name": "web"},
            "spec": {"backend": {"serviceName": "web", "servicePort": 80},
                     "rules": [{"http": {"paths": [{"path": "/", "backend":
                        {"serviceName": "api", "servicePort": "http"}}]}}]}
        });
        let doc = Document {
            first_line: 1,
            text: String::new(),
        };
        let (kind, note) = typed_object(&old, &doc, false)
            .expect("reads")
            .expect("a kind the rules read");
        let Kind::Ingress(ingress) = kind else {
            panic!("an Ingress")
        };
        let spec = ingress.spec.expect("spec");
        let default = spec
            .default_backend
            .and_then(|b| b.service)
            .expect("default");
        assert_eq!(default.name, "web");
        let rules = spec.rules.expect("rules");
        let path = &rules[0].http.as_ref().expect("http").paths[0];
        let service = path.backend.service.as_ref().expect("service");
        assert_eq!(
            service.port.as_ref().and_then(|p| p.name.as_deref()),
            Some("http")
        );
        assert!(note
            .expect("a note")
            .contains("read as networking.k8s.io/v1 Ingress"));
    }
}
