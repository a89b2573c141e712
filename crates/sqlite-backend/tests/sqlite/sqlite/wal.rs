//! The write-ahead log: checkpointed between and alongside writes, and kept to its limit.

use std::sync::Arc;
use std::time::Duration;

use persist_core::Backend;
use persist_core::read::ListMessages;
use persist_sqlite::SqliteBackend;
use sqlx::Connection;

use super::{add, raw, thread};

/// Adds 1100 messages of 2 KB from `callers` tasks, then waits for the database file to grow
/// by what they hold: more writes than the writer commits between two checkpoints, far fewer
/// pages than SQLite's own automatic checkpoint waits for, so only persist's checkpoints copy
/// them.
async fn checkpointed(callers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoint.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    let text = "x".repeat(2000);
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let (backend, text) = (backend.clone(), text.clone());
        tasks.spawn(async move {
            for i in (caller..1100).step_by(callers) {
                backend.apply(add(&format!("t{}", i % 7), &text)).await.unwrap();
            }
        });
    }
    tasks.join_all().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&path).unwrap().len() < before + 1_000_000 {
        assert!(std::time::Instant::now() < deadline, "the database file did not grow: no checkpoint ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM persist_messages").fetch_one(&mut raw(&path).await).await.unwrap();
    assert_eq!(count, 1100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_writer_checkpoints_the_log_itself_between_writes() {
    checkpointed(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_writer_has_the_log_checkpointed_alongside() {
    checkpointed(32).await;
}

#[tokio::test]
async fn the_write_ahead_log_is_cut_back_to_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    // Above what the log holds between two checkpoints (256 small writes: about 4 MB).
    let limit = 6 << 20;
    let backend = SqliteBackend::builder(&path).wal_size_limit(limit).open().await.unwrap();
    let wal = || std::fs::metadata(dir.path().join("wal.db-wal")).map(|m| m.len()).unwrap_or(0);
    let big = |i: usize| add("t", &format!("{i} {}", "x".repeat(256 << 10)));
    // A long read keeps the log from being copied back and restarted: it grows past 12 MB.
    let mut reader = raw(&path).await;
    sqlx::raw_sql("BEGIN; SELECT count(*) FROM persist_messages;").execute(&mut reader).await.unwrap();
    for i in 0..48 {
        backend.apply(big(i)).await.unwrap();
    }
    assert!(wal() > 2 * limit, "the log grew behind the reader: {} bytes", wal());
    sqlx::raw_sql("COMMIT").execute(&mut reader).await.unwrap();
    reader.close().await.unwrap();
    // Once a second passes without writes, the log is copied back and its file emptied.
    backend.apply(add("small", "after the read")).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while wal() > limit && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(wal() <= limit, "the log is {} bytes, over the {limit} limit", wal());
}

/// Readers that come and go without pause (four tasks, each read a short snapshot) while
/// writes go on: the log is still brought back under its limit, under the load, not only once
/// every reader has stopped. (Each reader's snapshot kept the log from restarting at its start:
/// it grew for as long as any reader read, to several times its limit.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_stays_bounded_while_readers_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readers.db");
    let limit = 2 << 20;
    // The search index off: what is measured is the checkpointer against readers. With it on,
    // FTS5's segment merges write several MB in one transaction now and then (peaks of 3–10 MB
    // over this run's writes, 16 KiB of words each), and the peak measures those instead.
    let backend = SqliteBackend::builder(&path).wal_size_limit(limit).search_index(false).open().await.unwrap();
    let wal = || std::fs::metadata(dir.path().join("readers.db-wal")).map(|m| m.len()).unwrap_or(0);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (backend, stop) = (backend.clone(), Arc::clone(&stop));
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let page = ListMessages::new(thread("busy")).with_order(persist_core::Order::Desc).with_limit(20);
                backend.list(page).await.unwrap();
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        }));
    }
    let (mut largest, mut last, mut cuts) = (0, 0, 0);
    let started = std::time::Instant::now();
    let mut i = 0;
    // Six seconds of writes, a 16 KiB message at a time, the readers reading all along.
    while started.elapsed() < Duration::from_secs(6) {
        backend.apply(add("busy", &format!("{i} {}", "x".repeat(16 << 10)))).await.unwrap();
        i += 1;
        if started.elapsed() > Duration::from_secs(3) {
            let now = wal();
            largest = largest.max(now);
            // The log's file only shrinks when it is cut back (restarted and truncated).
            if now < last {
                cuts += 1;
            }
            last = now;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = futures_sum(readers).await;
    assert!(reads > 100 && i > 100, "the load ran: {reads} reads, {i} writes");
    eprintln!("the log under load: at most {largest} bytes (limit {limit}), cut {cuts} times");
    eprintln!("the load: {i} writes, {reads} reads");
    // Unbounded, it was never cut and reached 20× the limit in these six seconds. Cut back
    // under the load it peaks at 1–3× on an idle machine; a cut that meets a reader slower than
    // its wait is made at the next look, 32 writes later, so a machine busy with other work
    // sees higher peaks (5.4× once, in a CI run beside a benchmark): what is held is that the
    // log is cut back while the readers read, and stays well under what unbounded reaches.
    assert!(cuts > 0, "the log was never cut back under load (at most {largest} bytes, limit {limit})");
    assert!(largest <= 8 * limit, "the log reached {largest} bytes under load, over 8× its {limit} limit");
}

async fn futures_sum(tasks: Vec<tokio::task::JoinHandle<u64>>) -> u64 {
    let mut sum = 0;
    for task in tasks {
        sum += task.await.unwrap();
    }
    sum
}
