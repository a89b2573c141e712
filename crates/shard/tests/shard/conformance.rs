//! The whole conformance suite through [`Shards`]: tenants placed on three stores (in memory,
//! three PostgreSQL databases, a SQLite file beside a PostgreSQL schema), so the contract holds
//! as if there were one store. Each check opens every handle as an instance of its own (its
//! own placement cache) over the same stores and directory. Each check has fresh schemas:
//! `persist_testkit::schemas` resets those of a finished check for the next.

use std::time::Duration;

use persist::Pipeline;
use persist::memory::MemoryBackend;
use persist::postgres::PostgresBackend;
use persist::shard::Shards;
use persist::sqlite::SqliteBackend;
use persist_conformance::{BoxError, Factory};
use persist_testkit::schemas;

use crate::support::{DATABASES, database_url, databases};

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

/// Three PostgreSQL databases, one fresh schema in each per check; the directory in a schema
/// of its own in the first.
struct PostgresShards;

impl Factory for PostgresShards {
    type Backend = Shards;
    /// A schema in each database, and the directory's in the first.
    type Storage = ([String; 3], String);

    async fn create(&self) -> Result<Self::Storage, BoxError> {
        databases().await?;
        let mut schemas = Vec::new();
        for database in DATABASES {
            schemas.push(schemas::take(&database_url(database)).await);
        }
        let directory = schemas::take(&database_url(DATABASES[0])).await;
        Ok((schemas.try_into().map_err(|_| "three schemas")?, directory))
    }

    async fn open(&self, (schemas, directory): &Self::Storage) -> Result<Shards, BoxError> {
        let mut stores = Vec::new();
        for (database, schema) in DATABASES.iter().zip(schemas) {
            let backend = PostgresBackend::builder(database_url(database)).schema(schema).max_connections(4);
            stores.push(Pipeline::new(backend.connect().await?));
        }
        let directory = PostgresBackend::builder(database_url(DATABASES[0])).schema(directory);
        let directory = Pipeline::new(directory.max_connections(2).connect().await?);
        let builder = Shards::builder(directory).placement_ttl(TTL);
        let builder = DATABASES.iter().zip(stores).fold(builder, |builder, (name, store)| builder.shard(*name, store));
        Ok(builder.build()?)
    }

    async fn dispose(&self, (schemas, directory): Self::Storage) {
        for (database, schema) in DATABASES.iter().zip(schemas) {
            schemas::give_back(&database_url(database), schema).await;
        }
        schemas::give_back(&database_url(DATABASES[0]), directory).await;
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
        let dir = tempfile::tempdir()?;
        for file in ["shard.db", "directory.db"] {
            persist_testkit::sqlite::fresh(&dir.path().join(file)).await?;
        }
        Ok((dir, schemas::take(&database_url(DATABASES[1])).await))
    }

    async fn open(&self, (dir, schema): &(tempfile::TempDir, String)) -> Result<Shards, BoxError> {
        let file = Pipeline::new(SqliteBackend::open(dir.path().join("shard.db")).await?);
        let directory = Pipeline::new(SqliteBackend::open(dir.path().join("directory.db")).await?);
        let server = PostgresBackend::builder(database_url(DATABASES[1])).schema(schema).max_connections(4);
        let server = Pipeline::new(server.connect().await?);
        Ok(Shards::builder(directory).shard("file", file).shard("server", server).placement_ttl(TTL).build()?)
    }

    async fn dispose(&self, (_, schema): (tempfile::TempDir, String)) {
        schemas::give_back(&database_url(DATABASES[1]), schema).await;
    }
}

mod mixed {
    use super::*;
    persist_conformance::conformance_tests!(MixedShards);
}
