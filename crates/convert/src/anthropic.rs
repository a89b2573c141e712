//! Anthropic Messages: the `messages` of a request (and a response, whose `id` and other fields
//! are kept).
//!
//! | Anthropic | persist |
//! |---|---|
//! | `role` (`user`, `assistant`) | [`Role`], by name |
//! | `content` as a string, or `text` blocks | [`Part::Text`] |
//! | `thinking` with its `signature` | [`Part::Reasoning`], the signature kept |
//! | `tool_use` | [`Part::ToolCall`], `input` as the arguments |
//! | `tool_result` (in a user message) | [`Part::ToolResult`]: `content` as the output, `is_error` |
//! | `image`, `document` from a `base64` or `url` source | [`Part::File`]: base64 data as a `data:` URL; a document's `title` as its name |
//! | `redacted_thinking`, server tools' blocks, any other block | [`Part::Other`], whole |
//! | `cache_control`, `citations`, a response's `id`, `model`, `usage`, … | kept under [`METADATA_KEY`] |
//!
//! Tool results stay in the message that carried them: a user message may hold the results of
//! the turn's calls. On export, a [`Role::Tool`] message is a user message of `tool_result`
//! blocks, and system messages are left out of the messages: they are Anthropic's `system`
//! parameter, which [`system_prompt`] gives. A reasoning part is written back only with the
//! signature Anthropic gave it (reasoning from elsewhere cannot be sent to Claude). Anthropic
//! has no status: a reserved or interrupted reply is exported as what was streamed so far (as
//! the last message, Claude continues it).

use serde_json::{Map, Value, json};

use super::kept::{Kept, fill, typed_or_other};
use super::{Exportable, UNKNOWN_MEDIA_TYPE, content_form, imported, message_id_of, role_of, string_or_blocks};
use persist_core::PersistError;
use persist_core::args::TurnMessage;
use persist_core::{Part, Role};

/// The metadata key under which an import keeps what Anthropic carried beyond the parts (see
/// the [lossless rule](super#the-lossless-rule)).
pub const METADATA_KEY: &str = "persist.convert.anthropic";

/// Anthropic messages as the messages of a turn, one each, in order; a message's `id` (a
/// response's `msg_…`) is its message id.
///
/// # Errors
///
/// [`PersistError::InvalidInput`] naming `messages` and the message's index when a message is
/// not an object, has no `role` string, has `content` that is neither a string nor an array of
/// blocks, or has an `id` persist cannot take as a message id.
///
/// # Example
///
/// ```
/// use persist::convert::anthropic;
/// use persist::Part;
/// use serde_json::json;
///
/// let turn = anthropic::import(&[json!({"role": "user", "content": [
///     {"type": "tool_result", "tool_use_id": "toolu_01", "content": "15 degrees"}
/// ]})])?;
/// assert_eq!(turn[0].content.parts(), [Part::tool_result("toolu_01", json!("15 degrees"))]);
/// # Ok::<_, persist::PersistError>(())
/// ```
pub fn import(messages: &[Value]) -> Result<Vec<TurnMessage>, PersistError> {
    super::import_each(messages, "messages", import_message)
}

/// Messages as Anthropic messages, ready to send as a request's `messages`: one each, system
/// messages left out (see [`system_prompt`]).
///
/// # Example
///
/// ```
/// use persist::args::TurnMessage;
/// use persist::convert::anthropic;
/// use persist::{Content, Part, Role};
/// use serde_json::json;
///
/// let result = Content::from_parts([Part::tool_error("toolu_01", json!("HTTP 500"))]);
/// assert_eq!(
///     anthropic::export(&[TurnMessage::new(Role::Tool, result)]),
///     [json!({"role": "user", "content": [
///         {"type": "tool_result", "tool_use_id": "toolu_01", "content": "HTTP 500", "is_error": true}
///     ]})]
/// );
/// ```
pub fn export<M: Exportable>(messages: &[M]) -> Vec<Value> {
    messages
        .iter()
        .filter(|message| *message.role() != Role::System && super::reaches_provider(*message))
        .map(export_message)
        .collect()
}

/// The `system` parameter of a request: the text of the system messages as text blocks, in
/// order; `None` when there is none.
///
/// # Example
///
/// ```
/// use persist::args::TurnMessage;
/// use persist::convert::anthropic;
/// use persist::{Content, Role};
/// use serde_json::json;
///
/// let messages = [
///     TurnMessage::new(Role::System, Content::text("Be brief.")),
///     TurnMessage::new(Role::User, Content::text("Hi")),
/// ];
/// assert_eq!(anthropic::system_prompt(&messages), Some(json!([{"type": "text", "text": "Be brief."}])));
/// assert_eq!(anthropic::export(&messages), [json!({"role": "user", "content": "Hi"})]);
/// ```
pub fn system_prompt<M: Exportable>(messages: &[M]) -> Option<Value> {
    let blocks: Vec<Value> = messages
        .iter()
        .filter(|message| *message.role() == Role::System)
        .flat_map(|message| message.content().parts())
        .filter_map(|part| part.as_text().map(|text| json!({"type": "text", "text": text})))
        .collect();
    (!blocks.is_empty()).then_some(Value::Array(blocks))
}

fn export_message(message: &impl Exportable) -> Value {
    let kept = Kept::read(message.metadata(), METADATA_KEY);
    if let Some(original) = kept.original()
        && import_message(original).is_ok_and(|again| again.content == *message.content())
    {
        return original.clone();
    }
    write_message(message.role(), &message.content().parts(), &kept)
}

fn import_message(message: &Value) -> Result<TurnMessage, String> {
    let object = message.as_object().ok_or("is not a JSON object")?;
    let role = role_of(object)?;
    let id = message_id_of(object)?;
    let parts: Vec<(Part, Kept)> = match object.get("content") {
        Some(Value::String(text)) => vec![(Part::text(text), Kept::default())],
        Some(Value::Array(blocks)) => blocks.iter().map(import_block).collect(),
        _ => return Err("has no `content` string or array of blocks".into()),
    };
    let mut form = Map::new();
    if let Some(form_of_content) = content_form(object.get("content"), &json!([])) {
        form.insert("content".into(), form_of_content.into());
    }
    Ok(imported(message, role, id, (parts, form), METADATA_KEY, |role, parts, kept| {
        Some(write_message(role, parts, kept))
    }))
}

fn write_message(role: &Role, parts: &[Part], kept: &Kept) -> Value {
    let blocks = parts.iter().enumerate().filter_map(|(index, part)| write_block(part, kept.part(index, parts.len())));
    // Anthropic's tool results come in user messages.
    let role = if *role == Role::Tool { "user" } else { role.as_str() };
    let content = string_or_blocks(blocks.collect(), json!([]), kept.form_str("content")).unwrap_or(json!([]));
    let mut message = json!({"role": role, "content": content});
    fill(&mut message, &kept.fields);
    message
}

fn import_block(block: &Value) -> (Part, Kept) {
    typed_or_other(block, read_block, |part, kept| write_block(part, Some(kept)))
}

fn read_block(block: &Value) -> Option<(Part, Map<String, Value>)> {
    let string = |key: &str| block.get(key).and_then(Value::as_str);
    let mut form = Map::new();
    let part = match string("type")? {
        "text" => Part::text(string("text")?),
        "thinking" => {
            form.insert("signature".into(), string("signature")?.into());
            Part::reasoning(string("thinking")?)
        }
        "tool_use" => Part::tool_call(string("id")?, string("name")?, block.get("input")?.clone()),
        "tool_result" => Part::ToolResult {
            call_id: string("tool_use_id")?.to_owned(),
            output: block.get("content").cloned().unwrap_or(Value::Null),
            is_error: match block.get("is_error") {
                None => false,
                Some(is_error) => is_error.as_bool()?,
            },
        },
        kind @ ("image" | "document") => {
            let source = block.get("source")?;
            let (media_type, uri) = match source.get("type")?.as_str()? {
                "base64" => {
                    let media_type = source.get("media_type")?.as_str()?;
                    (media_type, format!("data:{media_type};base64,{}", source.get("data")?.as_str()?))
                }
                "url" => {
                    let media_type = if kind == "image" { "image/*" } else { UNKNOWN_MEDIA_TYPE };
                    (media_type, source.get("url")?.as_str()?.to_owned())
                }
                _ => return None,
            };
            let name = if kind == "document" { string("title").map(str::to_owned) } else { None };
            Part::File { media_type: media_type.to_owned(), uri, name, size: None }
        }
        _ => return None,
    };
    Some((part, form))
}

fn write_block(part: &Part, kept: Option<&Kept>) -> Option<Value> {
    let mut block = match part {
        Part::Text { text } => json!({"type": "text", "text": text}),
        Part::Reasoning { text } => {
            // Claude takes back only the thinking it signed.
            let signature = kept?.form.get("signature")?;
            json!({"type": "thinking", "thinking": text, "signature": signature})
        }
        Part::ToolCall { id, name, arguments } => {
            json!({"type": "tool_use", "id": id, "name": name, "input": arguments})
        }
        Part::ToolResult { call_id, output, is_error } => {
            let mut block = json!({"type": "tool_result", "tool_use_id": call_id});
            match output {
                Value::Null => {}
                Value::String(_) | Value::Array(_) => block["content"] = output.clone(),
                other => block["content"] = other.to_string().into(),
            }
            if *is_error {
                block["is_error"] = true.into();
            }
            block
        }
        Part::File { media_type, uri, name, .. } => {
            let source = match base64_of(uri) {
                Some((media_type, data)) => json!({"type": "base64", "media_type": media_type, "data": data}),
                None => json!({"type": "url", "url": uri}),
            };
            if media_type.starts_with("image/") {
                json!({"type": "image", "source": source})
            } else {
                let mut document = json!({"type": "document", "source": source});
                if let Some(name) = name {
                    document["title"] = name.as_str().into();
                }
                document
            }
        }
        Part::Other(block) => return Some(block.clone()),
        // A kind of part newer than this converter: nothing of it in this format.
        _ => return None,
    };
    if let Some(kept) = kept {
        fill(&mut block, &kept.fields);
    }
    Some(block)
}

/// The media type and data of a base64 `data:` URL.
fn base64_of(uri: &str) -> Option<(&str, &str)> {
    let (media_type, data) = uri.strip_prefix("data:")?.split_once(";base64,")?;
    (!media_type.is_empty()).then_some((media_type, data))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixture;
    use persist_core::{Content, Status};

    #[test]
    fn every_fixture_round_trips() {
        fixture::assert_round_trips(include_str!("fixtures/anthropic.json"), import, export);
    }

    #[test]
    fn thinking_keeps_its_signature_tool_use_its_input_and_a_result_its_call() {
        let cases = fixture::cases(include_str!("fixtures/anthropic.json"));
        let (_, elements) = cases.iter().find(|(name, _)| name.contains("Passing thinking blocks")).unwrap();
        let turn = import(elements).unwrap();
        let parts = turn[1].content.parts();
        assert!(matches!(&parts[0], Part::Reasoning { text } if text.starts_with("The user wants to know")));
        let kept = turn[1].metadata.get(METADATA_KEY).unwrap();
        assert!(kept["parts"][0]["form"]["signature"].as_str().unwrap().starts_with("BDaL4VrbR2Oj0hO4"));
        assert_eq!(
            parts[1],
            Part::tool_call("toolu_01CswdEQBMshySk6Y9DFKrfq", "get_weather", json!({"location": "Paris"}))
        );
        let result = turn[2].content.parts();
        assert_eq!(result, [Part::tool_result("toolu_01CswdEQBMshySk6Y9DFKrfq", json!("Current temperature: 88°F"))]);
        assert_eq!(turn[2].role, Role::User, "Anthropic's results come in user messages");
    }

    #[test]
    fn an_image_is_a_file_and_cache_control_is_kept() {
        let turn = import(&[json!({"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
            {"type": "text", "text": "What is in this image?", "cache_control": {"type": "ephemeral"}}
        ]})])
        .unwrap();
        assert_eq!(turn[0].content.parts()[0], Part::file("image/jpeg", "data:image/jpeg;base64,/9j/4AAQ"));
        let kept = turn[0].metadata.get(METADATA_KEY).unwrap();
        assert_eq!(kept["parts"][1]["fields"], json!({"cache_control": {"type": "ephemeral"}}));
    }

    #[test]
    fn persist_messages_export_to_anthropic() {
        let assistant = Content::from_parts([
            Part::reasoning("no signature: left out"),
            Part::text("Let me check."),
            Part::tool_call("c1", "lookup", json!({"q": "x"})),
        ]);
        let mut interrupted = TurnMessage::new(Role::Assistant, Content::text("The answer is"));
        interrupted.status = Status::Interrupted;
        let document = Part::File {
            media_type: "application/pdf".into(),
            uri: "data:application/pdf;base64,JVBER".into(),
            name: Some("report.pdf".into()),
            size: Some(5),
        };
        let claude = export(&[
            TurnMessage::new(Role::System, Content::text("Be brief.")),
            TurnMessage::new(
                Role::User,
                Content::from_parts([document, Part::file("image/png", "https://x.invalid/a.png")]),
            ),
            TurnMessage::new(Role::Assistant, assistant),
            TurnMessage::new(Role::Tool, Content::from_parts([Part::tool_result("c1", json!({"hits": 2}))])),
            interrupted,
        ]);
        assert_eq!(
            claude,
            [
                json!({"role": "user", "content": [
                    {"type": "document", "title": "report.pdf",
                     "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x.invalid/a.png"}}
                ]}),
                json!({"role": "assistant", "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "c1", "name": "lookup", "input": {"q": "x"}}
                ]}),
                json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "{\"hits\":2}"}]}),
                json!({"role": "assistant", "content": "The answer is"}),
            ]
        );
    }

    #[test]
    fn a_response_keeps_its_id_as_the_message_id_and_its_fields() {
        let response = json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "Hi"}], "stop_reason": "end_turn"});
        let turn = import(std::slice::from_ref(&response)).unwrap();
        assert_eq!(turn[0].message_id.as_ref().map(|id| id.as_str()), Some("msg_01"));
        assert_eq!(turn[0].metadata.get(METADATA_KEY).unwrap()["fields"]["stop_reason"], "end_turn");
        assert_eq!(export(&turn), [response]);
    }

    #[test]
    fn malformed_messages_are_refused_by_index() {
        for (bad, why) in [
            (json!(["user"]), "not a JSON object"),
            (json!({"content": "hi"}), "`role`"),
            (json!({"role": "user"}), "`content`"),
            (json!({"role": "user", "content": {"type": "text"}}), "`content`"),
            (json!({"role": "user", "content": "hi", "id": ""}), "`id`"),
        ] {
            let error = import(&[bad]).unwrap_err();
            let PersistError::InvalidInput { field, reason } = error else { panic!("{error:?}") };
            assert_eq!(field, "messages");
            assert!(reason.contains("element 0") && reason.contains(why), "{reason}");
        }
    }
}
