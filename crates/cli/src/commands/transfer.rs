//! `export` (a store to JSONL) and `import` (JSONL into a store, through `Restore`, then each
//! message's vectors through `Embed`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use persist::args::Restore;
use persist::encrypt::EncryptLayer;
use persist::lifecycle::ThreadVectors;
use persist::read::GetThread;
use persist::restore::MAX_RESTORE_MESSAGES;
use persist::session::StoredBinding;
use persist::summary::Summary;
use persist::vector::{Embed, Embedding};
use persist::working::{ListMemories, ReadMemory, WorkingMemory, WriteMemory};
use persist::{Context, Message, MessageId, PersistError, Pipeline, TenantId, Thread, ThreadId};
use serde_json::json;
use tokio::io::{AsyncBufRead, BufReader};

use super::{MessagePages, RUN_AGAIN, Scope, bindings_of, describe_thread, interruptible, stdout, summaries_of};
use crate::error::{CliError, CliResult, describe, note};
use crate::jsonl::{
    Counts, End, Header, Item, Reader, binding_line, memory_line, message_line_with, summary_line, thread_line,
    write_line,
};
use crate::keys;
use crate::progress::Progress;
use crate::store::{Mode, Store};
use crate::text::format_time;

/// What `export` writes, and where.
#[derive(Debug)]
pub(crate) struct ExportOptions {
    /// One thread, or (`None`) every thread of the scope.
    pub(crate) thread: Option<ThreadId>,
    /// `--all`: every thread of the tenant.
    pub(crate) all: bool,
    /// `-o FILE` (`-` or none: stdout).
    pub(crate) output: Option<PathBuf>,
    /// `--clear`: the store reads through the keys, and a value still sealed after that (a
    /// title or metadata key the CLI was not told is sealed) fails the export.
    pub(crate) clear: bool,
}

/// `persist export`: one thread, the tenant's threads (`--all`) or every tenant's
/// (`--across-tenants`) as JSONL. Values as the store's [`keyed`](Store::keyed) pipeline answers
/// them: in clear when it was given keys (`--clear`), and then every one, or no export.
pub(crate) async fn export(store: &Store, scope: &Scope, options: ExportOptions) -> CliResult {
    match (&options.thread, options.all || scope.across_tenants) {
        (Some(_), true) => {
            return Err(CliError::usage("name a THREAD or pass --all / --across-tenants, not both"));
        }
        (None, false) => {
            return Err(CliError::usage(
                "name a THREAD, or pass --all (the tenant's threads) or --across-tenants (the whole store)",
            ));
        }
        _ => {}
    }
    // A file is written beside its name and renamed once whole: a cut export never takes the
    // place of a good one.
    let file = match &options.output {
        Some(path) if path.as_os_str() != "-" => Some(Partial::create(path)?),
        _ => None,
    };
    let mut out: Box<dyn Write + Send> = match &file {
        Some(partial) => Box::new(BufWriter::new(partial.file()?)),
        None => Box::new(stdout()),
    };
    let header = Header::new(&store.label, scope.tenant.as_ref(), scope.across_tenants, options.thread.as_ref());
    write_line(&mut out, &header)?;
    let mut progress = Progress::new("messages exported");
    let mut counts = Counts::default();
    let work = async {
        match &options.thread {
            Some(thread_id) => {
                let thread = one_thread(store, scope, thread_id).await?;
                export_thread(store, &thread, options.clear, &mut out, &mut progress, &mut counts).await?;
            }
            None => {
                let mut pages = scope.threads();
                while let Some(page) = pages.next_page(store.keyed()).await? {
                    // An export in clear holds every thread, or is no export.
                    super::refuse_unreadable(&pages.unreadable)?;
                    for thread in &page {
                        export_thread(store, thread, options.clear, &mut out, &mut progress, &mut counts).await?;
                    }
                }
                export_memories(store, scope, &mut out, &mut counts).await?;
            }
        }
        write_line(&mut out, &End::new(counts))?;
        out.flush()?;
        Ok::<(), CliError>(())
    };
    interruptible("the export is incomplete: run it again", work).await?;
    drop(out);
    if let Some(partial) = file {
        partial.finish()?;
    }
    progress.finish();
    note(format!(
        "exported {} threads, {} messages, {} session bindings, {} summaries, {} working memory documents, {} \
         vectors",
        counts.threads, counts.messages, counts.bindings, counts.summaries, counts.memories, counts.embeddings
    ));
    Ok(())
}

/// An export file being written: `NAME.partial` beside `NAME`, readable by its owner only (it
/// holds whole conversations), removed unless [`finish`](Self::finish) renames it.
#[derive(Debug)]
struct Partial {
    path: PathBuf,
    partial: PathBuf,
    done: bool,
}

impl Partial {
    fn create(path: &std::path::Path) -> CliResult<Self> {
        let mut name = path.as_os_str().to_owned();
        name.push(".partial");
        Ok(Self { path: path.to_owned(), partial: PathBuf::from(name), done: false })
    }

    fn file(&self) -> CliResult<File> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(&self.partial).map_err(|e| CliError::context(format!("creating {}", self.partial.display()), &e))
    }

    fn finish(mut self) -> CliResult {
        std::fs::rename(&self.partial, &self.path).map_err(|e| {
            CliError::context(format!("renaming {} to {}", self.partial.display(), self.path.display()), &e)
        })?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// The thread `thread_id` of the scope's tenant, which must exist and not be deleted.
async fn one_thread(store: &Store, scope: &Scope, thread_id: &ThreadId) -> CliResult<Thread> {
    let name = describe_thread(thread_id, scope.tenant.as_ref());
    let query = GetThread::new(thread_id.clone()).with_context(scope.context());
    let thread = store.keyed().get_thread(query).await?.ok_or_else(|| CliError::failed(format!("no thread {name}")))?;
    match thread.deleted_at {
        Some(at) => Err(CliError::failed(format!("thread {name} was deleted at {}: not exported", format_time(at)))),
        None => Ok(thread),
    }
}

/// Writes a thread's line, its messages' lines (each with its vectors, read from the store as
/// it holds them: no layer seals a vector) and its session bindings' lines. Messages added
/// after the thread was read (a seq past its `last_seq`) are left out, so the export stays
/// restorable.
async fn export_thread(
    store: &Store,
    thread: &Thread,
    clear: bool,
    out: &mut impl Write,
    progress: &mut Progress,
    counts: &mut Counts,
) -> CliResult {
    if clear && keys::thread_is_sealed(thread) {
        return Err(still_sealed(&format!("thread {}", thread.id)));
    }
    write_line(out, &thread_line(thread))?;
    counts.threads += 1;
    let mut pages = MessagePages::of(thread);
    let mut vectors = thread_vectors(&store.pipeline, thread);
    let mut seqs = std::collections::BTreeSet::new();
    while let Some(page) = pages.next_page(store.keyed()).await? {
        super::refuse_unreadable(&pages.unreadable)?;
        let mut written = 0;
        for message in page.iter().filter(|message| message.seq <= thread.last_seq) {
            seqs.insert(message.seq);
            if clear && keys::message_is_sealed(message) {
                return Err(still_sealed(&format!("message {} of thread {}", message.id, thread.id)));
            }
            let embeddings = vectors.of_message(&store.pipeline, message).await?;
            write_line(out, &message_line_with(message, &embeddings))?;
            written += 1;
            counts.messages += 1;
            counts.embeddings += embeddings.len() as u64;
        }
        progress.add(written);
    }
    for summary in super::readable_summaries(summaries_of(store.keyed(), thread).await?, &seqs) {
        if clear && keys::content_is_sealed(&summary.content) {
            return Err(still_sealed(&format!("the summary through #{} of thread {}", summary.through_seq, thread.id)));
        }
        write_line(out, &summary_line(&summary))?;
        counts.summaries += 1;
    }
    for binding in bindings_of(&store.pipeline, thread).await? {
        write_line(out, &binding_line(&binding))?;
        counts.bindings += 1;
    }
    Ok(())
}

/// The vectors stored for a thread's messages, with persist's one reader of them
/// ([`ThreadVectors`]): what an export writes on each message's line, and a copy writes after
/// each message and checks. Read as the store holds them, in the thread's tenant; a store that
/// keeps none has none.
pub(super) fn thread_vectors(pipeline: &Pipeline, thread: &Thread) -> ThreadVectors {
    ThreadVectors::new(pipeline, thread.id.clone(), Context::new().for_tenant(thread.tenant.clone()))
}

/// Writes `vectors` (each of a message of `thread`, with the version of the message it
/// describes) through `pipeline` with `Embed`, as the source stores them: answers how many it
/// wrote. A message at another version there (changed since: the vector described what it held
/// before) or gone is passed over, with a warning.
///
/// # Errors
///
/// A store that keeps no vectors, or any other refusal of a write.
pub(super) async fn write_vectors(
    pipeline: &Pipeline,
    thread: &Thread,
    vectors: Vec<(MessageId, u64, Embedding)>,
) -> CliResult<u64> {
    if vectors.is_empty() {
        return Ok(0);
    }
    let name = describe_thread(&thread.id, thread.tenant.as_ref());
    if !pipeline.capabilities().vectors {
        return Err(CliError::failed(format!(
            "thread {name} has vectors and the target keeps none (its backend does not declare `vectors`)"
        )));
    }
    let context = Context::new().for_tenant(thread.tenant.clone());
    let mut written = 0;
    for (message_id, version, embedding) in vectors {
        let embed = Embed::new(thread.id.clone(), message_id.clone(), embedding)
            .with_expected_version(version)
            .with_context(context.clone());
        match pipeline.embed(embed).await {
            Ok(_) => written += 1,
            Err(PersistError::VersionConflict { .. } | PersistError::NotFound { .. }) => note(format!(
                "warning: message {message_id} of thread {name} changed since it was read: its vectors are not written"
            )),
            Err(e) => {
                return Err(CliError::failed(format!("writing the vectors of thread {name}: {}", describe(&e))));
            }
        }
    }
    Ok(written)
}

/// Writes the scope's working memory documents (the tenant's, or every tenant's), from the store
/// as it holds them (no layer seals them). A store that keeps none writes none.
async fn export_memories(store: &Store, scope: &Scope, out: &mut impl Write, counts: &mut Counts) -> CliResult {
    if !store.pipeline.capabilities().working_memory {
        return Ok(());
    }
    let mut listing = ListMemories::new().across_tenants(scope.across_tenants).with_context(scope.context());
    loop {
        let page = store.pipeline.memories(listing.clone()).await?;
        for memory in &page.items {
            write_line(out, &memory_line(memory))?;
            counts.memories += 1;
        }
        if !page.has_more {
            return Ok(());
        }
        listing = listing.with_cursor(page.next_cursor);
    }
}

/// Writes a working memory document read from an export into its tenant (the scope's with
/// `--tenant`) unless the store holds the same document already, at its exported version when
/// the store's is lower: answers whether it wrote.
pub(super) async fn import_memory(store: &Store, scope: &Scope, memory: WorkingMemory) -> CliResult<bool> {
    let tenant = scope.tenant.clone().or(memory.tenant);
    let context = persist::Context::new().for_tenant(tenant);
    let read = ReadMemory::new(memory.resource.clone()).with_context(context.clone());
    let stored = store.pipeline.read_memory(read).await?;
    if stored.as_ref().is_some_and(|stored| stored.document == memory.document) {
        return Ok(false);
    }
    let version = stored.map_or(0, |stored| stored.version);
    // At its exported version, when the store is behind it: an expected version read before
    // the export stays meaningful.
    let write = if memory.version > version {
        WriteMemory::restore(memory.resource, memory.document, memory.version)
    } else {
        WriteMemory::replace(memory.resource, memory.document)
    };
    store.pipeline.write_memory(write.with_expected_version(version).with_context(context)).await?;
    Ok(true)
}

/// The failure of an export in clear that met a value the keys left sealed.
fn still_sealed(what: &str) -> CliError {
    CliError::failed(format!(
        "{what} still holds a sealed value after opening: tell the CLI what the app seals with --seal-titles \
         and --seal-metadata KEY,…"
    ))
}

/// Counts of an import.
#[derive(Debug, Default)]
struct Totals {
    threads: u64,
    restored: u64,
    present: u64,
    bindings: u64,
    summaries: u64,
    memories: u64,
    embeddings: u64,
}

/// A thread being imported: its messages wait here until a request's worth is read.
#[derive(Debug)]
struct Pending {
    thread: Thread,
    messages: Vec<Message>,
    /// The vectors of `messages`, written once they are.
    vectors: Vec<(MessageId, u64, Embedding)>,
    bindings: Vec<StoredBinding>,
    /// Written once the messages are: each ends at one of them.
    summaries: Vec<Summary>,
    sent: bool,
    /// The tenant the export names, when `--tenant` moves the thread to another.
    moved_from: Option<Option<TenantId>>,
}

/// Refuses to move a sealed value to another tenant: an envelope is bound to its tenant (its
/// associated data names it), so it would be stored and never open again.
fn refuse_sealed_move(thread: &Thread, from: &Option<TenantId>, sealed: bool) -> CliResult {
    if !sealed {
        return Ok(());
    }
    let from = from.as_ref().map_or_else(|| "no tenant".to_owned(), |tenant| format!("tenant {tenant}"));
    let to = thread.tenant.as_ref().map_or_else(|| "no tenant".to_owned(), |tenant| format!("tenant {tenant}"));
    Err(CliError::failed(format!(
        "thread {} holds values sealed for {from}: imported into {to} they would never open (a sealed value is \
         bound to its tenant); import it into {from}",
        thread.id
    )))
}

impl Pending {
    /// Sends the messages and bindings read so far in one `Restore` (one transaction), then the
    /// messages' vectors (through the store's own pipeline: a vector is stored in the clear, as
    /// it was read).
    async fn send(&mut self, store: &Store, totals: &mut Totals, progress: &mut Progress) -> CliResult {
        let messages = std::mem::take(&mut self.messages);
        let count = messages.len() as u64;
        let restore = Restore::new(self.thread.clone(), messages).with_bindings(std::mem::take(&mut self.bindings));
        let restored = store.keyed().restore(restore).await.map_err(|e| {
            let name = describe_thread(&self.thread.id, self.thread.tenant.as_ref());
            CliError::failed(format!("restoring thread {name}: {}", describe(&e)))
        })?;
        totals.restored += restored.restored;
        totals.present += restored.present;
        totals.bindings += restored.bindings;
        totals.embeddings += write_vectors(&store.pipeline, &self.thread, std::mem::take(&mut self.vectors)).await?;
        progress.add(count);
        self.sent = true;
        Ok(())
    }

    /// Sends what is left (the thread alone, when it has no messages).
    async fn finish(mut self, store: &Store, totals: &mut Totals, progress: &mut Progress) -> CliResult {
        if !self.messages.is_empty() || !self.bindings.is_empty() || !self.sent {
            self.send(store, totals, progress).await?;
        }
        for summary in std::mem::take(&mut self.summaries) {
            totals.summaries += u64::from(super::write_summary(store.keyed(), &self.thread, summary).await?);
        }
        totals.threads += 1;
        Ok(())
    }
}

/// What an import reads: a file or stdin.
type Input = Box<dyn AsyncBufRead + Unpin + Send>;

/// `persist import FILE`: restores every thread of an export into the store at `url`
/// (created if missing, once the input's header was read), in requests of at most
/// `MAX_RESTORE_MESSAGES` messages. Idempotent: what the store holds already is counted as
/// present, not written again, so an interrupted import is finished by running it again.
///
/// With `keys`, the restores go through them: clear values are sealed as the app's layer seals
/// them, and a sealed value that does not open for its place (other keys, another tenant's or
/// thread's envelope) is refused before the request that would write it (at most
/// `MAX_RESTORE_MESSAGES` messages of its thread) is sent.
pub(crate) async fn import(
    url: &str,
    scope: &Scope,
    keys: Option<&EncryptLayer>,
    input: &str,
    max_line_bytes: u64,
    json: bool,
) -> CliResult {
    let source: Input = if input == "-" {
        Box::new(BufReader::new(tokio::io::stdin()))
    } else {
        let file = tokio::fs::File::open(input).await.map_err(|e| CliError::context(format!("reading {input}"), &e))?;
        Box::new(BufReader::new(file))
    };
    let mut reader = Reader::new(source, max_line_bytes);
    reader.header().await?;
    let store = Store::open(url, Mode::CreateIfMissing).await?.with_keys(keys);
    let result = restore_all(&store, scope, &mut reader, json).await;
    store.close().await;
    result
}

/// Restores what `reader` reads after the header, then prints the counts.
async fn restore_all(store: &Store, scope: &Scope, reader: &mut Reader<Input>, json: bool) -> CliResult {
    let mut totals = Totals::default();
    let mut progress = Progress::new("messages imported");
    let work = async {
        let mut pending: Option<Pending> = None;
        while let Some(item) = reader.next_item().await? {
            match item {
                Item::Thread(thread) => {
                    if let Some(done) = pending.take() {
                        done.finish(store, &mut totals, &mut progress).await?;
                    }
                    let mut thread = *thread;
                    let mut moved_from = None;
                    if let Some(tenant) = &scope.tenant
                        && thread.tenant.as_ref() != Some(tenant)
                    {
                        moved_from = Some(thread.tenant.replace(tenant.clone()));
                    }
                    if let Some(from) = &moved_from {
                        refuse_sealed_move(&thread, from, keys::thread_is_sealed(&thread))?;
                    }
                    let (messages, vectors, bindings, summaries) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                    pending = Some(Pending { thread, messages, vectors, bindings, summaries, sent: false, moved_from });
                }
                Item::Message(message, embeddings) => {
                    // The reader refuses a message before any thread line.
                    let Some(current) = pending.as_mut() else {
                        return Err(CliError::failed("a message before any thread line"));
                    };
                    if let Some(from) = &current.moved_from {
                        refuse_sealed_move(&current.thread, from, keys::message_is_sealed(&message))?;
                    }
                    let vectors = embeddings.into_iter().map(|e| (message.id.clone(), message.version, e));
                    current.vectors.extend(vectors);
                    current.messages.push(*message);
                    if current.messages.len() >= MAX_RESTORE_MESSAGES {
                        current.send(store, &mut totals, &mut progress).await?;
                    }
                }
                Item::Summary(summary) => {
                    let Some(current) = pending.as_mut() else {
                        return Err(CliError::failed("a summary before any thread line"));
                    };
                    if let Some(from) = &current.moved_from {
                        refuse_sealed_move(&current.thread, from, keys::content_is_sealed(&summary.content))?;
                    }
                    current.summaries.push(*summary);
                }
                Item::Memory(memory) => {
                    if let Some(done) = pending.take() {
                        done.finish(store, &mut totals, &mut progress).await?;
                    }
                    totals.memories += u64::from(import_memory(store, scope, *memory).await?);
                }
                Item::Binding(binding) => {
                    // The reader refuses a binding before any thread line.
                    let Some(current) = pending.as_mut() else {
                        return Err(CliError::failed("a session binding before any thread line"));
                    };
                    current.bindings.push(*binding);
                }
            }
        }
        if let Some(done) = pending.take() {
            done.finish(store, &mut totals, &mut progress).await?;
        }
        Ok::<(), CliError>(())
    };
    interruptible(RUN_AGAIN, work).await?;
    progress.finish();
    let skipped = reader.skipped;
    let complete = reader.complete();
    if let Err(why) = &complete {
        note(format!("warning: {why}"));
    }
    let mut out = stdout();
    if json {
        let report = json!({
            "threads": totals.threads,
            "restored": totals.restored,
            "present": totals.present,
            "bindings": totals.bindings,
            "summaries": totals.summaries,
            "working_memory": totals.memories,
            "embeddings": totals.embeddings,
            "skipped_lines": skipped,
            "complete": complete.is_ok(),
        });
        write_line(&mut out, &report)?;
    } else {
        writeln!(
            out,
            "imported {} threads: restored {} messages, {} already present, {} session bindings, {} summaries, \
             {} working memory documents, {} vectors written, {skipped} lines skipped",
            totals.threads,
            totals.restored,
            totals.present,
            totals.bindings,
            totals.summaries,
            totals.memories,
            totals.embeddings
        )?;
    }
    out.flush()?;
    Ok(())
}
