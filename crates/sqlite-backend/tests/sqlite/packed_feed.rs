//! Schema version 16's packed feed: a store this version creates writes its events into
//! `persist_events` (the thread by its key, a UUID message id as its 16 bytes, the op as a
//! number); a file of version 15 goes on writing `persist_feed` until it is finished; after, the
//! feed reads both tables as one (one numbering), retention and a freed id erase in both.

use persist_core::args::{Delete, Reserve, UpdateContent};
use persist_core::feed::{FeedEvent, FeedRetention, ReadFeed, Removed};
use persist_core::{Backend, MessageId, PersistOp, Role};
use persist_sqlite::SqliteBackend;
use sqlx::Connection;

use crate::support::{add, raw, shipped_schema, thread};

/// Each stored event: its table (`feed`, `events`), its op as the table stores it, and its
/// message id's storage class (`blob`, `text`, `null`), in position order.
async fn stored(path: &std::path::Path) -> Vec<(String, String, String)> {
    let mut conn = raw(path).await;
    let rows = sqlx::query_as(
        "SELECT 'feed', op, typeof(message_id), position FROM persist_feed \
         UNION ALL SELECT 'events', CAST(op AS TEXT), typeof(message_id), position FROM persist_events ORDER BY 4",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    rows.into_iter().map(|(table, op, class, _): (String, String, String, i64)| (table, op, class)).collect()
}

fn row(table: &str, op: &str, class: &str) -> (String, String, String) {
    (table.to_owned(), op.to_owned(), class.to_owned())
}

/// What a reader is told: position, thread, op and message id of each event.
fn told(events: &[FeedEvent]) -> Vec<(u64, String, PersistOp, Option<String>)> {
    events
        .iter()
        .map(|e| {
            (
                e.position,
                e.change.thread_id.as_ref().map(ToString::to_string).unwrap_or_default(),
                e.change.op,
                e.change.message_id.as_ref().map(|m| m.to_string()),
            )
        })
        .collect()
}

async fn all_events(backend: &SqliteBackend) -> Vec<FeedEvent> {
    backend.read_feed(ReadFeed::across_tenants().with_limit(1000)).await.unwrap().events
}

async fn thread_events(backend: &SqliteBackend, id: &str) -> Vec<FeedEvent> {
    backend.read_feed(ReadFeed::thread(thread(id)).with_limit(1000)).await.unwrap().events
}

/// A new store: events in `persist_events`, a UUID id as 16 bytes, any other id as its text,
/// read back exactly, in every scope, paged; threads keyed, each its own key, never given again.
#[tokio::test]
async fn a_new_store_writes_packed_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    let generated = backend.apply(add("t", "one")).await.unwrap().message().unwrap().id.clone();
    let upper: MessageId = "0196D5A4-7C1E-7A3B-9F00-0123456789AB".parse().unwrap();
    let named: MessageId = "message-1".parse().unwrap();
    for id in [&upper, &named] {
        let add =
            persist_core::args::Add::new(thread("t"), Role::User, persist_core::Content::text("x")).with_id(id.clone());
        backend.apply(add.into()).await.unwrap();
    }
    let slot = backend.apply(Reserve::new(thread("u"), Role::Assistant).into()).await.unwrap();
    let slot = slot.message().unwrap().id.clone();
    backend
        .apply(UpdateContent::new(thread("u"), slot.clone(), persist_core::Content::text("done")).into())
        .await
        .unwrap();
    backend.apply(Delete::message(thread("t"), named.clone()).into()).await.unwrap();

    assert_eq!(
        stored(&path).await,
        [
            row("events", "0", "blob"),
            row("events", "0", "text"),
            row("events", "0", "text"),
            row("events", "1", "blob"),
            row("events", "2", "blob"),
            row("events", "4", "text"),
        ],
        "a canonical UUID as 16 bytes; upper case and other ids as their text"
    );
    let everything = all_events(&backend).await;
    let id = |m: &MessageId| Some(m.to_string());
    assert_eq!(
        told(&everything),
        [
            (1, "t".into(), PersistOp::Add, id(&generated)),
            (2, "t".into(), PersistOp::Add, id(&upper)),
            (3, "t".into(), PersistOp::Add, id(&named)),
            (4, "u".into(), PersistOp::Reserve, id(&slot)),
            (5, "u".into(), PersistOp::UpdateContent, id(&slot)),
            (6, "t".into(), PersistOp::Delete, id(&named)),
        ]
    );
    assert_eq!(everything[5].change.removed, Some(Removed::Message));
    assert_eq!(told(&thread_events(&backend, "u").await), told(&everything[3..5]));
    let page = backend.read_feed(ReadFeed::tenant().after(1).with_limit(2)).await.unwrap();
    assert_eq!(told(&page.events), told(&everything[1..3]));
    assert!(page.has_more);

    let mut conn = raw(&path).await;
    let keys: Vec<(String, i64)> =
        sqlx::query_as("SELECT thread_id, key FROM threads ORDER BY key").fetch_all(&mut conn).await.unwrap();
    assert_eq!(keys, [("t".to_owned(), 1), ("u".to_owned(), 2)]);
    conn.close().await.unwrap();
    // A freed id, and a thread made under it again: a key of its own, the one before not given
    // again (an event of the freed thread can never be taken for the new one's).
    backend.apply(Delete::purge(thread("u")).freeing_id(true).into()).await.unwrap();
    backend.apply(add("u", "again")).await.unwrap();
    backend.apply(add("v", "third")).await.unwrap();
    let mut conn = raw(&path).await;
    let keys: Vec<(String, i64)> =
        sqlx::query_as("SELECT thread_id, key FROM threads ORDER BY key").fetch_all(&mut conn).await.unwrap();
    assert_eq!(keys, [("t".to_owned(), 1), ("u".to_owned(), 3), ("v".to_owned(), 4)]);
    conn.close().await.unwrap();
    let u = told(&thread_events(&backend, "u").await);
    assert_eq!(u.len(), 2, "the freed thread's last delete, then the new thread's add: {u:?}");
    assert_eq!((u[0].2, u[1].2), (PersistOp::Delete, PersistOp::Add));
    backend.close().await;
}

/// A file of version 15 with events in `persist_feed` and threads without keys: upgraded, it
/// goes on writing there until finished (a thread made meanwhile keyed as it is made); finishing
/// keys the older threads; after, new events go to `persist_events`, and every scope reads both
/// tables as one numbering, the thread's chain across them; a freed id erases the thread's
/// events in both but its newest delete, which names the thread once its row is gone;
/// retention trims both.
#[tokio::test]
async fn a_version_15_file_reads_both_tables_as_one_feed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v15.db");
    let mut conn = shipped_schema(&dir, &path, 15).await;
    sqlx::raw_sql(
        "INSERT INTO threads (tenant, thread_id, created_at, updated_at) \
             VALUES ('', 't', 1, 1), ('', 'gone', 1, 1), ('', 'idle', 1, 1); \
         INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               created_at, updated_at) VALUES \
             ('', 't', 'old-1', 1, 'user', '\"one\"', '{}', 'complete', 1, 1, 1), \
             ('', 'gone', 'old-2', 1, 'user', '\"two\"', '{}', 'complete', 1, 2, 2);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let backend = SqliteBackend::open(&path).await.unwrap();
    assert!(SqliteBackend::builder(&path).schema_status().await.unwrap().unfinished);
    backend.apply(add("t", "old three")).await.unwrap();
    backend.apply(add("late", "made after the upgrade")).await.unwrap();
    backend.close().await;
    assert_eq!(stored(&path).await, vec![row("feed", "add", "text"); 4], "written as version 15 writes");
    let keys = || async {
        let mut conn = raw(&path).await;
        let keys: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT thread_id, key FROM threads ORDER BY rowid").fetch_all(&mut conn).await.unwrap();
        conn.close().await.unwrap();
        keys
    };
    let key = |id: &str, key: Option<i64>| (id.to_owned(), key);
    // Version 17 (messages named by their thread's key) keyed the older threads as it migrated;
    // the thread made after got its key as it was made.
    let keyed = [key("t", Some(1)), key("gone", Some(2)), key("idle", Some(3)), key("late", Some(4))];
    assert_eq!(keys().await, keyed);
    assert!(!SqliteBackend::builder(&path).finish().await.unwrap().unfinished);
    assert_eq!(keys().await, keyed);

    let retention = FeedRetention::forever().with_max_events(Some(100));
    let backend = SqliteBackend::builder(&path).feed(Some(retention)).open().await.unwrap();
    backend.apply(add("t", "new five")).await.unwrap();
    backend.apply(add("gone", "new six")).await.unwrap();
    backend.apply(add("t", "new seven")).await.unwrap();
    assert_eq!(stored(&path).await[4..], vec![row("events", "0", "blob"); 3]);
    let everything = all_events(&backend).await;
    let positions: Vec<u64> = everything.iter().map(|e| e.position).collect();
    assert_eq!(positions, [1, 2, 3, 4, 5, 6, 7], "one numbering across both tables");
    let t: Vec<u64> = thread_events(&backend, "t").await.iter().map(|e| e.position).collect();
    assert_eq!(t, [1, 3, 5, 7], "the thread's chain runs across both tables");
    let resumed = backend.read_feed(ReadFeed::thread(thread("t")).after(3).with_limit(1)).await.unwrap();
    assert_eq!((resumed.events[0].position, resumed.has_more), (5, true));
    let page = backend.read_feed(ReadFeed::across_tenants().after(2).with_limit(2)).await.unwrap();
    assert_eq!(page.events.iter().map(|e| e.position).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(everything[0].change.message_id.as_ref().map(ToString::to_string).as_deref(), Some("old-1"));

    // Freed: every event of the thread goes, in both tables, but its newest delete, which names it.
    backend.apply(Delete::purge(thread("gone")).freeing_id(true).into()).await.unwrap();
    let gone = thread_events(&backend, "gone").await;
    assert_eq!(
        gone.iter().map(|e| (e.position, e.change.op, e.change.removed)).collect::<Vec<_>>(),
        [(8, PersistOp::Delete, Some(Removed::Thread))]
    );
    let mut conn = raw(&path).await;
    let named: (Option<i64>, Option<String>, Option<String>, Option<i64>) =
        sqlx::query_as("SELECT thread, tenant, thread_id, prev FROM persist_events WHERE position = 8")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(named, (None, Some(String::new()), Some("gone".to_owned()), None));
    conn.close().await.unwrap();
    let positions: Vec<u64> = all_events(&backend).await.iter().map(|e| e.position).collect();
    assert_eq!(positions, [1, 3, 4, 5, 7, 8]);
    backend.close().await;

    // Retention: the oldest events go, from both tables.
    let retention = FeedRetention::forever().with_max_events(Some(2));
    let backend = SqliteBackend::builder(&path).feed(Some(retention)).open().await.unwrap();
    backend.apply(add("t", "new nine")).await.unwrap();
    assert_eq!(backend.trim_feed().await.unwrap(), 7);
    let rest = backend.read_feed(ReadFeed::across_tenants().after(7)).await.unwrap().events;
    let positions: Vec<u64> = rest.iter().map(|e| e.position).collect();
    assert_eq!(positions, [8, 9]);
    assert_eq!(stored(&path).await.len(), 2, "nothing left in `persist_feed`");
    backend.close().await;
}

/// Upgrading keys the threads of an earlier version in batches (each a transaction of its own,
/// before the copy of messages version 17 makes): 2,500 threads, more than two batches, each its
/// own key, the last key given recorded (a thread made after is keyed after them).
#[tokio::test]
async fn upgrading_keys_every_earlier_thread_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.db");
    let mut conn = shipped_schema(&dir, &path, 15).await;
    sqlx::raw_sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500) \
         INSERT INTO threads (tenant, thread_id, created_at, updated_at) SELECT '', 'thread-' || i, i, i FROM n",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    SqliteBackend::open(&path).await.unwrap().close().await;
    assert!(!SqliteBackend::builder(&path).finish().await.unwrap().unfinished);
    let backend = SqliteBackend::open(&path).await.unwrap();
    backend.apply(add("after", "made after finishing")).await.unwrap();
    backend.close().await;
    let mut conn = raw(&path).await;
    let (count, keyed, distinct, highest): (i64, i64, i64, i64) =
        sqlx::query_as("SELECT count(*), count(key), count(DISTINCT key), max(key) FROM threads")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((count, keyed, distinct, highest), (2501, 2501, 2501, 2501));
    let after: i64 =
        sqlx::query_scalar("SELECT key FROM threads WHERE thread_id = 'after'").fetch_one(&mut conn).await.unwrap();
    assert_eq!(after, 2501, "keyed after the earlier threads");
    conn.close().await.unwrap();
}

/// A thread freed by a handle whose feed is off, after its id was freed and taken again: no
/// delete is written, the older incarnation's delete is the one kept, and the newest events go;
/// the head does not move back, so no position is given twice (a reader that read the erased
/// events would otherwise skip the next ones).
#[tokio::test]
async fn freeing_with_the_feed_off_never_gives_a_position_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("off.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    backend.apply(add("x", "first")).await.unwrap();
    backend.apply(Delete::purge(thread("x")).freeing_id(true).into()).await.unwrap();
    backend.apply(add("x", "again")).await.unwrap();
    backend.apply(add("x", "and again")).await.unwrap();
    let head = backend.read_feed(ReadFeed::across_tenants()).await.unwrap().head;
    assert_eq!(head, 4);
    backend.close().await;

    let off = SqliteBackend::builder(&path).feed(None).open().await.unwrap();
    off.apply(Delete::purge(thread("x")).freeing_id(true).into()).await.unwrap();
    off.close().await;
    let backend = SqliteBackend::open(&path).await.unwrap();
    backend.apply(add("y", "next")).await.unwrap();
    // Turned on again, the feed records a gap (the writes made while it was off have no events).
    let trimmed = match backend.read_feed(ReadFeed::across_tenants()).await {
        Err(persist_core::PersistError::FeedGap { trimmed, .. }) => trimmed,
        other => panic!("expected a gap, got {other:?}"),
    };
    let page = backend.read_feed(ReadFeed::across_tenants().after(trimmed)).await.unwrap();
    let positions: Vec<u64> = page.events.iter().map(|e| e.position).collect();
    assert_eq!(positions.len(), 1, "{positions:?}");
    assert!(positions[0] > head, "a position given twice: {positions:?} after {head}");
    backend.close().await;
}

/// An embed's event (version 23) goes where the store's format puts the triggers' events: into
/// `persist_feed` (op `embed`, the id's text) until a file of version 15 is finished, into
/// `persist_events` (op 8, a UUID id as its bytes) after; either way it is read back as the
/// message's `embed`, in the thread's chain.
#[tokio::test]
async fn an_embed_is_recorded_in_the_table_the_format_says() {
    use persist_core::vector::{Embed, Embedding};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v15.db");
    shipped_schema(&dir, &path, 15).await.close().await.unwrap();
    let backend = SqliteBackend::open(&path).await.unwrap();
    assert!(SqliteBackend::builder(&path).schema_status().await.unwrap().unfinished);
    let first = backend.apply(add("t", "one")).await.unwrap().message().cloned().unwrap();
    let embed = |id: &MessageId| Embed::new(thread("t"), id.clone(), Embedding::new("m", vec![1.0, 0.0]));
    backend.apply(embed(&first.id).into()).await.unwrap();
    backend.close().await;
    assert_eq!(stored(&path).await, [row("feed", "add", "text"), row("feed", "embed", "text")]);
    assert!(!SqliteBackend::builder(&path).finish().await.unwrap().unfinished);

    let backend = SqliteBackend::open(&path).await.unwrap();
    let second = backend.apply(add("t", "two")).await.unwrap().message().cloned().unwrap();
    backend.apply(embed(&second.id).into()).await.unwrap();
    assert_eq!(stored(&path).await[2..], [row("events", "0", "blob"), row("events", "8", "blob")]);
    let events = thread_events(&backend, "t").await;
    let seen: Vec<_> = events.iter().map(|e| (e.position, e.change.op, e.change.seq, e.change.version)).collect();
    assert_eq!(
        seen,
        [
            (1, PersistOp::Add, Some(1), 1),
            (2, PersistOp::Embed, Some(1), 1),
            (3, PersistOp::Add, Some(2), 1),
            (4, PersistOp::Embed, Some(2), 1),
        ],
        "the thread's chain runs through both embeds"
    );
    assert_eq!(told(&events)[1].3.as_deref(), Some(first.id.as_str()));
    assert_eq!(told(&events)[3].3.as_deref(), Some(second.id.as_str()));
    assert!(events.iter().all(|e| e.change.status.is_none() || e.change.op != PersistOp::Embed));
    backend.close().await;
}
