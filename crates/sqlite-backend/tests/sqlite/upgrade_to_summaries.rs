//! A file of schema version 12 (before summaries): refused by a read-only handle (which cannot
//! upgrade it), upgraded when opened writable.

use persist_core::Backend;
use persist_core::summary::{ReadCompacted, Summarize};
use persist_sqlite::SqliteBackend;
use sqlx::Connection;

use crate::support::{raw, shipped_schema, thread};

/// A version 12 file (before summaries) as that version wrote it: a read-only handle refuses
/// it, saying to open it writable once; opened writable it takes summaries, and the upgrade
/// records no feed event.
#[tokio::test]
async fn a_version_12_database_is_refused_for_reads_only_and_takes_summaries_once_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v12.db");
    let mut conn = shipped_schema(&dir, &path, 12).await;
    // Three messages, as version 12's triggers record them (counters, leaf, feed events).
    sqlx::raw_sql(
        "INSERT INTO threads (tenant, thread_id, created_at, updated_at) VALUES ('', 't', 1, 1); \
         INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               created_at, updated_at) VALUES \
             ('', 't', 'm1', 1, 'user', '[{\"text\":\"a\",\"type\":\"text\"}]', '{}', 'complete', 1, 1, 1), \
             ('', 't', 'm2', 2, 'user', '[{\"text\":\"b\",\"type\":\"text\"}]', '{}', 'complete', 1, 2, 2), \
             ('', 't', 'm3', 3, 'user', '[{\"text\":\"c\",\"type\":\"text\"}]', '{}', 'complete', 1, 3, 3);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM persist_feed").fetch_one(&mut conn).await.unwrap();
    assert_eq!(events, 3);
    conn.close().await.unwrap();

    let refused = SqliteBackend::builder(&path).read_only(true).open().await.unwrap_err();
    assert!(refused.to_string().contains("open it writable once to upgrade it"), "{refused}");

    let backend = SqliteBackend::open(&path).await.unwrap();
    let mut conn = raw(&path).await;
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM persist_feed").fetch_one(&mut conn).await.unwrap();
    assert_eq!(after, events, "the upgrade is not a write: no event");
    conn.close().await.unwrap();
    let read = backend.compacted(ReadCompacted::new(thread("t"))).await.unwrap();
    assert_eq!((read.summary, read.messages.len()), (None, 3));
    let summary = Summarize::new(thread("t"), 2, persist_core::Content::text("a, b"));
    backend.apply(summary.into()).await.unwrap();
    let read = backend.compacted(ReadCompacted::new(thread("t"))).await.unwrap();
    assert_eq!((read.summary.map(|s| s.through_seq), read.messages.len()), (Some(2), 1));
    let texts: Vec<String> = read.messages.iter().map(|m| m.content.to_text()).collect();
    assert_eq!(texts, ["c"]);
    backend.close().await;
}
