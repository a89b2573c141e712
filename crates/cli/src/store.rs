//! Opening a store from its URL.
//!
//! | URL | store |
//! |---|---|
//! | `sqlite:PATH`, `sqlite://PATH` (`sqlite:///abs/path`), or a `PATH` ending in `.db`, `.sqlite` or `.sqlite3` | a SQLite file |
//! | `postgres://…`, `postgresql://…` | a PostgreSQL database; `schema=NAME` in the query string picks the schema (default `public`) |
//! | `memory:` | an empty in-process store, gone when the command ends (for trying commands) |

use std::path::{Path, PathBuf};

use persist::Pipeline;
use persist::encrypt::EncryptLayer;
use persist::memory::MemoryBackend;
use persist::postgres::PostgresBackend;
use persist::sqlite::SqliteBackend;

use crate::error::{CliError, CliResult};

/// Where a store is, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database: the URL without `schema=`, and the schema it named.
    Postgres {
        /// The connection URL, as sqlx reads it.
        url: String,
        /// The schema of the store, when the URL named one.
        schema: Option<String>,
    },
    /// An empty in-process store.
    Memory,
}

impl Location {
    /// Parses a store URL.
    pub(crate) fn parse(url: &str) -> CliResult<Self> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(CliError::failed(format!("invalid store URL {url}: no file after `sqlite:`")));
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (url, schema) = take_schema(url);
            return Ok(Self::Postgres { url, schema });
        }
        if url == "memory:" {
            return Ok(Self::Memory);
        }
        let is_sqlite_file = Path::new(url)
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| matches!(ext, "db" | "sqlite" | "sqlite3"));
        if is_sqlite_file && !url.contains("://") {
            return Ok(Self::Sqlite(PathBuf::from(url)));
        }
        Err(CliError::failed(format!(
            "unsupported store URL {}: expected sqlite:PATH, a PATH ending in .db, postgres://… or memory:",
            redact(url)
        )))
    }
}

/// Whether a command may create the store it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The store must exist and is only read (a SQLite file is opened for reads only, so a
    /// file on a read-only filesystem can be read).
    ReadOnly,
    /// The store must exist (a SQLite file is never created): maintenance.
    Existing,
    /// The store is created when missing: the target of an import or a copy.
    CreateIfMissing,
}

/// An open store: its pipeline, and the backend handle for what only it can do.
#[derive(Debug)]
pub(crate) struct Store {
    /// A pipeline with no layers over the backend: values as stored (sealed ones sealed).
    pub(crate) pipeline: Pipeline,
    /// The same backend through an `EncryptLayer` with the keys of `PERSIST_ENCRYPTION_KEYS`,
    /// when they were given: sealed values opened on reads, clear ones sealed on writes.
    opened: Option<Pipeline>,
    /// The URL, without its password: what exports record as their source.
    pub(crate) label: String,
    backend: Handle,
}

#[derive(Debug)]
enum Handle {
    Sqlite(SqliteBackend),
    Postgres(PostgresBackend),
    Memory,
}

impl Store {
    /// Opens the store at `url`.
    ///
    /// # Errors
    ///
    /// An unsupported URL; `no store at PATH` for a SQLite file that does not exist when
    /// `mode` is `Mode::Existing`; whatever the backend answers when it cannot open.
    pub(crate) async fn open(url: &str, mode: Mode) -> CliResult<Self> {
        let label = redact(url.trim());
        match Location::parse(url)? {
            Location::Sqlite(path) => {
                if mode != Mode::CreateIfMissing && !path.exists() {
                    return Err(CliError::failed(format!("no store at {}", path.display())));
                }
                let backend = SqliteBackend::builder(&path)
                    .read_only(mode == Mode::ReadOnly)
                    .open()
                    .await
                    .map_err(|e| CliError::context(format!("opening {}", path.display()), &e))?;
                Ok(Self::new(Pipeline::new(backend.clone()), label, Handle::Sqlite(backend)))
            }
            Location::Postgres { url: conn, schema } => {
                if mode != Mode::CreateIfMissing {
                    holds_a_store(&conn, schema.as_deref().unwrap_or("public"), &label).await?;
                }
                let mut builder = PostgresBackend::builder(conn).max_connections(4);
                if let Some(schema) = schema {
                    builder = builder.schema(schema);
                }
                let backend =
                    builder.connect().await.map_err(|e| CliError::context(format!("connecting to {label}"), &e))?;
                Ok(Self::new(Pipeline::new(backend.clone()), label, Handle::Postgres(backend)))
            }
            Location::Memory => Ok(Self::new(Pipeline::new(MemoryBackend::new()), label, Handle::Memory)),
        }
    }

    fn new(pipeline: Pipeline, label: String, backend: Handle) -> Self {
        Self { pipeline, opened: None, label, backend }
    }

    /// Reads and writes through `layer` where a command asks for it ([`keyed`](Self::keyed));
    /// `None` leaves the store as it is.
    pub(crate) fn with_keys(mut self, layer: Option<&EncryptLayer>) -> Self {
        // A pipeline is a backend: the layer goes over the store's own pipeline.
        self.opened = layer.map(|layer| Pipeline::builder().layer(layer.clone()).build(self.pipeline.clone()));
        self
    }

    /// The pipeline through the keys when they were given (sealed values opened on reads, clear
    /// ones sealed on writes), the one as stored otherwise.
    pub(crate) fn keyed(&self) -> &Pipeline {
        self.opened.as_ref().unwrap_or(&self.pipeline)
    }

    /// The SQLite backend, when the store is a SQLite file.
    pub(crate) fn sqlite(&self) -> Option<&SqliteBackend> {
        match &self.backend {
            Handle::Sqlite(backend) => Some(backend),
            Handle::Postgres(_) | Handle::Memory => None,
        }
    }

    /// Finishes queued writes and closes the store's connections.
    pub(crate) async fn close(&self) {
        match &self.backend {
            Handle::Sqlite(backend) => backend.close().await,
            Handle::Postgres(backend) => backend.close().await,
            Handle::Memory => {}
        }
    }
}

/// Refuses a PostgreSQL schema without persist's tables: opening it would create an empty
/// store (a typo in `schema=` would then copy or list nothing, and say so as a success).
async fn holds_a_store(url: &str, schema: &str, label: &str) -> CliResult {
    use sqlx::Connection;
    let mut conn =
        sqlx::PgConnection::connect(url).await.map_err(|e| CliError::context(format!("connecting to {label}"), &e))?;
    let found: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'threads')",
    )
    .bind(schema)
    .fetch_one(&mut conn)
    .await
    .map_err(|e| CliError::context(format!("reading {label}"), &e))?;
    let _ = conn.close().await;
    if found {
        Ok(())
    } else {
        Err(CliError::failed(format!("no store at {label} (schema {schema} holds no persist tables)")))
    }
}

/// Splits `schema=NAME` off a PostgreSQL URL's query string.
fn take_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.strip_prefix("schema=") {
            Some(name) => schema = Some(name.to_owned()),
            None => kept.push(pair),
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    (url, schema)
}

/// `url` without a password: `user:secret@host` becomes `user@host`, and a `password=`
/// parameter is dropped.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let mut redacted = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let kept: Vec<&str> = query.split('&').filter(|pair| !pair.starts_with("password=")).collect();
        if !kept.is_empty() {
            redacted.push('?');
            redacted.push_str(&kept.join("&"));
        }
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        assert_eq!(Location::parse("sqlite:chat.db").unwrap(), Location::Sqlite("chat.db".into()));
        assert_eq!(Location::parse("sqlite://chat").unwrap(), Location::Sqlite("chat".into()));
        assert_eq!(Location::parse("sqlite:///tmp/chat").unwrap(), Location::Sqlite("/tmp/chat".into()));
        assert_eq!(Location::parse("data/chat.db").unwrap(), Location::Sqlite("data/chat.db".into()));
        assert_eq!(Location::parse("memory:").unwrap(), Location::Memory);
        assert_eq!(
            Location::parse("postgres://u:p@h/db?sslmode=disable&schema=s1").unwrap(),
            Location::Postgres { url: "postgres://u:p@h/db?sslmode=disable".into(), schema: Some("s1".into()) }
        );
        assert_eq!(
            Location::parse("postgresql://h/db").unwrap(),
            Location::Postgres { url: "postgresql://h/db".into(), schema: None }
        );
        for bad in ["mysql://h/db", "chat.txt", "", "sqlite:"] {
            assert!(Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://app:secret@db:5432/chat"), "postgres://app@db:5432/chat");
        assert_eq!(redact("postgres://db/chat?password=x&schema=s"), "postgres://db/chat?schema=s");
        assert_eq!(redact("postgres://app@db/chat"), "postgres://app@db/chat");
        assert_eq!(redact("sqlite:chat.db"), "sqlite:chat.db");
    }
}
