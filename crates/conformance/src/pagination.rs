//! Listing a thread by seq: cursors both ways, `has_more`, placeholders, stability.

use std::sync::Arc;

use persist_core::args::Reserve;
use persist_core::read::ListMessages;
use persist_core::{Backend, Message, Order, Page, Role, ThreadId};

use crate::fixture::{add_text, t, written};
use crate::{Factory, Outcome};

async fn fill<B: Backend>(b: &B, thread_id: &ThreadId, n: u64) -> Vec<Message> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.push(add_text(b, thread_id, &format!("m{i}")).await);
    }
    out
}

async fn page<B: Backend>(b: &B, query: &ListMessages) -> Page<Message> {
    b.list(query.clone()).await.expect("list")
}

fn seqs(page: &Page<Message>) -> Vec<u64> {
    page.items.iter().map(|m| m.seq).collect()
}

/// Ascending pages of 3 over 7 messages: 3, 3, 1, with `has_more` and cursors right.
pub async fn check_list_pages_ascending<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    let id = t("pages");
    let all = fill(b, &id, 7).await;
    let query = ListMessages::new(id.clone()).with_limit(3);
    let first = page(b, &query).await;
    assert_eq!((seqs(&first), first.has_more, first.next_cursor), (vec![1, 2, 3], true, Some(3)));
    assert_eq!(first.items, all[..3]);
    let second = page(b, &query.next_page(&first).unwrap()).await;
    assert_eq!((seqs(&second), second.has_more), (vec![4, 5, 6], true));
    let third = page(b, &query.next_page(&second).unwrap()).await;
    assert_eq!((seqs(&third), third.has_more, third.next_cursor), (vec![7], false, Some(7)));
    assert!(query.next_page(&third).is_none());
    let exact = page(b, &ListMessages::new(id.clone()).with_limit(7)).await;
    assert_eq!((exact.items.len(), exact.has_more), (7, false), "has_more is false when the page ends the thread");
    store.finish().await
}

/// Descending pages walk from the newest message back.
pub async fn check_list_pages_descending<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    let id = t("pages-desc");
    fill(b, &id, 5).await;
    let query = ListMessages::new(id.clone()).with_limit(2).with_order(Order::Desc);
    let first = page(b, &query).await;
    assert_eq!((seqs(&first), first.has_more), (vec![5, 4], true));
    let second = page(b, &query.next_page(&first).unwrap()).await;
    assert_eq!((seqs(&second), second.has_more), (vec![3, 2], true));
    let third = page(b, &query.next_page(&second).unwrap()).await;
    assert_eq!((seqs(&third), third.has_more), (vec![1], false));
    store.finish().await
}

/// Placeholders are left out of listings unless asked for, and paging skips them cleanly.
pub async fn check_list_excludes_reserved_unless_asked<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    let id = t("reserved-listing");
    add_text(b, &id, "1").await;
    written(b, Reserve::new(id.clone(), Role::Assistant)).await;
    written(b, Reserve::new(id.clone(), Role::Assistant)).await;
    add_text(b, &id, "4").await;
    add_text(b, &id, "5").await;
    let visible = page(b, &ListMessages::new(id.clone()).with_limit(2)).await;
    assert_eq!((seqs(&visible), visible.has_more), (vec![1, 4], true));
    let rest = page(b, &ListMessages::new(id.clone()).with_limit(2).next_page(&visible).unwrap()).await;
    assert_eq!((seqs(&rest), rest.has_more), (vec![5], false));
    let everything = page(b, &ListMessages::new(id.clone()).include_reserved(true)).await;
    assert_eq!(seqs(&everything), vec![1, 2, 3, 4, 5]);
    let only_reserved_left = page(b, &ListMessages::new(id.clone()).after(1).before(4)).await;
    assert!(only_reserved_left.items.is_empty() && !only_reserved_left.has_more);
    store.finish().await
}

/// `after` and `before` bound the listing exclusively, in both orders.
pub async fn check_list_respects_both_bounds<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    let id = t("bounds");
    fill(b, &id, 8).await;
    let asc = page(b, &ListMessages::new(id.clone()).after(2).before(6)).await;
    assert_eq!((seqs(&asc), asc.has_more), (vec![3, 4, 5], false));
    let desc = page(b, &ListMessages::new(id.clone()).after(2).before(6).with_order(Order::Desc)).await;
    assert_eq!(seqs(&desc), vec![5, 4, 3]);
    let limited = page(b, &ListMessages::new(id.clone()).after(2).before(6).with_limit(2)).await;
    assert_eq!((seqs(&limited), limited.has_more), (vec![3, 4], true));
    let empty = page(b, &ListMessages::new(id.clone()).after(5).before(5)).await;
    assert!(empty.items.is_empty() && !empty.has_more);
    let beyond = page(b, &ListMessages::new(id.clone()).after(100)).await;
    assert!(beyond.items.is_empty() && !beyond.has_more && beyond.next_cursor.is_none());
    store.finish().await
}

/// Paging ascending while another task appends never duplicates or skips a message.
pub async fn check_pagination_is_stable_under_concurrent_adds<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let id = t("moving");
    fill(store.b().as_ref(), &id, 20).await;
    let writer = {
        let (b, id) = (Arc::clone(store.b()), id.clone());
        tokio::spawn(async move {
            for i in 0..40 {
                add_text(b.as_ref(), &id, &format!("late {i}")).await;
                tokio::task::yield_now().await;
            }
        })
    };
    let b = store.b().as_ref();
    let mut seen = Vec::new();
    let mut query = ListMessages::new(id.clone()).with_limit(4);
    loop {
        let p = page(b, &query).await;
        seen.extend(seqs(&p));
        match query.next_page(&p) {
            Some(next) => query = next,
            None => break,
        }
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
    // Resume from where the scan stopped: the rest appears exactly once.
    let mut query = match seen.last() {
        Some(&last) => ListMessages::new(id.clone()).with_limit(4).after(last),
        None => ListMessages::new(id.clone()).with_limit(4),
    };
    loop {
        let p = page(b, &query).await;
        seen.extend(seqs(&p));
        match query.next_page(&p) {
            Some(next) => query = next,
            None => break,
        }
    }
    assert_eq!(seen, (1..=60).collect::<Vec<u64>>(), "no duplicate, no skip, in order");
    store.finish().await
}

/// Listing a thread that does not exist is an empty page, not an error.
pub async fn check_list_of_missing_thread_is_empty<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let p = page(store.b().as_ref(), &ListMessages::new(t("nothing-here"))).await;
    assert!(p.items.is_empty() && !p.has_more && p.next_cursor.is_none());
    store.finish().await
}
