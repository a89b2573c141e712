//! `delete`: ids answered, counters, tombstones that refuse later writes.

use persist_core::args::{Delete, Reserve, Update, UpdateContent};
use persist_core::{Content, Deleted, IdempotencyKey, Metadata, PersistError, Role};
use serde_json::json;

use crate::fixture::{add_text, all_messages, assert_err, get, m, t, text_add, thread, write, written};
use crate::{Factory, Outcome};

/// Deleting a message answers its id and lowers the thread's count, not its `last_seq`.
pub async fn check_delete_message_returns_its_id<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("delete-one");
    let keep = add_text(b, &id, "keep").await;
    let gone = add_text(b, &id, "gone").await;
    let result = write(b, Delete::message(id.clone(), gone.id.clone())).await.expect("delete");
    assert_eq!(result, Deleted::new(id.clone(), vec![gone.id.clone()]).into());
    assert!(get(b, &id, &gone.id).await.is_none());
    assert_eq!(all_messages(b, &id).await, vec![keep]);
    let th = thread(b, &id).await.unwrap();
    assert_eq!((th.message_count, th.last_seq), (1, 2));
    assert!(th.deleted_at.is_none());
    store.finish().await
}

/// Deleting a thread answers every id in seq order, leaves a tombstone, spares other threads.
pub async fn check_delete_thread_returns_every_id_and_leaves_tombstone<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let (id, other) = (t("doomed"), t("bystander"));
    let a = add_text(b, &id, "a").await;
    let r = written(b, Reserve::new(id.clone(), Role::Assistant)).await;
    let c = add_text(b, &id, "c").await;
    let survivor = add_text(b, &other, "survivor").await;
    let result = write(b, Delete::thread(id.clone())).await.expect("delete thread");
    assert_eq!(result, Deleted::new(id.clone(), vec![a.id, r.id, c.id]).into());
    assert!(all_messages(b, &id).await.is_empty());
    let tomb = thread(b, &id).await.expect("a tombstone remains");
    assert!(tomb.deleted_at.is_some());
    assert_eq!(tomb.message_count, 0);
    assert_eq!(all_messages(b, &other).await, vec![survivor]);
    assert!(thread(b, &other).await.unwrap().deleted_at.is_none());
    store.finish().await
}

/// Every later write to a deleted thread fails with `ThreadDeleted`, retries included.
pub async fn check_writes_to_deleted_thread_fail<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("tombstone");
    let key = IdempotencyKey::new("turn-1").unwrap();
    let first = written(b, text_add(&id, "hello").with_idempotency_key(key.clone())).await;
    write(b, Delete::thread(id.clone())).await.expect("delete");

    assert_err!(write(b, text_add(&id, "late")).await, PersistError::ThreadDeleted { .. });
    // A late retry of the very first write does not resurrect the thread.
    assert_err!(write(b, text_add(&id, "hello").with_idempotency_key(key)).await, PersistError::ThreadDeleted { .. });
    assert_err!(write(b, Reserve::new(id.clone(), Role::Assistant)).await, PersistError::ThreadDeleted { .. });
    assert_err!(
        write(b, UpdateContent::new(id.clone(), first.id.clone(), Content::text("x"))).await,
        PersistError::ThreadDeleted { .. }
    );
    let patch = Metadata::new().with("k", json!(1));
    assert_err!(write(b, Update::thread(id.clone()).with_metadata(patch)).await, PersistError::ThreadDeleted { .. });
    assert!(all_messages(b, &id).await.is_empty());
    assert!(thread(b, &id).await.unwrap().deleted_at.is_some());
    store.finish().await
}

/// Deleting what is already gone (or never was) answers an empty list and creates nothing.
pub async fn check_deleting_what_is_gone_answers_empty<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("gone");
    let message = add_text(b, &id, "x").await;
    let empty = |thread_id| -> persist_core::PersistResult { Deleted::new(thread_id, vec![]).into() };
    write(b, Delete::message(id.clone(), message.id.clone())).await.expect("first delete");
    assert_eq!(write(b, Delete::message(id.clone(), message.id.clone())).await.unwrap(), empty(id.clone()));
    assert_eq!(write(b, Delete::message(id.clone(), m("never"))).await.unwrap(), empty(id.clone()));
    write(b, Delete::thread(id.clone())).await.expect("delete thread");
    assert_eq!(write(b, Delete::thread(id.clone())).await.unwrap(), empty(id.clone()));
    let ghost = t("never-existed");
    assert_eq!(write(b, Delete::thread(ghost.clone())).await.unwrap(), empty(ghost.clone()));
    assert!(thread(b, &ghost).await.is_none(), "deleting an unknown thread creates nothing");
    store.finish().await
}

/// A deleted message's seq is never handed out again.
pub async fn check_seq_is_never_reused_after_delete<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("seq-gaps");
    add_text(b, &id, "1").await;
    let two = add_text(b, &id, "2").await;
    write(b, Delete::message(id.clone(), two.id)).await.expect("delete");
    let three = add_text(b, &id, "3").await;
    assert_eq!(three.seq, 3, "gaps after deletes are fine, reuse is not");
    store.finish().await
}
