//! One write operation as SQL, run by the writer inside its transaction.
//!
//! Each operation first decides, then writes: a request that is refused (`NotFound`,
//! `VersionConflict`, …) is refused before it changes anything, so neighbours in the same
//! group commit are unaffected. The happy path is one or two statements (guards live in the
//! `WHERE` clause, results come back with `RETURNING`, counters move in triggers); when a
//! guarded statement touches no row, a diagnosis query says which rule refused it.

mod delete;
mod embed;
mod guard;
mod insert;
mod insert_sql;
mod records;
pub(crate) mod restore;
mod session;
mod spent;
mod summarize;
mod turn;
mod update;
mod working;

use persist_core::session::{Bind, BindingState, SessionBinding};
use persist_core::{
    AgentId, ContentUpdated, MessageId, Metadata, PersistArgs, PersistError, PersistResult, SessionId, Target,
    TenantId, ThreadId, Timestamp, Updated,
};
use sqlx::SqliteConnection;

use self::delete::{delete_message, delete_thread};
pub(crate) use self::guard::find_thread;
pub(crate) use self::insert::{GroupConnection, OnLane, commit_inserts, insert_on_lane, turn_on_lane};
use self::insert::{Insert, Run, insert_many, pending};
pub use self::insert_sql::{INBOX, INBOX_INSERT, INSERT_MESSAGE, INSERT_THREAD, READ_REPORT};
pub(crate) use self::records::records_on_lane;
use self::session::{bind_session, set_once};
use self::update::{update_content, update_message, update_thread};
use crate::error::map_sqlx;
use crate::limits::Limits;
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

/// The ids of `DELETE … RETURNING seq, message_id` rows, in `seq` order (deletes and
/// summaries' removals read them).
pub(crate) fn removed_ids(rows: &[sqlx::sqlite::SqliteRow]) -> OpResult<Vec<MessageId>> {
    use crate::rows::Cells;
    use sqlx::Row;
    let mut removed: Vec<(i64, MessageId)> = rows
        .iter()
        .map(|row| {
            let seq = row.try_get::<i64, _>("seq").map_err(sql("reading deleted ids"))?;
            Ok((seq, row.message_id("message_id").map_err(aborted)?))
        })
        .collect::<OpResult<_>>()?;
    removed.sort_unstable_by_key(|&(seq, _)| seq);
    Ok(removed.into_iter().map(|(_, id)| id).collect())
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
    /// Indexes the messages waiting for the search index (before a search reads it).
    IndexWaiting,
}

/// The answer to a [`Write`].
pub(crate) enum Answer {
    Persist(PersistResult),
    Bound(SessionBinding),
    Marked(bool),
    /// The messages waiting for the search index are indexed.
    Indexed,
}

/// Applies one write. The caller owns the transaction.
pub(crate) async fn apply(conn: &mut SqliteConnection, write: &Write, limits: &Limits) -> OpResult<Answer> {
    match write {
        Write::Persist(args) => persist(conn, args, limits).await.map(Answer::Persist),
        Write::Bind(bind) => bind_session(conn, bind).await.map(Answer::Bound),
        Write::IndexWaiting => {
            sqlx::raw_sql(crate::search::FLUSH)
                .execute(&mut *conn)
                .await
                .map_err(sql("indexing the messages waiting for the search index"))?;
            Ok(Answer::Indexed)
        }
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
            Target::MessagesAfter(_) | Target::Covered => {
                Err(refused(PersistError::invalid("target", "an update applies to a message or a thread")))
            }
        },
        PersistArgs::Delete(delete) => Ok(match &delete.target {
            Target::Message(id) => delete_message(conn, delete, id, limits).await?,
            Target::Thread => delete_thread(conn, delete, limits).await?,
            Target::MessagesAfter(_) | Target::Covered => delete_thread(conn, delete, limits).await?,
        }
        .into()),
        PersistArgs::Restore(restore) => Ok(self::restore::restore(conn, restore, limits).await?.into()),
        PersistArgs::AppendTurn(turn) => Ok(self::turn::append_turn(conn, turn, limits).await?.into()),
        PersistArgs::SetOnce(request) => Ok(PersistResult::Value(set_once(conn, request).await?)),
        PersistArgs::Summarize(summarize) => {
            Ok(PersistResult::Summarized(self::summarize::summarize(conn, summarize, limits).await?))
        }
        PersistArgs::Lease(lease) => Ok(PersistResult::Lease(self::summarize::lease(conn, lease).await?)),
        PersistArgs::Embed(embed) => Ok(PersistResult::Embedded(self::embed::embed(conn, embed).await?)),
        PersistArgs::WriteMemory(write) => {
            Ok(PersistResult::MemoryWritten(self::working::write_memory(conn, write).await?))
        }
        PersistArgs::WriteRecords(write) => {
            Ok(PersistResult::RecordsWritten(self::records::write_records(conn, write).await?))
        }
        other => Err(refused(PersistError::Unsupported { what: format!("operation `{}`", other.op()).into() })),
    }
}

/// Applies a group of writes in the caller's transaction, answering each in order.
///
/// Writes run in queue order. The group's turns are decided first, together, in one query
/// ([`turn::decide_ahead`]); then each run of consecutive `add`s, `reserve`s and turns decided
/// ahead is inserted in **one** round trip (a multi-statement query), everything else one by
/// one (a turn whose thread an earlier write of the group addresses among them).
pub(crate) async fn apply_batch(
    conn: &mut SqliteConnection,
    writes: &[&Write],
    limits: &Limits,
) -> OpResult<Vec<Result<Answer, PersistError>>> {
    let mut ahead = self::turn::decide_ahead(conn, writes).await?;
    let mut out: Vec<Result<Answer, PersistError>> = writes.iter().map(|_| pending()).collect();
    let mut run = Run::default();
    for (slot, write) in writes.iter().enumerate() {
        if let Some(answer) = ahead.answered[slot].take() {
            out[slot] = answer.map(|turn| Answer::Persist(turn.into()));
            continue;
        }
        if let (Some(plan), Write::Persist(PersistArgs::AppendTurn(turn))) = (&ahead.fresh[slot], write) {
            match Insert::of_turn(plan, limits) {
                Ok(inserts) => run.push_turn(slot, &turn.thread_id, inserts),
                Err(Failure::Refused(error)) => out[slot] = Err(error),
                Err(aborted) => return Err(aborted),
            }
            continue;
        }
        let plan = match write {
            Write::Persist(args) => Insert::plan(args, limits),
            _ => None,
        };
        match plan {
            // The run's answers take the slots of its writes.
            Some(Ok(plan)) => run.push(slot, plan),
            Some(Err(Failure::Refused(error))) => out[slot] = Err(error),
            Some(Err(aborted)) => return Err(aborted),
            None => {
                run.flush(conn, &mut out).await?;
                out[slot] = match apply(conn, write, limits).await {
                    Ok(answer) => Ok(answer),
                    Err(Failure::Refused(error)) => Err(error),
                    Err(aborted) => return Err(aborted),
                };
            }
        }
    }
    run.flush(conn, &mut out).await?;
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
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
    release_search_reader(conn).await;
}

/// Ends the read FTS5 can leave open on `conn` after a statement that wrote to the search index
/// failed in autocommit: FTS5 keeps a blob handle on its pages, which pins the connection's
/// read snapshot, and once another connection commits, the next `BEGIN IMMEDIATE` on this one
/// fails with `SQLITE_BUSY_SNAPSHOT` (seen in the tests: a group one write of which broke).
/// A read of the index closes the handle as its cursor closes. Harmless when nothing is open.
pub(crate) async fn release_search_reader(conn: &mut SqliteConnection) {
    let _ = sqlx::query("SELECT count(*) FROM persist_search WHERE rowid = 0").fetch_optional(conn).await;
}

#[cfg(test)]
mod tests;
