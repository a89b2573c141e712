//! Listing a thread by seq: cursors both ways, `has_more`, placeholders, roles, stability.

use std::sync::Arc;

use persist_core::args::{Add, Reserve};
use persist_core::read::ListMessages;
use persist_core::{Backend, Content, Message, Order, Page, PersistError, Role, ThreadId};

use crate::fixture::{add_text, assert_err, t, written};
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

/// Every page of `query`, followed to the end: the seqs listed. A page that says more follow is
/// full (a filter is applied inside the store's query, never to a page already read).
pub(crate) async fn listed<B: Backend>(b: &B, query: ListMessages) -> Vec<u64> {
    let mut query = query;
    let mut seqs = Vec::new();
    loop {
        let p = b.list(query.clone()).await.expect("list");
        assert!(!p.has_more || p.items.len() == query.limit as usize, "a page short of its limit says more follow");
        seqs.extend(p.items.iter().map(|m| m.seq));
        match query.next_page(&p) {
            Some(next) => query = next,
            None => return seqs,
        }
    }
}

/// A listing of some roles lists only their messages, compared by name (a custom role too),
/// inside the store's query: pages are full, `has_more` and cursors right in both orders, with
/// bounds and with placeholders; a role no message has lists nothing, no roles lists every one,
/// and a role no message can have is refused naming `roles`.
pub async fn check_list_filters_by_role<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    let id = t("roles-listing");
    let critic = Role::new("critic").unwrap();
    let say = |role: Role, text: &str| Add::new(id.clone(), role, Content::text(text));
    written(b, say(Role::System, "s1")).await; // 1
    written(b, say(Role::User, "u1")).await; // 2
    written(b, say(Role::Assistant, "a1")).await; // 3
    written(b, Reserve::new(id.clone(), Role::Assistant)).await; // 4, reserved
    written(b, say(Role::Tool, "t1")).await; // 5
    written(b, say(Role::System, "s2")).await; // 6
    written(b, say(Role::User, "u2")).await; // 7
    written(b, say(critic.clone(), "c1")).await; // 8
    written(b, say(Role::System, "s3")).await; // 9
    written(b, say(Role::Assistant, "a2")).await; // 10
    let all = b.list(ListMessages::new(id.clone())).await.expect("list").items;
    let of = |roles: &[Role]| ListMessages::new(id.clone()).with_roles(roles.iter().cloned());

    // Alone: the messages themselves, as an unfiltered listing reads them.
    let system = page(b, &of(&[Role::System])).await;
    assert_eq!((seqs(&system), system.has_more, system.next_cursor), (vec![1, 6, 9], false, Some(9)));
    let expected: Vec<&Message> = all.iter().filter(|m| m.role == Role::System).collect();
    assert_eq!(system.items.iter().collect::<Vec<_>>(), expected, "the messages, as listed without a filter");
    assert_eq!(listed(b, of(&[Role::System, Role::Assistant])).await, [1, 3, 6, 9, 10]);
    assert_eq!(listed(b, of(&[Role::Tool])).await, [5]);
    assert_eq!(listed(b, of(std::slice::from_ref(&critic))).await, [8], "a custom role");
    assert_eq!(listed(b, of(&[Role::new("Critic").unwrap()])).await, Vec::<u64>::new(), "names compare exactly");
    let none = page(b, &of(&[Role::new("nobody").unwrap()])).await;
    assert!(none.items.is_empty() && !none.has_more && none.next_cursor.is_none(), "a role no message has");
    assert_eq!(listed(b, of(&[])).await, [1, 2, 3, 5, 6, 7, 8, 9, 10], "no roles: every role");

    // Paging, both orders: full pages, cursors past what the filter left out.
    let both = of(&[Role::System, Role::Assistant]).with_limit(2);
    let first = page(b, &both).await;
    assert_eq!((seqs(&first), first.has_more, first.next_cursor), (vec![1, 3], true, Some(3)));
    let second = page(b, &both.next_page(&first).unwrap()).await;
    assert_eq!((seqs(&second), second.has_more), (vec![6, 9], true));
    let third = page(b, &both.next_page(&second).unwrap()).await;
    assert_eq!((seqs(&third), third.has_more), (vec![10], false));
    let down = both.clone().with_order(Order::Desc);
    let first = page(b, &down).await;
    assert_eq!((seqs(&first), first.has_more, first.next_cursor), (vec![10, 9], true, Some(9)));
    let second = page(b, &down.next_page(&first).unwrap()).await;
    assert_eq!((seqs(&second), second.has_more), (vec![6, 3], true));
    let third = page(b, &down.next_page(&second).unwrap()).await;
    assert_eq!((seqs(&third), third.has_more), (vec![1], false));
    for limit in [1, 3, 4] {
        let query = of(&[Role::System]).with_limit(limit);
        assert_eq!(listed(b, query.clone()).await, [1, 6, 9], "limit {limit}");
        assert_eq!(listed(b, query.with_order(Order::Desc)).await, [9, 6, 1], "limit {limit}, descending");
    }
    let exact = page(b, &of(&[Role::System]).with_limit(3)).await;
    assert!(!exact.has_more, "has_more is false when no message of the roles follows");

    // Bounds.
    assert_eq!(listed(b, of(&[Role::System]).after(1).before(9)).await, [6]);
    assert_eq!(listed(b, of(&[Role::System]).before(10).with_order(Order::Desc)).await, [9, 6, 1]);
    assert_eq!(listed(b, of(&[Role::System]).after(9)).await, Vec::<u64>::new());

    // Placeholders: left out unless asked for, as in any listing.
    assert_eq!(listed(b, of(&[Role::Assistant])).await, [3, 10]);
    let reserved = of(&[Role::Assistant]).include_reserved(true);
    assert_eq!(listed(b, reserved.clone()).await, [3, 4, 10]);
    assert_eq!(listed(b, reserved.with_limit(1).with_order(Order::Desc)).await, [10, 4, 3]);
    assert_eq!(listed(b, of(&[Role::User]).include_reserved(true)).await, [2, 7]);

    let refused = b.list(of(&[Role::Other("".into())])).await;
    assert_err!(refused, PersistError::InvalidInput { field: "roles", .. });
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
