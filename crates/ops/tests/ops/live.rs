//! Live replies behind the feed's retention: a follower or a stop watch that fell so far behind
//! that retention removed events it had not read catches up by reading the message, and misses
//! neither text nor a stop.

use persist::args::{Reserve, UpdateContent};
use persist::feed::FeedRetention;
use persist::live::{FollowReply, ReplyChunk, ReplyEnd, StopReply, StopState};
use persist::memory::MemoryBackend;
use persist::prelude::*;
use persist::{Content, MessageId, Pipeline, Role, ThreadId};

/// A store whose feed keeps its two newest events: any follower that waits falls behind.
fn short_feed() -> (Pipeline, ThreadId, MessageId) {
    let store = MemoryBackend::new().with_feed(Some(FeedRetention::forever().with_max_events(Some(2))));
    (Pipeline::new(store), ThreadId::new("behind").unwrap(), MessageId::new("reply").unwrap())
}

#[tokio::test]
async fn a_follower_behind_retention_reads_the_message_and_misses_no_text() {
    let (pipeline, thread, reply) = short_feed();
    pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant).with_id(reply.clone())).await.unwrap();
    let mut follower = pipeline.follow_reply(FollowReply::new(thread.clone(), reply.clone())).await.unwrap();
    for n in 0..10 {
        let token = UpdateContent::appending(thread.clone(), reply.clone(), Content::text(format!("t{n} ")));
        pipeline.update_content(token).await.unwrap();
    }
    pipeline.update_content(UpdateContent::finishing(thread, reply)).await.unwrap();
    let mut text = String::new();
    let end = loop {
        match follower.next().await.unwrap() {
            Some(ReplyChunk::Text { offset, text: added }) => {
                assert_eq!(offset, text.chars().count() as u64);
                text.push_str(&added);
            }
            Some(ReplyChunk::End(end)) => break end,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!((text.as_str(), end), ("t0 t1 t2 t3 t4 t5 t6 t7 t8 t9 ", ReplyEnd::Complete));
}

#[tokio::test]
async fn a_stop_watch_behind_retention_reads_the_message_and_misses_no_stop() {
    let (pipeline, thread, reply) = short_feed();
    pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant).with_id(reply.clone())).await.unwrap();
    let watch = pipeline.watch_stop(StopReply::new(thread.clone(), reply.clone())).await.unwrap();
    // The stop, then more writes than the feed keeps: the stop's event is gone when the watch reads.
    assert_eq!(pipeline.stop_reply(StopReply::new(thread.clone(), reply.clone())).await.unwrap(), StopState::Requested);
    for n in 0..5 {
        let token = UpdateContent::appending(thread.clone(), reply.clone(), Content::text(format!("t{n}")));
        pipeline.update_content(token).await.unwrap();
    }
    let state = tokio::time::timeout(std::time::Duration::from_secs(10), watch).await.expect("in time");
    assert_eq!(state.unwrap(), StopState::Requested);
}
