//! The request state: what the routes' handlers are given. [`App`] is the router's state, one
//! per server (its pipeline, the callers' auth, the limits, the shutdown the event streams end
//! on, the embedder recall uses); [`Caller`] is a request's share of it (its tenant and the
//! pipeline scoped to it), and [`JsonObject`] its body, read within the limits.
//!
//! Made by [`Server`](crate::Server), the builder; built on the HTTP plumbing only.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use persist_core::{PersistError, Pipeline, Scoped, TenantId};
use persist_recall::Embedder;
use serde_json::{Map, Value};

use crate::http::error::ApiError;
use crate::http::extract::{Tenant, context_of, read_object};
use crate::http::json::json_body;
use crate::http::limits::Limits;
use crate::http::listen::Closing;
use crate::http::reload::SharedAuth;

/// What every request of a server is given (as `State<Arc<App>>`, and through [`Caller`]).
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub(crate) pipeline: Pipeline,
    /// Shared by every server rebuilt from this one: keys reloaded on one are every one's.
    pub(crate) auth: SharedAuth,
    pub(crate) limits: Limits,
    /// Ends the event streams (shared as `auth` is).
    pub(crate) closing: Closing,
    /// What `POST /v1/persist/recall` embeds the query with, when the host gave one.
    pub(crate) embedder: Option<SharedEmbedder>,
}

/// The embedder a server recalls with.
#[derive(Clone)]
pub(crate) struct SharedEmbedder(pub(crate) Arc<dyn Embedder>);

impl SharedEmbedder {
    pub(crate) fn new(embedder: impl Embedder) -> Self {
        Self(Arc::new(embedder))
    }
}

impl fmt::Debug for SharedEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedEmbedder").field(&self.0.model()).finish()
    }
}

/// A request's caller: its tenant, and the pipeline scoped to it.
#[derive(Debug)]
pub(crate) struct Caller {
    pub(crate) tenant: Option<TenantId>,
    pub(crate) store: Scoped,
    timeout: Duration,
    limits: Limits,
    closing: Closing,
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let tenant = app.auth.tenant(&parts.headers)?;
        let context = context_of(tenant.clone(), &parts.extensions);
        Ok(Self {
            store: app.pipeline.scoped(context),
            tenant,
            timeout: app.limits.store_timeout,
            limits: app.limits.clone(),
            closing: app.closing.clone(),
        })
    }
}

impl Caller {
    /// A call to the store, in at most the server's timeout (503 after it), its refusal as the
    /// API's error for a request on `conversation`.
    pub(crate) async fn run<T>(
        &self,
        conversation: Option<&str>,
        call: impl Future<Output = Result<T, PersistError>>,
    ) -> Result<T, ApiError> {
        self.within(call).await?.map_err(|error| ApiError::from_store(error, conversation))
    }

    /// A call to the store in at most the server's timeout (503 after it), its refusal left
    /// to the caller to read.
    pub(crate) async fn within<T>(
        &self,
        call: impl Future<Output = Result<T, PersistError>>,
    ) -> Result<Result<T, PersistError>, ApiError> {
        tokio::time::timeout(self.timeout, call).await.map_err(|_| {
            tracing::warn!(timeout_ms = self.timeout.as_millis() as u64, "the store did not answer in time");
            ApiError::unavailable(format!(
                "The store did not answer within {} ms; retry later.",
                self.timeout.as_millis()
            ))
        })
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Completes when the server shuts down: an event stream ends then.
    pub(crate) fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        self.closing.closed()
    }

    /// A JSON response, marked with the caller's tenant for the log.
    pub(crate) fn answer(&self, status: StatusCode, body: &Value) -> Response {
        let mut response =
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json_body(body))
                .into_response();
        response.extensions_mut().insert(Tenant(self.tenant.clone()));
        response
    }
}

/// A request's body as a JSON object (an empty body is `{}`), read within the server's
/// [`Limits::max_body_bytes`]: see [`read_object`].
#[derive(Debug)]
pub(crate) struct JsonObject(pub(crate) Map<String, Value>);

impl FromRequest<Arc<App>> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        read_object(&parts.headers, body, app.limits.max_body_bytes).await.map(Self)
    }
}
