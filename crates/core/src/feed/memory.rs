//! [`MemoryFeed`]: the feed of the memory backend, and a reference for backend authors.

use std::collections::{HashMap, VecDeque};

use super::event::{Change, FeedEvent, Removed, Subject};
use super::read::{FeedPage, ReadFeed};
use super::retention::FeedRetention;
use crate::model::Timestamp;
use crate::model::error::Result;
use crate::model::id::{TenantId, ThreadId};

/// An in-memory feed: what the memory backend keeps, and a reference for backend authors.
///
/// Positions are assigned by [`record`](Self::record) in call order, so the caller records under
/// the same lock as the write it describes. Each thread's positions are kept apart too, so a
/// thread's read costs its own events, however many other threads' came between.
#[derive(Debug, Default)]
pub struct MemoryFeed {
    /// Every event kept, with its time: positions `trimmed + 1 ..= head`, one after another;
    /// `None` where an event was erased (see [`erase_thread`](Self::erase_thread)).
    events: VecDeque<(Option<Change>, Timestamp)>,
    /// Each thread's (and working memory document's) positions among `events`, oldest first
    /// (some may be trimmed already).
    threads: HashMap<(Option<TenantId>, Subject), VecDeque<u64>>,
    head: u64,
    trimmed: u64,
    /// The newest position whose delta age passed: every event up to it has no delta.
    deltas_dropped: u64,
    retention: FeedRetention,
}

impl MemoryFeed {
    /// An empty feed keeping what `retention` says.
    pub fn new(retention: FeedRetention) -> Self {
        Self { retention, ..Self::default() }
    }

    /// Numbers `change` and keeps it; answers its position (see [`event`](Self::event), to
    /// publish it once the write is visible).
    pub fn record(&mut self, change: Change, at: Timestamp) -> u64 {
        self.head += 1;
        if let Some(subject) = change.subject() {
            self.threads.entry((change.tenant.clone(), subject)).or_default().push_back(self.head);
        }
        self.events.push_back((Some(change), at));
        let cutoff = self.retention.count_cutoff(self.head);
        let age = self.retention.age_cutoff(at);
        // The oldest kept is at `trimmed + 1`; the newest event is never removed.
        while self.trimmed + 1 < self.head
            && let Some((_, first_at)) = self.events.front()
            && (self.trimmed < cutoff || age.is_some_and(|age| *first_at < age))
        {
            if let Some((Some(first), _)) = self.events.pop_front()
                && let Some(subject) = first.subject()
            {
                let key = (first.tenant, subject);
                if let Some(positions) = self.threads.get_mut(&key) {
                    positions.pop_front();
                    if positions.is_empty() {
                        self.threads.remove(&key);
                    }
                }
            }
            self.trimmed += 1;
        }
        // Events are recorded in time order: those whose delta age passed are the oldest.
        if let Some(cutoff) = self.retention.delta_cutoff(at) {
            self.deltas_dropped = self.deltas_dropped.max(self.trimmed);
            while self.deltas_dropped < self.head
                && let Some(index) = self.index(self.deltas_dropped + 1)
                && self.events[index].1 < cutoff
            {
                if let Some(change) = &mut self.events[index].0 {
                    change.delta = None;
                }
                self.deltas_dropped += 1;
            }
        }
        self.head
    }

    /// Erases the events of a thread whose id a purge freed (ids may carry personal data), all
    /// but its newest thread delete: a follower still learns that the thread is gone. Positions
    /// stay as they were; readers skip the erased ones.
    pub fn erase_thread(&mut self, tenant: Option<&TenantId>, thread_id: &ThreadId) {
        let key = (tenant.cloned(), Subject::Thread(thread_id.clone()));
        let Some(positions) = self.threads.remove(&key) else {
            return;
        };
        let is_delete = |change: &Change| change.removed == Some(Removed::Thread);
        let kept = positions.iter().rev().copied().find(|&p| self.change(p).is_some_and(is_delete));
        for &position in positions.iter().filter(|&&p| Some(p) != kept) {
            if let Some(index) = self.index(position) {
                self.events[index].0 = None;
            }
        }
        if let Some(kept) = kept {
            self.threads.insert(key, VecDeque::from([kept]));
        }
    }

    /// The index of `position` among the kept events.
    fn index(&self, position: u64) -> Option<usize> {
        usize::try_from(position.checked_sub(self.trimmed + 1)?).ok().filter(|&index| index < self.events.len())
    }

    fn change(&self, position: u64) -> Option<&Change> {
        self.events.get(self.index(position)?)?.0.as_ref()
    }

    /// The event at `position`, while it is kept.
    pub fn event(&self, position: u64) -> Option<FeedEvent> {
        // Kept events are contiguous, and their positions are not stored: a position is its index.
        let (change, at) = self.events.get(self.index(position)?)?;
        Some(change.clone()?.at(position, *at))
    }

    /// The newest position.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Answers `query` from what is kept.
    pub fn read(&self, query: &ReadFeed) -> Result<FeedPage> {
        query.validate()?;
        query.check_position(self.trimmed, self.head)?;
        let take = query.limit as usize + 1;
        let fetched = if let Some(subject) = query.subject() {
            let key = (query.context.tenant().cloned(), subject);
            let positions = self.threads.get(&key);
            positions
                .into_iter()
                .flat_map(|positions| positions.range(positions.partition_point(|&p| p <= query.after)..))
                .take(take)
                .filter_map(|&position| self.event(position))
                .collect()
        } else {
            let first = self.trimmed + 1;
            let start = usize::try_from(query.after.saturating_sub(self.trimmed)).unwrap_or(usize::MAX);
            (first..)
                .zip(&self.events)
                .skip(start)
                .filter_map(|(position, (change, at))| change.as_ref().map(|change| (position, change, at)))
                .filter(|(_, change, _)| query.covers_change(change.tenant.as_ref(), change.subject().as_ref()))
                .take(take)
                .map(|(position, change, at)| change.clone().at(position, *at))
                .collect()
        };
        Ok(query.page(fetched, self.head))
    }
}
