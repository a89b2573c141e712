//! The load balancer's probes, answered outside the request limit and without a key:
//! `GET /health` (the process answers) and `GET /ready` (the store answers a ping in time).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;
use crate::state::App;

/// `GET /health`: the process answers.
pub(crate) async fn health() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], r#"{"status":"ok"}"#).into_response()
}

/// `GET /ready`: the store answers a ping within the store timeout, else 503.
pub(crate) async fn ready(State(app): State<Arc<App>>) -> Response {
    let ping = tokio::time::timeout(app.limits.store_timeout, app.pipeline.ping()).await;
    match ping {
        Ok(Ok(())) => ([(header::CONTENT_TYPE, "application/json")], r#"{"status":"ready"}"#).into_response(),
        Ok(Err(error)) => {
            tracing::warn!(%error, "not ready: the store refused a ping");
            ApiError::unavailable("The store does not answer.").into_response()
        }
        Err(_) => ApiError::unavailable("The store did not answer a ping in time.").into_response(),
    }
}
