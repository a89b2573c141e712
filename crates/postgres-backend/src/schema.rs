//! Where a store lives: the schema a URL names (`schema=`, split off before the driver reads
//! the URL), the rules for its name, and its creation and migration.

use persist_core::{PersistError, Result};
use sqlx::{AssertSqlSafe, PgConnection};

use persist_core::schema::SchemaStatus;

use crate::activity;
use crate::error::{map_migrate, map_sqlx};
use crate::migrations::MIGRATOR;

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

/// Splits `schema=NAME` off a URL's query string; refuses a parameter nobody reads (the
/// driver would ignore it: a typo would silently connect somewhere else than meant). The
/// query starts at the first `?` after the user and password, and a `#fragment` is no part of
/// it. A refusal never repeats text of the URL that could be part of a password.
pub(crate) fn split_schema(url: &str) -> Result<(String, Option<String>)> {
    let url = url.split_once('#').map_or(url, |(url, _)| url);
    let authority = url.rfind('@').map_or_else(|| url.find("://").map_or(0, |at| at + 3), |at| at + 1);
    let Some(at) = url[authority..].find('?').map(|at| authority + at) else {
        return Ok((url.to_owned(), None));
    };
    let (base, query) = (&url[..at], &url[at + 1..]);
    let mut schema = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        match pair.strip_prefix("schema=") {
            Some(name) => schema = Some(name.to_owned()),
            // `options[NAME]=VALUE` sets one server option, as the driver reads it.
            None if URL_PARAMETERS.contains(&key) || key.starts_with("options[") => kept.push(pair),
            None => {
                let plain = key.len() <= 32 && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                let named = if plain { format!(" {key:?}") } else { String::new() };
                return Err(PersistError::invalid(
                    "url",
                    format!("an unknown parameter{named} (known: schema, {})", URL_PARAMETERS.join(", ")),
                ));
            }
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((url, schema))
}

/// Creates the schema if it is missing and applies the migrations it lacks.
pub(crate) async fn prepare_schema(conn: &mut PgConnection, schema: &str) -> Result<()> {
    // The only SQL built from text: a schema name checked against [a-z_][a-z0-9_]*.
    let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
    match sqlx::query(AssertSqlSafe(create)).execute(&mut *conn).await {
        Ok(_) => {}
        // Another instance created it at the same moment.
        Err(sqlx::Error::Database(db)) if matches!(db.code().as_deref(), Some("23505" | "42P06")) => {}
        Err(e) => return Err(map_sqlx("creating the schema", e)),
    }
    // A migration may rewrite a table and wait for other sessions' locks: no time-outs for it.
    sqlx::raw_sql("SET lock_timeout = 0; SET statement_timeout = 0")
        .execute(&mut *conn)
        .await
        .map_err(|e| map_sqlx("preparing to migrate", e))?;
    // A schema this connection creates is written in this build's format from the start.
    let new = records(conn, schema).await?.is_empty();
    // `run_direct` is `run` without the `Acquire` indirection, whose higher-ranked bound keeps
    // this future from being `Send`.
    let mut migrated = MIGRATOR.run_direct(None, &mut *conn, false).await.map_err(map_migrate);
    if new && migrated.is_ok() {
        migrated = raise_format(conn).await.map(drop);
    }
    if migrated.is_ok() {
        migrated = activity::complete(conn, schema).await;
    }
    // Back to the connection's own settings (those it was opened with) before it is reused.
    let reset = sqlx::raw_sql("RESET lock_timeout; RESET statement_timeout")
        .execute(&mut *conn)
        .await
        .map_err(|e| map_sqlx("after migrating", e));
    migrated.and(reset.map(drop))
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
        let split = |url: &str| split_schema(url).unwrap();
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
        for bad in ["postgres://h/db?shcema=chat", "postgres://h/db?schema=chat&timeout=5"] {
            let error = split_schema(bad).unwrap_err();
            assert!(matches!(&error, PersistError::InvalidInput { field: "url", .. }), "{bad}: {error:?}");
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
