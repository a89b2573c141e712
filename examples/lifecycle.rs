//! A thread's lifecycle on the embedded SQLite default: edit a message and regenerate
//! (truncate), branch a conversation (fork), keep only the latest messages and prune idle
//! threads (retention), and erase a thread on request (purge). Every step goes through the
//! pipeline, so the indexing observer here sees each write and each removal.
//!
//! Run: `cargo run --example lifecycle`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use persist::args::{Add, Delete};
use persist::layer::ObserveLayer;
use persist::lifecycle::{Fork, Prune};
use persist::prelude::*;
use persist::read::{GetThread, ListMessages};
use persist::sqlite::SqliteBackend;
use persist::{Content, PersistError, PersistResult, Pipeline, Role, ThreadId};

#[tokio::main]
async fn main() -> Result<(), PersistError> {
    let dir = std::env::temp_dir().join(format!("persist-lifecycle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| PersistError::backend("creating a directory", e))?;
    let store = SqliteBackend::open(dir.join("lifecycle.db")).await?;
    let removed = Arc::new(Mutex::new(0));
    let seen = removed.clone();
    let pipeline = Pipeline::builder()
        .layer(ObserveLayer::new().on_result(move |result: &PersistResult| {
            if let PersistResult::Deleted(deleted) = result {
                *seen.lock().unwrap() += deleted.message_ids.len(); // an index purges these
            }
        }))
        .build(store.clone());

    let chat = ThreadId::new("chat")?;
    for (role, text) in [
        (Role::User, "Plan a weekend in Lisbon"),
        (Role::Assistant, "Day 1: Alfama…"),
        (Role::User, "Make it cheaper"),
        (Role::Assistant, "Day 1: free walking tour…"),
    ] {
        pipeline.add(Add::new(chat.clone(), role, Content::text(text))).await?;
    }
    // Branch before the user edits anything: the original stays as it is.
    let branch = ThreadId::new("chat-original")?;
    let forked = pipeline.fork(Fork::new(chat.clone(), branch.clone())).await?;
    println!("forked {} messages into {branch}", forked.copied);

    // The user edits message 3: everything after it goes in one step, then the new answer.
    let truncated = pipeline.delete(Delete::after(chat.clone(), 3)).await?;
    println!("truncated after seq 3: {} removed", truncated.message_ids.len());
    let reply = Add::new(chat.clone(), Role::Assistant, Content::text("Day 1: picnic at Miradouro…"));
    println!("regenerated as seq {}", pipeline.add(reply).await?.message.seq);

    // Retention: keep the latest 3 messages of every thread.
    let report = pipeline.prune(Prune::new().with_keep_latest(3)).await?;
    println!("retention: {} messages removed over {} threads", report.deleted_messages, report.threads);
    for m in pipeline.list(ListMessages::new(chat.clone())).await?.items {
        println!("  #{} {}: {}", m.seq, m.role, m.content.to_text());
    }

    // Idle threads go after an age (here: any thread, a moment after its last write).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let idle = pipeline.prune(Prune::new().with_idle_for(Duration::from_millis(10)).dry_run(true)).await?;
    println!("idle threads a prune would delete: {:?}", idle.deleted_threads);

    // An erasure request: the branch's content, title and metadata are gone from the file.
    pipeline.delete(Delete::purge(branch.clone())).await?;
    let tombstone = pipeline.get_thread(GetThread::new(branch)).await?;
    println!("purged: tombstone {:?}", tombstone.map(|t| (t.is_deleted(), t.title, t.message_count)));
    println!("an index saw {} removals", removed.lock().unwrap());
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
