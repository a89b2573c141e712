//! pgvector's HNSW index (`pgvector_hnsw`): the function that reads persist's vectors exactly,
//! an index built over the vectors already held and kept by later writes, walked by approximate
//! queries (recall against the scan; the index's own scans counted), scopes kept apart, and
//! every refusal.
//!
//! The server is `$PERSIST_PGVECTOR_URL` (default `postgres://postgres@127.0.0.1:5418/test`,
//! the PostgreSQL 18 with pgvector CI starts); required in CI, skipped elsewhere without it.

use std::time::Duration;

use persist_core::args::{Add, Delete};
use persist_core::vector::{Embedding, Nearest, Neighbour, to_bytes};
use persist_core::{Content, Context, Message, PersistError, Pipeline, Role, TenantId, ThreadId};
use persist_postgres::{PostgresBackend, PostgresBackendBuilder};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::support;

const DIMS: usize = 32;

fn url() -> String {
    std::env::var("PERSIST_PGVECTOR_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5418/test".to_owned())
}

/// A connection to the server with pgvector; `None` (with a notice) outside CI without one.
async fn admin() -> Option<PgConnection> {
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url())).await {
        Ok(Ok(conn)) => Some(conn),
        failure => {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL with pgvector at {} is required in CI: {failure:?}",
                url()
            );
            eprintln!("SKIPPED pgvector tests: no server at {}; set PERSIST_PGVECTOR_URL to run them", url());
            None
        }
    }
}

fn builder(schema: &str) -> PostgresBackendBuilder {
    PostgresBackend::builder(url()).schema(schema).max_connections(4)
}

async fn drop_schema(conn: &mut PgConnection, schema: &str) {
    // Test-made names only.
    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(conn).await.unwrap();
}

/// A small deterministic generator (xorshift), so a failure repeats.
struct Rng(u64);

impl Rng {
    fn vector(&mut self) -> Vec<f32> {
        (0..DIMS)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }
}

fn ctx(tenant: &str) -> Context {
    Context::new().with_tenant(TenantId::new(tenant).unwrap())
}

async fn add(app: &Pipeline, tenant: &str, thread: &str, text: &str, vector: Vec<f32>) -> Message {
    let add = Add::new(ThreadId::new(thread).unwrap(), Role::User, Content::text(text))
        .with_embedding(Embedding::new("m", vector))
        .with_context(ctx(tenant));
    app.add(add).await.unwrap().message
}

fn ids(found: &[Neighbour]) -> Vec<String> {
    found.iter().map(|n| n.message.id.as_str().to_owned()).collect()
}

/// How many scans the schema's index of `DIMS` dimensions has answered, once the server's
/// statistics have caught up with at least `at_least` (they are flushed within a second).
async fn index_scans(conn: &mut PgConnection, schema: &str, at_least: i64) -> i64 {
    let name = format!("persist_embeddings_hnsw_{DIMS}");
    let mut scans = 0;
    for _ in 0..50 {
        scans = sqlx::query_scalar(
            "SELECT coalesce(sum(idx_scan), 0)::bigint FROM pg_stat_user_indexes \
              WHERE schemaname = $1 AND indexrelname = $2",
        )
        .bind(schema)
        .bind(&name)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        if scans >= at_least {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    scans
}

/// `persist_vector_of` reads the bytes persist stores as the very `f32`s written: signs, a
/// fraction that is not a sum of powers of two, the smallest normal and subnormal, zero.
#[tokio::test]
async fn the_stored_bytes_read_as_the_same_floats() {
    let Some(mut conn) = admin().await else { return };
    let schema = support::schema_name();
    let backend = builder(&schema).pgvector_hnsw([4]).connect().await.unwrap();
    let values = [[1.0_f32, -2.5, 0.1, -0.0], [f32::MIN_POSITIVE, 1e-45, 3.4e38, -1.17e-38]];
    sqlx::raw_sql(AssertSqlSafe(format!("SET search_path TO \"{schema}\""))).execute(&mut conn).await.unwrap();
    for vector in values {
        let text: String = sqlx::query_scalar("SELECT persist_vector_of($1)::text")
            .bind(to_bytes(&vector))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let read: Vec<f32> = text.trim_matches(['[', ']']).split(',').map(|x| x.parse().unwrap()).collect();
        assert_eq!(read.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), vector.map(f32::to_bits), "{text}");
    }
    backend.close().await;
    drop_schema(&mut conn, &schema).await;
}

/// Half the vectors written before the index is asked for (it is built over them), half after
/// (the index keeps them): approximate queries walk it (its scans counted) and find at least
/// 95% of what the exact scan finds, each hit with its exact score, in exact order.
#[tokio::test]
async fn approximate_queries_walk_the_index_and_find_what_the_scan_finds() {
    let Some(mut conn) = admin().await else { return };
    let schema = support::schema_name();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let before = Pipeline::new(builder(&schema).connect().await.unwrap());
    for i in 0..600 {
        add(&before, "acme", &format!("t{}", i % 12), &format!("before {i}"), rng.vector()).await;
    }
    let backend = builder(&schema).pgvector_hnsw([DIMS]).pgvector_ef_search(40).connect().await.unwrap();
    let app = Pipeline::new(backend.clone());
    for i in 0..600 {
        add(&app, "acme", &format!("t{}", i % 12), &format!("after {i}"), rng.vector()).await;
    }
    let scans_before = index_scans(&mut conn, &schema, 0).await;
    let (mut found, mut wanted) = (0, 0);
    for _ in 0..20 {
        let query = Nearest::new(Embedding::new("m", rng.vector())).with_limit(10).with_context(ctx("acme"));
        let exact = app.nearest(query.clone()).await.unwrap();
        let rough = app.nearest(query.approximate()).await.unwrap();
        assert_eq!(rough.len(), 10);
        for hit in &rough {
            let same = exact.iter().find(|e| e.message.id == hit.message.id);
            if let Some(same) = same {
                assert_eq!(same.score, hit.score, "an exact score");
            }
        }
        assert!(rough.windows(2).all(|w| w[0].score >= w[1].score), "in order: {rough:?}");
        wanted += exact.len();
        found += ids(&rough).iter().filter(|id| ids(&exact).contains(id)).count();
    }
    let recall = found as f64 / wanted as f64;
    assert!(recall >= 0.95, "recall@10 {recall:.3}");
    let scans = index_scans(&mut conn, &schema, scans_before + 20).await;
    assert!(scans >= scans_before + 20, "the index answered {} of 20 queries", scans - scans_before);
    backend.close().await;
    drop_schema(&mut conn, &schema).await;
}

/// A walk never crosses its scope: another tenant's vectors (nearer than any of this tenant's)
/// are never answered, a thread's query answers that thread's only (a scope the walk runs out
/// of is scanned), and a deleted thread's vectors are gone.
#[tokio::test]
async fn tenants_threads_and_deleted_threads_stay_apart() {
    let Some(mut conn) = admin().await else { return };
    let schema = support::schema_name();
    let backend = builder(&schema).pgvector_hnsw([DIMS]).connect().await.unwrap();
    let app = Pipeline::new(backend.clone());
    let mut rng = Rng(42);
    let target = rng.vector();
    for i in 0..300 {
        let mut near = target.clone();
        near[i % DIMS] += 0.01;
        add(&app, "other", &format!("o{}", i % 5), &format!("theirs {i}"), near).await;
        add(&app, "acme", &format!("a{}", i % 5), &format!("ours {i}"), rng.vector()).await;
    }
    let exact = Nearest::new(Embedding::new("m", target)).with_limit(10);
    let query = exact.clone().approximate();
    let ours = app.nearest(query.clone().with_context(ctx("acme"))).await.unwrap();
    assert_eq!(ours.len(), 10);
    assert!(ours.iter().all(|n| n.message.content.to_text().starts_with("ours")), "{ours:?}");
    let exact = app.nearest(exact.with_context(ctx("acme"))).await.unwrap();
    let shared = ids(&ours).iter().filter(|id| ids(&exact).contains(id)).count();
    assert!(shared >= 8, "{shared} of the exact 10 found past the other tenant's nearer vectors");
    let thread = ThreadId::new("a3").unwrap();
    let in_thread = app.nearest(query.clone().in_thread(thread.clone()).with_context(ctx("acme"))).await.unwrap();
    assert_eq!(in_thread.len(), 10);
    assert!(in_thread.iter().all(|n| n.message.thread_id == thread));
    app.delete(Delete::thread(thread.clone()).with_context(ctx("acme"))).await.unwrap();
    let after = app.nearest(query.with_limit(1000).with_context(ctx("acme"))).await.unwrap();
    assert_eq!(after.len(), 240, "the deleted thread's 60 are gone");
    assert!(after.iter().all(|n| n.message.thread_id != thread));
    backend.close().await;
    drop_schema(&mut conn, &schema).await;
}

/// Whether the schema's index of `DIMS` dimensions is valid; `None` when there is none.
async fn index_state(conn: &mut PgConnection, schema: &str) -> Option<bool> {
    sqlx::query_scalar(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
    )
    .bind(schema)
    .bind(format!("persist_embeddings_hnsw_{DIMS}"))
    .fetch_optional(conn)
    .await
    .unwrap()
}

/// An instance that migrates builds the index; one that does not connects to it as it is (and
/// refuses dimensions nobody indexed); an index a build left invalid (marked so here, as a
/// build cut short leaves it) is built again by the next instance that migrates, and walked.
#[tokio::test]
async fn an_index_left_invalid_is_built_again_and_one_that_does_not_migrate_uses_it() {
    let Some(mut conn) = admin().await else { return };
    let schema = support::schema_name();
    let first = builder(&schema).pgvector_hnsw([DIMS]).connect().await.unwrap();
    assert_eq!(index_state(&mut conn, &schema).await, Some(true));
    let reader = builder(&schema).migrate(false).pgvector_hnsw([DIMS]).connect().await.unwrap();
    refused_naming(builder(&schema).migrate(false).pgvector_hnsw([DIMS, 8]).connect().await, "pgvector_hnsw");
    let mut rng = Rng(7);
    let app = Pipeline::new(first.clone());
    for i in 0..30 {
        add(&app, "acme", "t", &format!("m{i}"), rng.vector()).await;
    }
    let query = Nearest::new(Embedding::new("m", rng.vector())).with_limit(5).approximate().with_context(ctx("acme"));
    assert_eq!(Pipeline::new(reader.clone()).nearest(query.clone()).await.unwrap().len(), 5);
    sqlx::query(
        "UPDATE pg_index SET indisvalid = false WHERE indexrelid = \
         (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
           WHERE n.nspname = $1 AND c.relname = $2)",
    )
    .bind(&schema)
    .bind(format!("persist_embeddings_hnsw_{DIMS}"))
    .execute(&mut conn)
    .await
    .unwrap();
    refused_naming(builder(&schema).migrate(false).pgvector_hnsw([DIMS]).connect().await, "pgvector_hnsw");
    let again = builder(&schema).pgvector_hnsw([DIMS]).connect().await.unwrap();
    assert_eq!(index_state(&mut conn, &schema).await, Some(true), "built again");
    assert_eq!(Pipeline::new(again.clone()).nearest(query).await.unwrap().len(), 5);
    for store in [first, reader, again] {
        store.close().await;
    }
    drop_schema(&mut conn, &schema).await;
}

fn refused_naming(result: Result<PostgresBackend, PersistError>, field: &str) {
    match result {
        Err(PersistError::InvalidInput { field: named, .. }) => assert_eq!(named, field),
        other => panic!("expected InvalidInput naming {field}, got {:?}", other.map(|_| "a store")),
    }
}

/// Refused when connecting, each naming the setting: dimensions pgvector cannot index, a walk
/// too narrow or too wide, a server without pgvector (the machine's PostgreSQL 15), and an
/// instance that does not migrate asking for an index nobody built.
#[tokio::test]
async fn what_cannot_be_walked_is_refused_naming_the_setting() {
    let Some(mut conn) = admin().await else { return };
    let schema = support::schema_name();
    refused_naming(builder(&schema).pgvector_hnsw([0]).connect().await, "pgvector_hnsw");
    refused_naming(builder(&schema).pgvector_hnsw([384, 2_001]).connect().await, "pgvector_hnsw");
    refused_naming(builder(&schema).pgvector_hnsw([384]).pgvector_ef_search(0).connect().await, "pgvector_ef_search");
    refused_naming(
        builder(&schema).pgvector_hnsw([384]).pgvector_ef_search(1_001).connect().await,
        "pgvector_ef_search",
    );
    let plain = builder(&schema).connect().await.unwrap();
    refused_naming(builder(&schema).migrate(false).pgvector_hnsw([384]).connect().await, "pgvector_hnsw");
    refused_naming(builder(&schema).pgvector_ef_search(5_000).connect().await, "pgvector_ef_search");
    plain.close().await;
    drop_schema(&mut conn, &schema).await;
    if support::available().await {
        let schema = support::schema_name();
        let without = PostgresBackend::builder(support::url()).schema(&schema).pgvector_hnsw([384]).connect().await;
        refused_naming(without, "pgvector_hnsw");
        support::drop_schema(&schema).await;
    }
}
