//! Statements that change a schema while instances run on it: indexes built concurrently, and
//! the advisory locks under which one instance at a time does work of the schema's (a
//! migration's background work, the search configuration).

use sqlx::{AssertSqlSafe, PgConnection};

use crate::error::map_sqlx;

use persist_core::Result;

/// Builds an index the instances that migrate make themselves: `definition` is what follows
/// `CREATE INDEX [CONCURRENTLY]` (`IF NOT EXISTS name ON table …`). Concurrently when `table`
/// holds rows (writes go on while it is built); on an empty table (a new store) at once, under
/// a lock nobody waits for long: a build `CONCURRENTLY` waits for every older snapshot of the
/// database, whoever holds it (an idle transaction of another application would hold it up).
pub(crate) async fn create_index(conn: &mut PgConnection, table: &'static str, definition: &str) -> Result<()> {
    let map = |e| map_sqlx("building an index", e);
    // Names and definitions are this crate's constants (and a configuration's oid).
    let empty: bool = sqlx::query_scalar(AssertSqlSafe(format!("SELECT NOT EXISTS (SELECT 1 FROM {table})")))
        .fetch_one(&mut *conn)
        .await
        .map_err(map)?;
    let how = if empty { "" } else { "CONCURRENTLY " };
    sqlx::query(AssertSqlSafe(format!("CREATE INDEX {how}{definition}"))).execute(&mut *conn).await.map_err(map)?;
    Ok(())
}

/// Takes the session-level advisory lock named `name` in the schema the connection's
/// `search_path` names (`name` and the schema hashed together), waiting as long as it takes.
///
/// It polls `pg_try_advisory_lock` (every 50 ms) instead of waiting inside `pg_advisory_lock`:
/// a session waiting in a statement holds a snapshot meanwhile, and the lock's holder building
/// an index `CONCURRENTLY` waits for every older snapshot: each would wait for the other, and
/// the server would end one of them as a deadlock.
pub(crate) async fn advisory_lock(conn: &mut PgConnection, name: &str) -> Result<()> {
    loop {
        let taken: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1 || ':' || current_schema(), 0))")
                .bind(name)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| map_sqlx("taking a schema lock", e))?;
        if taken {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Releases the lock [`advisory_lock`] took.
pub(crate) async fn advisory_unlock(conn: &mut PgConnection, name: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1 || ':' || current_schema(), 0))")
        .bind(name)
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(|e| map_sqlx("releasing a schema lock", e))
}
