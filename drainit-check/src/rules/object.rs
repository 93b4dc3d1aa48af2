//! The rules about one object as it was read: fields its API type does not
//! know, and API versions Kubernetes no longer serves.

use super::item::{Check, Hit, RuleDef, Severity};
use crate::objects::Object;

/// A field the API type does not know (misspelt or misplaced).
pub const UNKNOWN_FIELD: RuleDef = RuleDef {
    id: "unknown-field",
    severity: Severity::Warning,
    summary:
        "a field the API type does not know (`livenesProbe`): the setting meant is not in force",
    help: "serde drops a field the Kubernetes API type does not know; the API server refuses it \
           (strict field validation) or drops it, so the probe, hook or grace period you meant \
           is not in force. Fix the spelling or the indentation.",
    check: Check::Object(unknown_field),
};

fn unknown_field(object: &Object, hits: &mut Vec<Hit>) {
    if !object.unknown_fields.is_empty() {
        hits.push(Hit::new(format!(
            "field(s) the API type does not know: {} (misspelt or misplaced: the API \
             server refuses them or drops them, so the setting you meant is not in force)",
            object.unknown_fields.join(", ")
        )));
    }
}

/// An API version Kubernetes no longer serves, read as the current one.
pub const OLD_API_VERSION: RuleDef = RuleDef {
    id: "old-api-version",
    severity: Severity::Warning,
    summary: "an API version Kubernetes no longer serves (`extensions/v1beta1`, `apps/v1beta1`, `policy/v1beta1`, `autoscaling/v2beta2`, …): read as the current version, and the finding says so",
    help: "Current clusters refuse objects of removed API versions. drainit-check reads them as \
           the current version (as the API server converted them while it served them) so the \
           other rules still see the workload, its PodDisruptionBudget or its Ingress; the \
           finding names what was read. Move the manifest to the current apiVersion.",
    check: Check::Object(old_api_version),
};

fn old_api_version(object: &Object, hits: &mut Vec<Hit>) {
    if let Some(read_as) = &object.read_as {
        hits.push(Hit::new(format!(
            "{read_as}: the cluster refuses this apiVersion; move the manifest to the current one"
        )));
    }
}
