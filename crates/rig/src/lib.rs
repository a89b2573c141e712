//! rig's conversation memory in persist: [`PersistMemory`] implements rig's
//! [`ConversationMemory`] over any persist pipeline (the embedded SQLite file, PostgreSQL shared
//! by several instances, a tenant's scoped handle, any stack of layers).
//!
//! What it adds to rig's own `InMemoryConversationMemory`:
//!
//! - **It survives the process**, and several processes share it.
//! - **An append is one atomic turn**: the run's messages (the prompt, the tool calls and
//!   results, the answer) are written in one transaction, all or none; a crash never leaves a
//!   tool call without its result.
//! - **An append is idempotent**: its key is derived from the conversation, the place it
//!   follows (the highest seq the conversation had when the memory loaded it, which a clear or a
//!   delete never moves back) and the messages themselves, so the same append sent again (its
//!   acknowledgement lost) writes nothing twice, while the same words said again later, after a
//!   clear too, are a new turn.
//! - **Lossless**: rig's messages are stored as persist's typed parts (text, reasoning, tool
//!   calls and results), readable by every other reader of the store, and read back equal; what
//!   a part has no place for is kept beside it (see [`convert`]).
//! - **`load` gives the model's view** ([`View::Model`], the default): the latest compaction
//!   summary (as a system message) and the messages after it, no tool call without its result;
//!   [`View::Transcript`] gives every message.
//! - **`clear` empties the conversation and keeps it**: later messages never reuse a number.
//!
//! rig's conversation id is the thread id. Built against `rig-core` 0.44 (the newest release
//! that builds with Rust 1.95; 0.45 and later require 1.97).
//!
//! # Example
//!
//! ```
//! use persist_core::Pipeline;
//! use persist_rig::PersistMemory;
//! use rig_core::completion::Message;
//! use rig_core::memory::ConversationMemory;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let memory = PersistMemory::new(&Pipeline::new(persist_memory::MemoryBackend::new()));
//! let id = "thread-1".into();
//! memory.append(&id, vec![Message::user("My name is Alice."), Message::assistant("Hello, Alice!")]).await?;
//! assert_eq!(memory.load(&id).await?.len(), 2);
//! # Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! ```

pub mod convert;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use persist_core::args::{AppendTurn, Delete};
use persist_core::branch::Branch;
use persist_core::read::{GetThread, ListMessages};
use persist_core::summary::ReadCompacted;
use persist_core::{
    Context, IdempotencyKey, Message as Stored, Order, PersistError, Pipeline, Scoped, ThreadId, ToolNames,
};
use rig_core::completion::Message;
use rig_core::id::ConversationId;
use rig_core::memory::{ConversationMemory, MemoryError};
use rig_core::wasm_compat::WasmBoxedFuture;
use uuid::Uuid;

/// What [`PersistMemory::load`](ConversationMemory::load) gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum View {
    /// What the model is given: the latest compaction summary of the conversation, as a
    /// system message, and the messages after it (every message when there is none), no tool
    /// call without its result.
    #[default]
    Model,
    /// Every message of the conversation's active branch, in order.
    Transcript,
}

/// The most conversations whose place a memory remembers; past it, one is forgotten for each
/// new one (its next append without a load reads the conversation's newest message instead).
const MAX_PLACES: usize = 4096;

/// The namespace of the idempotency keys this memory derives.
const NAMESPACE: Uuid = Uuid::from_u128(0x3d1c_77a2_9e0b_4f57_b1c4_5a26_e8f0_9d13);

/// rig's [`ConversationMemory`] on a persist pipeline; see the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct PersistMemory {
    store: Scoped,
    view: View,
    /// Per conversation, the number of the last message a load saw: the place the next
    /// append follows, part of its idempotency key. At most [`MAX_PLACES`] conversations.
    places: Arc<Mutex<HashMap<String, u64>>>,
}

impl PersistMemory {
    /// A memory on `pipeline`, with no tenant.
    pub fn new(pipeline: &Pipeline) -> Self {
        Self::scoped(pipeline.scoped(Context::new()))
    }

    /// A memory on a scoped handle: every conversation is the handle's tenant's.
    pub fn scoped(store: Scoped) -> Self {
        Self { store, view: View::default(), places: Arc::default() }
    }

    /// What `load` gives (default [`View::Model`]).
    pub fn with_view(mut self, view: View) -> Self {
        self.view = view;
        self
    }

    fn thread(id: &ConversationId) -> Result<ThreadId, MemoryError> {
        ThreadId::new(id.as_ref()).map_err(MemoryError::backend)
    }

    fn place(&self, id: &ConversationId) -> Option<u64> {
        self.places.lock().unwrap_or_else(PoisonError::into_inner).get(id.as_ref()).copied()
    }

    fn set_place(&self, id: &ConversationId, place: Option<u64>) {
        let mut places = self.places.lock().unwrap_or_else(PoisonError::into_inner);
        match place {
            Some(place) => {
                if places.len() >= MAX_PLACES && !places.contains_key(id.as_ref()) {
                    let forgotten = places.keys().next().cloned();
                    if let Some(forgotten) = forgotten {
                        places.remove(&forgotten);
                    }
                }
                places.insert(id.as_ref().to_owned(), place);
            }
            None => {
                places.remove(id.as_ref());
            }
        }
    }

    /// The place an append follows now: the thread's highest seq (0 before its first message),
    /// which no delete moves back, so an append after a clear never takes an earlier key.
    async fn place_now(&self, thread: &ThreadId) -> Result<u64, PersistError> {
        let stored = self.store.get_thread(GetThread::new(thread.clone())).await?;
        Ok(stored.map_or(0, |thread| thread.last_seq))
    }

    async fn load_messages(&self, thread: ThreadId) -> Result<(Vec<Message>, u64), PersistError> {
        let place = self.place_now(&thread).await?;
        let mut loaded = Vec::new();
        let stored: Vec<Stored> = match self.view {
            View::Model => {
                let compacted = self.store.compacted(ReadCompacted::new(thread)).await?;
                if let Some(summary) = compacted.summary {
                    loaded.push(Message::System { content: summary.content.to_text() });
                }
                compacted.messages
            }
            View::Transcript => {
                let mut all = Vec::new();
                let mut query =
                    ListMessages::new(thread.clone()).on_branch(Branch::Active).with_order(Order::Asc).with_limit(500);
                loop {
                    let page = self.store.list(query.clone()).await?;
                    let last = page.items.last().map(|m| m.seq);
                    all.extend(page.items);
                    match (page.has_more, last) {
                        (true, Some(seq)) => query = query.after(seq),
                        _ => break all,
                    }
                }
            }
        };
        let names: ToolNames = stored.iter().map(|message| &message.content).collect();
        loaded.extend(stored.iter().filter_map(|message| convert::to_rig(message, &names)));
        Ok((loaded, place))
    }

    /// The key of an append of `messages` to `id` after the message numbered `place`.
    fn key(id: &ConversationId, place: u64, messages: &[Message]) -> Result<IdempotencyKey, MemoryError> {
        let body = serde_json::to_vec(messages).map_err(MemoryError::backend)?;
        let mut seed = Vec::with_capacity(body.len() + 64);
        seed.extend_from_slice(id.as_ref().as_bytes());
        seed.push(0x1f);
        seed.extend_from_slice(place.to_string().as_bytes());
        seed.push(0x1f);
        seed.extend_from_slice(&body);
        IdempotencyKey::new(format!("rig:{}", Uuid::new_v5(&NAMESPACE, &seed).simple())).map_err(MemoryError::backend)
    }
}

impl ConversationMemory for PersistMemory {
    fn load<'a>(
        &'a self,
        conversation_id: &'a ConversationId,
    ) -> WasmBoxedFuture<'a, Result<Vec<Message>, MemoryError>> {
        Box::pin(async move {
            let thread = Self::thread(conversation_id)?;
            let (messages, place) = self.load_messages(thread).await.map_err(MemoryError::backend)?;
            self.set_place(conversation_id, Some(place));
            Ok(messages)
        })
    }

    fn append<'a>(
        &'a self,
        conversation_id: &'a ConversationId,
        messages: Vec<Message>,
    ) -> WasmBoxedFuture<'a, Result<(), MemoryError>> {
        Box::pin(async move {
            if messages.is_empty() {
                return Ok(());
            }
            let thread = Self::thread(conversation_id)?;
            let turn = messages
                .iter()
                .map(convert::to_turn_message)
                .collect::<Result<Vec<_>, _>>()
                .map_err(MemoryError::backend)?;
            // The place this append follows: what the last load saw, else the conversation's
            // highest seq now (an append with no load before it in this process).
            let place = match self.place(conversation_id) {
                Some(place) => place,
                None => self.place_now(&thread).await.map_err(MemoryError::backend)?,
            };
            let key = Self::key(conversation_id, place, &messages)?;
            let appended = self
                .store
                .append_turn(AppendTurn::of(thread, turn).with_idempotency_key(key))
                .await
                .map_err(MemoryError::backend)?;
            // The next append follows this one.
            self.set_place(conversation_id, appended.messages.last().map(|message| message.seq));
            Ok(())
        })
    }

    fn clear<'a>(&'a self, conversation_id: &'a ConversationId) -> WasmBoxedFuture<'a, Result<(), MemoryError>> {
        Box::pin(async move {
            let thread = Self::thread(conversation_id)?;
            match self.store.delete(Delete::clear(thread)).await {
                Ok(_) | Err(PersistError::NotFound { .. }) => {}
                Err(error) => return Err(MemoryError::backend(error)),
            }
            self.set_place(conversation_id, None);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_places_remembered_are_bounded() {
        let memory = PersistMemory::new(&Pipeline::new(persist_memory::MemoryBackend::new()));
        for n in 0..MAX_PLACES + 10 {
            memory.set_place(&format!("c{n}").into(), Some(n as u64));
        }
        assert_eq!(memory.places.lock().unwrap().len(), MAX_PLACES);
        let newest = format!("c{}", MAX_PLACES + 9).into();
        assert_eq!(memory.place(&newest), Some((MAX_PLACES + 9) as u64), "the newest is kept");
        memory.set_place(&newest, None);
        assert_eq!(memory.place(&newest), None);
    }
}
