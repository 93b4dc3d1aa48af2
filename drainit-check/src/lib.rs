//! drainit-check: finds the shutdown mistakes in Kubernetes manifests that
//! drop requests on rollouts, scale-ins and node drains.
//!
//! Modules, in the order a run goes through them:
//! - [`cli`]: the checker's own command line;
//! - [`input`]: files, directories and stdin, multi-document YAML split
//!   into documents, errors with file and line;
//! - [`objects`]: each document typed into the Kubernetes API types, and
//!   the fields those types dropped;
//! - [`inventory`]: pod templates, their containers, and what selects them;
//! - [`drainit_flags`]: a container's drainit settings, read with drainit's
//!   own parser (`drainit::cli::Cli`);
//! - [`rules`]: the rules and their findings;
//! - [`report`]: text, JSON and GitHub output.

#![warn(missing_docs)]

pub mod cli;
pub mod drainit_flags;
pub mod input;
pub mod inventory;
pub mod objects;
pub mod report;
pub mod rules;

use std::io::Write;
use std::process::ExitCode;

/// Exit status: nothing at or above `--fail-on`.
const EXIT_CLEAN: u8 = 0;
/// Exit status: findings at or above `--fail-on`.
const EXIT_FINDINGS: u8 = 1;
/// Exit status: input that could not be read or parsed.
const EXIT_BAD_INPUT: u8 = 2;

/// Checks the manifests `args` names, prints the findings, returns the exit status.
pub fn run(args: &cli::Args) -> ExitCode {
    let (sources, mut errors) = input::read_sources(&args.paths);
    let (objects, parse_errors) = input::parse_sources(&sources);
    errors.extend(parse_errors);
    let findings = rules::check(&objects);

    let mut stdout = std::io::stdout().lock();
    // A closed stdout (`| head`) is no reason to panic; the exit status still tells.
    let _ = stdout.write_all(report::render(&findings, args.format).as_bytes());
    let _ = stdout.flush();
    for error in &errors {
        eprintln!("drainit-check: error: {error}");
    }
    let count = |severity| {
        findings
            .iter()
            .filter(|f| f.rule.severity() == severity)
            .count()
    };
    eprintln!(
        "drainit-check: {} objects in {} file(s): {} error(s), {} warning(s){}",
        objects.len(),
        sources.len(),
        count(rules::Severity::Error),
        count(rules::Severity::Warning),
        if errors.is_empty() {
            String::new()
        } else {
            format!(", {} input error(s)", errors.len())
        }
    );

    if !errors.is_empty() {
        ExitCode::from(EXIT_BAD_INPUT)
    } else if findings.iter().any(|f| f.rule.severity() >= args.fail_on) {
        ExitCode::from(EXIT_FINDINGS)
    } else {
        ExitCode::from(EXIT_CLEAN)
    }
}
