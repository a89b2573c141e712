//! Summaries and leases on PostgreSQL: a summary written under a share lock of its thread (so a
//! truncation or a thread delete never interleaves), the compacted read in one snapshot (the
//! branch's runs, its latest summary, the rows after it), retention of what the latest summary
//! covers, and a lease taken or given up in one statement.

use persist_core::args::Delete;
use persist_core::branch::{Branch, BranchWindow, unknown_message};
use persist_core::lease::{Lease, Leased};
use persist_core::summary::{Compacted, ListSummaries, ReadCompacted, Summarize, Summarized, Summary, on_runs};
use persist_core::{Deleted, Page, PersistError, Timestamp};
use sqlx::{Connection, PgConnection, Row};

use crate::branches::{active_leaf, runs, runs_page, seq_of};
use crate::error::map_sqlx;
use crate::rows::{self, json_text, message_columns, signed, summary_columns, tenant_key};

fn sql(context: &'static str) -> impl FnOnce(sqlx::Error) -> PersistError {
    move |e| map_sqlx(context, e)
}

/// The latest summary of the branch of `runs` ending at `leaf`, if any.
async fn latest(
    conn: &mut PgConnection,
    tenant: &str,
    thread: &str,
    leaf: u64,
    runs: &[(u64, u64)],
) -> Result<Option<Summary>, PersistError> {
    // Newest first, a few at a time (the newest is the one, unless it is another branch's):
    // what a read costs does not grow with the thread's summaries.
    let (mut below, mut chunk) = (signed(leaf), 4i64);
    loop {
        let rows = sqlx::query(concat!(
            "SELECT ",
            summary_columns!(),
            " FROM summaries WHERE tenant = $1 AND thread_id = $2 AND through_seq <= $3 \
              ORDER BY through_seq DESC LIMIT $4"
        ))
        .bind(tenant)
        .bind(thread)
        .bind(below)
        .bind(chunk)
        .fetch_all(&mut *conn)
        .await
        .map_err(sql("reading the latest summary"))?;
        let full = rows.len() as i64 == chunk;
        for row in rows {
            let through: i64 = row.try_get("through_seq").map_err(sql("reading a summary"))?;
            if u64::try_from(through).is_ok_and(|through| on_runs(through, runs)) {
                return rows::summary(&row).map(Some);
            }
            below = through - 1;
        }
        if !full {
            break;
        }
        chunk = (chunk * 4).min(1024);
    }
    Ok(None)
}

/// The compacted read, to run in one snapshot (see
/// [`in_one_snapshot`](crate::branches::in_one_snapshot)).
pub(crate) async fn compacted(conn: &mut PgConnection, query: &ReadCompacted) -> Result<Compacted, PersistError> {
    let (tenant, thread) = (tenant_key(query.tenant()), query.thread_id.as_str());
    let leaf = match &query.branch {
        Branch::EndingAt(id) => match seq_of(conn, tenant, thread, id.as_str()).await? {
            Some((seq, _)) => Some(seq),
            None => return Err(unknown_message(&query.thread_id, id)),
        },
        _ => active_leaf(conn, tenant, thread).await?,
    };
    let Some(leaf) = leaf else { return Ok(Compacted::default()) };
    let runs = runs(conn, tenant, thread, leaf).await?;
    let summary = latest(conn, tenant, thread, leaf, &runs).await?;
    let picked = BranchWindow::new(runs, summary.as_ref().map(|s| s.through_seq), None, false).take(u64::MAX);
    let (lows, highs): (Vec<i64>, Vec<i64>) = picked.iter().map(|&(lo, hi)| (signed(lo), signed(hi))).unzip();
    let rows = sqlx::query(runs_page!("ASC"))
        .bind(lows)
        .bind(highs)
        .bind(tenant)
        .bind(thread)
        .bind(query.include_reserved)
        .bind(i64::MAX)
        .bind(None::<Vec<&str>>)
        .fetch_all(&mut *conn)
        .await
        .map_err(sql("reading a thread compacted"))?;
    let messages = rows.iter().map(rows::message).collect::<Result<Vec<_>, _>>()?;
    Ok(Compacted::new(summary, messages))
}

/// A page of a thread's summaries.
pub(crate) async fn summaries(conn: &mut PgConnection, query: &ListSummaries) -> Result<Page<Summary>, PersistError> {
    query.validate()?;
    let rows = sqlx::query(concat!(
        "SELECT ",
        summary_columns!(),
        " FROM summaries WHERE tenant = $1 AND thread_id = $2 AND through_seq > $3 ORDER BY through_seq LIMIT $4"
    ))
    .bind(tenant_key(query.tenant()))
    .bind(query.thread_id.as_str())
    .bind(signed(query.after.unwrap_or(0)))
    .bind(i64::from(query.limit) + 1)
    .fetch_all(&mut *conn)
    .await
    .map_err(sql("listing summaries"))?;
    let items = rows.iter().map(rows::summary).collect::<Result<Vec<_>, _>>()?;
    Ok(query.page(items))
}

/// Writes a summary in a transaction that first takes a share lock on its thread's row.
pub(crate) async fn summarize(conn: &mut PgConnection, args: &Summarize) -> Result<Summarized, PersistError> {
    let mut tx = conn.begin().await.map_err(sql("starting a summary"))?;
    let answer = summarize_locked(&mut tx, args).await;
    match &answer {
        Ok(written) if !written.deduplicated => tx.commit().await.map_err(sql("committing a summary"))?,
        _ => tx.rollback().await.map_err(sql("ending a summary"))?,
    }
    answer
}

async fn stored(conn: &mut PgConnection, tenant: &str, args: &Summarize) -> Result<Option<Summary>, PersistError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        summary_columns!(),
        " FROM summaries WHERE tenant = $1 AND thread_id = $2 AND through_seq = $3"
    ))
    .bind(tenant)
    .bind(args.thread_id.as_str())
    .bind(signed(args.through_seq))
    .fetch_optional(&mut *conn)
    .await
    .map_err(sql("reading a summary"))?;
    row.map(|row| rows::summary(&row)).transpose()
}

async fn summarize_locked(tx: &mut PgConnection, args: &Summarize) -> Result<Summarized, PersistError> {
    let (tenant, thread) = (tenant_key(args.tenant()), args.thread_id.as_str());
    let deleted: Option<bool> =
        sqlx::query_scalar("SELECT deleted_at IS NOT NULL FROM threads WHERE tenant = $1 AND thread_id = $2 FOR SHARE")
            .bind(tenant)
            .bind(thread)
            .fetch_optional(&mut *tx)
            .await
            .map_err(sql("locking the thread"))?;
    match deleted {
        None => return Err(args.no_such_message()),
        Some(true) => return Err(PersistError::ThreadDeleted { thread_id: args.thread_id.clone() }),
        Some(false) => {}
    }
    if let Some(stored) = stored(tx, tenant, args).await? {
        let answer = args.against_stored(stored)?;
        if !answer.deduplicated {
            // A replacement: the same range, said in another form.
            sqlx::query(
                "UPDATE summaries SET content = $4::jsonb, metadata = $5::jsonb \
                  WHERE tenant = $1 AND thread_id = $2 AND through_seq = $3",
            )
            .bind(tenant)
            .bind(thread)
            .bind(signed(args.through_seq))
            .bind(rows::for_jsonb(answer.summary.content.as_json()))
            .bind(json_text(&answer.summary.metadata)?)
            .execute(&mut *tx)
            .await
            .map_err(sql("replacing a summary"))?;
        }
        return Ok(answer);
    }
    if args.replace {
        return Err(args.no_summary_to_replace());
    }
    // A message of the thread, or history before its oldest (what retention left); not a gap.
    let ends: bool = sqlx::query_scalar(
        "SELECT coalesce(EXISTS (SELECT 1 FROM messages WHERE tenant = $1 AND thread_id = $2 AND seq = $3) \
                         OR $3 < (SELECT min(seq) FROM messages WHERE tenant = $1 AND thread_id = $2), false)",
    )
    .bind(tenant)
    .bind(thread)
    .bind(signed(args.through_seq))
    .fetch_one(&mut *tx)
    .await
    .map_err(sql("finding a summary's last message"))?;
    if !ends {
        return Err(args.no_such_message());
    }
    let runs = runs(tx, tenant, thread, args.through_seq).await?;
    let covered = BranchWindow::new(runs, Some(args.from_seq - 1), None, false).take(u64::MAX);
    let (lows, highs): (Vec<i64>, Vec<i64>) = covered.iter().map(|&(lo, hi)| (signed(lo), signed(hi))).unzip();
    let reserved: Option<i64> = sqlx::query_scalar(
        "SELECT min(m.seq) FROM unnest($1::bigint[], $2::bigint[]) AS r(lo, hi) \
           JOIN messages m ON m.tenant = $3 AND m.thread_id = $4 AND m.seq BETWEEN r.lo AND r.hi \
          WHERE m.status = 'reserved'",
    )
    .bind(lows)
    .bind(highs)
    .bind(tenant)
    .bind(thread)
    .fetch_one(&mut *tx)
    .await
    .map_err(sql("checking a summary's range"))?;
    if let Some(seq) = reserved {
        return Err(args.reserved_in_range(u64::try_from(seq).unwrap_or_default()));
    }
    let summary = args.to_summary(Timestamp::now());
    // Two writers of the same range hold the share lock together: the second waits here for the
    // first to commit, then finds its summary.
    let inserted = sqlx::query(
        "INSERT INTO summaries (tenant, thread_id, through_seq, from_seq, content, metadata, created_at) \
         VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(thread)
    .bind(signed(summary.through_seq))
    .bind(signed(summary.from_seq))
    .bind(rows::for_jsonb(summary.content.as_json()))
    .bind(json_text(&summary.metadata)?)
    .bind(summary.created_at.as_micros())
    .execute(&mut *tx)
    .await
    .map_err(sql("writing a summary"))?;
    if inserted.rows_affected() == 0 {
        let stored = stored(tx, tenant, args).await?.ok_or_else(|| {
            PersistError::temporary("a summary of the same last message was written and removed meanwhile; retry")
        })?;
        return args.against_stored(stored);
    }
    Ok(Summarized::new(summary, false))
}

/// `Delete::covered`, inside the thread delete's transaction once the thread's row is locked
/// and its version checked: every message up to the latest summary of the active branch but the
/// active leaf; the parents of those left stay as they are (history before the thread's oldest
/// message).
pub(crate) async fn delete_covered_locked(
    tx: &mut PgConnection,
    delete: &Delete,
    active_leaf: Option<i64>,
) -> Result<Deleted, PersistError> {
    let gone = Deleted::new(delete.thread_id.clone(), Vec::new());
    let (tenant, thread) = (tenant_key(delete.context.tenant()), delete.thread_id.as_str());
    let Some(leaf) = active_leaf.and_then(|leaf| u64::try_from(leaf).ok()) else { return Ok(gone) };
    let runs = runs(tx, tenant, thread, leaf).await?;
    let Some(summary) = latest(tx, tenant, thread, leaf, &runs).await? else { return Ok(gone) };
    let removal = crate::spent::Removal::Covered { through: summary.through_seq, leaf };
    crate::spent::spend(tx, tenant, thread, removal).await?;
    let removed = sqlx::query(
        "DELETE FROM messages WHERE tenant = $1 AND thread_id = $2 AND seq <= $3 AND seq <> $4 \
         RETURNING seq, message_id",
    )
    .bind(tenant)
    .bind(thread)
    .bind(signed(summary.through_seq))
    .bind(signed(leaf))
    .fetch_all(&mut *tx)
    .await
    .map_err(sql("removing covered messages"))?;
    let ids = rows::removed_ids(&removed)?;
    if ids.is_empty() {
        return Ok(gone);
    }
    // The older summaries go with what they covered (another branch's would be read as
    // history by the branches that follow it).
    sqlx::query("DELETE FROM summaries WHERE tenant = $1 AND thread_id = $2 AND through_seq < $3")
        .bind(tenant)
        .bind(thread)
        .bind(signed(summary.through_seq))
        .execute(&mut *tx)
        .await
        .map_err(sql("removing older summaries"))?;
    sqlx::query(
        "UPDATE threads SET message_count = message_count - $3, version = version + 1, updated_at = $4 \
          WHERE tenant = $1 AND thread_id = $2",
    )
    .bind(tenant)
    .bind(thread)
    .bind(i64::try_from(ids.len()).unwrap_or(i64::MAX))
    .bind(Timestamp::now().as_micros())
    .execute(&mut *tx)
    .await
    .map_err(sql("touching the thread"))?;
    Ok(Deleted::new(delete.thread_id.clone(), ids))
}

/// Removes the summaries a truncation after `seq` reaches past, or (`None`) every summary and
/// lease of a deleted thread.
pub(crate) async fn remove_after(tx: &mut PgConnection, delete: &Delete, seq: Option<u64>) -> Result<(), PersistError> {
    let (tenant, thread) = (tenant_key(delete.context.tenant()), delete.thread_id.as_str());
    sqlx::query("DELETE FROM summaries WHERE tenant = $1 AND thread_id = $2 AND through_seq > $3")
        .bind(tenant)
        .bind(thread)
        .bind(signed(seq.unwrap_or(0)))
        .execute(&mut *tx)
        .await
        .map_err(sql("removing summaries"))?;
    if seq.is_none() {
        sqlx::query("DELETE FROM leases WHERE tenant = $1 AND thread_id = $2")
            .bind(tenant)
            .bind(thread)
            .execute(&mut *tx)
            .await
            .map_err(sql("removing leases"))?;
    }
    Ok(())
}

/// Takes, renews or gives up a lease: one statement each, so racing takers are ordered by the
/// row (the rule of [`Lease::decide`]). A take refused by a holder that gave the lease up right
/// after is tried again.
pub(crate) async fn lease(conn: &mut PgConnection, lease: &Lease) -> Result<Option<Leased>, PersistError> {
    lease.validate()?;
    let (tenant, thread) = (tenant_key(lease.tenant()), lease.thread_id.as_str());
    for _ in 0..3 {
        let now = Timestamp::now();
        let written: Option<(String, i64)> = match lease.ttl {
            Some(ttl) => sqlx::query_as(
                "INSERT INTO leases AS l (tenant, thread_id, name, holder, expires_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (tenant, thread_id, name) DO UPDATE \
                    SET holder = excluded.holder, expires_at = excluded.expires_at \
                  WHERE l.holder = excluded.holder OR l.expires_at <= $6 \
                 RETURNING holder, expires_at",
            )
            .bind(tenant)
            .bind(thread)
            .bind(&lease.name)
            .bind(&lease.holder)
            .bind(now.saturating_add(ttl).as_micros())
            .bind(now.as_micros())
            .fetch_optional(&mut *conn)
            .await
            .map_err(sql("taking a lease"))?,
            None => {
                sqlx::query(
                    "DELETE FROM leases WHERE tenant = $1 AND thread_id = $2 AND name = $3 \
                        AND (holder = $4 OR expires_at <= $5)",
                )
                .bind(tenant)
                .bind(thread)
                .bind(&lease.name)
                .bind(&lease.holder)
                .bind(now.as_micros())
                .execute(&mut *conn)
                .await
                .map_err(sql("giving up a lease"))?;
                None
            }
        };
        if let Some((holder, until)) = written {
            return Ok(Some(Leased::new(holder, Timestamp::from_micros(until))));
        }
        // Not written: someone else holds it (or, for a give-up, nobody or someone else does).
        let held: Option<(String, i64)> = sqlx::query_as(
            "SELECT holder, expires_at FROM leases WHERE tenant = $1 AND thread_id = $2 AND name = $3 \
                AND expires_at > $4",
        )
        .bind(tenant)
        .bind(thread)
        .bind(&lease.name)
        .bind(now.as_micros())
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql("reading a lease"))?;
        if held.is_some() || lease.ttl.is_none() {
            return Ok(held.map(|(holder, until)| Leased::new(holder, Timestamp::from_micros(until))));
        }
    }
    Err(PersistError::temporary("the lease kept changing hands while it was taken; retry"))
}
