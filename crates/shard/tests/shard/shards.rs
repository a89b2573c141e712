//! Tenants placed on several stores: every instance agrees where a tenant is (its first write
//! records it, whatever shards each instance lists), a tenant's threads live on one store,
//! answers across tenants cover every shard and never the directory's records.

use std::collections::{BTreeMap, BTreeSet};

use persist::args::{Add, Reserve, UpdateContent};
use persist::feed::ReadFeed;
use persist::live::{FollowReply, ReplyChunk};
use persist::memory::MemoryBackend;
use persist::prelude::*;
use persist::read::{GetThread, ListThreads};
use persist::search::{Search, SearchScope};
use persist::shard::{DIRECTORY_TENANT, Shards};
use persist::{Content, Context, PersistArgs, PersistError, PersistResult, Pipeline, Role, TenantId, ThreadId};

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

fn ctx(name: &str) -> Context {
    Context::new().with_tenant(tenant(name))
}

fn say(thread: &str, text: &str, tenant: &str) -> Add {
    Add::new(ThreadId::new(thread).unwrap(), Role::User, Content::text(text)).with_context(ctx(tenant))
}

/// Named stores, each a `Pipeline` over a memory store that clones share.
struct Stores {
    directory: MemoryBackend,
    named: Vec<(&'static str, MemoryBackend)>,
}

impl Stores {
    fn new(names: &[&'static str]) -> Self {
        Self {
            directory: MemoryBackend::new(),
            named: names.iter().map(|name| (*name, MemoryBackend::new())).collect(),
        }
    }

    /// An instance listing `names` (in that order).
    fn instance(&self, names: &[&str]) -> Shards {
        let mut builder = Shards::builder(Pipeline::new(self.directory.clone()));
        for name in names {
            let (_, store) = self.named.iter().find(|(named, _)| named == name).unwrap();
            builder = builder.shard(*name, Pipeline::new(store.clone()));
        }
        builder.build().unwrap()
    }

    /// The stores holding `tenant`'s thread `general`.
    async fn holding(&self, tenant_name: &str) -> Vec<&'static str> {
        let mut holding = Vec::new();
        for (name, store) in &self.named {
            let get = GetThread::new(ThreadId::new("general").unwrap()).with_context(ctx(tenant_name));
            if Pipeline::new(store.clone()).get_thread(get).await.unwrap().is_some() {
                holding.push(*name);
            }
        }
        holding
    }
}

#[tokio::test]
async fn instances_agree_where_a_tenant_is_whatever_shards_they_list() {
    let stores = Stores::new(&["a", "b", "c"]);
    let before = Pipeline::new(stores.instance(&["a", "b"]));
    let names: Vec<String> = (0..40).map(|i| format!("tenant-{i}")).collect();
    for name in &names {
        before.add(say("general", "hi", name)).await.unwrap();
    }
    // Both shards took tenants.
    let mut placed = BTreeMap::new();
    for name in &names {
        let holding = stores.holding(name).await;
        assert_eq!(holding.len(), 1, "{name}: {holding:?}");
        placed.insert(name.clone(), holding[0]);
    }
    assert_eq!(placed.values().collect::<BTreeSet<_>>().len(), 2, "{placed:?}");

    // An instance that lists a shard more reads every tenant where it is (its hash would send
    // some to `c`) and writes there too.
    let after = stores.instance(&["c", "a", "b"]);
    let after_pipeline = Pipeline::new(after.clone());
    for name in &names {
        let placement = after.placement(Some(&tenant(name))).await.unwrap();
        assert_eq!((placement.shard.as_str(), placement.recorded), (placed[name], true), "{name}");
        after_pipeline.add(say("general", "again", name)).await.unwrap();
        assert_eq!(stores.holding(name).await, [placed[name]], "{name}");
    }
    assert!(names.iter().any(|name| after.hashed(Some(&tenant(name))) == "c"), "some would hash to c");
    // New tenants may go to the new shard.
    for i in 0..40 {
        after_pipeline.add(say("general", "hi", &format!("new-{i}"))).await.unwrap();
    }
    let mut new_on_c = 0;
    for i in 0..40 {
        new_on_c += usize::from(stores.holding(&format!("new-{i}")).await == ["c"]);
    }
    assert!(new_on_c > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_racing_to_write_a_new_tenant_place_it_once() {
    let stores = Stores::new(&["a", "b", "c"]);
    // Each instance lists the shards in another order, with one of its own first: a tenant's
    // hash differs between them, so only the record makes them agree.
    let instances = [stores.instance(&["a", "b", "c"]), stores.instance(&["b", "c"]), stores.instance(&["c", "a"])];
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(9));
    let mut writes = Vec::new();
    for round in 0..3 {
        for (i, instance) in instances.iter().enumerate() {
            let pipeline = Pipeline::new(instance.clone());
            let start = std::sync::Arc::clone(&start);
            writes.push(tokio::spawn(async move {
                start.wait().await;
                for t in 0..30 {
                    match pipeline.add(say("general", &format!("{round}/{i}"), &format!("t{t}"))).await {
                        Ok(_) => {}
                        // Placed on a shard this instance does not list: it says so.
                        Err(PersistError::Backend { message, .. }) if message.contains("does not have") => {}
                        Err(other) => panic!("{other:?}"),
                    }
                }
            }));
        }
    }
    for write in writes {
        write.await.unwrap();
    }
    for t in 0..30 {
        let holding = stores.holding(&format!("t{t}")).await;
        assert_eq!(holding.len(), 1, "t{t}: {holding:?}");
    }
}

#[tokio::test]
async fn a_shard_added_takes_only_new_tenants_and_tenants_spread_evenly() {
    let stores = Stores::new(&["a", "b", "c", "d"]);
    let three = stores.instance(&["a", "b", "c"]);
    let four = stores.instance(&["a", "b", "c", "d"]);
    let mut counts = BTreeMap::new();
    for i in 0..3000 {
        let name = tenant(&format!("customer-{i}"));
        let (was, is) = (three.hashed(Some(&name)), four.hashed(Some(&name)));
        assert!(was == is || is == "d", "{name:?}: {was} → {is}");
        *counts.entry(is.to_owned()).or_insert(0) += 1;
    }
    // 750 each if even; FNV-1a rendezvous gives every shard its share.
    assert!(counts.values().all(|count| (600..=900).contains(count)), "{counts:?}");
    assert!(["a", "b", "c"].contains(&three.hashed(None)), "the threads without a tenant have a shard too");
}

#[tokio::test]
async fn with_the_directory_in_a_shard_listings_and_searches_leave_its_records_out() {
    let (a, b) = (MemoryBackend::new(), MemoryBackend::new());
    let shards = Shards::builder(Pipeline::new(a.clone()))
        .shard("a", Pipeline::new(a.clone()))
        .shard("b", Pipeline::new(b.clone()))
        .build()
        .unwrap();
    let pipeline = Pipeline::new(shards);
    for i in 0..12 {
        pipeline.add(say(&format!("thread-{i}"), "about a b", &format!("tenant-{i}"))).await.unwrap();
    }
    // Page by page, one at a time: every thread once, no record (some pages come out empty).
    let mut listed = Vec::new();
    let mut query = ListThreads::new().across_tenants(true).with_limit(1);
    loop {
        let page = pipeline.threads(query.clone()).await.unwrap();
        listed.extend(page.items.iter().map(|thread| thread.id.to_string()));
        assert!(page.items.iter().all(|thread| thread.tenant.as_ref().map(TenantId::as_str) != Some(DIRECTORY_TENANT)));
        match (page.has_more, page.next_cursor) {
            (true, Some(cursor)) => query = query.with_cursor(Some(cursor)),
            _ => break,
        }
    }
    listed.sort();
    let mut expected: Vec<String> = (0..12).map(|i| format!("thread-{i}")).collect();
    expected.sort();
    assert_eq!(listed, expected);
    // The records hold the shards' names ("a", "b"): a search across tenants finds none of them.
    // Paged: a page may come out short, its cursor going on past the records.
    let mut found = Vec::new();
    let mut search = Search::new("a").with_scope(SearchScope::AcrossTenants).with_limit(5);
    loop {
        let page = pipeline.search(search.clone()).await.unwrap();
        assert!(page.items.iter().all(|hit| hit.tenant.as_ref().map(TenantId::as_str) != Some(DIRECTORY_TENANT)));
        found.extend(page.items.into_iter().map(|hit| hit.thread_id.to_string()));
        match (page.has_more, page.next_cursor) {
            (true, Some(cursor)) => search = search.with_cursor(Some(cursor)),
            _ => break,
        }
    }
    found.sort();
    assert_eq!(found, expected);

    // The directory's tenant is not a tenant of the shards.
    let refused = pipeline.add(say("general", "hi", DIRECTORY_TENANT)).await.unwrap_err();
    assert!(matches!(refused, PersistError::InvalidInput { field: "tenant", .. }), "{refused:?}");
    let get = GetThread::new(ThreadId::new("t:tenant-1").unwrap()).with_context(ctx(DIRECTORY_TENANT));
    assert!(matches!(pipeline.get_thread(get).await, Err(PersistError::InvalidInput { field: "tenant", .. })));
}

#[tokio::test]
async fn a_tenant_placed_on_a_shard_an_instance_lacks_is_an_error_naming_it() {
    let stores = Stores::new(&["a", "b"]);
    let full = Pipeline::new(stores.instance(&["a", "b"]));
    let names: Vec<String> = (0..20).map(|i| format!("tenant-{i}")).collect();
    for name in &names {
        full.add(say("general", "hi", name)).await.unwrap();
    }
    let partial = Pipeline::new(stores.instance(&["a"]));
    let mut on_b = None;
    for name in &names {
        if stores.holding(name).await == ["b"] {
            on_b = Some(name);
            break;
        }
    }
    let on_b = on_b.expect("some tenant on b");
    let get = GetThread::new(ThreadId::new("general").unwrap()).with_context(ctx(on_b));
    match partial.get_thread(get).await {
        Err(PersistError::Backend { message, .. }) => assert!(message.contains("\"b\""), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_tenants_feed_and_a_live_reply_are_read_on_its_shard() {
    let stores = Stores::new(&["a", "b", "c"]);
    let shards = stores.instance(&["a", "b", "c"]);
    let pipeline = Pipeline::new(shards);
    for name in ["acme", "globex", "initech"] {
        pipeline.add(say("general", "hi", name)).await.unwrap();
    }
    let page = pipeline.read_feed(ReadFeed::tenant().with_context(ctx("acme"))).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.tenant, Some(tenant("acme")));
    let store_wide = pipeline.read_feed(ReadFeed::across_tenants()).await.unwrap_err();
    assert!(matches!(store_wide, PersistError::Unsupported { .. }), "{store_wide:?}");

    // A reply followed through the shards, written through another instance.
    let writer = Pipeline::new(stores.instance(&["a", "b", "c"]));
    let thread = ThreadId::new("general").unwrap();
    let reserve = Reserve::new(thread.clone(), Role::Assistant).with_context(ctx("globex"));
    let reply = writer.reserve(reserve).await.unwrap().message;
    let follow = FollowReply::new(thread.clone(), reply.id.clone()).with_context(ctx("globex"));
    let mut stream = pipeline.follow_reply(follow).await.unwrap();
    for token in ["hel", "lo"] {
        let append = UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text(token));
        writer.update_content(append.with_context(ctx("globex"))).await.unwrap();
    }
    let finish = UpdateContent::finishing(thread.clone(), reply.id.clone()).with_context(ctx("globex"));
    writer.update_content(finish).await.unwrap();
    let mut text = String::new();
    let wait = std::time::Duration::from_secs(10);
    while let Some(chunk) = tokio::time::timeout(wait, stream.next()).await.expect("the reply goes on").unwrap() {
        match chunk {
            ReplyChunk::Text { text: more, .. } => text.push_str(&more),
            ReplyChunk::End(_) => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(text, "hello");
}

#[test]
fn a_builder_without_shards_or_with_a_name_twice_is_refused() {
    let store = || Pipeline::new(MemoryBackend::new());
    for builder in [
        Shards::builder(store()),
        Shards::builder(store()).shard("a", store()).shard("a", store()),
        Shards::builder(store()).shard("", store()),
    ] {
        assert!(matches!(builder.build(), Err(PersistError::InvalidInput { field: "shards", .. })));
    }
}

#[tokio::test]
async fn a_record_changed_in_the_directory_is_followed_once_the_epoch_moves() {
    use persist::Metadata;
    use persist::args::Update;
    use persist::read::ListMessages;
    use std::time::Duration;

    let stores = Stores::new(&["a", "b"]);
    let ttl = Duration::from_millis(50);
    let instance = |names: &[&str]| {
        let mut builder = Shards::builder(Pipeline::new(stores.directory.clone())).placement_ttl(ttl);
        for name in names {
            let (_, store) = stores.named.iter().find(|(named, _)| named == name).unwrap();
            builder = builder.shard(*name, Pipeline::new(store.clone()));
        }
        builder.build().unwrap()
    };
    let shards = instance(&["a", "b"]);
    let pipeline = Pipeline::new(shards.clone());
    pipeline.add(say("general", "before", "acme")).await.unwrap();
    let was = stores.holding("acme").await[0];
    let other = if was == "a" { "b" } else { "a" };

    // An operator places the tenant on the other shard by hand (its threads copied there
    // first), and moves the directory's epoch.
    let directory = Pipeline::new(stores.directory.clone());
    let record = Update::thread(ThreadId::new("t:acme").unwrap())
        .with_metadata(Metadata::new().with("shard", other.into()))
        .with_context(ctx(DIRECTORY_TENANT));
    directory.update(record).await.unwrap();
    // Until the epoch moves, the instance keeps what it cached.
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(shards.placement(Some(&tenant("acme"))).await.unwrap().shard, was);
    let move_epoch = async || {
        let epoch = Add::new(ThreadId::new("epoch").unwrap(), Role::System, Content::text("acme"))
            .with_context(ctx(DIRECTORY_TENANT));
        directory.add(epoch).await.unwrap();
        tokio::time::sleep(ttl * 2).await;
    };
    move_epoch().await;
    assert_eq!(shards.placement(Some(&tenant("acme"))).await.unwrap().shard, other);
    pipeline.add(say("general", "after", "acme")).await.unwrap();
    let on_other = Pipeline::new(stores.named.iter().find(|(name, _)| *name == other).unwrap().1.clone());
    let list = ListMessages::new(ThreadId::new("general").unwrap()).with_context(ctx("acme"));
    let texts: Vec<String> = on_other.list(list).await.unwrap().items.iter().map(|m| m.content.to_text()).collect();
    assert_eq!(texts, ["after"]);
    // A new instance reads the record as it is now.
    assert_eq!(instance(&["a", "b"]).placement(Some(&tenant("acme"))).await.unwrap().shard, other);

    // And back: every later move of the epoch is followed too.
    let back = Update::thread(ThreadId::new("t:acme").unwrap())
        .with_metadata(Metadata::new().with("shard", was.into()))
        .with_context(ctx(DIRECTORY_TENANT));
    directory.update(back).await.unwrap();
    move_epoch().await;
    assert_eq!(shards.placement(Some(&tenant("acme"))).await.unwrap().shard, was);
}

#[tokio::test]
async fn a_tenant_another_instance_places_is_read_where_it_placed_it() {
    // Instances listing other shards hash a tenant differently; the record decides.
    let stores = Stores::new(&["a", "b", "c"]);
    let (left, right) = (stores.instance(&["a", "b"]), stores.instance(&["b", "c"]));
    let name = (0..)
        .map(|i| format!("tenant-{i}"))
        .find(|name| left.hashed(Some(&tenant(name))) == "a" && right.hashed(Some(&tenant(name))) == "b")
        .unwrap();
    let (left, right) = (Pipeline::new(left), Pipeline::new(right));
    let get = || GetThread::new(ThreadId::new("general").unwrap()).with_context(ctx(&name));
    assert!(left.get_thread(get()).await.unwrap().is_none(), "nobody wrote it yet");
    right.add(say("general", "hi", &name)).await.unwrap();
    assert!(left.get_thread(get()).await.unwrap().is_some(), "read on b, where the record says");

    // Two instances whose shards hash a tenant differently both find no record, and both
    // place it: the second's placement (another shard's name under the same key) loses, and it
    // writes where the first's record says. (Its directory is made to miss the record once:
    // the race, every time.)
    use persist::layer::from_fn;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let first = stores.instance(&["a", "b"]);
    let missed = Arc::new(AtomicBool::new(false));
    let miss = Arc::clone(&missed);
    let directory = Pipeline::builder()
        .layer(from_fn(move |args, next| {
            let miss = matches!(&args, PersistArgs::GetThread(get) if get.thread_id.as_str().starts_with("t:"))
                && !miss.swap(true, Ordering::SeqCst);
            async move { if miss { Ok(PersistResult::Thread(None)) } else { next.run(args).await } }
        }))
        .build(stores.directory.clone());
    let mut later = Shards::builder(directory);
    for (name, store) in &stores.named {
        later = later.shard(*name, Pipeline::new(store.clone()));
    }
    let later = later.build().unwrap();
    let name = (0..)
        .map(|i| format!("customer-{i}"))
        .find(|name| first.hashed(Some(&tenant(name))) == "b" && later.hashed(Some(&tenant(name))) == "c")
        .unwrap();
    Pipeline::new(first).add(say("general", "one", &name)).await.unwrap();
    Pipeline::new(later).add(say("general", "two", &name)).await.unwrap();
    assert!(missed.load(Ordering::SeqCst), "the later instance missed the record once");
    assert_eq!(stores.holding(&name).await, ["b"]);
}

#[tokio::test]
async fn a_directory_that_cannot_be_read_leaves_the_cached_placements_in_use() {
    use persist::layer::from_fn;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    let down = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&down);
    let directory = Pipeline::builder()
        .layer(from_fn(move |args, next| {
            let down = flag.load(Ordering::SeqCst);
            async move {
                if down {
                    return Err(PersistError::temporary("the directory is down"));
                }
                next.run(args).await
            }
        }))
        .build(MemoryBackend::new());
    let ttl = Duration::from_millis(20);
    let shards = Shards::builder(directory)
        .shard("a", Pipeline::new(MemoryBackend::new()))
        .shard("b", Pipeline::new(MemoryBackend::new()))
        .placement_ttl(ttl)
        .build()
        .unwrap();
    let pipeline = Pipeline::new(shards);
    pipeline.add(say("general", "hi", "acme")).await.unwrap();
    down.store(true, Ordering::SeqCst);
    tokio::time::sleep(ttl * 2).await;
    // A tenant it knows is served; one it does not waits for the directory.
    pipeline.add(say("general", "again", "acme")).await.unwrap();
    let unknown = pipeline.add(say("general", "hi", "globex")).await.unwrap_err();
    assert!(unknown.is_temporary(), "{unknown:?}");
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(ttl * 2).await;
    pipeline.add(say("general", "hi", "globex")).await.unwrap();
}
