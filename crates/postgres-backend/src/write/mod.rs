//! Writes, each one SQL statement (atomic on its own, one round trip in the happy path), except
//! a thread delete and an append, each a short transaction.
//!
//! Every write to a thread first locks the thread's row (an upsert of the row, or `SELECT …
//! FOR UPDATE` in a CTE), then touches messages: writers of one thread serialize on that row
//! and get seqs in commit order, writers of different threads run in parallel, and the lock
//! order (thread, then message) is the same everywhere, so they cannot deadlock. Guards live in
//! the `WHERE` clauses; when a guarded statement changes nothing, a diagnosis query says which
//! rule refused it.

mod delete;
mod guard;
mod insert;
mod restore;
mod session;
mod turn;
mod update;

use persist_core::{ContentUpdated, Message, PersistArgs, PersistError, PersistResult, Target, TenantId, Updated};
use sqlx::PgConnection;

use self::delete::{delete_message, delete_thread};
pub(crate) use self::insert::{apply_insert, insert_group};
use self::session::set_once;
pub(crate) use self::session::{bind, mark};
pub(crate) use self::update::update_group;
use self::update::{update_content, update_message, update_thread};
use crate::error::map_sqlx;
use crate::pool::lost_connection;
use crate::rows::{self};

/// How often a write that lost a race (a unique violation, a row that changed between the
/// write and its diagnosis) is tried again before answering a temporary error.
const RACE_ATTEMPTS: usize = 3;

fn raced() -> PersistError {
    PersistError::temporary("the write kept racing concurrent writers; retry it")
}

/// Refuses what no write may store (see [`PersistArgs::validate`]: JSON nested deeper than a
/// parser accepts, U+0000, …).
pub(crate) fn check(args: &PersistArgs) -> Result<(), PersistError> {
    args.validate()
}

pub(crate) async fn apply(conn: &mut PgConnection, args: PersistArgs) -> Result<PersistResult, PersistError> {
    check(&args)?;
    match &args {
        PersistArgs::Add(_) | PersistArgs::Reserve(_) => apply_insert(conn, &args, None).await,
        PersistArgs::UpdateContent(update) => Ok(ContentUpdated::new(update_content(conn, update).await?).into()),
        PersistArgs::Update(update) => match &update.target {
            Target::Message(id) => Ok(Updated::Message(update_message(conn, update, id).await?).into()),
            Target::Thread => Ok(Updated::Thread(update_thread(conn, update).await?).into()),
            // Refused by `check` above.
            Target::MessagesAfter(_) | Target::Covered => {
                Err(PersistError::invalid("target", "an update applies to a message or a thread"))
            }
        },
        PersistArgs::Delete(delete) => Ok(match &delete.target {
            Target::Message(id) => delete_message(conn, delete, id).await?,
            Target::Thread | Target::MessagesAfter(_) | Target::Covered => delete_thread(conn, delete).await?,
        }
        .into()),
        PersistArgs::Restore(restore) => Ok(self::restore::restore(conn, restore).await?.into()),
        PersistArgs::AppendTurn(turn) => Ok(self::turn::append_turn(conn, turn).await?.into()),
        PersistArgs::SetOnce(request) => Ok(PersistResult::Value(set_once(conn, request).await?)),
        PersistArgs::Summarize(summarize) => {
            Ok(PersistResult::Summarized(crate::summaries::summarize(conn, summarize).await?))
        }
        PersistArgs::Lease(lease) => Ok(PersistResult::Lease(crate::summaries::lease(conn, lease).await?)),
        PersistArgs::Embed(embed) => Ok(PersistResult::Embedded(crate::vectors::embed(conn, embed).await?)),
        PersistArgs::WriteMemory(write) => {
            Ok(PersistResult::MemoryWritten(crate::working::write_memory(conn, write).await?))
        }
        PersistArgs::WriteRecords(write) => {
            Ok(PersistResult::RecordsWritten(crate::records::write_records(conn, write).await?))
        }
        other => Err(PersistError::Unsupported { what: format!("operation `{}`", other.op()).into() }),
    }
}

/// The messages a group statement wrote, with their tenants; `Ok(Err(_))` when the server
/// refused the statement as a whole (a constraint, a trigger, a lost race, a lock time-out) with
/// the connection still good: it wrote nothing, and each write runs again alone.
type GroupAnswer = Result<Result<Vec<(Option<TenantId>, Message)>, PersistError>, PersistError>;

fn group_answer(context: &'static str, rows: Result<Vec<sqlx::postgres::PgRow>, sqlx::Error>) -> GroupAnswer {
    match rows {
        Ok(rows) => Ok(rows.iter().map(|row| Ok((rows::tenant(row)?, rows::message(row)?))).collect()),
        Err(error) => {
            let refused_by_server = matches!(error, sqlx::Error::Database(_));
            let error = map_sqlx(context, error);
            if refused_by_server && !lost_connection(&error) { Ok(Err(error)) } else { Err(error) }
        }
    }
}
