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
//! The Vercel AI SDK's chat protocol, for its own client (`useChat`, `DefaultChatTransport`),
//! is persist's [`Chat`] (`persist::serve::ui`) mounted on the same app: `POST /api/chat`
//! (a turn or a `regenerate`), `GET /api/chat/{id}/stream` (resume, on any instance) and
//! `POST /api/chat/{id}/stop`, with text, reasoning and tool parts, one generation per thread
//! across instances, and a reply whose generator died settled by silence. This example's
//! generator is `canned` (below): the request body's `persist` field says what it writes
//! (`{"tokens": N, "delay_ms": D, "reasoning": bool, "tool": bool}`; 20 tokens 50 ms apart
//! when absent): optionally a reasoning part and a tool call with its result, then `token0
//! token1 …`, one token every `D` ms. `examples/node` holds a test of these routes with the
//! `ai` package's own client.
//!
//! The feed routes' errors are plain text: 400 for an invalid request (a thread id, a
//! `Last-Event-ID`, a position beyond the feed's head), 404 for a missing message, 410 for a
//! deleted thread, 409 for a conflicting write, 503 when the store is busy (retry), 500
//! otherwise.
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
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream;
use std::time::Duration;

use persist::args::{Add, Reserve, UpdateContent};
use persist::feed::{FeedEvent, ReadFeed, Subscription};
use persist::memory::MemoryBackend;
use persist::postgres::PostgresBackend;
use persist::read::{ListMessages, MAX_PAGE_LIMIT};
use persist::serve::ui::{Chat, Generation};
use persist::sqlite::SqliteBackend;
use persist::{BoxError, Content, Message, MessageId, PersistError, Pipeline, Role, ThreadId};
use serde::{Deserialize, Serialize};

/// The server's routes over `pipeline` (see the module docs).
///
/// `main` serves them on one address; several instances over one shared store serve the same
/// threads, each client following its thread through any of them.
pub fn app(pipeline: Pipeline) -> Router {
    Router::new()
        .route("/threads/{id}/events", get(follow_thread))
        .route("/threads/{id}/messages", get(list_messages).post(post_turn))
        .with_state(pipeline.clone())
        .merge(Chat::new(pipeline, canned).router())
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

/// How the canned reply streams (the request body's `persist` field).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
struct CannedReply {
    tokens: u32,
    delay_ms: u64,
    /// A reasoning part first.
    reasoning: bool,
    /// A tool call and its result before the text.
    tool: bool,
}

impl Default for CannedReply {
    fn default() -> Self {
        Self { tokens: 20, delay_ms: 50, reasoning: false, tool: false }
    }
}

/// The example's model: writes the reply the request's `persist` field asks for, token by
/// token, as a model's stream would. A stop drops it at its next `.await`.
async fn canned(generation: Generation) -> Result<(), BoxError> {
    let canned: CannedReply = match generation.body.get("persist") {
        Some(value) => serde_json::from_value(value.clone())?,
        None => CannedReply::default(),
    };
    if !(1..=10_000).contains(&canned.tokens) || canned.delay_ms > 10_000 {
        return Err("persist: tokens must be 1 to 10000, delay_ms at most 10000".into());
    }
    let reply = &generation.reply;
    let pause = || tokio::time::sleep(Duration::from_millis(canned.delay_ms));
    if canned.reasoning {
        for piece in ["The user ", "said something; ", "answer with tokens."] {
            pause().await;
            reply.reasoning(piece).await?;
        }
    }
    if canned.tool {
        let asked = generation.history.len().to_string();
        reply.tool_call("call-count", "count", serde_json::json!({"messages": asked})).await?;
        pause().await;
        reply.tool_result("call-count", serde_json::json!({"count": canned.tokens})).await?;
    }
    for n in 0..canned.tokens {
        pause().await;
        reply.text(if n == 0 { "token0".to_owned() } else { format!(" token{n}") }).await?;
    }
    Ok(())
}

/// An HTTP answer of failure: a persist error, with the status its kind calls for and its
/// message as text.
#[derive(Debug)]
struct ApiError(PersistError);

impl From<PersistError> for ApiError {
    fn from(error: PersistError) -> Self {
        Self(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            PersistError::InvalidInput { .. } => StatusCode::BAD_REQUEST,
            PersistError::NotFound { .. } => StatusCode::NOT_FOUND,
            PersistError::ThreadDeleted { .. } => StatusCode::GONE,
            PersistError::VersionConflict { .. } | PersistError::AlreadyExists { .. } => StatusCode::CONFLICT,
            PersistError::IdempotencyKeyReused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            error if error.is_temporary() => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, self.0.to_string()).into_response()
    }
}
