//! The whole conformance suite through [`Shards`]: tenants placed on three stores (in memory,
//! three PostgreSQL databases, a SQLite file beside a PostgreSQL schema), so the contract holds
//! as if there were one store. Each check opens every handle as an instance of its own (its
//! own placement cache) over the same stores and directory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use persist::Pipeline;
use persist::memory::MemoryBackend;
use persist::postgres::PostgresBackend;
use persist::shard::Shards;
use persist::sqlite::SqliteBackend;
use persist_conformance::{BoxError, Factory, Unavailable};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// A short TTL: the checks that reopen see placements as a new instance would.
const TTL: Duration = Duration::from_millis(200);

/// Three stores in memory, and the directory in a fourth.
struct MemoryShards;

impl Factory for MemoryShards {
    type Backend = Shards;
    type Storage = [MemoryBackend; 4];

    async fn create(&self) -> Result<[MemoryBackend; 4], BoxError> {
        Ok([MemoryBackend::new(), MemoryBackend::new(), MemoryBackend::new(), MemoryBackend::new()])
    }

    async fn open(&self, stores: &[MemoryBackend; 4]) -> Result<Shards, BoxError> {
        let [directory, a, b, c] = stores.clone().map(Pipeline::new);
        Ok(Shards::builder(directory).shard("a", a).shard("b", b).shard("c", c).placement_ttl(TTL).build()?)
    }
}

mod memory {
    use super::*;
    persist_conformance::conformance_tests!(MemoryShards);
}

fn url() -> String {
    std::env::var("PERSIST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The server's URL naming `database` instead.
fn database_url(database: &str) -> String {
    let url = url();
    let (base, query) = url.split_once('?').map_or((url.as_str(), None), |(base, query)| (base, Some(query)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

const DATABASES: [&str; 3] = ["persist_shard_1", "persist_shard_2", "persist_shard_3"];

/// The three databases (made once), or `Unavailable` outside CI without a server.
async fn databases() -> Result<(), BoxError> {
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

fn schema_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("persist_test_{:x}_{nanos:x}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn drop_schema(url: &str, schema: &str) {
    if let Ok(mut conn) = PgConnection::connect(url).await {
        // Test-made names only: persist_test_ + hex.
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        let _ = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut conn).await;
        let _ = conn.close().await;
    }
}

/// Three PostgreSQL databases, one fresh schema in each per check; the directory in a schema
/// of its own in the first.
struct PostgresShards;

impl Factory for PostgresShards {
    type Backend = Shards;
    type Storage = String;

    async fn create(&self) -> Result<String, BoxError> {
        databases().await?;
        Ok(schema_name())
    }

    async fn open(&self, schema: &String) -> Result<Shards, BoxError> {
        let mut stores = Vec::new();
        for database in DATABASES {
            let backend = PostgresBackend::builder(database_url(database)).schema(schema).max_connections(4);
            stores.push(Pipeline::new(backend.connect().await?));
        }
        let directory = PostgresBackend::builder(database_url(DATABASES[0])).schema(format!("{schema}_d"));
        let directory = Pipeline::new(directory.max_connections(2).connect().await?);
        let builder = Shards::builder(directory).placement_ttl(TTL);
        let builder = DATABASES.iter().zip(stores).fold(builder, |builder, (name, store)| builder.shard(*name, store));
        Ok(builder.build()?)
    }

    async fn dispose(&self, schema: String) {
        for database in DATABASES {
            drop_schema(&database_url(database), &schema).await;
        }
        drop_schema(&database_url(DATABASES[0]), &format!("{schema}_d")).await;
    }
}

mod postgres {
    use super::*;
    persist_conformance::conformance_tests!(PostgresShards);
}

/// A SQLite file and a PostgreSQL schema; the directory in a file of its own.
struct MixedShards;

impl Factory for MixedShards {
    type Backend = Shards;
    type Storage = (tempfile::TempDir, String);

    async fn create(&self) -> Result<(tempfile::TempDir, String), BoxError> {
        databases().await?;
        Ok((tempfile::tempdir()?, schema_name()))
    }

    async fn open(&self, (dir, schema): &(tempfile::TempDir, String)) -> Result<Shards, BoxError> {
        let file = Pipeline::new(SqliteBackend::open(dir.path().join("shard.db")).await?);
        let directory = Pipeline::new(SqliteBackend::open(dir.path().join("directory.db")).await?);
        let server = PostgresBackend::builder(database_url(DATABASES[1])).schema(schema).max_connections(4);
        let server = Pipeline::new(server.connect().await?);
        Ok(Shards::builder(directory).shard("file", file).shard("server", server).placement_ttl(TTL).build()?)
    }

    async fn dispose(&self, (_, schema): (tempfile::TempDir, String)) {
        drop_schema(&database_url(DATABASES[1]), &schema).await;
    }
}

mod mixed {
    use super::*;
    persist_conformance::conformance_tests!(MixedShards);
}
