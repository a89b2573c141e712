//! Stores for the tests: a key ring, and the three backends behind `EncryptLayer`.
//!
//! PostgreSQL is `$PERSIST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`), a
//! fresh schema per store. In CI (`CI` set) an unreachable server fails the tests; elsewhere
//! they are skipped with a notice naming the variable.

#![allow(dead_code)] // each test file uses its own part

use std::time::Duration;

use persist::encrypt::{EncryptLayer, KeyId, KeyRing, SecretKey};
use persist::postgres::PostgresBackend;
use persist::{Backend, Pipeline};
use persist_conformance::{BoxError, Unavailable};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

pub(crate) const URL_VARIABLE: &str = "PERSIST_POSTGRES_URL";

pub(crate) fn url() -> String {
    std::env::var(URL_VARIABLE).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub(crate) fn ring() -> KeyRing {
    KeyRing::new().with_key(KeyId::new("k1").unwrap(), SecretKey::new([11; 32])).unwrap()
}

/// The layer the tests stack: content, the metadata key `secret`, and titles sealed.
pub(crate) fn layer(ring: KeyRing) -> EncryptLayer {
    EncryptLayer::new(ring).seal_metadata(["secret"]).seal_titles(true)
}

/// The stack over `backend`: it searches nothing (sealed content holds no text to index), and
/// says so.
pub(crate) fn encrypted<B: Backend>(ring: KeyRing, backend: B) -> Pipeline {
    let pipeline = Pipeline::builder().layer(layer(ring)).build(backend);
    let capabilities =
        pipeline.capabilities().with_search(false).with_vectors(false).with_working_memory(false).with_records(false);
    pipeline.with_capabilities(capabilities)
}

/// A connection for bookkeeping, or `Unavailable` (outside CI) when there is no server.
pub(crate) async fn admin() -> Result<PgConnection, BoxError> {
    let url = url();
    match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url)).await {
        Ok(Ok(conn)) => Ok(conn),
        failure => {
            let why = match failure {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_owned(),
            };
            if std::env::var_os("CI").is_some() {
                return Err(format!("PostgreSQL at {url} is required in CI: {why}").into());
            }
            eprintln!("SKIPPED PostgreSQL tests: no server at {url} ({why}); set {URL_VARIABLE} to run them");
            Err(Box::new(Unavailable(format!("no PostgreSQL at {url}"))))
        }
    }
}

pub(crate) fn schema_name() -> String {
    format!("persist_test_{}", uuid::Uuid::now_v7().simple())
}

pub(crate) async fn postgres(schema: &str) -> Result<PostgresBackend, BoxError> {
    Ok(PostgresBackend::builder(url()).schema(schema).max_connections(8).connect().await?)
}

pub(crate) async fn drop_schema(schema: &str) {
    if let Ok(mut conn) = admin().await {
        // Test-made names only: persist_test_ + hex.
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        let _ = sqlx::query(AssertSqlSafe(drop)).execute(&mut conn).await;
        let _ = conn.close().await;
    }
}

/// A store, the same store seen through the layer, and below it (values as stored).
pub(crate) fn stacks(ring: KeyRing) -> (Pipeline, Pipeline) {
    let store = persist::memory::MemoryBackend::new();
    (encrypted(ring, store.clone()), Pipeline::new(persist::memory::MemoryBackend::clone(&store)))
}

/// Asserts `answer` is `Unreadable`.
pub(crate) fn assert_unreadable<T: std::fmt::Debug>(answer: Result<T, persist::PersistError>, what: &str) {
    match answer {
        Err(persist::PersistError::Unreadable { .. }) => {}
        other => panic!("{what}: expected Unreadable, got {other:?}"),
    }
}

/// Whether `value` is an envelope sealed by the key `k1`.
pub(crate) fn sealed_text(value: &serde_json::Value) -> bool {
    value.get("persist:sealed").and_then(|text| text.as_str()).is_some_and(|text| text.starts_with("v1.k1."))
}
