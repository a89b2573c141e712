//! Admission: every request of the API is checked for its host, has its body read within the
//! server's deadline, and only then takes one of the server's request slots, so a slot counts
//! work: a client that sends its body slowly (or never) holds none.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use persist_core::TenantId;
use tokio::sync::Semaphore;

use super::error::ApiError;
use super::extract::{REQUEST_ID, Tenant, request_id, unreadable};
use super::hosts::Hosts;
use super::limits::Limits;
use super::metrics;
use super::reload::SharedAuth;

/// The target of the access line, one per request at `INFO` (its own, so a log filter keeps it
/// apart from the store's traces: `warn,persist_serve::access=info`).
pub(crate) const ACCESS: &str = "persist_serve::access";

/// What a server admits requests by: its callers' auth (whether they give keys), the hosts it
/// answers for without them, its limits and its request slots.
#[derive(Debug)]
pub(crate) struct Admission {
    pub(crate) auth: SharedAuth,
    pub(crate) hosts: Hosts,
    pub(crate) limits: Limits,
    pub(crate) in_flight: Arc<Semaphore>,
}

impl Admission {
    /// Refuses a request from a host it does not answer for, where no key proves the caller
    /// (a key cannot be sent from another site's page without a CORS preflight, never granted).
    fn check_host(&self, request: &Request) -> Result<(), ApiError> {
        match self.auth.takes_keys() {
            true => Ok(()),
            false => self.hosts.check(request.headers(), request.uri()),
        }
    }
}

/// Every request: admitted when the server answers for its host (else 403), its body arrived
/// within [`Limits::body_timeout`] and [`Limits::max_body_bytes`] (else 408, 413) and a request
/// slot is free (else 429); counted by route and status, timed, and logged once answered by
/// one access line at `INFO` (method, path, route, status, time, tenant, request id; never a
/// key or a body).
pub(crate) async fn admit(State(admission): State<Arc<Admission>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // The route's template (`/v1/conversations/{id}`), never the path with its ids.
    let route = request.extensions().get::<MatchedPath>().map(|route| route.as_str().to_owned());
    let id = request_id(request.headers());
    request.extensions_mut().insert(id.clone());
    // Every event of the request, the store's spans included, is inside its span.
    let span = tracing::info_span!("request", request_id = %id.0);
    let limits = &admission.limits;
    let admitted = match admission.check_host(&request) {
        Ok(()) => buffered(request, limits).await,
        Err(refused) => Err(refused),
    };
    let mut response = match admitted {
        Err(refused) => refused.into_response(),
        Ok(request) => match admission.in_flight.clone().try_acquire_owned() {
            Err(_) => ApiError::busy(limits.max_concurrent_requests).into_response(),
            Ok(_permit) => {
                let _working = metrics::InFlight::start();
                tracing::Instrument::instrument(next.run(request), span).await
            }
        },
    };
    if let Ok(value) = HeaderValue::from_str(&id.0) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    metrics::answered(&method, route.as_deref(), status, elapsed);
    let micros = elapsed.as_micros() as u64;
    let tenant = response.extensions().get::<Tenant>().and_then(|t| t.0.clone());
    let tenant = tenant.as_ref().map(TenantId::as_str);
    let route = route.as_deref().unwrap_or(metrics::UNMATCHED);
    tracing::info!(target: ACCESS, %method, %path, route, status, micros, tenant, request_id = %id.0, "answered");
    response
}

/// The request with its body read whole, within the server's deadline and size: a body over
/// [`Limits::max_body_bytes`] is 413 (by its `Content-Length` before any of it is read, else as
/// soon as the bytes read pass it); one not there within [`Limits::body_timeout`] is 408, its
/// connection closed (the rest of the body is never read).
async fn buffered(request: Request, limits: &Limits) -> Result<Request, ApiError> {
    let (parts, body) = request.into_parts();
    let limit = limits.max_body_bytes;
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let bytes = match tokio::time::timeout(limits.body_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(read) => read.map_err(|error| unreadable(&error, limit))?,
        // Its access line says so (408).
        Err(_) => return Err(ApiError::slow_body(limits.body_timeout)),
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
