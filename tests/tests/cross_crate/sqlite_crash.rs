//! Crash safety of the SQLite backend: a child process writes as fast as it can (single adds and
//! whole turns of three messages) and reports each acknowledged write; it is killed with SIGKILL
//! at random points, several times. After reopening, every acknowledged message is present and
//! intact, nothing is half-written (no message, and no turn: a turn's three messages are all
//! there, with consecutive seqs, or none is), the counters match the rows and
//! `PRAGMA integrity_check` passes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use persist::read::{GetThread, ListMessages};
use persist::sqlite::SqliteBackend;
use persist::{Backend, Message, ThreadId};
use rand::{Rng, SeedableRng};
use sqlx::{Connection, SqliteConnection};

const ROUNDS: usize = 5;

fn payload(id: &str) -> String {
    format!("payload of {id}: {}", "lorem ipsum dolor sit amet ".repeat(8))
}

/// Runs one child until it has acknowledged `kill_after` writes, then SIGKILLs it.
fn run_child(path: &std::path::Path, round: usize, kill_after: usize) -> Vec<(String, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
        .arg(path)
        .arg(round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the writer");
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the writer's output");
        let mut parts = line.split(' ');
        assert_eq!(parts.next(), Some("ack"), "unexpected line {line:?}");
        acked.push((parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned()));
        if acked.len() >= kill_after {
            child.kill().expect("SIGKILL the writer"); // SIGKILL on Unix
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "the writer was killed, not finished: {status:?}");
    assert!(acked.len() >= kill_after, "the writer died early after {} acks", acked.len());
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let seed: u64 = std::env::var("PERSIST_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0xc4a5);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acked = Vec::new();
    for round in 0..ROUNDS {
        let kill_after = rng.random_range(50..1500);
        acked.extend(run_child(&path, round, kill_after));
    }

    let backend = SqliteBackend::open(&path).await.expect("reopen after the crashes");
    let mut stored: BTreeMap<String, Vec<Message>> = BTreeMap::new();
    for thread in ["crash-0", "crash-1", "crash-2"] {
        let id = ThreadId::new(thread).unwrap();
        let mut query = ListMessages::new(id.clone()).include_reserved(true).with_limit(1000);
        let mut messages = Vec::new();
        loop {
            let page = backend.list(query.clone()).await.unwrap();
            messages.extend(page.items.iter().cloned());
            match query.next_page(&page) {
                Some(next) => query = next,
                None => break,
            }
        }
        // Counters moved with the rows, in the same transactions.
        let th = backend.get_thread(GetThread::new(id)).await.unwrap().expect("thread exists");
        assert_eq!(th.message_count as usize, messages.len(), "seed {seed}: {thread} message_count");
        assert_eq!(Some(th.last_seq), messages.last().map(|m| m.seq), "seed {seed}: {thread} last_seq");
        let seqs: Vec<u64> = messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=messages.len() as u64).collect::<Vec<_>>(), "seed {seed}: {thread} seqs");
        stored.insert(thread.to_owned(), messages);
    }

    // Every message, acknowledged or not, is whole.
    for messages in stored.values() {
        for m in messages {
            assert_eq!(m.content.to_text(), payload(m.id.as_str()), "seed {seed}: half-written {}", m.id);
            assert_eq!(m.idempotency_key.as_ref().map(|k| k.as_str()), Some(m.id.as_str()));
        }
    }
    // Every turn is whole: its three messages, consecutive, or none of them.
    let mut turns = 0;
    for messages in stored.values() {
        let whole_before = turns;
        for (i, m) in messages.iter().enumerate() {
            let Some(turn) = m.id.as_str().strip_suffix(".0") else { continue };
            let parts: Vec<&str> = messages[i..].iter().take(3).map(|m| m.id.as_str()).collect();
            let expected = [format!("{turn}.0"), format!("{turn}.1"), format!("{turn}.2")];
            assert_eq!(parts, expected, "seed {seed}: turn {turn} is not whole and consecutive");
            turns += 1;
        }
        let of_turns = messages.iter().filter(|m| m.id.as_str().contains('.')).count();
        assert_eq!(of_turns, 3 * (turns - whole_before), "seed {seed}: a turn's message without its turn");
    }
    assert!(turns > 0, "seed {seed}: the writer wrote turns");
    // Every acknowledged message is there.
    for (thread, id) in &acked {
        let present = stored[thread].iter().any(|m| m.id.as_str() == id);
        assert!(present, "seed {seed}: acknowledged {thread}/{id} is missing");
    }
    let total: usize = stored.values().map(Vec::len).sum();
    assert!(total >= acked.len());
    drop(backend);

    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut conn).await.unwrap();
    assert_eq!(integrity, "ok", "seed {seed}");
    println!("crash test: {} rounds, {} acknowledged, {} stored", ROUNDS, acked.len(), total);
}
