//! The change feed beyond the conformance suite: resuming past retention is a typed gap on
//! every backend and retention keeps the newest event however old; a subscriber follows the
//! writes of another process on a SQLite file, waits in the tenant its reads were given, and
//! holds up no writer when it stops reading.

use std::process::{Command, Stdio};
use std::time::Duration;

use persist::args::Add;
use persist::feed::{FeedRetention, ReadFeed};
use persist::layer::from_fn;
use persist::memory::MemoryBackend;
use persist::sqlite::SqliteBackend;
use persist::{Backend, Content, Context, PersistArgs, PersistError, PersistOp, Pipeline, Role, TenantId, ThreadId};

/// A retention keeping the last three events.
fn three() -> FeedRetention {
    FeedRetention::forever().with_max_events(Some(3))
}

/// Writes ten adds, then checks that a reader resuming from before what is kept gets a gap
/// naming the newest position removed, and one resuming from there reads the rest.
async fn gap_after_retention<B: Backend>(backend: &B, trim: impl AsyncFnOnce() -> u64) {
    let thread = ThreadId::new("kept-short").unwrap();
    for n in 0..10 {
        backend.apply(Add::new(thread.clone(), Role::User, Content::text(format!("{n}"))).into()).await.unwrap();
    }
    let trimmed = trim().await;
    let page = backend.read_feed(ReadFeed::thread(thread.clone()).after(trimmed)).await.unwrap();
    assert_eq!(page.events.len(), 3, "the three kept: {page:?}");
    assert_eq!(page.head, trimmed + 3);
    for after in [0, trimmed - 1] {
        match backend.read_feed(ReadFeed::thread(thread.clone()).after(after)).await {
            Err(PersistError::FeedGap { after: asked, trimmed: gone }) => assert_eq!((asked, gone), (after, trimmed)),
            other => panic!("resuming after {after} with {trimmed} removed: expected a gap, got {other:?}"),
        }
    }
}

/// A retention by age alone, so strict that every event is too old.
fn ageless() -> FeedRetention {
    FeedRetention::forever().with_max_age(Some(Duration::ZERO))
}

/// With every event past its age, retention still keeps the newest: it holds the head, and a
/// reader that read up to just before it reads it.
/// `trim` applies retention now and answers the newest position it removed (`None` for a
/// store that trims as it records).
async fn age_keeps_the_newest<B: Backend>(backend: &B, trim: impl AsyncFnOnce() -> Option<u64>) {
    let thread = ThreadId::new("aged").unwrap();
    for n in 0..3 {
        // Apart in time: the memory feed trims as it records, by each event's time.
        tokio::time::sleep(Duration::from_millis(2)).await;
        backend.apply(Add::new(thread.clone(), Role::User, Content::text(format!("{n}"))).into()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    if let Some(trimmed) = trim().await {
        assert_eq!(trimmed, 2, "all but the newest");
    }
    match backend.read_feed(ReadFeed::thread(thread.clone())).await {
        Err(PersistError::FeedGap { after: 0, trimmed: 2 }) => {}
        other => panic!("all but the newest removed: expected a gap, got {other:?}"),
    }
    let page = backend.read_feed(ReadFeed::thread(thread).after(2)).await.unwrap();
    assert_eq!((page.events.len(), page.head), (1, 3), "{page:?}");
}

#[tokio::test]
async fn age_retention_keeps_the_newest_event_in_memory() {
    let backend = MemoryBackend::new().with_feed(Some(ageless()));
    age_keeps_the_newest(&backend, async || None).await;
}

#[tokio::test]
async fn age_retention_keeps_the_newest_event_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::builder(dir.path().join("aged.db")).feed(Some(ageless())).open().await.unwrap();
    age_keeps_the_newest(&backend, async || Some(backend.trim_feed().await.unwrap())).await;
    backend.close().await;
}

#[tokio::test]
async fn resuming_past_retention_is_a_gap_in_memory() {
    let backend = MemoryBackend::new().with_feed(Some(three()));
    gap_after_retention(&backend, async || 7).await;
}

#[tokio::test]
async fn resuming_past_retention_is_a_gap_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::builder(dir.path().join("feed.db")).feed(Some(three())).open().await.unwrap();
    gap_after_retention(&backend, async || backend.trim_feed().await.unwrap()).await;
    backend.close().await;
}

#[tokio::test]
async fn a_subscriber_follows_another_process_writing_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    let pipeline = Pipeline::new(backend.clone());
    let thread = ThreadId::new("crash-0").unwrap();
    let mut following = pipeline.subscribe(ReadFeed::thread(thread.clone())).await.unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
        .arg(&path)
        .arg("feed")
        .stdout(Stdio::null())
        .spawn()
        .expect("start the writer process");
    let mut seen = Vec::new();
    while seen.len() < 50 {
        let next = tokio::time::timeout(Duration::from_secs(10), following.next()).await;
        seen.push(next.expect("the other process's writes arrive").unwrap());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        seen.iter().all(|e| e.change.op == PersistOp::Add && e.change.thread_id.as_ref() == Some(&thread)),
        "{seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0].position < w[1].position && w[0].change.seq < w[1].change.seq),
        "in commit order"
    );
    let stored = backend.read_feed(ReadFeed::thread(thread).with_limit(50)).await.unwrap();
    assert_eq!(stored.events, seen, "each event once, in the stored order");
    backend.close().await;
}

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

/// Sets every request's tenant to acme, as a host's layer that derives the tenant from who
/// is asking would.
fn acme_everywhere() -> Pipeline {
    Pipeline::builder()
        .layer(from_fn(|mut args: PersistArgs, next| {
            let context = std::mem::replace(args.context_mut(), Context::new());
            *args.context_mut() = context.with_tenant(acme());
            next.run(args)
        }))
        .build(MemoryBackend::new())
}

#[tokio::test]
async fn a_subscription_waits_in_the_tenant_a_layer_gave_its_reads() {
    // The subscriber names no tenant; the layer scopes its reads to acme, so it must wait for
    // acme's events (a wait registered without a tenant would never wake).
    let pipeline = acme_everywhere();
    let thread = ThreadId::new("general").unwrap();
    let mut following = pipeline.subscribe(ReadFeed::thread(thread.clone())).await.unwrap();
    let writer = pipeline.clone();
    let writes = tokio::spawn(async move {
        for n in 0..3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            writer.add(Add::new(ThreadId::new("general").unwrap(), Role::User, Content::text(format!("{n}")))).await?;
        }
        Ok::<_, PersistError>(())
    });
    for seq in 1..=3 {
        let event = tokio::time::timeout(Duration::from_secs(10), following.next()).await.expect("woken").unwrap();
        assert_eq!(
            (event.change.tenant, event.change.seq, event.change.thread_id.as_ref()),
            (Some(acme()), Some(seq), Some(&thread))
        );
    }
    writes.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_scoped_handle_follows_its_own_tenant_only() {
    let pipeline = Pipeline::new(MemoryBackend::new());
    let scope = |tenant: &str| pipeline.scoped(Context::new().with_tenant(TenantId::new(tenant).unwrap()));
    let (ours, globex) = (scope("acme"), scope("globex"));
    let general = ThreadId::new("general").unwrap();
    let mut thread = ours.subscribe(ReadFeed::thread(general.clone())).await.unwrap();
    let mut tenant = ours.subscribe(ReadFeed::tenant()).await.unwrap();
    for (who, text) in [(&globex, "globex's"), (&ours, "acme's"), (&globex, "globex's again")] {
        who.add(Add::new(general.clone(), Role::User, Content::text(text))).await.unwrap();
    }
    ours.add(Add::new(ThreadId::new("other").unwrap(), Role::User, Content::text("acme's other"))).await.unwrap();
    let next = async |s: &mut persist::feed::Subscription| {
        tokio::time::timeout(Duration::from_secs(10), s.next()).await.expect("an event").unwrap()
    };
    let first = next(&mut thread).await;
    assert_eq!((first.change.tenant.clone(), first.change.seq, first.position), (Some(acme()), Some(1), 2));
    let in_tenant = [next(&mut tenant).await, next(&mut tenant).await];
    assert_eq!(
        in_tenant.map(|e| (e.change.thread_id.as_ref().map(|t| t.as_str().to_owned()).unwrap_or_default(), e.position)),
        [("general".into(), 2), ("other".into(), 4)]
    );
    let page = ours.read_feed(ReadFeed::tenant()).await.unwrap();
    assert!(page.events.iter().all(|e| e.change.tenant == Some(acme())), "{page:?}");

    // Across tenants is for operators: refused before any layer, however it is asked.
    let refused = |answer: Result<(), PersistError>| assert!(matches!(answer, Err(PersistError::Rejected { .. })));
    refused(ours.read_feed(ReadFeed::across_tenants()).await.map(drop));
    refused(ours.subscribe(ReadFeed::across_tenants()).await.map(drop));
    refused(ours.execute(ReadFeed::across_tenants()).await.map(drop));
}

/// A subscriber that stops reading holds up nobody: the writes complete, and when it reads
/// again it gets every event it missed, in order, from the stored feed (its wake-up keeps no
/// queue to fill).
async fn a_stalled_subscriber_holds_up_no_writer(pipeline: Pipeline) {
    let thread = ThreadId::new("stalled").unwrap();
    let mut stalled = pipeline.subscribe(ReadFeed::thread(thread.clone())).await.unwrap();
    let mut others = pipeline.subscribe(ReadFeed::tenant()).await.unwrap();
    let writes = async {
        for n in 0..300 {
            pipeline.add(Add::new(thread.clone(), Role::User, Content::text(format!("{n}")))).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), writes).await.expect("the writes never wait for a subscriber");
    let others_first = tokio::time::timeout(Duration::from_secs(10), others.next()).await.unwrap().unwrap();
    assert_eq!(others_first.change.seq, Some(1), "another subscriber is not held up either");
    let mut seqs = Vec::new();
    while seqs.len() < 300 {
        seqs.push(
            tokio::time::timeout(Duration::from_secs(10), stalled.next()).await.unwrap().unwrap().change.seq.unwrap(),
        );
    }
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_stalled_subscriber_holds_up_no_writer_in_memory() {
    a_stalled_subscriber_holds_up_no_writer(Pipeline::new(MemoryBackend::new())).await;
}

#[tokio::test]
async fn a_stalled_subscriber_holds_up_no_writer_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path().join("stalled.db")).await.unwrap();
    a_stalled_subscriber_holds_up_no_writer(Pipeline::new(backend.clone())).await;
    backend.close().await;
}

/// A route sends `scratch:` threads to a second store: a subscription to one of them follows
/// the route like every read, and wakes on that store's writes (it used to wait on the default
/// store's wake-ups, forever), from a handle of its own and from another one on the same file.
#[tokio::test]
async fn a_subscription_to_a_routed_thread_wakes_on_its_store() {
    use persist::layer::route::{self, RouteLayer};
    let dir = tempfile::tempdir().unwrap();
    let scratch = SqliteBackend::open(dir.path().join("scratch.db")).await.unwrap();
    for other_store in [Pipeline::new(MemoryBackend::new()), Pipeline::new(scratch.clone())] {
        let route = RouteLayer::builder()
            .route("scratch", route::thread_prefix("scratch:"), other_store.clone())
            .build()
            .unwrap();
        let pipeline = Pipeline::builder().layer(route).build(MemoryBackend::new());
        let thread = ThreadId::new("scratch:1").unwrap();
        let head = pipeline.read_feed(ReadFeed::thread(thread.clone())).await.unwrap().head;
        let mut subscription = pipeline.subscribe(ReadFeed::thread(thread.clone()).after(head)).await.unwrap();
        for (n, writer) in [&pipeline, &other_store, &pipeline].into_iter().enumerate() {
            let add = Add::new(thread.clone(), Role::User, Content::text(format!("note {n}")));
            let id = writer.add(add).await.unwrap().message.id;
            let event = tokio::time::timeout(Duration::from_secs(10), subscription.next())
                .await
                .expect("the subscription wakes on the routed store's write")
                .unwrap();
            assert_eq!(
                (event.change.thread_id.as_ref().map(|t| t.as_str()), event.change.message_id.as_ref()),
                (Some("scratch:1"), Some(&id))
            );
        }
    }
}

/// A handle opened with `feed(None)` turns the file's feed off for every handle: never
/// silently. A read through a handle that keeps a feed says so, and once a handle turns it on
/// again, a reader resuming from before gets a gap (the writes made meanwhile have no events).
#[tokio::test]
async fn a_feed_turned_off_by_another_handle_is_never_silent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let thread = ThreadId::new("watched").unwrap();
    let add = |text: &str| PersistArgs::from(Add::new(thread.clone(), Role::User, Content::text(text)));
    let keeping = SqliteBackend::open(&path).await.unwrap();
    keeping.apply(add("before")).await.unwrap();
    let seen = keeping.read_feed(ReadFeed::thread(thread.clone())).await.unwrap().head;
    let off = SqliteBackend::builder(&path).feed(None).open().await.unwrap();
    for text in ["unrecorded 1", "unrecorded 2"] {
        keeping.apply(add(text)).await.unwrap();
        off.apply(add(text)).await.unwrap();
    }
    match keeping.read_feed(ReadFeed::thread(thread.clone()).after(seen)).await {
        Err(PersistError::Unsupported { what }) => assert!(what.contains("turned off by a handle"), "{what}"),
        other => panic!("a read while another handle keeps the feed off: {other:?}"),
    }
    let on_again = SqliteBackend::open(&path).await.unwrap();
    keeping.apply(add("recorded again")).await.unwrap();
    for handle in [&keeping, &on_again] {
        match handle.read_feed(ReadFeed::thread(thread.clone()).after(seen)).await {
            Err(PersistError::FeedGap { after, trimmed }) => assert!(after == seen && trimmed > seen),
            other => panic!("resuming from before the feed was off: expected a gap, got {other:?}"),
        }
    }
    let trimmed = match keeping.read_feed(ReadFeed::thread(thread.clone()).after(seen)).await {
        Err(PersistError::FeedGap { trimmed, .. }) => trimmed,
        other => panic!("{other:?}"),
    };
    let head = on_again.read_feed(ReadFeed::across_tenants().after(trimmed)).await.unwrap();
    let page = keeping.read_feed(ReadFeed::thread(thread.clone()).after(trimmed)).await.unwrap();
    assert_eq!(page.events.len(), 1, "the write made once the feed is on again: {page:?}");
    assert_eq!(page.head, head.head);
}

/// With the feed turned off, a subscription says so (not that the backend has no feed), on
/// every backend that can turn it off.
#[tokio::test]
async fn a_subscription_to_a_feed_turned_off_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteBackend::builder(dir.path().join("off.db")).feed(None).open().await.unwrap();
    for pipeline in [Pipeline::new(MemoryBackend::new().with_feed(None)), Pipeline::new(sqlite)] {
        match pipeline.subscribe(ReadFeed::thread(ThreadId::new("t").unwrap())).await {
            Err(PersistError::Unsupported { what }) => assert!(what.contains("turned off"), "{what}"),
            other => panic!("a subscription with the feed off: {other:?}"),
        }
    }
}
