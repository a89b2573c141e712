//! swiftide's chat messages ⇄ persist's messages, lossless.
//!
//! | swiftide | persist role | parts |
//! |---|---|---|
//! | `System(text)` | `system` | one text part |
//! | `User(text)` | `user` | one text part |
//! | `Assistant(text, calls)` | `assistant` | a text part when there is text, then one tool-call part per call |
//! | `ToolOutput(call, output)` | `tool` | one tool-result part |
//! | `Summary(text)` | `system` | one text part, marked as a summary (below) |
//!
//! A call's arguments (swiftide keeps the model's JSON text, or none) are stored as JSON when
//! the text is a JSON object or array written compactly, so other readers of the store get
//! arguments they can use; any other text is stored as a JSON string, and no arguments as
//! `null`. A tool output's text is the result's output (`is_error` for a failure). What a part
//! has no place for is kept in the message's metadata under `"swiftide"`:
//!
//! ```text
//! { "kind": "summary" }                                   a summary
//! { "calls": [] }                                         an assistant's empty list of calls
//! { "call": { "id": …, "name": …, "args": … } }           a tool output's call, as swiftide has it
//! { "output": "stop" | "feedback_required" | "agent_failed", "empty": true }
//!                                                         a control output (empty: it had no value)
//! ```
//!
//! Messages another format wrote read as swiftide's too ([`to_chat`]): user and system text,
//! an assistant's text and calls, and each tool result as a `ToolOutput` whose call is named
//! from the calls read with it ([`ToolNames`]). Reasoning, files and blocks swiftide has no
//! message for are left out of what swiftide reads (they stay in the store).

use persist_core::args::TurnMessage;
use persist_core::{Content, Message as Stored, Metadata, Part, Role, ToolNames};
use serde_json::{Map, Value, json};
use swiftide_core::chat_completion::{ChatMessage, ToolCall, ToolOutput};

/// The metadata key of what typed parts have no place for.
pub const KEPT_KEY: &str = "swiftide";

/// A swiftide message as the message persist stores.
pub fn to_turn_message(message: &ChatMessage) -> TurnMessage {
    let mut kept = Map::new();
    let (role, parts) = match message {
        ChatMessage::System(text) => (Role::System, vec![Part::text(text.as_str())]),
        ChatMessage::User(text) => (Role::User, vec![Part::text(text.as_str())]),
        ChatMessage::Summary(text) => {
            kept.insert("kind".into(), json!("summary"));
            (Role::System, vec![Part::text(text.as_str())])
        }
        ChatMessage::Assistant(text, calls) => {
            if calls.as_ref().is_some_and(Vec::is_empty) {
                kept.insert("calls".into(), json!([]));
            }
            let mut parts: Vec<Part> = text.iter().map(|text| Part::text(text.as_str())).collect();
            parts.extend(
                calls.iter().flatten().map(|call| Part::tool_call(call.id(), call.name(), arguments(call.args()))),
            );
            (Role::Assistant, parts)
        }
        ChatMessage::ToolOutput(call, output) => {
            let (value, is_error) = match output {
                ToolOutput::Text(text) => (json!(text), false),
                ToolOutput::Fail(text) => (json!(text), true),
                control => {
                    let (name, value, is_error) = match control {
                        ToolOutput::Stop(value) => ("stop", value, false),
                        ToolOutput::FeedbackRequired(value) => ("feedback_required", value, false),
                        ToolOutput::AgentFailed(value) => ("agent_failed", value, true),
                        // A kind of output newer than this crate: kept as swiftide writes it.
                        other => ("other", &Some(serde_json::to_value(other).unwrap_or(Value::Null)), false),
                    };
                    kept.insert("output".into(), json!(name));
                    if value.is_none() {
                        kept.insert("empty".into(), json!(true));
                    }
                    (value.clone().unwrap_or(Value::Null), is_error)
                }
            };
            kept.insert("call".into(), json!({"id": call.id(), "name": call.name(), "args": call.args()}));
            let part = if is_error { Part::tool_error(call.id(), value) } else { Part::tool_result(call.id(), value) };
            (Role::Tool, vec![part])
        }
    };
    let stored = TurnMessage::new(role, Content::from_parts(parts));
    if kept.is_empty() { stored } else { stored.with_metadata(Metadata::new().with(KEPT_KEY, Value::Object(kept))) }
}

/// A call's arguments as stored: JSON when swiftide's text is a compactly written object or
/// array (and so reads back as the same text), else the text itself, `null` for none.
fn arguments(args: Option<&str>) -> Value {
    let Some(args) = args else { return Value::Null };
    match serde_json::from_str::<Value>(args) {
        Ok(value @ (Value::Object(_) | Value::Array(_))) if serde_json::to_string(&value).is_ok_and(|s| s == args) => {
            value
        }
        _ => Value::String(args.to_owned()),
    }
}

/// Stored arguments as swiftide's text: the inverse of [`arguments`]; another format's
/// arguments (a number, say) as their JSON text.
fn args_text(arguments: &Value) -> Option<String> {
    match arguments {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

/// A stored message as the swiftide messages it holds, in order: one for a message this crate
/// wrote (and for any assistant message), none for another role's message with nothing
/// swiftide reads (a file, say), and for a message another format wrote, its text and calls as
/// one message and each tool result as a `ToolOutput` of its own. `names` names the calls of results another format wrote.
pub fn to_chat(message: &Stored, names: &ToolNames) -> Vec<ChatMessage> {
    let kept = message.metadata.get(KEPT_KEY).and_then(Value::as_object);
    let parts = message.content.parts();
    let text = || {
        let texts: Vec<&str> = parts.iter().filter_map(Part::as_text).collect();
        (!texts.is_empty()).then(|| texts.concat())
    };
    let is_summary = kept.and_then(|k| k.get("kind")).and_then(Value::as_str) == Some("summary");
    let mut read = Vec::new();
    match message.role {
        Role::System if is_summary => read.extend(text().map(ChatMessage::Summary)),
        Role::System => read.extend(text().map(ChatMessage::System)),
        Role::Assistant => {
            let calls: Vec<ToolCall> = parts
                .iter()
                .filter_map(Part::as_tool_call)
                .filter_map(|call| tool_call(call.id, call.name, args_text(call.arguments)))
                .collect();
            let no_calls = kept.and_then(|k| k.get("calls")).is_some_and(|calls| calls == &json!([]));
            read.push(ChatMessage::Assistant(text(), (!calls.is_empty() || no_calls).then_some(calls)));
        }
        // A user's words, or (another format's) tool results, or both.
        _ => {
            if let Some(text) = text().filter(|_| message.role != Role::Tool) {
                read.push(ChatMessage::User(text));
            }
        }
    }
    for result in parts.iter().filter_map(Part::as_tool_result) {
        let call = kept
            .and_then(|k| k.get("call"))
            .filter(|call| call.get("id").and_then(Value::as_str) == Some(result.call_id))
            .and_then(|call| {
                let name = call.get("name").and_then(Value::as_str)?;
                tool_call(result.call_id, name, call.get("args").and_then(Value::as_str).map(str::to_owned))
            })
            .or_else(|| tool_call(result.call_id, names.get(result.call_id).unwrap_or_default(), None));
        let Some(call) = call else { continue };
        read.push(ChatMessage::ToolOutput(call, output(result.output, result.is_error, kept)));
    }
    read
}

fn tool_call(id: &str, name: &str, args: Option<String>) -> Option<ToolCall> {
    ToolCall::builder().id(id).name(name).maybe_args(args).build().ok()
}

/// A stored result as swiftide's output.
fn output(value: &Value, is_error: bool, kept: Option<&Map<String, Value>>) -> ToolOutput {
    let control = kept.and_then(|k| k.get("output")).and_then(Value::as_str);
    let empty = kept.and_then(|k| k.get("empty")).and_then(Value::as_bool) == Some(true);
    let value_of = || (!empty).then(|| value.clone());
    match control {
        Some("stop") => ToolOutput::Stop(value_of()),
        Some("feedback_required") => ToolOutput::FeedbackRequired(value_of()),
        Some("agent_failed") => ToolOutput::AgentFailed(value_of()),
        Some("other") => serde_json::from_value(value.clone()).unwrap_or_else(|_| ToolOutput::Fail(value.to_string())),
        _ => {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            if is_error { ToolOutput::Fail(text) } else { ToolOutput::Text(text) }
        }
    }
}

#[cfg(test)]
mod tests {
    use persist_core::{MessageId, ThreadId, Timestamp};

    use super::*;

    fn call(id: &str, name: &str, args: Option<&str>) -> ToolCall {
        tool_call(id, name, args.map(str::to_owned)).unwrap()
    }

    fn stored(seq: u64, turn: TurnMessage) -> Stored {
        let thread = ThreadId::new("t").unwrap();
        let id = MessageId::new(format!("m{seq}")).unwrap();
        let mut message = Stored::stored(thread, id, seq, turn.role, turn.content, Timestamp::now());
        message.metadata = turn.metadata;
        message
    }

    #[test]
    fn every_kind_of_message_reads_back_equal() {
        let messages = vec![
            ChatMessage::System("Be brief.".into()),
            ChatMessage::User("What is the weather in Lisbon?".into()),
            ChatMessage::User(String::new()),
            ChatMessage::Assistant(None, None),
            ChatMessage::Assistant(Some(String::new()), Some(vec![])),
            ChatMessage::Assistant(Some("Let me look.".into()), None),
            ChatMessage::Assistant(
                None,
                Some(vec![
                    call("c1", "weather", Some(r#"{"city":"Lisbon"}"#)),
                    call("c2", "weather", Some(r#"{ "city": "Porto" }"#)),
                    call("c3", "now", None),
                    call("c4", "echo", Some("null")),
                    call("c5", "echo", Some("not json")),
                    call("c6", "echo", Some("[1,2]")),
                    call("c7", "echo", Some("")),
                ]),
            ),
            ChatMessage::ToolOutput(call("c1", "weather", Some(r#"{"city":"Lisbon"}"#)), ToolOutput::text("21 °C")),
            ChatMessage::ToolOutput(call("c2", "weather", None), ToolOutput::fail("timed out")),
            ChatMessage::ToolOutput(call("c3", "now", None), ToolOutput::Stop(None)),
            ChatMessage::ToolOutput(call("c4", "echo", None), ToolOutput::Stop(Some(Value::Null))),
            ChatMessage::ToolOutput(call("c5", "echo", None), ToolOutput::feedback_required(Some(json!({"ask": 1})))),
            ChatMessage::ToolOutput(call("c6", "echo", None), ToolOutput::FeedbackRequired(None)),
            ChatMessage::ToolOutput(call("c7", "echo", None), ToolOutput::agent_failed(json!("gave up"))),
            ChatMessage::ToolOutput(call("c8", "echo", None), ToolOutput::AgentFailed(None)),
            ChatMessage::ToolOutput(call("c9", "echo", None), ToolOutput::text("")),
            ChatMessage::Summary("They talked about the weather.".into()),
        ];
        let names = ToolNames::new();
        for (seq, message) in messages.iter().enumerate() {
            let back = to_chat(&stored(seq as u64 + 1, to_turn_message(message)), &names);
            assert_eq!(back, vec![message.clone()], "{message:?}");
        }
    }

    #[test]
    fn other_readers_get_typed_parts() {
        let turn = to_turn_message(&ChatMessage::Assistant(
            Some("Looking.".into()),
            Some(vec![call("c1", "weather", Some(r#"{"city":"Lisbon"}"#)), call("c2", "raw", Some("x"))]),
        ));
        assert_eq!(
            turn.content.parts(),
            vec![
                Part::text("Looking."),
                Part::tool_call("c1", "weather", json!({"city": "Lisbon"})),
                Part::tool_call("c2", "raw", json!("x")),
            ]
        );
        assert!(turn.metadata.get(KEPT_KEY).is_none(), "nothing kept aside: {:?}", turn.metadata);
        let result = to_turn_message(&ChatMessage::ToolOutput(call("c1", "weather", None), ToolOutput::fail("down")));
        assert_eq!(result.role, Role::Tool);
        assert_eq!(result.content.parts(), vec![Part::tool_error("c1", json!("down"))]);
    }

    #[test]
    fn messages_another_format_wrote_read_as_swiftide_messages() {
        let call_message = TurnMessage::new(
            Role::Assistant,
            Content::from_parts([
                Part::reasoning("The user wants the weather."),
                Part::text("Checking."),
                Part::tool_call("a", "weather", json!({"city": "Oslo"})),
                Part::tool_call("b", "clock", json!(7)),
            ]),
        );
        // rig writes tool results in a user message; the Responses API in a tool message.
        let results = TurnMessage::new(
            Role::User,
            Content::from_parts([
                Part::tool_result("a", json!({"temp": -3})),
                Part::tool_error("b", json!("no clock")),
            ]),
        );
        let files = TurnMessage::new(Role::User, Content::from_parts([Part::file("image/png", "s3://b/cat.png")]));
        let messages = [stored(1, call_message), stored(2, results), stored(3, files)];
        let names: ToolNames = messages.iter().map(|m| &m.content).collect();
        let read: Vec<ChatMessage> = messages.iter().flat_map(|m| to_chat(m, &names)).collect();
        assert_eq!(
            read,
            vec![
                ChatMessage::Assistant(
                    Some("Checking.".into()),
                    Some(vec![call("a", "weather", Some(r#"{"city":"Oslo"}"#)), call("b", "clock", Some("7"))])
                ),
                ChatMessage::ToolOutput(call("a", "weather", None), ToolOutput::text(r#"{"temp":-3}"#)),
                ChatMessage::ToolOutput(call("b", "clock", None), ToolOutput::fail("no clock")),
            ]
        );
    }
}
