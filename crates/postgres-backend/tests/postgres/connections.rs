//! What a write leaves on its connection when it is refused: the pool takes connections back
//! without a round trip, so a refused thread delete must end its own transaction (and free
//! the thread's row lock) before its connection is handed to the next write.

use std::time::Duration;

use persist_core::args::{Add, Delete};
use persist_core::{Backend, Content, PersistError, PersistResult, Role, ThreadId};
use persist_postgres::PostgresBackend;

use crate::support;

fn add(thread: &ThreadId, text: &str) -> persist_core::PersistArgs {
    Add::new(thread.clone(), Role::User, Content::text(text)).into()
}

fn seq(result: PersistResult) -> u64 {
    match result {
        PersistResult::Added(added) => added.message.seq,
        other => panic!("expected an add's answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_thread_delete_leaves_no_lock_behind() {
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    // One connection: the refused delete's connection is the very one the next write gets.
    let first =
        PostgresBackend::builder(support::url()).schema(schema.clone()).max_connections(1).connect().await.unwrap();
    let other =
        PostgresBackend::builder(support::url()).schema(schema.clone()).max_connections(1).connect().await.unwrap();
    let thread = ThreadId::new("locked").unwrap();
    assert_eq!(seq(first.apply(add(&thread, "one")).await.unwrap()), 1);

    let refused = first.apply(Delete::thread(thread.clone()).with_expected_version(99).into()).await;
    assert!(
        matches!(refused, Err(PersistError::VersionConflict { expected: 99, .. })),
        "a stale expected version is refused: {refused:?}"
    );

    // Another process's write to the same thread would wait on a row lock left open.
    let written = tokio::time::timeout(Duration::from_secs(5), other.apply(add(&thread, "two")))
        .await
        .expect("the thread's row lock was released with the refused delete")
        .unwrap();
    assert_eq!(seq(written), 2);
    // And the refused delete's connection still writes, outside any transaction.
    assert_eq!(seq(first.apply(add(&thread, "three")).await.unwrap()), 3);

    first.close().await;
    other.close().await;
    support::drop_schema(&schema).await;
}

/// Server connections opened under `application_name`.
async fn server_connections(admin: &mut sqlx::PgConnection, application: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
        .bind(application)
        .fetch_one(admin)
        .await
        .unwrap()
}

/// Callers that time out while their writes wait on the server for a row lock never make the
/// pool open more server connections than its maximum, and once the lock is gone the store
/// serves at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_writes_never_exceed_the_pools_server_connections() {
    use sqlx::{AssertSqlSafe, Connection};
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    let application = format!("cancel_{schema}");
    let url = format!("{}?application_name={application}", support::url());
    let backend = PostgresBackend::builder(url)
        .schema(schema.clone())
        .max_connections(2)
        .lock_timeout(Duration::from_secs(3))
        .connect()
        .await
        .unwrap();
    let thread = ThreadId::new("hot").unwrap();
    backend.apply(add(&thread, "first")).await.unwrap();

    // Another session holds the thread's row lock.
    let mut holder = sqlx::PgConnection::connect(&support::url()).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "BEGIN; SELECT 1 FROM \"{schema}\".threads WHERE thread_id = 'hot' FOR UPDATE"
    )))
    .execute(&mut holder)
    .await
    .unwrap();

    let mut admin = sqlx::PgConnection::connect(&support::url()).await.unwrap();
    let callers: Vec<_> = (0..4)
        .map(|caller| {
            let (backend, thread) = (backend.clone(), thread.clone());
            tokio::spawn(async move {
                for attempt in 0..10 {
                    let write = backend.apply(add(&thread, &format!("{caller}-{attempt}")));
                    let timed_out = tokio::time::timeout(Duration::from_millis(100), write).await;
                    assert!(timed_out.is_err(), "the row lock is held: {timed_out:?}");
                }
            })
        })
        .collect();
    let mut most = 0;
    while !callers.iter().all(|caller| caller.is_finished()) {
        most = most.max(server_connections(&mut admin, &application).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for caller in callers {
        caller.await.unwrap();
    }
    assert!(most <= 2, "{most} server connections for a pool of 2");

    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    // The lock is gone: the waiting statements end, their connections come back, and a fresh
    // write is served (within the drain bound, not after a pile of abandoned work).
    let written = tokio::time::timeout(Duration::from_secs(10), backend.apply(add(&thread, "fresh")))
        .await
        .expect("served once the lock was released")
        .unwrap();
    assert!(seq(written) >= 2);
    assert!(server_connections(&mut admin, &application).await <= 2);
    backend.close().await;
    support::drop_schema(&schema).await;
}

/// `schema=` in the URL names the schema, as it does for the CLI: the tables are created there,
/// not in `public`; a builder naming another schema, or a parameter nobody reads, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_url_names_the_schema() {
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    let url = format!("{}?schema={schema}", support::url());
    let store = PostgresBackend::connect(url.clone()).await.unwrap();
    assert_eq!(store.schema(), schema);
    let thread = ThreadId::new("in-its-schema").unwrap();
    store.apply(add(&thread, "hello")).await.unwrap();
    store.close().await;
    let mut admin = support::admin().await.unwrap();
    let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM \"{schema}\".messages")))
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(count, 1, "the message is in the URL's schema");
    let same = PostgresBackend::builder(url.clone()).schema(schema.clone()).connect().await.unwrap();
    same.close().await;
    let other = PostgresBackend::builder(url.clone()).schema("elsewhere").connect().await;
    assert!(matches!(other, Err(PersistError::InvalidInput { field: "schema", .. })), "{other:?}");
    let typo = PostgresBackend::connect(format!("{}?shcema={schema}", support::url())).await;
    assert!(matches!(typo, Err(PersistError::InvalidInput { field: "url", .. })), "{typo:?}");
    support::drop_schema(&schema).await;
}

/// A connection that cannot be made says where and why (the server's words, the OS's), and is
/// never called a lost connection: a database that does not exist is not temporary, a refused
/// connection is; the driver's error stays the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_names_the_server_and_its_cause() {
    if !support::available().await {
        return;
    }
    let base = support::url();
    let (server, _) = base.rsplit_once('/').unwrap();
    let missing = PostgresBackend::connect(format!("{server}/persist_no_such_database")).await.unwrap_err();
    let text = missing.to_string();
    assert!(text.contains("persist_no_such_database") && text.contains("does not exist"), "{text}");
    assert!(!text.contains("lost") && !missing.is_temporary(), "{text}");
    assert!(std::error::Error::source(&missing).is_some(), "the driver's error is kept as the source");
    let refused = PostgresBackend::builder("postgres://postgres@127.0.0.1:1/test")
        .acquire_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err();
    let text = refused.to_string();
    assert!(text.contains("127.0.0.1:1") && text.to_lowercase().contains("refused"), "{text}");
    assert!(!text.contains("lost") && refused.is_temporary(), "{text}");
}

/// A new store is made, its indexes included, while another session of the database holds an
/// old snapshot (an idle transaction of some other application): its tables are empty, so its
/// indexes are built at once, where a build `CONCURRENTLY` would wait for that transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_store_connects_beside_an_open_transaction() {
    if !support::available().await {
        return;
    }
    let mut other = support::admin().await.unwrap();
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1").execute(&mut other).await.unwrap();
    let schema = support::schema_name();
    let connecting = PostgresBackend::builder(support::url()).schema(schema.clone()).connect();
    let connected = tokio::time::timeout(Duration::from_secs(30), connecting).await;
    sqlx::raw_sql("COMMIT").execute(&mut other).await.unwrap();
    connected.expect("connected without waiting for the open transaction").unwrap().close().await;
    support::drop_schema(&schema).await;
}
