//! A message's identity is `(thread, id)`: nothing reads, writes or carries data across threads.

use persist_core::args::{Add, Delete, Update, UpdateContent};
use persist_core::{Content, Metadata, PersistError, Role};
use serde_json::json;

use crate::fixture::{add_text, all_messages, assert_err, get, m, t, text_add, thread, write, written};
use crate::{Factory, Outcome};

/// The same message id in two threads is two messages; each thread lists its own.
pub async fn check_same_message_id_in_two_threads_is_two_messages<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let (t1, t2, id) = (t("identity-a"), t("identity-b"), m("provider-item-1"));
    let one = written(b, text_add(&t1, "first thread").with_id(id.clone())).await;
    let two = written(b, text_add(&t2, "second thread").with_id(id.clone())).await;
    assert_eq!((one.seq, two.seq), (1, 1), "each thread numbers its own messages");
    assert_eq!(get(b, &t1, &id).await.unwrap().content.to_text(), "first thread");
    assert_eq!(get(b, &t2, &id).await.unwrap().content.to_text(), "second thread");
    let first = all_messages(b, &t1).await;
    let second = all_messages(b, &t2).await;
    assert_eq!(first.len(), 1);
    assert_eq!(second.len(), 1);
    assert_eq!(first[0].thread_id, t1);
    assert_eq!(second[0].thread_id, t2);
    store.finish().await
}

/// `update_content` naming another thread's message id is `NotFound` and writes nothing.
pub async fn check_update_content_never_crosses_threads<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let (t1, t2) = (t("owner"), t("intruder"));
    let original = add_text(b, &t1, "original").await;
    add_text(b, &t2, "other").await;
    let attempt = UpdateContent::new(t2.clone(), original.id.clone(), Content::text("overwritten"));
    assert_err!(write(b, attempt).await, PersistError::NotFound { .. });
    assert_eq!(get(b, &t1, &original.id).await.unwrap(), original, "the owner's message is unchanged");
    assert!(get(b, &t2, &original.id).await.is_none(), "nothing was created in the other thread");
    // And against a thread that does not exist at all: no thread appears.
    let ghost = t("ghost");
    let attempt = UpdateContent::new(ghost.clone(), original.id.clone(), Content::text("x"));
    assert_err!(write(b, attempt).await, PersistError::NotFound { .. });
    assert!(thread(b, &ghost).await.is_none());
    store.finish().await
}

/// `update` and `delete` naming another thread's message never touch it.
pub async fn check_update_and_delete_never_cross_threads<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let (t1, t2) = (t("owner"), t("other"));
    let original = add_text(b, &t1, "keep me").await;
    add_text(b, &t2, "unrelated").await;
    let patch = Update::message(t2.clone(), original.id.clone()).with_metadata(Metadata::new().with("x", json!(1)));
    assert_err!(write(b, patch).await, PersistError::NotFound { .. });
    let deleted = write(b, Delete::message(t2.clone(), original.id.clone())).await.expect("delete");
    assert_eq!(deleted, persist_core::Deleted::new(t2.clone(), vec![]).into());
    assert_eq!(get(b, &t1, &original.id).await.unwrap(), original);
    assert_eq!(thread(b, &t1).await.unwrap().message_count, 1);
    store.finish().await
}

/// A provider id reused in the same thread for a new turn never overwrites the earlier text.
pub async fn check_reused_id_with_new_payload_does_not_overwrite<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let thread_id = t("reuse");
    let id = m("item_0");
    let first = written(b, text_add(&thread_id, "turn one").with_id(id.clone())).await;
    let second = Add::new(thread_id.clone(), Role::Assistant, Content::text("turn two")).with_id(id.clone());
    assert_err!(write(b, second).await, PersistError::AlreadyExists { .. });
    let stored = get(b, &thread_id, &id).await.unwrap();
    assert_eq!(stored, first, "text, role and creation time are the first write's");
    store.finish().await
}

/// Ids the backend generates are distinct and follow write order.
pub async fn check_generated_ids_are_unique_and_time_ordered<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let thread_id = t("generated");
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(add_text(b, &thread_id, &format!("m{i}")).await.id);
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ids, "generated ids are unique and sort in write order (UUIDv7)");
    store.finish().await
}
