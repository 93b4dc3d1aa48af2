//! Printing findings: human text, a JSON array, or GitHub workflow commands.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::cli::Format;
use crate::rules::Finding;

/// The findings in `format`, ready to print on stdout.
pub fn render(findings: &[Finding], format: Format) -> String {
    match format {
        Format::Text => text(findings),
        Format::Json => json(findings),
        Format::Github => github(findings),
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

fn text(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let container = container_suffix(f);
        let _ = writeln!(
            out,
            "{}:{}: {}{container}: {} {}: {}",
            f.file,
            f.line,
            f.object,
            f.rule.severity().name(),
            f.rule.id(),
            f.message
        );
    }
    out
}

fn json(findings: &[Finding]) -> String {
    let array: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "rule": f.rule.id(),
                "severity": f.rule.severity().name(),
                "file": f.file,
                "line": f.line,
                "object": f.object,
                "container": f.container,
                "message": f.message,
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
    for f in findings {
        let level = match f.rule.severity() {
            crate::rules::Severity::Error => "error",
            crate::rules::Severity::Warning => "warning",
            crate::rules::Severity::Info => "notice",
        };
        let container = container_suffix(f);
        let _ = writeln!(
            out,
            "::{level} file={},line={},title={}::{}",
            escape_property(&f.file),
            f.line,
            escape_property(&format!("drainit-check {}", f.rule.id())),
            escape_data(&format!("{}{container}: {}", f.object, f.message)),
        );
    }
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
