//! Per-message state of a [`CoalesceLayer`](super::CoalesceLayer): the last write, the update
//! held back, and the lock that orders the writes of one message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceExt};

use persist_core::args::UpdateContent;
use persist_core::{Content, Message, MessageId, PersistArgs, PersistError, PersistResult, TenantId, ThreadId};

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
    /// Calls of the message not at its lock yet (see [`Turn`]).
    turns: AtomicUsize,
}

impl Slot {
    /// Whether an earlier call of the message has not taken its lock yet: a later one waits
    /// its turn instead of being held back at once.
    pub(super) fn has_turns(&self) -> bool {
        self.turns.load(Ordering::SeqCst) > 0
    }
}

/// A call of a slot's message on its way to the lock, taken when the call is made and given
/// back once it holds the lock (or is dropped).
pub(super) struct Turn(Arc<Slot>);

impl Turn {
    pub(super) fn take(slot: &Arc<Slot>) -> Self {
        slot.turns.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(slot))
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.turns.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Default)]
pub(super) struct Gate {
    /// The message as last written, and when.
    last: Option<(Message, Instant)>,
    /// What is held back, not written yet.
    pub(super) pending: Option<Pending>,
    /// When a task will write `pending`, if one is to.
    flush_due: Option<Instant>,
    /// The final update was written: later partial updates go down at once, never held back
    /// (a slot dropped meanwhile would hold them where no final follows).
    pub(super) finalized: bool,
}

impl Gate {
    /// Holds `update` back when the message was written less than `interval` ago; answers the
    /// message as last written, with a replacement's content (an append's answer keeps the
    /// content last written: joining it would cost the whole text each token). `Err` gives
    /// the update back: write it now.
    pub(super) fn hold(&mut self, update: UpdateContent, interval: Duration) -> Result<Message, UpdateContent> {
        if self.finalized {
            return Err(update);
        }
        // One clock read: a stream asks this for every token.
        let now = Instant::now();
        let scheduled = self.scheduled_at(now, interval);
        let Some((last, at)) = self.last.as_ref() else { return Err(update) };
        if now.saturating_duration_since(*at) >= interval && !scheduled {
            return Err(update);
        }
        // Not blocks: written now, for the store to refuse as it stands (held back, it would
        // keep the other appends from being joined).
        if update.append && !update.content.as_json().trim_start().starts_with('[') {
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
                Ok(joined) => {
                    base.content = joined;
                    // What the replacement adds grows by the tail (a replacement without a
                    // delta still has none).
                    base.delta = base.delta.as_ref().and_then(|delta| Content::joined([delta, &update.content]).ok());
                }
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

    /// The update to write now in place of `update`, with what is held back before it, and
    /// what it carries of that (to hold back again if the write fails): an append carries the
    /// held-back parts first; a replacement supersedes them.
    pub(super) fn merged(&mut self, update: UpdateContent) -> (UpdateContent, Option<Pending>) {
        let pending = self.pending.take();
        if !update.append {
            return (update, None);
        }
        // Parts that are not blocks cannot be joined: the update goes down as it stands (the
        // store refuses it) and what was held back stays for its own write.
        match pending {
            None => (update, None),
            Some(pending) => match Content::joined(pending.parts().chain([&update.content])) {
                Ok(content) => {
                    let append = matches!(pending, Pending::Append { .. });
                    let mut update = update;
                    (update.content, update.append) = (content, append);
                    (update, Some(pending))
                }
                Err(_) => {
                    self.pending = Some(pending);
                    (update, None)
                }
            },
        }
    }

    /// Whether a task is to write what is held back: one due more than an interval ago never
    /// ran (its runtime went away), and another is scheduled.
    fn scheduled(&self, interval: Duration) -> bool {
        self.scheduled_at(Instant::now(), interval)
    }

    fn scheduled_at(&self, now: Instant, interval: Duration) -> bool {
        self.flush_due.is_some_and(|due| now < due + interval)
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

impl Pending {
    /// The contents it holds, in order.
    fn parts(&self) -> Box<dyn Iterator<Item = &Content> + '_> {
        match self {
            Self::Replace(update) => Box::new(std::iter::once(&update.content)),
            Self::Append { tails, .. } => Box::new(tails.iter()),
        }
    }

    /// The one update that writes it.
    fn into_update(self) -> UpdateContent {
        match self {
            Self::Replace(update) => update,
            Self::Append { update, tails } => match Content::joined(&tails) {
                Ok(content) => {
                    let mut update = update;
                    update.content = content;
                    update
                }
                // Every part was checked to be blocks when held back.
                Err(_) => update,
            },
        }
    }
}

/// Has a task write what `gate` holds back an interval after the last write, unless one is
/// to already.
pub(super) fn schedule<S>(gate: &mut Gate, slot: &Arc<Slot>, inner: &S, interval: Duration)
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    if gate.pending.is_none() || gate.scheduled(interval) {
        return;
    }
    let due = gate.last.as_ref().map_or_else(Instant::now, |(_, at)| *at + interval).max(Instant::now());
    gate.flush_due = Some(due);
    tokio::spawn(flush(Arc::clone(slot), inner.clone(), due, interval));
}

/// Writes what is held back in `slot` at `deadline` (if a final update did not take its
/// place). A temporary failure keeps it held back for another try an interval later; a
/// refusal (the message deleted, …) is logged, and the stream's next update meets it too.
async fn flush<S>(slot: Arc<Slot>, inner: S, mut deadline: Instant, interval: Duration)
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    loop {
        tokio::time::sleep_until(deadline).await;
        let mut gate = slot.gate.lock().await;
        gate.flush_due = None;
        let Some(pending) = gate.pending.take() else { return };
        let update = pending.into_update();
        let (thread, id) = (update.thread_id.clone(), update.message_id.clone());
        match inner.clone().oneshot(update.clone().into()).await {
            Ok(PersistResult::ContentUpdated(done)) => return gate.written(&done.message),
            Ok(other) => {
                return tracing::warn!(op = %other.op(), "a held-back content update got an unexpected answer");
            }
            Err(error) if error.is_temporary() => {
                tracing::warn!(%thread, message = %id, %error, "a held-back content update failed; trying again");
                // Held back again, ahead of anything held back after it.
                gate.pending = Some(if update.append {
                    Pending::Append { tails: vec![update.content.clone()], update }
                } else {
                    Pending::Replace(update)
                });
                deadline = Instant::now() + interval;
                gate.flush_due = Some(deadline);
            }
            Err(error) => {
                return tracing::warn!(%thread, message = %id, %error, "a held-back content update was refused");
            }
        }
    }
}
