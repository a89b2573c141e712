//! Branches: a thread is a tree of messages with one active path. Writes follow the active
//! branch unless they name a parent, a parent starts a sibling branch and makes it active, the
//! old branch stays readable and can be switched back to, reads page along a branch, deletes
//! splice messages out, and racing switches, appends and regenerates keep a tree (gated on
//! `branches`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use persist_core::args::{AppendTurn, Delete, Reserve, Restore, TurnMessage, Update, UpdateContent};
use persist_core::branch::{Branch, Branches, ListBranches, Parent, Switch};
use persist_core::read::ListMessages;
use persist_core::{Backend, Content, Message, MessageId, Order, PersistError, Role, Status, TenantId, ThreadId};
use tokio::sync::Barrier;

use crate::fixture::{
    add_text, all_messages, assert_err, ctx, gate, m, snapshot, t, tenant, text_add, thread, thread_in, write, written,
};
use crate::{Factory, Outcome};

/// The seqs of `branch` of `thread` (of `tenant`), placeholders included, read in pages of
/// `limit` in `order`.
async fn branch_seqs<B: Backend>(
    b: &B,
    tenant: Option<&TenantId>,
    thread: &ThreadId,
    branch: Branch,
    limit: u32,
    order: Order,
) -> Vec<u64> {
    let mut query = ListMessages::new(thread.clone())
        .on_branch(branch)
        .include_reserved(true)
        .with_limit(limit)
        .with_order(order)
        .with_context(ctx(tenant));
    let mut seqs = Vec::new();
    loop {
        let page = b.list(query.clone()).await.expect("list a branch");
        seqs.extend(page.items.iter().map(|m| m.seq));
        match query.next_page(&page) {
            Some(next) => query = next,
            None => return seqs,
        }
    }
}

/// The active branch's seqs, ascending.
pub(crate) async fn active<B: Backend>(b: &B, thread: &ThreadId) -> Vec<u64> {
    branch_seqs(b, None, thread, Branch::Active, 4, Order::Asc).await
}

async fn siblings<B: Backend>(b: &B, thread: &ThreadId, id: &MessageId) -> (Vec<u64>, Option<usize>) {
    let found = b.branches(ListBranches::siblings(thread.clone(), id.clone())).await.expect("siblings");
    (found.items.iter().map(|m| m.seq).collect(), found.active)
}

async fn leaves<B: Backend>(b: &B, thread: &ThreadId) -> (Vec<u64>, Option<usize>) {
    let found = b.branches(ListBranches::leaves(thread.clone())).await.expect("leaves");
    (found.items.iter().map(|m| m.seq).collect(), found.active)
}

/// Asserts the thread is a tree: every parent an earlier message of it (or history before its
/// oldest message: what removing its oldest messages left), the active leaf one of its messages
/// (none only when it has none). Answers the messages by seq.
pub(crate) async fn assert_tree<B: Backend>(b: &B, id: &ThreadId) -> BTreeMap<u64, Message> {
    let messages: BTreeMap<u64, Message> = all_messages(b, id).await.into_iter().map(|m| (m.seq, m)).collect();
    let oldest = messages.keys().next().copied().unwrap_or(0);
    for message in messages.values() {
        if let Some(parent) = message.parent_seq {
            let known = messages.contains_key(&parent) || parent < oldest;
            assert!(parent < message.seq && known, "{message:?}: its parent is stored, or history");
        }
    }
    let leaf = thread(b, id).await.expect("the thread").active_leaf;
    match leaf {
        Some(leaf) => assert!(messages.contains_key(&leaf), "the active leaf {leaf} is a message of the thread"),
        None => assert!(messages.is_empty(), "a thread with messages has an active leaf"),
    }
    messages
}

/// The thread a switch answered.
async fn switched<B: Backend>(b: &B, switch: Update) -> persist_core::Thread {
    match write(b, switch).await.expect("a switch") {
        persist_core::PersistResult::Updated(persist_core::Updated::Thread(thread)) => thread,
        other => panic!("not a thread update: {other:?}"),
    }
}

pub(crate) fn reply_to(thread: &ThreadId, parent: &Message, text: &str) -> persist_core::args::Add {
    persist_core::args::Add::new(thread.clone(), Role::Assistant, Content::text(text)).with_parent(parent.id.clone())
}

/// Without a parent, messages make one line: each follows the one before it, the thread's
/// active leaf is the last, the active branch is the whole thread, and every message is the
/// only one at its point.
pub async fn check_a_thread_without_parents_is_one_line<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let b = store.b();
    let id = t("line");
    let first = add_text(b.as_ref(), &id, "one").await;
    assert_eq!((first.seq, first.parent_seq), (1, None), "the first message is a root");
    let reply = written(b, Reserve::new(id.clone(), Role::Assistant)).await;
    assert_eq!(reply.parent_seq, Some(1));
    let third = add_text(b.as_ref(), &id, "three").await;
    assert_eq!(third.parent_seq, Some(2), "a placeholder is on the branch like any message");
    assert_eq!(thread(b, &id).await.unwrap().active_leaf, Some(3));
    let all: Vec<u64> = all_messages(b, &id).await.iter().map(|m| m.seq).collect();
    assert_eq!(active(b, &id).await, all);
    assert_eq!(siblings(b, &id, &reply.id).await, (vec![2], Some(0)));
    assert_eq!(siblings(b, &id, &first.id).await, (vec![1], Some(0)));
    assert_eq!(leaves(b, &id).await, (vec![3], Some(0)));
    // Placeholders are left out unless asked for, on a branch as in any listing.
    let listed = b.list(ListMessages::new(id.clone()).on_branch(Branch::Active)).await.unwrap();
    assert_eq!(listed.items.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 3]);
    // A thread without messages has an empty active branch and no leaves.
    let empty = t("never-written");
    assert_eq!(active(b, &empty).await, Vec::<u64>::new());
    assert_eq!(leaves(b, &empty).await, (vec![], None));
    store.finish().await
}

/// A reply regenerated (written with the question as its parent) is a sibling of the first
/// reply and ends the active branch; the first branch, and what followed it, stays readable;
/// later writes follow the new branch.
pub async fn check_a_regenerated_reply_is_a_sibling_and_loses_nothing<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let b = store.b();
    let id = t("regenerate");
    let question = add_text(b.as_ref(), &id, "question").await; // 1
    let first = written(b, reply_to(&id, &question, "first answer")).await; // 2
    add_text(b.as_ref(), &id, "follow-up").await; // 3
    let old_leaf = add_text(b.as_ref(), &id, "answer to follow-up").await; // 4
    let mut again = Reserve::new(id.clone(), Role::Assistant).with_parent(question.id.clone());
    again.idempotency_key = Some(persist_core::IdempotencyKey::new("regen-1").unwrap());
    let again = written(b, again).await; // 5
    assert_eq!((again.seq, again.parent_seq, again.status), (5, Some(1), Status::Reserved));
    assert_eq!(thread(b, &id).await.unwrap().active_leaf, Some(5));
    assert_eq!(active(b, &id).await, [1, 5]);
    let old = branch_seqs(b, None, &id, Branch::EndingAt(old_leaf.id.clone()), 2, Order::Asc).await;
    assert_eq!(old, [1, 2, 3, 4], "the first branch is whole");
    assert_eq!(siblings(b, &id, &first.id).await, (vec![2, 5], Some(1)));
    assert_eq!(siblings(b, &id, &again.id).await, (vec![2, 5], Some(1)));
    assert_eq!(leaves(b, &id).await, (vec![4, 5], Some(1)));
    // Streamed and finished in place, then followed.
    let done = UpdateContent::new(id.clone(), again.id.clone(), Content::text("second answer"));
    write(b, done).await.expect("finish the regenerated reply");
    let next = add_text(b.as_ref(), &id, "thanks").await;
    assert_eq!(next.parent_seq, Some(5), "a write without a parent follows the active branch");
    assert_eq!(active(b, &id).await, [1, 5, 6]);
    // A repeat of the keyed reservation answers it again, wherever the branch is now.
    let mut repeat = Reserve::new(id.clone(), Role::Assistant).with_parent(question.id.clone());
    repeat.idempotency_key = Some(persist_core::IdempotencyKey::new("regen-1").unwrap());
    let repeated = write(b, repeat).await.expect("repeat");
    assert!(repeated.is_deduplicated());
    assert_eq!(thread(b, &id).await.unwrap().active_leaf, Some(6), "a repeat moves nothing");
    assert_tree(b, &id).await;
    store.finish().await
}

/// An edit of the thread's first message is a new root ([`Parent::Root`]): the two roots are
/// siblings, and a turn written after a message starts its branch there as one piece.
pub async fn check_an_edit_starts_a_branch_at_any_point<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let b = store.b();
    let id = t("edit");
    let first = add_text(b.as_ref(), &id, "helo").await; // 1
    let answer = add_text(b.as_ref(), &id, "hi").await; // 2
    let edited = written(b, text_add(&id, "hello").with_parent(Parent::Root)).await; // 3
    assert_eq!(edited.parent_seq, None);
    assert_eq!(siblings(b, &id, &first.id).await, (vec![1, 3], Some(1)));
    assert_eq!(active(b, &id).await, [3]);
    // A turn after the first answer: its first message there, the others after it.
    let turn = AppendTurn::of(
        id.clone(),
        [TurnMessage::new(Role::User, Content::text("edited follow-up")), TurnMessage::reservation(Role::Assistant)],
    )
    .with_parent(answer.id.clone());
    let written_turn = match write(b, turn).await.expect("a turn with a parent") {
        persist_core::PersistResult::TurnAppended(turn) => turn.messages,
        other => panic!("not a turn: {other:?}"),
    };
    let placed: Vec<_> = written_turn.iter().map(|m| (m.seq, m.parent_seq)).collect();
    assert_eq!(placed, [(4, Some(2)), (5, Some(4))]);
    assert_eq!(active(b, &id).await, [1, 2, 4, 5]);
    assert_eq!(leaves(b, &id).await, (vec![3, 5], Some(1)));
    store.finish().await
}

/// A switch is an update of the thread: `Through` ends the active branch at the most recent
/// message under the one named, `To` exactly at it; the thread's version moves, a stale
/// expected version is `VersionConflict` and switches nothing; a message the thread does not
/// have is `NotFound`; the next write follows the switched branch.
pub async fn check_a_switch_moves_the_active_leaf_like_a_versioned_update<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let b = store.b();
    let id = t("switch");
    let question = add_text(b.as_ref(), &id, "q").await; // 1
    let first = add_text(b.as_ref(), &id, "a1").await; // 2
    add_text(b.as_ref(), &id, "more").await; // 3
    written(b, reply_to(&id, &question, "a2")).await; // 4
    let before = thread(b, &id).await.unwrap();
    assert_eq!(before.active_leaf, Some(4));

    let stale = Update::thread(id.clone()).with_switch(Switch::Through(first.id.clone())).with_expected_version(9);
    assert_err!(write(b, stale).await, PersistError::VersionConflict { expected: 9, .. });
    assert_eq!(thread(b, &id).await.unwrap(), before, "a refused switch changes nothing");

    let back =
        Update::thread(id.clone()).with_switch(Switch::Through(first.id.clone())).with_expected_version(before.version);
    let switched = switched(b, back).await;
    assert_eq!((switched.active_leaf, switched.version), (Some(3), before.version + 1));
    assert_eq!(thread(b, &id).await.unwrap(), switched);
    assert_eq!(active(b, &id).await, [1, 2, 3]);
    assert_eq!(siblings(b, &id, &first.id).await, (vec![2, 4], Some(0)));

    write(b, Update::thread(id.clone()).with_switch(Switch::To(first.id.clone()))).await.expect("switch to");
    assert_eq!(active(b, &id).await, [1, 2]);
    let fork = add_text(b.as_ref(), &id, "another follow-up").await;
    assert_eq!(fork.parent_seq, Some(2), "the next write starts a branch at the switched leaf");
    assert_eq!(leaves(b, &id).await, (vec![3, 4, 5], Some(2)));

    let unknown = Update::thread(id.clone()).with_switch(Switch::To(m("nope")));
    assert_err!(write(b, unknown).await, PersistError::NotFound { .. });
    let stale_and_unknown = Update::thread(id.clone()).with_switch(Switch::To(m("nope"))).with_expected_version(1);
    assert_err!(write(b, stale_and_unknown).await, PersistError::VersionConflict { expected: 1, .. });
    let on_a_message = Update::message(id.clone(), first.id.clone()).with_switch(Switch::To(first.id.clone()));
    assert_err!(write(b, on_a_message).await, PersistError::InvalidInput { field: "switch", .. });
    assert_eq!(thread(b, &id).await.unwrap().active_leaf, Some(5));
    store.finish().await
}

/// A switch to an empty branch: the active branch reads as no message, the thread keeps its
/// messages and lists its branches with none active, and the next message written without a
/// parent (alone or a turn's first) starts a root of its own, whichever handle writes it. A
/// switch back restores the branch left.
pub async fn check_a_switch_to_an_empty_branch_makes_the_next_message_a_root<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let b = store.b();
    let id = t("empty-branch");
    let first = add_text(b.as_ref(), &id, "q1").await; // 1
    add_text(b.as_ref(), &id, "a1").await; // 2
    let before = thread(b, &id).await.unwrap();
    let emptied =
        switched(b, Update::thread(id.clone()).with_switch(Switch::Empty).with_expected_version(before.version)).await;
    assert_eq!((emptied.active_leaf, emptied.version, emptied.message_count), (None, before.version + 1, 2));
    assert_eq!(thread(b, &id).await.unwrap(), emptied);
    assert!(active(b, &id).await.is_empty(), "the active branch is empty");
    assert_eq!(leaves(b, &id).await, (vec![2], None));
    assert_eq!(all_messages(b, &id).await.len(), 2, "no message moved");

    // Read by another handle, and written through it: the state is the store's.
    let other = store.second_handle().await;
    assert!(active(other.as_ref(), &id).await.is_empty());
    let turn = AppendTurn::new(id.clone())
        .with_message(TurnMessage::new(Role::User, Content::text("q1, edited")))
        .with_message(TurnMessage::new(Role::Assistant, Content::text("a1'")));
    write(other.as_ref(), turn).await.expect("a turn through the other handle");
    let root = all_messages(b, &id).await.into_iter().find(|m| m.seq == 3).expect("the turn's first message");
    assert_eq!(root.parent_seq, None, "the turn starts a root");
    assert_eq!(active(b, &id).await, [3, 4]);
    assert_eq!(leaves(b, &id).await, (vec![2, 4], Some(1)));

    // Alone, too: empty again, then one message.
    write(b, Update::thread(id.clone()).with_switch(Switch::Empty)).await.expect("empty again");
    let alone = add_text(b.as_ref(), &id, "q1, again").await;
    assert_eq!((alone.seq, alone.parent_seq), (5, None));
    assert_eq!(active(b, &id).await, [5]);

    write(b, Update::thread(id.clone()).with_switch(Switch::Through(first.id.clone()))).await.expect("switch back");
    assert_eq!(active(b, &id).await, [1, 2]);
    store.finish().await
}

/// A parent, a branch's end or a sibling read naming a message the thread does not have is
/// `NotFound` and writes nothing (no thread is created for it), also when another tenant's
/// thread of the same id has that message.
pub async fn check_a_message_the_thread_does_not_have_is_not_found<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let b = store.b();
    let id = t("parents");
    let acme = tenant("acme");
    let theirs = written(b, text_add(&id, "acme's").with_context(ctx(Some(&acme)))).await;
    let fresh = t("fresh");
    let orphan = text_add(&fresh, "orphan").with_parent(theirs.id.clone());
    assert_err!(write(b, orphan).await, PersistError::NotFound { .. });
    assert!(thread(b, &fresh).await.is_none(), "a refused first write creates no thread");

    add_text(b.as_ref(), &id, "ours").await;
    let before = snapshot(b.as_ref(), &[&id]).await;
    let crossing = text_add(&id, "crossing").with_parent(theirs.id.clone());
    assert_err!(write(b, crossing).await, PersistError::NotFound { .. });
    let turn = AppendTurn::of(id.clone(), [TurnMessage::new(Role::User, Content::text("x"))]).with_parent(m("nope"));
    assert_err!(write(b, turn).await, PersistError::NotFound { .. });
    assert_eq!(snapshot(b.as_ref(), &[&id]).await, before, "nothing written");

    let ending = ListMessages::new(id.clone()).on_branch(Branch::EndingAt(theirs.id.clone()));
    assert_err!(b.list(ending).await, PersistError::NotFound { .. });
    let nowhere = ListMessages::new(t("no-such-thread")).on_branch(Branch::EndingAt(theirs.id.clone()));
    assert_err!(b.list(nowhere).await, PersistError::NotFound { .. });
    assert_err!(b.branches(ListBranches::siblings(id.clone(), theirs.id.clone())).await, PersistError::NotFound { .. });
    // Acme reads its own.
    let own = ListBranches::siblings(id.clone(), theirs.id.clone()).with_context(ctx(Some(&acme)));
    assert_eq!(b.branches(own).await.expect("acme's siblings").items.len(), 1);
    assert_eq!(branch_seqs(b.as_ref(), Some(&acme), &id, Branch::Active, 5, Order::Asc).await, [1]);
    assert_eq!(thread_in(b.as_ref(), Some(&acme), &id).await.unwrap().active_leaf, Some(1));
    store.finish().await
}

/// Pages of a branch follow it by `seq` both ways, in any page size, exactly as the branch's
/// path, in a tree whose branches interleave by arrival.
pub async fn check_a_branch_pages_by_seq_both_ways<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let b = store.b();
    let id = t("pages");
    // Three branches from seq 2 on, written in turns, so their seqs interleave.
    let root = add_text(b.as_ref(), &id, "root").await;
    let mut ends = vec![root.clone(), root.clone(), root];
    for round in 0..6 {
        for (branch, end) in ends.iter_mut().enumerate() {
            *end = written(b, text_add(&id, &format!("b{branch} r{round}")).with_parent(end.id.clone())).await;
        }
    }
    let messages = assert_tree(b, &id).await;
    for end in &ends {
        let mut expected = vec![end.seq];
        while let Some(parent) = messages[expected.last().unwrap()].parent_seq {
            expected.push(parent);
        }
        expected.reverse();
        assert_eq!(expected.len(), 7);
        for limit in [1, 2, 5, 50] {
            let branch = Branch::EndingAt(end.id.clone());
            assert_eq!(branch_seqs(b.as_ref(), None, &id, branch.clone(), limit, Order::Asc).await, expected);
            let mut down = branch_seqs(b.as_ref(), None, &id, branch, limit, Order::Desc).await;
            down.reverse();
            assert_eq!(down, expected, "descending pages, limit {limit}");
        }
    }
    // Cursors in the middle of a branch.
    let last = ends.last().unwrap();
    let page = b
        .list(ListMessages::new(id.clone()).on_branch(Branch::Active).after(5).before(18).with_limit(10))
        .await
        .expect("a window of the active branch");
    let expected: Vec<u64> = active(b.as_ref(), &id).await.into_iter().filter(|s| (6..18).contains(s)).collect();
    assert_eq!(page.items.iter().map(|m| m.seq).collect::<Vec<_>>(), expected);
    assert_eq!(thread(b, &id).await.unwrap().active_leaf, Some(last.seq));
    store.finish().await
}

/// A branch listed by role: only its messages of those roles, in full pages both ways however
/// many messages of other roles lie between, with bounds and placeholders as any branch
/// listing; another branch's messages of the roles are not listed. (How a reader finds a
/// compacted thread's system prompts and the summary's last message without reading what it
/// covers.)
pub async fn check_a_branch_lists_by_role<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let b = store.b();
    let id = t("roles-branch");
    let say = |role: Role, text: &str| persist_core::args::Add::new(id.clone(), role, Content::text(text));
    written(b, say(Role::System, "s1")).await; // 1
    let question = written(b, say(Role::User, "u1")).await; // 2
    written(b, say(Role::System, "s-old")).await; // 3
    let old = written(b, say(Role::Assistant, "a-old")).await; // 4
    written(b, say(Role::System, "s-new").with_parent(question.id.clone())).await; // 5, the active branch now
    for n in 6..=36 {
        let role = if n % 2 == 0 { Role::User } else { Role::Assistant };
        written(b, say(role, &format!("m{n}"))).await;
    }
    written(b, say(Role::System, "s-late")).await; // 37
    written(b, Reserve::new(id.clone(), Role::System)).await; // 38, reserved
    let list = |branch: Branch, roles: &[Role]| {
        ListMessages::new(id.clone()).on_branch(branch).with_roles(roles.iter().cloned())
    };
    let system = || list(Branch::Active, &[Role::System]);
    for limit in [1, 2, 3, 50] {
        let query = system().with_limit(limit);
        assert_eq!(crate::pagination::listed(b.as_ref(), query.clone()).await, [1, 5, 37], "limit {limit}");
        let down = crate::pagination::listed(b.as_ref(), query.with_order(Order::Desc)).await;
        assert_eq!(down, [37, 5, 1], "limit {limit}, descending");
    }
    let with_reserved = system().include_reserved(true).with_limit(2);
    assert_eq!(crate::pagination::listed(b.as_ref(), with_reserved.clone()).await, [1, 5, 37, 38]);
    let down = crate::pagination::listed(b.as_ref(), with_reserved.with_order(Order::Desc)).await;
    assert_eq!(down, [38, 37, 5, 1]);
    assert_eq!(crate::pagination::listed(b.as_ref(), system().before(37)).await, [1, 5]);
    assert_eq!(crate::pagination::listed(b.as_ref(), system().after(1).with_limit(1)).await, [5, 37]);
    assert_eq!(crate::pagination::listed(b.as_ref(), system().after(5).before(37)).await, Vec::<u64>::new());
    let none = b.list(list(Branch::Active, &[Role::Tool])).await.expect("list");
    assert!(none.items.is_empty() && !none.has_more && none.next_cursor.is_none());
    let assistant = list(Branch::Active, &[Role::Assistant]).with_limit(4).with_order(Order::Desc);
    assert_eq!(crate::pagination::listed(b.as_ref(), assistant).await, (7..=35).rev().step_by(2).collect::<Vec<_>>());
    // The branch left behind: its own system message, not the active branch's.
    let old_branch = Branch::EndingAt(old.id.clone());
    assert_eq!(crate::pagination::listed(b.as_ref(), list(old_branch.clone(), &[Role::System])).await, [1, 3]);
    assert_eq!(crate::pagination::listed(b.as_ref(), list(old_branch, &[Role::Assistant])).await, [4]);
    // The last message up to a seq, whatever its role: one message read.
    let last = ListMessages::new(id.clone()).on_branch(Branch::Active).before(37).with_order(Order::Desc).with_limit(1);
    let page = b.list(last).await.expect("list");
    assert_eq!((page.items.iter().map(|m| m.seq).collect::<Vec<_>>(), page.has_more), (vec![36], true));
    store.finish().await
}

/// Deleting a message takes it out of its branch: its children follow its parent, a branch
/// that ended at it ends at its parent; a truncation removes the later messages of every
/// branch, the active one then ending at its last message kept.
pub async fn check_deletes_splice_messages_out_of_their_branch<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let b = store.b();
    let id = t("splice");
    let question = add_text(b.as_ref(), &id, "q").await; // 1
    let middle = add_text(b.as_ref(), &id, "a1").await; // 2
    add_text(b.as_ref(), &id, "u2").await; // 3
    let other = written(b, reply_to(&id, &middle, "u2'")).await; // 4, sibling of 3
    let leaf = add_text(b.as_ref(), &id, "a2'").await; // 5
    write(b, Delete::message(id.clone(), middle.id.clone())).await.expect("delete the middle");
    let messages = assert_tree(b, &id).await;
    assert_eq!(messages[&3].parent_seq, Some(1), "its children follow its parent");
    assert_eq!(messages[&4].parent_seq, Some(1));
    assert_eq!(active(b, &id).await, [1, 4, 5]);
    assert_eq!(siblings(b, &id, &other.id).await, (vec![3, 4], Some(1)));

    write(b, Delete::message(id.clone(), leaf.id.clone())).await.expect("delete the leaf");
    assert_eq!(thread(b, &id).await.unwrap().active_leaf, Some(4), "the branch ends at its parent");
    let next = add_text(b.as_ref(), &id, "again").await; // 6
    assert_eq!(next.parent_seq, Some(4));

    // Branches on both sides of seq 3, then a truncation after it.
    written(b, reply_to(&id, &question, "late sibling")).await; // 7
    write(b, Update::thread(id.clone()).with_switch(Switch::Through(next.id.clone()))).await.expect("switch");
    write(b, Delete::after(id.clone(), 3)).await.expect("truncate");
    let messages = assert_tree(b, &id).await;
    assert_eq!(messages.keys().copied().collect::<Vec<_>>(), [1, 3]);
    assert_eq!(thread(b, &id).await.unwrap().active_leaf, Some(1), "the active branch ends at what it kept");
    assert_eq!(add_text(b.as_ref(), &id, "after").await.parent_seq, Some(1)); // 8

    // A root that ends the active branch (an edit of the first message), deleted: the thread
    // keeps an active leaf, its last message; truncated away, the same.
    let edit = written(b, text_add(&id, "edited").with_parent(Parent::Root)).await; // 9
    write(b, Delete::message(id.clone(), edit.id)).await.expect("delete the edit");
    assert_eq!(thread(b, &id).await.unwrap().active_leaf, Some(8), "no ancestor left: the last message");
    written(b, text_add(&id, "edited again").with_parent(Parent::Root)).await; // 10
    write(b, Delete::after(id.clone(), 3)).await.expect("truncate the edit away");
    assert_eq!(thread(b, &id).await.unwrap().active_leaf, Some(3), "no ancestor kept: the last message kept");
    assert_tree(b, &id).await;
    store.finish().await
}

/// Two handles racing: one switches the active branch while the other appends without a
/// parent. Whichever came first, the thread stays a tree, the append follows the leaf of its
/// moment (the old one or the switched one), and nothing is lost.
pub async fn check_a_switch_racing_an_append_keeps_a_tree<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let handles = store.racing_handles().await;
    let b = store.b();
    let id = t("race-switch");
    let question = add_text(b.as_ref(), &id, "q").await;
    let first = add_text(b.as_ref(), &id, "a1").await;
    for round in 0..10 {
        let second = written(b, reply_to(&id, &question, &format!("a{round}"))).await;
        let barrier = Arc::new(Barrier::new(2));
        let (switcher, appender) = (Arc::clone(&handles[0]), Arc::clone(&handles[handles.len() - 1]));
        let switching = {
            let (id, to, barrier) = (id.clone(), first.id.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                write(switcher.as_ref(), Update::thread(id).with_switch(Switch::To(to))).await
            })
        };
        barrier.wait().await;
        let appended = add_text(appender.as_ref(), &id, &format!("follow-up {round}")).await;
        switching.await.expect("the switch task").expect("the switch");
        // Either order, as if one came after the other: the append first (it follows the old
        // leaf, and the switch then ends the branch at `first`), or the switch first (the
        // append follows `first` and ends the branch).
        let leaf = thread(b, &id).await.unwrap().active_leaf;
        let outcome = (appended.parent_seq, leaf);
        assert!(
            outcome == (Some(second.seq), Some(first.seq)) || outcome == (Some(first.seq), Some(appended.seq)),
            "round {round}: (parent, leaf) {outcome:?} is no order of the two (old leaf {}, switched {})",
            second.seq,
            first.seq
        );
        assert_tree(b, &id).await;
    }
    store.finish().await
}

/// Two handles regenerating the same reply at once both write it: two more siblings, each with
/// its own seq, the active branch ending at one of them.
pub async fn check_racing_regenerates_both_become_siblings<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    let handles = store.racing_handles().await;
    let b = store.b();
    let id = t("race-regenerate");
    let question = add_text(b.as_ref(), &id, "q").await;
    let first = add_text(b.as_ref(), &id, "a1").await;
    let barrier = Arc::new(Barrier::new(handles.len().max(2)));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..handles.len().max(2) {
        let (h, id, parent, barrier) =
            (Arc::clone(&handles[i % handles.len()]), id.clone(), question.id.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            written(h.as_ref(), Reserve::new(id, Role::Assistant).with_parent(parent)).await
        });
    }
    let racers = tasks.join_all().await;
    let seqs: BTreeSet<u64> = racers.iter().map(|m| m.seq).collect();
    assert_eq!(seqs.len(), racers.len(), "each regenerate has its own seq");
    assert!(racers.iter().all(|m| m.parent_seq == Some(question.seq)));
    let (alternatives, on) = siblings(b, &id, &first.id).await;
    assert_eq!(alternatives.len(), 1 + racers.len());
    let leaf = thread(b, &id).await.unwrap().active_leaf.expect("a leaf");
    assert!(seqs.contains(&leaf), "the active branch ends at one of them");
    assert_eq!(alternatives[on.expect("one is active")], leaf);
    assert_tree(b, &id).await;
    store.finish().await
}

/// A restore keeps each message's parent and the thread's active leaf exactly (gated on
/// `restore` too); one whose parent is not an earlier message of the thread is refused whole.
pub async fn check_a_restore_keeps_the_tree<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, branches);
    gate!(store, restore);
    let b = store.b();
    let id = t("tree-source");
    let question = add_text(b.as_ref(), &id, "q").await;
    let first = add_text(b.as_ref(), &id, "a1").await;
    written(b, reply_to(&id, &question, "a2")).await;
    write(b, Update::thread(id.clone()).with_switch(Switch::Through(first.id.clone()))).await.expect("switch");
    let source = thread(b, &id).await.unwrap();
    let messages = all_messages(b, &id).await;

    let copy = t("tree-copy");
    let retarget = |m: &Message| Message { thread_id: copy.clone(), ..m.clone() };
    let copied_thread = persist_core::Thread { id: copy.clone(), ..source.clone() };
    let mut bad = messages.iter().map(retarget).collect::<Vec<_>>();
    bad[2].parent_seq = Some(9);
    assert_err!(
        write(b, Restore::new(copied_thread.clone(), bad)).await,
        PersistError::InvalidInput { field: "parent_seq", .. }
    );
    assert!(thread(b, &copy).await.is_none(), "a refused restore writes nothing");

    let restored = Restore::new(copied_thread, messages.iter().map(retarget).collect());
    write(b, restored).await.expect("restore");
    let back = all_messages(b, &copy).await;
    let parents = |ms: &[Message]| ms.iter().map(|m| (m.seq, m.parent_seq)).collect::<Vec<_>>();
    assert_eq!(parents(&back), parents(&messages));
    assert_eq!(thread(b, &copy).await.unwrap().active_leaf, source.active_leaf);
    assert_eq!(active(b, &copy).await, active(b, &id).await);
    let Branches { items, active: on, .. } = b.branches(ListBranches::leaves(copy.clone())).await.unwrap();
    assert_eq!((items.len(), on), (2, Some(0)));
    store.finish().await
}
