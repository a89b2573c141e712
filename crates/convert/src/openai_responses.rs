//! OpenAI Responses items: the `input` of a request, the `output` of a response, the items of
//! a conversation.
//!
//! | Responses item | persist |
//! |---|---|
//! | `message` (or `{"role", "content"}` without `type`) | a message of its `role` |
//! | — `input_text`, `output_text` (or `content` as a string) | [`Part::Text`] |
//! | — `input_image` with an `image_url` | [`Part::File`]: the data URL's type, else `image/*` |
//! | — `input_file` with a `file_url` or `file_data` | [`Part::File`], `filename` as its name; the type is `application/octet-stream` unless a data URL names it |
//! | — `refusal`, any other content | [`Part::Other`], whole |
//! | `function_call` | an assistant message of one [`Part::ToolCall`]: `call_id`, `name`, `arguments` parsed from its text |
//! | `function_call_output` | a [`Role::Tool`] message of one [`Part::ToolResult`], `output` as it is |
//! | `reasoning` | an assistant message of [`Part::Reasoning`]s: the `summary` texts, then the `content` texts |
//! | any other item (`web_search_call`, `compaction`, …) | a message (of role tool for a `…_output` item, assistant otherwise) of one [`Part::Other`], the item whole |
//! | `id`, `status`, `annotations`, `logprobs`, `encrypted_content`, … | kept under [`METADATA_KEY`] |
//!
//! An item's `id` (`msg_…`, `fc_…`, `rs_…`) is its message id.
//!
//! # Status
//!
//! An item's `status` (`in_progress`, `completed`, `incomplete`) is kept, at `fields.status`
//! under [`METADATA_KEY`], and written back; the message itself is imported complete (a turn
//! writes complete messages). On export, a [`Reserved`](Status::Reserved) message's items are
//! `in_progress` and an [`Interrupted`](Status::Interrupted) one's `incomplete`, whatever was
//! kept.
//!
//! # Export
//!
//! A message gives one item per tool call, tool result or opaque item, and one `message` item
//! for each run of text, files and other blocks between them, in order; the kept `id` and fields
//! only when it gives one item. Reasoning is written back only as the `reasoning` item it came
//! from: OpenAI takes back its own reasoning items, by id, and no other reasoning. A failed
//! result's `is_error` has no place (its output is sent as it is).

use serde_json::{Map, Value, json};

use super::arguments::{read_arguments, write_arguments};
use super::kept::{Kept, fill, typed_or_other};
use super::{Exportable, UNKNOWN_MEDIA_TYPE, data_url_media_type, imported, message_id_of, only, role_of};
use persist_core::PersistError;
use persist_core::args::TurnMessage;
use persist_core::{Part, Role, Status};

/// The metadata key under which an import keeps what an item carried beyond the parts (see the
/// [lossless rule](super#the-lossless-rule)).
pub const METADATA_KEY: &str = "persist.convert.openai_responses";

/// Responses items as the messages of a turn, one each, in order.
///
/// # Errors
///
/// [`PersistError::InvalidInput`] naming `items` and the item's index when an item is not an
/// object, has a `type` that is not a string, is a message without a `role` string or without
/// `content` (a string or an array), is a `function_call` without `call_id`, `name` and
/// `arguments` strings or a `function_call_output` without a `call_id` string, or has an `id`
/// persist cannot take as a message id.
///
/// # Example
///
/// ```
/// use persist::convert::openai_responses;
/// use persist::Part;
/// use serde_json::json;
///
/// let turn = openai_responses::import(&[json!({
///     "type": "function_call",
///     "id": "fc_67ca09c6bedc8190a7abfec07b1a1332096610f474011cc0",
///     "call_id": "call_unLAR8MvFNptuiZK6K6HCy5k",
///     "name": "get_current_weather",
///     "arguments": "{\"location\":\"Boston, MA\",\"unit\":\"celsius\"}",
///     "status": "completed"
/// })])?;
/// assert!(turn[0].message_id.as_ref().is_some_and(|id| id.as_str().starts_with("fc_")));
/// let arguments = json!({"location": "Boston, MA", "unit": "celsius"});
/// assert_eq!(turn[0].content.parts(), [Part::tool_call("call_unLAR8MvFNptuiZK6K6HCy5k", "get_current_weather", arguments)]);
/// # Ok::<_, persist::PersistError>(())
/// ```
pub fn import(items: &[Value]) -> Result<Vec<TurnMessage>, PersistError> {
    super::import_each(items, "items", import_item)
}

/// Any JSON value kept whole as the message of one item, which [`export`] writes back as it
/// came: for a store of items it does not read, as the Agents SDK's sessions are (its
/// `EncryptedSession` stores envelopes such as `{"__enc__": 1, "payload": "…"}`, which
/// [`import`] refuses: they are not Responses items). The message is of the value's `role`
/// when it names one, of role tool for a `…_output` item and assistant otherwise; its content
/// is one [`Part::Other`], the value whole.
///
/// # Example
///
/// ```
/// use persist::convert::openai_responses;
/// use serde_json::json;
///
/// let envelope = json!({"__enc__": 1, "v": 1, "kid": "hkdf-v1", "payload": "gAAAAABm…"});
/// assert!(openai_responses::import(std::slice::from_ref(&envelope)).is_err());
/// let message = openai_responses::import_whole(&envelope);
/// assert_eq!(openai_responses::export(&[message]), [envelope]);
/// ```
pub fn import_whole(item: &Value) -> TurnMessage {
    let object = item.as_object();
    let output = object
        .and_then(|object| object.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|kind| kind.ends_with("_output"));
    let role =
        object.and_then(|object| role_of(object).ok()).unwrap_or(if output { Role::Tool } else { Role::Assistant });
    let parts = vec![(Part::Other(item.clone()), Kept::with_form(place("item")))];
    imported(item, role, None, (parts, Map::new()), METADATA_KEY, |role, parts, kept| {
        only(write_items(role, parts, kept, Status::Complete))
    })
}

/// Messages as Responses items, ready to send as a request's `input` (see the
/// [module docs](self#export)).
///
/// # Example
///
/// ```
/// use persist::args::TurnMessage;
/// use persist::convert::openai_responses;
/// use persist::{Content, Role, Status};
/// use serde_json::json;
///
/// let mut reply = TurnMessage::new(Role::Assistant, Content::text("It is sunny in"));
/// reply.status = Status::Interrupted;
/// assert_eq!(
///     openai_responses::export(&[reply]),
///     [json!({"type": "message", "role": "assistant", "status": "incomplete",
///             "content": [{"type": "output_text", "text": "It is sunny in"}]})]
/// );
/// ```
pub fn export<M: Exportable>(messages: &[M]) -> Vec<Value> {
    messages.iter().flat_map(export_message).collect()
}

fn export_message(message: &impl Exportable) -> Vec<Value> {
    let kept = Kept::read(message.metadata(), METADATA_KEY);
    if let Some(original) = kept.original()
        && import_item(original).is_ok_and(|again| again.content == *message.content())
    {
        return vec![original.clone()];
    }
    write_items(message.role(), &message.content().parts(), &kept, message.status())
}

fn import_item(item: &Value) -> Result<TurnMessage, String> {
    let object = item.as_object().ok_or("is not a JSON object")?;
    let id = message_id_of(object)?;
    let string = |key: &str| object.get(key).and_then(Value::as_str);
    let kind = match object.get("type") {
        None => None,
        Some(Value::String(kind)) => Some(kind.as_str()),
        Some(_) => return Err("has a `type` that is not a string".into()),
    };
    let mut form = Map::new();
    let (role, parts): (Role, Vec<(Part, Kept)>) = match kind {
        None | Some("message") => {
            let role = role_of(object)?;
            if kind.is_none() {
                form.insert("type".into(), "absent".into());
            }
            let parts = match object.get("content") {
                Some(Value::String(text)) => {
                    form.insert("content".into(), "string".into());
                    vec![(Part::text(text), Kept::default())]
                }
                Some(Value::Array(blocks)) => blocks.iter().map(|block| import_block(block, &role)).collect(),
                _ => return Err("is a message without a `content` string or array".into()),
            };
            (role, parts)
        }
        Some("function_call") => {
            let missing = "is a `function_call` without `call_id`, `name` and `arguments` strings";
            let (call_id, name, text) = (string("call_id"), string("name"), string("arguments"));
            let (Some(call_id), Some(name), Some(text)) = (call_id, name, text) else { return Err(missing.into()) };
            let (arguments, call_form) = read_arguments(text);
            (Role::Assistant, vec![(Part::tool_call(call_id, name, arguments), Kept::with_form(call_form))])
        }
        Some("function_call_output") => {
            let call_id = string("call_id").ok_or("is a `function_call_output` without a `call_id` string")?;
            let output = object.get("output").cloned().unwrap_or(Value::Null);
            (Role::Tool, vec![(Part::tool_result(call_id, output), Kept::default())])
        }
        Some("reasoning") => {
            form.insert("item".into(), "reasoning".into());
            let mut parts = Vec::new();
            for place in ["summary", "content"] {
                if let Some(Value::Array(entries)) = object.get(place) {
                    parts.extend(entries.iter().map(|entry| import_reasoning(entry, place)));
                }
            }
            (Role::Assistant, parts)
        }
        Some(other) => {
            let role = if other.ends_with("_output") { Role::Tool } else { Role::Assistant };
            (role, vec![(Part::Other(item.clone()), Kept::with_form(place("item")))])
        }
    };
    Ok(imported(item, role, id, (parts, form), METADATA_KEY, |role, parts, kept| {
        only(write_items(role, parts, kept, Status::Complete))
    }))
}

/// A form naming where a block sat: `item` (an item whole), `content` (a reasoning text).
fn place(place: &str) -> Map<String, Value> {
    let mut form = Map::new();
    form.insert("place".into(), place.into());
    form
}

/// The items of one message (see the [module docs](self#export)).
fn write_items(role: &Role, parts: &[Part], kept: &Kept, status: Status) -> Vec<Value> {
    let part_kept = |index: usize| kept.part(index, parts.len());
    let placed = |index: usize| part_kept(index).and_then(|kept| kept.form_str("place"));
    // Each item, and whether it is one kept whole (which is written as it is).
    let mut items: Vec<(Value, bool)> = Vec::new();
    // A reasoning item gives back its texts, unless the message now holds other parts too.
    let reasoning_item = kept.form_str("item") == Some("reasoning")
        && parts.iter().all(|part| matches!(part, Part::Reasoning { .. } | Part::Other(_)));
    if reasoning_item {
        let (mut summary, mut content) = (Vec::new(), Vec::new());
        for (index, part) in parts.iter().enumerate() {
            let in_content = placed(index) == Some("content");
            let entry = match part {
                Part::Reasoning { text } => write_reasoning(text, in_content, part_kept(index)),
                other => other.to_block(),
            };
            if in_content { content.push(entry) } else { summary.push(entry) }
        }
        let mut item = json!({"type": "reasoning", "summary": summary});
        if !content.is_empty() {
            item["content"] = Value::Array(content);
        }
        items.push((item, false));
    } else {
        let mut blocks = Vec::new();
        let flush = |items: &mut Vec<(Value, bool)>, blocks: &mut Vec<Value>| {
            if !blocks.is_empty() {
                items.push((
                    json!({"type": "message", "role": role.as_str(), "content": std::mem::take(blocks)}),
                    false,
                ));
            }
        };
        for (index, part) in parts.iter().enumerate() {
            match part {
                // An item kept whole, which may read back as a typed part when it has exactly
                // one's fields (`{"type": "text", "text": …}`): its block is the item.
                _ if placed(index) == Some("item") => {
                    flush(&mut items, &mut blocks);
                    items.push((part.to_block(), true));
                }
                Part::ToolCall { .. } | Part::ToolResult { .. } => {
                    flush(&mut items, &mut blocks);
                    items.extend(write_tool_item(part, part_kept(index)).map(|item| (item, false)));
                }
                // Only the reasoning item it came from takes reasoning back.
                Part::Reasoning { .. } => {}
                _ => blocks.extend(write_block(part, role, part_kept(index))),
            }
        }
        flush(&mut items, &mut blocks);
        // No part an item says (none yet, or reasoning alone, which only the reasoning item it
        // came from gives back): the message still reads as one, empty.
        if items.is_empty() {
            items.push((json!({"type": "message", "role": role.as_str(), "content": []}), false));
        }
    }
    let status = match status {
        Status::Reserved => Some("in_progress"),
        Status::Interrupted => Some("incomplete"),
        Status::Complete => None,
    };
    if let Some(status) = status {
        for (item, _) in items.iter_mut().filter(|(_, whole)| !whole) {
            item["status"] = status.into();
        }
    }
    let mut items: Vec<Value> = items.into_iter().map(|(item, _)| item).collect();
    if let [item] = items.as_mut_slice() {
        apply_form(item, kept);
        fill(item, &kept.fields);
    }
    items
}

/// The message item's form kept at import: no `type`, `content` as a string.
fn apply_form(item: &mut Value, kept: &Kept) {
    let Some(object) = item.as_object_mut() else { return };
    if object.get("type").and_then(Value::as_str) != Some("message") {
        return;
    }
    if kept.form_str("content") == Some("string")
        && let Some(Value::Array(blocks)) = object.get("content")
        && let [Value::Object(block)] = blocks.as_slice()
        && block.len() == 2
        && let Some(Value::String(text)) = block.get("text")
    {
        let text = text.clone();
        object.insert("content".into(), text.into());
    }
    if kept.form_str("type") == Some("absent") {
        object.remove("type");
    }
}

fn write_tool_item(part: &Part, kept: Option<&Kept>) -> Option<Value> {
    let mut item = match part {
        Part::ToolCall { id, name, arguments } => {
            let arguments = write_arguments(arguments, kept.and_then(|kept| kept.form_str("arguments")));
            json!({"type": "function_call", "call_id": id, "name": name, "arguments": arguments})
        }
        Part::ToolResult { call_id, output, .. } => {
            let mut item = json!({"type": "function_call_output", "call_id": call_id});
            match output {
                Value::Null => {}
                Value::String(_) | Value::Array(_) => item["output"] = output.clone(),
                other => item["output"] = other.to_string().into(),
            }
            item
        }
        _ => return None,
    };
    if let Some(kept) = kept {
        fill(&mut item, &kept.fields);
    }
    Some(item)
}

fn import_reasoning(entry: &Value, place_of: &str) -> (Part, Kept) {
    let in_content = place_of == "content";
    let read = |entry: &Value| Some((Part::reasoning(entry.get("text")?.as_str()?), Map::new()));
    let write = |part: &Part, kept: &Kept| match part {
        Part::Reasoning { text } => Some(write_reasoning(text, in_content, Some(kept))),
        _ => None,
    };
    let (part, mut kept) = typed_or_other(entry, read, write);
    if in_content {
        kept.form = place("content");
    }
    (part, kept)
}

fn write_reasoning(text: &str, in_content: bool, kept: Option<&Kept>) -> Value {
    let kind = if in_content { "reasoning_text" } else { "summary_text" };
    let mut entry = json!({"type": kind, "text": text});
    if let Some(kept) = kept {
        fill(&mut entry, &kept.fields);
    }
    entry
}

/// The text type a role's messages use: the model writes `output_text`, everyone else
/// `input_text`.
fn text_type(role: &Role) -> &'static str {
    if *role == Role::Assistant { "output_text" } else { "input_text" }
}

fn import_block(block: &Value, role: &Role) -> (Part, Kept) {
    typed_or_other(block, |block| read_block(block, role), |part, kept| write_block(part, role, Some(kept)))
}

fn read_block(block: &Value, role: &Role) -> Option<(Part, Map<String, Value>)> {
    let string = |key: &str| block.get(key).and_then(Value::as_str);
    let mut form = Map::new();
    let part = match string("type")? {
        kind @ ("input_text" | "output_text") => {
            if kind != text_type(role) {
                form.insert("type".into(), kind.into());
            }
            Part::text(string("text")?)
        }
        "input_image" => {
            let url = string("image_url")?;
            Part::file(data_url_media_type(url).unwrap_or("image/*"), url)
        }
        "input_file" => {
            let uri = string("file_url").or_else(|| string("file_data"))?;
            Part::File {
                media_type: data_url_media_type(uri).unwrap_or(UNKNOWN_MEDIA_TYPE).to_owned(),
                uri: uri.to_owned(),
                name: string("filename").map(str::to_owned),
                size: None,
            }
        }
        _ => return None,
    };
    Some((part, form))
}

fn write_block(part: &Part, role: &Role, kept: Option<&Kept>) -> Option<Value> {
    let mut block = match part {
        Part::Text { text } => {
            let kind = kept.and_then(|kept| kept.form_str("type")).unwrap_or(text_type(role));
            json!({"type": kind, "text": text})
        }
        Part::File { media_type, uri, .. } if media_type.starts_with("image/") => {
            json!({"type": "input_image", "image_url": uri})
        }
        Part::File { uri, name, .. } => {
            let mut file = json!({"type": "input_file"});
            file[if uri.starts_with("data:") { "file_data" } else { "file_url" }] = uri.as_str().into();
            if let Some(name) = name {
                file["filename"] = name.as_str().into();
            }
            file
        }
        Part::Other(block) => return Some(block.clone()),
        _ => return None,
    };
    if let Some(kept) = kept {
        fill(&mut block, &kept.fields);
    }
    Some(block)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fixture;
    use persist_core::Content;

    #[test]
    fn every_fixture_round_trips() {
        fixture::assert_round_trips(include_str!("fixtures/openai_responses.json"), import, export);
    }

    #[test]
    fn items_kept_whole_come_back_whole_even_when_they_read_as_typed_parts() {
        let items = [
            json!({"type": "text", "text": "a block, not an item"}),
            json!({"type": "tool_call", "id": "c", "name": "f", "arguments": {}}),
            json!({"type": "web_search_call", "status": "completed"}),
        ];
        for item in items {
            let mut message = import(std::slice::from_ref(&item)).unwrap().remove(0);
            // As a store reads it back: its content from its JSON text.
            message.content = Content::from_json(message.content.as_json().as_ref()).unwrap();
            assert_eq!(export(&[message]), [item], "imported");
        }
        for whole in [json!({"__enc__": 1, "payload": "x"}), json!("a string"), json!(42), json!({"role": "user"})] {
            let mut message = import_whole(&whole);
            message.content = Content::from_json(message.content.as_json().as_ref()).unwrap();
            assert_eq!(export(&[message]), [whole], "kept whole");
        }
    }

    fn turn_of(example: &str) -> Vec<TurnMessage> {
        let cases = fixture::cases(include_str!("fixtures/openai_responses.json"));
        let (_, items) = cases.iter().find(|(name, _)| name.contains(example)).unwrap();
        import(items).unwrap()
    }

    #[test]
    fn calls_results_files_and_reasoning_are_typed_parts() {
        let turn = turn_of("> function calling");
        assert_eq!(
            turn[1].message_id.as_ref().unwrap().as_str(),
            "rs_68210c71a95c81919cc44afadb9d220400c77cc15fd2f785"
        );
        assert!(turn[1].content.parts().is_empty(), "a reasoning item with no summary");
        let call = Part::tool_call(
            "call_9ylqPOZUyFEwhxvBwgpNDqPT",
            "get_weather",
            json!({"latitude": 48.8566, "longitude": 2.3522}),
        );
        assert_eq!(turn[2].content.parts(), [call]);
        assert_eq!(turn[3].content.parts(), [Part::tool_result("call_9ylqPOZUyFEwhxvBwgpNDqPT", json!("16.3"))]);
        assert_eq!(turn[3].role, Role::Tool);

        let file = &turn_of("File input")[0];
        let parts = file.content.parts();
        assert_eq!(parts[1], Part::file(UNKNOWN_MEDIA_TYPE, "https://www.berkshirehathaway.com/letters/2024ltr.pdf"));
        assert_eq!(file.metadata.get(METADATA_KEY).unwrap()["parts"][1]["fields"], json!({"detail": "auto"}));

        let summary = &turn_of("reasoning_summary_part.done")[0];
        assert!(
            matches!(&summary.content.parts()[0], Part::Reasoning { text } if text.starts_with("**Responding to a greeting**"))
        );
    }

    #[test]
    fn an_incomplete_item_is_imported_complete_with_its_status_kept_and_written_back() {
        let item = json!({"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "search",
            "arguments": "{\"q\": \"rust", "status": "incomplete"});
        let turn = import(std::slice::from_ref(&item)).unwrap();
        assert_eq!(turn[0].status, Status::Complete);
        assert_eq!(turn[0].metadata.get(METADATA_KEY).unwrap()["fields"]["status"], "incomplete");
        assert_eq!(turn[0].content.parts()[0].as_tool_call().unwrap().arguments, &json!("{\"q\": \"rust"));
        assert_eq!(export(&fixture::stored(turn)), [item]);
    }

    #[test]
    fn a_reply_of_reasoning_alone_reads_as_an_empty_message_not_as_nothing() {
        let mut thinking = TurnMessage::new(Role::Assistant, Content::from_parts([Part::reasoning("Hmm.")]));
        thinking.status = Status::Reserved;
        let items = export(&[thinking]);
        assert_eq!(items, [json!({"type": "message", "role": "assistant", "content": [], "status": "in_progress"})]);
    }

    #[test]
    fn persist_messages_export_to_items_with_their_status() {
        let assistant = Content::from_parts([
            Part::reasoning("not OpenAI's: left out"),
            Part::text("Searching."),
            Part::tool_call("c1", "search", json!({"q": "rust"})),
            Part::tool_result("c1", json!(["a", "b"])),
        ]);
        let reserved = TurnMessage::reservation(Role::Assistant);
        let user = Content::from_parts([Part::file("image/png", "https://x.invalid/a.png"), Part::text("What is it?")]);
        let items =
            export(&[TurnMessage::new(Role::User, user), TurnMessage::new(Role::Assistant, assistant), reserved]);
        assert_eq!(
            items,
            [
                json!({"type": "message", "role": "user", "content": [
                    {"type": "input_image", "image_url": "https://x.invalid/a.png"},
                    {"type": "input_text", "text": "What is it?"}
                ]}),
                json!({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Searching."}]}),
                json!({"type": "function_call", "call_id": "c1", "name": "search", "arguments": "{\"q\":\"rust\"}"}),
                json!({"type": "function_call_output", "call_id": "c1", "output": ["a", "b"]}),
                json!({"type": "message", "role": "assistant", "content": [], "status": "in_progress"}),
            ]
        );
    }

    #[test]
    fn a_kept_status_gives_way_to_an_interrupted_message() {
        let item = json!({"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": "Par", "annotations": []}]});
        let mut stored = fixture::stored(import(&[item]).unwrap());
        stored[0].status = Status::Interrupted;
        let exported = export(&stored);
        assert_eq!(exported[0]["status"], "incomplete");
        assert_eq!(exported[0]["id"], "msg_1");
        assert_eq!(exported[0]["content"][0]["annotations"], json!([]));
    }

    #[test]
    fn malformed_items_are_refused_by_index() {
        for (bad, why) in [
            (json!(1), "not a JSON object"),
            (json!({"content": "hi"}), "`role`"),
            (json!({"type": 3}), "`type`"),
            (json!({"type": "message", "role": "user"}), "`content`"),
            (json!({"type": "function_call", "call_id": "c", "name": "n", "arguments": {}}), "`arguments`"),
            (json!({"type": "function_call_output", "output": "x"}), "`call_id`"),
            (json!({"type": "message", "id": "", "role": "user", "content": []}), "`id`"),
        ] {
            let error = import(&[json!({"role": "user", "content": "ok"}), bad]).unwrap_err();
            let PersistError::InvalidInput { field, reason } = error else { panic!("{error:?}") };
            assert_eq!(field, "items");
            assert!(reason.contains("element 1") && reason.contains(why), "{reason}");
        }
    }
}
