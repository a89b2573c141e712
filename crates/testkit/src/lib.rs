//! What the tests share (the adapters', `persist-rig`, `persist-adk`, `persist-swiftide`, and
//! recall's): the stores a test runs on, SQLite in a temporary directory and PostgreSQL in a fresh schema,
//! and how a child process the test starts is told which store to open.
//!
//! PostgreSQL is at `$PERSIST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! it is required when `CI` is set, and skipped with a note otherwise.
//!
//! [`schemas`] and [`sqlite`]: the fresh store per test that the conformance suites take, a
//! PostgreSQL schema reset and reused, a SQLite file copied from one migrated once, rather than
//! migrated anew each time. [`FlakyEmbedder`]: an embedder a test takes down and up again.
//! [`prepare_capture`]: for tests that capture `tracing` events on their own thread.

use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use persist::Pipeline;

mod capture;
mod embedder;
pub mod schemas;
pub mod sqlite;

pub use self::capture::prepare_capture;
pub use self::embedder::FlakyEmbedder;

/// The variable a child process finds its store in ([`Store::to_env`]).
const STORE_VARIABLE: &str = "PERSIST_TEST_STORE";

/// The variable a child process finds its mode in.
const MODE_VARIABLE: &str = "PERSIST_TEST_CHILD";

/// Where a store is, as a child process is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A schema of a PostgreSQL database.
    Postgres {
        /// The database.
        url: String,
        /// The schema (created by the first open).
        schema: String,
    },
}

impl Store {
    /// The store as one line of text, for a child's environment.
    pub fn to_env(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite:{}", path.display()),
            Self::Postgres { url, schema } => format!("postgres:{schema}:{url}"),
        }
    }

    /// The store [`to_env`](Self::to_env) wrote; `None` for other text.
    pub fn from_env(text: &str) -> Option<Self> {
        if let Some(path) = text.strip_prefix("sqlite:") {
            return Some(Self::Sqlite(path.into()));
        }
        let (schema, url) = text.strip_prefix("postgres:")?.split_once(':')?;
        Some(Self::Postgres { url: url.into(), schema: schema.into() })
    }

    /// A pipeline on the store.
    ///
    /// # Panics
    ///
    /// When the store does not open: a test's failure.
    pub async fn open(&self) -> Pipeline {
        match self {
            Self::Sqlite(path) => Pipeline::new(persist::sqlite::SqliteBackend::open(path).await.expect("open SQLite")),
            Self::Postgres { url, schema } => Pipeline::new(
                persist::postgres::PostgresBackend::builder(url)
                    .schema(schema)
                    .max_connections(4)
                    .connect()
                    .await
                    .expect("connect to PostgreSQL"),
            ),
        }
    }

    /// Runs the test `test` of this test binary again, in a child process told this store
    /// and `mode` (see [`child`]), and waits for it; the child's output is the test's.
    ///
    /// # Panics
    ///
    /// When the child cannot be started.
    pub fn run_child(&self, test: &str, mode: &str) -> ExitStatus {
        let exe = std::env::current_exe().expect("the test binary");
        Command::new(exe)
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(STORE_VARIABLE, self.to_env())
            .env(MODE_VARIABLE, mode)
            .status()
            .expect("start a child process")
    }
}

/// In a child process [`Store::run_child`] started: the mode it was given and its store;
/// `None` in the test run itself (the child's test then does nothing).
pub fn child() -> Option<(String, Store)> {
    let mode = std::env::var(MODE_VARIABLE).ok()?;
    let store = Store::from_env(&std::env::var(STORE_VARIABLE).ok()?)?;
    Some((mode, store))
}

/// Runs `check` (whether the servers a suite's factory needs are there: a connection each)
/// until it first succeeds in this process, tracked by `reached`: after that, once a process
/// is enough, not once a check.
pub async fn until_reached<F, E>(reached: &std::sync::atomic::AtomicBool, check: impl FnOnce() -> F) -> Result<(), E>
where
    F: std::future::Future<Output = Result<(), E>>,
{
    use std::sync::atomic::Ordering;
    if !reached.load(Ordering::Relaxed) {
        check().await?;
        reached.store(true, Ordering::Relaxed);
    }
    Ok(())
}

/// SQLite in `dir` (file `name.db`), and PostgreSQL in a fresh schema ([`schemas::new_name`]:
/// the first test process on the machine after this one is gone drops it, see [`schemas::sweep`]).
///
/// # Panics
///
/// When `CI` is set and PostgreSQL cannot be reached.
pub async fn stores(dir: &tempfile::TempDir, name: &str) -> Vec<Store> {
    let mut stores = vec![Store::Sqlite(dir.path().join(format!("{name}.db")))];
    let url =
        std::env::var("PERSIST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = schemas::new_name();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_crosses_to_a_child_as_it_was() {
        for store in [
            Store::Sqlite("/tmp/a b/c.db".into()),
            Store::Postgres { url: "postgres://u@h:5432/db?x=1".into(), schema: "s_1".into() },
        ] {
            assert_eq!(Store::from_env(&store.to_env()), Some(store));
        }
        assert_eq!(Store::from_env("mysql:x"), None);
    }
}
