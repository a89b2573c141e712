//! [`FeedHub`]: where a store announces its new events, so subscribers wake for their scope.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::event::{FeedEvent, FeedScope, Subject};
use crate::model::id::TenantId;

type Key = (Option<TenantId>, Option<Subject>);

/// Wake-ups for subscribers of one backend's feed: the backend publishes the events it knows
/// are committed (its own writes, and what it learns of other processes' or instances'), and
/// each subscriber waits for its scope only (one thread or document, one tenant, or the store).
///
/// The feed's table (or memory) is the truth: a wake-up only says "read again", so a lost or
/// repeated one loses or repeats nothing. Cloning shares the hub.
#[derive(Clone, Default)]
pub struct FeedHub {
    inner: Arc<Mutex<Watches>>,
}

#[derive(Default)]
struct Watches {
    store: Option<watch::Sender<u64>>,
    scopes: HashMap<Key, watch::Sender<u64>>,
}

impl fmt::Debug for FeedHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedHub").field("watched_scopes", &self.lock().scopes.len()).finish()
    }
}

impl FeedHub {
    /// A hub nobody watches yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Watches> {
        // Nothing panics under the lock; a poisoned map is still a consistent map.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether any subscriber waits: a backend skips learning of others' writes otherwise.
    pub fn is_watched(&self) -> bool {
        let watches = self.lock();
        watches.store.as_ref().is_some_and(|s| s.receiver_count() > 0) || !watches.scopes.is_empty()
    }

    /// Wakes the subscribers of these events' scopes. Never waits.
    pub fn publish<'a>(&self, events: impl IntoIterator<Item = &'a FeedEvent>) {
        let mut watches = self.lock();
        let raise = |sender: &watch::Sender<u64>, position: u64| {
            sender.send_if_modified(|seen| {
                let newer = position > *seen;
                *seen = (*seen).max(position);
                newer
            });
        };
        for event in events {
            if let Some(store) = &watches.store {
                raise(store, event.position);
            }
            if watches.scopes.is_empty() {
                continue;
            }
            for key in [(event.change.tenant.clone(), None), (event.change.tenant.clone(), event.change.subject())] {
                if let Some(sender) = watches.scopes.get(&key) {
                    raise(sender, event.position);
                }
            }
        }
        watches.scopes.retain(|_, sender| sender.receiver_count() > 0);
    }

    /// A wake-up for `scope` of `tenant`.
    pub(super) fn watch(&self, scope: &FeedScope, tenant: Option<TenantId>) -> watch::Receiver<u64> {
        let mut watches = self.lock();
        match scope {
            FeedScope::AcrossTenants => watches.store.get_or_insert_with(|| watch::channel(0).0).subscribe(),
            FeedScope::Tenant => {
                watches.scopes.entry((tenant, None)).or_insert_with(|| watch::channel(0).0).subscribe()
            }
            FeedScope::Thread(id) => {
                let key = (tenant, Some(Subject::Thread(id.clone())));
                watches.scopes.entry(key).or_insert_with(|| watch::channel(0).0).subscribe()
            }
            FeedScope::Memory(resource) => {
                let key = (tenant, Some(Subject::Memory(resource.clone())));
                watches.scopes.entry(key).or_insert_with(|| watch::channel(0).0).subscribe()
            }
        }
    }
}
