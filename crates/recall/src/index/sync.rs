//! How a [`TenantIndex`] follows the rows: built from them (every live thread's vectors, read
//! with `ListThreads` and `ListEmbeddings`) at the feed's head, then caught up from the change
//! feed before each answer: each event names what to read again (a message by its seq, a thread's
//! metadata, a thread deleted), and what is read again is the rows as they are now, so reading a
//! change twice, or after a later one, leaves the same index.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use persist_core::feed::{FeedPage, ReadFeed, Removed};
use persist_core::read::{GetMessage, GetThread, ListThreads};
use persist_core::vector::{EmbeddingCursor, ListEmbeddings, StoredEmbedding};
use persist_core::{
    Context, MessageId, Page, PersistArgs, PersistError, PersistOp, PersistResult, Result, Thread, ThreadId, Timestamp,
};
use tower::{Service, ServiceExt};

use super::arena::TenantIndex;
use super::snapshot;

/// The most events or vectors one read asks for.
const PAGE: u32 = 1000;

/// The newest messages a file's index is checked by (see [`restore`]).
const NEWEST: usize = 8;

/// Seqs of one thread this close together are read again in one pass over the thread's vectors.
const NEAR: u64 = 64;

/// Sends `args` through `inner` once it is ready.
pub(super) async fn ask<S>(inner: &mut S, args: impl Into<PersistArgs>) -> Result<PersistResult>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    let args = args.into();
    inner.ready().await?.call(args).await
}

fn mismatched(op: PersistOp, got: &PersistResult) -> PersistError {
    PersistError::MismatchedResult { op, got: got.op() }
}

async fn feed<S>(inner: &mut S, context: &Context, after: u64, limit: u32) -> Result<FeedPage>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    let read = ReadFeed::tenant().after(after).with_limit(limit).with_context(context.renewed());
    match ask(inner, read).await? {
        PersistResult::Feed(page) => Ok(page),
        other => Err(mismatched(PersistOp::ReadFeed, &other)),
    }
}

/// The feed's head now (past what retention trimmed).
async fn head<S>(inner: &mut S, context: &Context) -> Result<u64>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    match feed(inner, context, 0, 1).await {
        Ok(page) => Ok(page.head),
        Err(PersistError::FeedGap { trimmed, .. }) => Ok(feed(inner, context, trimmed, 1).await?.head),
        Err(error) => Err(error),
    }
}

async fn thread<S>(inner: &mut S, context: &Context, id: &ThreadId) -> Result<Option<Thread>>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    match ask(inner, GetThread::new(id.clone()).with_context(context.renewed())).await {
        Ok(PersistResult::Thread(found)) => Ok(found.filter(|t| t.deleted_at.is_none())),
        Ok(other) => Err(mismatched(PersistOp::GetThread, &other)),
        Err(PersistError::NotFound { .. } | PersistError::ThreadDeleted { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The vectors of `thread` from seq `from` on (every model), up to seq `to`.
async fn vectors<S>(
    inner: &mut S,
    context: &Context,
    thread: &ThreadId,
    from: u64,
    to: u64,
) -> Result<Vec<StoredEmbedding>>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    let mut found = Vec::new();
    // Seq `from - 1`, model "": every vector of seq `from` on comes after it.
    let mut after = (from > 1).then(|| EmbeddingCursor::new(from - 1, ""));
    loop {
        let list = ListEmbeddings::new(thread.clone()).after(after).with_limit(PAGE).with_context(context.renewed());
        let page: Page<StoredEmbedding, EmbeddingCursor> = match ask(inner, list).await? {
            PersistResult::Embeddings(page) => page,
            other => return Err(mismatched(PersistOp::ListEmbeddings, &other)),
        };
        let past = page.items.last().is_some_and(|last| last.seq > to);
        found.extend(page.items.into_iter().filter(|v| v.seq >= from && v.seq <= to));
        if past || !page.has_more {
            return Ok(found);
        }
        after = page.next_cursor;
    }
}

/// The index of `context`'s tenant built from the rows: the feed's head first, then every live
/// thread's vectors (what changes meanwhile has its events after that head). `None` as soon as
/// it holds more than `budget` bytes.
pub(super) async fn build<S>(inner: &mut S, context: &Context, budget: usize) -> Result<Option<TenantIndex>>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    let mut index = TenantIndex::new(head(inner, context).await?);
    let list = ListThreads::new().with_limit(PAGE);
    let mut cursor = None;
    loop {
        let read = list.clone().with_cursor(cursor).with_context(context.renewed());
        let page = match ask(inner, read).await? {
            PersistResult::Threads(page) => page,
            other => return Err(mismatched(PersistOp::Threads, &other)),
        };
        for found in page.items.iter().filter(|t| t.deleted_at.is_none()) {
            let at = index.set_thread(&found.id, found.metadata.clone());
            for stored in vectors(inner, context, &found.id, 1, u64::MAX).await? {
                index.put(at, &stored);
            }
            if index.least_bytes() > budget {
                return Ok(None);
            }
        }
        if !page.has_more {
            break;
        }
        cursor = page.next_cursor;
    }
    catch_up(inner, context, &mut index).await?;
    index.shrink();
    Ok(Some(index))
}

/// What the feed's events since the index's position ask to read again.
#[derive(Debug, Default)]
struct Changes {
    /// Threads whose own fields (metadata, tombstone) changed.
    threads: BTreeSet<ThreadId>,
    /// Threads deleted since: what the index holds of them goes before anything is read again.
    removed: BTreeSet<ThreadId>,
    /// Messages by thread and seq.
    messages: BTreeMap<ThreadId, BTreeSet<u64>>,
}

impl Changes {
    fn note(&mut self, page: &FeedPage) {
        for event in &page.events {
            let change = &event.change;
            let Some(thread) = &change.thread_id else { continue };
            match (change.op, change.removed, change.message_id.is_some(), change.seq) {
                // A deleted thread: what came before in this batch is gone with it.
                (_, Some(Removed::Thread), _, _) => {
                    self.messages.remove(thread);
                    self.removed.insert(thread.clone());
                    self.threads.insert(thread.clone());
                }
                // A summary, a reservation: no vector changed.
                (PersistOp::Summarize | PersistOp::Reserve, ..) => {}
                (_, _, true, Some(seq)) => {
                    self.messages.entry(thread.clone()).or_default().insert(seq);
                }
                // The thread's own version: its metadata, a truncation (whose messages have their
                // own events).
                _ => {
                    self.threads.insert(thread.clone());
                }
            }
        }
    }
}

/// Reads the feed after the index's position and reads again what its events name.
///
/// # Errors
///
/// `FeedGap` when retention trimmed events the index has not read (the caller builds again).
pub(super) async fn catch_up<S>(inner: &mut S, context: &Context, index: &mut TenantIndex) -> Result<()>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    catch_up_noting(inner, context, index, None).await
}

/// What the events a catch-up read named: messages by id, and threads changed as a whole.
#[derive(Debug, Default)]
struct Touched {
    messages: HashSet<MessageId>,
    threads: HashSet<ThreadId>,
}

/// [`catch_up`], noting in `touched` what its events named.
async fn catch_up_noting<S>(
    inner: &mut S,
    context: &Context,
    index: &mut TenantIndex,
    mut touched: Option<&mut Touched>,
) -> Result<()>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    let mut changes = Changes::default();
    let (mut position, mut last_event, mut read) = (index.position, index.last_event, 0);
    loop {
        let page = feed(inner, context, position, PAGE).await?;
        changes.note(&page);
        if let Some(touched) = touched.as_deref_mut() {
            for change in page.events.iter().map(|event| &event.change) {
                match (&change.message_id, &change.thread_id) {
                    (Some(message), _) => drop(touched.messages.insert(message.clone())),
                    (None, Some(thread)) => drop(touched.threads.insert(thread.clone())),
                    (None, None) => {}
                }
            }
        }
        position = page.last_position(position);
        if let Some(last) = page.events.last() {
            last_event = Some((last.position, snapshot::fingerprint(last)));
        }
        read += page.events.len() as u64;
        if !page.has_more {
            break;
        }
    }
    for thread in &changes.removed {
        index.drop_thread(thread);
    }
    for id in &changes.threads {
        match thread(inner, context, id).await? {
            // A thread the index did not hold (made since, or listed past while it moved in the
            // listing's order): all of it.
            Some(found) if index.thread(id).is_none_or(|at| !index.threads[at as usize].live) => {
                let at = index.set_thread(id, found.metadata);
                let all = vectors(inner, context, id, 1, u64::MAX).await?;
                index.refresh(at, &[], &all);
                changes.messages.remove(id);
            }
            Some(found) => {
                index.set_thread(id, found.metadata);
            }
            None => index.drop_thread(id),
        }
    }
    for (id, seqs) in &changes.messages {
        let at = match index.thread(id).filter(|&at| index.threads[at as usize].live) {
            Some(at) => at,
            None => {
                let Some(found) = thread(inner, context, id).await? else {
                    index.drop_thread(id);
                    continue;
                };
                let at = index.set_thread(id, found.metadata);
                let all = vectors(inner, context, id, 1, u64::MAX).await?;
                index.refresh(at, &[], &all);
                continue;
            }
        };
        // Runs of nearby seqs, each read in one pass.
        let seqs: Vec<u64> = seqs.iter().copied().collect();
        let mut start = 0;
        for end in 1..=seqs.len() {
            if end == seqs.len() || seqs[end] - seqs[end - 1] > NEAR {
                let run = &seqs[start..end];
                let (from, to) = (run[0], run[run.len() - 1]);
                let now = vectors(inner, context, id, from, to).await?;
                let now: Vec<StoredEmbedding> = now.into_iter().filter(|v| run.binary_search(&v.seq).is_ok()).collect();
                index.refresh(at, run, &now);
                start = end;
            }
        }
    }
    index.position = position;
    index.last_event = last_event;
    index.unsaved += read;
    Ok(())
}

/// Brings `index`, read back from a file, to the feed's head, if it is of this store as it is
/// now: the last event of the tenant it read is in the feed as it was, its position is not past
/// the feed's head, and of its newest messages, those no event since names are in the rows with
/// the times it holds (one at least). `false` for a file of another store, or of this one before
/// it was restored from an older copy, or one whose events retention has trimmed since: the
/// caller builds from the rows.
pub(super) async fn restore<S>(inner: &mut S, context: &Context, index: &mut TenantIndex) -> Result<bool>
where
    S: Service<PersistArgs, Response = PersistResult, Error = PersistError>,
{
    let unknown =
        |error: &PersistError| matches!(error, PersistError::FeedGap { .. } | PersistError::InvalidInput { .. });
    if let Some((position, fingerprint)) = index.last_event {
        match feed(inner, context, position.saturating_sub(1), 1).await {
            Ok(page) => match page.events.first() {
                Some(event) if event.position == position && snapshot::fingerprint(event) == fingerprint => {}
                _ => return Ok(false),
            },
            Err(error) if unknown(&error) => return Ok(false),
            Err(error) => return Err(error),
        }
    }
    // Taken before the catch-up, whose reads would vouch for themselves.
    let newest: Vec<(ThreadId, MessageId, Timestamp)> =
        index.newest(NEWEST).into_iter().map(|(thread, message, at)| (thread.clone(), message.clone(), at)).collect();
    let mut touched = Touched::default();
    match catch_up_noting(inner, context, index, Some(&mut touched)).await {
        Ok(()) => {}
        Err(error) if unknown(&error) => return Ok(false),
        Err(error) => return Err(error),
    }
    let mut vouched = 0;
    for (thread, message_id, created_at) in &newest {
        if touched.messages.contains(message_id) || touched.threads.contains(thread) {
            continue;
        }
        let get = GetMessage::new(thread.clone(), message_id.clone()).with_context(context.renewed());
        match ask(inner, get).await {
            Ok(PersistResult::Message(Some(found))) if found.created_at == *created_at => vouched += 1,
            Ok(PersistResult::Message(_)) => return Ok(false),
            Err(PersistError::NotFound { .. } | PersistError::ThreadDeleted { .. }) => return Ok(false),
            Ok(other) => return Err(mismatched(PersistOp::Get, &other)),
            Err(error) => return Err(error),
        }
    }
    Ok(newest.is_empty() || vouched > 0)
}
