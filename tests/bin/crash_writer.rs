//! Child process of the SQLite crash test: writes messages as fast as it can, from several
//! tasks (half of them single adds, half whole turns of three messages, ids `<turn>.<i>`), and
//! prints `ack <thread> <id>` for each message the backend acknowledged. The test
//! kills it with SIGKILL at random points.
//!
//! With `vectors` after the round, each single add carries an embedding (model `crash`, 8
//! dimensions) and every fourth is followed by an `embed` replacing the vector of the add
//! before it: what the vector index's crash test writes.
//!
//! Usage: `crash-writer <db-path> <round> [vectors]`

use std::io::Write;

use persist::args::{AppendTurn, TurnMessage};
use persist::sqlite::SqliteBackend;
use persist::vector::{Embed, Embedding};
use persist::{Backend, Content, Context, IdempotencyKey, MessageId, Metadata, PersistArgs, Role, ThreadId};
use serde_json::json;

/// The content written for message `id`: recognizable, and long enough to span pages.
fn payload(id: &str) -> String {
    format!("payload of {id}: {}", "lorem ipsum dolor sit amet ".repeat(8))
}

/// A vector of `seed`'s bytes, 8 dimensions of small whole numbers (so scores tie often).
fn vector(seed: &str) -> Embedding {
    let mut state =
        seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let numbers: Vec<f32> = (0..8)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 5) as f32 - 2.0
        })
        .collect();
    let numbers = if numbers.iter().all(|x| *x == 0.0) { vec![1.0; 8] } else { numbers };
    Embedding::new("crash", numbers)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(round)) = (args.next(), args.next()) else {
        eprintln!("usage: crash-writer <db-path> <round>");
        std::process::exit(2);
    };
    let vectors = args.next().as_deref() == Some("vectors");
    let backend = SqliteBackend::open(&path).await.expect("open the database");
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..8 {
        let backend = backend.clone();
        let round = round.clone();
        tasks.spawn(async move {
            for n in 0u64.. {
                let id = format!("r{round}-w{writer}-{n}");
                let thread = ThreadId::new(format!("crash-{}", writer % 3)).unwrap();
                let message = |id: &str| {
                    TurnMessage::new(Role::User, Content::text(payload(id)))
                        .with_id(MessageId::new(id).unwrap())
                        .with_idempotency_key(IdempotencyKey::new(id).unwrap())
                        .with_metadata(Metadata::new().with("n", json!(n)))
                };
                let ids: Vec<String> = match writer % 2 {
                    0 => vec![id],
                    _ => (0..3).map(|i| format!("{id}.{i}")).collect(),
                };
                let args: PersistArgs = match ids.as_slice() {
                    [one] if vectors => message(one).with_embedding(vector(one)).to_write(
                        thread.clone(),
                        Some(IdempotencyKey::new(one).unwrap()),
                        Context::new(),
                    ),
                    [one] => {
                        message(one).to_write(thread.clone(), Some(IdempotencyKey::new(one).unwrap()), Context::new())
                    }
                    many => AppendTurn::of(thread.clone(), many.iter().map(|id| message(id))).into(),
                };
                backend.apply(args).await.expect("write");
                if vectors && n % 4 == 3 && ids.len() == 1 {
                    let before = MessageId::new(format!("r{round}-w{writer}-{}", n - 1)).unwrap();
                    let embed = Embed::new(thread.clone(), before, vector(&format!("again {n}")));
                    backend.apply(embed.into()).await.expect("embed");
                }
                let mut out = std::io::stdout().lock();
                for id in &ids {
                    writeln!(out, "ack {thread} {id}").expect("report");
                }
                out.flush().expect("report");
            }
        });
    }
    tasks.join_all().await;
}
