//! Plugin style 1, `from_fn`: an audit log of every write, who asked and how it ended.
//!
//! Run: `cargo run --example audit_log`

use std::sync::{Arc, Mutex};

use persist::args::{Add, Delete, UpdateContent};
use persist::layer::from_fn;
use persist::memory::MemoryBackend;
use persist::{Content, Context, MessageId, Pipeline, Role, ThreadId};

#[tokio::main]
async fn main() -> Result<(), persist::PersistError> {
    let audit = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = audit.clone();
    let pipeline = Pipeline::builder()
        .layer(from_fn(move |args, next| {
            let log = log.clone();
            async move {
                // Every call passes through the layers; reads change nothing, so they are not
                // audited here.
                if args.op().is_read() {
                    return next.run(args).await;
                }
                let who = args.context().principal().unwrap_or("host").to_owned();
                let thread = args.thread_id().map(ToString::to_string).unwrap_or_default();
                let line = format!("{who} {} {thread}", args.op());
                let result = next.run(args).await;
                let outcome = match &result {
                    Ok(_) => "ok".to_owned(),
                    Err(error) => error.code().to_owned(),
                };
                log.lock().unwrap().push(format!("{line} -> {outcome}"));
                result
            }
        }))
        .build(MemoryBackend::new());

    let thread = ThreadId::new("audit-demo")?;
    let alice = Context::new().with_principal("alice");
    let message = pipeline.add(Add::new(thread.clone(), Role::User, Content::text("hi")).with_context(alice)).await?;
    let missing = UpdateContent::new(thread.clone(), MessageId::new("nope")?, Content::text("x"));
    let _ = pipeline.update_content(missing).await;
    pipeline.delete(Delete::message(thread, message.message.id)).await?;

    for line in audit.lock().unwrap().iter() {
        println!("{line}");
    }
    Ok(())
}
