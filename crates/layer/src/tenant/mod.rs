//! Refuse every request that names no tenant: in a multi-tenant host, a call without one is a
//! handler that forgot its [`Scoped`](persist_core::Scoped) handle, not a wish to reach the threads
//! that have no tenant.
//!
//! Let through: health checks (`ping`), and the reads an operator makes explicitly across
//! tenants (a thread listing, a search or a stranded search `across_tenants`, the store's change feed),
//! so retention and indexers still run. Put it above the layers that make calls of their own
//! without a tenant (`EncryptLayer` checks the ring key's check value that way).
//!
//! # Example
//!
//! ```
//! use persist::{args::Add, layer::RequireTenantLayer, Content, Context, PersistError, Pipeline, Role, TenantId, ThreadId};
//! use persist::memory::MemoryBackend;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let pipeline = Pipeline::builder().layer(RequireTenantLayer::new()).build(MemoryBackend::new());
//! let add = || Add::new(ThreadId::new("general").unwrap(), Role::User, Content::text("hi"));
//! assert!(matches!(pipeline.add(add()).await, Err(PersistError::Rejected { .. })));
//! let acme = pipeline.scoped(Context::new().with_tenant(TenantId::new("acme")?));
//! acme.add(add()).await?;
//! # Ok::<_, persist::PersistError>(())
//! # }).unwrap();
//! ```

mod layer;

use std::ops::ControlFlow;

pub use self::layer::RequireTenantLayer;
use crate::intercept::{Decision, Interceptor};
use persist_core::PersistArgs;
use persist_core::PersistError;
use persist_core::feed::FeedScope;

/// The decision of [`RequireTenantLayer`]: a request with a tenant, a `ping`, or a read
/// explicitly across tenants goes on; any other is answered `Rejected`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequireTenant;

impl Interceptor for RequireTenant {
    fn intercept(&self, args: PersistArgs) -> Decision {
        let across = match &args {
            PersistArgs::Ping(_) => true,
            PersistArgs::Threads(query) => query.across_tenants,
            PersistArgs::Search(query) => query.is_across_tenants(),
            PersistArgs::FindStranded(query) => query.across_tenants,
            PersistArgs::Memories(query) => query.across_tenants,
            PersistArgs::ReadFeed(query) => query.scope == FeedScope::AcrossTenants,
            _ => false,
        };
        if across || args.context().tenant().is_some() {
            return ControlFlow::Continue(args);
        }
        ControlFlow::Break(Err(PersistError::rejected(format!(
            "`{}` names no tenant, and this store serves tenants only (RequireTenantLayer): send it through \
             `pipeline.scoped(Context::new().with_tenant(…))`",
            args.op()
        ))))
    }
}

#[cfg(test)]
mod tests {
    use tower::{Layer, ServiceExt};

    use super::*;
    use persist_core::args::{Add, Context};
    use persist_core::read::{FindStranded, GetThread, ListThreads, Ping};
    use persist_core::{Content, PersistResult, Role, TenantId, ThreadId};

    async fn passes(args: impl Into<PersistArgs>) -> bool {
        // Below the layer, every request is answered `Pong`.
        let below = tower::service_fn(|_: PersistArgs| async { Ok::<_, PersistError>(PersistResult::Pong) });
        match RequireTenantLayer::new().layer(below).oneshot(args.into()).await {
            Ok(PersistResult::Pong) => true,
            Err(PersistError::Rejected { reason }) if reason.contains("names no tenant") => false,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_request_without_a_tenant_is_refused_but_operators_reads_across_tenants() {
        let thread = ThreadId::new("general").unwrap();
        let acme = Context::new().with_tenant(TenantId::new("acme").unwrap());
        let add = || Add::new(thread.clone(), Role::User, Content::text("hi"));
        assert!(!passes(add()).await);
        assert!(passes(add().with_context(acme.clone())).await);
        assert!(!passes(GetThread::new(thread.clone())).await);
        assert!(!passes(ListThreads::new()).await, "the no-tenant threads' listing");
        assert!(passes(ListThreads::new().across_tenants(true)).await);
        assert!(passes(FindStranded::new(persist_core::Timestamp::now()).across_tenants(true)).await);
        assert!(passes(persist_core::feed::ReadFeed::across_tenants()).await);
        assert!(!passes(persist_core::feed::ReadFeed::tenant()).await);
        assert!(passes(Ping::new()).await);
    }
}
