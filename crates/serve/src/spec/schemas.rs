//! The OpenAPI document's `components/schemas`: the bodies the server reads and answers, as JSON
//! Schema (draft 2020-12, OpenAPI 3.1's dialect). The item types, roles, content parts and
//! `include` values are the lists the server checks requests with, so they cannot disagree.
//! `tests/serve/openapi.rs` validates a real answer of every route against these.

use serde_json::{Map, Value, json};

use crate::api::conversations::MAX_METADATA;
use crate::api::items;

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

/// `schema` with a `description`.
pub(crate) fn described(schema: &Value, description: &str) -> Value {
    let mut schema = schema.clone();
    schema["description"] = description.into();
    schema
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

/// Every schema of the Conversations API and the extensions but the request bodies' (those are
/// [`request_schemas`](super::request_schemas)') and the live replies' (those are
/// [`reply_schemas`](super::reply_schemas)'), by name.
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
                              "description": "The index in `data` of the item on the branch the conversation shows; \
                                             `null` when none is."}}),
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
                "item_id": {"type": "string", "description": "The item's id: read it with \
                            `GET /v1/conversations/{id}/items/{item_id}`."},
                "role": {"type": "string", "description": "The item's role."},
                "created_at": {"type": "integer", "description": "Seconds since the epoch."},
                "snippet": object(&["text", "highlights"], json!({
                    "text": {"type": "string", "description": "An excerpt, with `…` where it is cut."},
                    "highlights": {"type": "array", "items": object(&["start", "end"], json!({
                        "start": {"type": "integer", "minimum": 0},
                        "end": {"type": "integer", "minimum": 0},
                    })), "description": "Each matched word's byte offsets into the UTF-8 `text`."},
                })),
                "rank": {"type": "number", "description": "The store's relevance score (hits are ordered newest \
                         first, whatever their rank)."},
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
                "summary": described(&nullable(object(&["text", "through_seq", "created_at"], json!({
                    "text": {"type": "string"},
                    "through_seq": {"type": "integer", "minimum": 0, "description": "persist's `seq` of the last \
                                    message the summary covers (the change feed's events carry seqs)."},
                    "created_at": {"type": "integer", "description": "Seconds since the epoch."},
                }))), "The latest summary a compaction wrote; `null` when there is none."),
                "data": {"type": "array", "items": reference("Item"), "description": "Every item after the summary \
                         on the active branch (not paged); replies still being written are left out."},
            }),
        ),
    );
    add(
        "StopAnswer",
        object(
            &["stopped"],
            json!({"stopped": {"type": "boolean", "description": "Whether a reply being written was asked to stop."},
                   "status": {"type": "string", "enum": REPLY_ENDS,
                              "description": "How the reply had ended, when it had (an item's stop)."},
                   "reply_id": {"type": "string", "description": "The reply stopped (a conversation's stop)."}}),
        ),
    );
    for (name, schema) in event_schemas() {
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
            "message": {"type": "string", "description": "What is wrong, for a person to read."},
            "type": {"type": "string", "enum": kinds, "description": "The kind of error."},
            "param": {"type": ["string", "null"], "description": "The field or parameter at fault."},
            "code": {"type": ["string", "null"], "description": "The case, when a client may tell it apart: \
                     `not_found`, `unknown_parameter`, `unknown_url`, `conversation_empty`, `unsupported`, \
                     `recall_unavailable`, `reply_running`, …"},
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
            "position": described(&count, "The event's feed position, its `id:`: store-wide, increasing and never \
                                           reused (within one conversation, with gaps)."),
            "tenant": described(&maybe_string, "The conversation's tenant (`null` in a store without tenants)."),
            "thread_id": {"type": "string", "description": "The conversation's id."},
            "op": {"type": "string", "description": "What changed, as the event's name: `add`, `reserve`, \
                                                     `update_content`, `update`, `delete`, `summarize` or `embed`."},
            "message_id": described(&maybe_string, "The item's id; `null` for a change to the conversation itself \
                                                   (its metadata, a switch of branch, its deletion)."),
            "seq": described(&maybe_count, "The message's place in the conversation."),
            "version": described(&count, "The version the write made, of the message or of the conversation."),
            "removed": {"type": ["string", "null"], "enum": ["message", "thread", null],
                        "description": "What a delete removed: `message` or `thread`; else `null`."},
            "status": {"type": "string", "enum": ["complete", "reserved", "interrupted"],
                       "description": "persist's name of the message's status: `reserved` is a reply being \
                                       written. Items call these `completed`, `in_progress` and `incomplete`."},
            "parent_seq": described(&count, "For an inserted item, the `seq` of the one it follows."),
            "delta": {"type": "array", "description": "For an `update_content` that appended to a reply, the \
                                                       content blocks it added, in persist's content JSON."},
            "at": {"type": "integer", "description": "Microseconds since the epoch."},
        },
        "description": "A committed change: what changed, not the content (read the item).",
    });
    vec![
        ("FeedEvent", feed),
        (
            "FeedGap",
            described(
                &object(
                    &["after", "trimmed"],
                    json!({"after": described(&count, "The position asked for."),
                           "trimmed": described(&count, "Where the feed starts now: it holds the events after it.")}),
                ),
                "The feed no longer holds every event after the position asked for (its retention removed some), \
                 so writes may have been missed; the stream ends after it. Reload the conversation, then follow \
                 again.",
            ),
        ),
        (
            "ReplyText",
            described(
                &object(
                    &["offset", "text"],
                    json!({"offset": described(&count, "The character (Unicode code point) the text starts at."),
                           "text": {"type": "string"}}),
                ),
                "Text was added to the reply; the event's `id` is the offset after it.",
            ),
        ),
        (
            "ReplyReplaced",
            described(
                &object(&["text"], json!({"text": {"type": "string", "description": "The whole text."}})),
                "The final write rewrote the reply's text instead of adding to it; the event's `id` is its length.",
            ),
        ),
        (
            "ReplyEnd",
            described(
                &object(&["status"], json!({"status": {"type": "string", "enum": REPLY_ENDS}})),
                "The reply ended: `complete`, `interrupted`, `stopped` (a client stopped it) or `deleted`. The \
                 event has no `id`, and the stream ends with it.",
            ),
        ),
    ]
}
