//! Conversation items: the Responses API's input items, made whole as the API stores them,
//! written as persist's messages through the converters and read back as items.

use persist_convert::openai_responses;
use persist_core::{Message, MessageId, Status};
use serde_json::{Map, Value, json};

use crate::http::error::ApiError;
use crate::http::params::Params;

/// The item types a conversation stores, and the prefix of the ids this server gives them.
pub(crate) const TYPES: &[(&str, &str)] = &[
    ("message", "msg"),
    ("function_call", "fc"),
    ("function_call_output", "fco"),
    ("reasoning", "rs"),
    ("file_search_call", "fs"),
    ("web_search_call", "ws"),
    ("image_generation_call", "ig"),
    ("computer_call", "cu"),
    ("computer_call_output", "cuo"),
    ("code_interpreter_call", "ci"),
    ("local_shell_call", "lsh"),
    ("local_shell_call_output", "lsho"),
    ("shell_call", "sh"),
    ("shell_call_output", "sho"),
    ("apply_patch_call", "apc"),
    ("apply_patch_call_output", "apco"),
    ("mcp_list_tools", "mcpl"),
    ("mcp_approval_request", "mcpr"),
    ("mcp_approval_response", "mcpa"),
    ("mcp_call", "mcp"),
    ("custom_tool_call", "ctc"),
    ("custom_tool_call_output", "ctco"),
    ("tool_search_call", "tsc"),
    ("tool_search_output", "tso"),
    ("additional_tools", "at"),
    ("configuration_update", "cfg"),
    ("program", "prg"),
    ("program_output", "prgo"),
    ("compaction", "cmp"),
];

/// Item types whose `status` the SDKs' models require: the API fills in `completed`.
const WITH_STATUS: &[&str] = &["message", "function_call", "function_call_output", "computer_call_output"];

/// The roles a message item may have.
pub(crate) const ROLES: &[&str] = &["user", "assistant", "system", "developer"];

/// The content parts a message item may hold.
pub(crate) const PARTS: &[&str] = &[
    "input_text",
    "output_text",
    "text",
    "summary_text",
    "reasoning_text",
    "refusal",
    "input_image",
    "computer_screenshot",
    "input_file",
];

/// The largest string anywhere in an item, in bytes: a bigger one is refused (400) before
/// anything is written.
pub const MAX_STRING_BYTES: usize = 4 * 1024 * 1024;

/// The values `include` may name (each accepted; the server stores every field and answers
/// them all).
pub(crate) const INCLUDABLE: &[&str] = &[
    "web_search_call.action.sources",
    "web_search_call.results",
    "code_interpreter_call.outputs",
    "computer_call_output.output.image_url",
    "file_search_call.results",
    "message.input_image.image_url",
    "message.output_text.logprobs",
    "reasoning.encrypted_content",
];

/// The prefix of the ids this server gives items of `kind`.
pub(crate) fn prefix(kind: &str) -> &'static str {
    TYPES.iter().find(|(known, _)| *known == kind).map_or("item", |(_, prefix)| prefix)
}

/// Item `index` of a request, made whole as the API stores it: `type` `message` where it was
/// left out, a string `content` as one text part (`input_text`, or `output_text` with no
/// annotations for the assistant), `status` `completed` where the SDKs need one, and an `id`
/// from `mint(prefix)` when it has none.
///
/// # Errors
///
/// 400 naming `items[index]` (or the field within it) for anything the API would refuse: not
/// an object, an unknown `type`, a message without a known `role` or a `content` of parts,
/// a call without its `call_id`, `name` or `arguments`, an `id` that is not a string, a NUL
/// character or a string over [`MAX_STRING_BYTES`].
pub(crate) fn canonical(item: &Value, index: usize, mint: &mut dyn FnMut(&str) -> String) -> Result<Value, ApiError> {
    let at = |field: &str| if field.is_empty() { format!("items[{index}]") } else { format!("items[{index}].{field}") };
    let bad = |field: &str, why: String| ApiError::invalid(at(field), format!("Invalid '{}': {why}", at(field)));
    check_strings(item).map_err(|why| bad("", why))?;
    let Value::Object(object) = item else { return Err(bad("", "an item is a JSON object".into())) };
    let mut object = object.clone();
    let kind = match object.get("type") {
        None => "message".to_owned(),
        Some(Value::String(kind)) if TYPES.iter().any(|(known, _)| known == kind) => kind.clone(),
        Some(Value::String(kind)) if kind == "item_reference" => {
            return Err(bad("type", "this server stores conversations only: it holds no responses to refer to".into()));
        }
        Some(Value::String(kind)) => return Err(bad("type", format!("'{kind}' is not an item type"))),
        Some(_) => return Err(bad("type", "expected a string".into())),
    };
    object.insert("type".into(), kind.clone().into());
    let string = |object: &Map<String, Value>, key: &str| -> Result<(), ApiError> {
        match object.get(key) {
            Some(Value::String(_)) => Ok(()),
            Some(_) => Err(bad(key, "expected a string".into())),
            None => Err(bad(key, "missing required parameter".into())),
        }
    };
    match kind.as_str() {
        "message" => {
            let role = match object.get("role") {
                Some(Value::String(role)) if ROLES.contains(&role.as_str()) => role.clone(),
                Some(Value::String(role)) => {
                    return Err(bad("role", format!("'{role}' is not one of {}", ROLES.join(", "))));
                }
                Some(_) => return Err(bad("role", "expected a string".into())),
                None => return Err(bad("role", "missing required parameter".into())),
            };
            let text_type = if role == "assistant" { "output_text" } else { "input_text" };
            let content = match object.get("content") {
                Some(Value::String(text)) if role == "assistant" => {
                    json!([{"type": text_type, "text": text, "annotations": []}])
                }
                Some(Value::String(text)) => json!([{"type": text_type, "text": text}]),
                Some(Value::Array(parts)) => {
                    check_parts(parts, "content").map_err(|(field, why)| bad(&field, why))?;
                    Value::Array(parts.clone())
                }
                Some(_) => return Err(bad("content", "expected a string or an array of content parts".into())),
                None => return Err(bad("content", "missing required parameter".into())),
            };
            object.insert("content".into(), content);
        }
        "function_call" => {
            for key in ["call_id", "name", "arguments"] {
                string(&object, key)?;
            }
        }
        "function_call_output" | "custom_tool_call_output" => {
            string(&object, "call_id")?;
            match object.get("output") {
                Some(Value::String(_)) => {}
                Some(Value::Array(parts)) => check_parts(parts, "output").map_err(|(field, why)| bad(&field, why))?,
                Some(_) => return Err(bad("output", "expected a string or an array of content parts".into())),
                None => return Err(bad("output", "missing required parameter".into())),
            }
        }
        "custom_tool_call" => {
            for key in ["call_id", "name", "input"] {
                string(&object, key)?;
            }
        }
        "reasoning" => {
            let Some(Value::Array(summary)) = object.get("summary") else {
                return Err(bad("summary", "expected an array of summary parts".into()));
            };
            for (n, part) in summary.iter().enumerate() {
                let summary_text = part.get("type").and_then(Value::as_str) == Some("summary_text")
                    && part.get("text").is_some_and(Value::is_string);
                if !summary_text {
                    let why = "a summary part is {\"type\": \"summary_text\", \"text\": ...}".to_owned();
                    return Err(bad(&format!("summary[{n}]"), why));
                }
            }
        }
        _ => {}
    }
    match object.get("id") {
        None | Some(Value::Null) => {
            object.insert("id".into(), mint(prefix(&kind)).into());
        }
        // Printable ASCII, as the API's ids are (and as a schema can say exactly).
        Some(Value::String(id)) if id.bytes().all(|byte| byte.is_ascii_graphic()) && MessageId::new(id).is_ok() => {}
        Some(Value::String(_)) => return Err(bad("id", "an id is 1 to 255 printable ASCII characters".into())),
        Some(_) => return Err(bad("id", "expected a string".into())),
    }
    if WITH_STATUS.contains(&kind.as_str()) {
        match object.get("status") {
            None | Some(Value::Null) => {
                object.insert("status".into(), "completed".into());
            }
            Some(Value::String(status)) if ["completed", "incomplete"].contains(&status.as_str()) => {}
            Some(Value::String(status)) if status == "in_progress" => {
                let why = "an item is not written in progress: a reply being generated is written with \
                           POST /v1/persist/conversations/{id}/replies";
                return Err(bad("status", why.into()));
            }
            Some(_) => return Err(bad("status", "expected one of in_progress, completed, incomplete".into())),
        }
    }
    Ok(Value::Object(object))
}

/// Checks `parts` (at `field` of an item) as content parts: objects of a known `type`, a text
/// part with its `text`, a refusal with its `refusal`. Answers the field at fault and why.
fn check_parts(parts: &[Value], field: &str) -> Result<(), (String, String)> {
    for (n, part) in parts.iter().enumerate() {
        let at = format!("{field}[{n}]");
        let kind = part.get("type").and_then(Value::as_str);
        match kind {
            Some(kind) if PARTS.contains(&kind) => {}
            Some(kind) => return Err((at, format!("'{kind}' is not a content type"))),
            None => return Err((at, "a content part is an object with a string 'type'".into())),
        }
        let text_field = match kind {
            Some("refusal") => Some("refusal"),
            Some("input_text" | "output_text" | "text" | "summary_text" | "reasoning_text") => Some("text"),
            _ => None,
        };
        if let Some(key) = text_field
            && !part.get(key).is_some_and(Value::is_string)
        {
            return Err((format!("{at}.{key}"), "missing required string".into()));
        }
    }
    Ok(())
}

/// Refuses a NUL character (no store keeps one in text) and a string over
/// [`MAX_STRING_BYTES`], anywhere in `value`.
fn check_strings(value: &Value) -> Result<(), String> {
    let check = |text: &str| {
        if text.contains('\0') {
            Err("a string holds a NUL character".to_owned())
        } else if text.len() > MAX_STRING_BYTES {
            Err(format!("a string is over {MAX_STRING_BYTES} bytes"))
        } else {
            Ok(())
        }
    };
    match value {
        Value::String(text) => check(text),
        Value::Array(values) => values.iter().try_for_each(check_strings),
        Value::Object(map) => map.iter().try_for_each(|(key, value)| {
            check(key)?;
            check_strings(value)
        }),
        _ => Ok(()),
    }
}

/// The items a stored message reads back as. A message written through this API is one item,
/// as it was stored. A message another persist client wrote may read as several (a reply
/// with text and tool calls): the first keeps the message's id, the next ones get
/// `{id}.{n}`; an item that would not say its status gets the message's.
pub(crate) fn of_message(message: &Message) -> Vec<Value> {
    let mut items = openai_responses::export(std::slice::from_ref(message));
    let status = match message.status {
        Status::Reserved => "in_progress",
        Status::Interrupted => "incomplete",
        Status::Complete => "completed",
    };
    for (n, item) in items.iter_mut().enumerate() {
        let Some(object) = item.as_object_mut() else { continue };
        let id = if n == 0 { message.id.as_str().to_owned() } else { format!("{}.{n}", message.id) };
        object.entry("id").or_insert_with(|| id.into());
        let kind = object.get("type").and_then(Value::as_str).unwrap_or("message");
        if WITH_STATUS.contains(&kind) {
            object.entry("status").or_insert_with(|| status.into());
        }
    }
    items
}

/// The message an item id names, and which of its items: `msg_1` is `(msg_1, 0)`, and an id
/// `{id}.{n}` this server gave the `n`th item of a message is `({id}, n)` when no message has
/// the whole id.
pub(crate) fn split_id(id: &str) -> Option<(&str, usize)> {
    let (base, n) = id.rsplit_once('.')?;
    let n: usize = n.parse().ok().filter(|n| *n > 0)?;
    (!base.is_empty()).then_some((base, n))
}

/// Checks each `include` value of a query (the server answers every stored field, so they
/// change nothing else).
pub(crate) fn check_include(params: &Params) -> Result<(), ApiError> {
    for (key, value) in params.pairs() {
        if (key == "include[]" || key == "include") && !INCLUDABLE.contains(&value) {
            return Err(ApiError::invalid(
                "include",
                format!("Invalid value: '{value}'. Supported values are: {}.", INCLUDABLE.join(", ")),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(item: Value) -> Result<Value, ApiError> {
        canonical(&item, 0, &mut |prefix| format!("{prefix}_1"))
    }

    #[test]
    fn an_easy_message_is_made_whole_as_the_api_stores_it() {
        assert_eq!(
            whole(json!({"role": "user", "content": "Hello!"})).unwrap(),
            json!({"type": "message", "id": "msg_1", "status": "completed", "role": "user",
                   "content": [{"type": "input_text", "text": "Hello!"}]})
        );
        assert_eq!(
            whole(json!({"role": "assistant", "content": "Hi"})).unwrap()["content"],
            json!([{"type": "output_text", "text": "Hi", "annotations": []}])
        );
        let call = json!({"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"});
        assert_eq!(whole(call).unwrap()["id"], "fc_1");
        let reasoning = json!({"type": "reasoning", "id": "rs_9", "summary": []});
        assert_eq!(whole(reasoning.clone()).unwrap(), reasoning, "a client's id kept, no status added");
    }

    #[test]
    fn malformed_items_are_refused_naming_the_field() {
        for (item, param) in [
            (json!(1), "items[0]"),
            (json!({"type": "nope"}), "items[0].type"),
            (json!({"type": "item_reference", "id": "x"}), "items[0].type"),
            (json!({"role": "robot", "content": "x"}), "items[0].role"),
            (json!({"role": "user"}), "items[0].content"),
            (json!({"role": "user", "content": 3}), "items[0].content"),
            (json!({"role": "user", "content": [{"type": "input_text"}]}), "items[0].content[0].text"),
            (json!({"role": "user", "content": [{"type": "video"}]}), "items[0].content[0]"),
            (json!({"type": "function_call", "call_id": "c", "name": "f"}), "items[0].arguments"),
            (json!({"type": "function_call_output", "call_id": "c", "output": 1}), "items[0].output"),
            (json!({"role": "user", "content": "x", "id": 7}), "items[0].id"),
            (json!({"role": "user", "content": "x", "id": ""}), "items[0].id"),
            (json!({"role": "user", "content": "a\u{0}b"}), "items[0]"),
            (json!({"role": "user", "content": "x", "status": "done"}), "items[0].status"),
        ] {
            let error = whole(item.clone()).unwrap_err();
            assert_eq!((error.status().as_u16(), error.param()), (400, Some(param)), "{item}");
        }
    }

    #[test]
    fn derived_ids_split_back() {
        assert_eq!(split_id("msg_1.2"), Some(("msg_1", 2)));
        assert_eq!(split_id("msg_1"), None);
        assert_eq!(split_id("msg_1.0"), None);
        assert_eq!(split_id(".3"), None);
    }
}
