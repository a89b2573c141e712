//! Fresh SQLite stores for suites that make one per test (the conformance suite makes one per
//! check): each is a copy of a store migrated once per process, written where the test asks,
//! instead of a new file migrated anew (two dozen migrations, most of a check's time).
//!
//! A copy is the file the migrations leave, byte for byte: opening it finds every migration
//! applied, as a second open of a new store does.
//!
//! ```no_run
//! # async fn check() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("persist.db");
//! persist_testkit::sqlite::fresh(&path).await?;
//! let store = persist::sqlite::SqliteBackend::open(&path).await?;
//! # Ok(()) }
//! ```

use std::path::Path;

use persist::sqlite::SqliteBackend;
use tokio::sync::OnceCell;

/// A test's error.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Writes a new, migrated SQLite store at `path` (which must not exist yet).
///
/// # Errors
///
/// What migrating the template or writing the file failed with.
pub async fn fresh(path: &Path) -> Result<(), BoxError> {
    static TEMPLATE: OnceCell<Vec<u8>> = OnceCell::const_new();
    let template = TEMPLATE.get_or_try_init(template).await?;
    if path.exists() {
        return Err(format!("{} exists already: a fresh store is a new file", path.display()).into());
    }
    std::fs::write(path, template)?;
    Ok(())
}

/// The bytes of a store just migrated and closed (its write-ahead log checkpointed into it).
async fn template() -> Result<Vec<u8>, BoxError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("template.db");
    let store = SqliteBackend::open(&path).await?;
    store.close().await;
    drop(store);
    let wal = dir.path().join("template.db-wal");
    if std::fs::metadata(&wal).is_ok_and(|wal| wal.len() > 0) {
        return Err("the template store's write-ahead log was not checkpointed when it closed".into());
    }
    Ok(std::fs::read(&path)?)
}
