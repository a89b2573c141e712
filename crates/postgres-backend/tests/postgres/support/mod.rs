//! Where the PostgreSQL tests find their server, and a fresh schema per test (the conformance
//! checks' reset and reused: `persist_testkit::schemas`).
//!
//! The server is `$PERSIST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! In CI (`CI` set) an unreachable server fails the tests; elsewhere they are skipped with a
//! notice naming the variable.

use std::sync::Once;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use persist_conformance::{BoxError, Factory, Unavailable};
use persist_postgres::PostgresBackend;
use persist_testkit::until_reached;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::sync::{RwLock, RwLockReadGuard};

pub(crate) const URL_VARIABLE: &str = "PERSIST_POSTGRES_URL";

pub(crate) fn url() -> String {
    std::env::var(URL_VARIABLE).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A connection for test bookkeeping, or `Unavailable` (outside CI) when there is no server.
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
            static NOTICE: Once = Once::new();
            NOTICE.call_once(|| {
                // Past the test harness's capture: the notice shows in every run.
                use std::io::Write;
                let notice =
                    format!("SKIPPED PostgreSQL tests: no server at {url} ({why}); set {URL_VARIABLE} to run them");
                let _ = writeln!(std::io::stderr(), "{notice}");
            });
            Err(Box::new(Unavailable(format!("no PostgreSQL at {url}"))))
        }
    }
}

/// Whether the server is there: `false` (with the notice) outside CI without one; in CI an
/// unreachable server fails the test.
#[allow(dead_code)] // not every test file that includes this module uses it
pub(crate) async fn available() -> bool {
    match admin().await {
        Ok(conn) => {
            let _ = conn.close().await;
            true
        }
        Err(missing) => {
            assert!(std::env::var_os("CI").is_none(), "{missing}");
            false
        }
    }
}

/// A new schema made by the shipped migrations up to schema `version` only, then `sql` run in
/// it in turn; answers the schema's name (`None` without a server, outside CI).
#[allow(dead_code)] // used by the upgrade and search tests
pub(crate) async fn shipped_schema(version: u32, sql: &[&str]) -> Option<String> {
    let mut conn = match admin().await {
        Ok(conn) => conn,
        Err(missing) => {
            assert!(std::env::var_os("CI").is_none(), "{missing}");
            return None;
        }
    };
    let schema = schema_name();
    // Test-made names only: persist_test_ + hex.
    let setup = format!("CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\"");
    sqlx::raw_sql(AssertSqlSafe(setup)).execute(&mut conn).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for file in std::fs::read_dir(&shipped).unwrap() {
        let name = file.unwrap().file_name().into_string().unwrap();
        if name[..4].parse::<u32>().unwrap() <= version {
            std::fs::copy(shipped.join(&name), dir.path().join(&name)).unwrap();
        }
    }
    sqlx::migrate::Migrator::new(dir.path()).await.unwrap().run(&mut conn).await.unwrap();
    for sql in sql.iter().filter(|sql| !sql.is_empty()) {
        sqlx::raw_sql(AssertSqlSafe((*sql).to_owned())).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    Some(schema)
}

/// A fresh schema name.
pub(crate) fn schema_name() -> String {
    format!("persist_test_{}", uuid::Uuid::now_v7().simple())
}

#[allow(dead_code)] // not every test file that includes this module uses it
pub(crate) async fn drop_schema(schema: &str) {
    if let Ok(mut conn) = admin().await {
        // Test-made names only: persist_test_ + hex.
        let _ =
            sqlx::query(AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))).execute(&mut conn).await;
        let _ = conn.close().await;
    }
}

/// One schema per check; independent pools per handle.
#[allow(dead_code)] // used by conformance.rs, not by every test file that includes this module
pub(crate) struct PostgresFactory;

impl Factory for PostgresFactory {
    type Backend = PostgresBackend;
    type Storage = String;

    async fn create(&self) -> Result<String, BoxError> {
        static REACHED: AtomicBool = AtomicBool::new(false);
        until_reached::<_, BoxError>(&REACHED, || async { Ok(admin().await?.close().await?) }).await?;
        Ok(persist_testkit::schemas::take(&url()).await)
    }

    async fn open(&self, schema: &String) -> Result<PostgresBackend, BoxError> {
        Ok(PostgresBackend::builder(url()).schema(schema.clone()).max_connections(8).connect().await?)
    }

    async fn dispose(&self, schema: String) {
        persist_testkit::schemas::give_back(&url(), schema).await;
    }
}

/// The replica-read tests' hot standby: `$PERSIST_POSTGRES_REPLICA_URL` (default
/// `postgres://postgres@127.0.0.1:5433/test`, the standby `.ci/replica` starts).
#[allow(dead_code)] // used by the replica tests
pub(crate) const REPLICA_VARIABLE: &str = "PERSIST_POSTGRES_REPLICA_URL";

#[allow(dead_code)] // used by the replica tests
pub(crate) fn replica_url() -> String {
    std::env::var(REPLICA_VARIABLE).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/test".to_owned())
}

/// A connection to the standby, or `Unavailable` (outside CI) when there is none; in CI a
/// missing standby fails the tests.
#[allow(dead_code)] // used by the replica tests
pub(crate) async fn replica_admin() -> Result<PgConnection, BoxError> {
    let url = replica_url();
    let why = match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url)).await {
        Ok(Ok(conn)) => return Ok(conn),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_owned(),
    };
    if std::env::var_os("CI").is_some() {
        return Err(format!("a PostgreSQL standby at {url} is required in CI (.ci/replica starts one): {why}").into());
    }
    static NOTICE: Once = Once::new();
    NOTICE.call_once(|| {
        use std::io::Write;
        let notice = format!(
            "SKIPPED PostgreSQL replica tests: no standby at {url} ({why}); run .ci/replica or set {REPLICA_VARIABLE}"
        );
        let _ = writeln!(std::io::stderr(), "{notice}");
    });
    Err(Box::new(Unavailable(format!("no PostgreSQL standby at {url}"))))
}

/// The standby, within this test binary: the replica tests (`replicas`) take it alone, as they
/// pause its replay and count the reads of every backend of the process; the conformance checks
/// on it (`replica_conformance`) share it, each from its storage's creation to its disposal.
#[allow(dead_code)] // used by the replica tests
pub(crate) static STANDBY: RwLock<()> = RwLock::const_new(());

/// One schema per check, every handle reading from the standby; the handles of one schema
/// share one consistency, so each reads the others' writes as its own.
#[allow(dead_code)] // used by replica_conformance.rs
pub(crate) struct ReplicaFactory;

impl Factory for ReplicaFactory {
    type Backend = PostgresBackend;
    type Storage = (String, persist_core::Consistency, RwLockReadGuard<'static, ()>);

    async fn create(&self) -> Result<Self::Storage, BoxError> {
        static REACHED: AtomicBool = AtomicBool::new(false);
        until_reached::<_, BoxError>(&REACHED, || async {
            admin().await?.close().await?;
            Ok(replica_admin().await?.close().await?)
        })
        .await?;
        let standby = STANDBY.read().await;
        Ok((persist_testkit::schemas::take(&url()).await, persist_core::Consistency::new(), standby))
    }

    async fn open(&self, (schema, seen, _): &Self::Storage) -> Result<PostgresBackend, BoxError> {
        let builder = PostgresBackend::builder(url()).schema(schema.clone()).max_connections(8);
        // Waits as long as a check may: a read the standby cannot answer in time is the
        // primary's, so the checks pass either way; the replica tests count which answered.
        let builder = builder.replica(replica_url()).consistency(seen.clone()).replica_wait(Duration::from_secs(2));
        Ok(builder.connect().await?)
    }

    async fn dispose(&self, (schema, _, standby): Self::Storage) {
        persist_testkit::schemas::give_back(&url(), schema).await;
        drop(standby);
    }
}

/// The PostgreSQL server through PgBouncer in transaction mode: `$PERSIST_POSTGRES_POOLER_URL`
/// (default `postgres://postgres@127.0.0.1:6432/test`, the pooler `.ci/pgbouncer` starts).
#[allow(dead_code)] // used by the pooler tests
pub(crate) const POOLER_VARIABLE: &str = "PERSIST_POSTGRES_POOLER_URL";

#[allow(dead_code)] // used by the pooler tests
pub(crate) fn pooler_url() -> String {
    std::env::var(POOLER_VARIABLE).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:6432/test".to_owned())
}

/// Whether the pooler is there: `false` (with a notice) outside CI without one; in CI a missing
/// pooler fails the test.
#[allow(dead_code)] // used by the pooler tests
pub(crate) async fn pooler_available() -> Result<(), BoxError> {
    let url = pooler_url();
    // A bare connection: PgBouncer takes it (no startup option persist's connections carry).
    let why = match tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            return Ok(());
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_owned(),
    };
    if std::env::var_os("CI").is_some() {
        return Err(format!("PgBouncer at {url} is required in CI (.ci/pgbouncer starts one): {why}").into());
    }
    static NOTICE: Once = Once::new();
    NOTICE.call_once(|| {
        use std::io::Write;
        let notice = format!(
            "SKIPPED PostgreSQL pooler tests: no PgBouncer at {url} ({why}); run .ci/pgbouncer or set {POOLER_VARIABLE}"
        );
        let _ = writeln!(std::io::stderr(), "{notice}");
    });
    Err(Box::new(Unavailable(format!("no PgBouncer at {url}"))))
}

/// One schema per check (made and reset directly), every handle through the pooler.
#[allow(dead_code)] // used by pooler.rs
pub(crate) struct PoolerFactory;

impl Factory for PoolerFactory {
    type Backend = PostgresBackend;
    type Storage = String;

    async fn create(&self) -> Result<String, BoxError> {
        static REACHED: AtomicBool = AtomicBool::new(false);
        until_reached::<_, BoxError>(&REACHED, || async {
            admin().await?.close().await?;
            pooler_available().await
        })
        .await?;
        Ok(persist_testkit::schemas::take(&url()).await)
    }

    async fn open(&self, schema: &String) -> Result<PostgresBackend, BoxError> {
        Ok(PostgresBackend::builder(pooler_url()).schema(schema.clone()).max_connections(8).connect().await?)
    }

    async fn dispose(&self, schema: String) {
        persist_testkit::schemas::give_back(&url(), schema).await;
    }
}
