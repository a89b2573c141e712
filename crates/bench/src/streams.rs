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
    /// `reserve`, then the final content, nothing between: the two writes every durable
    /// stream makes (the reservation's seq is the store's), so the most any coalescing of the
    /// updates between them could reach.
    ReserveFinal,
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
    if let Way::ReserveFinal = way {
        let mut content = String::new();
        for token in 0..UPDATES {
            content.push_str(&format!("tok{token} "));
            std::hint::black_box(&content);
        }
        let done = UpdateContent::new(thread.clone(), reply.id.clone(), Content::text(&content));
        pipeline.update_content(done).await.expect("final update");
        return;
    }
    if let Way::CoalescedAppends = way {
        for token in 0..UPDATES {
            let piece = format!("tok{token} ");
            let append = UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text(&piece));
            pipeline.update_content(append).await.expect("append");
        }
        let done = UpdateContent::finishing(thread.clone(), reply.id.clone());
        pipeline.update_content(done).await.expect("final append");
        return;
    }
    let mut content = String::new();
    for token in 0..UPDATES {
        content.push_str(&format!("tok{token} "));
        let partial = UpdateContent::partial(thread.clone(), reply.id.clone(), Content::text(&content));
        pipeline.update_content(partial).await.expect("partial update");
    }
    let done = UpdateContent::new(thread.clone(), reply.id.clone(), Content::text(&content));
    pipeline.update_content(done).await.expect("final update");
}

/// `PERSIST_BENCH_PROFILE=streams-final|streams-reserve-final|streams-coalesced|streams-appends|streams-every`:
/// one way alone, on a
/// fresh database, for `perf`.
pub(crate) fn profile(variant: &str) {
    let way = match variant {
        "final" => Way::FinalOnly,
        "reserve-final" => Way::ReserveFinal,
        "coalesced" => Way::Coalesced,
        "appends" => Way::CoalescedAppends,
        "every" => Way::EveryUpdate,
        other => panic!("unknown streams variant {other:?}: final, reserve-final, coalesced, appends or every"),
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
    let mut two_writes = Vec::new();
    rt.block_on(async {
        let open = |name: &str| {
            let path = dir.path().join(name);
            async move { SqliteBackend::open(path).await.expect("open") }
        };
        let plain = Pipeline::new(open("final-only.db").await);
        let every_update = Pipeline::new(open("every-update.db").await);
        let reserve_final = Pipeline::new(open("reserve-final.db").await);
        let layered =
            Pipeline::builder().layer(CoalesceLayer::new(Duration::from_millis(100))).build(open("coalesced.db").await);
        let appending =
            Pipeline::builder().layer(CoalesceLayer::new(Duration::from_millis(100))).build(open("appends.db").await);
        for round in 0..rounds {
            final_only.push(run(&plain, Way::FinalOnly, replies, round).await);
            two_writes.push(run(&reserve_final, Way::ReserveFinal, replies, round).await);
            coalesced.push(run(&layered, Way::Coalesced, replies, round).await);
            appends.push(run(&appending, Way::CoalescedAppends, replies, round).await);
            every.push(run(&every_update, Way::EveryUpdate, replies, round).await);
        }
    });
    let ratios: Vec<f64> = coalesced.iter().zip(&final_only).map(|(c, f)| c / f).collect();
    let every_ratios: Vec<f64> = every.iter().zip(&final_only).map(|(e, f)| e / f).collect();
    let append_ratios: Vec<f64> = appends.iter().zip(&final_only).map(|(a, f)| a / f).collect();
    let ceiling_ratios: Vec<f64> = two_writes.iter().zip(&final_only).map(|(r, f)| r / f).collect();
    let n = (rounds * replies * STREAMS) as u64;
    vec![
        Row::new("sqlite: 64 streams, final message only (one add of ~1.4 KB)", n, median(&mut final_only)),
        Row::new(
            "sqlite: 64 streams, reserve + final, nothing between (the two writes of any durable stream)",
            n,
            median(&mut two_writes),
        )
        .ratio(median(&mut ceiling_ratios.clone()), "replies/s, reserve + final / final only"),
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

/// Bytes this process handed to `write(2)` so far (`wchar` of `/proc/self/io`; SQLite's log and
/// database writes are all of them here). `None` where the file does not exist.
fn bytes_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|line| line.strip_prefix("wchar: ")).and_then(|n| n.trim().parse().ok())
}

/// Bytes written per reply of 200 tokens (~8 KB of text) on one stream, each way; answers rows
/// (empty where `/proc/self/io` is missing).
pub(crate) fn bytes_per_reply(options: &Options) -> Vec<Row> {
    const TOKEN: &str = "a token of forty bytes, more or less.. ";
    let replies = options.scale(10, 2);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut rows = Vec::new();
    let ways: [(&str, Way); 4] = [
        ("final message only (one add)", Way::FinalOnly),
        ("every partial update written, whole content each time", Way::EveryUpdate),
        ("full-content partial updates through CoalesceLayer", Way::Coalesced),
        ("tokens appended alone through CoalesceLayer", Way::CoalescedAppends),
    ];
    for (name, way) in ways {
        let measured = rt.block_on(async {
            let backend = SqliteBackend::open(dir.path().join(format!("{name}.db"))).await.expect("open");
            let pipeline = match way {
                Way::Coalesced | Way::CoalescedAppends => {
                    Pipeline::builder().layer(CoalesceLayer::new(Duration::from_millis(100))).build(backend.clone())
                }
                _ => Pipeline::new(backend.clone()),
            };
            let before = bytes_written()?;
            for reply in 0..replies {
                let thread = ThreadId::new(format!("bytes-{reply}")).unwrap();
                write_tokens(&pipeline, &thread, way, TOKEN).await;
            }
            // Every write is committed and in the log (the coalesced ways' final update waited
            // for the writes before it).
            let after = bytes_written()?;
            backend.close().await;
            Some((after - before) / replies as u64)
        });
        if let Some(bytes) = measured {
            rows.push(
                Row::new(
                    format!("sqlite: bytes written per 8 KB reply of 200 tokens, {name}"),
                    replies as u64,
                    bytes as f64,
                )
                .ratio(bytes as f64 / (UPDATES * TOKEN.len()) as f64, "bytes written / bytes of the reply"),
            );
        }
    }
    rows
}

/// One reply of `UPDATES` tokens of `token`, written `way`.
async fn write_tokens(pipeline: &Pipeline, thread: &ThreadId, way: Way, token: &str) {
    if let Way::FinalOnly = way {
        let add = Add::new(thread.clone(), Role::Assistant, Content::text(token.repeat(UPDATES)));
        pipeline.add(add).await.expect("add");
        return;
    }
    let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await.expect("reserve").message;
    let mut content = String::new();
    for _ in 0..UPDATES {
        content.push_str(token);
        let update = match way {
            Way::CoalescedAppends => UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text(token)),
            _ => UpdateContent::partial(thread.clone(), reply.id.clone(), Content::text(&content)),
        };
        pipeline.update_content(update).await.expect("partial update");
    }
    let done = match way {
        Way::CoalescedAppends => UpdateContent::finishing(thread.clone(), reply.id.clone()),
        _ => UpdateContent::new(thread.clone(), reply.id.clone(), Content::text(&content)),
    };
    pipeline.update_content(done).await.expect("final update");
}
