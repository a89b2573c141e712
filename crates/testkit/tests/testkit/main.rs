//! The fresh stores the conformance suites take are fresh: a PostgreSQL schema a test used and
//! gave back holds, once reset, what a newly migrated one holds; a SQLite copy holds what a new
//! file holds.

use persist::args::Add;
use persist::postgres::PostgresBackend;
use persist::sqlite::SqliteBackend;
use persist::{Content, Pipeline, Role, ThreadId};
use persist_testkit::{schemas, sqlite};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

fn url() -> String {
    std::env::var("PERSIST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A connection to the server at `url`; `None` (the test skipped, with a notice) without one,
/// outside CI: in CI the server is required.
async fn server(url: &str) -> Option<PgConnection> {
    match PgConnection::connect(url).await {
        Ok(conn) => Some(conn),
        Err(error) => {
            assert!(std::env::var_os("CI").is_none(), "PostgreSQL at {url} is required in CI: {error}");
            eprintln!("SKIPPED: no PostgreSQL at {url}");
            None
        }
    }
}

/// Every table of `schema` but the migrations' own, its rows as JSON in a stable order, and
/// where each sequence stands (restarted: never called).
async fn contents(conn: &mut PgConnection, schema: &str) -> Vec<(String, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 AND tablename <> '_sqlx_migrations' \
          ORDER BY tablename",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut contents = Vec::new();
    for table in tables {
        let rows = format!("SELECT coalesce(json_agg(t ORDER BY t::text), '[]')::text FROM \"{schema}\".\"{table}\" t");
        contents.push((table, sqlx::query_scalar(AssertSqlSafe(rows)).fetch_one(&mut *conn).await.unwrap()));
    }
    let sequences: Vec<(String, String)> = sqlx::query_as(
        "SELECT 'sequence ' || sequencename, coalesce(last_value::text, 'never called') FROM pg_sequences \
          WHERE schemaname = $1 ORDER BY sequencename",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    contents.extend(sequences);
    contents
}

/// A store's writes: messages, feed events, the feed's head moved.
async fn write_to(store: Pipeline) {
    let thread = ThreadId::new("t").unwrap();
    for text in ["one", "two", "three"] {
        store.add(Add::new(thread.clone(), Role::User, Content::text(text))).await.unwrap();
    }
}

#[tokio::test]
async fn a_schema_given_back_is_reset_to_what_the_migrations_leave() {
    let url = url();
    let Some(mut conn) = server(&url).await else { return };
    let used = schemas::take(&url).await;
    let store = PostgresBackend::builder(&url).schema(used.clone()).connect().await.unwrap();
    write_to(Pipeline::new(store.clone())).await;
    store.close().await;
    drop(store);
    assert_ne!(contents(&mut conn, &used).await.iter().filter(|(_, rows)| rows != "[]").count(), 0);
    schemas::give_back(&url, used.clone()).await;

    // Given back: the next take is a schema in the state a fresh one is in (this one, reset, or
    // the one the pool migrated to learn that state).
    let reused = schemas::take(&url).await;
    assert_eq!(reused, used, "the schema given back last is taken first");
    let fresh = schemas::new_name();
    drop(PostgresBackend::builder(&url).schema(fresh.clone()).connect().await.unwrap());
    assert_eq!(contents(&mut conn, &reused).await, contents(&mut conn, &fresh).await);
    // And it works as a store: the writes of a new test begin at the beginning.
    let store = Pipeline::new(PostgresBackend::builder(&url).schema(reused.clone()).connect().await.unwrap());
    write_to(store.clone()).await;
    let thread = store.get_thread(persist::read::GetThread::new(ThreadId::new("t").unwrap())).await.unwrap();
    assert_eq!(thread.map(|thread| thread.message_count), Some(3));
    drop(store);
    schemas::give_back(&url, reused).await;
    schemas::drop_schema(&url, &fresh).await;
    conn.close().await.unwrap();
}

/// A role that is no superuser cannot turn the store's triggers off for the cheap reset (rows
/// deleted with `session_replication_role = replica`): its schemas are reset by `TRUNCATE`, to
/// the same fresh state.
#[tokio::test]
async fn a_schema_of_a_role_without_superuser_is_reset_by_truncate() {
    let url = url();
    let Some(mut conn) = server(&url).await else { return };
    let Some(plain_url) =
        url.contains("://postgres@").then(|| url.replacen("://postgres@", "://persist_testkit_plain@", 1))
    else {
        eprintln!("SKIPPED: {url} does not connect as postgres, the role this test makes a plain role with");
        return;
    };
    let database: String = sqlx::query_scalar("SELECT current_database()::text").fetch_one(&mut conn).await.unwrap();
    let make_role = format!(
        "DO $$ BEGIN \
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'persist_testkit_plain') THEN \
             CREATE ROLE persist_testkit_plain LOGIN NOSUPERUSER; \
           END IF; \
         END $$; GRANT CREATE ON DATABASE \"{database}\" TO persist_testkit_plain;"
    );
    sqlx::raw_sql(AssertSqlSafe(make_role)).execute(&mut conn).await.unwrap();
    let mut plain = PgConnection::connect(&plain_url).await.unwrap();
    let refused =
        sqlx::raw_sql("BEGIN; SET LOCAL session_replication_role = replica; ROLLBACK;").execute(&mut plain).await;
    assert!(refused.is_err(), "the plain role may not turn triggers off: the DELETE reset is not open to it");
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut plain).await;

    let used = schemas::take(&plain_url).await;
    let store = PostgresBackend::builder(&plain_url).schema(used.clone()).connect().await.unwrap();
    write_to(Pipeline::new(store.clone())).await;
    store.close().await;
    drop(store);
    schemas::give_back(&plain_url, used.clone()).await;
    let reused = schemas::take(&plain_url).await;
    assert_eq!(reused, used, "reset (by TRUNCATE) and kept, not dropped");
    let fresh = schemas::new_name();
    drop(PostgresBackend::builder(&plain_url).schema(fresh.clone()).connect().await.unwrap());
    assert_eq!(contents(&mut plain, &reused).await, contents(&mut plain, &fresh).await);
    for schema in [reused, fresh] {
        schemas::drop_schema(&plain_url, &schema).await;
    }
    plain.close().await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_schema_never_opened_is_dropped_not_kept() {
    let url = url();
    let Some(mut conn) = server(&url).await else { return };
    let name = schemas::new_name();
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA \"{name}\""))).execute(&mut conn).await.unwrap();
    schemas::give_back(&url, name.clone()).await;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(&name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!exists, "a schema that is no store is dropped");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_sqlite_copy_is_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let (copy, new) = (dir.path().join("copy.db"), dir.path().join("new.db"));
    sqlite::fresh(&copy).await.unwrap();
    assert!(sqlite::fresh(&copy).await.is_err(), "a fresh store is a new file");
    let new_store = SqliteBackend::open(&new).await.unwrap();
    let copied = SqliteBackend::open(&copy).await.unwrap();
    write_to(Pipeline::new(copied.clone())).await;
    write_to(Pipeline::new(new_store.clone())).await;
    for store in [&new_store, &copied] {
        let thread = Pipeline::new(store.clone())
            .get_thread(persist::read::GetThread::new(ThreadId::new("t").unwrap()))
            .await
            .unwrap();
        assert_eq!(thread.map(|thread| thread.message_count), Some(3));
    }
    new_store.close().await;
    copied.close().await;
    // The same schema, the same migrations applied.
    let schema = |path: std::path::PathBuf| async move {
        let url = format!("sqlite:{}", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let objects: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT name, sql FROM sqlite_schema ORDER BY name").fetch_all(&mut conn).await.unwrap();
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        (objects, applied)
    };
    assert_eq!(schema(copy).await, schema(new).await);
}

#[tokio::test]
async fn a_dead_process_schemas_are_dropped_at_once_here_and_after_an_hour_from_elsewhere() {
    let url = url();
    let Some(mut conn) = server(&url).await else { return };
    // persist_pool_<machine>_<pid>_<id>; no process has the id 9999999 (Linux's are at most 2^22),
    // and seven digits keep the name within PostgreSQL's 63 bytes.
    let ours = schemas::new_name();
    let machine = ours.split('_').nth(2).unwrap();
    let elsewhere = if machine == "00000000" { "00000001" } else { "00000000" };
    let dead = 9_999_999;
    let id = || uuid::Uuid::now_v7().simple().to_string();
    let dead_here = format!("persist_pool_{machine}_{dead}_{}", id());
    let dead_elsewhere = format!("persist_pool_{elsewhere}_{dead}_{}", id());
    let living_here = format!("persist_pool_{machine}_{}_{}", std::process::id(), id());
    for name in [&dead_here, &dead_elsewhere, &living_here] {
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA \"{name}\""))).execute(&mut conn).await.unwrap();
    }
    schemas::sweep(&url).await;
    let mut left = Vec::new();
    for name in [&dead_here, &dead_elsewhere, &living_here] {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        left.push(exists);
        schemas::drop_schema(&url, name).await;
    }
    assert_eq!(
        left,
        [false, true, true],
        "dropped: this machine's dead process's; kept: another machine's (for an hour), a living process's"
    );
    conn.close().await.unwrap();
}
