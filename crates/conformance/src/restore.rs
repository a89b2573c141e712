//! Restore: a thread and its messages written exactly as another store held them (import,
//! copy), idempotent, refused whole when anything in it conflicts.

use std::time::Duration;

use persist_core::args::{Add, Delete, Reserve, Restore, Update, UpdateContent};
use persist_core::restore::MAX_RESTORE_MESSAGES;
use persist_core::session::{ListBindings, ResetSession};
use persist_core::{
    Backend, Content, IdempotencyKey, Message, Metadata, PersistError, PersistResult, Restored, Role, TenantId, Thread,
    ThreadId, Timestamp,
};
use serde_json::json;

use crate::fixture::{all_messages_in, assert_err, ctx, gate, m, snapshot_in, t, tenant, thread_in, write, written};
use crate::{Factory, Outcome};

/// Writes a thread with every kind of message a transcript holds: user and assistant turns,
/// metadata, an idempotency key, a reservation still streaming, a reply interrupted with its
/// text so far, a deleted message (a gap in the seqs), a deleted last message (`last_seq` past the last stored seq), a title.
async fn source<B: persist_core::Backend>(b: &B, tenant: Option<&TenantId>, id: &ThreadId) -> (Thread, Vec<Message>) {
    let c = || ctx(tenant);
    let add = |text: &str| Add::new(id.clone(), Role::User, Content::text(text)).with_context(c());
    written(b, add("hello").with_metadata(Metadata::new().with("lang", json!("en")))).await;
    let gone = written(b, add("typo")).await;
    written(b, add("keyed").with_idempotency_key(IdempotencyKey::new("turn-3").unwrap())).await;
    let reply = written(b, Reserve::new(id.clone(), Role::Assistant).with_context(c())).await;
    write(b, UpdateContent::partial(id.clone(), reply.id.clone(), Content::text("Hi th")).with_context(c()))
        .await
        .unwrap();
    let cut = written(b, Reserve::new(id.clone(), Role::Assistant).with_context(c())).await;
    let cut_short = UpdateContent::appending(id.clone(), cut.id, Content::text("Cut sh")).with_interrupt(true);
    write(b, cut_short.with_context(c())).await.unwrap();
    let last = written(b, add("withdrawn")).await;
    for removed in [gone, last] {
        write(b, Delete::message(id.clone(), removed.id).with_context(c())).await.unwrap();
    }
    write(b, Update::thread(id.clone()).with_title(Some("Greetings".into())).with_context(c())).await.unwrap();
    (thread_in(b, tenant, id).await.unwrap(), all_messages_in(b, tenant, id).await)
}

/// `thread` and `messages` moved to `tenant`, as an import into another tenant would.
fn moved(thread: &Thread, messages: &[Message], to: Option<&TenantId>) -> Restore {
    let thread = Thread { tenant: to.cloned(), ..thread.clone() };
    Restore::new(thread, messages.to_vec())
}

fn restored(result: Result<PersistResult, PersistError>) -> Restored {
    match result {
        Ok(PersistResult::Restored(restored)) => restored,
        other => panic!("expected a restore's answer, got {other:?}"),
    }
}

/// A restored thread equals its source in every field (ids, seqs and their gaps, versions,
/// status, partial content of a reservation, keys, metadata, times, title, `last_seq`), and a
/// later `add` continues after the source's `last_seq`; its idempotency keys deduplicate.
pub async fn check_restore_copies_a_thread_exactly<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, restore);
    let b = store.b();
    let (from, to) = (tenant("source"), tenant("copy"));
    let id = t("transcript");
    let (thread, messages) = source(b.as_ref(), Some(&from), &id).await;
    assert_eq!(messages.len(), 4);

    let answer = restored(write(b, moved(&thread, &messages, Some(&to))).await);
    assert_eq!((answer.restored, answer.present), (4, 0));
    let copy = thread_in(b, Some(&to), &id).await.unwrap();
    assert_eq!(copy, Thread { tenant: Some(to.clone()), ..thread.clone() }, "every field of the thread");
    assert_eq!(answer.thread, copy);
    assert_eq!(all_messages_in(b, Some(&to), &id).await, messages, "every field of every message");

    let next = written(b, Add::new(id.clone(), Role::User, Content::text("next")).with_context(ctx(Some(&to)))).await;
    assert_eq!(next.seq, thread.last_seq + 1, "seqs continue after the source's last_seq");
    let keyed = Add::new(id.clone(), Role::User, Content::text("keyed"))
        .with_idempotency_key(IdempotencyKey::new("turn-3").unwrap())
        .with_context(ctx(Some(&to)));
    let again = write(b, keyed).await.unwrap();
    assert!(again.is_deduplicated(), "a restored key still deduplicates: {again:?}");
    store.finish().await
}

/// A restore sent again writes nothing; one cut short and sent again completes it with no
/// duplicate (the messages stored already are counted as present).
pub async fn check_restore_is_idempotent_and_resumable<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, restore);
    let b = store.b();
    let (from, to) = (tenant("source"), tenant("copy"));
    let id = t("resumed");
    let (thread, messages) = source(b.as_ref(), Some(&from), &id).await;

    let first = restored(write(b, moved(&thread, &messages[..2], Some(&to))).await);
    assert_eq!((first.restored, first.present), (2, 0));
    let rest = restored(write(b, moved(&thread, &messages, Some(&to))).await);
    assert_eq!((rest.restored, rest.present), (2, 2));
    let before = snapshot_in(b.as_ref(), Some(&to), &[&id]).await;
    let again = restored(write(b, moved(&thread, &messages, Some(&to))).await);
    assert_eq!((again.restored, again.present), (0, 4));
    assert_eq!(snapshot_in(b.as_ref(), Some(&to), &[&id]).await, before, "a repeat changes nothing");
    assert_eq!(before[0].1, messages);
    assert_eq!(before[0].0.as_ref().map(|t| (t.message_count, t.last_seq)), Some((4, thread.last_seq)));
    store.finish().await
}

/// Restoring into a thread that exists keeps its title and metadata and never moves its
/// version, `updated_at` or `last_seq` back; messages go into free seqs, and the counters
/// follow.
pub async fn check_restore_into_a_live_thread_never_moves_it_back<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, restore);
    let b = store.b();
    let id = t("live");
    let add = |text: &str| Add::new(id.clone(), Role::User, Content::text(text));
    for text in ["one", "two", "three"] {
        written(b, add(text)).await;
    }
    write(b, Update::thread(id.clone()).with_title(Some("live".into()))).await.unwrap();
    let live = thread_in(b, None, &id).await.unwrap();
    let old = Thread {
        title: Some("old".into()),
        version: 1,
        updated_at: Timestamp::from_micros(1_000_000),
        created_at: Timestamp::from_micros(1_000_000),
        last_seq: 9,
        ..live.clone()
    };
    let message = Message {
        thread_id: id.clone(),
        id: m("from-elsewhere"),
        role: Role::Assistant,
        content: Content::text("restored"),
        metadata: Metadata::new(),
        status: persist_core::Status::Complete,
        seq: 8,
        parent_seq: Some(3),
        version: 2,
        idempotency_key: None,
        created_at: Timestamp::from_micros(1_000_000),
        updated_at: Timestamp::from_micros(2_000_000),
    };
    let answer = restored(write(b, Restore::new(old, vec![message.clone()])).await);
    assert_eq!((answer.restored, answer.present), (1, 0));
    let after = thread_in(b, None, &id).await.unwrap();
    assert_eq!(after, answer.thread);
    assert_eq!(
        (after.title.as_deref(), after.version, after.updated_at, after.created_at),
        (Some("live"), live.version, live.updated_at, live.created_at),
        "the stored thread's fields stay; none moves back"
    );
    assert_eq!((after.last_seq, after.message_count), (9, 4));
    let stored = all_messages_in(b, None, &id).await;
    assert_eq!(stored.last(), Some(&message));
    assert_eq!(written(b, add("four")).await.seq, 10);
    store.finish().await
}

/// A message whose id is taken by another payload, whose seq is held by another id, or whose
/// key is held by another message refuses the whole request (nothing of it written), as does a
/// deleted thread; bad input is `InvalidInput` naming the field.
pub async fn check_restore_refuses_conflicts_and_writes_nothing<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, restore);
    let b = store.b();
    let id = t("conflicts");
    let (thread, messages) = source(b.as_ref(), None, &id).await;
    let before = snapshot_in(b.as_ref(), None, &[&id]).await;
    let fresh = Message { id: m("fresh"), seq: 2, idempotency_key: None, ..messages[0].clone() };
    let with = |other: Message| Restore::new(thread.clone(), vec![fresh.clone(), other]);

    let changed = Message { content: Content::text("changed"), ..messages[1].clone() };
    assert_err!(write(b, with(changed)).await, PersistError::AlreadyExists { message_id, .. } if message_id == messages[1].id);
    let seq_taken = Message { id: m("elsewhere"), idempotency_key: None, ..messages[3].clone() };
    assert_err!(write(b, with(seq_taken)).await, PersistError::AlreadyExists { message_id, .. } if message_id == messages[3].id);
    let key_taken = Message { id: m("keyed-again"), seq: 6, ..messages[1].clone() };
    assert!(key_taken.idempotency_key.is_some());
    assert_err!(
        write(b, with(key_taken)).await,
        PersistError::IdempotencyKeyReused { message_id, .. } if message_id == messages[1].id
    );
    assert_eq!(snapshot_in(b.as_ref(), None, &[&id]).await, before, "a refused restore writes nothing");

    let invalid: Vec<(Restore, &str)> = vec![
        (Restore::new(thread.clone(), vec![messages[1].clone(), messages[0].clone()]), "seq"),
        (Restore::new(Thread { last_seq: 1, ..thread.clone() }, messages.clone()), "seq"),
        (Restore::new(thread.clone(), vec![Message { version: 0, ..fresh.clone() }]), "version"),
        (Restore::new(thread.clone(), vec![Message { thread_id: t("other"), ..fresh.clone() }]), "messages"),
        (Restore::new(thread.clone(), messages.clone()).with_context(ctx(Some(&tenant("else")))), "tenant"),
        (Restore::new(Thread { deleted_at: Some(Timestamp::now()), ..thread.clone() }, vec![]), "thread"),
        (Restore::new(Thread { title: Some("x\0".into()), ..thread.clone() }, vec![]), "title"),
        (Restore::new(Thread { last_seq: 2000, ..thread.clone() }, too_many(&id)), "messages"),
        (Restore::new(Thread { last_seq: u64::MAX, ..thread.clone() }, vec![]), "last_seq"),
        (Restore::new(thread.clone(), vec![Message { version: 1 << 60, ..fresh.clone() }]), "version"),
        (Restore::new(Thread { version: u64::MAX, ..thread.clone() }, vec![]), "version"),
        // Times a store could not have written: year 294247, before 1970, changed days before
        // made (instances' clocks may differ by a little, not by days).
        (Restore::new(Thread { updated_at: Timestamp::from_micros(i64::MAX), ..thread.clone() }, vec![]), "updated_at"),
        (Restore::new(Thread { created_at: Timestamp::from_micros(-1), ..thread.clone() }, vec![]), "created_at"),
        (
            Restore::new(
                Thread {
                    updated_at: thread.created_at.saturating_sub(Duration::from_secs(2 * 86_400)),
                    ..thread.clone()
                },
                vec![],
            ),
            "updated_at",
        ),
        (
            Restore::new(
                thread.clone(),
                vec![Message { updated_at: Timestamp::from_micros(i64::MAX), ..fresh.clone() }],
            ),
            "updated_at",
        ),
        (
            Restore::new(
                thread.clone(),
                vec![Message { created_at: Timestamp::from_micros(i64::MIN), ..fresh.clone() }],
            ),
            "created_at",
        ),
        (
            Restore::new(
                thread.clone(),
                vec![Message {
                    updated_at: fresh.created_at.saturating_sub(Duration::from_secs(2 * 86_400)),
                    ..fresh.clone()
                }],
            ),
            "updated_at",
        ),
    ];
    for (restore, field) in invalid {
        assert_err!(write(b, restore).await, PersistError::InvalidInput { field: got, .. } if got == field);
    }
    assert_eq!(snapshot_in(b.as_ref(), None, &[&id]).await, before, "refused input writes nothing");

    write(b, Delete::thread(id.clone())).await.unwrap();
    assert_err!(write(b, Restore::new(thread, messages)).await, PersistError::ThreadDeleted { .. });
    store.finish().await
}

/// A restore writes the thread's session bindings exactly (state and times too), unless the
/// stored binding of that agent changed at the same time or later: the newest wins, and a
/// repeat writes none. Gated on `sessions`.
pub async fn check_restore_writes_bindings_and_the_newest_wins<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, restore);
    gate!(store, sessions);
    let b = store.b();
    let (from, to) = (tenant("source"), tenant("copy"));
    let id = t("bound");
    let (thread, messages) = source(b.as_ref(), Some(&from), &id).await;
    for (agent, session) in [("coder", "s-c"), ("writer", "s-w")] {
        b.bind(crate::sessions::bind(agent, &id, session, "p").with_context(ctx(Some(&from)))).await.unwrap();
    }
    let reset = ResetSession::new(crate::sessions::agent("writer"), id.clone()).with_context(ctx(Some(&from)));
    assert!(b.reset_session(reset).await.unwrap());
    let bindings = b.bindings(ListBindings::new(id.clone()).with_context(ctx(Some(&from)))).await.unwrap();
    assert_eq!(bindings.len(), 2);

    let restore = || moved(&thread, &messages, Some(&to)).with_bindings(bindings.clone());
    let first = restored(write(b, restore()).await);
    assert_eq!((first.restored, first.bindings), (4, 2));
    let copied = b.bindings(ListBindings::new(id.clone()).with_context(ctx(Some(&to)))).await.unwrap();
    assert_eq!(copied, bindings, "every field, the state too");
    let again = restored(write(b, restore()).await);
    assert_eq!((again.restored, again.bindings), (0, 0), "a repeat writes nothing");

    // The copy's coder binds anew, newer than the source's: it stays; the writer's, older than the one sent, is replaced.
    let newer = b.bind(crate::sessions::bind("coder", &id, "s-new", "p").with_context(ctx(Some(&to)))).await.unwrap();
    let mut later = bindings.clone();
    later[1].binding.updated_at = Timestamp::from_micros(later[1].binding.updated_at.as_micros() + 1);
    later[1].binding.session_id = persist_core::SessionId::new("s-later").unwrap();
    let third = restored(write(b, moved(&thread, &[], Some(&to)).with_bindings(later.clone())).await);
    assert_eq!(third.bindings, 1, "only the writer's, which is newer than the copy's");
    let now = b.bindings(ListBindings::new(id.clone()).with_context(ctx(Some(&to)))).await.unwrap();
    assert_eq!((&now[0].binding, &now[1]), (&newer, &later[1]));

    let twice = moved(&thread, &[], Some(&to)).with_bindings(vec![bindings[0].clone(), bindings[0].clone()]);
    assert_err!(write(b, twice).await, PersistError::InvalidInput { field: "bindings", .. });
    store.finish().await
}

fn too_many(id: &ThreadId) -> Vec<Message> {
    (1..=MAX_RESTORE_MESSAGES as u64 + 1)
        .map(|seq| Message {
            thread_id: id.clone(),
            id: m(&format!("m{seq}")),
            role: Role::User,
            content: Content::text("x"),
            metadata: Metadata::new(),
            status: persist_core::Status::Complete,
            seq,
            parent_seq: (seq > 1).then(|| seq - 1),
            version: 1,
            idempotency_key: None,
            created_at: Timestamp::from_micros(1),
            updated_at: Timestamp::from_micros(1),
        })
        .collect()
}
