//! Opening files: foreign, failing, newer or one version behind, and as the `sqlite3` shell sees them.

use std::time::Duration;

use persist_core::args::{Add, Reserve};
use persist_core::read::ListMessages;
use persist_core::{Backend, Content, Metadata, PersistError, PersistResult, Role};
use persist_sqlite::{Durability, SqliteBackend};
use serde_json::json;
use sqlx::Connection;

use super::{add, raw, thread};

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let text = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &text).unwrap();
    let err = SqliteBackend::open(&path).await.unwrap_err();
    assert!(matches!(err, PersistError::Backend { .. }), "{err:?}");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "the file was changed");
}

/// A file that cannot be opened says which and why: a missing directory names the path and
/// SQLite's cause, and keeps the driver's error as the source.
#[tokio::test]
async fn an_open_that_fails_names_the_file_and_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("chat.db");
    let error = SqliteBackend::open(&path).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains(&path.display().to_string()), "names the file: {text}");
    assert!(text.contains("unable to open database file"), "names the cause: {text}");
    assert!(std::error::Error::source(&error).is_some());
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    backend.apply(add("t", "kept")).await.unwrap();
    drop(backend);
    let mut conn = raw(&path).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from the future', 1, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let err = SqliteBackend::open(&path).await.unwrap_err();
    assert!(matches!(err, PersistError::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("9999"), "{err}");

    // Nothing was lost: remove the future marker and the data is there.
    let mut conn = raw(&path).await;
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 9999").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let backend = SqliteBackend::open(&path).await.unwrap();
    let page = backend.list(ListMessages::new(thread("t"))).await.unwrap();
    assert_eq!(page.items[0].content.to_text(), "kept");
}

#[tokio::test]
async fn full_durability_opens_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.db");
    let backend = SqliteBackend::builder(&path).durability(Durability::Full).open().await.unwrap();
    backend.apply(add("t", "x")).await.unwrap();
    let mut conn = raw(&path).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
    assert_eq!(mode, "wal");
}

/// The file is self-explanatory to the stock `sqlite3` shell: `messages_view` reads every
/// message back with text ids, role and status names and its content's JSON, whatever compact
/// form its row has, the same values the backend reads. Required in CI (which installs the
/// shell); skipped with a notice elsewhere when the shell is missing.
#[tokio::test]
async fn the_file_opens_in_the_sqlite3_shell() {
    use persist_core::{Context, MessageId, Part, TenantId};
    let Ok(version) = std::process::Command::new("sqlite3").arg("-version").output() else {
        assert!(std::env::var_os("CI").is_none(), "CI must install the sqlite3 shell");
        eprintln!("skipped: no `sqlite3` on PATH (apt-get install sqlite3)");
        return;
    };
    assert!(version.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shell.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    let result = backend.apply(add("support:7", "Hello from persist")).await.unwrap();
    assert!(matches!(result, PersistResult::Added(_)));
    let acme = Context::new().with_tenant(TenantId::new("acme").unwrap());
    let call =
        Content::from_parts([Part::text("Looking."), Part::tool_call("c1", "weather", json!({"city": "Lisbon"}))]);
    let uuid = MessageId::new("0192f7a4-5b6c-7d8e-9fab-0123456789ab").unwrap();
    let asked = Add::new(thread("support:7"), Role::Assistant, call.clone())
        .with_id(uuid.clone())
        .with_metadata(Metadata::new().with("model", json!("m1")))
        .with_context(acme.clone());
    backend.apply(asked.into()).await.unwrap();
    let reply = Reserve::new(thread("support:7"), Role::new("critic").unwrap()).with_context(acme.clone());
    backend.apply(reply.into()).await.unwrap();
    let mut written = Vec::new();
    for context in [Context::new(), acme] {
        let listed = backend.list(ListMessages::new(thread("support:7")).include_reserved(true).with_context(context));
        written.extend(listed.await.unwrap().items);
    }
    drop(backend);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let shell = |sql: &str| {
        let out = std::process::Command::new("sqlite3").arg("-json").arg(&path).arg(sql).output().unwrap();
        assert!(out.status.success(), "sqlite3 failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let tables = shell("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') ORDER BY name;");
    assert!(tables.contains("\"threads\"") && tables.contains("\"messages_view\""), "{tables}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&shell(
        "SELECT tenant, thread_id, message_id, seq, parent_seq, role, status, content, metadata, version, \
                idempotency_key, created_at, updated_at \
           FROM messages_view ORDER BY tenant IS NOT NULL, seq;",
    ))
    .unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let tenants = [None, Some("acme"), Some("acme")];
    for ((row, message), tenant) in rows.iter().zip(&written).zip(tenants) {
        assert_eq!(row["tenant"].as_str(), tenant);
        assert_eq!(row["thread_id"], "support:7");
        assert_eq!(row["message_id"].as_str(), Some(message.id.as_str()), "{row}");
        assert_eq!(row["seq"].as_u64(), Some(message.seq));
        assert_eq!(row["parent_seq"].as_u64(), message.parent_seq);
        assert_eq!(row["role"].as_str(), Some(message.role.as_str()));
        assert_eq!(row["status"].as_str(), Some(message.status.as_str()));
        let content: serde_json::Value = serde_json::from_str(row["content"].as_str().unwrap()).unwrap();
        assert_eq!(Content::new(content), message.content, "{row}");
        let metadata: serde_json::Value = serde_json::from_str(row["metadata"].as_str().unwrap()).unwrap();
        assert_eq!(metadata, serde_json::Value::Object(message.metadata.as_map().clone()));
        assert_eq!(row["version"].as_u64(), Some(message.version));
        assert_eq!(row["created_at"].as_i64(), Some(message.created_at.as_micros()));
        assert_eq!(row["updated_at"].as_i64(), Some(message.updated_at.as_micros()));
    }
    assert_eq!(rows[0]["content"], r#"[{"type":"text","text":"Hello from persist"}]"#);
    assert_eq!(rows[1]["message_id"], uuid.as_str(), "a UUID id stored as 16 bytes reads as its text");
    assert_eq!((&rows[2]["role"], &rows[2]["status"]), (&json!("critic"), &json!("reserved")));
    let counters = shell(
        "SELECT message_count, last_seq, deleted_at IS NULL AS live FROM threads WHERE thread_id = 'support:7' AND tenant = '';",
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&counters).unwrap(),
        json!([{"message_count": 1, "last_seq": 1, "live": 1}])
    );
    // Read only: a write to the view is refused, and nothing changes.
    let out = std::process::Command::new("sqlite3").arg(&path).arg("DELETE FROM messages_view;").output().unwrap();
    assert!(!out.status.success(), "a view takes no writes");
    assert_eq!(shell("SELECT count(*) AS n FROM messages_view;").trim(), r#"[{"n":3}]"#);
    assert_eq!(shell("PRAGMA integrity_check;").trim(), r#"[{"integrity_check":"ok"}]"#);
}

/// A handle for reads only reads a file one schema version behind as it is (the binary upgraded,
/// the store not yet migrated: `persist show` must still work); opened writable, the file is
/// brought up to date.
#[tokio::test]
async fn a_file_one_version_behind_is_read_for_reads_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("behind.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    backend.apply(add("t", "written at the version before")).await.unwrap();
    backend.close().await;
    // Back to version 20: what version 25 added (a table), what version 24 added (a table and a
    // column, and at format 4 the search index's triggers that read them: dropped, the format
    // back to 3; nothing is written after), what version 23 added (the view made again), what
    // version 22 added (a table) and what version 21 added (a column of each feed table, an
    // index, two triggers, the view made again) gone, their records too.
    let mut conn = raw(&path).await;
    sqlx::raw_sql(
        "DROP TRIGGER persist_working_memory_inserted; DROP TRIGGER persist_working_memory_updated; \
         DROP VIEW persist_events_read; DROP INDEX persist_events_by_resource; \
         ALTER TABLE persist_events DROP COLUMN resource; ALTER TABLE persist_feed DROP COLUMN resource; \
         CREATE VIEW persist_events_read AS \
         SELECT e.position, coalesce(e.tenant, t.tenant) AS tenant, coalesce(e.thread_id, t.thread_id) AS thread_id, \
                CASE e.op WHEN 0 THEN 'add' WHEN 1 THEN 'reserve' WHEN 2 THEN 'update_content' WHEN 3 THEN 'update' \
                          WHEN 5 THEN 'summarize' ELSE 'delete' END AS op, \
                e.message_id, e.seq, e.version, CASE e.op WHEN 4 THEN 'message' WHEN 6 THEN 'thread' END AS removed, \
                e.at, e.prev, e.status, e.delta, e.parent \
           FROM persist_events e LEFT JOIN threads t ON t.key = e.thread; \
         DELETE FROM _sqlx_migrations WHERE version = 21; \
         DROP TABLE persist_spent_keys; DELETE FROM _sqlx_migrations WHERE version = 22; \
         DELETE FROM _sqlx_migrations WHERE version = 23; \
         DROP TRIGGER persist_search_inserted; DROP TRIGGER persist_search_replaced; \
         DROP TRIGGER persist_search_updated; DROP TRIGGER persist_search_deleted; \
         DROP TABLE persist_search_pending; ALTER TABLE persist_search_state DROP COLUMN indexed; \
         UPDATE persist_format SET level = 3; DELETE FROM _sqlx_migrations WHERE version = 24; \
         DROP TABLE persist_records; DELETE FROM _sqlx_migrations WHERE version = 25;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let status = SqliteBackend::builder(&path).schema_status().await.unwrap();
    assert_eq!((status.applied, status.latest), (20, 25));

    let reader = SqliteBackend::builder(&path).read_only(true).open().await.unwrap();
    let page = reader.list(ListMessages::new(thread("t"))).await.unwrap();
    assert_eq!(page.items[0].content, Content::text("written at the version before"));
    let feed = reader.read_feed(persist_core::feed::ReadFeed::tenant()).await;
    assert!(
        matches!(&feed, Err(PersistError::Unsupported { what }) if what.contains("version 21")),
        "the feed of an older file is refused, with why: {feed:?}"
    );
    reader.close().await;
    assert_eq!(SqliteBackend::builder(&path).schema_status().await.unwrap().applied, 20, "read, not migrated");
    SqliteBackend::open(&path).await.unwrap().close().await;
    let reader = SqliteBackend::builder(&path).read_only(true).open().await.unwrap();
    let events = reader.read_feed(persist_core::feed::ReadFeed::tenant()).await.unwrap().events;
    assert_eq!(events.len(), 1, "migrated: the feed reads again");
    reader.close().await;
}

#[test]
fn a_runtime_without_timers_is_refused_with_a_clear_error() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let opened = runtime.block_on(SqliteBackend::open(dir.path().join("no-timers.db")));
    let error = opened.unwrap_err();
    assert!(matches!(error, PersistError::Unsupported { .. }), "{error:?}");
    assert!(error.to_string().contains("enable_time"), "{error}");
}
