//! Live replies on SQLite: deltas dropped after their age; and two OS processes sharing one
//! file, one generating a reply token by token and watching for a stop, the other following it,
//! reconnecting mid-reply from the offset it reached, and stopping it. The follower gets the
//! reply's text exactly once, and the reply ends stopped with the text the generator had.
//!
//! The generator is this test binary run again with `PERSIST_SQLITE_LIVE_CHILD` set (see
//! `child_generator`), running that one test, named by its path in the binary
//! (`live::child_generator`).

use std::process::Command;
use std::time::Duration;

use persist::live::{FollowReply, ReplyChunk, ReplyEnd, ReplyStream, StopReply, StopState};
use persist::prelude::*;
use persist_core::args::{Reserve, UpdateContent};
use persist_core::feed::{FeedEvent, FeedRetention, ReadFeed};
use persist_core::read::GetMessage;
use persist_core::{Backend, Content, MessageId, Pipeline, Role, Status, ThreadId};
use persist_sqlite::SqliteBackend;

const TOKENS: usize = 2000;

fn ids() -> (ThreadId, MessageId) {
    (ThreadId::new("live").unwrap(), MessageId::new("reply").unwrap())
}

/// The generating process: a token every few milliseconds until a stop arrives (or all are
/// written), then the reply ends with what it had. Ignored in normal runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of a_reply_generated_in_one_process_is_followed_and_stopped_from_another"]
async fn child_generator() {
    let path = std::env::var("PERSIST_SQLITE_LIVE_CHILD").expect("run by the parent test");
    let pipeline = Pipeline::new(SqliteBackend::open(path).await.unwrap());
    let (thread, reply) = ids();
    let mut stop = pipeline.watch_stop(StopReply::new(thread.clone(), reply.clone())).await.unwrap();
    for n in 0..TOKENS {
        tokio::select! {
            biased;
            state = &mut stop => {
                assert_eq!(state.unwrap(), StopState::Requested);
                pipeline.update_content(UpdateContent::interrupted(thread, reply)).await.unwrap();
                return;
            }
            () = tokio::time::sleep(Duration::from_millis(3)) => {
                let token = UpdateContent::appending(thread.clone(), reply.clone(), Content::text(format!("t{n} ")));
                pipeline.update_content(token).await.unwrap();
            }
        }
    }
    pipeline.update_content(UpdateContent::finishing(thread, reply)).await.unwrap();
}

/// The next chunk, in time.
async fn next(stream: &mut ReplyStream) -> Option<ReplyChunk> {
    tokio::time::timeout(Duration::from_secs(20), stream.next()).await.expect("a chunk in time").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_generated_in_one_process_is_followed_and_stopped_from_another() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    let pipeline = Pipeline::new(backend.clone());
    let (thread, reply) = ids();
    pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant).with_id(reply.clone())).await.unwrap();
    // The test's name in the binary: its module's path past the crate's name.
    let generator = format!("{}::child_generator", module_path!().split_once("::").unwrap().1);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &generator, "--ignored", "--nocapture", "--test-threads=1"])
        .env("PERSIST_SQLITE_LIVE_CHILD", &path)
        .spawn()
        .expect("start the generating process");

    // Follow until a few tokens arrived, then drop the connection.
    let mut received = String::new();
    let mut first = pipeline.follow_reply(FollowReply::new(thread.clone(), reply.clone())).await.unwrap();
    while received.split_whitespace().count() < 5 {
        match next(&mut first).await {
            Some(ReplyChunk::Text { offset, text }) => {
                assert_eq!(offset, received.chars().count() as u64);
                received.push_str(&text);
            }
            other => panic!("the reply is still streaming: {other:?}"),
        }
    }
    let reached = first.offset();
    drop(first);

    // Back from where it was; a few more tokens; then a stop from here.
    let mut again = pipeline.follow_reply(FollowReply::new(thread.clone(), reply.clone()).from(reached)).await.unwrap();
    let mut stopped = false;
    let end = loop {
        match next(&mut again).await {
            Some(ReplyChunk::Text { offset, text }) => {
                assert_eq!(offset, received.chars().count() as u64, "each character once");
                received.push_str(&text);
                if !stopped && received.split_whitespace().count() >= 10 {
                    let state = pipeline.stop_reply(StopReply::new(thread.clone(), reply.clone())).await.unwrap();
                    assert_eq!(state, StopState::Requested);
                    stopped = true;
                }
            }
            Some(ReplyChunk::End(end)) => break end,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(stopped, "the reply ended before the stop: {received:?}");
    assert_eq!(end, ReplyEnd::Stopped);
    assert!(child.wait().unwrap().success(), "the generator ended the reply");

    let stored = pipeline.get(GetMessage::new(thread, reply)).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Interrupted);
    assert_eq!(stored.content.to_text(), received, "the follower has the reply's text, once");
    let tokens: Vec<&str> = received.split_whitespace().collect();
    assert!(tokens.len() < TOKENS, "stopped early: {} tokens", tokens.len());
    assert!(tokens.iter().enumerate().all(|(n, token)| *token == format!("t{n}")), "in order, none twice");
    backend.close().await;
}

/// Deltas go when their age passes, their events stay (saying "read the message").
#[tokio::test]
async fn deltas_go_after_their_age_and_their_events_stay() {
    let dir = tempfile::tempdir().unwrap();
    let retention = FeedRetention::default().with_max_delta_age(Some(Duration::ZERO));
    let backend = SqliteBackend::builder(dir.path().join("deltas.db")).feed(Some(retention)).open().await.unwrap();
    let reserve = Reserve::new(ThreadId::new("aged").unwrap(), Role::Assistant).with_id("r".parse().unwrap());
    backend.apply(reserve.into()).await.unwrap();
    for token in ["a", "b"] {
        let token =
            UpdateContent::appending(ThreadId::new("aged").unwrap(), "r".parse().unwrap(), Content::text(token));
        backend.apply(token.into()).await.unwrap();
    }
    let deltas = |events: &[FeedEvent]| events.iter().filter(|e| e.change.delta.is_some()).count();
    assert_eq!(deltas(&backend.read_feed(ReadFeed::thread(ThreadId::new("aged").unwrap())).await.unwrap().events), 2);
    backend.trim_feed().await.unwrap();
    let events = backend.read_feed(ReadFeed::thread(ThreadId::new("aged").unwrap())).await.unwrap().events;
    assert_eq!((events.len(), deltas(&events)), (3, 0), "{events:?}");
    backend.close().await;
}

/// An update of the row that does not set its delta (a writer of an earlier version, a
/// statement of your own) records no delta: the one left in the row is another version's.
#[tokio::test]
async fn an_update_that_sets_no_delta_records_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.db");
    let backend = SqliteBackend::open(&path).await.unwrap();
    let (thread, reply) = ids();
    backend.apply(Reserve::new(thread.clone(), Role::Assistant).with_id(reply.clone()).into()).await.unwrap();
    let token = UpdateContent::appending(thread.clone(), reply.clone(), Content::text("one"));
    backend.apply(token.into()).await.unwrap();
    let mut raw =
        <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    sqlx::query(
        "UPDATE persist_messages SET content = '[{\"type\":\"text\",\"text\":\"one two\"}]', version = version + 1",
    )
    .execute(&mut raw)
    .await
    .unwrap();
    sqlx::Connection::close(raw).await.unwrap();
    let events = backend.read_feed(ReadFeed::thread(thread)).await.unwrap().events;
    let deltas: Vec<_> = events.iter().map(|e| e.change.delta.as_ref().map(Content::to_text)).collect();
    assert_eq!(deltas, [None, Some("one".to_owned()), None], "{events:?}");
    backend.close().await;
}
