//! Reading manifests: files, directories or stdin, multi-document YAML (and
//! `kind: List`, as `kubectl get -o yaml` writes it) into the real Kubernetes
//! API types (k8s-openapi).
//!
//! Each document is parsed on its own (split at `---` lines, which YAML only
//! allows at the start of a line), so a broken document is reported with
//! its file and line and the others are still checked. Kinds the rules don't
//! need are skipped. A field the API type does not know is dropped by serde
//! without a word; serialising the object back and comparing finds it, so a
//! misspelt `livenesProbe` is reported instead of passing unnoticed.

use std::io::Read;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::serde::{de::DeserializeOwned, Serialize};
use k8s_openapi::Resource;
use serde_json::Value;

/// Input that can't be checked: the checker exits 2.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A path that could not be read.
    #[error("{path}: failed to read: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Broken YAML, or a document whose fields have the wrong types.
    #[error("{file}:{line}: {message}")]
    Parse {
        /// The file (`-` for stdin).
        file: String,
        /// 1-based line of the problem (the document's first line when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// One manifest's text and the name it is reported under.
pub struct Source {
    /// The path, or `-` for stdin.
    pub name: String,
    /// The whole text.
    pub text: String,
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

/// Reads every path: a file, a directory (its `*.yaml` and `*.yml`, sorted,
/// recursively) or `-` for stdin.
pub fn read_sources(paths: &[PathBuf]) -> (Vec<Source>, Vec<InputError>) {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => sources.push(Source {
                    name: "-".into(),
                    text,
                }),
                Err(source) => errors.push(InputError::Read {
                    path: "-".into(),
                    source,
                }),
            }
        } else {
            read_path(path, &mut sources, &mut errors);
        }
    }
    (sources, errors)
}

fn read_path(path: &Path, sources: &mut Vec<Source>, errors: &mut Vec<InputError>) {
    let failed = |source| InputError::Read {
        path: path.display().to_string(),
        source,
    };
    if path.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => return errors.push(failed(e)),
        };
        // (path, is a real directory): a symlinked directory is not entered,
        // so a link loop cannot recurse forever.
        let mut children: Vec<(PathBuf, bool)> = entries
            .filter_map(|e| e.ok())
            .map(|e| (e.path(), e.file_type().is_ok_and(|t| t.is_dir())))
            .collect();
        children.sort();
        for (child, is_dir) in children {
            let is_yaml = child
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml");
            if is_dir || (is_yaml && !child.is_dir()) {
                read_path(&child, sources, errors);
            }
        }
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => sources.push(Source {
            name: path.display().to_string(),
            text,
        }),
        Err(e) => errors.push(failed(e)),
    }
}

/// One YAML document: its text and the file line its first line is on.
struct Document {
    first_line: usize,
    text: String,
}

impl Document {
    /// The file line of its first line that is neither blank nor a comment
    /// (where the object starts, for findings).
    fn content_line(&self) -> usize {
        let offset = self
            .text
            .lines()
            .position(|l| {
                let l = l.trim();
                !l.is_empty() && !l.starts_with('#') && l != "---"
            })
            .unwrap_or(0);
        self.first_line + offset
    }

    /// The text of a file line inside this document.
    fn line_text(&self, file_line: usize) -> Option<&str> {
        let index = file_line.checked_sub(self.first_line)?;
        self.text.lines().nth(index).map(str::trim)
    }
}

/// Splits a stream at its `---` (start) and `...` (end) markers. Directive
/// lines (`%YAML`) are blanked; line numbers inside each document stay
/// those of the file.
fn documents(text: &str) -> Vec<Document> {
    let marker = |line: &str, m: &str| {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
    };
    let mut docs = Vec::new();
    let mut current = Document {
        first_line: 1,
        text: String::new(),
    };
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if marker(line, "---") || marker(line, "...") {
            docs.push(std::mem::replace(
                &mut current,
                Document {
                    first_line: number,
                    text: String::new(),
                },
            ));
            // Content after `--- ` (e.g. `--- # comment`, `--- {…}`) stays in the document.
            if let Some(rest) = line.strip_prefix("---") {
                current.text.push_str("   ");
                current.text.push_str(rest);
            }
            current.text.push('\n');
        } else if line.starts_with('%') {
            current.text.push('\n');
        } else {
            current.text.push_str(line);
            current.text.push('\n');
        }
    }
    docs.push(current);
    docs.retain(|doc| {
        doc.text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

/// Options for every YAML parse: plain messages (the file and line are ours).
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! { with_snippet: false }
}

/// A saphyr error as (file line, message without its own location).
fn locate(error: &serde_saphyr::Error, doc: &Document) -> (usize, String) {
    let line = error
        .location()
        .and_then(|l| usize::try_from(l.line()).ok())
        .filter(|l| *l > 0)
        .map_or(doc.first_line, |l| doc.first_line + l - 1);
    let mut message = plain_message(&error.to_string());
    if let Some(text) = doc.line_text(line).filter(|t| !t.is_empty()) {
        message.push_str(&format!(" (in `{text}`)"));
    }
    (line, message)
}

/// Drops a trailing " at line N column M" that saphyr adds: we print our own.
fn plain_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    match first.rfind(" at line ") {
        Some(at) => first[..at].to_string(),
        None => first.to_string(),
    }
}

/// Parses every document of every source; unknown kinds are skipped.
pub fn parse_sources(sources: &[Source]) -> (Vec<Object>, Vec<InputError>) {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for source in sources {
        for doc in documents(&source.text) {
            let parse_error = |line, message| InputError::Parse {
                file: source.name.clone(),
                line,
                message,
            };
            let value: Value = match serde_saphyr::from_str_with_options(&doc.text, yaml_options())
            {
                Ok(value) => value,
                Err(e) => {
                    let (line, message) = locate(&e, &doc);
                    errors.push(parse_error(line, format!("YAML does not parse: {message}")));
                    continue;
                }
            };
            let items = match list_items(&value) {
                Some(items) => items.iter().collect(),
                None => vec![&value],
            };
            let in_list = list_items(&value).is_some();
            for (index, item) in items.into_iter().enumerate() {
                match typed_object(item, &doc, in_list) {
                    Ok(Some(kind)) => objects.push(Object {
                        file: source.name.clone(),
                        line: doc.content_line(),
                        unknown_fields: unknown_fields(item, &kind),
                        kind,
                    }),
                    Ok(None) => {}
                    Err((line, message)) if in_list => {
                        errors.push(parse_error(line, format!("items[{index}]: {message}")))
                    }
                    Err((line, message)) => errors.push(parse_error(line, message)),
                }
            }
        }
    }
    (objects, errors)
}

/// The items of a `kind: List` (what `kubectl get -o yaml` prints).
fn list_items(value: &Value) -> Option<&Vec<Value>> {
    let kind = value.get("kind").and_then(Value::as_str)?;
    if kind != "List" {
        return None;
    }
    value.get("items").and_then(Value::as_array)
}

/// `value` as the API type its apiVersion and kind name; `None` for a kind
/// the rules don't need. `in_list`: an item of a `kind: List`, whose line
/// can't be found by parsing its document again.
fn typed_object(
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

fn unknown_fields(original: &Value, kind: &Kind) -> Vec<String> {
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
    fn documents_keep_file_line_numbers() {
        let docs = documents("a: 1\n---\nb: 2\n--- # c\nc: 3\n...\n---\n# only a comment\n");
        let firsts: Vec<usize> = docs.iter().map(|d| d.first_line).collect();
        assert_eq!(firsts, [1, 2, 4]);
        assert_eq!(docs[1].text.lines().nth(1), Some("b: 2"));
    }

    #[test]
    fn a_marker_needs_a_line_of_its_own() {
        let docs = documents("a: |\n  ---x\n----\n");
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn lost_fields_ignore_empty_values() {
        let original: Value = serde_json::json!({"a": {"b": 1, "c": null, "d": {}}, "e": 2});
        let back: Value = serde_json::json!({"a": {"b": 1}});
        let mut lost = Vec::new();
        lost_fields(&original, &back, "", &mut lost);
        assert_eq!(lost, ["e"]);
    }
}
