//! Live replies: feed events carry what an append added, a reply is followed as text from an
//! offset to its end through another handle's writes, a stop reaches the generator's handle,
//! and a heartbeat keeps a waiting generator's reservation from being stranded (gated on
//! `feed`).

use std::sync::Arc;
use std::time::Duration;

use persist_core::args::{Delete, Reserve, Update, UpdateContent};
use persist_core::feed::{FeedEvent, ReadFeed};
use persist_core::read::FindStranded;
use persist_core::{Backend, Content, Metadata, PersistError, PersistOp, Pipeline, Role, Status, Timestamp};
use persist_ops::PipelineExt;
use persist_ops::live::{FollowReply, ReplyChunk, ReplyEnd, ReplyStream, STOP_KEY, StopReply, StopState};
use serde_json::json;

use crate::fixture::{assert_err, ctx, gate, get, m, t, tenant, write, written};
use crate::{Factory, Outcome};

const WITHIN: Duration = Duration::from_secs(10);

/// Every event of a thread (without a tenant), through `pipeline`.
pub(crate) async fn events_of(pipeline: &Pipeline, thread: &str) -> Vec<FeedEvent> {
    let mut query = ReadFeed::thread(t(thread));
    let mut events = Vec::new();
    loop {
        let page = pipeline.read_feed(query.clone()).await.expect("read the feed");
        query = query.clone().after(page.last_position(query.after));
        events.extend(page.events);
        if !page.has_more {
            return events;
        }
    }
}

/// The next chunk, in time.
async fn chunk(stream: &mut ReplyStream) -> Option<ReplyChunk> {
    tokio::time::timeout(WITHIN, stream.next()).await.expect("the chunk arrives in time").expect("next chunk")
}

/// Every chunk up to the end, with the text they make after the stream's offset.
async fn to_end(stream: &mut ReplyStream) -> (String, ReplyEnd) {
    let (mut text, mut at) = (String::new(), stream.offset());
    loop {
        match chunk(stream).await {
            Some(ReplyChunk::Text { offset, text: added }) => {
                assert_eq!(offset, at, "each chunk starts where the last ended");
                at += added.chars().count() as u64;
                text.push_str(&added);
            }
            Some(ReplyChunk::Replaced { text: whole }) => {
                at = whole.chars().count() as u64;
                text = whole;
            }
            Some(ReplyChunk::End(end)) => {
                assert_eq!(stream.next().await.expect("after the end"), None, "nothing after the end");
                return (text, end);
            }
            Some(other) => panic!("unexpected chunk {other:?}"),
            None => panic!("the stream ended without an end chunk"),
        }
    }
}

fn token(thread: &str, id: &str, text: &str) -> UpdateContent {
    UpdateContent::appending(t(thread), m(id), Content::text(text))
}

/// An append's event carries the content it added, and a follower holding the message at the
/// version before rebuilds it from the delta alone; a stream's end and a heartbeat carry an
/// empty delta; a replacement and a metadata patch carry none (read the message). Read through
/// a pipeline, so a decrypting layer hands deltas over in clear.
pub async fn check_feed_events_carry_what_an_append_added<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let b = store.b();
    let pipeline = Pipeline::new(Arc::clone(b));
    let reply = written(b.as_ref(), Reserve::new(t("deltas"), Role::Assistant).with_id(m("r"))).await;
    for text in ["Hel", "lo", ", wörld"] {
        written(b.as_ref(), token("deltas", "r", text)).await;
    }
    written(b.as_ref(), UpdateContent::heartbeat(t("deltas"), m("r"))).await;
    let patch = Update::message(t("deltas"), m("r")).with_metadata(Metadata::new().with("model", json!("m1")));
    written(b.as_ref(), patch).await;
    let blocks = Content::new(json!([{"type": "text", "text": "!"}, {"type": "tool_call", "id": "c1", "name": "f"}]));
    written(b.as_ref(), UpdateContent::appending(t("deltas"), m("r"), blocks.clone())).await;
    written(b.as_ref(), UpdateContent::finishing(t("deltas"), m("r"))).await;
    let done = get(b.as_ref(), &t("deltas"), &m("r")).await.expect("the reply");
    written(b.as_ref(), UpdateContent::new(t("deltas"), m("r"), Content::text("rewritten"))).await;

    let events = events_of(&pipeline, "deltas").await;
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.change.op, e.change.version, e.change.status, e.change.delta.as_ref().map(Content::to_text)))
        .collect();
    let text = |s: &str| Some(s.to_owned());
    use PersistOp::{Reserve as Reserved, Update as Patched, UpdateContent as Content_};
    assert_eq!(
        summary,
        [
            (Reserved, 1, Some(Status::Reserved), None),
            (Content_, 2, Some(Status::Reserved), text("Hel")),
            (Content_, 3, Some(Status::Reserved), text("lo")),
            (Content_, 4, Some(Status::Reserved), text(", wörld")),
            (Content_, 5, Some(Status::Reserved), text("")),
            (Patched, 6, Some(Status::Reserved), None),
            (Content_, 7, Some(Status::Reserved), text("!")),
            (Content_, 8, Some(Status::Complete), text("")),
            (Content_, 9, Some(Status::Complete), None),
        ],
        "{events:?}"
    );
    assert_eq!(events[6].change.delta.as_ref(), Some(&blocks), "the delta is the blocks appended, as given");
    // The content rebuilt from the reservation and the deltas alone is the content stored.
    let mut rebuilt = reply.content.clone();
    for event in &events {
        if let Some(delta) = &event.change.delta {
            rebuilt = rebuilt.appended(delta).expect("deltas are content blocks");
        }
    }
    assert_eq!(rebuilt, done.content, "deltas rebuild the content");
    // A replacement that says what it added must name the version it adds to.
    let unbound = UpdateContent::partial(t("deltas"), m("r"), Content::text("x")).with_delta(Some(Content::text("x")));
    assert_err!(write(b.as_ref(), unbound).await, PersistError::InvalidInput { field, .. } if field == "delta");
    store.finish().await
}

/// A reply followed from an offset yields the text from there, then each token another handle
/// (another pool, process or instance) appends, then its end; a client that reconnects from the
/// offset it reached gets the rest, each character once.
pub async fn check_a_reply_is_followed_from_an_offset_to_its_end<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let b = store.b();
    let writer = if store.caps().shared_storage { store.second_handle().await } else { Arc::clone(b) };
    let pipeline = Pipeline::new(Arc::clone(b));
    written(b.as_ref(), Reserve::new(t("follow"), Role::Assistant).with_id(m("r"))).await;
    written(writer.as_ref(), token("follow", "r", "Ünïcode ")).await;

    let follow = FollowReply::new(t("follow"), m("r"));
    let mut first = pipeline.follow_reply(follow.clone().from(3)).await.expect("follow");
    assert_eq!(chunk(&mut first).await, Some(ReplyChunk::text(3, "code ")));
    written(writer.as_ref(), token("follow", "r", "tokens ")).await;
    assert_eq!(chunk(&mut first).await, Some(ReplyChunk::text(8, "tokens ")));
    let reached = first.offset();
    assert_eq!(reached, 15);
    drop(first); // the connection drops

    written(writer.as_ref(), token("follow", "r", "while ")).await;
    let mut second = pipeline.follow_reply(follow.clone().from(reached)).await.expect("follow again");
    written(writer.as_ref(), token("follow", "r", "away")).await;
    written(writer.as_ref(), UpdateContent::finishing(t("follow"), m("r"))).await;
    let (rest, end) = to_end(&mut second).await;
    assert_eq!((rest.as_str(), end), ("while away", ReplyEnd::Complete), "the rest, once");

    // A finished reply is followed to its end at once; an offset beyond its text is refused.
    let mut late = pipeline.follow_reply(follow.clone()).await.expect("follow a finished reply");
    assert_eq!(to_end(&mut late).await, ("Ünïcode tokens while away".to_owned(), ReplyEnd::Complete));
    let beyond = pipeline.follow_reply(follow.from(26)).await;
    assert_err!(beyond, PersistError::InvalidInput { field, .. } if field == "from");
    let absent = pipeline.follow_reply(FollowReply::new(t("follow"), m("nope"))).await;
    assert_err!(absent, PersistError::NotFound { .. });
    store.finish().await
}

/// A followed reply that is rewritten yields the new text whole; one interrupted ends
/// `Interrupted`; one deleted, or whose thread is deleted, ends `Deleted`.
pub async fn check_a_followed_reply_ends_as_its_reply_did<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let b = store.b();
    let pipeline = Pipeline::new(Arc::clone(b));
    let follow = |thread: &str| pipeline.follow_reply(FollowReply::new(t(thread), m("r")));
    for thread in ["ends-cut", "ends-rewritten", "ends-deleted", "ends-thread"] {
        written(b.as_ref(), Reserve::new(t(thread), Role::Assistant).with_id(m("r"))).await;
        written(b.as_ref(), token(thread, "r", "Draft")).await;
    }

    let mut cut = follow("ends-cut").await.expect("follow");
    assert_eq!(chunk(&mut cut).await, Some(ReplyChunk::text(0, "Draft")));
    written(b.as_ref(), UpdateContent::interrupted(t("ends-cut"), m("r"))).await;
    assert_eq!(to_end(&mut cut).await, (String::new(), ReplyEnd::Interrupted));

    let mut rewritten = follow("ends-rewritten").await.expect("follow");
    assert_eq!(chunk(&mut rewritten).await, Some(ReplyChunk::text(0, "Draft")));
    written(b.as_ref(), UpdateContent::new(t("ends-rewritten"), m("r"), Content::text("Final"))).await;
    assert_eq!(chunk(&mut rewritten).await, Some(ReplyChunk::Replaced { text: "Final".into() }));
    assert_eq!(chunk(&mut rewritten).await, Some(ReplyChunk::End(ReplyEnd::Complete)));

    let mut deleted = follow("ends-deleted").await.expect("follow");
    chunk(&mut deleted).await;
    write(b.as_ref(), Delete::message(t("ends-deleted"), m("r"))).await.expect("delete");
    assert_eq!(chunk(&mut deleted).await, Some(ReplyChunk::End(ReplyEnd::Deleted)));

    let mut gone = follow("ends-thread").await.expect("follow");
    chunk(&mut gone).await;
    write(b.as_ref(), Delete::thread(t("ends-thread"))).await.expect("delete the thread");
    assert_eq!(chunk(&mut gone).await, Some(ReplyChunk::End(ReplyEnd::Deleted)));
    store.finish().await
}

/// A stop asked through one handle reaches a generator watching through another, is recorded
/// in the message, and ends the followers' stream `Stopped` once the generator interrupts the
/// reply; asked again, or for a reply that ended, it is answered, not refused.
pub async fn check_a_stop_reaches_the_generator_through_another_handle<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let b = store.b();
    let other = if store.caps().shared_storage { store.second_handle().await } else { Arc::clone(b) };
    let generator = Pipeline::new(Arc::clone(b));
    let client = Pipeline::new(other);
    written(b.as_ref(), Reserve::new(t("stop"), Role::Assistant).with_id(m("r"))).await;
    written(b.as_ref(), Reserve::new(t("stop"), Role::Assistant).with_id(m("done"))).await;
    written(b.as_ref(), UpdateContent::new(t("stop"), m("done"), Content::text("Finished"))).await;
    let stop = |id: &str| StopReply::new(t("stop"), m(id));

    let mut watch = generator.watch_stop(stop("r")).await.expect("watch");
    let mut follower = client.follow_reply(FollowReply::new(t("stop"), m("r"))).await.expect("follow");
    written(b.as_ref(), token("stop", "r", "Partial")).await;
    assert_eq!(chunk(&mut follower).await, Some(ReplyChunk::text(0, "Partial")));
    let early = tokio::time::timeout(Duration::from_millis(100), &mut watch).await;
    assert!(early.is_err(), "a token is no stop: {early:?}");

    assert_eq!(client.stop_reply(stop("r")).await.expect("stop"), StopState::Requested);
    let heard = tokio::time::timeout(WITHIN, &mut watch).await.expect("the stop arrives in time");
    assert_eq!(heard.expect("watch"), StopState::Requested);
    assert_eq!((&mut watch).await.expect("asked again"), StopState::Requested, "a resolved watch answers again");
    assert_eq!(client.stop_reply(stop("r")).await.expect("stop again"), StopState::Requested);
    let marked = get(b.as_ref(), &t("stop"), &m("r")).await.expect("the reply");
    assert!(marked.metadata.get(STOP_KEY).is_some(), "the stop is recorded: {marked:?}");
    assert_eq!(marked.status, Status::Reserved, "the generator ends the reply, not the stop");

    written(b.as_ref(), UpdateContent::interrupted(t("stop"), m("r"))).await;
    assert_eq!(to_end(&mut follower).await, (String::new(), ReplyEnd::Stopped));
    assert_eq!(client.stop_reply(stop("r")).await.expect("stop"), StopState::Ended(ReplyEnd::Stopped));
    assert_eq!(client.stop_reply(stop("done")).await.expect("stop"), StopState::Ended(ReplyEnd::Complete));
    let untouched = get(b.as_ref(), &t("stop"), &m("done")).await.expect("the finished reply");
    assert!(untouched.metadata.get(STOP_KEY).is_none(), "nothing written to a finished reply");
    assert_err!(client.stop_reply(stop("nope")).await, PersistError::NotFound { .. });

    // A watch started after the stop, or on a reply that ended, answers at once.
    let now = generator.watch_stop(stop("done")).await.expect("watch");
    assert_eq!(now.await.expect("watch"), StopState::Ended(ReplyEnd::Complete));
    store.finish().await
}

/// Following and stopping are confined to the context's tenant: another tenant's reply of the
/// same ids is not found, and its stop touches nothing.
pub async fn check_follow_and_stop_are_confined_to_the_tenant<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    gate!(store, feed);
    let b = store.b();
    let pipeline = Pipeline::new(Arc::clone(b));
    let (owner, other) = (tenant("live-owner"), tenant("live-other"));
    let reserve = Reserve::new(t("confined"), Role::Assistant).with_id(m("r")).with_context(ctx(Some(&owner)));
    written(b.as_ref(), reserve).await;
    written(b.as_ref(), token("confined", "r", "secret").with_context(ctx(Some(&owner)))).await;

    let theirs = FollowReply::new(t("confined"), m("r")).with_context(ctx(Some(&other)));
    assert_err!(pipeline.follow_reply(theirs).await, PersistError::NotFound { .. });
    let stop = StopReply::new(t("confined"), m("r")).with_context(ctx(Some(&other)));
    assert_err!(pipeline.stop_reply(stop).await, PersistError::NotFound { .. });
    let scoped = pipeline.scoped(ctx(Some(&owner)));
    let mut own = scoped.follow_reply(FollowReply::new(t("confined"), m("r"))).await.expect("follow own");
    assert_eq!(chunk(&mut own).await, Some(ReplyChunk::text(0, "secret")));
    let stored = crate::fixture::get_in(b.as_ref(), Some(&owner), &t("confined"), &m("r")).await.expect("reply");
    assert!(stored.metadata.get(STOP_KEY).is_none(), "another tenant's stop wrote nothing");
    store.finish().await
}

/// A generator waiting on something slow renews its reservation with a heartbeat: found by
/// silence, it is not stranded however old, while a silent one is.
pub async fn check_a_heartbeat_keeps_a_reservation_from_being_stranded<F: Factory>(factory: &F) -> Outcome {
    let store = crate::fixture::open!(factory);
    let b = store.b().as_ref();
    let waiting = written(b, Reserve::new(t("beat"), Role::Assistant).with_id(m("waiting"))).await;
    written(b, Reserve::new(t("beat"), Role::Assistant).with_id(m("silent"))).await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    let cutoff = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(3)).await;
    let beat = written(b, UpdateContent::heartbeat(t("beat"), m("waiting"))).await;
    assert_eq!((beat.status, beat.content, beat.version), (Status::Reserved, waiting.content, 2));
    let found = b.stranded(FindStranded::new(cutoff)).await.expect("stranded");
    let ids: Vec<_> = found.iter().map(|s| s.message.id.as_str().to_owned()).collect();
    assert_eq!(ids, ["silent"], "only the silent reservation is stranded");
    let done = written(b, UpdateContent::finishing(t("beat"), m("waiting"))).await;
    let late = write(b, UpdateContent::heartbeat(t("beat"), m("waiting"))).await;
    assert_err!(late, PersistError::MessageComplete { .. });
    assert_eq!(get(b, &t("beat"), &m("waiting")).await.expect("reply").version, done.version, "nothing written");
    store.finish().await
}
