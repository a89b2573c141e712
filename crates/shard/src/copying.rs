//! Copying a tenant's threads between shards for a move: each thread read whole as of one
//! moment, written exactly (restores, then each message's vectors), read back and compared; and
//! after the switch, what the old shard got late carried over before its copy is erased.

use std::collections::{BTreeSet, HashMap};

use super::claim::Claim;
use super::directory::{Copied, CopiedThreads, Directory};
use persist_core::Context;
use persist_core::Pipeline;
use persist_core::args::{Attached, Delete, Restore};
use persist_core::read::{GetThread, ListMessages, ListThreads, MAX_PAGE_LIMIT, UnreadableItem};
use persist_core::restore::MAX_RESTORE_MESSAGES;
use persist_core::session::{ListBindings, StoredBinding};
use persist_core::summary::{ListSummaries, Summarize, Summary};
use persist_core::vector::{Embed, StoredEmbedding};
use persist_core::working::{ListMemories, ReadMemory, WriteMemory};
use persist_core::{Message, Thread, Timestamp};
use persist_core::{PersistError, Result};
use persist_core::{TenantId, ThreadId};
use persist_ops::lifecycle::ThreadVectors;

/// Everything of one thread a move carries.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Copy {
    thread: Thread,
    messages: Vec<Message>,
    bindings: Vec<StoredBinding>,
    summaries: Vec<Summary>,
    /// The vectors of `messages`, by seq then model, as stored (the model's first one fixes its
    /// dimensions on the new shard, as it did on the old).
    vectors: Vec<StoredEmbedding>,
}

/// How many times a thread being written is read again for a settled copy.
const SETTLE_TRIES: usize = 3;

/// What a pass of [`sync`] did.
#[derive(Debug, Default)]
pub(super) struct Synced {
    /// Threads written to the target.
    pub(super) copied: u64,
    /// Threads that kept changing while read (left for the next pass).
    pub(super) unsettled: u64,
    /// Each thread the target holds as the source does, as copied.
    pub(super) threads: CopiedThreads,
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

pub(super) fn mismatch(thread: &ThreadId, what: &str) -> PersistError {
    PersistError::Backend { message: format!("moving thread {thread}: it {what}").into(), source: None }
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

/// Reads `thread` whole from `store` as of one moment (the thread read again after its parts,
/// and the parts again while it changes).
async fn read(store: &Pipeline, thread: &Thread) -> Result<Settled> {
    let tenant = thread.tenant.as_ref();
    let mut thread = thread.clone();
    for _ in 0..SETTLE_TRIES {
        let copy = read_parts(store, thread.clone()).await?;
        let again = store.get_thread(GetThread::new(thread.id.clone()).with_context(context(tenant))).await?;
        match again {
            Some(again) if again.is_deleted() => return Ok(Settled::Gone),
            Some(again) if again == thread => return Ok(Settled::Read(Box::new(copy))),
            Some(again) => thread = again,
            None => return Ok(Settled::Gone),
        }
    }
    Ok(Settled::Changing)
}

/// What [`read`] found.
enum Settled {
    Read(Box<Copy>),
    Gone,
    Changing,
}

/// `thread`'s messages (every branch, reservations too), bindings, summaries a branch can read
/// (one whose last message was deleted alone is read by none, and cannot be written) and the
/// messages' vectors.
async fn read_parts(store: &Pipeline, thread: Thread) -> Result<Copy> {
    let ctx = context(thread.tenant.as_ref());
    let listing = ListMessages::new(thread.id.clone())
        .include_reserved(true)
        .with_limit(MAX_PAGE_LIMIT)
        .with_context(ctx.clone());
    let every = persist_core::raw::list_every(store, listing).await?;
    refuse_unreadable(&every.unreadable)?;
    // Messages added after the thread was read wait for the next read.
    let messages: Vec<Message> = every.items.into_iter().filter(|message| message.seq <= thread.last_seq).collect();
    let bindings = store.bindings(ListBindings::new(thread.id.clone()).with_context(ctx.clone())).await?;
    let seqs: BTreeSet<u64> = messages.iter().map(|message| message.seq).collect();
    let oldest = seqs.first().copied().unwrap_or(u64::MAX);
    let vectors = vectors_of(store, &thread, &messages).await?;
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
    Ok(Copy { thread, messages, bindings, summaries, vectors })
}

/// The vectors `store` holds for `messages` of `thread` (none when it keeps none), by seq then
/// model: read by persist-ops' one reader of a thread's vectors, as a fork and the command line
/// read them.
async fn vectors_of(store: &Pipeline, thread: &Thread, messages: &[Message]) -> Result<Vec<StoredEmbedding>> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let ids: HashMap<u64, &persist_core::MessageId> = messages.iter().map(|m| (m.seq, &m.id)).collect();
    let mut vectors = ThreadVectors::new(store, thread.id.clone(), context(thread.tenant.as_ref()));
    let mut found = Vec::new();
    while let Some(vector) = vectors.next(store).await? {
        // A vector of a message added after the thread was read waits for the next read.
        if ids.get(&vector.seq) == Some(&&vector.message_id) {
            found.push(vector);
        }
    }
    Ok(found)
}

/// The vectors of `copy` that `there` (another copy of the same thread) does not hold as they
/// are.
fn missing_vectors(copy: &Copy, there: &Copy) -> Vec<StoredEmbedding> {
    let held: HashMap<(u64, &str), &StoredEmbedding> =
        there.vectors.iter().map(|v| ((v.seq, v.embedding.model()), v)).collect();
    // The vector, not its message's fields (role, status, creation time) a listing carries too.
    let same = |v: &StoredEmbedding, h: &StoredEmbedding| v.message_id == h.message_id && v.embedding == h.embedding;
    copy.vectors
        .iter()
        .filter(|v| !held.get(&(v.seq, v.embedding.model())).is_some_and(|h| same(v, h)))
        .cloned()
        .collect()
}

/// Restores `messages`, `bindings` and `summaries` of `copy`'s thread into `store` (what is
/// there already is kept), then writes `vectors` (each at the version of its message in
/// `copy`: a message the store holds at another version, changed there since, or no longer
/// holds gets none).
async fn write(
    store: &Pipeline,
    copy: &Copy,
    messages: &[Message],
    bindings: &[StoredBinding],
    summaries: &[Summary],
    vectors: &[StoredEmbedding],
) -> Result<()> {
    let ctx = context(copy.thread.tenant.as_ref());
    let mut batches: Vec<&[Message]> = messages.chunks(MAX_RESTORE_MESSAGES).collect();
    if batches.is_empty() {
        batches.push(&[]);
    }
    for batch in batches {
        store.restore(Restore::new(copy.thread.clone(), batch.to_vec()).with_context(ctx.clone())).await?;
    }
    if !bindings.is_empty() {
        let restore = Restore::new(copy.thread.clone(), Vec::new()).with_bindings(bindings.to_vec());
        store.restore(restore.with_context(ctx.clone())).await?;
    }
    for summary in summaries {
        let write = Summarize::new(copy.thread.id.clone(), summary.through_seq, summary.content.clone())
            .from_seq(summary.from_seq)
            .with_metadata(summary.metadata.clone())
            .created_at(summary.created_at)
            .with_context(ctx.clone());
        store.summarize(write).await?;
    }
    let versions: HashMap<&persist_core::MessageId, u64> = copy.messages.iter().map(|m| (&m.id, m.version)).collect();
    for vector in vectors {
        let Some(&version) = versions.get(&vector.message_id) else { continue };
        let embed = Embed::new(copy.thread.id.clone(), vector.message_id.clone(), vector.embedding.clone())
            .with_expected_version(version)
            .with_context(ctx.clone());
        match store.embed(embed).await {
            Ok(_) | Err(PersistError::VersionConflict { .. } | PersistError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Writes the whole of `copy` into `store`, where the thread is absent (or a tombstone,
/// erased first: the target of a move is read by nobody, and an id deleted there before may
/// hold a thread again where the tenant was).
async fn write_whole(store: &Pipeline, copy: &Copy) -> Result<()> {
    match write(store, copy, &copy.messages, &copy.bindings, &copy.summaries, &copy.vectors).await {
        Err(PersistError::ThreadDeleted { .. }) => {
            erase(store, copy.thread.tenant.as_ref(), &copy.thread.id, None, true).await?;
            write(store, copy, &copy.messages, &copy.bindings, &copy.summaries, &copy.vectors).await
        }
        other => other,
    }
}

/// [`write_whole`], then reads the thread back: it must be `copy`.
async fn write_checked(store: &Pipeline, copy: &Copy) -> Result<()> {
    write_whole(store, copy).await?;
    if !holds(store, copy).await? {
        return Err(mismatch(&copy.thread.id, "does not read back from the new shard as it was copied"));
    }
    Ok(())
}

/// Purges `thread` from `store` if it was not written since it was read (when `read` gives
/// what was read: its `updated_at`, and the summaries and bindings it held): `free_id` leaves
/// no tombstone.
async fn erase(
    store: &Pipeline,
    tenant: Option<&TenantId>,
    thread: &ThreadId,
    read: Option<(Timestamp, Attached)>,
    free_id: bool,
) -> Result<()> {
    let mut delete = Delete::purge(thread.clone()).freeing_id(free_id).with_context(context(tenant));
    if let Some((updated_at, attached)) = read {
        delete = delete.with_expected_updated_at(updated_at).with_expected_attached(attached);
    }
    store.delete(delete).await.map(drop)
}

/// Every summary (by the seq it ends at) and session binding (by agent and last write) of
/// `thread` in `store`, none left out: what a purge of it expects to erase (a summary or a
/// binding written later, which moves no `updated_at`, would be erased unread otherwise).
async fn attached(store: &Pipeline, thread: &Thread) -> Result<Attached> {
    let ctx = context(thread.tenant.as_ref());
    let bindings = store.bindings(ListBindings::new(thread.id.clone()).with_context(ctx.clone())).await?;
    let mut query = ListSummaries::new(thread.id.clone()).with_limit(MAX_PAGE_LIMIT).with_context(ctx);
    let mut ends = Vec::new();
    loop {
        let page = store.summaries(query.clone()).await?;
        ends.extend(page.items.iter().map(|summary| summary.through_seq));
        match query.next_page(&page) {
            Some(next) => query = next,
            None => break,
        }
    }
    let bindings = bindings.into_iter().map(|stored| (stored.binding.agent_id, stored.binding.updated_at));
    Ok(Attached::new(ends, bindings))
}

/// Whether `store` holds `copy` as it is.
async fn holds(store: &Pipeline, copy: &Copy) -> Result<bool> {
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

/// Makes `target` hold what `source` holds of `tenant` (before the switch ends, `target` is
/// read by nobody): a thread that differs is brought up to date (its new messages restored,
/// the vectors it lacks written), or erased there and copied again; one `source` no longer
/// holds is erased. With `quick`, a thread whose fields are equal in both (a write moves its
/// `updated_at`) is taken as equal when its bindings, summaries and vectors are (an `Embed`
/// moves no `updated_at`). The claim is checked before each thread.
pub(super) async fn sync(
    source: &Pipeline,
    target: &Pipeline,
    tenant: Option<&TenantId>,
    quick: bool,
    claim: &Claim<'_>,
) -> Result<Synced> {
    let listed = threads(source, tenant).await?;
    let mut held = threads(target, tenant).await?;
    let mut synced = Synced::default();
    for (id, thread) in &listed {
        claim.check()?;
        let theirs = held.remove(id);
        if quick && theirs.as_ref() == Some(thread) {
            let (ours, there) = (read_parts(source, thread.clone()).await?, read_parts(target, thread.clone()).await?);
            if (&ours.bindings, &ours.summaries, &ours.vectors) == (&there.bindings, &there.summaries, &there.vectors) {
                synced.threads.insert(id.clone(), Copied::of(&ours.thread, &ours.summaries));
                continue;
            }
        }
        let copy = match read(source, thread).await? {
            Settled::Read(copy) => *copy,
            Settled::Changing => {
                synced.unsettled += 1;
                continue;
            }
            Settled::Gone => {
                if theirs.is_some() {
                    erase(target, tenant, id, None, true).await?;
                }
                continue;
            }
        };
        if let Some(theirs) = theirs {
            let there = read_parts(target, theirs).await?;
            if there == copy {
                synced.threads.insert(id.clone(), Copied::of(&copy.thread, &copy.summaries));
                continue;
            }
            // Only messages added (and bindings, summaries, vectors) since: they alone are written.
            let brought = match appended(&copy, &there) {
                Some(added) => {
                    let vectors = missing_vectors(&copy, &there);
                    write(target, &copy, &added, &copy.bindings, &copy.summaries, &vectors).await?;
                    holds(target, &copy).await?
                }
                None => false,
            };
            if !brought {
                erase(target, tenant, id, None, true).await?;
                write_checked(target, &copy).await?;
            }
        } else {
            write_checked(target, &copy).await?;
        }
        synced.threads.insert(id.clone(), Copied::of(&copy.thread, &copy.summaries));
        synced.copied += 1;
    }
    for id in held.keys() {
        erase(target, tenant, id, None, true).await?;
    }
    sync_memories(source, target, tenant).await?;
    Ok(synced)
}

/// Writes each working memory document of `tenant` that `target` does not hold as `source` does,
/// at the source's version (the target's version expected: a write racing this one is not
/// overwritten, and the next pass
/// copies again, and the switch's pass, with writes refused, copies exactly). Nothing when either
/// store keeps none.
async fn sync_memories(source: &Pipeline, target: &Pipeline, tenant: Option<&TenantId>) -> Result<()> {
    if !source.capabilities().working_memory || !target.capabilities().working_memory {
        return Ok(());
    }
    let mut listing = ListMemories::new().with_limit(MAX_PAGE_LIMIT).with_context(context(tenant));
    loop {
        let page = source.memories(listing.clone()).await?;
        for memory in &page.items {
            let read = ReadMemory::new(memory.resource.clone()).with_context(context(tenant));
            let there = target.read_memory(read).await?;
            if there.as_ref().is_some_and(|there| there.document == memory.document) {
                continue;
            }
            let version = there.map_or(0, |there| there.version);
            // At the source's version (an expected version read there stays meaningful here);
            // a target already past it (a stale copy written since) takes the next of its own.
            let write = if memory.version > version {
                WriteMemory::restore(memory.resource.clone(), memory.document.clone(), memory.version)
            } else {
                WriteMemory::replace(memory.resource.clone(), memory.document.clone())
            };
            match target.write_memory(write.with_expected_version(version).with_context(context(tenant))).await {
                // Written meanwhile: the next pass compares again.
                Ok(_) | Err(PersistError::DocumentConflict { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        if !page.has_more {
            return Ok(());
        }
        listing = listing.with_cursor(page.next_cursor);
    }
}

/// What [`clean`] did.
#[derive(Debug, Default)]
pub(super) struct Cleaned {
    /// Threads with something written to the old shard late, carried to the new one.
    pub(super) carried: u64,
    /// Threads erased from the old shard.
    pub(super) erased: u64,
}

/// After the switch: carries what `old` got late (past what the switch `copied`) to `new`,
/// and erases `old`'s threads of `tenant`, leaving tombstones (a write that still reaches the
/// old shard is refused as `ThreadDeleted`, not taken and lost). The claim is checked before
/// each thread; a thread carried is recorded in `directory` as copied by the switch of `since`.
pub(super) async fn clean(
    old: &Pipeline,
    new: &Pipeline,
    tenant: Option<&TenantId>,
    claim: &Claim<'_>,
    directory: &Directory,
    since: Timestamp,
) -> Result<Cleaned> {
    let Some(mut copied) = directory.copied(tenant, since).await? else {
        return Err(PersistError::Backend {
            message: "the switch's record of what it copied is gone: the old shard's threads are kept; \
                      compare and erase them by hand"
                .into(),
            source: None,
        });
    };
    let mut cleaned = Cleaned::default();
    let mut collisions: Vec<(ThreadId, String)> = Vec::new();
    for _ in 0..SETTLE_TRIES {
        let left = threads(old, tenant).await?;
        let left: Vec<&Thread> = left.values().filter(|t| !collisions.iter().any(|(id, _)| id == &t.id)).collect();
        if left.is_empty() {
            break;
        }
        for thread in left {
            claim.check()?;
            // Read before the copy: what is written after it is refused by the purge below.
            let held = attached(old, thread).await?;
            let Settled::Read(copy) = read(old, thread).await? else { continue };
            let copy = *copy;
            let get = GetThread::new(thread.id.clone()).with_context(context(tenant));
            let carry = match new.get_thread(get).await? {
                // Deleted on the new shard since: what was written late would be refused there.
                Some(theirs) if theirs.is_deleted() => None,
                Some(theirs) => {
                    let there = read_parts(new, theirs).await?;
                    match late(&copy, &there, copied.get(&thread.id)) {
                        Ok(carry) => carry,
                        Err(why) => {
                            collisions.push((thread.id.clone(), why));
                            continue;
                        }
                    }
                }
                // Created on the old shard late; else erased from the new one since.
                None if !copied.contains_key(&thread.id) => Some(copy.clone()),
                None => None,
            };
            if let Some(carry) = carry {
                match write(new, &copy, &carry.messages, &carry.bindings, &carry.summaries, &carry.vectors).await {
                    Ok(()) => {
                        // Carried: recorded as copied, so that a run resumed before the erase
                        // below does not carry again what the new shard deletes meanwhile.
                        let carried =
                            CopiedThreads::from([(thread.id.clone(), Copied::of(&copy.thread, &copy.summaries))]);
                        directory.save_copied(tenant, since, &carried).await?;
                        copied.extend(carried);
                        cleaned.carried += 1;
                    }
                    Err(PersistError::ThreadDeleted { .. }) => {}
                    Err(PersistError::AlreadyExists { .. }) => {
                        collisions.push((thread.id.clone(), "a message written late collides with one there".into()));
                        continue;
                    }
                    Err(error) => return Err(error),
                }
            }
            match erase(old, tenant, &thread.id, Some((copy.thread.updated_at, held)), false).await {
                Ok(()) => cleaned.erased += 1,
                // Written since it was read: the next pass reads it again.
                Err(PersistError::VersionConflict { .. }) => {}
                Err(error) => return Err(error),
            }
        }
    }
    if let Some((thread, why)) = collisions.first() {
        return Err(mismatch(thread, &format!("was changed on both shards ({why}); both copies are kept")));
    }
    if let Some(id) = threads(old, tenant).await?.keys().next() {
        return Err(mismatch(id, "is still written to on the old shard"));
    }
    Ok(cleaned)
}

/// What of `old` (a thread of the old shard) was written there after the switch copied it
/// (`copied`; `None`: not copied, all of it is) and the new shard's `new` lacks: messages past
/// the copy's seqs, summaries newer than it, bindings newer than the new shard's, vectors the
/// new shard does not hold as they are (an `Embed` moves nothing of the thread). `Err` when
/// the old one holds a change the new one cannot take: a message or the thread's own fields
/// changed on both.
fn late(old: &Copy, new: &Copy, copied: Option<&Copied>) -> std::result::Result<Option<Copy>, String> {
    let theirs: HashMap<_, _> = new.bindings.iter().map(|b| (&b.binding.agent_id, b)).collect();
    let bindings: Vec<StoredBinding> = old
        .bindings
        .iter()
        .filter(|b| theirs.get(&b.binding.agent_id).is_none_or(|there| there.binding.updated_at < b.binding.updated_at))
        .cloned()
        .collect();
    let unchanged = copied.is_some_and(|copied| copied.unchanged(&old.thread));
    let (last_seq, version, latest) =
        copied.map_or((0, 0, Timestamp::from_micros(0)), |c| (c.last_seq, c.version, c.latest));
    let mut messages = Vec::new();
    if !unchanged {
        let fields = |copy: &Copy| (copy.thread.title.clone(), copy.thread.metadata.clone());
        if old.thread.version > version && fields(old) != fields(new) {
            return Err(
                "its title or metadata changed on the old shard after the copy, and differ on the new".to_owned()
            );
        }
        let by_id: HashMap<_, _> = new.messages.iter().map(|m| (&m.id, m)).collect();
        for message in &old.messages {
            match by_id.get(&message.id) {
                Some(there) if *there == message || there.version > message.version => {}
                Some(there) => {
                    return Err(format!(
                        "message {} at version {} on the old shard, {} on the new",
                        message.id, message.version, there.version
                    ));
                }
                // Written late; else deleted on the new shard since.
                None if message.seq > last_seq => messages.push(message.clone()),
                None => {}
            }
        }
    }
    let summaries: Vec<Summary> = old
        .summaries
        .iter()
        .filter(|s| s.created_at > latest || s.through_seq > last_seq)
        .filter(|s| {
            !new.summaries.iter().any(|there| (there.from_seq, there.through_seq) == (s.from_seq, s.through_seq))
        })
        .cloned()
        .collect();
    // Of the messages carried now, or the new shard holds as the old one does (one changed on
    // the new shard since holds other words than the vector describes).
    let ours: HashMap<_, _> = old.messages.iter().map(|m| (&m.id, m)).collect();
    let mut held: BTreeSet<&persist_core::MessageId> =
        new.messages.iter().filter(|m| ours.get(&m.id) == Some(m)).map(|m| &m.id).collect();
    held.extend(messages.iter().map(|m| &m.id));
    let vectors: Vec<StoredEmbedding> =
        missing_vectors(old, new).into_iter().filter(|v| held.contains(&v.message_id)).collect();
    if messages.is_empty() && summaries.is_empty() && bindings.is_empty() && vectors.is_empty() {
        return Ok(None);
    }
    Ok(Some(Copy { thread: old.thread.clone(), messages, bindings, summaries, vectors }))
}
