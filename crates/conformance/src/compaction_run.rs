//! A compaction run ([`Compaction::compact`](persist_ops::compaction::Compaction::compact))
//! over the backend, through a pipeline (gated on `summaries`): its boundary never splits a
//! tool call from its results, and a reply its generator left does not stop it.

use std::sync::Arc;
use std::time::Duration;

use persist_core::args::{Reserve, UpdateContent};
use persist_core::summary::ReadCompacted;
use persist_core::{Content, Role, ThreadId};

use crate::fixture::{add_text, gate, t, written};
use crate::summaries::{summarize, summary_of};
use crate::{Factory, Outcome};

/// A compaction never folds a tool call into its summary while a result of it stays out (a
/// provider refuses a result whose call it cannot see): with three turns of user, call, result
/// and answer and the last two kept, the boundary moves before the third call. A call whose
/// turn is still open (no user message after it, its tool perhaps running) is not folded
/// either; one a user message followed unanswered was abandoned and folds. Read compacted
/// through `ToolCallsLayer` with `ProviderHistory`, what follows the summary is as it is stored,
/// and a summary written without the rule (by hand, or by an older build) reads without the
/// orphan it left.
pub async fn check_a_compaction_keeps_tool_calls_with_their_results<F: Factory>(factory: &F) -> Outcome {
    use persist_core::Part;
    use persist_core::args::Add;
    use persist_layer::{ProviderHistory, ToolCallsLayer};
    use persist_ops::compaction::{Budget, Compaction, KeepLastText, Outcome};
    let store = crate::fixture::open!(factory);
    gate!(store, summaries, branches);
    let b = store.b();
    let p = persist_core::Pipeline::builder().layer(ToolCallsLayer::new()).build(Arc::clone(b));
    let say = |thread: &ThreadId, role, part: Part| Add::new(thread.clone(), role, Content::from_parts([part]));
    let turns = |thread: ThreadId, n: usize| {
        let p = p.clone();
        async move {
            for k in 1..=n {
                let call = format!("call_{k}");
                p.add(say(&thread, Role::User, Part::text(format!("q{k}")))).await.expect("user");
                let asked = Part::tool_call(call.as_str(), "lookup", serde_json::json!({"k": k}));
                p.add(say(&thread, Role::Assistant, asked)).await.expect("call");
                let result = Part::tool_result(call.as_str(), serde_json::json!(k));
                p.add(say(&thread, Role::Tool, result)).await.expect("result");
                p.add(say(&thread, Role::Assistant, Part::text(format!("a{k}")))).await.expect("answer");
            }
        }
    };
    let id = t("tool-pairs");
    turns(id.clone(), 3).await;
    let compaction = Compaction::new(KeepLastText::new(2), Budget::messages(4)).keep_recent(2);
    let summary = match compaction.compact(&p, id.clone(), persist_core::Context::new()).await {
        Ok(Outcome::Summarized(summary)) => summary,
        other => panic!("expected a summary, got {other:?}"),
    };
    assert_eq!(summary.through_seq, 9, "the boundary moved before the third call (seq 10)");
    let read = p.compacted(ReadCompacted::new(id.clone())).await.expect("compacted");
    assert_eq!(read.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [10, 11, 12]);
    let ready =
        ReadCompacted::new(id.clone()).with_context(persist_core::Context::new().with_extension(ProviderHistory));
    assert_eq!(p.compacted(ready.clone()).await.expect("compacted").messages, read.messages, "clean as stored");

    // An open turn: its call is kept out of the summary until a result or a user message.
    let open = t("tool-open");
    turns(open.clone(), 1).await;
    p.add(say(&open, Role::User, Part::text("q2"))).await.expect("user");
    p.add(say(&open, Role::Assistant, Part::tool_call("slow", "lookup", serde_json::json!({})))).await.expect("call");
    let eager = Compaction::new(KeepLastText::new(2), Budget::messages(1)).keep_recent(0);
    let Ok(Outcome::Summarized(before_call)) = eager.compact(&p, open.clone(), persist_core::Context::new()).await
    else {
        panic!("a summary of what comes before the open call")
    };
    assert_eq!(before_call.through_seq, 5, "the open call (seq 6) stays out");
    // Abandoned: the user wrote again without its result (the layer answers it as interrupted,
    // so it is answered; without the layer it would stay unanswered and fold all the same).
    p.add(say(&open, Role::User, Part::text("q3"))).await.expect("user");
    let Ok(Outcome::Summarized(all)) = eager.compact(&p, open.clone(), persist_core::Context::new()).await else {
        panic!("a summary of everything")
    };
    assert_eq!(all.through_seq, 8, "call, its answer and the user message fold together");
    let raw_open = t("tool-raw-open");
    let raw = persist_core::Pipeline::new(Arc::clone(b));
    raw.add(say(&raw_open, Role::Assistant, Part::tool_call("lost", "lookup", serde_json::json!({}))))
        .await
        .expect("call");
    raw.add(say(&raw_open, Role::User, Part::text("hello?"))).await.expect("user");
    let Ok(Outcome::Summarized(folded)) = eager.compact(&raw, raw_open.clone(), persist_core::Context::new()).await
    else {
        panic!("an abandoned call folds")
    };
    assert_eq!(folded.through_seq, 2);

    // A summary that split a pair (written by hand here): the orphan result is left out.
    let split = t("tool-split");
    turns(split.clone(), 2).await;
    summarize(b.as_ref(), summary_of(&split, 6, "up to the second call")).await.expect("summary");
    let ready =
        ReadCompacted::new(split.clone()).with_context(persist_core::Context::new().with_extension(ProviderHistory));
    let read = p.compacted(ready).await.expect("compacted");
    assert_eq!(read.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [8], "the orphan result (7) is left out");
    let plain = p.compacted(ReadCompacted::new(split)).await.expect("compacted");
    assert_eq!(plain.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), [7, 8], "as stored without the extension");
    store.finish().await
}

/// A reply whose generator died mid-stream does not stop the thread's compaction for good: a
/// run settles the tail's replies silent for longer than `settle_after` (through the pipeline,
/// as a cleanup would: interrupted with their text, or deleted when their stream wrote
/// nothing) and folds past them; a reply still written to is never settled, and with
/// `settle_after(None)` nothing is settled.
pub async fn check_a_compaction_settles_a_reply_its_generator_left<F: Factory>(factory: &F) -> Outcome {
    use persist_core::Status;
    use persist_ops::compaction::{Budget, Compaction, KeepLastText, Outcome};
    let store = crate::fixture::open!(factory);
    gate!(store, summaries, branches);
    let b = store.b();
    let p = persist_core::Pipeline::new(Arc::clone(b));
    let id = t("dead-generator");
    add_text(b.as_ref(), &id, "q1").await;
    let dead = written(b.as_ref(), Reserve::new(id.clone(), Role::Assistant)).await; // 2
    let token = UpdateContent::appending(id.clone(), dead.id.clone(), Content::text("Half an ans"));
    written(b.as_ref(), token).await;
    let blank = written(b.as_ref(), Reserve::new(id.clone(), Role::Assistant)).await; // 3
    for text in ["q2", "q3", "q4", "q5"] {
        add_text(b.as_ref(), &id, text).await; // 4..7
    }
    // Silent for longer than the settling run's `settle_after` (300 ms) by a margin a loaded
    // machine keeps.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let alive = written(b.as_ref(), Reserve::new(id.clone(), Role::Assistant)).await; // 8
    add_text(b.as_ref(), &id, "q6").await; // 9
    let context = persist_core::Context::new();
    let waiting = Compaction::new(KeepLastText::new(2), Budget::messages(3)).keep_recent(1).settle_after(None);
    let outcome = waiting.compact(&p, id.clone(), context.clone()).await.expect("compact");
    match outcome {
        Outcome::Summarized(summary) => assert_eq!(summary.through_seq, 1, "nothing past the first reply"),
        other => panic!("expected a summary of the first message, got {other:?}"),
    }
    // The live reply's generator writes a token just before the run: silent for far less than
    // `settle_after`, however slow the machine.
    written(b.as_ref(), UpdateContent::appending(id.clone(), alive.id.clone(), Content::text("Stil"))).await;
    let settling = Compaction::new(KeepLastText::new(2), Budget::messages(3))
        .keep_recent(1)
        .settle_after(Some(Duration::from_millis(300)));
    let Ok(Outcome::Summarized(summary)) = settling.compact(&p, id.clone(), context.clone()).await else {
        panic!("a summary past the dead replies")
    };
    assert_eq!(summary.through_seq, 7, "folded up to the reply still being written (8)");
    let settled = crate::fixture::get(b.as_ref(), &id, &dead.id).await.expect("kept, interrupted");
    assert_eq!((settled.status, settled.content.to_text()), (Status::Interrupted, "Half an ans".to_owned()));
    assert!(crate::fixture::get(b.as_ref(), &id, &blank.id).await.is_none(), "the blank reply is deleted");
    let still = crate::fixture::get(b.as_ref(), &id, &alive.id).await.expect("the live reply");
    assert_eq!(still.status, Status::Reserved, "a reply written to within the silence is left alone");
    store.finish().await
}
