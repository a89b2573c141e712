//! The previous version's statements run on the migrated schema: the expand-then-contract rule
//! of `docs/migrations.md`, checked. Every statement this backend sends during the conformance
//! suite is recorded per schema version in `tests/statements/vN.sql` (the ignored test below,
//! run when a migration is added); each statement of the newest recording before this build's
//! version (this version's own while there is none) is prepared on a schema migrated to this
//! build's latest, where it must still parse and find every table, column and function it
//! names.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use persist_postgres::PostgresBackend;
use sqlx::{AssertSqlSafe, Connection, Executor, SqlSafeStr};

use crate::support;
use crate::support::PostgresFactory;

/// Between two statements of a recording.
const SEPARATOR: &str = "\n-- next statement\n";

/// What stands for the test's schema name in a recorded statement.
const SCHEMA: &str = "{schema}";

/// The recording of schema version `version`.
fn recording(version: i64) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/statements/v{version}.sql"))
}

/// The versions recorded, oldest first.
fn recorded_versions() -> Vec<i64> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/statements");
    let mut versions: Vec<i64> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter_map(|name| name.strip_prefix('v')?.strip_suffix(".sql")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_unstable();
    versions
}

/// This build's schema version (the status of a schema that does not exist: nothing made).
async fn latest_version() -> Option<i64> {
    if !support::available().await {
        return None;
    }
    let status = PostgresBackend::builder(support::url()).schema(support::schema_name()).schema_status().await;
    Some(status.unwrap().latest)
}

/// `sql` with the tests' schema names (`persist_test_` and hex digits) as [`SCHEMA`].
fn normalized(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find("persist_test_") {
        out.push_str(&rest[..at]);
        out.push_str(SCHEMA);
        let name = &rest[at + "persist_test_".len()..];
        let end = name.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(name.len());
        rest = &name[end..];
    }
    out.push_str(rest);
    out.trim().to_owned()
}

#[tokio::test]
async fn this_versions_statements_are_recorded() {
    let Some(latest) = latest_version().await else { return };
    assert!(
        recording(latest).exists(),
        "no recording of schema version {latest}'s statements: run `cargo test -p persist-postgres --test \
         postgres -- --ignored --exact statements::record_this_versions_statements` with the server of the \
         tests, and commit tests/statements/v{latest}.sql"
    );
}

#[tokio::test]
async fn the_previous_versions_statements_prepare_on_the_migrated_schema() {
    let Some(latest) = latest_version().await else { return };
    let versions = recorded_versions();
    let Some(&version) = versions.iter().rev().find(|&&v| v < latest).or(versions.last()) else {
        panic!("no recording in tests/statements");
    };
    let recorded = std::fs::read_to_string(recording(version)).unwrap();
    let schema = support::schema_name();
    PostgresBackend::builder(support::url()).schema(schema.clone()).connect().await.unwrap().close().await;
    let mut conn = support::admin().await.unwrap();
    // Test-made names only: persist_test_ + hex.
    conn.execute(AssertSqlSafe(format!("SET search_path TO \"{schema}\""))).await.unwrap();
    let mut failed = Vec::new();
    let mut prepared = 0;
    for statement in recorded.split(SEPARATOR).map(str::trim).filter(|s| !s.is_empty()) {
        // Several commands in one text cannot be prepared (each is one of the backend's own
        // fixed batches, `SET …; …`).
        if statement.trim_end_matches(';').contains(';') {
            continue;
        }
        let sql = statement.replace(SCHEMA, &schema);
        match conn.prepare(AssertSqlSafe(sql).into_sql_str()).await {
            Ok(_) => prepared += 1,
            Err(error) => failed.push(format!("{statement}\n  -> {error}")),
        }
    }
    conn.close().await.unwrap();
    support::drop_schema(&schema).await;
    assert!(prepared > 50, "only {prepared} statements prepared from v{version}.sql");
    assert!(
        failed.is_empty(),
        "statements of schema version {version} fail on version {latest}:\n{}",
        failed.join("\n")
    );
}

/// Records every statement the backend sends during the whole conformance suite into
/// `tests/statements/vN.sql` (N: this build's schema version), adding to what is there.
/// Its `tracing` subscriber is the whole test binary's: run it alone (`--ignored --exact
/// statements::record_this_versions_statements`), or other tests' statements are recorded too.
#[test]
#[ignore = "records tests/statements/vN.sql; run with --ignored when a migration is added"]
fn record_this_versions_statements() {
    let recorder = Recorder::default();
    let statements = recorder.statements.clone();
    tracing::subscriber::set_global_default(recorder).expect("the only subscriber of this test binary");
    let latest = tokio::runtime::Runtime::new().unwrap().block_on(latest_version()).expect("the server of the tests");
    persist_conformance::run_all_checks!(PostgresFactory);
    let path = recording(latest);
    let mut all: BTreeSet<String> = std::fs::read_to_string(&path)
        .map(|text| text.split(SEPARATOR).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    all.extend(statements.lock().unwrap().iter().cloned());
    // A migration's own SQL (it starts with its comment) is the migration file's: not a
    // statement the backend sends again.
    all.retain(|statement| !statement.starts_with("--"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let text: Vec<&str> = all.iter().map(String::as_str).collect();
    std::fs::write(&path, text.join(SEPARATOR) + "\n").unwrap();
}

/// A `tracing` subscriber that keeps the text of every statement sqlx logs (target
/// `sqlx::query`: `db.statement`, or `summary` when the statement is that short).
#[derive(Default)]
struct Recorder {
    statements: Arc<Mutex<BTreeSet<String>>>,
}

#[derive(Default)]
struct Fields {
    summary: Option<String>,
    statement: Option<String>,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "summary" => self.summary = Some(value.to_owned()),
            "db.statement" => self.statement = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "summary" | "db.statement") {
            self.record_str(field, format!("{value:?}").trim_matches('"'));
        }
    }
}

impl tracing::Subscriber for Recorder {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target().starts_with("sqlx::query")
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let text = match (fields.statement, fields.summary) {
            (Some(statement), _) if !statement.trim().is_empty() => statement,
            (_, Some(summary)) => summary,
            _ => return,
        };
        self.statements.lock().unwrap().insert(normalized(&text));
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
