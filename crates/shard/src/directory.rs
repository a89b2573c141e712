//! Where each tenant lives: the placement records, kept in a store every instance reads (the
//! directory), and each instance's cache of them.
//!
//! A record is a thread of the directory's reserved tenant ([`DIRECTORY_TENANT`]) named after
//! the tenant (`t:NAME`, `none` for the threads without a tenant). Its first message, written
//! with one idempotency key by whichever instance writes the tenant first, names the shard the
//! tenant was placed on: instances racing to place a tenant write one record and read the same
//! answer. The record's metadata `shard`, when set, overrides it, and `move` tells of a move in
//! progress (see [`Move`]); each change of either that routes requests elsewhere moves the
//! directory's epoch: the `(version, last_seq)` of its `epoch` thread, which a message (one
//! per step of a move, saying what changed) or a metadata patch moves. Instances read the epoch at most once per
//! [`placement_ttl`] while they serve requests, and forget every placement they cached when
//! it changed. A tenant without a record is not cached: its record, once another instance
//! writes it, is read at once.
//!
//! [`placement_ttl`]: super::ShardsBuilder::placement_ttl

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use persist_core::Context;
use persist_core::Pipeline;
use persist_core::Updated;
use persist_core::args::{Add, Delete, Update};
use persist_core::read::{GetThread, ListMessages};
use persist_core::{Content, Metadata, Role, Thread, Timestamp};
use persist_core::{IdempotencyKey, TenantId, ThreadId};
use persist_core::{PersistError, Result};

/// What the switch copied of one thread: the old shard's thread as it was then. What the old
/// shard holds past it (a seq above `last_seq`, a version above `version`, a summary newer
/// than `latest`) was written late; what the new shard lacks below it was deleted there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Copied {
    pub(super) last_seq: u64,
    pub(super) version: u64,
    pub(super) updated_at: Timestamp,
    /// The newest summary's time, or the thread's `updated_at` without one.
    pub(super) latest: Timestamp,
}

impl Copied {
    /// What a copy of `thread` with `summaries` records.
    pub(super) fn of(thread: &Thread, summaries: &[persist_core::summary::Summary]) -> Self {
        let newest = summaries.iter().map(|s| s.created_at).max();
        let latest = newest.map_or(thread.updated_at, |at| at.max(thread.updated_at));
        Self { last_seq: thread.last_seq, version: thread.version, updated_at: thread.updated_at, latest }
    }

    /// Whether `thread` (the old shard's now) is as the switch copied it.
    pub(super) fn unchanged(&self, thread: &Thread) -> bool {
        (thread.last_seq, thread.version, thread.updated_at) == (self.last_seq, self.version, self.updated_at)
    }
}

/// What a switch copied, by thread.
pub(super) type CopiedThreads = BTreeMap<ThreadId, Copied>;

/// The tenant whose threads hold the directory's records, in the directory's store. A request
/// through [`Shards`](super::Shards) that names it is refused, and listings across tenants
/// leave it out.
pub const DIRECTORY_TENANT: &str = "persist.shards";

/// Where a tenant is, as its record says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Placement {
    /// The shard holding the tenant's threads.
    pub shard: String,
    /// Whether a record says so (`false`: no record, the tenant's hashed shard).
    pub recorded: bool,
    /// A move of the tenant to another shard, while one is in progress.
    pub moving: Option<Move>,
}

/// A move of a tenant from one shard to another ([`Shards::move_tenant`](super::Shards::move_tenant)),
/// as its record tells it while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Move {
    /// The shard the tenant leaves.
    pub from: String,
    /// The shard the tenant goes to.
    pub to: String,
    /// Where the move stands.
    pub state: MoveState,
}

/// The steps of a [`Move`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MoveState {
    /// The tenant's threads are being copied to the new shard; it is read and written on the
    /// old one.
    Copying,
    /// Writes of the tenant are refused ([`Temporary`](PersistError::Temporary)) until the
    /// switch ends or `until` passes, while the last changes are copied; reads go on from the
    /// old shard.
    Switching {
        /// When the switch began.
        since: Timestamp,
        /// When writes are let through again, to the old shard, if the switch has not ended.
        until: Timestamp,
    },
    /// The tenant is read and written on the new shard; what the old one still holds is being
    /// checked against it (what was written to it late carried over) and erased.
    Cleaning {
        /// When the switch that placed the tenant on the new shard began.
        since: Timestamp,
    },
}

impl MoveState {
    fn name(self) -> &'static str {
        match self {
            Self::Copying => "copying",
            Self::Switching { .. } => "switching",
            Self::Cleaning { .. } => "cleaning",
        }
    }
}

impl Move {
    /// The record's `move` value.
    pub(super) fn to_value(&self) -> Value {
        let mut value = json!({ "from": self.from, "to": self.to, "state": self.state.name() });
        match self.state {
            MoveState::Copying => {}
            MoveState::Switching { since, until } => {
                value["since"] = json!(since.as_micros());
                value["until"] = json!(until.as_micros());
            }
            MoveState::Cleaning { since } => value["since"] = json!(since.as_micros()),
        }
        value
    }

    fn from_value(value: &Value) -> Option<Self> {
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let time = |key: &str| value.get(key).and_then(Value::as_i64).map(Timestamp::from_micros);
        let state = match value.get("state").and_then(Value::as_str)? {
            "copying" => MoveState::Copying,
            "switching" => MoveState::Switching { since: time("since")?, until: time("until")? },
            "cleaning" => MoveState::Cleaning { since: time("since")? },
            _ => return None,
        };
        Some(Self { from: text("from")?, to: text("to")?, state })
    }
}

impl Placement {
    fn hashed(shard: String) -> Self {
        Self { shard, recorded: false, moving: None }
    }

    /// When writes are refused until, while a switch runs.
    pub(super) fn switching_until(&self) -> Option<Timestamp> {
        match self.moving.as_ref()?.state {
            MoveState::Switching { until, .. } => Some(until),
            _ => None,
        }
    }

    /// What `thread` (a record) and its first message's text say.
    fn read(thread: &Thread, first: Option<String>) -> Result<Self> {
        let unreadable = |reason: &'static str| PersistError::Unreadable {
            thread_id: thread.id.clone(),
            message_id: None,
            reason: reason.into(),
        };
        let text = |key: &str| thread.metadata.get(key).and_then(|value| value.as_str()).map(str::to_owned);
        let shard = text("shard").or(first).ok_or_else(|| unreadable("a placement record that names no shard"))?;
        let moving = match thread.metadata.get("move") {
            None | Some(Value::Null) => None,
            Some(value) => {
                Some(Move::from_value(value).ok_or_else(|| unreadable("a placement record's move is malformed"))?)
            }
        };
        Ok(Self { shard, recorded: true, moving })
    }
}

/// The tenant a record is about, as the record's thread id names it.
pub(super) fn record_id(tenant: Option<&TenantId>) -> ThreadId {
    named("t", "none", tenant)
}

/// The thread holding what a switch of `tenant`'s move copied.
fn copies_id(tenant: Option<&TenantId>) -> ThreadId {
    // "c" alone: "c:none" is the tenant named "none".
    named("c", "c", tenant)
}

fn named(prefix: &str, none: &str, tenant: Option<&TenantId>) -> ThreadId {
    let id = match tenant {
        Some(tenant) => format!("{prefix}:{tenant}"),
        None => none.to_owned(),
    };
    // A tenant id is a valid id; two more bytes may pass the limit only for the longest ones.
    ThreadId::new(&id).unwrap_or_else(|_| ThreadId::new(format!("h:{:016x}", fnv1a(id.as_bytes()))).expect("short"))
}

/// The directory and this instance's cache of it.
pub(super) struct Directory {
    store: Pipeline,
    context: Context,
    ttl: Duration,
    cache: Mutex<Cache>,
    /// One epoch read at a time.
    checking: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cache {
    /// The `epoch` thread's `(version, last_seq)`: a metadata change or a message moves it.
    epoch: (u64, u64),
    checked: Option<Instant>,
    /// Recorded placements only: a tenant without a record is looked up again each time (a
    /// record another instance writes is seen at once, and names asked for never grow this).
    placements: HashMap<Option<TenantId>, Placement>,
    /// Moves on every epoch change: a placement read before one is not cached after it.
    generation: u64,
}

impl Directory {
    pub(super) fn new(store: Pipeline, ttl: Duration) -> Self {
        let tenant = TenantId::new(DIRECTORY_TENANT).expect("a valid tenant id");
        Self {
            store,
            context: Context::new().with_tenant(tenant),
            ttl,
            cache: Mutex::new(Cache::default()),
            checking: tokio::sync::Mutex::new(()),
        }
    }

    pub(super) fn store(&self) -> &Pipeline {
        &self.store
    }

    /// A context of the directory's tenant.
    pub(super) fn context(&self) -> Context {
        self.context.renewed()
    }

    /// How long this instance trusts its cached placements.
    pub(super) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // Nothing panics while it is held.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where `tenant` is: the cached placement (the epoch read again when it is older than the
    /// TTL), else its record, else `hashed` (not recorded).
    pub(super) async fn placement(&self, tenant: Option<&TenantId>, hashed: &str) -> Result<Placement> {
        self.check_epoch().await?;
        let generation = {
            let cache = self.cache();
            if let Some(placement) = cache.placements.get(&tenant.cloned()) {
                return Ok(placement.clone());
            }
            cache.generation
        };
        match self.read(tenant).await? {
            Some(placement) => {
                self.remember(tenant, &placement, generation);
                Ok(placement)
            }
            None => Ok(Placement::hashed(hashed.to_owned())),
        }
    }

    /// Caches `placement`, read in `generation`, unless the epoch moved since.
    fn remember(&self, tenant: Option<&TenantId>, placement: &Placement, generation: u64) {
        let mut cache = self.cache();
        if cache.generation == generation {
            cache.placements.insert(tenant.cloned(), placement.clone());
        }
    }

    /// Places `tenant` on `hashed` unless a record places it already: the record's placement.
    pub(super) async fn place(&self, tenant: Option<&TenantId>, hashed: &str) -> Result<Placement> {
        let generation = self.cache().generation;
        let add = Add::new(record_id(tenant), Role::System, Content::text(hashed))
            .with_idempotency_key(IdempotencyKey::new("placement")?)
            .with_context(self.context.renewed());
        let first = match self.store.add(add).await {
            // Written now: the record is this placement (no move has changed it).
            Ok(added) if !added.deduplicated => {
                let placement = Placement { recorded: true, ..Placement::hashed(added.message.content.to_text()) };
                self.remember(tenant, &placement, generation);
                return Ok(placement);
            }
            Ok(added) => Some(added.message.content.to_text()),
            // Another instance, whose shards hash the tenant elsewhere, placed it first: its
            // record stands.
            Err(PersistError::IdempotencyKeyReused { .. }) => None,
            Err(error) => return Err(error),
        };
        let placement = match (self.read(tenant).await?, first) {
            (Some(placement), _) => placement,
            (None, Some(first)) => Placement { recorded: true, ..Placement::hashed(first) },
            (None, None) => {
                return Err(PersistError::Backend {
                    message: format!("the placement record {} was there and is gone", record_id(tenant)).into(),
                    source: None,
                });
            }
        };
        self.remember(tenant, &placement, generation);
        Ok(placement)
    }

    /// `tenant`'s record, read now (not from the cache), and cached.
    pub(super) async fn fresh(&self, tenant: Option<&TenantId>, hashed: &str) -> Result<Placement> {
        let generation = self.cache().generation;
        match self.read(tenant).await? {
            Some(placement) => {
                self.remember(tenant, &placement, generation);
                Ok(placement)
            }
            None => Ok(Placement::hashed(hashed.to_owned())),
        }
    }

    /// `tenant`'s record, if it has one.
    async fn read(&self, tenant: Option<&TenantId>) -> Result<Option<Placement>> {
        Ok(self.record(tenant).await?.map(|(_, placement)| placement))
    }

    /// `tenant`'s record thread (for its version) and what it says, if it has one.
    pub(super) async fn record(&self, tenant: Option<&TenantId>) -> Result<Option<(Thread, Placement)>> {
        let id = record_id(tenant);
        let get = GetThread::new(id.clone()).with_context(self.context.renewed());
        let Some(thread) = self.store.get_thread(get).await? else { return Ok(None) };
        if thread.is_deleted() {
            return Ok(None);
        }
        let first = match thread.metadata.get("shard") {
            Some(_) => None,
            None => {
                let list = ListMessages::new(id).with_limit(1).with_context(self.context.renewed());
                self.store.list(list).await?.items.first().map(|message| message.content.to_text())
            }
        };
        let placement = Placement::read(&thread, first)?;
        Ok(Some((thread, placement)))
    }

    /// Changes `tenant`'s record (at `version`, else `VersionConflict`) to place it on `shard`
    /// with `moving`, then moves the epoch with a message saying so: every instance follows
    /// within its TTL. Answers the record's thread after the change.
    pub(super) async fn change(
        &self,
        tenant: Option<&TenantId>,
        version: u64,
        shard: &str,
        moving: Option<&Move>,
    ) -> Result<Thread> {
        let patch =
            Metadata::new().with("shard", json!(shard)).with("move", moving.map_or(Value::Null, Move::to_value));
        let update = Update::thread(record_id(tenant))
            .with_metadata(patch)
            .with_expected_version(version)
            .with_context(self.context.renewed());
        let Updated::Thread(thread) = self.store.update(update).await? else {
            return Err(PersistError::Backend { message: "a thread update answered a message".into(), source: None });
        };
        self.cache().placements.remove(&tenant.cloned());
        self.bump(tenant, moving.map_or("placed", |moving| moving.state.name()), shard).await?;
        Ok(thread)
    }

    /// Moves the epoch with a message saying what changed: every instance forgets its cached
    /// placements within its TTL.
    pub(super) async fn bump(&self, tenant: Option<&TenantId>, step: &str, shard: &str) -> Result<()> {
        let who = tenant.map_or("(no tenant)", TenantId::as_str);
        let add = Add::new(ThreadId::new("epoch")?, Role::System, Content::text(format!("{who}: {step} on {shard}")))
            .with_context(self.context.renewed());
        self.store.add(add).await.map(drop)
    }

    /// Records what the switch that began at `since` copied of `tenant`'s threads (a
    /// message per 200 threads, each naming the switch), for the cleaning after it.
    pub(super) async fn save_copied(
        &self,
        tenant: Option<&TenantId>,
        since: Timestamp,
        copied: &CopiedThreads,
    ) -> Result<()> {
        let entries: Vec<_> = copied.iter().collect();
        let mut chunks: Vec<&[(&ThreadId, &Copied)]> = entries.chunks(200).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for chunk in chunks {
            let map: serde_json::Map<String, Value> = chunk
                .iter()
                .map(|(id, copied)| Ok((id.to_string(), serde_json::to_value(copied)?)))
                .collect::<std::result::Result<_, serde_json::Error>>()
                .map_err(|e| PersistError::Backend {
                    message: "a switch's record".into(),
                    source: Some(Box::new(e)),
                })?;
            let add = Add::new(copies_id(tenant), Role::System, Content::text(Value::Object(map).to_string()))
                .with_metadata(Metadata::new().with("since", json!(since.as_micros())))
                .with_context(self.context.renewed());
            self.store.add(add).await?;
        }
        Ok(())
    }

    /// What the switch that began at `since` copied of `tenant`'s threads, if it recorded it.
    pub(super) async fn copied(&self, tenant: Option<&TenantId>, since: Timestamp) -> Result<Option<CopiedThreads>> {
        let mut query = ListMessages::new(copies_id(tenant)).with_limit(persist_core::read::MAX_PAGE_LIMIT);
        let mut found: Option<CopiedThreads> = None;
        loop {
            let page = self.store.list(query.clone().with_context(self.context.renewed())).await?;
            for message in &page.items {
                if message.metadata.get("since").and_then(Value::as_i64) != Some(since.as_micros()) {
                    continue;
                }
                let unreadable = |reason: String| PersistError::Unreadable {
                    thread_id: message.thread_id.clone(),
                    message_id: Some(message.id.clone()),
                    reason: reason.into(),
                };
                let map: BTreeMap<String, Copied> =
                    serde_json::from_str(&message.content.to_text()).map_err(|e| unreadable(e.to_string()))?;
                let into = found.get_or_insert_with(CopiedThreads::new);
                for (id, copied) in map {
                    into.insert(ThreadId::new(&id).map_err(|e| unreadable(e.to_string()))?, copied);
                }
            }
            match query.next_page(&page) {
                Some(next) => query = next,
                None => return Ok(found),
            }
        }
    }

    /// Forgets what `tenant`'s switches copied (the move is over).
    pub(super) async fn forget_copied(&self, tenant: Option<&TenantId>) -> Result<()> {
        let purge = Delete::purge(copies_id(tenant)).freeing_id(true).with_context(self.context.renewed());
        self.store.delete(purge).await.map(drop)
    }

    /// What a record's thread (as a change answered it) says.
    pub(super) fn placement_of(&self, record: &Thread) -> Result<Placement> {
        Placement::read(record, None)
    }

    /// Reads the epoch when the last read is older than the TTL; a new epoch empties the cache.
    /// A directory that cannot be read leaves the cache as it is, for another TTL, once the
    /// epoch was read before (the tenants cached go on being served; others wait for it).
    async fn check_epoch(&self) -> Result<()> {
        let fresh = |cache: &Cache| cache.checked.is_some_and(|at| at.elapsed() < self.ttl);
        if fresh(&self.cache()) {
            return Ok(());
        }
        let _checking = self.checking.lock().await;
        if fresh(&self.cache()) {
            return Ok(());
        }
        let started = Instant::now();
        let get = GetThread::new(ThreadId::new("epoch")?).with_context(self.context.renewed());
        let epoch = match self.store.get_thread(get).await {
            Ok(thread) => thread.map_or((0, 0), |thread| (thread.version, thread.last_seq)),
            Err(error) => {
                let mut cache = self.cache();
                return match cache.checked {
                    Some(_) => {
                        cache.checked = Some(started);
                        Ok(())
                    }
                    None => Err(error),
                };
            }
        };
        let mut cache = self.cache();
        if cache.epoch != epoch {
            cache.placements.clear();
            cache.epoch = epoch;
            cache.generation += 1;
        }
        cache.checked = Some(started);
        Ok(())
    }
}

/// FNV-1a, 64 bits, with MurmurHash3's finalizer (FNV alone leaves the high bits, which a
/// comparison of scores reads first, mixed poorly by the last bytes): a hash that is the same
/// in every process and every build.
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    let hash = bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3));
    let hash = (hash ^ (hash >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    let hash = (hash ^ (hash >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}
