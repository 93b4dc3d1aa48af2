//! The real `drainit-check` configured as CI teams configure linters:
//! `--disable`/`--enable`/`--severity`, a `.drainit-check.yaml` found up to
//! the repository's root, an ignore annotation with a reason on one
//! object, and what stays visible of it all in JSON and SARIF.

mod common;

use std::path::{Path, PathBuf};

use drainit_check::rules::RULES;

/// A workload that trips exactly `single-replica` and `no-pdb`-free: one
/// replica of a stateless server behind a Service, with `annotations`.
fn lone_web(annotations: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations: {{{annotations}}}
spec:
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: ghcr.io/example/web:1
          ports: [{{name: http, containerPort: 8080}}]
          lifecycle: {{preStop: {{sleep: {{seconds: 5}}}}}}
          readinessProbe: {{httpGet: {{path: /healthz, port: http}}}}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#
    )
}

/// A fresh directory under the target dir, a repository root (`.git`) with `files`.
fn repo(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join(".git")).expect("make the repository");
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
    }
    dir
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().expect("utf-8").to_string()
}

#[test]
fn a_disabled_rule_is_suppressed_not_lost() {
    let dir = repo("disable", &[("web.yaml", &lone_web(""))]);
    let file = path(&dir, "web.yaml");
    let run = common::check(&["--format", "json", "--fail-on", "warning", &file]);
    let found = run.json();
    assert_eq!(found.len(), 1, "{}", run.report());
    assert_eq!(found[0]["rule"], "single-replica");
    assert_eq!(run.code, Some(1), "{}", run.report());

    let run = common::check(&[
        "--format",
        "json",
        "--fail-on",
        "warning",
        "--disable",
        "single-replica,no-pdb",
        &file,
    ]);
    let found = run.json();
    assert_eq!(found.len(), 1, "still reported: {}", run.report());
    assert_eq!(found[0]["suppressed"]["by"], "config");
    assert_eq!(run.code, Some(0), "not counted: {}", run.report());
    assert!(run.stderr.contains("1 suppressed"), "{}", run.report());
    // Text shows only what counts.
    let run = common::check(&["--disable", "single-replica", &file]);
    assert_eq!(run.stdout, "", "{}", run.report());
    // --enable undoes a --disable; --severity raises the rule to an error.
    let run = common::check(&[
        "--disable",
        "single-replica",
        "--enable",
        "single-replica",
        "--severity",
        "single-replica=error",
        &file,
    ]);
    assert_eq!(run.code, Some(1), "{}", run.report());
    assert!(
        run.stdout.contains(": error single-replica: "),
        "{}",
        run.report()
    );
}

#[test]
fn an_ignore_annotation_needs_a_reason() {
    let reason = "leader-elected; a second replica only waits";
    let dir = repo(
        "annotation",
        &[
            (
                "with-reason.yaml",
                &lone_web(&format!(
                    "ignore.drainit-check/single-replica: \"{reason}\""
                )),
            ),
            (
                "without.yaml",
                &lone_web("ignore.drainit-check/single-replica: \"\""),
            ),
        ],
    );
    let run = common::check(&[
        "--format",
        "json",
        "--fail-on",
        "warning",
        &path(&dir, "with-reason.yaml"),
    ]);
    let found = run.json();
    assert_eq!(
        found[0]["suppressed"]["by"],
        "annotation",
        "{}",
        run.report()
    );
    assert_eq!(found[0]["suppressed"]["reason"], reason);
    assert_eq!(run.code, Some(0), "{}", run.report());

    let run = common::check(&[
        "--format",
        "json",
        "--fail-on",
        "warning",
        &path(&dir, "without.yaml"),
    ]);
    let found = run.json();
    assert!(found[0]["suppressed"].is_null(), "{}", run.report());
    let message = found[0]["message"].as_str().expect("a message");
    assert!(
        message.contains("not honoured without a reason"),
        "{message}"
    );
    assert_eq!(run.code, Some(1), "{}", run.report());
}

#[test]
fn the_config_file_is_found_up_to_the_repository_root() {
    let config = "fail-on: warning\ndisable: [single-replica]\nseverity:\n  no-pdb: info\n";
    let dir = repo(
        "config",
        &[
            (".drainit-check.yaml", config),
            ("deploy/prod/web.yaml", &lone_web("")),
        ],
    );
    // Run from a subdirectory: the file at the root applies.
    let run = common::check_in(&dir.join("deploy/prod"), &["--format", "json", "web.yaml"]);
    let found = run.json();
    assert_eq!(found[0]["suppressed"]["by"], "config", "{}", run.report());
    let reason = found[0]["suppressed"]["reason"].as_str().expect("a reason");
    assert!(reason.contains(".drainit-check.yaml"), "{reason}");
    assert_eq!(run.code, Some(0), "{}", run.report());
    // The command line wins: enabled again, and fail-on warning from the file fails it.
    let run = common::check_in(
        &dir.join("deploy/prod"),
        &["--enable", "single-replica", "web.yaml"],
    );
    assert_eq!(run.code, Some(1), "{}", run.report());
    // --no-config ignores the file.
    let run = common::check_in(&dir.join("deploy/prod"), &["--no-config", "web.yaml"]);
    assert_eq!(
        run.code,
        Some(0),
        "warnings pass by default: {}",
        run.report()
    );
    assert!(run.stdout.contains("single-replica"), "{}", run.report());
    // Above the repository root nothing is searched: a file outside it does not apply.
    let outer = repo("config-outer", &[("inner/web.yaml", &lone_web(""))]);
    std::fs::remove_dir_all(outer.join(".git")).expect("no repository here");
    std::fs::create_dir_all(outer.join("inner/.git")).expect("the inner repository");
    std::fs::write(
        outer.join(".drainit-check.yaml"),
        "disable: [single-replica]\n",
    )
    .expect("write");
    let run = common::check_in(&outer.join("inner"), &["--format", "json", "web.yaml"]);
    assert!(run.json()[0]["suppressed"].is_null(), "{}", run.report());
}

#[test]
fn bad_configuration_exits_2_naming_the_problem() {
    let dir = repo(
        "bad-config",
        &[
            (".drainit-check.yaml", "disable: [single-replicas]\n"),
            ("web.yaml", &lone_web("")),
        ],
    );
    let run = common::check_in(&dir, &["web.yaml"]);
    assert_eq!(run.code, Some(2), "{}", run.report());
    assert!(
        run.stderr.contains("no rule \"single-replicas\"")
            && run.stderr.contains("single-replica,"),
        "{}",
        run.report()
    );
    let run = common::check_in(
        &dir,
        &["--no-config", "--severity", "no-pdb=fatal", "web.yaml"],
    );
    assert_eq!(run.code, Some(2), "{}", run.report());
    assert!(
        run.stderr.contains("error, warning or info"),
        "{}",
        run.report()
    );
}

#[test]
fn sarif_carries_the_rules_help_and_the_suppressions() {
    let dir = repo("sarif", &[("web.yaml", &lone_web(""))]);
    let run = common::check(&[
        "--format",
        "sarif",
        "--disable",
        "single-replica",
        &path(&dir, "web.yaml"),
    ]);
    let log: serde_json::Value = serde_json::from_str(&run.stdout).expect("SARIF is JSON");
    assert_eq!(log["version"], "2.1.0");
    assert!(log["$schema"]
        .as_str()
        .is_some_and(|s| s.contains("sarif-2.1.0")));
    let run0 = &log["runs"][0];
    let driver = &run0["tool"]["driver"];
    assert_eq!(driver["name"], "drainit-check");
    let rules = driver["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), RULES.len());
    for (meta, rule) in rules.iter().zip(RULES) {
        assert_eq!(meta["id"], rule.id);
        assert_eq!(meta["help"]["text"], rule.help);
        assert_eq!(meta["shortDescription"]["text"], rule.summary);
        let level = meta["defaultConfiguration"]["level"]
            .as_str()
            .expect("level");
        assert!(["error", "warning", "note"].contains(&level), "{level}");
    }
    let results = run0["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{}", run.stdout);
    let result = &results[0];
    assert_eq!(result["ruleId"], "single-replica");
    let index = result["ruleIndex"].as_u64().expect("an index") as usize;
    assert_eq!(rules[index]["id"], "single-replica");
    assert_eq!(result["level"], "warning");
    let location = &result["locations"][0]["physicalLocation"];
    assert!(location["artifactLocation"]["uri"]
        .as_str()
        .is_some_and(|u| u.ends_with("web.yaml")));
    assert_eq!(location["region"]["startLine"], 1);
    assert_eq!(result["suppressions"][0]["kind"], "external");
    assert_eq!(run.code, Some(0), "{}", run.report());
}
