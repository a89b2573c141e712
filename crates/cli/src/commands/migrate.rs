//! `persist migrate status` and `persist migrate up [--dry-run]`: a store's schema against the
//! migrations this build carries, read without changing anything, and brought up to date as a
//! step of its own (before instances that open with `migrate(false)` start).

use std::io::Write;

use persist::maintenance::SchemaStatus;
use persist::postgres::PostgresBackend;
use persist::sqlite::SqliteBackend;
use serde_json::json;

use super::stdout;
use crate::error::{CliError, CliResult};
use crate::jsonl::write_line;
use crate::store::{Location, redact};

/// Prints where the store's schema stands.
pub(crate) async fn status(url: &str, json: bool) -> CliResult {
    let (status, label) = read(url).await?;
    let mut out = stdout();
    if json {
        write_line(&mut out, &report(&status, None))?;
    } else {
        writeln!(out, "{label}: {}", describe(&status))?;
        for migration in &status.pending {
            writeln!(out, "pending: {} {}", migration.version, migration.description)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Applies the migrations the store lacks (creating it when it does not exist), or with
/// `dry_run` prints them and changes nothing. A store a newer build migrated is refused.
pub(crate) async fn up(url: &str, dry_run: bool, json: bool) -> CliResult {
    let (status, label) = read(url).await?;
    if status.is_ahead() {
        return Err(CliError::failed(format!("{label}: {}", describe(&status))));
    }
    if !dry_run && !status.pending.is_empty() {
        migrate(url, &label).await?;
    }
    let mut out = stdout();
    if json {
        let mut report = report(&status, Some(dry_run));
        report["applied_now"] = json!(if dry_run { Vec::new() } else { versions(&status) });
        write_line(&mut out, &report)?;
    } else if status.pending.is_empty() {
        writeln!(out, "{label}: {}", describe(&status))?;
    } else {
        let verb = if dry_run { "would apply" } else { "applied" };
        for migration in &status.pending {
            writeln!(out, "{verb} {} {}", migration.version, migration.description)?;
        }
        let now = if dry_run { "still at" } else { "now at" };
        let at = if dry_run { status.applied } else { status.latest };
        writeln!(out, "{label}: {now} schema version {at} (this build's: {})", status.latest)?;
    }
    out.flush()?;
    Ok(())
}

/// The status of the store at `url`, and its URL without a password.
async fn read(url: &str) -> CliResult<(SchemaStatus, String)> {
    let label = redact(url.trim());
    let status = match Location::parse(url)? {
        Location::Sqlite(path) => SqliteBackend::builder(&path).schema_status().await,
        Location::Postgres { url: conn, schema } => {
            let mut builder = PostgresBackend::builder(conn);
            if let Some(schema) = schema {
                builder = builder.schema(schema);
            }
            builder.schema_status().await
        }
        Location::Memory => return Err(CliError::failed("memory: has no schema to migrate")),
    };
    let status = status.map_err(|e| CliError::context(format!("reading the schema of {label}"), &e))?;
    Ok((status, label))
}

/// Opens the store the way an app does, which applies what it lacks, then closes it.
async fn migrate(url: &str, label: &str) -> CliResult {
    let failed = |e: persist::PersistError| CliError::context(format!("migrating {label}"), &e);
    match Location::parse(url)? {
        Location::Sqlite(path) => SqliteBackend::builder(&path).open().await.map_err(failed)?.close().await,
        Location::Postgres { url: conn, schema } => {
            let mut builder = PostgresBackend::builder(conn).max_connections(1);
            if let Some(schema) = schema {
                builder = builder.schema(schema);
            }
            builder.connect().await.map_err(failed)?.close().await;
        }
        Location::Memory => return Err(CliError::failed("memory: has no schema to migrate")),
    }
    Ok(())
}

/// One line saying where the schema stands.
fn describe(status: &SchemaStatus) -> String {
    if status.is_ahead() {
        format!(
            "schema version {}, newer than this build's {}: a newer version of persist migrated it; upgrade this one",
            status.applied, status.latest
        )
    } else if status.is_current() {
        format!("schema version {}, up to date", status.applied)
    } else if status.applied == 0 {
        format!("no schema yet (this build's: {}); `persist migrate up` creates it", status.latest)
    } else {
        format!(
            "schema version {}, this build's is {}: {} pending (`persist migrate up` applies them)",
            status.applied,
            status.latest,
            status.pending.len()
        )
    }
}

fn versions(status: &SchemaStatus) -> Vec<i64> {
    status.pending.iter().map(|migration| migration.version).collect()
}

/// The status as a JSON object.
fn report(status: &SchemaStatus, dry_run: Option<bool>) -> serde_json::Value {
    let pending: Vec<_> = status
        .pending
        .iter()
        .map(|migration| json!({ "version": migration.version, "description": migration.description }))
        .collect();
    let mut report = json!({
        "applied": status.applied,
        "latest": status.latest,
        "current": status.is_current(),
        "ahead": status.is_ahead(),
        "pending": pending,
    });
    if let Some(dry_run) = dry_run {
        report["dry_run"] = json!(dry_run);
    }
    report
}
