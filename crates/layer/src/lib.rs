//! Ready-made layers and the three ways to write your own.
//!
//! From easiest to most control:
//!
//! 1. [`from_fn()`]: an async closure `|args, next| async move { next.run(args).await }`.
//! 2. [`ObserveLayer`] with hook closures ([`OnArgs`], [`OnResult`], [`OnError`]) to watch
//!    without changing anything.
//! 3. A full `tower::Layer` + `Service` + pin-projected response future, as the modules
//!    here are written (see `examples/custom_layer.rs`).
//!
//! Ready-made, each in its own module: [`observe`], [`route`] (redirect to another stack),
//! [`intercept`] (short-circuit), [`retry`], [`timeout`], [`detach`] (finish writes whose
//! caller left), [`trace`], [`metrics`], [`events`], [`validate`], [`chaos`], [`mirror`],
//! [`coalesce`] (streamed replies at the cost of a final write), [`tenant`] (refuse requests
//! without a tenant), [`tool_calls`] (no orphan tool calls or results). `CompactLayer`
//! (summaries written in the background when a thread's tail outgrows a budget) is in
//! `persist-ops` beside the compaction it runs; the facade's `persist::layer` lists it here too.
//!
//! Every layer is a folder in tower's shape: `mod.rs` holds the service (or, for a layer built
//! on [`intercept`], its interceptor) and the re-exports, `layer.rs` the `Layer`, and
//! `future.rs` the response future when the service has a named one of its own (a service
//! answering a boxed future has none). A layer's helper modules stay in its folder
//! (`coalesce/slots.rs`, `route/across.rs`).
//!
//! # Cargo features
//!
//! Every layer is on by default. The four that bring a dependency of their own are a feature
//! each, for an app that wants to leave them out (`default-features = false`, then the ones
//! it uses): `metrics` ([`MetricsLayer`], the `metrics` facade), `retry` ([`RetryLayer`],
//! tower's retry), `timeout` ([`TimeoutLayer`], tower's timeout), `chaos` ([`ChaosLayer`],
//! `rand`). The others need only the contract and tower, and are always there: as in tower,
//! a layer an app does not stack costs it nothing at run time, and a few seconds of build.
//!
//! # Recommended order
//!
//! ```text
//! Trace → Metrics → Events → Validate → Retry → Timeout → (your layers, Route) → Detach → backend
//! ```
//!
//! Observe everything first (trace and count what callers see, publish only what committed),
//! refuse bad input before retrying anything, retry outside the per-attempt timeout, and finish
//! writes that reached the backend even when the caller gave up.

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

#[cfg(feature = "chaos")]
pub mod chaos;
pub mod coalesce;
pub mod detach;
pub mod events;
pub mod from_fn;
pub mod gen_ai;
pub mod intercept;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod mirror;
pub mod observe;
#[cfg(feature = "retry")]
pub mod retry;
pub mod route;
pub mod tenant;
#[cfg(feature = "timeout")]
pub mod timeout;
pub mod tool_calls;
pub mod trace;
pub mod validate;

#[cfg(feature = "chaos")]
pub use self::chaos::ChaosLayer;
pub use self::coalesce::CoalesceLayer;
pub use self::detach::DetachLayer;
pub use self::events::{Committed, Events, EventsLayer};
pub use self::from_fn::{FromFnLayer, Next, from_fn};
pub use self::gen_ai::GenAiTraceLayer;
pub use self::intercept::{Decision, InterceptLayer, Interceptor};
#[cfg(feature = "metrics")]
pub use self::metrics::MetricsLayer;
pub use self::mirror::MirrorLayer;
pub use self::observe::{ObserveLayer, OnArgs, OnError, OnResult};
#[cfg(feature = "retry")]
pub use self::retry::{RetryLayer, RetryPolicy};
pub use self::route::RouteLayer;
pub use self::tenant::RequireTenantLayer;
#[cfg(feature = "timeout")]
pub use self::timeout::TimeoutLayer;
pub use self::tool_calls::{ProviderHistory, ToolCallsLayer, Unanswered};
pub use self::trace::TraceLayer;
pub use self::validate::{Limits, ValidateLayer};
