//! The change feed: one event per committed change, in commit order, resumable from any
//! position, scoped by tenant, and reaching subscribers of other handles (gated on `feed`).

use std::time::Duration;

use persist_core::args::{Add, Delete, Reserve, Restore, Update, UpdateContent};
use persist_core::feed::{FeedEvent, ReadFeed, Removed};
use persist_core::{Backend, Content, Metadata, PersistError, PersistOp, Pipeline, Role, Status, TenantId};
use serde_json::json;

use crate::fixture::{all_messages_in, assert_err, ctx, gate, m, t, tenant, thread_in, write, written};
use crate::{Factory, Outcome};

/// Every event of `query`'s scope after its position, read page by page.
async fn all_events<B: Backend>(b: &B, query: ReadFeed) -> Vec<FeedEvent> {
    let mut query = query.with_limit(2);
    let mut events = Vec::new();
    loop {
        let page = b.read_feed(query.clone()).await.expect("read the feed");
        assert!(page.events.len() <= 2, "a page holds at most its limit");
        query = query.clone().after(page.last_position(query.after));
        events.extend(page.events);
        if !page.has_more {
            return events;
        }
    }
}

/// The fields of an event that do not depend on the store: what changed, and how.
type Shape = (PersistOp, Option<String>, Option<u64>, u64, Option<Removed>);

fn shapes(events: &[FeedEvent]) -> Vec<Shape> {
    events
        .iter()
        .map(|e| {
            (
                e.change.op,
                e.change.message_id.as_ref().map(|id| id.as_str().to_owned()),
                e.change.seq,
                e.change.version,
                e.change.removed,
            )
        })
        .collect()
}

fn shape(op: PersistOp, id: Option<&str>, seq: Option<u64>, version: u64, removed: Option<Removed>) -> Shape {
    (op, id.map(str::to_owned), seq, version, removed)
}

fn assert_ordered(events: &[FeedEvent]) {
    assert!(events.windows(2).all(|w| w[0].position < w[1].position), "positions rise: {events:?}");
}

/// Each committed write of a thread is one event, in commit order, with the thread's tenant,
/// the op, the message, its seq, version and status (a reply marked interrupted says so); a write that changed nothing (a deduplicated add)
/// or was refused has none.
pub async fn check_feed_records_each_committed_write_in_order<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let b = store.b();
    let owner = tenant("feed-owner");
    let id = t("fed");
    let c = || ctx(Some(&owner));
    let user = Add::new(id.clone(), Role::User, Content::text("hi")).with_id(m("u1")).with_context(c());
    written(b, user.clone()).await;
    let reply = Reserve::new(id.clone(), Role::Assistant).with_id(m("r1")).with_context(c());
    written(b, reply).await;
    assert!(write(b, user.clone()).await.unwrap().is_deduplicated());
    let partial = UpdateContent::partial(id.clone(), m("r1"), Content::text("Hel"));
    write(b, partial.with_context(c())).await.unwrap();
    write(b, UpdateContent::new(id.clone(), m("r1"), Content::text("Hello")).with_context(c())).await.unwrap();
    let tagged = Update::message(id.clone(), m("u1")).with_metadata(Metadata::new().with("k", json!(1)));
    write(b, tagged.with_context(c())).await.unwrap();
    write(b, Update::thread(id.clone()).with_title(Some("Greeting".into())).with_context(c())).await.unwrap();
    let missing = UpdateContent::new(id.clone(), m("nope"), Content::text("x")).with_context(c());
    assert_err!(write(b, missing).await, PersistError::NotFound { .. });
    write(b, Delete::message(id.clone(), m("u1")).with_context(c())).await.unwrap();
    written(b, Reserve::new(id.clone(), Role::Assistant).with_id(m("r2")).with_context(c())).await;
    write(b, UpdateContent::interrupted(id.clone(), m("r2")).with_context(c())).await.unwrap();

    let events = all_events(b.as_ref(), ReadFeed::thread(id.clone()).with_context(c())).await;
    assert_ordered(&events);
    assert_eq!(
        shapes(&events),
        [
            shape(PersistOp::Add, Some("u1"), Some(1), 1, None),
            shape(PersistOp::Reserve, Some("r1"), Some(2), 1, None),
            shape(PersistOp::UpdateContent, Some("r1"), Some(2), 2, None),
            shape(PersistOp::UpdateContent, Some("r1"), Some(2), 3, None),
            shape(PersistOp::Update, Some("u1"), Some(1), 2, None),
            shape(PersistOp::Update, None, None, 2, None),
            shape(PersistOp::Delete, Some("u1"), Some(1), 2, Some(Removed::Message)),
            shape(PersistOp::Reserve, Some("r2"), Some(3), 1, None),
            shape(PersistOp::UpdateContent, Some("r2"), Some(3), 2, None),
        ]
    );
    let statuses: Vec<_> = events.iter().map(|e| e.change.status).collect();
    let (complete, reserved) = (Some(Status::Complete), Some(Status::Reserved));
    assert_eq!(
        statuses,
        [complete, reserved, reserved, complete, complete, None, None, reserved, Some(Status::Interrupted)],
        "each message's event tells the status it left"
    );
    assert!(
        events.iter().all(|e| e.change.tenant.as_ref() == Some(&owner) && e.change.thread_id.as_ref() == Some(&id)),
        "{events:?}"
    );
    assert!(events.windows(2).all(|w| w[0].at <= w[1].at), "times follow positions");
    let page = b.read_feed(ReadFeed::thread(id).with_context(c())).await.unwrap();
    assert_eq!(page.head, events.last().unwrap().position, "the head is the newest position");
    store.finish().await
}

/// A thread delete is one event that says it removed the thread (its messages have none of
/// their own); a truncation is one event per removed message, then the thread's new version;
/// restored messages are events by their status.
pub async fn check_feed_tells_thread_deletes_truncations_and_restores<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let b = store.b();
    let (gone, cut) = (t("feed-gone"), t("feed-cut"));
    for thread in [&gone, &cut] {
        for (n, text) in ["one", "two", "three"].into_iter().enumerate() {
            let id = m(&format!("{thread}-{n}"));
            written(b, Add::new(thread.clone(), Role::User, Content::text(text)).with_id(id)).await;
        }
    }
    let before = b.read_feed(ReadFeed::across_tenants()).await.unwrap().head;
    write(b, Delete::thread(gone.clone())).await.unwrap();
    write(b, Delete::after(cut.clone(), 1)).await.unwrap();

    let deleted = all_events(b.as_ref(), ReadFeed::thread(gone.clone()).after(before)).await;
    assert_eq!(shapes(&deleted), [shape(PersistOp::Delete, None, None, 1, Some(Removed::Thread))]);
    let truncated = all_events(b.as_ref(), ReadFeed::thread(cut.clone()).after(before)).await;
    assert_eq!(
        shapes(&truncated),
        [
            shape(PersistOp::Delete, Some("feed-cut-1"), Some(2), 1, Some(Removed::Message)),
            shape(PersistOp::Delete, Some("feed-cut-2"), Some(3), 1, Some(Removed::Message)),
            shape(PersistOp::Update, None, None, 2, None),
        ]
    );
    assert!(deleted[0].position < truncated[0].position, "one feed, in commit order");

    if store.caps().restore {
        let copy = tenant("feed-copy");
        let thread = thread_in(b, None, &cut).await.unwrap();
        let mut messages = all_messages_in(b, None, &cut).await;
        let mut reply = messages[0].clone();
        (reply.id, reply.seq, reply.status) = (m("streaming"), 3, persist_core::Status::Reserved);
        messages.push(reply);
        let restore = Restore::new(persist_core::Thread { tenant: Some(copy.clone()), ..thread }, messages);
        write(b, restore.with_context(ctx(Some(&copy)))).await.unwrap();
        let restored = all_events(b.as_ref(), ReadFeed::thread(cut.clone()).with_context(ctx(Some(&copy)))).await;
        assert_eq!(
            shapes(&restored),
            [
                shape(PersistOp::Add, Some("feed-cut-0"), Some(1), 1, None),
                shape(PersistOp::Reserve, Some("streaming"), Some(3), 1, None),
            ]
        );
    }
    store.finish().await
}

/// A thread id is followed across the thread's removal and a new thread of the same id: a
/// reader of that id resuming from before the purge that freed it reads the purge's delete, then
/// the new thread's writes, and never another thread's events written between; a tombstone
/// purged later adds no second delete. A purge that frees an id erases the thread's events but
/// that delete (an id may carry personal data): none is left in any scope.
pub async fn check_feed_follows_a_thread_id_across_a_freed_and_reused_id<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let b = store.b();
    let (reused, tombstoned, busy) = (t("feed-reused"), t("feed-tombstoned"), t("feed-busy"));
    let add = |thread: &persist_core::ThreadId, id: &str| {
        Add::new(thread.clone(), Role::User, Content::text(id)).with_id(m(id))
    };
    let start = b.read_feed(ReadFeed::across_tenants()).await.unwrap().head;
    written(b, add(&reused, "first-1")).await;
    written(b, add(&tombstoned, "kept-1")).await;
    written(b, add(&busy, "busy-1")).await;
    written(b, add(&reused, "first-2")).await;
    let before = b.read_feed(ReadFeed::across_tenants()).await.unwrap().head;
    write(b, Delete::purge(reused.clone()).freeing_id(true)).await.unwrap();
    written(b, add(&busy, "busy-2")).await;
    write(b, Delete::thread(tombstoned.clone())).await.unwrap();
    write(b, Delete::purge(tombstoned.clone()).freeing_id(true)).await.unwrap();
    written(b, add(&reused, "second-1")).await;
    written(b, add(&busy, "busy-3")).await;

    let whole = all_events(b.as_ref(), ReadFeed::thread(reused.clone()).after(start)).await;
    assert_ordered(&whole);
    let ops = |events: &[FeedEvent]| -> Vec<(PersistOp, Option<String>, Option<Removed>)> {
        events
            .iter()
            .map(|e| (e.change.op, e.change.message_id.as_ref().map(|id| id.as_str().to_owned()), e.change.removed))
            .collect()
    };
    let add_of = |id: &str| (PersistOp::Add, Some(id.to_owned()), None);
    let thread_delete = (PersistOp::Delete, None, Some(Removed::Thread));
    assert_eq!(ops(&whole), [thread_delete.clone(), add_of("second-1")], "the freed thread's events are erased");
    assert!(whole.iter().all(|e| e.change.thread_id.as_ref() == Some(&reused)), "{whole:?}");
    assert_eq!(whole[1].change.seq, Some(1), "the new thread numbers from 1");
    let resumed = all_events(b.as_ref(), ReadFeed::thread(reused.clone()).after(before)).await;
    assert_eq!(ops(&resumed), [thread_delete.clone(), add_of("second-1")]);
    let removed = all_events(b.as_ref(), ReadFeed::thread(tombstoned.clone()).after(start)).await;
    assert_eq!(ops(&removed), [thread_delete], "one delete, the tombstone's; its add erased");
    let everything = all_events(b.as_ref(), ReadFeed::across_tenants().after(start)).await;
    let of_tombstoned: Vec<_> =
        everything.iter().filter(|e| e.change.thread_id.as_ref() == Some(&tombstoned)).collect();
    assert_eq!(of_tombstoned.len(), 1, "only the delete names the freed id, store-wide: {of_tombstoned:?}");
    let of_reused = everything.iter().filter(|e| e.change.thread_id.as_ref() == Some(&reused)).count();
    assert_eq!(of_reused, 2, "the purge's delete and the new thread's add");
    let busy_events = all_events(b.as_ref(), ReadFeed::thread(busy).after(start)).await;
    assert_eq!(ops(&busy_events), [add_of("busy-1"), add_of("busy-2"), add_of("busy-3")]);
    store.finish().await
}

/// Reading after a position answers exactly the later events of the scope, once each, in
/// order, whatever the page size; after the head, nothing; past the head, `InvalidInput`; a
/// bad limit, `InvalidInput`.
pub async fn check_feed_resumes_exactly_after_a_position<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let b = store.b();
    let (id, other) = (t("feed-resume"), t("feed-resume-other"));
    for n in 0..5 {
        written(b, Add::new(id.clone(), Role::User, Content::text(format!("{n}")))).await;
        written(b, Add::new(other.clone(), Role::User, Content::text(format!("{n}")))).await;
    }
    let all = all_events(b.as_ref(), ReadFeed::thread(id.clone())).await;
    assert_eq!(all.len(), 5);
    assert_ordered(&all);
    let resumed = all_events(b.as_ref(), ReadFeed::thread(id.clone()).after(all[1].position)).await;
    assert_eq!(resumed, all[2..], "exactly the events after the position, once each");
    let page = b.read_feed(ReadFeed::thread(id.clone()).after(all[1].position).with_limit(1000)).await.unwrap();
    assert_eq!((page.events.as_slice(), page.has_more), (&all[2..], false), "one page when it fits");

    let head = b.read_feed(ReadFeed::across_tenants()).await.unwrap().head;
    let quiet = b.read_feed(ReadFeed::thread(id.clone()).after(head)).await.unwrap();
    assert!(quiet.events.is_empty() && !quiet.has_more && quiet.head == head);
    assert_err!(
        b.read_feed(ReadFeed::thread(id.clone()).after(head + 1_000)).await,
        PersistError::InvalidInput { field: "after", .. }
    );
    for limit in [0, 1001] {
        assert_err!(
            b.read_feed(ReadFeed::thread(id.clone()).with_limit(limit)).await,
            PersistError::InvalidInput { field: "limit", .. }
        );
    }
    let store_wide = all_events(b.as_ref(), ReadFeed::across_tenants()).await;
    assert_eq!(store_wide.len(), 10);
    assert_ordered(&store_wide);
    assert!(
        store_wide.iter().filter(|e| e.change.thread_id.as_ref() == Some(&id)).eq(all.iter()),
        "a thread's events are the store's"
    );
    store.finish().await
}

/// A thread is `(tenant, id)` in the feed too: one thread id in two tenants is two threads'
/// events; a tenant reads its own threads only; across tenants reads both.
pub async fn check_feed_is_scoped_by_tenant<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let b = store.b();
    let (a, z) = (tenant("feed-a"), tenant("feed-z"));
    let id = t("shared-name");
    let add = |who: Option<&TenantId>, text: &str| {
        Add::new(id.clone(), Role::User, Content::text(text)).with_context(ctx(who))
    };
    written(b, add(Some(&a), "a1")).await;
    written(b, add(Some(&z), "z1")).await;
    written(b, add(None, "none1")).await;
    written(b, add(Some(&a), "a2")).await;
    written(b, Add::new(t("elsewhere"), Role::User, Content::text("a3")).with_context(ctx(Some(&a)))).await;

    let of = |who: Option<&TenantId>| ReadFeed::thread(id.clone()).with_context(ctx(who));
    let in_a = all_events(b.as_ref(), of(Some(&a))).await;
    assert_eq!(in_a.iter().map(|e| e.change.seq).collect::<Vec<_>>(), [Some(1), Some(2)]);
    assert!(in_a.iter().all(|e| e.change.tenant.as_ref() == Some(&a)));
    let in_z = all_events(b.as_ref(), of(Some(&z))).await;
    assert_eq!(in_z.len(), 1);
    assert_eq!(in_z[0].change.tenant.as_ref(), Some(&z));
    let untenanted = all_events(b.as_ref(), of(None)).await;
    assert_eq!((untenanted.len(), untenanted[0].change.tenant.as_ref()), (1, None));

    let tenant_a = all_events(b.as_ref(), ReadFeed::tenant().with_context(ctx(Some(&a)))).await;
    assert_eq!(tenant_a.len(), 3, "tenant a's threads only: {tenant_a:?}");
    assert!(tenant_a.iter().all(|e| e.change.tenant.as_ref() == Some(&a)));
    let everything = all_events(b.as_ref(), ReadFeed::across_tenants()).await;
    assert_eq!(everything.len(), 5);
    store.finish().await
}

/// A subscriber through a pipeline over one handle receives, in order and once, the writes
/// made through another independent handle (another pool, process or instance), and after a
/// reconnect from its last position, exactly what it missed.
pub async fn check_feed_subscriber_sees_another_handles_writes<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let b = store.b();
    let other = if store.caps().shared_storage { store.second_handle().await } else { b.clone() };
    let pipeline = Pipeline::new(b.clone());
    let id = t("feed-live");
    let mut live = pipeline.subscribe(ReadFeed::thread(id.clone())).await.expect("subscribe");
    let mut noise = pipeline.subscribe(ReadFeed::thread(t("feed-quiet"))).await.expect("subscribe");
    let within = Duration::from_secs(10);
    let mut seen = Vec::new();
    for n in 0..3 {
        written(other.as_ref(), Add::new(id.clone(), Role::User, Content::text(format!("{n}")))).await;
        let event = tokio::time::timeout(within, live.next()).await.expect("the event arrives in time").unwrap();
        assert_eq!((event.change.op, event.change.seq), (PersistOp::Add, Some(n + 1)));
        seen.push(event);
    }
    assert_ordered(&seen);
    let quiet = tokio::time::timeout(Duration::from_millis(200), noise.next()).await;
    assert!(quiet.is_err(), "another thread's subscriber hears nothing: {quiet:?}");

    // A client that disconnected after the first event comes back from its position.
    drop(live);
    write(other.as_ref(), Update::thread(id.clone()).with_title(Some("later".into()))).await.unwrap();
    let mut back = pipeline.subscribe(ReadFeed::thread(id.clone()).after(seen[0].position)).await.unwrap();
    let mut missed = Vec::new();
    for _ in 0..3 {
        missed.push(tokio::time::timeout(within, back.next()).await.expect("the missed events").unwrap());
    }
    assert_eq!(missed[..2], seen[1..], "exactly what it missed, in order, once");
    assert_eq!((missed[2].change.op, missed[2].change.message_id.as_ref()), (PersistOp::Update, None));
    assert_eq!(back.position(), missed[2].position);
    let nothing_more = tokio::time::timeout(Duration::from_millis(200), back.next()).await;
    assert!(nothing_more.is_err(), "no duplicate follows: {nothing_more:?}");
    store.finish().await
}
