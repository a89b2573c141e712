//! The HTTP reference in `docs/` is the OpenAPI document rendered as Markdown, never written by
//! hand: this test renders [`Server::openapi`] and compares it with the committed files, and
//! with `PERSIST_REGENERATE_DOCS=1` writes them instead. The rendering is deterministic (paths,
//! methods, statuses, properties and schemas are sorted), and every link it makes to a heading
//! is checked against the headings' GitHub anchors.
//!
//! [`page`] lays the pages out, [`operations`] writes the operations' pages, [`schemas`] the
//! schemas', [`types`] a schema in words and [`slug`] the headings' anchors.

mod operations;
mod page;
mod schemas;
mod slug;
mod types;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use persist_serve::Server;
use serde_json::Value;

use self::page::{REGENERATE, resolve};
use self::slug::Slugger;

#[test]
fn the_http_reference_is_the_openapi_document_rendered() {
    let pages = render(&Server::openapi());
    check_links(&pages);
    let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    if std::env::var("PERSIST_REGENERATE_DOCS").is_ok_and(|value| value == "1") {
        for (name, text) in &pages {
            std::fs::write(docs.join(name), text).unwrap_or_else(|e| panic!("docs/{name}: {e}"));
        }
        return;
    }
    for (name, text) in &pages {
        let Ok(committed) = std::fs::read_to_string(docs.join(name)) else {
            panic!("docs/{name} is missing: it is generated from the OpenAPI document; write it with `{REGENERATE}`");
        };
        if committed != *text {
            let line = committed.lines().zip(text.lines()).position(|(a, b)| a != b);
            let line = line.unwrap_or_else(|| committed.lines().count().min(text.lines().count())) + 1;
            panic!(
                "docs/{name} is not the OpenAPI document's rendering (it differs from line {line}); it is generated, \
                 not edited: regenerate it with `{REGENERATE}` and commit it"
            );
        }
    }
}

/// The pages of `doc`: `(file name, Markdown)`.
fn render(doc: &Value) -> Vec<(&'static str, String)> {
    let mut anchors = HashMap::new();
    let mut pages = operations::operation_pages(doc, &mut anchors);
    pages.extend(schemas::schema_pages(doc, &mut anchors));
    for page in &mut pages {
        page.1 = resolve(page.0, &page.1, &anchors);
    }
    pages
}

/// Checks every link to a heading of these pages against GitHub's anchors of their headings.
fn check_links(pages: &[(&'static str, String)]) {
    let mut anchors: HashMap<&str, BTreeSet<String>> = HashMap::new();
    for (name, text) in pages {
        let mut slugs = Slugger::default();
        let mut fenced = false;
        for line in text.lines() {
            if line.starts_with("```") {
                fenced = !fenced;
            }
            let hashes = line.len() - line.trim_start_matches('#').len();
            if !fenced && (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
                anchors.entry(name).or_default().insert(slugs.slug(&line[hashes + 1..]));
            }
        }
    }
    for (name, text) in pages {
        for (at, _) in text.match_indices("](") {
            let rest = &text[at + 2..];
            let target = &rest[..rest.find(')').expect("a link is closed")];
            if target.contains("://") {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let file = if file.is_empty() { *name } else { file };
            let headings = anchors.get(file).unwrap_or_else(|| panic!("{name}: a link to {target}, no page"));
            assert!(
                fragment.is_empty() || headings.contains(fragment),
                "{name}: a link to {target}, which no heading of {file} is"
            );
        }
    }
}
