//! The pages' layout, and a page being written: headings (with their anchors), paragraphs,
//! tables, and links whose targets are known once every page is written.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::slug::Slugger;

/// The command that writes the files again.
pub(super) const REGENERATE: &str = "PERSIST_REGENERATE_DOCS=1 cargo test -p persist-serve --test serve reference";

/// The pages of the operations (under `docs/`), each with the tags whose operations it shows;
/// the first one also has the introduction and the index, and the operations of a tag no page
/// names. Each page stays short enough to read (and to render on GitHub).
pub(super) const OPERATION_PAGES: &[(&str, &[&str])] = &[
    ("http-reference.md", &["Conversations", "Items", "Operations"]),
    ("http-extensions.md", &["Persist extensions"]),
    ("http-live-replies.md", &["Live replies"]),
];

/// The pages of the schemas, each with the first letter of the schemas it shows: from it to
/// the next page's (the first page's also takes any name before its letter).
pub(super) const SCHEMA_PAGES: &[(&str, char)] = &[("http-schemas.md", 'A'), ("http-schemas-n-z.md", 'N')];

/// What every page says of the tables of an object's fields.
pub(super) const CLOSED_OBJECTS: &str =
    "An object takes no fields but those listed, unless a row *other fields* says otherwise.";

/// A link's target before the pages are laid out: `\u{1}KEY\u{1}`, resolved by [`resolve`].
const MARK: char = '\u{1}';

/// The generated-file notice of a page.
pub(super) fn notice(what: &str) -> String {
    format!(
        "> Generated from {what} by `crates/serve/tests/serve/reference/`: do not edit. Regenerate with \
         `{REGENERATE}`."
    )
}

/// A page being written: its text, and the anchors of its headings.
pub(super) struct Page {
    name: &'static str,
    text: String,
    slugs: Slugger,
}

impl Page {
    pub(super) fn new(name: &'static str) -> Self {
        Self { name, text: String::new(), slugs: Slugger::default() }
    }

    /// A heading; `key`, when given, is what links to it name.
    pub(super) fn heading(
        &mut self,
        level: usize,
        title: &str,
        key: Option<String>,
        anchors: &mut HashMap<String, String>,
    ) {
        let slug = self.slugs.slug(title);
        if let Some(key) = key {
            anchors.insert(key, format!("{}#{slug}", self.name));
        }
        self.line(&format!("{} {title}", "#".repeat(level)));
    }

    /// A paragraph (or any block): its lines, then a blank line.
    pub(super) fn line(&mut self, text: &str) {
        self.text.push_str(text.trim_end());
        self.text.push_str("\n\n");
    }

    /// A table of `rows` under `header`, each cell on one line with its `|` escaped.
    pub(super) fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        let mut text = format!("| {} |\n", header.join(" | "));
        let _ = writeln!(text, "|{}", "---|".repeat(header.len()));
        for row in rows {
            let cells: Vec<String> = row.iter().map(|cell| cell_text(cell)).collect();
            let _ = writeln!(text, "| {} |", cells.join(" | "));
        }
        self.line(&text);
    }

    pub(super) fn finish(mut self) -> (&'static str, String) {
        while self.text.ends_with("\n\n") {
            self.text.pop();
        }
        (self.name, self.text)
    }
}

/// A table cell's text: one line, `|` escaped (inside code spans too, as GitHub reads tables).
fn cell_text(text: &str) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = text.replace('|', "\\|");
    if text.is_empty() { " ".to_owned() } else { text }
}

/// A link to what `key` names (`op:ID`, `schema:NAME`, `section:NAME`), resolved once every
/// page is written.
pub(super) fn link(text: &str, key: &str) -> String {
    format!("[{text}]({MARK}{key}{MARK})")
}

pub(super) fn schema_link(name: &str) -> String {
    link(name, &format!("schema:{name}"))
}

/// `text` of page `page` with its links' keys replaced by their targets.
pub(super) fn resolve(page: &str, text: &str, anchors: &HashMap<String, String>) -> String {
    let mut parts = text.split(MARK);
    let mut out = parts.next().unwrap_or_default().to_owned();
    while let Some(key) = parts.next() {
        let target = anchors.get(key).unwrap_or_else(|| panic!("a link to '{key}', which no heading is"));
        let target = target.strip_prefix(page).unwrap_or(target);
        out.push_str(target);
        out.push_str(parts.next().expect("a key is closed"));
    }
    out
}
