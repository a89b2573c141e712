//! [`Scoped`]: a pipeline handle that stamps one [`Context`] (a tenant) on every call.

use std::future::Future;

use crate::args::{Context, PersistArgs};
use crate::feed::{FeedScope, ReadFeed, Subscription};
use crate::model::error::{PersistError, Result};
use crate::pipeline::Capabilities;
use crate::pipeline::Pipeline;
use crate::read::Ping;
use crate::request::result::PersistResult;

/// A [`Pipeline`] handle scoped to a [`Context`]: every write and read it sends carries that
/// context (its tenant, principal and extensions, with a request id of its own per call),
/// whatever context the request was built with, and one [`Consistency`](crate::Consistency)
/// (the context's, or one of the handle's own): its reads see its writes even when a copy of
/// the store that lags answers them (replicas). It offers no way to send an unscoped call, so
/// a request handler given a `Scoped` for the caller's tenant cannot forget the tenant.
///
/// Nothing across tenants goes through it: a listing of threads, a search for stranded
/// reservations or a change-feed read that asks `across_tenants` is refused (`Rejected`) before
/// any layer sees it.
///
/// # Example
///
/// ```
/// use persist::{args::Add, read::GetThread, Content, Context, Pipeline, Role, TenantId, ThreadId};
/// use persist::memory::MemoryBackend;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let pipeline = Pipeline::new(MemoryBackend::new());
/// let acme = pipeline.scoped(Context::new().with_tenant(TenantId::new("acme")?));
/// let globex = pipeline.scoped(Context::new().with_tenant(TenantId::new("globex")?));
/// let thread = ThreadId::new("general")?;
/// acme.add(Add::new(thread.clone(), Role::User, Content::text("hi"))).await?;
/// assert!(acme.get_thread(GetThread::new(thread.clone())).await?.is_some());
/// assert!(globex.get_thread(GetThread::new(thread)).await?.is_none()); // not globex's
/// # Ok::<_, persist::PersistError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Scoped {
    pipeline: Pipeline,
    context: Context,
}

impl Scoped {
    pub(crate) fn new(pipeline: Pipeline, context: Context) -> Self {
        // The handle's calls see each other's writes, whichever copy of the store answers.
        Self { pipeline, context: context.consistent() }
    }

    pub(crate) fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The context every call carries (each with a request id of its own).
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// The feed's newest position in one of the scope's threads or documents, or all of them; see
    /// [`Pipeline::feed_head`].
    ///
    /// # Errors
    ///
    /// `Rejected` for a read [across tenants](ReadFeed::across_tenants); otherwise as
    /// [`Pipeline::feed_head`].
    pub async fn feed_head(&self, query: ReadFeed) -> Result<u64> {
        if !within_tenant(&query) {
            return Err(across_tenants());
        }
        self.pipeline.feed_head(query.with_context(self.context.renewed())).await
    }

    /// Follows one of the scope's threads or documents, or all of them ([`ReadFeed::tenant`]); every read
    /// the subscription makes carries the scope's context. See [`Pipeline::subscribe`].
    ///
    /// # Errors
    ///
    /// `Rejected` for a subscription [across tenants](ReadFeed::across_tenants); otherwise as
    /// [`Pipeline::subscribe`].
    pub async fn subscribe(&self, query: ReadFeed) -> Result<Subscription> {
        if !within_tenant(&query) {
            return Err(across_tenants());
        }
        self.pipeline.subscribe(query.with_context(self.context.renewed())).await
    }

    /// What the store behind the pipeline can do; see [`Pipeline::capabilities`].
    pub fn capabilities(&self) -> Capabilities {
        self.pipeline.capabilities()
    }

    /// A health check, through the layers, in the scope's context.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::ping`].
    pub async fn ping(&self) -> Result<()> {
        match self.pipeline.execute(Ping::new().with_context(self.context.renewed())).await? {
            PersistResult::Pong => Ok(()),
            other => Err(PersistError::MismatchedResult { op: crate::PersistOp::Ping, got: other.op() }),
        }
    }

    /// Sends any request in the scope's context.
    ///
    /// # Errors
    ///
    /// `Rejected` for a request across tenants; otherwise whatever the layers or the backend
    /// answer.
    pub fn execute(
        &self,
        args: impl Into<PersistArgs>,
    ) -> impl Future<Output = Result<PersistResult>> + Send + 'static {
        let mut args = args.into();
        let refused = super::reaches_across(&args);
        *args.context_mut() = self.context.renewed();
        let call = self.pipeline.execute(args);
        async move {
            if refused {
                return Err(across_tenants());
            }
            call.await
        }
    }
}

/// Whether a feed read stays in its context's tenant (one of its threads or documents, or all
/// of them).
pub(crate) fn within_tenant(query: &ReadFeed) -> bool {
    matches!(query.scope, FeedScope::Thread(_) | FeedScope::Memory(_) | FeedScope::Tenant)
}

pub(crate) fn across_tenants() -> PersistError {
    PersistError::rejected("a request across tenants is for operators: not through a scoped handle")
}

impl Pipeline {
    /// A handle that sends every call in `context` (its tenant confines them); see [`Scoped`].
    pub fn scoped(&self, context: Context) -> Scoped {
        Scoped::new(self.clone(), context)
    }
}
