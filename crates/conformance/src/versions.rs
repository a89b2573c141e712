//! Optimistic concurrency: expected-version preconditions on update, update_content and delete.

use persist_core::args::{Delete, Update, UpdateContent};
use persist_core::{Content, Metadata, PersistError};
use serde_json::json;

use crate::fixture::{add_text, assert_err, get, t, thread, write, written};
use crate::{Factory, Outcome};

/// `update_content` with a stale version is a `VersionConflict` naming both versions.
pub async fn check_expected_version_on_update_content<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("cas-content");
    let message = add_text(b, &id, "v1").await;
    let stale = UpdateContent::new(id.clone(), message.id.clone(), Content::text("lost")).with_expected_version(7);
    assert_err!(
        write(b, stale).await,
        PersistError::VersionConflict { expected: 7, actual: 1, message_id: Some(_), .. }
    );
    assert_eq!(get(b, &id, &message.id).await.unwrap(), message);
    let fresh = UpdateContent::new(id.clone(), message.id.clone(), Content::text("v2")).with_expected_version(1);
    assert_eq!(written(b, fresh).await.version, 2);
    store.finish().await
}

/// `update` checks the message's version, or the thread's for a thread target.
pub async fn check_expected_version_on_update<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("cas-update");
    let message = add_text(b, &id, "x").await;
    let patch = Metadata::new().with("k", json!(1));
    let stale = Update::message(id.clone(), message.id.clone()).with_metadata(patch.clone()).with_expected_version(2);
    assert_err!(write(b, stale).await, PersistError::VersionConflict { expected: 2, actual: 1, .. });
    assert_eq!(get(b, &id, &message.id).await.unwrap(), message);
    let ok = Update::message(id.clone(), message.id.clone()).with_metadata(patch.clone()).with_expected_version(1);
    assert_eq!(written(b, ok).await.version, 2);

    let stale = Update::thread(id.clone()).with_metadata(patch.clone()).with_expected_version(5);
    assert_err!(write(b, stale).await, PersistError::VersionConflict { expected: 5, actual: 1, message_id: None, .. });
    assert!(thread(b, &id).await.unwrap().metadata.is_empty());
    write(b, Update::thread(id.clone()).with_metadata(patch).with_expected_version(1)).await.expect("fresh version");
    assert_eq!(thread(b, &id).await.unwrap().version, 2);
    store.finish().await
}

/// `delete` with a stale version removes nothing.
pub async fn check_expected_version_on_delete<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("cas-delete");
    let message = add_text(b, &id, "x").await;
    let stale = Delete::message(id.clone(), message.id.clone()).with_expected_version(3);
    assert_err!(write(b, stale).await, PersistError::VersionConflict { expected: 3, actual: 1, .. });
    assert!(get(b, &id, &message.id).await.is_some());
    let stale = Delete::thread(id.clone()).with_expected_version(9);
    assert_err!(write(b, stale).await, PersistError::VersionConflict { expected: 9, actual: 1, .. });
    assert!(thread(b, &id).await.unwrap().deleted_at.is_none());
    let ok = write(b, Delete::message(id.clone(), message.id.clone()).with_expected_version(1)).await.unwrap();
    assert_eq!(ok, persist_core::Deleted::new(id.clone(), vec![message.id]).into());
    write(b, Delete::thread(id.clone()).with_expected_version(1)).await.expect("delete with fresh version");
    assert!(thread(b, &id).await.unwrap().deleted_at.is_some());
    store.finish().await
}
