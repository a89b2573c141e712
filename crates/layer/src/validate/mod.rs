//! Refuse writes over configured size limits, before they reach the store.
//!
//! [`Limits`] bounds content bytes, metadata bytes and nesting depth, and id lengths; a write
//! over a limit is `InvalidInput` naming the field and the limit, and never reaches the
//! backend. Sizes are of the compact JSON encoding.
//!
//! # Example
//!
//! ```
//! use persist::{args::Add, layer::{Limits, ValidateLayer}, Content, PersistError, Pipeline, Role, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder()
//!     .layer(ValidateLayer::new(Limits::new().max_content_bytes(64)))
//!     .build(MemoryBackend::new());
//! let big = Add::new(ThreadId::new("t1")?, Role::User, Content::text("x".repeat(100)));
//! let err = pipeline.add(big).await.unwrap_err();
//! assert!(matches!(err, PersistError::InvalidInput { field: "content", .. }));
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod layer;

use std::ops::ControlFlow;

pub use self::layer::ValidateLayer;
use crate::intercept::{Decision, Interceptor};
use persist_core::{Content, MAX_ID_BYTES, Metadata, PersistArgs, PersistError};

/// Size limits; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    max_content_bytes: usize,
    max_metadata_bytes: usize,
    max_metadata_depth: usize,
    max_id_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_content_bytes: 1 << 20,
            max_metadata_bytes: 64 << 10,
            max_metadata_depth: 16,
            max_id_bytes: MAX_ID_BYTES,
        }
    }
}

impl Limits {
    /// 1 MiB of content, 64 KiB of metadata nested at most 16 deep, ids of 255 bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest content, in bytes of JSON.
    pub fn max_content_bytes(mut self, bytes: usize) -> Self {
        self.max_content_bytes = bytes;
        self
    }

    /// Largest metadata object (or patch), in bytes of JSON.
    pub fn max_metadata_bytes(mut self, bytes: usize) -> Self {
        self.max_metadata_bytes = bytes;
        self
    }

    /// Deepest nesting of metadata (`1` = an object of scalars).
    pub fn max_metadata_depth(mut self, depth: usize) -> Self {
        self.max_metadata_depth = depth;
        self
    }

    /// Longest thread, message or idempotency-key id, in bytes (at most 255 anyway).
    pub fn max_id_bytes(mut self, bytes: usize) -> Self {
        self.max_id_bytes = bytes.min(MAX_ID_BYTES);
        self
    }

    /// Checks `args` against the limits.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming the first field over its limit.
    pub fn check(&self, args: &PersistArgs) -> Result<(), PersistError> {
        if let PersistArgs::Restore(restore) = args {
            // Every message of a restore, as if each were added.
            self.check_ids(Some(restore.thread.id.as_str()), None, None)?;
            self.check_metadata(&restore.thread.metadata)?;
            for message in &restore.messages {
                let key = message.idempotency_key.as_ref().map(|k| k.as_str());
                self.check_ids(None, Some(message.id.as_str()), key)?;
                self.check_content(&message.content)?;
                self.check_metadata(&message.metadata)?;
            }
            return Ok(());
        }
        if let PersistArgs::AppendTurn(turn) = args {
            // Every message of a turn, as if each were added.
            self.check_ids(Some(turn.thread_id.as_str()), None, turn.idempotency_key.as_ref().map(|k| k.as_str()))?;
            for message in &turn.messages {
                let key = message.idempotency_key.as_ref().map(|k| k.as_str());
                self.check_ids(None, message.message_id.as_ref().map(|id| id.as_str()), key)?;
                self.check_content(&message.content)?;
                self.check_metadata(&message.metadata)?;
            }
            return Ok(());
        }
        self.check_ids(
            args.thread_id().map(|id| id.as_str()),
            args.message_id().map(|id| id.as_str()),
            idempotency_key(args),
        )?;
        if let Some(content) = args.content() {
            self.check_content(content)?;
        }
        if let Some(metadata) = args.metadata() {
            self.check_metadata(metadata)?;
        }
        Ok(())
    }

    fn check_ids(&self, thread: Option<&str>, message: Option<&str>, key: Option<&str>) -> Result<(), PersistError> {
        for (field, id) in [("thread_id", thread), ("message_id", message), ("idempotency_key", key)] {
            if let Some(id) = id.filter(|id| id.len() > self.max_id_bytes) {
                return Err(PersistError::invalid(
                    field,
                    format!("is {} bytes, the limit is {}", id.len(), self.max_id_bytes),
                ));
            }
        }
        Ok(())
    }

    fn check_content(&self, content: &Content) -> Result<(), PersistError> {
        let size = content.json_len();
        if size > self.max_content_bytes {
            return Err(PersistError::invalid(
                "content",
                format!("is {size} bytes of JSON, the limit is {}", self.max_content_bytes),
            ));
        }
        Ok(())
    }

    fn check_metadata(&self, metadata: &Metadata) -> Result<(), PersistError> {
        let size = metadata.json_len();
        if size > self.max_metadata_bytes {
            return Err(PersistError::invalid(
                "metadata",
                format!("is {size} bytes of JSON, the limit is {}", self.max_metadata_bytes),
            ));
        }
        let depth = metadata.depth();
        if depth > self.max_metadata_depth {
            return Err(PersistError::invalid(
                "metadata",
                format!("is nested {depth} deep, the limit is {}", self.max_metadata_depth),
            ));
        }
        Ok(())
    }
}

fn idempotency_key(args: &PersistArgs) -> Option<&str> {
    match args {
        PersistArgs::Add(add) => add.idempotency_key.as_ref().map(|k| k.as_str()),
        PersistArgs::Reserve(reserve) => reserve.idempotency_key.as_ref().map(|k| k.as_str()),
        _ => None,
    }
}

impl Interceptor for Limits {
    fn intercept(&self, args: PersistArgs) -> Decision {
        match self.check(&args) {
            Ok(()) => ControlFlow::Continue(args),
            Err(error) => ControlFlow::Break(Err(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use persist_core::args::Restore;
    use persist_core::{Message, MessageId, Role, Thread, ThreadId, Timestamp};

    fn restore(content: Content, metadata: Metadata) -> PersistArgs {
        let id = ThreadId::new("t").unwrap();
        let at = Timestamp::from_micros(1);
        let thread = Thread::stored(id.clone(), 1, at);
        let mut message = Message::stored(id, MessageId::new("m").unwrap(), 1, Role::User, content, at);
        message.metadata = metadata;
        Restore::new(thread, vec![message]).into()
    }

    /// A restore is held to the limits message by message, as the adds it stands for.
    #[test]
    fn every_restored_message_is_held_to_the_limits() {
        let limits = Limits::new().max_content_bytes(64).max_metadata_bytes(32);
        assert!(limits.check(&restore(Content::text("short"), Metadata::new())).is_ok());
        let long = restore(Content::text("x".repeat(100)), Metadata::new());
        assert!(matches!(limits.check(&long), Err(PersistError::InvalidInput { field: "content", .. })));
        let big = restore(Content::text("short"), Metadata::new().with("k", json!("y".repeat(40))));
        assert!(matches!(limits.check(&big), Err(PersistError::InvalidInput { field: "metadata", .. })));
    }
}
