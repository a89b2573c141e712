//! The OpenAPI schemas of a live reply's writer routes ([`replies`](crate::extensions::replies)).

use serde_json::{Value, json};

use super::schemas::{REPLY_ENDS, STATUSES, constant, nullable, object, reference};
use crate::extensions::replies::MAX_PARTS;
use crate::extensions::ui_messages::MAX_UI_MESSAGES;

/// The kinds of a UIMessage's parts the AI SDK defines.
pub(crate) const UI_PART_KINDS: &str =
    "^(text|reasoning|file|step-start|source-url|source-document|dynamic-tool|tool-[^\\u0000]+|data-[^\\u0000]+)$";

/// The chunks a UI message stream holds.
const UI_CHUNKS: &[&str] = &[
    "start",
    "start-step",
    "finish-step",
    "text-start",
    "text-delta",
    "text-end",
    "reasoning-start",
    "reasoning-delta",
    "reasoning-end",
    "tool-input-available",
    "tool-output-available",
    "tool-output-error",
    "file",
    "finish",
    "abort",
    "error",
];

/// A place in a reply's parts: `PART` or `PART.CHARS` (a whole number is taken for `PART`).
fn offset() -> Value {
    json!({"anyOf": [
        {"type": "string", "pattern": "^[0-9]{1,19}(\\.[0-9]{1,19})?$"},
        {"type": "integer", "minimum": 0, "maximum": u64::MAX},
    ], "description": "A place in the reply's parts: `PART` (before that part) or `PART.CHARS` (characters \
                       into a text or reasoning part); what the writer's previous call answered, `0` first."})
}

fn parts() -> Value {
    json!({"type": "array", "minItems": 1, "maxItems": MAX_PARTS, "items": reference("ReplyPart")})
}

/// A UIMessage whose parts' `type` is `kind`.
fn ui_message(kind: Value, description: &str) -> Value {
    json!({
        "type": "object", "required": ["id", "role", "parts"],
        "properties": {
            "id": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
            "role": {"type": "string", "enum": ["system", "user", "assistant"]},
            "parts": {"type": "array", "items": {"type": "object", "required": ["type"], "properties": {"type": kind}}},
            "metadata": {},
        },
        "description": description,
    })
}

/// The schemas, by name.
pub(crate) fn all() -> Vec<(&'static str, Value)> {
    let part = json!({
        "type": "object", "required": ["type"],
        "properties": {"type": {"type": "string", "pattern": "^[^\\u0000]*$"}},
        "description": "A content block: `{\"type\": \"text\", \"text\"}` and `reasoning` (each joins the part \
                        before it when both are of its kind), `{\"type\": \"tool_call\", \"id\", \"name\", \
                        \"arguments\"}`, `{\"type\": \"tool_result\", \"call_id\", \"output\", \"is_error\"}`, \
                        `{\"type\": \"file\", \"media_type\", \"uri\"}`, or a kind of the writer's own, kept as it is.",
    });
    let reply = json!({
        "type": "object",
        "required": ["object", "id", "conversation_id", "status", "end", "offset", "written", "lease_seconds", "expires_at"],
        "properties": {
            "object": constant("persist.reply"),
            "id": {"type": "string", "description": "The reply's item id."},
            "conversation_id": {"type": "string"},
            "status": {"type": "string", "enum": STATUSES,
                       "description": "`in_progress` while it is written, `completed`, or `incomplete` (interrupted)."},
            "end": {"type": ["string", "null"], "enum": [REPLY_ENDS[0], REPLY_ENDS[1], REPLY_ENDS[2], REPLY_ENDS[3], null]},
            "offset": {"type": "string", "description": "The reply's end: the offset of the writer's next append."},
            "written": {"type": "boolean", "description": "`false` when the request repeated one already done."},
            "lease_seconds": {"type": ["number", "null"], "description": "The writer's lease."},
            "expires_at": {"type": ["number", "null"],
                           "description": "Seconds since the epoch when the writer's lease runs out unless it writes."},
            "items": {"type": "array", "items": reference("Item"), "description": "A start's: the items written before the reply."},
        },
        "additionalProperties": false,
    });
    vec![
        ("ReplyPart", part),
        ("Reply", reply),
        (
            "StartReplyRequest",
            object(
                &[],
                json!({
                    "id": {"type": ["string", "null"], "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$",
                           "description": "The reply's item id (else one is made): an app's own message id."},
                    "items": {"type": ["array", "null"], "items": reference("InputItem"),
                              "description": "The items before the reply (the user's turn), in the same write."},
                    "lease_seconds": {"type": ["integer", "null"], "minimum": 1, "maximum": 3600, "default": 30,
                                      "description": "How long the writer may go without a call before its reply \
                                                      is settled as interrupted."},
                }),
            ),
        ),
        ("AppendReplyRequest", object(&["offset", "parts"], json!({"offset": offset(), "parts": parts()}))),
        (
            "FinishReplyRequest",
            json!({
                "type": "object",
                "properties": {
                    "status": {"type": ["string", "null"], "enum": ["completed", "incomplete", null], "default": "completed"},
                    "reason": nullable(json!({"type": "string", "maxLength": 4096, "pattern": "^[^\\u0000]*$"})),
                    "offset": offset(),
                    "parts": parts(),
                },
                "dependentRequired": {"offset": ["parts"], "parts": ["offset"]},
                "additionalProperties": false,
            }),
        ),
        ("ReplySignalStop", object(&[], json!({}))),
        ("EnsureConversationRequest", object(&[], json!({"metadata": nullable(reference("Metadata"))}))),
        (
            "UiMessage",
            ui_message(
                json!({"type": "string"}),
                "What the conversation holds as the AI SDK's \
            UIMessage: its parts of the SDK's kinds, and any other block a writer stored, as it was written.",
            ),
        ),
        (
            "UiMessageInput",
            ui_message(
                json!({"type": "string", "pattern": UI_PART_KINDS}),
                "The AI SDK's UIMessage: \
            text, reasoning, file, source, data, step and tool parts.",
            ),
        ),
        (
            "UiMessageList",
            object(
                &["object", "data"],
                json!({"object": constant("list"), "data": {"type": "array", "items": reference("UiMessage")}}),
            ),
        ),
        (
            "WriteUiMessagesRequest",
            object(
                &["messages"],
                json!({"messages": {"type": "array", "maxItems": MAX_UI_MESSAGES, "items": reference("UiMessageInput")}}),
            ),
        ),
        (
            "UiMessageChunk",
            json!({
                "type": "object", "required": ["type"],
                "properties": {"type": {"type": "string", "enum": UI_CHUNKS}},
                "description": "A chunk of the AI SDK's UI message stream (its `ai` package parses them).",
            }),
        ),
    ]
}
