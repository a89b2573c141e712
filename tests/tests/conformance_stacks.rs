//! Layer transparency: the whole conformance suite passes through reference stacks of the
//! ready-made layers, so a layer that should not change behaviour provably does not.

use std::ops::ControlFlow;

use persist::layer::route::{self, RouteLayer};
use persist::layer::{Decision, InterceptLayer, ObserveLayer, from_fn};
use persist::memory::MemoryBackend;
use persist::{PersistArgs, PersistError, PersistOp, PersistResult, Pipeline};
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
                    .on_args(|args: &PersistArgs| assert!(!args.thread_id().as_str().is_empty()))
                    .on_result(|result: &PersistResult| assert!(!result.thread_id().as_str().is_empty()))
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
