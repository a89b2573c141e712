//! What the tests of tenants on several servers share: three PostgreSQL databases on the test
//! server, fresh schema names, and dropping them.

#![allow(dead_code, unreachable_pub)] // each test file uses part of it

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use persist_conformance::{BoxError, Unavailable};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The test server's URL (`PERSIST_POSTGRES_URL`).
pub(crate) fn url() -> String {
    std::env::var("PERSIST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The server's URL naming `database` instead.
pub(crate) fn database_url(database: &str) -> String {
    let url = url();
    let (base, query) = url.split_once('?').map_or((url.as_str(), None), |(base, query)| (base, Some(query)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

pub(crate) const DATABASES: [&str; 3] = ["persist_shard_1", "persist_shard_2", "persist_shard_3"];

/// The three databases (made once), or `Unavailable` outside CI without a server.
pub(crate) async fn databases() -> Result<(), BoxError> {
    // Once they were found or made by this process, they are there: not asked again each check.
    static MADE: AtomicBool = AtomicBool::new(false);
    persist_testkit::until_reached(&MADE, make_databases).await
}

async fn make_databases() -> Result<(), BoxError> {
    let mut admin = match PgConnection::connect(&url()).await {
        Ok(conn) => conn,
        Err(error) if std::env::var_os("CI").is_some() => {
            return Err(format!("PostgreSQL at {} is required in CI: {error}", url()).into());
        }
        Err(error) => return Err(Box::new(Unavailable(format!("no PostgreSQL at {}: {error}", url())))),
    };
    for database in DATABASES {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut admin)
            .await?;
        if !exists {
            // Test-made names only. Checks racing to make it: one wins, the others find it.
            let create = format!("CREATE DATABASE \"{database}\"");
            if let Err(error) = sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut admin).await {
                let raced = error.as_database_error().and_then(|db| db.code()).is_some_and(|code| {
                    code == "42P04" || code == "23505" // duplicate database, or the catalog's unique index
                });
                if !raced {
                    return Err(Box::new(error));
                }
            }
        }
    }
    let _ = admin.close().await;
    Ok(())
}

pub(crate) fn schema_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("persist_test_{:x}_{nanos:x}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

pub(crate) async fn drop_schema(url: &str, schema: &str) {
    if let Ok(mut conn) = PgConnection::connect(url).await {
        // Test-made names only: persist_test_ + hex.
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        let _ = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut conn).await;
        let _ = conn.close().await;
    }
}

/// Drops `schema` in each of the three databases, and the directory's `{schema}_d` in the first.
pub(crate) async fn drop_shard_schemas(schema: &str) {
    for database in DATABASES {
        drop_schema(&database_url(database), schema).await;
    }
    drop_schema(&database_url(DATABASES[0]), &format!("{schema}_d")).await;
}
