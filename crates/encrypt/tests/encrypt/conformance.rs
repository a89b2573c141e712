//! The whole conformance suite through `EncryptLayer` (content, a metadata key and titles
//! sealed) over memory, SQLite and PostgreSQL: sealing changes what is stored, never what a
//! caller is answered.

use persist::Pipeline;
use persist::encrypt::KeyRing;
use persist::memory::MemoryBackend;
use persist::sqlite::SqliteBackend;
use persist_conformance::{BoxError, Factory};

use crate::support;

struct EncryptedMemory;

impl Factory for EncryptedMemory {
    type Backend = Pipeline;
    type Storage = (MemoryBackend, KeyRing);

    async fn create(&self) -> Result<(MemoryBackend, KeyRing), BoxError> {
        Ok((MemoryBackend::new(), support::ring()))
    }

    async fn open(&self, (store, ring): &(MemoryBackend, KeyRing)) -> Result<Pipeline, BoxError> {
        Ok(support::encrypted(ring.clone(), store.clone()))
    }
}

mod memory {
    use super::*;
    persist_conformance::conformance_tests!(EncryptedMemory);
}

struct EncryptedSqlite;

impl Factory for EncryptedSqlite {
    type Backend = Pipeline;
    type Storage = (tempfile::TempDir, KeyRing);

    async fn create(&self) -> Result<(tempfile::TempDir, KeyRing), BoxError> {
        let dir = tempfile::tempdir()?;
        persist_testkit::sqlite::fresh(&dir.path().join("sealed.db")).await?;
        Ok((dir, support::ring()))
    }

    async fn open(&self, (dir, ring): &(tempfile::TempDir, KeyRing)) -> Result<Pipeline, BoxError> {
        let store = SqliteBackend::open(dir.path().join("sealed.db")).await?;
        Ok(support::encrypted(ring.clone(), store))
    }
}

mod sqlite {
    use super::*;
    persist_conformance::conformance_tests!(EncryptedSqlite);
}

struct EncryptedPostgres;

impl Factory for EncryptedPostgres {
    type Backend = Pipeline;
    type Storage = (String, KeyRing);

    async fn create(&self) -> Result<(String, KeyRing), BoxError> {
        static REACHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        persist_testkit::until_reached(&REACHED, || async { support::admin().await.map(drop) }).await?;
        Ok((persist_testkit::schemas::take(&support::url()).await, support::ring()))
    }

    async fn open(&self, (schema, ring): &(String, KeyRing)) -> Result<Pipeline, BoxError> {
        Ok(support::encrypted(ring.clone(), support::postgres(schema).await?))
    }

    async fn dispose(&self, (schema, _): (String, KeyRing)) {
        persist_testkit::schemas::give_back(&support::url(), schema).await;
    }
}

mod postgres {
    use super::*;
    persist_conformance::conformance_tests!(EncryptedPostgres);
}
