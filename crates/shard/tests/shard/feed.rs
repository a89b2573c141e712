//! The store-wide change feed across shards: every shard's events read as one, oldest first,
//! with a cursor of each shard's position that resumes in another process; each tenant's events
//! those of its shard (the directory's records and a moved tenant's old copies left out). In
//! memory and across three PostgreSQL databases.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use persist::args::Add;
use persist::memory::MemoryBackend;
use persist::postgres::PostgresBackend;
use persist::shard::{MoveOptions, ShardEvent, Shards, ShardsCursor};
use persist::{Content, Context, PersistError, PersistOp, Pipeline, Role, TenantId, ThreadId};

use crate::support::{DATABASES, database_url, databases, drop_shard_schemas, schema_name};

fn add(tenant: &str, thread: &str, text: &str) -> Add {
    let ctx = Context::new().with_tenant(TenantId::new(tenant).unwrap());
    Add::new(ThreadId::new(thread).unwrap(), Role::User, Content::text(text)).with_context(ctx)
}

/// Three memory shards; the directory is shard "a" itself.
fn memory_shards() -> Shards {
    let (a, b, c) = (MemoryBackend::new(), MemoryBackend::new(), MemoryBackend::new());
    let builder = Shards::builder(Pipeline::new(a.clone())).placement_ttl(Duration::from_millis(50));
    builder.shard("a", Pipeline::new(a)).shard("b", Pipeline::new(b)).shard("c", Pipeline::new(c)).build().unwrap()
}

/// Reads the whole feed after `cursor` in pages of `limit`, the cursor written out and read
/// back between pages.
async fn read_all(shards: &Shards, mut cursor: ShardsCursor, limit: u32) -> (Vec<ShardEvent>, ShardsCursor) {
    let mut events = Vec::new();
    loop {
        let page = shards.read_store_feed(&cursor, limit).await.unwrap();
        assert!(page.events.len() <= limit as usize);
        events.extend(page.events);
        cursor = page.cursor.to_string().parse().unwrap();
        if !page.has_more {
            return (events, cursor);
        }
    }
}

/// Each event once, each shard's in its order, all oldest first, each on its tenant's shard.
async fn check_order(shards: &Shards, events: &[ShardEvent]) {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for pair in events.windows(2) {
        assert!(pair[0].event.at <= pair[1].event.at, "out of time order: {pair:?}");
    }
    for event in events {
        let previous = last.insert(&event.shard, event.event.position).unwrap_or(0);
        assert!(previous < event.event.position, "shard {} went back", event.shard);
        let placed = shards.placement(event.event.change.tenant.as_ref()).await.unwrap();
        assert_eq!(placed.shard, event.shard);
        assert_ne!(event.event.change.tenant.as_ref().map(TenantId::as_str), Some(persist::shard::DIRECTORY_TENANT));
    }
}

async fn every_event_once_with_one_cursor(shards: &Shards) {
    let pipeline = Pipeline::new(shards.clone());
    let start = shards.store_feed_head().await.unwrap();
    for round in 0..3 {
        for tenant in 0..12 {
            pipeline.add(add(&format!("tenant-{tenant}"), "general", &format!("round {round}"))).await.unwrap();
        }
    }
    let used: BTreeSet<String> = futures_util::future::join_all((0..12).map(|t| async move {
        shards.placement(Some(&TenantId::new(format!("tenant-{t}")).unwrap())).await.unwrap().shard
    }))
    .await
    .into_iter()
    .collect();
    assert!(used.len() >= 2, "the tenants all landed on one shard: {used:?}");
    let (events, end) = read_all(shards, start.clone(), 5).await;
    assert_eq!(events.len(), 36, "{events:?}");
    check_order(shards, &events).await;
    let (whole, same_end) = read_all(shards, start, 1000).await;
    assert_eq!((whole, same_end), (events.clone(), end.clone()));
    // Nothing after the end; the cursor as JSON, and text that is not one.
    assert!(shards.read_store_feed(&end, 10).await.unwrap().events.is_empty());
    let json = serde_json::to_string(&end).unwrap();
    assert_eq!(serde_json::from_str::<ShardsCursor>(&json).unwrap(), end);
    for bad in ["a", "a:x", ":3", "a:1,b"] {
        let error = bad.parse::<ShardsCursor>().unwrap_err();
        assert!(matches!(error, PersistError::InvalidInput { field: "cursor", .. }), "{bad}: {error}");
    }
    let odd = ShardsCursor::new().at("eu:1,%", 7);
    assert_eq!(odd.to_string().parse::<ShardsCursor>().unwrap(), odd);
    // Through a pipeline, the store-wide feed of several shards is refused, saying where to read it.
    let error = pipeline.read_feed(persist::feed::ReadFeed::across_tenants()).await.unwrap_err();
    assert!(error.to_string().contains("read_store_feed"), "{error}");
}

#[tokio::test]
async fn every_event_once_with_one_cursor_in_memory() {
    every_event_once_with_one_cursor(&memory_shards()).await;
}

/// Three PostgreSQL databases, the directory in a schema of its own.
async fn postgres_shards(schema: &str) -> Shards {
    databases().await.unwrap();
    let directory = PostgresBackend::builder(database_url(DATABASES[0])).schema(format!("{schema}_d"));
    let builder = Shards::builder(Pipeline::new(directory.max_connections(2).connect().await.unwrap()));
    let mut builder = builder.placement_ttl(Duration::from_millis(50));
    for database in DATABASES {
        let backend = PostgresBackend::builder(database_url(database)).schema(schema).max_connections(4);
        builder = builder.shard(database, Pipeline::new(backend.connect().await.unwrap()));
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn every_event_once_with_one_cursor_across_postgres_databases() {
    let schema = schema_name();
    every_event_once_with_one_cursor(&postgres_shards(&schema).await).await;
    a_subscription_follows_every_shard_and_resumes(&postgres_shards(&schema).await).await;
    drop_shard_schemas(&schema).await;
}

async fn a_subscription_follows_every_shard_and_resumes(shards: &Shards) {
    let pipeline = Pipeline::new(shards.clone());
    let mut subscription = shards.subscribe_store(shards.store_feed_head().await.unwrap()).await.unwrap();
    let writer = {
        let pipeline = pipeline.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                pipeline.add(add(&format!("live-{}", i % 5), "general", &format!("live {i}"))).await.unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    for _ in 0..10 {
        let event = tokio::time::timeout(Duration::from_secs(10), subscription.next()).await.unwrap().unwrap();
        seen.push(event);
    }
    // Resumed elsewhere from the cursor, as text: the other ten, and nothing twice.
    let cursor: ShardsCursor = subscription.cursor().to_string().parse().unwrap();
    drop(subscription);
    writer.await.unwrap();
    let mut resumed = shards.subscribe_store(cursor).await.unwrap();
    for _ in 0..10 {
        seen.push(tokio::time::timeout(Duration::from_secs(10), resumed.next()).await.unwrap().unwrap());
    }
    let texts: BTreeSet<u64> = seen.iter().map(|e| e.event.change.seq.unwrap()).collect();
    assert_eq!(texts, (1..=4).collect(), "each of the five threads got four messages");
    let unique: BTreeSet<(String, u64)> = seen.iter().map(|e| (e.shard.clone(), e.event.position)).collect();
    assert_eq!(unique.len(), 20);
    assert!(seen.iter().all(|e| e.event.change.op == PersistOp::Add));
    let more = tokio::time::timeout(Duration::from_millis(200), resumed.next()).await;
    assert!(more.is_err(), "an event no write made: {more:?}");
}

#[tokio::test]
async fn a_subscription_follows_every_shard_and_resumes_in_memory() {
    a_subscription_follows_every_shard_and_resumes(&memory_shards()).await;
}

#[tokio::test]
async fn after_a_move_each_tenants_events_are_its_new_shards() {
    let shards = memory_shards();
    let pipeline = Pipeline::new(shards.clone());
    for text in ["one", "two"] {
        pipeline.add(add("acme", "general", text)).await.unwrap();
        pipeline.add(add("globex", "general", text)).await.unwrap();
    }
    let acme = TenantId::new("acme").unwrap();
    let from = shards.placement(Some(&acme)).await.unwrap().shard;
    let to = ["a", "b", "c"].into_iter().find(|name| *name != from).unwrap();
    let options = MoveOptions::new().max_switch(Duration::from_millis(500));
    shards.move_tenant(Some(&acme), to, options).await.unwrap();
    pipeline.add(add("acme", "general", "three")).await.unwrap();
    let (events, _) = read_all(&shards, ShardsCursor::new(), 3).await;
    check_order(&shards, &events).await;
    let of_acme: Vec<&ShardEvent> = events.iter().filter(|e| e.event.change.tenant.as_ref() == Some(&acme)).collect();
    // The new shard's: the two messages restored (inserted), then the third; no erasure.
    assert!(of_acme.iter().all(|e| e.shard == to), "{of_acme:?}");
    let seqs: Vec<Option<u64>> = of_acme.iter().map(|e| e.event.change.seq).collect();
    assert_eq!(seqs, [Some(1), Some(2), Some(3)], "{of_acme:?}");
    assert!(of_acme.iter().all(|e| e.event.change.op != PersistOp::Delete));
    assert_eq!(events.iter().filter(|e| e.event.change.tenant.as_ref() != Some(&acme)).count(), 2);
}

#[tokio::test]
async fn a_follower_that_cached_a_switch_sees_the_new_shards_first_events() {
    let (directory, a, b) = (MemoryBackend::new(), MemoryBackend::new(), MemoryBackend::new());
    let instance = |ttl: Duration| {
        let builder = Shards::builder(Pipeline::new(directory.clone())).placement_ttl(ttl);
        builder.shard("a", Pipeline::new(a.clone())).shard("b", Pipeline::new(b.clone())).build().unwrap()
    };
    let (mover, follower) = (instance(Duration::from_millis(50)), instance(Duration::from_secs(60)));
    let app = Pipeline::new(instance(Duration::from_millis(50)));
    for i in 0..20 {
        app.add(add("acme", &format!("t{i}"), "before")).await.unwrap();
    }
    let acme = TenantId::new("acme").unwrap();
    let to = if mover.placement(Some(&acme)).await.unwrap().shard == "a" { "b" } else { "a" };
    let moving = {
        let (mover, acme) = (mover.clone(), acme.clone());
        tokio::spawn(async move {
            let options = MoveOptions::new().max_switch(Duration::from_millis(1_000));
            mover.move_tenant(Some(&acme), to, options).await
        })
    };
    // The follower reads the record while it says the tenant is switching, and keeps it (a
    // long TTL).
    loop {
        let fresh = instance(Duration::from_millis(50)).placement(Some(&acme)).await.unwrap();
        if fresh.moving.is_some_and(|m| matches!(m.state, persist::shard::MoveState::Switching { .. })) {
            break;
        }
        assert!(!moving.is_finished(), "the move ended unseen");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let cached = follower.placement(Some(&acme)).await.unwrap();
    assert!(cached.moving.is_some(), "{cached:?}");
    let head = follower.store_feed_head().await.unwrap();
    moving.await.unwrap().unwrap();
    app.add(add("acme", "t0", "after")).await.unwrap();
    let page = follower.read_store_feed(&head, 1000).await.unwrap();
    let after: Vec<&ShardEvent> = page.events.iter().filter(|e| e.event.change.op == PersistOp::Add).collect();
    assert_eq!(after.len(), 1, "{:?}", page.events);
    assert_eq!(after[0].shard, to);
}

#[tokio::test]
async fn the_tenant_named_none_and_the_threads_without_a_tenant_move_apart() {
    let shards = memory_shards();
    let pipeline = Pipeline::new(shards.clone());
    let none = TenantId::new("none").unwrap();
    pipeline.add(add("none", "general", "of the tenant named none")).await.unwrap();
    let bare = Add::new(ThreadId::new("general").unwrap(), Role::User, Content::text("of no tenant"));
    pipeline.add(bare).await.unwrap();
    let options = MoveOptions::new().max_switch(Duration::from_millis(500)).claim_ttl(Duration::from_millis(300));
    let elsewhere = |on: String| ["a", "b", "c"].into_iter().find(|name| *name != on).unwrap();
    // The tenant named "none" stopped while cleaning; the threads without a tenant moved whole
    // meanwhile; then the first move resumed: each kept its own record of what it copied.
    let to_none = elsewhere(shards.placement(Some(&none)).await.unwrap().shard);
    let mover = {
        let (shards, none, options) = (shards.clone(), none.clone(), options.clone());
        tokio::spawn(async move { shards.move_tenant(Some(&none), to_none, options).await })
    };
    loop {
        let placed = shards.placement(Some(&none)).await.unwrap();
        if placed.moving.is_some_and(|m| matches!(m.state, persist::shard::MoveState::Cleaning { .. })) {
            mover.abort();
            break;
        }
        assert!(!mover.is_finished(), "the move ended before cleaning");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let to_bare = elsewhere(shards.placement(None).await.unwrap().shard);
    shards.move_tenant(None, to_bare, options.clone()).await.unwrap();
    shards.move_tenant(Some(&none), to_none, options).await.unwrap();
    assert_eq!(shards.placement(Some(&none)).await.unwrap().shard, to_none);
    assert_eq!(shards.placement(None).await.unwrap().shard, to_bare);
}
