//! Schema version 17's packed messages: a file of version 16 is upgraded by copying its
//! messages to `persist_messages` in batches before the new build serves; until it is
//! finished, writes of version 16 (to `messages`) and of this build (to `persist_messages`) are
//! kept in step both ways, each numbered, fed and indexed once; finishing hands everything to
//! `persist_messages` and drops `messages`. A store whose copy is not complete is refused to a
//! handle that does not migrate.

use persist_core::args::{Delete, UpdateContent};
use persist_core::feed::ReadFeed;
use persist_core::read::{GetMessage, ListMessages};
use persist_core::search::Search;
use persist_core::{Backend, Content, MessageId, PersistError, Status};
use persist_sqlite::SqliteBackend;
use sqlx::Connection;

use crate::support::{add, raw, shipped_schema, thread};

/// A UUID id in its canonical text (stored as its 16 bytes from version 17 on).
const UUID: &str = "0191d5a8-7c3e-7c11-9a2b-5f6e7d8c9b0a";

/// Messages of the threads `t0` … `t4` as version 16 writes them (its triggers number, feed
/// and index them) in a store of format `level` (0: migrated from version 14, its feed in
/// `persist_feed`; 2: finished, in `persist_events`), 2,600 in all: more than two batches of
/// the copy. `t0`'s first is a UUID, its second reserved with metadata, its third updated after
/// its creation.
async fn version_16_file(dir: &tempfile::TempDir, path: &std::path::Path, level: i64) {
    let mut conn = shipped_schema(dir, path, 16).await;
    sqlx::query("UPDATE persist_format SET level = ?1").bind(level).execute(&mut conn).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO threads (tenant, thread_id, created_at, updated_at) \
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 4) SELECT '', 't' || i, 1, 1 FROM n; \
         INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               created_at, updated_at) VALUES \
             ('', 't0', '{UUID}', 1, 'user', '\"a uuid\"', '{{}}', 'complete', 1, 10, 10), \
             ('', 't0', 'reserved', 2, 'assistant', '[]', '{{\"k\":1}}', 'reserved', 1, 20, 20), \
             ('', 't0', 'edited', 3, 'user', '\"edited words\"', '{{}}', 'complete', 2, 30, 35);"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let mut tx = conn.begin().await.unwrap();
    for i in 0..2597 {
        let thread = format!("t{}", 1 + i % 4);
        sqlx::query(
            "INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, content_form, metadata, \
                                   status, version, created_at, updated_at) \
             SELECT '', ?1, ?2, last_seq + 1, 'user', ?3, 1, '{}', 'complete', 1, ?4, ?4 \
               FROM threads WHERE tenant = '' AND thread_id = ?1",
        )
        .bind(&thread)
        .bind(format!("m{i}"))
        .bind(format!("\"message {i}\""))
        .bind(100 + i64::from(i))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    conn.close().await.unwrap();
}

/// The rows of `messages` (as version 16 reads them) of thread `t0`: id, seq, status,
/// metadata, whether updated_at equals created_at.
async fn old_rows(path: &std::path::Path) -> Vec<(String, i64, String, String)> {
    let mut conn = raw(path).await;
    let rows = sqlx::query_as(
        "SELECT message_id, seq, status, metadata FROM messages WHERE tenant = '' AND thread_id = 't0' ORDER BY seq",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    rows
}

/// Each thread's counters against its messages: none disagree.
async fn counters_agree(backend: &SqliteBackend) {
    let report = backend.check().await.unwrap();
    assert!(report.counters.is_empty(), "{report:?}");
}

/// `messages` and `persist_messages` hold the same rows, mapped (checked before finishing).
async fn tables_agree(path: &std::path::Path) {
    let mut conn = raw(path).await;
    let (old, new): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM messages), (SELECT count(*) FROM persist_messages)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(old, new, "as many rows in both tables");
    let differ: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages m JOIN threads t ON t.tenant = m.tenant AND t.thread_id = m.thread_id \
                  WHERE NOT EXISTS (SELECT 1 FROM persist_messages p \
                                     WHERE p.row = m.rowid AND p.thread = t.key AND p.seq = m.seq \
                                       AND p.message_id = CASE WHEN length(m.message_id) = 36 \
                                                               THEN unhex(m.message_id, '-') ELSE m.message_id END \
                                       AND p.role IS (CASE m.role WHEN 'user' THEN 0 WHEN 'assistant' THEN 1 \
                                                                  WHEN 'system' THEN 2 WHEN 'tool' THEN 3 \
                                                                  ELSE m.role END) \
                                       AND p.content = m.content AND p.content_form IS m.content_form \
                                       AND coalesce(p.metadata, '{}') = m.metadata \
                                       AND coalesce(p.status, 'complete') = m.status AND p.version = m.version \
                                       AND p.created_at = m.created_at \
                                       AND coalesce(p.updated_at, p.created_at) = m.updated_at \
                                       AND p.idempotency_key IS m.idempotency_key AND p.delta IS m.delta \
                                       AND p.delta_version IS m.delta_version AND p.parent_seq IS m.parent_seq)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    assert_eq!(differ, 0, "the two tables differ");
}

#[tokio::test]
async fn a_version_16_file_is_copied_and_kept_in_step_until_finished() {
    kept_in_step(0).await;
}

#[tokio::test]
async fn a_finished_version_16_file_is_copied_and_kept_in_step_until_finished() {
    kept_in_step(2).await;
}

async fn kept_in_step(level: i64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v16.db");
    version_16_file(&dir, &path, level).await;

    let backend = SqliteBackend::builder(&path).feed(Some(Default::default())).open().await.unwrap();
    assert!(SqliteBackend::builder(&path).schema_status().await.unwrap().unfinished);
    let mut conn = raw(&path).await;
    let (upto, done): (i64, i64) =
        sqlx::query_as("SELECT upto, done FROM persist_copy").fetch_one(&mut conn).await.unwrap();
    assert_eq!((upto, done), (2600, 2600), "copied whole before the handle served");
    let (copied, blobs): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE typeof(message_id) = 'blob') FROM persist_messages")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((copied, blobs), (2600, 1), "the UUID id as its bytes");
    conn.close().await.unwrap();

    // Read as version 16 wrote them.
    let t0 = backend.list(ListMessages::new(thread("t0")).include_reserved(true)).await.unwrap().items;
    let seen: Vec<_> = t0.iter().map(|m| (m.id.as_str(), m.seq, m.status, m.metadata.is_empty())).collect();
    assert_eq!(
        seen,
        [
            (UUID, 1, Status::Complete, true),
            ("reserved", 2, Status::Reserved, false),
            ("edited", 3, Status::Complete, true)
        ]
    );
    assert_eq!((t0[2].created_at.as_micros(), t0[2].updated_at.as_micros(), t0[2].version), (30, 35, 2));
    assert_eq!(t0[0].updated_at, t0[0].created_at);
    let t1 = backend.list(ListMessages::new(thread("t1")).with_limit(1000)).await.unwrap();
    assert_eq!(t1.items.len(), 650);
    assert_eq!(t1.items[649].content.to_text(), "message 2596");

    // Version 16 still writes `messages`: a new message in an old thread, one in a thread it
    // makes, an update and a delete. This build reads each at once.
    let before = backend.read_feed(ReadFeed::across_tenants()).await.unwrap().head;
    let mut conn = raw(&path).await;
    sqlx::raw_sql(
        "INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               created_at, updated_at) \
             SELECT '', 't0', 'from-16', last_seq + 1, 'user', '\"old build\"', '{}', 'complete', 1, 40, 40 \
               FROM threads WHERE thread_id = 't0'; \
         INSERT INTO threads (tenant, thread_id, created_at, updated_at) VALUES ('', 'made-by-16', 50, 50); \
         INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               created_at, updated_at) \
             VALUES ('', 'made-by-16', 'first', 1, 'user', '\"in a new thread\"', '{}', 'complete', 1, 50, 50); \
         UPDATE messages SET content = '\"edited again\"', version = 3, updated_at = 60 WHERE message_id = 'edited'; \
         DELETE FROM messages WHERE message_id = 'm0'; \
         INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               created_at, updated_at) \
             VALUES ('', 'made-by-16', '7f000000-0000-4000-8000-000000000016', 2, 'tool', '\"a uuid of 16\"', \
                     '{}', 'complete', 1, 51, 51);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let get = |t: &str, id: &str| GetMessage::new(thread(t), MessageId::new(id).unwrap());
    assert_eq!(backend.get(get("t0", "from-16")).await.unwrap().unwrap().seq, 4);
    assert_eq!(backend.get(get("made-by-16", "first")).await.unwrap().unwrap().content.to_text(), "in a new thread");
    let edited = backend.get(get("t0", "edited")).await.unwrap().unwrap();
    assert_eq!((edited.content.to_text().as_str(), edited.version), ("edited again", 3));
    assert!(backend.get(get("t1", "m0")).await.unwrap().is_none());
    let by_uuid = backend.get(get("made-by-16", "7f000000-0000-4000-8000-000000000016")).await.unwrap().unwrap();
    assert_eq!((by_uuid.seq, by_uuid.role.as_str()), (2, "tool"));

    // This build writes `persist_messages`; version 16 reads each in its form.
    backend.apply(add("t0", "new build")).await.unwrap();
    let reply = MessageId::new("2a1b3c4d-0000-4000-8000-00000000abcd").unwrap();
    backend
        .apply(
            persist_core::args::Reserve::new(thread("t0"), persist_core::Role::Assistant).with_id(reply.clone()).into(),
        )
        .await
        .unwrap();
    backend.apply(UpdateContent::new(thread("t0"), reply.clone(), Content::text("answered")).into()).await.unwrap();
    backend.apply(Delete::message(thread("t0"), MessageId::new("reserved").unwrap()).into()).await.unwrap();
    // A thread cut after its 600th message, another deleted whole.
    backend.apply(Delete::after(thread("t2"), 600).into()).await.unwrap();
    backend.apply(Delete::thread(thread("t3")).into()).await.unwrap();
    tables_agree(&path).await;
    let old = old_rows(&path).await;
    let ids: Vec<_> =
        old.iter().map(|(id, seq, status, metadata)| (id.as_str(), *seq, status.as_str(), metadata.as_str())).collect();
    assert_eq!(ids[0], (UUID, 1, "complete", "{}"), "as its text");
    assert_eq!(ids[1], ("edited", 3, "complete", "{}"));
    assert_eq!(ids[2], ("from-16", 4, "complete", "{}"));
    assert_eq!((ids[3].1, ids[3].2, ids[3].3), (5, "complete", "{}"), "the new build's add");
    assert_eq!(ids[4], (reply.as_str(), 6, "complete", "{}"), "its reply, answered");
    assert_eq!(ids.len(), 5, "the reserved message deleted in both");

    // Each write numbered, fed and indexed once.
    let events = backend.read_feed(ReadFeed::across_tenants().after(before)).await.unwrap().events;
    let ops: Vec<_> = events
        .iter()
        .map(|e| (e.change.op.as_str(), e.change.thread_id.as_ref().map(|t| t.as_str().to_owned()).unwrap_or_default()))
        .collect();
    let op = |op: &'static str, t: &str| (op, t.to_owned());
    let mut expected = vec![
        op("add", "t0"),
        op("add", "made-by-16"),
        op("update_content", "t0"),
        op("delete", "t1"),
        op("add", "made-by-16"),
        op("add", "t0"),
        op("reserve", "t0"),
        op("update_content", "t0"),
        op("delete", "t0"),
    ];
    expected.extend((601..=649).map(|_| op("delete", "t2")));
    expected.extend([op("update", "t2"), op("delete", "t3")]);
    assert_eq!(ops, expected);
    counters_agree(&backend).await;
    let hits = |backend: SqliteBackend, words: &'static str| async move {
        backend
            .search(Search::new(words))
            .await
            .unwrap()
            .items
            .iter()
            .map(|h| h.message_id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(hits(backend.clone(), "old build").await, ["from-16"]);
    assert_eq!(hits(backend.clone(), "answered").await, [reply.to_string()]);
    assert_eq!(hits(backend.clone(), "edited").await, ["edited"]);
    assert!(hits(backend.clone(), "words").await.is_empty(), "the replaced words gone from the index");
    assert_eq!(hits(backend.clone(), "uuid of").await, ["7f000000-0000-4000-8000-000000000016"]);
    backend.close().await;

    // Finished: `messages` and the mirrors gone, every row read as before, writes fed once.
    assert!(!SqliteBackend::builder(&path).finish().await.unwrap().unfinished);
    let mut conn = raw(&path).await;
    let left: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE name LIKE '%mirror%' OR tbl_name = 'messages' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(left.is_empty(), "{left:?}");
    // An instance of version 16 still running finds no table to write to, or to read.
    let late = sqlx::query(
        "INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               created_at, updated_at) \
             VALUES ('', 't0', 'too-late', 99, 'user', '\"lost?\"', '{}', 'complete', 1, 70, 70)",
    )
    .execute(&mut conn)
    .await
    .unwrap_err();
    assert!(late.to_string().contains("no such table: messages"), "{late}");
    conn.close().await.unwrap();
    let backend = SqliteBackend::open(&path).await.unwrap();
    let t0: Vec<_> = backend.list(ListMessages::new(thread("t0"))).await.unwrap().items;
    let texts: Vec<_> = t0.iter().map(|m| m.content.to_text()).collect();
    assert_eq!(texts, ["a uuid", "edited again", "old build", "new build", "answered"]);
    let head = backend.read_feed(ReadFeed::across_tenants()).await.unwrap().head;
    backend.apply(add("t0", "after finishing")).await.unwrap();
    backend.apply(Delete::message(thread("t0"), MessageId::new(UUID).unwrap()).into()).await.unwrap();
    let events = backend.read_feed(ReadFeed::across_tenants().after(head)).await.unwrap().events;
    let ops: Vec<_> =
        events.iter().map(|e| (e.change.op.as_str(), e.change.message_id.as_ref().map(ToString::to_string))).collect();
    assert_eq!(ops[0].0, "add");
    assert_eq!(ops[1], ("delete", Some(UUID.to_owned())));
    assert_eq!(ops.len(), 2);
    counters_agree(&backend).await;
    assert_eq!(hits(backend.clone(), "old build").await, ["from-16"]);
    assert_eq!(hits(backend.clone(), "finishing").await.len(), 1);
    backend.close().await;
}

/// Version 17 applied without the copy (a build stopped before it finished it) to a store of
/// version 15, whose thread has no key: version 16 writing to it meanwhile keys it and is
/// mirrored. The status says 17 is pending; a handle that does not migrate, and one for reads
/// only, refuse the store, saying why; one that migrates completes the copy, after which both
/// open it and read every message.
#[tokio::test]
async fn a_store_whose_copy_is_not_complete_is_refused_until_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("half.db");
    let mut conn = shipped_schema(&dir, &path, 15).await;
    sqlx::raw_sql(
        "INSERT INTO threads (tenant, thread_id, created_at, updated_at) VALUES ('', 't', 1, 1), ('', 'u', 1, 1); \
         INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               created_at, updated_at) \
             VALUES ('', 't', 'a', 1, 'user', '\"one\"', '{}', 'complete', 1, 1, 1);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let dir17 = tempfile::tempdir().unwrap();
    let mut conn = shipped_schema(&dir17, &path, 17).await;
    sqlx::raw_sql(
        "INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               created_at, updated_at) \
             VALUES ('', 'u', 'b', 1, 'user', '\"two\"', '{}', 'complete', 1, 2, 2);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let keys: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT thread_id, key FROM threads ORDER BY rowid").fetch_all(&mut conn).await.unwrap();
    assert_eq!(keys, [("t".to_owned(), None), ("u".to_owned(), Some(1))], "keyed as version 16 wrote to it");
    conn.close().await.unwrap();

    let status = SqliteBackend::builder(&path).schema_status().await.unwrap();
    assert_eq!((status.applied, status.pending.len(), status.pending[0].version), (16, 9, 17));
    let refused = SqliteBackend::builder(&path).migrate(false).open().await.unwrap_err();
    assert!(matches!(refused, PersistError::Unsupported { .. }), "{refused:?}");
    assert!(refused.to_string().contains("pending: 17 compact messages"), "{refused}");
    let refused = SqliteBackend::builder(&path).read_only(true).open().await.unwrap_err();
    assert!(refused.to_string().contains("being copied"), "{refused}");
    assert!(refused.to_string().contains("persist migrate up"), "{refused}");
    SqliteBackend::open(&path).await.unwrap().close().await;
    assert!(SqliteBackend::builder(&path).schema_status().await.unwrap().is_current());
    for read_only in [false, true] {
        let backend = SqliteBackend::builder(&path).migrate(false).read_only(read_only).open().await.unwrap();
        let get = |t: &str, id: &str| GetMessage::new(thread(t), MessageId::new(id).unwrap());
        assert_eq!(backend.get(get("t", "a")).await.unwrap().unwrap().content.to_text(), "one");
        assert_eq!(backend.get(get("u", "b")).await.unwrap().unwrap().content.to_text(), "two");
        backend.close().await;
    }
    let mut conn = raw(&path).await;
    let keys: Vec<(String, Option<i64>)> =
        sqlx::query_as("SELECT thread_id, key FROM threads ORDER BY rowid").fetch_all(&mut conn).await.unwrap();
    assert_eq!(keys, [("t".to_owned(), Some(2)), ("u".to_owned(), Some(1))]);
    conn.close().await.unwrap();
}

/// A finish stopped while it emptied the old table (renamed `persist_messages_retired`) goes on
/// at the next opening that migrates; until then, freeing a thread's id removes the thread's
/// rows there first (their foreign key names the thread's row).
#[tokio::test]
async fn a_finish_stopped_while_emptying_the_old_table_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("draining.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    backend.apply(add("kept", "a message")).await.unwrap();
    backend.apply(add("freed", "another")).await.unwrap();
    backend.close().await;
    let mut conn = raw(&path).await;
    sqlx::raw_sql(
        "CREATE TABLE persist_messages_retired (tenant TEXT NOT NULL, thread_id TEXT NOT NULL, message_id TEXT, \
                                                FOREIGN KEY (tenant, thread_id) REFERENCES threads (tenant, thread_id)); \
         CREATE INDEX retired_by_thread ON persist_messages_retired (tenant, thread_id); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) \
         INSERT INTO persist_messages_retired SELECT '', CASE i % 2 WHEN 0 THEN 'kept' ELSE 'freed' END, i FROM n;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let retired = || async {
        let mut conn = raw(&path).await;
        let left: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM persist_messages_retired")
            .fetch_optional(&mut conn)
            .await
            .ok()
            .flatten();
        conn.close().await.unwrap();
        left
    };
    assert!(SqliteBackend::builder(&path).schema_status().await.unwrap().unfinished, "the finish is not done");
    let untouched = SqliteBackend::builder(&path).migrate(false).open().await.unwrap();
    untouched.apply(Delete::purge(thread("freed")).freeing_id(true).into()).await.unwrap();
    untouched.close().await;
    assert_eq!(retired().await, Some(1250), "the freed thread's rows gone with it");
    SqliteBackend::open(&path).await.unwrap().close().await;
    assert_eq!(retired().await, None, "emptied and dropped");
    assert!(!SqliteBackend::builder(&path).schema_status().await.unwrap().unfinished);
    let backend = SqliteBackend::open(&path).await.unwrap();
    let kept = backend.list(ListMessages::new(thread("kept"))).await.unwrap().items;
    assert_eq!(kept.len(), 1);
    backend.close().await;
}

/// A message of version 16 whose thread has no row (written with foreign keys off) cannot be
/// named by its thread's key: the copy refuses it, saying which, and copies nothing past it.
#[tokio::test]
async fn a_message_without_its_thread_row_is_refused_by_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orphan.db");
    let mut conn = shipped_schema(&dir, &path, 16).await;
    sqlx::raw_sql(
        "PRAGMA foreign_keys = OFF; \
         INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               created_at, updated_at) \
             VALUES ('', 'nowhere', 'lost', 1, 'user', '\"orphan\"', '{}', 'complete', 1, 1, 1);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let refused = SqliteBackend::open(&path).await.unwrap_err();
    let said = refused.to_string();
    assert!(said.contains("\"nowhere\"") && said.contains("has no row in `threads`"), "{said}");
    assert!(!SqliteBackend::builder(&path).schema_status().await.unwrap().is_current(), "17 still pending");
}
