//! Per-message state of a [`CoalesceLayer`](super::CoalesceLayer): the last write, the update
//! held back, and the lock that orders the writes of one message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::args::UpdateContent;
use crate::{Content, Message, MessageId, PersistArgs, PersistError, PersistResult, TenantId, ThreadId};

/// A message: `(tenant, thread, id)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Key(Option<TenantId>, ThreadId, MessageId);

impl Key {
    pub(super) fn new(tenant: Option<&TenantId>, thread: &ThreadId, id: &MessageId) -> Self {
        Self(tenant.cloned(), thread.clone(), id.clone())
    }

    pub(super) fn of(tenant: Option<&TenantId>, message: &Message) -> Self {
        Self::new(tenant, &message.thread_id, &message.id)
    }
}

/// Slots of the messages being streamed, shared by every clone of the layer.
#[derive(Debug, Default)]
pub(super) struct Slots {
    map: Mutex<HashMap<Key, Arc<Slot>>>,
}

/// Above this many messages streamed at once, slots with nothing held back are dropped (a
/// reservation never finalized leaves one).
const MAX_SLOTS: usize = 10_000;

impl Slots {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Arc<Slot>>> {
        // Nothing panics while holding it.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The slot of `key`, made if there is none.
    pub(super) fn slot(&self, key: &Key) -> Arc<Slot> {
        let mut map = self.map();
        if let Some(slot) = map.get(key) {
            return Arc::clone(slot);
        }
        if map.len() >= MAX_SLOTS {
            // Slots nobody holds (no update waiting, no write under way).
            map.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        Arc::clone(map.entry(key.clone()).or_default())
    }

    /// Records a write of `message` (a reservation's): its interval starts now.
    pub(super) async fn written(&self, key: Key, message: &Message) {
        let slot = self.slot(&key);
        slot.gate.lock().await.written(message);
    }

    /// Drops the slot of a finalized message, unless another one took its place.
    pub(super) fn forget(&self, key: &Key, slot: &Arc<Slot>) {
        let mut map = self.map();
        if map.get(key).is_some_and(|found| Arc::ptr_eq(found, slot)) {
            map.remove(key);
        }
    }
}

/// One message's state; its lock orders the writes of the message.
#[derive(Debug, Default)]
pub(super) struct Slot {
    pub(super) gate: tokio::sync::Mutex<Gate>,
}

#[derive(Debug, Default)]
pub(super) struct Gate {
    /// The message as last written, and when.
    last: Option<(Message, Instant)>,
    /// What is held back, not written yet.
    pub(super) pending: Option<Pending>,
    /// A task will write `pending` at the end of the interval.
    pub(super) flush_scheduled: bool,
}

impl Gate {
    /// Holds `update` back when the message was written less than `interval` ago; answers the
    /// message as last written, with a replacement's content (an append's answer keeps the
    /// content last written: joining it would cost the whole text each token). `Err` gives
    /// the update back: write it now.
    pub(super) fn hold(&mut self, update: UpdateContent, interval: Duration) -> Result<Message, UpdateContent> {
        let Some((last, at)) = self.last.as_ref() else { return Err(update) };
        if at.elapsed() >= interval && !self.flush_scheduled {
            return Err(update);
        }
        if !update.append {
            let answer = Message { content: update.content.clone(), ..last.clone() };
            self.pending = Some(Pending::Replace(update));
            return Ok(answer);
        }
        let answer = last.clone();
        match &mut self.pending {
            Some(Pending::Append { tails, .. }) => tails.push(update.content),
            Some(Pending::Replace(base)) => match Content::joined([&base.content, &update.content]) {
                Ok(joined) => base.content = joined,
                // Not blocks: written now, for the store to refuse as it stands.
                Err(_) => return Err(update),
            },
            None => {
                let tails = vec![update.content.clone()];
                self.pending = Some(Pending::Append { update, tails });
            }
        }
        Ok(answer)
    }

    /// The update to write now in place of `update`, with what is held back before it: an
    /// append carries the held-back text first; a replacement supersedes it.
    pub(super) fn merged(&mut self, update: UpdateContent) -> UpdateContent {
        let pending = self.pending.take();
        if !update.append {
            return update;
        }
        // Parts that are not blocks cannot be joined: the update goes down as it stands (the
        // store refuses it) and what was held back stays for its own write.
        match pending {
            None => update,
            Some(Pending::Append { update: first, tails }) => {
                match Content::joined(tails.iter().chain([&update.content])) {
                    Ok(content) => UpdateContent { content, ..update },
                    Err(_) => {
                        self.pending = Some(Pending::Append { update: first, tails });
                        update
                    }
                }
            }
            Some(Pending::Replace(base)) => match Content::joined([&base.content, &update.content]) {
                Ok(content) => UpdateContent { content, append: false, ..update },
                Err(_) => {
                    self.pending = Some(Pending::Replace(base));
                    update
                }
            },
        }
    }

    /// Whether an update is held back with no task to write it.
    pub(super) fn needs_flush(&self) -> bool {
        self.pending.is_some() && !self.flush_scheduled
    }

    /// When the held-back update is due: an interval after the last write.
    pub(super) fn due(&self, interval: Duration) -> Instant {
        self.last.as_ref().map_or_else(Instant::now, |(_, at)| *at + interval)
    }

    pub(super) fn written(&mut self, message: &Message) {
        self.last = Some((message.clone(), Instant::now()));
    }
}

/// What a slot holds back.
#[derive(Debug)]
pub(super) enum Pending {
    /// The latest replacement of the content.
    Replace(UpdateContent),
    /// Appends, in order: the first (its ids and context) and every part to add.
    Append { update: UpdateContent, tails: Vec<Content> },
}

/// Writes what is held back in `slot` at `deadline` (if a final update did not take its place).
pub(super) async fn flush<S>(slot: Arc<Slot>, inner: S, deadline: Instant)
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Send,
    S::Future: Send,
{
    tokio::time::sleep_until(deadline).await;
    let mut gate = slot.gate.lock().await;
    gate.flush_scheduled = false;
    let Some(pending) = gate.pending.take() else { return };
    let update = match pending {
        Pending::Replace(update) => update,
        Pending::Append { update, tails } => match Content::joined(&tails) {
            Ok(content) => UpdateContent { content, ..update },
            Err(_) => update,
        },
    };
    let (thread, id) = (update.thread_id.clone(), update.message_id.clone());
    match inner.oneshot(update.into()).await {
        Ok(PersistResult::ContentUpdated(done)) => gate.written(&done.message),
        Ok(other) => tracing::warn!(op = %other.op(), "a held-back content update got an unexpected answer"),
        Err(error) => {
            tracing::warn!(%thread, message = %id, %error, "a held-back content update was refused");
        }
    }
}
