//! Where a store lives: the schema a URL names (`schema=`, split off before the driver reads
//! the URL), the rules for its name, and its creation and migration.

use persist_core::{PersistError, Result};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use persist_core::schema::SchemaStatus;

use crate::activity;
use crate::error::{map_migrate, map_sqlx};
use crate::migrations::{MIGRATOR, MIGRATOR_IN_TRANSACTION};
use crate::pooler::Pooler;

/// The parameters a URL's query string may hold besides `schema=`: those the driver reads.
const URL_PARAMETERS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// The parameters of a store URL that are persist's, not the driver's.
#[derive(Debug, Default)]
pub(crate) struct StoreParameters {
    /// `schema=NAME`.
    pub(crate) schema: Option<String>,
    /// `pooler=detect|none|transaction`.
    pub(crate) pooler: Option<Pooler>,
    /// `listen_url=URL` (percent-encoded): the feed's direct connection behind a pooler.
    pub(crate) listen_url: Option<String>,
}

/// Splits persist's own parameters (`schema=`, `pooler=`, `listen_url=`) off a URL's query
/// string; refuses a parameter nobody reads (the driver would ignore it: a typo would silently
/// connect somewhere else than meant). The query starts at the first `?` after the user and
/// password, and a `#fragment` is no part of it. A refusal never repeats text of the URL that
/// could be part of a password.
pub(crate) fn split_url(url: &str) -> Result<(String, StoreParameters)> {
    let url = url.split_once('#').map_or(url, |(url, _)| url);
    let authority = url.rfind('@').map_or_else(|| url.find("://").map_or(0, |at| at + 3), |at| at + 1);
    let mut parameters = StoreParameters::default();
    let Some(at) = url[authority..].find('?').map(|at| authority + at) else {
        return Ok((url.to_owned(), parameters));
    };
    let (base, query) = (&url[..at], &url[at + 1..]);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "schema" => parameters.schema = Some(value.to_owned()),
            "pooler" => parameters.pooler = Some(value.parse()?),
            "listen_url" => parameters.listen_url = Some(percent_decoded(value)?),
            // `options[NAME]=VALUE` sets one server option, as the driver reads it.
            _ if URL_PARAMETERS.contains(&key) || key.starts_with("options[") => kept.push(pair),
            _ => {
                let plain = key.len() <= 32 && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                let named = if plain { format!(" {key:?}") } else { String::new() };
                return Err(PersistError::invalid(
                    "url",
                    format!(
                        "an unknown parameter{named} (known: schema, pooler, listen_url, {})",
                        URL_PARAMETERS.join(", ")
                    ),
                ));
            }
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, parameters))
}

/// `value` with its `%XX` escapes decoded (a URL inside a URL's query string).
fn percent_decoded(value: &str) -> Result<String> {
    let invalid = || PersistError::invalid("url", "listen_url is not a percent-encoded URL");
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = value.get(at + 1..at + 3).ok_or_else(invalid)?;
            decoded.push(u8::from_str_radix(hex, 16).map_err(|_| invalid())?);
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| invalid())
}

/// Creates the schema if it is missing and applies the migrations it lacks.
pub(crate) async fn prepare_schema(conn: &mut PgConnection, schema: &str) -> Result<()> {
    // The only SQL built from text: a schema name checked against [a-z_][a-z0-9_]*.
    let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
    match crate::ddl::attempt(conn, async |conn| sqlx::query(AssertSqlSafe(create)).execute(conn).await).await {
        Ok(_) => {}
        // Another instance created it at the same moment.
        Err(sqlx::Error::Database(db)) if matches!(db.code().as_deref(), Some("23505" | "42P06")) => {}
        Err(e) => return Err(map_sqlx("creating the schema", e)),
    }
    // A migration may rewrite a table and wait for other sessions' locks: no time-outs for it.
    crate::ddl::lift_timeouts(conn).await?;
    // A schema this connection creates is written in this build's format from the start.
    let new = records(conn, schema).await?.is_empty();
    // `run_direct` is `run` without the `Acquire` indirection, whose higher-ranked bound keeps
    // this future from being `Send`.
    let mut migrated = if conn.is_in_transaction() {
        // Behind a transaction pooler: the whole run is this transaction, and so is its lock.
        match crate::migrations::lock_for_transaction(conn).await {
            Ok(()) => MIGRATOR_IN_TRANSACTION.run_direct(None, &mut *conn, false).await.map_err(map_migrate),
            Err(error) => Err(error),
        }
    } else {
        MIGRATOR.run_direct(None, &mut *conn, false).await.map_err(map_migrate)
    };
    if new && migrated.is_ok() {
        migrated = raise_format(conn).await.map(drop);
    }
    if migrated.is_ok() {
        migrated = activity::complete(conn, schema).await;
    }
    // Back to the connection's own settings (those it was opened with) before it is reused.
    let restored = crate::ddl::restore_timeouts(conn).await;
    migrated.and(restored)
}

/// The migrations `schema` records: version, whether it succeeded, checksum (none: no such
/// schema, or no migration table in it).
async fn records(conn: &mut PgConnection, schema: &str) -> Result<Vec<(i64, bool, Vec<u8>)>> {
    // `to_regclass` answers NULL for a table that is not there, where a query of it would fail.
    let table = format!("\"{schema}\"._sqlx_migrations");
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&table)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| map_sqlx("reading the schema version", e))?;
    if exists.is_none() {
        return Ok(Vec::new());
    }
    // The only SQL built from text: a schema name checked against [a-z_][a-z0-9_]*.
    let query = format!("SELECT version, success, checksum FROM {table} ORDER BY version");
    sqlx::query_as(AssertSqlSafe(query))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| map_sqlx("reading the schema version", e))
}

/// Where `schema` stands against this build's migrations.
pub(crate) async fn status(conn: &mut PgConnection, schema: &str) -> Result<SchemaStatus> {
    let mut status = SchemaStatus::from_records(records(conn, schema).await?, crate::migrations::known());
    let level = format_level(conn, schema).await?;
    // Version 13 is applied once its threads' index is built (see `activity.rs`): until then
    // it is pending, so `migrate up` (or an instance that migrates) completes it, and one that
    // does not refuses the store as it refuses one behind.
    if status.applied >= activity::VERSION
        && !activity::completed(conn, schema).await?
        && let Some((described, _)) =
            crate::migrations::known().find(|(migration, _)| migration.version == activity::VERSION)
    {
        status = status.with_work_left(described);
    }
    Ok(status.with_unfinished(level.is_some_and(|level| level < FORMAT)))
}

/// The format level this build writes (see `migrations/0011`: 1, packed rows).
pub(crate) const FORMAT: i32 = 1;

/// The schema's format level; `None` before schema version 11 (no `persist_format`).
async fn format_level(conn: &mut PgConnection, schema: &str) -> Result<Option<i32>> {
    let table = format!("\"{schema}\".persist_format");
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&table)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| map_sqlx("reading the store's format", e))?;
    if exists.is_none() {
        return Ok(None);
    }
    // The only SQL built from text: a schema name checked against [a-z_][a-z0-9_]*.
    let query = format!("SELECT level FROM {table}");
    // A store whose row is gone is written as the lowest level (`raise_format` puts it back).
    let level: Option<i32> = sqlx::query_scalar(AssertSqlSafe(query))
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| map_sqlx("reading the store's format", e))?;
    Ok(Some(level.unwrap_or(0)))
}

/// Raises the format of the schema the connection's `search_path` names to this build's
/// (`FORMAT`); answers whether it was lower.
pub(crate) async fn raise_format(conn: &mut PgConnection) -> Result<bool> {
    let raised = sqlx::query(
        "INSERT INTO persist_format AS f (id, level) VALUES (1, $1) \
         ON CONFLICT (id) DO UPDATE SET level = EXCLUDED.level WHERE f.level < EXCLUDED.level",
    )
    .bind(FORMAT)
    .execute(&mut *conn)
    .await
    .map_err(|e| map_sqlx("raising the store's format", e))?;
    Ok(raised.rows_affected() > 0)
}

/// Refuses a schema name that is not 1 to 63 of `[a-z0-9_]`, not starting with a digit (the
/// name is put in SQL text).
pub(crate) fn validate_schema(schema: &str) -> Result<()> {
    let mut chars = schema.chars();
    let valid = schema.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(PersistError::invalid("schema", "must be 1 to 63 of [a-z0-9_], not starting with a digit"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_the_schema_and_unknown_parameters_are_refused() {
        let split = |url: &str| {
            let (url, parameters) = split_url(url).unwrap();
            (url, parameters.schema)
        };
        assert_eq!(split("postgres://h/db"), ("postgres://h/db".to_owned(), None));
        assert_eq!(split("postgres://h/db?schema=chat"), ("postgres://h/db".to_owned(), Some("chat".to_owned())));
        assert_eq!(
            split("postgres://h/db?sslmode=disable&schema=chat&application_name=a"),
            ("postgres://h/db?sslmode=disable&application_name=a".to_owned(), Some("chat".to_owned()))
        );
        assert_eq!(
            split("postgres://u:p?ss@h/db?schema=chat#x"),
            ("postgres://u:p?ss@h/db".to_owned(), Some("chat".to_owned()))
        );
        assert_eq!(split("postgres://h/db?options[search_path]=x").1, None);
        for bad in [
            "postgres://h/db?shcema=chat",
            "postgres://h/db?schema=chat&timeout=5",
            "postgres://h/db?pooler=session",
            "postgres://h/db?listen_url=postgres%3",
        ] {
            let error = split_url(bad).unwrap_err();
            assert!(matches!(&error, PersistError::InvalidInput { field: "url" | "pooler", .. }), "{bad}: {error:?}");
        }
    }

    #[test]
    fn the_url_names_the_pooler_and_the_feeds_direct_url() {
        let (url, parameters) = split_url(
            "postgres://app@bouncer:6432/db?pooler=transaction&listen_url=postgres%3A%2F%2Fapp%40db%3A5432%2Fdb&sslmode=disable",
        )
        .unwrap();
        assert_eq!(url, "postgres://app@bouncer:6432/db?sslmode=disable");
        assert_eq!(parameters.pooler, Some(Pooler::Transaction));
        assert_eq!(parameters.listen_url.as_deref(), Some("postgres://app@db:5432/db"));
        for (text, pooler) in [("detect", Pooler::Detect), ("none", Pooler::None), ("transaction", Pooler::Transaction)]
        {
            let (_, parameters) = split_url(&format!("postgres://h/db?pooler={text}")).unwrap();
            assert_eq!(parameters.pooler, Some(pooler));
        }
    }

    #[test]
    fn schema_names_are_checked() {
        for good in ["public", "persist", "_t1", "persist_test_0a"] {
            assert!(validate_schema(good).is_ok(), "{good}");
        }
        for bad in ["", "Persist", "1x", "a-b", "a\"; drop", &"a".repeat(64)] {
            assert!(matches!(validate_schema(bad), Err(PersistError::InvalidInput { field: "schema", .. })), "{bad}");
        }
    }
}
