//! rig's messages ⇄ persist's typed parts, lossless.
//!
//! Each content block of a rig message becomes one part: text, reasoning, a tool call, a tool
//! result as persist's typed parts, anything else (images, audio, documents, opaque provider
//! blocks) as [`Part::Other`] holding rig's own JSON of the block. What a typed part has no
//! place for (a text's citations, a reasoning's signature, a tool result's tool name, a call id
//! rig issued itself, an assistant message's origin and stop reason) is kept in the message's
//! metadata under `"rig"`:
//!
//! ```text
//! { "message": { …fields of the message… }, "parts": [ { …fields of part 0… }, … ] }
//! ```
//!
//! Every block is checked as it is written: its part and what is kept must give the very same
//! block back, or the block is kept whole as [`Part::Other`]. So a message read back equals the
//! message written.

use persist_core::args::TurnMessage;
use persist_core::{Content, Message as Stored, Metadata, Part, Role, ToolNames};
use rig_core::completion::Message;
use rig_core::message::{AssistantContent, UserContent};
use serde_json::{Map, Value, json};

/// The metadata key of what typed parts have no place for.
pub const KEPT_KEY: &str = "rig";

/// Why a message could not be converted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConvertError(String);

fn serialize<T: serde::Serialize>(value: &T) -> Result<Value, ConvertError> {
    serde_json::to_value(value).map_err(|e| ConvertError(format!("a rig message did not serialize: {e}")))
}

/// A rig message as the message persist stores.
///
/// # Errors
///
/// [`ConvertError`] when rig's own serialization of the message fails.
pub fn to_turn_message(message: &Message) -> Result<TurnMessage, ConvertError> {
    let (role, blocks, fields) = match message {
        Message::System { content } => (Role::System, vec![json!({"type": "text", "text": content})], Map::new()),
        Message::User { content } => {
            let blocks = content.iter().map(serialize).collect::<Result<Vec<_>, _>>()?;
            (Role::User, blocks, Map::new())
        }
        Message::Assistant(assistant) => {
            let blocks = assistant.content.iter().map(serialize).collect::<Result<Vec<_>, _>>()?;
            // The message's own fields besides its role and content (origin, stop reason).
            let Value::Object(mut fields) = serialize(message)? else {
                return Err(ConvertError("an assistant message serialized as something else".into()));
            };
            fields.remove("role");
            fields.remove("content");
            (Role::Assistant, blocks, fields)
        }
    };
    let user_side = role != Role::Assistant;
    let mut parts = Vec::with_capacity(blocks.len());
    let mut kept_parts = Vec::with_capacity(blocks.len());
    for block in blocks {
        let (part, kept) = match typed(&block) {
            Some((part, kept)) if rebuilds(&part, &kept, &block, user_side) => (part, kept),
            _ => (Part::Other(block), Map::new()),
        };
        parts.push(part);
        kept_parts.push(Value::Object(kept));
    }
    let mut kept = Map::new();
    if !fields.is_empty() {
        kept.insert("message".into(), Value::Object(fields));
    }
    if kept_parts.iter().any(|part| part.as_object().is_some_and(|p| !p.is_empty())) {
        kept.insert("parts".into(), Value::Array(kept_parts));
    }
    let mut stored = TurnMessage::new(role, Content::from_parts(parts));
    if !kept.is_empty() {
        stored = stored.with_metadata(Metadata::new().with(KEPT_KEY, Value::Object(kept)));
    }
    Ok(stored)
}

/// A stored message as rig's message; `None` when nothing of it reads as rig content (a
/// message of another format with no text, say). A part rig has no block for (a file, another
/// format's own block) is left out. A message another format wrote reads as rig's too: a tool
/// result takes the name of its call from `names`, and an output or arguments of another shape
/// take rig's (text as a text block, other JSON as a JSON block; arguments that are JSON text
/// parsed, any others kept as rig keeps arguments that do not parse).
pub fn to_rig(message: &Stored, names: &ToolNames) -> Option<Message> {
    let kept = message.metadata.get(KEPT_KEY);
    let kept_part = |index: usize| -> Map<String, Value> {
        kept.and_then(|k| k.get("parts"))
            .and_then(|p| p.get(index))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let parts = message.content.parts();
    match message.role {
        Role::System => {
            let text: Vec<String> = parts.iter().filter_map(|p| p.as_text().map(str::to_owned)).collect();
            (!text.is_empty()).then(|| Message::System { content: text.join("\n") })
        }
        Role::Assistant => {
            let content: Vec<Value> = parts
                .iter()
                .enumerate()
                .filter_map(|(i, part)| block_of(part, &kept_part(i), false).map(|b| foreign(b, names)))
                .filter(|block| serde_json::from_value::<AssistantContent>(block.clone()).is_ok())
                .collect();
            if content.is_empty() {
                return None;
            }
            let mut value = kept.and_then(|k| k.get("message")).and_then(Value::as_object).cloned().unwrap_or_default();
            value.insert("role".into(), "assistant".into());
            value.insert("content".into(), Value::Array(content));
            serde_json::from_value(Value::Object(value)).ok()
        }
        _ => {
            let content: Vec<UserContent> = parts
                .iter()
                .enumerate()
                .filter_map(|(i, part)| block_of(part, &kept_part(i), true).map(|b| foreign(b, names)))
                .filter_map(|block| serde_json::from_value(block).ok())
                .collect();
            (!content.is_empty()).then_some(Message::User { content })
        }
    }
}

/// A call id as rig writes it (`{"provider": "call_1"}`, or `{"local": …}` for one rig issued):
/// its text, and whether the form must be kept.
fn call_id(value: &Value) -> Option<(String, bool)> {
    let object = value.as_object()?;
    if object.len() != 1 {
        return None;
    }
    let (kind, id) = object.iter().next()?;
    Some((id.as_str()?.to_owned(), kind != "provider"))
}

/// The typed part of a rig block, and what it has no place for; `None` for a kind with no
/// typed part.
fn typed(block: &Value) -> Option<(Part, Map<String, Value>)> {
    let mut rest = block.as_object()?.clone();
    let kind = rest.remove("type")?;
    let part = match kind.as_str()? {
        "text" => Part::text(rest.remove("text")?.as_str()?),
        "reasoning" => Part::reasoning(rest.remove("text")?.as_str()?),
        "toolcall" => {
            let (id, keep_id) = call_id(rest.get("id")?)?;
            if !keep_id {
                rest.remove("id");
            }
            let Value::Object(mut function) = rest.remove("function")? else { return None };
            let name = function.remove("name")?.as_str()?.to_owned();
            let arguments = function.remove("arguments")?;
            if !function.is_empty() {
                rest.insert("function".into(), Value::Object(function));
            }
            Part::tool_call(id, name, arguments)
        }
        "toolresult" => {
            let (call, keep_call) = call_id(rest.get("call")?)?;
            if !keep_call {
                rest.remove("call");
            }
            let output = rest.remove("content")?;
            let is_error = match rest.remove("is_error") {
                None => false,
                Some(value) => value.as_bool()?,
            };
            Part::ToolResult { call_id: call, output, is_error }
        }
        _ => return None,
    };
    Some((part, rest))
}

/// The rig block of a part with what was kept of it; `None` for a part rig has no block for.
fn block_of(part: &Part, kept: &Map<String, Value>, user_side: bool) -> Option<Value> {
    let mut block = match part {
        Part::Text { text } => json!({"type": "text", "text": text}),
        Part::Reasoning { text } if !user_side => json!({"type": "reasoning", "text": text}),
        Part::ToolCall { id, name, arguments } if !user_side => {
            json!({"type": "toolcall", "id": {"provider": id}, "function": {"name": name, "arguments": arguments}})
        }
        Part::ToolResult { call_id, output, is_error } if user_side => {
            json!({"type": "toolresult", "call": {"provider": call_id}, "content": output, "is_error": is_error})
        }
        Part::Other(block) => return Some(block.clone()),
        _ => return None,
    };
    let object = block.as_object_mut()?;
    for (key, value) in kept {
        match (key.as_str(), value, object.get_mut(key)) {
            ("function", Value::Object(fields), Some(Value::Object(function))) => {
                function.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            _ => {
                object.insert(key.clone(), value.clone());
            }
        }
    }
    Some(block)
}

/// A block as rig reads it when another format wrote its part: a tool result without rig's
/// tool name takes its call's, an output that is not rig's list of result blocks becomes one,
/// and arguments that are not an object become one (JSON text parsed, anything else kept as
/// rig keeps arguments that do not parse). A block rig wrote is left as it is.
fn foreign(mut block: Value, names: &ToolNames) -> Value {
    let Some(object) = block.as_object_mut() else { return block };
    match object.get("type").and_then(Value::as_str) {
        Some("toolresult") => {
            if !object.contains_key("name") {
                let call = object.get("call").and_then(call_id).map(|(id, _)| id);
                let name =
                    call.and_then(|id| names.get(&id).map(str::to_owned)).unwrap_or_else(|| "unknown".to_owned());
                object.insert("name".into(), name.into());
            }
            let output = object.remove("content").unwrap_or(Value::Null);
            let content = match output {
                Value::Array(items) if items.iter().all(|item| item.get("type").is_some()) => Value::Array(items),
                Value::String(text) => json!([{"type": "text", "text": text}]),
                other => json!([{"type": "json", "value": other}]),
            };
            object.insert("content".into(), content);
        }
        Some("toolcall") => {
            if let Some(Value::Object(function)) = object.get_mut("function") {
                match function.get("arguments") {
                    Some(Value::Object(_)) => {}
                    Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                        Ok(Value::Object(parsed)) => {
                            function.insert("arguments".into(), Value::Object(parsed));
                        }
                        _ => {
                            let text = text.clone();
                            function.insert("arguments".into(), json!({}));
                            function.insert("invalid_arguments".into(), text.into());
                        }
                    },
                    Some(Value::Null) | None => {
                        function.insert("arguments".into(), json!({}));
                    }
                    Some(other) => {
                        let text = other.to_string();
                        function.insert("arguments".into(), json!({}));
                        function.insert("invalid_arguments".into(), text.into());
                    }
                }
            }
        }
        _ => {}
    }
    block
}

/// Whether `part` with `kept` gives `block` back, as rig reads and writes it.
fn rebuilds(part: &Part, kept: &Map<String, Value>, block: &Value, user_side: bool) -> bool {
    let Some(rebuilt) = block_of(part, kept, user_side) else { return false };
    let again = if user_side {
        serde_json::from_value::<UserContent>(rebuilt).ok().and_then(|b| serde_json::to_value(b).ok())
    } else {
        serde_json::from_value::<AssistantContent>(rebuilt).ok().and_then(|b| serde_json::to_value(b).ok())
    };
    again.as_ref() == Some(block)
}
