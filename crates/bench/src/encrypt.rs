//! Encryption at rest: adds and lists of ~300-byte messages through `EncryptLayer` against the
//! same pipeline without it, side by side (interleaved chunks, on memory and on SQLite).

use std::time::Duration;

use persist::args::Add;
use persist::encrypt::{EncryptLayer, KeyId, KeyRing, SecretKey};
use persist::memory::MemoryBackend;
use persist::read::ListMessages;
use persist::sqlite::SqliteBackend;
use persist::{Backend, Content, MessageId, Order, Pipeline, Role, ThreadId};

use crate::Options;
use crate::measure::median;
use crate::report::Row;
use crate::workload::TEXT;

/// About 300 bytes of content: three short chat turns' worth.
fn content() -> Content {
    Content::text(format!("{TEXT} {TEXT} {TEXT}"))
}

fn sealed<B: Backend>(backend: B) -> Pipeline {
    let ring = KeyRing::new().with_key(KeyId::new("bench").unwrap(), SecretKey::new([7; 32])).expect("a key");
    Pipeline::builder().layer(EncryptLayer::new(ring)).build(backend)
}

/// The two pipelines of one comparison: plain and sealed, each over its own store.
struct Pair {
    plain: Pipeline,
    sealed: Pipeline,
}

/// Adds `n` messages to each pipeline (`threads` threads, explicit ids `{round}-{i}`) in
/// alternating chunks, then lists the latest 50 of a thread `n / 10` times on each; answers the
/// median ratios (sealed time / plain time) and the plain rates.
async fn compare(pair: &Pair, n: usize, rounds: usize, chunk: usize) -> [(f64, f64); 2] {
    let threads: Vec<ThreadId> = (0..16).map(|t| ThreadId::new(format!("enc-{t}")).unwrap()).collect();
    let (mut add_ratios, mut add_rates, mut list_ratios, mut list_rates) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let adds = |pipeline: &Pipeline, from: usize| {
            let pipeline = pipeline.clone();
            let threads = threads.clone();
            async move {
                for i in from..from + chunk {
                    let id = MessageId::new(format!("{round}-{i}")).unwrap();
                    let add = Add::new(threads[i % threads.len()].clone(), Role::User, content()).with_id(id);
                    pipeline.add(add).await.expect("add");
                }
            }
        };
        let lists = |pipeline: &Pipeline, from: usize| {
            let pipeline = pipeline.clone();
            let threads = threads.clone();
            async move {
                for i in from..from + chunk / 10 {
                    let query =
                        ListMessages::new(threads[i % threads.len()].clone()).with_order(Order::Desc).with_limit(50);
                    std::hint::black_box(pipeline.list(query).await.expect("list"));
                }
            }
        };
        let (mut plain, mut sealed) = (Duration::ZERO, Duration::ZERO);
        let (mut plain_lists, mut sealed_lists) = (Duration::ZERO, Duration::ZERO);
        for (step, from) in (0..n).step_by(chunk).enumerate() {
            // The order alternates every chunk, so drift hits both alike.
            let first_plain = step % 2 == 0;
            for plain_turn in [first_plain, !first_plain] {
                let target = if plain_turn { &pair.plain } else { &pair.sealed };
                let (_, took) = timed_async(adds(target, from)).await;
                let (_, listed) = timed_async(lists(target, from)).await;
                if plain_turn {
                    (plain, plain_lists) = (plain + took, plain_lists + listed);
                } else {
                    (sealed, sealed_lists) = (sealed + took, sealed_lists + listed);
                }
            }
        }
        add_ratios.push(sealed.as_secs_f64() / plain.as_secs_f64());
        add_rates.push(n as f64 / plain.as_secs_f64());
        list_ratios.push(sealed_lists.as_secs_f64() / plain_lists.as_secs_f64());
        list_rates.push((n / 10) as f64 / plain_lists.as_secs_f64());
    }
    [(median(&mut add_ratios), median(&mut add_rates)), (median(&mut list_ratios), median(&mut list_rates))]
}

async fn timed_async<T>(future: impl Future<Output = T>) -> (T, Duration) {
    let start = std::time::Instant::now();
    let out = future.await;
    (out, start.elapsed())
}

fn rows(store: &str, n: usize, [(add_ratio, add_rate), (list_ratio, list_rate)]: [(f64, f64); 2]) -> Vec<Row> {
    vec![
        Row::new(format!("{store}: add 300 B, no encryption"), n as u64, add_rate),
        Row::new(format!("{store}: add 300 B through EncryptLayer"), n as u64, add_rate / add_ratio)
            .ratio(add_ratio, "time, sealed add / plain add"),
        Row::new(format!("{store}: list the latest 50 (300 B each), no encryption"), (n / 10) as u64, list_rate),
        Row::new(
            format!("{store}: list the latest 50 (300 B each) through EncryptLayer"),
            (n / 10) as u64,
            list_rate / list_ratio,
        )
        .ratio(list_ratio, "time, sealed list / plain list"),
    ]
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let rounds = options.scale(5, 2);
    let mut out = Vec::new();
    let memory = Pair { plain: Pipeline::new(MemoryBackend::new()), sealed: sealed(MemoryBackend::new()) };
    let n = options.scale(100_000, 5_000);
    out.extend(rows("encrypt, memory", n, rt.block_on(compare(&memory, n, rounds, 1_000))));
    let dir = tempfile::tempdir().expect("tempdir");
    let n = options.scale(10_000, 1_000);
    let sqlite = rt.block_on(async {
        let plain = SqliteBackend::open(dir.path().join("plain.db")).await.expect("open");
        let sealed_store = SqliteBackend::open(dir.path().join("sealed.db")).await.expect("open");
        Pair { plain: Pipeline::new(plain), sealed: sealed(sealed_store) }
    });
    out.extend(rows("encrypt, sqlite", n, rt.block_on(compare(&sqlite, n, rounds, 500))));
    out
}
