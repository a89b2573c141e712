//! Vercel AI SDK `UIMessage`s: what `useChat` holds and sends, and what an app stores to show a
//! conversation again.
//!
//! | `UIMessage` | persist |
//! |---|---|
//! | `id` | the message id |
//! | `role` (`system`, `user`, `assistant`) | [`Role`], by name |
//! | `text` part | [`Part::Text`] |
//! | `reasoning` part | [`Part::Reasoning`] |
//! | `file` part: `mediaType`, `url`, `filename` | [`Part::File`] |
//! | `tool-<name>` or `dynamic-tool` part: `toolCallId`, `input` | [`Part::ToolCall`] |
//! | — its `output` (`output-available`) or `errorText` (`output-error`) | a [`Part::ToolResult`] right after the call, failed for an `errorText` |
//! | `source-url`, `source-document`, `data-*`, `step-start`, any other part | [`Part::Other`], whole |
//! | `metadata`, a part's `state`, `providerMetadata`, `providerExecuted`, … | kept under [`METADATA_KEY`] |
//!
//! A tool part holds a call and its result, so an assistant message holds both. On export the
//! other way round holds too: a call is written with its result wherever the result is among the
//! messages exported (a Chat `tool` message, an Anthropic user message), and a message left with
//! no part once its results went to their calls is left out; so is a result whose call is not
//! among the messages (a `UIMessage` has no place for it). A [`Role::Tool`] message's other
//! parts go in an assistant message.
//!
//! # Status
//!
//! A part's `state` is kept and written back; the message is imported complete (a turn writes
//! complete messages). On export, the text and reasoning parts of a
//! [`Reserved`](Status::Reserved) message are `"state": "streaming"`, and a message reserved or
//! [`Interrupted`](Status::Interrupted) says so in its metadata:
//! `"metadata": {"persist": {"status": "reserved" | "interrupted"}}`, beside the app's own keys
//! when its metadata is an object.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::kept::{Kept, extras, fill, typed_or_other};
use super::{Exportable, imported, message_id_of, role_of};
use persist_core::MessageId;
use persist_core::PersistError;
use persist_core::args::TurnMessage;
use persist_core::{Part, Role, Status};

/// The metadata key under which an import keeps what a `UIMessage` carried beyond the parts
/// (see the [lossless rule](super#the-lossless-rule)).
pub const METADATA_KEY: &str = "persist.convert.vercel_ui";

/// Tool results by the id of the call they answer: the first of each.
type Results<'a> = HashMap<&'a str, &'a Part>;

/// `UIMessage`s as the messages of a turn, one each, in order.
///
/// # Errors
///
/// [`PersistError::InvalidInput`] naming `messages` and the message's index when a message is
/// not an object, has no `role` string or no `parts` array, or has an `id` persist cannot take
/// as a message id.
///
/// # Example
///
/// ```
/// use persist::convert::vercel_ui;
/// use persist::Part;
/// use serde_json::json;
///
/// let turn = vercel_ui::import(&[json!({"id": "m1", "role": "assistant", "parts": [
///     {"type": "tool-getWeather", "toolCallId": "c1", "state": "output-available",
///      "input": {"city": "Paris"}, "output": {"celsius": 21}}
/// ]})])?;
/// assert_eq!(
///     turn[0].content.parts(),
///     [Part::tool_call("c1", "getWeather", json!({"city": "Paris"})), Part::tool_result("c1", json!({"celsius": 21}))]
/// );
/// # Ok::<_, persist::PersistError>(())
/// ```
pub fn import(messages: &[Value]) -> Result<Vec<TurnMessage>, PersistError> {
    super::import_each(messages, "messages", import_message)
}

/// Messages as `UIMessage`s, ready to give `useChat` (see the [module docs](self) for where
/// tool results go). A message's id is its `id`; a turn message given none yet is written
/// without one.
///
/// # Example
///
/// ```
/// use persist::args::TurnMessage;
/// use persist::convert::vercel_ui;
/// use persist::{Content, MessageId, Part, Role};
/// use serde_json::json;
///
/// let call = Part::tool_call("c1", "getWeather", json!({"city": "Paris"}));
/// let result = Part::tool_result("c1", json!({"celsius": 21}));
/// let ui = vercel_ui::export(&[
///     TurnMessage::new(Role::Assistant, Content::from_parts([call])).with_id(MessageId::new("m1")?),
///     TurnMessage::new(Role::Tool, Content::from_parts([result])),
/// ]);
/// assert_eq!(
///     ui,
///     [json!({"id": "m1", "role": "assistant", "parts": [
///         {"type": "tool-getWeather", "toolCallId": "c1", "state": "output-available",
///          "input": {"city": "Paris"}, "output": {"celsius": 21}}
///     ]})]
/// );
/// # Ok::<_, persist::PersistError>(())
/// ```
pub fn export<M: Exportable>(messages: &[M]) -> Vec<Value> {
    let contents: Vec<Vec<Part>> = messages.iter().map(|message| message.content().parts()).collect();
    let results = results_of(contents.iter().flatten());
    messages
        .iter()
        .zip(&contents)
        .filter_map(|(message, parts)| {
            let kept = Kept::read(message.metadata(), METADATA_KEY);
            if let Some(original) = kept.original()
                && import_message(original).is_ok_and(|again| again.content == *message.content())
            {
                return Some(original.clone());
            }
            // A reply a live writer streamed (it has a writer's lease, `persist.lease`) is told
            // in steps, as the SDK's own are: a tool's result ends one.
            let steps = *message.role() == Role::Assistant && message.metadata().get(LIVE_LEASE_KEY).is_some();
            write_message(message.id(), message.role(), parts, &kept, message.status(), &results, steps)
        })
        .collect()
}

/// The metadata key of a live reply's writer's lease (`persist::live::LEASE_KEY`): a reply
/// streamed part by part, whose steps its parts alone tell.
const LIVE_LEASE_KEY: &str = "persist.lease";

/// The part that starts a step (a model call) of an assistant's reply.
fn step_start() -> Value {
    json!({"type": "step-start"})
}

fn import_message(message: &Value) -> Result<TurnMessage, String> {
    let object = message.as_object().ok_or("is not a JSON object")?;
    let id = message_id_of(object)?;
    let role = role_of(object)?;
    let ui_parts = object.get("parts").and_then(Value::as_array).ok_or("has no `parts` array")?;
    let parts: Vec<(Part, Kept)> = ui_parts.iter().flat_map(import_part).collect();
    let write_id = id.clone();
    Ok(imported(message, role, id, (parts, Map::new()), METADATA_KEY, |role, parts, kept| {
        write_message(write_id.as_ref(), role, parts, kept, Status::Complete, &results_of(parts), false)
    }))
}

fn results_of<'a>(parts: impl IntoIterator<Item = &'a Part>) -> Results<'a> {
    let mut results = Results::new();
    for part in parts {
        if let Part::ToolResult { call_id, .. } = part {
            results.entry(call_id.as_str()).or_insert(part);
        }
    }
    results
}

/// The `UIMessage` of one message; `None` when it held tool results alone, which went to their
/// calls (or had no call to go to). With `steps`, a reply that calls tools is told in steps:
/// `step-start` first, and again after a tool's result where more follows (what the SDK's
/// `convertToModelMessages` splits a reply at, so the model reads a result before what was
/// written after it).
fn write_message(
    id: Option<&MessageId>,
    role: &Role,
    parts: &[Part],
    kept: &Kept,
    status: Status,
    results: &Results<'_>,
    steps: bool,
) -> Option<Value> {
    let steps = steps && parts.iter().any(|part| matches!(part, Part::ToolCall { .. }));
    let mut written = Vec::new();
    if steps {
        written.push(step_start());
    }
    let mut held_results = false;
    // A tool's result was written since the step started: what follows is the next step.
    let mut answered = false;
    for (index, part) in parts.iter().enumerate() {
        let part_kept = kept.part(index, parts.len());
        if steps && answered && !matches!(part, Part::ToolResult { .. }) {
            written.push(step_start());
            answered = false;
        }
        match part {
            Part::ToolCall { id, .. } => {
                let result = results.get(id.as_str()).copied();
                answered |= result.is_some();
                written.extend(write_tool(part, result, part_kept));
            }
            // Written with its call.
            Part::ToolResult { .. } => held_results = true,
            _ => written.extend(write_part(part, part_kept, status == Status::Reserved)),
        }
    }
    if written.is_empty() && held_results {
        return None;
    }
    // A UIMessage has no tool role: tool output shows in the assistant's turn.
    let role = if *role == Role::Tool { "assistant" } else { role.as_str() };
    let mut message = json!({"role": role, "parts": written});
    if let Some(id) = id {
        message["id"] = id.as_str().into();
    }
    if status != Status::Complete {
        message["metadata"] = json!({"persist": {"status": status.as_str()}});
    }
    fill(&mut message, &kept.fields);
    Some(message)
}

fn import_part(part: &Value) -> Vec<(Part, Kept)> {
    let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
    if kind == "dynamic-tool" || kind.starts_with("tool-") {
        return import_tool(part);
    }
    vec![typed_or_other(part, read_part, |read, kept| write_part(read, Some(kept), false))]
}

fn read_part(part: &Value) -> Option<(Part, Map<String, Value>)> {
    let string = |key: &str| part.get(key).and_then(Value::as_str);
    let read = match string("type")? {
        "text" => Part::text(string("text")?),
        "reasoning" => Part::reasoning(string("text")?),
        "file" => Part::File {
            media_type: string("mediaType")?.to_owned(),
            uri: string("url")?.to_owned(),
            name: string("filename").map(str::to_owned),
            size: None,
        },
        _ => return None,
    };
    Some((read, Map::new()))
}

fn write_part(part: &Part, kept: Option<&Kept>, streaming: bool) -> Option<Value> {
    let mut written = match part {
        Part::Text { text } => json!({"type": "text", "text": text}),
        Part::Reasoning { text } => json!({"type": "reasoning", "text": text}),
        Part::File { media_type, uri, name, .. } => {
            let mut file = json!({"type": "file", "mediaType": media_type, "url": uri});
            if let Some(name) = name {
                file["filename"] = name.as_str().into();
            }
            file
        }
        Part::Other(part) => return Some(part.clone()),
        // Tool parts are written with their results (`write_tool`); a kind of part newer than
        // this converter has nothing in this format.
        _ => return None,
    };
    if streaming && matches!(part, Part::Text { .. } | Part::Reasoning { .. }) {
        written["state"] = "streaming".into();
    }
    if let Some(kept) = kept {
        fill(&mut written, &kept.fields);
    }
    Some(written)
}

/// A tool part as its call and, once it has one, its result; or whole, as [`Part::Other`].
fn import_tool(part: &Value) -> Vec<(Part, Kept)> {
    if let Some((call, result, form)) = read_tool(part) {
        let kept = Kept::with_form(form);
        let written = write_tool(&call, result.as_ref(), Some(&kept));
        if let Some(fields) = written.and_then(|written| extras(part, &written)) {
            let call = (call, Kept { fields, ..kept });
            return std::iter::once(call).chain(result.map(|result| (result, Kept::default()))).collect();
        }
    }
    vec![(Part::Other(part.clone()), Kept::default())]
}

fn read_tool(part: &Value) -> Option<(Part, Option<Part>, Map<String, Value>)> {
    let string = |key: &str| part.get(key).and_then(Value::as_str);
    let kind = string("type")?;
    let mut form = Map::new();
    let name = if kind == "dynamic-tool" {
        form.insert("dynamic".into(), true.into());
        string("toolName")?
    } else {
        kind.strip_prefix("tool-")?
    };
    let id = string("toolCallId")?;
    let state = string("state")?;
    let field = |key: &str| part.get(key).cloned().unwrap_or(Value::Null);
    let result = match state {
        "output-available" => Some(Part::tool_result(id, field("output"))),
        "output-error" => Some(Part::tool_error(id, field("errorText"))),
        "input-available" => None,
        // Streaming, waiting for an approval, denied: a call with no result, in that state.
        other => {
            form.insert("state".into(), other.into());
            None
        }
    };
    Some((Part::tool_call(id, name, field("input")), result, form))
}

fn write_tool(call: &Part, result: Option<&Part>, kept: Option<&Kept>) -> Option<Value> {
    let call = call.as_tool_call()?;
    let form = |key: &str| kept.and_then(|kept| kept.form.get(key));
    let mut written = if form("dynamic") == Some(&Value::Bool(true)) {
        json!({"type": "dynamic-tool", "toolName": call.name})
    } else {
        json!({"type": format!("tool-{}", call.name)})
    };
    written["toolCallId"] = call.id.into();
    if !call.arguments.is_null() {
        written["input"] = call.arguments.clone();
    }
    match result.and_then(Part::as_tool_result) {
        Some(result) => {
            let (state, key) =
                if result.is_error { ("output-error", "errorText") } else { ("output-available", "output") };
            written["state"] = state.into();
            match result.output {
                Value::Null => {}
                Value::String(_) => written[key] = result.output.clone(),
                // An error's text is a string.
                other if result.is_error => written[key] = other.to_string().into(),
                other => written[key] = other.clone(),
            }
        }
        None => written["state"] = form("state").cloned().unwrap_or_else(|| "input-available".into()),
    }
    if let Some(kept) = kept {
        fill(&mut written, &kept.fields);
    }
    Some(written)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixture;
    use persist_core::Content;

    #[test]
    fn every_fixture_round_trips() {
        fixture::assert_round_trips(include_str!("fixtures/vercel_ui.json"), import, export);
    }

    #[test]
    fn ids_tool_parts_and_files_import_as_persist_parts() {
        let cases = fixture::cases(include_str!("fixtures/vercel_ui.json"));
        let turn_of = |example: &str| {
            let (_, messages) = cases.iter().find(|(name, _)| name.contains(example)).unwrap();
            import(messages).unwrap()
        };
        let failed = &turn_of("with a tool part in output-error state")[0];
        assert_eq!(failed.message_id.as_ref().map(MessageId::as_str), Some("1"));
        assert_eq!(
            failed.content.parts(),
            [Part::tool_call("1", "foo", json!({"foo": "bar"})), Part::tool_error("1", json!("Tool execution failed"))]
        );
        let kept = failed.metadata.get(METADATA_KEY).unwrap();
        assert_eq!(kept["parts"][0]["fields"], json!({"providerExecuted": true}));
        let streaming = &turn_of("dynamic tool part in input-streaming state")[0];
        assert_eq!(streaming.content.parts().len(), 1, "a call with no result yet");
        assert_eq!(
            streaming.metadata.get(METADATA_KEY).unwrap()["parts"][0]["form"],
            json!({"dynamic": true, "state": "input-streaming"})
        );
        let file = &turn_of("file part")[0];
        assert_eq!(file.content.parts(), [Part::file("text/plain", "https://example.com")]);
        let with_metadata = &turn_of("user message with metadata")[0];
        assert_eq!(with_metadata.metadata.get(METADATA_KEY).unwrap()["fields"], json!({"metadata": {"foo": "bar"}}));
    }

    #[test]
    fn a_live_reply_is_told_in_steps_a_tools_result_ending_one() {
        let parts = Content::from_parts([
            Part::reasoning("Ask."),
            Part::tool_call("c1", "weather", json!({})),
            Part::tool_result("c1", json!(4)),
            Part::text("4 °C."),
        ]);
        let live = persist_core::Metadata::new().with(LIVE_LEASE_KEY, json!({"ms": 30000}));
        let reply = TurnMessage::new(Role::Assistant, parts.clone()).with_metadata(live);
        let kinds = |message: &Value| -> Vec<String> {
            message["parts"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(kinds(&export(&[reply])[0]), ["step-start", "reasoning", "tool-weather", "step-start", "text"]);
        // A message of another writer is as it was written.
        assert_eq!(
            kinds(&export(&[TurnMessage::new(Role::Assistant, parts)])[0]),
            ["reasoning", "tool-weather", "text"]
        );
    }

    #[test]
    fn persist_messages_export_with_results_on_their_calls_and_their_status() {
        let id = |id: &str| MessageId::new(id).unwrap();
        let assistant =
            Content::from_parts([Part::text("Checking."), Part::tool_call("c1", "lookup", json!({"q": "x"}))]);
        let result = Content::from_parts([Part::tool_error("c1", json!({"code": 500}))]);
        let orphan = Content::from_parts([Part::tool_result("gone", json!(1))]);
        let mut reserved = TurnMessage::new(Role::Assistant, Content::text("Partial")).with_id(id("r"));
        reserved.status = Status::Reserved;
        let mut interrupted = TurnMessage::new(Role::Assistant, Content::text("Cut")).with_id(id("i"));
        interrupted.status = Status::Interrupted;
        let ui = export(&[
            TurnMessage::new(Role::Assistant, assistant).with_id(id("a")),
            TurnMessage::new(Role::Tool, result).with_id(id("t")),
            TurnMessage::new(Role::Tool, orphan).with_id(id("o")),
            reserved,
            interrupted,
        ]);
        assert_eq!(
            ui,
            [
                json!({"id": "a", "role": "assistant", "parts": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool-lookup", "toolCallId": "c1", "input": {"q": "x"},
                     "state": "output-error", "errorText": "{\"code\":500}"}
                ]}),
                json!({"id": "r", "role": "assistant", "metadata": {"persist": {"status": "reserved"}},
                       "parts": [{"type": "text", "text": "Partial", "state": "streaming"}]}),
                json!({"id": "i", "role": "assistant", "metadata": {"persist": {"status": "interrupted"}},
                       "parts": [{"type": "text", "text": "Cut"}]}),
            ]
        );
    }

    #[test]
    fn an_interrupted_message_keeps_the_apps_metadata_beside_its_status() {
        let message = json!({"id": "m", "role": "assistant", "metadata": {"model": "m-1"},
            "parts": [{"type": "text", "text": "Hel", "state": "done"}]});
        let mut stored = fixture::stored(import(&[message]).unwrap());
        stored[0].status = Status::Interrupted;
        assert_eq!(
            export(&stored),
            [
                json!({"id": "m", "role": "assistant", "metadata": {"model": "m-1", "persist": {"status": "interrupted"}},
                    "parts": [{"type": "text", "text": "Hel", "state": "done"}]})
            ]
        );
    }

    #[test]
    fn malformed_messages_are_refused_by_index() {
        for (bad, why) in [
            (json!(null), "not a JSON object"),
            (json!({"id": "1", "parts": []}), "`role`"),
            (json!({"id": "1", "role": "user"}), "`parts`"),
            (json!({"id": "1", "role": "user", "parts": {}}), "`parts`"),
            (json!({"id": 1, "role": "user", "parts": []}), "`id`"),
        ] {
            let error = import(&[bad]).unwrap_err();
            let PersistError::InvalidInput { field, reason } = error else { panic!("{error:?}") };
            assert_eq!(field, "messages");
            assert!(reason.contains("element 0") && reason.contains(why), "{reason}");
        }
    }
}
