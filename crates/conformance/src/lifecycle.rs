//! Fork and retention, composed of ordinary requests through a pipeline over the backend.

use std::sync::Arc;
use std::time::Duration;

use persist_core::args::{Reserve, UpdateContent};
use persist_core::{Backend, Content, IdempotencyKey, Message, Metadata, PersistError, Pipeline, Role, Status};
use persist_ops::PipelineExt;
use persist_ops::lifecycle::{FORKED_FROM, Fork, Prune};
use serde_json::json;
use tokio::sync::Barrier;

use crate::fixture::{
    add_text, all_messages, all_messages_in, assert_err, ctx, t, tenant, text_add, thread, thread_in, written,
};
use crate::{Factory, Outcome};

mod purge;

pub use self::purge::{
    check_a_thread_delete_can_expect_its_summaries_and_bindings, check_a_thread_delete_can_expect_no_write_since,
    check_purge_can_free_the_id, check_purge_erases_a_thread_and_keeps_it_dead,
    check_purge_of_a_deleted_thread_erases_its_tombstone,
};

fn pipeline<B: Backend>(backend: &Arc<B>) -> Pipeline {
    Pipeline::new(Arc::clone(backend))
}

/// What a copy keeps of a message: id, role, content, metadata, idempotency key, status.
fn copy_of(message: &Message) -> (String, String, String, Metadata, Option<IdempotencyKey>, Status) {
    (
        message.id.as_str().to_owned(),
        message.role.as_str().to_owned(),
        message.content.as_json().into_owned(),
        message.metadata.clone(),
        message.idempotency_key.clone(),
        message.status,
    )
}

/// A fork copies the complete messages up to a seq, with their ids, roles, content, metadata and
/// keys, in order, numbered 1, 2, … in the new thread, which records where it came from; the
/// source is unchanged; reservations are not copied.
pub async fn check_fork_copies_a_thread_up_to_a_seq<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let p = pipeline(b);
    let (source, branch) = (t("source"), t("branch"));
    let first = written(b, text_add(&source, "hello").with_metadata(Metadata::new().with("lang", json!("en")))).await;
    let keyed = text_add(&source, "keyed").with_idempotency_key(IdempotencyKey::new("k1").unwrap());
    let second = written(b, keyed).await;
    written(b, Reserve::new(source.clone(), Role::Assistant)).await;
    let fourth = add_text(b.as_ref(), &source, "after the reply").await;
    add_text(b.as_ref(), &source, "not copied").await;
    let before = all_messages(b, &source).await;

    let report = p.fork(Fork::new(source.clone(), branch.clone()).up_to(4)).await.expect("fork");
    assert_eq!((report.copied, report.already, report.up_to), (3, 0, 4));
    let copied = all_messages(b, &branch).await;
    let expected: Vec<_> = [&first, &second, &fourth].into_iter().map(copy_of).collect();
    assert_eq!(copied.iter().map(copy_of).collect::<Vec<_>>(), expected);
    assert_eq!(copied.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3]);
    let th = thread(b, &branch).await.unwrap();
    assert_eq!(th.metadata.get(FORKED_FROM), Some(&json!({"thread": "source", "seq": 4})));
    assert_eq!(all_messages(b, &source).await, before, "the source is unchanged");

    // An interrupted reply is copied interrupted, with its text (an add would complete it); run
    // again, the fork finds it copied.
    let (cut_source, cut_branch) = (t("cut-source"), t("cut-branch"));
    add_text(b.as_ref(), &cut_source, "question").await;
    let reply = written(
        b,
        Reserve::new(cut_source.clone(), Role::Assistant).with_metadata(Metadata::new().with("model", json!("m"))),
    )
    .await;
    let token = UpdateContent::appending(cut_source.clone(), reply.id.clone(), Content::text("Half an"));
    written(b, token.with_interrupt(true)).await;
    let report = p.fork(Fork::new(cut_source.clone(), cut_branch.clone())).await.expect("fork");
    assert_eq!((report.copied, report.already), (2, 0));
    let copied = all_messages(b, &cut_branch).await;
    let source_messages = all_messages(b, &cut_source).await;
    assert_eq!(copied.iter().map(copy_of).collect::<Vec<_>>(), source_messages.iter().map(copy_of).collect::<Vec<_>>());
    assert_eq!(copied[1].status, Status::Interrupted);
    let again = p.fork(Fork::new(cut_source, cut_branch.clone())).await.expect("fork again");
    assert_eq!((again.copied, again.already), (0, 2));
    assert_eq!(all_messages(b, &cut_branch).await, copied);
    store.finish().await
}

/// A fork that stopped halfway (some messages copied, the origin not yet recorded) completes
/// when run again, without duplicates; run once more, it copies nothing.
pub async fn check_fork_resumes_without_duplicates<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let p = pipeline(b);
    let (source, branch) = (t("resumed-source"), t("resumed-branch"));
    let mut messages = Vec::new();
    for i in 0..5 {
        messages.push(add_text(b.as_ref(), &source, &format!("m{i}")).await);
    }
    // What a fork that crashed after two adds left behind.
    for message in &messages[..2] {
        written(b, text_add(&branch, &message.content.to_text()).with_id(message.id.clone())).await;
    }
    let report = p.fork(Fork::new(source.clone(), branch.clone())).await.expect("fork resumed");
    assert_eq!((report.copied, report.already), (3, 2));
    let again = p.fork(Fork::new(source.clone(), branch.clone())).await.expect("fork again");
    assert_eq!((again.copied, again.already), (0, 5));
    let copied = all_messages(b, &branch).await;
    assert_eq!(copied.iter().map(copy_of).collect::<Vec<_>>(), messages.iter().map(copy_of).collect::<Vec<_>>());
    store.finish().await
}

/// A fork keeps the source's order: run again after a reservation it skipped was completed,
/// it refuses (`InvalidInput` naming `target`) instead of copying the late message after later
/// ones, and writes nothing; truncating the fork before the late message's place and forking
/// again brings it in its place.
pub async fn check_fork_run_again_keeps_the_source_order<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let p = pipeline(b);
    let (source, branch) = (t("late-source"), t("late-branch"));
    let m1 = add_text(b.as_ref(), &source, "m1").await;
    let r2 = written(b, Reserve::new(source.clone(), Role::Assistant)).await;
    let m3 = add_text(b.as_ref(), &source, "m3").await;
    let report = p.fork(Fork::new(source.clone(), branch.clone())).await.expect("first fork");
    assert_eq!(report.copied, 2, "the reservation is not copied");
    let finalize =
        persist_core::args::UpdateContent::new(source.clone(), r2.id.clone(), persist_core::Content::text("r2"));
    written(b, finalize).await;
    let before = all_messages(b, &branch).await;
    assert_err!(
        p.fork(Fork::new(source.clone(), branch.clone())).await,
        PersistError::InvalidInput { field: "target", .. }
    );
    assert_eq!(all_messages(b, &branch).await, before, "a refused fork writes nothing");
    // The remedy: truncate the fork after m1 (the message before the late one) and fork again.
    crate::fixture::write(b.as_ref(), persist_core::args::Delete::after(branch.clone(), before[0].seq)).await.unwrap();
    let again = p.fork(Fork::new(source.clone(), branch.clone())).await.expect("fork again after truncating");
    assert_eq!((again.copied, again.already), (2, 1));
    let order: Vec<_> = all_messages(b, &branch).await.into_iter().map(|m| m.id).collect();
    assert_eq!(order, [m1.id, r2.id, m3.id], "the fork holds the source's order");
    store.finish().await
}

/// A fork refuses a missing or deleted source, itself as target, a deleted target, and a
/// target that exists and is not its fork; nothing is written.
pub async fn check_fork_refuses_what_it_cannot_copy_into<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let p = pipeline(b);
    let (source, other, gone) = (t("fork-src"), t("someone-else"), t("fork-gone"));
    add_text(b.as_ref(), &source, "x").await;
    add_text(b.as_ref(), &other, "unrelated").await;
    add_text(b.as_ref(), &gone, "y").await;
    p.delete(persist_core::args::Delete::thread(gone.clone())).await.unwrap();
    assert_err!(p.fork(Fork::new(t("no-such"), t("new"))).await, PersistError::NotFound { .. });
    assert_err!(p.fork(Fork::new(gone.clone(), t("new"))).await, PersistError::ThreadDeleted { .. });
    assert_err!(
        p.fork(Fork::new(source.clone(), source.clone())).await,
        PersistError::InvalidInput { field: "target", .. }
    );
    assert_err!(p.fork(Fork::new(source.clone(), gone.clone())).await, PersistError::ThreadDeleted { .. });
    assert_err!(
        p.fork(Fork::new(source.clone(), other.clone())).await,
        PersistError::InvalidInput { field: "target", .. }
    );
    assert_eq!(all_messages(b, &other).await.len(), 1, "the other thread is untouched");
    assert!(thread(b, &t("new")).await.is_none());
    store.finish().await
}

/// A fork in a tenant copies that tenant's thread into a thread of that tenant.
pub async fn check_fork_stays_in_its_tenant<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let p = pipeline(b);
    let acme = Some(tenant("acme"));
    let (source, branch) = (t("general"), t("general-2"));
    written(b, text_add(&source, "acme's").with_context(ctx(acme.as_ref()))).await;
    add_text(b.as_ref(), &source, "no tenant's").await;
    let report = p.fork(Fork::new(source.clone(), branch.clone()).with_context(ctx(acme.as_ref()))).await.unwrap();
    assert_eq!(report.copied, 1);
    let copied = all_messages_in(b, acme.as_ref(), &branch).await;
    assert_eq!(copied.iter().map(|m| m.content.to_text()).collect::<Vec<_>>(), ["acme's"]);
    assert_eq!(thread_in(b, acme.as_ref(), &branch).await.unwrap().tenant, acme);
    assert!(thread(b, &branch).await.is_none(), "not a thread without a tenant");
    store.finish().await
}

/// Adds racing a fork of their thread (through two handles when the storage is shared): the
/// fork copies exactly the source's messages up to the seq it fixed when it started, in order.
pub async fn check_fork_racing_writes_to_its_source<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let handles = store.racing_handles().await;
    let b = store.b();
    let (source, branch) = (t("busy-source"), t("busy-branch"));
    for i in 0..20 {
        add_text(b.as_ref(), &source, &format!("before {i}")).await;
    }
    let barrier = Arc::new(Barrier::new(21));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (h, barrier, source) = (Arc::clone(&handles[i % handles.len()]), barrier.clone(), source.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            add_text(h.as_ref(), &source, &format!("racer {i}")).await;
        });
    }
    let forking = pipeline(&handles[handles.len() - 1]);
    barrier.wait().await;
    let report = forking.fork(Fork::new(source.clone(), branch.clone())).await.expect("fork");
    tasks.join_all().await;
    let expected: Vec<_> = all_messages(b, &source).await.into_iter().filter(|m| m.seq <= report.up_to).collect();
    assert!(report.up_to >= 20, "the fork saw at least the first twenty");
    let copied = all_messages(b, &branch).await;
    assert_eq!(copied.iter().map(copy_of).collect::<Vec<_>>(), expected.iter().map(copy_of).collect::<Vec<_>>());
    assert_eq!(report.copied, expected.len());
    store.finish().await
}

async fn prune_all(p: &Pipeline, prune: Prune) -> (Vec<String>, usize, usize) {
    let (mut threads, mut messages, mut batches) = (Vec::new(), 0, 0);
    let mut batch = prune.with_threads(1);
    loop {
        let report = p.prune(batch.clone()).await.expect("prune");
        threads.extend(report.deleted_threads.iter().map(|(tenant, id)| match tenant {
            Some(tenant) => format!("{tenant}/{id}"),
            None => id.to_string(),
        }));
        messages += report.deleted_messages;
        batches += 1;
        if report.done {
            break;
        }
        batch = batch.with_cursor(report.next_cursor);
    }
    threads.sort();
    (threads, messages, batches)
}

/// Retention deletes the threads idle longer than the age (every tenant's), keeps only the
/// latest messages of the others, reports the same in a dry run without deleting, and runs in
/// batches that resume from a cursor.
pub async fn check_prune_deletes_idle_threads_and_keeps_the_latest<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let p = pipeline(b);
    let acme = Some(tenant("acme"));
    for i in 0..3 {
        add_text(b.as_ref(), &t("idle"), &format!("old {i}")).await;
        written(b, text_add(&t("idle"), &format!("acme old {i}")).with_context(ctx(acme.as_ref()))).await;
    }
    // A cutoff between the two phases: exact, however slow the machine.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let boundary = persist_core::Timestamp::now();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let mut long = Vec::new();
    for i in 0..5 {
        long.push(add_text(b.as_ref(), &t("long"), &format!("recent {i}")).await);
    }
    add_text(b.as_ref(), &t("short"), "recent").await;
    let rule = Prune::new().with_idle_before(boundary).with_keep_latest(2);

    let dry = prune_all(&p, rule.clone().dry_run(true)).await;
    assert_eq!(dry.0, ["acme/idle", "idle"]);
    assert_eq!((dry.1, dry.2), (3 + 3 + 3, 4), "3 + 3 in idle threads, 3 of long; one batch a thread");
    assert_eq!(all_messages(b, &t("long")).await.len(), 5, "a dry run deletes nothing");

    let done = prune_all(&p, rule.clone()).await;
    assert_eq!((done.0, done.1), (dry.0, dry.1), "the run does what the dry run said");
    assert!(thread(b, &t("idle")).await.unwrap().is_deleted());
    assert!(thread_in(b, acme.as_ref(), &t("idle")).await.unwrap().is_deleted());
    // The first kept still follows its parent, gone with everything before it (history).
    let kept = long[3..].to_vec();
    assert_eq!(all_messages(b, &t("long")).await, kept, "the latest two stay");
    assert_eq!(all_messages(b, &t("short")).await.len(), 1);
    let again = prune_all(&p, rule).await;
    assert_eq!((again.0.len(), again.1), (0, 0), "nothing left to prune");
    store.finish().await
}

/// Retention confined to one tenant prunes that tenant's threads only; a prune that names no
/// rule is refused.
pub async fn check_prune_confined_to_a_tenant<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let p = pipeline(b);
    let acme = Some(tenant("acme"));
    add_text(b.as_ref(), &t("chat"), "no tenant's").await;
    written(b, text_add(&t("chat"), "acme's").with_context(ctx(acme.as_ref()))).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let rule = Prune::new().with_idle_for(Duration::from_millis(2)).only_tenant(acme.clone());
    let (threads, messages, _) = prune_all(&p, rule).await;
    assert_eq!((threads, messages), (vec!["acme/chat".to_owned()], 1));
    assert!(!thread(b, &t("chat")).await.unwrap().is_deleted(), "another tenant's thread stays");
    assert_err!(p.prune(Prune::new()).await, PersistError::InvalidInput { field: "prune", .. });
    store.finish().await
}

/// A fork resumes up to the seq it recorded even when its source grew since; it refuses an
/// empty target and its own source (a fork back onto the thread it came from).
pub async fn check_fork_resumes_up_to_its_recorded_seq_and_refuses_look_alikes<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let p = pipeline(b);
    let (main, branch, empty) = (t("main"), t("main-branch"), t("emptied"));
    for i in 0..3 {
        add_text(b.as_ref(), &main, &format!("m{i}")).await;
    }
    p.fork(Fork::new(main.clone(), branch.clone())).await.unwrap();
    add_text(b.as_ref(), &main, "after the fork").await;
    let again = p.fork(Fork::new(main.clone(), branch.clone())).await.expect("resumed");
    assert_eq!((again.up_to, again.copied, again.already), (3, 0, 3));
    assert_eq!(all_messages(b, &branch).await.len(), 3);
    assert_err!(
        p.fork(Fork::new(main.clone(), branch.clone()).up_to(4)).await,
        PersistError::InvalidInput { field: "target", .. }
    );
    // Back onto its source: main's ids are all in branch, but main is no fork of branch.
    assert_err!(
        p.fork(Fork::new(branch.clone(), main.clone())).await,
        PersistError::InvalidInput { field: "target", .. }
    );
    add_text(b.as_ref(), &empty, "x").await;
    crate::fixture::write(b, persist_core::args::Delete::after(empty.clone(), 0)).await.unwrap();
    assert_err!(
        p.fork(Fork::new(main.clone(), empty.clone())).await,
        PersistError::InvalidInput { field: "target", .. }
    );
    store.finish().await
}

/// `pop` removes the latest messages, a reservation too, oldest first in its answer, and only
/// the ones it read: a message changed since is kept (`VersionConflict`), a missing or deleted
/// thread is refused, in another tenant the thread does not exist; `Delete::clear` removes every
/// message and keeps the thread (title, `last_seq`: the next message comes after).
pub async fn check_pop_and_clear_keep_the_thread<F: Factory>(factory: &F) -> Outcome {
    use persist_core::args::{Delete, Update};
    use persist_ops::lifecycle::Pop;
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let p = pipeline(b);
    let id = t("conversation");
    for text in ["one", "two", "three"] {
        add_text(b.as_ref(), &id, text).await;
    }
    let slot = written(b, Reserve::new(id.clone(), Role::Assistant)).await;
    let popped = p.pop(Pop::new(id.clone()).with_count(2)).await.expect("pop");
    let texts: Vec<_> = popped.messages.iter().map(|m| m.content.to_text()).collect();
    assert_eq!(texts, ["three", ""], "oldest first, the reservation included");
    assert_eq!(popped.messages[1].id, slot.id);
    let left: Vec<_> = all_messages(b.as_ref(), &id).await.iter().map(|m| m.content.to_text()).collect();
    assert_eq!(left, ["one", "two"]);

    let acme = Some(tenant("acme"));
    assert_err!(p.pop(Pop::new(id.clone()).with_context(ctx(acme.as_ref()))).await, PersistError::NotFound { .. });
    assert_err!(p.pop(Pop::new(t("never"))).await, PersistError::NotFound { .. });
    assert_err!(p.pop(Pop::new(id.clone()).with_count(0)).await, PersistError::InvalidInput { field: "count", .. });
    assert_eq!(p.pop(Pop::new(id.clone()).with_count(5)).await.expect("pop").messages.len(), 2, "fewer than asked");
    assert_eq!(p.pop(Pop::new(id.clone())).await.expect("pop").messages, [], "an empty thread");

    // Clear: every message goes, the thread stays usable and keeps its title and last seq.
    add_text(b.as_ref(), &id, "four").await;
    crate::fixture::write(b, Update::thread(id.clone()).with_title(Some("kept".into()))).await.expect("title");
    crate::fixture::write(b, Delete::clear(id.clone())).await.expect("clear");
    let cleared = thread(b, &id).await.expect("the thread stays");
    assert!(!cleared.is_deleted());
    assert_eq!((cleared.title.as_deref(), cleared.message_count, cleared.last_seq), (Some("kept"), 0, 5));
    let next = add_text(b.as_ref(), &id, "five").await;
    assert_eq!(next.seq, 6, "numbered after the removed messages");
    store.finish().await
}

/// A pop removes only what it read: a message patched after the pop's read is kept, and the
/// pop says so (`VersionConflict`); what it removed before stays removed.
pub async fn check_pop_keeps_a_message_written_meanwhile<F: Factory>(factory: &F) -> Outcome {
    use persist_core::args::Update;
    use persist_core::{PersistArgs, PersistOp};
    use persist_layer::from_fn;
    use persist_ops::lifecycle::Pop;
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("raced");
    let first = add_text(b.as_ref(), &id, "first").await;
    add_text(b.as_ref(), &id, "second").await;
    // Between the pop's read and its deletes, another writer patches the first message.
    let writer = Arc::clone(b);
    let first_id = first.id.clone();
    let raced = Pipeline::builder()
        .layer(from_fn(move |args: PersistArgs, next| {
            let writer = Arc::clone(&writer);
            let first_id = first_id.clone();
            async move {
                let thread_id = args.thread_id().cloned();
                let answer = next.run(args.clone()).await;
                if args.op() == PersistOp::List {
                    let patch = Update::message(thread_id.expect("a thread"), first_id)
                        .with_metadata(Metadata::new().with("edited", json!(true)));
                    crate::fixture::write(writer.as_ref(), patch).await.expect("patch");
                }
                answer
            }
        }))
        .build(Arc::clone(b));
    assert_err!(raced.pop(Pop::new(id.clone()).with_count(2)).await, PersistError::VersionConflict { .. });
    let left = all_messages(b.as_ref(), &id).await;
    assert_eq!(left.len(), 1, "the newer one was removed, the patched one kept");
    assert_eq!((left[0].id.clone(), left[0].metadata.get("edited")), (first.id, Some(&json!(true))));
    store.finish().await
}

/// The operations composed of requests work on whatever the backend declares, or refuse
/// clearly: pop, retention, cleanup and fork on every backend (a fork copies no summaries from
/// a store that keeps none); retention of what summaries cover without `summaries`, and
/// following a reply without `feed` (unless the store follows its parts' feeds), are
/// `Unsupported` and change nothing.
pub async fn check_composed_operations_work_or_refuse_by_capability<F: Factory>(factory: &F) -> Outcome {
    use persist_ops::lifecycle::Pop;
    use persist_ops::live::FollowReply;
    use persist_ops::maintenance::CleanupStranded;
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let p = pipeline(b);
    let caps = store.caps();
    let id = t("composed");
    for text in ["one", "two", "three", "four"] {
        add_text(b.as_ref(), &id, text).await;
    }
    let popped = p.pop(Pop::new(id.clone())).await.expect("pop");
    assert_eq!(popped.messages.iter().map(|m| m.content.to_text()).collect::<Vec<_>>(), ["four"]);
    let pruned = p.prune(Prune::new().with_keep_latest(2)).await.expect("retention");
    assert_eq!(pruned.deleted_messages, 1);
    let forked = p.fork(Fork::new(id.clone(), t("composed-fork"))).await.expect("fork");
    assert_eq!((forked.copied, forked.summaries), (2, 0));
    let cleaned = p.cleanup_stranded(CleanupStranded::new(Duration::ZERO)).await.expect("cleanup");
    assert!(cleaned.interrupted.is_empty() && cleaned.deleted.is_empty());
    if !caps.summaries {
        let covered = p.prune(Prune::new().with_covered(true)).await;
        assert_err!(covered, PersistError::Unsupported { .. });
    }
    if !caps.feed {
        let reply = written(b, Reserve::new(id.clone(), Role::Assistant)).await;
        // A store of stores may follow its parts' feeds without declaring one of its own.
        let followed = p.follow_reply(FollowReply::new(id.clone(), reply.id.clone())).await;
        assert!(
            matches!(followed, Ok(_) | Err(PersistError::Unsupported { .. })),
            "following without a feed works or is Unsupported"
        );
        let still = all_messages(b, &id).await;
        assert_eq!(still.len(), 3, "the reservation, and nothing else, was written");
    }
    store.finish().await
}
