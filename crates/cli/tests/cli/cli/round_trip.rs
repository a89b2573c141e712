//! Export and import: a store restored exactly, twice without duplicates, torn or cut input, working memory.

use std::path::Path;

use persist::args::Add;
use persist::sqlite::SqliteBackend;
use persist::{Content, Context, Message, Metadata, PersistError, Pipeline, Role, TenantId, ThreadId};
use serde_json::{Value, json};

use super::{SEEDED_MESSAGES, message_count, seed, snapshot};
use crate::support::{block_on, ok, path_str, persist};

#[test]
fn export_then_import_restores_every_thread_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    block_on(seed(&source, 1005)).unwrap();
    let export = dir.path().join("all.jsonl");
    ok(&["--url", path_str(&source), "--across-tenants", "export", "-o", path_str(&export)]);

    let lines: Vec<Value> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is JSON"))
        .collect();
    assert_eq!(lines[0]["kind"], "header");
    assert_eq!(lines[0]["schema_version"], 3);
    assert_eq!(lines.iter().filter(|line| line["kind"] == "thread").count(), 3, "the tombstone is not exported");
    assert_eq!(lines.iter().filter(|line| line["kind"] == "message").count(), SEEDED_MESSAGES + 1005);

    let target = dir.path().join("target.db");
    let report = ok(&["--url", &format!("sqlite:{}", path_str(&target)), "import", path_str(&export)]);
    assert!(report.contains(&format!("restored {} messages, 0 already present", SEEDED_MESSAGES + 1005)), "{report}");
    let original = block_on(snapshot(&source)).unwrap();
    assert_eq!(original.len(), 3);
    assert_eq!(block_on(snapshot(&target)).unwrap(), original);

    assert!(ok(&["--url", path_str(&target), "--across-tenants", "check"]).contains(": ok"));
    let transcript = ok(&["--url", path_str(&target), "show", "support:1042"]);
    assert!(transcript.contains("#1 user [complete] Where is my order?"), "{transcript}");
    assert!(transcript.contains("[reserved]"), "{transcript}");
    assert!(!transcript.contains("never mind"), "{transcript}");
    let acme = ok(&["--url", path_str(&target), "--tenant", "acme", "show", "support:1042", "--json"]);
    assert_eq!(acme.lines().count(), 2, "the thread and its one message: {acme}");
    assert_eq!(lines.iter().filter(|line| line["kind"] == "binding").count(), 2);
    let sessions = ok(&["--url", path_str(&target), "sessions", "support:1042"]);
    assert!(sessions.contains("support-bot") && sessions.contains("sess-9"), "{sessions}");
    assert!(sessions.contains("reset"), "the reset binding keeps its state: {sessions}");
    let resolved =
        ok(&["--url", path_str(&target), "sessions", "support:1042", "--agent", "support-bot", "--provider", "cli"]);
    assert!(resolved.contains("resume session sess-9"), "{resolved}");
}

#[test]
fn importing_twice_writes_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    block_on(seed(&source, 3)).unwrap();
    let export = dir.path().join("all.jsonl");
    ok(&["--url", path_str(&source), "--across-tenants", "export", "-o", path_str(&export)]);
    let target = dir.path().join("target.db");
    let first = ok(&["--url", path_str(&target), "import", path_str(&export)]);
    assert!(first.contains(&format!("restored {} messages", SEEDED_MESSAGES + 3)), "{first}");
    let again = ok(&["--url", path_str(&target), "import", path_str(&export), "--json"]);
    let again: Value = serde_json::from_str(again.trim()).unwrap();
    assert_eq!(again["restored"], 0);
    assert_eq!(again["present"], SEEDED_MESSAGES + 3);
    assert_eq!(again["complete"], true, "the export ends with its end line");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&export).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "an export is readable by its owner only");
    }
    assert!(!dir.path().join("all.jsonl.partial").exists());

    // Cut between two lines: every line parses, the end line is missing; import says so.
    let whole = std::fs::read_to_string(&export).unwrap();
    let cut: Vec<&str> = whole.lines().collect();
    let cut = cut[..cut.len() - 3].join("\n") + "\n";
    let output = persist()
        .args(["--url", path_str(&dir.path().join("cut.db")), "import", "-", "--json"])
        .write_stdin(cut)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("warning: the input has no end line"), "{stderr}");
    let report: Value = serde_json::from_str(String::from_utf8_lossy(&output.stdout).trim()).unwrap();
    assert_eq!(report["complete"], false);
    let text = ok(&["--url", path_str(&target), "import", path_str(&export)]);
    assert!(text.contains("restored 0 messages"), "{text}");
    assert_eq!(block_on(snapshot(&target)).unwrap(), block_on(snapshot(&source)).unwrap());
}

#[test]
fn a_torn_last_line_is_skipped_and_the_rest_imported() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    block_on(seed(&source, 3)).unwrap();
    let export = ok(&["--url", path_str(&source), "--across-tenants", "export"]);
    // An export interrupted in the middle of a message's line: what came before it, and half
    // of it.
    let lines: Vec<&str> = export.lines().collect();
    let last = lines.iter().rposition(|line| line.contains("\"kind\":\"message\"")).expect("a message line");
    let torn = format!("{}\n{}", lines[..last].join("\n"), &lines[last][..lines[last].len() / 2]);
    let target = dir.path().join("target.db");
    let output = persist().args(["--url", path_str(&target), "import", "-"]).write_stdin(torn).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("warning: line"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("1 lines skipped"), "{stdout}");
    let original = block_on(snapshot(&source)).unwrap();
    let imported = block_on(snapshot(&target)).unwrap();
    assert_eq!(message_count(&imported), message_count(&original) - 1);
    let all_original: Vec<&Message> = original.iter().flat_map(|(_, messages, _)| messages).collect();
    for (_, messages, _) in &imported {
        for message in messages {
            assert!(all_original.contains(&message), "{message:?} was not in the source");
        }
    }
}

/// Working memory documents travel with an export of a tenant or of the store: imported as they
/// were (each into its tenant, or into `--tenant`'s), and not written again by a second import.
#[test]
fn working_memory_is_exported_and_imported() {
    use persist::working::{ListMemories, WriteMemory};
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("memory.db");
    let doc = |v: Value| Metadata::try_from(v).unwrap();
    block_on(async {
        let pipeline = Pipeline::new(SqliteBackend::open(&source).await?);
        pipeline.add(Add::new(ThreadId::new("t")?, Role::User, Content::text("hi"))).await?;
        for (tenant, name) in [(Some("acme"), "Ada"), (None, "Nobody")] {
            let context = Context::new().for_tenant(tenant.map(TenantId::new).transpose()?);
            let resource = persist::ResourceId::new("user:1")?;
            let write = WriteMemory::patch(resource, doc(json!({"name": name, "n": 1.5}))).with_context(context);
            pipeline.write_memory(write).await?;
        }
        Ok::<_, PersistError>(())
    })
    .unwrap();
    let export = dir.path().join("all.jsonl");
    ok(&["--url", path_str(&source), "--across-tenants", "export", "-o", path_str(&export)]);
    let text = std::fs::read_to_string(&export).unwrap();
    assert_eq!(text.lines().filter(|line| line.contains(r#""kind":"working_memory""#)).count(), 2, "{text}");
    assert!(text.lines().last().unwrap().contains(r#""memories":2"#), "{text}");
    let target = dir.path().join("imported.db");
    let first: Value =
        serde_json::from_str(ok(&["--url", path_str(&target), "import", path_str(&export), "--json"]).trim()).unwrap();
    assert_eq!(first["working_memory"], 2);
    let again: Value =
        serde_json::from_str(ok(&["--url", path_str(&target), "import", path_str(&export), "--json"]).trim()).unwrap();
    assert_eq!(again["working_memory"], 0, "the same documents are not written again");
    let moved = dir.path().join("moved.db");
    ok(&["--url", path_str(&moved), "--tenant", "globex", "import", path_str(&export)]);
    let listed = |path: &Path, tenant: Option<&str>| {
        block_on(async {
            let pipeline = Pipeline::new(SqliteBackend::open(path).await?);
            let context = Context::new().for_tenant(tenant.map(TenantId::new).transpose()?);
            let page =
                pipeline.memories(ListMemories::new().across_tenants(tenant.is_none()).with_context(context)).await?;
            Ok::<_, PersistError>(page.items.into_iter().map(|m| (m.tenant, m.document)).collect::<Vec<_>>())
        })
        .unwrap()
    };
    assert_eq!(listed(&target, None), listed(&source, None), "every tenant's, as they were");
    let globex = listed(&moved, Some("globex"));
    assert_eq!(globex.len(), 1, "two documents of one resource into one tenant: the last one read");
}
