//! `copy`: every thread of one store into another, through `Restore`, then verified.
//!
//! Each thread is sent in requests of at most `MAX_RESTORE_MESSAGES` messages through the
//! target's pipeline; each request is one transaction and idempotent, so a copy stopped
//! anywhere (Ctrl-C, a lost connection) is finished by running it again: what the target holds
//! already is counted as present and not written twice. Then every thread copied is read back
//! from the target and compared with what was read from the source: the number of messages
//! and a checksum of them (see the `checksum` module), its summaries and its session bindings.
//!
//! Summaries are written after their thread's messages, as stored (ranges, content, metadata,
//! times; sealed ones sealed); a summary the target has already for the same range is kept.
//!
//! Each message's vectors follow it (`Embed`, after the request that restored it), as stored:
//! the target holds the same numbers, and the first vector of a model fixes its dimensions
//! there as it did in the source. The verification compares every thread's vectors too.
//!
//! Session bindings travel with their thread (a request of their own after its messages):
//! a binding the target changed at the same time or later is kept (the newest wins), and
//! reported by the verification. Bindings of threads that do not exist are not copied.
//!
//! Working memory documents follow the threads: each the target does not hold as it is, written
//! at the source's version when the target's is lower (as `persist import` writes them), then
//! read back and compared.
//!
//! Threads are found by listing the source, newest first: a thread written while the copy runs
//! moves ahead of the listing and may be missed; a later run copies it.

use std::io::Write;

use persist::args::Restore;
use persist::read::GetThread;
use persist::restore::MAX_RESTORE_MESSAGES;
use persist::session::StoredBinding;
use persist::vector::Embedding;
use persist::working::{ListMemories, ReadMemory, WorkingMemory};
use persist::{Context, Message, TenantId, Thread, ThreadId};
use serde_json::json;

use super::transfer::{thread_vectors, write_vectors};
use super::{
    MessagePages, RUN_AGAIN, Scope, bindings_of, describe_thread, interruptible, stdout, summaries_of, write_summary,
};
use crate::checksum::Checksum;
use crate::error::{CliError, CliResult, describe};
use crate::jsonl::write_line;
use crate::progress::Progress;
use crate::store::Store;

/// A thread copied, with what was read from the source.
#[derive(Debug)]
struct Copied {
    id: ThreadId,
    tenant: Option<TenantId>,
    source: Checksum,
    /// The vectors of the messages copied, as read from the source.
    vectors: VectorSum,
    bindings: Vec<StoredBinding>,
    summaries: Vec<persist::summary::Summary>,
}

/// A digest of a thread's vectors (each message's seq and id, each model and the numbers' bits,
/// in the order a listing answers them), and their count: what the verification compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VectorSum {
    hash: u64,
    count: u64,
}

impl VectorSum {
    fn new() -> Self {
        Self { hash: 0, count: 0 }
    }

    /// Adds the next vector (by the message's seq, then the model).
    fn add(&mut self, seq: u64, message: &persist::MessageId, embedding: &Embedding) {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        (self.hash, seq, message.as_str(), embedding.model()).hash(&mut hasher);
        embedding.vector().iter().for_each(|x| x.to_bits().hash(&mut hasher));
        self.hash = hasher.finish();
        self.count += 1;
    }
}

/// Counts of a copy.
#[derive(Debug, Default)]
struct Totals {
    restored: u64,
    present: u64,
    bindings: u64,
    summaries: u64,
    /// Working memory documents written.
    memories: u64,
    /// Vectors written.
    embeddings: u64,
}

/// `persist copy --to URL`: copies every thread of the scope (every tenant's, unless `--tenant`
/// names one) from `source` to `target`, then verifies the target.
pub(crate) async fn copy(source: &Store, target: &Store, scope: &Scope, json: bool) -> CliResult {
    let mut copied = Vec::new();
    let mut totals = Totals::default();
    let mut progress = Progress::new("messages copied");
    let work = async {
        let mut pages = scope.threads();
        while let Some(page) = pages.next_page(&source.pipeline).await? {
            for thread in &page {
                copied.push(copy_thread(source, target, thread, &mut totals, &mut progress).await?);
            }
        }
        Ok::<(), CliError>(())
    };
    interruptible(RUN_AGAIN, work).await?;
    progress.finish();
    let documents = interruptible(RUN_AGAIN, copy_memories(source, target, scope, &mut totals)).await?;
    let mut mismatches = interruptible(RUN_AGAIN, verify(target, &copied)).await?;
    mismatches.extend(interruptible(RUN_AGAIN, verify_memories(target, &documents)).await?);
    let messages: u64 = copied.iter().map(|thread| thread.source.count()).sum();
    let mut out = stdout();
    if json {
        let report = json!({
            "threads": copied.len(),
            "messages": messages,
            "restored": totals.restored,
            "present": totals.present,
            "bindings": totals.bindings,
            "summaries": totals.summaries,
            "working_memory": documents.len(),
            "memories_written": totals.memories,
            "embeddings": copied.iter().map(|thread| thread.vectors.count).sum::<u64>(),
            "embeddings_written": totals.embeddings,
            "mismatches": mismatches,
        });
        write_line(&mut out, &report)?;
    } else {
        writeln!(
            out,
            "copied {} threads, {messages} messages: restored {}, {} already present; {} session bindings, {} \
             summaries written; {} working memory documents, {} written; {} vectors written",
            copied.len(),
            totals.restored,
            totals.present,
            totals.bindings,
            totals.summaries,
            documents.len(),
            totals.memories,
            totals.embeddings
        )?;
        for mismatch in &mismatches {
            writeln!(out, "mismatch: {mismatch}")?;
        }
        if mismatches.is_empty() {
            writeln!(
                out,
                "verified: every thread has the same messages and vectors in the target, every document the same text"
            )?;
        }
    }
    out.flush()?;
    if mismatches.is_empty() {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "verification failed: {} threads or documents differ in the target",
            mismatches.len()
        )))
    }
}

/// Copies one thread, in requests of at most `MAX_RESTORE_MESSAGES` messages, each followed by
/// its messages' vectors; answers the checksum of the messages read from the source.
async fn copy_thread(
    source: &Store,
    target: &Store,
    thread: &Thread,
    totals: &mut Totals,
    progress: &mut Progress,
) -> CliResult<Copied> {
    let name = describe_thread(&thread.id, thread.tenant.as_ref());
    let mut checksum = Checksum::default();
    let mut sum = VectorSum::new();
    let mut seqs = std::collections::BTreeSet::new();
    let mut sent = false;
    let mut pages = MessagePages::of(thread);
    let mut vectors = thread_vectors(&source.pipeline, thread);
    while let Some(page) = pages.next_page(&source.pipeline).await? {
        // Messages added after the thread was listed wait for the next copy.
        let page: Vec<Message> = page.into_iter().filter(|message| message.seq <= thread.last_seq).collect();
        let mut read = std::collections::HashMap::new();
        for message in &page {
            checksum.add(message)?;
            seqs.insert(message.seq);
            let embeddings = vectors.of_message(&source.pipeline, message).await?;
            for embedding in &embeddings {
                sum.add(message.seq, &message.id, embedding);
            }
            read.insert(message.seq, embeddings);
        }
        let batches: Vec<Vec<Message>> = if page.is_empty() {
            // The thread alone, once: a thread without messages is copied too.
            if sent { Vec::new() } else { vec![Vec::new()] }
        } else {
            page.chunks(MAX_RESTORE_MESSAGES).map(<[Message]>::to_vec).collect()
        };
        for batch in batches {
            let count = batch.len() as u64;
            let embedded: Vec<_> = batch
                .iter()
                .flat_map(|message| {
                    let embeddings = read.remove(&message.seq).unwrap_or_default();
                    embeddings.into_iter().map(|embedding| (message.id.clone(), message.version, embedding))
                })
                .collect();
            let restored = target
                .pipeline
                .restore(Restore::new(thread.clone(), batch))
                .await
                .map_err(|e| CliError::failed(format!("copying thread {name}: {}", describe(&e))))?;
            totals.restored += restored.restored;
            totals.present += restored.present;
            totals.embeddings += write_vectors(&target.pipeline, thread, embedded).await?;
            progress.add(count);
            sent = true;
        }
    }
    let bindings = bindings_of(&source.pipeline, thread).await?;
    if !bindings.is_empty() {
        let restore = Restore::new(thread.clone(), Vec::new()).with_bindings(bindings.clone());
        let restored = target.pipeline.restore(restore).await.map_err(|e| {
            CliError::failed(format!("copying the session bindings of thread {name}: {}", describe(&e)))
        })?;
        totals.bindings += restored.bindings;
    }
    // Summaries as stored (sealed ones sealed): each ends at a message copied above.
    let summaries = super::readable_summaries(summaries_of(&source.pipeline, thread).await?, &seqs);
    for summary in &summaries {
        totals.summaries += u64::from(write_summary(&target.pipeline, thread, summary.clone()).await?);
    }
    Ok(Copied {
        id: thread.id.clone(),
        tenant: thread.tenant.clone(),
        source: checksum,
        vectors: sum,
        bindings,
        summaries,
    })
}

/// Reads every copied thread back from the target; answers the threads that differ, in words.
async fn verify(target: &Store, copied: &[Copied]) -> CliResult<Vec<String>> {
    let mut mismatches = Vec::new();
    let mut progress = Progress::new("threads verified");
    for thread in copied {
        let name = describe_thread(&thread.id, thread.tenant.as_ref());
        let context = Context::new().for_tenant(thread.tenant.clone());
        let stored = target.pipeline.get_thread(GetThread::new(thread.id.clone()).with_context(context)).await?;
        let stored = match stored {
            None => {
                mismatches.push(format!("thread {name} is missing in the target"));
                continue;
            }
            Some(stored) if stored.is_deleted() => {
                mismatches.push(format!("thread {name} is deleted in the target"));
                continue;
            }
            Some(stored) => stored,
        };
        let mut checksum = Checksum::default();
        let mut pages = MessagePages::of(&stored);
        while let Some(page) = pages.next_page(&target.pipeline).await? {
            for message in &page {
                checksum.add(message)?;
            }
        }
        if checksum != thread.source {
            mismatches.push(format!(
                "thread {name}: source {} messages (checksum {}), target {} messages (checksum {})",
                thread.source.count(),
                thread.source.hex(),
                checksum.count(),
                checksum.hex()
            ));
        }
        let vectors = vectors_of(&target.pipeline, &stored).await?;
        if vectors != thread.vectors {
            mismatches.push(format!(
                "thread {name}: {} vectors in the source, {} in the target, or other numbers",
                thread.vectors.count, vectors.count
            ));
        }
        let summaries = summaries_of(&target.pipeline, &stored).await?;
        if summaries != thread.summaries {
            let ranges = |found: &[persist::summary::Summary]| {
                found.iter().map(|s| format!("{}..{}", s.from_seq, s.through_seq)).collect::<Vec<_>>()
            };
            mismatches.push(format!(
                "thread {name}: summaries {:?} in the source, {:?} in the target",
                ranges(&thread.summaries),
                ranges(&summaries)
            ));
        }
        let bindings = bindings_of(&target.pipeline, &stored).await?;
        if bindings != thread.bindings {
            let sessions = |found: &[StoredBinding]| {
                found.iter().map(|b| format!("{}={}", b.binding.agent_id, b.binding.session_id)).collect::<Vec<_>>()
            };
            mismatches.push(format!(
                "thread {name}: session bindings {:?} in the source, {:?} in the target",
                sessions(&thread.bindings),
                sessions(&bindings)
            ));
        }
        progress.add(1);
    }
    progress.finish();
    Ok(mismatches)
}

/// The digest of every vector `pipeline`'s store holds for `thread` (none when it keeps none).
async fn vectors_of(pipeline: &persist::Pipeline, thread: &Thread) -> CliResult<VectorSum> {
    let mut sum = VectorSum::new();
    let mut vectors = thread_vectors(pipeline, thread);
    while let Some(stored) = vectors.next(pipeline).await? {
        sum.add(stored.seq, &stored.message_id, &stored.embedding);
    }
    Ok(sum)
}

/// Copies the scope's working memory documents (the tenant's, or every tenant's) the target does
/// not hold as they are; answers every document read from the source. A source that keeps none
/// copies none; a target that keeps none is refused when there is one to copy.
async fn copy_memories(
    source: &Store,
    target: &Store,
    scope: &Scope,
    totals: &mut Totals,
) -> CliResult<Vec<WorkingMemory>> {
    let mut read = Vec::new();
    if !source.pipeline.capabilities().working_memory {
        return Ok(read);
    }
    let mut listing = ListMemories::new().across_tenants(scope.across_tenants).with_context(scope.context());
    loop {
        let page = source.pipeline.memories(listing.clone()).await?;
        for memory in page.items {
            if !target.pipeline.capabilities().working_memory {
                return Err(CliError::failed(
                    "the source holds working memory documents and the target keeps none (its backend does not \
                     declare `working_memory`)",
                ));
            }
            if super::transfer::import_memory(target, scope, memory.clone()).await? {
                totals.memories += 1;
            }
            read.push(memory);
        }
        if !page.has_more {
            return Ok(read);
        }
        listing = listing.with_cursor(page.next_cursor);
    }
}

/// Each document read from the source, read back from the target: a mismatch per document the
/// target holds otherwise (a writer of the target may have changed it since).
async fn verify_memories(target: &Store, documents: &[WorkingMemory]) -> CliResult<Vec<String>> {
    let mut mismatches = Vec::new();
    for memory in documents {
        let context = Context::new().for_tenant(memory.tenant.clone());
        let read = ReadMemory::new(memory.resource.clone()).with_context(context);
        let held = target.pipeline.read_memory(read).await?;
        if held.as_ref().is_none_or(|held| held.document != memory.document) {
            let tenant = memory.tenant.as_ref().map_or("(no tenant)", TenantId::as_str);
            mismatches
                .push(format!("working memory {} of {tenant}: the target holds another document", memory.resource));
        }
    }
    Ok(mismatches)
}
