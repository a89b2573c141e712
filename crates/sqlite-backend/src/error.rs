//! The one place where sqlx and SQLite errors become [`PersistError`]s.

use persist_core::PersistError;
use sqlx::migrate::MigrateError;

/// SQLite primary result codes this backend treats specially.
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_READONLY: i64 = 8;
const SQLITE_CORRUPT: i64 = 11;
const SQLITE_FULL: i64 = 13;
const SQLITE_CONSTRAINT: i64 = 19;
const SQLITE_NOTADB: i64 = 26;

/// Maps a driver error: `BUSY`/`LOCKED` and pool time-outs are temporary; a full database, a
/// damaged one and a file that is not a database say so; everything else is a backend failure carrying its source.
pub(crate) fn map_sqlx(context: &'static str, error: sqlx::Error) -> PersistError {
    match &error {
        sqlx::Error::Database(_) => {
            match primary_code(&error) {
                Some(SQLITE_BUSY | SQLITE_LOCKED) => PersistError::Temporary {
                    message: format!("{context}: the database is busy").into(),
                    source: Some(Box::new(error)),
                },
                // Not temporary: waiting does not free space. Nothing of the write was applied.
                Some(SQLITE_FULL) => PersistError::backend(
                    format!("{context}: the database is full (its size limit or the disk); nothing was written"),
                    error,
                ),
                Some(SQLITE_CORRUPT) => PersistError::backend(
                    format!("{context}: the database file is damaged (run `check_integrity`, restore a backup)"),
                    error,
                ),
                Some(SQLITE_NOTADB) => PersistError::backend(
                    format!("{context}: the file is not a SQLite database (left untouched)"),
                    error,
                ),
                _ => PersistError::backend(context, error),
            }
        }
        sqlx::Error::PoolTimedOut => PersistError::Temporary {
            message: format!("{context}: no read connection became free in time").into(),
            source: Some(Box::new(error)),
        },
        _ => PersistError::backend(context, error),
    }
}

/// [`map_sqlx`], for an error of a rusqlite connection (the lane's).
pub(crate) fn map_rusqlite(context: &'static str, error: rusqlite::Error) -> PersistError {
    use rusqlite::ErrorCode;
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => PersistError::Temporary {
            message: format!("{context}: the database is busy").into(),
            source: Some(Box::new(error)),
        },
        Some(ErrorCode::DiskFull) => PersistError::backend(
            format!("{context}: the database is full (its size limit or the disk); nothing was written"),
            error,
        ),
        Some(ErrorCode::DatabaseCorrupt) => PersistError::backend(
            format!("{context}: the database file is damaged (run `check_integrity`, restore a backup)"),
            error,
        ),
        _ => PersistError::backend(context, error),
    }
}

/// Whether a rusqlite error says the file's lock was taken: nothing was done.
pub(crate) fn busy(error: &rusqlite::Error) -> bool {
    matches!(error.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// Maps a migration error; a schema newer than this build is refused with a clear message.
pub(crate) fn map_migrate(error: MigrateError) -> PersistError {
    persist_sql_kit::map_migrate("persist-sqlite", error, map_sqlx)
}

pub(crate) use persist_sql_kit::corrupt;

/// Whether `error` is what losing a race to set up a new file looks like: the file busy (another
/// process switching it to WAL or migrating), a table or index another process just created or
/// replaced, or a migration it just recorded.
pub(crate) fn raced(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else { return false };
    let primary = db.code().and_then(|code| code.parse::<i64>().ok()).map(|code| code & 0xff);
    let message = db.message();
    match primary {
        Some(SQLITE_BUSY | SQLITE_LOCKED) => true,
        Some(SQLITE_CONSTRAINT) => message.contains("_sqlx_migrations"),
        // SQLITE_ERROR: the schema changed under the statement.
        Some(1) => message.contains("already exists") || message.contains("no such"),
        _ => false,
    }
}

/// [`raced`], for a migration's error.
pub(crate) fn raced_migration(error: &MigrateError) -> bool {
    match error {
        MigrateError::Execute(error) | MigrateError::ExecuteMigration(error, _) => raced(error),
        _ => false,
    }
}

/// SQLite's primary result code of a database error (the extended code's low byte).
fn primary_code(error: &sqlx::Error) -> Option<i64> {
    match error {
        sqlx::Error::Database(db) => db.code().and_then(|code| code.parse::<i64>().ok()).map(|code| code & 0xff),
        _ => None,
    }
}

/// `error`, met opening the file at `path`, naming the file and its cause (the OS's or
/// SQLite's words): "opening the database" alone does not say which file, nor why.
pub(crate) fn in_file(path: &std::path::Path, error: PersistError) -> PersistError {
    // The cause itself is the source's, which `Display` adds.
    match error {
        PersistError::Backend { message, source } => {
            let driver = source.as_deref().and_then(|e| e.downcast_ref::<sqlx::Error>());
            let readonly = driver.and_then(primary_code) == Some(SQLITE_READONLY);
            let hint = if readonly { " (to read it anyway, open it with `read_only(true)`)" } else { "" };
            let message = format!("{message} ({}){hint}", path.display());
            PersistError::Backend { message: message.into(), source }
        }
        PersistError::Temporary { message, source } => {
            let message = format!("{message} ({})", path.display());
            PersistError::Temporary { message: message.into(), source }
        }
        other => other,
    }
}
