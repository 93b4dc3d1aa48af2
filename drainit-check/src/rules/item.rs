//! What a rule is: its id, severity, texts and check ([`RuleDef`]), the
//! severities, and the hits a check returns. The leaf every rule module and
//! the engine share; it imports no rule.

use std::time::Duration;

use clap::ValueEnum;
use drainit::cli::Settings;

use crate::cluster::Cluster;
use crate::inventory::{PodContainer, Site, Workload};
use crate::objects::Object;

/// How bad a finding is; `--fail-on` picks the lowest that fails the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
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

    /// The severity a name gives (`error`, `warning`, `info`).
    pub fn parse(name: &str) -> Option<Self> {
        [Severity::Info, Severity::Warning, Severity::Error]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// A rule's finding before the engine places it: what is wrong, and a
/// severity lower than the rule's where the manifest cannot tell for sure.
#[derive(Debug, Clone)]
pub struct Hit {
    /// What is wrong and how to fix it.
    pub message: String,
    /// The severity for this finding, when not the rule's.
    pub severity: Option<Severity>,
}

impl Hit {
    /// A hit at the rule's severity.
    pub fn new(message: impl Into<String>) -> Self {
        Hit {
            message: message.into(),
            severity: None,
        }
    }

    /// The same hit at `severity`.
    pub fn at(mut self, severity: Severity) -> Self {
        self.severity = Some(severity);
        self
    }
}

/// A cross-object rule's hit with the object (and container) it is about.
#[derive(Debug)]
pub struct Placed {
    /// The object.
    pub site: Site,
    /// The container, when the finding is about one.
    pub container: Option<String>,
    /// The hit.
    pub hit: Hit,
}

/// What a rule reads, and its check.
#[derive(Clone, Copy)]
pub enum Check {
    /// One object as read.
    Object(fn(&Object, &mut Vec<Hit>)),
    /// One container (main, native sidecar or init) of a pod template.
    Container(fn(&Workload<'_>, &PodContainer<'_>, &mut Vec<Hit>)),
    /// The summary of every object, once all are read.
    Cluster(fn(&Cluster, &mut Vec<Placed>)),
}

/// One rule.
pub struct RuleDef {
    /// The id printed in findings, used by `--disable` and annotations.
    pub id: &'static str,
    /// Its default severity.
    pub severity: Severity,
    /// One line: what it finds (the last column of the table in docs/drainit-check.md).
    pub summary: &'static str,
    /// Why it matters and how to fix it (SARIF's rule help).
    pub help: &'static str,
    /// Its check.
    pub check: Check,
}

impl std::fmt::Debug for RuleDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id)
    }
}

impl PartialEq for RuleDef {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for RuleDef {}

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
