//! The change feed on PostgreSQL beyond the conformance suite: retention and its typed gap,
//! and numbering that never skips a write committed late.

use std::time::Duration;

use persist::args::{Add, Delete};
use persist::feed::{FeedRetention, ReadFeed};
use persist::postgres::PostgresBackend;
use persist::{Backend, Content, PersistError, Role, ThreadId};

use crate::support;

/// Inserts `count` messages after the first into thread `thread` (no tenant) of `schema` in one
/// statement, past the backend: their events are committed and nobody announced them.
async fn add_past_the_backend(admin: &mut sqlx::PgConnection, schema: &str, thread: &str, count: u32) {
    // Test-made names only: persist_test_ + hex, and the tests' own thread names.
    let bulk = format!(
        "INSERT INTO \"{schema}\".messages (tenant, thread_id, message_id, seq, role, content, metadata, status, \
                                            version, created_at, updated_at) \
         SELECT '', '{thread}', 'm' || n, n + 1, 'user', '[]', '{{}}', 'complete', 1, 0, 0 \
           FROM generate_series(1, {count}) AS n"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(bulk)).execute(admin).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_numbers_every_event_committed_before_it_however_many() {
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    let backend = PostgresBackend::builder(support::url()).schema(schema.clone()).connect().await.unwrap();
    let thread = ThreadId::new("bulk").unwrap();
    backend.apply(Add::new(thread.clone(), Role::User, Content::text("first")).into()).await.unwrap();
    // More events than one numbering pass takes, committed by one statement nobody announced
    // (written past the backend, as another instance that died before its notification).
    add_past_the_backend(&mut support::admin().await.unwrap(), &schema, "bulk", 10_050).await;
    let page = backend.read_feed(ReadFeed::thread(thread).after(10_000).with_limit(1000)).await.unwrap();
    assert_eq!(page.head, 10_051, "every event committed before the read is numbered");
    assert_eq!(page.events.len(), 51);
    assert_eq!(page.events.last().and_then(|e| e.change.seq), Some(10_051));
    backend.close().await;
    support::drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_retention_keeps_the_newest_event() {
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    let every_event_too_old = FeedRetention::forever().with_max_age(Some(std::time::Duration::ZERO));
    let backend =
        PostgresBackend::builder(support::url()).schema(schema.clone()).feed(Some(every_event_too_old)).connect().await;
    let backend = backend.unwrap();
    let thread = ThreadId::new("aged").unwrap();
    for n in 0..3 {
        backend.apply(Add::new(thread.clone(), Role::User, Content::text(format!("{n}"))).into()).await.unwrap();
    }
    // Trimming numbers what is pending first, then keeps the newest: it holds the head.
    assert_eq!(backend.trim_feed().await.unwrap(), 2);
    let page = backend.read_feed(ReadFeed::thread(thread).after(2)).await.unwrap();
    assert_eq!((page.events.len(), page.head), (1, 3), "{page:?}");
    backend.close().await;
    support::drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_past_retention_is_a_gap() {
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    let backend = PostgresBackend::builder(support::url())
        .schema(schema.clone())
        .feed(Some(FeedRetention::forever().with_max_events(Some(3))))
        .connect()
        .await
        .unwrap();
    let thread = ThreadId::new("kept-short").unwrap();
    for n in 0..10 {
        backend.apply(Add::new(thread.clone(), Role::User, Content::text(format!("{n}"))).into()).await.unwrap();
    }
    // A read numbers every committed event first: the head is the tenth.
    let head = backend.read_feed(ReadFeed::thread(thread.clone()).with_limit(1)).await.unwrap().head;
    assert_eq!(head, 10);
    let trimmed = backend.trim_feed().await.unwrap();
    assert_eq!(trimmed, 7);
    let page = backend.read_feed(ReadFeed::thread(thread.clone()).after(trimmed)).await.unwrap();
    assert_eq!(page.events.iter().map(|e| e.position).collect::<Vec<_>>(), [8, 9, 10]);
    for after in [0, 6] {
        match backend.read_feed(ReadFeed::thread(thread.clone()).after(after)).await {
            Err(PersistError::FeedGap { after: asked, trimmed: gone }) => assert_eq!((asked, gone), (after, 7)),
            other => panic!("resuming after {after}: expected a gap, got {other:?}"),
        }
    }
    backend.close().await;
    support::drop_schema(&schema).await;
}

/// An instance connected with `feed(None)` turns the schema's feed off for every instance:
/// never silently. A read through an instance that keeps a feed says so, and once an instance
/// turns it on again, a reader resuming from before gets a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_turned_off_by_another_instance_is_never_silent() {
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    let connect = |feed: Option<FeedRetention>| {
        PostgresBackend::builder(support::url()).schema(schema.clone()).feed(feed).connect()
    };
    let thread = ThreadId::new("watched").unwrap();
    let add = |text: &str| Add::new(thread.clone(), Role::User, Content::text(text)).into();
    let keeping = connect(Some(FeedRetention::default())).await.unwrap();
    keeping.apply(add("before")).await.unwrap();
    let seen = keeping.read_feed(ReadFeed::thread(thread.clone())).await.unwrap().head;
    let off = connect(None).await.unwrap();
    keeping.apply(add("unrecorded")).await.unwrap();
    off.apply(add("unrecorded")).await.unwrap();
    match keeping.read_feed(ReadFeed::thread(thread.clone()).after(seen)).await {
        Err(PersistError::Unsupported { what }) => assert!(what.contains("turned off by an instance"), "{what}"),
        other => panic!("a read while another instance keeps the feed off: {other:?}"),
    }
    let on_again = connect(Some(FeedRetention::default())).await.unwrap();
    keeping.apply(add("recorded again")).await.unwrap();
    let trimmed = match keeping.read_feed(ReadFeed::thread(thread.clone()).after(seen)).await {
        Err(PersistError::FeedGap { after, trimmed }) if after == seen && trimmed > seen => trimmed,
        other => panic!("resuming from before the feed was off: expected a gap, got {other:?}"),
    };
    let page = on_again.read_feed(ReadFeed::thread(thread.clone()).after(trimmed)).await.unwrap();
    assert_eq!(page.events.len(), 1, "the write made once the feed is on again: {page:?}");
    for backend in [keeping, off, on_again] {
        backend.close().await;
    }
    support::drop_schema(&schema).await;
}

/// Deltas go when their age passes, their events stay (saying "read the message"), and a
/// follower that asked after them reads the message instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_go_after_their_age_and_their_events_stay() {
    use persist::args::{Reserve, UpdateContent};
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    let retention = FeedRetention::default().with_max_delta_age(Some(std::time::Duration::ZERO));
    let backend = PostgresBackend::builder(support::url()).schema(schema.clone()).feed(Some(retention)).connect().await;
    let backend = backend.unwrap();
    let thread = ThreadId::new("aged-deltas").unwrap();
    let reserve = Reserve::new(thread.clone(), Role::Assistant).with_id("r".parse().unwrap());
    backend.apply(reserve.into()).await.unwrap();
    for token in ["a", "b"] {
        let token = UpdateContent::appending(thread.clone(), "r".parse().unwrap(), Content::text(token));
        backend.apply(token.into()).await.unwrap();
    }
    let deltas = |events: &[persist::feed::FeedEvent]| events.iter().filter(|e| e.change.delta.is_some()).count();
    assert_eq!(deltas(&backend.read_feed(ReadFeed::thread(thread.clone())).await.unwrap().events), 2);
    backend.trim_feed().await.unwrap();
    let events = backend.read_feed(ReadFeed::thread(thread)).await.unwrap().events;
    assert_eq!((events.len(), deltas(&events)), (3, 0), "{events:?}");
    backend.close().await;
    support::drop_schema(&schema).await;
}

/// An instance that writes without a pause (a write at least every notification gap, each
/// announced) still numbers its events and applies retention every few seconds: the
/// notifications, always due first, once kept both from ever running while the writes went on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_while_writes_keep_coming() {
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    let keep_ten = FeedRetention::forever().with_max_events(Some(10));
    let backend = PostgresBackend::builder(support::url()).schema(schema.clone()).feed(Some(keep_ten)).connect().await;
    let backend = backend.unwrap();
    let thread = ThreadId::new("busy").unwrap();
    let mut admin = support::admin().await.unwrap();
    let trimmed = format!("SELECT trimmed FROM \"{schema}\".persist_feed_state");
    let started = std::time::Instant::now();
    let mut seen: i64 = 0;
    // Retention's first run is due 5 s after connecting; 15 s of writes leave it room.
    while started.elapsed() < std::time::Duration::from_secs(15) {
        for n in 0..10 {
            backend.apply(Add::new(thread.clone(), Role::User, Content::text(format!("{n}"))).into()).await.unwrap();
        }
        seen = sqlx::query_scalar(sqlx::AssertSqlSafe(trimmed.clone())).fetch_one(&mut admin).await.unwrap();
        if seen > 0 {
            break;
        }
    }
    assert!(seen > 0, "retention ran while the writes went on");
    backend.close().await;
    support::drop_schema(&schema).await;
}

/// A purge that frees its id erases the thread's events while another instance's passes
/// number them: none escapes the erase (an event numbered between the erase's snapshot and its
/// delete matched neither the delete of pending events nor that of numbered ones), and neither
/// statement waits on the other's rows (the server would end one of them as a deadlock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freed_id_leaves_no_event_behind_while_passes_number_them() {
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    // The pass waits for the erase's lock (that is the design): the erase of 15,000 events took
    // longer than the 5 s `lock_timeout` once, on a machine at full load, and the pass answered
    // `Temporary`. A deadlock is what this guards against, and the server reports one at once.
    let connect = || {
        PostgresBackend::builder(support::url())
            .schema(schema.clone())
            .lock_timeout(std::time::Duration::from_secs(120))
            .connect()
    };
    let (writer, reader) = (connect().await.unwrap(), connect().await.unwrap());
    let mut admin = support::admin().await.unwrap();
    let elsewhere = ThreadId::new("elsewhere").unwrap();
    writer.apply(Add::new(elsewhere.clone(), Role::User, Content::text("hi")).into()).await.unwrap();
    for round in 0..12u64 {
        let name = format!("secret-{round}");
        let thread = ThreadId::new(name.clone()).unwrap();
        writer.apply(Add::new(thread.clone(), Role::User, Content::text("first")).into()).await.unwrap();
        // Events enough for two passes, pending: written past the backend, nobody announced them.
        add_past_the_backend(&mut admin, &schema, &name, 15_000).await;
        // The pass and the erase start a few milliseconds apart, one way or the other.
        let lag = std::time::Duration::from_millis(round / 2 * 15);
        let read = async {
            if round % 2 == 1 {
                tokio::time::sleep(lag).await;
            }
            reader.read_feed(ReadFeed::thread(elsewhere.clone())).await
        };
        let purge = async {
            if round % 2 == 0 {
                tokio::time::sleep(lag).await;
            }
            writer.apply(Delete::purge(thread.clone()).freeing_id(true).into()).await
        };
        let (read, purge) = tokio::join!(read, purge);
        read.unwrap();
        purge.unwrap();
        let left: Vec<(Option<String>, Option<String>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT message_id, removed FROM \"{schema}\".persist_feed WHERE thread_id = '{name}'"
        )))
        .fetch_all(&mut admin)
        .await
        .unwrap();
        let first: Vec<_> = left.iter().take(3).collect();
        assert!(
            left == [(None, Some("thread".to_owned()))],
            "round {round}: {} events left, the thread's delete alone expected; first {first:?}",
            left.len()
        );
    }
    writer.close().await;
    reader.close().await;
    support::drop_schema(&schema).await;
}

/// Whether the followers' lock of `schema`'s feed is held by any session.
async fn followed(admin: &mut sqlx::PgConnection, schema: &str) -> bool {
    sqlx::query_scalar(
        "WITH k AS (SELECT hashtextextended($1, 0) AS key) \
         SELECT EXISTS (SELECT 1 FROM pg_locks l, k WHERE l.locktype = 'advisory' AND l.objsubid = 1 \
                          AND l.classid = ((k.key >> 32) & 4294967295)::oid AND l.objid = (k.key & 4294967295)::oid)",
    )
    .bind(format!("persist_feed_followers:{schema}"))
    .fetch_one(admin)
    .await
    .unwrap()
}

/// Whether the followers' lock of `schema` comes to be held (`held`) or let go within 5 s.
async fn followed_within(admin: &mut sqlx::PgConnection, schema: &str, held: bool) -> bool {
    for _ in 0..50 {
        if followed(admin, schema).await == held {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The notifications of `schema`'s feed heard by `listener` until `until`: their payloads.
async fn heard(listener: &mut sqlx::postgres::PgListener, schema: &str, until: std::time::Duration) -> Vec<String> {
    let mut payloads = Vec::new();
    let deadline = tokio::time::Instant::now() + until;
    while let Ok(Ok(note)) = tokio::time::timeout_at(deadline, listener.recv()).await {
        if note.payload().starts_with(schema) {
            payloads.push(note.payload().to_owned());
        }
    }
    payloads
}

/// A writer numbers its events before announcing them only while an instance follows the feed
/// (its subscribers wait): otherwise it announces them unnumbered and leaves the numbering to
/// their next reader, and a follower that comes is told of every event all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_numbers_its_events_only_while_someone_follows() {
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    let connect = || PostgresBackend::builder(support::url()).schema(schema.clone()).connect();
    let (writer, follower) = (connect().await.unwrap(), connect().await.unwrap());
    let mut admin = support::admin().await.unwrap();
    let mut listener = sqlx::postgres::PgListener::connect(&support::url()).await.unwrap();
    listener.listen("persist_feed").await.unwrap();
    let thread = ThreadId::new("followed").unwrap();
    let add = |text: &str| Add::new(thread.clone(), Role::User, Content::text(text)).into();
    let pending = format!("{schema} pending");

    // Nobody follows: announced unnumbered, and left so.
    writer.apply(add("alone")).await.unwrap();
    assert_eq!(heard(&mut listener, &schema, Duration::from_millis(300)).await, std::slice::from_ref(&pending));
    let unnumbered = format!("SELECT count(*) FROM \"{schema}\".persist_feed WHERE position IS NULL");
    let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(unnumbered)).fetch_one(&mut admin).await.unwrap();
    assert_eq!(left, 1, "nobody numbered it");

    // A follower on the other instance: told of the next event, then its instance holds the lock.
    let pipeline = persist::Pipeline::new(follower.clone());
    let mut live = pipeline.subscribe(ReadFeed::thread(thread.clone()).after(1)).await.unwrap();
    writer.apply(add("followed")).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), live.next()).await.unwrap().unwrap();
    assert_eq!(event.change.seq, Some(2));
    assert!(followed_within(&mut admin, &schema, true).await, "the follower's instance holds the followers' lock");
    let _ = heard(&mut listener, &schema, Duration::from_millis(200)).await;
    // Followed: numbered by the writer, announced as numbered.
    writer.apply(add("numbered")).await.unwrap();
    assert_eq!(heard(&mut listener, &schema, Duration::from_millis(300)).await, std::slice::from_ref(&schema));
    let event = tokio::time::timeout(Duration::from_secs(5), live.next()).await.unwrap().unwrap();
    assert_eq!(event.change.seq, Some(3));

    // The follower gone: its instance lets the lock go, and events go unnumbered again.
    drop((live, pipeline));
    assert!(followed_within(&mut admin, &schema, false).await, "nobody holds the followers' lock");
    tokio::time::sleep(Duration::from_millis(200)).await;
    writer.apply(add("alone again")).await.unwrap();
    assert_eq!(heard(&mut listener, &schema, Duration::from_millis(300)).await, [pending]);
    writer.close().await;
    follower.close().await;
    support::drop_schema(&schema).await;
}
