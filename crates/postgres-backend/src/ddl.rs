//! Statements that change a schema while instances run on it: indexes built concurrently, and
//! the advisory locks under which one instance at a time does work of the schema's (a
//! migration's background work, the search configuration).
//!
//! Each adapts to a connection already in a transaction (behind a transaction pooler, every
//! operation is one, see [`crate::pool`]): indexes are then built and dropped without
//! `CONCURRENTLY` (which no transaction may run), locks are the transaction's, time-outs are
//! lifted for the transaction only, and a statement whose failure is expected runs in a
//! savepoint, so the transaction goes on after it.

use sqlx::{AssertSqlSafe, Connection, PgConnection};

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
    let how = if empty || conn.is_in_transaction() { "" } else { "CONCURRENTLY " };
    sqlx::query(AssertSqlSafe(format!("CREATE INDEX {how}{definition}"))).execute(&mut *conn).await.map_err(map)?;
    Ok(())
}

/// Drops the index `name` if it exists: concurrently, unless in a transaction.
pub(crate) async fn drop_index(conn: &mut PgConnection, name: &str) -> Result<()> {
    let how = if conn.is_in_transaction() { "" } else { "CONCURRENTLY " };
    sqlx::query(AssertSqlSafe(format!("DROP INDEX {how}IF EXISTS {name}")))
        .execute(&mut *conn)
        .await
        .map_err(|e| map_sqlx("dropping an index", e))?;
    Ok(())
}

/// Lifts the connection's lock and statement time-outs, for work that may wait on other
/// sessions' locks or run long (a migration, an index build): for the transaction when in
/// one, else until [`restore_timeouts`].
pub(crate) async fn lift_timeouts(conn: &mut PgConnection) -> Result<()> {
    let sql = if conn.is_in_transaction() {
        "SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0"
    } else {
        "SET lock_timeout = 0; SET statement_timeout = 0"
    };
    sqlx::raw_sql(sql).execute(&mut *conn).await.map(drop).map_err(|e| map_sqlx("lifting the time-outs", e))
}

/// Back to the time-outs the connection was opened with (in a transaction, they come back
/// with its end).
pub(crate) async fn restore_timeouts(conn: &mut PgConnection) -> Result<()> {
    if conn.is_in_transaction() {
        return Ok(());
    }
    sqlx::raw_sql("RESET lock_timeout; RESET statement_timeout")
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(|e| map_sqlx("restoring the time-outs", e))
}

/// Runs `work` without the connection's time-outs and under the schema's advisory lock `name`
/// (instances connecting together take turns): what an instance does to the schema's indexes
/// as it connects. The lock is released and the time-outs restored however `work` ends.
pub(crate) async fn under_schema_lock<T>(
    conn: &mut PgConnection,
    name: &str,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T>,
) -> Result<T> {
    lift_timeouts(conn).await?;
    let done = async {
        advisory_lock(conn, name).await?;
        let done = work(conn).await;
        let unlocked = advisory_unlock(conn, name).await;
        done.and_then(|answer| unlocked.map(|()| answer))
    }
    .await;
    let restored = restore_timeouts(conn).await;
    done.and_then(|answer| restored.map(|()| answer))
}

/// Runs one statement whose failure the caller handles: in a transaction, inside a savepoint,
/// so that the transaction survives the failure; else as it is (a failed statement ends
/// alone, and a savepoint would cost two round trips).
pub(crate) async fn attempt<T>(
    conn: &mut PgConnection,
    statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    if !conn.is_in_transaction() {
        return statement(conn).await;
    }
    let mut savepoint = conn.begin().await?;
    match statement(&mut *savepoint).await {
        Ok(answer) => {
            savepoint.commit().await?;
            Ok(answer)
        }
        Err(error) => {
            savepoint.rollback().await?;
            Err(error)
        }
    }
}

/// Takes the advisory lock named `name` in the schema the connection's `search_path` names
/// (`name` and the schema hashed together), waiting as long as it takes: the session's,
/// released by [`advisory_unlock`]; in a transaction, the transaction's, released when it
/// ends.
///
/// It polls `pg_try_advisory_lock` (every 50 ms) instead of waiting inside `pg_advisory_lock`:
/// a session waiting in a statement holds a snapshot meanwhile, and the lock's holder building
/// an index `CONCURRENTLY` waits for every older snapshot: each would wait for the other, and
/// the server would end one of them as a deadlock.
pub(crate) async fn advisory_lock(conn: &mut PgConnection, name: &str) -> Result<()> {
    let sql = if conn.is_in_transaction() {
        "SELECT pg_try_advisory_xact_lock(hashtextextended($1 || ':' || current_schema(), 0))"
    } else {
        "SELECT pg_try_advisory_lock(hashtextextended($1 || ':' || current_schema(), 0))"
    };
    loop {
        let taken: bool = sqlx::query_scalar(sql)
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

/// Releases the lock [`advisory_lock`] took (in a transaction, its end does).
pub(crate) async fn advisory_unlock(conn: &mut PgConnection, name: &str) -> Result<()> {
    if conn.is_in_transaction() {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1 || ':' || current_schema(), 0))")
        .bind(name)
        .execute(&mut *conn)
        .await
        .map(drop)
        .map_err(|e| map_sqlx("releasing a schema lock", e))
}
