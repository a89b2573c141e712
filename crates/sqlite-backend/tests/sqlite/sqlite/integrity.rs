//! Integrity: `check` on counters, damaged files refused on open, removed keys remembered.

use std::time::Duration;

use persist_core::args::Add;
use persist_core::read::ListMessages;
use persist_core::{Backend, Content, PersistError, Role};
use persist_sqlite::SqliteBackend;
use sqlx::Connection;

use super::{add, raw, thread};

#[tokio::test]
async fn check_reports_counters_that_disagree_with_the_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("counted.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    for i in 0..5 {
        backend.apply(add("t", &format!("{i}"))).await.unwrap();
    }
    let report = backend.check().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    // Edited behind persist's back.
    let mut conn = raw(&path).await;
    sqlx::query("UPDATE threads SET message_count = 99 WHERE thread_id = 't'").execute(&mut conn).await.unwrap();
    let report = backend.check().await.unwrap();
    assert!(!report.is_ok());
    assert!(report.structure.is_empty(), "{report:?}");
    assert_eq!(report.counters.len(), 1);
    assert!(report.counters[0].contains("thread t: message_count 99 but 5 messages"), "{report:?}");
}

#[tokio::test]
async fn a_damaged_file_is_refused_when_checked_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    for i in 0..300 {
        backend.apply(add(&format!("t{}", i % 7), &format!("message {i} {}", "y".repeat(200)))).await.unwrap();
    }
    backend.close().await;
    let checked = SqliteBackend::builder(&path).check_integrity(true).open().await.unwrap();
    assert!(checked.check().await.unwrap().is_ok());
    checked.close().await;
    // Garbage over the middle of the file's last pages, as a bad disk or a stray write would.
    let mut bytes = std::fs::read(&path).unwrap();
    let pages = bytes.len() / 4096;
    for page in pages - 4..pages {
        bytes[page * 4096 + 1000..page * 4096 + 3000].fill(0xa5);
    }
    std::fs::write(&path, &bytes).unwrap();
    let error = SqliteBackend::builder(&path).check_integrity(true).open().await.unwrap_err();
    assert!(matches!(error, PersistError::Backend { .. }), "{error:?}");
    assert!(error.to_string().contains("damaged"), "says the file is damaged: {error}");
}

/// A removed message's key is remembered for the builder's key retention, then forgotten: a
/// retry of its request is a repeat until then, a new write after.
#[tokio::test]
async fn a_removed_messages_key_is_remembered_for_the_retention_only() {
    use persist_core::IdempotencyKey;
    use persist_core::args::Delete;
    for (retention, remembered) in [(Duration::from_secs(3600), true), (Duration::ZERO, false)] {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::builder(dir.path().join("keys.db")).key_retention(retention).open().await.unwrap();
        let keyed = Add::new(thread("t"), Role::User, Content::text("hi"))
            .with_idempotency_key(IdempotencyKey::new("k").unwrap());
        let first = backend.apply(keyed.clone().into()).await.unwrap();
        let id = first.message().unwrap().id.clone();
        // A delete refused for its version keeps no key.
        let stale = Delete::message(thread("t"), id.clone()).with_expected_version(7);
        assert!(matches!(backend.apply(stale.into()).await, Err(PersistError::VersionConflict { .. })));
        let mut conn = raw(&dir.path().join("keys.db")).await;
        let kept: i64 =
            sqlx::query_scalar("SELECT count(*) FROM persist_spent_keys").fetch_one(&mut conn).await.unwrap();
        assert_eq!(kept, 0, "nothing kept for a refused delete");
        backend.apply(Delete::message(thread("t"), id).into()).await.unwrap();
        let kept: i64 =
            sqlx::query_scalar("SELECT count(*) FROM persist_spent_keys").fetch_one(&mut conn).await.unwrap();
        assert_eq!(kept, 1, "the key kept as its message went");
        conn.close().await.unwrap();
        let again = backend.apply(keyed.into()).await.unwrap();
        assert_eq!(again.is_deduplicated(), remembered, "retention {retention:?}");
        let listed = backend.list(ListMessages::new(thread("t"))).await.unwrap().items.len();
        assert_eq!(listed, usize::from(!remembered), "retention {retention:?}");
        backend.close().await;
    }
}
