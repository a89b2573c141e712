//! What the command-line tests share: running the binary, a runtime for the library calls that
//! seed and read stores, temporary paths as arguments.

#![allow(dead_code)] // each test file uses its own part

use std::future::Future;
use std::path::Path;
use std::process::Output;

use assert_cmd::Command;

pub(crate) mod served;

/// The `persist` binary, without `PERSIST_URL` from the environment (the path Cargo gives
/// integration tests: `Command::cargo_bin` is deprecated in newer assert_cmd releases).
pub(crate) fn persist() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_persist"));
    command.env_remove("PERSIST_URL");
    command
}

/// Runs `persist ARGS`.
pub(crate) fn run(args: &[&str]) -> Output {
    persist().args(args).output().expect("the binary runs")
}

/// Runs `persist ARGS`, which must succeed without a panic; answers its stdout.
pub(crate) fn ok(args: &[&str]) -> String {
    let output = run(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "persist {args:?} failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Runs `future` on a runtime of its own.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// A temporary path as an argument.
pub(crate) fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// The PostgreSQL server of the tests: `$PERSIST_POSTGRES_URL`. Without it the test (`what`) is
/// skipped with a notice, except in CI, where it is required.
pub(crate) fn postgres_url(what: &str) -> Option<String> {
    match std::env::var("PERSIST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => panic!("PERSIST_POSTGRES_URL is required in CI"),
        Err(_) => {
            eprintln!("SKIPPED {what}: set PERSIST_POSTGRES_URL to run it");
            None
        }
    }
}

/// A schema of its own for one test, dropped when the test ends (even by a panic).
pub(crate) struct Schema {
    pub(crate) server: String,
    pub(crate) name: String,
}

impl Schema {
    pub(crate) fn new(server: String) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self { server, name: format!("persist_cli_test_{}_{nanos}", std::process::id()) }
    }

    pub(crate) fn url(&self) -> String {
        let separator = if self.server.contains('?') { '&' } else { '?' };
        format!("{}{separator}schema={}", self.server, self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        use sqlx::Connection;
        let (server, name) = (self.server.clone(), self.name.clone());
        block_on(async move {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&server).await {
                // A name this test made: persist_cli_test_ and digits.
                let statement = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                let _ = sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut conn).await;
                let _ = conn.close().await;
            }
        });
    }
}
