//! Child process of the SQLite crash test: writes messages as fast as it can, from several
//! tasks, and prints `ack <thread> <id>` for each write the backend acknowledged. The test
//! kills it with SIGKILL at random points.
//!
//! Usage: `crash-writer <db-path> <round>`

use std::io::Write;

use persist::args::Add;
use persist::sqlite::SqliteBackend;
use persist::{Backend, Content, IdempotencyKey, MessageId, Metadata, Role, ThreadId};
use serde_json::json;

/// The content written for message `id`: recognizable, and long enough to span pages.
fn payload(id: &str) -> String {
    format!("payload of {id}: {}", "lorem ipsum dolor sit amet ".repeat(8))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(round)) = (args.next(), args.next()) else {
        eprintln!("usage: crash-writer <db-path> <round>");
        std::process::exit(2);
    };
    let backend = SqliteBackend::open(&path).await.expect("open the database");
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..8 {
        let backend = backend.clone();
        let round = round.clone();
        tasks.spawn(async move {
            for n in 0u64.. {
                let id = format!("r{round}-w{writer}-{n}");
                let thread = ThreadId::new(format!("crash-{}", writer % 3)).unwrap();
                let add = Add::new(thread.clone(), Role::User, Content::text(payload(&id)))
                    .with_id(MessageId::new(&id).unwrap())
                    .with_idempotency_key(IdempotencyKey::new(&id).unwrap())
                    .with_metadata(Metadata::new().with("n", json!(n)));
                backend.apply(add.into()).await.expect("write");
                let mut out = std::io::stdout().lock();
                writeln!(out, "ack {thread} {id}").and_then(|()| out.flush()).expect("report");
            }
        });
    }
    tasks.join_all().await;
}
