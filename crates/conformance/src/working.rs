//! Working memory (gated on `working_memory`): a document per tenant and resource, patched
//! (JSON merge patch) and replaced inside the store's write, versioned, compare-and-set with an
//! expected version; concurrent patches through two handles never lost; tenants apart; bad input
//! refused with nothing written.

use std::sync::Arc;

use persist_core::working::{ListMemories, MAX_DOCUMENT_BYTES, ReadMemory, WorkingMemory, WriteMemory};
use persist_core::{Backend, Metadata, PersistError, PersistResult, ResourceId, TenantId};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::fixture::{assert_err, ctx, gate, tenant, write};
use crate::{Factory, Outcome};

fn resource(id: &str) -> ResourceId {
    ResourceId::new(id).expect("resource id")
}

fn doc(value: Value) -> Metadata {
    Metadata::try_from(value).expect("an object")
}

async fn read<B: Backend>(b: &B, tenant: Option<&TenantId>, id: &str) -> Option<WorkingMemory> {
    b.read_memory(ReadMemory::new(resource(id)).with_context(ctx(tenant))).await.expect("read_memory")
}

async fn change<B: Backend>(b: &B, request: WriteMemory) -> Result<WorkingMemory, PersistError> {
    match write(b, request).await? {
        PersistResult::MemoryWritten(written) => Ok(written),
        other => panic!("write_memory answered {other:?}"),
    }
}

/// A document never written reads `None`; a patch creates it (version 1) and merges into it
/// (objects key by key, `null` removing), a replace writes it whole, a clear leaves `{}`; the
/// version moves by one a write, the creation time stays; what a write answers is what a read
/// finds.
pub async fn check_working_memory_patches_and_replaces<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, working_memory);
    let b = store.b().as_ref();
    assert!(read(b, None, "u1").await.is_none());
    let first = change(b, WriteMemory::patch(resource("u1"), doc(json!({"name": "Ada", "diet": {"vegan": true}}))))
        .await
        .expect("patch");
    assert_eq!((first.version, first.document.clone()), (1, doc(json!({"name": "Ada", "diet": {"vegan": true}}))));
    let patch = doc(json!({"diet": {"nuts": false}, "name": null, "langs": ["en", "pt"], "n": 1.5}));
    let second = change(b, WriteMemory::patch(resource("u1"), patch)).await.expect("patch");
    let expected = doc(json!({"diet": {"vegan": true, "nuts": false}, "langs": ["en", "pt"], "n": 1.5}));
    assert_eq!((second.version, &second.document), (2, &expected));
    assert_eq!(second.created_at, first.created_at);
    assert!(second.updated_at >= first.updated_at);
    assert_eq!(read(b, None, "u1").await.as_ref(), Some(&second), "a read finds what the write answered");
    let replaced =
        change(b, WriteMemory::replace(resource("u1"), doc(json!({"only": "this"})))).await.expect("replace");
    assert_eq!((replaced.version, replaced.document), (3, doc(json!({"only": "this"}))));
    let cleared = change(b, WriteMemory::clear(resource("u1"))).await.expect("clear");
    assert_eq!((cleared.version, cleared.document.is_empty()), (4, true));
    assert_eq!(read(b, None, "u1").await.map(|m| m.version), Some(4));
    assert!(read(b, None, "u2").await.is_none(), "another resource is another document");
    store.finish().await
}

/// With an expected version a write is a compare-and-set: `0` writes only a document never
/// written; a stale version is `DocumentConflict` naming both versions, and nothing is written. A
/// restore writes at its own version, only above the stored one.
pub async fn check_working_memory_expected_version_is_compare_and_set<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, working_memory);
    let b = store.b().as_ref();
    let create = || WriteMemory::replace(resource("cas"), doc(json!({"v": 1}))).with_expected_version(0);
    change(b, create()).await.expect("created");
    assert_err!(change(b, create()).await, PersistError::DocumentConflict { expected: 0, actual: 1, .. });
    let stale = WriteMemory::patch(resource("cas"), doc(json!({"v": 2}))).with_expected_version(7);
    assert_err!(change(b, stale).await, PersistError::DocumentConflict { expected: 7, actual: 1, .. });
    let fresh = WriteMemory::patch(resource("cas"), doc(json!({"v": 2}))).with_expected_version(1);
    assert_eq!(change(b, fresh).await.expect("current").version, 2);
    let found = read(b, None, "cas").await.expect("written");
    assert_eq!((found.version, found.document), (2, doc(json!({"v": 2}))), "refusals wrote nothing");
    // A restore writes at its own version, above the stored one only.
    let restored = change(b, WriteMemory::restore(resource("cas"), doc(json!({"r": 1})), 9)).await.expect("restore");
    assert_eq!((restored.version, restored.document), (9, doc(json!({"r": 1}))));
    let behind = WriteMemory::restore(resource("cas"), doc(json!({"r": 2})), 9);
    assert_err!(change(b, behind).await, PersistError::DocumentConflict { expected: 9, actual: 9, .. });
    let next = change(b, WriteMemory::patch(resource("cas"), doc(json!({"r": 3})))).await.expect("patch");
    assert_eq!(next.version, 10, "the versions go on from the restored one");
    let fresh = change(b, WriteMemory::restore(resource("restored"), doc(json!({"x": 1})), 4)).await.expect("restore");
    assert_eq!(fresh.version, 4, "a document never written takes the restored version");
    let zero = WriteMemory::restore(resource("zero"), doc(json!({})), 0);
    assert_err!(change(b, zero).await, PersistError::InvalidInput { field: "version", .. });
    let never = WriteMemory::patch(resource("never"), doc(json!({"v": 1}))).with_expected_version(3);
    assert_err!(change(b, never).await, PersistError::DocumentConflict { expected: 3, actual: 0, .. });
    assert!(read(b, None, "never").await.is_none(), "a refused first write leaves nothing");
    store.finish().await
}

/// Patches of different keys raced through two independent handles (one where the store has
/// no second) all survive: the document holds every key, its version counts every write.
pub async fn check_racing_patches_are_never_lost<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, working_memory);
    let handles = store.racing_handles().await;
    let mut tasks = JoinSet::new();
    for i in 0..40 {
        let b = Arc::clone(&handles[i % handles.len()]);
        tasks.spawn(async move {
            let patch = doc(json!({ format!("k{i}"): i, "shared": {format!("s{i}"): true} }));
            change(b.as_ref(), WriteMemory::patch(resource("raced"), patch)).await.expect("patch");
        });
    }
    tasks.join_all().await;
    let found = read(store.b().as_ref(), None, "raced").await.expect("written");
    assert_eq!(found.version, 40);
    assert_eq!(found.document.len(), 41, "every key and the shared object");
    let shared = found.document.get("shared").and_then(Value::as_object).map_or(0, |s| s.len());
    assert_eq!(shared, 40, "nested patches merged too");
    store.finish().await
}

/// One resource id in two tenants (and in none) is three documents: each reads and writes only
/// its own.
pub async fn check_working_memory_is_per_tenant<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, working_memory);
    let b = store.b().as_ref();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    for (who, name) in [(Some(&acme), "acme"), (Some(&globex), "globex"), (None, "none")] {
        let request = WriteMemory::patch(resource("user"), doc(json!({"who": name}))).with_context(ctx(who));
        assert_eq!(change(b, request).await.expect("patch").version, 1, "{name}");
    }
    for (who, name) in [(Some(&acme), "acme"), (Some(&globex), "globex"), (None, "none")] {
        let found = read(b, who, "user").await.expect("written");
        assert_eq!((found.document, found.tenant.as_ref()), (doc(json!({"who": name})), who));
    }
    store.finish().await
}

/// A document over the size limit once patched, nested too deep or holding U+0000 is
/// `InvalidInput` naming `document`, and nothing is written.
pub async fn check_working_memory_refuses_bad_input<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, working_memory);
    let b = store.b().as_ref();
    let half = "x".repeat(MAX_DOCUMENT_BYTES / 2 + 16);
    change(b, WriteMemory::patch(resource("big"), doc(json!({"a": half.clone()})))).await.expect("half");
    let too_big = WriteMemory::patch(resource("big"), doc(json!({"b": half})));
    assert_err!(change(b, too_big).await, PersistError::InvalidInput { field: "document", .. });
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!({ "d": deep });
    }
    let refused = change(b, WriteMemory::replace(resource("big"), doc(deep))).await;
    assert_err!(refused, PersistError::InvalidInput { field: "document", .. });
    let nul = WriteMemory::replace(resource("big"), doc(json!({"a": "x\u{0}y"})));
    assert_err!(change(b, nul).await, PersistError::InvalidInput { field: "document", .. });
    let found = read(b, None, "big").await.expect("written");
    assert_eq!((found.version, found.document.len()), (1, 1), "nothing refused was written");
    store.finish().await
}

/// A listing pages the tenant's documents by resource (bytewise), every tenant's for operators
/// (by tenant, then resource), each as a read finds it.
pub async fn check_working_memory_lists_by_tenant_and_resource<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, working_memory);
    let b = store.b().as_ref();
    let acme = tenant("acme");
    for id in ["b", "a", "c", "B"] {
        let request = WriteMemory::patch(resource(id), doc(json!({"id": id}))).with_context(ctx(Some(&acme)));
        change(b, request).await.expect("patch");
    }
    change(b, WriteMemory::patch(resource("z"), doc(json!({"id": "z"})))).await.expect("no tenant");
    let mut listing = ListMemories::new().with_limit(3).with_context(ctx(Some(&acme)));
    let mut seen = Vec::new();
    loop {
        let page = b.memories(listing.clone()).await.expect("list");
        assert!(page.items.len() <= 3);
        seen.extend(page.items.iter().map(|m| m.resource.as_str().to_owned()));
        if !page.has_more {
            break;
        }
        listing = listing.with_cursor(page.next_cursor);
    }
    assert_eq!(seen, ["B", "a", "b", "c"], "the tenant's, bytewise");
    let first = b.memories(ListMemories::new().with_context(ctx(Some(&acme)))).await.expect("list").items.remove(0);
    assert_eq!(Some(first), read(b, Some(&acme), "B").await, "as a read finds it");
    let every = b.memories(ListMemories::new().across_tenants(true)).await.expect("list").items;
    let keys: Vec<(Option<String>, String)> = every
        .iter()
        .map(|m| (m.tenant.as_ref().map(|t| t.as_str().to_owned()), m.resource.as_str().to_owned()))
        .collect();
    assert_eq!(keys.first(), Some(&(None, "z".to_owned())), "no tenant ('') first");
    assert_eq!(keys.len(), 5);
    let mine = b.memories(ListMemories::new()).await.expect("list").items;
    assert_eq!(mine.len(), 1, "no tenant: its own only");
    store.finish().await
}

/// Working memory in the change feed (with `feed` too): each write of a document is one event
/// of its resource (op `write_memory`, its new version, no thread), read by the document's own
/// scope, by its tenant's and across tenants, never by a thread's or another tenant's; a
/// refused write has none; a subscriber to the document receives its writes (not a thread's of
/// the same name).
pub async fn check_working_memory_writes_are_in_the_feed<F: Factory>(factory: &F) -> Outcome {
    use persist_core::feed::{FeedEvent, ReadFeed};
    use persist_core::{PersistOp, ThreadId};
    let store = crate::fixture::open!(factory);
    gate!(store, working_memory);
    gate!(store, feed);
    let b = store.b().as_ref();
    let acme = tenant("feed-acme");
    let events = async |query: ReadFeed| -> Vec<FeedEvent> { b.read_feed(query).await.expect("read_feed").events };
    let start = b.read_feed(ReadFeed::across_tenants().with_limit(1000)).await.expect("read_feed").head;
    let user = resource("user:1");
    // A thread of the same name as the resource: a thread's read never holds the document's.
    crate::fixture::add_text(b, &ThreadId::new("user:1").expect("id"), "hi").await;
    change(b, WriteMemory::patch(user.clone(), doc(json!({"a": 1})))).await.expect("patch");
    change(b, WriteMemory::clear(user.clone())).await.expect("clear");
    let stale = change(b, WriteMemory::clear(user.clone()).with_expected_version(1)).await;
    assert_err!(stale, PersistError::DocumentConflict { .. });
    change(b, WriteMemory::patch(resource("user:2"), doc(json!({"b": 2})))).await.expect("another");
    change(b, WriteMemory::patch(user.clone(), doc(json!({"c": 3}))).with_context(ctx(Some(&acme))))
        .await
        .expect("acme");

    let own = events(ReadFeed::memory(user.clone()).after(start)).await;
    let seen: Vec<_> = own.iter().map(|e| (e.change.op, e.change.version, e.change.resource.clone())).collect();
    let at = |version| (PersistOp::WriteMemory, version, Some(user.clone()));
    assert_eq!(seen, [at(1), at(2)], "one event per write, none for the refused one");
    assert!(
        own.iter().all(|e| e.change.thread_id.is_none() && e.change.message_id.is_none() && e.change.tenant.is_none())
    );
    assert!(own.windows(2).all(|w| w[0].position < w[1].position));
    let tenant_wide = events(ReadFeed::tenant().after(start)).await;
    assert_eq!(tenant_wide.len(), 4, "the thread's add and three writes: {tenant_wide:?}");
    let thread = events(ReadFeed::thread(ThreadId::new("user:1").expect("id")).after(start)).await;
    assert!(thread.iter().all(|e| e.change.op == PersistOp::Add), "a thread's read holds no document's: {thread:?}");
    let in_acme = events(ReadFeed::memory(user.clone()).after(start).with_context(ctx(Some(&acme)))).await;
    assert_eq!(in_acme.iter().map(|e| e.change.tenant.clone()).collect::<Vec<_>>(), [Some(acme.clone())]);
    let everything = events(ReadFeed::across_tenants().after(start).with_limit(1000)).await;
    assert_eq!(everything.iter().filter(|e| e.change.op == PersistOp::WriteMemory).count(), 4);
    // Read back with the page's own bounds: limit and resume.
    let first = b.read_feed(ReadFeed::memory(user.clone()).after(start).with_limit(1)).await.expect("read_feed");
    assert!(first.has_more && first.events.len() == 1);
    let rest = events(ReadFeed::memory(user.clone()).after(first.events[0].position)).await;
    assert_eq!(rest.len(), 1);

    // A subscriber to the document receives its writes, not a thread's of its name.
    let pipeline = persist_core::Pipeline::new(Arc::clone(store.b()));
    let head = b.read_feed(ReadFeed::across_tenants()).await.expect("read_feed").head;
    let mut following = pipeline.subscribe(ReadFeed::memory(user.clone()).after(head)).await.expect("subscribe");
    crate::fixture::add_text(b, &ThreadId::new("user:1").expect("id"), "again").await;
    change(b, WriteMemory::patch(user.clone(), doc(json!({"d": 4})))).await.expect("patch");
    let woken = tokio::time::timeout(std::time::Duration::from_secs(10), following.next()).await;
    let event = woken.expect("woken by the document's write").expect("an event");
    assert_eq!((event.change.op, event.change.version), (PersistOp::WriteMemory, 3));
    store.finish().await
}
