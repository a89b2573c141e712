//! Full and read-only disks: failed writes that do not wedge the handle, reads that leave the file be.

use persist_core::args::{Reserve, Update, UpdateContent};
use persist_core::read::{GetThread, ListMessages};
use persist_core::{Backend, Content, Metadata, PersistError, PersistResult, Role};
use persist_sqlite::SqliteBackend;
use serde_json::json;
use sqlx::Connection;

use super::{add, raw, thread};

/// Fills a database capped by `max_database_bytes` with finalized replies until a write fails,
/// as a full disk would; answers that write's error.
async fn fill(backend: &SqliteBackend, thread_id: &str) -> PersistError {
    let big = Content::text("x".repeat(16 << 10));
    for _ in 0..1000 {
        let reserved = match backend.apply(Reserve::new(thread(thread_id), Role::Assistant).into()).await {
            Ok(PersistResult::Reserved(reserved)) => reserved.message,
            Ok(other) => panic!("{other:?}"),
            Err(error) => return error,
        };
        let update = UpdateContent::new(thread(thread_id), reserved.id, big.clone());
        if let Err(error) = backend.apply(update.into()).await {
            return error;
        }
    }
    panic!("the database never filled up");
}

#[tokio::test]
async fn a_full_database_fails_the_write_and_the_handle_goes_on_serving() {
    let dir = tempfile::tempdir().unwrap();
    let backend =
        SqliteBackend::builder(dir.path().join("small.db")).max_database_bytes(512 << 10).open().await.unwrap();
    backend.apply(add("kept", "before the disk filled")).await.unwrap();
    let placeholder = match backend.apply(Reserve::new(thread("kept"), Role::Assistant).into()).await.unwrap() {
        PersistResult::Reserved(reserved) => reserved.message.id,
        other => panic!("{other:?}"),
    };
    let full = fill(&backend, "filler").await;
    assert!(full.to_string().contains("full"), "says the database is full: {full}");
    assert!(!full.is_temporary(), "{full:?}");

    // Full still: every kind of write fails cleanly, none wedges the handle...
    let update = UpdateContent::new(thread("kept"), placeholder.clone(), Content::text("y".repeat(64 << 10)));
    let error = backend.apply(update.into()).await.unwrap_err();
    assert!(error.to_string().contains("full"), "{error}");
    // ...and once room is freed, updates, deletes and content updates work on the same handle.
    let deleted = backend.apply(persist_core::args::Delete::thread(thread("filler")).into()).await.unwrap();
    assert!(matches!(deleted, PersistResult::Deleted(ref d) if !d.message_ids.is_empty()), "{deleted:?}");
    let patch = Update::message(thread("kept"), placeholder.clone()).with_metadata(Metadata::new().with("k", json!(1)));
    backend.apply(patch.into()).await.unwrap();
    let finished = UpdateContent::new(thread("kept"), placeholder.clone(), Content::text("finished after all"));
    backend.apply(finished.into()).await.unwrap();
    let page = backend.list(ListMessages::new(thread("kept"))).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.items[1].content.to_text(), "finished after all");
    assert_eq!(page.items[1].metadata.get("k"), Some(&json!(1)));
}

/// A small tmpfs mounted for one test, unmounted when dropped. Mounting needs root (CI runs as
/// root): in CI a failure to mount fails the test; elsewhere the test is skipped, saying so.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: usize) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status();
        match mounted {
            Ok(status) if status.success() => Some(Self { dir }),
            failure if std::env::var_os("CI").is_some() => panic!("CI must be able to mount a tmpfs: {failure:?}"),
            failure => {
                eprintln!("SKIPPED: cannot mount a tmpfs here (needs root): {failure:?}");
                None
            }
        }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

impl SmallDisk {
    /// Makes the filesystem read-only.
    fn freeze(&self) {
        let status = std::process::Command::new("mount").args(["-o", "remount,ro"]).arg(self.path()).status();
        assert!(status.is_ok_and(|status| status.success()), "remounting read-only");
    }
}

/// A file on a read-only filesystem opens for reads: its messages and feed are read, writes
/// are refused naming the file; a writable open says which file and why, and how to read it.
#[tokio::test]
async fn a_file_on_a_read_only_filesystem_opens_for_reads() {
    let Some(disk) = SmallDisk::mount(16 << 20) else { return };
    let path = disk.path().join("archive.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    backend.apply(add("kept", "one")).await.unwrap();
    backend.apply(add("kept", "two")).await.unwrap();
    backend.close().await;
    disk.freeze();

    let error = SqliteBackend::open(&path).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains(&path.display().to_string()), "names the file: {text}");
    assert!(text.contains("read_only(true)"), "says how to read it: {text}");

    let reader = SqliteBackend::builder(&path).read_only(true).open().await.unwrap();
    reader.ping().await.unwrap();
    let page = reader.list(ListMessages::new(thread("kept"))).await.unwrap();
    assert_eq!(page.items.iter().map(|m| m.content.to_text()).collect::<Vec<_>>(), ["one", "two"]);
    assert_eq!(reader.get_thread(GetThread::new(thread("kept"))).await.unwrap().unwrap().message_count, 2);
    let feed = reader.read_feed(persist_core::feed::ReadFeed::thread(thread("kept"))).await.unwrap();
    assert_eq!(feed.events.len(), 2);
    match reader.apply(add("kept", "three")).await {
        Err(PersistError::Rejected { reason }) => assert!(reason.contains("reads only"), "{reason}"),
        other => panic!("a write through a read-only handle: {other:?}"),
    }
    assert!(reader.check().await.unwrap().is_ok());
    reader.close().await;
}

/// A read-only handle never writes, not even to a writable file: no migration, no feed state.
#[tokio::test]
async fn a_read_only_handle_leaves_the_file_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let missing = SqliteBackend::builder(dir.path().join("none.db")).read_only(true).open().await.unwrap_err();
    assert!(missing.to_string().contains("none.db"), "{missing}");
    assert!(!dir.path().join("none.db").exists(), "a read-only open creates nothing");
    let backend = SqliteBackend::open(&path).await.unwrap();
    backend.apply(add("t", "hello")).await.unwrap();
    backend.close().await;
    let before = std::fs::read(&path).unwrap();
    let reader = SqliteBackend::builder(&path).read_only(true).feed(None).open().await.unwrap();
    assert_eq!(reader.list(ListMessages::new(thread("t"))).await.unwrap().items.len(), 1);
    assert!(matches!(reader.apply(add("t", "no")).await, Err(PersistError::Rejected { .. })));
    reader.close().await;
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file is unchanged");
    // A file behind the schema the reads use (11 gave the feed's events a delta) is refused:
    // a read-only handle cannot upgrade it.
    let mut sql = raw(&path).await;
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version >= 11").execute(&mut sql).await.unwrap();
    sql.close().await.unwrap();
    let old = SqliteBackend::builder(&path).read_only(true).open().await.unwrap_err();
    assert!(matches!(&old, PersistError::Unsupported { what } if what.contains("upgrade")), "{old:?}");
}

/// Writes a file as large as the disk lets it grow.
fn ballast(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

#[tokio::test]
async fn a_commit_that_fails_on_a_full_disk_does_not_wedge_the_handle() {
    let Some(disk) = SmallDisk::mount(2 << 20) else { return };
    let backend = SqliteBackend::open(disk.path().join("chat.db")).await.unwrap();
    backend.apply(add("t", "before the disk filled")).await.unwrap();
    let placeholder = match backend.apply(Reserve::new(thread("t"), Role::Assistant).into()).await.unwrap() {
        PersistResult::Reserved(reserved) => reserved.message.id,
        other => panic!("{other:?}"),
    };
    ballast(&disk.path().join("ballast"));
    // The update's pages no longer fit in the write-ahead log: its COMMIT fails.
    let big = UpdateContent::new(thread("t"), placeholder.clone(), Content::text("y".repeat(256 << 10)));
    let error = backend.apply(big.into()).await.unwrap_err();
    assert!(error.to_string().contains("full"), "says the disk is full: {error}");

    std::fs::remove_file(disk.path().join("ballast")).unwrap();
    // Room again: the same handle serves every kind of write.
    let partial = UpdateContent::partial(thread("t"), placeholder.clone(), Content::text("streaming"));
    backend.apply(partial.into()).await.unwrap();
    let patch = Update::message(thread("t"), placeholder.clone()).with_metadata(Metadata::new().with("k", json!(1)));
    backend.apply(patch.into()).await.unwrap();
    let done = UpdateContent::new(thread("t"), placeholder.clone(), Content::text("finished after all"));
    backend.apply(done.into()).await.unwrap();
    backend.apply(add("other", "to delete")).await.unwrap();
    backend.apply(persist_core::args::Delete::thread(thread("other")).into()).await.unwrap();
    let page = backend.list(ListMessages::new(thread("t"))).await.unwrap();
    assert_eq!(page.items[1].content.to_text(), "finished after all");
    assert_eq!(page.items[1].metadata.get("k"), Some(&json!(1)));
    drop(backend);
}
