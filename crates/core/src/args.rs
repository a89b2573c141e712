//! [`PersistArgs`]: one typed request per write operation, and the [`Context`] each carries.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::error::{PersistError, Result};
use crate::feed::ReadFeed;
use crate::id::{IdempotencyKey, MessageId, RequestId, TenantId, ThreadId};
use crate::message::{Content, Metadata, Role};
use crate::op::PersistOp;
use crate::read::{FindStranded, GetMessage, GetThread, ListMessages, ListThreads, Ping};
pub use crate::restore::Restore;
use crate::session::{Bind, InvalidateSession, ListBindings, ResetSession, Resolve};

/// The longest thread title accepted, in bytes.
pub const MAX_TITLE_BYTES: usize = 1024;

/// What every request carries besides its operation: a request id, who is asking, and typed
/// extensions that layers use to pass values to each other.
///
/// The [tenant](Self::tenant) is part of every thread's identity: a thread is
/// `(tenant, thread_id)`, so two tenants each have their own `general`, and a request reaches
/// only the threads of its context's tenant. A context without a tenant addresses the threads
/// that have none; trusted host code that must reach a tenant's thread names that tenant. The
/// backend keys every row by the tenant inside the write's own transaction, so isolation never
/// depends on a layer remembering to check, and no answer differs between "another tenant has
/// this id" and "nobody has this id".
///
/// # Example
///
/// ```
/// use persist::{Context, TenantId};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Origin(&'static str);
///
/// let ctx = Context::new()
///     .with_tenant(TenantId::new("acme").unwrap())
///     .with_extension(Origin("web"));
/// assert_eq!(ctx.tenant().unwrap().as_str(), "acme");
/// assert_eq!(ctx.extensions().get::<Origin>(), Some(&Origin("web")));
/// assert_eq!(ctx.request_id(), ctx.request_id()); // generated once, on first use
/// ```
#[derive(Debug, Clone, Default)]
pub struct Context {
    // Allocated on first use: most writes carry an empty context, and a request that is
    // moved through every layer of a stack stays small (16 bytes here instead of 64).
    inner: OnceLock<Box<ContextInner>>,
}

#[derive(Debug, Clone, Default)]
struct ContextInner {
    request_id: OnceLock<RequestId>,
    tenant: Option<TenantId>,
    principal: Option<Arc<str>>,
    extensions: http::Extensions,
}

impl Context {
    /// An empty context: no tenant (the threads that have none), no principal, a request id
    /// generated on first use.
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self) -> Option<&ContextInner> {
        self.inner.get().map(|inner| &**inner)
    }

    fn edit(mut self, edit: impl FnOnce(&mut ContextInner)) -> Self {
        let mut inner = self.inner.take().unwrap_or_default();
        edit(&mut inner);
        Self { inner: OnceLock::from(inner) }
    }

    /// This request's id, generated (UUIDv7) the first time it is asked for.
    pub fn request_id(&self) -> &RequestId {
        self.inner.get_or_init(Box::default).request_id.get_or_init(RequestId::generate)
    }

    /// Sets the request id (e.g. the id of the HTTP request that caused this write).
    pub fn with_request_id(self, id: RequestId) -> Self {
        self.edit(|inner| inner.request_id = OnceLock::from(id))
    }

    /// The tenant whose threads this request addresses; `None` addresses the threads without a
    /// tenant.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.get().and_then(|inner| inner.tenant.as_ref())
    }

    /// Addresses `tenant`'s threads (and only those).
    pub fn with_tenant(self, tenant: TenantId) -> Self {
        self.edit(|inner| inner.tenant = Some(tenant))
    }

    /// The same context addressing `tenant`'s threads; `None` addresses the threads without a
    /// tenant. For trusted code that names a tenant it learned elsewhere (a thread listed
    /// [across tenants](crate::read::ListThreads::across_tenants), a stranded reservation).
    pub fn for_tenant(self, tenant: Option<TenantId>) -> Self {
        match (tenant, self.tenant()) {
            (None, None) => self,
            (tenant, _) => self.edit(|inner| inner.tenant = tenant),
        }
    }

    /// Who is acting (a user or service id), for audit layers. Not used for access control.
    pub fn principal(&self) -> Option<&str> {
        self.get().and_then(|inner| inner.principal.as_deref())
    }

    /// The same tenant, principal and extensions, with a request id of its own (generated on
    /// first use): for a handle that sends many requests on behalf of one caller.
    pub fn renewed(&self) -> Self {
        match self.get() {
            None => Self::new(),
            Some(inner) => Self::new().edit(|fresh| {
                fresh.tenant = inner.tenant.clone();
                fresh.principal = inner.principal.clone();
                fresh.extensions = inner.extensions.clone();
            }),
        }
    }

    /// Sets the principal.
    pub fn with_principal(self, principal: impl Into<Arc<str>>) -> Self {
        let principal = principal.into();
        self.edit(|inner| inner.principal = Some(principal))
    }

    /// Typed values attached by the host or by layers.
    pub fn extensions(&self) -> &http::Extensions {
        static EMPTY: std::sync::LazyLock<http::Extensions> = std::sync::LazyLock::new(http::Extensions::new);
        self.get().map_or(&*EMPTY, |inner| &inner.extensions)
    }

    /// Mutable access to the extensions.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        if self.inner.get().is_none() {
            *self = std::mem::take(self).edit(|_| {});
        }
        match self.inner.get_mut() {
            Some(inner) => &mut inner.extensions,
            None => unreachable!("the storage was created above"),
        }
    }

    /// Attaches a typed value.
    pub fn with_extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions_mut().insert(value);
        self
    }
}

#[derive(Serialize, Deserialize)]
struct ContextRepr {
    request_id: RequestId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<TenantId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    principal: Option<Arc<str>>,
}

/// Serializes the request id, tenant and principal; extensions are process-local and skipped.
impl Serialize for Context {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        ContextRepr {
            request_id: self.request_id().clone(),
            tenant: self.tenant().cloned(),
            principal: self.get().and_then(|inner| inner.principal.clone()),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let repr = ContextRepr::deserialize(deserializer)?;
        Ok(Self::new().edit(|inner| {
            inner.request_id = OnceLock::from(repr.request_id);
            inner.tenant = repr.tenant;
            inner.principal = repr.principal;
        }))
    }
}

/// `with_context`, the setter every request has.
macro_rules! context_setter {
    () => {
        /// Replaces the request's [`Context`](crate::Context).
        pub fn with_context(mut self, context: crate::Context) -> Self {
            self.context = context;
            self
        }
    };
}
pub(crate) use context_setter;

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
            context: Context::new(),
        }
    }

    /// Uses an id chosen by the caller (a provider item id, a legacy id).
    pub fn with_id(mut self, id: MessageId) -> Self {
        self.message_id = Some(id);
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

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
            context: Context::new(),
        }
    }

    /// Uses an id chosen by the caller.
    pub fn with_id(mut self, id: MessageId) -> Self {
        self.message_id = Some(id);
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    context_setter!();
}

/// Writes a message's content: the final content ([`new`](Self::new)), or a streamed reply's
/// progress ([`appending`](Self::appending) a token, [`partial`](Self::partial) text so far)
/// then its end ([`finishing`](Self::finishing), or a final `new`).
///
/// Only a final replacement finalizes by default (`Reserved` → `Complete`): a token never
/// marks a reply done by accident. A complete message takes final replacements only: an
/// append or a partial write to it is refused with [`PersistError::MessageComplete`] and
/// changes nothing (a token retried or sent after the final update would reopen or extend a
/// finished reply), on every backend.
///
/// # Example
///
/// ```
/// use persist::{args::{Reserve, UpdateContent}, memory::MemoryBackend, Content, Pipeline, PersistError, Role, ThreadId};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let pipeline = Pipeline::new(MemoryBackend::new());
/// let thread = ThreadId::new("t1")?;
/// let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await?.message;
/// for token in ["Hel", "lo"] {
///     // Each token alone: the store joins it to the text so far; the reply stays reserved.
///     let token = UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text(token));
///     pipeline.update_content(token).await?;
/// }
/// let done = pipeline.update_content(UpdateContent::finishing(thread.clone(), reply.id.clone())).await?;
/// assert_eq!(done.message.content, Content::text("Hello"));
///
/// // A token after the end is refused; the reply stays as it was.
/// let late = UpdateContent::appending(thread, reply.id, Content::text("!"));
/// assert!(matches!(pipeline.update_content(late).await, Err(PersistError::MessageComplete { .. })));
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UpdateContent {
    /// The message's thread.
    pub thread_id: ThreadId,
    /// The message.
    pub message_id: MessageId,
    /// The new content, or with [`append`](Self::append) what to add to the stored one.
    pub content: Content,
    /// Add `content` to the stored content instead of replacing it (see
    /// [`Content::appended`]): a stream sends each token alone.
    #[serde(default)]
    pub append: bool,
    /// Whether to mark the message `Complete`: `true` for [`new`](Self::new) and
    /// [`finishing`](Self::finishing), `false` for [`appending`](Self::appending) and
    /// [`partial`](Self::partial).
    pub finalize: bool,
    /// Fail with `VersionConflict` unless the stored version equals this.
    pub expected_version: Option<u64>,
    /// Request context.
    pub context: Context,
}

impl UpdateContent {
    /// Sets `content` on `(thread_id, message_id)` and finalizes it.
    pub fn new(thread_id: ThreadId, message_id: MessageId, content: impl Into<Content>) -> Self {
        Self {
            thread_id,
            message_id,
            content: content.into(),
            append: false,
            finalize: true,
            expected_version: None,
            context: Context::new(),
        }
    }

    /// A streamed token: adds `content` to the stored content of `(thread_id, message_id)`
    /// (see [`Content::appended`]), leaving the message as it is (`Reserved`). The last token
    /// may finalize ([`with_finalize(true)`](Self::with_finalize)), or [`finishing`](Self::finishing)
    /// follows.
    pub fn appending(thread_id: ThreadId, message_id: MessageId, content: impl Into<Content>) -> Self {
        Self { append: true, finalize: false, ..Self::new(thread_id, message_id, content) }
    }

    /// A streamed reply's text so far, replacing the stored content without finalizing (what a
    /// host that resends the whole text writes; [`CoalesceLayer`](crate::layer::CoalesceLayer)
    /// keeps the latest of them).
    pub fn partial(thread_id: ThreadId, message_id: MessageId, content: impl Into<Content>) -> Self {
        Self { finalize: false, ..Self::new(thread_id, message_id, content) }
    }

    /// The end of a streamed reply: finalizes `(thread_id, message_id)` with the content its
    /// appends left (an append of nothing).
    pub fn finishing(thread_id: ThreadId, message_id: MessageId) -> Self {
        Self { append: true, ..Self::new(thread_id, message_id, Content::placeholder()) }
    }

    /// Whether this update may change only a message that is not complete yet: an append, or
    /// content not finalized.
    pub fn is_partial(&self) -> bool {
        self.append || !self.finalize
    }

    /// The refusal of this update by a message whose status is `status`
    /// ([`PersistError::MessageComplete`] for a [partial](Self::is_partial) update of a
    /// complete message); `None` when it may be written. For backends, after the version check.
    pub fn status_conflict(&self, status: crate::Status) -> Option<PersistError> {
        (self.is_partial() && status == crate::Status::Complete).then(|| PersistError::MessageComplete {
            thread_id: self.thread_id.clone(),
            message_id: self.message_id.clone(),
        })
    }

    /// The plain update an append comes to, given the message as stored: the joined content,
    /// expecting the stored version (what a backend applies in the write's transaction). For
    /// an update that does not append, itself.
    ///
    /// # Errors
    ///
    /// [`PersistError::VersionConflict`] when the update expects another version;
    /// [`PersistError::MessageComplete`] when the message is complete;
    /// [`PersistError::InvalidInput`] (`content`) when either content is not an array of
    /// blocks.
    pub fn resolved(&self, stored: &crate::Message) -> Result<Self> {
        if !self.append {
            return Ok(self.clone());
        }
        if let Some(expected) = self.expected_version.filter(|&v| v != stored.version) {
            return Err(PersistError::VersionConflict {
                thread_id: self.thread_id.clone(),
                message_id: Some(self.message_id.clone()),
                expected,
                actual: stored.version,
            });
        }
        if let Some(refusal) = self.status_conflict(stored.status) {
            return Err(refusal);
        }
        Ok(Self {
            content: stored.content.appended(&self.content)?,
            append: false,
            expected_version: Some(stored.version),
            ..self.clone()
        })
    }

    /// Whether to finalize (see [`finalize`](Self::finalize)).
    pub fn with_finalize(mut self, finalize: bool) -> Self {
        self.finalize = finalize;
        self
    }

    /// Adds an optimistic-concurrency precondition.
    pub fn with_expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    context_setter!();
}

impl Delete {
    /// The refusal of a thread delete whose [`expected_updated_at`](Self::expected_updated_at)
    /// is not the thread's `updated_at`; `None` when it holds (or names nothing). For backends.
    pub fn updated_at_conflict(&self, updated_at: crate::Timestamp) -> Option<PersistError> {
        let expected = self.expected_updated_at.filter(|&expected| expected != updated_at)?;
        let micros = |t: crate::Timestamp| u64::try_from(t.as_micros()).unwrap_or_default();
        Some(PersistError::VersionConflict {
            thread_id: self.thread_id.clone(),
            message_id: None,
            expected: micros(expected),
            actual: micros(updated_at),
        })
    }
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

    context_setter!();
}

/// Deletes one message, or a whole thread (leaving a tombstone that refuses later writes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Delete {
    /// The thread.
    pub thread_id: ThreadId,
    /// A message of the thread, or the thread itself.
    pub target: Target,
    /// Fail with `VersionConflict` unless the target's stored version equals this.
    pub expected_version: Option<u64>,
    /// A thread delete only: fail with `VersionConflict` unless the thread's `updated_at`
    /// equals this, i.e. nothing was written to the thread or its messages since it was read
    /// (a thread's version moves only with its own fields; adds and content updates move
    /// `updated_at`). The conflict's `expected` and `actual` are then times in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_updated_at: Option<crate::Timestamp>,
    /// Erase the thread for good; see [`Delete::purge`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub purge: bool,
    /// With [`purge`](Self::purge): leave no tombstone, so the id can be used again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub free_id: bool,
    /// Request context.
    pub context: Context,
}

impl Delete {
    /// Deletes message `message_id` of `thread_id`.
    pub fn message(thread_id: ThreadId, message_id: MessageId) -> Self {
        Self::new(thread_id, Target::Message(message_id))
    }

    /// Deletes the thread and every message in it.
    pub fn thread(thread_id: ThreadId) -> Self {
        Self::new(thread_id, Target::Thread)
    }

    /// Truncates the thread: deletes every message with a `seq` greater than `seq`, in one
    /// atomic step, for "edit a message and regenerate". Answers every id removed, in `seq`
    /// order (index layers purge them). A truncation that removes something bumps the thread's
    /// version and `updated_at`; `last_seq` stays, so removed seqs are never reused.
    /// [`with_expected_version`](Self::with_expected_version) compares the **thread's**
    /// version. An absent or deleted thread, or nothing after `seq`, answers an empty list.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{args::{Add, Delete}, Content, Pipeline, Role, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let thread = ThreadId::new("t1")?;
    /// for text in ["question", "first answer", "follow-up"] {
    ///     pipeline.add(Add::new(thread.clone(), Role::User, Content::text(text))).await?;
    /// }
    /// // The user edits the question: everything after it goes, in one step.
    /// let removed = pipeline.delete(Delete::after(thread.clone(), 1)).await?;
    /// assert_eq!(removed.message_ids.len(), 2);
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    pub fn after(thread_id: ThreadId, seq: u64) -> Self {
        Self::new(thread_id, Target::MessagesAfter(seq))
    }

    /// Erases the thread, for an erasure request: every message is deleted as
    /// [`thread`](Self::thread) deletes them, and its title and metadata are cleared too, so
    /// nothing it said stays in the store, not only hidden: the SQLite backend overwrites what it
    /// removes (`secure_delete`) and empties its write-ahead log once the purge is committed;
    /// PostgreSQL's old row versions are gone from every query at once, but stay on its disk
    /// (and WAL) until overwritten. A thread deleted earlier can be purged later: its tombstone
    /// is erased.
    ///
    /// What stays is a tombstone (id, tenant, times, `last_seq`, version), so a late writer still
    /// cannot bring the thread back; [`freeing_id`](Self::freeing_id) removes it as well, and
    /// the id can then be used again by a new thread (seqs start at 1 again).
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{args::{Add, Delete}, read::GetThread, Content, Pipeline, Role, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let thread = ThreadId::new("erase-me")?;
    /// pipeline.add(Add::new(thread.clone(), Role::User, Content::text("my address is …"))).await?;
    /// pipeline.delete(Delete::purge(thread.clone())).await?;
    /// let tombstone = pipeline.get_thread(GetThread::new(thread)).await?.unwrap();
    /// assert!(tombstone.is_deleted() && tombstone.title.is_none() && tombstone.metadata.is_empty());
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    pub fn purge(thread_id: ThreadId) -> Self {
        Self { purge: true, ..Self::new(thread_id, Target::Thread) }
    }

    /// Deletes the thread only if nothing was written to it since it was read at `updated_at`
    /// (see [`expected_updated_at`](Self::expected_updated_at)); retention uses it so that a
    /// thread written meanwhile is kept.
    pub fn with_expected_updated_at(mut self, updated_at: crate::Timestamp) -> Self {
        self.expected_updated_at = Some(updated_at);
        self
    }

    /// With [`purge`](Self::purge): whether the tombstone goes too, freeing the id.
    ///
    /// The change feed forgets the id too (ids often carry personal data: an email, a phone
    /// number): every event of the thread is erased in the purge's transaction but its newest
    /// delete, which stays until retention removes it so that followers (a UI, an indexer, a
    /// mirror) learn that the thread is gone and erase their own copies.
    pub fn freeing_id(mut self, free: bool) -> Self {
        self.free_id = free;
        self
    }

    fn new(thread_id: ThreadId, target: Target) -> Self {
        Self {
            thread_id,
            target,
            expected_version: None,
            expected_updated_at: None,
            purge: false,
            free_id: false,
            context: Context::new(),
        }
    }

    /// Adds an optimistic-concurrency precondition.
    pub fn with_expected_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    context_setter!();
}

/// One write request, as it travels through the pipeline.
///
/// Layers that only observe use the accessors ([`op`](Self::op),
/// [`thread_id`](Self::thread_id), [`message_id`](Self::message_id),
/// [`context`](Self::context)) and never need to match every variant, so a new operation
/// added later breaks none of them.
///
/// # Example
///
/// ```
/// use persist::{args::Add, Content, PersistArgs, PersistOp, Role, ThreadId};
///
/// let args = PersistArgs::from(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi")));
/// assert_eq!(args.op(), PersistOp::Add);
/// assert_eq!(args.thread_id().map(|t| t.as_str()), Some("t1"));
/// assert!(args.message_id().is_none());
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum PersistArgs {
    /// See [`Add`].
    Add(Add),
    /// See [`Reserve`].
    Reserve(Reserve),
    /// See [`UpdateContent`].
    UpdateContent(UpdateContent),
    /// See [`Update`].
    Update(Update),
    /// See [`Delete`].
    Delete(Delete),
    /// See [`Restore`].
    Restore(Restore),
    /// Reads one message; see [`GetMessage`].
    #[serde(skip)]
    Get(GetMessage),
    /// Reads one thread; see [`GetThread`].
    #[serde(skip)]
    GetThread(GetThread),
    /// Lists a thread's messages; see [`ListMessages`].
    #[serde(skip)]
    List(ListMessages),
    /// Lists threads; see [`ListThreads`].
    #[serde(skip)]
    Threads(ListThreads),
    /// Finds stranded reservations; see [`FindStranded`].
    #[serde(skip)]
    FindStranded(FindStranded),
    /// Asks whether a provider session can be resumed; see [`Resolve`].
    Resolve(Resolve),
    /// Records a confirmed provider session; see [`Bind`].
    Bind(Bind),
    /// Resets a session binding; see [`ResetSession`].
    ResetSession(ResetSession),
    /// Invalidates a session binding; see [`InvalidateSession`].
    InvalidateSession(InvalidateSession),
    /// Lists a thread's session bindings; see [`ListBindings`].
    #[serde(skip)]
    Bindings(ListBindings),
    /// A health check; see [`Ping`].
    #[serde(skip)]
    Ping(Ping),
    /// Reads the change feed; see [`ReadFeed`].
    #[serde(skip)]
    ReadFeed(ReadFeed),
    /// Stores a value under a name once; see [`SetOnce`](crate::once::SetOnce).
    SetOnce(crate::once::SetOnce),
}

impl PersistArgs {
    /// The operation label.
    pub fn op(&self) -> PersistOp {
        match self {
            Self::Add(_) => PersistOp::Add,
            Self::Reserve(_) => PersistOp::Reserve,
            Self::UpdateContent(_) => PersistOp::UpdateContent,
            Self::Update(_) => PersistOp::Update,
            Self::Delete(_) => PersistOp::Delete,
            Self::Restore(_) => PersistOp::Restore,
            Self::Get(_) => PersistOp::Get,
            Self::GetThread(_) => PersistOp::GetThread,
            Self::List(_) => PersistOp::List,
            Self::Threads(_) => PersistOp::Threads,
            Self::FindStranded(_) => PersistOp::FindStranded,
            Self::Resolve(_) => PersistOp::Resolve,
            Self::Bind(_) => PersistOp::Bind,
            Self::ResetSession(_) => PersistOp::ResetSession,
            Self::InvalidateSession(_) => PersistOp::InvalidateSession,
            Self::Bindings(_) => PersistOp::Bindings,
            Self::Ping(_) => PersistOp::Ping,
            Self::ReadFeed(_) => PersistOp::ReadFeed,
            Self::SetOnce(_) => PersistOp::SetOnce,
        }
    }

    /// The thread the request addresses; `None` for requests across threads (`threads`,
    /// `find_stranded`, `ping`, a feed read of a tenant or the store).
    pub fn thread_id(&self) -> Option<&ThreadId> {
        Some(match self {
            Self::Add(a) => &a.thread_id,
            Self::Reserve(a) => &a.thread_id,
            Self::UpdateContent(a) => &a.thread_id,
            Self::Update(a) => &a.thread_id,
            Self::Delete(a) => &a.thread_id,
            Self::Restore(a) => &a.thread.id,
            Self::Get(a) => &a.thread_id,
            Self::GetThread(a) => &a.thread_id,
            Self::List(a) => &a.thread_id,
            Self::Resolve(a) => &a.thread_id,
            Self::Bind(a) => &a.thread_id,
            Self::ResetSession(a) => &a.thread_id,
            Self::InvalidateSession(a) => &a.thread_id,
            Self::Bindings(a) => &a.thread_id,
            Self::ReadFeed(a) => return a.thread_id(),
            Self::Threads(_) | Self::FindStranded(_) | Self::Ping(_) | Self::SetOnce(_) => return None,
        })
    }

    /// The message the request addresses, when it names one (a generated id is not known yet).
    pub fn message_id(&self) -> Option<&MessageId> {
        match self {
            Self::Add(a) => a.message_id.as_ref(),
            Self::Reserve(a) => a.message_id.as_ref(),
            Self::UpdateContent(a) => Some(&a.message_id),
            Self::Update(a) => a.target.message_id(),
            Self::Delete(a) => a.target.message_id(),
            Self::Get(a) => Some(&a.message_id),
            _ => None,
        }
    }

    /// The content being written, for `add` and `update_content`.
    pub fn content(&self) -> Option<&Content> {
        match self {
            Self::Add(a) => Some(&a.content),
            Self::UpdateContent(a) => Some(&a.content),
            _ => None,
        }
    }

    /// The metadata being written or merged, if any.
    pub fn metadata(&self) -> Option<&Metadata> {
        match self {
            Self::Add(a) => Some(&a.metadata),
            Self::Reserve(a) => Some(&a.metadata),
            Self::Update(a) => a.metadata.as_ref(),
            _ => None,
        }
    }

    /// The request context.
    pub fn context(&self) -> &Context {
        match self {
            Self::Add(a) => &a.context,
            Self::Reserve(a) => &a.context,
            Self::UpdateContent(a) => &a.context,
            Self::Update(a) => &a.context,
            Self::Delete(a) => &a.context,
            Self::Restore(a) => &a.context,
            Self::Get(a) => &a.context,
            Self::GetThread(a) => &a.context,
            Self::List(a) => &a.context,
            Self::Threads(a) => &a.context,
            Self::FindStranded(a) => &a.context,
            Self::Resolve(a) => &a.context,
            Self::Bind(a) => &a.context,
            Self::ResetSession(a) => &a.context,
            Self::InvalidateSession(a) => &a.context,
            Self::Bindings(a) => &a.context,
            Self::Ping(a) => &a.context,
            Self::ReadFeed(a) => &a.context,
            Self::SetOnce(a) => &a.context,
        }
    }

    /// Mutable access to the request context.
    pub fn context_mut(&mut self) -> &mut Context {
        match self {
            Self::Add(a) => &mut a.context,
            Self::Reserve(a) => &mut a.context,
            Self::UpdateContent(a) => &mut a.context,
            Self::Update(a) => &mut a.context,
            Self::Delete(a) => &mut a.context,
            Self::Restore(a) => &mut a.context,
            Self::Get(a) => &mut a.context,
            Self::GetThread(a) => &mut a.context,
            Self::List(a) => &mut a.context,
            Self::Threads(a) => &mut a.context,
            Self::FindStranded(a) => &mut a.context,
            Self::Resolve(a) => &mut a.context,
            Self::Bind(a) => &mut a.context,
            Self::ResetSession(a) => &mut a.context,
            Self::InvalidateSession(a) => &mut a.context,
            Self::Bindings(a) => &mut a.context,
            Self::Ping(a) => &mut a.context,
            Self::ReadFeed(a) => &mut a.context,
            Self::SetOnce(a) => &mut a.context,
        }
    }

    /// Checks the rules no type can express, the same on every backend: content and metadata
    /// nested at most [`MAX_JSON_DEPTH`](crate::MAX_JSON_DEPTH) deep, no U+0000 in content,
    /// metadata or a title (PostgreSQL cannot store it, so no backend does), an update must
    /// change something, a role applies to messages and a title to threads, a title fits in
    /// [`MAX_TITLE_BYTES`], a [`Restore`] as [`Restore::validate`] says. Backends call this
    /// before writing anything.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if let Self::Restore(restore) = self {
            return restore.validate();
        }
        if let Self::SetOnce(request) = self {
            return request.validate();
        }
        if let Some(content) = self.content() {
            content.check_depth()?;
            if content.has_nul() {
                return Err(nul("content"));
            }
        }
        if let Some(metadata) = self.metadata() {
            metadata.check_depth()?;
            if metadata.has_nul() {
                return Err(nul("metadata"));
            }
        }
        if let Self::Delete(delete) = self {
            if delete.purge && delete.target != Target::Thread {
                return Err(PersistError::invalid("purge", "erases a whole thread: its target is the thread"));
            }
            if delete.expected_updated_at.is_some() && delete.target != Target::Thread {
                return Err(PersistError::invalid("expected_updated_at", "applies to a thread delete only"));
            }
            if delete.free_id && !delete.purge {
                return Err(PersistError::invalid("free_id", "applies to a purge only"));
            }
        }
        let Self::Update(update) = self else {
            return Ok(());
        };
        if update.metadata.is_none() && update.role.is_none() && update.title.is_none() {
            return Err(PersistError::invalid("update", "the patch changes nothing"));
        }
        match update.target {
            Target::MessagesAfter(_) => {
                Err(PersistError::invalid("target", "an update applies to a message or a thread"))
            }
            Target::Message(_) if update.title.is_some() => {
                Err(PersistError::invalid("title", "only threads have a title"))
            }
            Target::Thread if update.role.is_some() => Err(PersistError::invalid("role", "only messages have a role")),
            _ => match &update.title {
                Some(Some(title)) if title.len() > MAX_TITLE_BYTES => Err(PersistError::invalid(
                    "title",
                    format!("is {} bytes, the limit is {MAX_TITLE_BYTES}", title.len()),
                )),
                Some(Some(title)) if title.contains('\0') => Err(nul("title")),
                _ => Ok(()),
            },
        }
    }
}

/// How often a layer that joins an append itself (reading the message, writing the joined
/// content back expecting the version read) joins it again when another write got in between:
/// far more than contention needs (each conflict means another write went through), so that
/// only a message rewritten without pause by others makes an append fail
/// ([`appends_kept_racing`]).
pub const MAX_APPEND_JOINS: usize = 1000;

/// The error of an append joined [`MAX_APPEND_JOINS`] times without getting through.
pub fn appends_kept_racing() -> PersistError {
    PersistError::temporary(format!(
        "the append was joined {MAX_APPEND_JOINS} times and other writes of its message got in each time"
    ))
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
            Self::Thread | Self::MessagesAfter(_) => None,
        }
    }
}

macro_rules! into_args {
    ($($variant:ident),*) => {$(
        impl From<$variant> for PersistArgs {
            fn from(args: $variant) -> Self {
                Self::$variant(args)
            }
        }
    )*};
}
into_args!(Add, Reserve, UpdateContent, Update, Delete, Restore, Resolve, Bind, ResetSession, InvalidateSession, Ping);

impl From<GetMessage> for PersistArgs {
    fn from(query: GetMessage) -> Self {
        Self::Get(query)
    }
}

impl From<ListMessages> for PersistArgs {
    fn from(query: ListMessages) -> Self {
        Self::List(query)
    }
}

impl From<ListBindings> for PersistArgs {
    fn from(query: ListBindings) -> Self {
        Self::Bindings(query)
    }
}

impl From<ListThreads> for PersistArgs {
    fn from(query: ListThreads) -> Self {
        Self::Threads(query)
    }
}

into_args!(GetThread, FindStranded, ReadFeed);

impl From<crate::once::SetOnce> for PersistArgs {
    fn from(request: crate::once::SetOnce) -> Self {
        Self::SetOnce(request)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn thread() -> ThreadId {
        ThreadId::new("t1").unwrap()
    }

    #[test]
    fn accessors_cover_every_variant() {
        use crate::id::{AgentId, ProviderId, SessionId};
        let m = MessageId::new("m1").unwrap();
        let (agent, session) = (AgentId::new("a").unwrap(), SessionId::new("s").unwrap());
        let provider = ProviderId::new("p").unwrap();
        let all: Vec<PersistArgs> = vec![
            Add::new(thread(), Role::User, Content::text("a")).with_id(m.clone()).into(),
            Reserve::new(thread(), Role::Assistant).into(),
            UpdateContent::new(thread(), m.clone(), Content::text("b")).into(),
            Update::message(thread(), m.clone()).with_role(Role::Tool).into(),
            Delete::thread(thread()).into(),
            Restore::new(
                crate::Thread {
                    id: thread(),
                    tenant: None,
                    title: None,
                    metadata: Metadata::new(),
                    version: 1,
                    created_at: crate::Timestamp::now(),
                    updated_at: crate::Timestamp::now(),
                    last_seq: 0,
                    message_count: 0,
                    deleted_at: None,
                },
                Vec::new(),
            )
            .into(),
            GetMessage::new(thread(), m.clone()).into(),
            GetThread::new(thread()).into(),
            ListMessages::new(thread()).into(),
            ListThreads::new().into(),
            FindStranded::new(crate::Timestamp::now()).into(),
            Resolve::new(agent.clone(), thread(), provider.clone()).into(),
            Bind::new(agent.clone(), thread(), session.clone(), provider).into(),
            ResetSession::new(agent.clone(), thread()).into(),
            InvalidateSession::new(agent, thread(), session).into(),
            ListBindings::new(thread()).into(),
            Ping::new().into(),
            ReadFeed::thread(thread()).into(),
            crate::once::SetOnce::new("name", "value").unwrap().into(),
        ];
        let ops: Vec<_> = all.iter().map(PersistArgs::op).collect();
        assert_eq!(ops, PersistOp::ALL);
        for args in &all {
            let across_threads = matches!(
                args.op(),
                PersistOp::Threads | PersistOp::FindStranded | PersistOp::Ping | PersistOp::SetOnce
            );
            assert_eq!(args.thread_id().is_none(), across_threads, "{:?}", args.op());
            assert!(args.thread_id().is_none_or(|t| *t == thread()));
        }
        assert_eq!(all[0].message_id(), Some(&m));
        assert_eq!(all[1].message_id(), None);
        assert_eq!(all[3].message_id(), Some(&m));
        assert_eq!(all[4].message_id(), None);
        assert_eq!(all[5].message_id(), None);
        assert_eq!(all[6].message_id(), Some(&m));
    }

    #[test]
    fn validate_refuses_meaningless_updates() {
        let m = MessageId::new("m1").unwrap();
        let cases: Vec<(PersistArgs, &str)> = vec![
            (Update::message(thread(), m.clone()).into(), "update"),
            (Update::message(thread(), m).with_title(Some("x".into())).into(), "title"),
            (Update::thread(thread()).with_role(Role::User).into(), "role"),
            (Update::thread(thread()).with_title(Some("x".repeat(MAX_TITLE_BYTES + 1))).into(), "title"),
        ];
        for (args, field) in cases {
            match args.validate() {
                Err(PersistError::InvalidInput { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{args:?} gave {other:?}"),
            }
        }
        let ok: PersistArgs = Update::thread(thread()).with_metadata(Metadata::new().with("a", json!(1))).into();
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn args_round_trip_through_json_with_their_context() {
        let ctx = Context::new().with_tenant(TenantId::new("acme").unwrap()).with_principal("u1");
        let id = ctx.request_id().clone();
        let args: PersistArgs = Add::new(thread(), Role::User, Content::text("hi"))
            .with_metadata(Metadata::new().with("k", json!("v")))
            .with_context(ctx)
            .into();
        let text = serde_json::to_string(&args).unwrap();
        assert!(text.contains("\"op\":\"add\""), "{text}");
        let back: PersistArgs = serde_json::from_str(&text).unwrap();
        assert_eq!(back.context().request_id(), &id);
        assert_eq!(back.context().tenant().unwrap().as_str(), "acme");
        assert_eq!(back.context().principal(), Some("u1"));
        assert_eq!(back.content(), args.content());
    }

    #[test]
    fn request_id_is_stable_across_clones_once_read() {
        let ctx = Context::new();
        let id = ctx.request_id().clone();
        assert_eq!(ctx.clone().request_id(), &id);
    }
}
