//! Moving a tenant between shards while the app writes (`Shards::move_tenant`): everything the
//! tenant held arrives whole, no acknowledged write is lost or written twice, writes are refused
//! only during the switch, a move stopped at any point finishes when run again, and writes that
//! reached the old shard late are carried over (or, colliding with the new shard's, stop the move
//! before anything is erased). In memory, across three PostgreSQL databases, and between a SQLite
//! file and a PostgreSQL schema.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use persist::Backend as _;
use persist::args::{Add, Reserve, Update, UpdateContent};
use persist::lease::Lease;
use persist::memory::MemoryBackend;
use persist::postgres::PostgresBackend;
use persist::read::{GetThread, ListMessages, ListThreads};
use persist::session::{Bind, ListBindings, StoredBinding};
use persist::shard::{MoveOptions, MoveState, Shards};
use persist::sqlite::SqliteBackend;
use persist::summary::{ListSummaries, Summarize, Summary};
use persist::{
    AgentId, Content, Context, Message, Metadata, PersistError, Pipeline, ProviderId, Role, SessionId, TenantId,
    Thread, ThreadId,
};
use serde_json::json;
use support::{DATABASES, database_url, databases, drop_schema, drop_shard_schemas, schema_name};

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

#[tokio::test]
async fn a_tenant_moves_whole_and_is_read_and_written_on_the_new_shard() {
    let stores = Stores::memory(&["a", "b"]);
    let app = Pipeline::new(stores.instance());
    seed(&app, "acme", 4, 5).await;
    seed(&app, "globex", 2, 3).await;
    let shards = stores.instance();
    let acme = tenant("acme");
    let from = shards.placement(Some(&acme)).await.unwrap().shard;
    let to = stores.other_than(&shards, "acme").await;
    let before = snapshot(stores.store(&from), "acme").await;
    let globex = snapshot(&app, "globex").await;
    assert_eq!(before.len(), 4);

    let moved = shards.move_tenant(Some(&acme), &to, options()).await.unwrap();
    assert_eq!((moved.from.as_str(), moved.to.as_str(), moved.already), (from.as_str(), to.as_str(), false));
    assert_eq!((moved.copied, moved.erased, moved.carried, moved.switches), (4, 4, 0, 1));
    assert!(moved.refused_for.is_some_and(|refused| refused < Duration::from_secs(2)));
    // Everything on the new shard as it was, nothing left on the old one.
    assert_eq!(snapshot(stores.store(&to), "acme").await, before);
    assert!(snapshot(stores.store(&from), "acme").await.is_empty());
    let placed = shards.placement(Some(&acme)).await.unwrap();
    assert_eq!((placed.shard.as_str(), placed.moving), (to.as_str(), None));
    // Another instance (its cache, once its TTL passed) reads and writes the tenant there.
    tokio::time::sleep(TTL * 2).await;
    assert_eq!(snapshot(&app, "acme").await, before);
    let add = Add::new(id("thread-0"), Role::User, Content::text("after the move")).with_context(ctx("acme"));
    let added = app.add(add).await.unwrap();
    assert_eq!(added.message.seq, before[&id("thread-0")].0.last_seq + 1);
    assert_eq!(snapshot(stores.store(&to), "acme").await[&id("thread-0")].1.last(), Some(&added.message));
    // Other tenants are untouched; a move to where the tenant is does nothing.
    assert_eq!(snapshot(&app, "globex").await, globex);
    let again = shards.move_tenant(Some(&acme), &to, options()).await.unwrap();
    assert!(again.already && again.copied == 0 && again.erased == 0);
    // And back: the old shard's tombstones of those threads give way to them.
    let moved_on = snapshot(stores.store(&to), "acme").await;
    let back = shards.move_tenant(Some(&acme), &from, options()).await.unwrap();
    assert_eq!((back.copied, back.erased), (4, 4));
    assert_eq!(snapshot(stores.store(&from), "acme").await, moved_on);
}

/// A tenant's working memory documents move with it: read and patched on the new shard after
/// the move, other tenants' left where they are.
#[tokio::test]
async fn a_tenants_working_memory_moves_with_it() {
    use persist::working::{ReadMemory, WriteMemory};
    let stores = Stores::memory(&["a", "b"]);
    let app = Pipeline::new(stores.instance());
    seed(&app, "acme", 1, 1).await;
    let doc = |v: serde_json::Value| persist::Metadata::try_from(v).unwrap();
    let user = persist::ResourceId::new("user:1").unwrap();
    for (who, name) in [("acme", "Ada"), ("globex", "Grace")] {
        let patch = WriteMemory::patch(user.clone(), doc(serde_json::json!({"name": name}))).with_context(ctx(who));
        app.write_memory(patch).await.unwrap();
    }
    let shards = stores.instance();
    let acme = tenant("acme");
    let to = stores.other_than(&shards, "acme").await;
    shards.move_tenant(Some(&acme), &to, options()).await.unwrap();
    let there = stores.store(&to).read_memory(ReadMemory::new(user.clone()).with_context(ctx("acme"))).await.unwrap();
    assert_eq!(there.map(|m| m.document), Some(doc(serde_json::json!({"name": "Ada"}))));
    tokio::time::sleep(TTL * 2).await;
    let patch = WriteMemory::patch(user.clone(), doc(serde_json::json!({"city": "Lisbon"}))).with_context(ctx("acme"));
    app.write_memory(patch).await.unwrap();
    let read = |who| ReadMemory::new(user.clone()).with_context(ctx(who));
    let after = stores.store(&to).read_memory(read("acme")).await.unwrap().expect("on the new shard");
    assert_eq!(after.document, doc(serde_json::json!({"name": "Ada", "city": "Lisbon"})));
    let globex = app.read_memory(read("globex")).await.unwrap().expect("untouched");
    assert_eq!(globex.document, doc(serde_json::json!({"name": "Grace"})));
    // Listed across tenants: each tenant's documents from its shard, once (the old shard keeps
    // a stale copy of acme's), at the version the move kept, a page at a time.
    let mut listing = persist::working::ListMemories::new().across_tenants(true).with_limit(1);
    let mut listed = Vec::new();
    loop {
        let page = shards.memories(listing.clone()).await.unwrap();
        listed.extend(page.items.into_iter().map(|m| (m.tenant.map(|t| t.as_str().to_owned()), m.document, m.version)));
        if !page.has_more {
            break;
        }
        listing = listing.with_cursor(page.next_cursor);
    }
    let acme_doc = doc(serde_json::json!({"name": "Ada", "city": "Lisbon"}));
    assert_eq!(
        listed,
        [
            (Some("acme".to_owned()), acme_doc, 2),
            (Some("globex".to_owned()), doc(serde_json::json!({"name": "Grace"})), 1)
        ]
    );
}

/// Writers on instances of their own append to their threads while the tenant moves, retrying
/// refused writes; every acknowledged message is then on the new shard once, the old shard
/// holds nothing, and writes were refused for less than `max_switch`.
async fn writes_during_a_move_are_all_kept(stores: &Stores) {
    let app = Pipeline::new(stores.instance());
    seed(&app, "acme", 3, 3).await;
    let shards = stores.instance();
    let acme = tenant("acme");
    let from = shards.placement(Some(&acme)).await.unwrap().shard;
    let to = stores.other_than(&shards, "acme").await;
    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (instance, done) = (Pipeline::new(stores.instance()), done.clone());
        writers.push(tokio::spawn(async move {
            let (mut acked, mut refused, mut longest, mut n) = (Vec::new(), 0, Duration::ZERO, 0);
            let mut refused_since: Option<Instant> = None;
            // Until the move is done, then ten more.
            let mut after = 0;
            while after < 10 {
                if done.load(Ordering::SeqCst) {
                    after += 1;
                }
                let thread = id(&format!("writer-{w}-{}", n % 4));
                let add = Add::new(thread.clone(), Role::User, Content::text(format!("w{w} #{n}")));
                match instance.add(add.with_context(ctx("acme"))).await {
                    Ok(added) => {
                        if let Some(since) = refused_since.take() {
                            longest = longest.max(since.elapsed());
                        }
                        acked.push((thread, added.message.id));
                        n += 1;
                        // An app's pace, not a tight loop.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(PersistError::Temporary { message, .. }) => {
                        assert!(message.contains("moving from shard"), "{message}");
                        refused += 1;
                        refused_since.get_or_insert_with(Instant::now);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(error) => panic!("writer {w}: {error}"),
                }
            }
            (acked, refused, longest)
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let moved = shards.move_tenant(Some(&acme), &to, options()).await.unwrap();
    done.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    let mut refused = 0;
    for writer in writers {
        let (theirs, refusals, longest) = writer.await.unwrap();
        assert!(longest < Duration::from_millis(2_000) + TTL * 4, "writes refused for {longest:?}");
        acked.extend(theirs);
        refused += refusals;
    }
    assert!(refused > 0, "the switch refused no write: {moved:?}");
    let held = snapshot(stores.store(&to), "acme").await;
    let stored: Vec<_> = held
        .values()
        .flat_map(|(thread, messages, _, _)| messages.iter().map(|m| (thread.id.clone(), m.id.clone())))
        .collect();
    let unique: BTreeSet<_> = stored.iter().cloned().collect();
    assert_eq!(unique.len(), stored.len(), "a message stored twice");
    let missing: Vec<_> = acked.iter().filter(|m| !unique.contains(m)).collect();
    assert!(missing.is_empty(), "acknowledged and lost: {missing:?} ({moved:?})");
    assert!(snapshot(stores.store(&from), "acme").await.is_empty());
}

#[tokio::test]
async fn writes_during_a_move_are_all_kept_in_memory() {
    writes_during_a_move_are_all_kept(&Stores::memory(&["a", "b", "c"])).await;
}

/// Three PostgreSQL databases (a schema of this test's in each), the directory in a fourth
/// schema; dropped at the end.
async fn postgres_stores(schema: &str) -> Stores {
    databases().await.unwrap();
    let mut shards = Vec::new();
    for database in DATABASES {
        let backend = PostgresBackend::builder(database_url(database)).schema(schema).max_connections(4);
        shards.push((database.to_owned(), Pipeline::new(backend.connect().await.unwrap())));
    }
    let directory = PostgresBackend::builder(database_url(DATABASES[0])).schema(format!("{schema}_d"));
    Stores { directory: Pipeline::new(directory.max_connections(4).connect().await.unwrap()), shards }
}

#[tokio::test]
async fn writes_during_a_move_are_all_kept_across_postgres_databases() {
    let schema = schema_name();
    writes_during_a_move_are_all_kept(&postgres_stores(&schema).await).await;
    drop_shard_schemas(&schema).await;
}

#[tokio::test]
async fn writes_during_a_move_are_all_kept_between_sqlite_and_postgres() {
    databases().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let schema = schema_name();
    let server = PostgresBackend::builder(database_url(DATABASES[1])).schema(&schema).max_connections(4);
    let stores = Stores {
        directory: Pipeline::new(SqliteBackend::open(dir.path().join("directory.db")).await.unwrap()),
        shards: vec![
            ("file".to_owned(), Pipeline::new(SqliteBackend::open(dir.path().join("shard.db")).await.unwrap())),
            ("server".to_owned(), Pipeline::new(server.connect().await.unwrap())),
        ],
    };
    writes_during_a_move_are_all_kept(&stores).await;
    drop_schema(&database_url(DATABASES[1]), &schema).await;
}

/// The state a fresh instance reads in the tenant's record.
async fn state(stores: &Stores, tenant_name: &str) -> Option<MoveState> {
    let placed = stores.instance().placement(Some(&tenant(tenant_name))).await.unwrap();
    placed.moving.map(|moving| moving.state)
}

/// Runs the move until its record says `wanted`, then stops it there (as a kill would).
async fn stop_at(stores: &Stores, to: &str, wanted: fn(&MoveState) -> bool, options: &MoveOptions) {
    let shards = stores.instance();
    let options = options.clone();
    let to = to.to_owned();
    let mover = tokio::spawn(async move { shards.move_tenant(Some(&tenant("acme")), &to, options).await });
    loop {
        if state(stores, "acme").await.as_ref().is_some_and(wanted) {
            mover.abort();
            let _ = mover.await;
            return;
        }
        assert!(!mover.is_finished(), "the move ended before the state wanted");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// How many more requests the mover's stores answer; past it, a request never ends (as if the
/// mover was killed before it sent it) and `stalled` is told.
#[derive(Clone, Default)]
struct Budget(Arc<(std::sync::atomic::AtomicI64, tokio::sync::Notify)>);

impl Budget {
    fn set(&self, requests: i64) {
        self.0.0.store(requests, Ordering::SeqCst);
    }

    async fn stalled(&self) {
        self.0.1.notified().await;
    }
}

#[derive(Clone)]
struct Stalling<S> {
    inner: S,
    budget: Budget,
}

impl<S> tower::Service<persist::PersistArgs> for Stalling<S>
where
    S: tower::Service<persist::PersistArgs, Response = persist::PersistResult, Error = PersistError>,
    S::Future: Send + 'static,
{
    type Response = persist::PersistResult;
    type Error = PersistError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), PersistError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, args: persist::PersistArgs) -> Self::Future {
        if self.budget.0.0.fetch_sub(1, Ordering::SeqCst) <= 0 {
            self.budget.0.1.notify_one();
            return Box::pin(std::future::pending());
        }
        Box::pin(self.inner.call(args))
    }
}

#[tokio::test]
async fn a_move_stopped_before_any_of_its_requests_finishes_when_run_again() {
    let (directory, a, b) = (MemoryBackend::new(), MemoryBackend::new(), MemoryBackend::new());
    let plain = Stores {
        directory: Pipeline::new(directory.clone()),
        shards: vec![("a".to_owned(), Pipeline::new(a.clone())), ("b".to_owned(), Pipeline::new(b.clone()))],
    };
    // The mover's instance reaches the same stores through the budget.
    let budget = Budget::default();
    let stalling = |store: &MemoryBackend| {
        let budget = budget.clone();
        Pipeline::builder()
            .layer(tower::layer::layer_fn(move |inner| Stalling { inner, budget: budget.clone() }))
            .build(store.clone())
    };
    let mover = Stores {
        directory: stalling(&directory),
        shards: vec![("a".to_owned(), stalling(&a)), ("b".to_owned(), stalling(&b))],
    };
    let app = Pipeline::new(plain.instance());
    seed(&app, "acme", 3, 3).await;
    let shards = mover.instance();
    let acme = tenant("acme");
    budget.set(i64::MAX);
    let from = shards.placement(Some(&acme)).await.unwrap().shard;
    let to = plain.other_than(&shards, "acme").await;
    let expected = snapshot(plain.store(&from), "acme").await;
    // Stopped before its first request, then its second, and so on, until a run ends; an
    // app's message written between two runs (unless the switch refuses it).
    let options = options().claim_ttl(Duration::from_millis(200));
    let (mut stops, mut seen, mut written) = (0_i64, BTreeSet::new(), Vec::new());
    loop {
        budget.set(stops);
        tokio::select! {
            moved = shards.move_tenant(Some(&acme), &to, options.clone()) => {
                moved.unwrap();
                break;
            }
            () = budget.stalled() => stops += 1,
        }
        let state = state(&plain, "acme").await;
        seen.insert(format!("{state:?}").split([' ', '{', '(', ')']).nth(1).unwrap_or("None").to_owned());
        let text = format!("between runs {stops}");
        let add = Add::new(id(&format!("thread-{}", stops % 3)), Role::User, Content::text(&text));
        match app.add(add.with_context(ctx("acme"))).await {
            Ok(_) => written.push(text),
            Err(PersistError::Temporary { .. }) => {}
            Err(error) => panic!("{error}"),
        }
    }
    assert!(stops > 50, "stopped {stops} times");
    for state in ["Copying", "Switching", "Cleaning"] {
        assert!(seen.contains(state), "never stopped while {state}: {seen:?}");
    }
    // Everything seeded, and each message written between runs, once, on the new shard.
    let held = snapshot(plain.store(&to), "acme").await;
    assert!(snapshot(plain.store(&from), "acme").await.is_empty());
    let texts: Vec<String> = held.values().flat_map(|(_, m, _, _)| m.iter().map(|m| m.content.to_text())).collect();
    for text in &written {
        assert_eq!(texts.iter().filter(|there| *there == text).count(), 1, "{text}");
    }
    for (thread, (_, messages, bindings, summaries)) in &expected {
        let (_, there, their_bindings, their_summaries) = &held[thread];
        assert_eq!(&there[..messages.len()], &messages[..], "{thread}");
        assert_eq!((their_bindings, their_summaries), (bindings, summaries));
    }
    assert!(state(&plain, "acme").await.is_none());
}

#[tokio::test]
async fn writes_are_refused_while_switching_and_let_through_when_it_runs_out() {
    let stores = Stores::memory(&["a", "b"]);
    let app = Pipeline::new(stores.instance());
    seed(&app, "acme", 2, 2).await;
    let shards = stores.instance();
    let from = shards.placement(Some(&tenant("acme"))).await.unwrap().shard;
    let to = stores.other_than(&shards, "acme").await;
    let options = options().max_switch(Duration::from_millis(400));
    stop_at(&stores, &to, |state| matches!(state, MoveState::Switching { .. }), &options).await;
    let Some(MoveState::Switching { until, .. }) = state(&stores, "acme").await else { panic!("not switching") };
    // Within a TTL an instance may not have seen the switch yet (the mover waits that long).
    tokio::time::sleep(TTL * 2).await;

    let add = |text: &str| Add::new(id("thread-0"), Role::User, Content::text(text)).with_context(ctx("acme"));
    let refused = app.add(add("refused")).await.unwrap_err();
    assert!(matches!(&refused, PersistError::Temporary { message, .. } if message.contains("acme")), "{refused}");
    // Reads go on, from the old shard.
    assert_eq!(snapshot(&app, "acme").await, snapshot(stores.store(&from), "acme").await);
    // The mover is gone: once the switch's time ran out, writes go to the old shard again.
    while persist::Timestamp::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let late = app.add(add("after the switch ran out")).await.unwrap();
    // Run again, the move switches anew and carries it.
    let moved = shards.move_tenant(Some(&tenant("acme")), &to, options).await.unwrap();
    assert_eq!(moved.switches, 1);
    let held = snapshot(stores.store(&to), "acme").await;
    assert_eq!(held[&id("thread-0")].1.last(), Some(&late.message));
    assert!(snapshot(stores.store(&from), "acme").await.is_empty());
}

#[tokio::test]
async fn writes_that_reach_the_old_shard_late_are_carried_or_stop_the_move() {
    let stores = Stores::memory(&["a", "b"]);
    let app = Pipeline::new(stores.instance());
    seed(&app, "acme", 3, 2).await;
    let shards = stores.instance();
    let acme = tenant("acme");
    let from = shards.placement(Some(&acme)).await.unwrap().shard;
    let to = stores.other_than(&shards, "acme").await;
    stop_at(&stores, &to, |state| matches!(state, MoveState::Cleaning { .. }), &options()).await;
    // Writes an instance had sent before it saw the switch, landing on the old shard now: a
    // message, a new thread, a session binding.
    let old = stores.store(&from);
    let add =
        |thread: &str, text: &str| Add::new(id(thread), Role::User, Content::text(text)).with_context(ctx("acme"));
    let late = old.add(add("thread-0", "late")).await.unwrap().message;
    let new_thread = old.add(add("late-thread", "first")).await.unwrap().message;
    let bind = Bind::new(
        AgentId::new("agent").unwrap(),
        id("thread-1"),
        SessionId::new("late-session").unwrap(),
        ProviderId::new("provider").unwrap(),
    );
    old.bind(bind.with_context(ctx("acme"))).await.unwrap();
    // And a change on the new shard since, that collides with none of them.
    app.add(add("thread-2", "on the new shard")).await.unwrap();

    let moved = shards.move_tenant(Some(&acme), &to, options()).await.unwrap();
    assert_eq!((moved.carried, moved.erased), (3, 4));
    let held = snapshot(stores.store(&to), "acme").await;
    assert!(held[&id("thread-0")].1.contains(&late));
    assert_eq!(held[&id("late-thread")].1, vec![new_thread]);
    assert_eq!(held[&id("thread-1")].2[0].binding.session_id.as_str(), "late-session");
    assert_eq!(held[&id("thread-2")].1.last().unwrap().content.to_text(), "on the new shard");
    assert!(snapshot(old, "acme").await.is_empty());

    // What the switch copied, then deleted or finished on the new shard, is not brought back
    // or taken for a collision: a truncation, an erasure, a reply finished there.
    let stores = Stores::memory(&["a", "b"]);
    let app = Pipeline::new(stores.instance());
    seed(&app, "acme", 3, 3).await;
    let shards = stores.instance();
    let from = shards.placement(Some(&acme)).await.unwrap().shard;
    let to = stores.other_than(&shards, "acme").await;
    stop_at(&stores, &to, |state| matches!(state, MoveState::Cleaning { .. }), &options()).await;
    tokio::time::sleep(TTL * 2).await;
    app.delete(persist::args::Delete::after(id("thread-0"), 1).with_context(ctx("acme"))).await.unwrap();
    app.delete(persist::args::Delete::purge(id("thread-1")).freeing_id(true).with_context(ctx("acme"))).await.unwrap();
    let reserved = snapshot(stores.store(&to), "acme").await[&id("thread-2")].1.last().unwrap().clone();
    assert_eq!(reserved.status, persist::Status::Reserved);
    let finish = UpdateContent::new(id("thread-2"), reserved.id.clone(), Content::text("finished"));
    app.update_content(finish.with_context(ctx("acme"))).await.unwrap();
    let after = snapshot(stores.store(&to), "acme").await;
    let moved = shards.move_tenant(Some(&acme), &to, options()).await.unwrap();
    assert_eq!((moved.carried, moved.erased), (0, 3));
    assert_eq!(snapshot(stores.store(&to), "acme").await, after);
    assert_eq!(after[&id("thread-0")].1.len(), 1);
    assert!(!after.contains_key(&id("thread-1")));
    assert!(snapshot(stores.store(&from), "acme").await.is_empty());

    // A late change of a message the new shard changed too: both copies kept, the move stopped.
    let stores = Stores::memory(&["a", "b"]);
    let app = Pipeline::new(stores.instance());
    seed(&app, "acme", 1, 1).await;
    let shards = stores.instance();
    let from = shards.placement(Some(&acme)).await.unwrap().shard;
    let to = stores.other_than(&shards, "acme").await;
    stop_at(&stores, &to, |state| matches!(state, MoveState::Cleaning { .. }), &options()).await;
    let first = snapshot(stores.store(&from), "acme").await[&id("thread-0")].1[0].id.clone();
    let rate = |n: i64| {
        Update::message(id("thread-0"), first.clone())
            .with_metadata(Metadata::new().with("rating", json!(n)))
            .with_context(ctx("acme"))
    };
    stores.store(&from).update(rate(1)).await.unwrap();
    app.update(rate(5)).await.unwrap();
    let error = shards.move_tenant(Some(&acme), &to, options()).await.unwrap_err();
    assert!(error.to_string().contains("thread-0") && error.to_string().contains("both"), "{error}");
    assert_eq!(snapshot(stores.store(&from), "acme").await.len(), 1);
    assert!(matches!(state(&stores, "acme").await, Some(MoveState::Cleaning { .. })));
}

/// A session binding that reaches the old shard after the cleaning read a thread, and before
/// its purge: the purge expects what it read, so it is refused, and the next pass carries the
/// binding over before it erases the thread (a binding moves no `updated_at`: it was erased).
#[tokio::test]
async fn a_binding_written_between_the_cleaning_read_and_the_purge_is_carried() {
    use persist::PersistArgs;
    let (raw_a, raw_b) = (MemoryBackend::new(), MemoryBackend::new());
    let sneaked = Arc::new(AtomicBool::new(false));
    // A write on its way since before the switch, landing just before the old copy's purge.
    let sneaking = |raw: MemoryBackend| {
        let (sneaked, below) = (sneaked.clone(), raw.clone());
        let layer = persist::layer::from_fn(move |args: PersistArgs, next| {
            let (raw, sneaked) = (below.clone(), sneaked.clone());
            async move {
                if let PersistArgs::Delete(delete) = &args
                    && delete.purge
                    && !delete.free_id
                    && delete.thread_id.as_str() == "thread-0"
                    && !sneaked.swap(true, Ordering::SeqCst)
                {
                    let bind = Bind::new(
                        AgentId::new("late-agent").unwrap(),
                        id("thread-0"),
                        SessionId::new("sneaked-in").unwrap(),
                        ProviderId::new("provider").unwrap(),
                    );
                    Pipeline::new(raw).bind(bind.with_context(ctx("acme"))).await.unwrap();
                }
                next.run(args).await
            }
        });
        Pipeline::builder().layer(layer).build(raw)
    };
    let stores = Stores {
        directory: Pipeline::new(MemoryBackend::new()),
        shards: vec![("a".to_owned(), sneaking(raw_a)), ("b".to_owned(), sneaking(raw_b))],
    };
    let app = Pipeline::new(stores.instance());
    seed(&app, "acme", 2, 2).await;
    let shards = stores.instance();
    let acme = tenant("acme");
    let from = shards.placement(Some(&acme)).await.unwrap().shard;
    let to = stores.other_than(&shards, "acme").await;
    let moved = shards.move_tenant(Some(&acme), &to, options()).await.unwrap();
    assert!(sneaked.load(Ordering::SeqCst), "the binding was written before the purge");
    assert_eq!((moved.carried, moved.erased), (1, 2), "thread-0 carried once its purge was refused");
    let held = snapshot(stores.store(&to), "acme").await;
    let sessions: Vec<&str> = held[&id("thread-0")].2.iter().map(|b| b.binding.session_id.as_str()).collect();
    assert!(sessions.contains(&"sneaked-in"), "{sessions:?}");
    assert!(snapshot(stores.store(&from), "acme").await.is_empty());
}

#[tokio::test]
async fn one_mover_at_a_time_and_clear_refusals() {
    let stores = Stores::memory(&["a", "b", "c"]);
    let app = Pipeline::new(stores.instance());
    seed(&app, "acme", 1, 1).await;
    let shards = stores.instance();
    let acme = tenant("acme");
    let on = shards.placement(Some(&acme)).await.unwrap().shard;
    let others: Vec<String> = ["a", "b", "c"].iter().map(|s| (*s).to_owned()).filter(|s| *s != on).collect();
    let invalid = |error: PersistError, field: &str| {
        assert!(matches!(&error, PersistError::InvalidInput { field: f, .. } if *f == field), "{error}");
    };
    invalid(shards.move_tenant(Some(&acme), "nowhere", options()).await.unwrap_err(), "to");
    let short = options().max_switch(TTL);
    invalid(shards.move_tenant(Some(&acme), &others[0], short).await.unwrap_err(), "max_switch");
    let directory = tenant(persist::shard::DIRECTORY_TENANT);
    invalid(shards.move_tenant(Some(&directory), &others[0], options()).await.unwrap_err(), "tenant");
    // A claim held by another mover (one that was killed) is waited for, however long against
    // this mover's own claim: its time runs from when it holds it.
    let claim = Lease::take(id("t:acme"), "move", "someone else", Duration::from_millis(300)).unwrap();
    let held = stores.directory.lease(claim.with_context(ctx(persist::shard::DIRECTORY_TENANT))).await.unwrap();
    assert_eq!(held.unwrap().holder, "someone else");
    let started = Instant::now();
    let short_claim = options().claim_ttl(Duration::from_millis(200));
    let moved = shards.move_tenant(Some(&acme), &others[0], short_claim).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    assert_eq!((moved.to.as_str(), moved.erased), (others[0].as_str(), 1));
    // A move to one shard in progress: a move to another is refused until it is finished.
    let (back, elsewhere) = (on.clone(), others[1].clone());
    stop_at(&stores, &back, |state| matches!(state, MoveState::Switching { .. }), &options()).await;
    let error = shards.move_tenant(Some(&acme), &elsewhere, options()).await.unwrap_err();
    assert!(error.to_string().contains(&format!("{back:?}")), "{error}");
    shards.move_tenant(Some(&acme), &back, options().claim_ttl(Duration::from_millis(200))).await.unwrap();
    let get = GetThread::new(id("thread-0")).with_context(ctx("acme"));
    let left = stores.store(&others[0]).get_thread(get.clone()).await.unwrap();
    assert!(left.is_some_and(|thread| thread.is_deleted() && thread.title.is_none()), "a tombstone, nothing else");
    assert!(stores.store(&back).get_thread(get).await.unwrap().is_some());
}
