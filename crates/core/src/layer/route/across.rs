//! Requests across threads (`threads`, `search`, `find_stranded`, `ping`) through a route: every store
//! the route reaches answers, and the answers are merged into one.

use tower::ServiceExt;

use crate::pipeline::BoxPersistService;
use crate::read::{FindStranded, ListThreads, Page};
use crate::search::{Search, SearchCursor, SearchHit};
use crate::{PersistArgs, PersistError, PersistOp, PersistResult};

/// Whether a request of `op` that names no thread goes to every store and the answers are
/// merged: not a change-feed read, whose positions are each store's own.
pub(super) fn merges(op: PersistOp) -> bool {
    matches!(op, PersistOp::Threads | PersistOp::Search | PersistOp::FindStranded | PersistOp::Ping)
}

/// Sends `args` to every store (the inner stack's answer first, then each target's, in route
/// order) and merges the answers.
pub(super) async fn fan_out<F>(
    args: PersistArgs,
    inner: F,
    targets: Vec<BoxPersistService>,
) -> Result<PersistResult, PersistError>
where
    F: Future<Output = Result<PersistResult, PersistError>>,
{
    let mut answers = Vec::with_capacity(targets.len() + 1);
    answers.push(inner.await?);
    for target in targets {
        answers.push(target.oneshot(args.clone()).await?);
    }
    match args {
        PersistArgs::Threads(query) => threads(&query, answers),
        PersistArgs::Search(query) => search(&query, answers),
        PersistArgs::FindStranded(query) => stranded(&query, answers),
        // A ping: every store answered.
        PersistArgs::Ping(_) => Ok(PersistResult::Pong),
        other => Err(PersistError::Unsupported { what: format!("merging `{}` across stores", other.op()).into() }),
    }
}

/// One page of threads from every store's page: newest first with one cursor, a thread that
/// two stores hold listed once. Each store listed at most `limit` threads after the cursor, so
/// whatever this page leaves out comes after its last thread, and the next page (from that
/// thread's cursor) lists it.
fn threads(query: &ListThreads, answers: Vec<PersistResult>) -> Result<PersistResult, PersistError> {
    let (mut merged, mut more, mut unreadable) = (Vec::new(), false, Vec::new());
    for answer in answers {
        match answer {
            PersistResult::Threads(page) => {
                more |= page.has_more;
                merged.extend(page.items);
                unreadable.extend(page.unreadable);
            }
            other => return Err(PersistError::MismatchedResult { op: PersistOp::Threads, got: other.op() }),
        }
    }
    merged.sort_by(crate::read::newest_first);
    merged.dedup_by(|later, earlier| (&later.id, &later.tenant) == (&earlier.id, &earlier.tenant));
    let mut page = query.page(merged);
    page.has_more |= more;
    page.unreadable = unreadable;
    Ok(PersistResult::Threads(page))
}

/// Every store's stranded reservations, least recently active first, at most `limit`.
fn stranded(query: &FindStranded, answers: Vec<PersistResult>) -> Result<PersistResult, PersistError> {
    let mut found = Vec::new();
    for answer in answers {
        match answer {
            PersistResult::Stranded(stranded) => found.extend(stranded),
            other => return Err(PersistError::MismatchedResult { op: PersistOp::FindStranded, got: other.op() }),
        }
    }
    found.sort_by_key(|stranded| stranded.message.updated_at);
    found.truncate(query.limit as usize);
    Ok(PersistResult::Stranded(found))
}

/// One page of hits from every store's page: newest first with one cursor (as
/// [`threads`] merges listings; a hit is a message, held by one store).
fn search(query: &Search, answers: Vec<PersistResult>) -> Result<PersistResult, PersistError> {
    let (mut merged, mut more, mut unreadable) = (Vec::new(), false, Vec::new());
    for answer in answers {
        match answer {
            PersistResult::Search(page) => {
                more |= page.has_more;
                merged.extend(page.items);
                unreadable.extend(page.unreadable);
            }
            other => return Err(PersistError::MismatchedResult { op: PersistOp::Search, got: other.op() }),
        }
    }
    merged.sort_by(|a, b| {
        let key = |h: &SearchHit| (h.created_at, h.thread_id.clone(), h.tenant.clone(), h.seq);
        key(b).cmp(&key(a))
    });
    let has_more = more || merged.len() > query.limit as usize;
    merged.truncate(query.limit as usize);
    let next_cursor =
        merged.last().map(|hit| SearchCursor::new(hit.created_at, hit.tenant.clone(), hit.thread_id.clone(), hit.seq));
    let mut page = Page::new(merged, next_cursor, has_more);
    page.unreadable = unreadable;
    Ok(PersistResult::Search(page))
}
