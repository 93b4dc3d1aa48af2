//! Which rules count, and how much: `--disable`, `--enable`, `--severity`
//! and `--fail-on` on the command line, over the same keys in a
//! `.drainit-check.yaml` found in the repository.
//!
//! ```yaml
//! # .drainit-check.yaml
//! fail-on: warning
//! disable: [single-replica]
//! severity:
//!   no-pdb: info
//! ```
//!
//! The file is `--config FILE`, or the first `.drainit-check.yaml` from the
//! current directory up to the repository's root (the directory holding
//! `.git`). The command line wins over the file. A disabled rule still runs:
//! its findings are reported as suppressed in JSON and SARIF, not counted.
//! (Per-object exceptions are annotations, read in [`crate::inventory`].)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli::Args;
use crate::rules::{self, Finding, Severity, Suppression};

/// The config file's name.
pub const FILE_NAME: &str = ".drainit-check.yaml";

/// A configuration that can't be used: the checker exits 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: failed to read: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not the documented shape.
    #[error("{path}: {message}")]
    Invalid {
        /// The file, or `the command line`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The effective configuration.
#[derive(Debug)]
pub struct Config {
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// Disabled rule ids, and where each was disabled.
    pub disabled: BTreeMap<String, String>,
    /// Severity per rule id.
    pub severity: BTreeMap<String, Severity>,
    /// The lowest severity that fails the run.
    pub fail_on: Severity,
}

impl Config {
    /// The file (if any) and then the command line.
    pub fn load(args: &Args) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => Some(path.clone()),
            None if args.no_config => None,
            None => std::env::current_dir().ok().and_then(|d| find(&d)),
        };
        let mut config = Config {
            file: None,
            disabled: BTreeMap::new(),
            severity: BTreeMap::new(),
            fail_on: Severity::Error,
        };
        if let Some(path) = &file {
            config.read_file(path)?;
        }
        config.file = file;
        let cli = "the command line";
        for id in &args.disable {
            config.disabled.insert(known(id, cli)?, "--disable".into());
        }
        for id in &args.enable {
            config.disabled.remove(&known(id, cli)?);
        }
        for pair in &args.severity {
            let (id, level) = pair.split_once('=').ok_or_else(|| ConfigError::Invalid {
                path: cli.into(),
                message: format!("--severity {pair}: give RULE=SEVERITY (error, warning or info)"),
            })?;
            let level = Severity::parse(level).ok_or_else(|| ConfigError::Invalid {
                path: cli.into(),
                message: format!("--severity {pair}: the severity is error, warning or info"),
            })?;
            config.severity.insert(known(id, cli)?, level);
        }
        if let Some(fail_on) = args.fail_on {
            config.fail_on = fail_on;
        }
        Ok(config)
    }

    fn read_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let shown = path.display().to_string();
        let invalid = |message: String| ConfigError::Invalid {
            path: shown.clone(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let value: Value = serde_saphyr::from_str_with_options(&text, crate::yaml::options())
            .map_err(|e| invalid(format!("YAML does not parse: {e}")))?;
        let Value::Object(map) = value else {
            return if value.is_null() {
                Ok(())
            } else {
                Err(invalid("not a mapping".into()))
            };
        };
        let ids = |key: &str, v: &Value| -> Result<Vec<String>, ConfigError> {
            let items = v
                .as_array()
                .ok_or_else(|| invalid(format!("{key}: a list of rule ids")))?;
            items
                .iter()
                .map(|i| {
                    let id = i
                        .as_str()
                        .ok_or_else(|| invalid(format!("{key}: a list of rule ids")))?;
                    known(id, &shown)
                })
                .collect()
        };
        for (key, v) in &map {
            match key.as_str() {
                "disable" => {
                    for id in ids(key, v)? {
                        self.disabled.insert(id, shown.clone());
                    }
                }
                "enable" => {
                    for id in ids(key, v)? {
                        self.disabled.remove(&id);
                    }
                }
                "severity" => {
                    let levels = v
                        .as_object()
                        .ok_or_else(|| invalid("severity: a map of rule id to severity".into()))?;
                    for (id, level) in levels {
                        let level = level.as_str().and_then(Severity::parse).ok_or_else(|| {
                            invalid(format!("severity.{id}: error, warning or info"))
                        })?;
                        self.severity.insert(known(id, &shown)?, level);
                    }
                }
                "fail-on" => {
                    self.fail_on = v
                        .as_str()
                        .and_then(Severity::parse)
                        .ok_or_else(|| invalid("fail-on: error, warning or info".into()))?;
                }
                other => {
                    return Err(invalid(format!(
                        "unknown key {other:?} (the keys are disable, enable, severity, fail-on)"
                    )))
                }
            }
        }
        Ok(())
    }

    /// Sets each finding's severity and marks the findings of disabled rules.
    pub fn apply(&self, findings: &mut [Finding]) {
        for finding in findings {
            if let Some(level) = self.severity.get(finding.rule.id) {
                finding.severity = *level;
            }
            if finding.suppressed.is_none() {
                if let Some(place) = self.disabled.get(finding.rule.id) {
                    finding.suppressed =
                        Some(Suppression::Disabled(format!("disabled by {place}")));
                }
            }
        }
    }
}

/// The rule id, if the checker has such a rule.
fn known(id: &str, place: &str) -> Result<String, ConfigError> {
    match rules::rule(id.trim()) {
        Some(rule) => Ok(rule.id.to_string()),
        None => {
            let all: BTreeSet<&str> = rules::RULES.iter().map(|r| r.id).collect();
            Err(ConfigError::Invalid {
                path: place.into(),
                message: format!(
                    "no rule {id:?}; the rules are: {}",
                    all.into_iter().collect::<Vec<_>>().join(", ")
                ),
            })
        }
    }
}

/// The first `.drainit-check.yaml` from `dir` up to the repository's root.
pub fn find(dir: &Path) -> Option<PathBuf> {
    for ancestor in dir.ancestors() {
        let candidate = ancestor.join(FILE_NAME);
        if candidate.is_file() {
            return Some(candidate);
        }
        if ancestor.join(".git").exists() {
            return None;
        }
    }
    None
}
