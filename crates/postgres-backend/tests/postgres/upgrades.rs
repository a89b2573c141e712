//! A schema written by an earlier version, upgraded in place by the shipped migrations when
//! this version connects: every row kept, in one transaction.

use persist::prelude::*;
use persist_core::args::{Add, Delete};
use persist_core::read::{GetThread, ListMessages, ListThreads};
use persist_core::session::{Resolution, Resolve};
use persist_core::{
    AgentId, Backend, Content, Context, IdempotencyKey, PersistError, PersistResult, ProviderId, Role, TenantId,
    ThreadId,
};
use persist_postgres::PostgresBackend;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::support;
use crate::support::shipped_schema;

/// Threads of two tenants and of none, a tombstone, keys and bindings, as version 1 stored them
/// (one id space: a thread's tenant was its owner).
const TENANTS_AT_VERSION_1: &str = "\
    INSERT INTO threads (thread_id, tenant, title, created_at, updated_at, last_seq, message_count, deleted_at) \
    VALUES ('general', 'acme', 'acme general', 1, 1, 2, 2, NULL), ('host', NULL, NULL, 2, 2, 1, 1, NULL), \
           ('g-old', 'globex', NULL, 3, 8, 1, 0, 8); \
    INSERT INTO messages (thread_id, message_id, seq, role, content, metadata, status, version, idempotency_key, \
                          created_at, updated_at) VALUES \
        ('general', 'a1', 1, 'user', '[{\"text\":\"acme one\",\"type\":\"text\"}]', '{}', 'complete', 1, 'k', 4, 4), \
        ('host', 'h1', 1, 'user', '[{\"text\":\"host one\",\"type\":\"text\"}]', '{}', 'complete', 1, 'k', 5, 5), \
        ('general', 'a2', 2, 'assistant', '[]', '{}', 'reserved', 1, NULL, 6, 6); \
    INSERT INTO session_bindings (agent_id, thread_id, session_id, provider, runtime_id, work_dir, state, \
                                  created_at, updated_at) VALUES \
        ('coder', 'general', 's-acme', 'cli', NULL, NULL, 'active', 9, 9), \
        ('coder', 'not-yet', 's-early', 'cli', NULL, NULL, 'active', 10, 10);";

/// A new schema made by the shipped first migration only, holding [`TENANTS_AT_VERSION_1`]
/// (and `extra`, run after it); answers the schema's name.
async fn version_1_schema(extra: &str) -> Option<String> {
    shipped_schema(1, &[TENANTS_AT_VERSION_1, extra]).await
}

async fn connect(schema: &str) -> Result<PostgresBackend, PersistError> {
    PostgresBackend::builder(support::url()).schema(schema).max_connections(4).connect().await
}

fn thread(id: &str) -> ThreadId {
    ThreadId::new(id).unwrap()
}

fn tenant(name: &str) -> Context {
    Context::new().with_tenant(TenantId::new(name).unwrap())
}

fn add(id: &str, text: &str) -> Add {
    Add::new(thread(id), Role::User, Content::text(text))
}

fn resumed(resolution: Resolution) -> Option<String> {
    match resolution {
        Resolution::Resume(binding) => Some(binding.session_id.as_str().to_owned()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_with_tenants_is_upgraded_to_tenant_identity() {
    let Some(schema) = version_1_schema("CREATE VIEW my_threads AS SELECT thread_id, tenant FROM threads").await else {
        return;
    };
    let backend = connect(&schema).await.unwrap();
    let general = backend.get_thread(GetThread::new(thread("general")).with_context(tenant("acme"))).await.unwrap();
    let general = general.expect("acme's thread");
    assert_eq!((general.title.as_deref(), general.last_seq, general.message_count), (Some("acme general"), 2, 2));
    let listed = ListMessages::new(thread("general")).include_reserved(true).with_context(tenant("acme"));
    let ids: Vec<_> = backend.list(listed).await.unwrap().items.iter().map(|m| m.id.as_str().to_owned()).collect();
    assert_eq!(ids, ["a1", "a2"]);
    assert!(backend.get_thread(GetThread::new(thread("general"))).await.unwrap().is_none(), "acme's only");
    assert!(backend.get_thread(GetThread::new(thread("host"))).await.unwrap().is_some());

    // Keys are per (tenant, thread) and still find their first copy; seqs go on.
    let retry = add("general", "acme one").with_idempotency_key(IdempotencyKey::new("k").unwrap());
    let PersistResult::Added(again) = backend.apply(retry.with_context(tenant("acme")).into()).await.unwrap() else {
        panic!()
    };
    assert!(again.deduplicated && again.message.id.as_str() == "a1");
    let PersistResult::Added(next) =
        backend.apply(add("general", "acme three").with_context(tenant("acme")).into()).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(next.message.seq, 3);
    let PersistResult::Added(own) = backend.apply(add("general", "no tenant's own").into()).await.unwrap() else {
        panic!()
    };
    assert_eq!(own.message.seq, 1, "the id is free without a tenant");

    // The tombstone stays globex's.
    let late = add("g-old", "late").with_context(tenant("globex"));
    assert!(matches!(backend.apply(late.into()).await, Err(PersistError::ThreadDeleted { .. })));
    backend.apply(add("g-old", "a new thread").into()).await.expect("the id is unused without a tenant");

    // Bindings took their thread's tenant; one whose thread did not exist took none.
    let resolve = |id: &str| Resolve::new(AgentId::new("coder").unwrap(), thread(id), ProviderId::new("cli").unwrap());
    let acme_binding = backend.resolve(resolve("general").with_context(tenant("acme"))).await.unwrap();
    assert_eq!(resumed(acme_binding).as_deref(), Some("s-acme"));
    assert_eq!(resumed(backend.resolve(resolve("general")).await.unwrap()), None);
    assert_eq!(resumed(backend.resolve(resolve("not-yet")).await.unwrap()).as_deref(), Some("s-early"));
    backend.apply(Delete::thread(thread("general")).with_context(tenant("acme")).into()).await.unwrap();
    assert_eq!(resumed(backend.resolve(resolve("general").with_context(tenant("acme"))).await.unwrap()), None);

    let all = backend.threads(ListThreads::new().across_tenants(true)).await.unwrap();
    let mut names: Vec<_> = all
        .items
        .iter()
        .map(|t| (t.tenant.as_ref().map(|t| t.as_str().to_owned()), t.id.as_str().to_owned()))
        .collect();
    names.sort();
    assert_eq!(names, [(None, "g-old".to_owned()), (None, "general".to_owned()), (None, "host".to_owned())]);
    backend.close().await;

    let mut conn = PgConnection::connect(&support::url()).await.unwrap();
    let count = format!("SELECT count(*) FROM \"{schema}\".my_threads WHERE tenant = ''");
    let untenanted: i64 = sqlx::query_scalar(AssertSqlSafe(count)).fetch_one(&mut conn).await.unwrap();
    assert_eq!(untenanted, 3, "a view of your own reads the upgraded table: host, general and g-old");
    conn.close().await.unwrap();
    support::drop_schema(&schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upgrade_to_tenant_identity_changes_nothing() {
    // A constraint of the user's own that the upgrade cannot keep (it names the old key).
    let in_the_way = "ALTER TABLE session_bindings ADD CONSTRAINT mine FOREIGN KEY (thread_id) \
                      REFERENCES threads (thread_id) NOT VALID";
    let Some(schema) = version_1_schema(in_the_way).await else { return };
    let error = connect(&schema).await.unwrap_err();
    assert!(matches!(error, PersistError::Backend { .. }), "{error:?}");

    let mut conn = PgConnection::connect(&support::url()).await.unwrap();
    let path = format!("SET search_path TO \"{schema}\"");
    sqlx::raw_sql(AssertSqlSafe(path)).execute(&mut conn).await.unwrap();
    let version: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(version, 1);
    let columns: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns \
          WHERE table_schema = current_schema() AND table_name = 'messages' AND column_name = 'tenant'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(columns, 0, "nothing of the upgrade stays");
    let nulls: i64 =
        sqlx::query_scalar("SELECT count(*) FROM threads WHERE tenant IS NULL").fetch_one(&mut conn).await.unwrap();
    assert_eq!(nulls, 1, "the rows are as version 1 left them");
    // Out of the way, the upgrade goes through.
    sqlx::raw_sql("ALTER TABLE session_bindings DROP CONSTRAINT mine").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let backend = connect(&schema).await.unwrap();
    let acme = ListMessages::new(thread("general")).include_reserved(true).with_context(tenant("acme"));
    assert_eq!(backend.list(acme).await.unwrap().items.len(), 2);
    backend.close().await;
    support::drop_schema(&schema).await;
}

/// A version 4 schema holding a reply its stream left half written, upgraded when this version
/// connects: every row and event kept (old events read with the status their op says), the reply can be marked
/// interrupted (its text kept, its event saying so), seqs go on, and the status is still
/// checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_4_schema_takes_interrupted_replies_and_keeps_every_row() {
    use persist_core::args::UpdateContent;
    use persist_core::feed::ReadFeed;
    use persist_core::{PersistOp, Status};

    let rows = "\
        INSERT INTO threads (tenant, thread_id, created_at, updated_at, last_seq, message_count) \
        VALUES ('', 'a', 1, 2, 2, 2); \
        INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                              created_at, updated_at) VALUES \
            ('', 'a', 'a1', 1, 'user', '[{\"text\":\"Why?\",\"type\":\"text\"}]', '{}', 'complete', 1, 1, 1), \
            ('', 'a', 'a2', 2, 'assistant', '[{\"text\":\"Because\",\"type\":\"text\"}]', '{}', 'reserved', 2, 1, 2);";
    let Some(schema) = shipped_schema(4, &[rows]).await else { return };
    let backend = connect(&schema).await.unwrap();
    let events = backend.read_feed(ReadFeed::thread(thread("a"))).await.unwrap().events;
    let old: Vec<_> = events.iter().map(|e| (e.change.op, e.change.status)).collect();
    assert_eq!(
        old,
        [(PersistOp::Add, Some(Status::Complete)), (PersistOp::Reserve, Some(Status::Reserved))],
        "old events kept, read with the status their op says"
    );

    let interrupt = UpdateContent::interrupted(thread("a"), "a2".parse().unwrap());
    let PersistResult::ContentUpdated(cut) = backend.apply(interrupt.into()).await.unwrap() else { panic!() };
    let cut = cut.message;
    assert_eq!((cut.status, cut.content, cut.version), (Status::Interrupted, Content::text("Because"), 3));
    let listed = backend.list(ListMessages::new(thread("a"))).await.unwrap().items;
    let listed: Vec<_> = listed.iter().map(|m| (m.id.as_str().to_owned(), m.status)).collect();
    assert_eq!(listed, [("a1".to_owned(), Status::Complete), ("a2".to_owned(), Status::Interrupted)]);
    let PersistResult::Added(next) = backend.apply(add("a", "and then?").into()).await.unwrap() else { panic!() };
    assert_eq!(next.message.seq, 3);
    let events = backend.read_feed(ReadFeed::thread(thread("a")).after(2)).await.unwrap().events;
    let new: Vec<_> = events.iter().map(|e| (e.change.op, e.change.status)).collect();
    assert_eq!(new, [(PersistOp::UpdateContent, Some(Status::Interrupted)), (PersistOp::Add, Some(Status::Complete))]);
    backend.close().await;

    let mut conn = PgConnection::connect(&support::url()).await.unwrap();
    let bogus = format!("UPDATE \"{schema}\".messages SET status = 'paused' WHERE message_id = 'a1'");
    assert!(sqlx::query(AssertSqlSafe(bogus)).execute(&mut conn).await.is_err(), "the status is still checked");
    conn.close().await.unwrap();
    support::drop_schema(&schema).await;
}

/// A version 5 schema, upgraded: the idempotency key's index holds keyed messages only, so a
/// lookup by id can only take the primary key (with the index of every message, the planner
/// served it by reading the whole thread); keys still deduplicate and stay unique per thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_5_schema_keeps_its_keys_in_an_index_of_keyed_messages_only() {
    let rows = "\
        INSERT INTO threads (tenant, thread_id, created_at, updated_at, last_seq, message_count) \
        VALUES ('', 'a', 1, 2, 2, 2); \
        INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                              idempotency_key, created_at, updated_at) VALUES \
            ('', 'a', 'a1', 1, 'user', '[{\"text\":\"first\",\"type\":\"text\"}]', '{}', 'complete', 1, 'k1', 1, 1), \
            ('', 'a', 'a2', 2, 'user', '[]', '{}', 'complete', 1, NULL, 2, 2);";
    let Some(schema) = shipped_schema(5, &[rows]).await else { return };
    let backend = connect(&schema).await.unwrap();
    let retry = add("a", "first").with_idempotency_key(IdempotencyKey::new("k1").unwrap());
    let PersistResult::Added(again) = backend.apply(retry.into()).await.unwrap() else { panic!() };
    assert!(again.deduplicated && again.message.id.as_str() == "a1", "a key still finds its first copy");
    let PersistResult::Added(next) = backend.apply(add("a", "next").into()).await.unwrap() else { panic!() };
    assert_eq!(next.message.seq, 3);
    backend.close().await;

    let mut conn = PgConnection::connect(&support::url()).await.unwrap();
    // Filtered here, not by `indexdef` in the query: a filter on it may compute the definition
    // of other schemas' indexes, which tests running alongside drop.
    let indexes = format!(
        "SELECT indexname || ': ' || indexdef FROM pg_indexes WHERE schemaname = '{schema}' AND tablename = 'messages'"
    );
    let indexes: Vec<String> = sqlx::query_scalar(AssertSqlSafe(indexes)).fetch_all(&mut conn).await.unwrap();
    let indexes: Vec<String> = indexes.into_iter().filter(|index| index.contains("idempotency_key")).collect();
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    assert!(indexes[0].ends_with("WHERE (idempotency_key IS NOT NULL)"), "{indexes:?}");
    let taken = format!(
        "INSERT INTO \"{schema}\".messages (tenant, thread_id, message_id, seq, role, content, metadata, status, \
         version, idempotency_key, created_at, updated_at) VALUES ('', 'a', 'a9', 9, 'user', '[]', '{{}}', 'complete', \
         1, 'k1', 9, 9)"
    );
    assert!(sqlx::query(AssertSqlSafe(taken)).execute(&mut conn).await.is_err(), "a key is unique per thread");
    let plan = format!(
        "EXPLAIN SELECT 1 FROM \"{schema}\".messages WHERE tenant = '' AND thread_id = 'a' AND message_id = 'a2'"
    );
    let plan: Vec<String> = sqlx::query_scalar(AssertSqlSafe(plan)).fetch_all(&mut conn).await.unwrap();
    assert!(!plan.join("\n").contains("idempotency"), "a lookup by id reads the key's index: {plan:?}");
    conn.close().await.unwrap();
    support::drop_schema(&schema).await;
}

/// A version 6 schema holding a reply half streamed, upgraded: old events kept without deltas,
/// the reply's next tokens recorded with what they added, its followers streaming them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_6_schema_records_what_each_append_adds() {
    use persist::live::{FollowReply, ReplyChunk, ReplyEnd};
    use persist_core::args::UpdateContent;
    use persist_core::feed::ReadFeed;
    use persist_core::{PersistOp, Pipeline};

    let rows = "\
        INSERT INTO threads (tenant, thread_id, created_at, updated_at, last_seq, message_count) \
        VALUES ('', 'a', 1, 2, 1, 1); \
        INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                              created_at, updated_at) VALUES \
            ('', 'a', 'r', 1, 'assistant', '[{\"text\":\"Half\",\"type\":\"text\"}]', '{}', 'reserved', 2, 1, 2);";
    let Some(schema) = shipped_schema(6, &[rows]).await else { return };
    let pipeline = Pipeline::new(connect(&schema).await.unwrap());
    let mut follower = pipeline.follow_reply(FollowReply::new(thread("a"), "r".parse().unwrap())).await.unwrap();
    assert_eq!(follower.next().await.unwrap(), Some(ReplyChunk::text(0, "Half")));
    let token = UpdateContent::appending(thread("a"), "r".parse().unwrap(), Content::text(" done"));
    pipeline.update_content(token.with_finalize(true)).await.unwrap();
    assert_eq!(follower.next().await.unwrap(), Some(ReplyChunk::text(4, " done")));
    assert_eq!(follower.next().await.unwrap(), Some(ReplyChunk::End(ReplyEnd::Complete)));
    let events = pipeline.read_feed(ReadFeed::thread(thread("a"))).await.unwrap().events;
    let deltas: Vec<_> = events.iter().map(|e| (e.change.op, e.change.delta.as_ref().map(Content::to_text))).collect();
    assert_eq!(deltas, [(PersistOp::Reserve, None), (PersistOp::UpdateContent, Some(" done".to_owned()))]);
    drop(follower);
    support::drop_schema(&schema).await;
}

/// Threads as version 7 stored them: a line `a`, a thread `g` whose seqs 3 and 5 were deleted,
/// and a thread `e` whose only message was deleted.
const LINES_AT_VERSION_7: &str = "\
    INSERT INTO threads (tenant, thread_id, created_at, updated_at, last_seq, message_count) \
    VALUES ('', 'a', 1, 1, 3, 3), ('', 'g', 1, 1, 6, 4), ('', 'e', 1, 1, 1, 0); \
    INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, created_at, \
                          updated_at) VALUES \
        ('', 'a', 'a1', 1, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'a', 'a2', 2, 'assistant', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'a', 'a3', 3, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'g', 'g1', 1, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'g', 'g2', 2, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'g', 'g4', 4, 'user', '[]', '{}', 'complete', 1, 1, 1), \
        ('', 'g', 'g6', 6, 'user', '[]', '{}', 'complete', 1, 1, 1);";

/// Each message's parent, by seq, and the thread's active leaf.
async fn tree_of(backend: &PostgresBackend, id: &str) -> (Vec<(u64, Option<u64>)>, Option<u64>) {
    let listed = backend.list(ListMessages::new(thread(id)).include_reserved(true)).await.unwrap().items;
    let leaf = backend.get_thread(GetThread::new(thread(id))).await.unwrap().unwrap().active_leaf;
    (listed.iter().map(|m| (m.seq, m.parent_seq)).collect(), leaf)
}

/// A version 7 schema upgraded to branches: every thread stays the line it was (each message
/// follows the one before it, across the gaps of deleted ones; the active leaf is the last),
/// the upgrade records no feed event, and writes go on from the last message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_7_schema_keeps_each_thread_a_line() {
    use persist_core::branch::Branch;

    let Some(schema) = shipped_schema(7, &[LINES_AT_VERSION_7]).await else { return };
    let mut conn = support::admin().await.unwrap();
    let count = format!("SELECT count(*) FROM \"{schema}\".persist_feed");
    let events: i64 = sqlx::query_scalar(AssertSqlSafe(count.clone())).fetch_one(&mut conn).await.unwrap();
    let backend = connect(&schema).await.unwrap();
    assert_eq!(tree_of(&backend, "a").await, (vec![(1, None), (2, Some(1)), (3, Some(2))], Some(3)));
    assert_eq!(tree_of(&backend, "g").await, (vec![(1, None), (2, Some(1)), (4, Some(2)), (6, Some(4))], Some(6)));
    assert_eq!(tree_of(&backend, "e").await, (vec![], None));
    let after: i64 = sqlx::query_scalar(AssertSqlSafe(count)).fetch_one(&mut conn).await.unwrap();
    assert_eq!(after, events, "the upgrade is not a write: no event");
    conn.close().await.unwrap();
    let branch = backend.list(ListMessages::new(thread("g")).on_branch(Branch::Active)).await.unwrap().items;
    assert_eq!(branch.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 4, 6]);
    let next = backend.apply(add("g", "next").into()).await.unwrap();
    assert_eq!(next.message().map(|m| (m.seq, m.parent_seq)), Some((7, Some(6))));
    let first_again = backend.apply(add("e", "again").into()).await.unwrap();
    assert_eq!(first_again.message().map(|m| (m.seq, m.parent_seq)), Some((2, None)), "a root: nothing to follow");
    support::drop_schema(&schema).await;
}

/// An upgrade to branches that fails (an index of the user's own in the way) changes nothing:
/// no column, no parent, the schema still at version 7; out of the way, it goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upgrade_to_branches_changes_nothing() {
    let in_the_way = "CREATE INDEX messages_run_starts ON messages (seq)";
    let Some(schema) = shipped_schema(7, &[LINES_AT_VERSION_7, in_the_way]).await else { return };
    let error = connect(&schema).await.unwrap_err();
    assert!(format!("{error:?}").contains("messages_run_starts"), "{error:?}");
    let mut conn = support::admin().await.unwrap();
    let columns = format!(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = '{schema}' \
           AND column_name IN ('parent_seq', 'active_leaf', 'prev_leaf')"
    );
    let columns: i64 = sqlx::query_scalar(AssertSqlSafe(columns)).fetch_one(&mut conn).await.unwrap();
    assert_eq!(columns, 0, "no column of the upgrade stays");
    let version = format!("SELECT max(version) FROM \"{schema}\"._sqlx_migrations WHERE success");
    let version: i64 = sqlx::query_scalar(AssertSqlSafe(version)).fetch_one(&mut conn).await.unwrap();
    assert_eq!(version, 7);
    let drop = format!("DROP INDEX \"{schema}\".messages_run_starts");
    sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let backend = connect(&schema).await.unwrap();
    assert_eq!(tree_of(&backend, "g").await.1, Some(6));
    support::drop_schema(&schema).await;
}

/// `migrate(false)` changes nothing of a schema: one behind is refused saying what is pending
/// (and left as it is), one that does not exist is not created, one a newer build migrated is
/// refused; `schema_status` reads where each stands.
#[tokio::test]
async fn without_migrating_a_schema_behind_or_ahead_is_refused_and_left_as_it_is() {
    let Some(schema) = shipped_schema(11, &[]).await else { return };
    let builder = || PostgresBackend::builder(support::url()).schema(schema.clone()).max_connections(2);
    let status = builder().schema_status().await.unwrap();
    assert_eq!((status.applied, status.latest), (11, 19));
    assert_eq!(
        status.pending.iter().map(|m| (m.version, m.description.as_str())).collect::<Vec<_>>(),
        [
            (12, "content form in plpgsql"),
            (13, "thread activity by second"),
            (14, "messages view"),
            (15, "embeddings"),
            (16, "working memory"),
            (17, "working memory feed"),
            (18, "spent keys"),
            (19, "records")
        ]
    );
    let refused = builder().migrate(false).connect().await.unwrap_err();
    assert!(matches!(refused, PersistError::Unsupported { .. }), "{refused:?}");
    let said = refused.to_string();
    assert!(
        said.contains(&format!(
            "schema {schema}: schema version 11, this build needs 19 (pending: 12 content form in plpgsql, \
             13 thread activity by second, 14 messages view, 15 embeddings, 16 working memory, 17 working \
             memory feed, 18 spent keys, 19 records)"
        )),
        "{said}"
    );
    assert_eq!(builder().schema_status().await.unwrap().applied, 11, "nothing applied");
    // Migrated by an instance that does, then opened without migrating.
    connect(&schema).await.unwrap().close().await;
    let current = builder().schema_status().await.unwrap();
    assert!(current.is_current() && current.pending.is_empty());
    let opened = builder().migrate(false).connect().await.unwrap();
    opened.apply(add("m", "after").into()).await.unwrap();
    opened.close().await;
    // A newer build's migration recorded: refused, whichever way it is opened.
    let mut conn = support::admin().await.unwrap();
    let newer = format!(
        "INSERT INTO \"{schema}\"._sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from the future', true, '\\x00', 0)"
    );
    sqlx::raw_sql(AssertSqlSafe(newer)).execute(&mut conn).await.unwrap();
    assert!(builder().schema_status().await.unwrap().is_ahead());
    let refused = builder().migrate(false).connect().await.unwrap_err();
    assert!(refused.to_string().contains("newer than this build's 19"), "{refused}");
    // A schema that does not exist: version 0, not created.
    let missing = support::schema_name();
    let absent = PostgresBackend::builder(support::url()).schema(missing.clone());
    assert_eq!(absent.schema_status().await.unwrap().applied, 0);
    let refused = PostgresBackend::builder(support::url()).schema(missing.clone()).migrate(false).connect().await;
    assert!(matches!(refused, Err(PersistError::Unsupported { .. })));
    let created: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(&missing)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!created, "the schema was not created");
    conn.close().await.unwrap();
    support::drop_schema(&schema).await;
}

/// Threads of one tenant as version 12 stored them: two in the same microsecond, three in one
/// second, one the second before, one after, and a tombstone.
const ACTIVITY_AT_VERSION_12: &str = "\
    INSERT INTO threads (tenant, thread_id, created_at, updated_at, deleted_at) VALUES \
        ('acme', 'a', 1, 5000000, NULL), ('acme', 'b', 1, 5500000, NULL), ('acme', 'c', 1, 4900000, NULL), \
        ('acme', 'd', 1, 6000001, NULL), ('acme', 'e', 1, 5500000, NULL), ('acme', 'gone', 1, 7000000, 7000000), \
        ('globex', 'z', 1, 9000000, NULL); \
    INSERT INTO threads (tenant, thread_id, created_at, updated_at) \
    SELECT 'bulk', 'b' || i, 1, i * 1000 FROM generate_series(1, 2500) i;";

/// Version 13 lists a tenant's threads from an index of the second of their last activity: the
/// order is still `updated_at DESC, thread_id DESC`, page after page, ties in one second and in
/// one microsecond included; and a message write updates its thread in place (a HOT update, no
/// new index entry), where version 12's could not (its index held `updated_at`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_12_schema_lists_threads_by_activity_and_updates_them_in_place() {
    let Some(schema) = shipped_schema(12, &[ACTIVITY_AT_VERSION_12]).await else { return };
    let backend = connect(&schema).await.unwrap();
    let mut listed = Vec::new();
    let mut query = ListThreads::new().with_limit(2).with_context(tenant("acme"));
    loop {
        let page = backend.threads(query.clone()).await.unwrap();
        listed.extend(page.items.iter().map(|t| t.id.as_str().to_owned()));
        match page.next_cursor.filter(|_| page.has_more) {
            Some(cursor) => query = query.with_cursor(Some(cursor)),
            None => break,
        }
    }
    assert_eq!(listed, ["d", "e", "b", "a", "c"]);
    let mut conn = support::admin().await.unwrap();
    let unset =
        format!("SELECT count(*) FROM \"{schema}\".threads WHERE active_second IS DISTINCT FROM updated_at / 1000000");
    let unset: i64 = sqlx::query_scalar(AssertSqlSafe(unset)).fetch_one(&mut conn).await.unwrap();
    assert_eq!(unset, 0, "every thread stored before has its second, over several batches");
    let indexes =
        format!("SELECT indexname::text FROM pg_indexes WHERE schemaname = '{schema}' AND tablename = 'threads'");
    let mut indexes: Vec<String> = sqlx::query_scalar(AssertSqlSafe(indexes)).fetch_all(&mut conn).await.unwrap();
    indexes.sort();
    assert_eq!(indexes, ["threads_by_active_second", "threads_pkey"]);

    let writes = 20;
    for n in 0..writes {
        backend.apply(add("hot", &format!("message {n}")).with_context(tenant("acme")).into()).await.unwrap();
    }
    backend.close().await;
    // Each server process adds its counts to the statistics as it exits: wait for all of them.
    let counts =
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'threads'";
    let mut updates = (0, 0);
    for _ in 0..100 {
        updates = sqlx::query_as(counts).bind(&schema).fetch_one(&mut conn).await.unwrap();
        if updates.0 >= writes - 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (updated, hot): (i64, i64) = updates;
    assert!(updated >= writes - 1, "every add after the first updates the thread: {updates:?}");
    // A fifth of the page is free for new versions: at least ten fit without pruning, and at
    // most one of these writes crosses a second.
    assert!(hot >= 10, "updated in place: {updates:?}");
    conn.close().await.unwrap();
    support::drop_schema(&schema).await;
}

/// Version 13's SQL recorded, its index not built yet (an instance stopped while it gave the
/// threads their second, or a schema migrated by hand): the version reads as pending, an
/// instance that does not migrate refuses the store, one that does completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_13_reads_as_pending_until_its_index_is_built() {
    let Some(schema) = shipped_schema(13, &[ACTIVITY_AT_VERSION_12]).await else { return };
    let builder = || PostgresBackend::builder(support::url()).schema(schema.clone()).max_connections(2);
    let status = builder().schema_status().await.unwrap();
    assert_eq!((status.applied, status.latest), (12, 19));
    assert_eq!(
        status.pending.iter().map(|m| (m.version, m.description.as_str())).collect::<Vec<_>>(),
        [
            (13, "thread activity by second"),
            (14, "messages view"),
            (15, "embeddings"),
            (16, "working memory"),
            (17, "working memory feed"),
            (18, "spent keys"),
            (19, "records")
        ]
    );
    let refused = builder().migrate(false).connect().await.unwrap_err();
    assert!(
        refused.to_string().contains(
            "(pending: 13 thread activity by second, 14 messages view, 15 embeddings, 16 working memory, 17 working \
                 memory feed, 18 spent keys, 19 records)"
        ),
        "{refused}"
    );
    let backend = builder().connect().await.unwrap();
    let page = backend.threads(ListThreads::new().with_context(tenant("acme"))).await.unwrap();
    let listed: Vec<_> = page.items.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(listed, ["d", "e", "b", "a", "c"]);
    backend.close().await;
    assert!(builder().schema_status().await.unwrap().is_current());
    builder().migrate(false).connect().await.unwrap().close().await;
    support::drop_schema(&schema).await;
}

/// Instances that start together on a schema of version 12 (threads to give their second, the
/// index built concurrently) all connect: those waiting for the one that builds it wait outside
/// any statement, so the build, which waits for every older snapshot, does not wait for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_all_complete_version_13() {
    let Some(schema) = shipped_schema(12, &[ACTIVITY_AT_VERSION_12]).await else { return };
    let (a, b, c) = tokio::join!(connect(&schema), connect(&schema), connect(&schema));
    for backend in [a, b, c] {
        backend.unwrap().close().await;
    }
    let status = PostgresBackend::builder(support::url()).schema(schema.clone()).schema_status().await.unwrap();
    assert!(status.is_current(), "{status:?}");
    support::drop_schema(&schema).await;
}

/// Version 13 stopped after its index was built but before the old one was dropped: still
/// pending (kept up, the old index would keep every update of a thread from being HOT), and the
/// next instance that migrates drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_13_is_pending_while_the_old_index_stays() {
    let built = "UPDATE threads SET active_second = updated_at / 1000000; \
                 CREATE INDEX threads_by_active_second ON threads (tenant, active_second DESC, thread_id DESC) \
                  WHERE deleted_at IS NULL";
    let Some(schema) = shipped_schema(13, &[ACTIVITY_AT_VERSION_12, built]).await else { return };
    let builder = || PostgresBackend::builder(support::url()).schema(schema.clone()).max_connections(2);
    let status = builder().schema_status().await.unwrap();
    assert_eq!((status.applied, status.pending.len()), (12, 7), "13's work, 14, 15, 16, 17, 18 and 19: {status:?}");
    builder().connect().await.unwrap().close().await;
    assert!(builder().schema_status().await.unwrap().is_current());
    let mut conn = support::admin().await.unwrap();
    let indexes =
        format!("SELECT indexname::text FROM pg_indexes WHERE schemaname = '{schema}' AND tablename = 'threads'");
    let mut indexes: Vec<String> = sqlx::query_scalar(AssertSqlSafe(indexes)).fetch_all(&mut conn).await.unwrap();
    indexes.sort();
    assert_eq!(indexes, ["threads_by_active_second", "threads_pkey"]);
    conn.close().await.unwrap();
    support::drop_schema(&schema).await;
}
