//! A ready-made layer, `Route`: threads whose id starts with `eval:` go to a separate store, so
//! evaluation runs never mix with production conversations.
//!
//! Run: `cargo run --example route_by_prefix`

use persist::args::Add;
use persist::layer::RouteLayer;
use persist::layer::route::thread_prefix;
use persist::memory::MemoryBackend;
use persist::read::{ListMessages, ListThreads};
use persist::{Content, Pipeline, Role, ThreadId};

#[tokio::main]
async fn main() -> Result<(), persist::PersistError> {
    let evals = Pipeline::new(MemoryBackend::new());
    let production_store = MemoryBackend::new();
    let pipeline = Pipeline::builder()
        .layer(RouteLayer::builder().route("evaluations", thread_prefix("eval:"), evals.clone()).build()?)
        .build(production_store.clone());

    for thread in ["user:17", "eval:run-3/case-1", "user:18", "eval:run-3/case-2"] {
        pipeline.add(Add::new(ThreadId::new(thread)?, Role::User, Content::text("hello"))).await?;
    }
    let names = |page: persist::Page<persist::Thread, persist::read::ThreadCursor>| {
        page.items.into_iter().map(|t| t.id.to_string()).collect::<Vec<_>>()
    };
    // Each store holds its own threads...
    let production = Pipeline::new(production_store);
    println!("production store: {:?}", names(production.threads(ListThreads::new()).await?));
    println!("evaluation store: {:?}", names(evals.threads(ListThreads::new()).await?));
    // ...and the routed pipeline reads them where they live: one listing covers both stores,
    // and a routed thread reads back through it.
    println!("through the route: {:?}", names(pipeline.threads(ListThreads::new()).await?));
    let case = pipeline.list(ListMessages::new(ThreadId::new("eval:run-3/case-1")?)).await?;
    println!("eval:run-3/case-1 read back: {} message(s)", case.items.len());
    Ok(())
}
