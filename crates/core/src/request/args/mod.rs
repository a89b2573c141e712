//! [`PersistArgs`]: every request, as it travels down the stack (the writes [`Add`],
//! [`Reserve`], [`UpdateContent`], [`Update`], [`Delete`] and [`Restore`], the reads, the
//! session requests, the feed's reads and [`SetOnce`]), with the accessors layers use and the
//! validation every backend applies; and the [`Context`] each request carries.

mod plan;

use serde::{Deserialize, Serialize};

pub use self::plan::TurnPlan;
pub use crate::context::Context;
use crate::feed::ReadFeed;
use crate::model::error::PersistError;
use crate::model::error::Result;
use crate::model::id::{MessageId, ThreadId};
use crate::model::op::PersistOp;
use crate::model::{Content, Metadata};
use crate::request::branch::ListBranches;
use crate::request::lease::Lease;
use crate::request::once::SetOnce;
use crate::request::read::{FindStranded, GetMessage, GetThread, ListMessages, ListThreads, Ping};
use crate::request::records::{ReadRecords, WriteRecords};
pub use crate::request::restore::Restore;
use crate::request::search::Search;
use crate::request::session::{Bind, InvalidateSession, ListBindings, ResetSession, Resolve};
use crate::request::summary::{ListSummaries, ReadCompacted, Summarize};
pub use crate::request::turn::{AppendTurn, MAX_TURN_BYTES, MAX_TURN_MESSAGES, TurnMessage};
use crate::request::vector::{Embed, ListEmbeddings, Nearest};
use crate::request::working::{ListMemories, ReadMemory, WriteMemory};
use crate::request::write::nul;
pub use crate::request::write::{
    Add, Attached, Delete, MAX_APPEND_JOINS, MAX_TITLE_BYTES, Reserve, Target, Update, UpdateContent,
    appends_kept_racing,
};

macro_rules! define_args {
    (
        $($(#[$doc:meta])* $op:ident = $label:literal, $kind:ident:
            $(#[$attr:meta])* $variant:ident($ty:ident) -> $result:ident;)*
    ) => {
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
            $(
                $(#[$doc])*
                #[doc = concat!("\n\nSee [`", stringify!($ty), "`].")]
                $(#[$attr])*
                $variant($ty),
            )*
        }

        impl PersistArgs {
            /// The operation label.
            pub fn op(&self) -> PersistOp {
                match self {
                    $(Self::$variant(_) => PersistOp::$op,)*
                }
            }

            /// The request context.
            pub fn context(&self) -> &Context {
                match self {
                    $(Self::$variant(request) => &request.context,)*
                }
            }

            /// Mutable access to the request context.
            pub fn context_mut(&mut self) -> &mut Context {
                match self {
                    $(Self::$variant(request) => &mut request.context,)*
                }
            }
        }

        $(
            impl From<$ty> for PersistArgs {
                fn from(request: $ty) -> Self {
                    Self::$variant(request)
                }
            }
        )*
    };
}
requests!(define_args);

impl PersistArgs {
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
            Self::AppendTurn(a) => &a.thread_id,
            Self::Get(a) => &a.thread_id,
            Self::GetThread(a) => &a.thread_id,
            Self::List(a) => &a.thread_id,
            Self::Branches(a) => &a.thread_id,
            Self::Resolve(a) => &a.thread_id,
            Self::Bind(a) => &a.thread_id,
            Self::ResetSession(a) => &a.thread_id,
            Self::InvalidateSession(a) => &a.thread_id,
            Self::Bindings(a) => &a.thread_id,
            Self::Summarize(a) => &a.thread_id,
            Self::Summaries(a) => &a.thread_id,
            Self::Compacted(a) => &a.thread_id,
            Self::Lease(a) => &a.thread_id,
            Self::ReadFeed(a) => return a.thread_id(),
            Self::Search(a) => return a.thread_id(),
            Self::Embed(a) => &a.thread_id,
            Self::Nearest(a) => return a.thread_id.as_ref(),
            Self::Embeddings(a) => &a.thread_id,
            Self::Threads(_)
            | Self::FindStranded(_)
            | Self::Ping(_)
            | Self::SetOnce(_)
            | Self::ReadMemory(_)
            | Self::WriteMemory(_)
            | Self::Memories(_)
            | Self::WriteRecords(_)
            | Self::ReadRecords(_) => return None,
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
            Self::Branches(a) => a.message_id(),
            Self::Embed(a) => Some(&a.message_id),
            _ => None,
        }
    }

    /// Sets the parent of an `add`, a `reserve` or a turn (nothing for other requests).
    pub(crate) fn set_parent(&mut self, parent: super::branch::Parent) {
        match self {
            Self::Add(a) => a.parent = parent,
            Self::Reserve(a) => a.parent = parent,
            Self::AppendTurn(a) => a.parent = parent,
            _ => {}
        }
    }

    /// The parent an `add`, a `reserve` or a turn names ([`Parent::Active`](super::branch::Parent::Active)
    /// for other requests).
    pub fn parent(&self) -> &super::branch::Parent {
        static ACTIVE: super::branch::Parent = super::branch::Parent::Active;
        match self {
            Self::Add(a) => &a.parent,
            Self::Reserve(a) => &a.parent,
            Self::AppendTurn(a) => &a.parent,
            _ => &ACTIVE,
        }
    }

    /// Whether the request needs a backend with
    /// [`Capabilities::branches`](crate::Capabilities::branches): a write that names its
    /// parent, a switch of branch, a listing of a branch, a `branches` read.
    pub fn uses_branches(&self) -> bool {
        match self {
            Self::Add(a) => !a.parent.is_active(),
            Self::Reserve(a) => !a.parent.is_active(),
            Self::AppendTurn(a) => !a.parent.is_active(),
            Self::Update(a) => a.switch.is_some(),
            Self::List(a) => a.branch.is_some(),
            Self::Branches(_) => true,
            Self::Compacted(a) => a.branch != super::branch::Branch::Active,
            _ => false,
        }
    }

    /// Whether the request needs a backend with
    /// [`Capabilities::summaries`](crate::Capabilities::summaries): `summarize`, `summaries`,
    /// `compacted`, `lease`, and a `delete` of what a summary covers.
    pub fn uses_summaries(&self) -> bool {
        match self {
            Self::Delete(delete) => delete.target == Target::Covered,
            other => matches!(other, Self::Summarize(_) | Self::Summaries(_) | Self::Compacted(_) | Self::Lease(_)),
        }
    }

    /// Whether the request needs a backend with
    /// [`Capabilities::vectors`](crate::Capabilities::vectors): `embed`, `nearest`,
    /// `list_embeddings`, and an `add` or a turn that writes an embedding with its messages.
    pub fn uses_vectors(&self) -> bool {
        match self {
            Self::Add(add) => add.embedding.is_some(),
            Self::AppendTurn(turn) => turn.messages.iter().any(|m| m.embedding.is_some()),
            other => matches!(other, Self::Embed(_) | Self::Nearest(_) | Self::Embeddings(_)),
        }
    }

    /// This write without the embeddings it carries (an `add`'s, a turn's messages'), for a
    /// store that refuses them (see [`Add::with_embedding`]); `None` when it carries none.
    pub fn without_embeddings(&self) -> Option<Self> {
        let mut plain = match self {
            Self::Add(add) if add.embedding.is_some() => self.clone(),
            Self::AppendTurn(turn) if turn.messages.iter().any(|m| m.embedding.is_some()) => self.clone(),
            _ => return None,
        };
        match &mut plain {
            Self::Add(add) => add.embedding = None,
            Self::AppendTurn(turn) => turn.messages.iter_mut().for_each(|m| m.embedding = None),
            _ => {}
        }
        Some(plain)
    }

    /// Whether the request needs a backend with
    /// [`Capabilities::working_memory`](crate::Capabilities::working_memory): `read_memory`,
    /// `write_memory` and `list_memories`.
    pub fn uses_working_memory(&self) -> bool {
        matches!(self, Self::ReadMemory(_) | Self::WriteMemory(_) | Self::Memories(_))
    }

    /// Whether the request needs a backend with
    /// [`Capabilities::records`](crate::Capabilities::records): `write_records` and
    /// `read_records`.
    pub fn uses_records(&self) -> bool {
        matches!(self, Self::WriteRecords(_) | Self::ReadRecords(_))
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
        match self {
            Self::Restore(request) => return request.validate(),
            Self::SetOnce(request) => return request.validate(),
            Self::AppendTurn(request) => return request.validate(),
            Self::Summarize(request) => return request.validate(),
            Self::Summaries(request) => return request.validate(),
            Self::Lease(request) => return request.validate(),
            Self::Embed(request) => return request.validate(),
            Self::Nearest(request) => return request.validate(),
            Self::WriteMemory(request) => return request.validate(),
            Self::Memories(request) => return request.validate(),
            Self::Embeddings(request) => return request.validate(),
            Self::WriteRecords(request) => return request.validate(),
            Self::ReadRecords(request) => return request.validate(),
            _ => {}
        }
        if let Self::Add(add) = self
            && let Some(embedding) = &add.embedding
        {
            embedding.validate()?;
        }
        if let Some(content) = self.content() {
            content.check_depth()?;
            if content.has_nul() {
                return Err(nul("content"));
            }
        }
        if let Self::UpdateContent(update) = self
            && let Some(delta) = &update.delta
        {
            if update.append {
                return Err(PersistError::invalid("delta", "an append's delta is its own content: leave it unset"));
            }
            if update.expected_version.is_none() {
                return Err(PersistError::invalid(
                    "delta",
                    "says what the replacement adds to one version of the content: set expected_version to it",
                ));
            }
            delta.check_depth()?;
            if delta.has_nul() {
                return Err(nul("delta"));
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
            if delete.expected_attached.is_some() && delete.target != Target::Thread {
                return Err(PersistError::invalid("expected_attached", "applies to a thread delete only"));
            }
            if delete.free_id && !delete.purge {
                return Err(PersistError::invalid("free_id", "applies to a purge only"));
            }
        }
        let Self::Update(update) = self else {
            return Ok(());
        };
        if update.metadata.is_none() && update.role.is_none() && update.title.is_none() && update.switch.is_none() {
            return Err(PersistError::invalid("update", "the patch changes nothing"));
        }
        if update.switch.is_some() && update.target != Target::Thread {
            return Err(PersistError::invalid("switch", "makes a branch of a thread active: its target is the thread"));
        }
        match update.target {
            Target::MessagesAfter(_) | Target::Covered => {
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
