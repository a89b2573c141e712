//! One caller against the store a user would pick instead: Mastra's `LibSQLStore` (Node,
//! `@mastra/libsql`, WAL with `synchronous=NORMAL` as it opens a local file) and persist's
//! SQLite backend at its default, the same durability. Each adds 300-byte user messages to one
//! thread, one at a time, in interleaved rounds (the order alternating); Mastra's adds are
//! timed inside its own process (not its start, nor its store's opening). Needs
//! `npm ci` in `crates/bench/peers/mastra` (Node 22 comes with it); skipped otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use persist::args::Add;
use persist::sqlite::SqliteBackend;
use persist::{Backend, Content, MessageId, Role, ThreadId};

use crate::Options;
use crate::measure::{median, rate};
use crate::report::{Row, Target};

/// 300 bytes of text, as a chat turn.
fn text() -> String {
    let sentence = "Where is my order? It was due on Tuesday and the tracking page has not moved since. ";
    sentence.repeat(4)[..300].to_owned()
}

fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/mastra")
}

/// Mastra's `n` adds (ids `{round}-{i}`) to the store at `file`, in a Node process; its rate.
fn mastra(node: &Path, file: &Path, n: usize, round: usize, text: &str) -> Result<f64, String> {
    let output = Command::new(node)
        .arg(peer_dir().join("adds.mjs"))
        .arg(file)
        .arg(n.to_string())
        .arg(round.to_string())
        .env("PERSIST_BENCH_TEXT", text)
        .output()
        .map_err(|e| format!("running {}: {e}", node.display()))?;
    if !output.status.success() {
        return Err(format!("adds.mjs failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("adds.mjs printed no JSON: {e}"))?;
    let seconds = answer["seconds"].as_f64().ok_or("adds.mjs printed no time")?;
    Ok(rate(n, Duration::from_secs_f64(seconds)))
}

pub(crate) fn run(options: &Options) -> Vec<Row> {
    let scenario = "peers: ours, one caller adding 300-byte messages, vs Mastra LibSQLStore (both synchronous=NORMAL)";
    let node = peer_dir().join("node_modules/node/bin/node");
    if !node.exists() || !peer_dir().join("node_modules/@mastra/libsql").exists() {
        return vec![Row::skipped(scenario, "skipped: run `npm ci` in crates/bench/peers/mastra first")];
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    let (rounds, n) = (options.scale(5, 2), options.scale(2000, 200));
    let text = text();
    let ours = rt.block_on(SqliteBackend::open(dir.path().join("ours.db"))).expect("open");
    // Mastra keeps no full-text index: ours without one too, to tell what it costs.
    let plain = SqliteBackend::builder(dir.path().join("plain.db")).search_index(false);
    let plain = rt.block_on(plain.open()).expect("open");
    let theirs = dir.path().join("mastra.db");
    let (mut our_rates, mut plain_rates, mut their_rates) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ratios, mut plain_ratios) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let ours_round = |backend: &SqliteBackend| {
            let (backend, text) = (backend.clone(), text.clone());
            rt.block_on(rt.spawn(async move {
                let thread = ThreadId::new("single").expect("a thread id");
                let start = Instant::now();
                for i in 0..n {
                    let id = MessageId::new(format!("{round}-{i}")).expect("an id");
                    let add = Add::new(thread.clone(), Role::User, Content::text(text.clone())).with_id(id);
                    backend.apply(add.into()).await.expect("add");
                }
                rate(n, start.elapsed())
            }))
            .expect("our adds")
        };
        let (our_rate, plain_rate, their_rate) = if round % 2 == 0 {
            let (ours, plain) = (ours_round(&ours), ours_round(&plain));
            (ours, plain, mastra(&node, &theirs, n, round, &text))
        } else {
            let theirs = mastra(&node, &theirs, n, round, &text);
            let plain = ours_round(&plain);
            (ours_round(&ours), plain, theirs)
        };
        let their_rate = match their_rate {
            Ok(rate) => rate,
            Err(why) => return vec![Row::skipped(scenario, format!("skipped: {why}"))],
        };
        our_rates.push(our_rate);
        plain_rates.push(plain_rate);
        their_rates.push(their_rate);
        ratios.push(our_rate / their_rate);
        plain_ratios.push(plain_rate / their_rate);
    }
    rt.block_on(ours.close());
    rt.block_on(plain.close());
    let ops = (rounds * n) as u64;
    vec![
        Row::new(
            "peers: Mastra LibSQLStore (Node), one caller adding 300-byte messages",
            ops,
            median(&mut their_rates),
        ),
        Row::new(scenario, ops, median(&mut our_rates))
            .ratio(median(&mut ratios), "adds/s, ours / Mastra")
            .target(Target::RatioAtLeast(2.0)),
        Row::new(
            "peers: ours without the search index (`search_index(false)`), vs Mastra",
            ops,
            median(&mut plain_rates),
        )
        .ratio(median(&mut plain_ratios), "adds/s, ours without the index / Mastra"),
    ]
}
