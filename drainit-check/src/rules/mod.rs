//! The rules: each one item of [`RULES`] (id, severity, a one-line summary
//! for the table in docs/drainit-check.md, the help text SARIF carries, and its check),
//! and the engine that runs them over a stream of objects.
//!
//! What a rule is lives in [`item`], which the rule modules import (they
//! never import this engine). Checks come in three shapes, by what they
//! read: one object ([`object`]), one container with its pod ([`pod`],
//! [`hooks`]), or the cross-object summary ([`traffic`], [`capacity`],
//! [`balancers`], [`kubernetes`]). Adding a rule
//! is adding its item to [`RULES`] and its check function; the engine,
//! the table in docs/drainit-check.md (a test compares it), the JSON/SARIF metadata and
//! the corpus test read the list.

pub mod balancers;
pub mod capacity;
pub mod hooks;
pub mod item;
pub mod kubernetes;
pub mod object;
pub mod pod;
pub mod traffic;

pub use item::{human, longest_delay, Check, Hit, Placed, RuleDef, Severity, MIN_APP_DRAIN};

use crate::cluster::Cluster;
use crate::inventory::{Site, Workload};
use crate::objects::Object;

/// Every rule, in the order of the table in docs/drainit-check.md.
pub static RULES: &[RuleDef] = &[
    hooks::GRACE_TOO_SHORT,
    pod::SHELL_SWALLOWS_SIGTERM,
    hooks::PRESTOP_NEEDS_SHELL,
    pod::LIVENESS_ON_READY,
    pod::DRAINIT_BUDGET,
    pod::DRAINIT_GRACE_MISMATCH,
    pod::DRAINIT_FLAGS,
    kubernetes::KUBERNETES_RBAC_MISSING,
    hooks::PRESTOP_NAMED_PORT,
    hooks::PRESTOP_MISSES_DRAINIT,
    capacity::PDB_BLOCKS_DRAIN,
    capacity::ROLLOUT_DROPS_CAPACITY,
    traffic::NO_READINESS_PROBE,
    traffic::NO_DRAIN,
    traffic::PRESTOP_NO_DELAY,
    capacity::NO_PDB,
    capacity::SINGLE_REPLICA,
    balancers::DEREGISTRATION_EXCEEDS_GRACE,
    balancers::ALB_IP_NO_READINESS_GATE,
    hooks::PRESTOP_OPEN,
    object::UNKNOWN_FIELD,
    object::OLD_API_VERSION,
];

/// The rule with this id.
pub fn rule(id: &str) -> Option<&'static RuleDef> {
    RULES.iter().find(|r| r.id == id)
}

/// Why a finding is not counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suppression {
    /// The rule is disabled (`--disable`, the config file): where.
    Disabled(String),
    /// The object's `ignore.drainit-check/RULE` annotation: its reason.
    Annotation(String),
}

/// One mistake found in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Which rule.
    pub rule: &'static RuleDef,
    /// Its severity (the rule's, lowered by the rule or set by the configuration).
    pub severity: Severity,
    /// The file (`-` for stdin).
    pub file: String,
    /// The first line of the object's document.
    pub line: usize,
    /// `Kind/name`.
    pub object: String,
    /// The container, when the finding is about one.
    pub container: Option<String>,
    /// What is wrong and how to fix it.
    pub message: String,
    /// Not counted, and why (still shown in JSON and SARIF).
    pub suppressed: Option<Suppression>,
}

impl Finding {
    fn new(rule: &'static RuleDef, site: &Site, container: Option<String>, hit: Hit) -> Self {
        let suppressed = site
            .ignores
            .iter()
            .find(|(id, reason)| id == rule.id && !reason.trim().is_empty())
            .map(|(_, reason)| Suppression::Annotation(reason.trim().to_string()));
        let mut message = hit.message;
        if site
            .ignores
            .iter()
            .any(|(id, reason)| id == rule.id && reason.trim().is_empty())
        {
            message.push_str(&format!(
                " (the annotation {}{} is not honoured without a reason: give one as its value)",
                crate::inventory::IGNORE_PREFIX,
                rule.id
            ));
        }
        Finding {
            rule,
            severity: hit.severity.unwrap_or(rule.severity),
            file: site.file.to_string(),
            line: site.line,
            object: site.name.clone(),
            container,
            message,
            suppressed,
        }
    }

    fn sort_key(&self) -> (&str, usize, &str, &Option<String>, &str, &str) {
        (
            &self.file,
            self.line,
            &self.object,
            &self.container,
            self.rule.id,
            &self.message,
        )
    }
}

/// Runs every rule over objects handed in one at a time; keeps only the
/// findings and the cross-object summary.
#[derive(Default)]
pub struct Checker {
    findings: Vec<Finding>,
    cluster: Cluster,
}

impl Checker {
    /// Checks one object and keeps what the cross-object rules need of it.
    pub fn add(&mut self, object: &Object) {
        let site = Site::of(object);
        let mut hits = Vec::new();
        for rule in RULES {
            if let Check::Object(check) = rule.check {
                check(object, &mut hits);
                self.place(rule, &site, None, &mut hits);
            }
        }
        let workload = Workload::of(object);
        if let Some(workload) = &workload {
            for container in &workload.containers {
                for rule in RULES {
                    if let Check::Container(check) = rule.check {
                        check(workload, container, &mut hits);
                        self.place(rule, &site, Some(&container.spec.name), &mut hits);
                    }
                }
            }
        }
        self.cluster.add(object, workload.as_ref());
    }

    fn place(
        &mut self,
        rule: &'static RuleDef,
        site: &Site,
        container: Option<&str>,
        hits: &mut Vec<Hit>,
    ) {
        for hit in hits.drain(..) {
            let finding = Finding::new(rule, site, container.map(str::to_string), hit);
            self.findings.push(finding);
        }
    }

    /// Runs the cross-object rules; the findings sorted by file, line, rule.
    pub fn finish(mut self) -> Vec<Finding> {
        self.cluster.link();
        let mut placed = Vec::new();
        for rule in RULES {
            if let Check::Cluster(check) = rule.check {
                check(&self.cluster, &mut placed);
                for p in placed.drain(..) {
                    self.findings
                        .push(Finding::new(rule, &p.site, p.container, p.hit));
                }
            }
        }
        let mut findings = self.findings;
        findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        findings.dedup_by(|a, b| a.sort_key() == b.sort_key());
        findings
    }
}

/// Runs every rule over objects already read.
pub fn check(objects: &[Object]) -> Vec<Finding> {
    let mut checker = Checker::default();
    for object in objects {
        checker.add(object);
    }
    checker.finish()
}

/// The rule table of docs/drainit-check.md, from [`RULES`] (a test keeps the doc equal to it).
pub fn markdown_table() -> String {
    let mut out = String::from("| id | severity | what |\n|---|---|---|\n");
    for rule in RULES {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            rule.id,
            rule.severity.name(),
            rule.summary
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every finding on one YAML text (the rule modules' tests filter it).
    pub(super) fn findings(yaml: &str) -> Vec<Finding> {
        let (objects, errors) = crate::input::parse_text("test.yaml", yaml);
        assert!(errors.is_empty(), "{errors:?}");
        check(&objects)
    }

    #[test]
    fn rule_ids_are_unique_and_annotation_safe() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
        for rule in RULES {
            assert!(rule.id.len() <= 63, "{}", rule.id);
            assert!(
                rule.id.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                rule.id
            );
            assert!(!rule.summary.contains('\n') && !rule.help.is_empty());
        }
    }

    #[test]
    fn the_budget_uses_drainits_grace_period_when_it_is_the_shorter() {
        let pod = |drainit_grace: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  \
                 terminationGracePeriodSeconds: 60\n  containers:\n    - name: app\n      \
                 image: x\n      command: [/drainit, --grace-period={drainit_grace}, \
                 --propagation-delay=18s, --, /app]\n"
            )
        };
        let short = findings(&pod("20s"));
        let rules: Vec<&str> = short.iter().map(|f| f.rule.id).collect();
        assert_eq!(
            rules,
            ["drainit-budget", "drainit-grace-mismatch"],
            "{short:?}"
        );
        assert!(
            short[0].message.contains("drainit's 20s --grace-period"),
            "{short:?}"
        );
        // The pod's 60s would fit: only the mismatch is left once drainit says 60s.
        assert!(findings(&pod("60s")).is_empty());
    }
}
