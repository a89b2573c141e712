//! A ready-made layer, `Route`: threads whose id starts with `eval:` go to a separate store, so
//! evaluation runs never mix with production conversations.
//!
//! Run: `cargo run --example route_by_prefix`

use persist::args::Add;
use persist::layer::RouteLayer;
use persist::layer::route::thread_prefix;
use persist::memory::MemoryBackend;
use persist::read::ListThreads;
use persist::{Content, Pipeline, Role, ThreadId};

#[tokio::main]
async fn main() -> Result<(), persist::PersistError> {
    let evals = Pipeline::new(MemoryBackend::new());
    let production = Pipeline::builder()
        .layer(RouteLayer::builder().route("evaluations", thread_prefix("eval:"), evals.clone()).build()?)
        .build(MemoryBackend::new());

    for thread in ["user:17", "eval:run-3/case-1", "user:18", "eval:run-3/case-2"] {
        production.add(Add::new(ThreadId::new(thread)?, Role::User, Content::text("hello"))).await?;
    }
    let names = |page: persist::Page<persist::Thread, persist::read::ThreadCursor>| {
        page.items.into_iter().map(|t| t.id.to_string()).collect::<Vec<_>>()
    };
    println!("production store: {:?}", names(production.threads(ListThreads::new()).await?));
    println!("evaluation store: {:?}", names(evals.threads(ListThreads::new()).await?));
    Ok(())
}
