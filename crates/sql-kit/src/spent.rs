//! What both SQL backends keep of idempotency keys that outlive their messages (see
//! `persist::spent`): which messages a removal takes, and a `persist_spent_keys` row read back.

use persist_core::spent::SpentKey;
use persist_core::{IdempotencyKey, MessageId, PersistError, Timestamp};

/// Which messages of a thread a removal takes, whose keys are kept as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Removal<'a> {
    /// One message, if it is at the version expected (any without one): a delete refused for its
    /// version keeps no key.
    Message(&'a MessageId, Option<u64>),
    /// Every message after a seq (a truncation, a clear).
    After(u64),
    /// Every message up to `through` but `leaf` (what a summary covers, its active leaf kept).
    Covered {
        /// The last seq covered.
        through: u64,
        /// The seq kept.
        leaf: u64,
    },
}

/// A row of `persist_spent_keys` as both backends read it: key, message id, seq, parent, time,
/// fingerprint, `forget_at`.
pub type SpentRow = (String, String, i64, Option<i64>, i64, Option<String>, i64);

/// The spent key a row holds.
///
/// # Errors
///
/// A corrupt row (see [`corrupt`](crate::corrupt)) when its key or message id is not one.
pub fn spent_key(row: SpentRow) -> Result<SpentKey, PersistError> {
    let (key, message_id, seq, parent_seq, created_at, fingerprint, forget_at) = row;
    let invalid = |e: PersistError| crate::corrupt(format!("a spent key: {e}"));
    Ok(SpentKey::stored(
        IdempotencyKey::new(key).map_err(invalid)?,
        MessageId::new(message_id).map_err(invalid)?,
        u64::try_from(seq).unwrap_or_default(),
        parent_seq.and_then(|parent| u64::try_from(parent).ok()),
        Timestamp::from_micros(created_at),
        fingerprint,
        Timestamp::from_micros(forget_at),
    ))
}
