//! What persist's SQL backends (`persist-sqlite`, `persist-postgres`) share, over sqlx without a
//! driver: their migrations embedded as `sqlx::migrate!` would embed them, built without the
//! macro (whose compile-time copy of the database driver doubled a fresh build's work), what
//! the store's record of them means for this build, and the errors of running them; and what
//! both keep of spent idempotency keys ([`Removal`], [`spent_key`]); and the check both run that
//! their embedded migrations are their `migrations/` files ([`differences_from_dir`]).
//!
//! A backend of its own can use it too: it depends on the contract (`persist-core`) and sqlx's
//! migration types only.
//!
//! What it does not hold, on purpose: the statements. Both backends restore, update and delete
//! by the same rules, and those rules are the contract's (`persist_core::restore`'s verdicts,
//! the requests' own checks); the SQL that applies them differs by dialect and by transaction
//! model (SQLite's one writer, PostgreSQL's row locks), so each backend writes its own.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod spent;

use std::borrow::Cow;

use persist_core::PersistError;
use persist_core::schema::SchemaMigration;
use sqlx::SqlStr;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};

pub use self::spent::{Removal, SpentRow, spent_key};

/// One embedded migration file: its version, its description (the words of its name) and its
/// SQL (`include_str!` of the file). A file whose SQL starts with `-- no-transaction` runs
/// outside a transaction, as sqlx's macro reads it.
pub type MigrationFile = (i64, &'static str, &'static str);

/// The migrations of `files`, in version order: the same versions, SQL and checksums as
/// `sqlx::migrate!` gives, so a store either migrated opens as it is.
pub fn migrator(files: &'static [MigrationFile]) -> Migrator {
    let migrations = files
        .iter()
        .map(|&(version, description, sql)| {
            let no_tx = sql.starts_with("-- no-transaction");
            Migration::new(version, Cow::Borrowed(description), MigrationType::Simple, SqlStr::from_static(sql), no_tx)
        })
        .collect();
    Migrator::with_migrations(migrations)
}

/// How `files` differ from the migration files of `dir` (a backend's `migrations/`), as
/// `sqlx::migrate!` would read them: a file not embedded, an embedded one not there, a version,
/// description or SQL that differs. Empty when they are the same; a backend's test asserts it.
pub fn differences_from_dir(dir: &std::path::Path, files: &[MigrationFile]) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|entry| entry.ok()?.file_name().into_string().ok()).collect(),
        Err(error) => return vec![format!("{}: {error}", dir.display())],
    };
    names.retain(|name| name.ends_with(".sql"));
    names.sort();
    let mut differences = Vec::new();
    if names.len() != files.len() {
        differences.push(format!("{} files in {}, {} embedded", names.len(), dir.display(), files.len()));
    }
    for (name, &(version, description, sql)) in names.iter().zip(files) {
        let Some((number, words)) = name.trim_end_matches(".sql").split_once('_') else {
            differences.push(format!("{name}: not VERSION_DESCRIPTION.sql"));
            continue;
        };
        if number.parse::<i64>().ok() != Some(version) {
            differences.push(format!("{name}: embedded as version {version}"));
        }
        if words.replace('_', " ") != description {
            differences.push(format!("{name}: embedded as \"{description}\""));
        }
        if std::fs::read_to_string(dir.join(name)).ok().as_deref() != Some(sql) {
            differences.push(format!("{name}: its SQL differs from the embedded SQL"));
        }
    }
    differences
}

/// Every migration of `migrator`, with the checksum of its SQL, for
/// [`SchemaStatus::from_records`](persist_core::schema::SchemaStatus::from_records).
pub fn known(migrator: &Migrator) -> impl Iterator<Item = (SchemaMigration, Vec<u8>)> + '_ {
    migrator.iter().map(|migration| {
        (SchemaMigration::new(migration.version, migration.description.as_ref()), migration.checksum.to_vec())
    })
}

/// Maps a failure to run the migrations of `backend` (its crate's name, for the advice): a
/// schema newer than this build, or a migration whose SQL differs from this build's, is refused
/// with `Unsupported` saying what to do; a statement that failed is mapped by `map_sqlx`, the
/// backend's own mapping of its driver's errors.
pub fn map_migrate(
    backend: &str,
    error: MigrateError,
    map_sqlx: impl FnOnce(&'static str, sqlx::Error) -> PersistError,
) -> PersistError {
    match error {
        MigrateError::VersionMissing(version) => PersistError::Unsupported {
            what: format!(
                "the database has schema version {version}, which this {backend} does not know; it was written by a \
                 newer version. Upgrade {backend} to open it (nothing was changed)"
            )
            .into(),
        },
        MigrateError::VersionMismatch(version) => PersistError::Unsupported {
            what: format!("schema migration {version} in the database differs from this build's; refusing to open it")
                .into(),
        },
        MigrateError::Execute(error) | MigrateError::ExecuteMigration(error, _) => {
            map_sqlx("applying schema migrations", error)
        }
        other => PersistError::backend("applying schema migrations", other),
    }
}

/// A stored value that cannot be read back (a corrupted row, a store edited by hand).
pub fn corrupt(what: impl Into<String>) -> PersistError {
    PersistError::Backend { message: format!("corrupt row: {}", what.into()).into(), source: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FILES: &[MigrationFile] =
        &[(1, "schema", "CREATE TABLE t (x INTEGER);"), (2, "index", "-- no-transaction\nCREATE INDEX i ON t (x);")];

    #[test]
    fn files_become_migrations_in_order_with_their_checksums() {
        let migrator = migrator(FILES);
        let versions: Vec<(i64, bool)> = migrator.iter().map(|m| (m.version, m.no_tx)).collect();
        assert_eq!(versions, [(1, false), (2, true)]);
        let known: Vec<(SchemaMigration, Vec<u8>)> = known(&migrator).collect();
        assert_eq!(known[1].0, SchemaMigration::new(2, "index"));
        assert_eq!(known[0].1, migrator.iter().next().unwrap().checksum.to_vec());
        assert_ne!(known[0].1, known[1].1);
    }

    #[test]
    fn a_directory_differing_from_the_embedded_files_is_told() {
        let dir = std::env::temp_dir().join(format!("persist-sql-kit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0001_schema.sql"), "CREATE TABLE t (x INTEGER);").unwrap();
        std::fs::write(dir.join("0002_index.sql"), "-- no-transaction\nCREATE INDEX i ON t (x);").unwrap();
        assert!(differences_from_dir(&dir, FILES).is_empty());
        std::fs::write(dir.join("0002_index.sql"), "CREATE INDEX i ON t (x);").unwrap();
        std::fs::write(dir.join("0003_more.sql"), "SELECT 1;").unwrap();
        let found = differences_from_dir(&dir, FILES);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("3 files") && found[1].contains("0002_index.sql: its SQL differs"), "{found:?}");
    }

    #[test]
    fn a_newer_or_changed_schema_is_refused_saying_what_to_do() {
        let unused = |_: &'static str, _: sqlx::Error| unreachable!("no statement failed");
        let newer = map_migrate("persist-sqlite", MigrateError::VersionMissing(9), unused);
        assert!(matches!(newer, PersistError::Unsupported { .. }));
        assert!(newer.to_string().contains("Upgrade persist-sqlite to open it"), "{newer}");
        let changed = map_migrate("persist-postgres", MigrateError::VersionMismatch(3), unused);
        assert!(changed.to_string().contains("migration 3 in the database differs"), "{changed}");
        assert!(corrupt("seq is negative").to_string().contains("corrupt row: seq is negative"));
    }
}
