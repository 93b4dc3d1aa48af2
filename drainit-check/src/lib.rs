//! drainit-check: finds the shutdown mistakes in Kubernetes manifests that
//! drop requests on rollouts, scale-ins and node drains.
//!
//! Modules, in the order a run goes through them:
//! - [`cli`]: the checker's own command line; [`config`]: it over a
//!   `.drainit-check.yaml`;
//! - [`input`]: files, directories and stdin read line by line, one
//!   document at a time ([`yaml`] cuts them and places errors on lines);
//! - [`objects`]: each document typed into the Kubernetes API types (older
//!   API versions read as the current ones), and the fields those types
//!   dropped;
//! - [`inventory`]: a pod template and its containers while its object is
//!   checked; [`cluster`]: the small summary the cross-object rules read;
//!   [`container`]: what one container's spec says (hook, ports, image);
//! - [`drainit_flags`]: a container's drainit settings, read with drainit's
//!   own parser (`drainit::cli::Cli`);
//! - [`rules`]: the rule list (one item per rule) and the engine;
//! - [`report`]: text, JSON, GitHub and SARIF output.

#![warn(missing_docs)]

pub mod cli;
pub mod cluster;
pub mod config;
pub mod container;
pub mod drainit_flags;
pub mod input;
pub mod inventory;
pub mod objects;
pub mod rbac;
pub mod report;
pub mod rules;
pub mod yaml;

use std::io::Write;
use std::process::ExitCode;

/// Exit status: nothing at or above `--fail-on`.
const EXIT_CLEAN: u8 = 0;
/// Exit status: findings at or above `--fail-on`.
const EXIT_FINDINGS: u8 = 1;
/// Exit status: input or configuration that could not be read or parsed.
const EXIT_BAD_INPUT: u8 = 2;

/// Checks the manifests `args` names, prints the findings, returns the exit status.
pub fn run(args: &cli::Args) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    if args.rules {
        let _ = stdout.write_all(rules::markdown_table().as_bytes());
        return ExitCode::from(EXIT_CLEAN);
    }
    let config = match config::Config::load(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("drainit-check: error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let mut checker = rules::Checker::default();
    let tally = input::read(&args.paths, |object| checker.add(&object));
    let mut findings = checker.finish();
    config.apply(&mut findings);

    // A closed stdout (`| head`) is no reason to panic; the exit status still tells.
    let _ = stdout.write_all(report::render(&findings, args.format).as_bytes());
    let _ = stdout.flush();
    for error in &tally.errors {
        eprintln!("drainit-check: error: {error}");
    }
    let counted = || findings.iter().filter(|f| f.suppressed.is_none());
    let count = |severity| counted().filter(|f| f.severity == severity).count();
    let suppressed = findings.len() - counted().count();
    eprintln!(
        "drainit-check: {} objects in {} file(s): {} error(s), {} warning(s){}{}",
        tally.objects,
        tally.files,
        count(rules::Severity::Error),
        count(rules::Severity::Warning),
        if suppressed == 0 {
            String::new()
        } else {
            format!(", {suppressed} suppressed")
        },
        if tally.errors.is_empty() {
            String::new()
        } else {
            format!(", {} input error(s)", tally.errors.len())
        }
    );

    if !tally.errors.is_empty() {
        ExitCode::from(EXIT_BAD_INPUT)
    } else if counted().any(|f| f.severity >= config.fail_on) {
        ExitCode::from(EXIT_FINDINGS)
    } else {
        ExitCode::from(EXIT_CLEAN)
    }
}
