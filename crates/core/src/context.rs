//! The [`Context`] every request carries: its id, its tenant (part of every thread's
//! identity), and typed extensions layers pass to each other. It sits below every request
//! family, which each embed one.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::consistency::{CommitPosition, Consistency};
use crate::model::id::{RequestId, TenantId};

/// What every request carries besides its operation: a request id, who is asking, and typed
/// extensions that layers use to pass values to each other.
///
/// The [tenant](Self::tenant) is part of every thread's identity: a thread is
/// `(tenant, thread_id)`, so two tenants each have their own `general`, and a request reaches
/// only the threads of its context's tenant. A context without a tenant addresses the threads
/// that have none; trusted host code that must reach a tenant's thread names that tenant. The
/// backend keys every row by the tenant inside the write's own transaction, so isolation never
/// depends on a layer remembering to check, and no answer differs between "another tenant has
/// this id" and "nobody has this id".
///
/// # Example
///
/// ```
/// use persist::{Context, TenantId};
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Origin(&'static str);
///
/// let ctx = Context::new()
///     .with_tenant(TenantId::new("acme").unwrap())
///     .with_extension(Origin("web"));
/// assert_eq!(ctx.tenant().unwrap().as_str(), "acme");
/// assert_eq!(ctx.extensions().get::<Origin>(), Some(&Origin("web")));
/// assert_eq!(ctx.request_id(), ctx.request_id()); // generated once, on first use
/// ```
#[derive(Debug, Clone, Default)]
pub struct Context {
    // Allocated on first use: most writes carry an empty context, and a request that is
    // moved through every layer of a stack stays small (16 bytes here instead of 64).
    inner: OnceLock<Box<ContextInner>>,
}

#[derive(Debug, Clone, Default)]
struct ContextInner {
    request_id: OnceLock<RequestId>,
    tenant: Option<TenantId>,
    principal: Option<Arc<str>>,
    consistency: Option<Consistency>,
    extensions: http::Extensions,
}

impl Context {
    /// An empty context: no tenant (the threads that have none), no principal, a request id
    /// generated on first use.
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self) -> Option<&ContextInner> {
        self.inner.get().map(|inner| &**inner)
    }

    fn edit(mut self, edit: impl FnOnce(&mut ContextInner)) -> Self {
        let mut inner = self.inner.take().unwrap_or_default();
        edit(&mut inner);
        Self { inner: OnceLock::from(inner) }
    }

    /// This request's id, generated (UUIDv7) the first time it is asked for.
    pub fn request_id(&self) -> &RequestId {
        self.inner.get_or_init(Box::default).request_id.get_or_init(RequestId::generate)
    }

    /// Sets the request id (e.g. the id of the HTTP request that caused this write).
    pub fn with_request_id(self, id: RequestId) -> Self {
        self.edit(|inner| inner.request_id = OnceLock::from(id))
    }

    /// The tenant whose threads this request addresses; `None` addresses the threads without a
    /// tenant.
    pub fn tenant(&self) -> Option<&TenantId> {
        self.get().and_then(|inner| inner.tenant.as_ref())
    }

    /// Addresses `tenant`'s threads (and only those).
    pub fn with_tenant(self, tenant: TenantId) -> Self {
        self.edit(|inner| inner.tenant = Some(tenant))
    }

    /// The same context addressing `tenant`'s threads; `None` addresses the threads without a
    /// tenant. For trusted code that names a tenant it learned elsewhere (a thread listed
    /// [across tenants](crate::read::ListThreads::across_tenants), a stranded reservation).
    pub fn for_tenant(self, tenant: Option<TenantId>) -> Self {
        match (tenant, self.tenant()) {
            (None, None) => self,
            (tenant, _) => self.edit(|inner| inner.tenant = tenant),
        }
    }

    /// Who is acting (a user or service id), for audit layers. Not used for access control.
    pub fn principal(&self) -> Option<&str> {
        self.get().and_then(|inner| inner.principal.as_deref())
    }

    /// The same tenant, principal, consistency and extensions, with a request id of its own (generated on
    /// first use): for a handle that sends many requests on behalf of one caller.
    pub fn renewed(&self) -> Self {
        match self.get() {
            None => Self::new(),
            Some(inner) => Self::new().edit(|fresh| {
                fresh.tenant = inner.tenant.clone();
                fresh.principal = inner.principal.clone();
                fresh.consistency = inner.consistency.clone();
                fresh.extensions = inner.extensions.clone();
            }),
        }
    }

    /// Sets the principal.
    pub fn with_principal(self, principal: impl Into<Arc<str>>) -> Self {
        let principal = principal.into();
        self.edit(|inner| inner.principal = Some(principal))
    }

    /// The commits this request must see when a copy of the store answers it (see
    /// [`Consistency`]); `None` asks for nothing beyond what the backend guarantees itself.
    pub fn consistency(&self) -> Option<&Consistency> {
        self.get().and_then(|inner| inner.consistency.as_ref())
    }

    /// Carries `consistency`: a backend that answers reads from copies of the store records
    /// this request's writes in it, and answers its reads from a copy that has them.
    pub fn with_consistency(self, consistency: Consistency) -> Self {
        self.edit(|inner| inner.consistency = Some(consistency))
    }

    /// The same context with a [`Consistency`] of its own when it carries none: the requests an
    /// operation derives from it ([`renewed`](Self::renewed)) share it, so each sees the
    /// writes before it even when a copy of the store that lags answers it.
    pub fn consistent(self) -> Self {
        match self.consistency() {
            Some(_) => self,
            None => self.with_consistency(Consistency::new()),
        }
    }

    /// Typed values attached by the host or by layers.
    pub fn extensions(&self) -> &http::Extensions {
        static EMPTY: std::sync::LazyLock<http::Extensions> = std::sync::LazyLock::new(http::Extensions::new);
        self.get().map_or(&*EMPTY, |inner| &inner.extensions)
    }

    /// Mutable access to the extensions.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        if self.inner.get().is_none() {
            *self = std::mem::take(self).edit(|_| {});
        }
        match self.inner.get_mut() {
            Some(inner) => &mut inner.extensions,
            None => unreachable!("the storage was created above"),
        }
    }

    /// Attaches a typed value.
    pub fn with_extension<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions_mut().insert(value);
        self
    }
}

#[derive(Serialize, Deserialize)]
struct ContextRepr {
    request_id: RequestId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<TenantId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    principal: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    read_after: Option<CommitPosition>,
}

/// Serializes the request id, tenant, principal and the position its
/// [consistency](Context::consistency) must see (`read_after`), read back as a consistency of
/// its own; extensions are process-local and skipped.
impl Serialize for Context {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        ContextRepr {
            request_id: self.request_id().clone(),
            tenant: self.tenant().cloned(),
            principal: self.get().and_then(|inner| inner.principal.clone()),
            read_after: self.consistency().and_then(Consistency::position),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let repr = ContextRepr::deserialize(deserializer)?;
        Ok(Self::new().edit(|inner| {
            inner.request_id = OnceLock::from(repr.request_id);
            inner.tenant = repr.tenant;
            inner.principal = repr.principal;
            inner.consistency = repr.read_after.map(Consistency::after);
        }))
    }
}

/// `with_context`, the setter every request has: for request types of crates built on this one
/// (each holds its context in a field named `context`).
#[doc(hidden)]
#[macro_export]
macro_rules! context_setter {
    () => {
        /// Replaces the request's `Context`.
        pub fn with_context(mut self, context: $crate::Context) -> Self {
            self.context = context;
            self
        }
    };
    (tenant) => {
        $crate::context_setter!();

        /// The tenant the request addresses: its context's (`None`: the threads without one).
        pub fn tenant(&self) -> Option<&$crate::TenantId> {
            self.context.tenant()
        }
    };
}
pub(crate) use crate::context_setter;

/// A context extension marking writes the framework itself issued for maintenance, so layers
/// (audit, policy) can tell them from user writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Maintenance;
