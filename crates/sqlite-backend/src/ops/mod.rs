//! One write operation as SQL, run by the writer inside its transaction.
//!
//! Each operation first decides, then writes: a request that is refused (`NotFound`,
//! `VersionConflict`, …) is refused before it changes anything, so neighbours in the same
//! group commit are unaffected. The happy path is one or two statements (guards live in the
//! `WHERE` clause, results come back with `RETURNING`, counters move in triggers); when a
//! guarded statement touches no row, a diagnosis query says which rule refused it.

mod delete;
mod guard;
mod insert;
pub(crate) mod restore;
mod session;
mod turn;
mod update;

use persist_core::session::{Bind, BindingState, SessionBinding};
use persist_core::{
    AgentId, ContentUpdated, Metadata, PersistArgs, PersistError, PersistResult, SessionId, Target, TenantId, ThreadId,
    Timestamp, Updated,
};
use sqlx::SqliteConnection;

use self::delete::{delete_message, delete_thread};
pub(crate) use self::guard::find_thread;
pub(crate) use self::insert::commit_inserts;
pub use self::insert::{INBOX, INBOX_INSERT, READ_REPORT};
use self::insert::{Insert, insert_many, insert_run, pending};
use self::session::{bind_session, set_once};
use self::update::{update_content, update_message, update_thread};
use crate::Limits;
use crate::error::map_sqlx;
use crate::rows::{json, tenant_key};

/// Why an operation did not produce a result.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Refused by a rule before anything was written; the transaction goes on.
    Refused(PersistError),
    /// The database failed, possibly mid-write; the transaction must be rolled back.
    Aborted(PersistError),
}

pub(crate) type OpResult<T> = Result<T, Failure>;

pub(crate) fn sql(context: &'static str) -> impl FnOnce(sqlx::Error) -> Failure {
    move |error| Failure::Aborted(map_sqlx(context, error))
}

pub(crate) fn aborted(error: PersistError) -> Failure {
    Failure::Aborted(error)
}

pub(crate) fn refused(error: PersistError) -> Failure {
    Failure::Refused(error)
}

/// A write the writer applies: a message write from the pipeline, or a session-binding change.
pub(crate) enum Write {
    Persist(PersistArgs),
    Bind(Bind),
    /// Moves the binding of (tenant, agent, thread) to `to`; with `only_session`, only if it is
    /// active and points at that session (compare-and-set).
    Mark {
        tenant: Option<TenantId>,
        agent_id: AgentId,
        thread_id: ThreadId,
        only_session: Option<SessionId>,
        to: BindingState,
    },
}

/// The answer to a [`Write`].
pub(crate) enum Answer {
    Persist(PersistResult),
    Bound(SessionBinding),
    Marked(bool),
}

/// Applies one write. The caller owns the transaction.
pub(crate) async fn apply(conn: &mut SqliteConnection, write: &Write, limits: &Limits) -> OpResult<Answer> {
    match write {
        Write::Persist(args) => persist(conn, args, limits).await.map(Answer::Persist),
        Write::Bind(bind) => bind_session(conn, bind).await.map(Answer::Bound),
        Write::Mark { tenant, agent_id, thread_id, only_session, to } => {
            let marked = sqlx::query(
                "UPDATE session_bindings SET state = ?4, updated_at = ?5 \
                  WHERE tenant = ?6 AND agent_id = ?1 AND thread_id = ?2 \
                    AND (?3 IS NULL OR (session_id = ?3 AND state = 'active'))",
            )
            .bind(agent_id.as_str())
            .bind(thread_id.as_str())
            .bind(only_session.as_ref().map(SessionId::as_str))
            .bind(to.as_str())
            .bind(Timestamp::now().as_micros())
            .bind(tenant_key(tenant.as_ref()))
            .execute(&mut *conn)
            .await
            .map_err(sql("changing a session binding"))?;
            Ok(Answer::Marked(marked.rows_affected() > 0))
        }
    }
}

async fn persist(conn: &mut SqliteConnection, args: &PersistArgs, limits: &Limits) -> OpResult<PersistResult> {
    if let Some(plan) = Insert::plan(args, limits) {
        let plan = plan?;
        let inserted = insert_many(conn, std::slice::from_ref(&plan)).await?.pop().flatten();
        return plan.answer(conn, inserted).await;
    }
    args.validate().map_err(refused)?;
    match args {
        PersistArgs::UpdateContent(update) => {
            Ok(ContentUpdated::new(update_content(conn, update, limits).await?).into())
        }
        PersistArgs::Update(update) => match &update.target {
            Target::Message(id) => Ok(Updated::Message(update_message(conn, update, id, limits).await?).into()),
            Target::Thread => Ok(update_thread(conn, update, limits).await?.into()),
            // Refused by `validate` above.
            Target::MessagesAfter(_) => {
                Err(refused(PersistError::invalid("target", "an update applies to a message or a thread")))
            }
        },
        PersistArgs::Delete(delete) => Ok(match &delete.target {
            Target::Message(id) => delete_message(conn, delete, id).await?,
            Target::Thread => delete_thread(conn, delete).await?,
            Target::MessagesAfter(_) => delete_thread(conn, delete).await?,
        }
        .into()),
        PersistArgs::Restore(restore) => Ok(self::restore::restore(conn, restore, limits).await?.into()),
        PersistArgs::AppendTurn(turn) => Ok(self::turn::append_turn(conn, turn, limits).await?.into()),
        PersistArgs::SetOnce(request) => Ok(PersistResult::Value(set_once(conn, request).await?)),
        other => Err(refused(PersistError::Unsupported { what: format!("operation `{}`", other.op()).into() })),
    }
}

/// Applies a group of writes in the caller's transaction, answering each in order.
///
/// Writes run in queue order; each run of consecutive `add`s and `reserve`s is inserted in
/// **one** round trip (a multi-statement query), everything else one by one.
pub(crate) async fn apply_batch(
    conn: &mut SqliteConnection,
    writes: &[&Write],
    limits: &Limits,
) -> OpResult<Vec<Result<Answer, PersistError>>> {
    let mut out = Vec::with_capacity(writes.len());
    let mut run: Vec<Insert<'_>> = Vec::new();
    for write in writes {
        let plan = match write {
            Write::Persist(args) => Insert::plan(args, limits),
            _ => None,
        };
        match plan {
            Some(Ok(plan)) => {
                // The run's answers take the slots of its writes, in order.
                run.push(plan);
                out.push(pending());
            }
            Some(Err(Failure::Refused(error))) => {
                insert_run(conn, &mut run, &mut out).await?;
                out.push(Err(error));
            }
            Some(Err(aborted)) => return Err(aborted),
            None => {
                insert_run(conn, &mut run, &mut out).await?;
                out.push(match apply(conn, write, limits).await {
                    Ok(answer) => Ok(answer),
                    Err(Failure::Refused(error)) => Err(error),
                    Err(aborted) => return Err(aborted),
                });
            }
        }
    }
    insert_run(conn, &mut run, &mut out).await?;
    Ok(out)
}

impl Limits {
    /// `content`, once checked against the limits.
    pub(crate) fn content(&self, content: &persist_core::Content) -> OpResult<persist_core::Content> {
        if content.json_len() > self.max_content_bytes {
            return Err(refused(PersistError::invalid(
                "content",
                format!("is {} bytes of JSON, the limit is {}", content.json_len(), self.max_content_bytes),
            )));
        }
        Ok(content.clone())
    }

    pub(crate) fn metadata(&self, metadata: &Metadata) -> OpResult<String> {
        let text = json(metadata).map_err(aborted)?;
        if text.len() > self.max_metadata_bytes {
            return Err(refused(PersistError::invalid(
                "metadata",
                format!("is {} bytes of JSON, the limit is {}", text.len(), self.max_metadata_bytes),
            )));
        }
        Ok(text)
    }
}

/// Ends whatever transaction is open; none being open is fine.
pub(crate) async fn rollback(conn: &mut SqliteConnection) {
    let _ = sqlx::raw_sql("ROLLBACK").execute(conn).await;
}

#[cfg(test)]
mod tests {
    use persist_core::args::{Add, Delete};
    use persist_core::{Content, Context, MessageId, PersistError, Role, TenantId, ThreadId};
    use sqlx::{ConnectOptions, Connection, SqliteConnection};

    use super::{Answer, Failure, Write, apply_batch, commit_inserts};
    use crate::Limits;

    async fn connection(dir: &tempfile::TempDir) -> SqliteConnection {
        let options =
            sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("ops.db")).create_if_missing(true);
        let mut conn = options.connect().await.unwrap();
        crate::migrations::MIGRATOR.run_direct(None, &mut conn, false).await.unwrap();
        sqlx::raw_sql(super::INBOX).execute(&mut conn).await.unwrap();
        conn
    }

    fn limits() -> Limits {
        Limits { max_content_bytes: 1 << 20, max_metadata_bytes: 1 << 16 }
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
        sqlx::query_scalar("SELECT count(*) FROM messages").fetch_one(conn).await.unwrap()
    }

    #[tokio::test]
    async fn a_group_of_inserts_commits_in_one_query_and_answers_each() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connection(&dir).await;
        let [seed, delete] = tombstone("gone");
        let mut tx = conn.begin().await.unwrap();
        apply_batch(&mut tx, &[&seed, &delete], &limits()).await.unwrap();
        tx.commit().await.unwrap();
        let (refused, own, repeat, other) =
            (add_id("gone", "m"), add_id("owner", "m"), add_id("owner", "m"), add_id("other", "m"));
        let answers = commit_inserts(&mut conn, &[&refused, &own, &repeat, &other], &limits()).await.unwrap().unwrap();
        assert!(matches!(answers[0], Err(PersistError::ThreadDeleted { .. })));
        assert_eq!(added(&answers[1]), ("m".to_owned(), false));
        assert_eq!(added(&answers[2]), ("m".to_owned(), true), "the repeat answers the first copy");
        assert_eq!(added(&answers[3]), ("m".to_owned(), false), "another tenant's thread of that id is its own");
        assert_eq!(count(&mut conn).await, 2, "committed: owner's m and other's m");
        let other = Write::Persist(Delete::thread(ThreadId::new("shared").unwrap()).into());
        assert!(commit_inserts(&mut conn, &[&other], &limits()).await.is_none(), "not an insert-only group");
    }

    /// Turns the writer's report into a view that fails when read; the rows still go in and out.
    async fn break_the_report(conn: &mut SqliteConnection) {
        sqlx::raw_sql(
            "DROP TABLE temp.persist_written; \
             CREATE TEMP TABLE written_rows (plan INTEGER NOT NULL, seq INTEGER NOT NULL); \
             CREATE TEMP VIEW persist_written AS SELECT plan, json('not json') + seq AS seq FROM written_rows; \
             CREATE TEMP TRIGGER written_insert INSTEAD OF INSERT ON persist_written \
                 BEGIN INSERT INTO written_rows VALUES (NEW.plan, NEW.seq); END; \
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
        let answers = commit_inserts(&mut conn, &[&first, &second], &limits()).await.unwrap().unwrap();
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
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connection(&dir).await;
        sqlx::query(
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON messages WHEN NEW.message_id = 'boom' \
             BEGIN SELECT RAISE(ABORT, 'boom refused'); END",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let (fine, boom) = (add_id("owner", "fine"), add_id("owner", "boom"));
        let failed = commit_inserts(&mut conn, &[&fine, &boom], &limits()).await.unwrap();
        assert!(matches!(failed, Err(Failure::Aborted(_))));
        assert_eq!(count(&mut conn).await, 0, "the write before the failure was rolled back");
        // The connection is usable, outside any transaction.
        commit_inserts(&mut conn, &[&fine], &limits()).await.unwrap().unwrap();
        assert_eq!(count(&mut conn).await, 1);
    }
}
