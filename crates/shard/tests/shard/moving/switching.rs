//! A move stopped while switching or cleaning: refused writes, late writes carried, one mover at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use persist::args::{Add, Update, UpdateContent};
use persist::lease::Lease;
use persist::memory::MemoryBackend;
use persist::read::GetThread;
use persist::session::Bind;
use persist::shard::{MoveOptions, MoveState};
use persist::{AgentId, Content, Metadata, PersistError, Pipeline, ProviderId, Role, SessionId};
use serde_json::json;

use super::{Stores, TTL, ctx, id, options, seed, snapshot, state, tenant};

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
