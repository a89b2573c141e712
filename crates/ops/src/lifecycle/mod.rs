//! A thread's lifecycle, through the pipeline: fork a thread, retention (prune idle threads,
//! keep the latest messages of each), pop its latest messages, branch before one of its user
//! turns; and [`ThreadVectors`], the reader of a thread's vectors every copy of a thread uses.
//!
//! Each is composed of ordinary requests sent through the whole stack (reads, adds, deletes,
//! updates), so routes send them where the thread lives, an encryption layer seals and opens
//! them, and indexers and audit layers see every step. Truncation is a single atomic write of
//! its own: [`Delete::after`](persist_core::args::Delete::after).

pub(crate) mod fork;
pub(crate) mod pop;
pub(crate) mod prune;
pub(crate) mod turns;
mod vectors;

pub use self::vectors::ThreadVectors;

use std::time::Duration;

use persist_core::Message;
use persist_core::Timestamp;
use persist_core::branch::Branch;
use persist_core::read::ThreadCursor;
use persist_core::{Context, context_setter};
use persist_core::{TenantId, ThreadId};

/// The thread metadata key a fork records its origin under: `{"thread": <source id>, "seq":
/// <the last seq copied from>}`, with `"leaf": <message id>` for a fork of one branch (the last
/// message of the branch copied).
pub const FORKED_FROM: &str = "persist.forked_from";

/// Copies a thread, up to a seq, into a new thread of the same tenant; see
/// [`PipelineExt::fork`](crate::PipelineExt::fork).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Fork {
    /// The thread copied.
    pub source: ThreadId,
    /// The new thread.
    pub target: ThreadId,
    /// Copy the messages with `seq` up to this one (default: the source's `last_seq` when the
    /// fork starts).
    pub up_to: Option<u64>,
    /// Copy only the messages of this branch, root first (default: every message).
    pub branch: Option<Branch>,
    /// Who is asking: its tenant is the tenant of both threads.
    pub context: Context,
}

impl Fork {
    /// Copies `source` whole into `target`.
    pub fn new(source: ThreadId, target: ThreadId) -> Self {
        Self { source, target, up_to: None, branch: None, context: Context::new() }
    }

    /// Copies the messages up to `seq` only.
    pub fn up_to(mut self, seq: u64) -> Self {
        self.up_to = Some(seq);
        self
    }

    /// Copies one branch of the source (see [`branch`](persist_core::branch)): the path from its root
    /// to its last message, which becomes a thread of one line. [`Branch::Active`] is resolved
    /// to the active branch's last message when the fork starts, and recorded with its origin,
    /// so a fork run again copies the same branch.
    pub fn on_branch(mut self, branch: Branch) -> Self {
        self.branch = Some(branch);
        self
    }

    /// The context of every request the fork sends.
    pub fn with_context(mut self, context: Context) -> Self {
        self.context = context;
        self
    }
}

/// What a fork did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForkReport {
    /// Messages written to the new thread by this run.
    pub copied: usize,
    /// Messages an earlier run of the same fork had copied already.
    pub already: usize,
    /// The last seq of the source the fork copied from.
    pub up_to: u64,
    /// Vectors of the source's messages (see [`vector`](persist_core::vector)) written to their
    /// copies by this run (a fork run again writes them again: the same numbers).
    pub vectors: usize,
    /// Summaries of the source written to the new thread by this run (see
    /// [`PipelineExt::fork`](crate::PipelineExt::fork)).
    pub summaries: usize,
    /// Summaries of the source ending before the first message the fork copied (retention
    /// removed what they cover, their last message with it): the new thread starts at seq 1,
    /// with no place before it, so they are not carried. The source's compacted read still
    /// answers them.
    pub summaries_behind: usize,
}

/// Retention: prunes threads with no activity for an age, and/or keeps only the latest
/// messages of each; see [`PipelineExt::prune`](crate::PipelineExt::prune).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Prune {
    /// Delete threads whose last activity (`updated_at`) is older than this.
    pub idle_for: Option<Duration>,
    /// Delete threads whose last activity is before this instant (with
    /// [`idle_for`](Self::idle_for) too, the later of the two cutoffs).
    pub idle_before: Option<Timestamp>,
    /// Keep only this many of each thread's latest messages (by seq), deleting older ones.
    pub keep_latest: Option<u32>,
    /// Delete, in each thread, what the latest summary of its active branch covers
    /// ([`Delete::covered`](persist_core::args::Delete::covered)): the explicit option of retention
    /// for compacted threads.
    pub covered: bool,
    /// Report what would be removed, remove nothing.
    pub dry_run: bool,
    /// Threads per batch, 1 to 1000 (default 100).
    pub threads: u32,
    /// Continue after this thread (the previous report's `next_cursor`).
    pub cursor: Option<ThreadCursor>,
    /// Whether every tenant's threads are pruned (the default), or only the context's
    /// tenant's, as [`ListThreads::across_tenants`](persist_core::read::ListThreads::across_tenants).
    pub across_tenants: bool,
    /// The context the prune's requests carry (with a
    /// [`Maintenance`](persist_core::Maintenance) extension added): its tenant is the one
    /// pruned when not [`across_tenants`](Self::across_tenants).
    pub context: Context,
}

impl Prune {
    /// Nothing to prune yet: add [`idle_for`](Self::with_idle_for),
    /// [`keep_latest`](Self::with_keep_latest) and/or [`covered`](Self::with_covered).
    pub fn new() -> Self {
        Self {
            idle_for: None,
            idle_before: None,
            keep_latest: None,
            covered: false,
            dry_run: false,
            threads: 100,
            cursor: None,
            across_tenants: true,
            context: Context::new(),
        }
    }

    /// Deletes threads idle for longer than `age`.
    pub fn with_idle_for(mut self, age: Duration) -> Self {
        self.idle_for = Some(age);
        self
    }

    /// Deletes threads with no activity since `instant` (a cutoff that does not move while
    /// batches run).
    pub fn with_idle_before(mut self, instant: Timestamp) -> Self {
        self.idle_before = Some(instant);
        self
    }

    /// Keeps only the latest `n` messages of each thread.
    pub fn with_keep_latest(mut self, n: u32) -> Self {
        self.keep_latest = Some(n);
        self
    }

    /// Deletes what the latest summary of each thread's active branch covers (see
    /// [`covered`](Self::covered)).
    pub fn with_covered(mut self, covered: bool) -> Self {
        self.covered = covered;
        self
    }

    /// Reports what would be removed without removing it.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Threads per batch.
    pub fn with_threads(mut self, threads: u32) -> Self {
        self.threads = threads;
        self
    }

    /// Continues after `cursor`.
    pub fn with_cursor(mut self, cursor: Option<ThreadCursor>) -> Self {
        self.cursor = cursor;
        self
    }

    /// Prunes only `tenant`'s threads (`None`: the threads without a tenant).
    pub fn only_tenant(mut self, tenant: Option<TenantId>) -> Self {
        self.across_tenants = false;
        self.context = self.context.for_tenant(tenant);
        self
    }

    context_setter!();
}

impl Default for Prune {
    fn default() -> Self {
        Self::new()
    }
}

/// What one batch of a prune did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneReport {
    /// Threads looked at.
    pub threads: usize,
    /// Threads deleted for being idle: `(tenant, thread)`.
    pub deleted_threads: Vec<(Option<TenantId>, ThreadId)>,
    /// Messages deleted (those of deleted threads included).
    pub deleted_messages: usize,
    /// Threads or messages that changed between reading and deleting: kept.
    pub skipped: usize,
    /// Where the next batch starts, while `done` is false.
    pub next_cursor: Option<ThreadCursor>,
    /// Whether this batch reached the last thread.
    pub done: bool,
}

/// Removes a thread's latest messages, reservations included (OpenAI's `pop_item`); see
/// [`PipelineExt::pop`](crate::PipelineExt::pop).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Pop {
    /// The thread.
    pub thread_id: ThreadId,
    /// How many of its latest messages to remove, 1 to
    /// [`MAX_PAGE_LIMIT`](persist_core::read::MAX_PAGE_LIMIT) (default 1).
    pub count: u32,
    /// The context of every request the pop sends: its tenant is the thread's.
    pub context: Context,
}

impl Pop {
    /// Removes the latest message of `thread_id`.
    pub fn new(thread_id: ThreadId) -> Self {
        Self { thread_id, count: 1, context: Context::new() }
    }

    /// Removes the latest `count` messages.
    pub fn with_count(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    context_setter!();
}

/// What a [`Pop`] removed.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Popped {
    /// The messages removed, oldest first, as they were when read (fewer than asked when the
    /// thread held fewer).
    pub messages: Vec<Message>,
}

/// Ends a thread's active branch before one of its user turns, so the next message starts a
/// branch of its own there (an edit of that turn, or a retry); see
/// [`PipelineExt::branch_from_turn`](crate::PipelineExt::branch_from_turn).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BranchFromTurn {
    /// The thread.
    pub thread_id: ThreadId,
    /// The user turn, from 1: the `turn`-th user message of the active branch.
    pub turn: u64,
    /// The context of every request it sends: its tenant is the thread's.
    pub context: Context,
}

impl BranchFromTurn {
    /// Ends `thread_id`'s active branch before its user turn `turn` (from 1).
    pub fn new(thread_id: ThreadId, turn: u64) -> Self {
        Self { thread_id, turn, context: Context::new() }
    }

    context_setter!();
}
