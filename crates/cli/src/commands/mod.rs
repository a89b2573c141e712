//! The commands, and what they share: the tenant scope, paging, Ctrl-C.

pub(crate) mod copy;
pub(crate) mod embeddings;
pub(crate) mod maintain;
pub(crate) mod mcp;
pub(crate) mod migrate;
pub(crate) mod read;
pub(crate) mod search;
pub(crate) mod serve;
pub(crate) mod serve_args;
pub(crate) mod shards;
pub(crate) mod transfer;

use std::future::Future;
use std::io::{BufWriter, Stdout};

use persist::read::{ListMessages, ListThreads, MAX_PAGE_LIMIT, UnreadableItem};
use persist::session::{ListBindings, StoredBinding};
use persist::summary::{ListSummaries, Summarize, Summary};
use persist::{Context, Message, Pipeline, TenantId, Thread};

use crate::error::{CliError, CliResult};

/// Whose threads a command reaches: one tenant's (`--tenant`, or the threads without a tenant
/// when it is not given), or every tenant's (`--across-tenants`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    /// The tenant named by `--tenant`.
    pub(crate) tenant: Option<TenantId>,
    /// `--across-tenants`.
    pub(crate) across_tenants: bool,
}

impl Scope {
    /// The context of a request addressing this scope's tenant.
    pub(crate) fn context(&self) -> Context {
        Context::new().for_tenant(self.tenant.clone())
    }

    /// The first page of this scope's threads, newest first.
    pub(crate) fn listing(&self) -> ListThreads {
        let context = if self.across_tenants { Context::new() } else { self.context() };
        ListThreads::new().across_tenants(self.across_tenants).with_context(context)
    }

    /// Every thread of this scope, a page at a time.
    pub(crate) fn threads(&self) -> ThreadPages {
        ThreadPages::new(self.listing().with_limit(MAX_PAGE_LIMIT))
    }
}

/// Pages through a thread listing.
#[derive(Debug)]
pub(crate) struct ThreadPages {
    next: Option<ListThreads>,
    /// The threads of the pages so far that did not open (read through the keys).
    pub(crate) unreadable: Vec<UnreadableItem>,
}

impl ThreadPages {
    /// Pages of `listing`, from its cursor on.
    pub(crate) fn new(listing: ListThreads) -> Self {
        Self { next: Some(listing), unreadable: Vec::new() }
    }

    /// The next page; `None` once the last was answered.
    pub(crate) async fn next_page(&mut self, pipeline: &Pipeline) -> CliResult<Option<Vec<Thread>>> {
        let Some(listing) = self.next.take() else {
            return Ok(None);
        };
        let page = pipeline.threads(listing.clone()).await?;
        if page.has_more && page.next_cursor.is_some() {
            self.next = Some(listing.with_cursor(page.next_cursor));
        }
        self.unreadable.extend(page.unreadable);
        Ok(Some(page.items))
    }
}

/// Pages through every message of a thread (reservations included), in seq order.
#[derive(Debug)]
pub(crate) struct MessagePages {
    next: Option<ListMessages>,
    /// The messages of the pages so far that did not open (read through the keys).
    pub(crate) unreadable: Vec<UnreadableItem>,
}

impl MessagePages {
    /// Every message of `thread`, in its tenant, in pages of at most 1000.
    pub(crate) fn of(thread: &Thread) -> Self {
        let query = ListMessages::new(thread.id.clone())
            .include_reserved(true)
            .with_limit(MAX_PAGE_LIMIT)
            .with_context(Context::new().for_tenant(thread.tenant.clone()));
        Self { next: Some(query), unreadable: Vec::new() }
    }

    /// The messages of `thread`'s active branch, root first, in pages of at most 1000.
    pub(crate) fn active_branch_of(thread: &Thread) -> Self {
        let mut pages = Self::of(thread);
        pages.next = pages.next.map(|query| query.on_branch(persist::branch::Branch::Active));
        pages
    }

    /// The next page; `None` once the last was answered.
    pub(crate) async fn next_page(&mut self, pipeline: &Pipeline) -> CliResult<Option<Vec<Message>>> {
        let Some(query) = self.next.take() else {
            return Ok(None);
        };
        let page = pipeline.list(query.clone()).await?;
        self.next = query.next_page(&page);
        self.unreadable.extend(page.unreadable);
        Ok(Some(page.items))
    }
}

/// The session bindings of `thread` (in its tenant), by agent id.
pub(crate) async fn bindings_of(pipeline: &Pipeline, thread: &Thread) -> CliResult<Vec<StoredBinding>> {
    let query = ListBindings::new(thread.id.clone()).with_context(Context::new().for_tenant(thread.tenant.clone()));
    Ok(pipeline.bindings(query).await?)
}

/// The summaries of `thread` ending at or before its `last_seq` (as read with it), in its
/// tenant, through `pipeline`.
pub(crate) async fn summaries_of(pipeline: &Pipeline, thread: &Thread) -> CliResult<Vec<Summary>> {
    let context = Context::new().for_tenant(thread.tenant.clone());
    let mut query = ListSummaries::new(thread.id.clone()).with_limit(MAX_PAGE_LIMIT).with_context(context);
    let mut found = Vec::new();
    loop {
        let page = pipeline.summaries(query.clone()).await?;
        refuse_unreadable(&page.unreadable)?;
        found.extend(page.items.iter().filter(|s| s.through_seq <= thread.last_seq).cloned());
        match query.next_page(&page) {
            Some(next) => query = next,
            None => return Ok(found),
        }
    }
}

/// The summaries of `summaries` a branch can still read, given the seqs of the thread's
/// messages: each ends at one of them, or before the oldest (history `Delete::covered` left).
/// One whose last message was deleted alone is read by no branch: it is left out, and an
/// import would refuse it.
pub(crate) fn readable_summaries(summaries: Vec<Summary>, seqs: &std::collections::BTreeSet<u64>) -> Vec<Summary> {
    let oldest = seqs.first().copied().unwrap_or(u64::MAX);
    summaries.into_iter().filter(|s| seqs.contains(&s.through_seq) || s.through_seq < oldest).collect()
}

/// Writes `summary` as it is (its range, content, metadata and time) to its thread through
/// `pipeline`; answers whether it was new.
pub(crate) async fn write_summary(pipeline: &Pipeline, thread: &Thread, summary: Summary) -> CliResult<bool> {
    let write = Summarize::new(thread.id.clone(), summary.through_seq, summary.content)
        .from_seq(summary.from_seq)
        .with_metadata(summary.metadata)
        .created_at(summary.created_at)
        .with_context(Context::new().for_tenant(thread.tenant.clone()));
    let written = pipeline.summarize(write).await.map_err(|e| {
        let name = describe_thread(&thread.id, thread.tenant.as_ref());
        CliError::failed(format!("writing a summary of thread {name}: {}", crate::error::describe(&e)))
    })?;
    Ok(!written.deduplicated)
}

/// The failure of a read that must answer every item, naming the first that did not open.
pub(crate) fn refuse_unreadable(unreadable: &[UnreadableItem]) -> CliResult {
    let Some(first) = unreadable.first() else { return Ok(()) };
    let item = match &first.message_id {
        Some(message) => format!("message {message} of thread {}", first.thread_id),
        None => format!("thread {}", first.thread_id),
    };
    let more = match unreadable.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    Err(CliError::failed(format!("{item} does not open with the keys given: {}{more}", first.reason)))
}

/// What a thread is called in messages: its id, and its tenant when it has one.
pub(crate) fn describe_thread(thread: &persist::ThreadId, tenant: Option<&TenantId>) -> String {
    match tenant {
        Some(tenant) => format!("{thread} (tenant {tenant})"),
        None => thread.to_string(),
    }
}

/// Buffered stdout: writes fail with an error (a closed pipe), never a panic.
pub(crate) fn stdout() -> BufWriter<Stdout> {
    BufWriter::new(std::io::stdout())
}

/// The notice printed when Ctrl-C stops a command that can be run again to finish.
pub(crate) const RUN_AGAIN: &str = "run the same command again to continue";

/// Runs `work` until it ends or Ctrl-C is pressed; then `work` is dropped where it waits (each
/// request it sent is a transaction: it happened whole or not at all) and the command fails
/// as interrupted, with `notice`.
pub(crate) async fn interruptible<T>(notice: &'static str, work: impl Future<Output = CliResult<T>>) -> CliResult<T> {
    let mut work = std::pin::pin!(work);
    tokio::select! {
        result = &mut work => return result,
        signal = tokio::signal::ctrl_c() => {
            if signal.is_ok() {
                return Err(CliError::Interrupted(notice));
            }
        }
    }
    // Ctrl-C could not be watched: the work runs to its end.
    work.await
}
