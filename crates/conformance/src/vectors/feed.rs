//! The vectors' part of the feed (gated on `vectors` and `feed`): a standalone embed is one
//! event, and every change an index of the vectors must follow (a vector written, replaced or
//! removed, a role or status changed, a thread's metadata or liveness) has one.

use persist_core::args::{Delete, Reserve, Update, UpdateContent};
use persist_core::feed::ReadFeed;
use persist_core::vector::{Embed, ListEmbeddings};
use persist_core::{Backend, Content, Message, Metadata, PersistError, PersistOp, Role};
use serde_json::json;

use super::{listed, v};
use crate::fixture::{assert_err, ctx, gate, t, tenant, text_add, write, written};
use crate::{Factory, Outcome};

/// A standalone embed is one event of the feed (gated on `feed` too), in the embed's
/// transaction: op `embed`, its message's id, seq and version (no status), read in the thread's
/// feed and the tenant's; an `add` that carries its vector has its insert's event alone, and a
/// refused embed records nothing.
pub async fn check_an_embed_is_an_event_of_the_feed<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, vectors);
    gate!(store, feed);
    let b = store.b().as_ref();
    let owner = tenant("embed-feed");
    let c = || ctx(Some(&owner));
    let thread = t("embedded-in-the-feed");
    let first = written(b, text_add(&thread, "first").with_context(c())).await;
    let tagged = Update::message(thread.clone(), first.id.clone()).with_metadata(Metadata::new().with("k", json!(1)));
    write(b, tagged.with_context(c())).await.expect("tag");
    let carried = written(b, text_add(&thread, "carried").with_embedding(v(&[0.0, 1.0])).with_context(c())).await;
    let before = b.read_feed(ReadFeed::tenant().with_context(c())).await.expect("read the feed").head;
    let vector = v(&[1.0, 0.0]);
    write(b, Embed::new(thread.clone(), first.id.clone(), vector.clone()).with_context(c())).await.expect("embed");
    let after = b.read_feed(ReadFeed::tenant().with_context(c())).await.expect("read the feed").head;
    // Refused: a message that does not exist, another tenant's, a reservation.
    let unknown = Embed::new(thread.clone(), persist_core::MessageId::new("nope").unwrap(), vector.clone());
    assert_err!(write(b, unknown.with_context(c())).await, PersistError::NotFound { .. });
    assert_err!(
        write(b, Embed::new(thread.clone(), first.id.clone(), vector.clone())).await,
        PersistError::NotFound { .. }
    );
    let reply = written(b, Reserve::new(thread.clone(), Role::Assistant).with_context(c())).await;
    let reserved = Embed::new(thread.clone(), reply.id.clone(), vector.clone()).with_context(c());
    assert_err!(write(b, reserved).await, PersistError::InvalidInput { .. });

    let events = b.read_feed(ReadFeed::thread(thread.clone()).with_context(c())).await.expect("read the feed").events;
    let shapes: Vec<_> =
        events.iter().map(|e| (e.change.op, e.change.message_id.clone(), e.change.seq, e.change.version)).collect();
    assert_eq!(
        shapes,
        [
            (PersistOp::Add, Some(first.id.clone()), Some(1), 1),
            (PersistOp::Update, Some(first.id.clone()), Some(1), 2),
            (PersistOp::Add, Some(carried.id.clone()), Some(2), 1),
            (PersistOp::Embed, Some(first.id.clone()), Some(1), 2),
            (PersistOp::Reserve, Some(reply.id.clone()), Some(3), 1),
        ],
        "the add that carried its vector has its add alone; refused embeds have none"
    );
    let embedded = &events[3];
    assert_eq!((embedded.change.status, &embedded.change.delta, embedded.change.removed), (None, &None, None));
    assert_eq!((embedded.change.tenant.as_ref(), embedded.change.thread_id.as_ref()), (Some(&owner), Some(&thread)));
    assert_eq!(embedded.position, after, "one event, in the embed's write");
    let of_tenant =
        b.read_feed(ReadFeed::tenant().after(before).with_context(c())).await.expect("read the tenant's feed").events;
    assert_eq!(of_tenant.first(), Some(embedded), "the tenant's feed after the add: the embed first");
    assert_eq!(of_tenant.len(), 2, "then the reservation alone: {of_tenant:?}");
    store.finish().await
}

/// What an index derived from the vectors follows (gated on `feed` too): every committed write
/// that removes or changes a stored vector, its message's role, status or content, a thread's
/// metadata or its liveness has an event naming the message (with its seq) or the thread: a
/// rewrite (`update_content`), a role changed (`update`), a message deleted, a truncation and a
/// clear (a delete per message, then the thread's `update`), the thread's metadata (`update`),
/// a thread deleted or purged (the thread's `delete`), what a summary covered (a delete per
/// message, then the thread's `update`, where summaries are declared).
pub async fn check_every_change_of_a_vector_is_in_the_feed<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, vectors);
    gate!(store, feed);
    let b = store.b().as_ref();
    let owner = tenant("vector-changes");
    let c = || ctx(Some(&owner));
    let add = |thread: &persist_core::ThreadId, text: &str, x: f32| {
        text_add(thread, text).with_embedding(v(&[x, 1.0])).with_context(c())
    };
    type Seen = (PersistOp, Option<String>, Option<u64>, Option<persist_core::feed::Removed>);
    let events_after = async |head: u64| -> Vec<Seen> {
        let page = b.read_feed(ReadFeed::tenant().after(head).with_context(c())).await.expect("read the feed");
        assert!(!page.has_more);
        page.events
            .iter()
            .map(|e| {
                (
                    e.change.op,
                    e.change.message_id.as_ref().map(|id| id.as_str().to_owned()),
                    e.change.seq,
                    e.change.removed,
                )
            })
            .collect()
    };
    let head = async || b.read_feed(ReadFeed::tenant().with_context(c())).await.expect("read the feed").head;
    let (msg, thr) = (
        |op: PersistOp, m: &Message, removed: Option<persist_core::feed::Removed>| {
            (op, Some(m.id.as_str().to_owned()), Some(m.seq), removed)
        },
        |op: PersistOp, removed: Option<persist_core::feed::Removed>| (op, None, None, removed),
    );
    use persist_core::feed::Removed;

    let a = t("vector-changes");
    let written_all = [
        written(b, add(&a, "one", 1.0)).await,
        written(b, add(&a, "two", 2.0)).await,
        written(b, add(&a, "three", 3.0)).await,
        written(b, add(&a, "four", 4.0)).await,
        written(b, add(&a, "five", 5.0)).await,
    ];
    let [one, two, three, four, five] = &written_all;
    let listed_seqs = async || -> Vec<u64> {
        listed(b, ListEmbeddings::new(a.clone()).with_context(c())).await.iter().map(|s| s.seq).collect()
    };
    let mut from = head().await;
    let rewrite = UpdateContent::new(a.clone(), one.id.clone(), Content::text("one, rewritten")).with_context(c());
    write(b, rewrite).await.expect("rewrite");
    assert_eq!(listed_seqs().await, [2, 3, 4, 5], "a rewrite removes the vector");
    write(b, Update::message(a.clone(), two.id.clone()).with_role(Role::System).with_context(c())).await.expect("role");
    write(b, Delete::message(a.clone(), three.id.clone()).with_context(c())).await.expect("delete");
    write(b, Delete::after(a.clone(), 4).with_context(c())).await.expect("truncate");
    let tagged = Update::thread(a.clone()).with_metadata(Metadata::new().with("user_id", json!("u1")));
    write(b, tagged.with_context(c())).await.expect("thread metadata");
    assert_eq!(listed_seqs().await, [2, 4]);
    assert_eq!(
        events_after(from).await,
        [
            msg(PersistOp::UpdateContent, one, None),
            msg(PersistOp::Update, two, None),
            msg(PersistOp::Delete, three, Some(Removed::Message)),
            msg(PersistOp::Delete, five, Some(Removed::Message)),
            thr(PersistOp::Update, None),
            thr(PersistOp::Update, None),
        ]
    );
    from = head().await;
    write(b, Delete::clear(a.clone()).with_context(c())).await.expect("clear");
    assert!(listed_seqs().await.is_empty());
    assert_eq!(
        events_after(from).await,
        [
            msg(PersistOp::Delete, one, Some(Removed::Message)),
            msg(PersistOp::Delete, two, Some(Removed::Message)),
            msg(PersistOp::Delete, four, Some(Removed::Message)),
            thr(PersistOp::Update, None),
        ]
    );

    for purge in [false, true] {
        let gone = t(if purge { "vector-changes-purged" } else { "vector-changes-deleted" });
        written(b, add(&gone, "soon gone", 1.0)).await;
        let from = head().await;
        let delete = if purge { Delete::purge(gone.clone()) } else { Delete::thread(gone.clone()) };
        write(b, delete.with_context(c())).await.expect("delete the thread");
        assert_eq!(events_after(from).await, [thr(PersistOp::Delete, Some(Removed::Thread))], "purge: {purge}");
    }

    if store.caps().summaries && store.caps().branches {
        let long = t("vector-changes-covered");
        let first = written(b, add(&long, "first", 1.0)).await;
        let second = written(b, add(&long, "second", 2.0)).await;
        written(b, add(&long, "third", 3.0)).await;
        let summary = persist_core::summary::Summarize::new(long.clone(), 2, Content::text("first and second"));
        write(b, summary.with_context(c())).await.expect("summarize");
        let from = head().await;
        write(b, Delete::covered(long.clone()).with_context(c())).await.expect("delete what the summary covered");
        assert_eq!(
            events_after(from).await,
            [
                msg(PersistOp::Delete, &first, Some(Removed::Message)),
                msg(PersistOp::Delete, &second, Some(Removed::Message)),
                thr(PersistOp::Update, None),
            ]
        );
        let left = listed(b, ListEmbeddings::new(long).with_context(c())).await;
        assert_eq!(left.iter().map(|s| s.seq).collect::<Vec<_>>(), [3]);
    }
    store.finish().await
}
