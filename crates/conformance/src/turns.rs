//! Whole turns: several messages written in one transaction, with consecutive seqs, idempotent as
//! a whole, refused whole, one feed event per message, never interleaved with racing writers.

use std::sync::Arc;

use persist_core::args::{Add, AppendTurn, Delete, MAX_TURN_MESSAGES, TurnMessage, UpdateContent};
use persist_core::feed::ReadFeed;
use persist_core::{
    Backend, Content, IdempotencyKey, Message, MessageId, Part, PersistError, PersistOp, PersistResult, Role, Status,
    ThreadId, TurnAppended,
};
use serde_json::json;
use tokio::task::JoinSet;

use crate::fixture::{all_messages, assert_err, ctx, gate, m, t, tenant, thread, write, written};
use crate::{Factory, Outcome};

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::new(text).expect("key")
}

/// A user message, a tool call, its result: the shape of an agent's turn.
fn agent_turn(thread: &ThreadId, question: &str) -> AppendTurn {
    AppendTurn::new(thread.clone())
        .with_message(TurnMessage::new(Role::User, Content::text(question)))
        .with_message(TurnMessage::new(
            Role::Assistant,
            Content::from_parts([Part::tool_call("call_1", "search", json!({"q": question}))]),
        ))
        .with_message(TurnMessage::new(Role::Tool, Content::from_parts([Part::tool_result("call_1", json!(["x"]))])))
}

async fn appended<B: Backend>(b: &B, turn: AppendTurn) -> TurnAppended {
    match write(b, turn).await {
        Ok(PersistResult::TurnAppended(appended)) => appended,
        Ok(other) => panic!("append_turn answered {other:?}"),
        Err(error) => panic!("append_turn failed: {error}"),
    }
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

/// A turn is written in order with consecutive seqs after what the thread held, the last
/// message a reservation when asked; the answer is what a read gives, and the thread's counters
/// moved by the turn's size. The reply then streams as any reservation does.
pub async fn check_a_turn_is_written_whole_with_consecutive_seqs<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("turn");
    written(b, Add::new(id.clone(), Role::System, Content::text("Be brief."))).await;
    let turn = agent_turn(&id, "find x").with_reply(Role::Assistant);
    let answer = appended(b, turn).await;
    assert!(!answer.deduplicated);
    assert_eq!(answer.thread_id, id);
    assert_eq!(seqs(&answer.messages), [2, 3, 4, 5]);
    let roles: Vec<_> = answer.messages.iter().map(|m| m.role.as_str().to_owned()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    let statuses: Vec<_> = answer.messages.iter().map(|m| m.status).collect();
    assert_eq!(statuses, [Status::Complete, Status::Complete, Status::Complete, Status::Reserved]);
    assert!(answer.messages[3].content.is_placeholder());
    assert_eq!(answer.messages[1].content.tool_calls().len(), 1, "content round trips");
    assert!(answer.messages.iter().all(|m| m.version == 1 && m.thread_id == id));
    let stored = all_messages(b.as_ref(), &id).await;
    assert_eq!(&stored[1..], &answer.messages[..], "the answer is what is stored");
    let record = thread(b.as_ref(), &id).await.expect("thread");
    assert_eq!((record.last_seq, record.message_count), (5, 5));
    let reply = answer.messages[3].id.clone();
    let done = UpdateContent::new(id.clone(), reply.clone(), Content::text("Found x."));
    assert_eq!(written(b, done).await.status, Status::Complete);
    // A turn creates its thread.
    let fresh = appended(b, agent_turn(&t("turn-new"), "hello")).await;
    assert_eq!(seqs(&fresh.messages), [1, 2, 3]);
    assert_eq!(thread(b.as_ref(), &t("turn-new")).await.expect("created").message_count, 3);
    store.finish().await
}

/// A turn sent again answers the messages first written, `deduplicated`, with no new seq: by its
/// key, or by its messages' own keys or explicit ids. The turn key reused with other messages
/// (different, more, fewer) is `IdempotencyKeyReused`, and nothing is written.
pub async fn check_a_repeated_turn_answers_the_same_messages<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("turn-repeat");
    let turn = agent_turn(&id, "find x").with_reply(Role::Assistant).with_idempotency_key(key("turn-1"));
    let first = appended(b, turn.clone()).await;
    let keys: Vec<_> = first.messages.iter().map(|m| m.idempotency_key.clone().expect("keyed")).collect();
    assert_eq!(keys, [key("turn-1#0"), key("turn-1#1"), key("turn-1#2"), key("turn-1#3")]);
    let again = appended(b, turn.clone()).await;
    assert!(again.deduplicated, "a repeat is deduplicated");
    assert_eq!(again.messages, first.messages);
    // The reply streamed meanwhile: a late retry still answers the turn, as it is now.
    let reply = first.messages[3].id.clone();
    written(b, UpdateContent::new(id.clone(), reply, Content::text("done"))).await;
    let late = appended(b, turn.clone()).await;
    assert!(late.deduplicated);
    assert_eq!(late.messages[3].content, Content::text("done"));

    let other = agent_turn(&id, "find y").with_reply(Role::Assistant).with_idempotency_key(key("turn-1"));
    assert_err!(write(b, other).await, PersistError::IdempotencyKeyReused { .. });
    let mut fewer = turn.clone();
    fewer.messages.pop();
    assert_err!(write(b, fewer).await, PersistError::IdempotencyKeyReused { .. });
    let more = agent_turn(&id, "find x")
        .with_message(TurnMessage::new(Role::Assistant, Content::text("done")))
        .with_message(TurnMessage::new(Role::User, Content::text("and?")))
        .with_idempotency_key(key("turn-1"));
    assert_err!(write(b, more).await, PersistError::IdempotencyKeyReused { .. });
    assert_eq!(all_messages(b.as_ref(), &id).await.len(), 4, "nothing was written by the refusals");

    // Without a turn key: the messages' own ids (or keys) make the repeat.
    let own = AppendTurn::of(
        id.clone(),
        [
            TurnMessage::new(Role::User, Content::text("q")).with_id(m("u-own")),
            TurnMessage::new(Role::Assistant, Content::text("a")).with_idempotency_key(key("a-own")),
        ],
    );
    let first = appended(b, own.clone()).await;
    assert_eq!(seqs(&first.messages), [5, 6]);
    let again = appended(b, own).await;
    assert!(again.deduplicated);
    assert_eq!(again.messages, first.messages);
    assert_eq!(thread(b.as_ref(), &id).await.expect("thread").last_seq, 6, "no seq was taken by repeats");
    // The same key in another tenant is another thread's: written, not a repeat.
    let elsewhere = turn.with_context(ctx(Some(&tenant("turn-other"))));
    assert!(!appended(b, elsewhere).await.deduplicated);
    store.finish().await
}

/// A turn that cannot be written whole writes nothing: a bad message among good ones, an id or
/// key already taken by another message, a deleted thread, a misplaced reservation, an empty or
/// oversized turn, an id given twice; each refused with its typed error.
pub async fn check_a_refused_turn_writes_nothing<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("turn-refused");
    written(b, Add::new(id.clone(), Role::User, Content::text("taken")).with_id(m("taken"))).await;
    written(b, Add::new(id.clone(), Role::User, Content::text("keyed")).with_idempotency_key(key("used"))).await;
    let good = || TurnMessage::new(Role::User, Content::text("fine"));
    let of = |messages: Vec<TurnMessage>| AppendTurn::of(id.clone(), messages);

    let nul = TurnMessage::new(Role::Assistant, Content::text("nul \u{0}"));
    assert_err!(write(b, of(vec![good(), nul])).await, PersistError::InvalidInput { field: "content", .. });
    let taken = TurnMessage::new(Role::User, Content::text("other")).with_id(m("taken"));
    assert_err!(write(b, of(vec![good(), taken])).await, PersistError::AlreadyExists { .. });
    let used = TurnMessage::new(Role::User, Content::text("other")).with_idempotency_key(key("used"));
    assert_err!(write(b, of(vec![good(), used])).await, PersistError::IdempotencyKeyReused { .. });
    // A message of an earlier write, repeated inside a new turn: the turn is not a repeat.
    let repeat = TurnMessage::new(Role::User, Content::text("taken")).with_id(m("taken"));
    assert_err!(write(b, of(vec![repeat, good()])).await, PersistError::AlreadyExists { .. });
    let early = TurnMessage::reservation(Role::Assistant);
    assert_err!(write(b, of(vec![early, good()])).await, PersistError::InvalidInput { field: "status", .. });
    assert_err!(write(b, of(Vec::new())).await, PersistError::InvalidInput { field: "messages", .. });
    let many = (0..=MAX_TURN_MESSAGES).map(|_| good()).collect();
    assert_err!(write(b, of(many)).await, PersistError::InvalidInput { field: "messages", .. });
    let twice = vec![good().with_id(m("twice")), good().with_id(m("twice"))];
    assert_err!(write(b, of(twice)).await, PersistError::InvalidInput { field: "message_id", .. });
    let stored = all_messages(b.as_ref(), &id).await;
    assert_eq!(stored.len(), 2, "no refused turn wrote anything: {stored:?}");
    assert_eq!(thread(b.as_ref(), &id).await.expect("thread").last_seq, 2, "no seq was taken");

    let gone = t("turn-gone");
    written(b, Add::new(gone.clone(), Role::User, Content::text("x"))).await;
    write(b, Delete::thread(gone.clone())).await.expect("delete");
    let late = AppendTurn::of(gone.clone(), vec![good()]);
    assert_err!(write(b, late).await, PersistError::ThreadDeleted { .. });
    store.finish().await
}

/// The feed records one event per message of a turn (`add`, or `reserve` for its reply), in
/// seq order, and none for its repeat (gated on `feed`).
pub async fn check_a_turn_records_one_event_per_message<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let b = store.b();
    let id = t("turn-fed");
    let turn = agent_turn(&id, "q").with_reply(Role::Assistant).with_idempotency_key(key("fed"));
    let first = appended(b, turn.clone()).await;
    appended(b, turn).await;
    let page = b.read_feed(ReadFeed::thread(id.clone())).await.expect("feed");
    let events: Vec<_> = page
        .events
        .iter()
        .map(|e| (e.change.op, e.change.message_id.clone(), e.change.seq, e.change.version))
        .collect();
    let expected: Vec<(PersistOp, Option<MessageId>, Option<u64>, u64)> = first
        .messages
        .iter()
        .map(|m| {
            let op = if m.status == Status::Reserved { PersistOp::Reserve } else { PersistOp::Add };
            (op, Some(m.id.clone()), Some(m.seq), 1)
        })
        .collect();
    assert_eq!(events, expected);
    assert!(page.events.windows(2).all(|w| w[0].position < w[1].position));
    store.finish().await
}

/// Turns and single adds racing on one thread (through two handles where the backend shares
/// storage): every turn's messages hold consecutive seqs, nothing is lost or doubled.
pub async fn check_racing_turns_are_never_interleaved<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let handles = store.racing_handles().await;
    let id = t("turn-race");
    let mut tasks = JoinSet::new();
    for writer in 0..12usize {
        let handle = Arc::clone(&handles[writer % handles.len()]);
        let id = id.clone();
        tasks.spawn(async move {
            if writer % 3 == 0 {
                let add = Add::new(id, Role::User, Content::text(format!("single {writer}")));
                vec![written(handle.as_ref(), add).await]
            } else {
                let turn = agent_turn(&id, &format!("turn {writer}")).with_idempotency_key(key(&format!("w{writer}")));
                appended(handle.as_ref(), turn).await.messages
            }
        });
    }
    let mut turns = Vec::new();
    while let Some(done) = tasks.join_next().await {
        turns.push(done.expect("writer"));
    }
    let stored = all_messages(b.as_ref(), &id).await;
    assert_eq!(stored.len(), 4 + 8 * 3, "every message once: 4 adds, 8 turns of 3");
    assert_eq!(seqs(&stored), (1..=28).collect::<Vec<u64>>());
    for turn in turns.iter().filter(|messages| messages.len() == 3) {
        let s = seqs(turn);
        assert!(s[1] == s[0] + 1 && s[2] == s[1] + 1, "a turn's seqs are consecutive: {s:?}");
        let text = turn[0].content.to_text();
        let by_seq = |seq: u64| stored.iter().find(|m| m.seq == seq).expect("stored");
        assert_eq!(by_seq(s[0]).content.to_text(), text, "the stored turn is the one answered");
    }
    store.finish().await
}
