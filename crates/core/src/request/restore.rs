//! [`Restore`]: writes a thread's messages exactly as a store held them, for import and copy.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::write::{MAX_TITLE_BYTES, nul};
use crate::context::{Context, context_setter};
use crate::model::error::{PersistError, Result};
use crate::model::id::{MessageId, ThreadId};
use crate::model::{Message, Thread, Timestamp};
use crate::session::{StoredBinding, check_work_dir};

/// The most messages one [`Restore`] carries; a longer thread is restored in several requests.
pub const MAX_RESTORE_MESSAGES: usize = 1000;

/// The largest seq, `last_seq` or version a [`Restore`] writes: 2^53, what every JSON reader
/// holds exactly, far below what a store's 64-bit columns hold (so later writes can still count
/// up from it).
pub const MAX_RESTORED_COUNTER: u64 = 1 << 53;

/// How far past this machine's clock a restored time may be: another machine's clock may run
/// ahead, not by years. A time further ahead would sort its thread first in every listing and
/// keep it from ever being idle for retention.
pub const MAX_CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Refuses a pair of times a store could not have written: before 1970, more than
/// [`MAX_CLOCK_SKEW`] past `latest`'s now, or changed more than that before it was created
/// (instances' clocks differ a little: a reply reserved on one and finished on another may
/// be "updated" a few milliseconds before it was "created").
fn check_times(what: &str, created_at: Timestamp, updated_at: Timestamp, latest: Timestamp) -> Result<()> {
    for (field, time) in [("created_at", created_at), ("updated_at", updated_at)] {
        if time.as_micros() < 0 || time > latest {
            return Err(PersistError::invalid(
                field,
                format!(
                    "{what} has {field} {} µs since 1970: a time is after 1970 and at most a day past now",
                    time.as_micros()
                ),
            ));
        }
    }
    if updated_at < created_at.saturating_sub(MAX_CLOCK_SKEW) {
        return Err(PersistError::invalid(
            "updated_at",
            format!("{what} was updated a day or more before it was created"),
        ));
    }
    Ok(())
}

/// Writes a thread and its messages exactly as another store held them: message ids, seqs,
/// versions, status, idempotency keys, metadata and times, and the thread's title, metadata,
/// version, times and `last_seq`. What `persist import` and `persist copy` send, through the
/// target's pipeline, so routes, encryption and audit layers see every restored message.
///
/// One request is one transaction, and it is idempotent, so a copy interrupted anywhere
/// resumes by sending the same requests again:
///
/// - **The thread.** Absent: created from [`thread`](Self::thread) (its `message_count` is
///   counted, not taken). Present: its title and metadata stay; its `version`, `updated_at`
///   and `last_seq` become the larger of the stored and the restored value, so neither ever
///   goes back. A deleted thread is [`ThreadDeleted`](PersistError::ThreadDeleted).
/// - **Each message.** Stored already, equal in every field: counted as
///   [`present`](crate::Restored::present), not written. Its id held by a different message,
///   or its seq held by another id: [`AlreadyExists`](PersistError::AlreadyExists) naming the
///   message in the way. Its idempotency key held by another message:
///   [`IdempotencyKeyReused`](PersistError::IdempotencyKeyReused). Any refusal writes nothing
///   of the request.
///
/// - **Each session binding** ([`with_bindings`](Self::with_bindings), one per agent): written
///   unless the thread holds one for that agent changed at the same time or later (a binding is
///   state, the newest wins), counted in [`bindings`](crate::Restored::bindings).
///
/// The thread's tenant is the request's: [`Thread::tenant`] must equal the context's tenant
/// (to restore into another tenant, change both). A later `add` continues after the thread's
/// `last_seq`, as in the source store.
///
/// The answer ([`Restored`]) counts what was written and carries the thread,
/// not the messages ([`PersistResult::message`](crate::PersistResult::message) is `None`): a
/// layer that indexes or audits messages finds the restored ones in the request.
///
/// # Example
///
/// ```
/// use persist::{args::{Add, Restore}, memory::MemoryBackend, read::{GetThread, ListMessages}};
/// use persist::{Content, Pipeline, Role, ThreadId};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let source = Pipeline::new(MemoryBackend::new());
/// let thread_id = ThreadId::new("t1")?;
/// source.add(Add::new(thread_id.clone(), Role::User, Content::text("hi"))).await?;
/// let thread = source.get_thread(GetThread::new(thread_id.clone())).await?.unwrap();
/// let messages = source.list(ListMessages::new(thread_id.clone())).await?.items;
///
/// let target = Pipeline::new(MemoryBackend::new());
/// let restored = target.restore(Restore::new(thread.clone(), messages.clone())).await?;
/// assert_eq!((restored.restored, restored.present), (1, 0));
/// assert_eq!(target.list(ListMessages::new(thread_id.clone())).await?.items, messages);
/// // Sent again, it writes nothing.
/// let again = target.restore(Restore::new(thread, messages)).await?;
/// assert_eq!((again.restored, again.present), (0, 1));
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Restore {
    /// The thread as the source held it.
    pub thread: Thread,
    /// Its messages, in ascending seq, at most [`MAX_RESTORE_MESSAGES`].
    pub messages: Vec<Message>,
    /// Its session bindings, at most one per agent.
    #[serde(default)]
    pub bindings: Vec<StoredBinding>,
    /// Request context.
    #[serde(default)]
    pub context: Context,
}

impl Restore {
    /// Restores `thread` with `messages` (which may be empty: the thread alone), in the tenant
    /// the thread names.
    pub fn new(thread: Thread, messages: Vec<Message>) -> Self {
        let context = Context::new().for_tenant(thread.tenant.clone());
        Self { thread, messages, bindings: Vec::new(), context }
    }

    /// Restores the thread's session bindings too.
    pub fn with_bindings(mut self, bindings: Vec<StoredBinding>) -> Self {
        self.bindings = bindings;
        self
    }

    context_setter!();

    /// Whether `incoming` replaces the binding the thread holds for its agent (`None`: none):
    /// it does unless the stored one changed at the same time or later.
    pub fn binding_wins(incoming: &StoredBinding, stored: Option<&StoredBinding>) -> bool {
        stored.is_none_or(|stored| stored.binding.updated_at < incoming.binding.updated_at)
    }

    /// Checks what no backend could store the same way: a tombstone, a tenant other than the
    /// context's, messages of another thread, seqs not ascending or past the thread's
    /// `last_seq`, ids or idempotency keys twice, a version 0 or a counter over
    /// [`MAX_RESTORED_COUNTER`], values too deep or holding
    /// U+0000, a title too long, more than [`MAX_RESTORE_MESSAGES`], a binding of another
    /// thread, two for one agent, or one whose working directory a bind would refuse; a time
    /// (`created_at`, `updated_at` of the thread, a message, a binding) before 1970 or more than
    /// [`MAX_CLOCK_SKEW`] past now, or an `updated_at` before its `created_at`.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let thread = &self.thread;
        if thread.deleted_at.is_some() {
            return Err(PersistError::invalid("thread", "is a tombstone: a deleted thread is not restored"));
        }
        if thread.tenant.as_ref() != self.context.tenant() {
            return Err(PersistError::invalid("tenant", "the thread's tenant differs from the request's"));
        }
        if thread.version == 0 || thread.version > MAX_RESTORED_COUNTER {
            return Err(PersistError::invalid("version", "a thread's version is 1 to 2^53"));
        }
        if thread.last_seq > MAX_RESTORED_COUNTER {
            return Err(PersistError::invalid("last_seq", "is over 2^53"));
        }
        let latest = Timestamp::now().saturating_add(MAX_CLOCK_SKEW);
        check_times(&format!("thread {}", thread.id), thread.created_at, thread.updated_at, latest)?;
        if let Some(title) = &thread.title {
            if title.len() > MAX_TITLE_BYTES {
                return Err(PersistError::invalid(
                    "title",
                    format!("is {} bytes, the limit is {MAX_TITLE_BYTES}", title.len()),
                ));
            }
            if title.contains('\0') {
                return Err(nul("title"));
            }
        }
        thread.metadata.check_depth()?;
        if thread.metadata.has_nul() {
            return Err(nul("metadata"));
        }
        if self.messages.len() > MAX_RESTORE_MESSAGES {
            return Err(PersistError::invalid(
                "messages",
                format!("{} in one request, the limit is {MAX_RESTORE_MESSAGES}", self.messages.len()),
            ));
        }
        let mut previous = 0;
        let mut ids = HashSet::with_capacity(self.messages.len());
        let mut keys = HashSet::new();
        for message in &self.messages {
            if message.thread_id != thread.id {
                return Err(PersistError::invalid(
                    "messages",
                    format!("message {} belongs to thread {}, not {}", message.id, message.thread_id, thread.id),
                ));
            }
            if message.seq <= previous || message.seq > thread.last_seq {
                return Err(PersistError::invalid(
                    "seq",
                    format!(
                        "message {} has seq {}: seqs ascend from 1 and stay within the thread's last_seq {}",
                        message.id, message.seq, thread.last_seq
                    ),
                ));
            }
            previous = message.seq;
            if message.version == 0 || message.version > MAX_RESTORED_COUNTER {
                return Err(PersistError::invalid("version", "a message's version is 1 to 2^53"));
            }
            check_times(&format!("message {}", message.id), message.created_at, message.updated_at, latest)?;
            if !ids.insert(&message.id) {
                return Err(PersistError::invalid("messages", format!("message {} appears twice", message.id)));
            }
            if let Some(key) = &message.idempotency_key
                && !keys.insert(key)
            {
                return Err(PersistError::invalid("idempotency_key", format!("{key} appears twice")));
            }
            message.content.check_depth()?;
            if message.content.has_nul() {
                return Err(nul("content"));
            }
            message.metadata.check_depth()?;
            if message.metadata.has_nul() {
                return Err(nul("metadata"));
            }
        }
        let mut agents = HashSet::with_capacity(self.bindings.len());
        for stored in &self.bindings {
            let binding = &stored.binding;
            if binding.thread_id != thread.id {
                return Err(PersistError::invalid(
                    "bindings",
                    format!("a binding of thread {}, not {}", binding.thread_id, thread.id),
                ));
            }
            if !agents.insert(&binding.agent_id) {
                return Err(PersistError::invalid("bindings", format!("agent {} has two bindings", binding.agent_id)));
            }
            check_work_dir(binding.work_dir.as_deref())?;
            let what = format!("the binding of agent {}", binding.agent_id);
            check_times(&what, binding.created_at, binding.updated_at, latest)?;
        }
        Ok(())
    }

    /// What a backend does with `incoming`, given the message stored under its id, the id of
    /// the message stored at its seq, and the id of the message that holds its idempotency key
    /// (each `None` when there is none): the same judgement on every backend.
    ///
    /// # Errors
    ///
    /// [`PersistError::AlreadyExists`] or [`PersistError::IdempotencyKeyReused`], as
    /// [`Restore`] describes.
    pub fn verdict(
        incoming: &Message,
        by_id: Option<&Message>,
        at_seq: Option<&MessageId>,
        by_key: Option<&MessageId>,
    ) -> Result<Verdict> {
        if let Some(stored) = by_id {
            return if stored == incoming {
                Ok(Verdict::Present)
            } else {
                Err(already_exists(&incoming.thread_id, &stored.id))
            };
        }
        if let Some(holder) = at_seq {
            return Err(already_exists(&incoming.thread_id, holder));
        }
        if let (Some(holder), Some(key)) = (by_key, &incoming.idempotency_key) {
            return Err(PersistError::IdempotencyKeyReused {
                thread_id: incoming.thread_id.clone(),
                idempotency_key: key.clone(),
                message_id: holder.clone(),
            });
        }
        Ok(Verdict::Insert)
    }

    /// [`verdict`](Self::verdict) given the stored messages of the thread that hold the
    /// incoming message's id, seq or idempotency key (others are ignored): what an SQL backend
    /// finds with one query.
    ///
    /// # Errors
    ///
    /// As [`verdict`](Self::verdict).
    pub fn verdict_among(incoming: &Message, found: &[Message]) -> Result<Verdict> {
        let by_id = found.iter().find(|m| m.id == incoming.id);
        let at_seq = found.iter().find(|m| m.seq == incoming.seq).map(|m| &m.id);
        let by_key = found
            .iter()
            .find(|m| m.idempotency_key.is_some() && m.idempotency_key == incoming.idempotency_key)
            .map(|m| &m.id);
        Self::verdict(incoming, by_id, at_seq, by_key)
    }
}

fn already_exists(thread_id: &ThreadId, message_id: &MessageId) -> PersistError {
    PersistError::AlreadyExists { thread_id: thread_id.clone(), message_id: message_id.clone() }
}

/// What [`Restore::verdict`] decided for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Not stored: write it.
    Insert,
    /// Stored already, equal in every field: nothing to write.
    Present,
}

/// The answer to a [`Restore`]: the thread as stored after it, and how many messages were
/// written and how many were there already.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Restored {
    /// The thread after the restore.
    pub thread: Thread,
    /// Messages written by this request.
    pub restored: u64,
    /// Messages that were stored already, equal in every field.
    pub present: u64,
    /// Session bindings written by this request.
    #[serde(default)]
    pub bindings: u64,
}

impl Restored {
    /// A restore's answer (no binding written).
    pub fn new(thread: Thread, restored: u64, present: u64) -> Self {
        Self { thread, restored, present, bindings: 0 }
    }

    /// The answer with `bindings` bindings written.
    pub fn with_bindings(mut self, bindings: u64) -> Self {
        self.bindings = bindings;
        self
    }
}

/// The thread a restore leaves, given the one stored before it (`None`: absent) and the number
/// of messages it inserts: the rule of [`Restore`] for every backend.
///
/// The thread's [`active_leaf`](Thread::active_leaf) is the backend's to set once the
/// messages are in: the restored thread's when that message is in the thread, else the thread's
/// highest seq (a restore in several requests, whose leaf comes in a later one, keeps a leaf
/// that exists at every step).
pub fn merged_thread(stored: Option<&Thread>, restore: &Thread, inserted: u64) -> Thread {
    match stored {
        None => Thread { message_count: inserted, ..restore.clone() },
        Some(stored) => Thread {
            version: stored.version.max(restore.version),
            updated_at: stored.updated_at.max(restore.updated_at),
            last_seq: stored.last_seq.max(restore.last_seq),
            message_count: stored.message_count + inserted,
            ..stored.clone()
        },
    }
}
