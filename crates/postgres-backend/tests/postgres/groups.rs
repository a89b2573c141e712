//! Group commit of inserts: while every turn is busy, adds and reserves queue and are then
//! written together in one statement, each answered as if it had been written alone.
//!
//! The one turn (`max_insert_groups(1)`) is held by an add that waits on a thread row this test
//! keeps locked from another connection; everything sent meanwhile queues.

use std::time::Duration;

use persist_core::args::{Add, Delete, Reserve, Update, UpdateContent};
use persist_core::read::{GetThread, ListMessages};
use persist_core::{
    Backend, Content, Context, IdempotencyKey, Message, MessageId, Metadata, PersistArgs, PersistError, PersistResult,
    Role, Status, TenantId, ThreadId,
};
use persist_postgres::PostgresBackend;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::support;

fn thread(id: &str) -> ThreadId {
    ThreadId::new(id).unwrap()
}

fn add(thread_id: &str, text: &str) -> Add {
    Add::new(thread(thread_id), Role::User, Content::text(text))
}

fn tenant(name: &str) -> Context {
    Context::new().with_tenant(TenantId::new(name).unwrap())
}

fn written(result: &Result<PersistResult, PersistError>) -> (&Message, bool) {
    match result {
        Ok(PersistResult::Added(added)) => (&added.message, added.deduplicated),
        Ok(PersistResult::Reserved(reserved)) => (&reserved.message, reserved.deduplicated),
        other => panic!("expected a written message, got {other:?}"),
    }
}

/// Waits until a statement waits on the lock held by backend `holder` (the blocked add, which
/// holds the turn).
async fn until_blocked(watcher: &mut PgConnection, holder: i32) {
    for _ in 0..500 {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))")
                .bind(holder)
                .fetch_one(&mut *watcher)
                .await
                .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the blocking add never waited on the locked thread");
}

/// A backend writing at most `groups` groups at once on `connections` connections, in a fresh
/// schema; `None` without a server (outside CI).
async fn grouping(connections: u32, groups: usize) -> Option<(PostgresBackend, String)> {
    if !support::available().await {
        return None;
    }
    let schema = support::schema_name();
    let backend = PostgresBackend::builder(support::url())
        .schema(schema.clone())
        .max_connections(connections)
        .max_insert_groups(groups)
        .connect()
        .await
        .unwrap();
    Some((backend, schema))
}

/// The only turn, held by an add to thread `blocker` that waits on that thread's row, which
/// `lock` keeps locked.
struct Held {
    lock: PgConnection,
    blocked: tokio::task::JoinHandle<Result<PersistResult, PersistError>>,
}

async fn hold_turn(backend: &PostgresBackend, schema: &str) -> Held {
    backend.apply(add("blocker", "before").into()).await.unwrap();
    let mut lock = support::admin().await.unwrap();
    let holder: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut lock).await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query(AssertSqlSafe(format!("SELECT 1 FROM \"{schema}\".threads WHERE thread_id = 'blocker' FOR UPDATE")))
        .execute(&mut lock)
        .await
        .unwrap();
    let blocked = tokio::spawn({
        let backend = backend.clone();
        async move { backend.apply(add("blocker", "blocked").into()).await }
    });
    let mut watcher = support::admin().await.unwrap();
    until_blocked(&mut watcher, holder).await;
    let _ = watcher.close().await;
    Held { lock, blocked }
}

impl Held {
    /// Lets the blocked add finish; answers it.
    async fn release(mut self) -> Result<PersistResult, PersistError> {
        sqlx::query("COMMIT").execute(&mut self.lock).await.unwrap();
        let _ = self.lock.close().await;
        self.blocked.await.unwrap()
    }
}

/// The stored content (as text) and form of the message of each thread named (no tenant; the
/// threads' first message), in the order named: what a group's statement wrote.
async fn stored_forms(schema: &str, threads: &[&str]) -> Vec<(String, Option<i16>)> {
    let mut admin = support::admin().await.unwrap();
    let mut forms = Vec::new();
    for name in threads {
        // Test-made names only: persist_test_ + hex, and the tests' own thread names.
        let query = format!(
            "SELECT content::text, content_form FROM \"{schema}\".messages \
              WHERE tenant = '' AND thread_id = '{name}' AND seq = 1"
        );
        forms.push(sqlx::query_as(AssertSqlSafe(query)).fetch_one(&mut admin).await.unwrap());
    }
    forms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_inserts_are_written_together_and_answered_as_if_alone() {
    let Some((backend, schema)) = grouping(4, 1).await else { return };
    // The state the group meets: a tombstone, threads of one id in two tenants, taken ids and keys.
    backend.apply(add("gone", "before").into()).await.unwrap();
    backend.apply(Delete::thread(thread("gone")).into()).await.unwrap();
    backend.apply(add("owned", "before").into()).await.unwrap();
    backend.apply(add("acme-thread", "before").with_context(tenant("acme")).into()).await.unwrap();
    let taken = add("existing", "first").with_id(MessageId::new("taken").unwrap());
    backend.apply(taken.clone().into()).await.unwrap();
    let keyed = add("existing", "keyed").with_idempotency_key(IdempotencyKey::new("k1").unwrap());
    let keyed_first = backend.apply(keyed.clone().into()).await.unwrap();

    let held = hold_turn(&backend, &schema).await;
    let requests: Vec<(&str, PersistArgs)> = vec![
        ("new-a", add("new-a", "a").into()),
        ("new-b", add("new-b", "b").into()),
        ("new-c", Reserve::new(thread("new-c"), Role::Assistant).into()),
        ("same-1", add("same", "one").into()),
        ("same-2", add("same", "two").into()),
        ("gone", add("gone", "late").into()),
        ("other", add("owned", "other's own").with_context(tenant("other")).into()),
        ("owned", add("owned", "again").into()),
        ("repeat", taken.clone().into()),
        ("clash", add("existing", "different").with_id(MessageId::new("taken").unwrap()).into()),
        ("retry", keyed.clone().into()),
        ("acme", add("acme-thread", "mine").with_context(tenant("acme")).into()),
        ("no-tenant", add("acme-thread", "no tenant: a thread of its own").into()),
    ];
    let mut calls = tokio::task::JoinSet::new();
    for (name, args) in requests {
        let backend = backend.clone();
        calls.spawn(async move { (name, backend.apply(args).await) });
    }
    // A caller that gives up while queued: its add is never written.
    let gave_up =
        tokio::time::timeout(Duration::from_millis(50), backend.apply(add("abandoned", "never").into())).await;
    assert!(gave_up.is_err(), "the turn is held: the add cannot have run");
    assert_eq!(written(&held.release().await).0.seq, 2);
    let mut answers = std::collections::HashMap::new();
    for (name, answer) in calls.join_all().await {
        answers.insert(name, answer);
    }
    let (a, b) = (written(&answers["new-a"]).0, written(&answers["new-b"]).0);
    assert_eq!((a.seq, b.seq, a.content.to_text().as_str(), b.content.to_text().as_str()), (1, 1, "a", "b"));
    let c = written(&answers["new-c"]).0;
    assert_eq!((c.seq, c.status), (1, Status::Reserved));
    // A new store's rows are compact: a text block as its text alone, a placeholder as JSON.
    let forms = stored_forms(&schema, &["new-a", "new-c"]).await;
    assert_eq!(forms, [("\"a\"".to_owned(), Some(1)), ("[]".to_owned(), None)]);
    // Written together: one statement, one time for all of them.
    assert!(a.created_at == b.created_at && b.created_at == c.created_at, "the queued inserts were one group");
    let mut same = [written(&answers["same-1"]).0.seq, written(&answers["same-2"]).0.seq];
    same.sort_unstable();
    assert_eq!(same, [1, 2], "two inserts to one thread both land, one after the other");
    assert!(matches!(answers["gone"], Err(PersistError::ThreadDeleted { .. })), "{:?}", answers["gone"]);
    // One thread id in two tenants, in one group: two threads, each numbering its own.
    assert_eq!(written(&answers["other"]).0.seq, 1, "{:?}", answers["other"]);
    assert_eq!(written(&answers["owned"]).0.seq, 2, "{:?}", answers["owned"]);
    let (repeat, deduplicated) = written(&answers["repeat"]);
    assert_eq!((repeat.id.as_str(), repeat.seq, deduplicated), ("taken", 1, true));
    assert!(matches!(answers["clash"], Err(PersistError::AlreadyExists { .. })), "{:?}", answers["clash"]);
    let (retry, deduplicated) = written(&answers["retry"]);
    assert_eq!((retry.id.clone(), deduplicated), (keyed_first.message().unwrap().id.clone(), true));
    assert_eq!(written(&answers["acme"]).0.seq, 2);
    assert_eq!(written(&answers["no-tenant"]).0.seq, 1, "the id without a tenant is another thread");

    // The threads' counters moved as each insert alone would have moved them.
    let threads =
        [("new-a", 1, None), ("same", 2, None), ("acme-thread", 2, Some("acme")), ("owned", 1, Some("other"))];
    for (name, count, owner) in threads {
        let query = GetThread::new(thread(name));
        let query = match owner {
            Some(owner) => query.with_context(tenant(owner)),
            None => query,
        };
        let th = backend.get_thread(query).await.unwrap().unwrap();
        assert_eq!((th.message_count, th.last_seq), (count, count), "{name}");
        assert_eq!(th.tenant.as_ref().map(TenantId::as_str), owner, "{name}");
    }
    let new_b = backend.get_thread(GetThread::new(thread("new-b"))).await.unwrap().unwrap();
    assert_eq!(new_b.updated_at, b.created_at);

    let existing = backend.list(ListMessages::new(thread("existing"))).await.unwrap();
    assert_eq!(existing.items.len(), 2, "no repeat or clash was written");
    let abandoned = backend.list(ListMessages::new(thread("abandoned"))).await.unwrap();
    assert!(abandoned.items.is_empty(), "an add whose caller gave up while queued is not written");

    backend.close().await;
    support::drop_schema(&schema).await;
}

/// A group whose statement fails as a whole is written again insert by insert: only the
/// insert that broke it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_that_breaks_its_group_fails_alone() {
    let Some((backend, schema)) = grouping(4, 1).await else { return };
    let mut admin = support::admin().await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SEQUENCE \"{schema}\".attempts; \
         CREATE FUNCTION \"{schema}\".refuse_boom() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM nextval('\"{schema}\".attempts'); \
                  IF NEW.content::text LIKE '%boom%' THEN RAISE EXCEPTION 'boom refused'; END IF; \
                  RETURN NEW; END $$; \
         CREATE TRIGGER refuse_boom BEFORE INSERT ON \"{schema}\".messages \
         FOR EACH ROW EXECUTE FUNCTION \"{schema}\".refuse_boom()"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;
    let held = hold_turn(&backend, &schema).await;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..6 {
        let backend = backend.clone();
        let text = if i == 3 { "boom".to_owned() } else { format!("fine {i}") };
        calls.spawn(async move { (text.clone(), backend.apply(add(&format!("t{i}"), &text).into()).await) });
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.release().await.unwrap();
    for (text, answer) in calls.join_all().await {
        if text == "boom" {
            assert!(matches!(answer, Err(PersistError::Backend { .. })), "{answer:?}");
        } else {
            let (message, _) = written(&answer);
            assert_eq!((message.content.to_text(), message.seq), (text, 1));
        }
    }
    // Sequences are not rolled back: beyond the blocker's two adds and one attempt per insert
    // alone, the group itself was tried first.
    let mut admin = support::admin().await.unwrap();
    let attempts: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT last_value FROM \"{schema}\".attempts")))
        .fetch_one(&mut admin)
        .await
        .unwrap();
    let _ = admin.close().await;
    assert!(attempts > 8, "the group was tried before each insert alone ({attempts} attempts)");
    backend.close().await;
    support::drop_schema(&schema).await;
}

/// Several groups at once over the same threads, callers walking them in different orders, with
/// a thread deleted midway: every add lands once, or is refused for the deleted thread, and
/// seqs stay gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_running_at_once_over_shared_threads_lose_no_writes() {
    let Some((backend, schema)) = grouping(8, 3).await else { return };
    const CALLERS: usize = 48;
    const EACH: usize = 10;
    const THREADS: usize = 6;
    let mut calls = tokio::task::JoinSet::new();
    for caller in 0..CALLERS {
        let backend = backend.clone();
        calls.spawn(async move {
            let mut answers = Vec::new();
            for i in 0..EACH {
                // Callers walk the threads in different orders.
                let t = (caller + i * (1 + caller % 5)) % THREADS;
                answers.push((t, backend.apply(add(&format!("shared-{t}"), &format!("{caller}-{i}")).into()).await));
            }
            answers
        });
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    backend.apply(Delete::thread(thread("shared-0")).into()).await.unwrap();
    let answers: Vec<_> = tokio::time::timeout(Duration::from_secs(60), calls.join_all())
        .await
        .expect("every caller answered")
        .into_iter()
        .flatten()
        .collect();
    let mut written = [0u64; THREADS];
    for (t, answer) in &answers {
        match answer {
            Ok(_) => written[*t] += 1,
            Err(PersistError::ThreadDeleted { .. }) if *t == 0 => {}
            other => panic!("shared-{t}: {other:?}"),
        }
    }
    for (t, &count) in written.iter().enumerate().skip(1) {
        let page = backend.list(ListMessages::new(thread(&format!("shared-{t}"))).with_limit(1000)).await.unwrap();
        let seqs: Vec<u64> = page.items.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=count).collect::<Vec<_>>(), "shared-{t}: every answered add stored once, in seq order");
    }
    backend.close().await;
    support::drop_schema(&schema).await;
}

/// A group whose connection is lost fails all its inserts at once (running them alone on fresh
/// connections could write what the lost statement already committed), writes none of them,
/// and the pool serves the next write on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_loses_its_connection_fails_its_inserts_and_writes_none() {
    if !support::available().await {
        return;
    }
    let schema = support::schema_name();
    // Only this backend's connections carry the schema's name: other tests share the server.
    let separator = if support::url().contains('?') { '&' } else { '?' };
    let backend = PostgresBackend::builder(format!("{}{separator}application_name={schema}", support::url()))
        .schema(schema.clone())
        .max_connections(4)
        .min_connections(2)
        .max_insert_groups(1)
        // No feed: its sequencer would take a connection of the pool after each write, and
        // this test counts them.
        .feed(None)
        .connect()
        .await
        .unwrap();
    // Two idle connections: the blocked add below takes the one used last, the group the other.
    let held = hold_turn(&backend, &schema).await;
    let mut queued: Vec<_> = (0..3).map(|i| Box::pin(backend.apply(add(&format!("lost-{i}"), "x").into()))).collect();
    for call in &mut queued {
        let waited = tokio::time::timeout(Duration::from_millis(5), call).await;
        assert!(waited.is_err(), "the turn is held: the add waits in the queue");
    }
    let mut admin = support::admin().await.unwrap();
    let ended: Vec<bool> =
        sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
            .bind(&schema)
            .fetch_all(&mut admin)
            .await
            .unwrap();
    assert_eq!(ended, [true, true], "the pool held two connections, both ended");
    assert!(held.release().await.is_err(), "the blocked add lost its connection");
    for call in queued {
        let answer = call.await;
        assert!(answer.is_err(), "a group insert on a lost connection fails: {answer:?}");
    }
    for i in 0..3 {
        let page = backend.list(ListMessages::new(thread(&format!("lost-{i}")))).await.unwrap();
        assert!(page.items.is_empty(), "lost-{i}: nothing written");
    }
    assert_eq!(written(&backend.apply(add("lost-0", "again").into()).await).0.seq, 1, "a new connection serves");
    backend.close().await;
    support::drop_schema(&schema).await;
}

/// The only update turn, held by a content update of a message of thread `ublocker` that waits
/// on that thread's row, which `lock` keeps locked.
async fn hold_update_turn(backend: &PostgresBackend, schema: &str) -> Held {
    let reserved = backend.apply(Reserve::new(thread("ublocker"), Role::Assistant).into()).await.unwrap();
    let id = reserved.message().unwrap().id.clone();
    let mut lock = support::admin().await.unwrap();
    let holder: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut lock).await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query(AssertSqlSafe(format!("SELECT 1 FROM \"{schema}\".threads WHERE thread_id = 'ublocker' FOR UPDATE")))
        .execute(&mut lock)
        .await
        .unwrap();
    let blocked = tokio::spawn({
        let backend = backend.clone();
        let update = UpdateContent::new(thread("ublocker"), id, Content::text("blocked"));
        async move { backend.apply(update.into()).await }
    });
    let mut watcher = support::admin().await.unwrap();
    until_blocked(&mut watcher, holder).await;
    let _ = watcher.close().await;
    Held { lock, blocked }
}

fn updated(result: &Result<PersistResult, PersistError>) -> &Message {
    match result {
        Ok(PersistResult::ContentUpdated(done)) => &done.message,
        other => panic!("expected an updated message, got {other:?}"),
    }
}

/// While the update turn is busy, content updates queue and are then written together in one
/// statement, each answered as if written alone: refusals (absent, deleted thread, stale
/// version) and a second update of one message run alone, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_content_updates_are_written_together_and_answered_as_if_alone() {
    let Some((backend, schema)) = grouping(4, 1).await else { return };
    let reserve = |t: &str, ctx: Context| {
        let backend = backend.clone();
        let args = Reserve::new(thread(t), Role::Assistant).with_context(ctx);
        async move { backend.apply(args.into()).await.unwrap().message().unwrap().clone() }
    };
    let a = reserve("ua", Context::new()).await;
    let b = reserve("ub", Context::new()).await;
    let same = reserve("usame", Context::new()).await;
    let acme = reserve("ua", tenant("acme")).await;
    let stale = reserve("ustale", Context::new()).await;
    let gone = reserve("ugone", Context::new()).await;
    backend.apply(Delete::thread(thread("ugone")).into()).await.unwrap();
    let meta = reserve("umeta", Context::new()).await;
    let first = Update::message(thread("umeta"), meta.id.clone())
        .with_metadata(Metadata::new().with("keep", serde_json::json!(1)).with("drop", serde_json::json!(2)));
    backend.apply(first.into()).await.unwrap();

    let held = hold_update_turn(&backend, &schema).await;
    let update = |m: &Message, text: &str| UpdateContent::new(m.thread_id.clone(), m.id.clone(), Content::text(text));
    let requests: Vec<(&str, PersistArgs)> = vec![
        ("a", update(&a, "a").with_finalize(false).into()),
        ("b", update(&b, "b").into()),
        ("acme", update(&acme, "acme's").with_context(tenant("acme")).into()),
        ("same-1", update(&same, "one").with_finalize(false).into()),
        ("same-2", update(&same, "two").with_finalize(false).into()),
        ("stale", update(&stale, "late").with_expected_version(7).into()),
        ("gone", update(&gone, "late").into()),
        ("missing", UpdateContent::new(thread("ua"), MessageId::new("missing").unwrap(), Content::text("x")).into()),
        (
            "meta",
            Update::message(thread("umeta"), meta.id.clone())
                .with_metadata(
                    Metadata::new().with("drop", serde_json::Value::Null).with("new", serde_json::json!("n")),
                )
                .with_role(Role::Tool)
                .into(),
        ),
    ];
    let mut calls = tokio::task::JoinSet::new();
    for (name, args) in requests {
        let backend = backend.clone();
        calls.spawn(async move { (name, backend.apply(args).await) });
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(updated(&held.release().await).content.to_text(), "blocked");
    let mut answers = std::collections::HashMap::new();
    for (name, answer) in calls.join_all().await {
        answers.insert(name, answer);
    }
    let patched = match &answers["meta"] {
        Ok(PersistResult::Updated(persist_core::Updated::Message(message))) => message,
        other => panic!("expected an updated message, got {other:?}"),
    };
    assert_eq!(
        patched.metadata,
        Metadata::new().with("keep", serde_json::json!(1)).with("new", serde_json::json!("n"))
    );
    assert_eq!((patched.role.clone(), patched.version), (Role::Tool, 3));
    // Content written compact; a metadata update leaves the content and its form as they were.
    let forms = stored_forms(&schema, &["ua", "umeta"]).await;
    assert_eq!(forms, [("\"a\"".to_owned(), Some(1)), ("[]".to_owned(), None)]);
    let (ua, ub) = (updated(&answers["a"]), updated(&answers["b"]));
    assert_eq!(patched.updated_at, ua.updated_at, "a metadata patch is grouped with content updates");
    assert_eq!((ua.content.to_text(), ua.status, ua.version), ("a".to_owned(), Status::Reserved, 2));
    assert_eq!((ub.content.to_text(), ub.status, ub.version), ("b".to_owned(), Status::Complete, 2));
    assert_eq!(ua.updated_at, ub.updated_at, "the queued updates were one group");
    let theirs = updated(&answers["acme"]);
    assert_eq!((theirs.content.to_text().as_str(), theirs.id.clone()), ("acme's", acme.id.clone()));
    // One message updated twice: both land, one after the other, in queue order.
    let (one, two) = (updated(&answers["same-1"]), updated(&answers["same-2"]));
    assert_eq!((one.version, two.version), (2, 3));
    let stored = backend.get(persist_core::read::GetMessage::new(thread("usame"), same.id.clone())).await.unwrap();
    assert_eq!(stored.unwrap().content.to_text(), "two");
    assert!(
        matches!(answers["stale"], Err(PersistError::VersionConflict { expected: 7, actual: 1, .. })),
        "{:?}",
        answers["stale"]
    );
    assert!(matches!(answers["gone"], Err(PersistError::ThreadDeleted { .. })), "{:?}", answers["gone"]);
    assert!(matches!(answers["missing"], Err(PersistError::NotFound { .. })), "{:?}", answers["missing"]);
    // The acme thread of the same id is untouched by the update without a tenant, and back.
    let mine = backend.get(persist_core::read::GetMessage::new(thread("ua"), a.id.clone())).await.unwrap();
    assert_eq!(mine.unwrap().content.to_text(), "a");
    let th = backend.get_thread(GetThread::new(thread("ub"))).await.unwrap().unwrap();
    assert_eq!(th.updated_at, ub.updated_at, "the thread is touched with its message");

    backend.close().await;
    support::drop_schema(&schema).await;
}

/// Queued adds carrying embeddings are written in one group with their vectors when their
/// model's length is known; a first vector of a model, or one of another length, runs alone
/// (fixing the length, or refused with nothing written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_adds_carry_their_vectors_in_the_group() {
    use persist_core::vector::{Embedding, Nearest};
    let Some((backend, schema)) = grouping(4, 1).await else { return };
    let m = |vector: &[f32]| Embedding::new("m", vector.to_vec());
    backend.apply(add("fixed", "fixes m").with_embedding(m(&[1.0, 0.0, 0.0])).into()).await.unwrap();
    let held = hold_turn(&backend, &schema).await;
    let requests: Vec<(&str, PersistArgs)> = vec![
        ("a", add("va", "a").with_embedding(m(&[0.0, 1.0, 0.0])).into()),
        ("b", add("vb", "b").with_embedding(m(&[0.0, 0.0, 1.0])).into()),
        ("plain", add("vc", "c").into()),
        ("first", add("vd", "d").with_embedding(Embedding::new("new", vec![1.0, 1.0])).into()),
        ("wrong", add("ve", "e").with_embedding(m(&[1.0, 1.0])).into()),
    ];
    let mut calls = tokio::task::JoinSet::new();
    for (name, args) in requests {
        let backend = backend.clone();
        calls.spawn(async move { (name, backend.apply(args).await) });
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.release().await.unwrap();
    let mut answers = std::collections::HashMap::new();
    for (name, answer) in calls.join_all().await {
        answers.insert(name, answer);
    }
    let (a, b, c) = (written(&answers["a"]).0, written(&answers["b"]).0, written(&answers["plain"]).0);
    assert!(a.created_at == b.created_at && b.created_at == c.created_at, "one group");
    assert!(written(&answers["first"]).0.created_at != a.created_at, "a model's first vector ran alone");
    assert!(
        matches!(answers["wrong"], Err(PersistError::InvalidInput { field: "embedding", .. })),
        "{:?}",
        answers["wrong"]
    );
    assert!(backend.get_thread(GetThread::new(thread("ve"))).await.unwrap().is_none(), "nothing of it written");
    let found = backend.nearest(Nearest::new(m(&[0.0, 1.0, 0.0])).with_limit(10)).await.unwrap();
    let texts: Vec<String> = found.iter().map(|n| n.message.content.to_text()).collect();
    assert_eq!(texts, ["a", "fixes m", "b"], "each vector with its message");
    assert_eq!(backend.nearest(Nearest::new(Embedding::new("new", vec![1.0, 0.0]))).await.unwrap().len(), 1);
    backend.close().await;
    support::drop_schema(&schema).await;
}
