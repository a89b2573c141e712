//! The documentation, checked: every relative link and anchor of the README, `docs/` and the
//! packages' pages resolves, every Markdown file with Rust examples is doc-tested (an
//! `include_str!` item in `tests/lib.rs`), every other code block is run by a step of `.ci/run`,
//! and no chapter under `docs/` is over 600 lines.
//!
//! Anchors are GitHub's: a heading's text, lower-cased, without the characters that are not
//! letters, digits, spaces, `-` or `_`, its spaces made `-`, and `-1`, `-2`, … after a heading
//! met before.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace holds tests/").to_path_buf()
}

/// The Markdown files a reader finds: the README, BENCHMARKS.md, everything under `docs/`, and
/// the README of every crate, package and client folder (never `target/` or `node_modules/`).
fn markdown_files() -> Vec<PathBuf> {
    let root = workspace();
    let mut found = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    collect(&root.join("docs"), &mut found, &|_| true);
    for dir in ["crates", "examples"] {
        collect(&root.join(dir), &mut found, &|name| name == "README.md");
    }
    found.sort();
    found
}

fn collect(dir: &Path, found: &mut Vec<PathBuf>, keep: &dyn Fn(&str) -> bool) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.map(Result::unwrap) {
        let (path, name) = (entry.path(), entry.file_name().to_string_lossy().into_owned());
        if path.is_dir() {
            if name != "node_modules" && name != "target" && !name.starts_with('.') {
                collect(&path, found, keep);
            }
        } else if name.ends_with(".md") && keep(&name) {
            found.push(path);
        }
    }
}

/// A line's fence marker (```` ``` ```` or `~~~`), when it opens or closes a code block.
fn is_fence(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("```") || line.starts_with("~~~")
}

/// The lines outside code blocks, with their numbers (from 1).
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if is_fence(line) {
            fenced = !fenced;
        } else if !fenced {
            lines.push((index + 1, line));
        }
    }
    lines
}

/// A line without its code spans (`` `…` ``), which hold no links.
fn without_code(line: &str) -> String {
    let mut out = String::new();
    let mut parts = line.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for (index, part) in parts.enumerate() {
        if index % 2 == 1 {
            out.push_str(part);
        }
    }
    out
}

/// A heading's text as GitHub renders it: links are their text, code spans and emphasis marks
/// their content.
fn heading_text(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find("](") {
        text.push_str(&rest[..open]);
        rest = &rest[open + 2..];
        rest = rest.find(')').map_or("", |close| &rest[close + 1..]);
    }
    text.push_str(rest);
    text.replace(['[', '`', '*'], "")
}

fn slug(heading: &str) -> String {
    heading_text(heading)
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor a file's headings make, repeated headings numbered as GitHub numbers them.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut found = BTreeSet::new();
    for (_, line) in prose(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes + 1..]);
        let count = seen.entry(base.clone()).or_default();
        found.insert(if *count == 0 { base.clone() } else { format!("{base}-{count}") });
        *count += 1;
    }
    found
}

/// The targets of a line's links: `[text](target)`, `![alt](target)` and `[label]: target`.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code(line);
    let mut targets = Vec::new();
    let mut rest = line.as_str();
    while let Some(open) = rest.find("](") {
        rest = &rest[open + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        if let Some(target) = rest[..end].split_whitespace().next() {
            targets.push(target.to_string());
        }
    }
    let trimmed = line.trim_start();
    if let Some(close) = trimmed.strip_prefix('[').and_then(|label| label.find("]: "))
        && let Some(target) = trimmed[close + 4..].split_whitespace().next()
    {
        targets.push(target.to_string());
    }
    targets
}

/// What is wrong with one link from `file`, if anything.
fn broken(file: &Path, target: &str, texts: &mut BTreeMap<PathBuf, Option<String>>) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = target.split_once('#').map_or((target, None), |(path, anchor)| (path, Some(anchor)));
    let linked = if path.is_empty() { file.to_path_buf() } else { normalize(&file.parent().unwrap().join(path)) };
    let text = texts.entry(linked.clone()).or_insert_with(|| fs::read_to_string(&linked).ok());
    if !linked.exists() {
        return Some(format!("{} does not exist", linked.display()));
    }
    let anchor = anchor?;
    match text {
        Some(text) if linked.extension().is_some_and(|e| e == "md") => {
            (!anchors(text).contains(anchor)).then(|| format!("{} has no heading #{anchor}", linked.display()))
        }
        _ => Some(format!("#{anchor}: {} is not a Markdown file", linked.display())),
    }
}

/// A path with its `..` and `.` resolved, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn broken_links(files: &[PathBuf]) -> Vec<String> {
    let mut texts = BTreeMap::new();
    let mut found = Vec::new();
    for file in files {
        let text = fs::read_to_string(file).unwrap();
        for (number, line) in prose(&text) {
            for target in link_targets(line) {
                if let Some(why) = broken(file, &target, &mut texts) {
                    found.push(format!("{}:{number}: ({target}) {why}", file.display()));
                }
            }
        }
    }
    found
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let files = markdown_files();
    assert!(files.len() > 20, "the documentation was found: {files:?}");
    let broken = broken_links(&files);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_checker_finds_a_broken_link_and_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("page.md");
    fs::write(dir.path().join("other.md"), "# Other: `the` one\n\n## Again\n\n## Again\n").unwrap();
    let text = "# Page\n\n[fine](other.md#other-the-one) [second](other.md#again-1) [self](#page)\n\
                [gone](missing.md) [anchor](other.md#nowhere) `[code](missing.md)`\n\
                ```\n[fenced](missing.md)\n```\n[label]: other.md#again-2\n";
    fs::write(&page, text).unwrap();
    let broken = broken_links(&[page]);
    assert_eq!(broken.len(), 3, "{broken:?}");
    assert!(broken[0].contains("missing.md") && broken[1].contains("#nowhere") && broken[2].contains("#again-2"));
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(slug("Tenancy: a thread is `(tenant, thread_id)`"), "tenancy-a-thread-is-tenant-thread_id");
    assert_eq!(slug("Memory over MCP: `persist mcp`"), "memory-over-mcp-persist-mcp");
    assert_eq!(slug("The [server](server.md)'s rules"), "the-servers-rules");
}

/// Every Markdown file with a Rust example is compiled and run as doc tests: `tests/lib.rs`
/// includes it (`#[doc = include_str!("../docs/….md")]`).
#[test]
fn every_markdown_file_with_rust_examples_is_doc_tested() {
    let root = workspace();
    let lib = fs::read_to_string(root.join("tests/lib.rs")).unwrap();
    let included: BTreeSet<PathBuf> = lib
        .split("include_str!(\"")
        .skip(1)
        .map(|rest| normalize(&root.join("tests").join(&rest[..rest.find('"').unwrap()])))
        .collect();
    let missing: Vec<_> = markdown_files()
        .into_iter()
        .filter(|file| fs::read_to_string(file).unwrap().lines().any(|line| line.trim_start().starts_with("```rust")))
        .filter(|file| !included.contains(file))
        .collect();
    assert!(missing.is_empty(), "Markdown files with Rust examples that tests/lib.rs does not include: {missing:?}");
}

#[test]
fn no_chapter_is_over_600_lines() {
    let mut long = Vec::new();
    let mut chapters = Vec::new();
    collect(&workspace().join("docs"), &mut chapters, &|_| true);
    for file in chapters {
        let lines = fs::read_to_string(&file).unwrap().lines().count();
        if lines > 600 {
            long.push(format!("{}: {lines} lines", file.display()));
        }
    }
    assert!(long.is_empty(), "chapters over 600 lines: {long:?}");
}

/// A Rust block that cannot be compiled here (`rust,ignore`: a framework's agent, which needs the
/// framework's crates) is an excerpt of a program CI runs: its first line names the file
/// (`// From examples/rig_agent.rs`), and each of its other lines is a line of that file, so the
/// page shows code that runs.
#[test]
fn every_ignored_rust_block_is_an_excerpt_of_a_program() {
    let root = workspace();
    let mut wrong = Vec::new();
    for file in markdown_files() {
        let text = fs::read_to_string(&file).unwrap();
        let mut lines = text.lines().enumerate();
        while let Some((at, line)) = lines.next() {
            if line.trim_start() != "```rust,ignore" {
                continue;
            }
            let block: Vec<&str> = lines.by_ref().map(|(_, line)| line).take_while(|line| !is_fence(line)).collect();
            let place = format!("{}:{}", file.display(), at + 1);
            let Some(source) = block.first().and_then(|first| first.trim().strip_prefix("// From ")) else {
                wrong.push(format!("{place}: no `// From <file>` line first"));
                continue;
            };
            let Ok(program) = fs::read_to_string(root.join(source)) else {
                wrong.push(format!("{place}: no file {source}"));
                continue;
            };
            let known: BTreeSet<&str> = program.lines().map(str::trim).collect();
            for line in block[1..].iter().map(|line| line.trim()).filter(|line| !line.is_empty()) {
                if !known.contains(line) {
                    wrong.push(format!("{place}: not a line of {source}: {line}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "ignored Rust blocks that are not excerpts of a program: {wrong:#?}");
}

/// Pages whose shell blocks are the project's own developer commands (building, benchmarks,
/// CI's topologies and test runs), which CI runs as its own steps rather than as written, each
/// with the reason.
const DEVELOPER_PAGES: [(&str, &str); 9] = [
    ("BENCHMARKS.md", "the benchmarks' runs: CI runs the smoke run of each"),
    ("docs/contributing.md", "building and testing the project: what .ci/run does"),
    ("docs/performance-history", "benchmark runs of the past"),
    ("docs/scaling.md", "the topologies' scripts and tests: .ci/run starts each and runs its tests"),
    ("crates/serve/clients", "the client suites' own runs: .ci/run runs each"),
    ("crates/mcp/clients", "the MCP clients' suites: .ci/run runs them"),
    ("crates/persist/README.md", "`cargo add persist`: not on crates.io before the first release"),
    ("crates/bench", "the benchmarks' peers"),
    ("examples/node", "the example's own test run: .ci/run runs it"),
];

/// Every code block a reader may copy is run by CI as written: a Python, TypeScript, shell or
/// JSON block's tag names how (`crates/serve/clients/doc_snippets.py`), and `.ci/run` runs that
/// tag on that page. An untagged shell block is allowed only on a developer's page.
#[test]
fn every_snippet_is_run_by_ci() {
    let root = workspace();
    let ci = fs::read_to_string(root.join(".ci/run")).unwrap().replace("\\\n", " ");
    // Each run of doc_snippets.py: its tag (none for the server's snippets) and its pages.
    let runs: Vec<(Option<&str>, Vec<&str>)> = ci
        .lines()
        .filter_map(|line| {
            line.split_once("doc_snippets.py").map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>())
        })
        .map(|words| match words.first() {
            Some(&"--tag") => (Some(words[1]), words[2..].to_vec()),
            _ => (None, words),
        })
        .collect();
    let mut missing = Vec::new();
    for file in markdown_files() {
        let page = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        let developers = DEVELOPER_PAGES.iter().any(|(prefix, _)| page.starts_with(prefix));
        for (at, line) in fs::read_to_string(&file).unwrap().lines().enumerate() {
            let Some(info) = line.trim_start().strip_prefix("```") else { continue };
            let mut words = info.split_whitespace();
            let Some(lang @ ("python" | "ts" | "sh" | "json")) = words.next() else { continue };
            let tag = words.next();
            if lang == "sh" && tag.is_none() && developers {
                continue;
            }
            let run = runs.iter().any(|(run_tag, pages)| *run_tag == tag && pages.contains(&page.as_str()));
            if !run {
                missing.push(format!(
                    "{page}:{}: ```{info} (no `doc_snippets.py{}` run of this page in .ci/run)",
                    at + 1,
                    tag.map(|tag| format!(" --tag {tag}")).unwrap_or_default()
                ));
            }
        }
    }
    assert!(missing.is_empty(), "code blocks CI does not run: {missing:#?}");
}

/// The documentation step names its binaries (`--bins` would take the command line's, which
/// says `doc = false`: it is `persist` like the library), so a binary added later would be left
/// out of the docs silently: every binary target cargo documents must be named there, in
/// `.ci/run` and in the contributors' guide.
#[test]
fn the_doc_step_names_every_documented_binary() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(workspace())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    let documented: BTreeSet<String> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .flat_map(|package| package["targets"].as_array().expect("targets"))
        .filter(|target| target["kind"].as_array().expect("kinds").iter().any(|kind| kind == "bin"))
        .filter(|target| target["doc"].as_bool().unwrap_or(true))
        .map(|target| target["name"].as_str().expect("a name").to_owned())
        .collect();
    assert!(documented.contains("persist-bench"), "the reader finds the binaries: {documented:?}");
    for file in [".ci/run", "docs/contributing.md"] {
        let text = fs::read_to_string(workspace().join(file)).expect(file);
        let at = text.find("cargo doc --workspace").unwrap_or_else(|| panic!("{file} runs `cargo doc --workspace`"));
        // The command, to the end of its line or its code span (`.ci/run` continues it with `\`).
        let command: String = text[at..]
            .split_inclusive('\n')
            .scan(true, |go_on, line| {
                let line = (*go_on).then_some(line)?;
                *go_on = line.trim_end().ends_with('\\') || (file.ends_with(".md") && !line.contains('`'));
                Some(line)
            })
            .collect();
        let named: BTreeSet<&str> = command
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|pair| pair[0] == "--bin")
            .filter_map(|pair| pair[1].split('`').next())
            .collect();
        let missing: Vec<&String> = documented.iter().filter(|bin| !named.contains(bin.as_str())).collect();
        assert!(missing.is_empty(), "{file}'s `cargo doc` leaves out the binaries {missing:?}: name them with --bin");
    }
}
