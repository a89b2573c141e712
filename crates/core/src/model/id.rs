//! Validated opaque identifiers (the checks, and the constructors that run them, are in
//! `id_checks`).
//!
//! Every identifier in persist is a short string checked once, at construction: non-empty, at
//! most [`MAX_ID_BYTES`] bytes, no control characters. Backends can therefore bind ids into
//! SQL as they are, and no layer has to re-check them.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// The longest identifier accepted, in bytes.
pub const MAX_ID_BYTES: usize = 255;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Cloning is cheap (a reference count). Construction validates: non-empty, at most
        /// [`MAX_ID_BYTES`] bytes, no control characters.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub(in crate::model) Arc<str>);

        impl $name {
            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

id_type!(
    /// Identifies a thread (a conversation).
    ThreadId
);
id_type!(
    /// Identifies a message inside its thread.
    ///
    /// A message's identity is always the pair `(ThreadId, MessageId)`: the same `MessageId`
    /// in two threads names two different messages.
    MessageId
);
id_type!(
    /// Identifies a tenant: the namespace of its threads, whose identity is
    /// `(tenant, thread_id)`; see [`Context::tenant`](crate::Context).
    TenantId
);
id_type!(
    /// A caller-chosen key that makes `add` and `reserve` safe to retry.
    ///
    /// Unique per thread: a second write with the same key in the same thread returns the
    /// first write's message instead of creating another.
    IdempotencyKey
);
id_type!(
    /// Identifies one request as it travels through the pipeline (for logs and traces).
    RequestId
);
id_type!(
    /// Identifies an agent, for [session bindings](crate::session).
    AgentId
);
id_type!(
    /// A provider's session id (what a CLI's `--resume` takes).
    SessionId
);
id_type!(
    /// Names the provider that issued a session (`"claude-cli"`, `"openai-responses"`, …).
    ProviderId
);
id_type!(
    /// Names the runtime a session lives in (a machine, a container, a CLI install).
    RuntimeId
);
id_type!(
    /// Names what a [working memory](crate::working) document is about: a user, an agent, a
    /// project, as the host names it (within the request's tenant).
    ResourceId
);

impl MessageId {
    /// A fresh time-ordered id (UUIDv7, hyphenated).
    ///
    /// # Example
    ///
    /// ```
    /// use persist::MessageId;
    ///
    /// let a = MessageId::generate();
    /// let b = MessageId::generate();
    /// assert_ne!(a, b);
    /// assert_eq!(a.as_str().len(), 36);
    /// ```
    pub fn generate() -> Self {
        Self(Arc::from(uuid::Uuid::now_v7().hyphenated().to_string()))
    }
}

impl MessageId {
    /// A deterministic id for the message a provider produced as `item` in `turn` of
    /// `thread`: the same triple always gives the same id, and any other triple another.
    ///
    /// Providers reuse item ids across turns and across threads; an id derived from the item
    /// alone lets a new turn overwrite (or be mistaken for) an old one. Deriving from all three
    /// keeps retries idempotent (same triple, same id) without collisions. The id is a UUIDv5
    /// over the length-prefixed triple, so it is 36 bytes whatever the inputs.
    ///
    /// The tenant does not enter the derivation: a message's identity is
    /// `(tenant, thread, id)`, so the same derived id in two tenants' threads named alike is two
    /// different messages already, and ids derived before tenancy became identity stay valid.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{MessageId, ThreadId};
    ///
    /// let thread = ThreadId::new("chat-1").unwrap();
    /// let a = MessageId::derive(&thread, "turn-3", "msg_abc");
    /// assert_eq!(a, MessageId::derive(&thread, "turn-3", "msg_abc"));
    /// assert_ne!(a, MessageId::derive(&thread, "turn-4", "msg_abc"));
    /// assert_ne!(a, MessageId::derive(&ThreadId::new("chat-2").unwrap(), "turn-3", "msg_abc"));
    /// ```
    pub fn derive(thread: &ThreadId, turn: &str, item: &str) -> Self {
        let name = format!("{}:{}|{}:{}|{}:{}", thread.0.len(), thread.0, turn.len(), turn, item.len(), item);
        Self(Arc::from(uuid::Uuid::new_v5(&DERIVED_ID_NAMESPACE, name.as_bytes()).hyphenated().to_string()))
    }
}

/// The UUIDv5 namespace of [`MessageId::derive`] (fixed forever: changing it changes every id).
const DERIVED_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6f1c_2b8e_5a0d_4c39_9e47_0b5d_8a21_c3f4);

impl RequestId {
    /// A fresh time-ordered request id (UUIDv7).
    pub fn generate() -> Self {
        Self(Arc::from(uuid::Uuid::now_v7().hyphenated().to_string()))
    }
}
