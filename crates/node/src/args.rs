//! The arguments of the calls: JSON objects with camelCase keys, as the package's methods pass
//! them, read into persist's types (a wrong one is `InvalidInput` naming it).

use persist::{IdempotencyKey, MessageId, Metadata, PersistError, Result, ThreadId, Timestamp};
use serde_json::{Value, json};

/// A time as JavaScript's milliseconds since the epoch.
pub(crate) fn millis(at: Timestamp) -> Value {
    json!(at.as_micros() / 1000)
}

/// The string argument `name`, if given.
pub(crate) fn optional<'a>(args: &'a Value, name: &'static str) -> Result<Option<&'a str>> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(PersistError::invalid(name, format!("{name} must be a string"))),
    }
}

/// The string argument `name`.
pub(crate) fn required<'a>(args: &'a Value, name: &'static str) -> Result<&'a str> {
    optional(args, name)?.ok_or_else(|| PersistError::invalid(name, format!("{name} is required")))
}

/// The argument `threadId`, as a thread id.
pub(crate) fn thread_of(args: &Value) -> Result<ThreadId> {
    ThreadId::new(required(args, "threadId")?)
}

/// The argument `name`, as a message id, if given.
pub(crate) fn message_of(args: &Value, name: &'static str) -> Result<Option<MessageId>> {
    optional(args, name)?.map(MessageId::new).transpose()
}

/// The argument `idempotencyKey`, if given.
pub(crate) fn key_of(args: &Value) -> Result<Option<IdempotencyKey>> {
    optional(args, "idempotencyKey")?.map(IdempotencyKey::new).transpose()
}

/// The object argument `name` as metadata, if given.
pub(crate) fn metadata_of(args: &Value, name: &'static str) -> Result<Option<Metadata>> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(Metadata::from(map.clone()))),
        Some(_) => Err(PersistError::invalid(name, format!("{name} must be an object"))),
    }
}

/// The whole-number argument `name`, if given, within `1..=max`.
pub(crate) fn count_of(args: &Value, name: &'static str, max: u64) -> Result<Option<u64>> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_u64() {
            Some(count) if (1..=max).contains(&count) => Ok(Some(count)),
            _ => Err(PersistError::invalid(name, format!("{name} must be a whole number from 1 to {max}"))),
        },
    }
}

/// `Ok(None)` for a thread that is not there.
pub(crate) fn absent_as_none<T>(answer: Result<T>) -> Result<Option<T>> {
    match answer {
        Ok(value) => Ok(Some(value)),
        Err(PersistError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}
