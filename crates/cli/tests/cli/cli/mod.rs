//! The `persist` binary end to end, on SQLite files seeded with the library (and through
//! PostgreSQL when `$PERSIST_POSTGRES_URL` names a server).

mod copy;
mod encryption;
mod failures;
mod listing;
mod maintenance;
mod round_trip;
mod serve;

use std::path::Path;

use persist::args::{Add, Delete, Reserve, Update, UpdateContent};
use persist::read::{ListMessages, ListThreads, MAX_PAGE_LIMIT};
use persist::session::{Bind, ListBindings, ResetSession, StoredBinding};
use persist::sqlite::SqliteBackend;
use persist::{
    AgentId, Content, Context, IdempotencyKey, Message, Metadata, PersistError, Pipeline, ProviderId, Role, SessionId,
    TenantId, Thread, ThreadId,
};
use serde_json::json;

use crate::support::run;

/// Messages the seeded store holds outside its long thread.
const SEEDED_MESSAGES: usize = 5;

/// Runs `persist ARGS`, which must fail with one `error:` line and no panic; answers its
/// stderr and exit code.
fn fails(args: &[&str]) -> (String, i32) {
    let output = run(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "persist {args:?} succeeded: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors = stderr.lines().filter(|line| line.starts_with("error:")).count();
    assert_eq!(errors, 1, "one error line expected: {stderr}");
    (stderr, output.status.code().expect("an exit code"))
}

/// Threads of two tenants (one id in both), a reserved message, metadata, idempotency keys, a
/// deleted message (a gap in the seqs), a title, session bindings (one reset), a deleted
/// thread, and a thread of `long` messages in tenant `acme`.
async fn seed(path: &Path, long: usize) -> Result<(), PersistError> {
    let backend = SqliteBackend::open(path).await?;
    let store = Pipeline::new(backend.clone());
    let order = ThreadId::new("support:1042")?;
    let first = Add::new(order.clone(), Role::User, Content::text("Where is my order?"))
        .with_idempotency_key(IdempotencyKey::new("turn-1")?)
        .with_metadata(Metadata::new().with("channel", json!("web")));
    store.add(first).await?;
    let reply = store.reserve(Reserve::new(order.clone(), Role::Assistant)).await?.message;
    store.update_content(UpdateContent::new(order.clone(), reply.id, Content::text("It left yesterday."))).await?;
    let gone = store.add(Add::new(order.clone(), Role::User, Content::text("never mind"))).await?.message;
    store.delete(Delete::message(order.clone(), gone.id)).await?;
    let tool = Content::new(json!({ "status": "shipped", "weight": 1.5, "parcels": 2 }));
    store.add(Add::new(order.clone(), Role::Tool, tool)).await?;
    let pending = Reserve::new(order.clone(), Role::Assistant).with_idempotency_key(IdempotencyKey::new("turn-2")?);
    store.reserve(pending).await?;
    let title = Update::thread(order.clone())
        .with_title(Some("Order 1042".to_owned()))
        .with_metadata(Metadata::new().with("user", json!("u1")));
    store.update(title).await?;
    for (agent, session) in [("support-bot", "sess-9"), ("triage", "sess-2")] {
        let bind = Bind::new(AgentId::new(agent)?, order.clone(), SessionId::new(session)?, ProviderId::new("cli")?);
        store.bind(bind.with_work_dir("/srv/work/1042")).await?;
    }
    store.reset_session(ResetSession::new(AgentId::new("triage")?, order.clone())).await?;

    let acme = Context::new().with_tenant(TenantId::new("acme")?);
    let theirs = Add::new(order.clone(), Role::User, Content::text("acme's own thread"));
    store.add(theirs.with_context(acme.clone())).await?;
    let old = ThreadId::new("old")?;
    store.add(Add::new(old.clone(), Role::User, Content::text("bye"))).await?;
    store.delete(Delete::thread(old)).await?;
    let long_thread = ThreadId::new("long")?;
    for i in 0..long {
        let add = Add::new(long_thread.clone(), Role::User, Content::text(format!("message {i}")));
        store.add(add.with_context(acme.clone())).await?;
    }
    backend.close().await;
    Ok(())
}

/// Every thread of every tenant (tombstones aside) with all its messages and session bindings,
/// by tenant and id.
async fn snapshot(path: &Path) -> Result<Vec<Stored>, PersistError> {
    let backend = SqliteBackend::open(path).await?;
    let store = Pipeline::new(backend.clone());
    let mut threads = Vec::new();
    let mut listing = ListThreads::new().across_tenants(true).with_limit(MAX_PAGE_LIMIT);
    loop {
        let page = store.threads(listing.clone()).await?;
        threads.extend(page.items);
        if !page.has_more {
            break;
        }
        listing = listing.with_cursor(page.next_cursor);
    }
    threads.sort_by(|a, b| (&a.tenant, &a.id).cmp(&(&b.tenant, &b.id)));
    let mut all = Vec::new();
    for thread in threads {
        let mut messages = Vec::new();
        let mut query = Some(
            ListMessages::new(thread.id.clone())
                .include_reserved(true)
                .with_limit(MAX_PAGE_LIMIT)
                .with_context(Context::new().for_tenant(thread.tenant.clone())),
        );
        while let Some(current) = query {
            let page = store.list(current.clone()).await?;
            query = current.next_page(&page);
            messages.extend(page.items);
        }
        let context = Context::new().for_tenant(thread.tenant.clone());
        let bindings = store.bindings(ListBindings::new(thread.id.clone()).with_context(context)).await?;
        all.push((thread, messages, bindings));
    }
    backend.close().await;
    Ok(all)
}

/// A thread, its messages and its session bindings.
type Stored = (Thread, Vec<Message>, Vec<StoredBinding>);

fn message_count(snapshot: &[Stored]) -> usize {
    snapshot.iter().map(|(_, messages, _)| messages.len()).sum()
}
