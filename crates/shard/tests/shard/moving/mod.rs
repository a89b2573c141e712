//! Moving a tenant between shards while the app writes (`Shards::move_tenant`): everything the
//! tenant held arrives whole, no acknowledged write is lost or written twice, writes are refused
//! only during the switch, a move stopped at any point finishes when run again, and writes that
//! reached the old shard late are carried over (or, colliding with the new shard's, stop the move
//! before anything is erased). In memory, across three PostgreSQL databases, and between a SQLite
//! file and a PostgreSQL schema.

mod claim;
mod concurrent;
mod resume;
mod servers;
mod switching;
mod whole;

use std::collections::BTreeMap;
use std::time::Duration;

use persist::args::{Add, Reserve, Update, UpdateContent};
use persist::memory::MemoryBackend;
use persist::read::{ListMessages, ListThreads};
use persist::session::{Bind, ListBindings, StoredBinding};
use persist::shard::{MoveOptions, MoveState, Shards};
use persist::summary::{ListSummaries, Summarize, Summary};
use persist::{
    AgentId, Content, Context, Message, Metadata, Pipeline, ProviderId, Role, SessionId, TenantId, Thread, ThreadId,
};
use serde_json::json;

/// A short TTL, so that each step's wait is short.
const TTL: Duration = Duration::from_millis(50);

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

fn ctx(name: &str) -> Context {
    Context::new().with_tenant(tenant(name))
}

fn id(name: &str) -> ThreadId {
    ThreadId::new(name).unwrap()
}

/// The stores: a directory and named shards, from which instances are built.
struct Stores {
    directory: Pipeline,
    shards: Vec<(String, Pipeline)>,
}

impl Stores {
    fn memory(names: &[&str]) -> Self {
        Self {
            directory: Pipeline::new(MemoryBackend::new()),
            shards: names.iter().map(|name| ((*name).to_owned(), Pipeline::new(MemoryBackend::new()))).collect(),
        }
    }

    /// An instance of the app: its own placement cache over the same stores.
    fn instance(&self) -> Shards {
        let builder = Shards::builder(self.directory.clone()).placement_ttl(TTL);
        let builder = self.shards.iter().fold(builder, |builder, (name, store)| builder.shard(name, store.clone()));
        builder.build().unwrap()
    }

    fn store(&self, name: &str) -> &Pipeline {
        &self.shards.iter().find(|(named, _)| named == name).unwrap().1
    }

    /// A shard `tenant` is not on.
    async fn other_than(&self, shards: &Shards, tenant_name: &str) -> String {
        let on = shards.placement(Some(&tenant(tenant_name))).await.unwrap().shard;
        self.shards.iter().map(|(name, _)| name.clone()).find(|name| *name != on).unwrap()
    }
}

/// Everything of a tenant one store holds: each thread with its messages (every branch,
/// reservations too), session bindings and summaries.
type Snapshot = BTreeMap<ThreadId, (Thread, Vec<Message>, Vec<StoredBinding>, Vec<Summary>)>;

async fn snapshot(store: &Pipeline, tenant_name: &str) -> Snapshot {
    let mut found = Snapshot::new();
    let listing = ListThreads::new().with_limit(1000).with_context(ctx(tenant_name));
    let threads = store.threads(listing).await.unwrap();
    assert!(!threads.has_more);
    for thread in threads.items {
        let list = ListMessages::new(thread.id.clone()).include_reserved(true).with_limit(1000);
        let messages = store.list(list.with_context(ctx(tenant_name))).await.unwrap().items;
        let bindings = ListBindings::new(thread.id.clone()).with_context(ctx(tenant_name));
        let bindings = store.bindings(bindings).await.unwrap();
        let summaries = ListSummaries::new(thread.id.clone()).with_context(ctx(tenant_name));
        let summaries = store.summaries(summaries).await.unwrap().items;
        found.insert(thread.id.clone(), (thread, messages, bindings, summaries));
    }
    found
}

/// Writes `threads` threads of `tenant_name`, each with a branch (an edit of its second
/// message), a reservation streamed part way, a session binding and a summary.
async fn seed(store: &Pipeline, tenant_name: &str, threads: usize, messages: usize) {
    for t in 0..threads {
        let thread = id(&format!("thread-{t}"));
        let mut ids = Vec::new();
        for m in 0..messages {
            let add = Add::new(thread.clone(), Role::User, Content::text(format!("{tenant_name} {t}/{m}")));
            ids.push(store.add(add.with_context(ctx(tenant_name))).await.unwrap().message.id);
        }
        let edit = Add::new(thread.clone(), Role::User, Content::text("an edit")).with_parent(ids[0].clone());
        store.add(edit.with_context(ctx(tenant_name))).await.unwrap();
        let summary = Summarize::new(thread.clone(), 1, Content::text("in short"));
        store.summarize(summary.with_context(ctx(tenant_name))).await.unwrap();
        let reserved =
            store.reserve(Reserve::new(thread.clone(), Role::Assistant).with_context(ctx(tenant_name))).await;
        let update = UpdateContent::partial(thread.clone(), reserved.unwrap().message.id, Content::text("so far"));
        store.update_content(update.with_context(ctx(tenant_name))).await.unwrap();
        let title = Update::thread(thread.clone()).with_title(Some(format!("thread {t}")));
        store
            .update(title.with_metadata(Metadata::new().with("n", json!(t))).with_context(ctx(tenant_name)))
            .await
            .unwrap();
        let bind = Bind::new(
            AgentId::new("agent").unwrap(),
            thread,
            SessionId::new(format!("session-{t}")).unwrap(),
            ProviderId::new("provider").unwrap(),
        );
        store.bind(bind.with_context(ctx(tenant_name))).await.unwrap();
    }
}

fn options() -> MoveOptions {
    MoveOptions::new().max_switch(Duration::from_millis(2_000)).claim_ttl(Duration::from_secs(2))
}

/// The state a fresh instance reads in the tenant's record.
async fn state(stores: &Stores, tenant_name: &str) -> Option<MoveState> {
    let placed = stores.instance().placement(Some(&tenant(tenant_name))).await.unwrap();
    placed.moving.map(|moving| moving.state)
}
