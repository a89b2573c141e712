//! The OpenAPI schemas of the request bodies of the Conversations API and the extensions (the
//! live replies' are [`reply_schemas`](super::reply_schemas)'): an input item is what
//! `items::canonical` takes, each type with its required fields, and no string holds a NUL
//! character (no store keeps one).

use serde_json::{Value, json};

use super::schemas::{nullable, object, reference};
use crate::api::conversations::MAX_CREATE_ITEMS;
use crate::api::items;
use crate::extensions::recall;

/// A string as the server takes one: no NUL character (no store keeps one).
fn text() -> Value {
    json!({"type": "string", "pattern": "^[^\\u0000]*$"})
}

/// Any JSON value without a NUL character in a string or a key (what an item's other fields
/// may hold).
fn json_value() -> Value {
    json!({"anyOf": [
        text(),
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": reference("JsonValue")},
        {"type": "object", "propertyNames": text(), "additionalProperties": reference("JsonValue")},
    ]})
}

/// A content part of an input item: a known `type`; a text part has its `text`, a refusal its
/// `refusal`.
fn input_part() -> Value {
    let texts = ["input_text", "output_text", "text", "summary_text", "reasoning_text"];
    let others: Vec<&str> =
        items::PARTS.iter().copied().filter(|part| !texts.contains(part) && *part != "refusal").collect();
    let part = |kinds: Value, field: Option<&str>| {
        let mut properties = json!({"type": kinds});
        let mut required = vec!["type"];
        if let Some(field) = field {
            properties[field] = text();
            required.push(field);
        }
        json!({"type": "object", "required": required, "properties": properties, "propertyNames": text(),
               "additionalProperties": reference("JsonValue")})
    };
    json!({"anyOf": [
        part(json!({"enum": texts}), Some("text")),
        part(json!({"const": "refusal"}), Some("refusal")),
        part(json!({"enum": others}), None),
    ]})
}

/// An input item, as `items::canonical` takes it: each type with its required fields.
fn input_item() -> Value {
    // `in_progress` is a live reply's, written through its routes; `incomplete` (a reply cut
    // short, stored interrupted) is the last item of a write's.
    let status = json!({"type": ["string", "null"], "enum": ["completed", "incomplete", null],
                        "description": "`incomplete`: a reply cut short (stored interrupted); only the last item of \
                                        a write may be. A reply still being generated is written with the live \
                                        reply routes."});
    let parts = json!({"type": "array", "items": reference("InputContentPart")});
    let variant = |kind: Value, required: &[&str], fields: Value| {
        let mut properties = json!({
            "type": kind,
            "id": {"type": ["string", "null"], "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
        });
        if let (Some(all), Value::Object(fields)) = (properties.as_object_mut(), fields) {
            all.extend(fields);
        }
        json!({"type": "object", "required": required, "properties": properties, "propertyNames": text(),
               "additionalProperties": reference("JsonValue")})
    };
    let named: Vec<&str> = vec![
        "message",
        "function_call",
        "function_call_output",
        "custom_tool_call_output",
        "custom_tool_call",
        "reasoning",
        "computer_call_output",
    ];
    let others: Vec<&str> = items::TYPES.iter().map(|(kind, _)| *kind).filter(|kind| !named.contains(kind)).collect();
    let output = json!({"anyOf": [text(), parts.clone()]});
    let summary = json!({"type": "array", "items": {"type": "object", "required": ["type", "text"],
                          "properties": {"type": {"const": "summary_text"}, "text": text()},
                          "propertyNames": text(), "additionalProperties": reference("JsonValue")}});
    let mut input = json!({"anyOf": [
        variant(json!({"const": "message"}), &["role", "content"], json!({
            "role": {"type": "string", "enum": items::ROLES},
            "content": {"anyOf": [text(), parts]},
            "status": status,
        })),
        variant(json!({"const": "function_call"}), &["type", "call_id", "name", "arguments"], json!({
            "call_id": text(), "name": text(), "arguments": text(), "status": status,
        })),
        variant(json!({"const": "function_call_output"}), &["type", "call_id", "output"], json!({
            "call_id": text(), "output": output, "status": status,
        })),
        variant(json!({"const": "custom_tool_call_output"}), &["type", "call_id", "output"], json!({
            "call_id": text(), "output": output,
        })),
        variant(json!({"const": "custom_tool_call"}), &["type", "call_id", "name", "input"], json!({
            "call_id": text(), "name": text(), "input": text(),
        })),
        variant(json!({"const": "reasoning"}), &["type", "summary"], json!({"summary": summary})),
        variant(json!({"const": "computer_call_output"}), &["type"], json!({"status": status})),
        variant(json!({"enum": others}), &["type"], json!({})),
    ]});
    input["description"] = json!(
        "A Responses API input item: a message (`type` \"message\" or absent: `role` and `content`, a string \
         or parts), a function call, a tool's output, reasoning, or another item type; a missing `status` or \
         `id` is made whole as the API stores them. No string holds a NUL character."
    );
    input
}

/// The request bodies, with the input items and parts they hold, by name.
pub(crate) fn all() -> Vec<(&'static str, Value)> {
    let input = input_item();
    let metadata = nullable(reference("Metadata"));
    vec![
        ("InputItem", input),
        ("InputContentPart", input_part()),
        ("JsonValue", json_value()),
        (
            "CreateConversationRequest",
            object(
                &[],
                json!({
                    "items": {"type": ["array", "null"], "maxItems": MAX_CREATE_ITEMS, "items": reference("InputItem")},
                    "metadata": metadata,
                }),
            ),
        ),
        ("UpdateConversationRequest", object(&["metadata"], json!({"metadata": metadata}))),
        (
            "CreateItemsRequest",
            object(
                &["items"],
                json!({"items": {"type": "array", "minItems": 1, "items": reference("InputItem"),
                "description": "Up to the server's `max_items` (256 by default), written as one turn."}}),
            ),
        ),
        (
            "RecallRequest",
            object(
                &["query"],
                json!({
                    "query": {"type": "string", "minLength": 1, "pattern": "\\S",
                              "description": "The text to recall by (embedded); not only white space."},
                    "conversation": {"type": ["string", "null"], "minLength": 1,
                                     "description": "Only this conversation's items."},
                    "user_id": {"type": ["string", "null"], "minLength": 1, "description": "Only the items of threads \
                                whose metadata `user_id` is this (as a Rust host or the MCP server marks a thread's user)."},
                    "limit": {"type": ["integer", "null"], "minimum": recall::LIMITS.0.start(),
                              "maximum": recall::LIMITS.0.end(), "default": recall::LIMITS.1,
                              "description": "How many hits to answer."},
                    "keywords": {"anyOf": [{"type": "boolean"}, {"type": "string", "minLength": 1, "pattern": "\\S"},
                                           {"type": "null"}],
                                 "description": "Fuse a full-text search with the vectors' ranking (reciprocal \
                                                 rank fusion): `true` for the query's words, or the words to find."},
                    "neighbours": {"type": ["integer", "null"], "minimum": recall::NEIGHBOURS.start(),
                                   "maximum": recall::NEIGHBOURS.end(), "default": 0,
                                   "description": "How many items before and after each hit to answer with it."},
                }),
            ),
        ),
        (
            "SwitchRequest",
            object(
                &["item_id"],
                json!({
                    "item_id": {"type": "string"},
                    "mode": {"type": "string", "enum": ["through", "to"], "default": "through",
                             "description": "`through`: the branch through the item, to its latest descendant; \
                                             `to`: the branch ending at it."},
                }),
            ),
        ),
    ]
}
