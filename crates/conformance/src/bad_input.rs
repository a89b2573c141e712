//! Bad input gets its own typed error and leaves the store exactly as it was.

use persist_core::args::{Delete, MAX_TITLE_BYTES, Reserve, Update, UpdateContent};
use persist_core::read::{ListMessages, ListThreads, MAX_PAGE_LIMIT};
use persist_core::{Backend, Content, IdempotencyKey, Metadata, PersistError, Role};
use serde_json::json;

use crate::fixture::{add_text, assert_err, m, snapshot, t, text_add, thread, write, written};
use crate::{Factory, Outcome};

/// Updates that change nothing or patch the wrong kind of target are `InvalidInput`.
pub async fn check_meaningless_updates_are_invalid<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    let id = t("bad-updates");
    let message = add_text(b, &id, "x").await;
    let before = snapshot(b, &[&id]).await;
    let cases = [
        (Update::message(id.clone(), message.id.clone()), "update"),
        (Update::message(id.clone(), message.id.clone()).with_title(Some("t".into())), "title"),
        (Update::thread(id.clone()).with_role(Role::User), "role"),
        (Update::thread(id.clone()).with_title(Some("x".repeat(MAX_TITLE_BYTES + 1))), "title"),
    ];
    for (update, expected_field) in cases {
        assert_err!(write(b, update).await, PersistError::InvalidInput { field, .. } if field == expected_field);
    }
    assert_eq!(snapshot(b, &[&id]).await, before);
    store.finish().await
}

/// Page sizes of 0 or over the maximum are `InvalidInput` naming `limit`.
pub async fn check_bad_page_limits_are_invalid<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    let id = t("limits");
    add_text(b, &id, "x").await;
    for limit in [0, MAX_PAGE_LIMIT + 1] {
        assert_err!(
            b.list(ListMessages::new(id.clone()).with_limit(limit)).await,
            PersistError::InvalidInput { field: "limit", .. }
        );
        assert_err!(
            b.threads(ListThreads::new().with_limit(limit)).await,
            PersistError::InvalidInput { field: "limit", .. }
        );
    }
    store.finish().await
}

/// Writes that need an existing thread are `NotFound` on an unknown one, and create nothing.
pub async fn check_unknown_thread_for_update_is_not_found<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    let ghost = t("unknown");
    let patch = Metadata::new().with("k", json!(1));
    assert_err!(
        write(b, Update::thread(ghost.clone()).with_metadata(patch.clone())).await,
        PersistError::NotFound { .. }
    );
    assert_err!(
        write(b, Update::message(ghost.clone(), m("x")).with_metadata(patch)).await,
        PersistError::NotFound { .. }
    );
    assert_err!(
        write(b, UpdateContent::new(ghost.clone(), m("x"), Content::text("x"))).await,
        PersistError::NotFound { .. }
    );
    assert!(thread(b, &ghost).await.is_none());
    store.finish().await
}

/// A batch of refused writes of every kind leaves every thread exactly as it was.
pub async fn check_failed_writes_leave_the_store_unchanged<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    let (live, dead) = (t("live"), t("dead"));
    let message =
        written(b, text_add(&live, "x").with_id(m("fixed")).with_idempotency_key(IdempotencyKey::new("k").unwrap()))
            .await;
    let slot = written(b, Reserve::new(live.clone(), Role::Assistant)).await;
    add_text(b, &dead, "x").await;
    write(b, Delete::thread(dead.clone())).await.expect("delete");
    let before = snapshot(b, &[&live, &dead]).await;

    let refused: Vec<persist_core::PersistArgs> = vec![
        text_add(&live, "other payload").with_id(m("fixed")).into(),
        text_add(&dead, "late").into(),
        UpdateContent::new(live.clone(), message.id.clone(), Content::text("x")).with_expected_version(9).into(),
        UpdateContent::new(live.clone(), m("missing"), Content::text("x")).into(),
        UpdateContent::new(dead.clone(), slot.id.clone(), Content::text("x")).into(),
        Update::message(live.clone(), slot.id.clone())
            .with_metadata(Metadata::new().with("k", json!(1)))
            .with_expected_version(5)
            .into(),
        Update::message(live.clone(), slot.id.clone()).into(),
        Delete::message(live.clone(), message.id.clone()).with_expected_version(2).into(),
        Delete::thread(live.clone()).with_expected_version(3).into(),
    ];
    for args in refused {
        let op = args.op();
        let result = crate::fixture::write(b, args).await;
        assert!(result.is_err(), "{op} should have been refused, got {result:?}");
    }
    assert_eq!(snapshot(b, &[&live, &dead]).await, before, "refused writes changed the store");
    store.finish().await
}

/// U+0000 (NUL), which PostgreSQL cannot store, is refused by every backend, naming the field
/// it was in (content, metadata, title, filter), and nothing is written.
pub async fn check_nul_is_refused_naming_its_field<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    let id = t("nul");
    let message = add_text(b, &id, "x").await;
    let before = snapshot(b, &[&id]).await;
    let nul_meta = Metadata::new().with("note", json!({"deep": ["a\u{0}b"]}));
    let cases: Vec<(persist_core::PersistArgs, &str)> = vec![
        (text_add(&id, "a\u{0}b").into(), "content"),
        (UpdateContent::new(id.clone(), message.id.clone(), Content::text("\u{0}")).into(), "content"),
        (text_add(&id, "fine").with_metadata(nul_meta.clone()).into(), "metadata"),
        (Reserve::new(id.clone(), Role::Assistant).with_metadata(nul_meta.clone()).into(), "metadata"),
        (Update::message(id.clone(), message.id.clone()).with_metadata(nul_meta).into(), "metadata"),
        (Update::thread(id.clone()).with_metadata(Metadata::new().with("k\u{0}", json!(1))).into(), "metadata"),
        (Update::thread(id.clone()).with_title(Some("a\u{0}".into())).into(), "title"),
        (text_add(&t("nul-new"), "\u{0}").into(), "content"),
    ];
    for (args, expected_field) in cases {
        assert_err!(write(b, args).await, PersistError::InvalidInput { field, .. } if field == expected_field);
    }
    assert_err!(
        b.threads(ListThreads::new().with_filter(Metadata::new().with("k", json!("\u{0}")))).await,
        PersistError::InvalidInput { field: "filter", .. }
    );
    assert!(thread(b, &t("nul-new")).await.is_none());
    assert_eq!(snapshot(b, &[&id]).await, before);
    // The six characters `\u0000` are plain text, stored as given.
    let lookalike = written(b, text_add(&id, "\\u0000")).await;
    assert_eq!(lookalike.content.to_text(), "\\u0000");
    store.finish().await
}

/// Content or metadata nested deeper than [`MAX_JSON_DEPTH`](persist_core::MAX_JSON_DEPTH) is
/// `InvalidInput` (every store must be able to read back what it accepted), and nothing is written.
pub async fn check_overly_nested_json_is_invalid<F: Factory>(factory: &F) -> Outcome {
    nesting_is_refused(factory, persist_core::MAX_JSON_DEPTH + 1).await
}

/// Content or metadata nested far deeper than a thread's stack allows a recursive walk (a
/// hundred thousand levels) is `InvalidInput`, like any value over the limit: never a crash.
pub async fn check_json_too_deep_for_the_stack_is_invalid<F: Factory>(factory: &F) -> Outcome {
    nesting_is_refused(factory, 100_000).await
}

/// Content and metadata nested `levels` deep are refused, naming the field, writing nothing.
async fn nesting_is_refused<F: Factory>(factory: &F, levels: usize) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    let id = t("deep");
    let message = add_text(b, &id, "x").await;
    let before = snapshot(b, &[&id]).await;
    // Built in a loop, not with `json!` (which copies its argument recursively).
    let nested = || {
        let mut value = json!("leaf");
        for _ in 0..levels {
            value = serde_json::Value::Array(vec![value]);
        }
        value
    };
    assert_err!(
        write(b, persist_core::args::Add::new(id.clone(), Role::User, Content::new(nested()))).await,
        PersistError::InvalidInput { field: "content", .. }
    );
    assert_err!(
        write(b, UpdateContent::new(id.clone(), message.id.clone(), Content::new(nested()))).await,
        PersistError::InvalidInput { field: "content", .. }
    );
    let patch = Metadata::new().with("deep", nested());
    assert_err!(
        write(b, Update::message(id.clone(), message.id.clone()).with_metadata(patch)).await,
        PersistError::InvalidInput { field: "metadata", .. }
    );
    assert_eq!(snapshot(b, &[&id]).await, before);
    store.finish().await
}
