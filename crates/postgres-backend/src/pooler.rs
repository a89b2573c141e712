//! Connection poolers in front of the server: which kind the store goes through ([`Pooler`]),
//! found when connecting unless configured, and the settings every connection needs, carried
//! as the kind allows (see [Poolers](crate#poolers)).
//!
//! A direct connection (or one through a pooler in session mode) is a server session of its
//! own: its settings are given once, as startup options, and its statements are prepared once.
//! Through a pooler in transaction mode (PgBouncer's `pool_mode = transaction`, Supabase's and
//! Neon's poolers) a server session is the client's only for one transaction: startup options
//! are refused (PgBouncer: `unsupported startup parameter: options`) or, when the pooler is
//! told to ignore them, silently lost, and a statement prepared in one server session is
//! looked for in another. So there each operation is one transaction that sets what it needs
//! (`SET LOCAL`) and keeps no statement.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use persist_core::{PersistError, Result};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::error::map_connect;
use crate::pool::Sessions;

/// The kind of connection pooler between this store and the server (see
/// [`PostgresBackendBuilder::pooler`](crate::PostgresBackendBuilder::pooler)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Pooler {
    /// Found when connecting (the default): the first connection is opened with the settings
    /// as startup options; when the server side refuses them or does not apply them (a
    /// transaction pooler, or a pooler told to ignore them), the store works as through
    /// [`Transaction`](Self::Transaction), else as with [`None`](Self::None).
    #[default]
    Detect,
    /// No pooler, or one in session mode: each connection is a server session of its own.
    None,
    /// A pooler in transaction mode: each operation is one transaction that sets what it
    /// needs, statements are parsed at each execution, the change feed is woken through
    /// [`listen_url`](crate::PostgresBackendBuilder::listen_url) or by polling, and indexes
    /// are built without `CONCURRENTLY`.
    Transaction,
}

impl Pooler {
    /// The name a URL's `pooler=` gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Detect => "detect",
            Self::None => "none",
            Self::Transaction => "transaction",
        }
    }
}

impl fmt::Display for Pooler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Pooler {
    type Err = PersistError;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "detect" => Ok(Self::Detect),
            "none" => Ok(Self::None),
            "transaction" => Ok(Self::Transaction),
            _ => Err(PersistError::invalid("pooler", "one of detect, none, transaction")),
        }
    }
}

/// The settings every connection of a store needs, whichever way they are carried.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) schema: String,
    pub(crate) lock_timeout: Duration,
    pub(crate) statement_timeout: Duration,
    pub(crate) key_retention: Duration,
}

impl Settings {
    /// The settings as (name, value) pairs.
    ///
    /// Each execution is planned with its own values (a custom plan). A plan cached per
    /// connection (generic) would halve the server's time per add (≈ 0.2 ms to plan, ≈ 0.2 ms to
    /// run; 32 clients inserted ≈ 2 100/s with custom plans against ≈ 4 100/s with the generic
    /// one, pgbench on this machine), but it is planned once, with the statistics of that
    /// moment: on a fresh database (tables never analyzed) the planner looked messages up by
    /// `(thread_id, seq)` and filtered on the id, so each add scanned its whole thread and
    /// slowed as threads grew (≈ 1 000/s to ≈ 300/s over 15 000 adds) until the next ANALYZE.
    fn pairs(&self) -> [(&'static str, String); 5] {
        [
            ("search_path", self.schema.clone()),
            ("plan_cache_mode", "force_custom_plan".to_owned()),
            ("lock_timeout", millis(self.lock_timeout)),
            ("statement_timeout", millis(self.statement_timeout)),
            ("persist.key_retention", self.key_retention_setting()),
        ]
    }

    /// `persist.key_retention` as set (microseconds), capped far past any store's life
    /// (146,000 years), so a time plus it never overflows a bigint.
    fn key_retention_setting(&self) -> String {
        self.key_retention.as_micros().min((i64::MAX / 2) as u128).to_string()
    }

    /// `options` carrying the settings from the connection's start (a direct session).
    pub(crate) fn direct(&self, options: PgConnectOptions) -> PgConnectOptions {
        options.options(self.pairs())
    }

    /// `options` for a transaction pooler: no startup option, no statement kept.
    pub(crate) fn pooled(options: PgConnectOptions) -> PgConnectOptions {
        options.statement_cache_capacity(0)
    }

    /// How each operation begins behind a transaction pooler: `BEGIN`, the server session's
    /// prepared statements dropped, and the settings, for that transaction (one round trip, no
    /// query: a snapshot read may still choose its isolation).
    ///
    /// sqlx names the statements it prepares (`sqlx_s_1`, …) even with no statement kept, and
    /// leaves them on the server session; through a pooler the next transaction on that
    /// session may be another client's, whose own `sqlx_s_1` would collide
    /// (`prepared statement "sqlx_s_1" already exists`). Dropped first, none is left to
    /// collide with: within the transaction the session is this client's alone.
    ///
    /// `DEALLOCATE` takes a snapshot: a transaction that is to be one snapshot
    /// (`REPEATABLE READ`) says so in its `BEGIN` (`isolation`).
    fn begin(&self, isolation: &str) -> String {
        // Every value is this crate's: a schema name checked against [a-z_][a-z0-9_]*, and
        // numbers.
        let mut begin = format!("BEGIN{isolation}; DEALLOCATE ALL");
        for (name, value) in self.pairs() {
            begin.push_str(&format!("; SET LOCAL {name} = '{value}'"));
        }
        begin
    }

    /// The sessions of the pool for `pooler` (resolved: not [`Pooler::Detect`]).
    pub(crate) fn sessions(&self, pooler: Pooler) -> Sessions {
        match pooler {
            Pooler::Transaction => {
                Sessions::Pooled { begin: self.begin(""), snapshot: self.begin(" ISOLATION LEVEL REPEATABLE READ") }
            }
            _ => Sessions::Direct,
        }
    }
}

/// Finds which kind of pooler is in front, with one connection opened with `direct` (the
/// settings as startup options): answers it, and the connection when it is fit for the pool.
///
/// # Errors
///
/// As connecting does: `Temporary` when the server cannot be reached.
pub(crate) async fn detect(direct: &PgConnectOptions, settings: &Settings) -> Result<(Pooler, Option<PgConnection>)> {
    let mut conn = match direct.connect().await {
        Ok(conn) => conn,
        // PgBouncer refuses a startup parameter it was not told to ignore (08P01).
        Err(sqlx::Error::Database(db)) if db.message().contains("unsupported startup parameter") => {
            return Ok((Pooler::Transaction, None));
        }
        Err(error) => {
            let place = format!("{}:{}", direct.get_host(), direct.get_port());
            return Err(map_connect(&format!("{place}, database {}", direct.get_database().unwrap_or("")), error));
        }
    };
    // A pooler told to ignore `options` passes the connection on without them.
    let retention: Option<String> = sqlx::query_scalar("SELECT current_setting('persist.key_retention', true)")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| crate::error::map_sqlx("reading the connection's settings", e))?;
    if retention.as_deref() == Some(settings.key_retention_setting().as_str()) {
        Ok((Pooler::None, Some(conn)))
    } else {
        let _ = conn.close().await;
        Ok((Pooler::Transaction, None))
    }
}

/// A duration as PostgreSQL's setting text, in milliseconds (`0` disables).
fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}
