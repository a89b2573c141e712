//! Summaries and leases in the writer's transaction: a summary written (its range checked along
//! its branch), retention of what the latest summary covers (`Delete::covered`), and a lease
//! taken or given up.

use persist_core::args::Delete;
use persist_core::branch::{BranchWindow, RunWalk};
use persist_core::lease::{Lease, Leased};
use persist_core::summary::{Summarize, Summarized, on_runs};
use persist_core::{Deleted, PersistError, Thread, Timestamp};
use sqlx::SqliteConnection;

use super::guard::find_thread;
use super::removed_ids;
use super::{OpResult, aborted, refused, sql};
use crate::branches::{CHUNK, RUN_STARTS};
use crate::limits::Limits;
use crate::rows::{self, signed, summary_columns, tenant_key, thread_key};

/// The runs of the branch of `thread`/`tenant` ending at `leaf`, ascending (see [`RunWalk`]),
/// walked in the writer's transaction.
pub(super) async fn runs(
    conn: &mut SqliteConnection,
    thread: &str,
    tenant: &str,
    leaf: u64,
) -> OpResult<Vec<(u64, u64)>> {
    let mut walk = RunWalk::new(leaf);
    while let Some(at) = walk.wants() {
        let starts: Vec<(i64, i64)> = sqlx::query_as(RUN_STARTS)
            .bind(thread)
            .bind(tenant)
            .bind(signed(at))
            .bind(CHUNK as i64)
            .fetch_all(&mut *conn)
            .await
            .map_err(sql("walking a branch"))?;
        let chunk: Vec<(u64, Option<u64>)> =
            starts.iter().map(|&(seq, parent)| (seq.max(0) as u64, Some(parent.max(0) as u64))).collect();
        walk.feed(&chunk, chunk.len() < CHUNK);
    }
    Ok(walk.runs())
}

/// The last message of the latest summary of the branch ending at `leaf`, if it has one.
async fn latest_through(conn: &mut SqliteConnection, thread: &str, tenant: &str, leaf: u64) -> OpResult<Option<u64>> {
    let runs = runs(conn, thread, tenant, leaf).await?;
    let ends: Vec<i64> = sqlx::query_scalar(
        "SELECT through_seq FROM summaries WHERE tenant = ?2 AND thread_id = ?1 AND through_seq <= ?3 \
          ORDER BY through_seq DESC",
    )
    .bind(thread)
    .bind(tenant)
    .bind(signed(leaf))
    .fetch_all(&mut *conn)
    .await
    .map_err(sql("finding the latest summary"))?;
    Ok(ends.into_iter().filter_map(|end| u64::try_from(end).ok()).find(|&end| on_runs(end, &runs)))
}

pub(super) async fn summarize(conn: &mut SqliteConnection, args: &Summarize, limits: &Limits) -> OpResult<Summarized> {
    let content = limits.content(&args.content)?;
    let metadata = limits.metadata(&args.metadata)?;
    let tenant = tenant_key(args.tenant());
    let thread = args.thread_id.as_str();
    match find_thread(conn, args.tenant(), &args.thread_id).await? {
        Some(found) if found.is_deleted() => {
            return Err(refused(PersistError::ThreadDeleted { thread_id: args.thread_id.clone() }));
        }
        Some(_) => {}
        None => return Err(refused(args.no_such_message())),
    }
    let stored = sqlx::query(concat!(
        "SELECT ",
        summary_columns!(),
        " FROM summaries WHERE tenant = ?2 AND thread_id = ?1 AND through_seq = ?3"
    ))
    .bind(thread)
    .bind(tenant)
    .bind(signed(args.through_seq))
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql("reading a summary"))?;
    if let Some(row) = stored {
        let answer = args.against_stored(rows::summary(&row).map_err(aborted)?).map_err(refused)?;
        if !answer.deduplicated {
            // A replacement: the same range, said in another form.
            sqlx::query("UPDATE summaries SET content = ?4, metadata = ?5 WHERE tenant = ?2 AND thread_id = ?1 AND through_seq = ?3")
                .bind(thread)
                .bind(tenant)
                .bind(signed(args.through_seq))
                .bind(content.as_json())
                .bind(metadata)
                .execute(&mut *conn)
                .await
                .map_err(sql("replacing a summary"))?;
        }
        return Ok(answer);
    }
    if args.replace {
        return Err(refused(args.no_summary_to_replace()));
    }
    // A message of the thread, or history before its oldest (what retention left); not a gap.
    let ends: bool = sqlx::query_scalar(concat!(
        "SELECT coalesce(EXISTS (SELECT 1 FROM persist_messages WHERE thread = ",
        thread_key!("?2", "?1"),
        " AND seq = ?3) OR ?3 < (SELECT min(seq) FROM persist_messages WHERE thread = ",
        thread_key!("?2", "?1"),
        "), 0)"
    ))
    .bind(thread)
    .bind(tenant)
    .bind(signed(args.through_seq))
    .fetch_one(&mut *conn)
    .await
    .map_err(sql("finding a summary's last message"))?;
    if !ends {
        return Err(refused(args.no_such_message()));
    }
    let runs = runs(conn, thread, tenant, args.through_seq).await?;
    let covered = BranchWindow::new(runs, Some(args.from_seq - 1), None, false).take(u64::MAX);
    let covered = rows::json(&covered).map_err(aborted)?;
    let reserved: Option<i64> = sqlx::query_scalar(concat!(
        "SELECT min(m.seq) FROM json_each(?1) r CROSS JOIN persist_messages m WHERE m.thread = ",
        thread_key!("?3", "?2"),
        " AND m.seq BETWEEN r.value ->> 0 AND r.value ->> 1 AND m.status = 'reserved'"
    ))
    .bind(covered)
    .bind(thread)
    .bind(tenant)
    .fetch_one(&mut *conn)
    .await
    .map_err(sql("checking a summary's range"))?;
    if let Some(seq) = reserved {
        return Err(refused(args.reserved_in_range(seq.max(0) as u64)));
    }
    let summary = args.to_summary(Timestamp::now());
    sqlx::query(
        "INSERT INTO summaries (tenant, thread_id, through_seq, from_seq, content, metadata, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .bind(tenant)
    .bind(thread)
    .bind(signed(summary.through_seq))
    .bind(signed(summary.from_seq))
    .bind(content.as_json())
    .bind(metadata)
    .bind(summary.created_at.as_micros())
    .execute(&mut *conn)
    .await
    .map_err(sql("writing a summary"))?;
    Ok(Summarized::new(summary, false))
}

/// `Delete::covered` of `thread` (checked live, its version compared): every message up to the
/// latest summary of the active branch but the active leaf, the parents of those left kept as
/// they were (the splice trigger's changes undone).
pub(super) async fn delete_covered(
    conn: &mut SqliteConnection,
    delete: &Delete,
    found: &Thread,
    limits: &Limits,
) -> OpResult<Deleted> {
    let gone = Deleted::new(delete.thread_id.clone(), Vec::new());
    let (thread, tenant) = (delete.thread_id.as_str(), tenant_key(delete.context.tenant()));
    let Some(leaf) = found.active_leaf else { return Ok(gone) };
    let Some(through) = latest_through(conn, thread, tenant, leaf).await? else { return Ok(gone) };
    let removal = super::spent::Removal::Covered { through, leaf };
    let (through, leaf) = (signed(through), signed(leaf));
    // The messages left whose parent goes: each keeps the parent it stores.
    let kept: Vec<(i64, Option<i64>)> = sqlx::query_as(concat!(
        "SELECT seq, parent_seq FROM persist_messages WHERE thread = ",
        thread_key!("?2", "?1"),
        " AND (seq > ?3 OR seq = ?4) \
               AND ((parent_seq IS NULL AND seq > 1 AND seq - 1 <= ?3 AND seq - 1 <> ?4) \
                    OR (parent_seq BETWEEN 1 AND ?3 AND parent_seq <> ?4))"
    ))
    .bind(thread)
    .bind(tenant)
    .bind(through)
    .bind(leaf)
    .fetch_all(&mut *conn)
    .await
    .map_err(sql("reading the parents kept"))?;
    super::spent::spend(conn, thread, tenant, removal, Timestamp::now(), limits.key_retention).await?;
    let removed = sqlx::query(concat!(
        "DELETE FROM persist_messages WHERE thread = ",
        thread_key!("?2", "?1"),
        " AND seq <= ?3 AND seq <> ?4 RETURNING seq, message_id"
    ))
    .bind(thread)
    .bind(tenant)
    .bind(through)
    .bind(leaf)
    .fetch_all(&mut *conn)
    .await
    .map_err(sql("removing covered messages"))?;
    let ids = removed_ids(&removed)?;
    if ids.is_empty() {
        return Ok(gone);
    }
    // The older summaries go with what they covered (another branch's would be read as
    // history by the branches that follow it).
    sqlx::query("DELETE FROM summaries WHERE tenant = ?2 AND thread_id = ?1 AND through_seq < ?3")
        .bind(thread)
        .bind(tenant)
        .bind(through)
        .execute(&mut *conn)
        .await
        .map_err(sql("removing older summaries"))?;
    for (seq, parent) in kept {
        sqlx::query(concat!(
            "UPDATE persist_messages SET parent_seq = ?4 WHERE thread = ",
            thread_key!("?2", "?1"),
            " AND seq = ?3"
        ))
        .bind(thread)
        .bind(tenant)
        .bind(seq)
        .bind(parent)
        .execute(&mut *conn)
        .await
        .map_err(sql("keeping a parent"))?;
    }
    sqlx::query("UPDATE threads SET version = version + 1, updated_at = ?3 WHERE tenant = ?2 AND thread_id = ?1")
        .bind(thread)
        .bind(tenant)
        .bind(Timestamp::now().as_micros())
        .execute(&mut *conn)
        .await
        .map_err(sql("touching the thread"))?;
    Ok(Deleted::new(delete.thread_id.clone(), ids))
}

/// Removes the summaries a truncation after `seq` reaches past.
pub(super) async fn truncate_summaries(conn: &mut SqliteConnection, delete: &Delete, seq: u64) -> OpResult<()> {
    sqlx::query("DELETE FROM summaries WHERE tenant = ?2 AND thread_id = ?1 AND through_seq > ?3")
        .bind(delete.thread_id.as_str())
        .bind(tenant_key(delete.context.tenant()))
        .bind(signed(seq))
        .execute(&mut *conn)
        .await
        .map_err(sql("removing the summaries of truncated messages"))?;
    Ok(())
}

/// Takes, renews or gives up a lease (see [`Lease::decide`]).
pub(super) async fn lease(conn: &mut SqliteConnection, lease: &Lease) -> OpResult<Option<Leased>> {
    lease.validate().map_err(refused)?;
    let (thread, tenant) = (lease.thread_id.as_str(), tenant_key(lease.tenant()));
    let current: Option<(String, i64)> =
        sqlx::query_as("SELECT holder, expires_at FROM leases WHERE tenant = ?1 AND thread_id = ?2 AND name = ?3")
            .bind(tenant)
            .bind(thread)
            .bind(&lease.name)
            .fetch_optional(&mut *conn)
            .await
            .map_err(sql("reading a lease"))?;
    let current = current.map(|(holder, until)| Leased::new(holder, Timestamp::from_micros(until)));
    let (answer, write) = lease.decide(current, Timestamp::now());
    if write {
        let written = match &answer {
            Some(held) => sqlx::query(
                "INSERT INTO leases (tenant, thread_id, name, holder, expires_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (tenant, thread_id, name) DO UPDATE SET holder = excluded.holder, \
                                                                   expires_at = excluded.expires_at",
            )
            .bind(tenant)
            .bind(thread)
            .bind(&lease.name)
            .bind(held.holder.as_str())
            .bind(held.expires_at.as_micros()),
            None => sqlx::query("DELETE FROM leases WHERE tenant = ?1 AND thread_id = ?2 AND name = ?3")
                .bind(tenant)
                .bind(thread)
                .bind(&lease.name),
        };
        written.execute(&mut *conn).await.map_err(sql("writing a lease"))?;
    }
    Ok(answer)
}

/// Removes what a deleted thread kept besides its messages: summaries and leases.
pub(super) async fn delete_thread_records(conn: &mut SqliteConnection, delete: &Delete) -> OpResult<()> {
    for statement in [
        "DELETE FROM summaries WHERE tenant = ?2 AND thread_id = ?1",
        "DELETE FROM leases WHERE tenant = ?2 AND thread_id = ?1",
    ] {
        sqlx::query(statement)
            .bind(delete.thread_id.as_str())
            .bind(tenant_key(delete.context.tenant()))
            .execute(&mut *conn)
            .await
            .map_err(sql("removing the thread's summaries and leases"))?;
    }
    Ok(())
}
