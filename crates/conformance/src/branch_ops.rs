//! Branches in the operations built on messages (gated on `branches`): a fork copies a tree
//! as it is or one branch as a line, retention and `pop` count along the active branch, feed events name
//! where a branch starts, and `ToolCallsLayer` checks results and open calls along the branch a
//! write extends.

use std::collections::BTreeMap;
use std::sync::Arc;

use persist_core::args::{AppendTurn, TurnMessage, Update};
use persist_core::branch::{Branch, Parent, Switch};
use persist_core::read::ListMessages;
use persist_core::{Backend, Content, Message, MessageId, PersistError, Role, ThreadId};
use persist_ops::PipelineExt;

use crate::branches::{active, assert_tree, reply_to};
use crate::fixture::{add_text, all_messages, assert_err, gate, t, text_add, thread, write, written};
use crate::{Factory, Outcome};

/// A fork of a whole thread keeps its tree: each copy follows the copy of its parent, and the
/// fork's active branch ends where the source's does.
pub async fn check_a_fork_of_a_tree_keeps_its_shape<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let b = store.b();
    let pipeline = persist_core::Pipeline::new(Arc::clone(b));
    let id = t("tree-to-fork");
    let question = add_text(b.as_ref(), &id, "q").await; // 1
    let first = add_text(b.as_ref(), &id, "a1").await; // 2
    add_text(b.as_ref(), &id, "u2").await; // 3
    written(b, reply_to(&id, &question, "a2")).await; // 4
    written(b, text_add(&id, "edited q").with_parent(Parent::Root)).await; // 5
    write(b, Update::thread(id.clone()).with_switch(Switch::Through(first.id.clone()))).await.expect("switch");
    let copy = t("tree-forked");
    let report = pipeline.fork(persist_ops::lifecycle::Fork::new(id.clone(), copy.clone())).await.expect("fork");
    assert_eq!(report.copied, 5);
    let by_id = |messages: Vec<Message>| {
        let seqs: BTreeMap<u64, MessageId> = messages.iter().map(|m| (m.seq, m.id.clone())).collect();
        messages.into_iter().map(|m| (m.id, m.parent_seq.map(|p| seqs[&p].clone()))).collect::<Vec<_>>()
    };
    assert_eq!(by_id(all_messages(b, &copy).await), by_id(all_messages(b, &id).await), "the same tree");
    let active_ids = |thread: ThreadId| async move {
        let branch = ListMessages::new(thread).on_branch(Branch::Active);
        b.list(branch).await.expect("the active branch").items.into_iter().map(|m| m.id).collect::<Vec<_>>()
    };
    assert_eq!(active_ids(copy.clone()).await, active_ids(id.clone()).await, "the same active branch");
    store.finish().await
}

/// A fork of one branch copies the path from its root to its last message, in order, into a
/// thread of one line, records that message with its origin, and run again copies nothing
/// twice; a fork of the active branch copies the branch active when it started.
pub async fn check_a_fork_copies_one_branch<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let b = store.b();
    let pipeline = persist_core::Pipeline::new(Arc::clone(b));
    let id = t("fork-source");
    let question = add_text(b.as_ref(), &id, "q").await; // 1
    let first = add_text(b.as_ref(), &id, "a1").await; // 2
    let follow_up = add_text(b.as_ref(), &id, "u2").await; // 3
    let second = written(b, reply_to(&id, &question, "a2")).await; // 4, active

    let copy = t("fork-of-first");
    let fork =
        persist_ops::lifecycle::Fork::new(id.clone(), copy.clone()).on_branch(Branch::EndingAt(follow_up.id.clone()));
    let report = pipeline.fork(fork.clone()).await.expect("fork a branch");
    assert_eq!(report.copied, 3);
    let copied = all_messages(b, &copy).await;
    let ids: Vec<_> = copied.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, [question.id.clone(), first.id.clone(), follow_up.id.clone()]);
    let line: Vec<_> = copied.iter().map(|m| (m.seq, m.parent_seq)).collect();
    assert_eq!(line, [(1, None), (2, Some(1)), (3, Some(2))], "the copy is one line");
    let origin = thread(b, &copy).await.unwrap().metadata.get(persist_ops::lifecycle::FORKED_FROM).cloned();
    assert_eq!(origin.and_then(|o| o.get("leaf").cloned()), Some(serde_json::json!(follow_up.id.as_str())));
    let again = pipeline.fork(fork).await.expect("fork again");
    assert_eq!((again.copied, again.already), (0, 3), "run again, nothing is copied twice");

    let active = t("fork-of-active");
    let fork = persist_ops::lifecycle::Fork::new(id.clone(), active.clone()).on_branch(Branch::Active);
    pipeline.fork(fork).await.expect("fork the active branch");
    let ids: Vec<_> = all_messages(b, &active).await.into_iter().map(|m| m.id).collect();
    assert_eq!(ids, [question.id, second.id]);
    store.finish().await
}

/// Retention's `keep_latest` counts along the active branch: the latest N of it stay, with
/// every message written after the oldest of them (alternatives of that stretch); older
/// messages go, on every branch, and the active branch stays whole from its new root.
pub async fn check_keep_latest_counts_along_the_active_branch<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let b = store.b();
    let pipeline = persist_core::Pipeline::new(Arc::clone(b));
    let id = t("retained");
    let mut line = Vec::new();
    for i in 0..4 {
        line.push(add_text(b.as_ref(), &id, &format!("m{i}")).await); // 1..4
    }
    written(b, reply_to(&id, &line[0], "old alternative")).await; // 5, active: 1, 5
    for i in 0..3 {
        add_text(b.as_ref(), &id, &format!("n{i}")).await; // 6, 7, 8 after 5
    }
    assert_eq!(active(b.as_ref(), &id).await, [1, 5, 6, 7, 8]);
    let rule = persist_ops::lifecycle::Prune::new().with_keep_latest(3);
    pipeline.prune(rule).await.expect("prune");
    let kept: Vec<u64> = all_messages(b, &id).await.iter().map(|m| m.seq).collect();
    assert_eq!(kept, [6, 7, 8], "the latest three of the active branch; older ones of any branch go");
    assert_eq!(active(b.as_ref(), &id).await, [6, 7, 8]);
    assert_tree(b, &id).await;
    store.finish().await
}

/// Feed events name the branch change (gated on `feed` too): an insert's event carries the
/// seq of the message it follows, so a follower sees a new branch start; a switch is the
/// thread's `update`, its version the thread's.
pub async fn check_feed_events_name_the_branch_change<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    gate!(store, feed);
    let b = store.b();
    let id = t("followed");
    let question = add_text(b.as_ref(), &id, "q").await;
    let first = add_text(b.as_ref(), &id, "a1").await;
    let turn = AppendTurn::of(id.clone(), [TurnMessage::reservation(Role::Assistant)]).with_parent(question.id.clone());
    write(b, turn).await.expect("regenerate as a turn");
    let switched = Update::thread(id.clone()).with_switch(Switch::To(first.id.clone()));
    write(b, switched).await.expect("switch");
    let mut query = persist_core::feed::ReadFeed::thread(id.clone());
    let mut events = Vec::new();
    loop {
        let page = b.read_feed(query.clone()).await.expect("read the feed");
        query = query.clone().after(page.last_position(query.after));
        events.extend(page.events);
        if !page.has_more {
            break;
        }
    }
    let seen: Vec<_> = events.iter().map(|e| (e.change.op, e.change.seq, e.change.parent_seq)).collect();
    use persist_core::PersistOp::{Add, Reserve, Update as Updated};
    assert_eq!(
        seen,
        [(Add, Some(1), None), (Add, Some(2), Some(1)), (Reserve, Some(3), Some(1)), (Updated, None, None)],
        "each insert names its parent; the switch is the thread's update"
    );
    assert_eq!(events[3].change.version, thread(b, &id).await.unwrap().version);
    store.finish().await
}

/// Through `ToolCallsLayer`, tool results and open calls are checked along the branch a write
/// extends: a tool run again on a new branch (its result written after the call) is taken,
/// though the old branch holds a result; a user message on a branch whose call is open gets the
/// synthetic answer on that branch, and follows it.
pub async fn check_tool_calls_are_checked_along_their_branch<F: Factory>(factory: &F) -> Outcome {
    use persist_core::{Part, Pipeline};
    use persist_layer::{ToolCallsLayer, Unanswered};
    use serde_json::json;

    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let b = store.b();
    let pipeline =
        Pipeline::builder().layer(ToolCallsLayer::new().on_unanswered(Unanswered::Interrupt)).build(Arc::clone(b));
    let id = t("tools");
    let say = |role: Role, parts: Vec<Part>| persist_core::args::Add::new(id.clone(), role, Content::from_parts(parts));
    pipeline.add(say(Role::User, vec![Part::text("search")])).await.expect("question"); // 1
    let call = say(Role::Assistant, vec![Part::tool_call("c1", "search", json!({}))]);
    let call = pipeline.add(call).await.expect("call").message; // 2
    pipeline.add(say(Role::Tool, vec![Part::tool_result("c1", json!("first"))])).await.expect("result"); // 3
    // The tool run again: a sibling of the first result.
    let again = say(Role::Tool, vec![Part::tool_result("c1", json!("second"))]).with_parent(call.id.clone());
    let again = pipeline.add(again).await.expect("a result on a new branch").message; // 4
    assert_eq!(again.parent_seq, Some(call.seq));
    // On the first result's branch the call is answered: a second result there is refused.
    let twice = say(Role::Tool, vec![Part::tool_result("c1", json!("third"))]);
    assert_err!(pipeline.add(twice).await, PersistError::InvalidInput { .. });

    // A new branch after the call, then a user message on it: the call is open there.
    written(b, say(Role::Assistant, vec![Part::text("thinking")]).with_parent(call.id.clone())).await; // 5
    let user = pipeline.add(say(Role::User, vec![Part::text("never mind")])).await.expect("user").message; // 7
    let messages = all_messages(b, &id).await;
    let synthetic = messages.iter().find(|m| m.seq == 6).expect("the synthetic answer");
    assert_eq!((synthetic.role.clone(), synthetic.parent_seq), (Role::Tool, Some(5)), "on the branch it answers");
    assert_eq!(user.parent_seq, Some(6), "the user message follows the answer");
    store.finish().await
}

/// `pop` removes the latest messages of the active branch (after a switch back, not the newer
/// ones of the branch left), and the branch then ends at the message before them.
pub async fn check_pop_takes_the_latest_of_the_active_branch<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let b = store.b();
    let pipeline = persist_core::Pipeline::new(Arc::clone(b));
    let id = t("popped");
    let question = add_text(b.as_ref(), &id, "q").await; // 1
    let first = add_text(b.as_ref(), &id, "a1").await; // 2
    add_text(b.as_ref(), &id, "u2").await; // 3
    written(b, reply_to(&id, &question, "a2")).await; // 4
    write(b, Update::thread(id.clone()).with_switch(Switch::Through(first.id))).await.expect("switch back");
    let popped = pipeline.pop(persist_ops::lifecycle::Pop::new(id.clone()).with_count(1)).await.expect("pop");
    assert_eq!(popped.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [3], "the active branch's latest");
    assert_eq!(active(b.as_ref(), &id).await, [1, 2]);
    let left: Vec<u64> = all_messages(b, &id).await.iter().map(|m| m.seq).collect();
    assert_eq!(left, [1, 2, 4], "the other branch is left as it is");
    store.finish().await
}
