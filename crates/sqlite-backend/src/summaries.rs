//! Summaries read on the caller's thread (see `direct`): a thread's summaries, and the compacted
//! read: the branch's runs (see [`branches`](crate::branches)), its latest summary, and the
//! rows after it, in one read transaction: four statements whatever the thread's length.

use persist_core::branch::{Branch, BranchWindow, unknown_message};
use persist_core::summary::{Compacted, ListSummaries, ReadCompacted, Summary, on_runs};
use persist_core::{Page, Result};
use rusqlite::Connection;

use crate::branches::{active_leaf, runs, runs_sql, seq_of};
use crate::direct::{DirectReads, map};
use crate::rows::{self, signed, summary_columns, tenant_key};

/// The summaries of thread `?1` of tenant `?2` ending at or before seq `?3`, newest first: the
/// compacted read takes the first whose last message is on its branch.
const LATEST_FIRST: &str = concat!(
    "SELECT ",
    summary_columns!(),
    " FROM summaries WHERE tenant = ?2 AND thread_id = ?1 AND through_seq <= ?3 ORDER BY through_seq DESC"
);

/// A page of the summaries of thread `?1` of tenant `?2` ending after seq `?3`, at most `?4`.
const PAGE: &str = concat!(
    "SELECT ",
    summary_columns!(),
    " FROM summaries WHERE tenant = ?2 AND thread_id = ?1 AND through_seq > ?3 ORDER BY through_seq LIMIT +?4"
);

/// The latest summary of the branch made of `runs` (its last message on them), if any.
fn latest(conn: &Connection, thread: &str, tenant: &str, leaf: u64, runs: &[(u64, u64)]) -> Result<Option<Summary>> {
    let context = "reading the latest summary";
    let mut statement = conn.prepare_cached(LATEST_FIRST).map_err(|e| map(context, e))?;
    let mut found = statement.query((thread, tenant, signed(leaf))).map_err(|e| map(context, e))?;
    while let Some(row) = found.next().map_err(|e| map(context, e))? {
        let through: i64 = row.get("through_seq").map_err(|e| map(context, e))?;
        if u64::try_from(through).is_ok_and(|through| on_runs(through, runs)) {
            return rows::summary(row).map(Some);
        }
    }
    Ok(None)
}

impl DirectReads {
    /// A page of a thread's summaries.
    pub(crate) fn summaries(&self, query: &ListSummaries) -> Result<Page<Summary>> {
        query.validate()?;
        let (thread, tenant) = (query.thread_id.as_str(), tenant_key(query.tenant()));
        let after = signed(query.after.unwrap_or(0));
        let items = self.with(|conn| {
            let context = "listing summaries";
            let mut statement = conn.prepare_cached(PAGE).map_err(|e| map(context, e))?;
            let mut found =
                statement.query((thread, tenant, after, i64::from(query.limit) + 1)).map_err(|e| map(context, e))?;
            let mut items = Vec::new();
            while let Some(row) = found.next().map_err(|e| map(context, e))? {
                items.push(rows::summary(row)?);
            }
            Ok(items)
        })?;
        Ok(query.page(items))
    }

    /// The latest summary of a branch and the messages after it (see [`ReadCompacted`]).
    pub(crate) fn compacted(&self, query: &ReadCompacted) -> Result<Compacted> {
        let (thread, tenant) = (query.thread_id.as_str(), tenant_key(query.tenant()));
        self.with(|conn| {
            let context = "reading a thread compacted";
            let read = conn.unchecked_transaction().map_err(|e| map(context, e))?;
            let leaf = match &query.branch {
                Branch::EndingAt(id) => match seq_of(&read, thread, tenant, id.as_str())? {
                    Some((seq, _)) => Some(seq),
                    None => return Err(unknown_message(&query.thread_id, id)),
                },
                _ => active_leaf(&read, thread, tenant)?,
            };
            let Some(leaf) = leaf else { return Ok(Compacted::default()) };
            let runs = runs(&read, thread, tenant, leaf)?;
            let summary = latest(&read, thread, tenant, leaf, &runs)?;
            let after = summary.as_ref().map(|s| s.through_seq);
            let mut window = BranchWindow::new(runs, after, None, false);
            let picked = window.take(u64::MAX);
            let json = serde_json::to_string(&picked).map_err(|e| crate::error::corrupt(e.to_string()))?;
            let mut statement = read.prepare_cached(runs_sql!("ASC")).map_err(|e| map(context, e))?;
            let mut found =
                statement.query((json, thread, tenant, query.include_reserved, -1i64)).map_err(|e| map(context, e))?;
            let mut messages = Vec::new();
            while let Some(row) = found.next().map_err(|e| map(context, e))? {
                messages.push(rows::message(row)?);
            }
            Ok(Compacted::new(summary, messages))
        })
    }
}
