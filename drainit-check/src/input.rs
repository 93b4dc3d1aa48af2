//! Reading manifests: files, directories or stdin, multi-document YAML (and
//! `kind: List`, as `kubectl get -o yaml` writes it), each document typed
//! by [`crate::objects`] and handed on at once.
//!
//! Input is read line by line and one document is held at a time, so memory
//! does not grow with the input: what stays is what the caller keeps of
//! each object. Kinds the rules don't need are skipped.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde_json::Value;

use crate::objects::{typed_object, unknown_fields, Object};
use crate::yaml::{self, Document, Splitter};

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

/// What a read went through.
#[derive(Debug, Default)]
pub struct Tally {
    /// Files (and stdin) read.
    pub files: usize,
    /// Objects of the kinds the rules read.
    pub objects: usize,
    /// Everything that could not be read.
    pub errors: Vec<InputError>,
}

/// Reads every path (a file, a directory's `*.yaml` and `*.yml`, sorted,
/// recursively, or `-` for stdin) and hands each object to `on_object` as
/// soon as its document is parsed.
pub fn read(paths: &[PathBuf], mut on_object: impl FnMut(Object)) -> Tally {
    let mut tally = Tally::default();
    for path in paths {
        let mut files = Vec::new();
        if path.as_os_str() == "-" {
            files.push(None);
        } else {
            collect_files(path, &mut files, &mut tally.errors);
        }
        for file in files {
            tally.files += 1;
            read_file(file.as_deref(), &mut tally, &mut on_object);
        }
    }
    tally
}

/// Every object of `paths`, kept (for tests and small inputs).
pub fn load(paths: &[PathBuf]) -> (Vec<Object>, Vec<InputError>) {
    let mut objects = Vec::new();
    let tally = read(paths, |o| objects.push(o));
    (objects, tally.errors)
}

/// Every object of one text, named `name` (for tests).
pub fn parse_text(name: &str, text: &str) -> (Vec<Object>, Vec<InputError>) {
    let mut objects = Vec::new();
    let mut tally = Tally::default();
    let name: Rc<str> = name.into();
    for doc in yaml::documents(text) {
        parse_document(&name, &doc, &mut tally, &mut |o| objects.push(o));
    }
    (objects, tally.errors)
}

fn collect_files(path: &Path, files: &mut Vec<Option<PathBuf>>, errors: &mut Vec<InputError>) {
    let failed = |source| InputError::Read {
        path: path.display().to_string(),
        source,
    };
    if !path.is_dir() {
        files.push(Some(path.to_path_buf()));
        return;
    }
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
            collect_files(&child, files, errors);
        }
    }
}

/// Reads one file (`None`: stdin) line by line, parsing each document as it ends.
fn read_file(path: Option<&Path>, tally: &mut Tally, on_object: &mut dyn FnMut(Object)) {
    let name: Rc<str> = path.map_or_else(|| "-".into(), |p| p.display().to_string().into());
    let mut reader: Box<dyn BufRead> = match path {
        None => Box::new(std::io::stdin().lock()),
        Some(p) => match std::fs::File::open(p) {
            Ok(f) => Box::new(std::io::BufReader::with_capacity(64 * 1024, f)),
            Err(source) => {
                let path = name.to_string();
                return tally.errors.push(InputError::Read { path, source });
            }
        },
    };
    let mut splitter = Splitter::default();
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {
                let text = line.strip_suffix('\n').unwrap_or(&line);
                let text = text.strip_suffix('\r').unwrap_or(text);
                if let Some(doc) = splitter.push(text) {
                    parse_document(&name, &doc, tally, on_object);
                }
            }
            Err(source) => {
                let path = name.to_string();
                return tally.errors.push(InputError::Read { path, source });
            }
        }
    }
    if let Some(doc) = splitter.finish() {
        parse_document(&name, &doc, tally, on_object);
    }
}

/// Parses one document into objects (several for a `kind: List`).
fn parse_document(
    file: &Rc<str>,
    doc: &Document,
    tally: &mut Tally,
    on_object: &mut dyn FnMut(Object),
) {
    let parse_error = |line, message| InputError::Parse {
        file: file.to_string(),
        line,
        message,
    };
    let value: Value = match serde_saphyr::from_str_with_options(&doc.text, yaml::options()) {
        Ok(value) => value,
        Err(e) => {
            let (line, message) = yaml::locate(&e, doc);
            let error = parse_error(line, format!("YAML does not parse: {message}"));
            return tally.errors.push(error);
        }
    };
    let list = list_items(&value);
    let in_list = list.is_some();
    let items: Vec<&Value> = match list {
        Some(items) => items.iter().collect(),
        None => vec![&value],
    };
    for (index, item) in items.into_iter().enumerate() {
        match typed_object(item, doc, in_list) {
            Ok(Some((kind, read_as))) => {
                let unknown_fields = if read_as.is_some() {
                    // Fields of the old version the new one dropped: the note says so.
                    Vec::new()
                } else {
                    unknown_fields(item, &kind)
                };
                tally.objects += 1;
                on_object(Object {
                    file: Rc::clone(file),
                    line: doc.content_line(),
                    unknown_fields,
                    kind,
                    read_as,
                });
            }
            Ok(None) => {}
            Err((line, message)) if in_list => tally
                .errors
                .push(parse_error(line, format!("items[{index}]: {message}"))),
            Err((line, message)) => tally.errors.push(parse_error(line, message)),
        }
    }
}

/// The items of a `kind: List` (what `kubectl get -o yaml` prints).
fn list_items(value: &Value) -> Option<&Vec<Value>> {
    let kind = value.get("kind").and_then(Value::as_str)?;
    if kind != "List" {
        return None;
    }
    value.get("items").and_then(Value::as_array)
}
