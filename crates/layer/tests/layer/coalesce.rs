//! `CoalesceLayer`: partial content updates of a message written at most once an interval,
//! the latest content winning, a final update written at once and never overwritten, over
//! the memory and SQLite backends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use persist::args::{Reserve, UpdateContent};
use persist::layer::{CoalesceLayer, ObserveLayer};
use persist::memory::MemoryBackend;
use persist::read::GetMessage;
use persist::sqlite::SqliteBackend;
use persist::{Backend, Content, Message, PersistArgs, PersistOp, PersistResult, Pipeline, Role, Status, ThreadId};

/// A pipeline with the coalescing layer above a counter of the content updates that reach the
/// backend.
fn counted<B: Backend>(backend: B, interval: Duration) -> (Pipeline, Arc<AtomicUsize>) {
    let writes = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&writes);
    let pipeline = Pipeline::builder()
        .layer(CoalesceLayer::new(interval))
        .layer(ObserveLayer::new().on_args(move |args: &PersistArgs| {
            if args.op() == PersistOp::UpdateContent {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }))
        .build(backend);
    (pipeline, writes)
}

fn partial(reply: &Message, text: &str) -> UpdateContent {
    UpdateContent::partial(reply.thread_id.clone(), reply.id.clone(), Content::text(text))
}

async fn stored(pipeline: &Pipeline, reply: &Message) -> Message {
    pipeline.get(GetMessage::new(reply.thread_id.clone(), reply.id.clone())).await.unwrap().unwrap()
}

/// 200 partial updates sent as fast as they come reach the backend a few times, each answered
/// at once with the message and its new content; the final update is written at once and is
/// what the store holds.
async fn a_fast_stream_is_written_a_few_times<B: Backend>(backend: B) {
    let (pipeline, writes) = counted(backend, Duration::from_millis(100));
    let thread = ThreadId::new("stream").unwrap();
    let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await.unwrap().message;
    let mut text = String::new();
    for token in 0..200 {
        text.push_str(&format!("t{token} "));
        let answer = pipeline.execute(partial(&reply, &text)).await.unwrap();
        let PersistResult::ContentUpdated(answer) = answer else { panic!("{answer:?}") };
        assert!(answer.coalesced, "held back: the reservation was written a moment ago");
        assert_eq!((answer.message.content.to_text(), answer.message.status), (text.clone(), Status::Reserved));
    }
    text.push_str("end");
    let done = pipeline.update_content(UpdateContent::new(thread, reply.id.clone(), Content::text(&text))).await;
    assert_eq!(done.unwrap().message.content.to_text(), text);
    assert!(writes.load(Ordering::SeqCst) <= 3, "{} writes for 200 partial updates", writes.load(Ordering::SeqCst));
    // The final content stays: a held-back partial update is never written after it.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let kept = stored(&pipeline, &reply).await;
    assert_eq!((kept.content.to_text(), kept.status), (text, Status::Complete));
}

#[tokio::test]
async fn a_fast_stream_is_written_a_few_times_on_memory() {
    a_fast_stream_is_written_a_few_times(MemoryBackend::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_stream_is_written_a_few_times_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_fast_stream_is_written_a_few_times(SqliteBackend::open(dir.path().join("c.db")).await.unwrap()).await;
}

/// A stream that stops without finishing (its process died soon after) lost at most one
/// interval: the latest partial content is written once the interval is over.
#[tokio::test]
async fn a_held_back_update_is_written_within_an_interval() {
    let (pipeline, writes) = counted(MemoryBackend::new(), Duration::from_millis(50));
    let thread = ThreadId::new("stalled").unwrap();
    let reply = pipeline.reserve(Reserve::new(thread, Role::Assistant)).await.unwrap().message;
    for text in ["a", "ab", "abc"] {
        pipeline.update_content(partial(&reply, text)).await.unwrap();
    }
    assert_eq!(writes.load(Ordering::SeqCst), 0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let kept = stored(&pipeline, &reply).await;
    assert_eq!((kept.content.to_text(), kept.status), ("abc".to_owned(), Status::Reserved), "the latest wins");
    assert_eq!(writes.load(Ordering::SeqCst), 1, "one write for the three");
    // A partial update an interval after the last write goes down at once.
    let answer = pipeline.execute(partial(&reply, "abcd")).await.unwrap();
    let PersistResult::ContentUpdated(answer) = answer else { panic!("{answer:?}") };
    assert!(!answer.coalesced);
    assert_eq!(answer.message.version, kept.version + 1);
}

/// Final updates racing the writes of held-back ones, many times over: the stored content is
/// always the final one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_update_is_never_overwritten_by_a_held_back_one() {
    let (pipeline, _) = counted(MemoryBackend::new(), Duration::from_millis(1));
    let thread = ThreadId::new("race").unwrap();
    for round in 0..200 {
        let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await.unwrap().message;
        for step in 0..(round % 7) {
            pipeline.update_content(partial(&reply, &format!("partial {step}"))).await.unwrap();
            if step % 3 == 0 {
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }
        let done = UpdateContent::new(thread.clone(), reply.id.clone(), Content::text("final"));
        pipeline.update_content(done).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(stored(&pipeline, &reply).await.content.to_text(), "final", "round {round}");
    }
}

/// An update with an expected version is never held back: its precondition is checked now.
#[tokio::test]
async fn an_update_with_an_expected_version_goes_down_at_once() {
    let (pipeline, writes) = counted(MemoryBackend::new(), Duration::from_secs(60));
    let thread = ThreadId::new("versioned").unwrap();
    let reply = pipeline.reserve(Reserve::new(thread, Role::Assistant)).await.unwrap().message;
    let stale = partial(&reply, "x").with_expected_version(reply.version + 5);
    assert!(matches!(pipeline.update_content(stale).await, Err(persist::PersistError::VersionConflict { .. })));
    assert_eq!(writes.load(Ordering::SeqCst), 1);
}

/// A stream that sends each token alone (appends): the tokens held back are written together,
/// in order, and the final append carries those still held back; the store ends with the whole
/// reply as one text block, after a few writes.
async fn appended_tokens_are_joined_in_order<B: Backend>(backend: B) {
    let (pipeline, writes) = counted(backend, Duration::from_millis(100));
    let thread = ThreadId::new("tokens").unwrap();
    let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await.unwrap().message;
    let mut text = String::new();
    for token in 0..200 {
        let piece = format!("t{token} ");
        text.push_str(&piece);
        let append = UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text(&piece));
        let answer = pipeline.execute(append).await.unwrap();
        let PersistResult::ContentUpdated(answer) = answer else { panic!("{answer:?}") };
        assert!(answer.coalesced);
        if token == 100 {
            // A write of what was held back happens meanwhile.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    let done = UpdateContent::appending(thread, reply.id.clone(), Content::text("end")).with_finalize(true);
    let stored_now = pipeline.update_content(done).await.unwrap().message;
    text.push_str("end");
    assert_eq!((stored_now.content.clone(), stored_now.status), (Content::text(&text), Status::Complete));
    assert!(writes.load(Ordering::SeqCst) <= 4, "{} writes for 201 appends", writes.load(Ordering::SeqCst));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(stored(&pipeline, &reply).await.content, Content::text(&text), "nothing written after the final");
}

#[tokio::test]
async fn appended_tokens_are_joined_in_order_on_memory() {
    appended_tokens_are_joined_in_order(MemoryBackend::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_tokens_are_joined_in_order_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    appended_tokens_are_joined_in_order(SqliteBackend::open(dir.path().join("a.db")).await.unwrap()).await;
}

/// A held-back write that fails with a temporary error keeps what it held (its callers were
/// answered) and is tried again: no appended token is lost. A part that is not blocks goes down
/// at once to be refused, and keeps no other token from being joined.
#[tokio::test]
async fn a_failed_held_back_write_is_tried_again_and_loses_nothing() {
    use persist::PersistError;
    use persist::layer::from_fn;
    let failures = Arc::new(AtomicUsize::new(1));
    let left = Arc::clone(&failures);
    let pipeline = Pipeline::builder()
        .layer(CoalesceLayer::new(Duration::from_millis(30)))
        .layer(from_fn(move |args: PersistArgs, next| {
            let left = Arc::clone(&left);
            async move {
                // The first write of the three tokens held back together fails.
                let joined = matches!(&args, PersistArgs::UpdateContent(u) if u.content == Content::text("abc"));
                if joined && left.fetch_sub(1, Ordering::SeqCst) > 0 {
                    return Err(PersistError::temporary("the store blinked"));
                }
                next.run(args).await
            }
        }))
        .build(MemoryBackend::new());
    let thread = ThreadId::new("blink").unwrap();
    let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await.unwrap().message;
    let append = |text: &str| UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text(text));
    for token in ["a", "b", "c"] {
        pipeline.update_content(append(token)).await.unwrap();
    }
    // Not blocks: refused at once, the held-back tokens untouched.
    let odd = UpdateContent::appending(thread.clone(), reply.id.clone(), Content::new(serde_json::json!("odd")));
    assert!(matches!(pipeline.update_content(odd).await, Err(PersistError::InvalidInput { field: "content", .. })));
    // The first write of "abc" fails (temporary); the next try, an interval later, writes it.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(failures.load(Ordering::SeqCst), usize::MAX, "one failure, then success");
    assert_eq!(stored(&pipeline, &reply).await.content, Content::text("abc"));
    let done = pipeline.update_content(append("d").with_finalize(true)).await.unwrap();
    assert_eq!(done.message.content, Content::text("abcd"));
}

/// `RetryLayer` never repeats an append that has no expected version: an attempt that took
/// effect before failing would have its text added twice.
#[tokio::test]
async fn retry_does_not_repeat_an_append() {
    use persist::PersistError;
    use persist::layer::{RetryLayer, RetryPolicy, from_fn};
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let policy = RetryPolicy::new().max_attempts(3).backoff(Duration::from_micros(10), Duration::from_micros(100));
    let pipeline = Pipeline::builder()
        .layer(RetryLayer::new(policy.unwrap()))
        .layer(from_fn(move |args: PersistArgs, next| {
            let seen = Arc::clone(&seen);
            async move {
                let answer = next.run(args.clone()).await;
                if matches!(&args, PersistArgs::UpdateContent(u) if u.append) {
                    seen.fetch_add(1, Ordering::SeqCst);
                    // Written, then the answer lost: a time-out after the store acted.
                    return answer.and(Err(PersistError::temporary("timed out after the write")));
                }
                answer
            }
        }))
        .build(MemoryBackend::new());
    let thread = ThreadId::new("once").unwrap();
    let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await.unwrap().message;
    let append = UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text("token"));
    assert!(pipeline.update_content(append).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not repeated");
    assert_eq!(stored(&pipeline, &reply).await.content, Content::text("token"), "added once");
}

/// A partial update sent while its message's held-back content is being written waits for that
/// write, then is held back against it: its answer has the version that write made, never the
/// one before (answered at once, without waiting, only when no write is under way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_update_waits_for_its_message_s_write_under_way() {
    use persist::layer::from_fn;
    let (entered, release) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    let (writing, go) = (Arc::clone(&entered), Arc::clone(&release));
    let pipeline = Pipeline::builder()
        .layer(CoalesceLayer::new(Duration::from_millis(20)))
        .layer(from_fn(move |args: PersistArgs, next| {
            let (writing, go) = (Arc::clone(&writing), Arc::clone(&go));
            async move {
                // The held-back write of "ab" stalls until the test lets it go.
                if matches!(&args, PersistArgs::UpdateContent(u) if u.content == Content::text("ab")) {
                    writing.notify_one();
                    go.notified().await;
                }
                next.run(args).await
            }
        }))
        .build(MemoryBackend::new());
    let thread = ThreadId::new("under-way").unwrap();
    let reply = pipeline.reserve(Reserve::new(thread, Role::Assistant)).await.unwrap().message;
    for text in ["a", "ab"] {
        let answer = pipeline.execute(partial(&reply, text)).await.unwrap();
        let PersistResult::ContentUpdated(answer) = answer else { panic!("{answer:?}") };
        assert!(answer.coalesced, "held back at once: nothing under way");
    }
    entered.notified().await;
    let sent = tokio::spawn({
        let pipeline = pipeline.clone();
        let update = partial(&reply, "abc");
        async move { pipeline.execute(update).await }
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!sent.is_finished(), "it waits for the write under way");
    release.notify_one();
    let PersistResult::ContentUpdated(answer) = sent.await.unwrap().unwrap() else { panic!() };
    assert!(answer.coalesced);
    assert_eq!(answer.message.version, reply.version + 1, "held back against the write it waited for");
    assert_eq!(answer.message.content.to_text(), "abc");
}

/// Calls of one message made before their futures are polled (a tower caller pipelining them)
/// keep their call order: a later partial update is not held back ahead of an earlier one still
/// on its way to the message's lock, so the latest content wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_calls_of_one_message_keep_their_order() {
    use persist::layer::from_fn;
    use tower::{Layer, Service, ServiceExt};
    let (entered, release) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    let (writing, go) = (Arc::clone(&entered), Arc::clone(&release));
    let below = Pipeline::builder()
        .layer(from_fn(move |args: PersistArgs, next| {
            let (writing, go) = (Arc::clone(&writing), Arc::clone(&go));
            async move {
                // The held-back write of "a" stalls until the test lets it go.
                if matches!(&args, PersistArgs::UpdateContent(u) if u.content == Content::text("a")) {
                    writing.notify_one();
                    go.notified().await;
                }
                next.run(args).await
            }
        }))
        .build(MemoryBackend::new());
    let mut service = CoalesceLayer::new(Duration::from_millis(100)).layer(below.clone());
    let thread = ThreadId::new("pipelined").unwrap();
    let reserve = Reserve::new(thread, Role::Assistant);
    let PersistResult::Reserved(reply) = service.ready().await.unwrap().call(reserve.into()).await.unwrap() else {
        panic!()
    };
    let reply = reply.message;
    service.ready().await.unwrap().call(partial(&reply, "a").into()).await.unwrap();
    entered.notified().await;
    // Called while the write of "a" holds the message: on its way, not polled yet.
    let earlier = service.ready().await.unwrap().call(partial(&reply, "ab").into());
    release.notify_one();
    tokio::time::sleep(Duration::from_millis(10)).await;
    // The write is done (an interval not over since): "abc", called after "ab", would be held
    // back at once, then replaced by "ab" when that one is polled.
    let later = service.ready().await.unwrap().call(partial(&reply, "abc").into());
    earlier.await.unwrap();
    later.await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(stored(&below, &reply).await.content.to_text(), "abc", "the latest content wins");
}

/// A token sent after the final update (a retried or late one) is not held back as if it would
/// be written: it reaches the store at once, whose `MessageComplete` the caller gets, and the
/// reply stays as finished.
#[tokio::test]
async fn a_token_after_the_end_is_refused_not_held_back() {
    use persist::PersistError;
    let (pipeline, _) = counted(MemoryBackend::new(), Duration::from_secs(60));
    let thread = ThreadId::new("late").unwrap();
    let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await.unwrap().message;
    let token = |text: &str| UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text(text));
    assert!(pipeline.update_content(token("Hel")).await.unwrap().coalesced, "held back within the interval");
    let done = pipeline.update_content(UpdateContent::finishing(thread.clone(), reply.id.clone())).await.unwrap();
    assert_eq!((done.message.status, done.message.content.to_text()), (Status::Complete, "Hel".to_owned()));
    for late in [token("lo"), partial(&reply, "Hello")] {
        match pipeline.update_content(late).await {
            Err(PersistError::MessageComplete { .. }) => {}
            other => panic!("expected MessageComplete, got {other:?}"),
        }
    }
    assert_eq!(stored(&pipeline, &reply).await, done.message);
}
