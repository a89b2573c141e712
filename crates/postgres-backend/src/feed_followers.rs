//! Whether anyone follows a schema's change feed: what decides who numbers a writer's events
//! (the feed module says how).

use std::time::Duration;

use persist_core::Result;
use sqlx::PgConnection;
use sqlx::postgres::PgListener;

use crate::error::map_sqlx;

/// How long an instance trusts what it read of whether any instance follows the schema's
/// feed (see [`Followers`]).
pub(crate) const FOLLOWED_FRESH: Duration = Duration::from_millis(100);

/// Whether anyone follows a schema's feed, for its writers: an instance whose subscribers wait
/// holds a shared advisory lock, named for the schema, on the connection it listens on (its
/// session: released when it closes or dies), and a writer reads `pg_locks` for it (at most
/// every [`FOLLOWED_FRESH`]). Followed, a writer numbers its events before it announces them,
/// in one round trip with the notification, so a listener reads them at once; nobody
/// following, it announces them unnumbered (`<schema> pending`) and leaves the numbering to
/// whoever reads them next: numbering every burst of a writer nobody followed cost one caller's
/// adds 0.78 against 0.90–0.94 of the same statement by hand (28 Nov 2026).
pub(crate) struct Followers {
    /// The lock's name (its key is `hashtextextended(name, 0)`).
    name: String,
}

impl Followers {
    pub(crate) fn of(schema: &str) -> Self {
        Self { name: format!("persist_feed_followers:{schema}") }
    }

    /// Whether an instance holds the lock.
    pub(crate) async fn any(&self, conn: &mut PgConnection) -> Result<bool> {
        // A bigint key shows as its high half in `classid` and its low half in `objid`.
        sqlx::query_scalar(
            "WITH k AS (SELECT hashtextextended($1, 0) AS key)              SELECT EXISTS (SELECT 1 FROM pg_locks l, k                              WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted                                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())                                AND l.classid = ((k.key >> 32) & 4294967295)::oid                                AND l.objid = (k.key & 4294967295)::oid)",
        )
        .bind(&self.name)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| map_sqlx("reading whether the change feed is followed", e))
    }

    /// Takes (`follow`) or releases the lock on the listening connection.
    pub(crate) async fn hold(&self, listener: &mut PgListener, follow: bool) -> Result<()> {
        let sql = if follow {
            "SELECT pg_advisory_lock_shared(hashtextextended($1, 0))::text"
        } else {
            "SELECT pg_advisory_unlock_shared(hashtextextended($1, 0))::text"
        };
        sqlx::query(sql)
            .bind(&self.name)
            .execute(&mut *listener)
            .await
            .map_err(|e| map_sqlx("telling the writers that the change feed is followed", e))?;
        Ok(())
    }
}
