//! What the upgrade tests share: files made by the shipped migrations up to a version, and a
//! connection on them below the backend.

#![allow(dead_code)] // each test file uses its own part

use persist_core::args::Add;
use persist_core::{Content, PersistArgs, Role, ThreadId};
use sqlx::{Connection, SqliteConnection};

pub(crate) fn thread(id: &str) -> ThreadId {
    ThreadId::new(id).unwrap()
}

pub(crate) fn add(thread_id: &str, text: &str) -> PersistArgs {
    Add::new(thread(thread_id), Role::User, Content::text(text)).into()
}

pub(crate) async fn raw(path: &std::path::Path) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap()
}

/// A new database at `path` made by the shipped migrations up to schema `version` only, as
/// that version left it; answers a connection on it.
pub(crate) async fn shipped_schema(dir: &tempfile::TempDir, path: &std::path::Path, version: u32) -> SqliteConnection {
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for file in std::fs::read_dir(&shipped).unwrap() {
        let name = file.unwrap().file_name().into_string().unwrap();
        if name[..4].parse::<u32>().unwrap() <= version {
            std::fs::copy(shipped.join(&name), old.join(&name)).unwrap();
        }
    }
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display())).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path()).await.unwrap().run(&mut conn).await.unwrap();
    conn
}
