//! `SpentKey`: an idempotency key that outlives its message.

use std::time::Duration;

use serde_json::json;

use persist_core::args::{Add, Reserve};
use persist_core::spent::{DEFAULT_KEY_RETENTION, SpentKey};
use persist_core::{
    Content, IdempotencyKey, Message, MessageId, Metadata, PersistArgs, PersistError, Role, ThreadId, Timestamp,
};

fn message(add: &Add, version: u64) -> Message {
    let id = MessageId::new("m1").unwrap();
    let mut message =
        Message::stored(add.thread_id.clone(), id, 3, add.role.clone(), add.content.clone(), Timestamp::now());
    message.metadata = add.metadata.clone();
    message.idempotency_key = add.idempotency_key.clone();
    message.version = version;
    message
}

#[test]
fn a_spent_key_answers_its_request_and_refuses_another() {
    let thread = ThreadId::new("t").unwrap();
    let key = IdempotencyKey::new("k").unwrap();
    let add = Add::new(thread.clone(), Role::User, Content::new(json!([{"type": "text", "text": "hi"}])))
        .with_metadata(Metadata::new().with("n", json!(1.0)))
        .with_idempotency_key(key.clone());
    let stored = message(&add, 1);
    let spent = SpentKey::of(&stored, Timestamp::now(), DEFAULT_KEY_RETENTION).unwrap();
    let again = PersistArgs::from(add.clone());
    assert_eq!(spent.repeat(&thread, &again).unwrap(), stored);
    // Equal by value: another number form, the same request.
    let same = add.clone().with_metadata(Metadata::new().with("n", json!(1)));
    assert!(spent.repeat(&thread, &same.into()).is_ok());
    let other = Add::new(thread.clone(), Role::User, Content::text("bye")).with_idempotency_key(key.clone());
    assert!(matches!(spent.repeat(&thread, &other.into()), Err(PersistError::IdempotencyKeyReused { .. })));
    let reserve = Reserve::new(thread.clone(), Role::User).with_idempotency_key(key.clone());
    assert!(spent.repeat(&thread, &reserve.into()).is_err());
    // Changed before it went: any request with the key is its repeat.
    let changed = SpentKey::of(&message(&add, 2), Timestamp::now(), DEFAULT_KEY_RETENTION).unwrap();
    assert!(changed.fingerprint.is_none());
    let other = Add::new(thread.clone(), Role::User, Content::text("bye")).with_idempotency_key(key);
    assert!(changed.repeat(&thread, &other.into()).is_ok());
    // No key, nothing kept.
    let mut unkeyed = stored;
    unkeyed.idempotency_key = None;
    assert!(SpentKey::of(&unkeyed, Timestamp::now(), DEFAULT_KEY_RETENTION).is_none());
}

#[test]
fn a_spent_key_is_remembered_for_the_retention() {
    let thread = ThreadId::new("t").unwrap();
    let add = Add::new(thread, Role::User, Content::text("hi")).with_idempotency_key(IdempotencyKey::new("k").unwrap());
    let spent_at = Timestamp::from_micros(1_000_000_000);
    let spent = SpentKey::of(&message(&add, 1), spent_at, DEFAULT_KEY_RETENTION).unwrap();
    let hour = Duration::from_secs(3600);
    assert!(spent.is_remembered(spent_at.saturating_add(hour)));
    assert!(!spent.is_remembered(spent_at.saturating_add(hour * 25)));
    assert!(!SpentKey::of(&message(&add, 1), spent_at, Duration::ZERO).unwrap().is_remembered(spent_at));
}
