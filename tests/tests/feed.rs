//! The change feed beyond the conformance suite: resuming past retention is a typed gap on
//! every backend, and a subscriber follows the writes of another process on a SQLite file.

use std::process::{Command, Stdio};
use std::time::Duration;

use persist::args::Add;
use persist::feed::{FeedRetention, ReadFeed};
use persist::memory::MemoryBackend;
use persist::sqlite::SqliteBackend;
use persist::{Backend, Content, PersistError, PersistOp, Pipeline, Role, ThreadId};

/// A retention keeping the last three events.
fn three() -> FeedRetention {
    FeedRetention::forever().with_max_events(Some(3))
}

/// Writes ten adds, then checks that a reader resuming from before what is kept gets a gap
/// naming the newest position removed, and one resuming from there reads the rest.
async fn gap_after_retention<B: Backend>(backend: &B, trim: impl AsyncFnOnce() -> u64) {
    let thread = ThreadId::new("kept-short").unwrap();
    for n in 0..10 {
        backend.apply(Add::new(thread.clone(), Role::User, Content::text(format!("{n}"))).into()).await.unwrap();
    }
    let trimmed = trim().await;
    let page = backend.read_feed(ReadFeed::thread(thread.clone()).after(trimmed)).await.unwrap();
    assert_eq!(page.events.len(), 3, "the three kept: {page:?}");
    assert_eq!(page.head, trimmed + 3);
    for after in [0, trimmed - 1] {
        match backend.read_feed(ReadFeed::thread(thread.clone()).after(after)).await {
            Err(PersistError::FeedGap { after: asked, trimmed: gone }) => assert_eq!((asked, gone), (after, trimmed)),
            other => panic!("resuming after {after} with {trimmed} removed: expected a gap, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn resuming_past_retention_is_a_gap_in_memory() {
    let backend = MemoryBackend::new().with_feed(Some(three()));
    gap_after_retention(&backend, async || 7).await;
}

#[tokio::test]
async fn resuming_past_retention_is_a_gap_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::builder(dir.path().join("feed.db")).feed(Some(three())).open().await.unwrap();
    gap_after_retention(&backend, async || backend.trim_feed().await.unwrap()).await;
    backend.close().await;
}

#[tokio::test]
async fn a_subscriber_follows_another_process_writing_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    let pipeline = Pipeline::new(backend.clone());
    let thread = ThreadId::new("crash-0").unwrap();
    let mut following = pipeline.subscribe(ReadFeed::thread(thread.clone())).await.unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
        .arg(&path)
        .arg("feed")
        .stdout(Stdio::null())
        .spawn()
        .expect("start the writer process");
    let mut seen = Vec::new();
    while seen.len() < 50 {
        let next = tokio::time::timeout(Duration::from_secs(10), following.next()).await;
        seen.push(next.expect("the other process's writes arrive").unwrap());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen.iter().all(|e| e.op == PersistOp::Add && e.thread_id == thread), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position && w[0].seq < w[1].seq), "in commit order");
    let stored = backend.read_feed(ReadFeed::thread(thread).with_limit(50)).await.unwrap();
    assert_eq!(stored.events, seen, "each event once, in the stored order");
    backend.close().await;
}
