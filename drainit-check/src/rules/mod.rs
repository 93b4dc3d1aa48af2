//! The rules: one id, one severity and one sentence each (the README's rule
//! table says the same), and the findings they produce.
//!
//! [`pod`] holds the rules that look at one pod template ([`hooks`] its
//! preStop hook's), [`traffic`] the ones that need the Services,
//! PodDisruptionBudgets, Ingresses and Namespaces around it.

pub mod hooks;
pub mod pod;
pub mod traffic;

use std::time::Duration;

use clap::ValueEnum;
use drainit::cli::Settings;

use crate::input::Object;
use crate::inventory::Inventory;

/// How bad a finding is; `--fail-on` picks the lowest that fails the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Likely to drop requests in some situations.
    Warning,
    /// Drops requests (or hangs drains) as written.
    Error,
}

impl Severity {
    /// The lowercase name used in every output format.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Every rule the checker knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// A preStop sleep (plus drainit's delay) leaves the app no time.
    GraceTooShort,
    /// PID 1 is a shell running the app as its child.
    ShellSwallowsSigterm,
    /// An exec preStop needs a shell or `sleep` the image lacks.
    PrestopNeedsShell,
    /// Liveness equal to readiness, or on drainit's `/ready`.
    LivenessOnReady,
    /// drainit's delay + kill margin does not fit the grace period.
    DrainitBudget,
    /// drainit's `--grace-period` is not the pod's.
    DrainitGraceMismatch,
    /// drainit would refuse (or ignore) the settings it is given.
    DrainitFlags,
    /// A preStop httpGet names a port its own container lacks.
    PrestopNamedPort,
    /// A preStop httpGet reaches drainit's admin port but not its `/prestop` (path, token).
    PrestopMissesDrainit,
    /// A PodDisruptionBudget that allows no eviction.
    PdbBlocksDrain,
    /// A rollout that can take every replica down.
    RolloutDropsCapacity,
    /// A serving container without a readiness probe.
    NoReadinessProbe,
    /// A serving container with no preStop and no drainit.
    NoDrain,
    /// No PodDisruptionBudget for a replicated workload.
    NoPdb,
    /// One replica behind a Service.
    SingleReplica,
    /// A target group's deregistration delay outlives the pod.
    DeregistrationExceedsGrace,
    /// An ALB/NLB in IP mode without pod readiness gates.
    AlbIpNoReadinessGate,
    /// drainit's `/prestop` has neither an allow-list nor a token.
    PrestopOpen,
    /// A field the API type does not know (misspelt or misplaced).
    UnknownField,
}

impl Rule {
    /// Every rule, in the order of the README's table.
    pub const ALL: [Rule; 19] = [
        Rule::GraceTooShort,
        Rule::ShellSwallowsSigterm,
        Rule::PrestopNeedsShell,
        Rule::LivenessOnReady,
        Rule::DrainitBudget,
        Rule::DrainitGraceMismatch,
        Rule::DrainitFlags,
        Rule::PrestopNamedPort,
        Rule::PrestopMissesDrainit,
        Rule::PdbBlocksDrain,
        Rule::RolloutDropsCapacity,
        Rule::NoReadinessProbe,
        Rule::NoDrain,
        Rule::NoPdb,
        Rule::SingleReplica,
        Rule::DeregistrationExceedsGrace,
        Rule::AlbIpNoReadinessGate,
        Rule::PrestopOpen,
        Rule::UnknownField,
    ];

    /// The id printed in findings and used in the README.
    pub fn id(self) -> &'static str {
        match self {
            Rule::GraceTooShort => "grace-too-short",
            Rule::ShellSwallowsSigterm => "shell-swallows-sigterm",
            Rule::PrestopNeedsShell => "prestop-needs-shell",
            Rule::LivenessOnReady => "liveness-on-ready",
            Rule::DrainitBudget => "drainit-budget",
            Rule::DrainitGraceMismatch => "drainit-grace-mismatch",
            Rule::DrainitFlags => "drainit-flags",
            Rule::PrestopNamedPort => "prestop-named-port",
            Rule::PrestopMissesDrainit => "prestop-misses-drainit",
            Rule::PdbBlocksDrain => "pdb-blocks-drain",
            Rule::RolloutDropsCapacity => "rollout-drops-capacity",
            Rule::NoReadinessProbe => "no-readiness-probe",
            Rule::NoDrain => "no-drain",
            Rule::NoPdb => "no-pdb",
            Rule::SingleReplica => "single-replica",
            Rule::DeregistrationExceedsGrace => "deregistration-exceeds-grace",
            Rule::AlbIpNoReadinessGate => "alb-ip-no-readiness-gate",
            Rule::PrestopOpen => "prestop-open",
            Rule::UnknownField => "unknown-field",
        }
    }

    /// How bad a finding of this rule is.
    pub fn severity(self) -> Severity {
        match self {
            Rule::NoReadinessProbe
            | Rule::NoDrain
            | Rule::NoPdb
            | Rule::SingleReplica
            | Rule::DeregistrationExceedsGrace
            | Rule::AlbIpNoReadinessGate
            | Rule::PrestopOpen
            | Rule::UnknownField => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

/// One mistake found in one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Which rule.
    pub rule: Rule,
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
}

impl Finding {
    /// A finding about `object` (and `container`, if any).
    pub fn new(rule: Rule, object: &Object, container: Option<&str>, message: String) -> Self {
        Finding {
            rule,
            file: object.file.clone(),
            line: object.line,
            object: object.display_name(),
            container: container.map(str::to_string),
            message,
        }
    }
}

/// What the app must have left, at least, between the end of every delay
/// and the moment it is killed.
pub const MIN_APP_DRAIN: Duration = Duration::from_secs(5);

/// The longest drainit may keep the app serving after a drain starts: the
/// fixed `--propagation-delay`, or for `--propagation-delay auto` the
/// ceiling, `--propagation-delay-max` (drainit's own rule, shared).
pub fn longest_delay(settings: &Settings) -> Duration {
    settings.longest_delay()
}

/// `15s`, `1m 30s`: durations as findings print them.
pub fn human(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// Runs every rule over the objects; findings sorted by file, line, rule.
pub fn check(objects: &[Object]) -> Vec<Finding> {
    let inventory = Inventory::new(objects);
    let mut findings = Vec::new();
    for object in objects {
        if !object.unknown_fields.is_empty() {
            findings.push(Finding::new(
                Rule::UnknownField,
                object,
                None,
                format!(
                    "field(s) the API type does not know: {} (misspelt or misplaced: the API \
                     server refuses them or drops them, so the setting you meant is not in force)",
                    object.unknown_fields.join(", ")
                ),
            ));
        }
    }
    for workload in &inventory.workloads {
        pod::check(workload, &mut findings);
    }
    traffic::check(&inventory, &mut findings);
    findings.sort_by(|a, b| {
        (&a.file, a.line, &a.object, &a.container, a.rule, &a.message).cmp(&(
            &b.file,
            b.line,
            &b.object,
            &b.container,
            b.rule,
            &b.message,
        ))
    });
    findings.dedup();
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{parse_sources, Source};

    fn findings(yaml: &str) -> Vec<Finding> {
        let sources = [Source {
            name: "test.yaml".into(),
            text: yaml.into(),
        }];
        let (objects, errors) = parse_sources(&sources);
        assert!(errors.is_empty(), "{errors:?}");
        check(&objects)
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
        let rules: Vec<Rule> = short.iter().map(|f| f.rule).collect();
        assert_eq!(
            rules,
            [Rule::DrainitBudget, Rule::DrainitGraceMismatch],
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
