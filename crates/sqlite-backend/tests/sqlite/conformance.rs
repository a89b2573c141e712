//! The whole conformance suite against SQLite files, including two handles on one file
//! racing each other and reopen durability. Each check's file is a copy of one migrated once
//! (`persist_testkit::sqlite`); opening a new file, migrations and all, is checked in
//! `sqlite/opening.rs`.

use persist_conformance::{BoxError, Factory};
use persist_sqlite::SqliteBackend;
use tempfile::TempDir;

struct SqliteFactory;

impl Factory for SqliteFactory {
    type Backend = SqliteBackend;
    type Storage = TempDir;

    async fn create(&self) -> Result<TempDir, BoxError> {
        let dir = tempfile::tempdir()?;
        persist_testkit::sqlite::fresh(&dir.path().join("persist.db")).await?;
        Ok(dir)
    }

    async fn open(&self, dir: &TempDir) -> Result<SqliteBackend, BoxError> {
        Ok(SqliteBackend::open(dir.path().join("persist.db")).await?)
    }
}

persist_conformance::conformance_tests!(SqliteFactory);
