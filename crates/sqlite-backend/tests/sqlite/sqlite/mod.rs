//! What is specific to SQLite: opening foreign or newer files, limits, group commit isolation,
//! dropped callers, and the file as a real `sqlite3` client sees it.

mod disk;
mod integrity;
mod opening;
mod wal;
mod writes;

use persist_core::args::Add;
use persist_core::{Content, PersistArgs, Role, ThreadId};
use sqlx::{Connection, SqliteConnection};

fn thread(id: &str) -> ThreadId {
    ThreadId::new(id).unwrap()
}

fn add(thread_id: &str, text: &str) -> PersistArgs {
    Add::new(thread(thread_id), Role::User, Content::text(text)).into()
}

async fn raw(path: &std::path::Path) -> SqliteConnection {
    SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap()
}
