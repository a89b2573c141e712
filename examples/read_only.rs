//! A ready-made layer, `Intercept`: a maintenance switch that makes the store read-only and
//! answers writes with a clear error, without touching the backend.
//!
//! Run: `cargo run --example read_only`

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use persist::args::Add;
use persist::layer::{Decision, InterceptLayer};
use persist::memory::MemoryBackend;
use persist::read::ListMessages;
use persist::{Content, PersistArgs, PersistError, Pipeline, Role, ThreadId};

#[tokio::main]
async fn main() -> Result<(), PersistError> {
    let maintenance = Arc::new(AtomicBool::new(false));
    let switch = maintenance.clone();
    let pipeline = Pipeline::builder()
        .layer(InterceptLayer::new(move |args: PersistArgs| -> Decision {
            // Every call passes here, reads too: only writes are refused.
            if switch.load(Ordering::Relaxed) && !args.op().is_read() {
                ControlFlow::Break(Err(PersistError::rejected("the store is read-only during maintenance")))
            } else {
                ControlFlow::Continue(args)
            }
        }))
        .build(MemoryBackend::new());

    let thread = ThreadId::new("ops")?;
    pipeline.add(Add::new(thread.clone(), Role::User, Content::text("before maintenance"))).await?;
    maintenance.store(true, Ordering::Relaxed);
    match pipeline.add(Add::new(thread.clone(), Role::User, Content::text("during"))).await {
        Err(error) => println!("refused: {error}"),
        Ok(_) => println!("accepted: the switch did not work"),
    }
    let stored = pipeline.list(ListMessages::new(thread.clone())).await?.items;
    println!("reads still work: {} message(s)", stored.len());
    maintenance.store(false, Ordering::Relaxed);
    pipeline.add(Add::new(thread, Role::User, Content::text("after"))).await?;
    println!("writes are back");
    Ok(())
}
