//! A purge erases a thread from the file: no byte of what it said stays in the database file or
//! its write-ahead log, while other threads are untouched. A plain delete is the control: it
//! leaves the title in its tombstone, so the search can find what it looks for.

use persist_core::args::{Add, Delete, Update, UpdateContent};
use persist_core::{Backend, Content, Metadata, ThreadId};
use persist_sqlite::SqliteBackend;
use serde_json::json;

const MARKER: &str = "MARKER-erase-4d1c-PRIVATE";
const KEEP: &str = "KEEP-other-thread-9a2e";

fn holds(path: &std::path::Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes.windows(needle.len()).any(|window| window == needle.as_bytes())
}

async fn write_thread(backend: &SqliteBackend, id: &ThreadId, text: &str) {
    for i in 0..20 {
        // Some big enough to spill into overflow pages.
        let body = if i % 5 == 0 { format!("{text} {}", "x".repeat(6000)) } else { format!("{text} #{i}") };
        backend.apply(Add::new(id.clone(), persist_core::Role::User, Content::text(body)).into()).await.unwrap();
    }
    // A big message rewritten (its first content's overflow pages freed) and one deleted.
    let big =
        Add::new(id.clone(), persist_core::Role::Assistant, Content::text(format!("{text} {}", "y".repeat(9000))));
    let big = backend.apply(big.into()).await.unwrap();
    let big = big.message().unwrap().clone();
    let rewrite = UpdateContent::new(id.clone(), big.id.clone(), Content::text(format!("{text} short")));
    backend.apply(rewrite.into()).await.unwrap();
    let gone = Add::new(id.clone(), persist_core::Role::User, Content::text(format!("{text} {}", "z".repeat(9000))));
    let gone = backend.apply(gone.into()).await.unwrap().message().unwrap().clone();
    backend.apply(Delete::message(id.clone(), gone.id).into()).await.unwrap();
    let titled = Update::thread(id.clone())
        .with_title(Some(format!("{text} title")))
        .with_metadata(Metadata::new().with("note", json!(format!("{text} note"))));
    backend.apply(titled.into()).await.unwrap();
}

#[tokio::test]
async fn a_purged_thread_leaves_nothing_in_the_file_or_its_log() {
    for purge in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("purge.db");
        let wal = dir.path().join("purge.db-wal");
        let backend = SqliteBackend::open(&path).await.unwrap();
        let (secret, other) = (ThreadId::new("secret").unwrap(), ThreadId::new("other").unwrap());
        write_thread(&backend, &secret, MARKER).await;
        write_thread(&backend, &other, KEEP).await;
        assert!(holds(&path, MARKER) || holds(&wal, MARKER), "written");

        let delete = if purge { Delete::purge(secret.clone()) } else { Delete::thread(secret.clone()) };
        let deleted = backend.apply(delete.into()).await.unwrap();
        assert!(matches!(deleted, persist_core::PersistResult::Deleted(d) if d.message_ids.len() == 21));
        let found = holds(&path, MARKER) || holds(&wal, MARKER);
        assert_eq!(found, !purge, "purge: {purge}: the marker is found after a plain delete only");
        assert!(holds(&path, KEEP) || holds(&wal, KEEP), "the other thread is untouched");
        // Still nowhere once the handle is closed (nothing was only hidden in a cache).
        backend.close().await;
        assert_eq!(holds(&path, MARKER) || holds(&wal, MARKER), !purge);
    }
}
