//! Child process of the SQLite crash test: writes messages as fast as it can, from several
//! tasks (half of them single adds, half whole turns of three messages, ids `<turn>.<i>`), and
//! prints `ack <thread> <id>` for each message the backend acknowledged. The test
//! kills it with SIGKILL at random points.
//!
//! Usage: `crash-writer <db-path> <round>`

use std::io::Write;

use persist::args::{AppendTurn, TurnMessage};
use persist::sqlite::SqliteBackend;
use persist::{Backend, Content, Context, IdempotencyKey, MessageId, Metadata, PersistArgs, Role, ThreadId};
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
                    [one] => {
                        message(one).to_write(thread.clone(), Some(IdempotencyKey::new(one).unwrap()), Context::new())
                    }
                    many => AppendTurn::of(thread.clone(), many.iter().map(|id| message(id))).into(),
                };
                backend.apply(args).await.expect("write");
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
