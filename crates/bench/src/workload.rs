//! The writes the SQLite and PostgreSQL scenarios share: the same message, and callers as tasks.

use std::time::{Duration, Instant};

use persist::args::Add;
use persist::read::ListMessages;
use persist::{Backend, Content, MessageId, Order, Pipeline, Role, ThreadId};

use crate::measure::rate;

/// The content of every benchmark message.
pub(crate) const TEXT: &str =
    "A benchmark message of about one hundred bytes, like a short chat turn in a real conversation.";

/// An add of [`TEXT`] with an explicit id.
pub(crate) fn add(thread: &ThreadId, id: String) -> Add {
    Add::new(thread.clone(), Role::User, Content::text(TEXT)).with_id(MessageId::new(id).unwrap())
}

/// `callers` tasks, each adding `per_caller` messages (ids `{round}-{i}`) to its own thread
/// (`{prefix}{caller}`) through `backend`; answers ops/s and every call's latency.
pub(crate) async fn as_tasks<B: Backend + Clone>(
    backend: &B,
    prefix: &'static str,
    callers: usize,
    per_caller: usize,
    round: usize,
) -> (f64, Vec<Duration>) {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let backend = backend.clone();
        tasks.spawn(async move {
            let thread = ThreadId::new(format!("{prefix}{caller}")).unwrap();
            let mut latencies = Vec::with_capacity(per_caller);
            for i in 0..per_caller {
                let t = Instant::now();
                backend.apply(add(&thread, format!("{round}-{i}")).into()).await.expect("add");
                latencies.push(t.elapsed());
            }
            latencies
        });
    }
    let latencies: Vec<Duration> = tasks.join_all().await.into_iter().flatten().collect();
    (rate(callers * per_caller, start.elapsed()), latencies)
}

/// `callers` tasks, each listing the latest 50 messages of one of `threads` threads (named
/// `{prefix}{n}`) `per_caller` times through `pipeline`: reads/s.
pub(crate) async fn latest_50(
    pipeline: &Pipeline,
    prefix: &'static str,
    threads: usize,
    callers: usize,
    per_caller: usize,
) -> f64 {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let pipeline = pipeline.clone();
        tasks.spawn(async move {
            let thread = ThreadId::new(format!("{prefix}{}", caller % threads)).unwrap();
            for _ in 0..per_caller {
                let query = ListMessages::new(thread.clone()).with_order(Order::Desc).with_limit(50);
                assert_eq!(pipeline.list(query).await.expect("list").items.len(), 50);
            }
        });
    }
    tasks.join_all().await;
    rate(callers * per_caller, start.elapsed())
}
