//! What the run's RBAC objects grant drainit's Kubernetes API use, kept
//! small: per Role and ClusterRole only which of drainit's four requests
//! it allows (a byte), per binding only its role and the subjects a
//! service account can be. The `kubernetes-rbac-missing` rule asks it
//! what a pod's service account may do in its namespace.

use std::collections::HashMap;

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};

use crate::inventory::namespace_of;
use crate::objects::{Kind, Object};

/// `GET /api/v1/namespaces/NS/pods/NAME`: the pod's grace and its deletion's.
pub const PODS_GET: u8 = 1;
/// `GET /apis/discovery.k8s.io/v1/namespaces/NS/endpointslices`.
pub const SLICES_LIST: u8 = 2;
/// The same with `watch=true`.
pub const SLICES_WATCH: u8 = 4;
/// `POST /api/v1/namespaces/NS/events` (core/v1 Events).
pub const EVENTS_CREATE: u8 = 8;
/// Every request drainit makes.
pub const ALL: u8 = PODS_GET | SLICES_LIST | SLICES_WATCH | EVENTS_CREATE;

/// drainit's requests as a Role's rules name them, for findings.
pub const REQUESTS: &[(u8, &str)] = &[
    (PODS_GET, "get pods"),
    (SLICES_LIST, "list endpointslices (discovery.k8s.io)"),
    (SLICES_WATCH, "watch endpointslices (discovery.k8s.io)"),
    (EVENTS_CREATE, "create events (core group \"\")"),
];

/// Which of drainit's requests a role's rules allow.
fn grants(rules: Option<&Vec<PolicyRule>>) -> u8 {
    let has = |list: &Option<Vec<String>>, want: &str| {
        list.iter().flatten().any(|x| x == want || x == "*")
    };
    let mut granted = 0;
    for rule in rules.into_iter().flatten() {
        let verbs = |want: &str| rule.verbs.iter().any(|v| v == want || v == "*");
        let allows = |group: &str, resource: &str, verb: &str| {
            has(&rule.api_groups, group) && has(&rule.resources, resource) && verbs(verb)
        };
        // resourceNames narrow a rule; kept as granting: silence over a wrong finding.
        if allows("", "pods", "get") {
            granted |= PODS_GET;
        }
        if allows("discovery.k8s.io", "endpointslices", "list") {
            granted |= SLICES_LIST;
        }
        if allows("discovery.k8s.io", "endpointslices", "watch") {
            granted |= SLICES_WATCH;
        }
        // drainit posts core/v1 Events: events.k8s.io rules do not cover that path.
        if allows("", "events", "create") {
            granted |= EVENTS_CREATE;
        }
    }
    granted
}

/// A binding, reduced to its role and the subjects that can be a service account.
#[derive(Debug)]
struct Binding {
    /// The RoleBinding's namespace; `None` for a ClusterRoleBinding.
    namespace: Option<Box<str>>,
    /// `roleRef.kind` is ClusterRole.
    cluster_role: bool,
    /// `roleRef.name`.
    role: Box<str>,
    /// Users (`system:serviceaccount:NS:NAME`) and groups that hold service accounts.
    subjects: Box<[(bool, Box<str>)]>,
}

/// The RBAC objects of one run, as drainit's requests see them.
#[derive(Debug, Default)]
pub struct Rbac {
    /// (namespace, name) → what the Role grants.
    roles: HashMap<(Box<str>, Box<str>), u8>,
    /// name → what the ClusterRole grants.
    cluster_roles: HashMap<Box<str>, u8>,
    bindings: Vec<Binding>,
}

impl Rbac {
    /// Keeps what an RBAC object grants; other objects are not its business.
    pub fn add(&mut self, object: &Object) {
        match &object.kind {
            Kind::Role(r) => {
                let key = (namespace_of(&r.metadata).into(), name(&r.metadata.name));
                self.roles.insert(key, grants(r.rules.as_ref()));
            }
            Kind::ClusterRole(r) => {
                // An aggregated ClusterRole's rules are filled in by the cluster.
                let granted = if r.aggregation_rule.is_some() {
                    ALL
                } else {
                    grants(r.rules.as_ref())
                };
                self.cluster_roles.insert(name(&r.metadata.name), granted);
            }
            Kind::RoleBinding(b) => {
                let namespace = namespace_of(&b.metadata);
                let subjects = subjects(b.subjects.as_ref(), &namespace);
                self.bind(Some(namespace.into()), &b.role_ref, subjects);
            }
            Kind::ClusterRoleBinding(b) => {
                let subjects = subjects(b.subjects.as_ref(), "");
                self.bind(None, &b.role_ref, subjects);
            }
            _ => {}
        }
    }

    fn bind(
        &mut self,
        namespace: Option<Box<str>>,
        role: &RoleRef,
        subjects: Box<[(bool, Box<str>)]>,
    ) {
        if subjects.is_empty() {
            return;
        }
        self.bindings.push(Binding {
            namespace,
            cluster_role: role.kind == "ClusterRole",
            role: role.name.as_str().into(),
            subjects,
        });
    }

    /// Whether the run binds anything in `namespace` (a RoleBinding there,
    /// or a ClusterRoleBinding): only then is its RBAC judged; without,
    /// the grants may well live in another repository.
    pub fn binds_in(&self, namespace: &str) -> bool {
        self.bindings
            .iter()
            .any(|b| b.namespace.as_deref().is_none_or(|n| n == namespace))
    }

    /// Which of drainit's requests the bindings of the run allow the
    /// service account `account` of `namespace`. A role the run does not
    /// hold (`edit`, one made elsewhere) counts as granting everything.
    pub fn granted(&self, namespace: &str, account: &str) -> u8 {
        let user = format!("system:serviceaccount:{namespace}:{account}");
        let group = format!("system:serviceaccounts:{namespace}");
        let mut granted = 0;
        for binding in &self.bindings {
            if binding.namespace.as_deref().is_some_and(|n| n != namespace) {
                continue;
            }
            let applies = binding.subjects.iter().any(|(is_group, name)| {
                if *is_group {
                    [
                        group.as_str(),
                        "system:serviceaccounts",
                        "system:authenticated",
                    ]
                    .contains(&name.as_ref())
                } else {
                    name.as_ref() == user
                }
            });
            if !applies {
                continue;
            }
            let role = if binding.cluster_role {
                self.cluster_roles.get(&binding.role).copied()
            } else {
                self.roles
                    .get(&(namespace.into(), binding.role.clone()))
                    .copied()
            };
            granted |= role.unwrap_or(ALL);
        }
        granted
    }
}

fn name(name: &Option<String>) -> Box<str> {
    name.as_deref().unwrap_or_default().into()
}

/// The subjects that can be a service account: each as a user name or a
/// group (`true`). A ServiceAccount subject without a namespace is in the
/// RoleBinding's (the authorizer's rule).
fn subjects(subjects: Option<&Vec<Subject>>, binding_namespace: &str) -> Box<[(bool, Box<str>)]> {
    subjects
        .into_iter()
        .flatten()
        .filter_map(|s| match s.kind.as_str() {
            "ServiceAccount" => {
                let namespace = s
                    .namespace
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .unwrap_or(binding_namespace);
                Some((
                    false,
                    format!("system:serviceaccount:{namespace}:{}", s.name).into(),
                ))
            }
            "User" if s.name.starts_with("system:serviceaccount:") => {
                Some((false, s.name.as_str().into()))
            }
            "Group"
                if s.name.starts_with("system:serviceaccounts")
                    || s.name == "system:authenticated" =>
            {
                Some((true, s.name.as_str().into()))
            }
            _ => None,
        })
        .collect()
}
