//! Whether this pod still has an endpoint in its namespace's
//! EndpointSlices, kept from a list and the watch events after it. Pure:
//! the client feeds it the API's objects and lines.

use std::collections::HashMap;

use serde_json::Value;

/// One line of a watch stream, as far as drainit cares.
#[derive(Debug, PartialEq, Eq)]
pub enum WatchLine {
    /// A slice was added or changed.
    Upsert {
        /// The slice's name.
        slice: String,
        /// Whether it holds a serving endpoint of this pod.
        serving: bool,
        /// Its resourceVersion.
        version: Option<String>,
    },
    /// A slice was deleted.
    Deleted {
        /// The slice's name.
        slice: String,
        /// Its resourceVersion.
        version: Option<String>,
    },
    /// A bookmark: only a newer resourceVersion.
    Bookmark(Option<String>),
    /// 410 Gone (reason Expired or Gone): the version is too old; relist.
    Expired,
    /// Any other error, or a line that cannot be read.
    Other(String),
}

/// This pod's endpoints across the namespace's slices.
#[derive(Debug, Default)]
pub struct PodEndpoints {
    pod: String,
    /// Slice name → whether it holds a serving endpoint of this pod.
    serving_in: HashMap<String, bool>,
}

impl PodEndpoints {
    /// Tracks the endpoints of the pod named `pod`.
    pub fn new(pod: &str) -> PodEndpoints {
        PodEndpoints {
            pod: pod.to_string(),
            serving_in: HashMap::new(),
        }
    }

    /// Replaces everything with an `EndpointSliceList`; returns its
    /// resourceVersion, to watch from.
    pub fn relist(&mut self, list: &Value) -> Option<String> {
        self.serving_in.clear();
        for slice in list["items"].as_array().into_iter().flatten() {
            if let Some(name) = slice["metadata"]["name"].as_str() {
                let serving = self.serves(slice);
                self.serving_in.insert(name.to_string(), serving);
            }
        }
        list["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string)
    }

    /// Reads one line of the watch stream.
    pub fn read_line(&self, line: &[u8]) -> WatchLine {
        let Ok(event) = serde_json::from_slice::<Value>(line) else {
            return WatchLine::Other("a watch line that is not JSON".to_string());
        };
        let object = &event["object"];
        let version = object["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        let slice = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match event["type"].as_str() {
            Some("ADDED" | "MODIFIED") => WatchLine::Upsert {
                serving: self.serves(object),
                slice,
                version,
            },
            Some("DELETED") => WatchLine::Deleted { slice, version },
            Some("BOOKMARK") => WatchLine::Bookmark(version),
            Some("ERROR") if object["code"].as_u64() == Some(410) => WatchLine::Expired,
            Some("ERROR") => WatchLine::Other(
                object["message"]
                    .as_str()
                    .unwrap_or("watch error")
                    .to_string(),
            ),
            _ => WatchLine::Other("a watch line without a known type".to_string()),
        }
    }

    /// Applies a line; returns its resourceVersion if it carried one.
    pub fn apply(&mut self, line: WatchLine) -> Option<String> {
        match line {
            WatchLine::Upsert {
                slice,
                serving,
                version,
            } => {
                self.serving_in.insert(slice, serving);
                version
            }
            WatchLine::Deleted { slice, version } => {
                self.serving_in.remove(&slice);
                version
            }
            WatchLine::Bookmark(version) => version,
            WatchLine::Expired | WatchLine::Other(_) => None,
        }
    }

    /// Whether any slice still holds a serving endpoint of this pod.
    pub fn serving(&self) -> bool {
        self.serving_in.values().any(|serving| *serving)
    }

    /// Whether `slice` holds an endpoint of this pod that serves: present
    /// and `conditions.serving` not false (unset counts as serving, as the
    /// API reference says consumers should read it).
    fn serves(&self, slice: &Value) -> bool {
        slice["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|endpoint| {
                let target = &endpoint["targetRef"];
                target["kind"] == "Pod" && target["name"].as_str() == Some(self.pod.as_str())
            })
            .any(|endpoint| endpoint["conditions"]["serving"].as_bool() != Some(false))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn slice(name: &str, pods: &[(&str, Option<bool>)]) -> Value {
        let endpoints: Vec<Value> = pods
            .iter()
            .map(|(pod, serving)| {
                let mut conditions = json!({ "ready": serving.unwrap_or(true) });
                if let Some(serving) = serving {
                    conditions["serving"] = json!(serving);
                }
                json!({ "addresses": ["10.0.0.1"], "conditions": conditions,
                        "targetRef": { "kind": "Pod", "name": pod, "namespace": "shop" } })
            })
            .collect();
        json!({ "kind": "EndpointSlice", "metadata": { "name": name, "resourceVersion": "7" },
                "addressType": "IPv4", "endpoints": endpoints })
    }

    fn line(kind: &str, object: Value) -> Vec<u8> {
        json!({ "type": kind, "object": object })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn serving_until_every_slice_lets_go() {
        let mut pod = PodEndpoints::new("web-1");
        let list = json!({ "kind": "EndpointSliceList", "metadata": { "resourceVersion": "5" },
            "items": [slice("web-a", &[("web-1", None), ("web-2", None)]), slice("web-b", &[("web-1", Some(true))])] });
        assert_eq!(pod.relist(&list).as_deref(), Some("5"));
        assert!(pod.serving());
        let not_serving =
            pod.read_line(&line("MODIFIED", slice("web-a", &[("web-1", Some(false))])));
        assert_eq!(pod.apply(not_serving).as_deref(), Some("7"));
        assert!(pod.serving(), "web-b still serves it");
        let bookmark = pod.read_line(&line(
            "BOOKMARK",
            json!({ "kind": "EndpointSlice", "metadata": { "resourceVersion": "9" } }),
        ));
        assert_eq!(pod.apply(bookmark).as_deref(), Some("9"));
        let gone = pod.read_line(&line("DELETED", slice("web-b", &[("web-1", Some(true))])));
        pod.apply(gone);
        assert!(!pod.serving());
    }

    #[test]
    fn a_410_asks_for_a_relist_and_other_pods_do_not_count() {
        let pod = PodEndpoints::new("web-1");
        let expired = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "too old resource version: 5 (12)", "reason": "Expired", "code": 410 });
        assert_eq!(pod.read_line(&line("ERROR", expired)), WatchLine::Expired);
        assert!(matches!(pod.read_line(b"{"), WatchLine::Other(_)));
        let other = pod.read_line(&line("ADDED", slice("web-c", &[("web-2", None)])));
        assert!(matches!(other, WatchLine::Upsert { serving: false, .. }));
    }
}
