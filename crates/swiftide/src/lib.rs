//! swiftide's message history in persist: [`PersistHistory`] implements swiftide's
//! [`MessageHistory`] over any persist pipeline (the embedded SQLite file, PostgreSQL shared by
//! several instances, a tenant's scoped handle, any stack of layers). Plug it into an agent's
//! context with `DefaultContext::with_message_history`.
//!
//! What it adds to swiftide's default (a `Mutex<Vec<ChatMessage>>` in the process):
//!
//! - **It survives the process**, and several processes share it. One history is one persist
//!   thread, created by its first message.
//! - **A write is one atomic turn**: `extend` writes its messages in one transaction, all or
//!   none (up to persist's 256 messages a turn; a longer batch is written 256 at a time).
//! - **A write is idempotent**: its key is derived from the history (a value of its own, which
//!   its clones share), the place it follows (the thread's highest message number when it
//!   first wrote, then its own last write) and the messages themselves, so the same write sent
//!   again (its acknowledgement lost) writes nothing twice, while the same words said again
//!   later, or again after an `overwrite` dropped them, or by another history (another
//!   process), are new messages.
//! - **`overwrite` keeps what it replaces**: the messages the new history shares with the old
//!   stay; the rest is written as a new branch from there (a history cut short, as swiftide's
//!   `redrive` does, only moves the branch's end back). One write, so a reader sees the old
//!   history or the new one. The replaced messages stay readable on their branch (persist's
//!   branch reads). Only an overwrite with nothing empties the thread.
//! - **Lossless**: swiftide's messages are stored as persist's typed parts (text, tool calls,
//!   tool results), readable by every other reader of the store, and read back equal (see
//!   [`convert`]).
//! - **`history` gives the model's view** ([`View::Model`], the default): a tool call a later
//!   prompt left behind (its process killed while the tool ran) is not given, and persist's
//!   compaction is: the latest summary comes as swiftide's `Summary`, after the system
//!   messages it covers, which swiftide gives the model with the messages after it. Those are
//!   what it reads: a compacted thread's history costs its tail and its system messages, not
//!   everything the summary covers.
//!   [`View::Transcript`] gives every message.
//!
//! Errors are persist's [`PersistError`], which the `anyhow::Error` swiftide carries can be
//! downcast to.
//!
//! A new agent adds its system prompt to the history when it first runs; an agent that
//! resumes a history which already holds it is built with `no_system_prompt()`.
//!
//! Built against `swiftide-core` and `swiftide-agents` 0.32.1 (the newest release that builds
//! with Rust 1.95; 0.33 requires 1.97).
//!
//! # Example
//!
//! ```
//! use persist_core::{Pipeline, ThreadId};
//! use persist_swiftide::PersistHistory;
//! use swiftide_core::MessageHistory;
//! use swiftide_core::chat_completion::ChatMessage;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::new(persist_memory::MemoryBackend::new());
//! let history = PersistHistory::new(&pipeline, ThreadId::new("thread-1")?);
//! history.extend_owned(vec![ChatMessage::new_user("My name is Alice."), ChatMessage::new_assistant(Some("Hello, Alice!"), None)]).await?;
//! assert_eq!(history.history().await?.len(), 2);
//! # Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! ```

pub mod convert;
mod view;

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use persist_core::args::{AppendTurn, Delete, MAX_TURN_MESSAGES, Update};
use persist_core::branch::{Branch, Parent, Switch};
use persist_core::read::{GetThread, ListMessages};
use persist_core::summary::ReadCompacted;
use persist_core::{
    Context, IdempotencyKey, Message as Stored, MessageId, Order, PersistError, Pipeline, Role, Scoped, ThreadId,
    ToolNames, Updated,
};
use swiftide_core::MessageHistory;
use swiftide_core::chat_completion::ChatMessage;
use uuid::Uuid;

/// What [`PersistHistory::history`](MessageHistory::history) gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum View {
    /// What the model is given: the active branch without a tool call a later prompt left
    /// behind, nor an output without its call; with persist's latest compaction summary of the
    /// thread, the system messages it covers, its `Summary`, and the messages after it.
    #[default]
    Model,
    /// Every message of the thread's active branch, in order.
    Transcript,
}

/// The namespace of the idempotency keys this history derives.
const NAMESPACE: Uuid = Uuid::from_u128(0x8a4e_1f0c_52d7_4b39_a6e2_0c97_d1b3_5f48);

/// How many messages a read asks for at a time.
const READ_PAGE: u32 = 500;

/// swiftide's [`MessageHistory`] on a persist thread; see the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct PersistHistory {
    store: Scoped,
    thread: ThreadId,
    view: View,
    /// This history's own part of its keys (its clones share it): another history's write of
    /// the same words at the same place is a write of its own.
    writer: Uuid,
    /// The place this history's next write follows, part of its idempotency key: the seq of
    /// its last write, or the thread's highest seq when it last looked (its first write, an
    /// overwrite). A thread's seqs only grow, so a place is never used twice for two writes.
    place: Arc<Mutex<Option<u64>>>,
}

/// A message of a read, as swiftide's, with where to cut to keep it and everything before it.
type Item = (ChatMessage, Option<Anchor>);

/// The stored message a history can end at to keep an item and all before it.
#[derive(Debug, Clone)]
struct Anchor {
    id: MessageId,
}

/// What a read found.
struct Read {
    items: Vec<Item>,
    /// The seq of the branch's last message, if it has one.
    leaf: Option<u64>,
}

impl PersistHistory {
    /// The history of `thread` on `pipeline`, with no tenant.
    pub fn new(pipeline: &Pipeline, thread: ThreadId) -> Self {
        Self::scoped(pipeline.scoped(Context::new()), thread)
    }

    /// The history of `thread` on a scoped handle: the thread is the handle's tenant's.
    pub fn scoped(store: Scoped, thread: ThreadId) -> Self {
        Self { store, thread, view: View::default(), writer: Uuid::now_v7(), place: Arc::default() }
    }

    /// What `history` gives (default [`View::Model`]).
    pub fn with_view(mut self, view: View) -> Self {
        self.view = view;
        self
    }

    /// The thread this history is.
    pub fn thread(&self) -> &ThreadId {
        &self.thread
    }

    fn place(&self) -> Option<u64> {
        *self.place.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_place(&self, place: Option<u64>) {
        *self.place.lock().unwrap_or_else(PoisonError::into_inner) = place;
    }

    /// The active branch's messages with seq below `before` (all of them without) of `roles`
    /// (every role when empty), in order; none for a thread not written yet.
    async fn branch(&self, before: Option<u64>, roles: &[Role]) -> Result<Vec<Stored>, PersistError> {
        let mut query = ListMessages::new(self.thread.clone())
            .on_branch(Branch::Active)
            .with_roles(roles.iter().cloned())
            .with_order(Order::Asc)
            .with_limit(READ_PAGE);
        if let Some(before) = before {
            query = query.before(before);
        }
        let mut all = Vec::new();
        loop {
            let page = match self.store.list(query.clone()).await {
                Ok(page) => page,
                Err(PersistError::NotFound { .. }) => return Ok(all),
                Err(error) => return Err(error),
            };
            let last = page.items.last().map(|message| message.seq);
            all.extend(page.items);
            match (page.has_more, last) {
                (true, Some(seq)) => query = query.after(seq),
                _ => return Ok(all),
            }
        }
    }

    /// What the model is given of the messages a summary ending at `through` covers: the
    /// active branch's system messages up to it, and the anchor of the summary (the message at
    /// `through`, where a branch can end to keep the summary and all before it), when the
    /// branch holds it. Reads those alone (a page of system messages, and one message), never
    /// the whole covered history: a compacted thread's read costs its tail.
    async fn covered(&self, through: u64) -> Result<(Vec<Stored>, Option<Anchor>), PersistError> {
        let before = through.saturating_add(1);
        let system = self.branch(Some(before), &[Role::System]).await?;
        if let Some(last) = system.last().filter(|message| message.seq == through) {
            let anchor = Anchor { id: last.id.clone() };
            return Ok((system, Some(anchor)));
        }
        let last = ListMessages::new(self.thread.clone())
            .on_branch(Branch::Active)
            .before(before)
            .with_order(Order::Desc)
            .with_limit(1);
        let anchor = match self.store.list(last).await {
            Ok(page) => page.items.into_iter().next().filter(|message| message.seq == through),
            Err(PersistError::NotFound { .. }) => None,
            Err(error) => return Err(error),
        };
        Ok((system, anchor.map(|message| Anchor { id: message.id })))
    }

    /// The history as `view` gives it, each item with its anchor.
    async fn read(&self, view: View) -> Result<Read, PersistError> {
        let (head, anchor, summary, tail) = match view {
            View::Transcript => (Vec::new(), None, None, self.branch(None, &[]).await?),
            View::Model => match self.store.compacted(ReadCompacted::new(self.thread.clone())).await {
                Ok(compacted) => match compacted.summary {
                    Some(summary) => {
                        let (head, anchor) = self.covered(summary.through_seq).await?;
                        (head, anchor, Some(summary), compacted.messages)
                    }
                    None => (Vec::new(), None, None, compacted.messages),
                },
                Err(PersistError::NotFound { .. }) => (Vec::new(), None, None, Vec::new()),
                Err(error) => return Err(error),
            },
        };
        // The calls of the covered messages not read are not needed to name a result: one after
        // the summary whose call it covers answers nothing the model is given, and is left out
        // (see `view`).
        let names: ToolNames = head.iter().chain(&tail).map(|message| &message.content).collect();
        let mut items = Vec::new();
        if let Some(summary) = &summary {
            // What swiftide gives the model of what the summary covers: its system messages.
            for message in &head {
                let read = convert::to_chat(message, &names);
                if read.iter().all(|item| matches!(item, ChatMessage::System(_))) {
                    push_anchored(&mut items, message, read);
                }
            }
            items.push((ChatMessage::Summary(summary.content.to_text()), anchor));
        }
        for message in &tail {
            push_anchored(&mut items, message, convert::to_chat(message, &names));
        }
        let leaf = tail.last().or(head.last()).map(|message| message.seq).max(summary.map(|s| s.through_seq));
        let items = match view {
            View::Model => view::for_model(items),
            View::Transcript => items,
        };
        Ok(Read { items, leaf })
    }

    /// The key of a write of `messages` after the message numbered `place`.
    fn key(&self, place: u64, messages: &[ChatMessage]) -> Result<IdempotencyKey, PersistError> {
        let body = serde_json::to_vec(messages)
            .map_err(|e| PersistError::invalid("messages", format!("a swiftide message did not serialize: {e}")))?;
        let mut seed = Vec::with_capacity(body.len() + 64);
        seed.extend_from_slice(self.thread.as_str().as_bytes());
        seed.push(0x1f);
        seed.extend_from_slice(self.writer.as_bytes());
        seed.push(0x1f);
        seed.extend_from_slice(place.to_string().as_bytes());
        seed.push(0x1f);
        seed.extend_from_slice(&body);
        IdempotencyKey::new(format!("swiftide:{}", Uuid::new_v5(&NAMESPACE, &seed).simple()))
    }

    /// Appends `items` after the branch's end, a turn at a time, each under its key.
    async fn append(&self, items: Vec<ChatMessage>) -> Result<(), PersistError> {
        if items.is_empty() {
            return Ok(());
        }
        // The place this write follows: this history's last write, else the thread's highest
        // seq now, kept before the write so that the write sent again has the same key.
        let mut place = match self.place() {
            Some(place) => place,
            None => {
                let thread = self.store.get_thread(GetThread::new(self.thread.clone())).await?;
                let place = thread.map_or(0, |thread| thread.last_seq);
                self.set_place(Some(place));
                place
            }
        };
        for chunk in items.chunks(MAX_TURN_MESSAGES) {
            let turn = AppendTurn::of(self.thread.clone(), chunk.iter().map(convert::to_turn_message))
                .with_idempotency_key(self.key(place, chunk)?);
            let appended = self.store.append_turn(turn).await?;
            place = appended.messages.last().map_or(place, |message| message.seq);
            self.set_place(Some(place));
        }
        Ok(())
    }

    /// Makes the active branch hold exactly `items`: see [`MessageHistory::overwrite`].
    async fn replace(&self, items: Vec<ChatMessage>) -> Result<(), PersistError> {
        let read = self.read(self.view).await?;
        let shared = read.items.iter().zip(&items).take_while(|((old, _), new)| old == *new).count();
        if shared == read.items.len() && shared == items.len() {
            return Ok(());
        }
        // Keep the longest shared run that ends where a branch can end (not inside a stored
        // message that holds several of swiftide's).
        let (kept, anchor) = (0..=shared)
            .rev()
            .find_map(|kept| match kept {
                0 => Some((0, None)),
                _ => read.items[kept - 1].1.as_ref().map(|anchor| (kept, Some(anchor.id.clone()))),
            })
            .unwrap_or((0, None));
        let rest = &items[kept..];
        match (anchor, rest.is_empty()) {
            (Some(anchor), true) => {
                let updated =
                    self.store.update(Update::thread(self.thread.clone()).with_switch(Switch::To(anchor))).await?;
                // Past every seq the thread used: the messages written next are new, even
                // those equal to the ones the switch left behind.
                self.set_place(match updated {
                    Updated::Thread(thread) => Some(thread.last_seq),
                    _ => None,
                });
            }
            (None, true) => {
                match self.store.delete(Delete::clear(self.thread.clone())).await {
                    Ok(_) | Err(PersistError::NotFound { .. }) => {}
                    Err(error) => return Err(error),
                }
                self.set_place(None);
            }
            (anchor, false) => {
                let parent = match (anchor, read.leaf) {
                    (Some(anchor), _) => Parent::Message(anchor),
                    // Nothing kept: a root of its own, or the thread's first messages.
                    (None, Some(_)) => Parent::Root,
                    (None, None) => Parent::Active,
                };
                let mut chunks = rest.chunks(MAX_TURN_MESSAGES);
                let first = chunks.next().unwrap_or_default();
                let turn =
                    AppendTurn::of(self.thread.clone(), first.iter().map(convert::to_turn_message)).with_parent(parent);
                let appended = self.store.append_turn(turn).await?;
                self.set_place(appended.messages.last().map(|message| message.seq));
                for chunk in chunks {
                    self.append(chunk.to_vec()).await?;
                }
            }
        }
        Ok(())
    }
}

/// Adds the swiftide messages `read` from `message` to `items`: the last of them anchored at
/// the message (a branch can end there), the others not.
fn push_anchored(items: &mut Vec<Item>, message: &Stored, read: Vec<ChatMessage>) {
    let count = read.len();
    for (index, item) in read.into_iter().enumerate() {
        let anchor = (index + 1 == count).then(|| Anchor { id: message.id.clone() });
        items.push((item, anchor));
    }
}

#[async_trait]
impl MessageHistory for PersistHistory {
    /// The history as the history's [`View`] gives it.
    async fn history(&self) -> anyhow::Result<Vec<ChatMessage>> {
        let read = self.read(self.view).await?;
        Ok(read.items.into_iter().map(|(item, _)| item).collect())
    }

    /// Appends one message, idempotently (see the [crate docs](crate)).
    async fn push_owned(&self, item: ChatMessage) -> anyhow::Result<()> {
        Ok(self.append(vec![item]).await?)
    }

    /// Appends the messages in one atomic turn (256 at a time past 256), idempotently.
    async fn extend_owned(&self, items: Vec<ChatMessage>) -> anyhow::Result<()> {
        Ok(self.append(items).await?)
    }

    /// Makes the history `items`, compared with what [`history`](Self::history) gives: the
    /// messages they share at the start stay, and the rest of `items` is written as a new
    /// branch after them (or the branch's end moves back when `items` is the shorter); the
    /// messages replaced stay on their branch. An empty `items` clears the thread.
    async fn overwrite(&self, items: Vec<ChatMessage>) -> anyhow::Result<()> {
        Ok(self.replace(items).await?)
    }
}
