//! Reading manifests: files, directories or stdin, multi-document YAML (and
//! `kind: List`, as `kubectl get -o yaml` writes it), each document typed
//! by [`crate::objects`].
//!
//! Each document is parsed on its own (split at `---` lines, which YAML only
//! allows at the start of a line), so a broken document is reported with
//! its file and line and the others are still checked. Kinds the rules don't
//! need are skipped.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::objects::{typed_object, unknown_fields};
pub use crate::objects::{Kind, Object};

/// Input that can't be checked: the checker exits 2.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A path that could not be read.
    #[error("{path}: failed to read: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Broken YAML, or a document whose fields have the wrong types.
    #[error("{file}:{line}: {message}")]
    Parse {
        /// The file (`-` for stdin).
        file: String,
        /// 1-based line of the problem (the document's first line when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// One manifest's text and the name it is reported under.
pub struct Source {
    /// The path, or `-` for stdin.
    pub name: String,
    /// The whole text.
    pub text: String,
}

/// Reads every path: a file, a directory (its `*.yaml` and `*.yml`, sorted,
/// recursively) or `-` for stdin.
pub fn read_sources(paths: &[PathBuf]) -> (Vec<Source>, Vec<InputError>) {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => sources.push(Source {
                    name: "-".into(),
                    text,
                }),
                Err(source) => errors.push(InputError::Read {
                    path: "-".into(),
                    source,
                }),
            }
        } else {
            read_path(path, &mut sources, &mut errors);
        }
    }
    (sources, errors)
}

fn read_path(path: &Path, sources: &mut Vec<Source>, errors: &mut Vec<InputError>) {
    let failed = |source| InputError::Read {
        path: path.display().to_string(),
        source,
    };
    if path.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => return errors.push(failed(e)),
        };
        // (path, is a real directory): a symlinked directory is not entered,
        // so a link loop cannot recurse forever.
        let mut children: Vec<(PathBuf, bool)> = entries
            .filter_map(|e| e.ok())
            .map(|e| (e.path(), e.file_type().is_ok_and(|t| t.is_dir())))
            .collect();
        children.sort();
        for (child, is_dir) in children {
            let is_yaml = child
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml");
            if is_dir || (is_yaml && !child.is_dir()) {
                read_path(&child, sources, errors);
            }
        }
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => sources.push(Source {
            name: path.display().to_string(),
            text,
        }),
        Err(e) => errors.push(failed(e)),
    }
}

/// One YAML document: its text and the file line its first line is on.
pub(crate) struct Document {
    /// The file line of the document's first line.
    pub(crate) first_line: usize,
    /// The document's text (a `---` marker blanked).
    pub(crate) text: String,
}

impl Document {
    /// The file line of its first line that is neither blank nor a comment
    /// (where the object starts, for findings).
    pub(crate) fn content_line(&self) -> usize {
        let offset = self
            .text
            .lines()
            .position(|l| {
                let l = l.trim();
                !l.is_empty() && !l.starts_with('#') && l != "---"
            })
            .unwrap_or(0);
        self.first_line + offset
    }

    /// The text of a file line inside this document.
    fn line_text(&self, file_line: usize) -> Option<&str> {
        let index = file_line.checked_sub(self.first_line)?;
        self.text.lines().nth(index).map(str::trim)
    }
}

/// Splits a stream at its `---` (start) and `...` (end) markers. Directive
/// lines (`%YAML`) are blanked; line numbers inside each document stay
/// those of the file.
fn documents(text: &str) -> Vec<Document> {
    let marker = |line: &str, m: &str| {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
    };
    let mut docs = Vec::new();
    let mut current = Document {
        first_line: 1,
        text: String::new(),
    };
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if marker(line, "---") || marker(line, "...") {
            docs.push(std::mem::replace(
                &mut current,
                Document {
                    first_line: number,
                    text: String::new(),
                },
            ));
            // Content after `--- ` (e.g. `--- # comment`, `--- {…}`) stays in the document.
            if let Some(rest) = line.strip_prefix("---") {
                current.text.push_str("   ");
                current.text.push_str(rest);
            }
            current.text.push('\n');
        } else if line.starts_with('%') {
            current.text.push('\n');
        } else {
            current.text.push_str(line);
            current.text.push('\n');
        }
    }
    docs.push(current);
    docs.retain(|doc| {
        doc.text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

/// Options for every YAML parse: plain messages (the file and line are ours).
pub(crate) fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! { with_snippet: false }
}

/// A saphyr error as (file line, message without its own location).
pub(crate) fn locate(error: &serde_saphyr::Error, doc: &Document) -> (usize, String) {
    let line = error
        .location()
        .and_then(|l| usize::try_from(l.line()).ok())
        .filter(|l| *l > 0)
        .map_or(doc.first_line, |l| doc.first_line + l - 1);
    let mut message = plain_message(&error.to_string());
    if let Some(text) = doc.line_text(line).filter(|t| !t.is_empty()) {
        message.push_str(&format!(" (in `{text}`)"));
    }
    (line, message)
}

/// Drops a trailing " at line N column M" that saphyr adds: we print our own.
fn plain_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or(message).trim();
    match first.rfind(" at line ") {
        Some(at) => first[..at].to_string(),
        None => first.to_string(),
    }
}

/// Parses every document of every source; unknown kinds are skipped.
pub fn parse_sources(sources: &[Source]) -> (Vec<Object>, Vec<InputError>) {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for source in sources {
        for doc in documents(&source.text) {
            let parse_error = |line, message| InputError::Parse {
                file: source.name.clone(),
                line,
                message,
            };
            let value: Value = match serde_saphyr::from_str_with_options(&doc.text, yaml_options())
            {
                Ok(value) => value,
                Err(e) => {
                    let (line, message) = locate(&e, &doc);
                    errors.push(parse_error(line, format!("YAML does not parse: {message}")));
                    continue;
                }
            };
            let items = match list_items(&value) {
                Some(items) => items.iter().collect(),
                None => vec![&value],
            };
            let in_list = list_items(&value).is_some();
            for (index, item) in items.into_iter().enumerate() {
                match typed_object(item, &doc, in_list) {
                    Ok(Some(kind)) => objects.push(Object {
                        file: source.name.clone(),
                        line: doc.content_line(),
                        unknown_fields: unknown_fields(item, &kind),
                        kind,
                    }),
                    Ok(None) => {}
                    Err((line, message)) if in_list => {
                        errors.push(parse_error(line, format!("items[{index}]: {message}")))
                    }
                    Err((line, message)) => errors.push(parse_error(line, message)),
                }
            }
        }
    }
    (objects, errors)
}

/// The items of a `kind: List` (what `kubectl get -o yaml` prints).
fn list_items(value: &Value) -> Option<&Vec<Value>> {
    let kind = value.get("kind").and_then(Value::as_str)?;
    if kind != "List" {
        return None;
    }
    value.get("items").and_then(Value::as_array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_file_line_numbers() {
        let docs = documents("a: 1\n---\nb: 2\n--- # c\nc: 3\n...\n---\n# only a comment\n");
        let firsts: Vec<usize> = docs.iter().map(|d| d.first_line).collect();
        assert_eq!(firsts, [1, 2, 4]);
        assert_eq!(docs[1].text.lines().nth(1), Some("b: 2"));
    }

    #[test]
    fn a_marker_needs_a_line_of_its_own() {
        let docs = documents("a: |\n  ---x\n----\n");
        assert_eq!(docs.len(), 1);
    }
}
