//! Branches in SQL: a branch read from its last message up, a message's children, the leaves,
//! and the most recent message under one (see migration 12).
//!
//! Most messages follow the one just before them, and store no parent (`parent_seq` NULL; see
//! [`stored_parent`](persist_core::branch::stored_parent)), so a branch is a few runs of
//! consecutive seqs. A run starts at a message that stores one (a root, the first message of
//! a branch): the partial indexes of migration 12 hold only those. A branch is walked up through
//! them ([`RunWalk`]): from a seq, the nearest run start at or below it begins the run, and that
//! start's parent ends the run before. A thread written as a line is one run, whatever its length.
//!
//! A branch listing takes three statements in one read transaction, whatever the branch's
//! length: its last message, its run starts (one chunk of up to [`CHUNK`]), and the page's rows
//! from the runs it covers.

use std::collections::BTreeSet;

use persist_core::branch::{
    Branch, BranchWindow, Branches, BranchesOf, ListBranches, RunWalk, parent_from_stored, unknown_message,
};
use persist_core::read::ListMessages;
use persist_core::{Message, Order, Page, Result};
use rusqlite::Connection;

use crate::direct::{DirectReads, map};
use crate::rows::{self, message_columns, packed_id, signed, tenant_key, thread_key};

/// The messages that start a run (they store a parent) of thread `?1` of tenant `?2` with seq at
/// most `?3`, newest first, at most `?4`: a chunk of a [`RunWalk`], read from the covering
/// partial index alone. The index is named: with statistics of a thread whose messages nearly
/// all start runs, the planner could prefer the index by parent and scan it whole.
pub(crate) const RUN_STARTS: &str = concat!(
    "SELECT seq, parent_seq FROM persist_messages INDEXED BY persist_messages_run_starts WHERE thread = ",
    thread_key!("?2", "?1"),
    " AND parent_seq IS NOT NULL AND seq <= ?3 ORDER BY seq DESC LIMIT +?4"
);

/// Run starts read per statement of a walk: a branch of 1,000 messages that each start a run
/// (ten branches written a message each in turn) is walked in one.
pub(crate) const CHUNK: usize = 10_000;

/// The most recent message under seq `?3` of thread `?1` of tenant `?2` (the highest seq
/// among it and its descendants): down the next seq of each run and every run start.
pub(crate) const LATEST_UNDER: &str = concat!(
    "WITH RECURSIVE under(seq, thread) AS ( \
        SELECT ?3, ",
    thread_key!("?2", "?1"),
    " UNION ALL \
        SELECT m.seq, m.thread FROM under u CROSS JOIN persist_messages m \
            ON m.thread = u.thread AND m.seq = u.seq + 1 AND m.parent_seq IS NULL \
        UNION ALL \
        SELECT m.seq, m.thread FROM under u CROSS JOIN persist_messages m \
            ON m.thread = u.thread AND m.parent_seq = u.seq) \
    SELECT max(seq) FROM under"
);

/// The statement [`runs_sql!`] and [`run_sql!`] share: `$from` and the seqs' `$range`.
macro_rules! branch_rows_sql {
    ($from:literal, $range:literal, $order:literal $(, $($roles:tt)+)?) => {
        concat!(
            "SELECT ",
            $crate::rows::message_columns!("?2"),
            $from,
            " WHERE m.thread = ",
            $crate::rows::thread_key!("?3", "?2"),
            " AND m.seq BETWEEN ",
            $range,
            " AND (?4 OR m.status IS NOT 'reserved')",
            $($($roles)+,)?
            " ORDER BY m.seq ",
            $order,
            " LIMIT +?5"
        )
    };
}
pub(crate) use branch_rows_sql;

/// The rows of a page of a branch: the messages of the runs `?1` (a JSON array of `[lo, hi]`)
/// of thread `?2` of tenant `?3`, placeholders only with `?4`, at most `?5`, in `$order`; a
/// listing of some roles adds their condition ([`role_in!`](crate::rows::role_in), on `?6`).
macro_rules! runs_sql {
    ($order:literal $(, $($roles:tt)+)?) => {
        $crate::branches::branch_rows_sql!(
            " FROM json_each(?1) r CROSS JOIN persist_messages m",
            "r.value ->> 0 AND r.value ->> 1",
            $order
            $(, $($roles)+)?
        )
    };
}
pub(crate) use runs_sql;

/// [`runs_sql!`] for one run, from seq `?1` to seq `?7` (`?6` bound, unused, without roles):
/// read in the index's order, where the rows of several runs are sorted first (a temporary
/// B-tree of whole rows), which is most of a page's cost when a thread never branched.
macro_rules! run_sql {
    ($order:literal $(, $($roles:tt)+)?) => {
        $crate::branches::branch_rows_sql!(" FROM persist_messages m", "?1 AND ?7", $order $(, $($roles)+)?)
    };
}

/// The children of seq `?3` (`NULL`: the roots) of thread `?1` of tenant `?2`, by seq: the
/// message just after it when that stores no parent, and those that store it (the roots: seq 1
/// when it stores none, and those that store 0).
const CHILDREN: &str = concat!(
    "SELECT ",
    message_columns!("?1"),
    " FROM persist_messages WHERE thread = ",
    thread_key!("?2", "?1"),
    " AND seq = coalesce(?3, 0) + 1 AND parent_seq IS NULL \
     UNION ALL SELECT ",
    message_columns!("?1"),
    " FROM persist_messages WHERE thread = ",
    thread_key!("?2", "?1"),
    " AND parent_seq = coalesce(?3, 0) ORDER BY seq"
);

/// The leaves of thread `?1` of tenant `?2` (messages no message follows), by seq.
const LEAVES: &str = concat!(
    "SELECT ",
    message_columns!("?1"),
    " FROM persist_messages m WHERE thread = ",
    thread_key!("?2", "?1"),
    " \
        AND NOT EXISTS (SELECT 1 FROM persist_messages c WHERE c.thread = m.thread \
                           AND c.seq = m.seq + 1 AND c.parent_seq IS NULL) \
        AND NOT EXISTS (SELECT 1 FROM persist_messages c WHERE c.thread = m.thread \
                           AND c.parent_seq = m.seq) \
      ORDER BY seq"
);

/// The runs of the branch of `thread`/`tenant` ending at `leaf`, ascending (see [`RunWalk`]).
pub(crate) fn runs(conn: &Connection, thread: &str, tenant: &str, leaf: u64) -> Result<Vec<(u64, u64)>> {
    let context = "walking a branch";
    let mut statement = conn.prepare_cached(RUN_STARTS).map_err(|e| map(context, e))?;
    let mut walk = RunWalk::new(leaf);
    while let Some(at) = walk.wants() {
        let mut found = statement.query((thread, tenant, signed(at), CHUNK as i64)).map_err(|e| map(context, e))?;
        let mut chunk = Vec::new();
        while let Some(row) = found.next().map_err(|e| map(context, e))? {
            let (seq, stored): (i64, i64) =
                (row.get(0).map_err(|e| map(context, e))?, row.get(1).map_err(|e| map(context, e))?);
            let unsigned = |n: i64| u64::try_from(n).map_err(|_| crate::error::corrupt(format!("seq {n}")));
            chunk.push((unsigned(seq)?, Some(unsigned(stored)?)));
        }
        walk.feed(&chunk, chunk.len() < CHUNK);
    }
    Ok(walk.runs())
}

/// The active leaf of `thread`/`tenant` (none without messages).
pub(crate) fn active_leaf(conn: &Connection, thread: &str, tenant: &str) -> Result<Option<u64>> {
    let context = "reading the active leaf";
    let leaf: Option<i64> = conn
        .prepare_cached("SELECT active_leaf FROM threads WHERE tenant = ?2 AND thread_id = ?1")
        .and_then(|mut statement| {
            let mut rows = statement.query((thread, tenant))?;
            Ok(match rows.next()? {
                Some(row) => row.get(0)?,
                None => None,
            })
        })
        .map_err(|e| map(context, e))?;
    Ok(leaf.and_then(|leaf| u64::try_from(leaf).ok()))
}

/// The seqs of the active branch of `thread`/`tenant` (empty without messages).
fn active_path(conn: &Connection, thread: &str, tenant: &str) -> Result<BTreeSet<u64>> {
    let Some(leaf) = active_leaf(conn, thread, tenant)? else { return Ok(BTreeSet::new()) };
    Ok(runs(conn, thread, tenant, leaf)?.into_iter().flat_map(|(lo, hi)| lo..=hi).collect())
}

/// The seq of message `id` of `thread`/`tenant`, if it has one.
pub(crate) fn seq_of(conn: &Connection, thread: &str, tenant: &str, id: &str) -> Result<Option<(u64, Option<u64>)>> {
    let context = "finding a message";
    let mut statement = conn
        .prepare_cached(concat!(
            "SELECT seq, parent_seq FROM persist_messages WHERE thread = ",
            thread_key!("?2", "?1"),
            " AND message_id = ",
            packed_id!("?3")
        ))
        .map_err(|e| map(context, e))?;
    let mut found = statement.query((thread, tenant, id)).map_err(|e| map(context, e))?;
    match found.next().map_err(|e| map(context, e))? {
        Some(row) => {
            let seq: i64 = row.get(0).map_err(|e| map(context, e))?;
            let stored: Option<i64> = row.get(1).map_err(|e| map(context, e))?;
            let seq = seq as u64;
            Ok(Some((seq, parent_from_stored(seq, stored.map(|p| p as u64)))))
        }
        None => Ok(None),
    }
}

impl DirectReads {
    /// A page of a branch (see the [module docs](self)).
    pub(crate) fn list_branch(&self, query: &ListMessages, branch: &Branch) -> Result<Page<Message>> {
        query.validate()?;
        let (thread, tenant) = (query.thread_id.as_str(), tenant_key(query.tenant()));
        let fetch = u64::from(query.fetch_limit());
        let items = self.with(|conn| {
            let read = conn.unchecked_transaction().map_err(|e| map("listing a branch", e))?;
            let leaf = match branch {
                Branch::EndingAt(id) => match seq_of(&read, thread, tenant, id.as_str())? {
                    Some((seq, _)) => Some(seq),
                    None => return Err(unknown_message(&query.thread_id, id)),
                },
                _ => active_leaf(&read, thread, tenant)?,
            };
            let Some(leaf) = leaf else { return Ok(Vec::new()) };
            let runs = runs(&read, thread, tenant, leaf)?;
            let mut window = BranchWindow::new(runs, query.after, query.before, query.order == Order::Desc);
            let roles = rows::role_names(query);
            let desc = query.order == Order::Desc;
            let mut items = Vec::with_capacity(fetch as usize);
            let mut span = fetch;
            // Usually once; again when placeholders or other roles left out leave the page
            // short, over twice as many seqs each time (a few messages of some roles in a long
            // branch take a few statements, not one per page's worth of seqs).
            while (items.len() as u64) < fetch && !window.is_empty() {
                let wanted = fetch - items.len() as u64;
                let picked = window.take(if roles.is_some() { span } else { wanted });
                span = span.saturating_mul(2);
                let (include, limit) = (query.include_reserved, signed(wanted));
                let mut statement = match (&picked[..], desc, roles.is_some()) {
                    ([_], false, false) => read.prepare_cached(run_sql!("ASC")),
                    ([_], true, false) => read.prepare_cached(run_sql!("DESC")),
                    ([_], false, true) => read.prepare_cached(run_sql!("ASC", rows::role_in!("m.role", "?6"))),
                    ([_], true, true) => read.prepare_cached(run_sql!("DESC", rows::role_in!("m.role", "?6"))),
                    (_, false, false) => read.prepare_cached(runs_sql!("ASC")),
                    (_, true, false) => read.prepare_cached(runs_sql!("DESC")),
                    (_, false, true) => read.prepare_cached(runs_sql!("ASC", rows::role_in!("m.role", "?6"))),
                    (_, true, true) => read.prepare_cached(runs_sql!("DESC", rows::role_in!("m.role", "?6"))),
                }
                .map_err(|e| map("listing a branch", e))?;
                let roles = roles.as_deref();
                let reader = rows::MessageReader::of(&statement);
                let found = match picked[..] {
                    [(lo, hi)] => statement.query((signed(lo), thread, tenant, include, limit, roles, signed(hi))),
                    _ => {
                        let json = serde_json::to_string(&picked).map_err(|e| crate::error::corrupt(e.to_string()))?;
                        match roles {
                            None => statement.query((json, thread, tenant, include, limit)),
                            Some(roles) => statement.query((json, thread, tenant, include, limit, roles)),
                        }
                    }
                };
                let mut found = found.map_err(|e| map("listing a branch", e))?;
                while let Some(row) = found.next().map_err(|e| map("listing a branch", e))? {
                    items.push(reader.message(row)?);
                }
            }
            Ok(items)
        })?;
        Ok(query.page(items))
    }

    /// A message's siblings or a thread's leaves, with the one on the active branch.
    pub(crate) fn branches(&self, query: &ListBranches) -> Result<Branches> {
        let (thread, tenant) = (query.thread_id.as_str(), tenant_key(query.tenant()));
        self.with(|conn| {
            let read = conn.unchecked_transaction().map_err(|e| map("reading branches", e))?;
            let (sql, parent) = match &query.of {
                BranchesOf::Siblings(id) => match seq_of(&read, thread, tenant, id.as_str())? {
                    Some((_, parent)) => (CHILDREN, parent.map(signed)),
                    None => return Err(unknown_message(&query.thread_id, id)),
                },
                _ => (LEAVES, None),
            };
            let mut statement = read.prepare_cached(sql).map_err(|e| map("reading branches", e))?;
            let mut found = match &query.of {
                BranchesOf::Siblings(_) => statement.query(rusqlite::params![thread, tenant, parent]),
                _ => statement.query(rusqlite::params![thread, tenant]),
            }
            .map_err(|e| map("reading branches", e))?;
            let mut items = Vec::new();
            while let Some(row) = found.next().map_err(|e| map("reading branches", e))? {
                items.push(rows::message(row)?);
            }
            drop(found);
            let path = active_path(&read, thread, tenant)?;
            Ok(Branches::on_path(items, &path))
        })
    }
}
