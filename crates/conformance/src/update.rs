//! `update`: atomic metadata merge, role, thread title and metadata.

use persist_core::args::Update;
use persist_core::{Metadata, PersistError, PersistResult, Role, Updated};
use serde_json::json;

use crate::fixture::{add_text, assert_err, get, m, t, text_add, thread, write, written};
use crate::{Factory, Outcome};

/// A metadata patch sets and replaces keys, removes keys set to `null`, keeps the rest.
pub async fn check_metadata_merge_sets_replaces_and_removes<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("merge");
    let initial = Metadata::new().with("keep", json!(1)).with("replace", json!("old")).with("drop", json!(true));
    let message = written(b, text_add(&id, "x").with_metadata(initial)).await;
    let patch = Metadata::new().with("replace", json!({"new": [1]})).with("drop", json!(null)).with("added", json!(2));
    let updated = written(b, Update::message(id.clone(), message.id.clone()).with_metadata(patch)).await;
    let expected = Metadata::new().with("keep", json!(1)).with("replace", json!({"new": [1]})).with("added", json!(2));
    assert_eq!(updated.metadata, expected);
    assert_eq!(updated.version, 2);
    assert_eq!(updated.content, message.content, "content untouched");
    assert_eq!(get(b, &id, &message.id).await.unwrap(), updated);
    store.finish().await
}

/// The role of a message can change; the version follows.
pub async fn check_update_role<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("role");
    let message = add_text(b, &id, "x").await;
    let updated = written(b, Update::message(id.clone(), message.id.clone()).with_role(Role::System)).await;
    assert_eq!((updated.role.clone(), updated.version), (Role::System, 2));
    assert_eq!(get(b, &id, &message.id).await.unwrap().role, Role::System);
    store.finish().await
}

/// A thread's title and metadata are patched with their own version.
pub async fn check_update_thread_title_and_metadata<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("thread-patch");
    add_text(b, &id, "x").await;
    let result = write(
        b,
        Update::thread(id.clone())
            .with_title(Some("Trip to Lisbon".into()))
            .with_metadata(Metadata::new().with("user", json!("u1"))),
    )
    .await
    .expect("update thread");
    let PersistResult::Updated(Updated::Thread(patched)) = result else { panic!("expected a thread: {result:?}") };
    assert_eq!(patched.title.as_deref(), Some("Trip to Lisbon"));
    assert_eq!(patched.metadata.get("user"), Some(&json!("u1")));
    assert_eq!(patched.version, 2);
    assert_eq!(thread(b, &id).await.unwrap(), patched);
    let cleared = write(b, Update::thread(id.clone()).with_title(None)).await.expect("clear title");
    let PersistResult::Updated(Updated::Thread(cleared)) = cleared else { panic!("expected a thread") };
    assert_eq!((cleared.title, cleared.version), (None, 3));
    assert_eq!(cleared.metadata.get("user"), Some(&json!("u1")));
    store.finish().await
}

/// Updating a message or thread that does not exist is `NotFound` and creates nothing.
pub async fn check_update_of_missing_target_is_not_found<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("present");
    add_text(b, &id, "x").await;
    let patch = Metadata::new().with("k", json!(1));
    assert_err!(
        write(b, Update::message(id.clone(), m("absent")).with_metadata(patch.clone())).await,
        PersistError::NotFound { .. }
    );
    let ghost = t("ghost");
    assert_err!(write(b, Update::thread(ghost.clone()).with_metadata(patch)).await, PersistError::NotFound { .. });
    assert!(thread(b, &ghost).await.is_none());
    store.finish().await
}
