//! When an `add` or a `reserve` repeats the write that created a stored message: the rules
//! every backend applies to ids and idempotency keys already taken.

use super::args::PersistArgs;
use crate::model::error::PersistError;
use crate::model::{Message, Status};

impl Message {
    /// Whether `args` (an `add` or a `reserve` naming this message's id) repeats the write
    /// that created this message: same role, metadata and idempotency key, and for `add` the
    /// same content on a complete message. Backends answer such a repeat with the stored
    /// message (`deduplicated: true`) and anything else with `AlreadyExists`.
    pub fn is_repeat_of(&self, args: &PersistArgs) -> bool {
        match args {
            PersistArgs::Add(add) => {
                self.status == Status::Complete
                    && self.role == add.role
                    && self.content == add.content
                    && self.metadata == add.metadata
                    && self.idempotency_key == add.idempotency_key
            }
            PersistArgs::Reserve(reserve) => {
                self.role == reserve.role
                    && self.metadata == reserve.metadata
                    && self.idempotency_key == reserve.idempotency_key
            }
            _ => false,
        }
    }

    /// Whether `args` (an `add` or a `reserve` carrying this message's idempotency key) is the
    /// request that wrote this message, sent again; otherwise the key was reused for another
    /// request, which backends refuse with
    /// [`IdempotencyKeyReused`](PersistError::IdempotencyKeyReused).
    ///
    /// The key names the request, so the message id it carries does not count (a retry may
    /// give each attempt its own). While the message is as its request wrote it (version 1),
    /// the operation, role, metadata and (for `add`) content must match, compared by value.
    /// Once it changed (a reservation filled, metadata merged), the original request can no
    /// longer be told from the message, and a request with the key is taken as its repeat.
    pub fn is_keyed_repeat_of(&self, args: &PersistArgs) -> bool {
        if self.version > 1 {
            return true;
        }
        match args {
            PersistArgs::Add(add) => {
                self.status == Status::Complete
                    && self.role == add.role
                    && self.metadata == add.metadata
                    && self.content == add.content
            }
            PersistArgs::Reserve(reserve) => {
                self.status == Status::Reserved && self.role == reserve.role && self.metadata == reserve.metadata
            }
            _ => false,
        }
    }

    /// The stored message `args` repeats (`deduplicated: true`), or the refusal of a key
    /// reused for another request; see [`is_keyed_repeat_of`](Self::is_keyed_repeat_of).
    ///
    /// # Errors
    ///
    /// [`PersistError::IdempotencyKeyReused`].
    pub fn keyed_repeat(self, args: &PersistArgs) -> Result<Self, PersistError> {
        if self.is_keyed_repeat_of(args) {
            return Ok(self);
        }
        match self.idempotency_key {
            Some(idempotency_key) => Err(PersistError::IdempotencyKeyReused {
                thread_id: self.thread_id,
                idempotency_key,
                message_id: self.id,
            }),
            None => Err(PersistError::AlreadyExists { thread_id: self.thread_id, message_id: self.id }),
        }
    }
}
