//! The vector index across a writer killed with SIGKILL: a child process writes messages with
//! their vectors to a SQLite file (adds carrying them, embeds replacing them) while this process
//! answers `nearest` through a `VectorIndex` over its own handle on the file, caught up from the
//! change feed before each answer. The child is killed at random points; after each kill the
//! index answers exactly what the store's scan answers, and so does an index started again, as
//! after a restart: built from the rows, and read back from the file the first one wrote (then
//! caught up from the feed).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use persist::Pipeline;
use persist::recall::VectorIndex;
use persist::sqlite::SqliteBackend;
use persist::vector::{Embedding, Nearest, Neighbour};
use persist::{Role, ThreadId};
use rand::{Rng, SeedableRng};

const ROUNDS: usize = 3;

/// Queries of every shape the test asks: the whole store, one thread, one role; ties common.
fn queries(rng: &mut rand::rngs::StdRng) -> Vec<Nearest> {
    (0..12)
        .map(|i| {
            let vector: Vec<f32> = (0..8).map(|_| rng.random_range(-2..=2) as f32).collect();
            let vector = if vector.iter().all(|x| *x == 0.0) { vec![1.0; 8] } else { vector };
            let query = Nearest::new(Embedding::new("crash", vector)).with_limit(1 + i as u32 * 4);
            match i % 3 {
                0 => query,
                1 => query.in_thread(ThreadId::new(format!("crash-{}", i % 3)).unwrap()),
                _ => query.with_roles([Role::User]),
            }
        })
        .collect()
}

/// What a hit is, shortly: its message and score.
fn hits(found: &[Neighbour]) -> Vec<(String, u64, f32)> {
    found.iter().map(|n| (n.message.id.to_string(), n.message.seq, n.score)).collect()
}

/// The index's answers and the store's, once nothing writes.
async fn same_answers(plain: &Pipeline, indexed: &Pipeline, rng: &mut rand::rngs::StdRng, when: &str) {
    for query in queries(rng) {
        let scanned = plain.nearest(query.clone()).await.expect("the store's scan");
        let answered = indexed.nearest(query.clone()).await.expect("the index");
        assert!(answered == scanned, "{when}: {query:?}\n{:?}\n{:?}", hits(&answered), hits(&scanned));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_answers_exactly_across_a_killed_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let seed: u64 = std::env::var("PERSIST_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x1dec5);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let backend = SqliteBackend::open(&path).await.expect("open");
    let plain = Pipeline::new(backend.clone());
    let files = dir.path().join("index");
    let index = VectorIndex::new().with_snapshots(&files);
    let indexed = Pipeline::builder().layer(index.layer()).build(backend.clone());
    for round in 0..ROUNDS {
        let kill_after = rng.random_range(100..800);
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
            .arg(&path)
            .arg(round.to_string())
            .arg("vectors")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the writer");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut acked = 0;
        while acked < kill_after {
            let line = lines.next().expect("the writer runs").expect("read the writer's output");
            assert!(line.starts_with("ack "), "unexpected line {line:?}");
            acked += 1;
            // Answers while the writer writes (each caught up to what it committed by then: the
            // store's scan a moment later may hold more, so they are compared once it is dead).
            if acked % 100 == 0 {
                for query in queries(&mut rng) {
                    indexed.nearest(query).await.expect("the index while the writer writes");
                }
            }
        }
        child.kill().expect("SIGKILL the writer");
        assert!(!child.wait().unwrap().success());
        same_answers(&plain, &indexed, &mut rng, &format!("round {round}, after the kill")).await;
    }
    let stats = index.stats();
    assert!(stats.answered > 0 && stats.vectors > 100, "{stats:?}");

    // As after a restart: an index built again from the rows, and one read back from the file the
    // first wrote (written in the background: there once the first index has let go of it).
    let again = Pipeline::builder().layer(VectorIndex::new().layer()).build(backend.clone());
    same_answers(&plain, &again, &mut rng, "built again").await;
    drop((indexed, index));
    for _ in 0..600 {
        if files.join("default.vectors").exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let restarted = VectorIndex::new().with_snapshots(&files);
    let again = Pipeline::builder().layer(restarted.layer()).build(backend.clone());
    same_answers(&plain, &again, &mut rng, "read back from its file").await;
    let stats = restarted.stats();
    assert!(stats.restored == 1 && stats.builds == 0, "{stats:?}");
    backend.close().await;
}
