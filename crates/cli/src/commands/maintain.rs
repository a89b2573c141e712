//! Maintenance that cleans up: `prune` (retention) and `cleanup-stranded`.

use std::io::Write;
use std::time::Duration;

use persist::PipelineExt;
use persist::lifecycle::Prune;
use persist::maintenance::CleanupStranded;
use persist::read::{FindStranded, MAX_PAGE_LIMIT, Stranded};
use persist::{TenantId, ThreadId, Timestamp};
use serde_json::json;

use super::{RUN_AGAIN, Scope, describe_thread, interruptible, stdout};
use crate::error::{CliError, CliResult};
use crate::jsonl::write_line;
use crate::progress::Progress;
use crate::store::Store;
use crate::text::format_time;

/// What `prune` deletes.
#[derive(Debug)]
pub(crate) struct PruneOptions {
    /// Threads with no activity for this long are deleted.
    pub(crate) idle_for: Option<Duration>,
    /// In the other threads, only this many latest messages are kept.
    pub(crate) keep_latest: Option<u32>,
    /// In the other threads, what the latest summary covers is deleted.
    pub(crate) covered: bool,
    /// Report, delete nothing.
    pub(crate) dry_run: bool,
}

/// What every batch of a prune did, added up.
#[derive(Debug, Default)]
struct PruneTotals {
    threads: usize,
    deleted_threads: Vec<(Option<TenantId>, ThreadId)>,
    deleted_messages: usize,
    skipped: usize,
}

/// `persist prune`: retention, in batches of 1000 threads until every thread of the scope was
/// examined. The idle cutoff is fixed when the command starts.
pub(crate) async fn prune(store: &Store, scope: &Scope, options: PruneOptions, json: bool) -> CliResult {
    let mut prune = Prune::new().dry_run(options.dry_run).with_threads(MAX_PAGE_LIMIT);
    if let Some(age) = options.idle_for {
        prune = prune.with_idle_before(Timestamp::now().saturating_sub(age));
    }
    if let Some(keep) = options.keep_latest {
        prune = prune.with_keep_latest(keep);
    }
    prune = prune.with_covered(options.covered);
    if !scope.across_tenants {
        prune = prune.only_tenant(scope.tenant.clone());
    }
    let mut totals = PruneTotals::default();
    let mut progress = Progress::new("threads examined");
    let work = async {
        let mut cursor = None;
        loop {
            let report = store.pipeline.prune(prune.clone().with_cursor(cursor)).await?;
            totals.threads += report.threads;
            totals.deleted_threads.extend(report.deleted_threads);
            totals.deleted_messages += report.deleted_messages;
            totals.skipped += report.skipped;
            progress.add(report.threads as u64);
            match report.next_cursor {
                Some(next) if !report.done => cursor = Some(next),
                _ => return Ok::<(), CliError>(()),
            }
        }
    };
    interruptible(RUN_AGAIN, work).await?;
    progress.finish();
    let mut out = stdout();
    if json {
        let deleted: Vec<_> = totals
            .deleted_threads
            .iter()
            .map(|(tenant, thread)| json!({ "tenant": tenant, "thread": thread }))
            .collect();
        let report = json!({
            "dry_run": options.dry_run,
            "threads_examined": totals.threads,
            "deleted_threads": deleted,
            "deleted_messages": totals.deleted_messages,
            "skipped": totals.skipped,
        });
        write_line(&mut out, &report)?;
    } else {
        let verb = if options.dry_run { "would delete" } else { "deleted" };
        for (tenant, thread) in &totals.deleted_threads {
            writeln!(out, "{verb} thread {}", describe_thread(thread, tenant.as_ref()))?;
        }
        writeln!(
            out,
            "{verb} {} threads and {} messages; {} kept (written meanwhile); {} threads examined{}",
            totals.deleted_threads.len(),
            totals.deleted_messages,
            totals.skipped,
            totals.threads,
            if options.dry_run { " (dry run: nothing was deleted)" } else { "" }
        )?;
    }
    out.flush()?;
    Ok(())
}

/// `persist cleanup-stranded`: marks interrupted (or with `delete`, deletes) reservations
/// nobody wrote to for `older_than`, 1000 at a time until none is left.
pub(crate) async fn cleanup_stranded(
    store: &Store,
    scope: &Scope,
    older_than: Duration,
    options: StrandedOptions,
    json: bool,
) -> CliResult {
    let StrandedOptions { delete, dry_run } = options;
    if dry_run {
        return stranded_dry_run(store, scope, older_than, delete, json).await;
    }
    let mut cleanup = CleanupStranded::new(older_than).with_limit(MAX_PAGE_LIMIT);
    if delete {
        cleanup = cleanup.deleting();
    }
    if !scope.across_tenants {
        cleanup = cleanup.only_tenant(scope.tenant.clone());
    }
    let (mut interrupted, mut deleted): (Vec<Stranded>, Vec<Stranded>) = (Vec::new(), Vec::new());
    let mut skipped = 0usize;
    let mut refused = Vec::new();
    let work = async {
        loop {
            let report = store.pipeline.cleanup_stranded(cleanup.clone()).await?;
            let done = report.interrupted.len() + report.deleted.len();
            let handled = done + report.skipped + report.refused.len();
            skipped += report.skipped;
            // Found again by the next batch: kept once.
            refused = report.refused;
            interrupted.extend(report.interrupted);
            deleted.extend(report.deleted);
            // A full batch may leave more behind; a batch that cleaned nothing will not change.
            if handled < MAX_PAGE_LIMIT as usize || done == 0 {
                return Ok::<(), CliError>(());
            }
        }
    };
    interruptible(RUN_AGAIN, work).await?;
    let mut out = stdout();
    if json {
        let mut report = json!({ "skipped": skipped });
        report["interrupted"] = interrupted.iter().map(stranded_json).collect();
        report["deleted"] = deleted.iter().map(stranded_json).collect();
        report["refused"] = refused
            .iter()
            .map(|r: &persist::maintenance::RefusedCleanup| {
                let mut item = stranded_json(&r.stranded);
                item["reason"] = json!(r.reason);
                item
            })
            .collect();
        write_line(&mut out, &report)?;
    } else {
        for stranded in &interrupted {
            writeln!(out, "marked interrupted {}", stranded_line(stranded))?;
        }
        for stranded in &deleted {
            writeln!(out, "deleted {}{}", stranded_line(stranded), blank_note(delete, stranded))?;
        }
        for refusal in &refused {
            writeln!(out, "refused {}: {}", stranded_line(&refusal.stranded), refusal.reason)?;
        }
        let refused = if refused.is_empty() { String::new() } else { format!("; {} refused", refused.len()) };
        let counts = match (delete, deleted.len()) {
            (true, n) => format!("deleted {n}"),
            (false, 0) => format!("marked interrupted {}", interrupted.len()),
            (false, n) => format!("marked interrupted {}, deleted {n} (nothing streamed)", interrupted.len()),
        };
        writeln!(out, "{counts} stranded reservations; {skipped} kept (written meanwhile){refused}")?;
    }
    out.flush()?;
    Ok(())
}

/// How `cleanup-stranded` cleans.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StrandedOptions {
    /// Delete instead of marking interrupted.
    pub(crate) delete: bool,
    /// Report, write nothing.
    pub(crate) dry_run: bool,
}

/// Why a reservation a cleanup marking interrupted deleted was deleted: its stream wrote
/// nothing (see `Content::is_blank`).
fn blank_note(deleting: bool, stranded: &Stranded) -> &'static str {
    if !deleting && stranded.message.content.is_blank() { " (its stream wrote nothing)" } else { "" }
}

/// A stranded reservation as a JSON line's item.
fn stranded_json(stranded: &Stranded) -> serde_json::Value {
    let message = &stranded.message;
    json!({
        "tenant": stranded.tenant,
        "thread": message.thread_id,
        "message": message.id,
        "seq": message.seq,
        "status": message.status,
        "updated_at": message.updated_at,
    })
}

/// A stranded reservation in words: `reservation ID (#SEQ) of thread T, last written …` as found
/// (the time its stream last wrote); once marked interrupted, without the time (the mark's own).
fn stranded_line(stranded: &Stranded) -> String {
    let message = &stranded.message;
    let thread = describe_thread(&message.thread_id, stranded.tenant.as_ref());
    if message.status == persist::Status::Interrupted {
        return format!("reservation {} (#{}) of thread {}", message.id, message.seq, thread);
    }
    format!(
        "reservation {} (#{}) of thread {}, last written {}",
        message.id,
        message.seq,
        thread,
        format_time(message.updated_at)
    )
}

/// `cleanup-stranded --dry-run`: the reservations a cleanup would clean now, oldest first (at
/// most a page of them), found as the cleanup finds them; nothing is written.
async fn stranded_dry_run(store: &Store, scope: &Scope, older_than: Duration, delete: bool, json: bool) -> CliResult {
    let cutoff = Timestamp::now().saturating_sub(older_than);
    let context = if scope.across_tenants { persist::Context::new() } else { scope.context() };
    let query =
        FindStranded::new(cutoff).with_limit(MAX_PAGE_LIMIT).across_tenants(scope.across_tenants).with_context(context);
    let found = store.pipeline.find_stranded(query).await?;
    // As the cleanup decides: deleted when asked, or when its stream wrote nothing.
    let (deleting, interrupting): (Vec<&Stranded>, Vec<&Stranded>) =
        found.iter().partition(|stranded| delete || stranded.message.content.is_blank());
    let mut out = stdout();
    if json {
        let mut report = json!({ "dry_run": true });
        report["would_interrupt"] = interrupting.iter().map(|s| stranded_json(s)).collect();
        report["would_delete"] = deleting.iter().map(|s| stranded_json(s)).collect();
        write_line(&mut out, &report)?;
    } else {
        for stranded in &interrupting {
            writeln!(out, "would mark interrupted {}", stranded_line(stranded))?;
        }
        for stranded in &deleting {
            writeln!(out, "would delete {}{}", stranded_line(stranded), blank_note(delete, stranded))?;
        }
        let more = if found.len() == MAX_PAGE_LIMIT as usize { " (the first page; more may follow)" } else { "" };
        let counts = match (delete, interrupting.len(), deleting.len()) {
            (true, _, n) => format!("delete {n}"),
            (false, n, 0) => format!("mark interrupted {n}"),
            (false, n, d) => format!("mark interrupted {n} and delete {d} (nothing streamed)"),
        };
        writeln!(out, "dry run: would {counts} stranded reservations{more}; nothing written")?;
    }
    out.flush()?;
    Ok(())
}
