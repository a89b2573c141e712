//! Writes: limits, group commit isolation, dropped callers, and close finishing queued writes.

use std::sync::Arc;
use std::time::Duration;

use persist_core::args::{Add, Reserve, Update, UpdateContent};
use persist_core::read::{GetThread, ListMessages};
use persist_core::{Backend, Content, Metadata, PersistArgs, PersistError, PersistResult, Role};
use persist_sqlite::SqliteBackend;
use serde_json::json;
use sqlx::Connection;

use super::{add, raw, thread};

#[tokio::test]
async fn content_and_metadata_over_the_limits_are_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::builder(dir.path().join("limits.db"))
        .max_content_bytes(1_000)
        .max_metadata_bytes(100)
        .open()
        .await
        .unwrap();
    let big = add("t", &"x".repeat(2_000));
    assert!(matches!(backend.apply(big).await, Err(PersistError::InvalidInput { field: "content", .. })));
    let meta = Metadata::new().with("note", json!("y".repeat(200)));
    let args = Add::new(thread("t"), Role::User, Content::text("ok")).with_metadata(meta.clone());
    assert!(matches!(backend.apply(args.into()).await, Err(PersistError::InvalidInput { field: "metadata", .. })));
    assert!(backend.get_thread(GetThread::new(thread("t"))).await.unwrap().is_none(), "nothing was written");

    // A merge that would grow metadata past the limit is refused too, and changes nothing.
    let stored = backend.apply(add("t", "small")).await.unwrap();
    let id = stored.message().unwrap().id.clone();
    let patch = Update::message(thread("t"), id.clone()).with_metadata(meta);
    assert!(matches!(backend.apply(patch.into()).await, Err(PersistError::InvalidInput { field: "metadata", .. })));
    let big = UpdateContent::new(thread("t"), id, Content::text("z".repeat(2_000)));
    assert!(matches!(backend.apply(big.into()).await, Err(PersistError::InvalidInput { field: "content", .. })));
    let page = backend.list(ListMessages::new(thread("t"))).await.unwrap();
    assert_eq!((page.items[0].version, page.items[0].content.to_text().as_str()), (1, "small"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writes_in_a_group_commit_do_not_fail_their_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(SqliteBackend::open(dir.path().join("group.db")).await.unwrap());
    let target = backend.apply(add("shared", "target")).await.unwrap().message().unwrap().id.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let backend = backend.clone();
        let target = target.clone();
        tasks.spawn(async move {
            let args: PersistArgs = if i % 2 == 0 {
                add("shared", &format!("add {i}"))
            } else {
                // Always stale: the target stays at version 1.
                UpdateContent::new(thread("shared"), target, Content::text("lost")).with_expected_version(99).into()
            };
            (i, backend.apply(args).await)
        });
    }
    for (i, result) in tasks.join_all().await {
        if i % 2 == 0 {
            assert!(result.is_ok(), "add {i} failed: {result:?}");
        } else {
            assert!(matches!(result, Err(PersistError::VersionConflict { .. })), "{result:?}");
        }
    }
    let th = backend.get_thread(GetThread::new(thread("shared"))).await.unwrap().unwrap();
    assert_eq!((th.message_count, th.last_seq), (101, 101));
}

/// The writer sends the next group before answering the last: a group that fails mid-statement
/// is then isolated write by write while other groups queue, and every caller still gets its
/// own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_breaks_its_group_fails_alone_while_groups_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overlap.db");
    let backend = Arc::new(SqliteBackend::open(&path).await.unwrap());
    let mut conn = raw(&path).await;
    sqlx::query(
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON persist_messages WHEN NEW.content LIKE '%boom%' \
         BEGIN SELECT RAISE(ABORT, 'boom refused'); END",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    // 40 callers, each writing 10 times in turn to its own thread: while one group commits,
    // the callers answered before it queue the next.
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..40 {
        let backend = backend.clone();
        tasks.spawn(async move {
            let mut results = Vec::new();
            for i in caller * 10..caller * 10 + 10 {
                let text = if i % 25 == 7 { format!("boom {i}") } else { format!("message {i}") };
                let result = backend.apply(add(&format!("t{caller}"), &text)).await;
                results.push((text, result));
            }
            results
        });
    }
    let mut written = 0;
    for (text, result) in tasks.join_all().await.into_iter().flatten() {
        if text.starts_with("boom") {
            assert!(matches!(result, Err(PersistError::Backend { .. })), "{text}: {result:?}");
        } else {
            let message = result.unwrap_or_else(|e| panic!("{text} failed: {e}")).message().unwrap().clone();
            assert_eq!(message.content.to_text(), text, "each caller gets its own write back");
            written += 1;
        }
    }
    assert_eq!(written, 400 - 16);
    for t in 0..40 {
        let page = backend.list(ListMessages::new(thread(&format!("t{t}"))).with_limit(100)).await.unwrap();
        let seqs: Vec<u64> = page.items.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=page.items.len() as u64).collect::<Vec<_>>(), "no seq lost or taken twice");
        assert!(page.items.iter().all(|m| m.content.to_text().starts_with("message ")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_caller_leaves_the_whole_write_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(SqliteBackend::open(dir.path().join("dropped.db")).await.unwrap());
    let slot = backend.apply(Reserve::new(thread("t"), Role::Assistant).into()).await.unwrap();
    let slot = slot.message().unwrap().id.clone();
    // Callers give up after a few microseconds: some writes land, some never start.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300u64 {
        let backend = backend.clone();
        let slot = slot.clone();
        tasks.spawn(async move {
            let args: PersistArgs = if i % 3 == 0 {
                UpdateContent::partial(thread("t"), slot, Content::text(format!("stream {i}"))).into()
            } else {
                add("t", &format!("message {i}"))
            };
            let _ = tokio::time::timeout(Duration::from_micros(i % 50), backend.apply(args)).await;
        });
    }
    tasks.join_all().await;
    // Let the writer finish whatever was queued.
    let settled = backend.apply(add("t", "after")).await.unwrap();
    let all = backend.list(ListMessages::new(thread("t")).include_reserved(true).with_limit(1000)).await.unwrap();
    let th = backend.get_thread(GetThread::new(thread("t"))).await.unwrap().unwrap();
    assert_eq!(th.message_count as usize, all.items.len(), "counters match the rows");
    assert_eq!(th.last_seq, settled.message().unwrap().seq);
    for m in &all.items {
        let text = m.content.to_text();
        assert!(
            text.is_empty() || text.starts_with("message ") || text.starts_with("stream ") || text == "after",
            "half-written content: {text:?}"
        );
    }
    let seqs: Vec<u64> = all.items.iter().map(|m| m.seq).collect();
    let mut sorted = seqs.clone();
    sorted.dedup();
    assert_eq!(seqs, sorted, "no seq was assigned twice");
}

#[tokio::test]
async fn close_finishes_queued_writes_and_frees_the_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("closed.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    backend.ping().await.unwrap();
    // Writes queued when close is called are finished and answered.
    let queued: Vec<_> = (0..20)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.apply(add("t", &format!("queued {i}"))).await })
        })
        .collect();
    tokio::task::yield_now().await;
    let clone = backend.clone();
    tokio::join!(backend.close(), clone.close());
    let answered = answers_of(queued).await;
    // Every write is answered: written, or refused because the backend was closing.
    assert!(answered.iter().all(|a| a.is_ok() || a.as_ref().is_err_and(|e| e.to_string().contains("stopped"))));
    let written = answered.iter().filter(|a| a.is_ok()).count();

    // Closed for every clone: writes, reads and pings fail, typed; a third close returns.
    let error = backend.apply(add("t", "late")).await.unwrap_err();
    assert!(matches!(error, PersistError::Backend { .. }), "{error:?}");
    assert!(backend.list(ListMessages::new(thread("t"))).await.is_err());
    assert!(backend.ping().await.is_err());
    backend.close().await;

    // Every connection is closed: another client takes the file's exclusive lock at once.
    let mut other = raw(&path).await;
    sqlx::raw_sql("PRAGMA busy_timeout = 0; BEGIN EXCLUSIVE; COMMIT").execute(&mut other).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM persist_messages").fetch_one(&mut other).await.unwrap();
    assert_eq!(count as usize, written, "every answered write is stored, no other");
}

async fn answers_of(
    tasks: Vec<tokio::task::JoinHandle<persist_core::Result<PersistResult>>>,
) -> Vec<persist_core::Result<PersistResult>> {
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// The change feed's retention, run every few seconds, takes the file's write lock, and waits
/// for it off the runtime's threads. Here the lock is held by a transaction this test's task
/// commits, on a runtime of one thread: a retention run waiting on that thread waited its whole
/// busy timeout, with every task stopped behind it (a shard's move lost its claim that way). It
/// now waits at most 250 ms for the lock, so any wait on this thread shows as a gap of that.
#[tokio::test]
async fn the_feeds_retention_waits_for_the_write_lock_off_the_runtimes_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("retention.db");
    let backend = SqliteBackend::builder(&path).busy_timeout(Duration::from_secs(3)).open().await.unwrap();
    let ticks = tokio::spawn(async {
        let (mut longest, mut last) = (Duration::ZERO, std::time::Instant::now());
        let end = last + Duration::from_millis(6_500);
        while std::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(10)).await;
            longest = longest.max(last.elapsed());
            last = std::time::Instant::now();
        }
        longest
    });
    let mut holder = raw(&path).await;
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();
    // Past the first retention run, five seconds after the file was opened.
    tokio::time::sleep(Duration::from_millis(6_000)).await;
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    let longest = ticks.await.unwrap();
    assert!(longest < Duration::from_millis(200), "the runtime's thread was held for {longest:?}");
    backend.apply(add("t", "after the lock")).await.unwrap();
}
