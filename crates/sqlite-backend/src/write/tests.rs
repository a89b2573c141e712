//! The writer's operations, group by group: answers, refusals and rollbacks.
use persist_core::args::{Add, AppendTurn, Delete, TurnMessage};
use persist_core::{
    Content, Context, IdempotencyKey, MessageId, PersistError, PersistResult, Role, TenantId, ThreadId, TurnAppended,
};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use super::{Answer, Failure, Write, apply_batch, commit_inserts};
use crate::limits::Limits;

async fn connection(dir: &tempfile::TempDir) -> SqliteConnection {
    let options =
        sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("writes.db")).create_if_missing(true);
    let mut conn = options.connect().await.unwrap();
    crate::migrations::MIGRATOR.run_direct(None, &mut conn, false).await.unwrap();
    sqlx::raw_sql(super::INBOX).execute(&mut conn).await.unwrap();
    conn
}

fn limits() -> Limits {
    Limits {
        max_content_bytes: 1 << 20,
        max_metadata_bytes: 1 << 16,
        packed: true,
        key_retention: persist_core::spent::DEFAULT_KEY_RETENTION,
    }
}

fn add(tenant: &str, text: &str) -> Write {
    let args = Add::new(ThreadId::new("shared").unwrap(), Role::User, Content::text(text))
        .with_id(MessageId::new("m").unwrap())
        .with_context(Context::new().with_tenant(TenantId::new(tenant).unwrap()));
    Write::Persist(args.into())
}

fn added(answer: &Result<Answer, PersistError>) -> (String, bool) {
    match answer {
        Ok(Answer::Persist(result)) => (result.message().unwrap().content.to_text(), result.is_deduplicated()),
        Ok(_) => panic!("not a message write"),
        Err(error) => panic!("refused: {error}"),
    }
}

/// Tenant `tenant`'s thread "shared", deleted: a tombstone that refuses later writes.
fn tombstone(tenant: &str) -> [Write; 2] {
    let ctx = || Context::new().with_tenant(TenantId::new(tenant).unwrap());
    let thread = || ThreadId::new("shared").unwrap();
    let seed = Add::new(thread(), Role::User, Content::text("seed")).with_context(ctx());
    [Write::Persist(seed.into()), Write::Persist(Delete::thread(thread()).with_context(ctx()).into())]
}

#[tokio::test]
async fn a_row_goes_to_the_insert_that_wrote_it_never_to_a_refused_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = connection(&dir).await;
    let [seed, delete] = tombstone("gone");
    let mut tx = conn.begin().await.unwrap();
    apply_batch(&mut tx, &[&seed, &delete], &limits()).await.unwrap();
    // One group: a write with id "m" to tenant gone's deleted "shared" (refused), then the
    // owner's to its own "shared" (written).
    let (refused, own) = (add("gone", "refused text"), add("owner", "own text"));
    let answers = apply_batch(&mut tx, &[&refused, &own], &limits()).await.unwrap();
    assert!(
        matches!(answers[0], Err(PersistError::ThreadDeleted { .. })),
        "the refused write got {:?}",
        answers[0].as_ref().err()
    );
    assert_eq!(added(&answers[1]), ("own text".to_owned(), false));
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_group_runs_in_queue_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = connection(&dir).await;
    let mut tx = conn.begin().await.unwrap();
    let first = add("owner", "first");
    apply_batch(&mut tx, &[&first], &limits()).await.unwrap();
    // A delete queued before an add: the add must see the tombstone.
    let owner = Context::new().with_tenant(TenantId::new("owner").unwrap());
    let delete = Write::Persist(Delete::thread(ThreadId::new("shared").unwrap()).with_context(owner).into());
    let late = add("owner", "late");
    let answers = apply_batch(&mut tx, &[&delete, &late], &limits()).await.unwrap();
    assert!(answers[0].is_ok());
    assert!(matches!(answers[1], Err(PersistError::ThreadDeleted { .. })));
    tx.commit().await.unwrap();
}

fn add_id(tenant: &str, id: &str) -> Write {
    let args = Add::new(ThreadId::new("shared").unwrap(), Role::User, Content::text(id))
        .with_id(MessageId::new(id).unwrap())
        .with_context(Context::new().with_tenant(TenantId::new(tenant).unwrap()));
    Write::Persist(args.into())
}

async fn count(conn: &mut SqliteConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM persist_messages").fetch_one(conn).await.unwrap()
}

#[tokio::test]
async fn a_group_of_inserts_commits_in_one_query_and_answers_each() {
    a_group_of_inserts_answers_each(false).await;
}

#[tokio::test]
async fn a_group_of_inserts_on_the_lane_answers_as_on_the_writer_connection() {
    a_group_of_inserts_answers_each(true).await;
}

/// A group with a refused write, a repeat and two written, committed on the writer's own
/// connection or, `on_lane`, on the lane's: the same answers.
async fn a_group_of_inserts_answers_each(on_lane: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = connection(&dir).await;
    let lane = on_lane.then(|| crate::lane::Lane::for_tests(&dir.path().join("writes.db")));
    let [seed, delete] = tombstone("gone");
    let mut tx = conn.begin().await.unwrap();
    apply_batch(&mut tx, &[&seed, &delete], &limits()).await.unwrap();
    tx.commit().await.unwrap();
    let (refused, own, repeat, other) =
        (add_id("gone", "m"), add_id("owner", "m"), add_id("owner", "m"), add_id("other", "m"));
    let group = [&refused, &own, &repeat, &other];
    let answers = commit_inserts(&mut conn, lane.as_ref(), &group, &limits()).await.unwrap().unwrap();
    assert!(matches!(answers[0], Err(PersistError::ThreadDeleted { .. })));
    assert_eq!(added(&answers[1]), ("m".to_owned(), false));
    assert_eq!(added(&answers[2]), ("m".to_owned(), true), "the repeat answers the first copy");
    assert_eq!(added(&answers[3]), ("m".to_owned(), false), "another tenant's thread of that id is its own");
    assert_eq!(count(&mut conn).await, 2, "committed: owner's m and other's m");
    // A group of one, written and repeated.
    let (alone, again) = (add_id("owner", "alone"), add_id("owner", "alone"));
    let answers = commit_inserts(&mut conn, lane.as_ref(), &[&alone], &limits()).await.unwrap().unwrap();
    assert_eq!(added(&answers[0]), ("alone".to_owned(), false));
    let answers = commit_inserts(&mut conn, lane.as_ref(), &[&again], &limits()).await.unwrap().unwrap();
    assert_eq!(added(&answers[0]), ("alone".to_owned(), true));
    assert_eq!(count(&mut conn).await, 3);
    let other = Write::Persist(Delete::thread(ThreadId::new("shared").unwrap()).into());
    let not_inserts = commit_inserts(&mut conn, lane.as_ref(), &[&other], &limits()).await;
    assert!(not_inserts.is_none(), "not an insert-only group");
    if let Some(lane) = lane {
        assert_eq!(lane.committed(), 3, "the three groups committed on the lane's connection");
    }
}

/// A turn of tenant `tenant` to its thread "shared", of messages with the ids `ids`.
fn turn(tenant: &str, ids: &[&str]) -> Write {
    let messages =
        ids.iter().map(|id| TurnMessage::new(Role::User, Content::text(*id)).with_id(MessageId::new(*id).unwrap()));
    let args = AppendTurn::of(ThreadId::new("shared").unwrap(), messages)
        .with_context(Context::new().with_tenant(TenantId::new(tenant).unwrap()));
    Write::Persist(args.into())
}

fn turned(answer: &Result<Answer, PersistError>) -> &TurnAppended {
    match answer {
        Ok(Answer::Persist(PersistResult::TurnAppended(turn))) => turn,
        Ok(_) => panic!("not a turn's answer"),
        Err(error) => panic!("refused: {error}"),
    }
}

fn seqs(turn: &TurnAppended) -> Vec<u64> {
    turn.messages.iter().map(|m| m.seq).collect()
}

/// One group on a fresh file, committed; its answers.
async fn group(conn: &mut SqliteConnection, writes: &[&Write]) -> Vec<Result<Answer, PersistError>> {
    let mut tx = conn.begin().await.unwrap();
    let answers = match apply_batch(&mut tx, writes, &limits()).await {
        Ok(answers) => answers,
        Err(Failure::Refused(error) | Failure::Aborted(error)) => panic!("the group failed: {error}"),
    };
    tx.commit().await.unwrap();
    answers
}

#[tokio::test]
async fn turns_of_a_group_share_its_run_each_decided_as_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = connection(&dir).await;
    let [seed, delete] = tombstone("gone");
    group(&mut conn, &[&seed, &delete]).await;
    // Turns to four threads in one group, among adds: each decided by the group's lookup.
    let (a, b, gone, c) =
        (turn("a", &["a1", "a2"]), turn("b", &["b1", "b2", "b3"]), turn("gone", &["g1"]), turn("c", &["c1"]));
    let add = add_id("d", "d1");
    let answers = group(&mut conn, &[&a, &add, &b, &gone, &c]).await;
    assert_eq!(seqs(turned(&answers[0])), [1, 2]);
    assert_eq!(added(&answers[1]), ("d1".to_owned(), false));
    assert_eq!(seqs(turned(&answers[2])), [1, 2, 3]);
    assert!(matches!(answers[3], Err(PersistError::ThreadDeleted { .. })), "a refused turn, the others written");
    assert_eq!(seqs(turned(&answers[4])), [1]);
    assert_eq!(count(&mut conn).await, 2 + 1 + 3 + 1, "the tombstone's seed is gone");
    // Sent again in one group: repeats, answered without a write.
    let answers = group(&mut conn, &[&a, &b]).await;
    assert!(turned(&answers[0]).deduplicated && turned(&answers[1]).deduplicated);
    assert_eq!(seqs(turned(&answers[1])), [1, 2, 3]);
    // An id taken by an earlier request: that turn is refused whole, the group's other turn
    // (another tenant's thread, where that id is free) written.
    let (free, taken) = (turn("a", &["a3", "d1"]), turn("d", &["d0", "d1"]));
    let answers = group(&mut conn, &[&free, &taken]).await;
    assert_eq!(seqs(turned(&answers[0])), [3, 4]);
    assert!(matches!(answers[1], Err(PersistError::AlreadyExists { .. })));
    assert_eq!(count(&mut conn).await, 7 + 2);
}

#[tokio::test]
async fn a_turn_over_the_limits_is_refused_whole_among_written_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = connection(&dir).await;
    let (fine, over, add) =
        (turn("a", &["a1"]), turn("b", &["b1", "the second message is too long"]), add_id("b", "b2"));
    let small = Limits {
        max_content_bytes: 40,
        max_metadata_bytes: 1 << 16,
        packed: true,
        key_retention: persist_core::spent::DEFAULT_KEY_RETENTION,
    };
    let mut tx = conn.begin().await.unwrap();
    let answers = apply_batch(&mut tx, &[&fine, &over, &add], &small).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(seqs(turned(&answers[0])), [1]);
    assert!(matches!(answers[1], Err(PersistError::InvalidInput { field: "content", .. })));
    assert_eq!(added(&answers[2]), ("b2".to_owned(), false));
    assert_eq!(count(&mut conn).await, 2, "nothing of the refused turn");
}

// A turn after a write to its thread in the same group is decided at its place, seeing that
// write. Decided with the group's other turns, before any write, each of these would have been
// found fresh, and the group aborted when its rows were not written.

#[tokio::test]
async fn turns_and_adds_to_one_thread_in_a_group_go_in_queue_order_and_a_repeat_answers_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = connection(&dir).await;
    let (first, second, add) = (turn("o", &["t1", "t2"]), turn("o", &["t3"]), add_id("o", "m4"));
    let after = turn("o", &["t5", "t6"]);
    let answers = group(&mut conn, &[&first, &second, &first, &add, &after]).await;
    assert_eq!(seqs(turned(&answers[0])), [1, 2]);
    assert_eq!(seqs(turned(&answers[1])), [3]);
    let repeat = turned(&answers[2]);
    assert!(repeat.deduplicated, "the same turn later in the group is its repeat");
    assert_eq!(repeat.messages, turned(&answers[0]).messages);
    assert_eq!(added(&answers[3]), ("m4".to_owned(), false));
    assert_eq!(seqs(turned(&answers[4])), [5, 6]);
    assert_eq!(count(&mut conn).await, 6);
}

#[tokio::test]
async fn an_id_an_add_of_the_group_took_refuses_a_later_turn() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = connection(&dir).await;
    let (taken, late, elsewhere) = (add_id("o", "x1"), turn("o", &["x0", "x1"]), turn("p", &["x1"]));
    let answers = group(&mut conn, &[&taken, &late, &elsewhere]).await;
    assert_eq!(added(&answers[0]), ("x1".to_owned(), false));
    assert!(matches!(answers[1], Err(PersistError::AlreadyExists { .. })), "{:?}", answers[1].as_ref().err());
    assert_eq!(seqs(turned(&answers[2])), [1], "another tenant's thread is its own");
    assert_eq!(count(&mut conn).await, 2);
}

#[tokio::test]
async fn a_turn_key_a_turn_of_the_group_used_refuses_a_later_turn() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = connection(&dir).await;
    let keyed = |ids: &[&str]| match turn("o", ids) {
        Write::Persist(persist_core::PersistArgs::AppendTurn(turn)) => {
            Write::Persist(turn.with_idempotency_key(IdempotencyKey::new("k").unwrap()).into())
        }
        _ => unreachable!(),
    };
    let (once, other) = (keyed(&["k1"]), keyed(&["k2"]));
    let answers = group(&mut conn, &[&once, &other]).await;
    assert_eq!(seqs(turned(&answers[0])), [1]);
    assert!(matches!(answers[1], Err(PersistError::IdempotencyKeyReused { .. })));
    assert_eq!(count(&mut conn).await, 1);
}

#[tokio::test]
async fn a_thread_deleted_earlier_in_the_group_refuses_a_later_turn() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = connection(&dir).await;
    let [seed, delete] = tombstone("o");
    let (gone, kept) = (turn("o", &["y1"]), turn("p", &["y1"]));
    let answers = group(&mut conn, &[&seed, &delete, &gone, &kept]).await;
    assert!(answers[1].is_ok());
    assert!(matches!(answers[2], Err(PersistError::ThreadDeleted { .. })));
    assert_eq!(seqs(turned(&answers[3])), [1]);
    assert_eq!(count(&mut conn).await, 1);
}

#[tokio::test]
async fn a_turn_row_left_unwritten_aborts_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = connection(&dir).await;
    // A row the rules would take, dropped silently: the turn was decided on what did not hold.
    sqlx::query(
        "CREATE TRIGGER drop_lost BEFORE INSERT ON persist_messages WHEN NEW.message_id = 'lost' \
         BEGIN SELECT RAISE(IGNORE); END",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let (fine, broken) = (add_id("owner", "fine"), turn("other", &["kept", "lost"]));
    let mut tx = conn.begin().await.unwrap();
    let failed = apply_batch(&mut tx, &[&fine, &broken], &limits()).await;
    assert!(matches!(failed, Err(Failure::Aborted(_))), "the transaction must not go on");
    tx.rollback().await.unwrap();
    assert_eq!(count(&mut conn).await, 0);
}

/// Turns the writer's report into a view that fails when read; the rows still go in and out.
async fn break_the_report(conn: &mut SqliteConnection) {
    sqlx::raw_sql(
        "DROP TABLE temp.persist_written; \
         CREATE TEMP TABLE written_rows (plan INTEGER NOT NULL, seq INTEGER NOT NULL, parent INTEGER); \
         CREATE TEMP VIEW persist_written AS \
             SELECT plan, json('not json') + seq AS seq, parent FROM written_rows; \
         CREATE TEMP TRIGGER written_insert INSTEAD OF INSERT ON persist_written \
             BEGIN INSERT INTO written_rows VALUES (NEW.plan, NEW.seq, NEW.parent); END; \
         CREATE TEMP TRIGGER written_delete INSTEAD OF DELETE ON persist_written \
             BEGIN DELETE FROM written_rows; END;",
    )
    .execute(conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_report_that_cannot_be_read_fails_the_answers_of_a_committed_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = connection(&dir).await;
    break_the_report(&mut conn).await;
    let (first, second) = (add_id("owner", "first"), add_id("owner", "second"));
    let answers =
        commit_inserts(&mut conn, None::<&crate::lane::Lane>, &[&first, &second], &limits()).await.unwrap().unwrap();
    for answer in &answers {
        match answer {
            Err(PersistError::Backend { message, .. }) => {
                assert!(message.contains("committed but their report cannot be read"), "{message}")
            }
            Err(other) => panic!("expected an unreadable report, got {other}"),
            Ok(_) => panic!("expected an unreadable report, got an answer"),
        }
    }
    assert_eq!(count(&mut conn).await, 2, "the group stays committed, once");
}

#[tokio::test]
async fn a_report_that_cannot_be_read_inside_a_transaction_aborts_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = connection(&dir).await;
    break_the_report(&mut conn).await;
    let mut tx = conn.begin().await.unwrap();
    let (first, second) = (add_id("owner", "first"), add_id("owner", "second"));
    let failed = apply_batch(&mut tx, &[&first, &second], &limits()).await;
    assert!(matches!(failed, Err(Failure::Aborted(_))), "the transaction must not go on");
    tx.rollback().await.unwrap();
    assert_eq!(count(&mut conn).await, 0);
}

#[tokio::test]
async fn a_failing_statement_rolls_the_whole_group_back() {
    a_failing_statement_rolls_back(false).await;
}

/// On the lane's connection too: the group fails as a whole (the writer then runs each of
/// its writes alone), never answering its other writes the error.
#[tokio::test]
async fn a_failing_statement_on_the_lane_rolls_the_whole_group_back() {
    a_failing_statement_rolls_back(true).await;
}

async fn a_failing_statement_rolls_back(on_lane: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = connection(&dir).await;
    let lane = on_lane.then(|| crate::lane::Lane::for_tests(&dir.path().join("writes.db")));
    sqlx::query(
        "CREATE TRIGGER refuse_boom BEFORE INSERT ON persist_messages WHEN NEW.message_id = 'boom' \
         BEGIN SELECT RAISE(ABORT, 'boom refused'); END",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let (fine, boom) = (add_id("owner", "fine"), add_id("owner", "boom"));
    let failed = commit_inserts(&mut conn, lane.as_ref(), &[&fine, &boom], &limits()).await.unwrap();
    assert!(matches!(failed, Err(Failure::Aborted(_))), "the group fails whole");
    assert_eq!(count(&mut conn).await, 0, "the write before the failure was rolled back");
    // The connections are usable, outside any transaction.
    commit_inserts(&mut conn, lane.as_ref(), &[&fine], &limits()).await.unwrap().unwrap();
    assert_eq!(count(&mut conn).await, 1);
    if let Some(lane) = lane {
        assert_eq!(lane.committed(), 1, "only the second group committed on the lane");
    }
}
