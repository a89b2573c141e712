//! Layer transparency: the whole conformance suite passes through reference stacks of the
//! ready-made layers, so a layer that should not change behaviour provably does not.

use std::ops::ControlFlow;

use std::time::Duration;

use persist::layer::route::{self, RouteLayer};
use persist::layer::{
    Decision, DetachLayer, InterceptLayer, Limits, MetricsLayer, ObserveLayer, RetryLayer, RetryPolicy, TimeoutLayer,
    TraceLayer, ValidateLayer, from_fn,
};
use persist::memory::MemoryBackend;
use persist::sqlite::SqliteBackend;
use persist::{Backend, PersistArgs, PersistError, PersistOp, PersistResult, Pipeline};
use persist_conformance::{BoxError, Factory};

/// Observe (all hooks) + Route (no match) + Intercept (passes) + from_fn (passes).
struct PassThroughStack;

impl Factory for PassThroughStack {
    type Backend = Pipeline;
    type Storage = MemoryBackend;

    async fn create(&self) -> Result<MemoryBackend, BoxError> {
        Ok(MemoryBackend::new())
    }

    async fn open(&self, storage: &MemoryBackend) -> Result<Pipeline, BoxError> {
        // Writes routed here would be lost to the checks, so any mis-route fails them.
        let elsewhere = Pipeline::new(MemoryBackend::new());
        Ok(Pipeline::builder()
            .layer(
                ObserveLayer::new()
                    .on_args(|args: &PersistArgs| assert!(args.thread_id().is_none_or(|t| !t.as_str().is_empty())))
                    .on_result(|result: &PersistResult| {
                        assert!(result.thread_id().is_none_or(|t| !t.as_str().is_empty()))
                    })
                    .on_error(|_: PersistOp, _: &PersistError| {}),
            )
            .layer(RouteLayer::builder().route("never", route::thread_prefix("never-matches:"), elsewhere).build()?)
            .layer(InterceptLayer::new(|args: PersistArgs| -> Decision { ControlFlow::Continue(args) }))
            .layer(from_fn(|args, next| next.run(args)))
            .build(storage.clone()))
    }
}

persist_conformance::conformance_tests!(PassThroughStack);

/// A pipeline used as the backend of another pipeline (stacks nest).
struct NestedStack;

impl Factory for NestedStack {
    type Backend = Pipeline;
    type Storage = MemoryBackend;

    async fn create(&self) -> Result<MemoryBackend, BoxError> {
        Ok(MemoryBackend::new())
    }

    async fn open(&self, storage: &MemoryBackend) -> Result<Pipeline, BoxError> {
        let inner = Pipeline::builder().layer(ObserveLayer::new()).build(storage.clone());
        Ok(Pipeline::builder().layer(from_fn(|args, next| next.run(args))).build(inner))
    }
}

mod nested {
    use super::*;
    persist_conformance::conformance_tests!(NestedStack);
}

/// The operational reference stack, in the recommended order.
fn operational<B: Backend>(backend: B) -> Pipeline {
    Pipeline::builder()
        .layer(TraceLayer::new())
        .layer(MetricsLayer::new())
        .layer(ValidateLayer::new(Limits::new()))
        .layer(RetryLayer::new(RetryPolicy::new()))
        .layer(TimeoutLayer::new(Duration::from_secs(30)))
        .layer(DetachLayer::new())
        .build(backend)
}

/// Trace + Metrics + Validate + Retry + Timeout + Detach over memory.
struct OperationalMemory;

impl Factory for OperationalMemory {
    type Backend = Pipeline;
    type Storage = MemoryBackend;

    async fn create(&self) -> Result<MemoryBackend, BoxError> {
        Ok(MemoryBackend::new())
    }

    async fn open(&self, storage: &MemoryBackend) -> Result<Pipeline, BoxError> {
        Ok(operational(storage.clone()))
    }
}

mod operational_memory {
    use super::*;
    persist_conformance::conformance_tests!(OperationalMemory);
}

/// The same stack over SQLite files.
struct OperationalSqlite;

impl Factory for OperationalSqlite {
    type Backend = Pipeline;
    type Storage = tempfile::TempDir;

    async fn create(&self) -> Result<tempfile::TempDir, BoxError> {
        let dir = tempfile::tempdir()?;
        persist_testkit::sqlite::fresh(&dir.path().join("persist.db")).await?;
        Ok(dir)
    }

    async fn open(&self, dir: &tempfile::TempDir) -> Result<Pipeline, BoxError> {
        Ok(operational(SqliteBackend::open(dir.path().join("persist.db")).await?))
    }
}

mod operational_sqlite {
    use super::*;
    persist_conformance::conformance_tests!(OperationalSqlite);
}

/// Threads whose id has an odd length: the half of the threads a split stack routes away.
fn odd(args: &PersistArgs) -> bool {
    args.thread_id().is_some_and(|thread| thread.as_str().len() % 2 == 1)
}

/// Every call, reads included, through a route that splits the threads across two stores: the
/// contract holds as if there were one (reads find routed writes, listings cross stores with
/// one cursor, stranded reservations are found in both).
struct SplitMemory;

impl Factory for SplitMemory {
    type Backend = Pipeline;
    type Storage = (MemoryBackend, MemoryBackend);

    async fn create(&self) -> Result<(MemoryBackend, MemoryBackend), BoxError> {
        // Two stores are two feeds with positions of their own: the split declares no feed.
        Ok((MemoryBackend::new().with_feed(None), MemoryBackend::new()))
    }

    async fn open(&self, (main, other): &(MemoryBackend, MemoryBackend)) -> Result<Pipeline, BoxError> {
        let route = RouteLayer::builder().route("odd", odd, Pipeline::new(other.clone())).build()?;
        Ok(Pipeline::builder().layer(route).build(main.clone()))
    }
}

mod split_memory {
    use super::*;
    persist_conformance::conformance_tests!(SplitMemory);
}

/// The same split with the routed half on SQLite.
struct SplitMemorySqlite;

impl Factory for SplitMemorySqlite {
    type Backend = Pipeline;
    type Storage = (MemoryBackend, tempfile::TempDir);

    async fn create(&self) -> Result<(MemoryBackend, tempfile::TempDir), BoxError> {
        // Two stores are two feeds with positions of their own: the split declares no feed.
        let dir = tempfile::tempdir()?;
        persist_testkit::sqlite::fresh(&dir.path().join("routed.db")).await?;
        Ok((MemoryBackend::new().with_feed(None), dir))
    }

    async fn open(&self, (main, dir): &(MemoryBackend, tempfile::TempDir)) -> Result<Pipeline, BoxError> {
        let other = SqliteBackend::open(dir.path().join("routed.db")).await?;
        let route = RouteLayer::builder().route("odd", odd, Pipeline::new(other)).build()?;
        Ok(Pipeline::builder().layer(route).build(main.clone()))
    }
}

mod split_memory_sqlite {
    use super::*;
    persist_conformance::conformance_tests!(SplitMemorySqlite);
}
