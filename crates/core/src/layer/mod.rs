//! Ready-made layers and the three ways to write your own.
//!
//! From easiest to most control:
//!
//! 1. [`from_fn`]: an async closure `|args, next| async move { next.run(args).await }`.
//! 2. [`ObserveLayer`] with hook closures ([`OnArgs`], [`OnResult`], [`OnError`]) to watch
//!    without changing anything.
//! 3. A full `tower::Layer` + `Service` + pin-projected response future, as the modules
//!    here are written (see `examples/custom_layer.rs`).
//!
//! Ready-made: [`observe`], [`route`] (redirect to another stack), [`intercept`]
//! (short-circuit).

pub mod from_fn;
pub mod intercept;
pub mod observe;
pub mod route;

pub use self::from_fn::{FromFnLayer, Next, from_fn};
pub use self::intercept::{Decision, InterceptLayer, Interceptor};
pub use self::observe::{ObserveLayer, OnArgs, OnError, OnResult};
pub use self::route::RouteLayer;
