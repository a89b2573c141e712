//! The caller's lane: a lone caller's inserts written on its own thread, everything else by the
//! writer, the two never at once and never waiting on each other's lock.

use std::time::{Duration, Instant};

use persist_core::args::Add;
use persist_core::feed::ReadFeed;
use persist_core::read::ListMessages;
use persist_core::{Backend, Content, MessageId, PersistResult, Role, ThreadId};
use persist_sqlite::SqliteBackend;

fn add(thread: &str, id: &str) -> Add {
    Add::new(ThreadId::new(thread).unwrap(), Role::User, Content::text(id)).with_id(MessageId::new(id).unwrap())
}

/// Another process holds the file's write lock: a write waits for it without holding the
/// caller's thread. On a runtime of one thread, the task that ends the other transaction runs
/// while the write waits; had the write waited on that thread (a busy wait of up to the busy
/// timeout), the lock would be released only after the timeout.
#[tokio::test(flavor = "current_thread")]
async fn a_write_meeting_another_connections_lock_waits_off_the_callers_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let busy_timeout = Duration::from_secs(10);
    let backend = SqliteBackend::builder(&path).busy_timeout(busy_timeout).open().await.unwrap();
    backend.apply(add("t", "first").into()).await.unwrap();
    let (locked, is_locked) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn({
        let path = path.clone();
        move || {
            let other = rusqlite::Connection::open(&path).unwrap();
            other.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked.send(()).unwrap();
            released.recv().unwrap();
            other.execute_batch("COMMIT").unwrap();
        }
    });
    is_locked.recv().unwrap();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.send(()).unwrap();
    });
    let start = Instant::now();
    let written = backend.apply(add("t", "second").into()).await.unwrap();
    assert_eq!(written.message().unwrap().seq, 2);
    assert!(
        start.elapsed() < busy_timeout / 2,
        "the write held the caller's thread while the lock was taken ({:?})",
        start.elapsed()
    );
    holder.join().unwrap();
    backend.close().await;
}

/// Callers coming and going (writes on the lane and groups on the writer, mixed), repeats
/// among them, a delete between: every write answered as it would be alone, each thread's
/// messages numbered without gaps, one feed event per message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lane_and_the_writer_together_number_every_thread_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path().join("mixed.db")).await.unwrap();
    let (threads, per_thread) = (8_usize, 60_usize);
    let mut tasks = tokio::task::JoinSet::new();
    for thread in 0..threads {
        let backend = backend.clone();
        tasks.spawn(async move {
            let name = format!("t{thread}");
            for i in 0..per_thread {
                let id = format!("{name}-{i}");
                let written = backend.apply(add(&name, &id).into()).await.unwrap();
                let PersistResult::Added(added) = written else { panic!("not an add's answer") };
                assert!(!added.deduplicated);
                assert_eq!(added.message.seq, i as u64 + 1);
                if i % 7 == 0 {
                    // A repeat answers the first copy.
                    let again = backend.apply(add(&name, &id).into()).await.unwrap();
                    assert!(again.is_deduplicated());
                    assert_eq!(again.message().unwrap().seq, i as u64 + 1);
                }
                if i % 2 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
    }
    tasks.join_all().await;
    let (mut events, mut after) = (0, 0);
    loop {
        let page = backend.read_feed(ReadFeed::tenant().after(after).with_limit(500)).await.unwrap();
        events += page.events.len();
        match page.events.last() {
            Some(last) => after = last.position,
            None => break,
        }
    }
    assert_eq!(events, threads * per_thread, "one event per message");
    for thread in 0..threads {
        let page = backend
            .list(ListMessages::new(ThreadId::new(format!("t{thread}")).unwrap()).with_limit(1000))
            .await
            .unwrap();
        let seqs: Vec<u64> = page.items.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=per_thread as u64).collect::<Vec<_>>());
    }
    backend.close().await;
}

/// A lone caller writing without pause: the checkpointer's copies run alongside its writes,
/// so each leaves the frames written meanwhile, and the log could never start over at its
/// beginning; the lane copies what is left, so it does, and its file stays about the size of
/// the writes between two copies (with no limit to cut it back at).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_callers_log_starts_over_without_being_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steady.db");
    let backend = SqliteBackend::builder(&path).wal_size_limit(1 << 40).search_index(false).open().await.unwrap();
    let text = "x".repeat(2000);
    for i in 0..4000 {
        backend
            .apply(Add::new(ThreadId::new("t").unwrap(), Role::User, Content::text(format!("{i} {text}"))).into())
            .await
            .unwrap();
    }
    let log = std::fs::metadata(dir.path().join("steady.db-wal")).map(|m| m.len()).unwrap_or(0);
    // Bytes 12..16 of the log's header: how many times it started over (its checkpoint sequence).
    let header = std::fs::read(dir.path().join("steady.db-wal")).unwrap();
    let restarts = u32::from_be_bytes(header[12..16].try_into().unwrap());
    // A copy asked for every 256 writes: 15 in 4000, each followed by the log starting over (12
    // to 15 measured on an idle machine; 6 in a CI run whose other cores' load made the copies
    // fall behind the writes, so asks met a copy still running). A log that never starts over
    // (the copies leaving frames each time) is 0, whatever the load.
    assert!(restarts >= 3, "the log started over {restarts} times");
    // 4000 writes of 2 KB are about 60 MB of log frames; 256 writes between copies, about 4
    // (12 measured: the copies run beside the writes). Without the search index, whose merges
    // write bursts of pages that make one copy's share of the log vary (20–44 MB measured). A log
    // never cut back holds all 60 MB; bounded at two thirds of that, as fewer copies under load
    // leave more frames between restarts.
    assert!(log < 40 << 20, "the log's file grew to {log} bytes");
    backend.close().await;
}

/// Closing leaves the store in the database file alone: the log copied back and empty, even
/// when a copy of the checkpointer's was under way (a checkpoint that meets another is refused
/// at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_leaves_the_log_empty() {
    for writes in [1, 255, 256, 300, 600] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("closed.db");
        let backend = SqliteBackend::open(&path).await.unwrap();
        for i in 0..writes {
            backend.apply(add("t", &format!("m{i}")).into()).await.unwrap();
        }
        backend.close().await;
        let log = std::fs::metadata(dir.path().join("closed.db-wal")).map(|m| m.len()).unwrap_or(0);
        assert_eq!(log, 0, "after {writes} writes, the log holds {log} bytes");
    }
}

/// Adds carrying embeddings from many callers at once (on the lane, and in the writer's groups
/// through the inbox of vectors): each vector stored with its message; a vector of another
/// length refused alone, leaving neither message nor thread, the group's other writes written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_written_in_groups_go_with_their_messages_or_refuse_them() {
    use persist_core::vector::{Embedding, Nearest};
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path().join("vectors.db")).await.unwrap();
    backend.apply(add("fix", "fix").with_embedding(Embedding::new("m", vec![1.0; 4])).into()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let backend = backend.clone();
        tasks.push(tokio::spawn(async move {
            // Every tenth asks for another length, on a thread of its own.
            let (thread, dims) = if i % 10 == 0 { (format!("bad-{i}"), 3) } else { (format!("t{}", i % 7), 4) };
            let vector: Vec<f32> = (0..dims).map(|d| if d == i % 4 { 1.0 } else { 0.01 }).collect();
            let add = add(&thread, &format!("m{i}")).with_embedding(Embedding::new("m", vector));
            backend.apply(add.into()).await
        }));
    }
    let mut refused = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(written) => assert!(i % 10 != 0 && written.message().is_some()),
            Err(persist_core::PersistError::InvalidInput { field: "embedding", .. }) if i % 10 == 0 => refused += 1,
            Err(other) => panic!("write {i}: {other}"),
        }
    }
    assert_eq!(refused, 20);
    let found = backend.nearest(Nearest::new(Embedding::new("m", vec![1.0; 4])).with_limit(1000)).await.unwrap();
    assert_eq!(found.len(), 181, "every written message has its vector");
    for i in (0..200).step_by(10) {
        let thread = persist_core::read::GetThread::new(ThreadId::new(format!("bad-{i}")).unwrap());
        assert!(backend.get_thread(thread).await.unwrap().is_none(), "a refused add makes no thread");
    }
    backend.close().await;
}

/// Records written by callers at once, on the lane and by the writer mixed: of the inserts of
/// one key racing from every task exactly one writes it, every put is there, and a delete of
/// spaces (always the writer's) takes its spaces' records and no others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_on_the_lane_and_by_the_writer_keep_every_change() {
    use persist_core::records::{ReadRecords, RecordWrite, WriteRecords};
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path().join("records.db")).await.unwrap();
    let (tasks_n, keys) = (6_usize, 40_usize);
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..tasks_n {
        let backend = backend.clone();
        tasks.spawn(async move {
            let mut won = 0;
            for key in 0..keys {
                let writes = vec![
                    RecordWrite::insert("shared", format!("k{key:03}"), format!("from {task}").into_bytes()),
                    RecordWrite::put(format!("own/{task}"), format!("k{key:03}"), vec![task as u8; 64]),
                ];
                let PersistResult::RecordsWritten(written) =
                    backend.apply(WriteRecords::new(writes).into()).await.unwrap()
                else {
                    panic!("not write_records' answer")
                };
                won += written.changed - 1;
                if key % 5 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            won
        });
    }
    let won: u64 = tasks.join_all().await.into_iter().sum();
    assert_eq!(won, keys as u64, "each shared key inserted once");
    let read = |query: ReadRecords| {
        let backend = backend.clone();
        async move { backend.records(query.with_limit(1000)).await.unwrap().items }
    };
    assert_eq!(read(ReadRecords::space("shared")).await.len(), keys);
    assert_eq!(read(ReadRecords::prefix("own/")).await.len(), tasks_n * keys);
    backend.apply(WriteRecords::new(vec![RecordWrite::delete_spaces("own/1")]).into()).await.unwrap();
    assert_eq!(read(ReadRecords::prefix("own/")).await.len(), (tasks_n - 1) * keys);
    backend.close().await;
}
