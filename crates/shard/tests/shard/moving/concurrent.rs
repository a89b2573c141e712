//! Writes during a move: none lost or written twice, in memory, across PostgreSQL, SQLite to PostgreSQL.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use persist::args::Add;
use persist::postgres::PostgresBackend;
use persist::sqlite::SqliteBackend;
use persist::{Content, PersistError, Pipeline, Role};

use super::{Stores, TTL, ctx, id, options, seed, snapshot, tenant};
use crate::support::{DATABASES, database_url, databases, drop_schema, drop_shard_schemas, schema_name};

/// Writers on instances of their own append to their threads while the tenant moves, retrying
/// refused writes; every acknowledged message is then on the new shard once, the old shard
/// holds nothing, and writes were refused for less than `max_switch`.
async fn writes_during_a_move_are_all_kept(stores: &Stores) {
    let app = Pipeline::new(stores.instance());
    seed(&app, "acme", 3, 3).await;
    let shards = stores.instance();
    let acme = tenant("acme");
    let from = shards.placement(Some(&acme)).await.unwrap().shard;
    let to = stores.other_than(&shards, "acme").await;
    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (instance, done) = (Pipeline::new(stores.instance()), done.clone());
        writers.push(tokio::spawn(async move {
            let (mut acked, mut refused, mut longest, mut n) = (Vec::new(), 0, Duration::ZERO, 0);
            let mut refused_since: Option<Instant> = None;
            // Until the move is done, then ten more.
            let mut after = 0;
            while after < 10 {
                if done.load(Ordering::SeqCst) {
                    after += 1;
                }
                let thread = id(&format!("writer-{w}-{}", n % 4));
                let add = Add::new(thread.clone(), Role::User, Content::text(format!("w{w} #{n}")));
                match instance.add(add.with_context(ctx("acme"))).await {
                    Ok(added) => {
                        if let Some(since) = refused_since.take() {
                            longest = longest.max(since.elapsed());
                        }
                        acked.push((thread, added.message.id));
                        n += 1;
                        // An app's pace, not a tight loop.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(PersistError::Temporary { message, .. }) => {
                        assert!(message.contains("moving from shard"), "{message}");
                        refused += 1;
                        refused_since.get_or_insert_with(Instant::now);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(error) => panic!("writer {w}: {error}"),
                }
            }
            (acked, refused, longest)
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let moved = shards.move_tenant(Some(&acme), &to, options()).await.unwrap();
    done.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    let mut refused = 0;
    for writer in writers {
        let (theirs, refusals, longest) = writer.await.unwrap();
        assert!(longest < Duration::from_millis(2_000) + TTL * 4, "writes refused for {longest:?}");
        acked.extend(theirs);
        refused += refusals;
    }
    assert!(refused > 0, "the switch refused no write: {moved:?}");
    let held = snapshot(stores.store(&to), "acme").await;
    let stored: Vec<_> = held
        .values()
        .flat_map(|(thread, messages, _, _)| messages.iter().map(|m| (thread.id.clone(), m.id.clone())))
        .collect();
    let unique: BTreeSet<_> = stored.iter().cloned().collect();
    assert_eq!(unique.len(), stored.len(), "a message stored twice");
    let missing: Vec<_> = acked.iter().filter(|m| !unique.contains(m)).collect();
    assert!(missing.is_empty(), "acknowledged and lost: {missing:?} ({moved:?})");
    assert!(snapshot(stores.store(&from), "acme").await.is_empty());
}

#[tokio::test]
async fn writes_during_a_move_are_all_kept_in_memory() {
    writes_during_a_move_are_all_kept(&Stores::memory(&["a", "b", "c"])).await;
}

/// Three PostgreSQL databases (a schema of this test's in each), the directory in a fourth
/// schema; dropped at the end.
async fn postgres_stores(schema: &str) -> Stores {
    databases().await.unwrap();
    let mut shards = Vec::new();
    for database in DATABASES {
        let backend = PostgresBackend::builder(database_url(database)).schema(schema).max_connections(4);
        shards.push((database.to_owned(), Pipeline::new(backend.connect().await.unwrap())));
    }
    let directory = PostgresBackend::builder(database_url(DATABASES[0])).schema(format!("{schema}_d"));
    Stores { directory: Pipeline::new(directory.max_connections(4).connect().await.unwrap()), shards }
}

#[tokio::test]
async fn writes_during_a_move_are_all_kept_across_postgres_databases() {
    let schema = schema_name();
    writes_during_a_move_are_all_kept(&postgres_stores(&schema).await).await;
    drop_shard_schemas(&schema).await;
}

#[tokio::test]
async fn writes_during_a_move_are_all_kept_between_sqlite_and_postgres() {
    databases().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let schema = schema_name();
    let server = PostgresBackend::builder(database_url(DATABASES[1])).schema(&schema).max_connections(4);
    let stores = Stores {
        directory: Pipeline::new(SqliteBackend::open(dir.path().join("directory.db")).await.unwrap()),
        shards: vec![
            ("file".to_owned(), Pipeline::new(SqliteBackend::open(dir.path().join("shard.db")).await.unwrap())),
            ("server".to_owned(), Pipeline::new(server.connect().await.unwrap())),
        ],
    };
    writes_during_a_move_are_all_kept(&stores).await;
    drop_schema(&database_url(DATABASES[1]), &schema).await;
}
