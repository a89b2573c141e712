//! Followers of a live reply: one reply of 2,000 tokens followed by 10 followers, each either
//! reading the whole message again on every feed event of it (what a follower had to do when
//! events said only *that* a message changed) or taking each event's delta
//! ([`Pipeline::follow_reply`]). Counted below the followers, at the store: the reads that
//! reach it and the content bytes they bring back; and the bytes each follower sends on to its
//! client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use persist::args::{Reserve, UpdateContent};
use persist::feed::ReadFeed;
use persist::layer::ObserveLayer;
use persist::live::{FollowReply, ReplyChunk};
use persist::prelude::*;
use persist::read::GetMessage;
use persist::sqlite::SqliteBackend;
use persist::{Content, MessageId, PersistResult, Pipeline, Role, ThreadId};

use crate::Options;
use crate::measure::rate;
use crate::report::{Row, Target};

const FOLLOWERS: usize = 10;

/// What reached the store through a pipeline: reads, and the content bytes they answered.
#[derive(Debug, Default)]
struct Counted {
    reads: AtomicU64,
    bytes: AtomicU64,
}

impl Counted {
    fn count(&self, result: &PersistResult) {
        let bytes = match result {
            PersistResult::Message(Some(message)) => message.content.json_len(),
            PersistResult::Feed(page) => {
                page.events.iter().filter_map(|e| e.change.delta.as_ref()).map(Content::json_len).sum()
            }
            _ => return,
        };
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// How a follower learns the reply's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reads the message on every event of it, sends what is new.
    Reread,
    /// Follows the reply: each event's delta.
    Deltas,
}

/// One follower to the reply's end: answers the bytes it sent on.
async fn follow(pipeline: Pipeline, thread: ThreadId, reply: MessageId, mode: Mode) -> u64 {
    let mut sent = 0u64;
    match mode {
        Mode::Deltas => {
            let mut stream = pipeline.follow_reply(FollowReply::new(thread, reply)).await.expect("follow");
            while let Some(chunk) = stream.next().await.expect("next") {
                if let ReplyChunk::Text { text, .. } | ReplyChunk::Replaced { text } = chunk {
                    sent += text.len() as u64;
                }
            }
        }
        Mode::Reread => {
            let mut events = pipeline.subscribe(ReadFeed::thread(thread.clone()).after(0)).await.expect("subscribe");
            let mut known = 0usize;
            loop {
                let event = events.next().await.expect("next event");
                if event.change.message_id.as_ref() != Some(&reply) {
                    continue;
                }
                let get = GetMessage::new(thread.clone(), reply.clone());
                let message = pipeline.get(get).await.expect("get").expect("the reply");
                let text = message.content.to_text();
                sent += (text.len() - known) as u64;
                known = text.len();
                if message.status != persist::Status::Reserved {
                    return sent;
                }
            }
        }
    }
    sent
}

/// One reply of `tokens` tokens followed by [`FOLLOWERS`] followers in `mode`: the tokens
/// written, the store's reads and bytes per follower, the bytes sent per follower.
async fn run_one(backend: &SqliteBackend, mode: Mode, tokens: usize) -> (f64, f64, f64, f64) {
    let counted = Arc::new(Counted::default());
    let seen = Arc::clone(&counted);
    let followers_pipeline = Pipeline::builder()
        .layer(ObserveLayer::new().on_result(move |result: &PersistResult| seen.count(result)))
        .build(backend.clone());
    let writer = Pipeline::new(backend.clone());
    let thread = ThreadId::new(format!("live-{mode:?}")).unwrap();
    let reply = writer.reserve(Reserve::new(thread.clone(), Role::Assistant)).await.expect("reserve").message.id;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..FOLLOWERS {
        tasks.spawn(follow(followers_pipeline.clone(), thread.clone(), reply.clone(), mode));
    }
    // Every follower subscribed before the first token (each reads the reply once first).
    while counted.reads.load(Ordering::Relaxed) < FOLLOWERS as u64 {
        tokio::task::yield_now().await;
    }
    let start = Instant::now();
    for n in 0..tokens {
        let token = UpdateContent::appending(thread.clone(), reply.clone(), Content::text(format!(" tok{n}")));
        writer.update_content(token.with_finalize(n + 1 == tokens)).await.expect("token");
    }
    let tokens_per_sec = rate(tokens, start.elapsed());
    let sent: u64 = tasks.join_all().await.into_iter().sum();
    let per = |total: u64| total as f64 / FOLLOWERS as f64;
    let (reads, bytes) = (counted.reads.load(Ordering::Relaxed), counted.bytes.load(Ordering::Relaxed));
    (tokens_per_sec, per(reads), per(bytes), per(sent))
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    rt.block_on(async {
        let tokens = options.scale(2000, 200);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let backend = SqliteBackend::open(dir.path().join("live.db")).await.expect("open");
        let reread = run_one(&backend, Mode::Reread, tokens).await;
        let deltas = run_one(&backend, Mode::Deltas, tokens).await;
        backend.close().await;
        let row = |name: &str, (tokens_per_sec, reads, bytes, sent): (f64, f64, f64, f64)| {
            Row::new(
                format!("live: {FOLLOWERS} followers of a {tokens}-token reply (SQLite), {name}"),
                tokens as u64,
                tokens_per_sec,
            )
            .note(format!(
                "per follower: {reads:.0} reads, {:.1} KiB read from the store, {:.1} KiB sent",
                bytes / 1024.0,
                sent / 1024.0
            ))
        };
        let saved = reread.2 / deltas.2.max(1.0);
        vec![
            row("full re-read per event", reread),
            row("deltas (follow_reply)", deltas)
                .ratio(saved, "the bytes a re-reading follower reads per the bytes a delta follower reads")
                .target(Target::RatioAtLeast(10.0)),
        ]
    })
}
