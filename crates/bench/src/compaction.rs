//! The compacted read: a thread of 10,000 messages with a summary every 100 (the latest through
//! 9,950) against a thread of 100 whose summary ends at 50 (the same tail of 50 messages), and
//! against listing all 10,000 (the read a host app does without compaction), through our
//! backends, side by side in interleaved rounds (median per round).

use std::future::Future;
use std::time::Instant;

use persist::read::{ListMessages, MAX_PAGE_LIMIT};
use persist::summary::{ReadCompacted, Summarize};
use persist::{Backend, Content, PersistArgs, ThreadId};

use crate::Options;
use crate::branches::restore_thread;
use crate::measure::median;
use crate::report::{Row, Target};

/// The messages after the latest summary, in both threads.
const TAIL: u64 = 50;

/// Thread `id` of `count` messages (a line), a summary ending every 100 and one at `count - TAIL`.
async fn load(backend: &impl Backend, id: &ThreadId, count: u64) {
    restore_thread(backend, id, count, |seq| seq.checked_sub(1).filter(|&p| p > 0)).await;
    let ends = (100..count - TAIL).step_by(100).chain([count - TAIL]);
    for through in ends {
        let summary = Summarize::new(id.clone(), through, Content::text(format!("{} words", "summary ".repeat(50))));
        backend.apply(PersistArgs::Summarize(summary)).await.expect("summarize");
    }
}

/// One timed pass of `reads` runs of `read`, answering reads/s.
async fn pass<F: Future<Output = ()>>(reads: usize, read: impl Fn() -> F) -> f64 {
    let start = Instant::now();
    for _ in 0..reads {
        read().await;
    }
    reads as f64 / start.elapsed().as_secs_f64()
}

async fn compacted(backend: &impl Backend, id: &ThreadId) {
    let found = backend.compacted(ReadCompacted::new(id.clone())).await.expect("a compacted read");
    assert_eq!(found.messages.len() as u64, TAIL, "the tail after the latest summary");
}

async fn list_all(backend: &impl Backend, id: &ThreadId) {
    let mut query = ListMessages::new(id.clone()).with_limit(MAX_PAGE_LIMIT);
    let mut count = 0;
    loop {
        let page = backend.list(query.clone()).await.expect("list");
        count += page.items.len();
        match query.next_page(&page) {
            Some(next) => query = next,
            None => break,
        }
    }
    assert_eq!(count, 10_000);
}

/// The rows of one backend.
async fn measure(backend: &impl Backend, store: &str, rounds: usize, reads: usize) -> Vec<Row> {
    let (long, short) = (ThreadId::new("long").unwrap(), ThreadId::new("short").unwrap());
    load(backend, &long, 10_000).await;
    load(backend, &short, 100).await;
    pass(2, || compacted(backend, &long)).await;
    pass(2, || compacted(backend, &short)).await;
    let (mut on_long, mut on_short, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (l, s) = if round % 2 == 0 {
            let l = pass(reads, || compacted(backend, &long)).await;
            (l, pass(reads, || compacted(backend, &short)).await)
        } else {
            let s = pass(reads, || compacted(backend, &short)).await;
            (pass(reads, || compacted(backend, &long)).await, s)
        };
        ratios.push(s / l);
        on_long.push(l);
        on_short.push(s);
    }
    let (long_rate, short_rate, ratio) = (median(&mut on_long), median(&mut on_short), median(&mut ratios));
    let (mut full, mut against) = (Vec::new(), Vec::new());
    let full_reads = reads.div_ceil(10).max(2);
    for _ in 0..rounds {
        let f = pass(full_reads, || list_all(backend, &long)).await;
        let c = pass(reads, || compacted(backend, &long)).await;
        against.push(c / f);
        full.push(f);
    }
    let (full_rate, speedup) = (median(&mut full), median(&mut against));
    vec![
        Row::new(
            format!("compaction: compacted read of 10,000 messages ({store})"),
            (rounds * reads) as u64,
            long_rate,
        )
        .ratio(ratio, "its time per the time of the compacted read of a thread of 100 (both: a summary, 50 after it)")
        .target(Target::RatioAtMost(1.5))
        .note(format!("compacted read of 100: {short_rate:.0} reads/s")),
        Row::new(format!("compaction: list all 10,000 messages ({store})"), (rounds * full_reads) as u64, full_rate)
            .ratio(speedup, "how many compacted reads of the same thread take its time")
            .note("the read a host app makes of a long thread without compaction"),
    ]
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let (rounds, reads) = (options.scale(7, 3), options.scale(200, 40));
    crate::postgres::on_sqlite_and_postgres!("compaction", |backend, store| measure(backend, store, rounds, reads))
}
