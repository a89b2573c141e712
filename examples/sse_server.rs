//! A thread's change feed over HTTP, as Server-Sent Events that resume where a client stopped.
//!
//! Several instances of this server can share one PostgreSQL store: a client following a
//! thread through one instance sees the writes made through any other, in commit order, each
//! once, and after a dropped connection it resumes with the events it missed, no more.
//!
//! # Routes
//!
//! - `GET /threads/{id}/events`: the thread's change feed as Server-Sent Events. Each event's
//!   `id` is its feed position, its `event` the write that made it (`add`, `reserve`,
//!   `update_content`, `update`, `delete`) and its `data` the [`FeedEvent`] as JSON (what
//!   changed, not the content: a client reads the message it names). The stream starts after
//!   the position in the `Last-Event-ID` header (what a browser's `EventSource` sends when it
//!   reconnects, so it wins), else after `?after=N`, else at the start of the thread's history.
//!   When the feed no longer holds every event after that position (retention removed some),
//!   the stream sends one `gap` event, without an id, whose data is
//!   `{"after": N, "trimmed": M}`, and ends: the client reloads the thread with
//!   `GET /threads/{id}/messages` and follows again after the `head` that answers.
//! - `POST /threads/{id}/messages` with `{"text": "..."}`: writes the user's turn, then streams
//!   a canned assistant reply into a reserved message, one token per write (as a model's reply
//!   would be), and answers `{"user": ID, "reply": ID}`.
//! - `GET /threads/{id}/messages`: `{"head": N, "messages": [...]}`, the feed's head (read
//!   first, so a write after it is in the listing or after the head, never lost in between)
//!   and the thread's messages, replies still being streamed included.
//!
//! The Vercel AI SDK's chat protocol, for its own client (`useChat`, `DefaultChatTransport`):
//!
//! - `POST /api/chat` with the transport's body (`{"id": THREAD, "messages": [...]}`): stores
//!   the last message (the user's turn), reserves the reply and starts generating it in a task
//!   of its own (a canned reply of `persist.tokens` tokens, `token0 token1 …`, one every
//!   `persist.delay_ms` ms; 20 and 50 when the body has no `persist`), then answers the reply as
//!   a UI message stream: SSE `data:` lines `start` (with the reply's id), `text-start`, a
//!   `text-delta` per token, `text-end`, `finish`, then `[DONE]`, with the header
//!   `x-vercel-ai-ui-message-stream: v1`. The generation goes on when the client goes away.
//! - `GET /api/chat/{id}/stream` (the transport's resume): the thread's latest reply, on any
//!   instance, replayed from its start (the client rebuilds the message of that id from the
//!   stream: each character once) and followed to its end; `204` when the thread has no reply.
//! - `POST /api/chat/{id}/stop`: asks the generation of the thread's latest reply to stop, on
//!   whichever instance it runs: `{"stopped": true}`, or `{"stopped": false, "status": "complete"}`
//!   (or `"stopped"`, `"interrupted"`, `"deleted"`) when it had ended. The generator ends the
//!   reply with the text it had, and every stream of it ends with `text-end`, then
//!   `abort` (`{"type": "abort", "reason": "stopped"}`) instead of `finish`.
//!
//! One reply is generated at a time per thread, across instances: a `POST /api/chat` while the
//! thread's reply is still being generated (or racing another `POST` to the same thread) is
//! `409 Conflict`, and writes nothing; the same `POST` sent again (the same last message id)
//! follows the reply the first one started.
//!
//! A reply's streams read it with [`Pipeline::follow_reply`]: its text so far, then each
//! token's delta from the change feed as it commits (no read of the message per token), so one
//! instance serves a reply another instance generates. `examples/node` holds a test of these
//! routes with the `ai` package's own client.
//!
//! Errors are plain text: 400 for an invalid request (a thread id, a `Last-Event-ID`, a
//! position beyond the feed's head), 404 for a missing message, 410 for a deleted thread, 409
//! for a conflicting write, 503 when the store is busy (retry), 500 otherwise.
//!
//! # Run
//!
//! The store is `$PERSIST_URL`: a `postgres://` URL, `memory:`, or a SQLite file (default
//! `sse_server.db` in the current directory). The address is `$PERSIST_ADDR` (default
//! `127.0.0.1:3000`).
//!
//! ```text
//! cargo run -p persist-example-server --example sse_server
//! PERSIST_URL=postgres://app@localhost/chat PERSIST_ADDR=127.0.0.1:3001 cargo run -p persist-example-server --example sse_server
//! ```
//!
//! Then, from another terminal:
//!
//! ```text
//! # Follow a thread (-N: print each event as it arrives).
//! curl -N http://127.0.0.1:3000/threads/demo/events
//! # Write a turn: the follower prints add, reserve, then one update_content per token.
//! curl -H 'content-type: application/json' -d '{"text": "hello there"}' http://127.0.0.1:3000/threads/demo/messages
//! # Resume after position 3, as a reconnecting EventSource does.
//! curl -N -H 'Last-Event-ID: 3' http://127.0.0.1:3000/threads/demo/events
//! # Reload the thread (after a gap).
//! curl http://127.0.0.1:3000/threads/demo/messages
//! ```

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream;
use std::collections::VecDeque;
use std::time::Duration;

use persist::args::{Add, AppendTurn, Reserve, TurnMessage, UpdateContent};
use persist::feed::{FeedEvent, ReadFeed, Subscription};
use persist::live::{FollowReply, ReplyChunk, ReplyEnd, ReplyStream, StopReply, StopState};
use persist::memory::MemoryBackend;
use persist::postgres::PostgresBackend;
use persist::prelude::*;
use persist::read::{GetThread, ListMessages, MAX_PAGE_LIMIT};
use persist::sqlite::SqliteBackend;
use persist::{BoxError, Content, Message, MessageId, PersistError, Pipeline, Role, ThreadId};
use persist::{IdempotencyKey, Order, Status};
use serde::{Deserialize, Serialize};

/// The server's routes over `pipeline` (see the module docs).
///
/// `main` serves them on one address; several instances over one shared store serve the same
/// threads, each client following its thread through any of them.
pub fn app(pipeline: Pipeline) -> Router {
    Router::new()
        .route("/threads/{id}/events", get(follow_thread))
        .route("/threads/{id}/messages", get(list_messages).post(post_turn))
        .route("/api/chat", post(chat))
        .route("/api/chat/{id}/stream", get(resume_chat))
        .route("/api/chat/{id}/stop", post(stop_chat))
        .with_state(pipeline)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = std::env::var("PERSIST_URL").unwrap_or_else(|_| "sse_server.db".to_owned());
    let addr = std::env::var("PERSIST_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let pipeline = open_store(&url).await?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(pipeline)).await?;
    Ok(())
}

/// Opens the store at `url`: a `postgres://` (or `postgresql://`) URL, `memory:`, or the path
/// of a SQLite file (`sqlite:` before it is optional).
async fn open_store(url: &str) -> Result<Pipeline, PersistError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Pipeline::new(PostgresBackend::connect(url).await?));
    }
    if url == "memory:" {
        return Ok(Pipeline::new(MemoryBackend::new()));
    }
    let path = url.strip_prefix("sqlite:").unwrap_or(url);
    Ok(Pipeline::new(SqliteBackend::open(path).await?))
}

/// `?after=N`: where a client without a `Last-Event-ID` starts.
#[derive(Debug, Deserialize)]
struct Resume {
    after: Option<u64>,
}

/// `GET /threads/{id}/events`: the thread's feed as Server-Sent Events.
async fn follow_thread(
    State(pipeline): State<Pipeline>,
    Path(id): Path<String>,
    Query(resume): Query<Resume>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let thread = ThreadId::new(id)?;
    // A reconnecting EventSource sends the id of the last event it received, and asks the URL it
    // was opened with: the header is the newer position.
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|value| value.trim().parse::<u64>().ok())
            .ok_or_else(|| PersistError::invalid("Last-Event-ID", "must be a feed position (a whole number)"))?,
        None => resume.after.unwrap_or(0),
    };
    let start = match pipeline.subscribe(ReadFeed::thread(thread).after(after)).await {
        Ok(subscription) => Follow::Live(Box::new(subscription)),
        Err(PersistError::FeedGap { after, trimmed }) => Follow::Gap { after, trimmed },
        Err(other) => return Err(other.into()),
    };
    let events = stream::unfold(start, next_event);
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

/// Where an event stream is.
enum Follow {
    /// Following the feed (boxed: it is much larger than the other states).
    Live(Box<Subscription>),
    /// The feed no longer holds every event after `after`: one `gap` event, then the end.
    Gap { after: u64, trimmed: u64 },
    /// Nothing more to send.
    Done,
}

/// The stream's next SSE event and where the stream is then; `None` ends the response.
async fn next_event(state: Follow) -> Option<(Result<Event, BoxError>, Follow)> {
    match state {
        Follow::Live(mut subscription) => match subscription.next().await {
            Ok(event) => Some((feed_event(&event), Follow::Live(subscription))),
            Err(PersistError::FeedGap { after, trimmed }) => Some((Ok(gap_event(after, trimmed)), Follow::Done)),
            // The store failed: the response ends with an error, and the client reconnects
            // with the id of the last event it received, missing nothing.
            Err(other) => Some((Err(other.into()), Follow::Done)),
        },
        Follow::Gap { after, trimmed } => Some((Ok(gap_event(after, trimmed)), Follow::Done)),
        Follow::Done => None,
    }
}

/// A feed event as SSE: `id` its position, `event` the write, `data` the event as JSON.
fn feed_event(event: &FeedEvent) -> Result<Event, BoxError> {
    let sse = Event::default().id(event.position.to_string()).event(event.change.op.to_string()).json_data(event)?;
    Ok(sse)
}

/// The `gap` event. It has no id, so the client's last event id stays the last position it
/// received.
fn gap_event(after: u64, trimmed: u64) -> Event {
    Event::default().event("gap").data(serde_json::json!({ "after": after, "trimmed": trimmed }).to_string())
}

/// The body of `POST /threads/{id}/messages`.
#[derive(Debug, Deserialize)]
struct NewTurn {
    text: String,
}

/// The answer to `POST /threads/{id}/messages`.
#[derive(Debug, Serialize)]
struct Turn {
    user: MessageId,
    reply: MessageId,
}

/// `POST /threads/{id}/messages`: the user's turn, then a reply streamed token by token.
async fn post_turn(
    State(pipeline): State<Pipeline>,
    Path(id): Path<String>,
    Json(turn): Json<NewTurn>,
) -> Result<Json<Turn>, ApiError> {
    let thread = ThreadId::new(id)?;
    let user = pipeline.add(Add::new(thread.clone(), Role::User, Content::text(&turn.text))).await?.message;
    // The reply's message exists (empty, reserved) before its first token: followers see it
    // appear, then grow.
    let reply = pipeline.reserve(Reserve::new(thread.clone(), Role::Assistant)).await?.message;
    let tokens = reply_tokens(&turn.text);
    let count = tokens.len();
    for (i, token) in tokens.iter().enumerate() {
        // Each token alone: the store joins it to the text so far. The last write finalizes.
        let write = UpdateContent::appending(thread.clone(), reply.id.clone(), Content::text(token))
            .with_finalize(i + 1 == count);
        pipeline.update_content(write).await?;
    }
    Ok(Json(Turn { user: user.id, reply: reply.id }))
}

/// The canned reply, as a model would stream it: `echo:`, then each word of `text`.
fn reply_tokens(text: &str) -> Vec<String> {
    std::iter::once("echo:".to_owned()).chain(text.split_whitespace().map(|word| format!(" {word}"))).collect()
}

/// The answer to `GET /threads/{id}/messages`.
#[derive(Debug, Serialize)]
struct Transcript {
    /// Where to follow the thread from after this reload.
    head: u64,
    /// The thread's messages, by `seq`.
    messages: Vec<Message>,
}

/// `GET /threads/{id}/messages`: the feed's head, then every message of the thread.
async fn list_messages(State(pipeline): State<Pipeline>, Path(id): Path<String>) -> Result<Json<Transcript>, ApiError> {
    let thread = ThreadId::new(id)?;
    // The head first: a write committed after it is in the listing, or after the head (or both,
    // which is harmless: events say what changed, and the client reads it again).
    let head = pipeline.feed_head(ReadFeed::thread(thread.clone())).await?;
    let mut messages = Vec::new();
    let mut query = ListMessages::new(thread).include_reserved(true).with_limit(MAX_PAGE_LIMIT);
    loop {
        let page = pipeline.list(query.clone()).await?;
        let next = query.next_page(&page);
        messages.extend(page.items);
        match next {
            Some(next) => query = next,
            None => break,
        }
    }
    Ok(Json(Transcript { head, messages }))
}

/// The body `DefaultChatTransport` posts: the chat's id (the thread), its messages (the last
/// is the user's new turn), and this example's knob for its canned reply.
#[derive(Debug, Deserialize)]
struct ChatRequest {
    id: String,
    messages: Vec<UiMessage>,
    #[serde(default)]
    persist: Option<CannedReply>,
}

/// A message as the AI SDK's client sends it: its id, role and parts.
#[derive(Debug, Deserialize)]
struct UiMessage {
    id: String,
    role: String,
    #[serde(default)]
    parts: Vec<serde_json::Value>,
}

/// How the canned reply streams: `tokens` tokens, one every `delay_ms` milliseconds.
#[derive(Debug, Clone, Copy, Deserialize)]
struct CannedReply {
    tokens: u32,
    delay_ms: u64,
}

impl Default for CannedReply {
    fn default() -> Self {
        Self { tokens: 20, delay_ms: 50 }
    }
}

/// `POST /api/chat`: the user's turn, a reply generated in a task of its own, and the reply's
/// UI message stream.
async fn chat(State(pipeline): State<Pipeline>, Json(request): Json<ChatRequest>) -> Result<Response, ApiError> {
    let thread = ThreadId::new(request.id)?;
    let canned = request.persist.unwrap_or_default();
    if !(1..=10_000).contains(&canned.tokens) || canned.delay_ms > 10_000 {
        return Err(PersistError::invalid("persist", "tokens must be 1 to 10000, delay_ms at most 10000").into());
    }
    let Some(turn) = request.messages.last().filter(|m| m.role == "user") else {
        return Err(PersistError::invalid("messages", "the last message must be the user's").into());
    };
    let text: String = turn.parts.iter().filter(|p| p["type"] == "text").filter_map(|p| p["text"].as_str()).collect();
    // The client's message id keys the turn: a retried POST stores it once, starts no second
    // generation, and follows the reply the first one started.
    let key = IdempotencyKey::new(format!("ui-{}", turn.id))?;
    // One generation at a time per thread, on every instance. The thread's last seq is read
    // before the check, and names the reply: of two POSTs racing past the check, both name
    // their reply after the same seq, and the second's turn, its id taken, writes nothing
    // (`AlreadyExists`: 409).
    let last_seq = pipeline.get_thread(GetThread::new(thread.clone())).await?.map_or(0, |t| t.last_seq);
    let reply_key = format!("{key}#1");
    let newest = pipeline.list(newest_messages(&thread)).await?.items;
    if let Some(retried) = newest.iter().find(|m| m.idempotency_key.as_ref().is_some_and(|k| k.as_str() == reply_key)) {
        return ui_stream(&pipeline, thread, retried.id.clone()).await;
    }
    if newest.iter().any(|m| m.role == Role::Assistant && m.status == Status::Reserved) {
        return Err(ApiError::Conflict("the thread's reply is still being generated"));
    }
    let reply_id = MessageId::derive(&thread, "ui-reply-after", &last_seq.to_string());
    let reply = TurnMessage::reservation(Role::Assistant)
        .with_id(reply_id)
        .with_metadata(persist::Metadata::new().with("ui.turn", serde_json::json!(turn.id)));
    // The user's turn and the reply's reservation in one write: a resume or a stop never
    // finds the turn without its reply.
    let write = AppendTurn::new(thread.clone())
        .with_message(TurnMessage::new(Role::User, Content::text(&text)))
        .with_message(reply)
        .with_idempotency_key(key);
    let written = pipeline.append_turn(write).await.map_err(|error| match error {
        // The reply's id taken: another POST's turn came first.
        PersistError::AlreadyExists { .. } => ApiError::Conflict("the thread's reply is still being generated"),
        other => other.into(),
    })?;
    let reply = written.messages.last().cloned().ok_or_else(|| PersistError::invalid("messages", "no reply"))?;
    if !written.deduplicated {
        tokio::spawn(generate(pipeline.clone(), thread.clone(), reply.id.clone(), canned));
    }
    ui_stream(&pipeline, thread, reply.id).await
}

/// Writes the canned reply token by token, watching for a stop beside each token (as a
/// generator does beside its model call); a stop ends the reply with the text it had.
async fn generate(pipeline: Pipeline, thread: ThreadId, reply: MessageId, canned: CannedReply) {
    let interrupt = UpdateContent::interrupted(thread.clone(), reply.clone());
    let Ok(mut stop) = pipeline.watch_stop(StopReply::new(thread.clone(), reply.clone())).await else {
        let _ = pipeline.update_content(interrupt).await;
        return;
    };
    for n in 0..canned.tokens {
        tokio::select! {
            biased;
            _ = &mut stop => {
                let _ = pipeline.update_content(interrupt).await;
                return;
            }
            () = tokio::time::sleep(Duration::from_millis(canned.delay_ms)) => {}
        }
        let piece = if n == 0 { "token0".to_owned() } else { format!(" token{n}") };
        let token = UpdateContent::appending(thread.clone(), reply.clone(), Content::text(piece));
        if pipeline.update_content(token.with_finalize(n + 1 == canned.tokens)).await.is_err() {
            // The store failed (or someone ended the reply): keep what was written.
            let _ = pipeline.update_content(interrupt).await;
            return;
        }
    }
}

/// `GET /api/chat/{id}/stream`: the thread's latest reply, replayed from its start and
/// followed to its end; 204 when there is none.
async fn resume_chat(State(pipeline): State<Pipeline>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let thread = ThreadId::new(id)?;
    match latest_reply(&pipeline, &thread).await? {
        Some(reply) => ui_stream(&pipeline, thread, reply.id).await,
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `POST /api/chat/{id}/stop`: asks the generation of the thread's latest reply to stop.
async fn stop_chat(State(pipeline): State<Pipeline>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let thread = ThreadId::new(id)?;
    let Some(reply) = latest_reply(&pipeline, &thread).await? else {
        let none = serde_json::json!({ "stopped": false, "status": "none" });
        return Ok((StatusCode::NOT_FOUND, Json(none)).into_response());
    };
    let answer = match pipeline.stop_reply(StopReply::new(thread, reply.id)).await? {
        StopState::Requested => serde_json::json!({ "stopped": true }),
        StopState::Ended(end) => serde_json::json!({ "stopped": false, "status": end }),
        other => serde_json::json!({ "stopped": false, "status": format!("{other:?}") }),
    };
    Ok(Json(answer).into_response())
}

/// The thread's 20 newest messages, newest first, reservations included.
fn newest_messages(thread: &ThreadId) -> ListMessages {
    ListMessages::new(thread.clone()).with_order(Order::Desc).include_reserved(true).with_limit(20)
}

/// The thread's newest assistant message, if any.
async fn latest_reply(pipeline: &Pipeline, thread: &ThreadId) -> Result<Option<Message>, PersistError> {
    let page = pipeline.list(newest_messages(thread)).await?;
    Ok(page.items.into_iter().find(|m| m.role == Role::Assistant))
}

/// The reply `(thread, reply)` as a UI message stream, from its first character.
async fn ui_stream(pipeline: &Pipeline, thread: ThreadId, reply: MessageId) -> Result<Response, ApiError> {
    let follower = pipeline.follow_reply(FollowReply::new(thread, reply.clone())).await?;
    let queue = VecDeque::from([
        ui_chunk(serde_json::json!({ "type": "start", "messageId": reply })),
        ui_chunk(serde_json::json!({ "type": "text-start", "id": TEXT_PART })),
    ]);
    let events = stream::unfold(UiStream { follower: Some(Box::new(follower)), queue }, next_ui_chunk);
    let mut response = Sse::new(events).keep_alive(KeepAlive::default()).into_response();
    let headers = response.headers_mut();
    headers.insert("x-vercel-ai-ui-message-stream", axum::http::HeaderValue::from_static("v1"));
    headers.insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    Ok(response)
}

/// The id of the stream's one text part.
const TEXT_PART: &str = "text-0";

/// Where a UI message stream is: the chunks ready to send, and the reply followed until its end.
struct UiStream {
    follower: Option<Box<ReplyStream>>,
    queue: VecDeque<Event>,
}

fn ui_chunk(chunk: serde_json::Value) -> Event {
    Event::default().data(chunk.to_string())
}

/// The stream's next SSE event; `None` ends the response.
async fn next_ui_chunk(mut state: UiStream) -> Option<(Result<Event, BoxError>, UiStream)> {
    loop {
        if let Some(event) = state.queue.pop_front() {
            return Some((Ok(event), state));
        }
        let follower = state.follower.as_mut()?;
        let chunk = match follower.next().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                state.follower = None;
                continue;
            }
            // The store failed: the response ends with an error, and the client resumes.
            Err(error) => {
                state.follower = None;
                return Some((Err(error.into()), state));
            }
        };
        let mut end = |ending: serde_json::Value| {
            state.queue.push_back(ui_chunk(serde_json::json!({ "type": "text-end", "id": TEXT_PART })));
            state.queue.push_back(ui_chunk(ending));
            state.queue.push_back(Event::default().data("[DONE]"));
        };
        match chunk {
            ReplyChunk::Text { text, .. } => {
                let delta = serde_json::json!({ "type": "text-delta", "id": TEXT_PART, "delta": text });
                state.queue.push_back(ui_chunk(delta));
                continue;
            }
            ReplyChunk::End(ReplyEnd::Complete) => end(serde_json::json!({ "type": "finish", "finishReason": "stop" })),
            ReplyChunk::End(ReplyEnd::Stopped) => end(serde_json::json!({ "type": "abort", "reason": "stopped" })),
            // The protocol cannot take text back: a rewritten reply is reloaded by the client.
            ReplyChunk::Replaced { .. } => {
                end(serde_json::json!({ "type": "error", "errorText": "the reply was rewritten: reload the chat" }))
            }
            ReplyChunk::End(other) => {
                let text = format!("the reply ended {}", serde_json::json!(other));
                end(serde_json::json!({ "type": "error", "errorText": text }))
            }
            _ => continue,
        }
        state.follower = None;
    }
}

/// An HTTP answer of failure: a persist error, with the status its kind calls for and its
/// message as text, or a conflict of the server's own.
#[derive(Debug)]
enum ApiError {
    Persist(PersistError),
    Conflict(&'static str),
}

impl From<PersistError> for ApiError {
    fn from(error: PersistError) -> Self {
        Self::Persist(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = match self {
            Self::Persist(error) => error,
            Self::Conflict(reason) => return (StatusCode::CONFLICT, reason).into_response(),
        };
        let status = match &error {
            PersistError::InvalidInput { .. } => StatusCode::BAD_REQUEST,
            PersistError::NotFound { .. } => StatusCode::NOT_FOUND,
            PersistError::ThreadDeleted { .. } => StatusCode::GONE,
            PersistError::VersionConflict { .. } | PersistError::AlreadyExists { .. } => StatusCode::CONFLICT,
            PersistError::IdempotencyKeyReused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            error if error.is_temporary() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, error.to_string()).into_response()
    }
}
