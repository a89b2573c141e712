//! The pool against a real server: which connection is handed out, cancelled leases, closing.

use super::*;
use crate::error::map_sqlx;

#[test]
fn only_a_failed_connection_is_lost() {
    let io = map_sqlx("x", sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)));
    assert!(lost_connection(&io));
    assert!(lost_connection(&map_sqlx("x", sqlx::Error::Protocol("garbled".into()))));
    assert!(!lost_connection(&map_sqlx("x", sqlx::Error::RowNotFound)));
    assert!(!lost_connection(&PersistError::temporary("raced")));
    assert!(!lost_connection(&PersistError::invalid("content", "too deep")));
}

/// The test server's options, or `None` (outside CI) when there is none; in CI
/// (`CI` set) an unreachable server fails the test, as the integration tests do.
async fn server() -> Option<PgConnectOptions> {
    let url =
        std::env::var("PERSIST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let options: PgConnectOptions = url.parse().expect("a valid PERSIST_POSTGRES_URL");
    match tokio::time::timeout(Duration::from_secs(5), options.connect()).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Some(options)
        }
        failure if std::env::var_os("CI").is_some() => panic!("PostgreSQL is required in CI: {failure:?}"),
        _ => {
            eprintln!("SKIPPED: no PostgreSQL at {url} (PERSIST_POSTGRES_URL)");
            None
        }
    }
}

async fn pid(conn: &mut PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(conn).await.unwrap()
}

async fn used(pool: &Pool) -> i32 {
    let mut lease = pool.acquire().await.unwrap();
    let pid = pid(&mut lease).await;
    lease.release(&Ok(()));
    pid
}

#[tokio::test]
async fn the_connection_released_last_is_handed_out_next() {
    let Some(options) = server().await else { return };
    let pool = Pool::new(options, Sessions::Direct, 4, 0, Duration::from_secs(5), Duration::from_secs(5));
    // A burst opens three connections...
    let mut leases = Vec::new();
    for _ in 0..3 {
        leases.push(pool.acquire().await.unwrap());
    }
    let mut pids = Vec::new();
    for lease in &mut leases {
        pids.push(pid(lease).await);
    }
    for lease in leases {
        lease.release(&Ok(()));
    }
    assert_eq!(pool.open_connections(), 3);
    // ...then a lone caller keeps getting the one released last, not each in turn.
    for _ in 0..5 {
        assert_eq!(used(&pool).await, pids[2]);
    }
    assert_eq!(pool.open_connections(), 3);
    pool.close().await;
    assert_eq!(pool.open_connections(), 0);
}

#[tokio::test]
async fn a_lease_dropped_mid_statement_keeps_its_slot_until_the_server_is_done() {
    let Some(options) = server().await else { return };
    let pool = Pool::new(options.clone(), Sessions::Direct, 1, 0, Duration::from_secs(5), Duration::from_secs(5));
    let mut lease = pool.acquire().await.unwrap();
    let first = pid(&mut lease).await;
    // A write cancelled mid-statement: the lease is dropped while the server still works.
    let slow = sqlx::query("SELECT pg_sleep(0.4)").execute(&mut *lease);
    assert!(tokio::time::timeout(Duration::from_millis(100), slow).await.is_err());
    drop(lease);
    // Its slot stays taken while the server finishes the statement: no second connection.
    assert_eq!(pool.open_connections(), 1);
    assert_eq!(pool.inner.permits.available_permits(), 0, "the slot is freed only once the server is done");
    // Then the same connection comes back clean, ready for the next statement.
    assert_eq!(used(&pool).await, first);
    assert_eq!(pool.open_connections(), 1);
    pool.close().await;
}

#[tokio::test]
async fn a_connection_whose_abandoned_statement_failed_on_the_server_comes_back_too() {
    let Some(options) = server().await else { return };
    // The server cancels the statement itself (57014) after 100 ms: an error, not a result.
    let options = options.options([("statement_timeout", "100ms")]);
    let pool = Pool::new(options, Sessions::Direct, 1, 0, Duration::from_secs(5), Duration::from_secs(5));
    let mut lease = pool.acquire().await.unwrap();
    let first = pid(&mut lease).await;
    let slow = sqlx::query("SELECT pg_sleep(2)").execute(&mut *lease);
    assert!(tokio::time::timeout(Duration::from_millis(20), slow).await.is_err());
    drop(lease);
    assert_eq!(used(&pool).await, first, "drained past the server's error, reused clean");
    pool.close().await;
}

#[tokio::test]
async fn a_transaction_left_open_by_a_cancelled_lease_is_rolled_back() {
    let Some(options) = server().await else { return };
    let pool = Pool::new(options.clone(), Sessions::Direct, 1, 0, Duration::from_secs(5), Duration::from_secs(5));
    let mut lease = pool.acquire().await.unwrap();
    sqlx::raw_sql("BEGIN; CREATE TEMP TABLE left_open (x int)").execute(&mut *lease).await.unwrap();
    drop(lease);
    let mut lease = pool.acquire().await.unwrap();
    let gone: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('pg_temp.left_open')::text").fetch_one(&mut *lease).await.unwrap();
    assert_eq!(gone, None, "the open transaction was rolled back");
    lease.release(&Ok(()));
    pool.close().await;
}

#[tokio::test]
async fn a_connection_that_does_not_come_back_in_time_is_closed() {
    let Some(options) = server().await else { return };
    let pool = Pool::new(options.clone(), Sessions::Direct, 1, 0, Duration::from_secs(5), Duration::from_millis(100));
    let mut lease = pool.acquire().await.unwrap();
    let first = pid(&mut lease).await;
    let slow = sqlx::query("SELECT pg_sleep(2)").execute(&mut *lease);
    assert!(tokio::time::timeout(Duration::from_millis(50), slow).await.is_err());
    drop(lease);
    assert_ne!(used(&pool).await, first, "given up on, the connection was closed");
    pool.close().await;
}

#[tokio::test]
async fn a_connection_the_server_dropped_is_replaced() {
    let Some(options) = server().await else { return };
    let pool = Pool::new(options.clone(), Sessions::Direct, 2, 0, Duration::from_secs(5), Duration::from_secs(5));
    let first = used(&pool).await;
    let mut admin = options.connect().await.unwrap();
    let _: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)").bind(first).fetch_one(&mut admin).await.unwrap();
    // The write on the dead connection fails as temporary and gives the connection up...
    let mut lease = pool.acquire().await.unwrap();
    let failed = sqlx::query("SELECT 1").execute(&mut *lease).await.map_err(|e| map_sqlx("probing", e));
    let error = failed.as_ref().expect_err("the server closed this connection");
    assert!(error.is_temporary(), "{error}");
    lease.release(&failed);
    // ...so the retry gets a live one.
    assert_ne!(used(&pool).await, first);
    pool.close().await;
}

#[tokio::test]
async fn a_waiter_gets_the_connection_given_back_and_times_out_without_one() {
    let Some(options) = server().await else { return };
    let pool = Pool::new(options, Sessions::Direct, 1, 0, Duration::from_millis(200), Duration::from_secs(5));
    let mut held = pool.acquire().await.unwrap();
    let holder = pid(&mut held).await;
    let error = pool.acquire().await.err().expect("no connection is free");
    assert!(error.is_temporary(), "{error}");
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move { used(&pool).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.release(&Ok(()));
    assert_eq!(waiter.await.unwrap(), holder);
    assert_eq!(pool.open_connections(), 1);
    pool.close().await;
}

#[tokio::test]
async fn close_waits_for_connections_in_use() {
    let Some(options) = server().await else { return };
    let pool = Pool::new(options, Sessions::Direct, 2, 1, Duration::from_secs(5), Duration::from_secs(5));
    pool.fill().await.unwrap();
    assert_eq!(pool.open_connections(), 1);
    let lease = pool.acquire().await.unwrap();
    let closing = tokio::spawn({
        let pool = pool.clone();
        async move { pool.close().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!closing.is_finished(), "close returned with a connection still in use");
    lease.release(&Ok(()));
    closing.await.unwrap();
    assert_eq!(pool.open_connections(), 0);
    assert!(pool.acquire().await.is_err());
}

#[test]
fn a_closed_pool_refuses_at_once() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // Nothing listens on port 1: nothing is connected before the pool refuses.
        let options = PgConnectOptions::new().host("127.0.0.1").port(1);
        let pool = Pool::new(options, Sessions::Direct, 2, 0, Duration::from_secs(5), Duration::from_secs(5));
        pool.close().await;
        assert_eq!(pool.open_connections(), 0);
        let error = pool.acquire().await.err().expect("refused");
        assert!(error.to_string().contains("closed"), "{error}");
    });
}
