//! The Vercel AI SDK's **UI message stream** on persist, for Rust hosts of a chat UI built with
//! the SDK's `useChat` (or its `AbstractChat` and `DefaultChatTransport`).
//!
//! Two pieces:
//!
//! - [`UiMessageStream`]: a reply followed as the SDK's chunks (text, reasoning, tool calls
//!   and their results, files, then how it ended), from any instance sharing the store, and
//!   [`sse`], its HTTP response. Built on
//!   [`follow_parts`](persist_ops::PipelineExt::follow_parts): a reply written on one instance
//!   streams on another, each token once.
//! - [`Chat`]: the SDK's chat routes on a pipeline, the reply written by the host's
//!   [`Generate`] (its model call):
//!
//! | route | does |
//! |---|---|
//! | `POST /api/chat` | `trigger: "submit-message"` (the default): stores the last message (the user's, converted from its `UIMessage` parts) and reserves the reply in one turn, starts the generator in a task of its own, and answers the reply's stream. `submit-message` with a `messageId` (the SDK's `sendMessage` editing a message): the edit, stored under an id of its own, and its reply, a sibling of the edited message on a branch of its own that becomes the active one; the edited message and what followed it stay readable. `trigger: "regenerate-message"` (the SDK's `regenerate()`): a new reply to what `messageId` (else the newest reply) answered, a sibling of it on a branch of its own that becomes the active one; the replaced reply stays readable. A body not sent as `application/json` is 415. |
//! | `GET /api/chat/{id}/stream` | the SDK's resume: the chat's newest reply, replayed from its start (the client rebuilds it) and followed to its end, on any instance; after `Last-Event-ID` (a [`PartOffset`], each event's id) for a client that kept what it had; `204` when the chat has no reply. |
//! | `POST /api/chat/{id}/stop` | asks the generation of the newest reply to stop, on whichever instance it runs: `{"stopped": true}`, or `{"stopped": false, "status": …}` when it had ended. |
//!
//! One reply is generated at a time per chat, across instances: a turn while a reply is being
//! generated is 409 and writes nothing; the same `POST` sent again (the same user message id)
//! follows the reply the first one started. A reply whose generator went silent (its process
//! died) for [`Chat::with_settle_after`] is marked interrupted by the next request on its chat:
//! its streams end, and a new turn may start. Errors are the Conversations API's
//! ([`ApiError`](crate::ApiError)); tenants as its [`Auth`](crate::Auth) says. A body must be
//! sent as `application/json` (else 415); the [`Host` and `Origin` checks](crate#host-and-origin)
//! of a [`Server`](crate::Server) are left to the host's app, which serves the chat's page and
//! knows its names.
//!
//! How a reply ends, in the stream: `finish` (complete), `abort` with reason `stopped` (a
//! client stopped it), `error` (its generator failed or died: interrupted; or it was deleted,
//! or rewritten by a final write the protocol cannot express), then `[DONE]`. A part of a kind
//! the protocol has no chunk for is not streamed; it is in the stored message.
//!
//! # Example
//!
//! ```no_run
//! use persist::{Pipeline, sqlite::SqliteBackend};
//! use persist_serve::ui::{Chat, Generation};
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = Pipeline::new(SqliteBackend::open("chat.db").await?);
//! let chat = Chat::new(pipeline, |generation: Generation| async move {
//!     // The model's stream, written as it comes: reasoning, a tool call and its result, text.
//!     let reply = &generation.reply;
//!     reply.reasoning("The user wants the weather.").await?;
//!     reply.tool_call("call_1", "weather", json!({"city": "Oslo"})).await?;
//!     reply.tool_result("call_1", json!({"celsius": 4})).await?;
//!     for token in ["It is ", "4 °C ", "in Oslo."] {
//!         reply.text(token).await?;
//!     }
//!     Ok(())
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, chat.router()).await?;
//! # Ok(())
//! # }
//! ```

mod chat;

pub use self::chat::{Chat, Generate, Generation, ReplyWriter};
pub use persist_ops::live::{PartOffset, UiMessageStream};

use std::convert::Infallible;

use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

/// `stream` as an HTTP response the SDK's transport reads: Server-Sent Events, one chunk a
/// `data:` line, each change's last chunk with its [`PartOffset`] as the event's `id`, then
/// `[DONE]`; with the header `x-vercel-ai-ui-message-stream: v1`. A store that fails mid-way
/// ends the response early; the client resumes.
pub fn sse(stream: UiMessageStream) -> Response {
    let events = futures_util::stream::unfold(Some(Box::new(stream)), |state| async move {
        let mut stream = state?;
        match stream.next().await {
            Ok(Some((chunk, offset))) => {
                let event = Event::default().data(chunk.to_string());
                let event = match offset {
                    Some(offset) => event.id(offset.to_string()),
                    None => event,
                };
                Some((Ok::<_, Infallible>(event), Some(stream)))
            }
            Ok(None) => Some((Ok(Event::default().data("[DONE]")), None)),
            Err(error) => {
                tracing::warn!(%error, "a reply's stream ended early: the store failed");
                None
            }
        }
    });
    let mut response = Sse::new(events).keep_alive(KeepAlive::default()).into_response();
    let headers = response.headers_mut();
    headers.insert("x-vercel-ai-ui-message-stream", HeaderValue::from_static("v1"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
