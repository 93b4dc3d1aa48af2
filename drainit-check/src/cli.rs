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
/// load balancers. Exit 0: nothing at or above --fail-on; 1: findings at or
/// above it; 2: input that can't be read or parsed.
#[derive(Debug, Parser)]
#[command(name = "drainit-check", version, about)]
pub struct Args {
    /// Manifests to check: files, directories, or - for stdin.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,

    /// How to print the findings.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// The lowest severity that makes the exit status 1.
    #[arg(long, value_enum, default_value = "error", value_name = "SEVERITY")]
    pub fail_on: Severity,
}

/// The output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per finding: `file:line: Kind/name container: severity rule: message`.
    Text,
    /// A JSON array of finding objects.
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`), shown as annotations.
    Github,
}
