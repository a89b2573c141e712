//! Retries never duplicate: idempotency keys and identical explicit ids deduplicate.

use persist_core::args::{Add, Reserve, UpdateContent};
use persist_core::{Content, IdempotencyKey, Metadata, PersistError, PersistResult, Role};
use serde_json::json;

use crate::fixture::{all_messages, assert_err, get, m, t, text_add, thread, write, written};
use crate::{Factory, Outcome};

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).expect("valid key")
}

fn dedup(result: &PersistResult) -> bool {
    result.is_deduplicated()
}

/// A repeated `add` with the same key returns the first message, flagged, without a new seq.
pub async fn check_idempotency_key_dedups_add<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("retry-add");
    let first = write(b, text_add(&id, "hello").with_idempotency_key(key("k1"))).await.unwrap();
    assert!(!dedup(&first));
    let again = write(b, text_add(&id, "hello").with_idempotency_key(key("k1"))).await.unwrap();
    assert!(dedup(&again), "the repeat is flagged");
    assert_eq!(again.message(), first.message(), "and answers the first message");
    let next = written(b, text_add(&id, "next")).await;
    assert_eq!(next.seq, 2, "the repeat took no seq");
    let th = thread(b, &id).await.unwrap();
    assert_eq!((th.message_count, th.last_seq), (2, 2));
    store.finish().await
}

/// A repeated `reserve` with the same key returns the reservation, even after it was filled.
pub async fn check_idempotency_key_dedups_reserve<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("retry-reserve");
    let slot = written(b, Reserve::new(id.clone(), Role::Assistant).with_idempotency_key(key("turn-2"))).await;
    let again = write(b, Reserve::new(id.clone(), Role::Assistant).with_idempotency_key(key("turn-2"))).await.unwrap();
    assert!(dedup(&again));
    assert_eq!(again.message(), Some(&slot));
    let done = written(b, UpdateContent::new(id.clone(), slot.id.clone(), Content::text("answer"))).await;
    let late = write(b, Reserve::new(id.clone(), Role::Assistant).with_idempotency_key(key("turn-2"))).await.unwrap();
    assert!(dedup(&late));
    assert_eq!(late.message(), Some(&done), "a late retry answers the message as it is now");
    assert_eq!(all_messages(b, &id).await.len(), 1);
    store.finish().await
}

/// The same explicit id with an identical payload is a retry, answered deduplicated.
pub async fn check_identical_explicit_id_dedups<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("retry-id");
    let meta = Metadata::new().with("turn", json!(1));
    let add = || text_add(&id, "same").with_id(m("msg-1")).with_metadata(meta.clone());
    let first = written(b, add()).await;
    let again = write(b, add()).await.unwrap();
    assert!(dedup(&again));
    assert_eq!(again.message(), Some(&first));
    let reserve = || Reserve::new(id.clone(), Role::Assistant).with_id(m("slot-1"));
    let slot = written(b, reserve()).await;
    let again = write(b, reserve()).await.unwrap();
    assert!(dedup(&again));
    assert_eq!(again.message(), Some(&slot));
    assert_eq!(thread(b, &id).await.unwrap().last_seq, 2);
    store.finish().await
}

/// The same explicit id with any other payload is `AlreadyExists`, and nothing changes.
pub async fn check_different_payload_with_same_id_is_already_exists<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("conflict");
    let original = written(b, text_add(&id, "original").with_id(m("x"))).await;
    let variants = [
        text_add(&id, "different text").with_id(m("x")),
        Add::new(id.clone(), Role::Assistant, Content::text("original")).with_id(m("x")),
        text_add(&id, "original").with_id(m("x")).with_metadata(Metadata::new().with("k", json!(1))),
        text_add(&id, "original").with_id(m("x")).with_idempotency_key(key("other")),
    ];
    for variant in variants {
        assert_err!(write(b, variant).await, PersistError::AlreadyExists { .. });
    }
    assert_err!(
        write(b, Reserve::new(id.clone(), Role::Assistant).with_id(m("x"))).await,
        PersistError::AlreadyExists { .. }
    );
    assert_eq!(get(b, &id, &m("x")).await.unwrap(), original);
    assert_eq!(thread(b, &id).await.unwrap().last_seq, 1);
    store.finish().await
}

/// A repeat is compared by value, on one canonical form: numbers a store may rewrite
/// (PostgreSQL's `jsonb` writes `1e2` as `100`, `1E+16` as `10000000000000000`, `-0` as `0`)
/// still make an identical retry a repeat, never `AlreadyExists`; another value is a conflict.
pub async fn check_repeats_compare_numbers_by_value<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("numbers");
    let content = Content::from_json(r#"[{"type":"data","n":1e2,"big":1E+16,"z":-0,"x":1.0}]"#).expect("JSON");
    let meta = Metadata::new().with("ratio", json!(0.5)).with("count", json!(1e2));
    let add = |content: &Content| {
        Add::new(id.clone(), Role::Tool, content.clone()).with_id(m("n-1")).with_metadata(meta.clone())
    };
    let first = written(b, add(&content)).await;
    let again = write(b, add(&content)).await.expect("an identical retry is not a conflict");
    assert!(dedup(&again), "the identical retry is a repeat");
    assert_eq!(again.message(), Some(&first));
    let rewritten = Content::from_json(r#"[{"type":"data","n":100,"big":10000000000000000,"z":0,"x":1}]"#).unwrap();
    assert!(dedup(&write(b, add(&rewritten)).await.expect("equal by value")));
    let other = Content::from_json(r#"[{"type":"data","n":101,"big":1E+16,"z":-0,"x":1.0}]"#).unwrap();
    assert_err!(write(b, add(&other)).await, PersistError::AlreadyExists { .. });
    assert_eq!(thread(b, &id).await.unwrap().last_seq, 1);
    store.finish().await
}

/// A key reused for a different request (content, role, metadata or operation) is
/// `IdempotencyKeyReused`, naming the message the key wrote, and nothing changes; the same
/// request again is still a repeat, whatever message id it carries (a retry may mint one per
/// attempt). Once the message changed (a reservation filled), a request with its key is taken
/// as a repeat: the original request is no longer known.
pub async fn check_reused_key_with_another_request_is_refused<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("reused-key");
    let first = written(b, text_add(&id, "original").with_idempotency_key(key("k"))).await;
    let others: Vec<persist_core::PersistArgs> = vec![
        text_add(&id, "other text").with_idempotency_key(key("k")).into(),
        Add::new(id.clone(), Role::Assistant, Content::text("original")).with_idempotency_key(key("k")).into(),
        text_add(&id, "original")
            .with_metadata(Metadata::new().with("k", json!(1)))
            .with_idempotency_key(key("k"))
            .into(),
        Reserve::new(id.clone(), Role::User).with_idempotency_key(key("k")).into(),
    ];
    for other in others {
        assert_err!(
            write(b, other).await,
            PersistError::IdempotencyKeyReused { ref message_id, ref idempotency_key, .. }
                if *message_id == first.id && idempotency_key.as_str() == "k"
        );
    }
    let again = write(b, text_add(&id, "original").with_idempotency_key(key("k"))).await.unwrap();
    assert!(dedup(&again));
    assert_eq!(again.message(), Some(&first));
    let minted = write(b, text_add(&id, "original").with_id(m("minted")).with_idempotency_key(key("k"))).await;
    assert_eq!(minted.unwrap().message(), Some(&first), "the key names the request, not the id");
    assert_eq!(get(b, &id, &first.id).await.unwrap(), first);
    assert_eq!(thread(b, &id).await.unwrap().last_seq, 1, "nothing was written");

    let slot = written(b, Reserve::new(id.clone(), Role::Assistant).with_idempotency_key(key("r"))).await;
    written(b, UpdateContent::new(id.clone(), slot.id.clone(), Content::text("filled"))).await;
    let late = write(b, Reserve::new(id.clone(), Role::Assistant).with_idempotency_key(key("r"))).await.unwrap();
    assert!(dedup(&late), "a changed message is taken as the repeat");
    store.finish().await
}

/// Keys are scoped to their thread: the same key in two threads makes two messages.
pub async fn check_idempotency_keys_are_per_thread<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let (t1, t2) = (t("keys-a"), t("keys-b"));
    let one = write(b, text_add(&t1, "a").with_idempotency_key(key("k"))).await.unwrap();
    let two = write(b, text_add(&t2, "b").with_idempotency_key(key("k"))).await.unwrap();
    assert!(!dedup(&one) && !dedup(&two));
    assert_eq!(get(b, &t1, &one.message().unwrap().id).await.unwrap().content.to_text(), "a");
    assert_eq!(get(b, &t2, &two.message().unwrap().id).await.unwrap().content.to_text(), "b");
    store.finish().await
}

/// A key outlives its message: once the message a keyed write made is deleted (a delete, a
/// truncation, a clear), a retry of that write answers what the first call answered,
/// `deduplicated`, and writes nothing; another request with the key is `IdempotencyKeyReused`;
/// a turn retried after its messages went is its repeat too. A message changed before it went
/// takes any request with its key as its repeat, as a stored one does. A purge that frees the
/// thread's id forgets its keys.
pub async fn check_a_key_outlives_its_message<F: Factory>(factory: &F) -> Outcome {
    use persist_core::args::{AppendTurn, Delete, TurnMessage, Update};
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("spent-keys");
    let add = text_add(&id, "hello").with_metadata(Metadata::new().with("n", json!(1))).with_idempotency_key(key("k1"));
    let first = written(b, add.clone()).await;
    write(b, Delete::message(id.clone(), first.id.clone())).await.expect("delete");
    let again = write(b, add.clone()).await.expect("a retry after the delete");
    assert!(dedup(&again), "the retry is a repeat");
    assert_eq!(again.message(), Some(&first), "answered as the first call was");
    assert!(all_messages(b, &id).await.is_empty(), "nothing written again");
    assert_eq!(thread(b, &id).await.unwrap().last_seq, 1, "no seq taken");
    let other = text_add(&id, "another").with_idempotency_key(key("k1"));
    assert_err!(write(b, other).await, PersistError::IdempotencyKeyReused { .. });

    let slot = written(b, Reserve::new(id.clone(), Role::Assistant).with_idempotency_key(key("k2"))).await;
    write(b, Delete::clear(id.clone())).await.expect("clear");
    let again = write(b, Reserve::new(id.clone(), Role::Assistant).with_idempotency_key(key("k2"))).await.unwrap();
    assert!(dedup(&again) && again.message() == Some(&slot), "{again:?}");

    let changed = written(b, text_add(&id, "draft").with_idempotency_key(key("k3"))).await;
    let patch =
        Update::message(id.clone(), changed.id.clone()).with_metadata(Metadata::new().with("seen", json!(true)));
    write(b, patch).await.expect("update");
    write(b, Delete::message(id.clone(), changed.id.clone())).await.expect("delete");
    let again = write(b, text_add(&id, "draft, edited").with_idempotency_key(key("k3"))).await.unwrap();
    assert!(dedup(&again), "a changed message's key takes any request as its repeat");
    assert_eq!(again.message().map(|m| (&m.id, m.seq)), Some((&changed.id, changed.seq)));

    let turn = AppendTurn::of(
        id.clone(),
        [TurnMessage::new(Role::User, Content::text("q")), TurnMessage::new(Role::Assistant, Content::text("a"))],
    )
    .with_idempotency_key(key("turn-1"));
    let stored = write(b, turn.clone()).await.expect("turn").messages().to_vec();
    let before = stored[0].seq - 1;
    write(b, Delete::after(id.clone(), before)).await.expect("truncate");
    let again = write(b, turn).await.expect("the turn retried");
    assert!(dedup(&again), "the turn retried is its repeat");
    assert_eq!(again.messages(), stored.as_slice());
    let longer = AppendTurn::of(
        id.clone(),
        [TurnMessage::new(Role::User, Content::text("q")), TurnMessage::new(Role::Assistant, Content::text("b"))],
    )
    .with_idempotency_key(key("turn-1"));
    assert_err!(write(b, longer).await, PersistError::IdempotencyKeyReused { .. });
    assert!(all_messages(b, &id).await.is_empty(), "nothing written again");

    // Keys are per thread: another thread's is its own.
    let elsewhere = write(b, text_add(&t("spent-keys-2"), "hello").with_idempotency_key(key("k1"))).await.unwrap();
    assert!(!dedup(&elsewhere));
    // A purge that frees the id forgets the thread's keys with it.
    write(b, Delete::purge(id.clone()).freeing_id(true)).await.expect("purge");
    let fresh = write(b, add).await.expect("a write after the purge");
    assert!(!dedup(&fresh), "the key was forgotten with the thread");
    assert_eq!(all_messages(b, &id).await.len(), 1);
    store.finish().await
}
