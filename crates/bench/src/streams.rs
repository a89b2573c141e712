//! Streamed replies on SQLite: 64 concurrent streams of 200 partial updates each, through
//! `CoalesceLayer`, against writing only the final message with `add` (what peers that keep no
//! partial content do) and against writing every partial update; interleaved rounds, medians.

use std::time::{Duration, Instant};

use persist::args::{Add, Reserve, UpdateContent};
use persist::layer::CoalesceLayer;
use persist::sqlite::SqliteBackend;
use persist::{Content, Pipeline, Role, ThreadId};

use crate::Options;
use crate::measure::median;
use crate::report::{Row, Target};

const STREAMS: usize = 64;
const UPDATES: usize = 200;

/// How a reply is written.
#[derive(Debug, Clone, Copy)]
enum Way {
    /// One `add` of the final content.
    FinalOnly,
    /// `reserve`, every partial update, the final one.
    EveryUpdate,
    /// The same requests through `CoalesceLayer`.
    Coalesced,
    /// `reserve`, each token appended alone (`UpdateContent::appending`), through
    /// `CoalesceLayer`.
    CoalescedAppends,
}

/// `STREAMS` tasks writing `replies` replies each; answers replies/s.
async fn run(pipeline: &Pipeline, way: Way, replies: usize, round: usize) -> f64 {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for stream in 0..STREAMS {
        let pipeline = pipeline.clone();
        tasks.spawn(async move {
            let thread = ThreadId::new(format!("stream-{round}-{stream}")).unwrap();
            for _ in 0..replies {
                write_reply(&pipeline, &thread, way).await;
            }
        });
    }
    tasks.join_all().await;
    (STREAMS * replies) as f64 / start.elapsed().as_secs_f64()
}

async fn write_reply(pipeline: &Pipeline, thread: &ThreadId, way: Way) {
    if let Way::FinalOnly = way {
        // The tokens arrive as in the other ways; only the reply they make is written.
        let mut content = String::new();
        for token in 0..UPDATES {
            content.push_str(&format!("tok{token} "));
            std::hint::black_box(&content);
        }
        let add = Add::new(thread.clone(), Role::Assistant, Content::text(&content));
        pipeline.add(add).await.expect("add");
        return;
    }
    let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await.expect("reserve").message;
    if let Way::CoalescedAppends = way {
        for token in 0..UPDATES {
            let piece = format!("tok{token} ");
            let append = UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text(&piece));
            pipeline.update_content(append.with_finalize(false)).await.expect("append");
        }
        let done = UpdateContent::appending(thread.clone(), reply.id.clone(), Content::placeholder());
        pipeline.update_content(done).await.expect("final append");
        return;
    }
    let mut content = String::new();
    for token in 0..UPDATES {
        content.push_str(&format!("tok{token} "));
        let partial =
            UpdateContent::new(thread.clone(), reply.id.clone(), Content::text(&content)).with_finalize(false);
        pipeline.update_content(partial).await.expect("partial update");
    }
    let done = UpdateContent::new(thread.clone(), reply.id.clone(), Content::text(&content));
    pipeline.update_content(done).await.expect("final update");
}

/// `PERSIST_BENCH_PROFILE=streams-final|streams-coalesced|streams-appends|streams-every`: one way alone, on a
/// fresh database, for `perf`.
pub(crate) fn profile(variant: &str) {
    let way = match variant {
        "final" => Way::FinalOnly,
        "coalesced" => Way::Coalesced,
        "appends" => Way::CoalescedAppends,
        "every" => Way::EveryUpdate,
        other => panic!("unknown streams variant {other:?}: final, coalesced, appends or every"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    rt.block_on(async {
        let backend = SqliteBackend::open(dir.path().join("profile.db")).await.expect("open");
        let pipeline = match way {
            Way::Coalesced | Way::CoalescedAppends => {
                Pipeline::builder().layer(CoalesceLayer::new(Duration::from_millis(100))).build(backend)
            }
            _ => Pipeline::new(backend),
        };
        let replies = if let Way::EveryUpdate = way { 1 } else { 20 };
        let rate = run(&pipeline, way, replies, 0).await;
        println!("{variant}: {rate:.0} replies/s");
    });
}

pub(crate) fn run_all(options: &Options) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rounds = options.scale(5, 1);
    let replies = options.scale(4, 1);
    let (mut final_only, mut every, mut coalesced, mut appends) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        let open = |name: &str| {
            let path = dir.path().join(name);
            async move { SqliteBackend::open(path).await.expect("open") }
        };
        let plain = Pipeline::new(open("final-only.db").await);
        let every_update = Pipeline::new(open("every-update.db").await);
        let layered =
            Pipeline::builder().layer(CoalesceLayer::new(Duration::from_millis(100))).build(open("coalesced.db").await);
        let appending =
            Pipeline::builder().layer(CoalesceLayer::new(Duration::from_millis(100))).build(open("appends.db").await);
        for round in 0..rounds {
            final_only.push(run(&plain, Way::FinalOnly, replies, round).await);
            coalesced.push(run(&layered, Way::Coalesced, replies, round).await);
            appends.push(run(&appending, Way::CoalescedAppends, replies, round).await);
            every.push(run(&every_update, Way::EveryUpdate, replies, round).await);
        }
    });
    let ratios: Vec<f64> = coalesced.iter().zip(&final_only).map(|(c, f)| c / f).collect();
    let every_ratios: Vec<f64> = every.iter().zip(&final_only).map(|(e, f)| e / f).collect();
    let append_ratios: Vec<f64> = appends.iter().zip(&final_only).map(|(a, f)| a / f).collect();
    let n = (rounds * replies * STREAMS) as u64;
    vec![
        Row::new("sqlite: 64 streams, final message only (one add of ~1.4 KB)", n, median(&mut final_only)),
        Row::new(
            "sqlite: 64 streams, reserve + 200 partial updates + final, through CoalesceLayer (100 ms)",
            n,
            median(&mut coalesced),
        )
        .ratio(median(&mut ratios.clone()), "replies/s, coalesced / final only")
        .target(Target::RatioAtLeast(0.8)),
        Row::new(
            "sqlite: 64 streams, reserve + 200 tokens appended alone + final, through CoalesceLayer (100 ms)",
            n,
            median(&mut appends),
        )
        .ratio(median(&mut append_ratios.clone()), "replies/s, coalesced appends / final only")
        .target(Target::RatioAtLeast(0.8)),
        Row::new(
            "sqlite: 64 streams, reserve + 200 partial updates + final, every update written",
            n,
            median(&mut every),
        )
        .ratio(median(&mut every_ratios.clone()), "replies/s, every update / final only"),
    ]
}
