//! A file of schema version 12 (before summaries): read for reads only as it is, upgraded when
//! opened writable.

mod support;

use persist_core::Backend;
use persist_core::summary::{ListSummaries, ReadCompacted, Summarize};
use persist_sqlite::SqliteBackend;
use sqlx::Connection;
use support::{add, raw, shipped_schema, thread};

/// A version 12 file (before summaries): a read-only handle still reads it, answering no
/// summaries and a compacted read of every message; opened writable it takes summaries, and
/// the upgrade records no feed event.
#[tokio::test]
async fn a_version_12_database_reads_without_summaries_and_takes_them_once_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v12.db");
    let conn = shipped_schema(&dir, &path, 12).await;
    conn.close().await.unwrap();
    // Written, then taken back to version 12 as it shipped (version 13 only adds its tables): the
    // file of a store the previous release wrote.
    let writer = SqliteBackend::open(&path).await.unwrap();
    for text in ["a", "b", "c"] {
        writer.apply(add("t", text)).await.unwrap();
    }
    writer.close().await;
    let mut conn = raw(&path).await;
    sqlx::raw_sql("DROP TABLE summaries; DROP TABLE leases; DELETE FROM _sqlx_migrations WHERE version = 13")
        .execute(&mut conn)
        .await
        .unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM persist_feed").fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let reader = SqliteBackend::builder(&path).read_only(true).open().await.unwrap();
    assert!(reader.summaries(ListSummaries::new(thread("t"))).await.unwrap().items.is_empty());
    let read = reader.compacted(ReadCompacted::new(thread("t"))).await.unwrap();
    assert_eq!((read.summary, read.messages.len()), (None, 3));
    reader.close().await;

    let backend = SqliteBackend::open(&path).await.unwrap();
    let mut conn = raw(&path).await;
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM persist_feed").fetch_one(&mut conn).await.unwrap();
    assert_eq!(after, events, "the upgrade is not a write: no event");
    conn.close().await.unwrap();
    let summary = Summarize::new(thread("t"), 2, persist_core::Content::text("a, b"));
    backend.apply(summary.into()).await.unwrap();
    let read = backend.compacted(ReadCompacted::new(thread("t"))).await.unwrap();
    assert_eq!((read.summary.map(|s| s.through_seq), read.messages.len()), (Some(2), 1));
    backend.close().await;
}
