//! adk-rust's events ⇄ persist's messages, lossless.
//!
//! An event is one message. Its content's parts become persist's typed parts where they have
//! one: a text, a thinking trace (reasoning), a function call and a function response that
//! carry an id (the OpenAI-style providers' calls), a file by URI. Any other part (inline data,
//! a Gemini-style call without an id, a server tool's block, an embedded resource) is kept as
//! [`Part::Other`] holding adk's own JSON of the part. Everything else of the event (its id,
//! author, invocation, branch, timestamp, actions with their state delta, usage, the content's
//! role) and what a typed part has no place for (a thinking trace's signature, a call's thought
//! signature, a response's function name and attachments) is kept in the message's metadata
//! under `"adk"`:
//!
//! ```text
//! { "event": { …the event without its content's parts… }, "parts": [ { …part 0… }, … ] }
//! ```
//!
//! Every part is checked as it is written: its typed part and what is kept must give the very
//! same part back, or it is kept whole. So an event read back equals the event written.
//!
//! A message another format wrote (a Responses item, a rig message) reads as an event too:
//! a user's message is authored `"user"`, anything else `"model"`; a tool result takes its
//! call's function name.

use adk_core::{Content as AdkContent, Event, FunctionResponseData, Part as AdkPart};
use chrono::{DateTime, Utc};
use persist_core::args::TurnMessage;
use persist_core::{Content, Message as Stored, MessageId, Metadata, Part, Role, ToolNames};
use serde_json::{Map, Value, json};

/// The metadata key of what typed parts have no place for.
pub const KEPT_KEY: &str = "adk";

/// An event as the message persist stores.
///
/// # Errors
///
/// A message when the event does not serialize (adk's own serialization failed).
pub fn to_turn_message(event: &Event) -> Result<TurnMessage, String> {
    let mut whole = serde_json::to_value(event).map_err(|e| format!("an adk event did not serialize: {e}"))?;
    if let Some(content) = whole.get_mut("content").and_then(Value::as_object_mut) {
        content.remove("parts");
    }
    let adk_parts = event.llm_response.content.as_ref().map_or(&[][..], |content| &content.parts[..]);
    let mut parts = Vec::with_capacity(adk_parts.len());
    let mut kept_parts = Vec::with_capacity(adk_parts.len());
    for adk_part in adk_parts {
        let original = serde_json::to_value(adk_part).map_err(|e| format!("an adk part did not serialize: {e}"))?;
        let (part, kept) = match typed(adk_part) {
            Some((part, kept))
                if rebuild(&part, &kept, &ToolNames::default())
                    .and_then(|back| serde_json::to_value(back).ok())
                    .is_some_and(|back| back == original) =>
            {
                (part, kept)
            }
            _ => (Part::Other(original), Map::new()),
        };
        parts.push(part);
        kept_parts.push(Value::Object(kept));
    }
    let mut kept = Map::from_iter([("event".to_owned(), whole)]);
    if kept_parts.iter().any(|part| part.as_object().is_some_and(|p| !p.is_empty())) {
        kept.insert("parts".into(), Value::Array(kept_parts));
    }
    let mut message = TurnMessage::new(role_of(event), Content::from_parts(parts))
        .with_metadata(Metadata::new().with(KEPT_KEY, Value::Object(kept)));
    // The event's own id names the message, when persist accepts it as an id.
    if let Ok(id) = MessageId::new(&event.id) {
        message = message.with_id(id);
    }
    Ok(message)
}

/// The role an event's message is stored with: its content's role (`model` is persist's
/// `assistant`, `function` its `tool`), else `user` for an event the user authored and
/// `assistant` for any other.
fn role_of(event: &Event) -> Role {
    match event.llm_response.content.as_ref().map(|content| content.role.as_str()) {
        Some("user") => Role::User,
        Some("model" | "assistant") => Role::Assistant,
        Some("function" | "tool") => Role::Tool,
        Some("system") => Role::System,
        Some(other) => Role::new(other).unwrap_or(Role::Assistant),
        None if event.author == "user" => Role::User,
        None => Role::Assistant,
    }
}

/// A part's typed persist part and what it has no place for; `None` for a part kept whole.
fn typed(part: &AdkPart) -> Option<(Part, Map<String, Value>)> {
    let mut kept = Map::new();
    let typed = match part {
        AdkPart::Text { text } => Part::Text { text: text.clone() },
        AdkPart::Thinking { thinking, signature } => {
            if let Some(signature) = signature {
                kept.insert("signature".into(), json!(signature));
            }
            Part::Reasoning { text: thinking.clone() }
        }
        AdkPart::FunctionCall { name, args, id: Some(id), thought_signature } => {
            if let Some(signature) = thought_signature {
                kept.insert("thought_signature".into(), json!(signature));
            }
            Part::ToolCall { id: id.clone(), name: name.clone(), arguments: args.clone() }
        }
        AdkPart::FunctionResponse { function_response, id: Some(id), annotations } => {
            let Ok(Value::Object(mut response)) = serde_json::to_value(function_response) else {
                return None;
            };
            let output = response.remove("response")?;
            kept.insert("function_response".into(), Value::Object(response));
            if let Some(annotations) = annotations {
                kept.insert("annotations".into(), annotations.clone());
            }
            Part::ToolResult { call_id: id.clone(), output, is_error: false }
        }
        AdkPart::FileData { mime_type, file_uri, annotations } => {
            if let Some(annotations) = annotations {
                kept.insert("annotations".into(), annotations.clone());
            }
            Part::File { media_type: mime_type.clone(), uri: file_uri.clone(), name: None, size: None }
        }
        _ => return None,
    };
    Some((typed, kept))
}

/// The adk part a stored part and what was kept of it give; `None` for a part adk has no
/// block for.
fn rebuild(part: &Part, kept: &Map<String, Value>, names: &ToolNames) -> Option<AdkPart> {
    let text = |key: &str| kept.get(key).and_then(Value::as_str).map(str::to_owned);
    Some(match part {
        Part::Text { text } => AdkPart::Text { text: text.clone() },
        Part::Reasoning { text: thinking } => {
            AdkPart::Thinking { thinking: thinking.clone(), signature: text("signature") }
        }
        Part::ToolCall { id, name, arguments } => AdkPart::FunctionCall {
            name: name.clone(),
            args: arguments.clone(),
            id: Some(id.clone()),
            thought_signature: text("thought_signature"),
        },
        Part::ToolResult { call_id, output, .. } => {
            let function_response = match kept.get("function_response") {
                Some(Value::Object(fields)) => {
                    let mut fields = fields.clone();
                    fields.insert("response".into(), output.clone());
                    serde_json::from_value(Value::Object(fields)).ok()?
                }
                // Another format's result: its call names the function.
                _ => FunctionResponseData::new(names.get(call_id).unwrap_or_default().to_owned(), output.clone()),
            };
            AdkPart::FunctionResponse {
                function_response,
                id: Some(call_id.clone()),
                annotations: kept.get("annotations").cloned(),
            }
        }
        Part::File { media_type, uri, .. } => AdkPart::FileData {
            mime_type: media_type.clone(),
            file_uri: uri.clone(),
            annotations: kept.get("annotations").cloned(),
        },
        Part::Other(value) => serde_json::from_value(value.clone()).ok()?,
        // A kind of part newer than this crate: adk has no block for it.
        _ => return None,
    })
}

/// A stored message as an adk event; `None` for a message that is not one and has nothing adk
/// reads (no part with an adk block).
pub fn to_event(message: &Stored, names: &ToolNames) -> Option<Event> {
    let kept = message.metadata.get(KEPT_KEY);
    let kept_part = |index: usize| -> Map<String, Value> {
        kept.and_then(|k| k.get("parts"))
            .and_then(|p| p.get(index))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let parts: Vec<AdkPart> = message
        .content
        .parts()
        .iter()
        .enumerate()
        .filter_map(|(index, part)| rebuild(part, &kept_part(index), names))
        .collect();
    if let Some(Value::Object(whole)) = kept.and_then(|k| k.get("event")) {
        let mut whole = whole.clone();
        if let Some(content) = whole.get_mut("content").and_then(Value::as_object_mut) {
            content.insert("parts".into(), serde_json::to_value(&parts).ok()?);
        }
        if let Ok(event) = serde_json::from_value::<Event>(Value::Object(whole)) {
            return Some(event);
        }
    }
    // A message another format wrote.
    if parts.is_empty() {
        return None;
    }
    let (author, role) = match message.role {
        Role::User => ("user", "user"),
        Role::Tool => ("model", "function"),
        _ => ("model", "model"),
    };
    let mut event = Event::new(String::new());
    event.id = message.id.as_str().to_owned();
    event.timestamp = timestamp(message.created_at);
    event.author = author.to_owned();
    event.llm_response.content = Some(AdkContent { role: role.to_owned(), parts });
    event.llm_response.turn_complete = true;
    Some(event)
}

/// A persist time as chrono's.
pub(crate) fn timestamp(at: persist_core::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.as_micros()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_parts_rebuild_the_parts_they_came_from() {
        let parts = [
            AdkPart::Text { text: "hi".into() },
            AdkPart::Thinking { thinking: "hmm".into(), signature: Some("sig".into()) },
            AdkPart::FunctionCall {
                name: "add".into(),
                args: json!({"a": 1}),
                id: Some("c1".into()),
                thought_signature: Some("t".into()),
            },
            AdkPart::FunctionResponse {
                function_response: FunctionResponseData::new("add", json!({"sum": 3})),
                id: Some("c1".into()),
                annotations: Some(json!({"k": 1})),
            },
            AdkPart::FileData { mime_type: "image/png".into(), file_uri: "gs://b/x.png".into(), annotations: None },
        ];
        for part in parts {
            let (typed, kept) = typed(&part).expect("typed");
            let back = rebuild(&typed, &kept, &ToolNames::default()).expect("rebuilt");
            assert_eq!(serde_json::to_value(back).unwrap(), serde_json::to_value(&part).unwrap());
        }
        // A call without an id has no typed part: it is kept whole.
        let gemini = AdkPart::FunctionCall { name: "f".into(), args: json!({}), id: None, thought_signature: None };
        assert!(typed(&gemini).is_none());
    }

    #[test]
    fn messages_another_format_wrote_read_as_events() {
        use persist_core::{Message, MessageId, ThreadId, Timestamp};
        let thread = ThreadId::new("t").unwrap();
        let at = Timestamp::from_micros(1_700_000_000_000_000);
        let stored = |seq: u64, role: Role, parts: Vec<Part>| {
            Message::stored(
                thread.clone(),
                MessageId::new(format!("m{seq}")).unwrap(),
                seq,
                role,
                Content::from_parts(parts),
                at,
            )
        };
        let messages = [
            stored(1, Role::User, vec![Part::Text { text: "2 + 3?".into() }]),
            stored(
                2,
                Role::Assistant,
                vec![Part::ToolCall { id: "c1".into(), name: "add".into(), arguments: json!({"a": 2}) }],
            ),
            stored(
                3,
                Role::Tool,
                vec![Part::ToolResult { call_id: "c1".into(), output: json!({"sum": 5}), is_error: false }],
            ),
        ];
        let names: ToolNames = messages.iter().map(|m| &m.content).collect();
        let events: Vec<Event> = messages.iter().filter_map(|message| to_event(message, &names)).collect();
        let authors: Vec<&str> = events.iter().map(|event| event.author.as_str()).collect();
        assert_eq!(authors, ["user", "model", "model"]);
        assert_eq!(events[0].id, "m1");
        assert_eq!(events[0].timestamp, timestamp(at));
        let Some(AdkPart::FunctionResponse { function_response, id, .. }) =
            events[2].llm_response.content.as_ref().and_then(|content| content.parts.first())
        else {
            panic!("a function response: {:?}", events[2]);
        };
        assert_eq!((function_response.name.as_str(), id.as_deref()), ("add", Some("c1")), "named by its call");
        assert_eq!(function_response.response, json!({"sum": 5}));
        // A message with nothing adk reads is no event.
        assert!(to_event(&stored(4, Role::Assistant, vec![]), &names).is_none());
    }
}
