//! Compaction stored as data (gated on `summaries`): a summary covers a range of its thread and
//! never moves a message, the compacted read answers the latest summary of a branch and what
//! follows it, the same range written twice is one summary, range rules refuse what cannot be
//! summarized, retention of covered messages keeps the compacted read as it was, truncations
//! and thread deletes take summaries along, summaries racing appends through two handles lose
//! nothing, another tenant's thread answers as an absent one, leases have one holder at a
//! time, a fork carries summaries, and a summary is replaced in place. A compaction run over
//! these is checked in [`compaction_run`](crate::compaction_run).

use std::sync::Arc;

use persist_core::args::{Delete, Reserve, Restore, UpdateContent};
use persist_core::branch::Branch;
use persist_core::feed::ReadFeed;
use persist_core::summary::{Compacted, ListSummaries, ReadCompacted, Summarize, Summarized, Summary};
use persist_core::{Backend, Content, PersistError, PersistOp, PersistResult, Role, TenantId, ThreadId};
use persist_ops::PipelineExt;
use tokio::sync::Barrier;

use crate::branches::reply_to;
use crate::fixture::{
    add_text, all_messages, assert_err, ctx, gate, t, tenant, text_add, thread, thread_in, write, written,
};
use crate::{Factory, Outcome};

mod lease;

pub use self::lease::check_a_lease_has_one_holder_at_a_time;

pub(crate) async fn summarize<B: Backend>(b: &B, request: Summarize) -> persist_core::Result<Summarized> {
    match write(b, request).await? {
        PersistResult::Summarized(written) => Ok(written),
        other => panic!("summarize answered {other:?}"),
    }
}

/// The ids a delete answered.
fn removed(result: PersistResult) -> Vec<persist_core::MessageId> {
    match result {
        PersistResult::Deleted(deleted) => deleted.message_ids,
        other => panic!("a delete answered {other:?}"),
    }
}

/// The id of the message at `seq` among `messages`.
fn id_at(messages: &[persist_core::Message], seq: u64) -> persist_core::MessageId {
    messages.iter().find(|m| m.seq == seq).map(|m| m.id.clone()).unwrap_or_else(|| panic!("no message at {seq}"))
}

pub(crate) fn summary_of(thread: &ThreadId, through: u64, text: &str) -> Summarize {
    Summarize::new(thread.clone(), through, Content::text(text))
}

/// Adds messages to `thread` until its last seq is `last`.
async fn fill_to<B: Backend>(b: &B, thread: &ThreadId, last: u64) {
    let from = crate::fixture::thread(b, thread).await.map_or(0, |t| t.last_seq);
    for seq in from + 1..=last {
        add_text(b, thread, &format!("m{seq}")).await;
    }
}

async fn compacted<B: Backend>(b: &B, thread: &ThreadId) -> Compacted {
    b.compacted(ReadCompacted::new(thread.clone())).await.expect("the compacted read")
}

/// The seqs a compacted read answers, and where its summary ends.
fn shape(found: &Compacted) -> (Option<u64>, Vec<u64>) {
    (found.summary.as_ref().map(|s| s.through_seq), found.messages.iter().map(|m| m.seq).collect())
}

async fn summaries_of<B: Backend>(b: &B, tenant: Option<&TenantId>, thread: &ThreadId) -> Vec<Summary> {
    let mut query = ListSummaries::new(thread.clone()).with_limit(2).with_context(ctx(tenant));
    let mut found = Vec::new();
    loop {
        let page = b.summaries(query.clone()).await.expect("list summaries");
        found.extend(page.items.iter().cloned());
        match query.next_page(&page) {
            Some(next) => query = next,
            None => return found,
        }
    }
}

/// A summary is a record of its thread: written, it answers its range and content, lists by
/// its last message, leaves every message where it was (same seqs, same versions, the thread's
/// version and counters unmoved), and the compacted read answers it with the messages after it;
/// a store with a feed announces it (op `summarize`, its last message's seq).
pub async fn check_a_summary_stands_for_its_range_and_moves_nothing<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, summaries, branches);
    let b = store.b();
    let id = t("summarized");
    for i in 1..=5 {
        add_text(b.as_ref(), &id, &format!("m{i}")).await;
    }
    assert_eq!(shape(&compacted(b.as_ref(), &id).await), (None, vec![1, 2, 3, 4, 5]), "no summary: every message");
    let before = (all_messages(b, &id).await, thread(b, &id).await.unwrap());
    let head = match store.caps().feed {
        true => Some(b.read_feed(ReadFeed::across_tenants()).await.expect("the feed's head").head),
        false => None,
    };
    let written = summarize(b.as_ref(), summary_of(&id, 3, "1 to 3")).await.expect("summarize");
    assert!(!written.deduplicated);
    assert_eq!((written.summary.from_seq, written.summary.through_seq), (1, 3));
    assert_eq!(written.summary.content, Content::text("1 to 3"));
    let after = (all_messages(b, &id).await, thread(b, &id).await.unwrap());
    assert_eq!(after.0, before.0, "every message stays as it was");
    assert_eq!(
        (after.1.version, after.1.message_count, after.1.last_seq, after.1.updated_at),
        (before.1.version, before.1.message_count, before.1.last_seq, before.1.updated_at),
        "the thread is not written"
    );
    let found = compacted(b.as_ref(), &id).await;
    assert_eq!(shape(&found), (Some(3), vec![4, 5]));
    assert_eq!(found.summary.as_ref().map(|s| &s.content), Some(&Content::text("1 to 3")));
    let later = summarize(b.as_ref(), summary_of(&id, 4, "1 to 4").from_seq(2)).await.expect("a later window");
    assert_eq!(later.summary.from_seq, 2);
    assert_eq!(shape(&compacted(b.as_ref(), &id).await), (Some(4), vec![5]), "the latest summary is read");
    let listed: Vec<_> =
        summaries_of(b.as_ref(), None, &id).await.iter().map(|s| (s.from_seq, s.through_seq)).collect();
    assert_eq!(listed, [(1, 3), (2, 4)]);
    if let Some(head) = head {
        let page = b.read_feed(ReadFeed::thread(id.clone()).after(head)).await.expect("the feed");
        let seen: Vec<_> =
            page.events.iter().map(|e| (e.change.op, e.change.seq, e.change.message_id.clone())).collect();
        assert_eq!(seen, [(PersistOp::Summarize, Some(3), None), (PersistOp::Summarize, Some(4), None)]);
    }
    store.finish().await
}

/// The same range written again is the one summary stored (answered `deduplicated`, the first
/// content kept, no second feed event); another range ending at the same message is refused.
pub async fn check_the_same_range_twice_is_one_summary<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, summaries, branches);
    let b = store.b();
    let id = t("summarized-twice");
    for i in 1..=4 {
        add_text(b.as_ref(), &id, &format!("m{i}")).await;
    }
    let first = summarize(b.as_ref(), summary_of(&id, 3, "first words")).await.expect("summarize");
    let again = summarize(b.as_ref(), summary_of(&id, 3, "other words")).await.expect("the same range again");
    assert!(again.deduplicated);
    assert_eq!(again.summary, first.summary, "the first one stays");
    assert_err!(
        summarize(b.as_ref(), summary_of(&id, 3, "a window").from_seq(2)).await,
        PersistError::InvalidInput { field: "from_seq", .. }
    );
    assert_eq!(summaries_of(b.as_ref(), None, &id).await, [first.summary]);
    store.finish().await
}

/// What cannot be summarized is refused with `InvalidInput` and nothing written: a range
/// whose bounds are out of order or zero, an empty content, a last message the thread lacks
/// (an absent thread is not created), a range holding a reply still being written (a
/// placeholder after the range is fine); a deleted thread is `ThreadDeleted`.
pub async fn check_range_rules<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, summaries, branches);
    let b = store.b();
    let id = t("ranges");
    for i in 1..=3 {
        add_text(b.as_ref(), &id, &format!("m{i}")).await;
    }
    let streaming = written(b, Reserve::new(id.clone(), Role::Assistant)).await; // 4
    add_text(b.as_ref(), &id, "m5").await;
    let invalid = |r: persist_core::Result<Summarized>| matches!(r, Err(PersistError::InvalidInput { .. }));
    assert!(invalid(summarize(b.as_ref(), summary_of(&id, 2, "s").from_seq(3)).await), "from after through");
    assert!(invalid(summarize(b.as_ref(), summary_of(&id, 0, "s")).await), "seq 0");
    assert!(invalid(summarize(b.as_ref(), Summarize::new(id.clone(), 2, Content::placeholder())).await), "empty");
    assert!(invalid(summarize(b.as_ref(), summary_of(&id, 9, "s")).await), "no message at 9");
    assert!(invalid(summarize(b.as_ref(), summary_of(&id, 5, "s")).await), "4 is still being written");
    assert!(invalid(summarize(b.as_ref(), summary_of(&id, 4, "s")).await), "4 is still being written");
    let absent = t("ranges-absent");
    assert!(invalid(summarize(b.as_ref(), summary_of(&absent, 1, "s")).await), "an absent thread");
    assert!(thread(b, &absent).await.is_none(), "not created");
    assert!(summaries_of(b.as_ref(), None, &id).await.is_empty(), "nothing written");
    summarize(b.as_ref(), summary_of(&id, 3, "before the placeholder")).await.expect("a range before it");
    let finished = UpdateContent::new(id.clone(), streaming.id.clone(), Content::text("done"));
    write(b, finished).await.expect("finish the reply");
    summarize(b.as_ref(), summary_of(&id, 5, "all")).await.expect("settled now");
    write(b, Delete::thread(id.clone())).await.expect("delete the thread");
    assert_err!(summarize(b.as_ref(), summary_of(&id, 5, "s")).await, PersistError::ThreadDeleted { .. });
    store.finish().await
}

/// On a tree, the compacted read of a branch answers the latest summary whose last message is
/// on it and the branch's messages after it: a summary of another branch is not read, and a
/// branch named by its last message is read the same way.
pub async fn check_the_compacted_read_follows_the_branch<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, summaries, branches);
    let b = store.b();
    let id = t("summarized-tree");
    let question = add_text(b.as_ref(), &id, "q").await; // 1
    add_text(b.as_ref(), &id, "a1").await; // 2
    let old_end = add_text(b.as_ref(), &id, "u2").await; // 3
    summarize(b.as_ref(), summary_of(&id, 1, "the question")).await.expect("summary at 1");
    summarize(b.as_ref(), summary_of(&id, 3, "q, a1, u2")).await.expect("summary at 3");
    let regenerated = written(b, reply_to(&id, &question, "a2")).await; // 4, active: 1, 4
    add_text(b.as_ref(), &id, "u3").await; // 5
    assert_eq!(shape(&compacted(b.as_ref(), &id).await), (Some(1), vec![4, 5]), "the summary at 3 is another branch's");
    let old = b
        .compacted(ReadCompacted::new(id.clone()).on_branch(Branch::EndingAt(old_end.id.clone())))
        .await
        .expect("the old branch");
    assert_eq!(shape(&old), (Some(3), vec![]));
    summarize(b.as_ref(), summary_of(&id, 4, "q, a2")).await.expect("summary at 4");
    assert_eq!(shape(&compacted(b.as_ref(), &id).await), (Some(4), vec![5]));
    let through_regenerated = ReadCompacted::new(id.clone()).on_branch(Branch::EndingAt(regenerated.id.clone()));
    assert_eq!(shape(&b.compacted(through_regenerated).await.expect("read")), (Some(4), vec![]));
    let unknown = ReadCompacted::new(id.clone()).on_branch(Branch::EndingAt(crate::fixture::m("nowhere")));
    assert_err!(b.compacted(unknown).await, PersistError::NotFound { .. });
    assert_eq!(compacted(b.as_ref(), &t("summarized-nowhere")).await, Compacted::default(), "an absent thread");
    store.finish().await
}

/// Retention of covered messages (`Delete::covered`) removes every message up to the latest
/// summary of the active branch but its last message, on every branch, keeps the summaries, and
/// the compacted read answers what it did; the thread goes on (appends follow the active leaf,
/// a later summary and retention work the same), and `keep_latest` retention keeps summaries
/// too. A thread without a summary loses nothing.
pub async fn check_retention_of_covered_messages_keeps_the_compacted_read<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, summaries, branches);
    let b = store.b();
    let id = t("covered");
    let first = add_text(b.as_ref(), &id, "m1").await;
    for i in 2..=4 {
        add_text(b.as_ref(), &id, &format!("m{i}")).await;
    }
    assert!(removed(write(b, Delete::covered(id.clone())).await.expect("nothing covered")).is_empty());
    written(b, reply_to(&id, &first, "an alternative")).await; // 5, a branch: 1, 5
    let back = persist_core::args::Update::thread(id.clone())
        .with_switch(persist_core::branch::Switch::To(id_at(&all_messages(b, &id).await, 4)));
    write(b, back).await.expect("back to the line");
    add_text(b.as_ref(), &id, "m6").await; // 6 after 4
    summarize(b.as_ref(), summary_of(&id, 3, "m1 to m3")).await.expect("summarize");
    let before = compacted(b.as_ref(), &id).await;
    assert_eq!(shape(&before), (Some(3), vec![4, 6]));
    let version = thread(b, &id).await.unwrap().version;
    let gone = removed(write(b, Delete::covered(id.clone())).await.expect("retention"));
    assert_eq!(gone.len(), 3, "seqs 1 to 3 go: {gone:?}");
    let left: Vec<_> = all_messages(b, &id).await.iter().map(|m| m.seq).collect();
    assert_eq!(left, [4, 5, 6], "the alternative written after the summary's end stays");
    let after = thread(b, &id).await.unwrap();
    assert_eq!((after.message_count, after.version), (3, version + 1));
    assert_eq!(compacted(b.as_ref(), &id).await, before, "the compacted read answers what it did");
    let alternative =
        b.compacted(ReadCompacted::new(id.clone()).on_branch(Branch::EndingAt(id_at(&all_messages(b, &id).await, 5))));
    assert_eq!(shape(&alternative.await.expect("the other branch")), (None, vec![5]), "not through 3");
    add_text(b.as_ref(), &id, "m7").await; // 7
    summarize(b.as_ref(), summary_of(&id, 6, "m1 to m6")).await.expect("a later summary");
    write(b, Delete::covered(id.clone())).await.expect("retention again");
    let left: Vec<_> = all_messages(b, &id).await.iter().map(|m| m.seq).collect();
    assert_eq!(left, [7]);
    assert_eq!(shape(&compacted(b.as_ref(), &id).await), (Some(6), vec![7]));
    let through: Vec<_> = summaries_of(b.as_ref(), None, &id).await.iter().map(|s| s.through_seq).collect();
    assert_eq!(through, [6], "the summary read stays; the older one went with what it covered");
    // The active leaf itself is never removed.
    summarize(b.as_ref(), summary_of(&id, 7, "everything")).await.expect("a summary of everything");
    write(b, Delete::covered(id.clone())).await.expect("retention of everything");
    assert_eq!(all_messages(b, &id).await.iter().map(|m| m.seq).collect::<Vec<_>>(), [7]);
    assert_eq!(shape(&compacted(b.as_ref(), &id).await), (Some(7), vec![]));
    let next = add_text(b.as_ref(), &id, "m8").await;
    assert_eq!(next.parent_seq, Some(7));
    assert_eq!(shape(&compacted(b.as_ref(), &id).await), (Some(7), vec![8]));
    // Deleting the oldest message leaves what follows it following it, as history; deleting
    // a leaf whose parent is history ends the active branch at a message (here: none is left).
    let seventh = id_at(&all_messages(b, &id).await, 7);
    write(b, Delete::message(id.clone(), seventh)).await.expect("delete the oldest");
    assert_eq!(all_messages(b, &id).await.iter().map(|m| (m.seq, m.parent_seq)).collect::<Vec<_>>(), [(8, Some(7))]);
    assert_eq!(shape(&compacted(b.as_ref(), &id).await), (Some(7), vec![8]));
    write(b, Delete::message(id.clone(), next.id.clone())).await.expect("delete the last");
    assert_eq!(thread(b, &id).await.unwrap().active_leaf, None, "no message left to end at");

    // keep_latest retention (the oldest messages deleted one by one) leaves summaries, even one
    // whose last message went: what is left follows it as history.
    let kept = t("covered-keep-latest");
    for i in 1..=6 {
        add_text(b.as_ref(), &kept, &format!("m{i}")).await;
    }
    summarize(b.as_ref(), summary_of(&kept, 4, "m1 to m4")).await.expect("summarize");
    let pipeline = persist_core::Pipeline::new(Arc::clone(b));
    pipeline.prune(persist_ops::lifecycle::Prune::new().with_keep_latest(2)).await.expect("prune");
    let left = all_messages(b, &kept).await;
    assert_eq!(left.iter().map(|m| (m.seq, m.parent_seq)).collect::<Vec<_>>(), [(5, Some(4)), (6, Some(5))]);
    assert_eq!(shape(&compacted(b.as_ref(), &kept).await), (Some(4), vec![5, 6]));
    // Store-wide retention of covered messages: a dry run counts, the run removes.
    fill_to(b.as_ref(), &kept, 9).await;
    summarize(b.as_ref(), summary_of(&kept, 8, "m1 to m8")).await.expect("summarize");
    let rule = persist_ops::lifecycle::Prune::new().with_covered(true);
    let dry = pipeline.prune(rule.clone().dry_run(true)).await.expect("a dry run");
    assert_eq!(all_messages(b, &kept).await.len(), 5, "a dry run deletes nothing");
    let done = pipeline.prune(rule).await.expect("prune covered");
    assert_eq!(done.deleted_messages, dry.deleted_messages);
    // With keep_latest too: the dry run counts each message once, as the run deletes it.
    let both = t("covered-and-latest");
    fill_to(b.as_ref(), &both, 10).await;
    summarize(b.as_ref(), summary_of(&both, 8, "m1 to m8")).await.expect("summarize");
    let rule = persist_ops::lifecycle::Prune::new().with_covered(true).with_keep_latest(3).only_tenant(None);
    let dry = pipeline.prune(rule.clone().dry_run(true)).await.expect("a dry run");
    let done = pipeline.prune(rule).await.expect("prune both");
    assert_eq!((dry.deleted_messages, done.deleted_messages), (8, 8));
    assert_eq!(all_messages(b, &kept).await.iter().map(|m| m.seq).collect::<Vec<_>>(), [9]);
    assert_eq!(shape(&compacted(b.as_ref(), &kept).await), (Some(8), vec![9]));
    // A summary can end in that history too (an import of what retention left).
    let history = summarize(b.as_ref(), summary_of(&kept, 3, "m1 to m3")).await.expect("a summary of history");
    assert_eq!(history.summary.through_seq, 3);
    assert!(matches!(summarize(b.as_ref(), summary_of(&kept, 10, "s")).await, Err(PersistError::InvalidInput { .. })));
    store.finish().await
}

/// A truncation removes the summaries reaching past its cut (the others stay and are read), a
/// thread delete removes every summary of the thread, and a restore of messages whose parent
/// is history removed before the thread's oldest message is accepted (an export after
/// `Delete::covered` imports), where a parent in a gap is refused.
pub async fn check_truncations_and_deletes_take_summaries_along<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, summaries, branches);
    let b = store.b();
    let id = t("summaries-cut");
    for i in 1..=5 {
        add_text(b.as_ref(), &id, &format!("m{i}")).await;
    }
    summarize(b.as_ref(), summary_of(&id, 2, "to 2")).await.expect("at 2");
    summarize(b.as_ref(), summary_of(&id, 4, "to 4")).await.expect("at 4");
    write(b, Delete::after(id.clone(), 3)).await.expect("truncate");
    let through: Vec<_> = summaries_of(b.as_ref(), None, &id).await.iter().map(|s| s.through_seq).collect();
    assert_eq!(through, [2]);
    assert_eq!(shape(&compacted(b.as_ref(), &id).await), (Some(2), vec![3]));
    write(b, Delete::thread(id.clone())).await.expect("delete");
    assert!(summaries_of(b.as_ref(), None, &id).await.is_empty());

    // A truncation whose active leaf follows history ends the active branch at the thread's
    // last message kept, on every backend.
    let cut = t("history-cut");
    let first = add_text(b.as_ref(), &cut, "m1").await;
    let second = add_text(b.as_ref(), &cut, "m2").await;
    let third = add_text(b.as_ref(), &cut, "m3").await; // after 2
    add_text(b.as_ref(), &cut, "m4").await; // after 3
    written(b, reply_to(&cut, &second, "m5")).await; // after 2
    written(b, reply_to(&cut, &third, "m6")).await; // after 3, active
    let fifth = id_at(&all_messages(b, &cut).await, 5);
    let back = persist_core::args::Update::thread(cut.clone()).with_switch(persist_core::branch::Switch::To(fifth));
    write(b, back).await.expect("back to 5");
    write(b, Delete::message(cut.clone(), first.id.clone())).await.expect("delete the oldest");
    write(b, Delete::message(cut.clone(), second.id.clone())).await.expect("delete the oldest again");
    let tree: Vec<_> = all_messages(b, &cut).await.iter().map(|m| (m.seq, m.parent_seq)).collect();
    assert_eq!(tree, [(3, Some(2)), (4, Some(3)), (5, Some(2)), (6, Some(3))], "history kept");
    write(b, Delete::after(cut.clone(), 4)).await.expect("truncate");
    assert_eq!(thread(b, &cut).await.unwrap().active_leaf, Some(4), "the last message kept");

    if store.caps().restore {
        let source = t("summaries-exported");
        for i in 1..=4 {
            add_text(b.as_ref(), &source, &format!("m{i}")).await;
        }
        summarize(b.as_ref(), summary_of(&source, 2, "to 2")).await.expect("at 2");
        write(b, Delete::covered(source.clone())).await.expect("retention");
        let messages = all_messages(b, &source).await;
        assert_eq!(messages.first().map(|m| (m.seq, m.parent_seq)), Some((3, Some(2))), "history before 3");
        let source_thread = thread(b, &source).await.unwrap();
        let into = |copy: &ThreadId, messages: &[persist_core::Message]| {
            let moved = messages.iter().map(|m| persist_core::Message { thread_id: copy.clone(), ..m.clone() });
            Restore::new(persist_core::Thread { id: copy.clone(), ..source_thread.clone() }, moved.collect())
        };
        let copy = t("summaries-imported");
        write(b, into(&copy, &messages)).await.expect("a restore of history removed before its oldest message");
        assert_eq!(all_messages(b, &copy).await.len(), 2);
        let gap = t("summaries-gap");
        // 2 (after history), then 4 naming 3: a gap, not history before the oldest message.
        let mut with_gap = messages.clone();
        (with_gap[0].seq, with_gap[0].parent_seq) = (2, Some(1));
        (with_gap[1].seq, with_gap[1].parent_seq) = (4, Some(3));
        assert_err!(write(b, into(&gap, &with_gap)).await, PersistError::InvalidInput { field: "parent_seq", .. });
    }
    store.finish().await
}

/// Summaries written through one handle while another appends to the thread: every write
/// lands, every summary's last message is a message of the thread, and the compacted read
/// answers the latest summary and every message after it.
pub async fn check_summaries_racing_appends_through_two_handles<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, summaries, branches);
    let handles = store.racing_handles().await;
    let b = store.b();
    let id = t("summaries-racing");
    add_text(b.as_ref(), &id, "m0").await;
    let barrier = Arc::new(Barrier::new(2));
    let (writer, compactor) = (Arc::clone(&handles[0]), Arc::clone(&handles[handles.len() - 1]));
    let appending = {
        let (id, barrier) = (id.clone(), barrier.clone());
        tokio::spawn(async move {
            barrier.wait().await;
            for i in 1..=30 {
                written(writer.as_ref(), text_add(&id, &format!("m{i}"))).await;
            }
        })
    };
    barrier.wait().await;
    let mut ends = Vec::new();
    for _ in 0..10 {
        let leaf = thread(compactor.as_ref(), &id).await.unwrap().active_leaf.unwrap();
        let written = summarize(compactor.as_ref(), summary_of(&id, leaf, &format!("to {leaf}"))).await;
        ends.push(written.expect("a summary racing appends").summary.through_seq);
        tokio::task::yield_now().await;
    }
    appending.await.expect("the appends");
    let messages = all_messages(b, &id).await;
    assert_eq!(messages.len(), 31, "no append lost");
    let found = compacted(b.as_ref(), &id).await;
    let latest = ends.iter().copied().max().unwrap();
    assert_eq!(found.summary.as_ref().map(|s| s.through_seq), Some(latest));
    let after: Vec<_> = messages.iter().filter(|m| m.seq > latest).map(|m| m.seq).collect();
    assert_eq!(shape(&found).1, after, "every message after the latest summary");
    store.finish().await
}

/// Summaries are the thread's tenant's: another tenant's thread of the same id has none, its
/// compacted read answers nothing, a summary of a message only the other tenant has is refused
/// as for an absent thread, and `Delete::covered` there removes nothing.
pub async fn check_summaries_are_confined_to_their_tenant<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, summaries, branches);
    let b = store.b();
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let id = t("shared-summary-id");
    for i in 1..=3 {
        written(b, text_add(&id, &format!("m{i}")).with_context(ctx(Some(&acme)))).await;
    }
    summarize(b.as_ref(), summary_of(&id, 2, "acme's").with_context(ctx(Some(&acme)))).await.expect("acme's summary");
    assert!(summaries_of(b.as_ref(), Some(&globex), &id).await.is_empty());
    let theirs = b.compacted(ReadCompacted::new(id.clone()).with_context(ctx(Some(&globex)))).await.unwrap();
    assert_eq!(theirs, Compacted::default());
    assert_err!(
        summarize(b.as_ref(), summary_of(&id, 2, "globex's").with_context(ctx(Some(&globex)))).await,
        PersistError::InvalidInput { .. }
    );
    assert!(thread_in(b, Some(&globex), &id).await.is_none(), "no thread created");
    let covered = write(b, Delete::covered(id.clone()).with_context(ctx(Some(&globex)))).await.unwrap();
    assert!(removed(covered).is_empty());
    assert_eq!(crate::fixture::all_messages_in(b, Some(&acme), &id).await.len(), 3);
    store.finish().await
}

/// A fork carries the summaries of what it copies, their ranges in the new thread's seqs, so
/// its compacted read holds what the source's did: after retention removed what a summary
/// covers too (its range then starts at the first message copied). A fork run again writes
/// none twice; a summary ending past the fork's last seq stays behind.
pub async fn check_a_fork_carries_the_summaries_of_what_it_copies<F: Factory>(factory: &F) -> Outcome {
    use persist_core::args::Delete;
    use persist_ops::lifecycle::Fork;
    let store = crate::fixture::open!(factory);
    gate!(store, summaries, branches);
    let b = store.b();
    let p = persist_core::Pipeline::new(Arc::clone(b));
    let id = t("fork-summarized");
    fill_to(b.as_ref(), &id, 9).await;
    summarize(b.as_ref(), summary_of(&id, 3, "1 to 3")).await.expect("summary");
    summarize(b.as_ref(), summary_of(&id, 6, "2 to 6").from_seq(2)).await.expect("summary");
    summarize(b.as_ref(), summary_of(&id, 8, "1 to 8")).await.expect("summary");
    let whole = t("fork-summarized-7");
    let report = p.fork(Fork::new(id.clone(), whole.clone()).up_to(7)).await.expect("fork");
    assert_eq!((report.copied, report.summaries), (7, 2), "the summary ending at 8 stays behind");
    let ranges: Vec<_> = summaries_of(b.as_ref(), None, &whole)
        .await
        .iter()
        .map(|s| (s.from_seq, s.through_seq, s.content.to_text()))
        .collect();
    assert_eq!(ranges, [(1, 3, "1 to 3".to_owned()), (2, 6, "2 to 6".to_owned())]);
    let read = compacted(b.as_ref(), &whole).await;
    assert_eq!(shape(&read), (Some(6), vec![7]));
    let again = p.fork(Fork::new(id.clone(), whole.clone()).up_to(7)).await.expect("fork again");
    assert_eq!((again.copied, again.summaries), (0, 0), "nothing twice");

    // Retention removed from the start: a summary's range begins at the first message copied.
    let from_five = t("fork-summarized-5");
    fill_to(b.as_ref(), &from_five, 8).await;
    summarize(b.as_ref(), summary_of(&from_five, 6, "1 to 6")).await.expect("summary");
    for message in all_messages(b, &from_five).await.iter().take(4) {
        p.delete(Delete::message(from_five.clone(), message.id.clone())).await.expect("retention of 1 to 4");
    }
    let kept = t("fork-summarized-kept");
    let report = p.fork(Fork::new(from_five.clone(), kept.clone())).await.expect("fork");
    assert_eq!((report.copied, report.summaries, report.summaries_behind), (4, 1, 0), "5 to 8, and 1 to 6");
    let read = compacted(b.as_ref(), &kept).await;
    assert_eq!(shape(&read), (Some(2), vec![3, 4]));
    assert_eq!(read.summary.map(|s| (s.from_seq, s.content)), Some((1, Content::text("1 to 6"))));

    // Retention removed all the latest summary covers, its last message too: no place for it.
    p.delete(Delete::covered(id.clone())).await.expect("retention");
    let report = p.fork(Fork::new(id.clone(), t("fork-summarized-9"))).await.expect("fork");
    assert_eq!((report.copied, report.summaries, report.summaries_behind), (1, 0, 1), "9 alone; 1 to 8 behind");
    store.finish().await
}

/// A summary replaced (`Summarize::replacing`, what a key rotation writes) keeps its range and
/// time and takes the new content and metadata, without a second feed event; a replacement of
/// a range no summary covers is `NotFound`, of another range ending at the same message
/// `InvalidInput`, and neither writes anything.
pub async fn check_a_summary_is_replaced_in_place<F: Factory>(factory: &F) -> Outcome {
    use persist_core::Metadata;
    let store = crate::fixture::open!(factory);
    gate!(store, summaries, branches);
    let b = store.b();
    let id = t("replaced");
    fill_to(b.as_ref(), &id, 4).await;
    let first = summarize(b.as_ref(), summary_of(&id, 3, "before").from_seq(2)).await.expect("summary").summary;
    let head = match store.caps().feed {
        true => Some(b.read_feed(ReadFeed::across_tenants()).await.expect("the feed's head").head),
        false => None,
    };
    let metadata = Metadata::new().with("form", serde_json::json!("new"));
    let replace = summary_of(&id, 3, "after").from_seq(2).with_metadata(metadata.clone()).replacing();
    let replaced = summarize(b.as_ref(), replace).await.expect("replaced");
    assert!(!replaced.deduplicated);
    let expected = (2, 3, Content::text("after"), metadata, first.created_at);
    let shape_of = |s: &Summary| (s.from_seq, s.through_seq, s.content.clone(), s.metadata.clone(), s.created_at);
    assert_eq!(shape_of(&replaced.summary), expected);
    let listed = summaries_of(b.as_ref(), None, &id).await;
    assert_eq!(listed.iter().map(shape_of).collect::<Vec<_>>(), [expected], "one summary, replaced");
    assert_eq!(compacted(b.as_ref(), &id).await.summary.map(|s| s.content), Some(Content::text("after")));
    assert_err!(
        summarize(b.as_ref(), summary_of(&id, 4, "none there").replacing()).await,
        PersistError::NotFound { .. }
    );
    assert_err!(
        summarize(b.as_ref(), summary_of(&id, 3, "other range").from_seq(1).replacing()).await,
        PersistError::InvalidInput { .. }
    );
    assert_eq!(summaries_of(b.as_ref(), None, &id).await.len(), 1, "nothing written");
    if let Some(head) = head {
        let page = b.read_feed(ReadFeed::thread(id.clone()).after(head)).await.expect("the feed");
        assert!(page.events.is_empty(), "a replacement is no new summary: {:?}", page.events);
    }
    store.finish().await
}
