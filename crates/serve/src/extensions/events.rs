//! `GET /v1/persist/conversations/{id}/events`: a conversation's change feed as Server-Sent
//! Events, resumed after `Last-Event-ID`, on any instance.

use std::convert::Infallible;

use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{StreamExt, stream};
use persist_core::feed::{ReadFeed, Subscription};
use persist_core::{PersistError, ThreadId};
use serde_json::json;

use crate::api::conversations::find;
use crate::http::error::ApiError;
use crate::http::extract::Tenant;
use crate::http::params::Params;
use crate::state::Caller;

/// `GET /v1/persist/conversations/{id}/events`: the conversation's change feed as Server-Sent
/// Events, each with its feed position as `id`, the write as `event` and the change as JSON
/// `data`; it resumes after `Last-Event-ID` (what a reconnecting `EventSource` sends), else
/// after `?after=N`, else from the start. When the feed no longer holds every event after that
/// position, one `gap` event (`{"after", "trimmed"}`) ends the stream: reload, then follow again.
/// The stream ends when the server shuts down.
pub(crate) async fn events(
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let position = |text: &str, param: &'static str| {
        text.trim()
            .parse::<u64>()
            .map_err(|_| ApiError::invalid(param, format!("Invalid '{param}': a feed position is a whole number.")))
    };
    params.only(&["after"])?;
    // The query is checked whether or not the header wins over it.
    let queried = params.get("after").map(|text| position(text, "after")).transpose()?;
    let after = match headers.get("last-event-id").map(|value| value.to_str().unwrap_or("-")) {
        Some(text) => position(text, "Last-Event-ID")?,
        None => queried.unwrap_or(0),
    };
    let thread = find(&caller, &id).await?;
    let start = match caller.within(subscribe(&caller, thread.id, after)).await? {
        Ok(subscription) => Follow::Live(Box::new(subscription)),
        Err(PersistError::FeedGap { after, trimmed }) => Follow::Gap { after, trimmed },
        Err(other) => return Err(ApiError::from_store(other, Some(&id))),
    };
    // On shutdown the stream ends: the client resumes after its `Last-Event-ID`.
    let events = stream::unfold(start, next_event).take_until(caller.closed());
    let mut response = Sse::new(events).keep_alive(KeepAlive::default()).into_response();
    response.extensions_mut().insert(Tenant(caller.tenant.clone()));
    Ok(response)
}

async fn subscribe(caller: &Caller, thread: ThreadId, after: u64) -> Result<Subscription, PersistError> {
    caller.store.subscribe(ReadFeed::thread(thread).after(after)).await
}

/// Where an event stream is.
enum Follow {
    Live(Box<Subscription>),
    Gap { after: u64, trimmed: u64 },
    Done,
}

async fn next_event(state: Follow) -> Option<(Result<Event, Infallible>, Follow)> {
    match state {
        Follow::Live(mut subscription) => match subscription.next().await {
            Ok(event) => {
                let data = serde_json::to_string(&event).unwrap_or_default();
                let sse = Event::default().id(event.position.to_string()).event(event.change.op.to_string()).data(data);
                Some((Ok(sse), Follow::Live(subscription)))
            }
            Err(PersistError::FeedGap { after, trimmed }) => Some((Ok(gap(after, trimmed)), Follow::Done)),
            // The store failed: the stream ends, and the client reconnects with the id of the
            // last event it received, missing nothing.
            Err(_) => None,
        },
        Follow::Gap { after, trimmed } => Some((Ok(gap(after, trimmed)), Follow::Done)),
        Follow::Done => None,
    }
}

/// The `gap` event, without an id (the client's last event id stays the last position it got).
fn gap(after: u64, trimmed: u64) -> Event {
    Event::default().event("gap").data(json!({"after": after, "trimmed": trimmed}).to_string())
}
