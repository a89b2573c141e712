//! Purges and thread deletes that expect what they read: a thread erased (its tombstone kept
//! or its id freed), and a delete refused when the thread changed since it was read.

use std::time::Duration;

use persist_core::{Content, Metadata, PersistError, Pipeline};
use serde_json::json;

use super::pipeline;
use crate::fixture::{add_text, all_messages, assert_err, gate, t, text_add, thread};
use crate::{Factory, Outcome};

/// A purge deletes every message, clears the title and metadata, and leaves a tombstone that
/// still refuses a late writer; a purge of what is gone answers empty.
pub async fn check_purge_erases_a_thread_and_keeps_it_dead<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("erase-me");
    let first = add_text(b.as_ref(), &id, "private").await;
    let second = add_text(b.as_ref(), &id, "more").await;
    let titled = persist_core::args::Update::thread(id.clone())
        .with_title(Some("Jane's case".into()))
        .with_metadata(Metadata::new().with("email", json!("jane@example.com")));
    crate::fixture::write(b, titled).await.unwrap();
    let purged = crate::fixture::write(b, persist_core::args::Delete::purge(id.clone())).await.unwrap();
    assert_eq!(purged, persist_core::Deleted::new(id.clone(), vec![first.id, second.id]).into());
    let tombstone = thread(b, &id).await.unwrap();
    assert!(tombstone.is_deleted(), "a tombstone stays");
    assert_eq!((tombstone.title, tombstone.metadata, tombstone.message_count), (None, Metadata::new(), 0));
    assert_eq!(tombstone.last_seq, 2);
    assert!(all_messages(b, &id).await.is_empty());
    assert_err!(crate::fixture::write(b, text_add(&id, "late")).await, PersistError::ThreadDeleted { .. });
    let again = crate::fixture::write(b, persist_core::args::Delete::purge(id.clone())).await.unwrap();
    assert_eq!(again, persist_core::Deleted::new(id.clone(), vec![]).into());
    store.finish().await
}

/// A purge freeing the id leaves nothing: the id starts a new thread (seqs from 1); a purge
/// of one message, or freeing an id without a purge, is refused.
pub async fn check_purge_can_free_the_id<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("free-me");
    let message = add_text(b.as_ref(), &id, "old").await;
    let purge = persist_core::args::Delete::purge(id.clone()).freeing_id(true);
    crate::fixture::write(b, purge).await.unwrap();
    assert!(thread(b, &id).await.is_none(), "no tombstone");
    let fresh = add_text(b.as_ref(), &id, "new life").await;
    assert_eq!(fresh.seq, 1);
    let mut one = persist_core::args::Delete::message(id.clone(), message.id.clone());
    one.purge = true;
    assert_err!(crate::fixture::write(b, one).await, PersistError::InvalidInput { field: "purge", .. });
    let mut free = persist_core::args::Delete::thread(id.clone());
    free.free_id = true;
    assert_err!(crate::fixture::write(b, free).await, PersistError::InvalidInput { field: "free_id", .. });
    assert_eq!(all_messages(b, &id).await.len(), 1, "refused requests removed nothing");
    store.finish().await
}

/// A thread deleted first and purged later (the usual order of an erasure request) has its
/// tombstone's title and metadata erased, or its id freed.
pub async fn check_purge_of_a_deleted_thread_erases_its_tombstone<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    for (name, free) in [("deleted-then-purged", false), ("deleted-then-freed", true)] {
        let id = t(name);
        add_text(b.as_ref(), &id, "private").await;
        let titled = persist_core::args::Update::thread(id.clone()).with_title(Some("Jane".into()));
        crate::fixture::write(b, titled.with_metadata(Metadata::new().with("email", json!("j@x")))).await.unwrap();
        crate::fixture::write(b, persist_core::args::Delete::thread(id.clone())).await.unwrap();
        assert_eq!(thread(b, &id).await.unwrap().title.as_deref(), Some("Jane"), "a plain delete keeps the title");
        let purge = persist_core::args::Delete::purge(id.clone()).freeing_id(free);
        let answer = crate::fixture::write(b, purge).await.unwrap();
        assert_eq!(answer, persist_core::Deleted::new(id.clone(), vec![]).into());
        match thread(b, &id).await {
            None => assert!(free, "only a freed id leaves no tombstone"),
            Some(tombstone) => {
                assert!(!free && tombstone.is_deleted());
                assert_eq!((tombstone.title, tombstone.metadata), (None, Metadata::new()));
            }
        }
    }
    store.finish().await
}

/// A thread delete can expect that nothing was written since the thread was read
/// (`expected_updated_at`): an add meanwhile (which moves no thread version) makes it a
/// `VersionConflict` that deletes nothing, so retention never deletes a thread just written to.
pub async fn check_a_thread_delete_can_expect_no_write_since<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("busy");
    add_text(b.as_ref(), &id, "old").await;
    let read = thread(b, &id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    add_text(b.as_ref(), &id, "new").await;
    let stale = persist_core::args::Delete::thread(id.clone())
        .with_expected_version(read.version)
        .with_expected_updated_at(read.updated_at);
    assert_err!(crate::fixture::write(b, stale).await, PersistError::VersionConflict { message_id: None, .. });
    assert_eq!(all_messages(b, &id).await.len(), 2, "nothing deleted");
    let now = thread(b, &id).await.unwrap();
    let current = persist_core::args::Delete::thread(id.clone()).with_expected_updated_at(now.updated_at);
    crate::fixture::write(b, current).await.expect("deleted");
    assert!(thread(b, &id).await.unwrap().is_deleted());
    let mut on_message = persist_core::args::Delete::message(id.clone(), persist_core::MessageId::new("m").unwrap());
    on_message.expected_updated_at = Some(now.updated_at);
    assert_err!(
        crate::fixture::write(b, on_message).await,
        PersistError::InvalidInput { field: "expected_updated_at", .. }
    );
    store.finish().await
}

/// A thread delete can expect the thread's summaries and session bindings as read
/// (`expected_attached`): a binding (or a summary) written since, which moves no `updated_at`,
/// makes it a `VersionConflict` that deletes nothing, instead of erasing what nobody read.
pub async fn check_a_thread_delete_can_expect_its_summaries_and_bindings<F: Factory>(factory: &F) -> Outcome {
    use persist_core::args::{Attached, Delete};
    use persist_core::session::{Bind, ListBindings};
    use persist_core::{AgentId, ProviderId, SessionId};
    let store = crate::fixture::open!(factory);
    gate!(store, sessions);
    let b = store.b();
    let p = pipeline(b);
    let id = t("attached");
    for text in ["one", "two"] {
        add_text(b.as_ref(), &id, text).await;
    }
    let bind = |agent: &str| {
        let agent = AgentId::new(agent).expect("agent");
        Bind::new(agent, id.clone(), SessionId::new("s1").expect("session"), ProviderId::new("p").expect("provider"))
    };
    p.bind(bind("first")).await.expect("bind");
    if store.caps().summaries {
        let summary = persist_core::summary::Summarize::new(id.clone(), 1, Content::text("one"));
        p.summarize(summary).await.expect("summary");
    }
    let read = |p: Pipeline, id: persist_core::ThreadId| async move {
        let bindings = p.bindings(ListBindings::new(id.clone())).await.expect("bindings");
        let summaries = p.summaries(persist_core::summary::ListSummaries::new(id)).await;
        let ends =
            summaries.map(|page| page.items.iter().map(|s| s.through_seq).collect::<Vec<_>>()).unwrap_or_default();
        Attached::new(ends, bindings.into_iter().map(|b| (b.binding.agent_id, b.binding.updated_at)))
    };
    let before = (thread(b, &id).await.unwrap(), read(p.clone(), id.clone()).await);
    assert_eq!(before.1.len(), 1 + usize::from(store.caps().summaries));
    p.bind(bind("second")).await.expect("a binding written after the read");
    let stale = Delete::purge(id.clone())
        .with_expected_updated_at(before.0.updated_at)
        .with_expected_attached(before.1.clone());
    assert_err!(p.delete(stale).await, PersistError::VersionConflict { message_id: None, .. });
    assert_eq!(all_messages(b, &id).await.len(), 2, "nothing deleted");
    assert_eq!(p.bindings(ListBindings::new(id.clone())).await.expect("bindings").len(), 2, "both bindings kept");
    let now = (thread(b, &id).await.unwrap(), read(p.clone(), id.clone()).await);
    let current = Delete::purge(id.clone()).with_expected_updated_at(now.0.updated_at).with_expected_attached(now.1);
    p.delete(current).await.expect("deleted, as read");
    assert!(thread(b, &id).await.unwrap().is_deleted());
    let mut on_message = Delete::message(id.clone(), persist_core::MessageId::new("m").unwrap());
    on_message.expected_attached = Some(Attached::default());
    assert_err!(
        crate::fixture::write(b, on_message).await,
        PersistError::InvalidInput { field: "expected_attached", .. }
    );
    store.finish().await
}
