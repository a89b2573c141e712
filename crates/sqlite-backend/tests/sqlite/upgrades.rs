//! Files written by earlier schema versions, upgraded in place by the shipped migrations when
//! this version opens them: every row kept, in one transaction. (Version 12 to 13:
//! `upgrade_to_summaries.rs`.)

use persist::prelude::*;
use persist_core::args::{Add, Delete};
use persist_core::feed::ReadFeed;
use persist_core::read::{GetMessage, GetThread, ListMessages, ListThreads};
use persist_core::session::{Bind, Resolution, Resolve};
use persist_core::{
    AgentId, Backend, Content, Context, IdempotencyKey, Metadata, PersistArgs, PersistError, PersistOp, PersistResult,
    ProviderId, Role, SessionId, TenantId,
};
use persist_sqlite::SqliteBackend;
use serde_json::json;
use sqlx::Connection;

use crate::support::{add, raw, shipped_schema, thread};

/// The error and every cause under it, on one line.
fn with_causes(error: &PersistError) -> String {
    let mut said = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        said = format!("{said}: {cause}");
        source = cause.source();
    }
    said
}

#[tokio::test]
async fn a_version_3_database_is_upgraded_in_place_and_keeps_every_row() {
    upgraded_in_place(3, false).await;
}

#[tokio::test]
async fn a_version_4_database_is_upgraded_in_place_and_keeps_every_row() {
    upgraded_in_place(4, false).await;
}

#[tokio::test]
async fn a_view_of_your_own_over_messages_survives_the_upgrade_to_version_5() {
    upgraded_in_place(4, true).await;
}

/// A database as the shipped migrations up to `version` left it, with three messages in it, opened by
/// this version: every row kept, the key still deduplicates, seqs go on, the schema is current.
/// With `own_view`, a view of the user's own reads `messages` before and after.
async fn upgraded_in_place(version: u32, own_view: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let mut conn = shipped_schema(&dir, &path, version).await;
    sqlx::raw_sql(
        "INSERT INTO threads (thread_id, created_at, updated_at) VALUES ('t', 1, 1); \
         INSERT INTO messages (thread_id, message_id, seq, role, content, metadata, status, version, \
                               idempotency_key, created_at, updated_at) VALUES \
             ('t', 'a', 1, 'user', '[{\"text\":\"one\",\"type\":\"text\"}]', '{}', 'complete', 1, 'key-1', 1, 1), \
             ('t', 'b', 2, 'assistant', '[]', '{\"x\":1}', 'reserved', 1, NULL, 2, 2), \
             ('t', 'c', 3, 'user', '[{\"text\":\"three\",\"type\":\"text\"}]', '{}', 'complete', 2, NULL, 3, 3);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    if own_view {
        sqlx::raw_sql("CREATE VIEW my_messages AS SELECT thread_id, message_id FROM messages")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();

    let backend = SqliteBackend::open(&path).await.unwrap();
    let page = backend.list(ListMessages::new(thread("t")).include_reserved(true)).await.unwrap();
    let rows: Vec<_> = page.items.iter().map(|m| (m.id.as_str(), m.seq, m.version, m.content.to_text())).collect();
    assert_eq!(rows, [("a", 1, 1, "one".to_owned()), ("b", 2, 1, String::new()), ("c", 3, 2, "three".to_owned())]);
    assert_eq!(page.items[1].metadata, Metadata::new().with("x", json!(1)));
    let t = backend.get_thread(GetThread::new(thread("t"))).await.unwrap().unwrap();
    assert_eq!((t.message_count, t.last_seq), (3, 3), "the rebuild fired no delete triggers");

    // The key still finds its first copy; rows without a key do not collide; seqs go on.
    let retry = Add::new(thread("t"), Role::User, Content::text("one"))
        .with_idempotency_key(persist_core::IdempotencyKey::new("key-1").unwrap());
    let PersistResult::Added(again) = backend.apply(retry.into()).await.unwrap() else { panic!() };
    assert!(again.deduplicated);
    assert_eq!(again.message.id.as_str(), "a");
    let PersistResult::Added(next) = backend.apply(add("t", "four")).await.unwrap() else { panic!() };
    assert_eq!(next.message.seq, 4);
    let t = backend.get_thread(GetThread::new(thread("t"))).await.unwrap().unwrap();
    assert_eq!((t.message_count, t.last_seq), (4, 4), "the counters' trigger is back");
    drop(backend);

    let mut conn = raw(&path).await;
    let (partial,): (String,) =
        sqlx::query_as("SELECT sql FROM sqlite_master WHERE name = 'messages_by_idempotency_key'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(partial.contains("WHERE idempotency_key IS NOT NULL"), "{partial}");
    // Version 5: messages in arrival order (a rowid table); version 6: unique by id and by seq
    // per (tenant, thread).
    let (table,): (String,) =
        sqlx::query_as("SELECT sql FROM sqlite_master WHERE name = 'messages'").fetch_one(&mut conn).await.unwrap();
    assert!(!table.contains("WITHOUT ROWID"), "{table}");
    assert!(
        table.contains("UNIQUE (tenant, thread_id, message_id)") && table.contains("UNIQUE (tenant, thread_id, seq)"),
        "{table}"
    );
    let same_id = sqlx::query(
        "INSERT INTO messages (thread_id, message_id, seq, role, content, metadata, status, version, created_at, \
                               updated_at) VALUES ('t', 'a', 99, 'user', '[]', '{}', 'complete', 1, 1, 1)",
    )
    .execute(&mut conn)
    .await;
    assert!(same_id.is_err(), "a second message with the same id in one thread");
    if own_view {
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM my_messages").fetch_one(&mut conn).await.unwrap();
        assert_eq!(seen, 4, "the view reads the rebuilt table");
    }
}

/// Threads of two tenants and of none, a tombstone, keys and bindings, as version 5 stored them
/// (one id space: a thread's tenant was its owner).
const TENANTS_AT_VERSION_5: &str = "\
    INSERT INTO threads (thread_id, tenant, title, created_at, updated_at) VALUES \
        ('general', 'acme', 'acme general', 1, 1), ('host', NULL, NULL, 2, 2), ('g-old', 'globex', NULL, 3, 3); \
    INSERT INTO messages (thread_id, message_id, seq, role, content, metadata, status, version, idempotency_key, \
                          created_at, updated_at) VALUES \
        ('general', 'a1', 1, 'user', '[{\"text\":\"acme one\",\"type\":\"text\"}]', '{}', 'complete', 1, 'k', 4, 4), \
        ('host', 'h1', 1, 'user', '[{\"text\":\"host one\",\"type\":\"text\"}]', '{}', 'complete', 1, 'k', 5, 5), \
        ('general', 'a2', 2, 'assistant', '[]', '{}', 'reserved', 1, NULL, 6, 6), \
        ('g-old', 'g1', 1, 'user', '[]', '{}', 'complete', 1, NULL, 7, 7); \
    DELETE FROM messages WHERE thread_id = 'g-old'; \
    UPDATE threads SET deleted_at = 8, updated_at = 8 WHERE thread_id = 'g-old'; \
    INSERT INTO session_bindings (agent_id, thread_id, session_id, provider, runtime_id, work_dir, state, \
                                  created_at, updated_at) VALUES \
        ('coder', 'general', 's-acme', 'cli', NULL, NULL, 'active', 9, 9), \
        ('coder', 'not-yet', 's-early', 'cli', NULL, NULL, 'active', 10, 10);";

fn tenant(name: &str) -> Context {
    Context::new().with_tenant(TenantId::new(name).unwrap())
}

fn resumed(resolution: Resolution) -> Option<String> {
    match resolution {
        Resolution::Resume(binding) => Some(binding.session_id.as_str().to_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn a_version_5_database_with_tenants_is_upgraded_to_tenant_identity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v5.db");
    let mut conn = shipped_schema(&dir, &path, 5).await;
    sqlx::raw_sql(TENANTS_AT_VERSION_5).execute(&mut conn).await.unwrap();
    sqlx::raw_sql("CREATE VIEW my_threads AS SELECT thread_id FROM threads").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let backend = SqliteBackend::open(&path).await.unwrap();
    // Each thread kept its tenant: acme's `general` is acme's, with its messages, title and counters.
    let general = backend.get_thread(GetThread::new(thread("general")).with_context(tenant("acme"))).await.unwrap();
    let general = general.expect("acme's thread");
    assert_eq!(general.tenant.as_ref().map(TenantId::as_str), Some("acme"));
    assert_eq!((general.title.as_deref(), general.last_seq, general.message_count), (Some("acme general"), 2, 2));
    let listed = ListMessages::new(thread("general")).include_reserved(true).with_context(tenant("acme"));
    let ids: Vec<_> = backend.list(listed).await.unwrap().items.iter().map(|m| m.id.as_str().to_owned()).collect();
    assert_eq!(ids, ["a1", "a2"]);
    // Not reachable without its tenant any more; the thread without one is.
    assert!(backend.get_thread(GetThread::new(thread("general"))).await.unwrap().is_none());
    let host = backend.get(GetMessage::new(thread("host"), "h1".parse().unwrap())).await.unwrap();
    assert_eq!(host.unwrap().content.to_text(), "host one");

    // Keys are per (tenant, thread) and still find their first copy.
    let retry = Add::new(thread("general"), Role::User, Content::text("acme one"))
        .with_idempotency_key(IdempotencyKey::new("k").unwrap())
        .with_context(tenant("acme"));
    let PersistResult::Added(again) = backend.apply(retry.into()).await.unwrap() else { panic!() };
    assert!(again.deduplicated && again.message.id.as_str() == "a1");
    let next = Add::new(thread("general"), Role::User, Content::text("acme three")).with_context(tenant("acme"));
    let PersistResult::Added(next) = backend.apply(next.into()).await.unwrap() else { panic!() };
    assert_eq!(next.message.seq, 3, "seqs go on; the counters' trigger is back");
    // The id is free in every other tenant now.
    let PersistResult::Added(own) = backend.apply(add("general", "host's own general")).await.unwrap() else {
        panic!()
    };
    assert_eq!(own.message.seq, 1);

    // The tombstone stays globex's: globex's late writer is refused, anyone else's id is new.
    let late = Add::new(thread("g-old"), Role::User, Content::text("late")).with_context(tenant("globex"));
    assert!(matches!(backend.apply(late.into()).await, Err(PersistError::ThreadDeleted { .. })));
    backend.apply(add("g-old", "a new thread")).await.expect("the id is unused without a tenant");

    // Bindings took their thread's tenant; one whose thread did not exist took none.
    let resolve = |id: &str| Resolve::new(AgentId::new("coder").unwrap(), thread(id), ProviderId::new("cli").unwrap());
    assert_eq!(
        resumed(backend.resolve(resolve("general").with_context(tenant("acme"))).await.unwrap()).as_deref(),
        Some("s-acme")
    );
    assert_eq!(resumed(backend.resolve(resolve("general")).await.unwrap()), None);
    assert_eq!(resumed(backend.resolve(resolve("not-yet")).await.unwrap()).as_deref(), Some("s-early"));
    // Deleting acme's thread drops acme's binding, as deletes do.
    backend.apply(Delete::thread(thread("general")).with_context(tenant("acme")).into()).await.unwrap();
    assert_eq!(resumed(backend.resolve(resolve("general").with_context(tenant("acme"))).await.unwrap()), None);
    let bind = Bind::new(
        AgentId::new("coder").unwrap(),
        thread("general"),
        SessionId::new("s2").unwrap(),
        ProviderId::new("cli").unwrap(),
    );
    backend.bind(bind).await.expect("the thread without a tenant is not deleted");

    // Every live thread, listed across tenants, names its tenant.
    let all = backend.threads(ListThreads::new().across_tenants(true)).await.unwrap();
    let mut names: Vec<_> = all
        .items
        .iter()
        .map(|t| (t.tenant.as_ref().map(|t| t.as_str().to_owned()), t.id.as_str().to_owned()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [(None, "g-old".to_owned()), (None, "general".to_owned()), (None, "host".to_owned())],
        "acme's general is deleted; globex's g-old is a tombstone"
    );
    assert!(backend.check().await.unwrap().is_ok());
    backend.close().await;
    let mut conn = raw(&path).await;
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM my_threads").fetch_one(&mut conn).await.unwrap();
    assert_eq!(seen, 5, "a view of your own reads the rebuilt table");
}

#[tokio::test]
async fn a_failed_upgrade_to_tenant_identity_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v5.db");
    let mut conn = shipped_schema(&dir, &path, 5).await;
    sqlx::raw_sql(TENANTS_AT_VERSION_5).execute(&mut conn).await.unwrap();
    // A table of the user's own in the way of the migration's third statement.
    sqlx::raw_sql("CREATE TABLE session_bindings_v6 (x)").execute(&mut conn).await.unwrap();
    let before: Vec<(String, String)> =
        sqlx::query_as("SELECT thread_id, message_id FROM messages ORDER BY rowid").fetch_all(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let error = SqliteBackend::open(&path).await.unwrap_err();
    let said = with_causes(&error);
    assert!(said.contains("session_bindings_v6"), "{said}");
    let mut conn = raw(&path).await;
    let after: Vec<(String, String)> =
        sqlx::query_as("SELECT thread_id, message_id FROM messages ORDER BY rowid").fetch_all(&mut conn).await.unwrap();
    assert_eq!(after, before, "the messages are as version 5 left them");
    let v6: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE name IN ('threads_v6', 'messages_v6')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(v6, 0, "nothing of the migration stays");
    let version: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(version, 5);
    // Out of the way, the upgrade goes through.
    sqlx::raw_sql("DROP TABLE session_bindings_v6").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let backend = SqliteBackend::open(&path).await.unwrap();
    let acme = ListMessages::new(thread("general")).include_reserved(true).with_context(tenant("acme"));
    assert_eq!(backend.list(acme).await.unwrap().items.len(), 2);
}

/// Events as version 7's triggers recorded them: two threads' adds interleaved, then `b`'s
/// messages deleted and its row removed (a purge that frees the id): positions 1 to 7.
const FEED_AT_VERSION_7: &str = "\
    INSERT INTO threads (tenant, thread_id, created_at, updated_at) VALUES ('', 'a', 1, 1), ('', 'b', 1, 1); \
    INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, created_at, \
                          updated_at) VALUES \
        ('', 'a', 'a1', 1, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'b', 'b1', 1, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'a', 'a2', 2, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'b', 'b2', 2, 'user', '[]', '{}', 'complete', 1, 1, 1); \
    DELETE FROM messages WHERE thread_id = 'b'; \
    DELETE FROM threads WHERE thread_id = 'b';";

/// `(position, message id or "thread", op)` of a thread's events after `after`.
async fn feed_of(backend: &SqliteBackend, id: &str, after: u64) -> Vec<(u64, String, PersistOp)> {
    let page = backend.read_feed(ReadFeed::thread(thread(id)).after(after)).await.unwrap();
    page.events
        .iter()
        .map(|e| (e.position, e.change.message_id.as_ref().map_or("thread", |m| m.as_str()).to_owned(), e.change.op))
        .collect()
}

#[tokio::test]
async fn a_version_7_feed_keeps_its_positions_and_each_thread_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v7.db");
    let mut conn = shipped_schema(&dir, &path, 7).await;
    sqlx::raw_sql(FEED_AT_VERSION_7).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let backend = SqliteBackend::open(&path).await.unwrap();
    let (add, delete) = (PersistOp::Add, PersistOp::Delete);
    let of = |position: u64, id: &str, op| (position, id.to_owned(), op);
    assert_eq!(feed_of(&backend, "a", 0).await, [of(1, "a1", add), of(3, "a2", add)]);
    let b_before =
        [of(2, "b1", add), of(4, "b2", add), of(5, "b1", delete), of(6, "b2", delete), of(7, "thread", delete)];
    assert_eq!(feed_of(&backend, "b", 0).await, b_before);
    assert_eq!(backend.read_feed(ReadFeed::across_tenants()).await.unwrap().head, 7);

    // New events number on from the old head; `b`'s id, taken again, continues its chain.
    backend.apply(add_to("a", "a3")).await.unwrap();
    backend.apply(add_to("b", "new-b1")).await.unwrap();
    assert_eq!(feed_of(&backend, "a", 3).await, [of(8, "a3", add)]);
    let mut b_after = b_before.to_vec();
    b_after.push(of(9, "new-b1", add));
    assert_eq!(feed_of(&backend, "b", 0).await, b_after);
    backend.close().await;

    let mut conn = raw(&path).await;
    let counter: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_sequence WHERE name LIKE 'persist_feed%'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(counter, 0, "no counter left to write");
}

#[tokio::test]
async fn a_version_7_feed_left_empty_numbers_on_from_its_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v7-empty.db");
    let mut conn = shipped_schema(&dir, &path, 7).await;
    sqlx::raw_sql(FEED_AT_VERSION_7).execute(&mut conn).await.unwrap();
    // Every event gone, its head left in `sqlite_sequence` alone (`trimmed` behind it, as rows
    // removed by hand leave it).
    sqlx::raw_sql("DELETE FROM persist_feed; UPDATE persist_feed_state SET trimmed = 2")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let backend = SqliteBackend::open(&path).await.unwrap();
    assert_eq!(backend.read_feed(ReadFeed::across_tenants().after(7)).await.unwrap().head, 7);
    backend.apply(add_to("a", "a3")).await.unwrap();
    assert_eq!(feed_of(&backend, "a", 7).await, [(8, "a3".to_owned(), PersistOp::Add)]);
    match backend.read_feed(ReadFeed::thread(thread("a"))).await {
        Err(PersistError::FeedGap { after: 0, trimmed: 7 }) => {}
        other => panic!("resuming from before the removed events: expected a gap, got {other:?}"),
    }
    backend.close().await;
}

fn add_to(thread_id: &str, id: &str) -> PersistArgs {
    Add::new(thread(thread_id), Role::User, Content::text(id)).with_id(id.parse().unwrap()).into()
}

/// A version 9 file holding a reply its stream left half written, opened by this version: every
/// row and event kept (old events read with the status their op says), the reply can be marked interrupted (its
/// text kept, its event saying so), counters and seqs go on, a view of the user's own still reads
/// `messages`, and the schema holds an interrupted message as every other.
#[tokio::test]
async fn a_version_9_database_takes_interrupted_replies_and_keeps_every_row() {
    use persist_core::Status;
    use persist_core::args::UpdateContent;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v9.db");
    let mut conn = shipped_schema(&dir, &path, 9).await;
    // Written as version 9's triggers record: a question, then its reply's first tokens.
    sqlx::raw_sql(
        "INSERT INTO threads (tenant, thread_id, created_at, updated_at) VALUES ('', 'a', 1, 1); \
         INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               created_at, updated_at) VALUES \
             ('', 'a', 'a1', 1, 'user', '[{\"type\":\"text\",\"text\":\"Why?\"}]', '{}', 'complete', 1, 1, 1), \
             ('', 'a', 'a2', 2, 'assistant', '[{\"type\":\"text\",\"text\":\"Because\"}]', '{}', 'reserved', 2, 1, 2); \
         CREATE VIEW my_replies AS SELECT message_id, status FROM messages WHERE role = 'assistant';",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let backend = SqliteBackend::open(&path).await.unwrap();
    let events = backend.read_feed(ReadFeed::thread(thread("a"))).await.unwrap().events;
    let old: Vec<_> = events.iter().map(|e| (e.change.op, e.change.status)).collect();
    assert_eq!(
        old,
        [(PersistOp::Add, Some(Status::Complete)), (PersistOp::Reserve, Some(Status::Reserved))],
        "old events kept, read with the status their op says"
    );

    let interrupt = UpdateContent::interrupted(thread("a"), "a2".parse().unwrap());
    let cut = match backend.apply(interrupt.into()).await.unwrap() {
        PersistResult::ContentUpdated(updated) => updated.message,
        other => panic!("{other:?}"),
    };
    assert_eq!((cut.status, cut.content, cut.version), (Status::Interrupted, Content::text("Because"), 3));
    let listed = backend.list(ListMessages::new(thread("a"))).await.unwrap().items;
    let listed: Vec<_> = listed.iter().map(|m| (m.id.as_str().to_owned(), m.status)).collect();
    assert_eq!(listed, [("a1".to_owned(), Status::Complete), ("a2".to_owned(), Status::Interrupted)]);
    backend.apply(add_to("a", "a3")).await.unwrap();
    let events = backend.read_feed(ReadFeed::thread(thread("a")).after(2)).await.unwrap().events;
    let new: Vec<_> = events.iter().map(|e| (e.change.op, e.change.status)).collect();
    assert_eq!(new, [(PersistOp::UpdateContent, Some(Status::Interrupted)), (PersistOp::Add, Some(Status::Complete))]);
    let thread_a = backend.get_thread(GetThread::new(thread("a"))).await.unwrap().unwrap();
    assert_eq!((thread_a.message_count, thread_a.last_seq), (3, 3));
    backend.close().await;

    let mut conn = raw(&path).await;
    let mine: Vec<(String, String)> =
        sqlx::query_as("SELECT message_id, status FROM my_replies").fetch_all(&mut conn).await.unwrap();
    assert_eq!(mine, [("a2".to_owned(), "interrupted".to_owned())], "a view of your own reads the new table");
    let bogus = sqlx::query("UPDATE messages SET status = 'paused' WHERE message_id = 'a1'").execute(&mut conn).await;
    assert!(bogus.is_err(), "the status is still checked");
}

/// A version 10 file holding a reply half streamed, opened by this version: old events kept
/// without deltas, the reply's next tokens recorded with what they added, its followers
/// streaming them; a read-only handle of a version 10 file is refused (its reads select the
/// delta).
#[tokio::test]
async fn a_version_10_database_records_what_each_append_adds() {
    use persist::live::{FollowReply, ReplyChunk, ReplyEnd};
    use persist_core::args::UpdateContent;
    use persist_core::{PersistError, Pipeline};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v10.db");
    let mut conn = shipped_schema(&dir, &path, 10).await;
    sqlx::raw_sql(
        "INSERT INTO threads (tenant, thread_id, created_at, updated_at) VALUES ('', 'a', 1, 1); \
         INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               created_at, updated_at) VALUES \
             ('', 'a', 'r', 1, 'assistant', '[{\"type\":\"text\",\"text\":\"Half\"}]', '{}', 'reserved', 1, 1, 1);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let refused = SqliteBackend::builder(&path).read_only(true).open().await;
    assert!(matches!(refused, Err(PersistError::Unsupported { .. })), "{refused:?}");

    let backend = SqliteBackend::open(&path).await.unwrap();
    let pipeline = Pipeline::new(backend.clone());
    let mut follower = pipeline.follow_reply(FollowReply::new(thread("a"), "r".parse().unwrap())).await.unwrap();
    assert_eq!(follower.next().await.unwrap(), Some(ReplyChunk::text(0, "Half")));
    let token = UpdateContent::appending(thread("a"), "r".parse().unwrap(), Content::text(" done"));
    pipeline.update_content(token.with_finalize(true)).await.unwrap();
    assert_eq!(follower.next().await.unwrap(), Some(ReplyChunk::text(4, " done")));
    assert_eq!(follower.next().await.unwrap(), Some(ReplyChunk::End(ReplyEnd::Complete)));
    let events = backend.read_feed(ReadFeed::thread(thread("a"))).await.unwrap().events;
    let deltas: Vec<_> = events.iter().map(|e| (e.change.op, e.change.delta.as_ref().map(Content::to_text))).collect();
    assert_eq!(deltas, [(PersistOp::Reserve, None), (PersistOp::UpdateContent, Some(" done".to_owned()))]);
    drop(follower);
    backend.close().await;
}

/// Threads as version 11 stored them: a line `a`, a thread `g` whose seqs 3 and 5 were deleted,
/// and a thread `e` whose only message was deleted.
const LINES_AT_VERSION_11: &str = "\
    INSERT INTO threads (tenant, thread_id, created_at, updated_at) VALUES ('', 'a', 1, 1), ('', 'g', 1, 1), \
                                                                            ('', 'e', 1, 1); \
    INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, created_at, \
                          updated_at) VALUES \
        ('', 'a', 'a1', 1, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'a', 'a2', 2, 'assistant', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'a', 'a3', 3, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'g', 'g1', 1, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'g', 'g2', 2, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'g', 'g3', 3, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'g', 'g4', 4, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'g', 'g5', 5, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'g', 'g6', 6, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'e', 'e1', 1, 'user', '[]', '{}', 'complete', 1, 1, 1); \
    DELETE FROM messages WHERE message_id IN ('g3', 'g5', 'e1');";

/// Each message's parent, by seq, and the thread's active leaf.
async fn tree_of(backend: &SqliteBackend, id: &str) -> (Vec<(u64, Option<u64>)>, Option<u64>) {
    let listed = backend.list(ListMessages::new(thread(id)).include_reserved(true)).await.unwrap().items;
    let leaf = backend.get_thread(GetThread::new(thread(id))).await.unwrap().unwrap().active_leaf;
    (listed.iter().map(|m| (m.seq, m.parent_seq)).collect(), leaf)
}

/// A version 11 file upgraded to branches: every thread stays the line it was (each message
/// follows the one before it, across the gaps of deleted ones; the active leaf is the last),
/// the upgrade records no feed event, and writes go on from the last message.
#[tokio::test]
async fn a_version_11_database_keeps_each_thread_a_line() {
    use persist_core::branch::{Branch, ListBranches};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v11.db");
    let mut conn = shipped_schema(&dir, &path, 11).await;
    sqlx::raw_sql(LINES_AT_VERSION_11).execute(&mut conn).await.unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM persist_feed").fetch_one(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let refused = SqliteBackend::builder(&path).read_only(true).open().await;
    assert!(matches!(refused, Err(PersistError::Unsupported { .. })), "a read-only handle cannot upgrade it");

    let backend = SqliteBackend::open(&path).await.unwrap();
    assert_eq!(tree_of(&backend, "a").await, (vec![(1, None), (2, Some(1)), (3, Some(2))], Some(3)));
    assert_eq!(tree_of(&backend, "g").await, (vec![(1, None), (2, Some(1)), (4, Some(2)), (6, Some(4))], Some(6)));
    assert_eq!(tree_of(&backend, "e").await, (vec![], None));
    let mut conn = raw(&path).await;
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM persist_feed").fetch_one(&mut conn).await.unwrap();
    assert_eq!(after, events, "the upgrade is not a write: no event");
    conn.close().await.unwrap();

    let branch = backend.list(ListMessages::new(thread("g")).on_branch(Branch::Active)).await.unwrap().items;
    assert_eq!(branch.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 4, 6]);
    let leaves = backend.branches(ListBranches::leaves(thread("g"))).await.unwrap();
    assert_eq!(leaves.items.iter().map(|m| m.seq).collect::<Vec<_>>(), [6]);
    let next = backend.apply(add("g", "next")).await.unwrap();
    assert_eq!(next.message().map(|m| (m.seq, m.parent_seq)), Some((7, Some(6))));
    let first_again = backend.apply(add("e", "again")).await.unwrap();
    assert_eq!(first_again.message().map(|m| (m.seq, m.parent_seq)), Some((2, None)), "a root: nothing to follow");
    backend.close().await;
}

/// An upgrade to branches that fails (an index of the user's own in the way) changes nothing:
/// no column, no parent, the file still at version 11; out of the way, it goes through.
#[tokio::test]
async fn a_failed_upgrade_to_branches_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v11.db");
    let mut conn = shipped_schema(&dir, &path, 11).await;
    sqlx::raw_sql(LINES_AT_VERSION_11).execute(&mut conn).await.unwrap();
    sqlx::raw_sql("CREATE INDEX messages_run_starts ON messages (seq)").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let error = SqliteBackend::open(&path).await.unwrap_err();
    let said = with_causes(&error);
    assert!(said.contains("messages_run_starts"), "{said}");
    let mut conn = raw(&path).await;
    let columns: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pragma_table_info('messages') WHERE name = 'parent_seq') \
              + (SELECT count(*) FROM pragma_table_info('threads') WHERE name = 'active_leaf')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(columns, 0, "no column of the upgrade stays");
    let version: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(version, 11);
    sqlx::raw_sql("DROP INDEX messages_run_starts").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let backend = SqliteBackend::open(&path).await.unwrap();
    assert_eq!(tree_of(&backend, "g").await.1, Some(6));
    backend.close().await;
}
