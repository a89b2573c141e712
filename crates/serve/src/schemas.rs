//! The OpenAPI document's `components/schemas`: the bodies the server reads and answers, as JSON
//! Schema (draft 2020-12, OpenAPI 3.1's dialect). The item types, roles, content parts and
//! `include` values are the lists the server checks requests with, so they cannot disagree.
//! `tests/serve/openapi.rs` validates a real answer of every route against these.

use serde_json::{Map, Value, json};

use crate::conversations::{MAX_CREATE_ITEMS, MAX_METADATA};
use crate::{items, recall};

/// `#/components/schemas/NAME`.
pub(crate) fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A value of `schema` or `null`.
pub(crate) fn nullable(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "null"}]})
}

/// An object of exactly these properties, `required` among them.
pub(crate) fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "required": required, "properties": properties, "additionalProperties": false})
}

/// A string that is always `value`.
pub(crate) fn constant(value: &str) -> Value {
    json!({"type": "string", "const": value})
}

/// How a live reply ended.
pub(crate) const REPLY_ENDS: &[&str] = &["complete", "interrupted", "stopped", "deleted"];

/// The statuses an item of the API may have.
pub(crate) const STATUSES: &[&str] = &["in_progress", "completed", "incomplete"];

/// The item types described by a schema of their own; every other one is an `OtherItem`.
const DETAILED: &[(&str, &str)] = &[
    ("message", "MessageItem"),
    ("function_call", "FunctionCallItem"),
    ("function_call_output", "FunctionCallOutputItem"),
    ("reasoning", "ReasoningItem"),
];

/// Every schema of the Conversations API and the extensions but the live replies' (those are
/// [`reply_schemas`](crate::reply_schemas)'), by name.
pub(crate) fn all() -> Value {
    let mut schemas = Map::new();
    let mut add = |name: &str, schema: Value| schemas.insert(name.to_owned(), schema);
    add("Error", error());
    add("Metadata", metadata());
    add(
        "Conversation",
        object(
            &["id", "object", "created_at", "metadata"],
            json!({
                "id": {"type": "string", "description": "`conv_…`, or the id of a thread a Rust host wrote."},
                "object": constant("conversation"),
                "created_at": {"type": "integer", "description": "Seconds since the epoch."},
                "metadata": reference("Metadata"),
            }),
        ),
    );
    add(
        "ConversationDeleted",
        object(
            &["id", "object", "deleted"],
            json!({"id": {"type": "string"}, "object": constant("conversation.deleted"),
                   "deleted": {"type": "boolean", "const": true}}),
        ),
    );
    for (name, schema) in item_schemas() {
        add(&name, schema);
    }
    add("ItemList", list("Item", &["first_id", "last_id"], json!({})));
    add(
        "ConversationSummaryPage",
        list("ConversationSummary", &["first_id", "last_id", "next_cursor"], json!({"next_cursor": cursor()})),
    );
    add(
        "ConversationSummary",
        object(
            &["id", "object", "created_at", "updated_at", "message_count", "metadata"],
            json!({
                "id": {"type": "string"},
                "object": constant("persist.conversation"),
                "created_at": {"type": "integer", "description": "Seconds since the epoch."},
                "updated_at": {"type": "integer", "description": "When it last changed, in seconds since the epoch."},
                "message_count": {"type": "integer", "minimum": 0, "description": "The messages it holds."},
                "metadata": reference("Metadata"),
            }),
        ),
    );
    add(
        "BranchList",
        list(
            "Item",
            &["first_id", "last_id", "active"],
            json!({"active": {"type": ["integer", "null"], "minimum": 0,
                              "description": "The index in `data` of the item on the active branch."}}),
        ),
    );
    add("SearchPage", list("SearchHit", &["next_cursor"], json!({"next_cursor": cursor()})));
    add(
        "SearchHit",
        object(
            &["object", "conversation_id", "item_id", "role", "created_at", "snippet", "rank"],
            json!({
                "object": constant("search.hit"),
                "conversation_id": {"type": "string"},
                "item_id": {"type": "string"},
                "role": {"type": "string"},
                "created_at": {"type": "integer"},
                "snippet": object(&["text", "highlights"], json!({
                    "text": {"type": "string", "description": "An excerpt, with `…` where it is cut."},
                    "highlights": {"type": "array", "items": object(&["start", "end"], json!({
                        "start": {"type": "integer", "minimum": 0},
                        "end": {"type": "integer", "minimum": 0},
                    })), "description": "Each matched word's byte offsets into the UTF-8 `text`."},
                })),
                "rank": {"type": "number", "description": "The store's relevance score."},
            }),
        ),
    );
    add(
        "RecallList",
        list(
            "RecallHit",
            &["model"],
            json!({"model": {"type": "string",
        "description": "The embedding model the query was embedded with."}}),
        ),
    );
    add(
        "RecallHit",
        object(
            &["object", "conversation_id", "item", "score", "similarity", "before", "after"],
            json!({
                "object": constant("recall.hit"),
                "conversation_id": {"type": "string"},
                "item": json!({"allOf": [reference("Item")], "description": "The item, as the Items API answers it \
                               (a message a Rust host wrote with text and tool calls: its first item)."}),
                "score": {"type": "number", "description": "Higher is better: the cosine similarity; with \
                          `keywords`, the reciprocal rank fusion of both rankings."},
                "similarity": {"type": ["number", "null"], "description": "The cosine similarity, when the \
                               vectors ranked the item."},
                "before": {"type": "array", "items": reference("Item"), "description": "The items before it \
                           (`neighbours`), oldest first."},
                "after": {"type": "array", "items": reference("Item"), "description": "The items after it."},
            }),
        ),
    );
    add(
        "PoppedItem",
        json!({"oneOf": [reference("Item"), object(&["object", "data"], json!({
            "object": constant("list"),
            "data": {"type": "array", "items": reference("Item")},
        }))], "description": "The item removed, or the items of the message removed whole."}),
    );
    add(
        "Compacted",
        object(
            &["object", "summary", "data"],
            json!({
                "object": constant("conversation.compacted"),
                "summary": nullable(object(&["text", "through_seq", "created_at"], json!({
                    "text": {"type": "string"},
                    "through_seq": {"type": "integer", "minimum": 0},
                    "created_at": {"type": "integer"},
                }))),
                "data": {"type": "array", "items": reference("Item")},
            }),
        ),
    );
    add(
        "StopAnswer",
        object(
            &["stopped"],
            json!({"stopped": {"type": "boolean"}, "status": {"type": "string", "enum": REPLY_ENDS},
                   "reply_id": {"type": "string", "description": "The reply stopped (a conversation's stop)."}}),
        ),
    );
    for (name, schema) in event_schemas() {
        add(name, schema);
    }
    for (name, schema) in request_schemas() {
        add(name, schema);
    }
    add(
        "OpenApiDocument",
        json!({"type": "object", "required": ["openapi", "info", "paths", "components"],
               "properties": {"openapi": constant("3.1.0")}}),
    );
    add("Health", object(&["status"], json!({"status": constant("ok")})));
    add("Ready", object(&["status"], json!({"status": constant("ready")})));
    Value::Object(schemas)
}

fn error() -> Value {
    let kinds = [
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "conflict_error",
        "rate_limit_error",
        "server_error",
    ];
    object(
        &["error"],
        json!({"error": object(&["message", "type", "param", "code"], json!({
            "message": {"type": "string"},
            "type": {"type": "string", "enum": kinds},
            "param": {"type": ["string", "null"], "description": "The field or parameter at fault."},
            "code": {"type": ["string", "null"]},
            "reply_id": {"type": "string", "description": "`reply_running`: the reply being generated."},
            "offset": {"type": "string", "description": "`offset_gap`, `offset_diverged`: where the reply ends."},
            "status": {"type": "string", "description": "`reply_ended`: how it ended."},
        }))}),
    )
}

fn metadata() -> Value {
    let (pairs, key_chars, value_chars) = MAX_METADATA;
    json!({
        "type": "object",
        "maxProperties": pairs,
        "propertyNames": {"minLength": 1, "maxLength": key_chars, "pattern": "^[^\\u0000]*$"},
        "additionalProperties": {"type": "string", "maxLength": value_chars, "pattern": "^[^\\u0000]*$"},
        "description": "String pairs, replaced whole by an update.",
    })
}

fn cursor() -> Value {
    json!({"type": ["string", "null"], "description": "The `after` of the next page (URL-safe base64: send it as it is); `null` after the last."})
}

/// A list object of `item`s: `object`, `data` and `has_more`, the `extra` fields named (of
/// `properties`, `first_id` and `last_id` being the ids of the first and last item).
fn list(item: &str, extra: &[&str], properties: Value) -> Value {
    let mut required = vec!["object", "data", "has_more"];
    required.extend(extra);
    let mut all = json!({
        "object": constant("list"),
        "data": {"type": "array", "items": reference(item)},
        "has_more": {"type": "boolean"},
    });
    for id in ["first_id", "last_id"].into_iter().filter(|id| extra.contains(id)) {
        all[id] = json!({"type": ["string", "null"]});
    }
    for (key, value) in properties.as_object().into_iter().flatten() {
        all[key] = value.clone();
    }
    object(&required, all)
}

/// An item as the server answers it: one of the detailed types, or another Responses item.
fn item_schemas() -> Vec<(String, Value)> {
    let others: Vec<&str> =
        items::TYPES.iter().map(|(kind, _)| *kind).filter(|kind| !DETAILED.iter().any(|(d, _)| d == kind)).collect();
    let mut mapping = Map::new();
    for (kind, name) in DETAILED {
        mapping.insert((*kind).into(), format!("#/components/schemas/{name}").into());
    }
    for kind in &others {
        mapping.insert((*kind).into(), "#/components/schemas/OtherItem".into());
    }
    let mut one_of: Vec<Value> = DETAILED.iter().map(|(_, name)| reference(name)).collect();
    one_of.push(reference("OtherItem"));
    let open = |required: &[&str], properties: Value| json!({"type": "object", "required": required, "properties": properties});
    let status = json!({"type": "string", "enum": STATUSES});
    vec![
        (
            "Item".into(),
            json!({"oneOf": one_of, "discriminator": {"propertyName": "type", "mapping": mapping},
                   "description": "A Responses API item, with every field it was written with."}),
        ),
        (
            "MessageItem".into(),
            open(
                &["id", "type", "role", "content", "status"],
                json!({
                    "id": {"type": "string"}, "type": constant("message"),
                    "role": {"type": "string", "enum": items::ROLES},
                    "status": status,
                    "content": {"type": "array", "items": reference("ContentPart")},
                }),
            ),
        ),
        (
            "ContentPart".into(),
            open(
                &["type"],
                json!({"type": {"type": "string",
                                "description": "One of the API's part types, or a part another writer stored as \
                                                it was written (a UIMessage's own kinds, a Rust host's blocks)."},
                       "text": {"type": "string"}, "annotations": {"type": "array"}}),
            ),
        ),
        (
            "FunctionCallItem".into(),
            open(
                &["id", "type", "call_id", "name", "arguments", "status"],
                json!({
                    "id": {"type": "string"}, "type": constant("function_call"),
                    "call_id": {"type": "string"}, "name": {"type": "string"},
                    "arguments": {"type": "string", "description": "The arguments, as JSON text."},
                    "status": status,
                }),
            ),
        ),
        (
            "FunctionCallOutputItem".into(),
            open(
                &["id", "type", "call_id", "output", "status"],
                json!({
                    "id": {"type": "string"}, "type": constant("function_call_output"),
                    "call_id": {"type": "string"},
                    "output": {"anyOf": [{"type": "string"}, {"type": "array", "items": reference("ContentPart")}]},
                    "status": status,
                }),
            ),
        ),
        (
            "ReasoningItem".into(),
            open(
                &["id", "type", "summary"],
                json!({
                    "id": {"type": "string"}, "type": constant("reasoning"),
                    "summary": {"type": "array", "items": open(&["type", "text"], json!({
                        "type": {"type": "string"}, "text": {"type": "string"},
                    }))},
                    "encrypted_content": {"type": ["string", "null"]},
                }),
            ),
        ),
        (
            "OtherItem".into(),
            open(&["id", "type"], json!({"id": {"type": "string"}, "type": {"type": "string", "enum": others}})),
        ),
    ]
}

/// The JSON `data` of the Server-Sent Events.
fn event_schemas() -> Vec<(&'static str, Value)> {
    let count = json!({"type": "integer", "minimum": 0});
    let (maybe_count, maybe_string) =
        (json!({"type": ["integer", "null"], "minimum": 0}), json!({"type": ["string", "null"]}));
    let feed = json!({
        "type": "object",
        "required": ["position", "tenant", "thread_id", "op", "message_id", "seq", "version", "removed", "at"],
        "properties": {
            "position": count, "tenant": maybe_string, "thread_id": {"type": "string"},
            "op": {"type": "string"}, "message_id": maybe_string, "seq": maybe_count, "version": count,
            "removed": {"type": ["string", "null"], "enum": ["message", "thread", null]},
            "status": {"type": "string", "enum": ["complete", "reserved", "interrupted"]},
            "parent_seq": count, "delta": {"type": "array"},
            "at": {"type": "integer", "description": "Microseconds since the epoch."},
        },
        "description": "A committed change: what changed, not the content (read the item).",
    });
    vec![
        ("FeedEvent", feed),
        ("FeedGap", object(&["after", "trimmed"], json!({"after": count, "trimmed": count}))),
        ("ReplyText", object(&["offset", "text"], json!({"offset": count, "text": {"type": "string"}}))),
        ("ReplyReplaced", object(&["text"], json!({"text": {"type": "string"}}))),
        ("ReplyEnd", object(&["status"], json!({"status": {"type": "string", "enum": REPLY_ENDS}}))),
    ]
}

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

/// The request bodies.
fn request_schemas() -> Vec<(&'static str, Value)> {
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
                              "maximum": recall::LIMITS.0.end(), "default": recall::LIMITS.1},
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
