//! Key rotation through the pipeline: every value sealed with an old key is sealed again with
//! the current one.

use persist_core::Maintenance;
use persist_core::args::{Update, UpdateContent};
use persist_core::read::{ListMessages, ListThreads, MAX_PAGE_LIMIT, ThreadCursor};
use persist_core::summary::{ListSummaries, Summarize};
use persist_core::{Context, Message, Metadata, PersistError, Pipeline, Result, Status, Thread};

use crate::AsStored;
use crate::layer::EncryptLayer;

/// One batch of a rotation: up to [`threads`](Self::threads) threads (of every tenant) after
/// [`cursor`](Self::cursor). A pass runs batches from each report's `next_cursor` until one is
/// `done`; a batch run again re-seals only what is still stale, so a pass stopped anywhere
/// resumes from its last cursor, or starts over at no cost beyond reading.
///
/// Threads are visited most recently active first. A thread written to while a pass runs moves
/// ahead of the pass's cursor, so the pass does not reach it; its writer sealed what it wrote
/// with the current key, but its other values may still be stale: run passes until one
/// re-seals nothing (with writers at rest, one pass does).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RotateKeys {
    /// Continue after this thread (the previous report's `next_cursor`).
    pub cursor: Option<ThreadCursor>,
    /// Threads per batch, 1 to 1000 (default 100).
    pub threads: u32,
}

impl RotateKeys {
    /// The first batch of 100 threads.
    pub fn new() -> Self {
        Self { cursor: None, threads: 100 }
    }

    persist_core::page_setters!(cursor: ThreadCursor);

    /// Threads per batch.
    pub fn with_threads(mut self, threads: u32) -> Self {
        self.threads = threads;
        self
    }
}

impl Default for RotateKeys {
    fn default() -> Self {
        Self::new()
    }
}

/// What one batch of a rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationReport {
    /// Threads looked at.
    pub threads: usize,
    /// Messages looked at.
    pub messages: usize,
    /// Messages, summaries and threads sealed again with the current key.
    pub resealed: usize,
    /// Messages and threads that changed or went between reading and re-sealing (a writer
    /// sealed them with the key current then, or deleted them): left as they are.
    pub skipped: usize,
    /// Messages and threads whose values do not open (tampered with, or sealed with a key gone)
    /// and threads of a tenant whose keys were destroyed (counted once each): left as they are.
    pub unreadable: usize,
    /// Where the next batch starts, while `done` is false.
    pub next_cursor: Option<ThreadCursor>,
    /// Whether this batch reached the last thread.
    pub done: bool,
}

impl EncryptLayer {
    /// Re-seals, **through `pipeline`** (a stack that holds this layer), every message, summary
    /// and thread of one batch that holds a value sealed with a key other than its tenant's
    /// current one, or a clear value where a sealed one belongs (when
    /// [`allow_clear_values`](Self::allow_clear_values) lets them be read). After adding a key
    /// to the ring, run batches until the report says `done`.
    ///
    /// Reads go through the stack asking for values as stored ([`AsStored`]); each value is
    /// opened here and written back in the clear with the version read
    /// (`update_content` keeping a message's status: a final replacement of a complete one, an
    /// interrupting one of an interrupted one, a partial one of a reservation; `update` for
    /// metadata and titles; a summary replaced by itself, [`Summarize::replacing`]), so this
    /// layer seals it with the current key, every layer sees the
    /// writes (marked [`Maintenance`]), and a message written meanwhile is never overwritten
    /// (counted `skipped`: its writer sealed it with the key current then).
    ///
    /// The writes are ordinary writes: they bump each message's version and `updated_at` and
    /// its thread's `updated_at` (so a pass reorders thread listings, and a reservation whose
    /// content it re-seals counts as active for the search of stranded reservations).
    ///
    /// # Example
    ///
    /// ```
    /// use persist::encrypt::{EncryptLayer, KeyId, KeyRing, RotateKeys, SecretKey};
    /// use persist::{args::Add, Content, Pipeline, Role, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let ring = KeyRing::new().with_key(KeyId::new("2026-01")?, SecretKey::new([1; 32]))?;
    /// let encryption = EncryptLayer::new(ring.clone());
    /// let pipeline = Pipeline::builder().layer(encryption.clone()).build(MemoryBackend::new());
    /// pipeline.add(Add::new(ThreadId::new("t1")?, Role::User, Content::text("hi"))).await?;
    ///
    /// ring.add_key(KeyId::new("2026-02")?, SecretKey::new([2; 32]))?;
    /// let mut batch = RotateKeys::new();
    /// loop {
    ///     let report = encryption.rotate(&pipeline, batch.clone()).await?;
    ///     if report.done { break; }
    ///     batch = batch.with_cursor(report.next_cursor);
    /// }
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a batch size of 0 or over 1000; the first error of a read or a write
    /// other than a version conflict.
    pub async fn rotate(&self, pipeline: &Pipeline, batch: RotateKeys) -> Result<RotationReport> {
        if batch.threads == 0 || batch.threads > MAX_PAGE_LIMIT {
            return Err(PersistError::invalid("threads", format!("must be between 1 and {MAX_PAGE_LIMIT}")));
        }
        let stored = Context::new().with_extension(Maintenance).with_extension(AsStored);
        let listing = ListThreads::new()
            .across_tenants(true)
            .with_limit(batch.threads)
            .with_cursor(batch.cursor)
            .with_context(stored.clone());
        let page = pipeline.threads(listing).await?;
        let mut report = RotationReport { threads: page.items.len(), ..RotationReport::default() };
        for thread in &page.items {
            self.rotate_thread(pipeline, thread, &mut report).await?;
        }
        report.done = !page.has_more;
        report.next_cursor = page.next_cursor.filter(|_| page.has_more);
        Ok(report)
    }

    async fn rotate_thread(&self, pipeline: &Pipeline, thread: &Thread, report: &mut RotationReport) -> Result<()> {
        let sealer = &self.sealer;
        let tenant = thread.tenant.as_ref();
        let (current, _) = match sealer.keys.current(tenant) {
            Ok(current) => current,
            // No key to seal this tenant with (destroyed): nothing of it can be re-sealed.
            Err(PersistError::Rejected { .. }) => {
                report.unreadable += 1;
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        let context = || Context::new().with_extension(Maintenance).for_tenant(thread.tenant.clone());
        let stale = sealer.stale_in_thread(thread, &current);
        if !stale.is_empty() {
            match sealer.open_thread(thread.clone()) {
                Err(PersistError::Unreadable { .. }) => report.unreadable += 1,
                Err(error) => return Err(error),
                Ok(clear) => {
                    let mut update = Update::thread(thread.id.clone()).with_expected_version(thread.version);
                    if stale.title {
                        update = update.with_title(clear.title.clone());
                    }
                    if !stale.metadata.is_empty() {
                        update = update.with_metadata(pick(&clear.metadata, &stale.metadata));
                    }
                    count(pipeline.update(update.with_context(context())).await.map(drop), report)?;
                }
            }
        }
        let mut listing = ListMessages::new(thread.id.clone())
            .include_reserved(true)
            .with_limit(MAX_PAGE_LIMIT)
            .with_context(context().with_extension(AsStored));
        loop {
            let page = pipeline.list(listing.clone()).await?;
            report.messages += page.items.len();
            for message in &page.items {
                self.rotate_message(pipeline, thread, message, &current, report).await?;
            }
            match listing.next_page(&page) {
                Some(next) => listing = next,
                None => break,
            }
        }
        self.rotate_summaries(pipeline, thread, &current, report).await
    }

    /// Re-seals the thread's [summaries](persist_core::summary) sealed with another key (or
    /// clear, when clear values are allowed): each replaced by the same summary sealed with the
    /// current key ([`Summarize::replacing`]), its range and time kept.
    async fn rotate_summaries(
        &self,
        pipeline: &Pipeline,
        thread: &Thread,
        current: &crate::KeyId,
        report: &mut RotationReport,
    ) -> Result<()> {
        let sealer = &self.sealer;
        let context = || Context::new().with_extension(Maintenance).for_tenant(thread.tenant.clone());
        let mut listing = ListSummaries::new(thread.id.clone()).with_limit(MAX_PAGE_LIMIT);
        loop {
            let page = pipeline.summaries(listing.clone().with_context(context().with_extension(AsStored))).await?;
            for summary in &page.items {
                if !sealer.stale_in_summary(summary, current) {
                    continue;
                }
                let clear = match sealer.open_summary(thread.tenant.as_ref(), summary.clone()) {
                    Ok(clear) => clear,
                    Err(PersistError::Unreadable { .. }) => {
                        report.unreadable += 1;
                        continue;
                    }
                    Err(error) => return Err(error),
                };
                let again = Summarize::new(thread.id.clone(), clear.through_seq, clear.content)
                    .from_seq(clear.from_seq)
                    .with_metadata(clear.metadata)
                    .replacing()
                    .with_context(context());
                count(pipeline.summarize(again).await.map(drop), report)?;
            }
            match listing.next_page(&page) {
                Some(next) => listing = next,
                None => return Ok(()),
            }
        }
    }

    async fn rotate_message(
        &self,
        pipeline: &Pipeline,
        thread: &Thread,
        message: &Message,
        current: &crate::KeyId,
        report: &mut RotationReport,
    ) -> Result<()> {
        let sealer = &self.sealer;
        let stale = sealer.stale_in_message(message, current);
        if stale.is_empty() {
            return Ok(());
        }
        let clear = match sealer.open_message(thread.tenant.as_ref(), message.clone()) {
            Ok(clear) => clear,
            Err(PersistError::Unreadable { .. }) => {
                report.unreadable += 1;
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        let context = || Context::new().with_extension(Maintenance).for_tenant(thread.tenant.clone());
        let mut version = message.version;
        if stale.content {
            // Written back as it is: a reply still streaming stays reserved, a complete message
            // takes the final replacement it only accepts, an interrupted one stays interrupted.
            let update = UpdateContent::new(thread.id.clone(), message.id.clone(), clear.content.clone())
                .with_finalize(message.status == Status::Complete)
                .with_interrupt(message.status == Status::Interrupted)
                .with_expected_version(version)
                .with_context(context());
            match pipeline.update_content(update).await {
                Ok(written) => version = written.message.version,
                Err(error) if error.is_changed_or_gone() => {
                    report.skipped += 1;
                    return Ok(());
                }
                Err(error) => return Err(error),
            }
        }
        if !stale.metadata.is_empty() {
            let update = Update::message(thread.id.clone(), message.id.clone())
                .with_metadata(pick(&clear.metadata, &stale.metadata))
                .with_expected_version(version)
                .with_context(context());
            return count(pipeline.update(update).await.map(drop), report);
        }
        report.resealed += 1;
        Ok(())
    }
}

/// The values of `keys` in `metadata`, as a patch.
fn pick(metadata: &Metadata, keys: &[String]) -> Metadata {
    keys.iter().fold(Metadata::new(), |patch, key| match metadata.get(key) {
        Some(value) => patch.with(key.clone(), value.clone()),
        None => patch,
    })
}

/// Counts a re-seal's outcome: written, or skipped for a target changed or gone meanwhile.
fn count(outcome: Result<()>, report: &mut RotationReport) -> Result<()> {
    match outcome {
        Ok(()) => report.resealed += 1,
        Err(error) if error.is_changed_or_gone() => report.skipped += 1,
        Err(error) => return Err(error),
    }
    Ok(())
}
