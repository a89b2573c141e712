//! Schema version 15's packed rows: a store this version creates writes them from the start; a
//! file of version 14 is upgraded but goes on writing what version 14 reads until it is
//! finished; after, its old rows and new read alike.

use persist_core::args::{Reserve, UpdateContent};
use persist_core::feed::ReadFeed;
use persist_core::read::ListMessages;
use persist_core::search::Search;
use persist_core::{Backend, Content, PersistError, PersistOp, Role, Status};
use persist_sqlite::SqliteBackend;
use serde_json::json;
use sqlx::Connection;

use crate::support::{add, raw, shipped_schema, thread};

/// Each message's stored content and form, in seq order, and each feed event's op and stored
/// status, in order.
async fn stored(path: &std::path::Path) -> (Vec<(String, Option<i64>)>, Vec<(String, Option<String>)>) {
    let mut conn = raw(path).await;
    let rows =
        sqlx::query_as("SELECT content, content_form FROM persist_messages ORDER BY seq").fetch_all(&mut conn).await;
    // Events of either table (migration 16), their ops as `persist_feed` names them.
    let events = sqlx::query_as(
        "SELECT op, status FROM (SELECT position, op, status FROM persist_feed \
                                 UNION ALL SELECT position, op, status FROM persist_events_read) ORDER BY position",
    )
    .fetch_all(&mut conn)
    .await;
    conn.close().await.unwrap();
    (rows.unwrap(), events.unwrap())
}

fn text(text: &str) -> (String, Option<i64>) {
    (format!("{text:?}"), Some(1))
}

fn json(json: &str) -> (String, Option<i64>) {
    (json.to_owned(), None)
}

fn event(op: &str, status: Option<&str>) -> (String, Option<String>) {
    (op.to_owned(), status.map(str::to_owned))
}

async fn texts(backend: &SqliteBackend) -> Vec<serde_json::Value> {
    let page = backend.list(ListMessages::new(thread("t"))).await.unwrap();
    page.items.into_iter().map(|message| message.content.to_value()).collect()
}

/// A new store: one text block stored as its text's JSON string (form 1), any other content as
/// its JSON; an insert's event without the status its op says; everything reads back as written.
#[tokio::test]
async fn a_new_store_writes_packed_rows_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    assert!(!SqliteBackend::builder(&path).schema_status().await.unwrap().unfinished);
    backend.apply(add("t", "say \"hi\"")).await.unwrap();
    let plain = persist_core::args::Add::new(thread("t"), Role::User, Content::new(json!("say \"hi\"")));
    backend.apply(plain.into()).await.unwrap();
    let slot = backend.apply(Reserve::new(thread("t"), Role::Assistant).into()).await.unwrap();
    let slot = slot.message().unwrap().id.clone();
    backend.apply(UpdateContent::new(thread("t"), slot, Content::text("done")).into()).await.unwrap();

    let (rows, events) = stored(&path).await;
    assert_eq!(rows, [text("say \"hi\""), json(r#""say \"hi\"""#), text("done")]);
    assert_eq!(
        events,
        [event("add", None), event("add", None), event("reserve", None), event("update_content", Some("complete"))]
    );
    assert_eq!(
        texts(&backend).await,
        [
            json!([{"type": "text", "text": "say \"hi\""}]),
            json!("say \"hi\""),
            json!([{"type": "text", "text": "done"}])
        ]
    );
    let read = backend.read_feed(ReadFeed::thread(thread("t"))).await.unwrap().events;
    let statuses: Vec<_> = read.iter().map(|e| (e.change.op, e.change.status)).collect();
    assert_eq!(
        statuses,
        [
            (PersistOp::Add, Some(Status::Complete)),
            (PersistOp::Add, Some(Status::Complete)),
            (PersistOp::Reserve, Some(Status::Reserved)),
            (PersistOp::UpdateContent, Some(Status::Complete)),
        ]
    );
    let hits = backend.search(Search::new("hi")).await.unwrap().items;
    assert_eq!(hits.len(), 2, "both forms are indexed by their text");
    backend.close().await;
}

/// A file of version 14: upgraded, it is unfinished and written as version 14 writes (content as
/// JSON, every event with its status), so an instance of that version could still read it;
/// `finish` is refused before the upgrade; once finished, new writes are compact, and the old
/// rows and the new read alike, are found by search, and are replaced in either form.
#[tokio::test]
async fn a_version_14_file_is_written_as_before_until_it_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v14.db");
    let mut conn = shipped_schema(&dir, &path, 14).await;
    sqlx::raw_sql(
        "INSERT INTO threads (tenant, thread_id, created_at, updated_at) VALUES ('', 't', 1, 1); \
         INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               created_at, updated_at) VALUES \
             ('', 't', 'a', 1, 'user', '[{\"text\":\"old words\",\"type\":\"text\"}]', '{}', 'complete', 1, 1, 1), \
             ('', 't', 'b', 2, 'user', '\"old string\"', '{}', 'complete', 1, 2, 2);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let refused = SqliteBackend::builder(&path).finish().await.unwrap_err();
    assert!(matches!(&refused, PersistError::Unsupported { what } if what.contains("pending")), "{refused:?}");

    let backend = SqliteBackend::open(&path).await.unwrap();
    let status = SqliteBackend::builder(&path).schema_status().await.unwrap();
    assert!(status.is_current() && status.unfinished, "{status:?}");
    backend.apply(add("t", "middle words")).await.unwrap();
    backend.close().await;
    let (rows, events) = stored(&path).await;
    assert_eq!(
        rows,
        [
            json(r#"[{"text":"old words","type":"text"}]"#),
            json(r#""old string""#),
            json(r#"[{"text":"middle words","type":"text"}]"#)
        ]
    );
    assert_eq!(events[2..], [event("add", Some("complete"))], "written as version 14 writes: {events:?}");

    let finished = SqliteBackend::builder(&path).finish().await.unwrap();
    assert!(finished.is_current() && !finished.unfinished, "{finished:?}");
    let backend = SqliteBackend::open(&path).await.unwrap();
    backend.apply(add("t", "new words")).await.unwrap();
    // Replaced: the old text block now compact, the new one as a plain string (JSON).
    let replace = |id: &str, content: Content| UpdateContent::new(thread("t"), id.parse().unwrap(), content).into();
    backend.apply(replace("a", Content::text("old words again"))).await.unwrap();
    backend.apply(replace("b", Content::text("old string"))).await.unwrap();
    let (rows, events) = stored(&path).await;
    assert_eq!(
        rows,
        [
            text("old words again"),
            text("old string"),
            json(r#"[{"text":"middle words","type":"text"}]"#),
            text("new words")
        ]
    );
    assert_eq!(
        events[3..],
        [event("add", None), event("update_content", Some("complete")), event("update_content", Some("complete"))],
        "a string replaced by a text block of the same words is a content change"
    );
    assert_eq!(
        texts(&backend).await,
        [
            json!([{"type": "text", "text": "old words again"}]),
            json!([{"type": "text", "text": "old string"}]),
            json!([{"type": "text", "text": "middle words"}]),
            json!([{"type": "text", "text": "new words"}]),
        ]
    );
    let hits = backend.search(Search::new("words")).await.unwrap().items;
    let seqs: Vec<u64> = hits.iter().map(|hit| hit.seq).collect();
    assert_eq!(seqs, [4, 3, 1], "newest first: both forms indexed, the replaced text too");
    backend.close().await;
    assert!(!SqliteBackend::builder(&path).finish().await.unwrap().unfinished, "finishing again changes nothing");
    // The format's row removed by hand: unfinished (written as the lowest level), and put back.
    let mut conn = raw(&path).await;
    sqlx::query("DELETE FROM persist_format").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    assert!(SqliteBackend::builder(&path).schema_status().await.unwrap().unfinished);
    assert!(!SqliteBackend::builder(&path).finish().await.unwrap().unfinished);
}
