//! Persistent backends: what was acknowledged is there after reopening (gated on `durable`).

use persist_core::args::{Delete, Reserve, Update, UpdateContent};
use persist_core::{Backend, Content, IdempotencyKey, Metadata, PersistError, Role};
use serde_json::json;

use crate::fixture::{add_text, assert_err, gate, snapshot, t, text_add, write, written};
use crate::{Factory, Outcome};

/// Messages, placeholders, content updates, merges and thread fields survive a reopen.
pub async fn check_acknowledged_writes_survive_reopen<F: Factory>(factory: &F) -> Outcome {
    let mut store = crate::fixture::open!(factory);
    gate!(store, durable);
    let (a, c) = (t("durable-a"), t("durable-b"));
    {
        let b = store.b().as_ref();
        for i in 0..10 {
            add_text(b, &a, &format!("m{i}")).await;
        }
        let slot = written(b, Reserve::new(a.clone(), Role::Assistant)).await;
        written(b, UpdateContent::partial(a.clone(), slot.id.clone(), Content::text("partial"))).await;
        let done = written(b, Reserve::new(c.clone(), Role::Assistant)).await;
        written(b, UpdateContent::new(c.clone(), done.id, Content::text("final"))).await;
        let meta = Metadata::new().with("title-set", json!(true));
        write(b, Update::thread(a.clone()).with_title(Some("Durable".into())).with_metadata(meta)).await.unwrap();
    }
    let before = snapshot(store.b().as_ref(), &[&a, &c]).await;
    store.reopen().await;
    assert_eq!(snapshot(store.b().as_ref(), &[&a, &c]).await, before, "state after reopen differs");
    let next = add_text(store.b().as_ref(), &a, "after reopen").await;
    assert_eq!(next.seq, 12, "seq continues after reopen");
    store.finish().await
}

/// Tombstones and idempotency keys survive a reopen.
pub async fn check_tombstones_survive_reopen<F: Factory>(factory: &F) -> Outcome {
    let mut store = crate::fixture::open!(factory);
    gate!(store, durable);
    let (dead, live) = (t("dead-after-reopen"), t("keyed"));
    let key = IdempotencyKey::new("k-1").unwrap();
    add_text(store.b().as_ref(), &dead, "x").await;
    write(store.b().as_ref(), Delete::thread(dead.clone())).await.unwrap();
    let first = written(store.b().as_ref(), text_add(&live, "once").with_idempotency_key(key.clone())).await;
    store.reopen().await;
    let b = store.b().as_ref();
    assert_err!(write(b, text_add(&dead, "late")).await, PersistError::ThreadDeleted { .. });
    let retry = write(b, text_add(&live, "once").with_idempotency_key(key)).await.unwrap();
    assert!(retry.is_deduplicated());
    assert_eq!(retry.message(), Some(&first));
    store.finish().await
}

/// Session bindings (and their states) survive a reopen.
pub async fn check_session_bindings_survive_reopen<F: Factory>(factory: &F) -> Outcome {
    let mut store = crate::fixture::open!(factory);
    gate!(store, durable);
    gate!(store, sessions);
    use crate::sessions::{agent, bind, provider, session};
    use persist_core::session::{FreshReason, InvalidateSession, ResetSession, Resolution, Resolve};
    let (live, reset) = (t("bound"), t("was-reset"));
    let stored = store.b().bind(bind("bot", &live, "s-1", "cli").with_work_dir("/w")).await.unwrap();
    store.b().bind(bind("bot", &reset, "s-2", "cli").with_work_dir("/r")).await.unwrap();
    store.b().reset_session(ResetSession::new(agent("bot"), reset.clone())).await.unwrap();
    store.reopen().await;
    let b = store.b().as_ref();
    let resumed = b.resolve(Resolve::new(agent("bot"), live.clone(), provider("cli"))).await.unwrap();
    assert_eq!(resumed, Resolution::Resume(stored));
    let fresh = b.resolve(Resolve::new(agent("bot"), reset.clone(), provider("cli"))).await.unwrap();
    assert_eq!(fresh, Resolution::Fresh { reason: FreshReason::Reset, work_dir: Some("/r".into()) });
    assert!(!b.invalidate_session(InvalidateSession::new(agent("bot"), live, session("other"))).await.unwrap());
    store.finish().await
}
