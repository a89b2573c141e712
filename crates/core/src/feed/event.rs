//! The feed's events: [`FeedEvent`] (numbered, as a reader sees it) and [`Change`] (as a
//! backend records it, before the feed numbers it).

use serde::{Deserialize, Serialize};

use crate::model::error::{PersistError, Result};
use crate::model::id::{MessageId, ResourceId, TenantId, ThreadId};
use crate::model::op::PersistOp;
use crate::model::{Content, Status, Timestamp};

/// Which events a [`ReadFeed`](super::ReadFeed) reads, or a subscriber is woken for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FeedScope {
    /// One thread of the context's tenant.
    Thread(ThreadId),
    /// Every thread of the context's tenant.
    Tenant,
    /// Every thread of every tenant (operators, indexers), as the other reads across tenants
    /// say it (`ListThreads::across_tenants`, `SearchScope::AcrossTenants`).
    AcrossTenants,
    /// The working memory document of one resource of the context's tenant (see
    /// [`working`](crate::working)).
    Memory(ResourceId),
}

/// What an event is of: a thread, or a working memory document. For backends and the feed's
/// bookkeeping (a thread's or a document's events kept apart).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Subject {
    /// A thread: its messages, its own fields.
    Thread(ThreadId),
    /// A working memory document.
    Memory(ResourceId),
}

/// What a delete event removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Removed {
    /// One message (a message delete, or each message a truncation removed).
    Message,
    /// The whole thread: it is a tombstone now, its messages are gone.
    Thread,
}

/// One committed change, numbered by the feed: its [`position`](Self::position), the
/// [`change`](Self::change) itself, and when the feed recorded it. In JSON the change's fields
/// sit beside `position` and `at` (`{"position": 7, "tenant": null, "thread_id": "t1", "op":
/// "add", …, "at": …}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FeedEvent {
    /// Where the event is in the store's feed: 1, 2, 3… in commit order, never reused.
    pub position: u64,
    /// What changed.
    #[serde(flatten)]
    pub change: Change,
    /// When the feed recorded the change.
    pub at: Timestamp,
}

/// A feed event as a SQL backend stores it, a row of text and numbers: `tenant` `""` for none,
/// `op` its label ([`PersistOp::as_str`]), `removed` `"message"` or `"thread"`, `status` the
/// message's ([`Status::as_str`]). For backend authors: [`FeedEvent::from_stored`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredEvent<'a> {
    /// See [`FeedEvent::position`].
    pub position: u64,
    /// The tenant's id, `""` for none.
    pub tenant: &'a str,
    /// See [`Change::thread_id`]: `None` for a working memory event.
    pub thread_id: Option<&'a str>,
    /// See [`Change::resource`]: the document's resource, for a working memory event.
    pub resource: Option<&'a str>,
    /// The op's label.
    pub op: &'a str,
    /// See [`Change::message_id`].
    pub message_id: Option<&'a str>,
    /// See [`Change::seq`].
    pub seq: Option<u64>,
    /// See [`Change::version`].
    pub version: u64,
    /// `"message"`, `"thread"`, or none.
    pub removed: Option<&'a str>,
    /// See [`Change::status`]: `"reserved"`, `"complete"`, `"interrupted"`, or none (for an
    /// `add` or a `reserve`, the status its op says: `complete`, `reserved`).
    pub status: Option<&'a str>,
    /// See [`Change::delta`]: the appended content blocks as JSON text, or none.
    pub delta: Option<&'a str>,
    /// For an insert, the message's parent as the message stores it (see
    /// [`stored_parent`](crate::branch::stored_parent)); read with its seq.
    pub parent: Option<u64>,
    /// See [`FeedEvent::at`].
    pub at: Timestamp,
}

impl FeedEvent {
    /// The event a SQL backend stored as a row (see [`StoredEvent`]).
    ///
    /// # Errors
    ///
    /// A `Backend` error naming the column when a stored value is not one an event can hold.
    pub fn from_stored(row: StoredEvent<'_>) -> Result<Self> {
        let StoredEvent {
            position,
            tenant,
            thread_id,
            resource,
            op,
            message_id,
            seq,
            version,
            removed,
            status,
            delta,
            parent,
            at,
        } = row;
        let corrupt = |what: &str, value: &str| PersistError::Backend {
            message: format!("the change feed holds an unreadable {what} at position {position}: {value:?}").into(),
            source: None,
        };
        let tenant = crate::model::id_checks::tenant_from_key(tenant).map_err(|_| corrupt("tenant", tenant))?;
        let op: PersistOp = op.parse().map_err(|_| corrupt("op", op))?;
        let removed = match removed {
            None => None,
            Some("message") => Some(Removed::Message),
            Some("thread") => Some(Removed::Thread),
            Some(other) => return Err(corrupt("removal", other)),
        };
        // An insert's event may leave out the status its op says (stores in the packed form do).
        let status = match (status, op) {
            (Some(text), _) => Some(Status::parse(text).ok_or_else(|| corrupt("status", text))?),
            (None, PersistOp::Add) => Some(Status::Complete),
            (None, PersistOp::Reserve) => Some(Status::Reserved),
            (None, _) => None,
        };
        let delta = delta.map(|text| Content::from_json(text).map_err(|_| corrupt("delta", text))).transpose()?;
        let thread_id = thread_id.map(|id| ThreadId::new(id).map_err(|_| corrupt("thread id", id))).transpose()?;
        let resource = resource.map(|id| ResourceId::new(id).map_err(|_| corrupt("resource", id))).transpose()?;
        if thread_id.is_some() == resource.is_some() {
            return Err(corrupt("subject (a thread or a resource, one of them)", op.as_str()));
        }
        let change = Change {
            tenant,
            thread_id,
            resource,
            op,
            message_id: message_id.map(|id| MessageId::new(id).map_err(|_| corrupt("message id", id))).transpose()?,
            seq,
            version,
            removed,
            status,
            delta,
            parent_seq: match (op, seq) {
                (PersistOp::Add | PersistOp::Reserve, Some(seq)) => {
                    crate::model::message::parent_from_stored(seq, parent)
                }
                _ => None,
            },
        };
        Ok(change.at(position, at))
    }

    /// Whether this event is of the thread `(tenant, thread_id)`.
    pub fn is_in(&self, tenant: Option<&TenantId>, thread_id: &ThreadId) -> bool {
        self.change.tenant.as_ref() == tenant && self.change.thread_id.as_ref() == Some(thread_id)
    }
}

/// One committed change, as a backend records it (the feed numbers it into a [`FeedEvent`]).
///
/// `op` is the write that made it: [`Add`](PersistOp::Add) and
/// [`Reserve`](PersistOp::Reserve) for a message inserted (a restored message too, by its
/// status), [`UpdateContent`](PersistOp::UpdateContent) for a message whose content or status
/// changed, [`Update`](PersistOp::Update) for a message's metadata or role, or a thread's
/// version (title, metadata, a truncation), [`Delete`](PersistOp::Delete) with
/// [`removed`](Self::removed), and [`Summarize`](PersistOp::Summarize) for a summary written
/// (its [`seq`](Self::seq) the last message it covers, no message id: read it with
/// [`ListSummaries`](crate::summary::ListSummaries)). A vector written by a standalone
/// [`Embed`](crate::vector::Embed) is [`Embed`](PersistOp::Embed), of its message at the
/// message's version (no status: the message did not change; read the vectors with
/// [`ListEmbeddings`](crate::vector::ListEmbeddings)); the vectors an `add`, a turn or a restore
/// carry have their message's insert event alone. A working memory document written is
/// [`WriteMemory`](PersistOp::WriteMemory), of its [`resource`](Self::resource) (no thread) at its
/// new version: read the document for what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Change {
    /// The tenant of the thread (or document) written.
    pub tenant: Option<TenantId>,
    /// The thread written; `None` for a working memory document's change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<ThreadId>,
    /// The working memory document written (see [`working`](crate::working)); `None` for a
    /// thread's change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceId>,
    /// The kind of change; see the type's docs.
    pub op: PersistOp,
    /// The message changed; `None` when the change is the thread's own.
    pub message_id: Option<MessageId>,
    /// The message's `seq`; `None` for the thread's own changes.
    pub seq: Option<u64>,
    /// The message's version after the change (for a removed message, its last), or the
    /// thread's for the thread's own changes.
    pub version: u64,
    /// For a delete: whether it removed a message or the whole thread.
    pub removed: Option<Removed>,
    /// The message's status after the change (an `update_content` that marked a reply
    /// [`Interrupted`](Status::Interrupted) says so here); `None` for a delete and for the
    /// thread's own changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// For an `update_content` that added to the end of the message's content (a streamed
    /// token, the end of a stream, a heartbeat): the content blocks added, so that a follower
    /// holding the message at `version - 1` has it at `version` by
    /// [`appending`](Content::appended) them, without reading it (`[]`: nothing added). The
    /// text a follower shows grows by the delta's [`to_text`](Content::to_text).
    ///
    /// `None` for every other change, and for a replacement of the content (unless the
    /// replacement said what it added, as a layer that joins appends itself does: see
    /// [`UpdateContent::delta`](crate::args::UpdateContent::delta)): a follower that shows the
    /// content reads the message. Also `None` once the feed's retention dropped the
    /// payload ([`FeedRetention::max_delta_age`](super::FeedRetention::max_delta_age)): the
    /// event stays, and says "read it". Through `EncryptLayer` a follower reads it in clear;
    /// the store holds it sealed, like the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Content>,
    /// For a message inserted (`add`, `reserve`): the seq of the message it follows in its
    /// thread's tree (see [`branch`](crate::branch)); a follower learns here that a new branch
    /// started (a parent other than the message before it). `None` for a root and for every
    /// other change. A switch of the active branch is the thread's `update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_seq: Option<u64>,
}

impl Change {
    /// A change of message `(message_id, seq)` at `version`.
    pub fn message(
        tenant: Option<TenantId>,
        thread_id: ThreadId,
        op: PersistOp,
        message_id: MessageId,
        seq: u64,
        version: u64,
    ) -> Self {
        let removed = (op == PersistOp::Delete).then_some(Removed::Message);
        let message_id = Some(message_id);
        Self {
            tenant,
            thread_id: Some(thread_id),
            resource: None,
            op,
            message_id,
            seq: Some(seq),
            version,
            removed,
            status: None,
            delta: None,
            parent_seq: None,
        }
    }

    /// This change of a message inserted after `parent` (see [`parent_seq`](Self::parent_seq)).
    pub fn with_parent(mut self, parent: Option<u64>) -> Self {
        self.parent_seq = parent;
        self
    }

    /// This change, adding `delta` to the message's content (see [`delta`](Self::delta)).
    pub fn with_delta(mut self, delta: Option<Content>) -> Self {
        self.delta = delta;
        self
    }

    /// This change, the message left with `status` (see [`status`](Self::status)).
    pub fn with_status(mut self, status: Status) -> Self {
        self.status = Some(status);
        self
    }

    /// A change of the thread itself at `version` (`Delete`: the thread was removed).
    pub fn thread(tenant: Option<TenantId>, thread_id: ThreadId, op: PersistOp, version: u64) -> Self {
        let removed = (op == PersistOp::Delete).then_some(Removed::Thread);
        Self {
            tenant,
            thread_id: Some(thread_id),
            resource: None,
            op,
            message_id: None,
            seq: None,
            version,
            removed,
            status: None,
            delta: None,
            parent_seq: None,
        }
    }

    /// A summary written of thread `thread_id`, ending at `through_seq` (see
    /// [`summary`](crate::summary)).
    pub fn summary(tenant: Option<TenantId>, thread_id: ThreadId, through_seq: u64) -> Self {
        let mut change = Self::thread(tenant, thread_id, PersistOp::Summarize, 1);
        change.seq = Some(through_seq);
        change
    }

    /// A working memory document of `resource` written, now at `version` (see
    /// [`working`](crate::working)).
    pub fn memory(tenant: Option<TenantId>, resource: ResourceId, version: u64) -> Self {
        Self {
            tenant,
            thread_id: None,
            resource: Some(resource),
            op: PersistOp::WriteMemory,
            message_id: None,
            seq: None,
            version,
            removed: None,
            status: None,
            delta: None,
            parent_seq: None,
        }
    }

    /// What the change is of: its thread, or its document (`None` for a change that names
    /// neither, which no backend records).
    pub fn subject(&self) -> Option<Subject> {
        match (&self.thread_id, &self.resource) {
            (Some(thread), _) => Some(Subject::Thread(thread.clone())),
            (None, Some(resource)) => Some(Subject::Memory(resource.clone())),
            (None, None) => None,
        }
    }

    /// The event at `position`, recorded `at`.
    pub fn at(self, position: u64, at: Timestamp) -> FeedEvent {
        FeedEvent { position, change: self, at }
    }
}
