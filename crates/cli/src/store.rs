//! Opening a store from its URL, parsed as the library parses it (see `persist::store_url`):
//! `sqlite:PATH` or a `PATH` ending in `.db`, `postgres://…?schema=NAME`, or `memory:` (an empty
//! in-process store, gone when the command ends, for trying commands).

use persist::Pipeline;
use persist::encrypt::EncryptLayer;
use persist::memory::MemoryBackend;
use persist::postgres::PostgresBackend;
use persist::sqlite::SqliteBackend;

use crate::error::{CliError, CliResult};

/// Where a store is: the URL parsed as the library parses it ([`persist::StoreUrl`]).
pub(crate) use persist::StoreUrl as Location;

/// Parses a store URL as the library does, its refusal as the command's.
pub(crate) fn parse(url: &str) -> CliResult<Location> {
    Location::parse(url).map_err(|error| match error {
        persist::PersistError::InvalidInput { reason, .. } => CliError::failed(reason),
        other => CliError::failed(other),
    })
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

/// The most connections a command's store pool opens, unless told otherwise (`persist serve
/// --pool-size`): PostgreSQL server connections, or SQLite read connections (the writer's is
/// one more).
pub(crate) const DEFAULT_POOL_SIZE: u32 = 4;

impl Store {
    /// Opens the store at `url`, its pool of [`DEFAULT_POOL_SIZE`] connections.
    ///
    /// # Errors
    ///
    /// An unsupported URL; `no store at PATH` for a SQLite file that does not exist when
    /// `mode` is `Mode::Existing`; whatever the backend answers when it cannot open.
    pub(crate) async fn open(url: &str, mode: Mode) -> CliResult<Self> {
        Self::open_pooled(url, mode, DEFAULT_POOL_SIZE).await
    }

    /// Opens the store at `url` with a pool of at most `pool_size` connections: a PostgreSQL
    /// backend's server connections (one more while change-feed subscribers listen), a SQLite
    /// file's read connections (its writer's is one more); a memory store has none.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    pub(crate) async fn open_pooled(url: &str, mode: Mode, pool_size: u32) -> CliResult<Self> {
        let label = redact(url.trim());
        match parse(url)? {
            Location::Sqlite(path) => {
                if mode != Mode::CreateIfMissing && !path.exists() {
                    return Err(CliError::failed(format!("no store at {}", path.display())));
                }
                let backend = SqliteBackend::builder(&path)
                    .read_only(mode == Mode::ReadOnly)
                    .read_connections(pool_size)
                    .open()
                    .await
                    .map_err(|e| CliError::context(format!("opening {}", path.display()), &e))?;
                Ok(Self::new(Pipeline::new(backend.clone()), label, Handle::Sqlite(backend)))
            }
            Location::Postgres { url: conn, schema } => {
                if mode != Mode::CreateIfMissing {
                    holds_a_store(&conn, schema.as_deref().unwrap_or("public"), &label).await?;
                }
                let mut builder = PostgresBackend::builder(conn).max_connections(pool_size);
                if let Some(schema) = schema {
                    builder = builder.schema(schema);
                }
                let backend =
                    builder.connect().await.map_err(|e| CliError::context(format!("connecting to {label}"), &e))?;
                Ok(Self::new(Pipeline::new(backend.clone()), label, Handle::Postgres(backend)))
            }
            Location::Memory => Ok(Self::new(Pipeline::new(MemoryBackend::new()), label, Handle::Memory)),
            other => Err(CliError::failed(format!("{other}: no backend for this store in this build"))),
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

pub(crate) use persist::store_url::redact;
