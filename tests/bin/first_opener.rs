//! Child process of the concurrent-open test: waits until an agreed instant, opens a SQLite
//! file (new, so it sets the schema up) and writes one message. Prints `ok` or the error, and
//! exits non-zero on an error.
//!
//! Usage: `first-opener <db-path> <start, in microseconds since the Unix epoch> <name>`

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use persist::args::Add;
use persist::sqlite::SqliteBackend;
use persist::{Backend, Content, Role, ThreadId};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(start), Some(name)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: first-opener <db-path> <start-micros> <name>");
        std::process::exit(2);
    };
    let start = UNIX_EPOCH + Duration::from_micros(start.parse().expect("a time in microseconds"));
    if let Ok(wait) = start.duration_since(SystemTime::now()) {
        std::thread::sleep(wait);
    }
    let opened = async {
        let backend = SqliteBackend::open(&path).await?;
        let thread = ThreadId::new("opened")?;
        backend.apply(Add::new(thread, Role::User, Content::text(&name)).into()).await?;
        backend.close().await;
        Ok::<_, persist::PersistError>(())
    };
    match opened.await {
        Ok(()) => println!("ok"),
        Err(error) => {
            // The whole chain: the driver's words say which step lost.
            let mut said = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                said = format!("{said}: {cause}");
                source = cause.source();
            }
            println!("{said}");
            std::process::exit(1);
        }
    }
}
