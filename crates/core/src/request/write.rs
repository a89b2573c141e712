//! The writes: [`Add`], [`Reserve`], [`UpdateContent`], [`Update`], [`Delete`] and their
//! [`Target`], each with its builder and the rules a backend applies to it.

use serde::{Deserialize, Serialize};

use super::branch::{Parent, Switch};
use crate::context::{Context, context_setter};
use crate::model::embedding::Embedding;
use crate::model::error::PersistError;
use crate::model::id::{IdempotencyKey, MessageId, ThreadId};
use crate::model::{Content, Metadata, Role};

mod delete;

pub use self::delete::{Attached, Delete};
pub use super::update_content::{MAX_APPEND_JOINS, UpdateContent, appends_kept_racing};

/// The longest thread title accepted, in bytes.
pub const MAX_TITLE_BYTES: usize = 1024;

/// The setters of a message's write, one per word, shared by [`Add`], [`Reserve`] and
/// [`TurnMessage`](crate::args::TurnMessage): `id` (`with_id`), `metadata`, `idempotency_key`,
/// `parent` (`with_…` each).
macro_rules! message_setters {
    (@id) => {
        /// Uses an id chosen by the caller (a provider item id, a legacy id).
        pub fn with_id(mut self, id: $crate::MessageId) -> Self {
            self.message_id = Some(id);
            self
        }
    };
    (@metadata) => {
        /// Sets the metadata.
        pub fn with_metadata(mut self, metadata: $crate::Metadata) -> Self {
            self.metadata = metadata;
            self
        }
    };
    (@idempotency_key) => {
        /// Sets the idempotency key.
        pub fn with_idempotency_key(mut self, key: $crate::IdempotencyKey) -> Self {
            self.idempotency_key = Some(key);
            self
        }
    };
    (@parent) => {
        /// Places the message in the thread's tree: a message id (or [`Parent::Message`]) writes it
        /// after that message, starting a new branch there when it already has a child (an edit, a
        /// regenerated reply); [`Parent::Root`] makes it a root. Either way it ends the active
        /// branch. A message the thread does not have is `NotFound`.
        pub fn with_parent(mut self, parent: impl Into<$crate::branch::Parent>) -> Self {
            self.parent = parent.into();
            self
        }
    };
    ($($what:ident),+) => {
        $($crate::request::write::message_setters!(@$what);)+
    };
}
pub(crate) use message_setters;

/// Appends a complete message to a thread, creating the thread on its first write.
///
/// # Example
///
/// ```
/// use persist::{args::Add, Content, IdempotencyKey, Role, ThreadId};
///
/// let add = Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))
///     .with_idempotency_key(IdempotencyKey::new("turn-1")?);
/// assert!(add.message_id.is_none()); // the backend generates a UUIDv7
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Add {
    /// The thread to append to.
    pub thread_id: ThreadId,
    /// The message's id; generated (UUIDv7) when `None`.
    pub message_id: Option<MessageId>,
    /// Who wrote it.
    pub role: Role,
    /// The content.
    pub content: Content,
    /// Metadata.
    pub metadata: Metadata,
    /// Makes the write safe to retry: a repeat returns the first message.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Where the message goes in the thread's tree: after the active branch's last message
    /// unless set (see [`branch`](crate::branch)).
    #[serde(default, skip_serializing_if = "Parent::is_active")]
    pub parent: Parent,
    /// The message's embedding, written in the message's own transaction (see
    /// [`with_embedding`](Self::with_embedding)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Embedding>,
    /// Request context.
    pub context: Context,
}

impl Add {
    /// A message of `role` with `content` in `thread_id`.
    pub fn new(thread_id: ThreadId, role: Role, content: impl Into<Content>) -> Self {
        Self {
            thread_id,
            message_id: None,
            role,
            content: content.into(),
            metadata: Metadata::new(),
            idempotency_key: None,
            parent: Parent::Active,
            embedding: None,
            context: Context::new(),
        }
    }

    message_setters!(id, metadata, idempotency_key);

    /// Writes `embedding` with the message, in the same transaction: the message and its vector
    /// are stored together or not at all (see [`vector`](crate::vector)). It needs a backend
    /// with [`Capabilities::vectors`](crate::Capabilities::vectors). A vector the store refuses
    /// (another length than its model's in this tenant) refuses the whole add, whatever else
    /// the add would have met (a repeat included); a repeat answered `deduplicated` writes
    /// nothing, its embedding included.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::memory::MemoryBackend;
    /// use persist::vector::{Embedding, Nearest};
    /// use persist::{args::Add, Content, Pipeline, Role, ThreadId};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let add = Add::new(ThreadId::new("t1")?, Role::User, Content::text("Lisbon in May?"))
    ///     .with_embedding(Embedding::new("my-model", vec![0.9, 0.1]));
    /// let added = pipeline.add(add).await?;
    /// let found = pipeline.nearest(Nearest::new(Embedding::new("my-model", vec![1.0, 0.0]))).await?;
    /// assert_eq!(found[0].message.id, added.message.id);
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    pub fn with_embedding(mut self, embedding: Embedding) -> Self {
        self.embedding = Some(embedding);
        self
    }

    message_setters!(parent);

    context_setter!();
}

/// Appends a placeholder message (status `Reserved`, content `[]`) whose id can stamp every
/// streamed event before any content exists; [`UpdateContent`] fills and finalizes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Reserve {
    /// The thread to append to.
    pub thread_id: ThreadId,
    /// The message's id; generated (UUIDv7) when `None`.
    pub message_id: Option<MessageId>,
    /// Who will write it (usually the assistant).
    pub role: Role,
    /// Metadata.
    pub metadata: Metadata,
    /// Makes the reservation safe to retry.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Where the placeholder goes in the thread's tree: after the active branch's last message
    /// unless set (a regenerated reply names the message it answers).
    #[serde(default, skip_serializing_if = "Parent::is_active")]
    pub parent: Parent,
    /// Request context.
    pub context: Context,
}

impl Reserve {
    /// A placeholder for `role` in `thread_id`.
    pub fn new(thread_id: ThreadId, role: Role) -> Self {
        Self {
            thread_id,
            message_id: None,
            role,
            metadata: Metadata::new(),
            idempotency_key: None,
            parent: Parent::Active,
            context: Context::new(),
        }
    }

    /// Uses an id chosen by the caller.
    pub fn with_id(mut self, id: MessageId) -> Self {
        self.message_id = Some(id);
        self
    }

    message_setters!(metadata, idempotency_key, parent);

    context_setter!();
}

/// What an [`Update`] or a [`Delete`] applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// One message of the thread.
    Message(MessageId),
    /// The thread itself.
    Thread,
    /// Every message of the thread with a `seq` greater than this one (a [`Delete`] only:
    /// truncation, see [`Delete::after`]).
    MessagesAfter(u64),
    /// The messages the latest summary of the thread's active branch covers (a [`Delete`]
    /// only: see [`Delete::covered`]).
    Covered,
}

/// Patches a message (metadata, role) or a thread (metadata, title).
///
/// The metadata patch is merged atomically: keys set to `null` are removed, others replaced,
/// keys not named are kept, so concurrent patches of different keys all survive.
///
/// # Example
///
/// ```
/// use persist::{args::Update, Metadata, MessageId, ThreadId};
/// use serde_json::json;
///
/// let thread = ThreadId::new("t1")?;
/// let patch = Update::message(thread.clone(), MessageId::new("m1")?)
///     .with_metadata(Metadata::new().with("rating", json!(5)));
/// let rename = Update::thread(thread).with_title(Some("Trip plans".into()));
/// # let _ = (patch, rename);
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Update {
    /// The thread.
    pub thread_id: ThreadId,
    /// A message of the thread, or the thread itself.
    pub target: Target,
    /// Metadata to merge.
    pub metadata: Option<Metadata>,
    /// New role (messages only).
    pub role: Option<Role>,
    /// New title, or `Some(None)` to clear it (threads only).
    pub title: Option<Option<String>>,
    /// Fail with `VersionConflict` unless the target's stored version equals this.
    pub expected_version: Option<u64>,
    /// Makes another branch active (threads only; see [`branch`](crate::branch)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<Switch>,
    /// Request context.
    pub context: Context,
}

impl Update {
    /// Patches message `message_id` of `thread_id`.
    pub fn message(thread_id: ThreadId, message_id: MessageId) -> Self {
        Self::new(thread_id, Target::Message(message_id))
    }

    /// Patches the thread itself.
    pub fn thread(thread_id: ThreadId) -> Self {
        Self::new(thread_id, Target::Thread)
    }

    fn new(thread_id: ThreadId, target: Target) -> Self {
        Self {
            thread_id,
            target,
            metadata: None,
            role: None,
            title: None,
            expected_version: None,
            switch: None,
            context: Context::new(),
        }
    }

    /// Merges `patch` into the target's metadata.
    pub fn with_metadata(mut self, patch: Metadata) -> Self {
        self.metadata = Some(patch);
        self
    }

    /// Changes a message's role.
    pub fn with_role(mut self, role: Role) -> Self {
        self.role = Some(role);
        self
    }

    /// Sets (or with `None`, clears) a thread's title.
    pub fn with_title(mut self, title: Option<String>) -> Self {
        self.title = Some(title);
        self
    }

    /// Adds an optimistic-concurrency precondition.
    pub fn with_expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// Makes another branch of the thread active (threads only): the thread's
    /// [`active_leaf`](crate::Thread::active_leaf) moves, and its version with it, so two
    /// clients switching at once can each name the version they saw. A message the thread does
    /// not have is `NotFound`.
    pub fn with_switch(mut self, switch: Switch) -> Self {
        self.switch = Some(switch);
        self
    }

    context_setter!();
}

/// The refusal of U+0000 in `field`.
pub(crate) fn nul(field: &'static str) -> PersistError {
    PersistError::invalid(field, "contains U+0000 (NUL), which is not stored")
}

impl Target {
    /// The message id, for a message target.
    pub fn message_id(&self) -> Option<&MessageId> {
        match self {
            Self::Message(id) => Some(id),
            Self::Thread | Self::MessagesAfter(_) | Self::Covered => None,
        }
    }
}
