//! A `Scoped` handle offers every call a `Pipeline` has that stays in one tenant, so a request
//! handler never needs the pipeline back: fork, restore, bindings, retention and stranded
//! cleanup stay in the handle's tenant, and a request naming another tenant is refused.

use std::time::Duration;

use persist::args::{Add, Reserve, Restore};
use persist::layer::RequireTenantLayer;
use persist::lifecycle::{Fork, Prune};
use persist::maintenance::CleanupStranded;
use persist::memory::MemoryBackend;
use persist::prelude::*;
use persist::read::{GetThread, ListMessages, ListThreads};
use persist::session::{Bind, ListBindings};
use persist::{
    AgentId, Content, Context, PersistError, Pipeline, ProviderId, Role, Scoped, SessionId, TenantId, ThreadId,
};

fn id(text: &str) -> ThreadId {
    ThreadId::new(text).unwrap()
}

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

fn scoped(pipeline: &Pipeline, name: &str) -> Scoped {
    pipeline.scoped(Context::new().with_tenant(tenant(name)))
}

async fn say(handle: &Scoped, thread: &str, text: &str) {
    handle.add(Add::new(id(thread), Role::User, Content::text(text))).await.unwrap();
}

#[tokio::test]
async fn a_scoped_handle_forks_restores_binds_and_prunes_within_its_tenant() {
    // Every call reaches the store with a tenant: the layer refuses any that would not.
    let pipeline = Pipeline::builder().layer(RequireTenantLayer::new()).build(MemoryBackend::new());
    let (acme, globex) = (scoped(&pipeline, "acme"), scoped(&pipeline, "globex"));
    for text in ["one", "two", "three"] {
        say(&acme, "general", text).await;
        say(&globex, "general", text).await;
    }

    let forked = acme.fork(Fork::new(id("general"), id("branch")).up_to(2)).await.unwrap();
    assert_eq!(forked.copied, 2);
    assert_eq!(acme.list(ListMessages::new(id("branch"))).await.unwrap().items.len(), 2);
    assert!(globex.get_thread(GetThread::new(id("branch"))).await.unwrap().is_none(), "not globex's");

    let agent = AgentId::new("helper").unwrap();
    let bind = Bind::new(agent, id("general"), SessionId::new("s-1").unwrap(), ProviderId::new("p").unwrap());
    acme.bind(bind).await.unwrap();
    assert_eq!(acme.bindings(ListBindings::new(id("general"))).await.unwrap().len(), 1);
    assert!(globex.bindings(ListBindings::new(id("general"))).await.unwrap().is_empty());

    // A restore of the handle's own thread, elsewhere, then of another tenant's: refused.
    let thread = acme.get_thread(GetThread::new(id("general"))).await.unwrap().unwrap();
    let messages = acme.list(ListMessages::new(id("general"))).await.unwrap().items;
    let copy = Pipeline::new(MemoryBackend::new());
    let restored = scoped(&copy, "acme").restore(Restore::new(thread.clone(), messages.clone())).await.unwrap();
    assert_eq!(restored.restored, 3);
    let refused = scoped(&copy, "globex").restore(Restore::new(thread, messages)).await;
    assert!(matches!(refused, Err(PersistError::InvalidInput { field: "tenant", .. })), "{refused:?}");

    // Retention and cleanup made for every tenant touch the handle's only.
    let report = acme.prune(Prune::new().with_keep_latest(1)).await.unwrap();
    assert_eq!(report.deleted_messages, 3, "two of general, one of branch");
    assert_eq!(globex.list(ListMessages::new(id("general"))).await.unwrap().items.len(), 3, "globex untouched");
    let other = acme.prune(Prune::new().with_keep_latest(1).only_tenant(Some(tenant("globex")))).await;
    assert!(matches!(other, Err(PersistError::Rejected { .. })), "{other:?}");
    for handle in [&acme, &globex] {
        let reply = handle.reserve(Reserve::new(id("general"), Role::Assistant)).await.unwrap().message;
        let token = persist::args::UpdateContent::appending(id("general"), reply.id, persist::Content::text("Hal"));
        handle.update_content(token).await.unwrap();
    }
    let cleaned = acme.cleanup_stranded(CleanupStranded::new(Duration::ZERO)).await.unwrap();
    assert_eq!(cleaned.interrupted.len(), 1, "acme's reservation only");
    let listed = globex.list(ListMessages::new(id("general")).include_reserved(true)).await.unwrap();
    assert_eq!(listed.items.len(), 4, "globex keeps its reservation");
    let other = acme.cleanup_stranded(CleanupStranded::new(Duration::ZERO).only_tenant(None)).await;
    assert!(matches!(other, Err(PersistError::Rejected { .. })), "{other:?}");
    assert_eq!(acme.threads(ListThreads::new()).await.unwrap().items.len(), 2);
    assert!(acme.capabilities().feed);
}

/// Retention and the stranded cleanup send every request in the context they were given (its
/// principal, its tenant) with the `Maintenance` mark: an audit layer sees who ran them. Through
/// a scoped handle, the handle's context.
#[tokio::test]
async fn prune_and_cleanup_send_their_requests_in_the_context_they_were_given() {
    use std::sync::{Arc, Mutex};

    use persist::PersistArgs;
    use persist::layer::ObserveLayer;
    use persist::maintenance::Maintenance;

    type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>, bool)>>>;
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    let pipeline = Pipeline::builder()
        .layer(ObserveLayer::new().on_args(move |args: &PersistArgs| {
            let context = args.context();
            record.lock().unwrap().push((
                args.op().to_string(),
                context.principal().map(str::to_owned),
                context.tenant().map(|t| t.as_str().to_owned()),
                context.extensions().get::<Maintenance>().is_some(),
            ));
        }))
        .build(MemoryBackend::new());
    let acme = scoped(&pipeline, "acme");
    for text in ["one", "two", "three"] {
        say(&acme, "general", text).await;
    }
    let reply = acme.reserve(Reserve::new(id("general"), Role::Assistant)).await.unwrap().message;
    let token = persist::args::UpdateContent::appending(id("general"), reply.id, persist::Content::text("Hal"));
    acme.update_content(token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    seen.lock().unwrap().clear();

    let operator = Context::new().with_principal("ops-bot");
    let prune = Prune::new().with_keep_latest(1).with_context(operator.clone()).only_tenant(Some(tenant("acme")));
    let report = pipeline.prune(prune).await.unwrap();
    assert_eq!(report.deleted_messages, 3);
    let cleanup =
        CleanupStranded::new(Duration::from_millis(1)).with_context(operator).only_tenant(Some(tenant("acme")));
    assert_eq!(
        pipeline.cleanup_stranded(cleanup).await.unwrap().interrupted.len(),
        1,
        "the reservation kept as the latest"
    );
    let handle = pipeline.scoped(Context::new().with_tenant(tenant("acme")).with_principal("acme-admin"));
    handle.prune(Prune::new().with_keep_latest(1)).await.unwrap();

    let seen = seen.lock().unwrap();
    assert!(seen.len() >= 4, "{seen:?}");
    for (op, principal, tenant, maintenance) in seen.iter() {
        assert!(*maintenance, "{op} without the Maintenance mark");
        assert_eq!(tenant.as_deref(), Some("acme"), "{op}");
        assert!(matches!(principal.as_deref(), Some("ops-bot" | "acme-admin")), "{op}: {principal:?}");
    }
    assert!(seen.iter().any(|(_, principal, _, _)| principal.as_deref() == Some("acme-admin")));
}

#[tokio::test]
async fn a_scoped_handle_gives_every_call_one_consistency_its_own_or_the_contexts() {
    use persist::layer::from_fn;
    use persist::{CommitPosition, Consistency};
    use std::sync::{Arc, Mutex};

    // What each request reaching the store carries.
    let seen: Arc<Mutex<Vec<Option<Consistency>>>> = Arc::default();
    let log = Arc::clone(&seen);
    let pipeline = Pipeline::builder()
        .layer(from_fn(move |args, next| {
            log.lock().unwrap().push(args.context().consistency().cloned());
            next.run(args)
        }))
        .build(MemoryBackend::new());

    let acme = scoped(&pipeline, "acme");
    say(&acme, "general", "hi").await;
    acme.list(ListMessages::new(id("general"))).await.unwrap();
    acme.clone().get_thread(GetThread::new(id("general"))).await.unwrap();
    // Another handle has one of its own; a context's own is kept.
    say(&scoped(&pipeline, "acme"), "general", "hi").await;
    let given = Consistency::after(CommitPosition::new(42));
    say(&pipeline.scoped(Context::new().with_consistency(given.clone())), "general", "hi").await;
    // A plain call carries none.
    pipeline.add(Add::new(id("general"), Role::User, Content::text("plain"))).await.unwrap();

    let seen: Vec<Option<Consistency>> = std::mem::take(&mut *seen.lock().unwrap());
    let [Some(a), Some(b), Some(c), Some(other), Some(kept), None] = &seen[..] else { panic!("{seen:?}") };
    assert!(a.same(b) && a.same(c), "one handle, one consistency");
    assert!(!a.same(other));
    assert!(kept.same(&given));

    // Serialized, a context carries the position it must see (a queue, another process).
    let json = serde_json::to_value(Context::new().with_consistency(given)).unwrap();
    assert_eq!(json["read_after"], "0/2A");
    let back: Context = serde_json::from_value(json).unwrap();
    assert_eq!(back.consistency().and_then(Consistency::position), Some(CommitPosition::new(42)));
    let plain = serde_json::to_value(Context::new()).unwrap();
    assert!(plain.get("read_after").is_none());
}
