//! Idempotency keys that outlive their messages.
//!
//! A key names a request, not a row: once the message a keyed `add` or `reserve` wrote is
//! deleted (a delete, a pop, a truncation, retention, what a summary covered), a retry of that
//! request must still answer what the first call answered and write nothing, or a client that
//! retried after a lost answer would bring the deleted message back. So when a keyed message is
//! removed, the store keeps a [`SpentKey`]: the key, the message's id, seq, parent and time, and
//! a fingerprint of the request that wrote it (never its content). A request carrying a spent key
//! is answered with the message its first call wrote, rebuilt from the request itself
//! (`deduplicated: true`, nothing written), or refused with
//! [`IdempotencyKeyReused`](PersistError::IdempotencyKeyReused) when it is another request.
//!
//! Spent keys are answered for the store's key retention after the message went
//! ([`DEFAULT_KEY_RETENTION`], 24 hours, as Stripe keeps keys; each backend's builder sets
//! another), then forgotten: a write with the key is then new. The SQL stores drop forgotten
//! keys at the thread's next removal; a thread's keys go with it when it is deleted. A message
//! that had changed before it went is answered rebuilt from the retry (its first request can
//! no longer be told). Copies (export, `persist copy`, tenant moves) carry no spent keys. The
//! rules are the same on every backend.
//!
//! # Example
//!
//! ```
//! use persist::args::{Add, Delete};
//! use persist::memory::MemoryBackend;
//! use persist::{Content, IdempotencyKey, Pipeline, Role, ThreadId};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::new(MemoryBackend::new());
//! let thread = ThreadId::new("t1")?;
//! let add = Add::new(thread.clone(), Role::User, Content::text("hi"))
//!     .with_idempotency_key(IdempotencyKey::new("req-1")?);
//! let first = pipeline.add(add.clone()).await?;
//! pipeline.delete(Delete::message(thread.clone(), first.message.id.clone())).await?;
//! // The answer to the first call was lost; the client retries.
//! let again = pipeline.add(add).await?;
//! assert!(again.deduplicated && again.message == first.message);
//! assert!(pipeline.list(persist::read::ListMessages::new(thread)).await?.items.is_empty());
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use super::args::PersistArgs;
use crate::model::error::PersistError;
use crate::model::id::{IdempotencyKey, MessageId, ThreadId};
use crate::model::json;
use crate::model::{Content, Message, Metadata, Role, Status, Timestamp};

/// How long a store remembers a key after its message was removed, unless its builder says
/// otherwise: 24 hours.
pub const DEFAULT_KEY_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// The namespace of request fingerprints.
const NAMESPACE: Uuid = Uuid::from_u128(0x3b9d_51c2_7e04_4f6a_8c1d_95e2_0a7b_6d13);

/// What a store keeps of an idempotency key once its message is removed; see the
/// [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpentKey {
    /// The key.
    pub key: IdempotencyKey,
    /// The message its request wrote.
    pub message_id: MessageId,
    /// That message's seq.
    pub seq: u64,
    /// That message's parent, as stored ([`Message::parent_seq`]).
    pub parent_seq: Option<u64>,
    /// When that message was written.
    pub created_at: Timestamp,
    /// The fingerprint of the request ([`fingerprint`]), or `None` when the message had changed
    /// before it was removed (a reservation filled, metadata merged): its request can no longer
    /// be told, and any request with the key is taken as its repeat, as for a stored message
    /// ([`Message::is_keyed_repeat_of`]).
    pub fingerprint: Option<String>,
    /// Until when the store remembers it: its key retention after the message was removed.
    pub forget_at: Timestamp,
}

impl SpentKey {
    /// The spent key `message` leaves when it is removed at `spent_at` from a store that keeps
    /// keys for `retention`; `None` for a message written without a key.
    pub fn of(message: &Message, spent_at: Timestamp, retention: Duration) -> Option<Self> {
        let key = message.idempotency_key.clone()?;
        let fingerprint = match (message.version, message.status) {
            (1, Status::Complete) => {
                Some(fingerprint_of(Status::Complete, &message.role, &message.metadata, Some(&message.content)))
            }
            (1, Status::Reserved) => Some(fingerprint_of(Status::Reserved, &message.role, &message.metadata, None)),
            _ => None,
        };
        Some(Self {
            key,
            message_id: message.id.clone(),
            seq: message.seq,
            parent_seq: message.parent_seq,
            created_at: message.created_at,
            fingerprint,
            forget_at: spent_at.saturating_add(retention),
        })
    }

    /// A spent key as a store read it back. For backends.
    pub fn stored(
        key: IdempotencyKey,
        message_id: MessageId,
        seq: u64,
        parent_seq: Option<u64>,
        created_at: Timestamp,
        fingerprint: Option<String>,
        forget_at: Timestamp,
    ) -> Self {
        Self { key, message_id, seq, parent_seq, created_at, fingerprint, forget_at }
    }

    /// Whether the store still remembers it at `now`.
    pub fn is_remembered(&self, now: Timestamp) -> bool {
        self.forget_at > now
    }

    /// The answer to `args` (an `add` or a `reserve` carrying this key in `thread_id`): the
    /// message its first call wrote, as it answered it.
    ///
    /// # Errors
    ///
    /// [`PersistError::IdempotencyKeyReused`] when `args` is another request than the one that
    /// used the key (another operation, role, metadata or content).
    pub fn repeat(&self, thread_id: &ThreadId, args: &PersistArgs) -> Result<Message, PersistError> {
        let reused = || PersistError::IdempotencyKeyReused {
            thread_id: thread_id.clone(),
            idempotency_key: self.key.clone(),
            message_id: self.message_id.clone(),
        };
        let (role, content, metadata, status) = match args {
            PersistArgs::Add(add) => (&add.role, add.content.clone(), &add.metadata, Status::Complete),
            PersistArgs::Reserve(reserve) => {
                (&reserve.role, Content::placeholder(), &reserve.metadata, Status::Reserved)
            }
            _ => return Err(reused()),
        };
        if self.fingerprint.as_ref().is_some_and(|stored| *stored != fingerprint(args).unwrap_or_default()) {
            return Err(reused());
        }
        Ok(Message {
            thread_id: thread_id.clone(),
            id: self.message_id.clone(),
            role: role.clone(),
            content,
            metadata: metadata.clone(),
            status,
            seq: self.seq,
            parent_seq: self.parent_seq,
            version: 1,
            idempotency_key: Some(self.key.clone()),
            created_at: self.created_at,
            updated_at: self.created_at,
        })
    }
}

/// The fingerprint of an `add` or a `reserve` (`None` for another request): 32 hex digits
/// naming its operation, role, metadata and (for an `add`) content, compared by value as stored
/// messages are (keys in any order, `1.0` equal to `1`), so one request has one fingerprint on
/// every backend whatever form it stores JSON in.
pub fn fingerprint(args: &PersistArgs) -> Option<String> {
    match args {
        PersistArgs::Add(add) => Some(fingerprint_of(Status::Complete, &add.role, &add.metadata, Some(&add.content))),
        PersistArgs::Reserve(reserve) => Some(fingerprint_of(Status::Reserved, &reserve.role, &reserve.metadata, None)),
        _ => None,
    }
}

fn fingerprint_of(status: Status, role: &Role, metadata: &Metadata, content: Option<&Content>) -> String {
    let mut text = String::new();
    text.push_str(status.as_str());
    text.push('\u{1f}');
    text.push_str(role.as_str());
    text.push('\u{1f}');
    text.push_str(&json::by_value(&Value::Object(metadata.as_map().clone())));
    text.push('\u{1f}');
    if let Some(content) = content {
        text.push_str(&json::by_value(&content.to_value()));
    }
    Uuid::new_v5(&NAMESPACE, text.as_bytes()).simple().to_string()
}
