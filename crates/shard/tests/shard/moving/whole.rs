//! What a move carries: every thread of the tenant whole, and its working memory.

use std::time::Duration;

use persist::Backend as _;
use persist::args::Add;
use persist::{Content, Pipeline, Role};

use super::{Stores, TTL, ctx, id, options, seed, snapshot, tenant};

#[tokio::test]
async fn a_tenant_moves_whole_and_is_read_and_written_on_the_new_shard() {
    let stores = Stores::memory(&["a", "b"]);
    let app = Pipeline::new(stores.instance());
    seed(&app, "acme", 4, 5).await;
    seed(&app, "globex", 2, 3).await;
    let shards = stores.instance();
    let acme = tenant("acme");
    let from = shards.placement(Some(&acme)).await.unwrap().shard;
    let to = stores.other_than(&shards, "acme").await;
    let before = snapshot(stores.store(&from), "acme").await;
    let globex = snapshot(&app, "globex").await;
    assert_eq!(before.len(), 4);

    let moved = shards.move_tenant(Some(&acme), &to, options()).await.unwrap();
    assert_eq!((moved.from.as_str(), moved.to.as_str(), moved.already), (from.as_str(), to.as_str(), false));
    assert_eq!((moved.copied, moved.erased, moved.carried, moved.switches), (4, 4, 0, 1));
    assert!(moved.refused_for.is_some_and(|refused| refused < Duration::from_secs(2)));
    // Everything on the new shard as it was, nothing left on the old one.
    assert_eq!(snapshot(stores.store(&to), "acme").await, before);
    assert!(snapshot(stores.store(&from), "acme").await.is_empty());
    let placed = shards.placement(Some(&acme)).await.unwrap();
    assert_eq!((placed.shard.as_str(), placed.moving), (to.as_str(), None));
    // Another instance (its cache, once its TTL passed) reads and writes the tenant there.
    tokio::time::sleep(TTL * 2).await;
    assert_eq!(snapshot(&app, "acme").await, before);
    let add = Add::new(id("thread-0"), Role::User, Content::text("after the move")).with_context(ctx("acme"));
    let added = app.add(add).await.unwrap();
    assert_eq!(added.message.seq, before[&id("thread-0")].0.last_seq + 1);
    assert_eq!(snapshot(stores.store(&to), "acme").await[&id("thread-0")].1.last(), Some(&added.message));
    // Other tenants are untouched; a move to where the tenant is does nothing.
    assert_eq!(snapshot(&app, "globex").await, globex);
    let again = shards.move_tenant(Some(&acme), &to, options()).await.unwrap();
    assert!(again.already && again.copied == 0 && again.erased == 0);
    // And back: the old shard's tombstones of those threads give way to them.
    let moved_on = snapshot(stores.store(&to), "acme").await;
    let back = shards.move_tenant(Some(&acme), &from, options()).await.unwrap();
    assert_eq!((back.copied, back.erased), (4, 4));
    assert_eq!(snapshot(stores.store(&from), "acme").await, moved_on);
}

/// A tenant's working memory documents move with it: read and patched on the new shard after
/// the move, other tenants' left where they are.
#[tokio::test]
async fn a_tenants_working_memory_moves_with_it() {
    use persist::working::{ReadMemory, WriteMemory};
    let stores = Stores::memory(&["a", "b"]);
    let app = Pipeline::new(stores.instance());
    seed(&app, "acme", 1, 1).await;
    let doc = |v: serde_json::Value| persist::Metadata::try_from(v).unwrap();
    let user = persist::ResourceId::new("user:1").unwrap();
    for (who, name) in [("acme", "Ada"), ("globex", "Grace")] {
        let patch = WriteMemory::patch(user.clone(), doc(serde_json::json!({"name": name}))).with_context(ctx(who));
        app.write_memory(patch).await.unwrap();
    }
    let shards = stores.instance();
    let acme = tenant("acme");
    let to = stores.other_than(&shards, "acme").await;
    shards.move_tenant(Some(&acme), &to, options()).await.unwrap();
    let there = stores.store(&to).read_memory(ReadMemory::new(user.clone()).with_context(ctx("acme"))).await.unwrap();
    assert_eq!(there.map(|m| m.document), Some(doc(serde_json::json!({"name": "Ada"}))));
    tokio::time::sleep(TTL * 2).await;
    let patch = WriteMemory::patch(user.clone(), doc(serde_json::json!({"city": "Lisbon"}))).with_context(ctx("acme"));
    app.write_memory(patch).await.unwrap();
    let read = |who| ReadMemory::new(user.clone()).with_context(ctx(who));
    let after = stores.store(&to).read_memory(read("acme")).await.unwrap().expect("on the new shard");
    assert_eq!(after.document, doc(serde_json::json!({"name": "Ada", "city": "Lisbon"})));
    let globex = app.read_memory(read("globex")).await.unwrap().expect("untouched");
    assert_eq!(globex.document, doc(serde_json::json!({"name": "Grace"})));
    // Listed across tenants: each tenant's documents from its shard, once (the old shard keeps
    // a stale copy of acme's), at the version the move kept, a page at a time.
    let mut listing = persist::working::ListMemories::new().across_tenants(true).with_limit(1);
    let mut listed = Vec::new();
    loop {
        let page = shards.memories(listing.clone()).await.unwrap();
        listed.extend(page.items.into_iter().map(|m| (m.tenant.map(|t| t.as_str().to_owned()), m.document, m.version)));
        if !page.has_more {
            break;
        }
        listing = listing.with_cursor(page.next_cursor);
    }
    let acme_doc = doc(serde_json::json!({"name": "Ada", "city": "Lisbon"}));
    assert_eq!(
        listed,
        [
            (Some("acme".to_owned()), acme_doc, 2),
            (Some("globex".to_owned()), doc(serde_json::json!({"name": "Grace"})), 1)
        ]
    );
}
