//! The rule about drainit's optional Kubernetes API use: a drainit with
//! `--kubernetes auto` whose pod's service account the run's RBAC does not
//! let read its Pod, watch EndpointSlices and create Events, or whose pod
//! mounts no token at all.

use super::item::{Check, Hit, Placed, RuleDef, Severity};
use crate::cluster::{ApiUse, Cluster, WorkloadInfo};
use crate::rbac::{self, REQUESTS};

/// drainit uses the API, and the run's RBAC or the pod's token denies it.
pub const KUBERNETES_RBAC_MISSING: RuleDef = RuleDef {
    id: "kubernetes-rbac-missing",
    severity: Severity::Warning,
    summary: "a drainit with `--kubernetes auto` whose service account the inputs' RoleBindings do not grant drainit's Role (get pods, list/watch endpointslices, create events; judged only when the inputs bind roles in its namespace), or whose pod mounts no token (info)",
    help: "With the kubernetes feature drainit reads its own Pod (the grace period, a deletion's \
           shorter grace), watches its namespace's EndpointSlices (when the endpoint is removed) \
           and creates an Event per drain. Refused, it warns once and behaves as without the \
           API. Bind the Role of examples/kubernetes/rbac.yaml to the pod's serviceAccountName, \
           or set --kubernetes off (DRAINIT_KUBERNETES=off) where the API is not wanted. Roles \
           the inputs do not hold count as granting; inputs that bind nothing in the namespace \
           are not judged.",
    check: Check::Cluster(kubernetes_rbac_missing),
};

fn kubernetes_rbac_missing(cluster: &Cluster, placed: &mut Vec<Placed>) {
    for workload in &cluster.workloads {
        let Some(api) = &workload.api_use else {
            continue;
        };
        if api.no_token {
            let hit = Hit::new(
                "drainit's --kubernetes is auto but the pod mounts no service account token \
                 (automountServiceAccountToken: false): a drainit built with the kubernetes \
                 feature warns once at start and goes on without the API (its grace period not learned from the pod, a deletion's \
                 shorter grace not obeyed, no endpoint evidence, no Events); set --kubernetes off \
                 if that is meant",
            )
            .at(Severity::Info);
            placed.push(at(workload, api, hit));
            continue;
        }
        if !cluster.rbac.binds_in(&workload.namespace) {
            continue;
        }
        let missing = rbac::ALL
            & !cluster
                .rbac
                .granted(&workload.namespace, &api.service_account);
        if missing == 0 {
            continue;
        }
        let names: Vec<&str> = REQUESTS
            .iter()
            .filter(|(bit, _)| missing & bit != 0)
            .map(|(_, name)| *name)
            .collect();
        let consequence = if missing & rbac::PODS_GET != 0 {
            "it cannot read its own Pod, so it warns once and goes on without the API: the \
             grace period is not learned, a deletion's shorter grace is not obeyed, no \
             endpoint evidence, no Events"
                .to_string()
        } else {
            let mut lost = Vec::new();
            if missing & (rbac::SLICES_LIST | rbac::SLICES_WATCH) != 0 {
                lost.push(
                    "the endpoint's removal is not seen (nor awaited by --propagation-delay auto)",
                );
            }
            if missing & rbac::EVENTS_CREATE != 0 {
                lost.push("no Event per drain");
            }
            format!(
                "it warns and goes on without that part: {}",
                lost.join("; ")
            )
        };
        let hit = Hit::new(format!(
            "with --kubernetes auto a drainit built with the kubernetes feature uses the \
             Kubernetes API, but no binding among the inputs lets the service account {}/{} {}: \
             {consequence}; bind the Role of examples/kubernetes/rbac.yaml to it, or set \
             --kubernetes off",
            workload.namespace,
            api.service_account,
            names.join(", ")
        ));
        placed.push(at(workload, api, hit));
    }
}

fn at(workload: &WorkloadInfo, api: &ApiUse, hit: Hit) -> Placed {
    Placed {
        site: workload.site.clone(),
        container: Some(api.container.clone()),
        hit,
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::{Finding, Severity};

    fn findings(yaml: &str) -> Vec<Finding> {
        crate::rules::tests::findings(yaml)
            .into_iter()
            .filter(|f| f.rule.id == "kubernetes-rbac-missing")
            .collect()
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\n\
        spec:\n  serviceAccountName: web\n  containers:\n    - name: app\n      image: x\n      \
        command: [/drainit, --, /app]\n";

    fn binding(role_kind: &str, role: &str, subject: &str) -> String {
        format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: \
             {{name: b-{role}, namespace: shop}}\nroleRef: {{apiGroup: \
             rbac.authorization.k8s.io, kind: {role_kind}, name: {role}}}\nsubjects: [{subject}]\n"
        )
    }

    fn role(kind: &str, name: &str, rules: &str) -> String {
        format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\nmetadata: \
             {{name: {name}, namespace: shop}}\nrules: {rules}\n"
        )
    }

    const SA_WEB: &str = "{kind: ServiceAccount, name: web}";
    const DRAINIT_RULES: &str = "[{apiGroups: [''], resources: [pods], verbs: [get]}, \
        {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}, \
        {apiGroups: [''], resources: [events], verbs: [create]}]";

    #[test]
    fn silent_without_bindings_in_the_namespace_and_with_the_role_bound() {
        assert!(findings(POD).is_empty(), "no RBAC among the inputs");
        let other = role("Role", "drainit", DRAINIT_RULES).replace("shop", "elsewhere");
        assert!(
            findings(&format!("{POD}{other}")).is_empty(),
            "a Role alone binds nothing"
        );
        let bound = format!(
            "{POD}{}{}",
            role("Role", "drainit", DRAINIT_RULES),
            binding("Role", "drainit", SA_WEB)
        );
        assert!(findings(&bound).is_empty(), "{:?}", findings(&bound));
        // A role the inputs do not hold (edit, made elsewhere) counts as granting.
        let elsewhere = format!("{POD}{}", binding("ClusterRole", "edit", SA_WEB));
        assert!(findings(&elsewhere).is_empty());
        // Every service account of the namespace, by group; wildcards.
        let wide = format!(
            "{POD}{}{}",
            role(
                "ClusterRole",
                "all",
                "[{apiGroups: ['*'], resources: ['*'], verbs: ['*']}]"
            ),
            binding(
                "ClusterRole",
                "all",
                "{kind: Group, name: 'system:serviceaccounts:shop'}"
            )
        );
        assert!(findings(&wide).is_empty());
    }

    #[test]
    fn names_what_the_bound_roles_lack() {
        let app_role = role(
            "Role",
            "leader",
            "[{apiGroups: [coordination.k8s.io], resources: [leases], verbs: ['*']}]",
        );
        let unbound = format!("{POD}{app_role}{}", binding("Role", "leader", SA_WEB));
        let found = findings(&unbound);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::Warning);
        assert_eq!(found[0].container.as_deref(), Some("app"));
        assert!(
            found[0].message.contains("shop/web get pods")
                && found[0].message.contains("goes on without the API"),
            "{found:?}"
        );
        // drainit posts core/v1 Events: events.k8s.io does not cover them.
        let partial = DRAINIT_RULES.replace(
            "{apiGroups: [''], resources: [events]",
            "{apiGroups: [events.k8s.io], resources: [events]",
        );
        let yaml = format!(
            "{POD}{}{}",
            role("Role", "drainit", &partial),
            binding("Role", "drainit", SA_WEB)
        );
        let found = findings(&yaml);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].message.contains("create events")
                && found[0].message.contains("no Event per drain")
                && !found[0].message.contains("get pods"),
            "{found:?}"
        );
        // Bound to another account: the pod's own lacks everything.
        let other = format!(
            "{}{}{}",
            POD.replace("serviceAccountName: web", "serviceAccountName: api"),
            role("Role", "drainit", DRAINIT_RULES),
            binding("Role", "drainit", SA_WEB)
        );
        assert_eq!(findings(&other).len(), 1);
        // --kubernetes off: drainit never asks.
        let off = unbound.replace("[/drainit, --,", "[/drainit, --kubernetes=off, --,");
        assert!(findings(&off).is_empty());
    }

    #[test]
    fn a_pod_without_a_token_is_told_at_info() {
        let no_token = POD.replace(
            "serviceAccountName: web\n",
            "serviceAccountName: web\n  automountServiceAccountToken: false\n",
        );
        let found = findings(&no_token);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::Info);
        assert!(found[0]
            .message
            .contains("automountServiceAccountToken: false"));
        let off = no_token.replace("[/drainit, --,", "[/drainit, --kubernetes=off, --,");
        assert!(findings(&off).is_empty());
    }
}
