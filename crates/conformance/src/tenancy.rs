//! Tenant isolation: a tenant's request never sees, changes or learns of another tenant's thread.

use persist_core::args::{Delete, Reserve, Update, UpdateContent};
use persist_core::read::{GetMessage, GetThread, ListMessages, ListThreads};
use persist_core::{Backend, Content, Context, Metadata, PersistError, Role, TenantId};
use serde_json::json;

use crate::fixture::{assert_err, snapshot, t, text_add, thread, write, written};
use crate::{Factory, Outcome};

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).expect("valid tenant")
}

fn ctx(name: &str) -> Context {
    Context::new().with_tenant(tenant(name))
}

/// The first write's tenant owns the thread.
pub async fn check_thread_is_owned_by_its_first_writers_tenant<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let (owned, trusted) = (t("tenant-owned"), t("host-owned"));
    written(b, text_add(&owned, "hi").with_context(ctx("acme"))).await;
    written(b, text_add(&trusted, "hi")).await;
    assert_eq!(thread(b, &owned).await.unwrap().tenant, Some(tenant("acme")));
    assert_eq!(thread(b, &trusted).await.unwrap().tenant, None);
    store.finish().await
}

/// Every write of tenant B to tenant A's thread is refused and changes nothing.
pub async fn check_tenant_cannot_write_another_tenants_thread<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("acme-chat");
    let message = written(b, text_add(&id, "secret").with_context(ctx("acme"))).await;
    let before = snapshot(b.as_ref(), &[&id]).await;

    let evil = || ctx("globex");
    assert_err!(write(b, text_add(&id, "x").with_context(evil())).await, PersistError::NotFound { .. });
    assert_err!(
        write(b, Reserve::new(id.clone(), Role::Assistant).with_context(evil())).await,
        PersistError::NotFound { .. }
    );
    assert_err!(
        write(b, UpdateContent::new(id.clone(), message.id.clone(), Content::text("x")).with_context(evil())).await,
        PersistError::NotFound { .. }
    );
    let patch = Metadata::new().with("owner", json!("globex"));
    assert_err!(
        write(b, Update::message(id.clone(), message.id.clone()).with_metadata(patch.clone()).with_context(evil()))
            .await,
        PersistError::NotFound { .. }
    );
    assert_err!(
        write(b, Update::thread(id.clone()).with_metadata(patch).with_context(evil())).await,
        PersistError::NotFound { .. }
    );
    // A delete answers exactly as for a thread that does not exist.
    let deleted = write(b, Delete::thread(id.clone()).with_context(evil())).await.expect("delete");
    assert_eq!(deleted, persist_core::Deleted::new(id.clone(), vec![]).into());
    let deleted = write(b, Delete::message(id.clone(), message.id.clone()).with_context(evil())).await;
    assert_eq!(deleted.expect("delete"), persist_core::Deleted::new(id.clone(), vec![]).into());

    assert_eq!(snapshot(b.as_ref(), &[&id]).await, before, "tenant A's thread is unchanged");
    store.finish().await
}

/// Tenant B's reads find nothing of tenant A's thread, as if it did not exist.
pub async fn check_tenant_cannot_read_another_tenants_thread<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("acme-private");
    let message = written(b, text_add(&id, "secret").with_context(ctx("acme"))).await;
    written(b, text_add(&t("globex-own"), "mine").with_context(ctx("globex"))).await;

    let got = b.get(GetMessage::new(id.clone(), message.id.clone()).with_context(ctx("globex"))).await.unwrap();
    assert!(got.is_none());
    assert!(b.get_thread(GetThread::new(id.clone()).with_context(ctx("globex"))).await.unwrap().is_none());
    let page = b.list(ListMessages::new(id.clone()).with_context(ctx("globex"))).await.unwrap();
    assert!(page.items.is_empty() && !page.has_more);
    let listed = b.threads(ListThreads::new().with_context(ctx("globex"))).await.unwrap();
    let names: Vec<_> = listed.items.iter().map(|th| th.id.as_str().to_owned()).collect();
    assert_eq!(names, ["globex-own"]);

    // The owner sees its own.
    let own = b.get(GetMessage::new(id.clone(), message.id.clone()).with_context(ctx("acme"))).await.unwrap();
    assert_eq!(own, Some(message));
    let listed = b.threads(ListThreads::new().with_context(ctx("acme"))).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    store.finish().await
}

/// A request without a tenant is trusted host code: it reaches every tenant's thread.
pub async fn check_trusted_context_reaches_every_thread<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("acme-support");
    written(b, text_add(&id, "from tenant").with_context(ctx("acme"))).await;
    let host = written(b, text_add(&id, "from host")).await;
    assert_eq!(host.seq, 2);
    let th = thread(b, &id).await.unwrap();
    assert_eq!(th.tenant, Some(tenant("acme")), "a trusted write does not change ownership");
    let all = b.threads(ListThreads::new()).await.unwrap();
    assert_eq!(all.items.len(), 1);
    store.finish().await
}
