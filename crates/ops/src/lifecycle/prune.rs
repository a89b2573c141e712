//! Retention ([`PipelineExt::prune`](crate::PipelineExt::prune)): idle threads deleted, the
//! latest messages of each kept, what summaries cover removed; composed of ordinary requests
//! sent through the whole stack (see [`lifecycle`](crate::lifecycle)).

use crate::lifecycle::{Prune, PruneReport};
use persist_core::args::Delete;
use persist_core::read::{ListMessages, ListThreads, MAX_PAGE_LIMIT};
use persist_core::{Context, Maintenance, PersistError, Pipeline, Result, Thread, Timestamp};

/// See [`PipelineExt::prune`](crate::PipelineExt::prune).
pub(crate) async fn prune(pipeline: &Pipeline, mut prune: Prune) -> Result<PruneReport> {
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
    let page = pipeline.threads(listing).await?;
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
            match pipeline.delete(delete).await {
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
            true => covered(pipeline, thread, prune.dry_run, &base, &mut report).await?,
            false => 0,
        };
        if let Some(keep) = prune.keep_latest.filter(|&keep| thread.message_count > u64::from(keep)) {
            keep_latest(pipeline, thread, keep, prune.dry_run, counted, &base, &mut report).await?;
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
async fn covered(
    pipeline: &Pipeline,
    thread: &Thread,
    dry_run: bool,
    base: &Context,
    report: &mut PruneReport,
) -> Result<u64> {
    if !dry_run {
        let delete =
            Delete::covered(thread.id.clone()).with_expected_version(thread.version).with_context(base.renewed());
        match pipeline.delete(delete).await {
            Ok(deleted) => report.deleted_messages += deleted.message_ids.len(),
            Err(error) if error.is_changed_or_gone() => report.skipped += 1,
            Err(error) => return Err(error),
        }
        return Ok(0);
    }
    let read = persist_core::summary::ReadCompacted::new(thread.id.clone()).with_context(base.renewed());
    let Some(through) = pipeline.compacted(read).await?.summary.map(|s| s.through_seq) else { return Ok(0) };
    let mut older = ListMessages::new(thread.id.clone())
        .include_reserved(true)
        .before(through.saturating_add(1))
        .with_limit(MAX_PAGE_LIMIT)
        .with_context(base.renewed());
    loop {
        let page = pipeline.list(older.clone()).await?;
        report.deleted_messages += page.items.iter().filter(|m| Some(m.seq) != thread.active_leaf).count();
        match older.next_page(&page) {
            Some(next) => older = next,
            None => return Ok(through),
        }
    }
}

/// Deletes every message of `thread` older than its latest `keep` (reservations count): on a
/// store with [branches](persist_core::branch), the latest `keep` of the active branch, and every
/// message older than the oldest of them goes, on every branch (the alternatives written
/// since stay).
async fn keep_latest(
    pipeline: &Pipeline,
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
        if pipeline.capabilities().branches {
            newest = newest.on_branch(persist_core::branch::Branch::Active);
        }
        let mut newest = newest
            .include_reserved(true)
            .with_order(persist_core::read::Order::Desc)
            .with_limit(keep.min(MAX_PAGE_LIMIT))
            .with_context(context());
        let mut seen = 0u32;
        loop {
            let page = pipeline.list(newest.clone()).await?;
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
        let page = pipeline.list(older.clone()).await?;
        for message in &page.items {
            if dry_run {
                // Counted already, by `covered`.
                report.deleted_messages += usize::from(message.seq > counted);
                continue;
            }
            let delete = Delete::message(thread.id.clone(), message.id.clone())
                .with_expected_version(message.version)
                .with_context(context());
            match pipeline.delete(delete).await {
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
