//! The store-wide change feed across shards: every shard's feed read as one, with a cursor of
//! each shard's position ([`ShardsCursor`]).
//!
//! Each shard numbers its own events, so a position of one feed means nothing in another: the
//! cursor holds one position per shard, and a page takes events from every shard, oldest first
//! by their time (each shard's in its own order). An event is left out when its tenant is
//! placed on another shard than the one that holds it (the copies a move writes to the new
//! shard before the switch, the erasures of the old one after it), and so are the directory's
//! own records: each tenant's events are those of its shard. A follower of the tenant's
//! threads that was following while it moved may see a thread's messages again (the new
//! shard's copies, which say what they are: restored messages as inserted); one that starts
//! after sees the tenant's history from its new shard, as that shard holds it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::task::Poll;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Shards;
use persist_core::TenantId;
use persist_core::feed::{FeedEvent, ReadFeed, Subscription};
use persist_core::{PersistError, Result};

/// Where a reader of the store-wide feed across shards is: each shard's position, by name (a
/// shard not named: from its feed's start). Written as text (`Display`, `FromStr`, and so in
/// JSON) for a reader that resumes in another process: `name:position` pairs joined by `,`,
/// with `%`, `,` and `:` in names escaped as `%25`, `%2C`, `%3A`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ShardsCursor {
    positions: BTreeMap<String, u64>,
}

impl ShardsCursor {
    /// A cursor at the start of every shard's feed.
    pub fn new() -> Self {
        Self::default()
    }

    /// The position of shard `name` (0 when the cursor does not name it).
    pub fn position(&self, name: &str) -> u64 {
        self.positions.get(name).copied().unwrap_or(0)
    }

    /// The cursor with shard `name` at `position`.
    #[must_use]
    pub fn at(mut self, name: impl Into<String>, position: u64) -> Self {
        self.positions.insert(name.into(), position);
        self
    }

    fn advance(&mut self, name: &str, position: u64) {
        if self.position(name) < position {
            self.positions.insert(name.to_owned(), position);
        }
    }
}

fn escape(name: &str) -> String {
    name.replace('%', "%25").replace(',', "%2C").replace(':', "%3A")
}

fn unescape(name: &str) -> String {
    name.replace("%3A", ":").replace("%2C", ",").replace("%25", "%")
}

impl fmt::Display for ShardsCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, position)) in self.positions.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            write!(f, "{comma}{}:{position}", escape(name))?;
        }
        Ok(())
    }
}

impl FromStr for ShardsCursor {
    type Err = PersistError;

    /// # Errors
    ///
    /// `InvalidInput` (`cursor`) for text that is not `name:position` pairs joined by `,`.
    fn from_str(text: &str) -> Result<Self> {
        let mut cursor = Self::new();
        for pair in text.split(',').filter(|pair| !pair.is_empty()) {
            let parsed = pair.rsplit_once(':').and_then(|(name, position)| Some((name, position.parse::<u64>().ok()?)));
            let Some((name, position)) = parsed.filter(|(name, _)| !name.is_empty()) else {
                return Err(PersistError::invalid("cursor", format!("`{pair}` is not a shard's name:position")));
            };
            cursor.positions.insert(unescape(name), position);
        }
        Ok(cursor)
    }
}

impl Serialize for ShardsCursor {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ShardsCursor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// An event of the store-wide feed across shards, with the shard that holds it (its
/// [`position`](FeedEvent::position) is that shard's).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardEvent {
    /// The shard's name.
    pub shard: String,
    /// The event.
    pub event: FeedEvent,
}

/// A page of [`Shards::read_store_feed`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardsFeedPage {
    /// The events, oldest first by time (each shard's in its order).
    pub events: Vec<ShardEvent>,
    /// Where to read after next: every event of this page, and those left out before them,
    /// behind it.
    pub cursor: ShardsCursor,
    /// Events follow in some shard.
    pub has_more: bool,
}

impl Shards {
    /// Reads at most `limit` events (1 to 1000) of every shard's store-wide feed after
    /// `after`: each shard's read at once, merged oldest first. See the module's docs for
    /// which events are left out. An operator's read, across tenants.
    ///
    /// # Errors
    ///
    /// What a shard's feed answers: `FeedGap` (naming that shard's positions) when retention
    /// removed events after the cursor's position of it, `Unsupported` when a shard keeps no
    /// feed, `InvalidInput` for a limit out of range or a position past a shard's head.
    pub async fn read_store_feed(&self, after: &ShardsCursor, limit: u32) -> Result<ShardsFeedPage> {
        let query = ReadFeed::across_tenants().with_limit(limit);
        query.validate()?;
        let reads = self.inner.shards.iter().map(|(name, store)| {
            let query = query.clone().after(after.position(name));
            super::boxed(async move { store.read_feed(query).await })
        });
        let pages = super::every(reads).await?;
        let mut queues: Vec<(&str, VecDeque<FeedEvent>, bool)> = self
            .inner
            .shards
            .iter()
            .zip(pages)
            .map(|((name, _), page)| (name.as_str(), page.events.into(), page.has_more))
            .collect();
        let mut cursor = after.clone();
        let mut events = Vec::new();
        let mut placed = Placed::new(self);
        while events.len() < limit as usize {
            // The oldest next event of any shard; a shard whose page ran out while more
            // follow in it stops the merge (its next events may be older than the others').
            if queues.iter().any(|(_, queue, more)| queue.is_empty() && *more) {
                break;
            }
            let next = queues
                .iter()
                .enumerate()
                .filter_map(|(i, (_, queue, _))| queue.front().map(|event| (event.at, i)))
                .min();
            let Some((_, i)) = next else { break };
            let (name, queue, _) = &mut queues[i];
            let event = queue.pop_front().expect("a front event");
            cursor.advance(name, event.position);
            if placed.holds(name, event.change.tenant.as_ref()).await? {
                events.push(ShardEvent { shard: (*name).to_owned(), event });
            }
        }
        let has_more = queues.iter().any(|(_, queue, more)| !queue.is_empty() || *more);
        Ok(ShardsFeedPage { events, cursor, has_more })
    }

    /// Every shard's feed head: a cursor from which a subscriber follows what is written from
    /// now on.
    ///
    /// # Errors
    ///
    /// What a shard's feed answers.
    pub async fn store_feed_head(&self) -> Result<ShardsCursor> {
        let heads = self
            .inner
            .shards
            .iter()
            .map(|(_, store)| super::boxed(async move { store.feed_head(ReadFeed::across_tenants()).await }));
        let heads = super::every(heads).await?;
        Ok(self
            .inner
            .shards
            .iter()
            .zip(heads)
            .fold(ShardsCursor::new(), |cursor, ((name, _), head)| cursor.at(name, head)))
    }

    /// Follows every shard's store-wide feed after `after`, as one: each shard's subscription
    /// woken by its own store. See [`read_store_feed`](Self::read_store_feed) for the events.
    ///
    /// # Errors
    ///
    /// What a shard's first read answers.
    pub async fn subscribe_store(&self, after: ShardsCursor) -> Result<ShardsSubscription> {
        let subscribing = self.inner.shards.iter().map(|(name, store)| {
            let query = ReadFeed::across_tenants().after(after.position(name));
            super::boxed(async move { store.subscribe(query).await })
        });
        let subscriptions = super::every(subscribing).await?;
        let names = self.inner.shards.iter().map(|(name, _)| name.clone());
        Ok(ShardsSubscription {
            shards: self.clone(),
            subscriptions: names.zip(subscriptions).collect(),
            cursor: after,
            turn: 0,
            pending: None,
        })
    }
}

/// Which shard holds each tenant, looked up once per read.
struct Placed<'a> {
    shards: &'a Shards,
    known: HashMap<Option<TenantId>, String>,
}

impl<'a> Placed<'a> {
    fn new(shards: &'a Shards) -> Self {
        Self { shards, known: HashMap::new() }
    }

    /// Whether an event of `tenant` held by shard `name` is the tenant's (its shard's).
    async fn holds(&mut self, name: &str, tenant: Option<&TenantId>) -> Result<bool> {
        if tenant == Some(&self.shards.inner.hidden) {
            return Ok(false);
        }
        if let Some(shard) = self.known.get(&tenant.cloned()) {
            return Ok(shard == name);
        }
        let mut placement = self.shards.placement(tenant).await?;
        if placement.moving.is_some() {
            // Cached while the tenant moves: the switch may have ended since (writers read the
            // record at each write then, and write to the new shard at once).
            placement = self.shards.inner.directory.fresh(tenant, self.shards.hashed(tenant)).await?;
        }
        let shard = placement.shard;
        let holds = shard == name;
        self.known.insert(tenant.cloned(), shard);
        Ok(holds)
    }
}

/// Follows the store-wide feed of every shard; see [`Shards::subscribe_store`].
pub struct ShardsSubscription {
    shards: Shards,
    subscriptions: Vec<(String, Subscription)>,
    cursor: ShardsCursor,
    /// The shard asked first next time, so that a busy shard does not starve the others.
    turn: usize,
    /// An event taken from a shard's subscription and not yet answered (the call that took it
    /// was dropped, or failed deciding whether to show it): the next call answers it first.
    pending: Option<(usize, FeedEvent)>,
}

impl fmt::Debug for ShardsSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardsSubscription").field("cursor", &self.cursor).finish_non_exhaustive()
    }
}

impl ShardsSubscription {
    /// The next event of any shard, waiting for one.
    ///
    /// # Errors
    ///
    /// What a shard's subscription answers (`FeedGap` when retention passed this follower
    /// by), or the directory's. It can be asked again after an error.
    pub async fn next(&mut self) -> Result<ShardEvent> {
        loop {
            if self.pending.is_none() {
                self.pending = Some(self.any().await?);
            }
            let Some((index, event)) = &self.pending else { continue };
            let name = self.subscriptions[*index].0.clone();
            let holds = Placed::new(&self.shards).holds(&name, event.change.tenant.as_ref()).await?;
            let Some((_, event)) = self.pending.take() else { continue };
            self.cursor.advance(&name, event.position);
            if holds {
                return Ok(ShardEvent { shard: name, event });
            }
        }
    }

    /// The first event any shard's subscription answers (each's `next` is cancel-safe: an
    /// event is taken from its buffer only by the call that returns it).
    async fn any(&mut self) -> Result<(usize, FeedEvent)> {
        let count = self.subscriptions.len();
        let start = self.turn % count.max(1);
        self.turn = self.turn.wrapping_add(1);
        type Next<'a> = Pin<Box<dyn Future<Output = Result<FeedEvent>> + Send + 'a>>;
        let mut waiting: Vec<(usize, Next<'_>)> = self
            .subscriptions
            .iter_mut()
            .enumerate()
            .map(|(i, (_, subscription))| (i, Box::pin(subscription.next()) as Next<'_>))
            .collect();
        waiting.rotate_left(start);
        std::future::poll_fn(|cx| {
            for (i, next) in &mut waiting {
                if let Poll::Ready(answer) = next.as_mut().poll(cx) {
                    return Poll::Ready(answer.map(|event| (*i, event)));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Every event returned (and those left out) is behind this cursor: where a follower
    /// resumes, in this process or another.
    pub fn cursor(&self) -> &ShardsCursor {
        &self.cursor
    }
}
