//! `POST /v1/persist/recall`: the caller's items most like a text, by their embeddings, with
//! the embedder the host gave the server ([`Server::with_embedder`](crate::Server::with_embedder)).

use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use persist_core::Result;
use persist_core::raw::BoxFuture;
use persist_recall::{Embedder, Recall, RecallExt};
use serde_json::{Map, Value, json};

use crate::api::conversations::{USER_KEY, find, items_of, known_fields};
use crate::api::items;
use crate::http::error::ApiError;
use crate::state::{App, Caller, JsonObject};

/// The fields a recall request takes.
pub(crate) const FIELDS: &[&str] = &["query", "conversation", "user_id", "limit", "keywords", "neighbours"];

/// How many hits a request may ask for, and how many it gets when it does not say.
pub(crate) const LIMITS: (RangeInclusive<u32>, u32) = (1..=20, 5);

/// How many items around each hit a request may ask for (on each side).
pub(crate) const NEIGHBOURS: RangeInclusive<u32> = 0..=5;

/// Where a request's embedding is: told apart from the store's part of the recall, so that a
/// slow or failing model is answered as such, not as the store.
#[derive(Debug, Clone, PartialEq)]
enum Stage {
    NotStarted,
    Embedding,
    Embedded,
    /// It failed: whether a retry may succeed.
    Failed {
        temporary: bool,
    },
}

/// The server's embedder, watched.
struct Watched {
    inner: Arc<dyn Embedder>,
    stage: Mutex<Stage>,
}

impl Watched {
    fn stage(&self) -> Stage {
        self.stage.lock().map(|stage| stage.clone()).unwrap_or(Stage::NotStarted)
    }

    fn set(&self, stage: Stage) {
        if let Ok(mut current) = self.stage.lock() {
            *current = stage;
        }
    }
}

impl Embedder for Watched {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>>> {
        Box::pin(async move {
            self.set(Stage::Embedding);
            let embedded = self.inner.embed(texts).await;
            self.set(match &embedded {
                Ok(_) => Stage::Embedded,
                Err(error) => Stage::Failed { temporary: error.is_temporary() },
            });
            embedded
        })
    }
}

/// `POST /v1/persist/recall` with `{"query", "conversation"?, "user_id"?, "limit"?,
/// "keywords"?, "neighbours"?}`: the caller's items most like `query` (by cosine similarity of
/// their embeddings; with `keywords`, fused with a full-text search by reciprocal rank fusion),
/// best first, each with the items around it. `conversation` keeps one conversation's (404 when
/// the caller has none of that id); `user_id` keeps those of the threads whose metadata
/// `user_id` is that value (a conversation's `metadata.user_id`, copied there; a thread a Rust
/// host or the MCP server marked).
pub(crate) async fn recall(
    State(app): State<Arc<App>>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    known_fields(&body, FIELDS)?;
    let Some(embedder) = app.embedder.clone() else { return Err(ApiError::no_embedder()) };
    let query = match body.get("query") {
        None | Some(Value::Null) => return Err(ApiError::invalid("query", "Missing required parameter: 'query'.")),
        Some(Value::String(query)) if query.trim().is_empty() => {
            return Err(ApiError::invalid("query", "Invalid 'query': empty; there is nothing to recall by."));
        }
        Some(Value::String(query)) => query.clone(),
        Some(_) => return Err(ApiError::invalid("query", "Invalid 'query': expected a string.")),
    };
    let (range, default) = LIMITS;
    let limit = integer(&body, "limit", range, default)?;
    let neighbours = integer(&body, "neighbours", NEIGHBOURS, 0)?;
    let mut request = Recall::new(query.clone()).with_limit(limit).with_message_range(neighbours, neighbours);
    match body.get("keywords") {
        None | Some(Value::Null | Value::Bool(false)) => {}
        Some(Value::Bool(true)) => request = request.with_keywords(query),
        Some(Value::String(words)) if !words.trim().is_empty() => request = request.with_keywords(words.clone()),
        Some(_) => {
            return Err(ApiError::invalid(
                "keywords",
                "Invalid 'keywords': expected a boolean (the query's words) or a non-empty string of words.",
            ));
        }
    }
    if let Some(user) = string(&body, "user_id")? {
        request = request.for_resource(USER_KEY, user);
    }
    let conversation = string(&body, "conversation")?;
    if let Some(id) = conversation {
        request = request.in_thread(find(&caller, id).await?.id);
    }
    let watched = Watched { inner: embedder.0, stage: Mutex::new(Stage::NotStarted) };
    let timeout = caller.limits().store_timeout;
    let recalled = match tokio::time::timeout(timeout, caller.store.recall(&watched, request)).await {
        Ok(Ok(recalled)) => recalled,
        Ok(Err(error)) => {
            return Err(match watched.stage() {
                Stage::Failed { temporary } => ApiError::embedder_failed(&error, temporary),
                _ => ApiError::from_store(error, conversation),
            });
        }
        Err(_) if watched.stage() == Stage::Embedding => {
            tracing::warn!(timeout_ms = timeout.as_millis() as u64, "the embedding model did not answer in time");
            return Err(ApiError::embedder_failed(&format!("no answer within {} ms", timeout.as_millis()), true));
        }
        Err(_) => {
            tracing::warn!(timeout_ms = timeout.as_millis() as u64, "the store did not answer in time");
            return Err(ApiError::unavailable(format!(
                "The store did not answer within {} ms; retry later.",
                timeout.as_millis()
            )));
        }
    };
    let data: Vec<Value> = recalled
        .hits
        .iter()
        .filter_map(|hit| {
            // A message reads as one item when this API wrote it; as several when a Rust host
            // wrote text and tool calls in one: the first (whose id is the message's) is the hit.
            let item = items::of_message(&hit.message).into_iter().next()?;
            Some(json!({
                "object": "recall.hit",
                "conversation_id": hit.message.thread_id.as_str(),
                "item": item,
                "score": hit.score,
                "similarity": hit.similarity,
                "before": items_of(&hit.before, false),
                "after": items_of(&hit.after, false),
            }))
        })
        .collect();
    Ok(caller
        .answer(StatusCode::OK, &json!({"object": "list", "data": data, "has_more": false, "model": watched.model()})))
}

/// The integer `field` of `body`, in `range`, `default` when absent or `null`.
fn integer(
    body: &Map<String, Value>,
    field: &'static str,
    range: RangeInclusive<u32>,
    default: u32,
) -> Result<u32, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => {
            // A whole number written as a float (`6.0`) is an integer to JSON Schema, and here.
            let whole = value.as_u64().or_else(|| {
                value.as_f64().filter(|n| n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n)).map(|n| n as u64)
            });
            whole.and_then(|n| u32::try_from(n).ok()).filter(|n| range.contains(n)).ok_or_else(|| {
                let (low, high) = (range.start(), range.end());
                ApiError::invalid(
                    field,
                    format!("Invalid '{field}': {value}. Expected an integer from {low} to {high}."),
                )
            })
        }
    }
}

/// The string `field` of `body`, `None` when absent or `null`.
fn string<'a>(body: &'a Map<String, Value>, field: &'static str) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if !text.is_empty() => Ok(Some(text)),
        Some(_) => Err(ApiError::invalid(field, format!("Invalid '{field}': expected a non-empty string."))),
    }
}
