//! Printing findings: human text, a JSON array, GitHub workflow commands or
//! SARIF 2.1.0. Text and GitHub show what counts; JSON and SARIF also carry
//! the suppressed findings, marked, so nothing disabled or ignored is lost.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::cli::Format;
use crate::rules::{Finding, Severity, Suppression, RULES};

/// The findings in `format`, ready to print on stdout.
pub fn render(findings: &[Finding], format: Format) -> String {
    match format {
        Format::Text => text(findings),
        Format::Json => json(findings),
        Format::Github => github(findings),
        Format::Sarif => sarif(findings),
    }
}

/// " NAME" for a finding about one container, "" for one about the object.
fn container_suffix(finding: &Finding) -> String {
    finding
        .container
        .as_deref()
        .map(|c| format!(" {c}"))
        .unwrap_or_default()
}

fn counted(findings: &[Finding]) -> impl Iterator<Item = &Finding> {
    findings.iter().filter(|f| f.suppressed.is_none())
}

fn text(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in counted(findings) {
        let container = container_suffix(f);
        let _ = writeln!(
            out,
            "{}:{}: {}{container}: {} {}: {}",
            f.file,
            f.line,
            f.object,
            f.severity.name(),
            f.rule.id,
            f.message
        );
    }
    out
}

/// (by, reason) of a suppression.
fn suppression(s: &Suppression) -> (&'static str, &str) {
    match s {
        Suppression::Disabled(place) => ("config", place),
        Suppression::Annotation(reason) => ("annotation", reason),
    }
}

fn json(findings: &[Finding]) -> String {
    let array: Vec<Value> = findings
        .iter()
        .map(|f| {
            let suppressed = f.suppressed.as_ref().map(|s| {
                let (by, reason) = suppression(s);
                json!({ "by": by, "reason": reason })
            });
            json!({
                "rule": f.rule.id,
                "severity": f.severity.name(),
                "file": f.file,
                "line": f.line,
                "object": f.object,
                "container": f.container,
                "message": f.message,
                "suppressed": suppressed,
            })
        })
        .collect();
    let mut out = Value::Array(array).to_string();
    out.push('\n');
    out
}

/// Escapes a workflow command's message (`%`, CR, LF).
fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property (also `:` and `,`).
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

fn github(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in counted(findings) {
        let level = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "notice",
        };
        let container = container_suffix(f);
        let _ = writeln!(
            out,
            "::{level} file={},line={},title={}::{}",
            escape_property(&f.file),
            f.line,
            escape_property(&format!("drainit-check {}", f.rule.id)),
            escape_data(&format!("{}{container}: {}", f.object, f.message)),
        );
    }
    out
}

/// SARIF's level for a severity.
fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

fn sarif(findings: &[Finding]) -> String {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.id,
                "shortDescription": { "text": r.summary },
                "fullDescription": { "text": r.summary },
                "help": {
                    "text": r.help,
                    "markdown": format!("**{}** ({})\n\n{}", r.id, r.severity.name(), r.help),
                },
                "defaultConfiguration": { "level": sarif_level(r.severity) },
                "properties": { "tags": ["kubernetes", "shutdown"] },
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let index = RULES.iter().position(|r| r.id == f.rule.id).unwrap_or(0);
            let mut result = json!({
                "ruleId": f.rule.id,
                "ruleIndex": index,
                "level": sarif_level(f.severity),
                "message": { "text": format!("{}{}: {}", f.object, container_suffix(f), f.message) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": f.file },
                        "region": { "startLine": f.line },
                    },
                    "logicalLocations": [{
                        "name": f.object,
                        "fullyQualifiedName": match &f.container {
                            Some(c) => format!("{}/{c}", f.object),
                            None => f.object.clone(),
                        },
                        "kind": "object",
                    }],
                }],
            });
            if let Some(s) = &f.suppressed {
                let (by, reason) = suppression(s);
                let kind = if by == "annotation" { "inSource" } else { "external" };
                result["suppressions"] = json!([{ "kind": kind, "justification": reason }]);
            }
            result
        })
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "drainit-check",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    });
    let mut out = serde_json::to_string_pretty(&log).unwrap_or_else(|_| log.to_string());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_commands_are_escaped() {
        assert_eq!(escape_data("50%\nnext"), "50%25%0Anext");
        assert_eq!(escape_property("a:b,c"), "a%3Ab%2Cc");
    }
}
