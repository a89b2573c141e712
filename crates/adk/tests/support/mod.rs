//! The stores the tests run on: SQLite in a temporary directory, and PostgreSQL.

#![allow(dead_code)] // Each test binary uses part of it.

use std::path::PathBuf;

use persist::Pipeline;

/// Where a store is, as a child process is told.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

impl Store {
    pub(crate) fn to_env(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite:{}", path.display()),
            Self::Postgres { url, schema } => format!("postgres:{schema}:{url}"),
        }
    }

    pub(crate) fn from_env(text: &str) -> Self {
        if let Some(path) = text.strip_prefix("sqlite:") {
            return Self::Sqlite(path.into());
        }
        let (schema, url) = text.strip_prefix("postgres:").and_then(|rest| rest.split_once(':')).expect("a store");
        Self::Postgres { url: url.into(), schema: schema.into() }
    }

    pub(crate) async fn open(&self) -> Pipeline {
        match self {
            Self::Sqlite(path) => Pipeline::new(persist::sqlite::SqliteBackend::open(path).await.expect("open")),
            Self::Postgres { url, schema } => Pipeline::new(
                persist::postgres::PostgresBackend::builder(url)
                    .schema(schema)
                    .max_connections(4)
                    .connect()
                    .await
                    .expect("connect"),
            ),
        }
    }
}

/// SQLite in `dir`, and PostgreSQL at `$PERSIST_POSTGRES_URL` in a fresh schema (required
/// when `CI` is set, skipped otherwise).
pub(crate) async fn stores(dir: &tempfile::TempDir, name: &str) -> Vec<Store> {
    let mut stores = vec![Store::Sqlite(dir.path().join(format!("{name}.db")))];
    let url =
        std::env::var("PERSIST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let schema = format!("persist_adk_{nanos:x}_{}", std::process::id());
    match persist::postgres::PostgresBackend::builder(&url).connect().await {
        Ok(backend) => {
            backend.close().await;
            stores.push(Store::Postgres { url, schema });
        }
        Err(error) if std::env::var_os("CI").is_some() => panic!("PostgreSQL at {url} is required in CI: {error}"),
        Err(error) => eprintln!("SKIPPED the PostgreSQL run: {error}; set PERSIST_POSTGRES_URL"),
    }
    stores
}
