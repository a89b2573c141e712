//! Through a failover (`.ci/patroni`: etcd, three Patroni nodes with synchronous replication,
//! HAProxy sending connections to the primary), with every node also named as a standby for
//! reads: writers retry what failed by its idempotency key, and each reads its own write back
//! at once, from a standby or the primary, before and after the primary is killed.

use std::time::{Duration, Instant};

use persist::args::Add;
use persist::postgres::PostgresBackend;
use persist::read::ListMessages;
use persist::{Content, IdempotencyKey, PersistError, Pipeline, Role, ThreadId};

/// The cluster's endpoint and its nodes, or `None` outside CI when it does not answer.
async fn cluster() -> Option<(String, Vec<String>)> {
    let url = std::env::var("PERSIST_PATRONI_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5450/test".into());
    let nodes = (1..=3).map(|n| format!("postgres://postgres@127.0.0.1:545{n}/test")).collect();
    match PostgresBackend::builder(url.clone()).feed(None).connect().await {
        Ok(store) => {
            store.close().await;
            Some((url, nodes))
        }
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!("the cluster .ci/patroni starts is required in CI: {error}")
        }
        Err(error) => {
            eprintln!("SKIPPED reads through a failover: no cluster at {url} ({error}); run .ci/patroni");
            None
        }
    }
}

/// Runs `.ci/patroni ARGS`; answers what it printed.
fn patroni(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/patroni");
    let output = std::process::Command::new("bash").arg(script).args(args).output().unwrap();
    assert!(output.status.success(), ".ci/patroni {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The primary's node number, when there is one.
fn primary() -> Option<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/patroni");
    let output = std::process::Command::new("bash").args([script, "primary"]).output().unwrap();
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_read_their_writes_from_the_standbys_through_a_failover() {
    let Some((url, nodes)) = cluster().await else { return };
    patroni(&["healthy"]);
    let schema = crate::support::schema_name();
    let builder = PostgresBackend::builder(url.clone()).schema(schema.clone()).acquire_timeout(Duration::from_secs(2));
    let store = nodes.iter().fold(builder, |builder, node| builder.replica(node.clone())).connect().await.unwrap();
    let started = Instant::now();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (pipeline, stop) = (Pipeline::new(store.clone()), stop.clone());
            tokio::spawn(async move {
                let thread = ThreadId::new(format!("writer-{w}")).unwrap();
                let (mut acked, mut failed) = (0_usize, 0_usize);
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let key = format!("w{w}-{acked}");
                    let add = Add::new(thread.clone(), Role::User, Content::text(&key))
                        .with_idempotency_key(IdempotencyKey::new(key.clone()).unwrap());
                    let since = Instant::now();
                    loop {
                        match pipeline.add(add.clone()).await {
                            Ok(_) => break,
                            Err(error @ PersistError::Temporary { .. }) => {
                                failed += 1;
                                assert!(since.elapsed() < Duration::from_secs(90), "w{w}: {error}");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(error) => panic!("w{w} {key}: {error}"),
                        }
                    }
                    acked += 1;
                    // Its own write, read back at once (a standby's answer only once it has it).
                    // Every page: a writer makes as many writes as the machine's speed allows.
                    let (mut texts, mut query) = (Vec::new(), ListMessages::new(thread.clone()).with_limit(1000));
                    loop {
                        match pipeline.list(query.clone()).await {
                            Ok(page) => {
                                texts.extend(page.items.iter().map(|message| message.content.to_text()));
                                match query.next_page(&page) {
                                    Some(next) => query = next,
                                    None => break,
                                }
                            }
                            Err(PersistError::Temporary { .. }) => tokio::time::sleep(Duration::from_millis(100)).await,
                            Err(error) => panic!("w{w} reading: {error}"),
                        }
                    }
                    let expected: Vec<String> = (0..acked).map(|n| format!("w{w}-{n}")).collect();
                    assert_eq!(texts, expected, "w{w} reads every write it made, once, in order");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (acked, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = primary().expect("a primary");
    let killed_at = started.elapsed();
    patroni(&["kill", &killed]);
    // Writes flow again on the new primary, then the old one comes back as a standby.
    let promoted = loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(now) = primary().filter(|now| *now != killed) {
            break now;
        }
        assert!(started.elapsed() - killed_at < Duration::from_secs(60), "no new primary within 60 s");
    };
    patroni(&["start", &killed]);
    patroni(&["healthy"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut acked, mut failed) = (0, 0);
    for writer in writers {
        let (theirs, failures) = writer.await.unwrap();
        acked += theirs;
        failed += failures;
    }
    let stats = store.replica_stats();
    eprintln!(
        "node {killed} killed at {killed_at:?}, node {promoted} primary after; {acked} writes read back at once \
         ({failed} attempts failed and were sent again); reads: {stats:?}"
    );
    assert!(stats.replica + stats.waited > 0, "no read was a standby's: {stats:?}");
    store.close().await;
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    // Test-made names only: persist_test_ + hex.
    let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop)).execute(&mut conn).await.unwrap();
}
