//! Schema version 11's packed rows on PostgreSQL: a schema this version creates writes them
//! from the start; a schema of version 10 is upgraded but goes on writing what version 10 reads
//! until it is finished, then every instance, those already connected included, writes them;
//! old rows and new read alike.

use persist_core::args::{Add, UpdateContent};
use persist_core::feed::ReadFeed;
use persist_core::read::ListMessages;
use persist_core::search::Search;
use persist_core::{Backend, Content, PersistError, PersistOp, Role, Status, ThreadId};
use persist_postgres::PostgresBackend;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection};

use crate::support;

fn thread() -> ThreadId {
    ThreadId::new("t").unwrap()
}

fn add(text: &str) -> Add {
    Add::new(thread(), Role::User, Content::text(text))
}

fn builder(schema: &str) -> persist_postgres::PostgresBackendBuilder {
    PostgresBackend::builder(support::url()).schema(schema).max_connections(2)
}

/// Each message's stored content (as text) and form, in seq order, and each feed event's op and
/// stored status, in order (the events numbered by then).
async fn stored(schema: &str) -> (Vec<(String, Option<i16>)>, Vec<(String, Option<String>)>) {
    let mut conn = support::admin().await.unwrap();
    let rows = format!("SELECT content::text, content_form FROM \"{schema}\".messages ORDER BY seq");
    let rows = sqlx::query_as(AssertSqlSafe(rows)).fetch_all(&mut conn).await.unwrap();
    let events = format!("SELECT op, status FROM \"{schema}\".persist_feed ORDER BY id");
    let events = sqlx::query_as(AssertSqlSafe(events)).fetch_all(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    (rows, events)
}

fn text(text: &str) -> (String, Option<i16>) {
    (format!("{text:?}"), Some(1))
}

fn json(json: &str) -> (String, Option<i16>) {
    (json.to_owned(), None)
}

fn event(op: &str, status: Option<&str>) -> (String, Option<String>) {
    (op.to_owned(), status.map(str::to_owned))
}

async fn contents(backend: &PostgresBackend) -> Vec<serde_json::Value> {
    let page = backend.list(ListMessages::new(thread())).await.unwrap();
    page.items.into_iter().map(|message| message.content.to_value()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_schema_writes_packed_rows_from_the_start() {
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    let backend = builder(&schema).connect().await.unwrap();
    assert!(!builder(&schema).schema_status().await.unwrap().unfinished);
    backend.apply(add("say \"hi\"").into()).await.unwrap();
    let plain = Add::new(thread(), Role::User, Content::new(json!("say \"hi\"")));
    backend.apply(plain.into()).await.unwrap();
    let (rows, events) = stored(&schema).await;
    assert_eq!(rows, [text("say \"hi\""), json(r#""say \"hi\"""#)]);
    assert_eq!(events, [event("add", None), event("add", None)]);
    assert_eq!(contents(&backend).await, [json!([{"type": "text", "text": "say \"hi\""}]), json!("say \"hi\"")]);
    let read = backend.read_feed(ReadFeed::thread(thread())).await.unwrap().events;
    let statuses: Vec<_> = read.iter().map(|e| (e.change.op, e.change.status)).collect();
    assert_eq!(statuses, [(PersistOp::Add, Some(Status::Complete)), (PersistOp::Add, Some(Status::Complete))]);
    assert_eq!(backend.search(Search::new("hi")).await.unwrap().items.len(), 2, "both forms indexed");
    backend.close().await;
    support::drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_10_schema_is_written_as_before_until_it_is_finished() {
    let rows = "INSERT INTO threads (tenant, thread_id, created_at, updated_at, last_seq, message_count) \
                VALUES ('', 't', 1, 2, 2, 2); \
                INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                                      created_at, updated_at) VALUES \
                    ('', 't', 'a', 1, 'user', '[{\"text\":\"old words\",\"type\":\"text\"}]', '{}', 'complete', 1, 1, 1), \
                    ('', 't', 'b', 2, 'user', '\"old string\"', '{}', 'complete', 1, 2, 2);";
    let Some(schema) = support::shipped_schema(10, &[rows]).await else { return };
    let refused = builder(&schema).finish().await.unwrap_err();
    assert!(matches!(&refused, PersistError::Unsupported { what } if what.contains("pending")), "{refused:?}");

    let backend = builder(&schema).connect().await.unwrap();
    let status = builder(&schema).schema_status().await.unwrap();
    assert!(status.is_current() && status.unfinished, "{status:?}");
    backend.apply(add("middle words").into()).await.unwrap();
    let (rows, events) = stored(&schema).await;
    assert_eq!(
        rows,
        [
            json(r#"[{"text": "old words", "type": "text"}]"#),
            json(r#""old string""#),
            json(r#"[{"text": "middle words", "type": "text"}]"#)
        ]
    );
    assert_eq!(events[2..], [event("add", Some("complete"))], "written as version 10 writes: {events:?}");

    // Finished while this instance runs: its next writes are compact.
    let finished = builder(&schema).finish().await.unwrap();
    assert!(finished.is_current() && !finished.unfinished, "{finished:?}");
    backend.apply(add("new words").into()).await.unwrap();
    let replace = |id: &str, content: Content| UpdateContent::new(thread(), id.parse().unwrap(), content).into();
    backend.apply(replace("a", Content::text("old words again"))).await.unwrap();
    backend.apply(replace("b", Content::text("old string"))).await.unwrap();
    let (rows, events) = stored(&schema).await;
    assert_eq!(
        rows,
        [
            text("old words again"),
            text("old string"),
            json(r#"[{"text": "middle words", "type": "text"}]"#),
            text("new words")
        ]
    );
    assert_eq!(
        events[3..],
        [event("add", None), event("update_content", Some("complete")), event("update_content", Some("complete"))],
        "a string replaced by a text block of the same words is a content change"
    );
    assert_eq!(
        contents(&backend).await,
        [
            json!([{"type": "text", "text": "old words again"}]),
            json!([{"type": "text", "text": "old string"}]),
            json!([{"type": "text", "text": "middle words"}]),
            json!([{"type": "text", "text": "new words"}]),
        ]
    );
    let seqs: Vec<u64> = backend.search(Search::new("words")).await.unwrap().items.iter().map(|hit| hit.seq).collect();
    assert_eq!(seqs, [4, 3, 1], "newest first: both forms indexed, the replaced text too");
    backend.close().await;
    assert!(!builder(&schema).finish().await.unwrap().unfinished, "finishing again changes nothing");
    support::drop_schema(&schema).await;
}
