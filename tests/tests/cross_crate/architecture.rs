//! The shape of the workspace, checked: the contract depends on no feature, the backends,
//! encryption and the layers depend on the contract only, every crate's dependencies are those
//! `docs/architecture.md` names, and no crate's modules import each other in a circle.
//!
//! Imports are read from the sources (`crate::a::b`, `super::a`), outside comments and the
//! `#[cfg(test)] mod tests` that ends a file or a `tests.rs` of its own (a braced group,
//! `crate::feed::{hub, read}`, counts as the module it is in; `super::super::a` goes up twice),
//! in every crate of `crates/` and at every depth: a crate's top-level modules (`crate::feed`),
//! the modules inside them (`crate::feed::hub`), and so on down.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace holds tests/").to_path_buf()
}

/// The workspace crates a crate's `[dependencies]` name (`persist…`), not its dev-dependencies.
fn dependencies(crate_dir: &str) -> BTreeSet<String> {
    let manifest = fs::read_to_string(workspace().join(crate_dir).join("Cargo.toml")).unwrap();
    let mut section = String::new();
    let mut found = BTreeSet::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_owned();
        } else if section == "[dependencies]" && line.starts_with("persist") {
            found.insert(line.split([' ', '=']).next().unwrap().to_owned());
        }
    }
    found
}

/// Every crate of `crates/` by its package name, with its directory.
fn crates_by_name() -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    for entry in fs::read_dir(workspace().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(manifest) = fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        let name = manifest
            .lines()
            .find_map(|line| line.trim().strip_prefix("name = \""))
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{} names no package", dir.display()));
        let relative = dir.strip_prefix(workspace()).unwrap().to_string_lossy().into_owned();
        found.insert(name.to_owned(), relative);
    }
    found
}

/// The table of `docs/architecture.md` under "## Dependencies, checked": each crate and the
/// workspace crates it depends on.
fn documented_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let doc = fs::read_to_string(workspace().join("docs/architecture.md")).unwrap();
    let section = doc.split("\n## Dependencies, checked\n").nth(1).expect("the doc has its dependency table");
    let section = section.split("\n## ").next().unwrap();
    let names = |cell: &str| -> BTreeSet<String> {
        cell.split(',').map(|name| name.trim().trim_matches('`').to_owned()).filter(|name| !name.is_empty()).collect()
    };
    let mut table = BTreeMap::new();
    for row in section.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').collect();
        assert_eq!(cells.len(), 2, "a row of two cells: {row}");
        let name = cells[0].trim().trim_matches('`').to_owned();
        assert!(table.insert(name, names(cells[1])).is_none(), "listed twice: {row}");
    }
    table
}

#[test]
fn the_architecture_doc_names_every_crates_dependencies() {
    let crates = crates_by_name();
    let documented = documented_dependencies();
    assert_eq!(
        documented.keys().collect::<BTreeSet<_>>(),
        crates.keys().collect::<BTreeSet<_>>(),
        "docs/architecture.md's dependency table lists every crate of crates/, and no other"
    );
    for (name, dir) in &crates {
        assert_eq!(dependencies(dir), documented[name], "{name}: its Cargo.toml against docs/architecture.md");
    }
}

/// Lines of Rust under a crate's `src`, every file at every depth.
fn source_lines(dir: &Path) -> usize {
    let mut lines = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            lines += source_lines(&path);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            lines += fs::read_to_string(&path).unwrap().lines().count();
        }
    }
    lines
}

/// The sizes the table under "## What each holds" gives (`13.7k`; a row of several crates gives
/// one size each, in order): each crate's, in lines of `src`.
fn documented_sizes() -> BTreeMap<String, f64> {
    let doc = fs::read_to_string(workspace().join("docs/architecture.md")).unwrap();
    let section = doc.split("\n## What each holds\n").nth(1).expect("the doc has its table of sizes");
    let section = section.split("\n## ").next().unwrap();
    let mut sizes = BTreeMap::new();
    for row in section.lines().filter(|line| line.starts_with("| `")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').collect();
        let names = cells[0].split(',').map(|name| name.trim().trim_matches('`').to_owned());
        let given = cells.last().unwrap().split(',').map(|size| {
            let thousands = size.trim().strip_suffix('k').unwrap_or_else(|| panic!("a size in thousands: {row}"));
            thousands.parse::<f64>().unwrap_or_else(|_| panic!("a size in thousands: {row}")) * 1000.0
        });
        let (names, given): (Vec<String>, Vec<f64>) = (names.collect(), given.collect());
        assert_eq!(names.len(), given.len(), "a size for each crate of the row: {row}");
        sizes.extend(names.into_iter().zip(given));
    }
    sizes
}

/// The sizes `docs/architecture.md` gives are today's: each within a tenth of the crate's lines
/// (or 100 lines, for the smallest), so a crate that grew or shrank says so in the doc.
#[test]
fn the_architecture_doc_gives_every_crates_size() {
    let crates = crates_by_name();
    let sizes = documented_sizes();
    assert_eq!(
        sizes.keys().collect::<BTreeSet<_>>(),
        crates.keys().collect::<BTreeSet<_>>(),
        "docs/architecture.md's table of sizes lists every crate of crates/, and no other"
    );
    let mut stale = Vec::new();
    for (name, dir) in &crates {
        let lines = source_lines(&workspace().join(dir).join("src")) as f64;
        if (sizes[name] - lines).abs() > (lines / 10.0).max(100.0) {
            stale.push(format!("{name}: {:.1}k in the doc, {:.1}k in src", sizes[name] / 1000.0, lines / 1000.0));
        }
    }
    assert!(stale.is_empty(), "docs/architecture.md's sizes are not today's: {stale:#?}");
}

#[test]
fn the_table_reader_reads_a_row() {
    assert!(documented_dependencies()["persist-sqlite"].contains("persist-sql-kit"));
    assert!(documented_dependencies()["persist-core"].is_empty());
}

#[test]
fn the_contract_depends_on_no_feature_and_backends_on_the_contract() {
    assert_eq!(dependencies("crates/core"), BTreeSet::new());
    let contract_only = BTreeSet::from(["persist-core".to_owned()]);
    // A framework's adapter (`persist-rig`, `persist-adk`, `persist-swiftide`) too: it works on any pipeline,
    // whatever its backend; and recall, which composes the contract's requests.
    for crate_dir in [
        "crates/memory-backend",
        "crates/encrypt",
        "crates/convert",
        "crates/ops",
        "crates/layer",
        "crates/sql-kit",
        "crates/rig",
        "crates/adk",
        "crates/swiftide",
        "crates/recall",
    ] {
        assert_eq!(dependencies(crate_dir), contract_only, "{crate_dir}");
    }
    // Shards move tenants as the operations copy threads (one reader of a thread's vectors).
    let shard = BTreeSet::from(["persist-core".to_owned(), "persist-ops".to_owned()]);
    assert_eq!(dependencies("crates/shard"), shard, "crates/shard");
    // The SQL backends share what they repeat in `persist-sql-kit`, itself on the contract only.
    let sql = BTreeSet::from(["persist-core".to_owned(), "persist-sql-kit".to_owned()]);
    for crate_dir in ["crates/sqlite-backend", "crates/postgres-backend"] {
        assert_eq!(dependencies(crate_dir), sql, "{crate_dir}");
    }
    // The server's items are Responses items, its live replies the operations' and its recall
    // route recall's: the contract and those features, no backend.
    let serve = ["persist-convert", "persist-core", "persist-ops", "persist-recall"].map(str::to_owned);
    assert_eq!(dependencies("crates/serve"), BTreeSet::from(serve));
    // The MCP server's recall tool is recall's: the contract and that feature, no backend.
    let mcp = ["persist-core", "persist-recall"].map(str::to_owned);
    assert_eq!(dependencies("crates/mcp"), BTreeSet::from(mcp));
}

/// A module's path in its crate: `src/feed/hub.rs` is `feed::hub`, `src/feed/mod.rs` is `feed`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut path: Vec<String> = relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
    if matches!(path.last().map(String::as_str), Some("mod" | "lib")) {
        path.pop();
    }
    path
}

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The module paths after each `prefix` in `code` (`crate::feed::hub` → `["feed", "hub"]`),
/// groups expanded (`crate::{feed::{hub, read}, Item}` → `["feed", "hub"]`, `["feed", "read"]`,
/// `[]`): a path ends at its first name that is not a module's (a type, a function's call).
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        // A path's own segment (`super::super::a`'s second `super`) is not a path's start.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == ':') {
            continue;
        }
        expand(&code[at + prefix.len()..], Vec::new(), &mut found);
    }
    found
}

/// The paths `rest` begins with, after `path` so far: a path, or a `{…}` group of them.
fn expand<'a>(rest: &'a str, mut path: Vec<&'a str>, found: &mut Vec<Vec<&'a str>>) {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let (mut depth, mut start) = (0, 0);
        for (at, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth > 0 => depth -= 1,
                ',' | '}' if depth == 0 => {
                    if !group[start..at].trim().is_empty() {
                        expand(&group[start..at], path.clone(), found);
                    }
                    if c == '}' {
                        return;
                    }
                    start = at + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let mut segments = rest;
    loop {
        let end = segments.find(|c: char| !(c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()));
        let name = &segments[..end.unwrap_or(segments.len())];
        if name.is_empty() {
            break;
        }
        path.push(name);
        match segments[name.len()..].strip_prefix("::") {
            Some(next) if next.trim_start().starts_with('{') => return expand(next, path, found),
            Some(next) => segments = next,
            None => break,
        }
    }
    found.push(path);
}

/// Each module (at `depth`) and the modules of the same crate it imports.
fn imports(crate_dir: &str, depth: usize) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = workspace().join(crate_dir).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let code: String =
            text.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
        let module = module_of(&src, &file);
        if module.is_empty() || module.last().is_some_and(|name| name == "tests") {
            continue; // the crate root (what it declares is everyone's), or a module of tests
        }
        let from: Vec<String> = module.iter().take(depth).cloned().collect();
        let mut targets: Vec<Vec<String>> =
            paths_after(&code, "crate::").into_iter().map(|p| p.iter().map(|s| s.to_string()).collect()).collect();
        for path in paths_after(&code, "super::") {
            // `super` of `feed::hub` is `feed`, whichever file holds it; each further `super`
            // one module up.
            let ups = 1 + path.iter().take_while(|name| **name == "super").count();
            let Some(base) = module.len().checked_sub(ups) else { continue };
            let mut target = module[..base].to_vec();
            target.extend(path[ups - 1..].iter().map(|s| s.to_string()));
            targets.push(target);
        }
        for target in targets {
            let to: Vec<String> = target.into_iter().take(depth).collect();
            if !to.is_empty() && !from.starts_with(&to) && !to.starts_with(&from) {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    graph
}

/// The module circles of a graph (its strongly connected components of two or more), each
/// sorted, as `a ↔ b ↔ c`.
fn circles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> BTreeSet<String> {
    let nodes: BTreeSet<&Vec<String>> = graph.keys().chain(graph.values().flatten()).collect();
    let reach = |from: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(node) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&Vec<String>, BTreeSet<Vec<String>>> = nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut found = BTreeSet::new();
    for node in &nodes {
        let mut circle: Vec<String> = nodes
            .iter()
            .filter(|other| reached[*node].contains(**other) && reached[**other].contains(*node))
            .map(|other| other.join("::"))
            .collect();
        if circle.len() > 1 {
            circle.sort();
            found.insert(circle.join(" ↔ "));
        }
    }
    found
}

/// Every crate of `crates/`, whatever it holds.
fn crate_dirs() -> Vec<String> {
    let mut dirs: Vec<String> = fs::read_dir(workspace().join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("src").is_dir())
        .map(|path| format!("crates/{}", path.file_name().unwrap().to_string_lossy()))
        .collect();
    dirs.sort();
    dirs
}

/// How deep a crate's modules go (`feed::hub` is 2).
fn deepest(crate_dir: &str) -> usize {
    let src = workspace().join(crate_dir).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.iter().map(|file| module_of(&src, file).len()).max().unwrap_or(0)
}

#[test]
fn no_crate_imports_its_own_modules_in_a_circle() {
    let crates = crate_dirs();
    assert!(crates.len() > 20 && crates.contains(&"crates/python".to_owned()), "{crates:?}");
    let mut found = BTreeSet::new();
    for crate_dir in &crates {
        // At every depth: the crate's top-level modules (`crate::feed`), the modules inside
        // them (`crate::feed::hub`), and so on down.
        for depth in 1..=deepest(crate_dir) {
            for circle in circles(&imports(crate_dir, depth)) {
                found.insert((crate_dir.clone(), circle));
            }
        }
    }
    assert!(found.is_empty(), "modules importing each other in a circle: {found:?}");
}

#[test]
fn the_reader_finds_a_circle() {
    let graph = BTreeMap::from([
        (vec!["a".to_owned()], BTreeSet::from([vec!["b".to_owned()]])),
        (vec!["b".to_owned()], BTreeSet::from([vec!["a".to_owned()], vec!["c".to_owned()]])),
    ]);
    assert_eq!(circles(&graph), BTreeSet::from(["a ↔ b".to_owned()]));
    assert_eq!(
        paths_after("use crate::feed::{hub, read};", "crate::"),
        vec![vec!["feed", "hub"], vec!["feed", "read"]]
    );
    assert_eq!(
        paths_after("use crate::{Item, feed::{hub::Hub, read}, model};", "crate::"),
        vec![vec![], vec!["feed", "hub"], vec!["feed", "read"], vec!["model"]]
    );
    assert_eq!(paths_after("x = $crate::Context; crate::model::id::ThreadId", "crate::"), vec![vec!["model", "id"]]);
    // `super::super::turn` from `write::insert::on_lane` is `write::turn`: one path, read once.
    assert_eq!(
        paths_after("match super::super::turn::inserts(plan)", "super::"),
        vec![vec!["super", "turn", "inserts"]]
    );
}

#[test]
fn the_contract_reads_top_to_bottom() {
    // The order `persist-core`'s lib.rs declares and explains; what it re-exports at its root
    // (`crate::args`, `crate::context_setter`) counts as the module that defines it.
    let order = ["requests", "model", "consistency", "context", "feed", "request", "schema", "pipeline", "raw"];
    let position = |name: &str| {
        let defined_in = match name {
            "args" | "branch" | "lease" | "once" | "read" | "restore" | "search" | "session" | "spent" | "summary"
            | "vector" | "working" | "records" => "request",
            "context_setter" => "context",
            other => other,
        };
        order.iter().position(|module| *module == defined_in)
    };
    let mut back_up = Vec::new();
    for (from, imported) in imports("crates/core", 1) {
        let at = position(&from[0]).unwrap_or_else(|| panic!("{from:?} is not in the contract's order"));
        if from[0] == "requests" {
            // The one list of requests, at the top as a table of contents is: macros that name
            // every request's types, for the modules below to be made of; it imports nothing.
            continue;
        }
        for to in imported {
            if position(&to[0]).is_none_or(|other| other > at) {
                back_up.push(format!("{} → {}", from[0], to[0]));
            }
        }
    }
    assert!(back_up.is_empty(), "imports running back up the contract: {back_up:?}");
}

/// `Pipeline`'s typed methods are generated (`calls!(pipeline_calls)`), so no `fn add` finds
/// them: the line that generates them names each, and this keeps that line true.
#[test]
fn the_generated_methods_are_named_where_they_are_generated() {
    let core = workspace().join("crates/core/src");
    let list = fs::read_to_string(core.join("requests.rs")).unwrap();
    let calls = &list[list.find("macro_rules! calls").expect("requests.rs holds `calls!`")..];
    let names: Vec<&str> = calls
        .lines()
        .filter_map(|line| line.trim_start().split_once("(crate::").map(|(name, _)| name))
        .filter(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    assert!(names.len() > 25 && names.contains(&"append_turn"), "{names:?}");
    let pipeline = fs::read_to_string(core.join("pipeline/mod.rs")).unwrap();
    let at = pipeline.find("\ncalls!(pipeline_calls);").expect("pipeline/mod.rs generates the calls");
    let comment: String =
        pipeline[..at].lines().rev().take_while(|line| line.starts_with("//")).collect::<Vec<_>>().join(" ");
    let unnamed: Vec<_> = names.iter().filter(|name| !comment.contains(&format!("`{name}`"))).collect();
    assert!(unnamed.is_empty(), "calls the comment above `calls!(pipeline_calls)` does not name: {unnamed:?}");
}
