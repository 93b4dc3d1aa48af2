//! YAML streams cut into documents, and saphyr's errors placed on the
//! file's lines: the leaf that [`crate::input`] and [`crate::objects`] share.
//!
//! Each document is parsed on its own (split at `---` lines, which YAML only
//! allows at the start of a line), so a broken document is reported with its
//! file and line and the others are still checked, and only one document is
//! held in memory at a time.

/// One YAML document: its text and the file line its first line is on.
pub struct Document {
    /// The file line of the document's first line.
    pub first_line: usize,
    /// The document's text (a `---` marker blanked).
    pub text: String,
}

impl Document {
    /// The file line of its first line that is neither blank nor a comment
    /// (where the object starts, for findings).
    pub fn content_line(&self) -> usize {
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

    /// Whether the document holds anything but blanks and comments.
    fn has_content(&self) -> bool {
        self.text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    }
}

/// Cuts a stream, fed line by line, at its `---` (start) and `...` (end)
/// markers. Directive lines (`%YAML`) are blanked; line numbers inside each
/// document stay those of the file.
pub struct Splitter {
    current: Document,
    next_line: usize,
}

impl Default for Splitter {
    fn default() -> Self {
        Splitter {
            current: Document {
                first_line: 1,
                text: String::new(),
            },
            next_line: 1,
        }
    }
}

impl Splitter {
    /// Takes the next line (without its newline); returns the document it ends, if any.
    pub fn push(&mut self, line: &str) -> Option<Document> {
        let marker = |m: &str| {
            line.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
        };
        let number = self.next_line;
        self.next_line += 1;
        if marker("---") || marker("...") {
            let done = std::mem::replace(
                &mut self.current,
                Document {
                    first_line: number,
                    text: String::new(),
                },
            );
            // Content after `--- ` (e.g. `--- # comment`, `--- {…}`) stays in the document.
            if let Some(rest) = line.strip_prefix("---") {
                self.current.text.push_str("   ");
                self.current.text.push_str(rest);
            }
            self.current.text.push('\n');
            return done.has_content().then_some(done);
        }
        if !line.starts_with('%') {
            self.current.text.push_str(line);
        }
        self.current.text.push('\n');
        None
    }

    /// The last document, at the end of the stream.
    pub fn finish(self) -> Option<Document> {
        self.current.has_content().then_some(self.current)
    }
}

/// Every document of a whole text.
pub fn documents(text: &str) -> Vec<Document> {
    let mut splitter = Splitter::default();
    let mut docs: Vec<Document> = text.lines().filter_map(|l| splitter.push(l)).collect();
    docs.extend(splitter.finish());
    docs
}

/// Options for every YAML parse: plain messages (the file and line are
/// ours), and YAML 1.1 octal (`defaultMode: 0400`), which kubectl reads.
pub fn options() -> serde_saphyr::Options {
    serde_saphyr::options! { with_snippet: false, legacy_octal_numbers: true }
}

/// A saphyr error as (file line, message without its own location).
pub fn locate(error: &serde_saphyr::Error, doc: &Document) -> (usize, String) {
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

    #[test]
    fn yaml_1_1_octal_reads_as_kubectl_reads_it() {
        let value: serde_json::Value =
            serde_saphyr::from_str_with_options("mode: 0400\nport: 8080\n", options())
                .expect("parses");
        assert_eq!(value["mode"], 256);
        assert_eq!(value["port"], 8080);
    }
}
