//! One answer from several stores' answers to a request across threads: thread listings and
//! search hits merged in their order with one cursor, stranded reservations least recently
//! active first. For what spreads threads over stores: routes, shards.

use crate::model::page::{Page, UnreadableItem};
use crate::model::{Thread, id::TenantId};
use crate::read::{FindStranded, ListThreads, Stranded, ThreadCursor, newest_first};
use crate::search::{Search, SearchCursor, SearchHit};

/// One page of threads from every store's page: newest first with one cursor, a thread that
/// two stores hold listed once. Each store listed at most `limit` threads after the cursor, so
/// whatever this page leaves out comes after its last thread, and the next page (from that
/// thread's cursor) lists it. Threads of `hidden` (a tenant a store keeps for itself) are left
/// out of the page after its cursor is set, so a page may be short (even empty) while more
/// follow: a caller goes on from its cursor as from any page.
pub fn threads(
    query: &ListThreads,
    pages: Vec<Page<Thread, ThreadCursor>>,
    hidden: Option<&TenantId>,
) -> Page<Thread, ThreadCursor> {
    let (mut merged, more, unreadable) = gather(pages);
    merged.sort_by(newest_first);
    // A thread two stores hold (a tenant being moved between shards) once, as last written.
    let mut seen = std::collections::HashSet::new();
    merged.retain(|thread| seen.insert((thread.id.clone(), thread.tenant.clone())));
    let mut page = query.page(merged);
    page.has_more |= more;
    page.unreadable = unreadable;
    if hidden.is_some() {
        page.items.retain(|thread| thread.tenant.as_ref() != hidden);
    }
    page
}

/// One page of hits from every store's page: newest first with one cursor (as [`threads`]
/// merges listings; a hit is a message, held by one store). Hits of `hidden` are left out
/// after the cursor is set, as [`threads`] leaves threads out.
pub fn search(
    query: &Search,
    pages: Vec<Page<SearchHit, SearchCursor>>,
    hidden: Option<&TenantId>,
) -> Page<SearchHit, SearchCursor> {
    let (mut merged, more, unreadable) = gather(pages);
    merged.sort_by(|a, b| {
        let key = |h: &SearchHit| (h.created_at, h.thread_id.clone(), h.tenant.clone(), h.seq);
        key(b).cmp(&key(a))
    });
    // A message two stores hold (a tenant being moved between shards) is one hit.
    merged.dedup_by(|later, earlier| {
        (&later.tenant, &later.thread_id, later.seq) == (&earlier.tenant, &earlier.thread_id, earlier.seq)
    });
    let has_more = more || merged.len() > query.limit as usize;
    merged.truncate(query.limit as usize);
    let next_cursor =
        merged.last().map(|hit| SearchCursor::new(hit.created_at, hit.tenant.clone(), hit.thread_id.clone(), hit.seq));
    if hidden.is_some() {
        merged.retain(|hit| hit.tenant.as_ref() != hidden);
    }
    let mut page = Page::new(merged, next_cursor, has_more);
    page.unreadable = unreadable;
    page
}

/// Every page's items in one list, whether any page said more follow, and every page's items
/// it could not answer.
fn gather<T, C>(pages: Vec<Page<T, C>>) -> (Vec<T>, bool, Vec<UnreadableItem>) {
    let (mut merged, mut more, mut unreadable) = (Vec::new(), false, Vec::new());
    for page in pages {
        more |= page.has_more;
        merged.extend(page.items);
        unreadable.extend(page.unreadable);
    }
    (merged, more, unreadable)
}

/// Every store's stranded reservations, least recently active first, at most `limit`; one
/// that two stores hold (a tenant being moved between shards) once, as last written.
/// Reservations of `hidden` are left out.
pub fn stranded(query: &FindStranded, lists: Vec<Vec<Stranded>>, hidden: Option<&TenantId>) -> Vec<Stranded> {
    let mut found: Vec<Stranded> =
        lists.into_iter().flatten().filter(|stranded| hidden.is_none() || stranded.tenant.as_ref() != hidden).collect();
    let identity = |s: &Stranded| (s.tenant.clone(), s.message.thread_id.clone(), s.message.id.clone());
    found.sort_by(|a, b| identity(a).cmp(&identity(b)).then(b.message.updated_at.cmp(&a.message.updated_at)));
    found.dedup_by(|later, earlier| identity(later) == identity(earlier));
    found.sort_by_key(|stranded| stranded.message.updated_at);
    found.truncate(query.limit as usize);
    found
}
