//! Search on SQLite beyond the conformance suite: a file of the previous version indexed by its
//! upgrade, a purged message's words gone from the file, the index turned off and on again,
//! `VACUUM`, and a read-only handle on a file not yet upgraded.

use persist_core::args::Delete;
use persist_core::search::Search;
use persist_core::{Backend, PersistError};
use persist_sqlite::SqliteBackend;
use sqlx::Connection;

use crate::support::{add, raw, shipped_schema, thread};

async fn found(backend: &SqliteBackend, text: &str) -> Vec<String> {
    let page = backend.search(Search::new(text)).await.unwrap();
    page.items.into_iter().map(|hit| hit.snippet.text).collect()
}

fn file_holds(path: &std::path::Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.windows(needle.len()).any(|window| window == needle.as_bytes())
}

/// A file of version 13 (before search), written by that version: a read-only handle refuses it
/// (it cannot upgrade it); opened writable, the upgrade indexes every message it holds (complete
/// and interrupted, not reserved), text and tool results alike.
#[tokio::test]
async fn a_version_13_file_is_indexed_by_its_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v13.db");
    let mut conn = shipped_schema(&dir, &path, 13).await;
    sqlx::raw_sql(
        "INSERT INTO threads (tenant, thread_id, created_at, updated_at) VALUES ('acme', 'old', 1, 1); \
         INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               created_at, updated_at) VALUES \
           ('acme', 'old', 'm1', 1, 'user', '[{\"type\":\"text\",\"text\":\"written before search\"}]', '{}', \
            'complete', 1, 10, 10), \
           ('acme', 'old', 'm2', 2, 'tool', \
            '[{\"type\":\"tool_result\",\"call_id\":\"c\",\"output\":[{\"type\":\"text\",\"text\":\"tool before\"}],\"is_error\":false}]', \
            '{}', 'complete', 1, 20, 20), \
           ('acme', 'old', 'm3', 3, 'assistant', '[{\"type\":\"text\",\"text\":\"cut before\"}]', '{}', \
            'interrupted', 2, 30, 30), \
           ('acme', 'old', 'm4', 4, 'assistant', '[{\"type\":\"text\",\"text\":\"pending before\"}]', '{}', \
            'reserved', 1, 40, 40);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let refused = SqliteBackend::builder(&path).read_only(true).open().await.unwrap_err();
    assert!(matches!(&refused, PersistError::Unsupported { what } if what.contains("upgrade")), "{refused:?}");

    let backend = SqliteBackend::open(&path).await.unwrap();
    let acme = persist_core::Context::new().with_tenant(persist_core::TenantId::new("acme").unwrap());
    let page = backend.search(Search::new("before").with_context(acme)).await.unwrap();
    let seqs: Vec<u64> = page.items.iter().map(|hit| hit.seq).collect();
    assert_eq!(seqs, [3, 2, 1], "every message but the reserved one, newest first");
    backend.close().await;
}

/// A purged thread's words leave the index in the purge's transaction and leave no trace in
/// the file (FTS5's `secure-delete` with the writer's `secure_delete`). Without `secure-delete`
/// the same writes leave the word in the file: the check can fail.
#[tokio::test]
async fn a_purged_message_leaves_no_word_in_the_file() {
    const MARKER: &str = "zqxmarker4242";
    for secure in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("purge.db");
        let backend = SqliteBackend::open(&path).await.unwrap();
        if !secure {
            let mut conn = raw(&path).await;
            sqlx::query("INSERT INTO persist_search (persist_search, rank) VALUES ('secure-delete', 0)")
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
        for i in 0..20 {
            backend.apply(add("kept", &format!("kept message {i} about other words"))).await.unwrap();
        }
        backend.apply(add("secret", &format!("the code is {MARKER} do not share"))).await.unwrap();
        assert_eq!(found(&backend, MARKER).await.len(), 1);
        backend.apply(Delete::purge(thread("secret")).into()).await.unwrap();
        assert!(found(&backend, MARKER).await.is_empty(), "not found once purged");
        assert_eq!(found(&backend, "kept").await.len(), 20, "the rest stays found");
        backend.close().await;
        let wal = dir.path().join("purge.db-wal");
        let left = file_holds(&path, MARKER) || file_holds(&wal, MARKER);
        assert_eq!(left, !secure, "secure-delete {secure}: the marker is in the file: {left}");
    }
}

/// Opened with the index off, the file's index is emptied and writes leave it alone; a search
/// through any handle says so (never an empty page); a handle that does not ask (a command line
/// opening the file for a moment) leaves the setting as it is; opened with it on, the index is
/// rebuilt from every message, those written meanwhile included.
#[tokio::test]
async fn the_index_turned_off_then_on_again_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("toggle.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    backend.apply(add("t", "before turning off")).await.unwrap();
    backend.close().await;

    let off = SqliteBackend::builder(&path).search_index(false).open().await.unwrap();
    assert!(!off.capabilities().search);
    off.apply(add("t", "while off")).await.unwrap();
    let refused = off.search(Search::new("off")).await.unwrap_err();
    assert!(matches!(&refused, PersistError::Unsupported { what } if what.contains("search_index")), "{refused:?}");
    let mut conn = raw(&path).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM persist_search_data").fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    assert!(rows <= 2, "the index holds no segment while off: {rows} rows");
    off.close().await;

    let passing = SqliteBackend::open(&path).await.unwrap();
    assert!(!passing.capabilities().search, "a handle that does not ask keeps it off");
    passing.apply(add("t", "passing by")).await.unwrap();
    passing.close().await;
    let reader = SqliteBackend::builder(&path).read_only(true).open().await.unwrap();
    assert!(!reader.capabilities().search, "a reader says what the file has");
    reader.close().await;

    let on = SqliteBackend::builder(&path).search_index(true).open().await.unwrap();
    assert!(on.capabilities().search);
    assert_eq!(found(&on, "passing").await, ["passing by"]);
    assert_eq!(found(&on, "off").await, ["while off", "before turning off"]);
    on.close().await;
}

/// `VACUUM` rewrites the file; the index still finds each message by its text, and a message
/// deleted afterwards leaves it.
#[tokio::test]
async fn the_index_survives_a_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vacuum.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..30 {
        let written = backend.apply(add(&format!("t{}", i % 3), &format!("note{i} common"))).await.unwrap();
        ids.push(written.message().unwrap().id.clone());
    }
    // Some rows gone first, so a VACUUM that renumbered rows would move the others.
    for i in (0..30).step_by(4) {
        let delete = Delete::message(thread(&format!("t{}", i % 3)), ids[i].clone());
        backend.apply(delete.into()).await.unwrap();
    }
    backend.close().await;
    let mut conn = raw(&path).await;
    sqlx::raw_sql("VACUUM").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let backend = SqliteBackend::open(&path).await.unwrap();
    for i in 0..30 {
        let hits = found(&backend, &format!("note{i}")).await;
        if i % 4 == 0 {
            assert!(hits.is_empty(), "note{i} was deleted");
        } else {
            assert_eq!(hits, [format!("note{i} common")]);
        }
    }
    let delete = Delete::message(thread("t1"), ids[1].clone());
    backend.apply(delete.into()).await.unwrap();
    assert!(found(&backend, "note1").await.is_empty());
    assert!(backend.check().await.unwrap().is_ok());
    backend.close().await;
}
