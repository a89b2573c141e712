//! OpenAI Chat Completions messages: the `messages` of a request, or the `message` of a choice.
//!
//! | Chat | persist |
//! |---|---|
//! | `role` (`system`, `developer`, `user`, `assistant`, `tool`) | [`Role`], by name |
//! | `content` as a string, or `{"type": "text"}` parts | [`Part::Text`] |
//! | `{"type": "image_url", "image_url": {"url"}}` | [`Part::File`]: the data URL's type, else `image/*` |
//! | `{"type": "file", "file": {"file_data" or "file_id", "filename"}}` | [`Part::File`]; the type is `application/octet-stream` unless a data URL names it |
//! | `tool_calls[]` of `"type": "function"` | [`Part::ToolCall`], `arguments` parsed from its text |
//! | a `tool` message: `tool_call_id` and `content` | [`Role::Tool`] message of one [`Part::ToolResult`], `output` the content as it is |
//! | any other part, or tool call | [`Part::Other`], whole |
//! | `name`, `refusal`, `annotations`, `audio`, a `detail`, … | kept under [`METADATA_KEY`] |
//!
//! Chat has no message ids and no status: a reserved or interrupted message is exported as
//! what was streamed so far. It has no place for reasoning (left out of the export) nor for a
//! failed result's `is_error` (the result's output is sent as it is). A result in a message of
//! another role (Anthropic's user messages carry them) is exported as a `tool` message of its
//! own: after the message when it holds the calls, before it otherwise.

use serde_json::{Map, Value, json};

use super::arguments::{read_arguments, write_arguments};
use super::kept::{Kept, fill, typed_or_other};
use super::{
    Exportable, UNKNOWN_MEDIA_TYPE, content_form, data_url_media_type, imported, only, role_of, string_or_blocks,
};
use persist_core::PersistError;
use persist_core::args::TurnMessage;
use persist_core::{Part, Role};

/// The metadata key under which an import keeps what Chat carried beyond the parts (see the
/// [lossless rule](super#the-lossless-rule)).
pub const METADATA_KEY: &str = "persist.convert.openai_chat";

/// Chat messages as the messages of a turn, one each, in order.
///
/// # Errors
///
/// [`PersistError::InvalidInput`] naming `messages` and the message's index when a message is
/// not an object, has no `role` string, has `content` that is neither a string, an array nor
/// `null`, has `tool_calls` that are not an array, or is a `tool` message without a
/// `tool_call_id` string.
///
/// # Example
///
/// ```
/// use persist::convert::openai_chat;
/// use persist::{Part, Role};
/// use serde_json::json;
///
/// let turn = openai_chat::import(&[
///     json!({"role": "developer", "content": "You are a helpful assistant."}),
///     json!({"role": "user", "content": "Hello!"}),
/// ])?;
/// assert_eq!(turn[0].role.as_str(), "developer");
/// assert_eq!(turn[1].content.parts(), [Part::text("Hello!")]);
/// assert!(openai_chat::import(&[json!({"content": "no role"})]).is_err());
/// # Ok::<_, persist::PersistError>(())
/// ```
pub fn import(messages: &[serde_json::Value]) -> Result<Vec<TurnMessage>, PersistError> {
    super::import_each(messages, "messages", import_message)
}

/// Messages as Chat messages, ready to send as a request's `messages`.
///
/// A message gives one Chat message, and one more per tool result it holds outside a `tool`
/// message (see the [module docs](self)).
///
/// # Example
///
/// ```
/// use persist::args::TurnMessage;
/// use persist::convert::openai_chat;
/// use persist::{Content, Part, Role};
/// use serde_json::json;
///
/// let call = Part::tool_call("call_1", "get_weather", json!({"city": "Paris"}));
/// let chat = openai_chat::export(&[TurnMessage::new(Role::Assistant, Content::from_parts([call]))]);
/// assert_eq!(
///     chat,
///     [json!({"role": "assistant", "content": null, "tool_calls": [
///         {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
///     ]})]
/// );
/// ```
pub fn export<M: Exportable>(messages: &[M]) -> Vec<Value> {
    messages.iter().filter(|message| super::reaches_provider(*message)).flat_map(export_message).collect()
}

fn export_message(message: &impl Exportable) -> Vec<Value> {
    let kept = Kept::read(message.metadata(), METADATA_KEY);
    if let Some(original) = kept.original()
        && import_message(original).is_ok_and(|again| again.content == *message.content())
    {
        return vec![original.clone()];
    }
    write_message(message.role(), &message.content().parts(), &kept)
}

fn import_message(message: &Value) -> Result<TurnMessage, String> {
    let object = message.as_object().ok_or("is not a JSON object")?;
    let role = role_of(object)?;
    let mut parts = Vec::new();
    let mut form = Map::new();
    if role == Role::Tool {
        let call_id = object
            .get("tool_call_id")
            .and_then(Value::as_str)
            .ok_or("is a `tool` message without a `tool_call_id` string")?;
        let output = object.get("content").cloned().unwrap_or(Value::Null);
        parts.push((Part::tool_result(call_id, output), Kept::default()));
    } else {
        match object.get("content") {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => parts.push((Part::text(text), Kept::default())),
            Some(Value::Array(blocks)) => parts.extend(blocks.iter().map(import_block)),
            Some(_) => return Err("has a `content` that is neither a string, an array of parts nor null".into()),
        }
        if let Some(form_of_content) = content_form(object.get("content"), &Value::Null) {
            form.insert("content".into(), form_of_content.into());
        }
        if let Some(calls) = object.get("tool_calls") {
            let calls = calls.as_array().ok_or("has `tool_calls` that are not an array")?;
            parts.extend(calls.iter().map(import_tool_call));
        }
    }
    Ok(imported(message, role, None, (parts, form), METADATA_KEY, |role, parts, kept| {
        only(write_message(role, parts, kept))
    }))
}

/// The Chat messages of one message: its tool results as `tool` messages, and the rest as one
/// message of its role.
fn write_message(role: &Role, parts: &[Part], kept: &Kept) -> Vec<Value> {
    let (mut blocks, mut calls, mut results) = (Vec::new(), Vec::new(), Vec::new());
    for (index, part) in parts.iter().enumerate() {
        let part_kept = kept.part(index, parts.len());
        match part {
            Part::ToolResult { call_id, output, .. } => results.push(tool_message(call_id, output)),
            Part::ToolCall { .. } => calls.extend(write_tool_call(part, part_kept)),
            Part::Other(call) if part_kept.and_then(|kept| kept.form_str("place")) == Some("tool_calls") => {
                calls.push(call.clone());
            }
            // Chat has no place for reasoning.
            Part::Reasoning { .. } => {}
            _ => blocks.extend(write_block(part, part_kept)),
        }
    }
    let own = (!blocks.is_empty() || !calls.is_empty() || results.is_empty()).then(|| {
        let mut own = json!({"role": role.as_str()});
        if let Some(content) = string_or_blocks(blocks, Value::Null, kept.form_str("content")) {
            own["content"] = content;
        }
        if !calls.is_empty() {
            own["tool_calls"] = Value::Array(calls);
        }
        own
    });
    // Results answer the calls before them: this message's own calls, or an earlier message's.
    let holds_calls = own.as_ref().is_some_and(|own| own.get("tool_calls").is_some());
    let mut messages: Vec<Value> =
        if holds_calls { own.into_iter().chain(results).collect() } else { results.into_iter().chain(own).collect() };
    if let [one] = messages.as_mut_slice() {
        fill(one, &kept.fields);
    }
    messages
}

fn tool_message(call_id: &str, output: &Value) -> Value {
    let mut message = json!({"role": "tool", "tool_call_id": call_id});
    match output {
        Value::Null => {}
        Value::String(_) | Value::Array(_) => message["content"] = output.clone(),
        other => message["content"] = other.to_string().into(),
    }
    message
}

fn import_block(block: &Value) -> (Part, Kept) {
    typed_or_other(block, read_block, |part, kept| write_block(part, Some(kept)))
}

fn read_block(block: &Value) -> Option<(Part, Map<String, Value>)> {
    let part = match block.get("type")?.as_str()? {
        "text" => Part::text(block.get("text")?.as_str()?),
        "image_url" => {
            let url = block.get("image_url")?.get("url")?.as_str()?;
            Part::file(data_url_media_type(url).unwrap_or("image/*"), url)
        }
        "file" => {
            let file = block.get("file")?;
            let uri = file.get("file_data").or_else(|| file.get("file_id"))?.as_str()?;
            Part::File {
                media_type: data_url_media_type(uri).unwrap_or(UNKNOWN_MEDIA_TYPE).to_owned(),
                uri: uri.to_owned(),
                name: file.get("filename").and_then(Value::as_str).map(str::to_owned),
                size: None,
            }
        }
        _ => return None,
    };
    Some((part, Map::new()))
}

fn write_block(part: &Part, kept: Option<&Kept>) -> Option<Value> {
    let mut block = match part {
        Part::Text { text } => json!({"type": "text", "text": text}),
        Part::File { media_type, uri, .. } if media_type.starts_with("image/") => {
            json!({"type": "image_url", "image_url": {"url": uri}})
        }
        Part::File { uri, name, .. } => {
            let mut file = Map::new();
            let field = if uri.starts_with("data:") { "file_data" } else { "file_id" };
            file.insert(field.into(), uri.as_str().into());
            if let Some(name) = name {
                file.insert("filename".into(), name.as_str().into());
            }
            json!({"type": "file", "file": file})
        }
        Part::Other(block) => return Some(block.clone()),
        _ => return None,
    };
    if let Some(kept) = kept {
        fill(&mut block, &kept.fields);
    }
    Some(block)
}

fn import_tool_call(call: &Value) -> (Part, Kept) {
    let (part, mut kept) = typed_or_other(call, read_tool_call, |part, kept| write_tool_call(part, Some(kept)));
    if matches!(part, Part::Other(_)) {
        kept.form.insert("place".into(), "tool_calls".into());
    }
    (part, kept)
}

fn read_tool_call(call: &Value) -> Option<(Part, Map<String, Value>)> {
    if call.get("type")?.as_str()? != "function" {
        return None;
    }
    let function = call.get("function")?;
    let (arguments, form) = read_arguments(function.get("arguments")?.as_str()?);
    let id = call.get("id")?.as_str()?;
    Some((Part::tool_call(id, function.get("name")?.as_str()?, arguments), form))
}

fn write_tool_call(part: &Part, kept: Option<&Kept>) -> Option<Value> {
    let call = part.as_tool_call()?;
    let arguments = write_arguments(call.arguments, kept.and_then(|kept| kept.form_str("arguments")));
    let mut written = json!({
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": arguments},
    });
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
    use persist_core::{Content, Status};

    #[test]
    fn every_fixture_round_trips() {
        fixture::assert_round_trips(include_str!("fixtures/openai_chat.json"), import, export);
    }

    #[test]
    fn a_call_is_parsed_and_its_text_kept_and_a_result_names_its_call() {
        let cases = fixture::cases(include_str!("fixtures/openai_chat.json"));
        let turn_of = |example: &str| {
            let (_, elements) = cases.iter().find(|(name, _)| name.contains(example)).unwrap();
            import(elements).unwrap()
        };
        let functions = turn_of("> Functions");
        let call = Part::tool_call("call_abc123", "get_current_weather", json!({"location": "Boston, MA"}));
        assert_eq!(functions[1].content.parts(), [call]);
        let kept = functions[1].metadata.get(METADATA_KEY).unwrap();
        assert_eq!(kept["parts"][0]["form"]["arguments"], "{\n\"location\": \"Boston, MA\"\n}");
        assert_eq!(kept["form"], json!(null), "`content: null` is how a message of calls alone is written");

        let cookbook = turn_of("Cookbook");
        assert_eq!(cookbook[2].role, Role::Tool);
        let parts = cookbook[2].content.parts();
        let result = parts[0].as_tool_result().unwrap();
        assert_eq!(
            (result.call_id, result.output),
            ("call_bXMf903yO78sdsMZble4yu90", &json!("[('Greatest Hits', 57)]"))
        );
        assert_eq!(cookbook[2].metadata.get(METADATA_KEY).unwrap()["fields"], json!({"name": "ask_database"}));
    }

    #[test]
    fn an_image_url_is_a_file_and_its_detail_is_kept() {
        let turn = import(&[json!({"role": "user", "content": [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "high"}}
        ]})])
        .unwrap();
        assert_eq!(turn[0].content.parts()[1], Part::file("image/png", "data:image/png;base64,iVBOR"));
        let kept = turn[0].metadata.get(METADATA_KEY).unwrap();
        assert_eq!(kept["parts"][1]["fields"], json!({"image_url": {"detail": "high"}}));
    }

    #[test]
    fn persist_messages_export_to_chat() {
        let assistant = Content::from_parts([
            Part::reasoning("left out"),
            Part::text("Checking."),
            Part::tool_call("c1", "lookup", json!({})),
            Part::tool_result("c1", json!({"found": true})),
        ]);
        let mut interrupted = TurnMessage::new(Role::Assistant, Content::text("It is sun"));
        interrupted.status = Status::Interrupted;
        let user = Content::from_parts([Part::text("See"), Part::file("application/pdf", "file-abc")]);
        let chat =
            export(&[TurnMessage::new(Role::Assistant, assistant), interrupted, TurnMessage::new(Role::User, user)]);
        assert_eq!(
            chat,
            [
                json!({"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
                ]}),
                json!({"role": "tool", "tool_call_id": "c1", "content": "{\"found\":true}"}),
                json!({"role": "assistant", "content": "It is sun"}),
                json!({"role": "user", "content": [
                    {"type": "text", "text": "See"},
                    {"type": "file", "file": {"file_id": "file-abc"}}
                ]}),
            ]
        );
    }

    #[test]
    fn unknown_parts_and_tool_calls_are_kept_whole_where_they_were() {
        let message = json!({"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}], "tool_calls": [
            {"id": "ct_1", "type": "custom", "custom": {"name": "grep", "input": "x"}}
        ]});
        let turn = import(std::slice::from_ref(&message)).unwrap();
        assert!(turn[0].content.parts().iter().all(|part| matches!(part, Part::Other(_))));
        assert_eq!(export(&turn), [message]);
    }

    #[test]
    fn an_edited_message_is_written_as_it_is_now() {
        let mut turn = import(&[json!({"role": "user", "content": [{"type": "text", "text": "Hi", "x": 1}]})]).unwrap();
        turn[0].content = Content::from_parts([Part::text("Hello"), Part::text("again")]);
        assert_eq!(
            export(&turn),
            [
                json!({"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "again"}]})
            ]
        );
    }

    #[test]
    fn malformed_messages_are_refused_by_index() {
        for (bad, why) in [
            (json!("hello"), "not a JSON object"),
            (json!({"content": "hi"}), "`role`"),
            (json!({"role": "user", "content": 3}), "`content`"),
            (json!({"role": "assistant", "tool_calls": {}}), "`tool_calls`"),
            (json!({"role": "tool", "content": "22"}), "`tool_call_id`"),
        ] {
            let error = import(&[json!({"role": "user", "content": "ok"}), bad]).unwrap_err();
            let PersistError::InvalidInput { field, reason } = error else { panic!("{error:?}") };
            assert_eq!(field, "messages");
            assert!(reason.contains("element 1") && reason.contains(why), "{reason}");
        }
    }
}
