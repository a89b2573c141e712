//! Live replies through `EncryptLayer`: a streamed token's feed delta is stored sealed, bound
//! to the message's version, and opened for followers.

use persist::args::{Reserve, UpdateContent};
use persist::feed::ReadFeed;
use persist::live::{FollowReply, ReplyChunk};
use persist::memory::MemoryBackend;
use persist::prelude::*;
use persist::read::GetMessage;
use persist::{Content, Message, Pipeline, Role, ThreadId};

use crate::support;

/// A store seen through the layer, and below it (values as stored).
fn stacks() -> (Pipeline, Pipeline) {
    let store = MemoryBackend::new();
    (support::encrypted(support::ring(), store.clone()), Pipeline::new(store))
}

async fn stored_content(raw: &Pipeline, thread_id: &ThreadId, message: &Message) -> Content {
    raw.get(GetMessage::new(thread_id.clone(), message.id.clone())).await.unwrap().unwrap().content
}

fn sealed_text(value: &serde_json::Value) -> bool {
    value.get("persist:sealed").and_then(serde_json::Value::as_str).is_some_and(|text| text.starts_with("v1."))
}

/// A streamed token's delta is stored sealed and read in clear through the layer, so a
/// follower streams clear text; a delta moved to another event (another version of the
/// message) or changed does not open and is dropped, never shown: the event then says "read
/// the message", whose content is checked as always.
#[tokio::test]
async fn feed_deltas_are_sealed_bound_to_their_version_and_opened_for_followers() {
    let (sealed, raw) = stacks();
    let t = ThreadId::new("deltas").unwrap();
    let reply = sealed.reserve(Reserve::new(t.clone(), Role::Assistant)).await.unwrap().message;
    let mut follower = sealed.follow_reply(FollowReply::new(t.clone(), reply.id.clone())).await.unwrap();
    for token in ["first ", "second"] {
        let token = UpdateContent::appending(t.clone(), reply.id.clone(), Content::text(token));
        sealed.update_content(token).await.unwrap();
    }
    assert_eq!(follower.next().await.unwrap(), Some(ReplyChunk::text(0, "first ")));
    assert_eq!(follower.next().await.unwrap(), Some(ReplyChunk::text(6, "second")));

    let clear = sealed.read_feed(ReadFeed::thread(t.clone())).await.unwrap().events;
    let deltas: Vec<_> = clear.iter().map(|e| e.change.delta.as_ref().map(Content::to_text)).collect();
    assert_eq!(deltas, [None, Some("first ".to_owned()), Some("second".to_owned())]);
    let stored = raw.read_feed(ReadFeed::thread(t.clone())).await.unwrap().events;
    for event in &stored[1..] {
        let delta = event.change.delta.as_ref().expect("stored with its delta");
        assert!(sealed_text(&delta.to_value()), "stored sealed: {delta:?}");
        assert!(!delta.as_json().contains("first") && !delta.as_json().contains("second"));
    }

    // The first token's envelope replayed as the delta of a later version does not open.
    let replayed = stored[1].change.delta.clone();
    let moved = UpdateContent::new(t.clone(), reply.id.clone(), stored_content(&raw, &t, &reply).await)
        .with_finalize(false)
        .with_delta(replayed)
        .with_expected_version(3);
    raw.update_content(moved).await.unwrap();
    let last = sealed.read_feed(ReadFeed::thread(t.clone()).after(stored[2].position)).await.unwrap().events;
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].change.delta, None, "a delta bound to another version is dropped");
}
