//! Checking a database: SQLite's own structure checks, and persist's bookkeeping.

use persist_core::Result;
use sqlx::SqliteConnection;

use crate::error::map_sqlx;

/// What [`SqliteBackend::check`](crate::SqliteBackend::check) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// What SQLite's `integrity_check` reported wrong with the file (damaged pages, indexes
    /// out of step with their tables), in its words.
    pub structure: Vec<String>,
    /// Threads whose counters disagree with their messages, each described in words.
    pub counters: Vec<String>,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.structure.is_empty() && self.counters.is_empty()
    }
}

/// SQLite's `quick_check` (every page read, indexes not compared with their tables): the
/// problems it reports, none when the file is sound.
pub(crate) async fn quick(conn: &mut SqliteConnection) -> Result<Vec<String>> {
    structure(conn, "PRAGMA quick_check").await
}

/// The full check: `integrity_check`, then the counters of every thread.
pub(crate) async fn full(conn: &mut SqliteConnection) -> Result<CheckReport> {
    let structure = structure(conn, "PRAGMA integrity_check").await?;
    let rows: Vec<(String, i64, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT CASE t.tenant WHEN '' THEN t.thread_id ELSE t.thread_id || ' of tenant ' || t.tenant END, \
                t.message_count, t.last_seq, count(m.seq), max(m.seq) \
           FROM threads t LEFT JOIN persist_messages m ON m.thread = t.key \
          GROUP BY t.tenant, t.thread_id \
         HAVING t.message_count != count(m.seq) OR t.last_seq < coalesce(max(m.seq), 0) \
          ORDER BY t.tenant, t.thread_id",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| map_sqlx("checking thread counters", e))?;
    let counters = rows
        .into_iter()
        .map(|(thread, count, last_seq, messages, highest)| {
            format!(
                "thread {thread}: message_count {count} but {messages} messages, last_seq {last_seq} \
                 with the highest seq {}",
                highest.unwrap_or(0)
            )
        })
        .collect();
    Ok(CheckReport { structure, counters })
}

async fn structure(conn: &mut SqliteConnection, pragma: &'static str) -> Result<Vec<String>> {
    let lines: Vec<String> =
        sqlx::query_scalar(pragma).fetch_all(&mut *conn).await.map_err(|e| map_sqlx("checking the file", e))?;
    Ok(lines.into_iter().filter(|line| line != "ok").collect())
}
