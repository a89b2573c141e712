//! Truncation: every message after a seq removed in one atomic step (edit and regenerate).

use std::sync::Arc;

use persist_core::args::{Delete, Reserve, Update};
use persist_core::{Deleted, MessageId, Metadata, PersistError, Role};
use serde_json::json;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::fixture::{add_text, all_messages, assert_err, snapshot, t, thread, write, written};
use crate::{Factory, Outcome};

fn ids(messages: &[persist_core::Message]) -> Vec<MessageId> {
    messages.iter().map(|m| m.id.clone()).collect()
}

/// A truncation after seq N removes every later message (placeholders too), answers their ids
/// in seq order, keeps `last_seq` (removed seqs are never reused), moves the counters and bumps
/// the thread's version.
pub async fn check_truncate_removes_every_message_after_a_seq<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("edit-me");
    let mut kept = Vec::new();
    for i in 0..2 {
        kept.push(add_text(b.as_ref(), &id, &format!("kept {i}")).await);
    }
    let mut later = vec![add_text(b.as_ref(), &id, "answer").await];
    later.push(written(b, Reserve::new(id.clone(), Role::Assistant)).await);
    later.push(add_text(b.as_ref(), &id, "follow-up").await);
    let before = thread(b, &id).await.unwrap();

    let removed = write(b, Delete::after(id.clone(), 2)).await.expect("truncate");
    assert_eq!(removed, Deleted::new(id.clone(), ids(&later)).into(), "every later id, in seq order");
    assert_eq!(all_messages(b, &id).await, kept);
    let after = thread(b, &id).await.unwrap();
    assert_eq!((after.message_count, after.last_seq, after.version), (2, 5, before.version + 1));
    assert!(after.updated_at >= before.updated_at);
    assert_eq!(add_text(b.as_ref(), &id, "regenerated").await.seq, 6, "seqs are never reused");

    // Nothing after the seq: an empty answer, nothing changed.
    let unchanged = thread(b, &id).await.unwrap();
    let nothing = write(b, Delete::after(id.clone(), 6)).await.expect("truncate");
    assert_eq!(nothing, Deleted::new(id.clone(), vec![]).into());
    assert_eq!(thread(b, &id).await.unwrap(), unchanged, "a truncation that removes nothing changes nothing");
    // After seq 0: every message.
    let all = write(b, Delete::after(id.clone(), 0)).await.expect("truncate");
    assert_eq!(
        all.clone(),
        Deleted::new(id.clone(), vec![kept[0].id.clone(), kept[1].id.clone(), all_ids(&all)[2].clone()]).into()
    );
    let emptied = thread(b, &id).await.unwrap();
    assert_eq!((emptied.message_count, emptied.deleted_at), (0, None), "the thread stays, empty, not a tombstone");
    store.finish().await
}

fn all_ids(result: &persist_core::PersistResult) -> Vec<MessageId> {
    match result {
        persist_core::PersistResult::Deleted(deleted) => deleted.message_ids.clone(),
        other => panic!("not a delete: {other:?}"),
    }
}

/// A truncation's expected version is the thread's: a stale one is `VersionConflict` and
/// removes nothing; a title change or a truncation moves it.
pub async fn check_truncate_expects_the_threads_version<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("versioned");
    for i in 0..4 {
        add_text(b.as_ref(), &id, &format!("m{i}")).await;
    }
    let version = thread(b, &id).await.unwrap().version;
    write(b, Update::thread(id.clone()).with_metadata(Metadata::new().with("k", json!(1)))).await.unwrap();
    let before = snapshot(b.as_ref(), &[&id]).await;
    let stale = Delete::after(id.clone(), 1).with_expected_version(version);
    assert_err!(
        write(b, stale).await,
        PersistError::VersionConflict { message_id: None, expected, actual, .. } if expected == version && actual == version + 1
    );
    assert_eq!(snapshot(b.as_ref(), &[&id]).await, before, "a refused truncation removes nothing");
    let current = Delete::after(id.clone(), 1).with_expected_version(version + 1);
    let removed = write(b, current.clone()).await.expect("truncate");
    assert_eq!(all_ids(&removed).len(), 3);
    assert_err!(write(b, current).await, PersistError::VersionConflict { .. });
    store.finish().await
}

/// Truncating a thread that does not exist, or a deleted one, answers an empty list (as
/// deleting what is gone does), and leaves no thread behind.
pub async fn check_truncate_of_what_is_gone_answers_empty<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let (missing, deleted) = (t("never"), t("deleted"));
    add_text(b.as_ref(), &deleted, "x").await;
    write(b, Delete::thread(deleted.clone())).await.unwrap();
    for id in [&missing, &deleted] {
        let answer = write(b, Delete::after(id.clone(), 0).with_expected_version(1)).await.expect("truncate");
        assert_eq!(answer, Deleted::new(id.clone(), vec![]).into());
    }
    assert!(thread(b, &missing).await.is_none());
    assert!(thread(b, &deleted).await.unwrap().is_deleted());
    store.finish().await
}

/// An update cannot target "messages after a seq": `InvalidInput` naming `target`.
pub async fn check_an_update_cannot_target_messages_after_a_seq<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("update-after");
    add_text(b.as_ref(), &id, "x").await;
    let mut update = Update::thread(id.clone()).with_metadata(Metadata::new().with("k", json!(1)));
    update.target = persist_core::Target::MessagesAfter(0);
    assert_err!(write(b, update).await, PersistError::InvalidInput { field: "target", .. });
    store.finish().await
}

/// Adds racing a truncation after seq 5 (through two handles when the storage is shared): every
/// acknowledged add is either stored or named in the truncation's answer (never both, never
/// neither), what stays is the first five and the adds after the truncation, and the counters
/// agree with the messages.
pub async fn check_truncate_racing_adds_loses_nothing_acknowledged<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let handles = store.racing_handles().await;
    let b = store.b();
    let id = t("race-truncate");
    let mut first = Vec::new();
    for i in 0..10 {
        first.push(add_text(b.as_ref(), &id, &format!("m{i}")).await);
    }
    let racers = 20;
    let barrier = Arc::new(Barrier::new(racers + 1));
    let mut tasks = JoinSet::new();
    for i in 0..racers {
        let (h, barrier, id) = (Arc::clone(&handles[i % handles.len()]), barrier.clone(), id.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            add_text(h.as_ref(), &id, &format!("racer {i}")).await
        });
    }
    let truncating = Arc::clone(&handles[handles.len() - 1]);
    barrier.wait().await;
    let removed = all_ids(&write(truncating.as_ref(), Delete::after(id.clone(), 5)).await.expect("truncate"));
    let racers: Vec<_> = tasks.join_all().await;

    let stored = all_messages(b, &id).await;
    let stored_ids: std::collections::HashSet<_> = ids(&stored).into_iter().collect();
    let removed_ids: std::collections::HashSet<_> = removed.iter().cloned().collect();
    assert_eq!(removed.len(), removed_ids.len(), "each id answered once");
    for message in &first[5..] {
        assert!(removed_ids.contains(&message.id), "a message after seq 5 from before the race was removed");
    }
    for message in &racers {
        assert!(
            stored_ids.contains(&message.id) != removed_ids.contains(&message.id),
            "an acknowledged add is stored or reported removed, exactly one of the two"
        );
    }
    assert_eq!(ids(&stored[..5]), ids(&first[..5]), "the first five stay");
    assert!(stored[5..].iter().all(|m| m.seq > 10), "what stays after them was added after the truncation");
    let th = thread(b, &id).await.unwrap();
    assert_eq!(th.message_count as usize, stored.len());
    assert_eq!(th.last_seq, 10 + racers.len() as u64, "every add took a seq of its own");
    store.finish().await
}
