//! Inserts on the caller's lane (`crate::lane`): a rusqlite connection, used on the caller's
//! thread for a lone caller's write, and by the writer for its groups of inserts.

use persist_core::args::AppendTurn;
use persist_core::branch::parent_from_stored;
use persist_core::{Message, PersistArgs, PersistError, Timestamp, TurnAppended};

use super::super::insert_sql::{
    INBOX_INSERT, INBOX_VECTORS_INSERT, INSERT_MESSAGE, INSERT_MESSAGE_VECTOR, INSERT_THREAD, INSERT_THREAD_VECTOR,
    INSERT_VECTOR_MODEL, INSERT_VECTOR_ROW, READ_REPORT,
};
use super::super::{Answer, Failure};
use super::{Insert, from_report, inbox_rows};
use crate::limits::Limits;

/// What [`insert_on_lane`] made of a write.
pub(crate) enum OnLane {
    /// Answered: written and committed, or refused before anything was written (a request
    /// that is not valid, content over the limits).
    Answered(Result<Answer, PersistError>),
    /// Not written, nothing left behind: the writer is to apply it (a repeat or a refusal to
    /// diagnose, the file busy, any failure of the database), where its answer is found as
    /// for any write.
    Declined,
}

/// Applies an `add` or `reserve` on the caller's lane (`crate::lane`), a rusqlite connection
/// used on the caller's thread: the statements of [`INSERT_ONE`] (or [`INSERT_ONE_VECTOR`], for
/// an add carrying its embedding) one at a time. Only the common
/// case is answered here, the message written; anything else is rolled back and
/// [`Declined`](OnLane::Declined), so that one place, the writer, answers repeats, refusals and
/// failures.
pub(crate) fn insert_on_lane(conn: &rusqlite::Connection, args: &PersistArgs, limits: &Limits) -> OnLane {
    let plan = match Insert::plan(args, limits) {
        Some(Ok(plan)) => plan,
        Some(Err(Failure::Refused(error))) => return OnLane::Answered(Err(error)),
        Some(Err(Failure::Aborted(_))) | None => return OnLane::Declined,
    };
    let now = Timestamp::now();
    match one_on_lane(conn, &plan, now, false) {
        One::Committed(mut rows) => match rows.pop().flatten() {
            Some(written) => OnLane::Answered(written.map(|message| Answer::Persist(plan.result(message, false)))),
            None => OnLane::Declined,
        },
        // `COMMIT` failed: whether it was made is not known for sure, so the write is not made
        // again (a generated id would make it twice); the caller is told, as the writer would.
        One::CommitFailed(error) => OnLane::Answered(Err(error)),
        // Nothing written (a repeat, a refusal) or a failure before `COMMIT`: nothing stays.
        One::RolledBack => OnLane::Declined,
    }
}

/// Applies an `append_turn` on the caller's lane: its messages' inserts (as the writer plans
/// them, [`turn::inserts`](super::super::turn::inserts)) in one transaction, each following the
/// one before it. The statements refuse what the writer's decision would (the thread deleted, a
/// key or id stored or spent, a parent the thread does not have) by inserting nothing; then the
/// whole turn is rolled back and [`Declined`](OnLane::Declined): the writer decides it, and
/// answers the repeat or the refusal. A turn carrying embeddings goes to the writer, which
/// checks them against the store's models first.
pub(crate) fn turn_on_lane(conn: &rusqlite::Connection, turn: &AppendTurn, limits: &Limits) -> OnLane {
    let plan = match turn.plan() {
        Ok(plan) => plan,
        Err(error) => return OnLane::Answered(Err(error)),
    };
    let inserts = match Insert::of_turn(&plan, limits) {
        Ok(inserts) => inserts,
        Err(Failure::Refused(error)) => return OnLane::Answered(Err(error)),
        Err(Failure::Aborted(_)) => return OnLane::Declined,
    };
    if inserts.is_empty() || inserts.iter().any(Insert::has_vector) {
        return OnLane::Declined;
    }
    match rows_on_lane(conn, &inserts, Timestamp::now(), false) {
        One::Committed(rows) => {
            let written: Result<Vec<Message>, PersistError> = rows
                .into_iter()
                .map(|row| row.unwrap_or_else(|| Err(crate::error::corrupt("a row of the turn committed unwritten"))))
                .collect();
            let appended = written.map(|messages| TurnAppended::new(turn.thread_id.clone(), messages, false));
            OnLane::Answered(appended.map(|turn| Answer::Persist(turn.into())))
        }
        One::CommitFailed(error) => OnLane::Answered(Err(error)),
        One::RolledBack => OnLane::Declined,
    }
}

/// The inserts of `plans` on the lane's connection, for the writer's group (as [`insert_query`]
/// with `transaction`: committed, the group of one by [`INSERT_ONE`]'s statements, a larger one
/// through the connection's inbox in autocommit). `None` when nothing was committed because the
/// database failed (the file busy, full, …): the writer then runs the same group on its own
/// connection, where the failure is answered as for any write.
pub(in crate::write) fn group_on_lane(
    conn: &rusqlite::Connection,
    plans: &[Insert<'_>],
) -> Option<Vec<Option<Result<Message, PersistError>>>> {
    let now = Timestamp::now();
    if let [plan] = plans {
        return match one_on_lane(conn, plan, now, true) {
            One::Committed(written) => Some(written),
            One::CommitFailed(error) => Some(vec![Some(Err(error))]),
            One::RolledBack => None,
        };
    }
    let rows = inbox_rows(plans, now).ok()?;
    // In autocommit, as on the writer's connection (no statement journal); the insert is the
    // group's transaction: once it finished, the group is committed. Failed, nothing of it
    // stays (a statement that fails in autocommit is rolled back whole, as the writer's own
    // path holds): the writer runs the group on its connection, where the failure is answered
    // as for any group (a write that breaks it fails alone).
    conn.prepare_cached("DELETE FROM persist_written").and_then(|mut clear| clear.execute(())).ok()?;
    let insert = if plans.iter().any(Insert::has_vector) { INBOX_VECTORS_INSERT } else { INBOX_INSERT };
    conn.prepare_cached(insert).and_then(|mut insert| insert.execute([rows])).ok()?;
    let written = conn
        .prepare_cached(READ_REPORT)
        .and_then(|mut report| report.query_row((), |row| row.get::<_, Option<String>>(0)));
    Some(match written {
        Ok(written) => from_report(plans, written.as_deref(), now),
        // Committed: the answers fail, never the group (run again, the writes would repeat).
        Err(error) => plans
            .iter()
            .map(|_| {
                Some(Err(PersistError::Backend {
                    message: format!("the writes were committed but their report cannot be read: {error}").into(),
                    source: None,
                }))
            })
            .collect(),
    })
}

/// What [`rows_on_lane`] did.
enum One {
    /// Committed: each plan's row written (`None` when nothing was inserted: a repeat, a
    /// refusal).
    Committed(Vec<Option<Result<Message, PersistError>>>),
    /// Rolled back (a plan inserted nothing, without `commit_empty`) or failed before `COMMIT`:
    /// nothing stays.
    RolledBack,
    /// `COMMIT` itself failed, for another reason than the file's lock.
    CommitFailed(PersistError),
}

/// One insert on the lane's connection in `BEGIN IMMEDIATE` … `COMMIT` (committed even when
/// nothing was inserted only with `commit_empty`).
fn one_on_lane(conn: &rusqlite::Connection, plan: &Insert<'_>, now: Timestamp, commit_empty: bool) -> One {
    rows_on_lane(conn, std::slice::from_ref(plan), now, commit_empty)
}

/// The inserts of `plans`, in order, in one `BEGIN IMMEDIATE` … `COMMIT` on the lane's
/// connection; each follows the one before it in its thread as the writer's run of them does.
/// Without `commit_empty`, a plan that inserts nothing rolls them all back.
fn rows_on_lane(conn: &rusqlite::Connection, plans: &[Insert<'_>], now: Timestamp, commit_empty: bool) -> One {
    // The seq and the stored parent of each row written.
    type Written = Option<(i64, Option<i64>)>;
    let written = (|| -> rusqlite::Result<Option<Vec<Written>>> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute(())?;
        let mut rows = Vec::with_capacity(plans.len());
        for plan in plans {
            let row = insert_row(conn, plan, now)?;
            if row.is_none() && !commit_empty {
                return Ok(None);
            }
            rows.push(row);
        }
        Ok(Some(rows))
    })();
    let committed = match written {
        Ok(Some(rows)) => conn.prepare_cached("COMMIT").and_then(|mut commit| commit.execute(())).map(|_| rows),
        Ok(None) | Err(_) => {
            // Ends the transaction, if one is open; none being open is fine.
            let _ = conn.execute_batch("ROLLBACK");
            return One::RolledBack;
        }
    };
    let rows = match committed {
        Ok(rows) => rows,
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            if crate::error::busy(&error) {
                return One::RolledBack;
            }
            return One::CommitFailed(crate::error::map_rusqlite("committing", error));
        }
    };
    // Committed: an unreadable seq fails this answer only, as on the writer.
    One::Committed(
        plans
            .iter()
            .zip(rows)
            .map(|(plan, row)| {
                row.map(|(seq, parent)| {
                    let seq = u64::try_from(seq).map_err(|_| crate::error::corrupt(format!("seq {seq}")))?;
                    let parent = parent
                        .map(|parent| {
                            u64::try_from(parent).map_err(|_| crate::error::corrupt(format!("parent_seq {parent}")))
                        })
                        .transpose()?;
                    Ok(plan.written(seq, parent_from_stored(seq, parent), now))
                })
            })
            .collect(),
    )
}

/// The statements of one insert (its thread's row, then its message's, and its vector's), in
/// the transaction open on `conn`: the seq and stored parent written, `None` when the message's
/// statement inserted nothing (a repeat, a refusal).
fn insert_row(
    conn: &rusqlite::Connection,
    plan: &Insert<'_>,
    now: Timestamp,
) -> rusqlite::Result<Option<(i64, Option<i64>)>> {
    // The statements' parameters: the inbox row's, but its index (and the vector as bytes).
    let (_, thread, tenant, id, role, content, metadata, status, key, at, parent, form, model, dims, _) =
        plan.row(0, now);
    let vector = plan.vector.as_ref().map(|(_, unit)| persist_core::vector::to_bytes(unit));
    let dims = dims.map(|dims| i64::try_from(dims).unwrap_or(i64::MAX));
    let params = rusqlite::params![
        thread,
        tenant,
        id,
        role,
        content.as_ref(),
        metadata,
        status,
        key,
        at,
        parent,
        form,
        model,
        dims,
        vector
    ];
    // The thread's statement takes the first ten (the content's form is the message's), the
    // message's eleven; thirteen each with the vector's guard.
    let guarded = vector.is_some();
    let (sql, count) = if guarded { (INSERT_THREAD_VECTOR, 13) } else { (INSERT_THREAD, 10) };
    conn.prepare_cached(sql)?.execute(&params[..count])?;
    let row = {
        let (sql, count) = if guarded { (INSERT_MESSAGE_VECTOR, 13) } else { (INSERT_MESSAGE, 11) };
        let mut message = conn.prepare_cached(sql)?;
        let mut rows = message.query(&params[..count])?;
        match rows.next()? {
            Some(row) => Some((row.get(0)?, row.get(1)?)),
            None => None,
        }
    };
    if row.is_some() && vector.is_some() {
        conn.prepare_cached(INSERT_VECTOR_ROW)?.execute(params)?;
        conn.prepare_cached(INSERT_VECTOR_MODEL)?.execute(&params[..13])?;
    }
    Ok(row)
}
