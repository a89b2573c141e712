//! A live reply's writer in any language: a start that takes the thread's one generation, appends
//! written once at the writer's offsets, a stop told in the answer to the writer's next call,
//! and a writer that went silent settled by its followers (gated on `feed`).

use std::sync::Arc;
use std::time::Duration;

use persist_core::args::TurnMessage;
use persist_core::{Content, IdempotencyKey, Part, PartOffset, PersistError, Pipeline, ReplyConflict, Role, Status};
use persist_ops::PipelineExt;
use persist_ops::live::{
    AppendReply, FinishReply, FollowParts, PartChunk, RenewReply, ReplyEnd, StartReply, StopReply, StopState,
};
use serde_json::json;

use crate::fixture::{assert_err, ctx, gate, get, m, t, tenant};
use crate::{Factory, Outcome};

const WITHIN: Duration = Duration::from_secs(10);

fn at(text: &str) -> PartOffset {
    text.parse().expect("an offset")
}

fn text(text: &str) -> Content {
    Content::from_parts([Part::text(text)])
}

fn append(thread: &str, reply: &str, offset: &str, content: Content) -> AppendReply {
    AppendReply::new(t(thread), m(reply), at(offset), content)
}

/// A start writes the user's turn and the reservation at once; each append answers the offset
/// of the next; an append sent again is written once (`written: false`, the same offset, the
/// content unchanged), one beyond the end is a `Gap` and one over other parts `Diverged`, both
/// naming the end and writing nothing; the finish, sent again, answers as it did.
pub async fn check_a_live_reply_is_written_once_at_the_writers_offsets<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let pipeline = Pipeline::new(Arc::clone(store.b()));
    let user = TurnMessage::new(Role::User, Content::text("Weather in Oslo?"));
    let start = StartReply::new(t("w")).with_message(user).with_reply_id(m("r"));
    let started = pipeline.start_reply(start).await.expect("start");
    assert_eq!((started.messages.len(), started.reply.status), (1, Status::Reserved));
    assert_eq!((started.state.offset, started.state.written, started.state.end), (PartOffset::START, true, None));
    assert!(started.state.expires_at.is_some(), "a reserved reply's lease runs out");

    let first = pipeline.append_reply(append("w", "r", "0", text("It is "))).await.expect("append");
    assert_eq!((first.offset, first.written), (at("0.6"), true));
    let again = pipeline.append_reply(append("w", "r", "0", text("It is "))).await.expect("append again");
    assert_eq!((again.offset, again.written), (at("0.6"), false), "a retried append is written once");
    let call = Content::from_parts([Part::text("4 °C"), Part::tool_call("c1", "weather", json!({"city": "Oslo"}))]);
    let second = pipeline.append_reply(append("w", "r", "0.6", call.clone())).await.expect("two parts");
    assert_eq!(second.offset, at("2"));
    let repeat = pipeline.append_reply(append("w", "r", "0.6", call)).await.expect("the two parts again");
    assert_eq!((repeat.offset, repeat.written), (at("2"), false));
    let partial = pipeline.append_reply(append("w", "r", "0.3", text("is 4"))).await.expect("inside what was written");
    assert_eq!((partial.offset, partial.written), (at("0.7"), false), "a repeat of what was written");

    let gap = pipeline.append_reply(append("w", "r", "3", text("!"))).await;
    assert_err!(gap, PersistError::ReplyConflict { conflict: ReplyConflict::Gap { .. }, .. });
    let diverged = pipeline.append_reply(append("w", "r", "0.6", text("5 °C"))).await;
    assert_err!(diverged, PersistError::ReplyConflict { conflict: ReplyConflict::Diverged { .. }, .. });
    let bad = pipeline.append_reply(append("w", "r", "2", Content::new(json!("text")))).await;
    assert_err!(bad, PersistError::InvalidInput { .. });
    let empty = pipeline.append_reply(append("w", "r", "2", Content::new(json!([])))).await;
    assert_err!(empty, PersistError::InvalidInput { .. });

    let result = Content::from_parts([Part::tool_result("c1", json!({"celsius": 4}))]);
    let done = pipeline.finish_reply(FinishReply::complete(t("w"), m("r")).with_last(at("2"), result.clone())).await;
    let done = done.expect("finish");
    assert_eq!((done.offset, done.written, done.end), (at("3"), true, Some(ReplyEnd::Complete)));
    let twice = pipeline.finish_reply(FinishReply::complete(t("w"), m("r")).with_last(at("2"), result)).await;
    assert!(!twice.expect("finish again").written, "a finish sent again");
    let stored = get(store.b().as_ref(), &t("w"), &m("r")).await.expect("the reply");
    let parts = stored.content.parts();
    assert_eq!((stored.status, parts.len()), (Status::Complete, 3), "{parts:?}");
    assert_eq!(parts[0], Part::text("It is 4 °C"));
    let late = pipeline.append_reply(append("w", "r", "3", text("!"))).await;
    assert_err!(late, PersistError::MessageComplete { .. });
    store.finish().await
}

/// One reply is generated per thread at a time: a second start is refused `Running`, naming
/// the first; a keyed start sent again answers the first (`written: false`); once the first
/// ended, or its writer went silent past its lease (then settled interrupted), a start goes on.
pub async fn check_one_reply_is_generated_per_thread<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let b = store.b();
    let other = if store.caps().shared_storage { store.second_handle().await } else { Arc::clone(b) };
    let (one, two) = (Pipeline::new(Arc::clone(b)), Pipeline::new(other));
    let key = IdempotencyKey::new("start-1").expect("a key");
    let keyed = || StartReply::new(t("g")).with_idempotency_key(key.clone());
    let first = one.start_reply(keyed()).await.expect("start");
    let repeat = two.start_reply(keyed()).await.expect("the same start again");
    assert_eq!((repeat.reply.id.clone(), repeat.state.written), (first.reply.id.clone(), false));
    let second = two.start_reply(StartReply::new(t("g"))).await;
    match second {
        Err(PersistError::ReplyConflict { message_id, conflict: ReplyConflict::Running, .. }) => {
            assert_eq!(message_id, first.reply.id, "the running reply is named");
        }
        other => panic!("a second generation must be refused: {other:?}"),
    }
    one.finish_reply(FinishReply::complete(t("g"), first.reply.id.clone())).await.expect("finish");
    let next = two.start_reply(StartReply::new(t("g")).with_lease(Duration::from_secs(1))).await.expect("after");
    // The first start sent again while another reply runs: it answers the first, as it ended.
    let late_repeat = one.start_reply(keyed()).await.expect("a late repeat of the first start");
    assert_eq!(
        (late_repeat.reply.id.clone(), late_repeat.state.end),
        (first.reply.id.clone(), Some(ReplyEnd::Complete))
    );

    // Its writer goes silent: past its lease, a start settles it and goes on.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let after_silence = one.start_reply(StartReply::new(t("g"))).await.expect("a start after a silent writer");
    let settled = get(b.as_ref(), &t("g"), &next.reply.id).await.expect("the silent reply");
    assert_eq!(settled.status, Status::Interrupted, "a dead writer's reply is settled");
    let late = one.append_reply(AppendReply::new(t("g"), next.reply.id.clone(), PartOffset::START, text("x"))).await;
    assert_err!(late, PersistError::MessageComplete { .. });
    assert_eq!(after_silence.reply.status, Status::Reserved);
    // A writer back after its lease ran out, nobody having settled its reply: its own call does.
    let back = one.start_reply(StartReply::new(t("g3")).with_lease(Duration::from_secs(1))).await.expect("start");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let late = one.append_reply(AppendReply::new(t("g3"), back.reply.id.clone(), PartOffset::START, text("x"))).await;
    assert_err!(late, PersistError::MessageComplete { status: Status::Interrupted, .. });
    let lease = StartReply::new(t("g2")).with_lease(Duration::from_millis(10));
    assert_err!(one.start_reply(lease).await, PersistError::InvalidInput { field: "lease", .. });
    store.finish().await
}

/// A stop of a leased reply ends it at once (stopped, its parts kept), and the writer hears of
/// it in the answer to its next call (`Stopped`, nothing written); its followers end stopped.
pub async fn check_a_stop_ends_a_leased_reply_and_tells_its_writer<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let b = store.b();
    let other = if store.caps().shared_storage { store.second_handle().await } else { Arc::clone(b) };
    let (writer, client) = (Pipeline::new(Arc::clone(b)), Pipeline::new(other));
    writer.start_reply(StartReply::new(t("s")).with_reply_id(m("r"))).await.expect("start");
    writer.append_reply(append("s", "r", "0", text("Partial"))).await.expect("append");
    let mut follower = client.follow_parts(FollowParts::new(t("s"), m("r"))).await.expect("follow");
    let stop = client.stop_reply(StopReply::new(t("s"), m("r"))).await.expect("stop");
    assert_eq!(stop, StopState::Requested);
    let stopped = get(b.as_ref(), &t("s"), &m("r")).await.expect("the reply");
    assert_eq!((stopped.status, stopped.content.to_text()), (Status::Interrupted, "Partial".to_owned()));

    let told = writer.append_reply(append("s", "r", "0.7", text(" more"))).await;
    assert_err!(told, PersistError::ReplyConflict { conflict: ReplyConflict::Stopped, .. });
    assert_err!(
        writer.renew_reply(RenewReply::new(t("s"), m("r"))).await,
        PersistError::ReplyConflict { conflict: ReplyConflict::Stopped, .. }
    );
    let end = FinishReply::interrupted(t("s"), m("r"), Some("stopped".into()));
    assert_err!(writer.finish_reply(end).await, PersistError::ReplyConflict { conflict: ReplyConflict::Stopped, .. });
    assert_eq!(get(b.as_ref(), &t("s"), &m("r")).await.expect("reply").content.to_text(), "Partial");
    let mut chunks = Vec::new();
    loop {
        let chunk = tokio::time::timeout(WITHIN, follower.next()).await.expect("in time").expect("next");
        match chunk {
            Some(PartChunk::End(end)) => {
                assert_eq!(end, ReplyEnd::Stopped);
                break;
            }
            Some(chunk) => chunks.push(chunk),
            None => panic!("the stream ended without an end"),
        }
    }
    assert_eq!(chunks, [PartChunk::Part { index: 0, part: Part::text("Partial") }]);
    // The thread's generation is free again.
    writer.start_reply(StartReply::new(t("s"))).await.expect("a start after the stop");
    store.finish().await
}

/// A follower of a reply whose writer goes silent past its lease settles it interrupted, and
/// ends (its parts kept); a writer that renews is never settled; a writer interrupting its own
/// reply keeps its reason.
pub async fn check_followers_settle_a_reply_whose_writer_went_silent<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let pipeline = Pipeline::new(Arc::clone(store.b()));
    let lease = Duration::from_secs(1);
    pipeline.start_reply(StartReply::new(t("d")).with_reply_id(m("dead")).with_lease(lease)).await.expect("start");
    pipeline.append_reply(append("d", "dead", "0", text("Half"))).await.expect("append");
    let mut follower = pipeline.follow_parts(FollowParts::new(t("d"), m("dead"))).await.expect("follow");
    let mut ended = None;
    while ended.is_none() {
        match tokio::time::timeout(WITHIN, follower.next()).await.expect("settled in time").expect("next") {
            Some(PartChunk::End(end)) => ended = Some(end),
            Some(_) => {}
            None => panic!("the stream ended without an end"),
        }
    }
    assert_eq!(ended, Some(ReplyEnd::Interrupted));
    let settled = get(store.b().as_ref(), &t("d"), &m("dead")).await.expect("reply");
    assert_eq!((settled.status, settled.content.to_text()), (Status::Interrupted, "Half".to_owned()));

    pipeline.start_reply(StartReply::new(t("a")).with_reply_id(m("alive")).with_lease(lease)).await.expect("start");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        pipeline.renew_reply(RenewReply::new(t("a"), m("alive"))).await.expect("renew");
    }
    let alive = get(store.b().as_ref(), &t("a"), &m("alive")).await.expect("reply");
    assert_eq!(alive.status, Status::Reserved, "a renewed reply is alive");
    let end = FinishReply::interrupted(t("a"), m("alive"), Some("the model failed".into()))
        .with_last(PartOffset::START, text("Partial"));
    let written = pipeline.finish_reply(end.clone()).await.expect("interrupted");
    assert_eq!((written.end, written.written), (Some(ReplyEnd::Interrupted), true));
    let again = pipeline.finish_reply(end).await.expect("the same end sent again");
    assert_eq!((again.end, again.written), (Some(ReplyEnd::Interrupted), false));
    let kept = get(store.b().as_ref(), &t("a"), &m("alive")).await.expect("reply");
    assert_eq!(kept.metadata.get(persist_ops::live::REASON_KEY), Some(&json!({"reason": "the model failed"})));
    store.finish().await
}

/// A writer's calls are confined to the context's tenant: another tenant's reply of the same
/// ids is not found, and nothing is written to it.
pub async fn check_a_writer_is_confined_to_its_tenant<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let pipeline = Pipeline::new(Arc::clone(store.b()));
    let (owner, other) = (tenant("writer-owner"), tenant("writer-other"));
    let start = StartReply::new(t("c")).with_reply_id(m("r")).with_context(ctx(Some(&owner)));
    pipeline.start_reply(start).await.expect("start");
    let theirs = append("c", "r", "0", text("x")).with_context(ctx(Some(&other)));
    assert_err!(pipeline.append_reply(theirs).await, PersistError::NotFound { .. });
    let finish = FinishReply::complete(t("c"), m("r")).with_context(ctx(Some(&other)));
    assert_err!(pipeline.finish_reply(finish).await, PersistError::NotFound { .. });
    // Their own thread of the same name is theirs to generate in.
    let own = StartReply::new(t("c")).with_context(ctx(Some(&other)));
    pipeline.start_reply(own).await.expect("another tenant's thread");
    let stored = crate::fixture::get_in(store.b().as_ref(), Some(&owner), &t("c"), &m("r")).await.expect("reply");
    assert_eq!((stored.status, stored.content.parts().len()), (Status::Reserved, 0), "nothing written");
    store.finish().await
}
