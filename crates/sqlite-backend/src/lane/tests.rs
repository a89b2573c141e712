//! The lane's unit tests.

use crate::write::GroupConnection;
use persist_core::args::Add;
use persist_core::{Content, MessageId, PersistResult, Role, ThreadId};
use sqlx::{ConnectOptions, Connection};

use super::{Lane, Ticket};
use crate::write::{Answer, Write};

async fn migrated(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("lane.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
    let mut conn = options.connect().await.unwrap();
    crate::migrations::MIGRATOR.run_direct(None, &mut conn, false).await.unwrap();
    conn.close().await.unwrap();
    path
}

fn add(id: &str) -> Write {
    let args =
        Add::new(ThreadId::new("t").unwrap(), Role::User, Content::text(id)).with_id(MessageId::new(id).unwrap());
    Write::Persist(args.into())
}

fn seq(answer: Result<Answer, persist_core::PersistError>) -> u64 {
    match answer {
        Ok(Answer::Persist(PersistResult::Added(added))) => {
            assert!(!added.deduplicated);
            added.message.seq
        }
        _ => panic!("not an add's answer"),
    }
}

fn count(path: &std::path::Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT count(*) FROM persist_messages", (), |row| row.get(0)).unwrap()
}

#[tokio::test]
async fn the_lane_writes_only_when_nobody_else_is_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = migrated(&dir).await;
    let lane = Lane::for_tests(&path);
    assert_eq!(seq(lane.try_write(&add("a")).unwrap()), 1);
    // A write of the handle still queued for the writer (its caller may have stopped
    // waiting): a later write must not pass it.
    let queued = Ticket::new(&lane.queued);
    assert!(lane.try_write(&add("b")).is_none(), "declined while a write is queued");
    drop(queued);
    // The writer holding a transaction.
    assert!(lane.gate.try_take());
    assert!(lane.try_write(&add("b")).is_none(), "declined while the writer holds the gate");
    lane.gate.give_back();
    assert_eq!(seq(lane.try_write(&add("b")).unwrap()), 2);
    // The log over its limit: the writer takes the writes until it is cut back.
    lane.wal.over_limit.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(lane.try_write(&add("c")).is_none(), "declined while the log is over its limit");
    lane.wal.over_limit.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(seq(lane.try_write(&add("c")).unwrap()), 3);
    assert_eq!(count(&path), 3, "nothing written by the declined writes");
    assert_eq!(lane.committed(), 3);
}

#[tokio::test]
async fn a_read_takes_the_connection_only_when_nobody_uses_it_and_holds_up_no_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = migrated(&dir).await;
    let lane = Lane::for_tests(&path);
    seq(lane.try_write(&add("a")).unwrap());
    let read = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row("SELECT count(*) FROM persist_messages", (), |row| row.get(0)).unwrap()
    };
    let timeout = std::time::Duration::from_secs(5);
    // Free: the read runs on the lane's connection and sees its write.
    assert_eq!(lane.try_read(timeout, read).ok(), Some(1));
    // While a read uses it, a write is declined (to the writer) and the writer's group is
    // not run on it; neither waits. A second read is given back, for a read connection.
    let during = lane.try_read(timeout, |_| {
        let write = lane.try_write(&add("b")).is_none();
        let group = lane.with(|_| ()).is_none();
        let second = lane.try_read(timeout, read).is_err();
        (write, group, second)
    });
    assert_eq!(during.ok(), Some((true, true, true)));
    assert!(!lane.gate.is_held(), "the declined write gave the gate back");
    // Afterwards the lane writes again, and its connection's wait is zero again.
    assert_eq!(seq(lane.try_write(&add("b")).unwrap()), 2);
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = std::time::Instant::now();
    assert!(lane.try_write(&add("c")).is_none(), "the file locked elsewhere: declined at once");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    other.execute_batch("ROLLBACK").unwrap();
    lane.close();
    assert!(lane.try_read(timeout, read).is_err(), "closed: reads go to the read connections");
}

#[tokio::test]
async fn the_lane_leaves_repeats_and_other_writes_to_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = migrated(&dir).await;
    let lane = Lane::for_tests(&path);
    seq(lane.try_write(&add("a")).unwrap());
    // A repeat is diagnosed by the writer; the lane rolls its attempt back.
    assert!(lane.try_write(&add("a")).is_none());
    let delete = persist_core::args::Delete::thread(ThreadId::new("t").unwrap());
    assert!(lane.try_write(&Write::Persist(delete.into())).is_none(), "only adds and reserves");
    // Large content is written by the writer, off the caller's thread.
    let large = Add::new(ThreadId::new("t").unwrap(), Role::User, Content::text("x".repeat(100 << 10)));
    assert!(lane.try_write(&Write::Persist(large.into())).is_none(), "large content goes to the writer");
    // Refused before anything is written (metadata over the limit): answered here.
    let mut noted = Add::new(ThreadId::new("t").unwrap(), Role::User, Content::text("noted"));
    noted.metadata = persist_core::Metadata::new().with("note", serde_json::Value::String("x".repeat(1 << 17)));
    let refused = lane.try_write(&Write::Persist(noted.into())).expect("answered on the lane");
    assert!(matches!(refused, Err(persist_core::PersistError::InvalidInput { .. })));
    assert_eq!(count(&path), 1);
    // No transaction left open: another connection writes.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE; COMMIT;").unwrap();
    lane.close();
    assert!(lane.try_write(&add("b")).is_none(), "closed: every write goes to the writer");
}

/// Writes that find nothing else of the handle writing take the lane; with other callers
/// about, the writer's groups (small ones on the lane's connection too); either way, every
/// thread numbered without gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_alone_and_together_use_the_lane_and_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let backend = crate::SqliteBackend::open(dir.path().join("mixed.db")).await.unwrap();
    let lane = backend.shared.lane.as_ref().expect("a lane with the default durability").lane().clone();
    use persist_core::Backend;
    for i in 0..10 {
        backend
            .apply(Add::new(ThreadId::new("alone").unwrap(), Role::User, Content::text(format!("{i}"))).into())
            .await
            .unwrap();
    }
    assert_eq!(lane.committed(), 10, "a lone caller's adds all take the lane");
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..8 {
        let backend = backend.clone();
        tasks.spawn(async move {
            let thread = ThreadId::new(format!("t{caller}")).unwrap();
            for i in 0..50_u64 {
                let add = Add::new(thread.clone(), Role::User, Content::text(format!("{i}")));
                assert_eq!(backend.apply(add.into()).await.unwrap().message().unwrap().seq, i + 1);
            }
        });
    }
    tasks.join_all().await;
    assert!(lane.committed() > 10, "the lane took writes with callers about");
    backend.close().await;
    assert!(lane.with(|_| ()).is_none(), "closed with the handle");
}

/// At `Durability::Full` a lone caller's adds commit on its own thread, the runtime told
/// first (`block_in_place`), on a multi-thread runtime only: on a current-thread runtime
/// the only thread would wait for the disk, so the writer takes them.
#[test]
fn where_a_commit_waits_for_the_disk_the_lane_runs_in_place_on_a_multi_thread_runtime() {
    use persist_core::Backend;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.db");
    let adds = |backend: crate::SqliteBackend, thread: &'static str| async move {
        for i in 0..5_u64 {
            let add = Add::new(ThreadId::new(thread).unwrap(), Role::User, Content::text(format!("{i}")));
            assert_eq!(backend.apply(add.into()).await.unwrap().message().unwrap().seq, i + 1);
        }
    };
    let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let full = multi.block_on(crate::SqliteBackend::builder(&path).durability(crate::Durability::Full).open()).unwrap();
    let lane = full.shared.lane.as_ref().expect("a lane at Durability::Full").lane().clone();
    assert!(matches!(full.shared.lane, Some(super::CallerLane::InPlace(_))));
    // In a task, on a worker, as a server's handlers run; and in `block_on`, not a worker.
    multi.block_on(multi.spawn(adds(full.clone(), "worker"))).unwrap();
    assert_eq!(lane.committed(), 5, "a lone caller's adds on the lane");
    multi.block_on(adds(full.clone(), "block-on"));
    assert_eq!(lane.committed(), 10);
    let single = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    single.block_on(adds(full.clone(), "current-thread"));
    assert_eq!(lane.committed(), 10, "not on a current-thread runtime: the writer's");
    multi.block_on(full.close());
}

/// A lone caller's turn is written whole on the lane; what the writer must decide (a repeat,
/// a deleted thread, a parent the thread lacks) leaves nothing there and is answered by the
/// writer, as for any write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_callers_turn_takes_the_lane_and_the_writer_decides_the_rest() {
    use persist_core::args::{AppendTurn, Delete, TurnMessage};
    use persist_core::{Backend, PersistError};
    let dir = tempfile::tempdir().unwrap();
    let backend = crate::SqliteBackend::open(dir.path().join("turns.db")).await.unwrap();
    let lane = backend.shared.lane.as_ref().expect("a lane with the default durability").lane().clone();
    let thread = ThreadId::new("t").unwrap();
    let turn = |text: &str| {
        AppendTurn::of(
            thread.clone(),
            [
                TurnMessage::new(Role::User, Content::text(format!("{text}?"))),
                TurnMessage::new(Role::Assistant, Content::text(format!("{text}!"))),
            ],
        )
    };
    let appended = |result: PersistResult| match result {
        PersistResult::TurnAppended(appended) => appended,
        other => panic!("not a turn's answer: {other:?}"),
    };
    let first = appended(
        backend
            .apply(turn("one").with_idempotency_key(persist_core::IdempotencyKey::new("k1").unwrap()).into())
            .await
            .unwrap(),
    );
    let second = appended(backend.apply(turn("two").into()).await.unwrap());
    assert_eq!(lane.committed(), 2, "each turn one transaction on the lane");
    let seqs: Vec<(u64, Option<u64>)> =
        first.messages.iter().chain(&second.messages).map(|m| (m.seq, m.parent_seq)).collect();
    assert_eq!(seqs, [(1, None), (2, Some(1)), (3, Some(2)), (4, Some(3))]);
    // A repeat: declined on the lane, answered by the writer with what the first one wrote.
    let again = appended(
        backend
            .apply(turn("one").with_idempotency_key(persist_core::IdempotencyKey::new("k1").unwrap()).into())
            .await
            .unwrap(),
    );
    assert!(again.deduplicated);
    assert_eq!(again.messages, first.messages);
    // A parent the thread does not have: refused by the writer, nothing written.
    let stray = turn("three").with_parent(MessageId::new("missing").unwrap());
    assert!(matches!(backend.apply(stray.into()).await, Err(PersistError::NotFound { .. })));
    assert_eq!(count(&dir.path().join("turns.db")), 4, "the declined turns wrote nothing");
    // The thread deleted: the writer answers so.
    backend.apply(Delete::thread(thread.clone()).into()).await.unwrap();
    assert!(matches!(backend.apply(turn("four").into()).await, Err(PersistError::ThreadDeleted { .. })));
    assert_eq!(lane.committed(), 2, "the declined turns committed nothing on the lane");
    backend.close().await;
}

#[tokio::test]
async fn no_lane_for_reads_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reads.db");
    crate::SqliteBackend::open(&path).await.unwrap().close().await;
    let reads = crate::SqliteBackend::builder(&path).read_only(true).open().await.unwrap();
    assert!(reads.shared.lane.is_none());
}

#[tokio::test]
async fn the_lane_never_waits_for_another_connections_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = migrated(&dir).await;
    let lane = Lane::for_tests(&path);
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    // Declined at once (busy), not after a busy wait: the writer waits, on its own thread.
    let start = std::time::Instant::now();
    assert!(lane.try_write(&add("a")).is_none());
    assert!(start.elapsed() < std::time::Duration::from_secs(2), "waited {:?}", start.elapsed());
    other.execute_batch("COMMIT").unwrap();
    assert_eq!(seq(lane.try_write(&add("a")).unwrap()), 1);
}
