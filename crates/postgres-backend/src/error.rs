//! The one place where sqlx and PostgreSQL errors become [`PersistError`]s.

use persist_core::PersistError;
use sqlx::migrate::MigrateError;

/// SQLSTATEs a retry may get past: serialization failure, deadlock, lock or statement
/// time-out, server shutting down, too many connections, connection exceptions (`08…`).
fn is_temporary_state(code: &str) -> bool {
    matches!(code, "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03" | "53300")
        || code.starts_with("08")
}

/// Whether `error` is a unique violation (the writer raced another one; the op retries).
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// Maps a driver error: contention, time-outs and lost connections are temporary; text the
/// server cannot store (a NUL character) is invalid input; the rest is a backend failure.
pub(crate) fn map_sqlx(context: &'static str, error: sqlx::Error) -> PersistError {
    let temporary = |message: String, error: sqlx::Error| PersistError::Temporary {
        message: message.into(),
        source: Some(Box::new(error)),
    };
    match &error {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(code) if is_temporary_state(code) => temporary(format!("{context}: {}", db.message()), error),
            Some("22P05" | "22021") => {
                PersistError::invalid("content", format!("PostgreSQL cannot store this text: {}", db.message()))
            }
            _ => PersistError::backend(context, error),
        },
        sqlx::Error::PoolTimedOut => temporary(format!("{context}: no connection became free in time"), error),
        sqlx::Error::Io(_) => temporary(format!("{context}: the connection was lost"), error),
        _ => PersistError::backend(context, error),
    }
}

/// Maps a failure to open a connection to the server at `server` (host, port and database):
/// never a "lost" connection, since none was made. A refused connection, an unknown host or a
/// server that cannot take one more is temporary; a database that does not exist or a refused
/// login is not. Either way the message names where, and the source says why (the OS's or the
/// server's words).
pub(crate) fn map_connect(server: &str, error: sqlx::Error) -> PersistError {
    let message = format!("connecting to PostgreSQL at {server}");
    let temporary = match &error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().as_deref().is_some_and(is_temporary_state),
        _ => false,
    };
    if temporary {
        PersistError::Temporary { message: message.into(), source: Some(Box::new(error)) }
    } else {
        PersistError::backend(message, error)
    }
}

/// Maps a migration error; a schema newer than this build is refused with a clear message.
pub(crate) fn map_migrate(error: MigrateError) -> PersistError {
    persist_sql_kit::map_migrate("persist-postgres", error, map_sqlx)
}

pub(crate) use persist_sql_kit::corrupt;
