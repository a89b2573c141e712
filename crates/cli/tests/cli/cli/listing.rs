//! Reading a store: `threads` paging and filters, `show`, and reads on a read-only filesystem.

use std::path::Path;

use persist::args::Add;
use persist::sqlite::SqliteBackend;
use persist::{Content, Context, PersistError, Pipeline, Role, TenantId, ThreadId};
use serde_json::{Value, json};

use super::{fails, seed};
use crate::support::{block_on, ok, path_str};

#[test]
fn threads_pages_with_a_cursor_and_filters() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.db");
    block_on(seed(&source, 3)).unwrap();
    let url = path_str(&source);
    let first = ok(&["--url", url, "--across-tenants", "threads", "--limit", "2"]);
    let cursor = first
        .lines()
        .find_map(|line| line.strip_prefix("next page: --after "))
        .unwrap_or_else(|| panic!("a cursor: {first}"));
    let rest = ok(&["--url", url, "--across-tenants", "threads", "--limit", "2", "--after", cursor, "--json"]);
    let rest: Vec<Value> = rest.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(rest.len(), 1, "the third thread, and no further cursor: {rest:?}");
    assert_eq!(rest[0]["kind"], "thread");
    let mine = ok(&["--url", url, "threads", "--filter", "user=u1", "--json"]);
    assert_eq!(mine.lines().count(), 1, "{mine}");
    assert!(ok(&["--url", url, "threads", "--filter", "user=u2"]).contains("no threads"));
}

#[test]
fn an_empty_listing_says_where_the_tenants_threads_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenants.db");
    block_on(async {
        let backend = SqliteBackend::open(&path).await?;
        let acme = Context::new().with_tenant(TenantId::new("acme")?);
        let add = Add::new(ThreadId::new("t")?, Role::User, Content::text("hi")).with_context(acme);
        Pipeline::new(backend.clone()).add(add).await?;
        backend.close().await;
        Ok::<_, PersistError>(())
    })
    .unwrap();
    let url = path_str(&path);
    let untenanted = ok(&["--url", url, "threads"]);
    assert!(untenanted.contains("no threads without a tenant") && untenanted.contains("--tenant NAME"), "{untenanted}");
    assert!(ok(&["--url", url, "--tenant", "acme", "threads"]).contains("acme"));
    let other = ok(&["--url", url, "--tenant", "globex", "threads"]);
    assert_eq!(other.trim(), "no threads", "a tenant named is listed as asked");
    let empty = dir.path().join("empty.db");
    block_on(async {
        SqliteBackend::open(&empty).await?.close().await;
        Ok::<_, PersistError>(())
    })
    .unwrap();
    assert_eq!(ok(&["--url", path_str(&empty), "threads"]).trim(), "no threads");
}

/// Unmounts its directory when dropped, whatever the test did.
struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.0).status();
    }
}

/// The read commands open a SQLite file for reads only: a store on a read-only filesystem is
/// listed, shown, exported and checked; a command that writes says which file and why.
#[test]
fn read_commands_work_on_a_read_only_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let mount =
        std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"]).arg(dir.path()).status();
    match mount {
        Ok(status) if status.success() => {}
        failure if std::env::var_os("CI").is_some() => panic!("CI must be able to mount a tmpfs: {failure:?}"),
        failure => return eprintln!("SKIPPED: cannot mount a tmpfs here (needs root): {failure:?}"),
    }
    let _mounted = Mounted(dir.path());
    let store = dir.path().join("archive.db");
    block_on(seed(&store, 3)).unwrap();
    let remount = std::process::Command::new("mount").args(["-o", "remount,ro"]).arg(dir.path()).status();
    assert!(remount.is_ok_and(|status| status.success()), "remounting read-only");
    let store = path_str(&store);
    assert!(ok(&["--url", store, "threads"]).contains("support:1042"));
    assert!(ok(&["--url", store, "show", "support:1042"]).contains("Where is my order?"));
    assert!(ok(&["--url", store, "export", "--across-tenants"]).contains("\"kind\":\"end\""));
    ok(&["--url", store, "check"]);
    let (stderr, _) = fails(&["--url", store, "prune", "--keep-latest", "1"]);
    assert!(stderr.contains(store) && stderr.contains("read_only"), "{stderr}");
}

/// `show` prints each part of a message: text as it is, reasoning, tool calls and results,
/// files, and a block of another kind by its text or its JSON.
#[test]
fn show_prints_tool_calls_results_and_reasoning() {
    use persist::Part;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tools.db");
    block_on(async {
        let backend = SqliteBackend::open(&db).await?;
        let store = Pipeline::new(backend.clone());
        let thread = ThreadId::new("tools")?;
        let parts = vec![
            Part::reasoning("the user wants the weather"),
            Part::text("Checking. "),
            Part::tool_call("call_1", "weather", json!({"city": "Lisbon"})),
        ];
        store.add(Add::new(thread.clone(), Role::Assistant, Content::from_parts(parts))).await?;
        let results = vec![Part::tool_result("call_1", json!({"temp": 21})), Part::tool_error("call_2", json!("timeout"))];
        store.add(Add::new(thread.clone(), Role::Tool, Content::from_parts(results))).await?;
        let other = json!([{"type": "output_text", "text": "Sunny.", "annotations": []}, Part::file("image/png", "s3://b/map.png").to_block()]);
        store.add(Add::new(thread, Role::Assistant, Content::new(other))).await?;
        backend.close().await;
        Ok::<_, PersistError>(())
    })
    .unwrap();
    let transcript = ok(&["--url", path_str(&db), "show", "tools"]);
    let expected = [
        r#"#1 assistant [complete] (reasoning: the user wants the weather) Checking. [call call_1: weather({"city":"Lisbon"})]"#,
        r#"#2 tool [complete] [result of call_1: {"temp":21}] [call_2 failed: "timeout"]"#,
        "#3 assistant [complete] Sunny.[file image/png s3://b/map.png]",
    ];
    for line in expected {
        assert!(transcript.lines().any(|shown| shown.trim_end() == line), "{line:?} not in {transcript}");
    }
}
