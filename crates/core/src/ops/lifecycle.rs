//! Forks and retention ([`Pipeline::fork`], [`Pipeline::prune`]): composed of ordinary
//! requests sent through the whole stack (see [`lifecycle`](crate::lifecycle)).

use std::collections::{HashMap, HashSet};

use serde_json::json;

use crate::branch::{Branch, Parent, Switch};
use crate::context::Context;
use crate::lifecycle::{FORKED_FROM, Fork, ForkReport, Prune, PruneReport};
use crate::maintenance::Maintenance;
use crate::model::error::{PersistError, Result};
use crate::model::id::{MessageId, ThreadId};
use crate::model::{Message, Metadata, Status, Thread, Timestamp};
use crate::pipeline::Pipeline;
use crate::read::{GetThread, ListMessages, ListThreads, MAX_PAGE_LIMIT};
use crate::request::write::{Add, Delete, Reserve, Update, UpdateContent};
use crate::summary::{ListSummaries, Summarize};

/// The refusal of a fork run again whose source completed `late` after later messages were
/// copied.
fn late_message(fork: &Fork, late: &Message) -> PersistError {
    PersistError::invalid(
        "target",
        format!(
            "message {} (seq {}) of {} was completed after {} copied later messages: copied now, it would follow \
             them; truncate {} before the first of them (`Delete::after`) and fork again to bring it in its place",
            late.id, late.seq, fork.source, fork.target, fork.target
        ),
    )
}

impl Pipeline {
    /// An interrupted message copied to `target` as it is: reserved with its id, role, metadata
    /// and key, then marked interrupted with its content (an `add` would make it complete).
    /// Answers whether it was copied before (`true`: nothing written).
    async fn copy_interrupted(
        &self,
        target: &ThreadId,
        message: &Message,
        parent: Parent,
        context: Context,
    ) -> Result<bool> {
        let mut reserve = Reserve::new(target.clone(), message.role.clone())
            .with_id(message.id.clone())
            .with_metadata(message.metadata.clone())
            .with_parent(parent)
            .with_context(context.clone());
        if let Some(key) = &message.idempotency_key {
            reserve = reserve.with_idempotency_key(key.clone());
        }
        let slot = self.reserve(reserve).await?.message;
        if slot.status != Status::Reserved {
            return Ok(true);
        }
        // Reserved by this run or by one cut short before its mark.
        let mark = UpdateContent::new(target.clone(), slot.id, message.content.clone())
            .with_finalize(false)
            .with_interrupt(true)
            .with_expected_version(slot.version)
            .with_context(context);
        self.update_content(mark).await?;
        Ok(false)
    }

    /// Copies the thread `fork.source` up to a seq into the new thread `fork.target` (same
    /// tenant), **through the pipeline**: each complete message is added with its id, role,
    /// content, metadata and idempotency key, in seq order (the new thread numbers them
    /// `1, 2, …`), an [interrupted](crate::Status::Interrupted) one reserved then marked
    /// interrupted with its content; reservations still streaming are not copied. The new thread records where it
    /// came from in its metadata, under [`FORKED_FROM`]; the source's [summaries](crate::summary)
    /// of what was copied are written to it too (their ranges in its seqs), so its compacted read
    /// holds what they held (one ending before the first message copied, where retention removed
    /// what it covers, has no place in the new thread: counted in
    /// [`ForkReport::summaries_behind`]). A thread with [branches](crate::branch)
    /// is copied as the tree it is: each copy follows the copy of its parent (of its nearest
    /// ancestor copied), and the fork's active branch ends where the source's does;
    /// [`Fork::on_branch`] copies one branch, as a line.
    ///
    /// Resumable: a fork run again (after a crash, a time-out) finds what it copied (each add
    /// repeats an identical message, answered `deduplicated`) and completes it without
    /// duplicates. Messages written to the source after the fork started are not copied: the
    /// last seq is fixed when it starts.
    ///
    /// A fork keeps the source's order. A reservation still streaming when a fork ran is not
    /// copied; once it completes, a fork run again would copy it after the later messages
    /// already copied, so it is refused (`InvalidInput` naming `target` and the message). To
    /// bring the late message in its place, truncate the fork before the first later message
    /// ([`Delete::after`](crate::args::Delete::after) the seq of the fork's message that
    /// precedes it) and fork again: the truncated messages are copied again, in order.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{args::Add, lifecycle::Fork, read::ListMessages, Content, Pipeline, Role, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// let (main, branch) = (ThreadId::new("main")?, ThreadId::new("branch")?);
    /// for text in ["hello", "hi!", "tell me a joke"] {
    ///     pipeline.add(Add::new(main.clone(), Role::User, Content::text(text))).await?;
    /// }
    /// let report = pipeline.fork(Fork::new(main, branch.clone()).up_to(2)).await?;
    /// assert_eq!(report.copied, 2);
    /// assert_eq!(pipeline.list(ListMessages::new(branch)).await?.items.len(), 2);
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// `NotFound` when the source does not exist (`ThreadDeleted` when it was deleted);
    /// `InvalidInput` naming `target` when the target is the source, or exists and is not a
    /// fork of the source in progress; `ThreadDeleted` for a deleted target; otherwise the
    /// first error of a read or a write.
    pub async fn fork(&self, mut fork: Fork) -> Result<ForkReport> {
        // Its reads see its writes, whichever copy of the store answers them.
        fork.context = fork.context.consistent();
        let context = || fork.context.renewed();
        if fork.source == fork.target {
            return Err(PersistError::invalid("target", "a thread cannot be forked into itself"));
        }
        let Some(source) = self.get_thread(GetThread::new(fork.source.clone()).with_context(context())).await? else {
            return Err(PersistError::not_found(&fork.source, None));
        };
        if source.is_deleted() {
            return Err(PersistError::ThreadDeleted { thread_id: fork.source.clone() });
        }
        let target = self.get_thread(GetThread::new(fork.target.clone()).with_context(context())).await?;
        // A fork resumed goes on up to the seq (and along the branch) it recorded when it started.
        let resumed = match &target {
            Some(target) => self.check_fork_target(&fork, target).await?,
            None => None,
        };
        let leaf = match (&resumed, &fork.branch) {
            (Some((_, recorded)), _) => recorded.clone(),
            (None, Some(Branch::EndingAt(id))) => Some(id.clone()),
            (None, Some(_)) => self.active_end(&fork).await?,
            (None, None) => None,
        };
        // A branch with no message yet: nothing to copy.
        if fork.branch.is_some() && leaf.is_none() {
            return Ok(ForkReport::default());
        }
        let up_to =
            resumed.as_ref().map(|(seq, _)| *seq).or(fork.up_to).unwrap_or(source.last_seq).min(source.last_seq);
        let mut origin = json!({ "thread": fork.source.as_str(), "seq": up_to });
        if let Some(leaf) = &leaf {
            origin["leaf"] = json!(leaf.as_str());
        }
        let mut report = ForkReport { up_to, ..ForkReport::default() };
        let mut recorded = resumed.is_some();
        let branch = leaf.map(Branch::EndingAt);
        // An earlier run's copies: a message not among them below the last one's seq is late.
        let (copied, copied_until) = match target {
            Some(_) => self.refuse_late_messages(&fork, up_to, branch.as_ref()).await?,
            None => (HashSet::new(), 0),
        };
        // A fork of a whole tree keeps its shape: each copy follows the copy of its parent (of
        // the nearest ancestor copied, past reservations still streaming), and the fork's active
        // branch ends where the source's does.
        let tree = self.capabilities().branches && branch.is_none();
        let mut attach: HashMap<u64, Option<MessageId>> = HashMap::new();
        let (mut last, mut branched) = (None::<MessageId>, false);
        // The source's seq of each message copied (or found copied), in seq order.
        let mut copied_from: Vec<(u64, MessageId)> = Vec::new();
        let mut listing = ListMessages::new(fork.source.clone())
            .before(up_to.saturating_add(1))
            .include_reserved(tree)
            .with_limit(MAX_PAGE_LIMIT)
            .with_context(context());
        if let Some(branch) = branch {
            listing = listing.on_branch(branch);
        }
        loop {
            let page = self.list(listing.clone()).await?;
            for message in &page.items {
                let parent_copy = message.parent_seq.and_then(|seq| attach.get(&seq).cloned().flatten());
                // Reservations still streaming are not copied.
                if message.status == Status::Reserved {
                    attach.insert(message.seq, parent_copy);
                    continue;
                }
                // Completed between the check above and this page: it would land after later copies.
                if message.seq < copied_until && !copied.contains(&message.id) {
                    return Err(late_message(&fork, message));
                }
                let parent = match parent_copy {
                    _ if !tree || parent_copy == last => Parent::Active,
                    Some(id) => Parent::Message(id),
                    None => Parent::Root,
                };
                branched |= !parent.is_active();
                let copy = if message.status == Status::Interrupted {
                    self.copy_interrupted(&fork.target, message, parent, context()).await
                } else {
                    let mut add = Add::new(fork.target.clone(), message.role.clone(), message.content.clone())
                        .with_id(message.id.clone())
                        .with_metadata(message.metadata.clone())
                        .with_parent(parent)
                        .with_context(context());
                    if let Some(key) = &message.idempotency_key {
                        add = add.with_idempotency_key(key.clone());
                    }
                    self.add(add).await.map(|added| added.deduplicated)
                };
                match copy {
                    Ok(true) => report.already += 1,
                    Ok(false) => report.copied += 1,
                    // Copied by an earlier run, and changed since in the source or the fork.
                    Err(PersistError::AlreadyExists { .. } | PersistError::IdempotencyKeyReused { .. }) => {
                        report.already += 1
                    }
                    Err(error) => return Err(error),
                }
                attach.insert(message.seq, Some(message.id.clone()));
                copied_from.push((message.seq, message.id.clone()));
                last = Some(message.id.clone());
                if !recorded {
                    let mark = Update::thread(fork.target.clone())
                        .with_metadata(Metadata::new().with(FORKED_FROM, origin.clone()))
                        .with_context(context());
                    self.update(mark).await?;
                    recorded = true;
                }
            }
            match listing.next_page(&page) {
                Some(next) => listing = next,
                None => break,
            }
        }
        (report.summaries, report.summaries_behind) = self.copy_summaries(&fork, up_to, &copied_from).await?;
        let source_leaf = source.active_leaf.filter(|&leaf| leaf <= up_to);
        if let Some(Some(leaf)) =
            source_leaf.and_then(|leaf| attach.get(&leaf)).filter(|leaf| branched && **leaf != last)
        {
            let switch = Update::thread(fork.target.clone()).with_switch(Switch::To(leaf.clone()));
            self.update(switch.with_context(context())).await?;
        }
        Ok(report)
    }

    /// Writes to `fork.target` each summary of the source whose last message is among the copies
    /// (`copied_from`: each copied message's seq in the source, ascending), its range mapped to
    /// the copies' seqs: from the first copy at or after its first seq, through the copy of its
    /// last message. Summaries ending past `up_to`, or at a message not copied (another branch
    /// than the one forked), are left. Idempotent per range, as every summary: a fork run again
    /// writes none twice. Answers how many it wrote (not found written), and how many end before
    /// the first copy (in history the new thread does not have).
    async fn copy_summaries(
        &self,
        fork: &Fork,
        up_to: u64,
        copied_from: &[(u64, MessageId)],
    ) -> Result<(usize, usize)> {
        let Some(&(first_copied, _)) = copied_from.first() else { return Ok((0, 0)) };
        let mut summaries = Vec::new();
        let mut listing = ListSummaries::new(fork.source.clone()).with_limit(MAX_PAGE_LIMIT);
        loop {
            let page = self.summaries(listing.clone().with_context(fork.context.renewed())).await?;
            summaries.extend(page.items.iter().filter(|summary| summary.through_seq <= up_to).cloned());
            match listing.next_page(&page) {
                Some(next) => listing = next,
                None => break,
            }
        }
        let behind = summaries.iter().filter(|summary| summary.through_seq < first_copied).count();
        if summaries.len() == behind {
            return Ok((0, behind));
        }
        let in_target: HashMap<MessageId, u64> = self
            .all_messages(&fork.target, &fork.context, None, None)
            .await?
            .into_iter()
            .map(|message| (message.id, message.seq))
            .collect();
        let copy_of = |source_seq: u64| copied_from.binary_search_by_key(&source_seq, |(seq, _)| *seq);
        let mut written = 0;
        for summary in summaries {
            let Ok(last) = copy_of(summary.through_seq) else { continue };
            let first = copy_of(summary.from_seq).unwrap_or_else(|at| at);
            let seq_of = |index: usize| copied_from.get(index).and_then(|(_, id)| in_target.get(id)).copied();
            let (Some(from), Some(through)) = (seq_of(first), seq_of(last)) else { continue };
            let copy = Summarize::new(fork.target.clone(), through, summary.content)
                .from_seq(from)
                .with_metadata(summary.metadata)
                .with_context(fork.context.renewed());
            if !self.summarize(copy).await?.deduplicated {
                written += 1;
            }
        }
        Ok((written, behind))
    }

    /// Refuses to resume a fork when a message of the source up to `up_to` is missing from it
    /// while a later one was copied: it was completed after an earlier run (a reservation then
    /// streaming), and copied now it would land after the later one.
    /// Answers the ids the target holds and the source seq of the last of them (0: none).
    async fn refuse_late_messages(
        &self,
        fork: &Fork,
        up_to: u64,
        branch: Option<&Branch>,
    ) -> Result<(HashSet<MessageId>, u64)> {
        let copied = self.all_messages(&fork.target, &fork.context, None, None).await?;
        let copied: HashSet<MessageId> = copied.into_iter().map(|message| message.id).collect();
        let source = self.all_messages(&fork.source, &fork.context, Some(up_to), branch).await?;
        let Some(last_copied) = source.iter().rposition(|message| copied.contains(&message.id)) else {
            return Ok((copied, 0));
        };
        match source[..last_copied].iter().find(|message| !copied.contains(&message.id)) {
            None => Ok((copied, source[last_copied].seq)),
            Some(late) => Err(late_message(fork, late)),
        }
    }

    /// The complete messages of `thread` (up to seq `up_to`, of `branch`), in order (every page).
    async fn all_messages(
        &self,
        thread: &ThreadId,
        context: &Context,
        up_to: Option<u64>,
        branch: Option<&Branch>,
    ) -> Result<Vec<Message>> {
        let mut listing = ListMessages::new(thread.clone()).with_limit(MAX_PAGE_LIMIT).with_context(context.renewed());
        if let Some(up_to) = up_to {
            listing = listing.before(up_to.saturating_add(1));
        }
        if let Some(branch) = branch {
            listing = listing.on_branch(branch.clone());
        }
        Ok(self.list_every(listing).await?.items)
    }

    /// The last message of the source's active branch, when the fork starts (`None`: no
    /// message).
    async fn active_end(&self, fork: &Fork) -> Result<Option<MessageId>> {
        let last = ListMessages::new(fork.source.clone())
            .on_branch(Branch::Active)
            .include_reserved(true)
            .with_order(crate::read::Order::Desc)
            .with_limit(1)
            .with_context(fork.context.renewed());
        Ok(self.list(last).await?.items.into_iter().next().map(|message| message.id))
    }

    /// An existing target is fine when it is this fork: recorded (its origin names the source;
    /// answers the seq it recorded, and the last message of the branch it copies), or still in
    /// progress before the origin was recorded (its messages are, in order, the first complete
    /// messages of the source, of its branch, at least one).
    async fn check_fork_target(&self, fork: &Fork, target: &Thread) -> Result<Option<(u64, Option<MessageId>)>> {
        if target.is_deleted() {
            return Err(PersistError::ThreadDeleted { thread_id: fork.target.clone() });
        }
        let not_a_fork = || {
            PersistError::invalid(
                "target",
                format!("thread {} exists and is not a fork of {}", fork.target, fork.source),
            )
        };
        if let Some(recorded) = target.metadata.get(FORKED_FROM) {
            let thread = recorded.get("thread").and_then(serde_json::Value::as_str);
            let seq = recorded.get("seq").and_then(serde_json::Value::as_u64);
            let leaf = recorded.get("leaf").and_then(serde_json::Value::as_str).map(MessageId::new).transpose();
            let same_branch = |leaf: &Option<MessageId>| match (&fork.branch, leaf) {
                (None, None) | (Some(Branch::Active), Some(_)) => true,
                (Some(Branch::EndingAt(wanted)), Some(leaf)) => wanted == leaf,
                _ => false,
            };
            return match (thread, seq, leaf) {
                (Some(thread), Some(seq), Ok(leaf))
                    if thread == fork.source.as_str()
                        && fork.up_to.is_none_or(|up| up == seq)
                        && same_branch(&leaf) =>
                {
                    Ok(Some((seq, leaf)))
                }
                _ => Err(not_a_fork()),
            };
        }

        let page = |thread: &ThreadId| {
            ListMessages::new(thread.clone()).with_limit(MAX_PAGE_LIMIT).with_context(fork.context.renewed())
        };
        let copied = self.list(page(&fork.target).include_reserved(true)).await?;
        if copied.items.is_empty() || copied.has_more {
            return Err(not_a_fork());
        }
        let mut source = page(&fork.source);
        if let Some(branch) = &fork.branch {
            source = source.on_branch(branch.clone());
        }
        let source = self.list(source).await?;
        let mut originals = source.items.iter().map(|m| &m.id);
        if copied.items.iter().any(|copy| originals.next() != Some(&copy.id)) {
            return Err(not_a_fork());
        }
        Ok(None)
    }

    /// One batch of retention, **through the pipeline**: of up to `prune.threads` threads
    /// (every tenant's, most recently active first, after `prune.cursor`), deletes those idle
    /// longer than `idle_for` (a `delete` of the thread expecting the version and `updated_at`
    /// read: a thread written meanwhile, even one message added, is kept), and in the others
    /// deletes what the latest summary covers, with [`covered`](Prune::covered) (a
    /// `Delete::covered` expecting the thread's version read), then every message older than the
    /// latest `keep_latest` (each a `delete` expecting the version read). In a thread with
    /// [branches](crate::branch), the latest `keep_latest` are counted along the active branch,
    /// and a message of another branch goes when it is older than the oldest of them. Every delete carries
    /// the [`Maintenance`] extension and the thread's tenant. With `dry_run`, counts what it
    /// would delete and deletes nothing.
    ///
    /// Run batches from each report's `next_cursor` until one is `done`; a batch run again
    /// finds only what is still to prune.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use persist::{args::Add, lifecycle::Prune, Content, Pipeline, Role, ThreadId};
    /// use persist::memory::MemoryBackend;
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let pipeline = Pipeline::new(MemoryBackend::new());
    /// for i in 0..5 {
    ///     pipeline.add(Add::new(ThreadId::new("chat")?, Role::User, Content::text(format!("{i}")))).await?;
    /// }
    /// let report = pipeline.prune(Prune::new().with_keep_latest(2)).await?;
    /// assert_eq!((report.deleted_messages, report.done), (3, true));
    /// # Ok::<_, persist::PersistError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a batch of 0 or over 1000 threads, or a prune that names neither an
    /// idle cutoff (`idle_for`, `idle_before`), `keep_latest` nor `covered`; the first error of a read or a write other than a target
    /// changed or gone meanwhile.
    pub async fn prune(&self, mut prune: Prune) -> Result<PruneReport> {
        prune.context = prune.context.consistent();
        if prune.threads == 0 || prune.threads > MAX_PAGE_LIMIT {
            return Err(PersistError::invalid("threads", format!("must be between 1 and {MAX_PAGE_LIMIT}")));
        }
        if prune.idle_for.is_none() && prune.idle_before.is_none() && prune.keep_latest.is_none() && !prune.covered {
            return Err(PersistError::invalid("prune", "names neither an idle cutoff, keep_latest nor covered"));
        }
        let maintenance = prune.context.clone().with_extension(Maintenance);
        let cutoff = match (prune.idle_for.map(|age| Timestamp::now().saturating_sub(age)), prune.idle_before) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let listing = ListThreads::new()
            .across_tenants(prune.across_tenants)
            .with_limit(prune.threads)
            .with_cursor(prune.cursor.clone())
            .with_context(maintenance.clone());
        let page = self.threads(listing).await?;
        let mut report = PruneReport { threads: page.items.len(), ..PruneReport::default() };
        for thread in &page.items {
            let base = maintenance.clone().for_tenant(thread.tenant.clone());
            let context = || base.renewed();
            if cutoff.is_some_and(|cutoff| thread.updated_at < cutoff) {
                if prune.dry_run {
                    report.deleted_threads.push((thread.tenant.clone(), thread.id.clone()));
                    report.deleted_messages += thread.message_count as usize;
                    continue;
                }
                // Kept if anything was written to it since it was listed.
                let delete = Delete::thread(thread.id.clone())
                    .with_expected_version(thread.version)
                    .with_expected_updated_at(thread.updated_at)
                    .with_context(context());
                match self.delete(delete).await {
                    Ok(deleted) => {
                        report.deleted_threads.push((thread.tenant.clone(), thread.id.clone()));
                        report.deleted_messages += deleted.message_ids.len();
                    }
                    Err(error) if error.is_changed_or_gone() => report.skipped += 1,
                    Err(error) => return Err(error),
                }
                continue;
            }
            // In a dry run, what `covered` counted is still there: `keep_latest` counts past it.
            let counted = match prune.covered {
                true => self.covered(thread, prune.dry_run, &base, &mut report).await?,
                false => 0,
            };
            if let Some(keep) = prune.keep_latest.filter(|&keep| thread.message_count > u64::from(keep)) {
                self.keep_latest(thread, keep, prune.dry_run, counted, &base, &mut report).await?;
            }
        }
        report.done = !page.has_more;
        report.next_cursor = page.next_cursor.filter(|_| page.has_more);
        Ok(report)
    }

    /// Deletes what the latest summary of `thread`'s active branch covers (`Delete::covered`,
    /// expecting the version read: a thread switched or truncated meanwhile is skipped); a dry
    /// run counts it from the compacted read and a listing, and answers the last seq it counted
    /// up to (0 otherwise).
    async fn covered(&self, thread: &Thread, dry_run: bool, base: &Context, report: &mut PruneReport) -> Result<u64> {
        if !dry_run {
            let delete =
                Delete::covered(thread.id.clone()).with_expected_version(thread.version).with_context(base.renewed());
            match self.delete(delete).await {
                Ok(deleted) => report.deleted_messages += deleted.message_ids.len(),
                Err(error) if error.is_changed_or_gone() => report.skipped += 1,
                Err(error) => return Err(error),
            }
            return Ok(0);
        }
        let read = crate::summary::ReadCompacted::new(thread.id.clone()).with_context(base.renewed());
        let Some(through) = self.compacted(read).await?.summary.map(|s| s.through_seq) else { return Ok(0) };
        let mut older = ListMessages::new(thread.id.clone())
            .include_reserved(true)
            .before(through.saturating_add(1))
            .with_limit(MAX_PAGE_LIMIT)
            .with_context(base.renewed());
        loop {
            let page = self.list(older.clone()).await?;
            report.deleted_messages += page.items.iter().filter(|m| Some(m.seq) != thread.active_leaf).count();
            match older.next_page(&page) {
                Some(next) => older = next,
                None => return Ok(through),
            }
        }
    }

    /// Deletes every message of `thread` older than its latest `keep` (reservations count): on a
    /// store with [branches](crate::branch), the latest `keep` of the active branch, and every
    /// message older than the oldest of them goes, on every branch (the alternatives written
    /// since stay).
    async fn keep_latest(
        &self,
        thread: &Thread,
        keep: u32,
        dry_run: bool,
        counted: u64,
        base: &Context,
        report: &mut PruneReport,
    ) -> Result<()> {
        // A context a call, each with a request id of its own (a plain `&Context`, not a
        // closure: the future stays `Send`).
        let context = || base.renewed();
        // The oldest seq kept: the `keep`-th newest message's (none kept: past every message).
        let mut oldest_kept = thread.last_seq.saturating_add(1);
        if keep > 0 {
            let mut newest = ListMessages::new(thread.id.clone());
            if self.capabilities().branches {
                newest = newest.on_branch(crate::branch::Branch::Active);
            }
            let mut newest = newest
                .include_reserved(true)
                .with_order(crate::read::Order::Desc)
                .with_limit(keep.min(MAX_PAGE_LIMIT))
                .with_context(context());
            let mut seen = 0u32;
            loop {
                let page = self.list(newest.clone()).await?;
                for message in &page.items {
                    seen += 1;
                    if seen == keep {
                        oldest_kept = message.seq;
                        break;
                    }
                }
                if seen == keep {
                    break;
                }
                match newest.next_page(&page) {
                    Some(next) => newest = next,
                    // Fewer than `keep` messages: nothing to delete.
                    None => return Ok(()),
                }
            }
        }
        let mut older = ListMessages::new(thread.id.clone())
            .include_reserved(true)
            .before(oldest_kept)
            .with_limit(MAX_PAGE_LIMIT)
            .with_context(context());
        loop {
            let page = self.list(older.clone()).await?;
            for message in &page.items {
                if dry_run {
                    // Counted already, by `covered`.
                    report.deleted_messages += usize::from(message.seq > counted);
                    continue;
                }
                let delete = Delete::message(thread.id.clone(), message.id.clone())
                    .with_expected_version(message.version)
                    .with_context(context());
                match self.delete(delete).await {
                    Ok(deleted) => report.deleted_messages += deleted.message_ids.len(),
                    Err(error) if error.is_changed_or_gone() => report.skipped += 1,
                    Err(error) => return Err(error),
                }
            }
            match older.next_page(&page) {
                Some(next) => older = next,
                None => return Ok(()),
            }
        }
    }
}
