//! `ToolCallsLayer` over the backend: tool results answer calls, a user message never follows an
//! unanswered call, and a provider's history has no orphans.

use std::sync::Arc;

use persist_core::args::Add;
use persist_core::read::ListMessages;
use persist_core::{Backend, Content, Context, IdempotencyKey, Part, PersistError, Pipeline, Role, ThreadId};
use persist_layer::{ProviderHistory, ToolCallsLayer, Unanswered};
use serde_json::json;

use crate::fixture::{all_messages, assert_err, t};
use crate::{Factory, Outcome};

fn with_layer<B: Backend>(backend: &Arc<B>, unanswered: Unanswered) -> Pipeline {
    Pipeline::builder().layer(ToolCallsLayer::new().on_unanswered(unanswered)).build(Arc::clone(backend))
}

fn say(thread: &ThreadId, role: Role, parts: Vec<Part>) -> Add {
    Add::new(thread.clone(), role, Content::from_parts(parts))
}

fn call(id: &str) -> Part {
    Part::tool_call(id, "search", json!({"q": id}))
}

/// A tool result must answer a call an earlier message made: a stray one is `InvalidInput`
/// naming the call, and nothing is written; a call's result, in a later message, is written.
pub async fn check_tool_results_answer_earlier_calls<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let p = with_layer(b, Unanswered::Interrupt);
    let id = t("tools");
    p.add(say(&id, Role::User, vec![Part::text("find x")])).await.expect("user");
    let stray = say(&id, Role::Tool, vec![Part::tool_result("call_0", json!("?"))]);
    match p.add(stray).await {
        Err(PersistError::InvalidInput { field: "content", reason }) if reason.contains("call_0") => {}
        other => panic!("expected InvalidInput naming call_0, got {other:?}"),
    }
    p.add(say(&id, Role::Assistant, vec![Part::text("Searching."), call("call_1")])).await.expect("call");
    let result = say(&id, Role::Tool, vec![Part::tool_result("call_1", json!(["x"]))])
        .with_idempotency_key(IdempotencyKey::new("result-1").expect("key"));
    let first = p.add(result.clone()).await.expect("result");
    // Sent again (an ambiguous failure, a retry): its first copy answers, it is not a second
    // result of the call; another result of the call is.
    let again = p.add(result).await.expect("a retried result");
    assert!(again.deduplicated && again.message == first.message, "{again:?}");
    let second = say(&id, Role::Tool, vec![Part::tool_result("call_1", json!(["y"]))]);
    assert_err!(p.add(second).await, PersistError::InvalidInput { field: "content", .. });
    let roles: Vec<_> = all_messages(b.as_ref(), &id).await.iter().map(|m| m.role.as_str().to_owned()).collect();
    assert_eq!(roles, ["user", "assistant", "tool"], "the stray result was not written");
    // A call and its result in one message (a tool the provider ran); a user message carrying
    // the result of the turn's open call (as Anthropic's do): no synthetic answer first.
    let ran = vec![call("call_2"), Part::tool_result("call_2", json!("ok")), call("call_3")];
    p.add(say(&id, Role::Assistant, ran)).await.expect("a call answered in its own message");
    p.add(say(&id, Role::User, vec![Part::tool_result("call_3", json!("done"))])).await.expect("user result");
    let messages = all_messages(b.as_ref(), &id).await;
    assert_eq!(messages.len(), 5, "no synthetic message");
    assert!(messages.iter().all(|m| m.metadata.get("persist.synthetic").is_none()));
    // In another tenant the thread's calls do not exist.
    let acme = Context::new().with_tenant(persist_core::TenantId::new("acme").expect("tenant"));
    let elsewhere = say(&id, Role::Tool, vec![Part::tool_result("call_1", json!(["x"]))]).with_context(acme);
    assert_err!(p.add(elsewhere).await, PersistError::InvalidInput { field: "content", .. });
    store.finish().await
}

/// A user message after calls left unanswered: with `Interrupt`, one `tool` message answering
/// each with an error result comes first, marked synthetic; with `Refuse`, the message is
/// refused naming the calls and nothing is written, until they are answered.
pub async fn check_unanswered_calls_are_interrupted_or_refused<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let id = t("interrupted");
    let heal = with_layer(b, Unanswered::Interrupt);
    heal.add(say(&id, Role::User, vec![Part::text("go")])).await.expect("user");
    heal.add(say(&id, Role::Assistant, vec![call("a"), call("b")])).await.expect("calls");
    heal.add(say(&id, Role::Tool, vec![Part::tool_result("a", json!(1))])).await.expect("one result");
    // A user message refused for itself leaves no synthetic answer behind.
    let bad = say(&id, Role::User, vec![Part::text("nul \u{0}")]);
    assert_err!(heal.add(bad).await, PersistError::InvalidInput { field: "content", .. });
    assert_eq!(all_messages(b.as_ref(), &id).await.len(), 3);
    // Nor does one the store refuses (its id is taken): the answer and the message are one turn.
    let taken = all_messages(b.as_ref(), &id).await[1].id.clone();
    let refused = say(&id, Role::User, vec![Part::text("hi")]).with_id(taken);
    assert_err!(heal.add(refused).await, PersistError::AlreadyExists { .. });
    assert_eq!(all_messages(b.as_ref(), &id).await.len(), 3, "no synthetic answer left behind");
    let key = IdempotencyKey::new("user-4").expect("key");
    let next = say(&id, Role::User, vec![Part::text("still there?")]).with_idempotency_key(key);
    let next = heal.add(next.clone()).await.expect("user");
    assert!(!next.deduplicated);
    // Sent again: the turn it was written in answers, nothing is written twice.
    let again = heal.add(
        say(&id, Role::User, vec![Part::text("still there?")])
            .with_idempotency_key(IdempotencyKey::new("user-4").expect("key")),
    );
    let again = again.await.expect("a retried user message");
    assert!(again.deduplicated && again.message == next.message, "{again:?}");
    let messages = all_messages(b.as_ref(), &id).await;
    assert_eq!(messages.len(), 5);
    let synthetic = &messages[3];
    assert_eq!(
        (synthetic.role.as_str(), synthetic.metadata.get("persist.synthetic")),
        ("tool", Some(&json!("interrupted")))
    );
    assert_eq!(synthetic.content.parts(), [Part::tool_error("b", json!({"interrupted": true}))]);
    assert_eq!((messages[4].id.clone(), messages[4].seq), (next.message.id, 5), "the user message after it");
    heal.add(say(&id, Role::User, vec![Part::text("again")])).await.expect("nothing left to answer");
    assert_eq!(all_messages(b.as_ref(), &id).await.len(), 6);
    // The real result, late: the call has its (synthetic) result already.
    match heal.add(say(&id, Role::Tool, vec![Part::tool_result("b", json!(2))])).await {
        Err(PersistError::InvalidInput { field: "content", reason }) if reason.contains("result already") => {}
        other => panic!("expected InvalidInput, the call answered already, got {other:?}"),
    }

    let strict = with_layer(b, Unanswered::Refuse);
    let id = t("refused");
    strict.add(say(&id, Role::Assistant, vec![call("c"), call("d")])).await.expect("calls");
    match strict.add(say(&id, Role::User, vec![Part::text("hi")])).await {
        Err(PersistError::InvalidInput { field: "tool_calls", reason }) if reason.contains("calls c, d ") => {}
        other => panic!("expected InvalidInput naming c, d in order, got {other:?}"),
    }
    assert_eq!(all_messages(b.as_ref(), &id).await.len(), 1, "nothing written");
    let both = vec![Part::tool_result("c", json!("done")), Part::tool_result("d", json!("done"))];
    strict.add(say(&id, Role::Tool, both)).await.expect("results");
    strict.add(say(&id, Role::User, vec![Part::text("hi")])).await.expect("answered now");
    store.finish().await
}

/// A `list` asking for `ProviderHistory` answers the page without orphans: a call whose result
/// is not in the page, a result whose call is not; a message left empty is left out. Without
/// the extension, the page is as stored.
pub async fn check_provider_history_has_no_orphans<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let p = with_layer(b, Unanswered::Interrupt);
    let id = t("history");
    p.add(say(&id, Role::User, vec![Part::text("q")])).await.expect("user");
    p.add(say(&id, Role::Assistant, vec![Part::text("Looking."), call("x"), call("y")])).await.expect("calls");
    p.add(say(&id, Role::Tool, vec![Part::tool_result("x", json!(1))])).await.expect("result");
    // `y` is still running: its call has no result yet.
    let history = ListMessages::new(id.clone()).with_context(Context::new().with_extension(ProviderHistory));
    let page = p.list(history).await.expect("list");
    let assistant = &page.items[1];
    assert_eq!(assistant.content.parts(), [Part::text("Looking."), call("x")], "the open call is left out");
    // A window that starts after the calls: their result is an orphan, and its message goes.
    let window = ListMessages::new(id.clone()).after(2).with_context(Context::new().with_extension(ProviderHistory));
    assert!(p.list(window).await.expect("list").items.is_empty());
    let plain = p.list(ListMessages::new(id.clone())).await.expect("list");
    assert_eq!(plain.items[1].content.tool_calls().len(), 2, "as stored without the extension");
    store.finish().await
}

/// A reply interrupted before its first token (or any message that says nothing) is left out of
/// a provider's history, which would refuse an empty message; a plain list still has it.
pub async fn check_provider_history_leaves_out_blank_replies<F: Factory>(factory: &F) -> Outcome {
    use persist_core::Status;
    use persist_core::args::{Reserve, UpdateContent};
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let p = with_layer(b, Unanswered::Interrupt);
    let id = t("blank");
    p.add(say(&id, Role::User, vec![Part::text("q")])).await.expect("user");
    let reply = p.reserve(Reserve::new(id.clone(), Role::Assistant)).await.expect("reserve").message;
    let cut = p.update_content(UpdateContent::interrupted(id.clone(), reply.id.clone())).await.expect("interrupt");
    assert_eq!((cut.message.status, cut.message.content.is_blank()), (Status::Interrupted, true));
    let empty_text = p.add(say(&id, Role::Assistant, vec![Part::text("")])).await.expect("an empty text").message;
    p.add(say(&id, Role::User, vec![Part::text("again?")])).await.expect("user");
    let history = ListMessages::new(id.clone()).with_context(Context::new().with_extension(ProviderHistory));
    let page = p.list(history).await.expect("list");
    let texts: Vec<String> = page.items.iter().map(|m| m.content.to_text()).collect();
    assert_eq!(texts, ["q", "again?"], "blank messages are left out");
    let plain = p.list(ListMessages::new(id.clone())).await.expect("list");
    let ids: Vec<_> = plain.items.iter().map(|m| m.id.clone()).collect();
    assert!(ids.contains(&reply.id) && ids.contains(&empty_text.id), "as stored without the extension");
    store.finish().await
}

/// A turn is checked message by message: a result may answer a call of an earlier message of
/// the turn; a stray result refuses the whole turn; a user message after unanswered calls gets
/// its synthetic answer inside the turn (one transaction, consecutive seqs), or refuses the turn
/// with `Refuse`. A keyed turn sent again is still one turn.
pub async fn check_turns_are_checked_message_by_message<F: Factory>(factory: &F) -> Outcome {
    use persist_core::args::{AppendTurn, TurnMessage};
    let store = crate::fixture::open!(factory);
    let b = store.b();
    let heal = with_layer(b, Unanswered::Interrupt);
    let id = t("tool-turns");
    let said = |role, parts: Vec<Part>| TurnMessage::new(role, Content::from_parts(parts));
    let first = AppendTurn::of(
        id.clone(),
        [
            said(Role::User, vec![Part::text("find x")]),
            said(Role::Assistant, vec![call("c1"), call("c2")]),
            said(Role::Tool, vec![Part::tool_result("c1", json!("x"))]),
        ],
    );
    heal.append_turn(first).await.expect("a result answering a call of the turn");
    let stray = AppendTurn::of(id.clone(), [said(Role::Tool, vec![Part::tool_result("c9", json!("?"))])]);
    assert_err!(heal.append_turn(stray).await, PersistError::InvalidInput { field: "content", .. });
    let twice = AppendTurn::of(id.clone(), [said(Role::Tool, vec![Part::tool_result("c1", json!("again"))])]);
    assert_err!(heal.append_turn(twice).await, PersistError::InvalidInput { field: "content", .. });
    assert_eq!(all_messages(b.as_ref(), &id).await.len(), 3, "refused turns wrote nothing");

    let refuse = with_layer(b, Unanswered::Refuse);
    let next = AppendTurn::of(
        id.clone(),
        [said(Role::User, vec![Part::text("and?")]), said(Role::Assistant, vec![Part::text("ok")])],
    )
    .with_idempotency_key(persist_core::IdempotencyKey::new("next").expect("key"));
    assert_err!(refuse.append_turn(next.clone()).await, PersistError::InvalidInput { field: "tool_calls", .. });
    assert_eq!(all_messages(b.as_ref(), &id).await.len(), 3);

    let healed = heal.append_turn(next.clone()).await.expect("healed inside the turn");
    let roles: Vec<_> = healed.messages.iter().map(|m| m.role.as_str().to_owned()).collect();
    assert_eq!(roles, ["tool", "user", "assistant"]);
    assert_eq!(healed.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 5, 6]);
    let answer = healed.messages[0].content.tool_results();
    assert_eq!(answer[0].as_tool_result().map(|r| (r.call_id, r.is_error)), Some(("c2", true)));
    assert_eq!(healed.messages[0].metadata.get("persist.synthetic"), Some(&json!("interrupted")));
    let again = heal.append_turn(next).await.expect("the retry");
    assert!(again.deduplicated, "a keyed turn healed once is the same turn when sent again");
    assert_eq!(all_messages(b.as_ref(), &id).await.len(), 6);

    // A keyed turn whose result answers a call made before it, sent again: the same turn.
    heal.add(Add::new(id.clone(), Role::Assistant, Content::from_parts([call("c7")]))).await.expect("call");
    let answered = AppendTurn::of(
        id.clone(),
        [said(Role::Tool, vec![Part::tool_result("c7", json!("found"))]), said(Role::Assistant, vec![Part::text("x")])],
    )
    .with_idempotency_key(persist_core::IdempotencyKey::new("answered").expect("key"));
    let written = heal.append_turn(answered.clone()).await.expect("the turn");
    let again = heal.append_turn(answered).await.expect("the turn sent again");
    assert!(again.deduplicated && again.messages == written.messages, "{again:?}");
    assert_eq!(all_messages(b.as_ref(), &id).await.len(), 9);
    store.finish().await
}
