//! `persist show --compacted` (the latest summary, then what follows it; `--json` too), and
//! summaries' round trip through `export` and `import`: the same ranges, content and times,
//! an import run again writing nothing twice.

use std::path::Path;

use persist::args::Add;
use persist::sqlite::SqliteBackend;
use persist::summary::{ListSummaries, Summarize, Summary};
use persist::{Content, Metadata, PersistError, Pipeline, Role, ThreadId};
use serde_json::{Value, json};

use crate::support::{block_on, ok, path_str};

/// `trip`: five messages, a summary of the first three.
async fn seed(path: &Path) -> Result<(), PersistError> {
    let backend = SqliteBackend::open(path).await?;
    let store = Pipeline::new(backend.clone());
    let thread = ThreadId::new("trip")?;
    for (role, text) in [
        (Role::User, "Plan a day in Lisbon."),
        (Role::Assistant, "Alfama, then Baixa."),
        (Role::User, "And the evening?"),
        (Role::Assistant, "Belém at sunset."),
        (Role::User, "Thanks!"),
    ] {
        store.add(Add::new(thread.clone(), role, Content::text(text))).await?;
    }
    let summary = Summarize::new(thread, 3, Content::text("A day in Lisbon: Alfama, then Baixa; the evening asked."))
        .with_metadata(Metadata::new().with(persist::compaction::COMPACTOR_KEY, json!("by-hand")));
    store.summarize(summary).await?;
    backend.close().await;
    Ok(())
}

async fn summaries(path: &Path) -> Result<Vec<Summary>, PersistError> {
    let backend = SqliteBackend::open(path).await?;
    let found = persist::Backend::summaries(&backend, ListSummaries::new(ThreadId::new("trip")?)).await?.items;
    backend.close().await;
    Ok(found)
}

#[test]
fn show_compacted_prints_the_summary_then_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    block_on(seed(&db)).unwrap();
    let url = format!("sqlite:{}", path_str(&db));
    let shown = ok(&["--url", &url, "show", "trip", "--compacted"]);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 4, "{shown}");
    assert_eq!(lines[1], "summary #1..#3 (by-hand): A day in Lisbon: Alfama, then Baixa; the evening asked.");
    assert!(lines[2].starts_with("#4 assistant") && lines[2].ends_with("Belém at sunset."), "{shown}");
    assert!(lines[3].starts_with("#5 user"), "{shown}");

    let json = ok(&["--url", &url, "--json", "show", "trip", "--compacted"]);
    let kinds: Vec<Value> =
        json.lines().map(|line| serde_json::from_str::<Value>(line).unwrap()["kind"].clone()).collect();
    assert_eq!(kinds, ["thread", "summary", "message", "message"]);

    let full = ok(&["--url", &url, "show", "trip"]);
    assert_eq!(full.lines().count(), 6, "without --compacted, every message: {full}");
}

#[test]
fn summaries_round_trip_through_export_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let (db, copy) = (dir.path().join("chat.db"), dir.path().join("copy.db"));
    block_on(seed(&db)).unwrap();
    let export = dir.path().join("chat.jsonl");
    ok(&["--url", &format!("sqlite:{}", path_str(&db)), "export", "trip", "-o", path_str(&export)]);
    let text = std::fs::read_to_string(&export).unwrap();
    let end: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(end["summaries"], 1, "{text}");
    assert!(text.lines().any(|line| line.contains("\"kind\":\"summary\"")), "{text}");

    let target = format!("sqlite:{}", path_str(&copy));
    let imported = ok(&["--url", &target, "--json", "import", path_str(&export)]);
    let report: Value = serde_json::from_str(imported.trim()).unwrap();
    assert_eq!((report["restored"].clone(), report["summaries"].clone()), (json!(5), json!(1)));
    let again = ok(&["--url", &target, "--json", "import", path_str(&export)]);
    let report: Value = serde_json::from_str(again.trim()).unwrap();
    assert_eq!((report["present"].clone(), report["summaries"].clone()), (json!(5), json!(0)), "written once");
    assert_eq!(block_on(summaries(&copy)).unwrap(), block_on(summaries(&db)).unwrap(), "the same, times included");
}

#[test]
fn copy_takes_summaries_along_and_verifies_them() {
    let dir = tempfile::tempdir().unwrap();
    let (db, copy) = (dir.path().join("chat.db"), dir.path().join("copied.db"));
    block_on(seed(&db)).unwrap();
    let source = format!("sqlite:{}", path_str(&db));
    let target = format!("sqlite:{}", path_str(&copy));
    let report = ok(&["--url", &source, "--json", "copy", "--to", &target]);
    let report: Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!((report["summaries"].clone(), report["mismatches"].clone()), (json!(1), json!([])), "{report}");
    assert_eq!(block_on(summaries(&copy)).unwrap(), block_on(summaries(&db)).unwrap());
}

#[test]
fn prune_covered_removes_what_the_summary_covers_and_show_compacted_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    block_on(seed(&db)).unwrap();
    let url = format!("sqlite:{}", path_str(&db));
    let before = ok(&["--url", &url, "show", "trip", "--compacted"]);
    let dry = ok(&["--url", &url, "--json", "prune", "--covered", "--dry-run"]);
    let dry: Value = serde_json::from_str(dry.trim()).unwrap();
    assert_eq!(dry["deleted_messages"], 3, "{dry}");
    ok(&["--url", &url, "prune", "--covered"]);
    let after = ok(&["--url", &url, "show", "trip", "--compacted"]);
    let body = |shown: &str| shown.lines().skip(1).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(body(&after), body(&before), "the summary and what follows it, as before");
    assert_eq!(ok(&["--url", &url, "show", "trip"]).lines().count(), 3, "two messages left");
}
