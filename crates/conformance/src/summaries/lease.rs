//! Leases (gated on `summaries`): what keeps two compactions of one thread from running at
//! once, with one holder at a time, per tenant, gone with a deleted thread.

use std::sync::Arc;
use std::time::Duration;

use persist_core::Backend;
use persist_core::args::Delete;
use persist_core::lease::{Lease, Leased};
use tokio::sync::Barrier;

use crate::fixture::{add_text, ctx, gate, t, tenant, write};
use crate::{Factory, Outcome};

/// A lease has one holder at a time: taken, it is refused to another (who learns who holds it
/// and until when) and renewed by its holder; given up by its holder only; taken over once
/// expired; racing takers through two handles get one holder; leases are per tenant and
/// vanish with a deleted thread.
pub async fn check_a_lease_has_one_holder_at_a_time<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, summaries, branches);
    let handles = store.racing_handles().await;
    let b = store.b();
    let id = t("leased");
    let minute = Duration::from_secs(60);
    let take = |holder: &str, ttl| Lease::take(id.clone(), "compaction", holder, ttl).unwrap();
    let held_by = |answer: &Option<Leased>| answer.as_ref().map(|held| held.holder.clone());
    let a = b.lease(take("a", minute)).await.expect("take");
    assert_eq!(held_by(&a), Some("a".into()));
    let refused = b.lease(take("b", minute)).await.expect("refused");
    assert_eq!(refused, a, "b learns a holds it, until when");
    let renewed = b.lease(take("a", minute)).await.expect("renew");
    assert!(renewed.as_ref().unwrap().expires_at >= a.as_ref().unwrap().expires_at);
    let not_theirs = b.lease(Lease::give_up(id.clone(), "compaction", "b").unwrap()).await.expect("b gives up");
    assert_eq!(held_by(&not_theirs), Some("a".into()), "only its holder gives it up");
    assert_eq!(b.lease(Lease::give_up(id.clone(), "compaction", "a").unwrap()).await.expect("give up"), None);
    let short = b.lease(take("c", Duration::from_millis(1))).await.expect("a short lease");
    assert_eq!(held_by(&short), Some("c".into()));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(held_by(&b.lease(take("d", minute)).await.expect("take over")), Some("d".into()), "c's expired");
    let other_name = Lease::take(id.clone(), "another", "e", minute).unwrap();
    assert_eq!(held_by(&b.lease(other_name).await.expect("another name")), Some("e".into()));
    let elsewhere = take("f", minute).with_context(ctx(Some(&tenant("acme"))));
    assert_eq!(held_by(&b.lease(elsewhere).await.expect("another tenant")), Some("f".into()));

    let raced = t("leased-race");
    let barrier = Arc::new(Barrier::new(handles.len().max(2)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..handles.len().max(2) {
        let (h, raced, barrier) = (Arc::clone(&handles[i % handles.len()]), raced.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let holder = format!("racer-{i}");
            let answer = h.lease(Lease::take(raced, "compaction", holder.clone(), minute).unwrap()).await.unwrap();
            (holder, answer)
        });
    }
    let answers = tasks.join_all().await;
    let winners: Vec<_> = answers.iter().filter(|(holder, answer)| held_by(answer).as_ref() == Some(holder)).collect();
    assert_eq!(winners.len(), 1, "one holder: {answers:?}");
    assert!(answers.iter().all(|(_, answer)| held_by(answer) == Some(winners[0].0.clone())), "all see it");

    add_text(b.as_ref(), &id, "m").await;
    write(b, Delete::thread(id.clone())).await.expect("delete");
    assert_eq!(held_by(&b.lease(take("g", minute)).await.expect("after the delete")), Some("g".into()));
    store.finish().await
}
