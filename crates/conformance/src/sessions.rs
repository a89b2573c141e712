//! Session bindings per (agent, thread): resume only what matches, and always say why not.
//! Gated on `Capabilities::sessions`.

use std::collections::HashSet;
use std::sync::Arc;

use persist_core::args::Delete;
use persist_core::session::{
    Bind, BindingState, FreshReason, InvalidateSession, ListBindings, ResetSession, Resolution, Resolve, SessionBinding,
};
use persist_core::{AgentId, Backend, PersistError, ProviderId, RuntimeId, SessionId, ThreadId};
use tokio::task::JoinSet;

use crate::fixture::{add_text, assert_err, ctx, gate, t, tenant, write};
use crate::{Factory, Outcome};

pub(crate) fn agent(id: &str) -> AgentId {
    AgentId::new(id).unwrap()
}

pub(crate) fn session(id: &str) -> SessionId {
    SessionId::new(id).unwrap()
}

pub(crate) fn provider(id: &str) -> ProviderId {
    ProviderId::new(id).unwrap()
}

fn runtime(id: &str) -> RuntimeId {
    RuntimeId::new(id).unwrap()
}

pub(crate) fn bind(agent_id: &str, thread_id: &ThreadId, session_id: &str, provider_id: &str) -> Bind {
    Bind::new(agent(agent_id), thread_id.clone(), session(session_id), provider(provider_id))
}

fn ask(agent_id: &str, thread_id: &ThreadId, provider_id: &str) -> Resolve {
    Resolve::new(agent(agent_id), thread_id.clone(), provider(provider_id))
}

async fn resolve<B: Backend>(b: &B, query: Resolve) -> Resolution {
    b.resolve(query).await.expect("resolve")
}

fn resumed(resolution: Resolution) -> SessionBinding {
    match resolution {
        Resolution::Resume(binding) => binding,
        fresh => panic!("expected to resume, got {fresh:?}"),
    }
}

fn fresh(reason: FreshReason, work_dir: Option<&str>) -> Resolution {
    Resolution::Fresh { reason, work_dir: work_dir.map(str::to_owned) }
}

/// No binding resolves `Fresh { NoBinding }`; a bind is resumed with every field it was given.
pub async fn check_bind_then_resolve_resumes<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, sessions);
    let b = store.b().as_ref();
    let th = t("session-basic");
    assert_eq!(resolve(b, ask("bot", &th, "cli")).await, fresh(FreshReason::NoBinding, None));
    let stored = b
        .bind(bind("bot", &th, "s-1", "cli").with_runtime(runtime("host-a")).with_work_dir("/srv/work/t1"))
        .await
        .expect("bind");
    assert_eq!(stored.session_id, session("s-1"));
    let binding = resumed(resolve(b, ask("bot", &th, "cli").with_runtime(runtime("host-a"))).await);
    assert_eq!(binding, stored);
    assert_eq!(binding.work_dir.as_deref(), Some("/srv/work/t1"));
    store.finish().await
}

/// A second bind replaces the session but keeps `created_at` (no `INSERT OR REPLACE`).
pub async fn check_bind_upsert_keeps_created_at<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, sessions);
    let b = store.b().as_ref();
    let th = t("session-upsert");
    let first = b.bind(bind("bot", &th, "s-1", "cli")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let second = b.bind(bind("bot", &th, "s-2", "cli")).await.unwrap();
    assert_eq!(second.created_at, first.created_at);
    assert!(second.updated_at > first.updated_at);
    assert_eq!(resumed(resolve(b, ask("bot", &th, "cli")).await), second);
    store.finish().await
}

/// After a reset the next resolve is `Fresh { Reset }` and still hands back the work dir.
pub async fn check_reset_makes_the_next_resolve_fresh<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, sessions);
    let b = store.b().as_ref();
    let th = t("session-reset");
    b.bind(bind("bot", &th, "s-1", "cli").with_work_dir("/w")).await.unwrap();
    assert!(b.reset_session(ResetSession::new(agent("bot"), th.clone())).await.unwrap());
    assert_eq!(resolve(b, ask("bot", &th, "cli")).await, fresh(FreshReason::Reset, Some("/w")));
    assert!(!b.reset_session(ResetSession::new(agent("bot"), t("never-bound"))).await.unwrap(), "nothing to reset");
    store.finish().await
}

/// Regression: reset, then bind a new session: resolve resumes the new one, never the old.
pub async fn check_reset_then_bind_resumes_the_new_session<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, sessions);
    let b = store.b().as_ref();
    let th = t("session-reset-bind");
    b.bind(bind("bot", &th, "old", "cli")).await.unwrap();
    b.reset_session(ResetSession::new(agent("bot"), th.clone())).await.unwrap();
    b.bind(bind("bot", &th, "new", "cli")).await.unwrap();
    assert_eq!(resumed(resolve(b, ask("bot", &th, "cli")).await).session_id, session("new"));
    store.finish().await
}

/// A different provider or runtime starts fresh with its own reason; the work dir survives.
pub async fn check_provider_or_runtime_change_is_fresh_with_reason<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, sessions);
    let b = store.b().as_ref();
    let th = t("session-guard");
    b.bind(bind("bot", &th, "s-1", "cli").with_runtime(runtime("host-a")).with_work_dir("/w/t")).await.unwrap();
    let other_provider = ask("bot", &th, "api").with_runtime(runtime("host-a"));
    assert_eq!(resolve(b, other_provider).await, fresh(FreshReason::ProviderChanged, Some("/w/t")));
    let other_runtime = ask("bot", &th, "cli").with_runtime(runtime("host-b"));
    assert_eq!(resolve(b, other_runtime).await, fresh(FreshReason::RuntimeChanged, Some("/w/t")));
    let no_runtime = ask("bot", &th, "cli");
    assert_eq!(resolve(b, no_runtime).await, fresh(FreshReason::RuntimeChanged, Some("/w/t")));
    // Rebinding on the new runtime (in the same work dir) makes it resumable there.
    b.bind(bind("bot", &th, "s-2", "cli").with_runtime(runtime("host-b")).with_work_dir("/w/t")).await.unwrap();
    let binding = resumed(resolve(b, ask("bot", &th, "cli").with_runtime(runtime("host-b"))).await);
    assert_eq!((binding.session_id, binding.work_dir.as_deref()), (session("s-2"), Some("/w/t")));
    store.finish().await
}

/// Invalidate is compare-and-set: a stale session id never clears a newer binding.
pub async fn check_invalidate_is_compare_and_set<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, sessions);
    let b = store.b().as_ref();
    let th = t("session-cas");
    b.bind(bind("bot", &th, "s-1", "cli")).await.unwrap();
    b.bind(bind("bot", &th, "s-2", "cli")).await.unwrap();
    assert!(
        !b.invalidate_session(InvalidateSession::new(agent("bot"), th.clone(), session("s-1"))).await.unwrap(),
        "stale id must not clear"
    );
    assert_eq!(resumed(resolve(b, ask("bot", &th, "cli")).await).session_id, session("s-2"));
    assert!(b.invalidate_session(InvalidateSession::new(agent("bot"), th.clone(), session("s-2"))).await.unwrap());
    assert_eq!(resolve(b, ask("bot", &th, "cli")).await, fresh(FreshReason::Invalidated, None));
    assert!(
        !b.invalidate_session(InvalidateSession::new(agent("bot"), th.clone(), session("s-2"))).await.unwrap(),
        "already invalidated"
    );
    b.bind(bind("bot", &th, "s-3", "cli")).await.unwrap();
    assert_eq!(resumed(resolve(b, ask("bot", &th, "cli")).await).session_id, session("s-3"));
    store.finish().await
}

/// Concurrent binds on one key leave exactly one of them, whole.
pub async fn check_concurrent_binds_leave_one_complete_binding<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, sessions);
    let th = t("session-race");
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let b = Arc::clone(store.b());
        let th = th.clone();
        tasks.spawn(async move {
            let bind = bind("bot", &th, &format!("s-{i}"), &format!("p-{i}"))
                .with_runtime(runtime(&format!("r-{i}")))
                .with_work_dir(format!("/w/{i}"));
            b.bind(bind).await.expect("bind")
        });
    }
    let binds = tasks.join_all().await;
    let created: HashSet<_> = binds.iter().map(|b| b.created_at).collect();
    assert_eq!(created.len(), 1, "every bind kept the first created_at");
    let b = store.b().as_ref();
    // Find which bind won by its provider, then check every field belongs to that same bind.
    let mut winner = None;
    for i in 0..20 {
        if let Resolution::Resume(binding) =
            resolve(b, ask("bot", &th, &format!("p-{i}")).with_runtime(runtime(&format!("r-{i}")))).await
        {
            assert!(winner.is_none(), "two binds resumable at once");
            assert_eq!(binding.session_id, session(&format!("s-{i}")), "fields mixed from two binds");
            assert_eq!(binding.work_dir, Some(format!("/w/{i}")), "fields mixed from two binds");
            winner = Some(i);
        }
    }
    assert!(winner.is_some(), "no complete binding survived");
    store.finish().await
}

/// Bindings of other agents or threads never interfere.
pub async fn check_bindings_are_keyed_by_agent_and_thread<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, sessions);
    let b = store.b().as_ref();
    let (t1, t2) = (t("session-k1"), t("session-k2"));
    b.bind(bind("bot-a", &t1, "a1", "cli")).await.unwrap();
    b.bind(bind("bot-b", &t1, "b1", "cli")).await.unwrap();
    b.bind(bind("bot-a", &t2, "a2", "cli")).await.unwrap();
    b.reset_session(ResetSession::new(agent("bot-b"), t1.clone())).await.unwrap();
    b.invalidate_session(InvalidateSession::new(agent("bot-a"), t2.clone(), session("a2"))).await.unwrap();
    assert_eq!(resumed(resolve(b, ask("bot-a", &t1, "cli")).await).session_id, session("a1"));
    assert_eq!(resolve(b, ask("bot-b", &t1, "cli")).await, fresh(FreshReason::Reset, None));
    assert_eq!(resolve(b, ask("bot-a", &t2, "cli")).await, fresh(FreshReason::Invalidated, None));
    assert_eq!(resolve(b, ask("bot-b", &t2, "cli")).await, fresh(FreshReason::NoBinding, None));
    store.finish().await
}

/// Deleting a thread removes its bindings; binding to a deleted thread is refused.
pub async fn check_deleted_thread_drops_and_refuses_bindings<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, sessions);
    let b = store.b().as_ref();
    let (gone, kept) = (t("session-gone"), t("session-kept"));
    add_text(b, &gone, "x").await;
    b.bind(bind("bot", &gone, "s-1", "cli").with_work_dir("/w")).await.unwrap();
    b.bind(bind("bot", &kept, "s-2", "cli")).await.unwrap();
    write(b, Delete::thread(gone.clone())).await.expect("delete");
    assert_eq!(resolve(b, ask("bot", &gone, "cli")).await, fresh(FreshReason::NoBinding, None));
    assert_err!(b.bind(bind("bot", &gone, "s-3", "cli")).await, PersistError::ThreadDeleted { .. });
    assert_eq!(resolve(b, ask("bot", &gone, "cli")).await, fresh(FreshReason::NoBinding, None), "nothing written");
    assert_eq!(resumed(resolve(b, ask("bot", &kept, "cli")).await).session_id, session("s-2"));
    store.finish().await
}

/// A bad work dir is `InvalidInput` and writes nothing.
pub async fn check_bad_binding_input_writes_nothing<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, sessions);
    let b = store.b().as_ref();
    let th = t("session-bad");
    assert_err!(
        b.bind(bind("bot", &th, "s-1", "cli").with_work_dir("/tmp/\u{7}bell")).await,
        PersistError::InvalidInput { field: "work_dir", .. }
    );
    assert_eq!(resolve(b, ask("bot", &th, "cli")).await, fresh(FreshReason::NoBinding, None));
    store.finish().await
}

/// A thread's bindings are listed with their state (a reset or invalidated one too), every
/// agent's, ordered by agent id, in the request's tenant only; a thread without any (or that
/// never existed) lists none.
pub async fn check_bindings_are_listed_per_thread_with_their_state<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, sessions);
    let b = store.b();
    let (id, other) = (t("listed"), t("other"));
    add_text(b.as_ref(), &id, "hi").await;
    let writer = b.bind(bind("writer", &id, "s-w", "p")).await.unwrap();
    let coder = b.bind(bind("coder", &id, "s-c", "p")).await.unwrap();
    b.bind(bind("coder", &other, "s-o", "p")).await.unwrap();
    let acme = tenant("acme");
    b.bind(bind("writer", &id, "s-acme", "p").with_context(ctx(Some(&acme)))).await.unwrap();
    assert!(b.reset_session(ResetSession::new(agent("writer"), id.clone())).await.unwrap());

    let listed = b.bindings(ListBindings::new(id.clone())).await.unwrap();
    let seen: Vec<_> = listed.iter().map(|s| (s.binding.session_id.as_str(), s.state)).collect();
    assert_eq!(seen, [("s-c", BindingState::Active), ("s-w", BindingState::Reset)], "by agent id, any state");
    assert_eq!(listed[0].binding, coder);
    assert_eq!((&listed[1].binding.session_id, listed[1].binding.created_at), (&writer.session_id, writer.created_at));
    let theirs = b.bindings(ListBindings::new(id.clone()).with_context(ctx(Some(&acme)))).await.unwrap();
    assert_eq!(theirs.iter().map(|s| s.binding.session_id.as_str()).collect::<Vec<_>>(), ["s-acme"]);
    assert_eq!(b.bindings(ListBindings::new(other)).await.unwrap().len(), 1);
    assert!(b.bindings(ListBindings::new(t("never"))).await.unwrap().is_empty());
    store.finish().await
}
