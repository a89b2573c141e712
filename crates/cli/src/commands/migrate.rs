//! `persist migrate status`, `persist migrate up [--dry-run]` and `persist migrate finish`: a
//! store's schema against the migrations this build carries, read without changing anything,
//! brought up to date as a step of its own (before instances that open with `migrate(false)`
//! start), and, once no instance of an earlier build runs, written in this build's form.

use std::io::Write;

use persist::maintenance::SchemaStatus;
use persist::postgres::PostgresBackend;
use persist::sqlite::SqliteBackend;
use serde_json::json;

use super::stdout;
use crate::error::{CliError, CliResult};
use crate::jsonl::write_line;
use crate::store::{self, Location, redact};

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
    let (before, label) = read(url).await?;
    // Ahead, failed or changed: nothing this build may apply.
    if before.is_ahead() || !before.failed.is_empty() || !before.changed.is_empty() {
        return Err(CliError::failed(format!("{label}: {}", describe(&before))));
    }
    let after = if dry_run || before.pending.is_empty() {
        before.clone()
    } else {
        migrate(url, &label).await?;
        read(url).await?.0
    };
    // What this run applied (another migrator may have applied some meanwhile).
    let applied_now: Vec<_> = before.pending.iter().filter(|migration| !after.pending.contains(migration)).collect();
    let mut out = stdout();
    if json {
        let mut report = report(&after, Some(dry_run));
        report["applied_now"] = json!(applied_now.iter().map(|migration| migration.version).collect::<Vec<_>>());
        write_line(&mut out, &report)?;
    } else if before.pending.is_empty() {
        writeln!(out, "{label}: {}", describe(&before))?;
    } else {
        let (verb, listed) =
            if dry_run { ("would apply", before.pending.iter().collect()) } else { ("applied", applied_now) };
        for migration in listed {
            writeln!(out, "{verb} {} {}", migration.version, migration.description)?;
        }
        writeln!(out, "{label}: {}", describe(&after))?;
    }
    out.flush()?;
    Ok(())
}

/// Has a store migrated from an earlier version written in this build's form from now on (see
/// `SchemaStatus::unfinished`). Refused for a store with migrations pending.
pub(crate) async fn finish(url: &str, json: bool) -> CliResult {
    let (before, label) = read(url).await?;
    if !before.is_current() {
        return Err(CliError::failed(format!(
            "{label}: nothing to finish before it is up to date: {}",
            describe(&before)
        )));
    }
    let after = match store::parse(url)? {
        Location::Sqlite(path) => SqliteBackend::builder(&path)
            .finish()
            .await
            .map_err(|e| CliError::context(format!("finishing {label}"), &e))?,
        Location::Postgres { url: conn, schema } => {
            let mut builder = PostgresBackend::builder(conn);
            if let Some(schema) = schema {
                builder = builder.schema(schema);
            }
            builder.finish().await.map_err(|e| CliError::context(format!("finishing {label}"), &e))?
        }
        _ => return Err(CliError::failed(format!("{label}: an in-process store has no schema"))),
    };
    let mut out = stdout();
    if json {
        let mut report = report(&after, None);
        report["finished_now"] = json!(before.unfinished && !after.unfinished);
        write_line(&mut out, &report)?;
    } else if before.unfinished {
        writeln!(out, "{label}: finished: written in this build's form from now on")?;
    } else {
        writeln!(out, "{label}: nothing to finish: {}", describe(&after))?;
    }
    out.flush()?;
    Ok(())
}

/// The status of the store at `url`, and its URL without a password.
async fn read(url: &str) -> CliResult<(SchemaStatus, String)> {
    let label = redact(url.trim());
    let status = match store::parse(url)? {
        Location::Sqlite(path) => SqliteBackend::builder(&path).schema_status().await,
        Location::Postgres { url: conn, schema } => {
            let mut builder = PostgresBackend::builder(conn);
            if let Some(schema) = schema {
                builder = builder.schema(schema);
            }
            builder.schema_status().await
        }
        _ => return Err(CliError::failed(format!("{label}: an in-process store has no schema"))),
    };
    let status = status.map_err(|e| CliError::context(format!("reading the schema of {label}"), &e))?;
    Ok((status, label))
}

/// Opens the store the way an app does, which applies what it lacks, then closes it.
async fn migrate(url: &str, label: &str) -> CliResult {
    let failed = |e: persist::PersistError| CliError::context(format!("migrating {label}"), &e);
    match store::parse(url)? {
        Location::Sqlite(path) => SqliteBackend::builder(&path).open().await.map_err(failed)?.close().await,
        Location::Postgres { url: conn, schema } => {
            let mut builder = PostgresBackend::builder(conn).max_connections(1);
            if let Some(schema) = schema {
                builder = builder.schema(schema);
            }
            builder.connect().await.map_err(failed)?.close().await;
        }
        _ => return Err(CliError::failed(format!("{label}: an in-process store has no schema to migrate"))),
    }
    Ok(())
}

/// One line saying where the schema stands.
fn describe(status: &SchemaStatus) -> String {
    if status.is_current() && status.unfinished {
        format!(
            "schema version {}, up to date; written as an earlier build reads it until `persist migrate finish` \
             (run it once no instance of an earlier build uses the store)",
            status.applied
        )
    } else if status.is_current() {
        format!("schema version {}, up to date", status.applied)
    } else if status.applied == 0 && status.failed.is_empty() {
        format!("no schema yet (this build's: {}); `persist migrate up` creates it", status.latest)
    } else if status.failed.is_empty() && status.changed.is_empty() && !status.is_ahead() {
        format!(
            "schema version {}, this build's is {}: {} pending (`persist migrate up` applies them)",
            status.applied,
            status.latest,
            status.pending.len()
        )
    } else {
        status.problem().unwrap_or_default()
    }
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
        "failed": status.failed,
        "changed": status.changed,
        "unfinished": status.unfinished,
    });
    if let Some(dry_run) = dry_run {
        report["dry_run"] = json!(dry_run);
    }
    report
}
