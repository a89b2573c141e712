//! PostgreSQL schemas for suites that want a fresh store per test (the conformance suite makes
//! one per check, hundreds a run): a schema a test is done with is reset to the state the
//! migrations leave and handed to the next test, instead of being dropped and migrated anew.
//!
//! Migrating a schema (two dozen tables, functions and triggers, each migration in a
//! transaction of its own) and dropping it cost the server most of a conformance check's time;
//! a reset is one transaction that deletes the test's rows. What a test finds is the same either way: every table empty but
//! for the rows the migrations themselves write (the feed's, search's and format's state),
//! captured from a schema migrated for the purpose, and identities restarted.
//!
//! ```no_run
//! # async fn check() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let url = "postgres://postgres@127.0.0.1:5432/test";
//! let schema = persist_testkit::schemas::take(url).await; // new (the first open migrates) or reset
//! // … open stores on `schema`, test, drop them …
//! persist_testkit::schemas::give_back(url, schema).await; // reset for the next test, or dropped
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use persist::postgres::PostgresBackend;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// A test's error.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The migrations' own rows, by table, as the JSON `json_agg` answers: what a reset puts back.
#[derive(Debug)]
struct Seed {
    rows: Vec<(String, String)>,
    migrations: i64,
}

/// Per database URL: the schemas free for a test, and the seed once captured.
#[derive(Debug, Default)]
struct Pool {
    free: Vec<String>,
    seed: Option<std::sync::Arc<Seed>>,
    /// Whether the schemas finished processes left were dropped.
    swept: bool,
}

fn pools() -> &'static Mutex<HashMap<String, Pool>> {
    static POOLS: OnceLock<Mutex<HashMap<String, Pool>>> = OnceLock::new();
    POOLS.get_or_init(Mutex::default)
}

/// What the names of the schemas handed out start with; this machine's tag and the process id
/// follow, so the schemas a finished test process left free can be told apart from those of a
/// running one, and this machine's from those of another sharing the server.
const PREFIX: &str = "persist_pool_";

/// A new schema name: the prefix, this machine's tag, this process's id and hex (safe to quote
/// into SQL).
pub fn new_name() -> String {
    format!("{PREFIX}{}_{}_{}", machine(), std::process::id(), uuid::Uuid::now_v7().simple())
}

/// This machine, as 8 hex digits: its host name and the id of its boot, hashed (FNV-1a). Two
/// machines sharing a server tell their schemas apart by it, and a process id means something
/// only on the machine (and boot) that tagged it.
fn machine() -> &'static str {
    static MACHINE: OnceLock<String> = OnceLock::new();
    MACHINE.get_or_init(|| {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let host = Some(read("/proc/sys/kernel/hostname")).filter(|host| !host.trim().is_empty());
        let host = host.unwrap_or_else(|| std::env::var("HOSTNAME").unwrap_or_default());
        let seen = format!("{}\n{}", host.trim(), read("/proc/sys/kernel/random/boot_id").trim());
        let hash = seen.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
        format!("{hash:08x}")
    })
}

/// A schema of the database at `url` for one test: one a test gave back (reset to the state its
/// migrations leave), else a new name, which the first open creates and migrates.
///
/// The first call of a process for a database drops the schemas that processes no longer
/// running left there ([`sweep`]; the free ones of a finished run are never dropped by it).
pub async fn take(url: &str) -> String {
    let first = {
        let mut pools = pools().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let pool = pools.entry(url.to_owned()).or_default();
        if let Some(schema) = pool.free.pop() {
            return schema;
        }
        !std::mem::replace(&mut pool.swept, true)
    };
    if first {
        sweep(url).await;
    }
    new_name()
}

/// Drops the schemas of `url` named by [`new_name`] for a process that is no longer running:
/// at once when this machine named them, after an hour when another did (a test process on
/// another machine sharing the server keeps its schemas for an hour at least; its process ids
/// mean nothing here). Left alone where `/proc` cannot tell (outside Linux).
pub async fn sweep(url: &str) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(mut conn) = PgConnection::connect(url).await else { return };
    let like = format!("{PREFIX}%");
    let names: Vec<String> = sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1")
        .bind(like)
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
    let _ = conn.close().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    let hour_ago = now.saturating_sub(3600);
    for name in names {
        // `<machine>_<pid>_<id>`, or `<pid>_<id>` as names were before machines were told apart.
        let parts: Vec<&str> = name[PREFIX.len()..].split('_').collect();
        let (here, pid, id) = match parts[..] {
            [tag, pid, id] => (tag == machine(), pid, id),
            [pid, id] => (false, pid, id),
            _ => continue,
        };
        let gone = pid.parse::<u32>().is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
        let made = uuid::Uuid::parse_str(id).ok().and_then(|id| id.get_timestamp()).map(|at| at.to_unix().0);
        if gone && (here || made.is_some_and(|made| made < hour_ago)) {
            drop_schema(url, &name).await;
        }
    }
}

/// Hands `schema` back once no store of the test uses it: reset for the next test, or dropped
/// when it cannot be (a schema the test never opened, a table it left locked, a server gone).
pub async fn give_back(url: &str, schema: String) {
    match reset(url, &schema).await {
        Ok(true) => {
            let mut pools = pools().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            pools.entry(url.to_owned()).or_default().free.push(schema);
        }
        Ok(false) | Err(_) => drop_schema(url, &schema).await,
    }
}

/// Drops `schema` (test-made names only).
pub async fn drop_schema(url: &str, schema: &str) {
    if let Ok(mut conn) = PgConnection::connect(url).await {
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        let _ = sqlx::raw_sql(AssertSqlSafe(drop)).execute(&mut conn).await;
        let _ = conn.close().await;
    }
}

/// Empties `schema`'s tables and puts the migrations' rows back, in one transaction; `false`
/// when it is not a store this build migrated (never opened, or migrated otherwise).
async fn reset(url: &str, schema: &str) -> Result<bool, BoxError> {
    let seed = seed(url).await?;
    let mut conn = PgConnection::connect(url).await?;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY tablename")
            .bind(schema)
            .fetch_all(&mut conn)
            .await?;
    if !tables.iter().any(|table| table == "_sqlx_migrations") {
        conn.close().await?;
        return Ok(false);
    }
    let applied = format!("SELECT count(*) FROM \"{schema}\"._sqlx_migrations WHERE success");
    let applied: i64 = sqlx::query_scalar(AssertSqlSafe(applied)).fetch_one(&mut conn).await?;
    if applied != seed.migrations {
        conn.close().await?;
        return Ok(false);
    }
    let emptied: Vec<String> = tables
        .iter()
        .filter(|table| *table != "_sqlx_migrations")
        .map(|table| format!("\"{schema}\".\"{table}\""))
        .collect();
    let sequences: Vec<String> =
        sqlx::query_scalar("SELECT sequencename::text FROM pg_sequences WHERE schemaname = $1")
            .bind(schema)
            .fetch_all(&mut conn)
            .await?;
    // The seed's rows, put back as the migrations wrote them.
    let mut seed_rows = String::new();
    for (table, rows) in &seed.rows {
        let rows = rows.replace('\'', "''");
        seed_rows.push_str(&format!(
            " INSERT INTO \"{schema}\".\"{table}\" \
              SELECT * FROM json_populate_recordset(NULL::\"{schema}\".\"{table}\", '{rows}'::json);"
        ));
    }
    // A store's handles are gone, but a connection of theirs may still be closing: wait for
    // its locks a while, then give up (the schema is dropped instead).
    //
    // A test leaves a few rows: deleting them costs the server a few milliseconds, where
    // TRUNCATE makes new files for every table and index and syncs them at commit (170–280 ms
    // a schema, most of a conformance check's time). Triggers are off meanwhile (replica
    // role: the store's feed triggers must not fire, and no foreign key is checked), which
    // takes a superuser; otherwise, TRUNCATE.
    let mut delete =
        String::from("BEGIN; SET LOCAL lock_timeout = '5s'; SET LOCAL session_replication_role = replica;");
    for table in &emptied {
        delete.push_str(&format!(" DELETE FROM {table};"));
    }
    for sequence in &sequences {
        delete.push_str(&format!(" ALTER SEQUENCE \"{schema}\".\"{sequence}\" RESTART;"));
    }
    delete.push_str(&seed_rows);
    delete.push_str(" COMMIT;");
    let truncate = format!(
        "BEGIN; SET LOCAL lock_timeout = '5s'; TRUNCATE {} RESTART IDENTITY;{seed_rows} COMMIT;",
        emptied.join(", ")
    );
    let mut outcome = Ok(false);
    for sql in [delete, truncate] {
        let run = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn);
        outcome = match tokio::time::timeout(Duration::from_secs(10), run).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(error)) => {
                // The failed transaction is rolled back before the other way is tried.
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
                Err(error.into())
            }
            Err(_) => break,
        };
        if outcome.is_ok() {
            break;
        }
    }
    let _ = conn.close().await;
    outcome
}

/// The rows a freshly migrated store holds, captured once per database from a schema migrated
/// for the purpose (which then joins the free ones).
async fn seed(url: &str) -> Result<std::sync::Arc<Seed>, BoxError> {
    if let Some(seed) =
        pools().lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(url).and_then(|p| p.seed.clone())
    {
        return Ok(seed);
    }
    let schema = new_name();
    drop(PostgresBackend::builder(url).schema(schema.clone()).max_connections(1).connect().await?);
    let mut conn = PgConnection::connect(url).await?;
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY tablename")
            .bind(&schema)
            .fetch_all(&mut conn)
            .await?;
    let mut rows = Vec::new();
    for table in tables.iter().filter(|table| *table != "_sqlx_migrations") {
        let select = format!("SELECT json_agg(t)::text FROM \"{schema}\".\"{table}\" t");
        let json: Option<String> = sqlx::query_scalar(AssertSqlSafe(select)).fetch_one(&mut conn).await?;
        rows.extend(json.map(|json| (table.clone(), json)));
    }
    let applied = format!("SELECT count(*) FROM \"{schema}\"._sqlx_migrations WHERE success");
    let migrations: i64 = sqlx::query_scalar(AssertSqlSafe(applied)).fetch_one(&mut conn).await?;
    conn.close().await?;
    let seed = std::sync::Arc::new(Seed { rows, migrations });
    let mut pools = pools().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let pool = pools.entry(url.to_owned()).or_default();
    pool.free.push(schema);
    Ok(pool.seed.get_or_insert(seed).clone())
}
