//! The real `drainit-check` on the corpus under `tests/check/`:
//!
//! - `rules/ID.yaml` (and `rules/ID--SHAPE.yaml`, the same mistake in
//!   another shape) trips rule ID and nothing else (each names the clean
//!   file it is a mutation of, which trips nothing), with the exit status
//!   its severity calls for; every rule of the list has one;
//! - `clean/` trips nothing, even with `--fail-on info`;
//! - `broken/` exits 2 and names the file and the line its header says;
//! - the text, JSON and GitHub formats have the documented shape.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use drainit_check::rules::{self, Severity, RULES};

fn corpus(dir: &str) -> PathBuf {
    common::repo_root().join("tests").join("check").join(dir)
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn rules_found(run: &common::Run) -> BTreeSet<String> {
    run.json()
        .iter()
        .map(|f| f["rule"].as_str().expect("rule is a string").to_string())
        .collect()
}

#[test]
fn every_rule_has_a_file_that_trips_exactly_that_rule() {
    let files = yaml_files(&corpus("rules"));
    let rule_of = |p: &PathBuf| -> String {
        let stem = p.file_stem().and_then(|s| s.to_str()).expect("a stem");
        stem.split("--").next().unwrap_or(stem).to_string()
    };
    let ids: BTreeSet<String> = files.iter().map(rule_of).collect();
    let all: BTreeSet<String> = RULES.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(ids, all, "a file for every rule in tests/check/rules");

    let mut wrong = Vec::new();
    for path in &files {
        let id = rule_of(path);
        let id = id.as_str();
        let rule = rules::rule(id).expect("a known rule");
        let run = common::check(&["--format", "json", "--fail-on", "info", text(path)]);
        let found = rules_found(&run);
        if found != BTreeSet::from([id.to_string()]) || run.code != Some(1) {
            wrong.push(format!("{id}: found {found:?}\n{}", run.report()));
        }
        // The default --fail-on error: warnings pass, errors fail.
        let run = common::check(&[text(path)]);
        let want = if rule.severity == Severity::Error {
            1
        } else {
            0
        };
        if run.code != Some(want) {
            wrong.push(format!(
                "{id}: exit {:?}, want {want}\n{}",
                run.code,
                run.report()
            ));
        }
        if rule.severity == Severity::Warning {
            let run = common::check(&["--fail-on", "warning", text(path)]);
            if run.code != Some(1) {
                wrong.push(format!("{id}: --fail-on warning exit {:?}", run.code));
            }
        }
        // The clean file it was made from trips nothing.
        let source = std::fs::read_to_string(path).expect("read the rule file");
        let clean = source
            .lines()
            .find_map(|l| l.strip_prefix("# The same manifest without the mistake: ../clean/"))
            .unwrap_or_else(|| panic!("{id}: names no clean counterpart"));
        let run = common::check(&[
            "--format",
            "json",
            "--fail-on",
            "info",
            text(&corpus("clean").join(clean.trim())),
        ]);
        if run.code != Some(0) || !run.json().is_empty() {
            wrong.push(format!(
                "{id}: its clean counterpart {clean} is not clean\n{}",
                run.report()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

#[test]
fn clean_files_trip_nothing() {
    for path in yaml_files(&corpus("clean")) {
        let run = common::check(&["--format", "json", "--fail-on", "info", text(&path)]);
        assert_eq!(run.code, Some(0), "{}", run.report());
        assert_eq!(run.json().len(), 0, "{}", run.report());
    }
    // All at once: the directory, .yml included, cross-file selection and all.
    let run = common::check(&["--fail-on", "info", text(&corpus("clean"))]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), ""),
        "{}",
        run.report()
    );
    let files = yaml_files(&corpus("clean")).len();
    assert!(
        run.stderr.contains(&format!("in {files} file(s)")),
        "{}",
        run.report()
    );
}

#[test]
fn broken_files_exit_2_naming_file_and_line() {
    for path in yaml_files(&corpus("broken")) {
        let source = std::fs::read_to_string(&path).expect("read the broken file");
        let line: usize = source
            .lines()
            .find_map(|l| l.strip_prefix("# drainit-check: exit 2, error at line "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{}: no expected line in its header", path.display()));
        let run = common::check(&[text(&path)]);
        assert_eq!(run.code, Some(2), "{}", run.report());
        let want = format!("drainit-check: error: {}:{line}: ", path.display());
        assert!(
            run.stderr.contains(&want),
            "want {want:?}\n{}",
            run.report()
        );
    }
    // The good documents of a partly broken file are still checked.
    let run = common::check(&[
        "--format",
        "json",
        text(&corpus("broken").join("bad-third-document.yaml")),
    ]);
    assert_eq!(
        rules_found(&run),
        BTreeSet::from(["single-replica".to_string()]),
        "{}",
        run.report()
    );
    // A missing path is bad input too.
    let run = common::check(&[text(&corpus("no-such-file.yaml"))]);
    assert_eq!(run.code, Some(2), "{}", run.report());
    assert!(
        run.stderr.contains("no-such-file.yaml: failed to read"),
        "{}",
        run.report()
    );
}

#[test]
fn output_formats_have_their_documented_shape() {
    let path = corpus("rules").join("drainit-budget.yaml");
    let file = text(&path);

    let run = common::check(&["--format", "json", file]);
    let findings = run.json();
    assert_eq!(findings.len(), 1, "{}", run.report());
    let finding = findings[0].as_object().expect("an object");
    let keys: BTreeSet<&str> = finding.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "container",
            "file",
            "line",
            "message",
            "object",
            "rule",
            "severity",
            "suppressed"
        ])
    );
    assert_eq!(finding["rule"], "drainit-budget");
    assert!(finding["suppressed"].is_null());
    assert_eq!(finding["severity"], "error");
    assert_eq!(finding["file"], file);
    assert_eq!(finding["object"], "Deployment/web");
    assert_eq!(finding["container"], "web");
    // The line of the Deployment's apiVersion, below the file's comments.
    let source = std::fs::read_to_string(&path).expect("read");
    let first = source
        .lines()
        .position(|l| l.starts_with("apiVersion:"))
        .expect("apiVersion")
        + 1;
    assert_eq!(finding["line"], first);
    let message = finding["message"].as_str().expect("message");
    assert!(
        message.contains("25s") && message.contains("--propagation-delay"),
        "{message}"
    );

    let run = common::check(&[file]);
    let want =
        format!("{file}:{first}: Deployment/web web: error drainit-budget: propagation delay 25s");
    assert!(
        run.stdout.starts_with(&want),
        "want {want:?}\n{}",
        run.report()
    );
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.report());

    let run = common::check(&["--format", "github", file]);
    let want = format!("::error file={file},line={first},title=drainit-check drainit-budget::Deployment/web web: propagation delay 25s");
    assert!(
        run.stdout.starts_with(&want),
        "want {want:?}\n{}",
        run.report()
    );

    // A finding without a container: null in JSON, nothing in text.
    let path = corpus("rules").join("pdb-blocks-drain.yaml");
    let run = common::check(&["--format", "json", text(&path)]);
    assert!(run.json()[0]["container"].is_null(), "{}", run.report());
    let run = common::check(&[text(&path)]);
    assert!(
        run.stdout
            .contains(": PodDisruptionBudget/web: error pdb-blocks-drain: "),
        "{}",
        run.report()
    );
}

#[test]
fn stdin_is_read_with_a_dash() {
    let source =
        std::fs::read_to_string(corpus("rules").join("drainit-budget.yaml")).expect("read");
    let run = common::check_with(&["--format", "json", "-"], Some(&source), &[]);
    assert_eq!(run.code, Some(1), "{}", run.report());
    let findings = run.json();
    assert_eq!(findings.len(), 1, "{}", run.report());
    assert_eq!(findings[0]["file"], "-");
}

#[test]
fn the_checkers_own_environment_does_not_leak_into_the_containers() {
    // drainit's clap parser reads DRAINIT_* from the process environment;
    // the checker must read only the container's. (No clean file sets the
    // kill margin everywhere: a 25s one from here would break their budgets.)
    let run = common::check_with(
        &[
            "--format",
            "json",
            "--fail-on",
            "info",
            text(&corpus("clean")),
        ],
        None,
        &[
            ("DRAINIT_KILL_MARGIN", "25s"),
            ("DRAINIT_PROPAGATION_DELAY", "29s"),
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.report());
    assert!(run.json().is_empty(), "{}", run.report());
}

#[test]
fn the_documented_rule_table_is_the_rule_list() {
    let doc = std::fs::read_to_string(common::repo_root().join("docs/drainit-check.md"))
        .expect("docs/drainit-check.md");
    let table = rules::markdown_table();
    assert!(
        doc.contains(&table),
        "docs/drainit-check.md's rule table differs from the rule list; paste `drainit-check --rules`:\n{table}"
    );
    let run = common::check(&["--rules"]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), table.as_str()),
        "{}",
        run.report()
    );
}
