//! The few fields drainit reads from the API's objects, and the one it
//! writes (a core/v1 Event), as plain JSON: no generated API types in the
//! PID-1 binary (see the commit that added this module for the figures).
//! Pure, so every shape the API can answer is a unit test.

use std::time::Duration;

use serde_json::{json, Value};

use crate::lifecycle::Deletion;

/// What drainit needs to know of its Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    /// `metadata.uid`, to tie Events to this pod and no namesake.
    pub uid: Option<String>,
    /// `spec.terminationGracePeriodSeconds`.
    pub termination_grace: Option<Duration>,
    /// `metadata.deletionTimestamp` with `deletionGracePeriodSeconds`.
    pub deletion: Deletion,
    /// `metadata.deletionTimestamp` as the API wrote it, for the log.
    pub deletion_timestamp: Option<String>,
}

/// Reads a Pod object; `Err` says what was wrong with it.
pub fn pod_facts(body: &[u8]) -> Result<PodFacts, String> {
    let pod: Value =
        serde_json::from_slice(body).map_err(|error| format!("not a JSON object: {error}"))?;
    if pod.get("kind").and_then(Value::as_str) != Some("Pod") {
        return Err("the answer is not a Pod".to_string());
    }
    let metadata = &pod["metadata"];
    let seconds = |value: &Value| value.as_u64().map(Duration::from_secs);
    let deletion_timestamp = metadata["deletionTimestamp"].as_str().map(str::to_string);
    // A graceful delete sets both fields together; a timestamp alone is
    // not a graceful deletion drainit can time anything by.
    let deletion = match (
        &deletion_timestamp,
        seconds(&metadata["deletionGracePeriodSeconds"]),
    ) {
        (Some(_), Some(grace)) => Deletion::Grace(grace),
        _ => Deletion::None,
    };
    Ok(PodFacts {
        uid: metadata["uid"].as_str().map(str::to_string),
        termination_grace: seconds(&pod["spec"]["terminationGracePeriodSeconds"]),
        deletion,
        deletion_timestamp,
    })
}

/// The `reason` and `message` of a `Status` object (the API's error
/// body), else the body's start.
pub fn status_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|status| status[name].as_str())
            .map(str::to_string)
    };
    match (field("reason"), field("message")) {
        (Some(reason), Some(message)) => format!("{reason}: {message}"),
        (None, Some(message)) => message,
        (Some(reason), None) => reason,
        (None, None) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// The pod an Event is about.
#[derive(Debug, Clone)]
pub struct PodRef {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`, once read.
    pub uid: Option<String>,
}

/// A core/v1 Event about `pod` (what `kubectl describe pod` lists), as
/// the body of a create. `now` is RFC 3339 UTC, `unique` makes its name
/// unique among this pod's Events.
pub fn event_body(
    pod: &PodRef,
    reason: &str,
    message: &str,
    warning: bool,
    now: &str,
    unique: u64,
) -> String {
    let body = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": format!("{}.drainit.{unique:x}", pod.name),
            "namespace": pod.namespace,
        },
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": pod.name,
            "namespace": pod.namespace,
            "uid": pod.uid,
        },
        "reason": reason,
        // The API refuses messages over 1 KiB.
        "message": truncate(message, 1024),
        "type": if warning { "Warning" } else { "Normal" },
        "source": { "component": "drainit" },
        "reportingComponent": "drainit",
        "reportingInstance": pod.name,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    body.to_string()
}

fn truncate(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_pod_has_its_grace_and_no_deletion() {
        let body = br#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-1","uid":"u-1"},
            "spec":{"terminationGracePeriodSeconds":45},"status":{"phase":"Running"}}"#;
        let facts = pod_facts(body).expect("a pod");
        assert_eq!(facts.termination_grace, Some(Duration::from_secs(45)));
        assert_eq!(facts.deletion, Deletion::None);
        assert_eq!(facts.uid.as_deref(), Some("u-1"));
    }

    #[test]
    fn a_graceful_delete_sets_the_deletion_grace() {
        let body = br#"{"kind":"Pod","metadata":{"name":"web-1",
            "deletionTimestamp":"2026-12-07T12:00:05Z","deletionGracePeriodSeconds":5},
            "spec":{"terminationGracePeriodSeconds":30}}"#;
        let facts = pod_facts(body).expect("a pod");
        assert_eq!(facts.deletion, Deletion::Grace(Duration::from_secs(5)));
        assert_eq!(
            facts.deletion_timestamp.as_deref(),
            Some("2026-12-07T12:00:05Z")
        );
    }

    #[test]
    fn other_answers_are_refused_with_a_reason() {
        assert!(pod_facts(b"<html>").is_err());
        assert!(pod_facts(br#"{"kind":"Status","code":403}"#).is_err());
        let forbidden = br#"{"kind":"Status","apiVersion":"v1","status":"Failure",
            "message":"pods \"web-1\" is forbidden: User \"system:serviceaccount:ns:default\" cannot get resource \"pods\"",
            "reason":"Forbidden","code":403}"#;
        let message = status_message(forbidden);
        assert!(
            message.starts_with("Forbidden: pods \"web-1\" is forbidden"),
            "{message}"
        );
        assert_eq!(status_message(b"oops"), "oops");
    }

    #[test]
    fn an_event_names_its_pod_and_stays_under_the_message_limit() {
        let pod = PodRef {
            namespace: "ns".into(),
            name: "web-1".into(),
            uid: Some("u-1".into()),
        };
        let long = "é".repeat(1000);
        let body = event_body(
            &pod,
            "DrainStarted",
            &long,
            false,
            "2026-12-07T12:00:00Z",
            255,
        );
        let event: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(event["metadata"]["name"], "web-1.drainit.ff");
        assert_eq!(event["involvedObject"]["uid"], "u-1");
        assert_eq!(event["involvedObject"]["kind"], "Pod");
        assert_eq!(event["type"], "Normal");
        assert!(event["message"].as_str().map_or(0, str::len) <= 1024);
    }
}
