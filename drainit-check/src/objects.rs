//! The Kubernetes objects the rules read, typed into k8s-openapi's API
//! types from a parsed YAML document, and the fields those types dropped.
//!
//! serde ignores a field the API type does not know; serialising the object
//! back and comparing with the document finds it, so a misspelt
//! `livenesProbe` is reported instead of passing unnoticed.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::serde::{de::DeserializeOwned, Serialize};
use k8s_openapi::Resource;
use serde_json::Value;

use crate::input::{locate, yaml_options, Document};

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
}

/// An object and where it was written.
#[derive(Debug)]
pub struct Object {
    /// The file (`-` for stdin).
    pub file: String,
    /// The first line of its document.
    pub line: usize,
    /// The typed object.
    pub kind: Kind,
    /// Fields the API type does not know (dropped on the way in).
    pub unknown_fields: Vec<String>,
}

impl Object {
    /// `Kind/name`, as findings name the object.
    pub fn display_name(&self) -> String {
        let (kind, meta) = match &self.kind {
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
        };
        format!("{kind}/{}", meta.name.as_deref().unwrap_or("<unnamed>"))
    }
}

/// `value` as the API type its apiVersion and kind name; `None` for a kind
/// the rules don't need. `in_list`: an item of a `kind: List`, whose line
/// can't be found by parsing its document again.
pub(crate) fn typed_object(
    value: &Value,
    doc: &Document,
    in_list: bool,
) -> Result<Option<Kind>, (usize, String)> {
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    let kind = value.get("kind").and_then(Value::as_str);
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        if value.is_object() {
            return Err((
                doc.content_line(),
                "a document without apiVersion and kind is no Kubernetes object".into(),
            ));
        }
        return Err((
            doc.content_line(),
            "a document that is not a mapping".into(),
        ));
    };
    fn is<T: Resource>(api_version: &str, kind: &str) -> bool {
        api_version == T::API_VERSION && kind == T::KIND
    }
    let relocate = (!in_list).then_some(doc);
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
                .map(|doc| serde_saphyr::from_str_with_options::<T>(&doc.text, yaml_options()));
            match from_yaml {
                Some(Err(e)) => {
                    let (line, message) = locate(&e, doc);
                    Err((line, format!("{what}: {message}")))
                }
                // A List item, or a value only serde_json refuses.
                _ => Err((doc.content_line(), format!("{what}: {json_error}"))),
            }
        }
    }
}

/// The paths of `original` that the typed object no longer has.
pub(crate) fn unknown_fields(original: &Value, kind: &Kind) -> Vec<String> {
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
}
