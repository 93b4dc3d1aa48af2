//! The checker's own command line (drainit's flags are read with `drainit::cli`).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::rules::Severity;

/// drainit-check: find the shutdown mistakes in Kubernetes manifests before they drop requests.
///
/// Reads multi-document YAML (files, directories searched for *.yaml and
/// *.yml, or - for stdin) into the Kubernetes API types and checks every
/// pod template against the rules of a clean shutdown: the timing budget,
/// PID 1, the preStop hook, the probes, PodDisruptionBudgets, rollouts and
/// load balancers. Settings come from .drainit-check.yaml (found from the
/// current directory up to the repository's root) and then the options
/// below; an object's annotation `ignore.drainit-check/RULE: "reason"`
/// ignores one rule there. Exit 0: nothing at or above --fail-on; 1:
/// findings at or above it; 2: input or configuration that can't be read.
#[derive(Debug, Parser)]
#[command(name = "drainit-check", version, about)]
pub struct Args {
    /// Manifests to check: files, directories, or - for stdin.
    #[arg(value_name = "PATH", required_unless_present = "rules")]
    pub paths: Vec<PathBuf>,

    /// How to print the findings.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// The lowest severity that makes the exit status 1 [default: error, or the config file's].
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<Severity>,

    /// Rules not to count (their findings show as suppressed in JSON and SARIF).
    #[arg(long, value_name = "RULE[,RULE]", value_delimiter = ',')]
    pub disable: Vec<String>,

    /// Rules to count again after the config file disabled them.
    #[arg(long, value_name = "RULE[,RULE]", value_delimiter = ',')]
    pub enable: Vec<String>,

    /// A rule's severity instead of its own (repeatable).
    #[arg(long, value_name = "RULE=SEVERITY")]
    pub severity: Vec<String>,

    /// The config file [default: the first .drainit-check.yaml up to the repository's root].
    #[arg(long, value_name = "FILE", conflicts_with = "no_config")]
    pub config: Option<PathBuf>,

    /// Read no config file.
    #[arg(long)]
    pub no_config: bool,

    /// Print the rules as a Markdown table (id, severity, what) and exit.
    #[arg(long)]
    pub rules: bool,
}

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per finding: `file:line: Kind/name container: severity rule: message`.
    Text,
    /// A JSON array of finding objects (suppressed ones included, marked).
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`), shown as annotations.
    Github,
    /// SARIF 2.1.0 (GitHub code scanning, most CI dashboards), with each rule's help.
    Sarif,
}
