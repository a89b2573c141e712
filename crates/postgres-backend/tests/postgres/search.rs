//! Search on PostgreSQL beyond the conformance suite: a schema of the previous version indexed
//! when this version connects, the index dropped and built again, a stemming configuration,
//! the planner reading the index, and instances that do not migrate leaving it alone.

use persist_core::args::Add;
use persist_core::search::Search;
use persist_core::{Backend, Content, Context, PersistError, Role, TenantId, ThreadId};
use persist_postgres::{PostgresBackend, PostgresBackendBuilder};
use sqlx::{AssertSqlSafe, Connection};

use crate::support;
use crate::support::shipped_schema;

fn builder(schema: &str) -> PostgresBackendBuilder {
    PostgresBackend::builder(support::url()).schema(schema).max_connections(2)
}

async fn found(backend: &PostgresBackend, query: Search) -> Vec<String> {
    backend.search(query).await.unwrap().items.into_iter().map(|hit| hit.snippet.text).collect()
}

/// Whether the schema has the search index, and whether it is valid.
async fn index_of(schema: &str) -> Option<bool> {
    let mut conn = support::admin().await.unwrap();
    let valid = sqlx::query_scalar(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'messages_search'",
    )
    .bind(schema)
    .fetch_optional(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    valid
}

/// Messages a version 9 schema holds (before search): text, a tool result, an interrupted
/// reply, a placeholder.
const MESSAGES_AT_VERSION_9: &str = "\
    INSERT INTO threads (tenant, thread_id, created_at, updated_at, last_seq, message_count) \
    VALUES ('acme', 'old', 1, 1, 4, 4); \
    INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                          created_at, updated_at) VALUES \
        ('acme', 'old', 'm1', 1, 'user', '[{\"type\":\"text\",\"text\":\"written before search\"}]', '{}', \
         'complete', 1, 10, 10), \
        ('acme', 'old', 'm2', 2, 'tool', \
         '[{\"type\":\"tool_result\",\"call_id\":\"c\",\"output\":\"tool before\",\"is_error\":false}]', '{}', \
         'complete', 1, 20, 20), \
        ('acme', 'old', 'm3', 3, 'assistant', '[{\"type\":\"text\",\"text\":\"cut before\"}]', '{}', \
         'interrupted', 2, 30, 30), \
        ('acme', 'old', 'm4', 4, 'assistant', '[{\"type\":\"text\",\"text\":\"pending before\"}]', '{}', \
         'reserved', 1, 40, 40);";

/// A schema of version 9 with messages: connecting migrates it and builds the index over them
/// (outside the migration, without blocking writes); every message but the placeholder is found.
#[tokio::test]
async fn a_version_9_schema_is_indexed_when_this_version_connects() {
    let Some(schema) = shipped_schema(9, &[MESSAGES_AT_VERSION_9]).await else { return };
    assert_eq!(index_of(&schema).await, None);
    let backend = builder(&schema).connect().await.unwrap();
    assert_eq!(index_of(&schema).await, Some(true), "built, and valid");
    let acme = Context::new().with_tenant(TenantId::new("acme").unwrap());
    let page = backend.search(Search::new("before").with_context(acme)).await.unwrap();
    let seqs: Vec<u64> = page.items.iter().map(|hit| hit.seq).collect();
    assert_eq!(seqs, [3, 2, 1]);
    backend.close().await;
    support::drop_schema(&schema).await;
}

/// Connected with the index off, the index is dropped and instances answer searches
/// `Unsupported`; instances that do not ask (a command line connecting for a moment) or do not
/// migrate leave the schema's setting as it is; connected with it on again, it is built,
/// writes made meanwhile included.
#[tokio::test]
async fn the_index_dropped_and_built_again() {
    let Some(schema) = shipped_schema(10, &[]).await else { return };
    let off = builder(&schema).search_index(false).connect().await.unwrap();
    assert_eq!(index_of(&schema).await, None);
    assert!(!off.capabilities().search);
    off.apply(Add::new(ThreadId::new("t").unwrap(), Role::User, Content::text("while off")).into()).await.unwrap();
    let refused = off.search(Search::new("off")).await.unwrap_err();
    assert!(matches!(&refused, PersistError::Unsupported { what } if what.contains("search_index")), "{refused:?}");
    off.close().await;

    let unmigrated = builder(&schema).migrate(false).connect().await.unwrap();
    assert_eq!(index_of(&schema).await, None, "migrate(false) changes nothing of the schema");
    assert!(matches!(unmigrated.search(Search::new("off")).await, Err(PersistError::Unsupported { .. })));
    unmigrated.close().await;
    let refused = builder(&schema).migrate(false).search_index(true).connect().await.unwrap_err();
    assert!(matches!(refused, PersistError::InvalidInput { .. }), "{refused:?}");
    let passing = builder(&schema).connect().await.unwrap();
    assert_eq!(index_of(&schema).await, None, "an instance that does not ask leaves it off");
    assert!(!passing.capabilities().search);
    passing.close().await;

    let on = builder(&schema).search_index(true).connect().await.unwrap();
    assert_eq!(index_of(&schema).await, Some(true));
    assert_eq!(found(&on, Search::new("off")).await, ["while off"]);
    on.close().await;
    support::drop_schema(&schema).await;
}

/// `search_config("english")` stems (and drops English stop words); the index is rebuilt with
/// it, the planner reads it, and an unknown configuration is `InvalidInput`.
#[tokio::test]
async fn a_stemming_configuration_and_the_plan() {
    let Some(schema) = shipped_schema(10, &[]).await else { return };
    let simple = builder(&schema).connect().await.unwrap();
    let add = |text: &str| Add::new(ThreadId::new("t").unwrap(), Role::User, Content::text(text)).into();
    simple.apply(add("The runners were running")).await.unwrap();
    assert!(found(&simple, Search::new("run")).await.is_empty(), "simple: no stemming");
    simple.close().await;

    let english = builder(&schema).search_config("english").connect().await.unwrap();
    assert_eq!(index_of(&schema).await, Some(true), "rebuilt with the new configuration");
    assert_eq!(found(&english, Search::new("run")).await, ["The runners were running"]);
    let passing = builder(&schema).migrate(false).connect().await.unwrap();
    assert_eq!(found(&passing, Search::new("run")).await.len(), 1, "the schema's configuration, not simple");
    passing.close().await;
    let refused = builder(&schema).migrate(false).search_config("simple").connect().await.unwrap_err();
    assert!(matches!(refused, PersistError::InvalidInput { .. }), "{refused:?}");
    let mut conn = support::admin().await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("SET search_path TO \"{schema}\"; SET enable_seqscan = off")))
        .execute(&mut conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT 1 FROM messages m WHERE persist_search_vector('pg_catalog.english', m.content) @@ \
         to_tsquery('pg_catalog.english', 'run') AND m.status <> 'reserved'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(plan.iter().any(|line| line.contains("messages_search")), "the index serves the query: {plan:?}");
    conn.close().await.unwrap();
    english.close().await;

    let unknown = builder(&schema).search_config("klingon").connect().await.unwrap_err();
    assert!(matches!(unknown, PersistError::InvalidInput { field: "search_config", .. }), "{unknown:?}");
    support::drop_schema(&schema).await;
}

/// Hits of one instant are ordered by thread id bytewise, as on every backend, even in a
/// database whose collation orders text otherwise (one created with ICU's English collation:
/// `B` before `ab` there, `ab` > `a-b` > `B` > `Ab` bytewise), and a cursor continues between
/// them.
#[tokio::test]
async fn ties_are_broken_bytewise_whatever_the_collation() {
    let Ok(mut admin) = support::admin().await else { return };
    let database = format!("persist_icu_{}", std::process::id());
    let create = format!(
        "CREATE DATABASE \"{database}\" TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en' \
         LOCALE 'C.UTF-8'"
    );
    sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut admin).await.unwrap();
    let url = {
        let base = support::url();
        let (server, _) = base.rsplit_once('/').unwrap();
        format!("{server}/{database}")
    };
    let backend = PostgresBackend::builder(url.clone()).max_connections(2).connect().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let ordered: Vec<String> =
        sqlx::query_scalar("SELECT x FROM unnest(ARRAY['B', 'ab']) x ORDER BY x").fetch_all(&mut conn).await.unwrap();
    assert_eq!(ordered, ["ab", "B"], "this database's collation is not bytewise");
    sqlx::raw_sql(
        "INSERT INTO threads (tenant, thread_id, created_at, updated_at, last_seq, message_count) \
         SELECT '', id, 5, 5, 1, 1 FROM unnest(ARRAY['B', 'ab', 'a-b', 'Ab']) AS id; \
         INSERT INTO messages (tenant, thread_id, message_id, seq, role, content, metadata, status, version, \
                               created_at, updated_at) \
         SELECT '', id, 'm', 1, 'user', '[{\"type\":\"text\",\"text\":\"tieword\"}]', '{}', 'complete', 1, 5, 5 \
           FROM unnest(ARRAY['B', 'ab', 'a-b', 'Ab']) AS id;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let mut order = Vec::new();
    let mut query = Search::new("tieword").with_limit(1);
    loop {
        let page = backend.search(query.clone()).await.unwrap();
        order.extend(page.items.iter().map(|hit| hit.thread_id.as_str().to_owned()));
        if !page.has_more {
            break;
        }
        query = query.with_cursor(page.next_cursor);
    }
    backend.close().await;
    let drop = format!("DROP DATABASE \"{database}\" WITH (FORCE)");
    sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
    assert_eq!(order, ["ab", "a-b", "B", "Ab"]);
}
