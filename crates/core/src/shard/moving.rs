//! Moving a tenant from one shard to another: [`Shards::move_tenant`].

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::args::{Delete, Restore};
use crate::context::Context;
use crate::lease::Lease;
use crate::model::error::{PersistError, Result};
use crate::model::id::{TenantId, ThreadId};
use crate::model::{Message, Thread, Timestamp};
use crate::pipeline::Pipeline;
use crate::read::{GetThread, ListMessages, ListThreads, MAX_PAGE_LIMIT, UnreadableItem};
use crate::restore::MAX_RESTORE_MESSAGES;
use crate::session::{ListBindings, StoredBinding};
use crate::summary::{ListSummaries, Summarize, Summary};

use super::Shards;
use super::directory::{Move, MoveState, record_id};

/// How [`Shards::move_tenant`] runs.
#[derive(Debug, Clone)]
#[must_use]
pub struct MoveOptions {
    max_switch: Duration,
    claim_ttl: Duration,
    holder: String,
}

impl Default for MoveOptions {
    fn default() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self {
            max_switch: Duration::from_secs(5),
            claim_ttl: Duration::from_secs(10),
            holder: format!("mover-{}-{nanos:x}", std::process::id()),
        }
    }
}

impl MoveOptions {
    /// The defaults: writes refused for at most 5 s, a claim of 10 s.
    pub fn new() -> Self {
        Self::default()
    }

    /// The longest time writes of the tenant are refused (default 5 s): the switch copies what
    /// changed since the last pass in it, after waiting one placement TTL, or gives up and
    /// tries again. At least twice the placement TTL.
    pub fn max_switch(mut self, max: Duration) -> Self {
        self.max_switch = max;
        self
    }

    /// How long the mover's claim on the move lasts without being renewed (default 10 s): a
    /// second mover of the same tenant waits for it, so a run that was killed is resumed once
    /// its claim ran out.
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.claim_ttl = ttl;
        self
    }
}

/// What [`Shards::move_tenant`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Moved {
    /// The shard the tenant left.
    pub from: String,
    /// The shard the tenant is on.
    pub to: String,
    /// The tenant was on `to` already, with no move in progress: nothing was done.
    pub already: bool,
    /// Threads written to the new shard by the copying passes and the switch (a thread changed
    /// between passes counts once per pass that copied it).
    pub copied: u64,
    /// Copying passes run (in this call).
    pub passes: u32,
    /// Switches tried (in this call): more than one when one did not end within `max_switch`
    /// (writes resumed on the old shard in between).
    pub switches: u32,
    /// How long writes were refused by the switch that placed the tenant (in this call).
    pub refused_for: Option<Duration>,
    /// Threads of the old shard changed after the switch began, carried to the new one.
    pub carried: u64,
    /// Threads erased from the old shard.
    pub erased: u64,
}

/// Everything of one thread a move carries.
#[derive(Debug, Clone, PartialEq)]
struct Copy {
    thread: Thread,
    messages: Vec<Message>,
    bindings: Vec<StoredBinding>,
    summaries: Vec<Summary>,
}

/// How many times a thread being written is read again for a settled copy.
const SETTLE_TRIES: usize = 3;

/// The most copying passes before a switch.
const MAX_PASSES: u32 = 3;

/// The most switches tried by one call.
const MAX_SWITCHES: u32 = 3;

impl Shards {
    /// Moves `tenant` (`None`: the threads without a tenant) to the shard named `to`: copies
    /// its threads, switches its placement refusing its writes for at most
    /// [`max_switch`](MoveOptions::max_switch), checks and erases what the old shard held.
    /// Idempotent: called again after any interruption, it goes on from the step its record
    /// tells; a tenant already on `to` answers [`Moved::already`].
    ///
    /// The steps, each recorded in the tenant's placement record (its metadata `move`, changed with
    /// compare-and-set on the record's version) before it runs, so a move stopped anywhere (a
    /// crash, a kill, a lost connection) is finished by calling it again:
    ///
    /// 1. **Copying.** Every thread of the tenant is copied from the old shard to the new one
    ///    (messages of every branch with their ids, seqs, versions and times, session bindings,
    ///    summaries), then read back and compared; a thread that differs in the new shard (changed
    ///    since an earlier pass) is erased there and copied again, one the old shard no longer
    ///    lists is erased from the new one. Passes repeat (at most three) until one finds nothing
    ///    changed. The tenant is read and written on the old shard meanwhile.
    /// 2. **Switching.** The record says writes are refused until `max_switch` from now, and the
    ///    directory's epoch moves; the mover waits one placement TTL for every instance to see it
    ///    (an instance sees a switch within its TTL, and once seen, reads the record again at each
    ///    write), then copies what changed once more and checks each thread. If that ended in time,
    ///    the record places the tenant on the new shard; otherwise writes resume on the old shard
    ///    and the switch is tried again (three times, then the move fails, resumable).
    /// 3. **Cleaning.** After another TTL (every instance now reads and writes the new shard), each
    ///    thread the old shard still holds is compared with the new shard's: what was written to
    ///    the old one late (a write already on its way when the switch began) is carried over,
    ///    then the old copy is erased (a purge that frees the id, refused if the thread changed
    ///    since it was read: it is checked again). A late change that collides with a change made
    ///    on the new shard since (the same message changed on both) stops the move before that
    ///    thread is erased: the error names it, and both copies stay for an operator.
    ///
    /// Writes refused while switching answer [`PersistError::Temporary`], which a retry layer
    /// retries; reads are never refused.
    ///
    /// Every instance must read placements with a TTL no longer than this one's
    /// ([`placement_ttl`](super::ShardsBuilder::placement_ttl)): the move waits this
    /// instance's TTL for the others to see each step. The shards' stores should read from
    /// their primaries (a standby may not have the last writes yet). Tombstones of threads
    /// deleted before the move are not carried (no listing reaches them), nor leases; the old
    /// shard's change feed tells of the erasures, and the tenant's feed positions are the new
    /// shard's.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for an unknown shard, the directory's tenant, `max_switch` shorter than
    /// two TTLs, or a move of the tenant to another shard in progress; `Temporary` when three
    /// switches in a row did not end within `max_switch`; `Backend` naming a thread that does
    /// not read back as written or whose late changes collide with the new shard's; any error
    /// of the stores. Each leaves the move resumable.
    pub async fn move_tenant(&self, tenant: Option<&TenantId>, to: &str, options: MoveOptions) -> Result<Moved> {
        self.refuse_hidden(tenant)?;
        let target = self
            .shard(to)
            .ok_or_else(|| PersistError::invalid("to", format!("this instance has no shard named {to:?}")))?;
        if options.max_switch < self.inner.directory.ttl() * 2 {
            return Err(PersistError::invalid("max_switch", "must be at least twice the placement TTL"));
        }
        let claim = Claim::take(self, tenant, &options).await?;
        let moved = self.run_move(tenant, to, target, &options, &claim).await;
        claim.give_up().await;
        moved
    }

    /// [`move_tenant`](Self::move_tenant) once the claim is held.
    async fn run_move(
        &self,
        tenant: Option<&TenantId>,
        to: &str,
        target: &Pipeline,
        options: &MoveOptions,
        claim: &Claim<'_>,
    ) -> Result<Moved> {
        let (directory, ttl) = (&self.inner.directory, self.inner.directory.ttl());
        let (mut record, mut placement) = match directory.record(tenant).await? {
            Some(found) => found,
            None => {
                directory.place(tenant, self.hashed(tenant)).await?;
                directory.record(tenant).await?.ok_or_else(|| gone(tenant))?
            }
        };
        let mut moved = Moved {
            from: placement.moving.as_ref().map_or_else(|| placement.shard.clone(), |m| m.from.clone()),
            to: to.to_owned(),
            already: false,
            copied: 0,
            passes: 0,
            switches: 0,
            refused_for: None,
            carried: 0,
            erased: 0,
        };
        // A step found in the record, not set by this call, is redone from its start (its
        // epoch move may not have happened: the mover may have stopped between the two).
        let mut resumed = true;
        loop {
            claim.renew().await?;
            let Some(moving) = placement.moving.clone() else {
                if placement.shard == to {
                    moved.already = true;
                    return Ok(moved);
                }
                let from = placement.shard.clone();
                self.store(&from)?;
                let step = Move { from: from.clone(), to: to.to_owned(), state: MoveState::Copying };
                record = directory.change(tenant, record.version, &from, Some(&step)).await?;
                placement = directory.placement_of(&record)?;
                moved.from = from;
                resumed = false;
                continue;
            };
            if moving.to != to {
                return Err(PersistError::invalid(
                    "to",
                    format!(
                        "a move to shard {:?} is in progress: finish it first (move to {:?})",
                        moving.to, moving.to
                    ),
                ));
            }
            let source = self.store(&moving.from)?;
            let (next, shard) = match moving.state {
                MoveState::Copying => {
                    loop {
                        moved.passes += 1;
                        let changed = sync(source, target, tenant, claim, false).await?;
                        moved.copied += changed;
                        if changed == 0 || moved.passes >= MAX_PASSES {
                            break;
                        }
                    }
                    (switching(options.max_switch), &moving.from)
                }
                MoveState::Switching { .. } if resumed => (switching(options.max_switch), &moving.from),
                MoveState::Switching { since, until } => {
                    moved.switches += 1;
                    let began = Instant::now();
                    tokio::time::sleep(ttl + settle(ttl)).await;
                    moved.copied += sync(source, target, tenant, claim, true).await?;
                    if Timestamp::now().saturating_add(ttl) < until {
                        moved.refused_for = Some(began.elapsed());
                        (MoveState::Cleaning { since }, &moving.to)
                    } else if moved.switches >= MAX_SWITCHES {
                        let step = Move { state: MoveState::Copying, ..moving.clone() };
                        directory.change(tenant, record.version, &moving.from, Some(&step)).await?;
                        return Err(PersistError::temporary(format!(
                            "{MAX_SWITCHES} switches in a row did not end within max_switch ({:?}): the tenant is \
                             written too much to switch in that time; run the move again, or give it a longer max_switch",
                            options.max_switch
                        )));
                    } else {
                        (MoveState::Copying, &moving.from)
                    }
                }
                MoveState::Cleaning { since } => {
                    if resumed {
                        directory.bump(tenant, "cleaning", to).await?;
                    }
                    tokio::time::sleep(ttl + settle(ttl)).await;
                    let late_from = since.saturating_sub(ttl);
                    let (carried, erased) = clean(source, target, tenant, claim, late_from).await?;
                    moved.carried += carried;
                    moved.erased += erased;
                    directory.change(tenant, record.version, to, None).await?;
                    return Ok(moved);
                }
            };
            let step = Move { state: next, ..moving.clone() };
            record = directory.change(tenant, record.version, shard, Some(&step)).await?;
            placement = directory.placement_of(&record)?;
            resumed = false;
        }
    }
}

/// A switch beginning now, ending at the latest `max` from now.
fn switching(max: Duration) -> MoveState {
    let since = Timestamp::now();
    MoveState::Switching { since, until: since.saturating_add(max) }
}

/// How long past a TTL the mover waits for requests already on their way.
fn settle(ttl: Duration) -> Duration {
    (ttl / 4).max(Duration::from_millis(20))
}

fn gone(tenant: Option<&TenantId>) -> PersistError {
    PersistError::Backend {
        message: format!("the placement record {} was written and is gone", record_id(tenant)).into(),
        source: None,
    }
}

/// The mover's lease on the tenant's record: one mover of a tenant at a time.
struct Claim<'a> {
    directory: &'a Pipeline,
    thread: ThreadId,
    context: Context,
    holder: String,
    ttl: Duration,
    renewed: std::sync::Mutex<Instant>,
}

impl<'a> Claim<'a> {
    /// Takes the claim, waiting for another mover's to run out.
    async fn take(shards: &'a Shards, tenant: Option<&TenantId>, options: &MoveOptions) -> Result<Self> {
        let claim = Self {
            directory: shards.inner.directory.store(),
            thread: record_id(tenant),
            context: shards.inner.directory.context(),
            holder: options.holder.clone(),
            ttl: options.claim_ttl,
            renewed: std::sync::Mutex::new(Instant::now()),
        };
        loop {
            let lease = Lease::take(claim.thread.clone(), "move", &claim.holder, claim.ttl)?;
            let held = claim.directory.lease(lease.with_context(claim.context.renewed())).await?;
            match held {
                Some(held) if held.holder != claim.holder => {
                    let left = held.expires_at.as_micros().saturating_sub(Timestamp::now().as_micros()).max(1_000);
                    tracing::info!(holder = %held.holder, "another mover holds the tenant's move: waiting for its claim");
                    tokio::time::sleep(Duration::from_micros(left as u64)).await;
                }
                _ => return Ok(claim),
            }
        }
    }

    /// Renews the claim once a third of it has passed; fails if another mover took it.
    async fn renew(&self) -> Result<()> {
        let due = self.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed() >= self.ttl / 3;
        if !due {
            return Ok(());
        }
        let lease = Lease::take(self.thread.clone(), "move", &self.holder, self.ttl)?;
        match self.directory.lease(lease.with_context(self.context.renewed())).await? {
            Some(held) if held.holder != self.holder => Err(PersistError::Backend {
                message: format!("another mover ({}) took over the move", held.holder).into(),
                source: None,
            }),
            _ => {
                *self.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
                Ok(())
            }
        }
    }

    async fn give_up(&self) {
        if let Ok(lease) = Lease::give_up(self.thread.clone(), "move", &self.holder) {
            // The claim runs out by itself otherwise.
            let _ = self.directory.lease(lease.with_context(self.context.renewed())).await;
        }
    }
}

fn context(tenant: Option<&TenantId>) -> Context {
    Context::new().for_tenant(tenant.cloned())
}

fn refuse_unreadable(unreadable: &[UnreadableItem]) -> Result<()> {
    match unreadable.first() {
        None => Ok(()),
        Some(item) => Err(PersistError::Unreadable {
            thread_id: item.thread_id.clone(),
            message_id: item.message_id.clone(),
            reason: format!("a move carries every item: {}", item.reason).into(),
        }),
    }
}

/// Every thread of `tenant` in `store`, by id.
async fn threads(store: &Pipeline, tenant: Option<&TenantId>) -> Result<HashMap<ThreadId, Thread>> {
    let mut query = ListThreads::new().with_limit(MAX_PAGE_LIMIT).with_context(context(tenant));
    let mut found = HashMap::new();
    loop {
        let page = store.threads(query.clone()).await?;
        refuse_unreadable(&page.unreadable)?;
        found.extend(page.items.into_iter().map(|thread| (thread.id.clone(), thread)));
        if !page.has_more || page.next_cursor.is_none() {
            return Ok(found);
        }
        query = query.with_cursor(page.next_cursor);
    }
}

/// Reads `thread` whole from `store`: a copy as of one moment (the thread read again after
/// its parts, and the parts again while it changes), `None` when it is gone or keeps changing.
async fn read(store: &Pipeline, thread: &Thread) -> Result<Option<Copy>> {
    let tenant = thread.tenant.as_ref();
    let mut thread = thread.clone();
    for _ in 0..SETTLE_TRIES {
        let copy = read_parts(store, thread.clone()).await?;
        let again = store.get_thread(GetThread::new(thread.id.clone()).with_context(context(tenant))).await?;
        match again {
            Some(again) if again.is_deleted() => return Ok(None),
            Some(again) if again == thread => return Ok(Some(copy)),
            Some(again) => thread = again,
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// `thread`'s messages (every branch, reservations too), bindings and summaries a branch can
/// read (one whose last message was deleted alone is read by none, and cannot be written).
async fn read_parts(store: &Pipeline, thread: Thread) -> Result<Copy> {
    let ctx = context(thread.tenant.as_ref());
    let mut query = ListMessages::new(thread.id.clone())
        .include_reserved(true)
        .with_limit(MAX_PAGE_LIMIT)
        .with_context(ctx.clone());
    let mut messages = Vec::new();
    loop {
        let page = store.list(query.clone()).await?;
        refuse_unreadable(&page.unreadable)?;
        let next = query.next_page(&page);
        messages.extend(page.items.into_iter().filter(|message| message.seq <= thread.last_seq));
        match next {
            Some(next) => query = next,
            None => break,
        }
    }
    let bindings = store.bindings(ListBindings::new(thread.id.clone()).with_context(ctx.clone())).await?;
    let seqs: BTreeSet<u64> = messages.iter().map(|message| message.seq).collect();
    let oldest = seqs.first().copied().unwrap_or(u64::MAX);
    let mut query = ListSummaries::new(thread.id.clone()).with_limit(MAX_PAGE_LIMIT).with_context(ctx);
    let mut summaries = Vec::new();
    loop {
        let page = store.summaries(query.clone()).await?;
        refuse_unreadable(&page.unreadable)?;
        let next = query.next_page(&page);
        summaries.extend(
            page.items.into_iter().filter(|s| {
                s.through_seq <= thread.last_seq && (seqs.contains(&s.through_seq) || s.through_seq < oldest)
            }),
        );
        match next {
            Some(next) => query = next,
            None => break,
        }
    }
    Ok(Copy { thread, messages, bindings, summaries })
}

/// Writes `copy` to `store` (restores: what is there already is kept), `messages` only of it.
async fn write(store: &Pipeline, copy: &Copy, messages: &[Message]) -> Result<()> {
    let ctx = context(copy.thread.tenant.as_ref());
    let mut batches: Vec<&[Message]> = messages.chunks(MAX_RESTORE_MESSAGES).collect();
    if batches.is_empty() {
        batches.push(&[]);
    }
    for batch in batches {
        store.restore(Restore::new(copy.thread.clone(), batch.to_vec()).with_context(ctx.clone())).await?;
    }
    if !copy.bindings.is_empty() {
        let restore = Restore::new(copy.thread.clone(), Vec::new()).with_bindings(copy.bindings.clone());
        store.restore(restore.with_context(ctx.clone())).await?;
    }
    for summary in &copy.summaries {
        let write = Summarize::new(copy.thread.id.clone(), summary.through_seq, summary.content.clone())
            .from_seq(summary.from_seq)
            .with_metadata(summary.metadata.clone())
            .created_at(summary.created_at)
            .with_context(ctx.clone());
        store.summarize(write).await?;
    }
    Ok(())
}

/// Erases `thread` from `store` for good (no tombstone), if it was not written since
/// `updated_at` (when given).
async fn erase(
    store: &Pipeline,
    tenant: Option<&TenantId>,
    thread: &ThreadId,
    updated_at: Option<Timestamp>,
) -> Result<()> {
    let mut delete = Delete::purge(thread.clone()).freeing_id(true).with_context(context(tenant));
    if let Some(updated_at) = updated_at {
        delete = delete.with_expected_updated_at(updated_at);
    }
    store.delete(delete).await.map(drop)
}

/// Makes `target` hold what `source` holds of `tenant` (before the switch: `target` is read by
/// nobody else): a thread that differs is erased and copied again, one `source` does not list
/// is erased. With `quick`, a thread whose fields are equal in both (a write moves its
/// `updated_at`) is taken as equal when its bindings and summaries are. Answers the threads
/// copied; a thread that keeps changing is left for the next pass.
async fn sync(
    source: &Pipeline,
    target: &Pipeline,
    tenant: Option<&TenantId>,
    claim: &Claim<'_>,
    quick: bool,
) -> Result<u64> {
    let listed = threads(source, tenant).await?;
    let mut held = threads(target, tenant).await?;
    let mut copied = 0;
    for (id, thread) in &listed {
        claim.renew().await?;
        let theirs = held.remove(id);
        if quick && theirs.as_ref() == Some(thread) {
            let (ours, theirs) = (read_parts(source, thread.clone()).await?, read_parts(target, thread.clone()).await?);
            if (ours.bindings, ours.summaries) == (theirs.bindings, theirs.summaries) {
                continue;
            }
        }
        let Some(copy) = read(source, thread).await? else {
            // Gone from the source since it was listed (or changing: the next pass sees it).
            let get = GetThread::new(id.clone()).with_context(context(tenant));
            if theirs.is_some() && source.get_thread(get).await?.is_none_or(|t| t.is_deleted()) {
                erase(target, tenant, id, None).await?;
            }
            continue;
        };
        if let Some(theirs) = theirs {
            let there = read_parts(target, theirs).await?;
            if there == copy {
                continue;
            }
            // Only messages added (and bindings, summaries) since: they alone are written.
            if let Some(added) = appended(&copy, &there) {
                write(target, &copy, &added).await?;
                if written(target, &copy).await? {
                    copied += 1;
                    continue;
                }
            }
            erase(target, tenant, id, None).await?;
        }
        write(target, &copy, &copy.messages).await?;
        if !written(target, &copy).await? {
            return Err(mismatch(id, "does not read back from the new shard as it was copied"));
        }
        copied += 1;
    }
    for id in held.keys() {
        erase(target, tenant, id, None).await?;
    }
    Ok(copied)
}

/// Whether `store` holds `copy` as it is.
async fn written(store: &Pipeline, copy: &Copy) -> Result<bool> {
    let get = GetThread::new(copy.thread.id.clone()).with_context(context(copy.thread.tenant.as_ref()));
    match store.get_thread(get).await? {
        Some(thread) => Ok(read_parts(store, thread).await? == *copy),
        None => Ok(false),
    }
}

/// The messages of `copy` that `there` (an earlier copy of the same thread) lacks, when that
/// is all that differs in what a restore keeps (every message `there` holds is in `copy` as
/// it is, the title and metadata are the same): a restore of those alone brings it up to date.
fn appended(copy: &Copy, there: &Copy) -> Option<Vec<Message>> {
    if (&copy.thread.title, &copy.thread.metadata) != (&there.thread.title, &there.thread.metadata) {
        return None;
    }
    let ours: HashMap<_, _> = copy.messages.iter().map(|m| (&m.id, m)).collect();
    if there.messages.iter().any(|m| ours.get(&m.id) != Some(&m)) {
        return None;
    }
    let held: BTreeSet<_> = there.messages.iter().map(|m| &m.id).collect();
    Some(copy.messages.iter().filter(|m| !held.contains(&m.id)).cloned().collect())
}

fn mismatch(thread: &ThreadId, what: &str) -> PersistError {
    PersistError::Backend { message: format!("moving thread {thread}: it {what}").into(), source: None }
}

/// After the switch: carries what `old` got late to `new`, and erases `old`'s threads of
/// `tenant`. Answers (threads carried, threads erased).
async fn clean(
    old: &Pipeline,
    new: &Pipeline,
    tenant: Option<&TenantId>,
    claim: &Claim<'_>,
    late_from: Timestamp,
) -> Result<(u64, u64)> {
    let (mut carried, mut erased) = (0, 0);
    let mut collisions = Vec::new();
    for _ in 0..MAX_PASSES {
        let left = threads(old, tenant).await?;
        let left: Vec<&Thread> = left.values().filter(|t| !collisions.iter().any(|(id, _)| id == &t.id)).collect();
        if left.is_empty() {
            break;
        }
        for thread in left {
            claim.renew().await?;
            let Some(copy) = read(old, thread).await? else { continue };
            let ctx = context(tenant);
            let theirs = new.get_thread(GetThread::new(thread.id.clone()).with_context(ctx)).await?;
            match theirs {
                // Deleted on the new shard since: nothing to carry.
                Some(theirs) if theirs.is_deleted() => {}
                Some(theirs) => {
                    let there = read_parts(new, theirs).await?;
                    match late(&copy, &there, late_from) {
                        Ok(None) => {}
                        Ok(Some(late)) => {
                            write(new, &late, &late.messages).await?;
                            carried += 1;
                        }
                        Err(why) => {
                            collisions.push((thread.id.clone(), why));
                            continue;
                        }
                    }
                }
                // Written to the old shard after the switch began (else erased from the new one
                // since: nothing to carry).
                None if copy.thread.updated_at >= late_from => {
                    write(new, &copy, &copy.messages).await?;
                    carried += 1;
                }
                None => {}
            }
            match erase(old, tenant, &thread.id, Some(copy.thread.updated_at)).await {
                Ok(()) => erased += 1,
                // Written since it was read: the next pass reads it again.
                Err(PersistError::VersionConflict { .. }) => {}
                Err(error) => return Err(error),
            }
        }
    }
    if let Some((thread, why)) = collisions.first() {
        return Err(mismatch(thread, &format!("was changed on both shards ({why}); both copies are kept")));
    }
    let left = threads(old, tenant).await?;
    if let Some(id) = left.keys().next() {
        return Err(mismatch(id, "is still written to the old shard"));
    }
    Ok((carried, erased))
}

/// What of `old` (a thread of the old shard) the new shard's `new` lacks: the messages and
/// summaries the new shard does not hold written since `late_from` (older ones were copied by
/// the switch: the new shard deleted them since), its bindings when they differ (the newest
/// binding wins). `Err` when the old one holds a change of what the new one holds otherwise:
/// a message or the thread's own fields at a higher version, a seq holding another message.
fn late(old: &Copy, new: &Copy, late_from: Timestamp) -> std::result::Result<Option<Copy>, String> {
    if old.thread.version > new.thread.version {
        return Err(format!(
            "thread version {} on the old shard, {} on the new",
            old.thread.version, new.thread.version
        ));
    }
    let by_id: HashMap<_, _> = new.messages.iter().map(|m| (&m.id, m)).collect();
    let seqs: BTreeSet<u64> = new.messages.iter().map(|m| m.seq).collect();
    let mut missing = Vec::new();
    for message in &old.messages {
        match by_id.get(&message.id) {
            Some(there) if *there == message => {}
            // Changed on the old shard after the switch began, and otherwise on the new one.
            Some(there) if message.updated_at >= late_from => {
                return Err(format!(
                    "message {} at version {} on the old shard, {} on the new",
                    message.id, message.version, there.version
                ));
            }
            // Changed on the new shard since.
            Some(_) => {}
            None if seqs.contains(&message.seq) => {
                return Err(format!(
                    "seq {} holds message {} on the old shard, another on the new",
                    message.seq, message.id
                ));
            }
            None if message.updated_at >= late_from => missing.push(message.clone()),
            None => {}
        }
    }
    let summaries: Vec<Summary> = old
        .summaries
        .iter()
        .filter(|s| {
            !new.summaries.iter().any(|there| (there.from_seq, there.through_seq) == (s.from_seq, s.through_seq))
        })
        .filter(|s| s.created_at >= late_from)
        .cloned()
        .collect();
    let bindings = if old.bindings == new.bindings { Vec::new() } else { old.bindings.clone() };
    if missing.is_empty() && summaries.is_empty() && bindings.is_empty() {
        return Ok(None);
    }
    Ok(Some(Copy { thread: old.thread.clone(), messages: missing, bindings, summaries }))
}
