//! The route table: every route the server answers, with its handler and its documentation.
//! [`Server::router`](crate::Server::router) is built from it and [`openapi`]
//! describes it, so a route cannot be served without being documented, nor documented without
//! being served. What the reference says of a route beyond its summary (its description, and
//! what its statuses mean for it) is in [`route_docs`](super::route_docs), by operation id.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::on;
use serde_json::{Value, json};

use super::openapi;
use super::route::{Access, Answer, Method, Param, Route};
use super::route_docs as docs;
use crate::api::{conversations, items};
use crate::extensions::{
    branches, compacted, ensure, events, listing, live, pop, probes, recall, replies, search, ui_messages,
};

const CONVERSATIONS: &str = "Conversations";
const ITEMS: &str = "Items";
const PERSIST: &str = "Persist extensions";
const OPERATIONS: &str = "Operations";
const LIVE: &str = "Live replies";

fn string() -> Value {
    json!({"type": "string"})
}

fn limit() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": 100, "default": 20})
}

fn position() -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": u64::MAX})
}

/// An opaque cursor, as it was answered: never empty, URL-safe base64.
fn cursor() -> Value {
    json!({"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_-]+$"})
}

/// An item's id, as a page named it.
fn item_id() -> Value {
    json!({"type": "string", "minLength": 1})
}

/// What `idempotency::key_of` takes.
fn idempotency_key() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$"})
}

fn include() -> Value {
    json!({"type": "array", "items": {"type": "string", "enum": items::INCLUDABLE}})
}

const INCLUDE: Param = Param {
    name: "include",
    required: false,
    description: "Fields to include (accepted; every stored field is answered). `include[]` is taken too.",
    schema: include,
};
const LIMIT: Param = Param {
    name: "limit",
    required: false,
    description: "How many to answer: 1 to 100, 20 when absent.",
    schema: limit,
};
const CURSOR: Param = Param {
    name: "after",
    required: false,
    description: "The `next_cursor` of the previous page, as it was answered (URL-safe base64: paste it \
                  into the URL as it is).",
    schema: cursor,
};
const IDEMPOTENCY_KEY: Param = Param {
    name: "Idempotency-Key",
    required: false,
    description: "A request sent again with the same key writes nothing twice and answers what the first one \
                  did; the same key with another body is 422. 1 to 200 printable ASCII characters.",
    schema: idempotency_key,
};
/// An entity tag as answered (`"N"`).
fn entity_tag() -> Value {
    json!({"type": "string", "pattern": "^(W/)?\"?[0-9]{1,19}\"?$"})
}

const IF_MATCH: Param = Param {
    name: "If-Match",
    required: false,
    description: "The `ETag` a read of the conversation answered (its version): the update is made only if the \
                  conversation is still at it, else 412.",
    schema: entity_tag,
};
const LAST_EVENT_ID: Param = Param {
    name: "Last-Event-ID",
    required: false,
    description: "Where to resume (what a reconnecting `EventSource` sends); it wins over the query.",
    schema: position,
};

/// The feed's events: every write's op, then `gap` when the feed no longer holds what was asked.
const FEED_EVENTS: &[(&str, &str)] = &[
    ("add", "FeedEvent"),
    ("reserve", "FeedEvent"),
    ("update_content", "FeedEvent"),
    ("update", "FeedEvent"),
    ("delete", "FeedEvent"),
    ("summarize", "FeedEvent"),
    ("embed", "FeedEvent"),
    ("gap", "FeedGap"),
];

/// The AI SDK's UI message stream: unnamed events, each a chunk, then `[DONE]`.
const UI_EVENTS: &[(&str, &str)] = &[("message", "UiMessageChunk")];

/// A place in a reply's parts.
fn part_offset() -> Value {
    json!({"type": "string", "pattern": "^[0-9]{1,19}(\\.[0-9]{1,19})?$"})
}

const PART_FROM: Param = Param {
    name: "from",
    required: false,
    description: "The place in the reply's parts to start at: `PART` or `PART.CHARS` (the start by default).",
    schema: part_offset,
};
const LAST_PART: Param = Param {
    name: "Last-Event-ID",
    required: false,
    description: "Where to resume (an event's id: a place in the reply's parts); it wins over the query.",
    schema: part_offset,
};

/// A filter on a conversation's metadata: `metadata[KEY]=VALUE`, each pair.
fn metadata_filter() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string", "maxLength": 512}})
}

const METADATA_FILTER: Param = Param {
    name: "metadata",
    required: false,
    description: "Only the conversations whose metadata has each pair: `metadata[KEY]=VALUE`, repeatable.",
    schema: metadata_filter,
};

/// A live reply's writer's signals.
const SIGNAL_EVENTS: &[(&str, &str)] = &[("stop", "ReplySignalStop"), ("end", "ReplyEnd")];

/// A live reply's events.
const REPLY_EVENTS: &[(&str, &str)] = &[("text", "ReplyText"), ("replaced", "ReplyReplaced"), ("end", "ReplyEnd")];

/// Every route the server answers.
pub(crate) fn table() -> Vec<Route> {
    use Method::{Delete, Get, Post, Put};
    vec![
        Route::new(Post, "/v1/conversations", |m| on(m, conversations::create))
            .doc("createConversation", CONVERSATIONS, "Create a conversation, with up to 20 items and metadata")
            .headers(&[IDEMPOTENCY_KEY])
            .body("CreateConversationRequest")
            .describe(docs::CREATE_CONVERSATION)
            .notes(docs::CREATE_CONVERSATION_NOTES)
            .answers(Answer::Json("Conversation"), &[400, 409, 415, 422]),
        Route::new(Get, "/v1/conversations/{id}", |m| on(m, conversations::retrieve))
            .doc("getConversation", CONVERSATIONS, "Retrieve a conversation")
            .describe(docs::GET_CONVERSATION)
            .answers(Answer::Json("Conversation"), &[404]),
        Route::new(Post, "/v1/conversations/{id}", |m| on(m, conversations::update))
            .doc(
                "updateConversation",
                CONVERSATIONS,
                "Replace a conversation's metadata (compare-and-set with If-Match)",
            )
            .headers(&[IF_MATCH])
            .body("UpdateConversationRequest")
            .describe(docs::UPDATE_CONVERSATION)
            .answers(Answer::Json("Conversation"), &[400, 404, 409, 412, 415]),
        Route::new(Delete, "/v1/conversations/{id}", |m| on(m, conversations::delete))
            .doc("deleteConversation", CONVERSATIONS, "Delete a conversation and its items")
            .answers(Answer::Json("ConversationDeleted"), &[404, 409]),
        Route::new(Post, "/v1/conversations/{id}/items", |m| on(m, conversations::create_items))
            .doc("createConversationItems", ITEMS, "Write items to a conversation, as one turn")
            .query(&[INCLUDE])
            .headers(&[IDEMPOTENCY_KEY])
            .body("CreateItemsRequest")
            .describe(docs::CREATE_CONVERSATION_ITEMS)
            .answers(Answer::Json("ItemList"), &[400, 404, 409, 415, 422]),
        Route::new(Get, "/v1/conversations/{id}/items", |m| on(m, conversations::list_items))
            .doc("listConversationItems", ITEMS, "A page of a conversation's items, on its active branch")
            .query(&[
                Param {
                    name: "after",
                    required: false,
                    description: "The `last_id` of the previous page, in the page's order.",
                    schema: item_id,
                },
                LIMIT,
                Param {
                    name: "order",
                    required: false,
                    description: "`asc` (oldest first) or `desc` (newest first).",
                    schema: || json!({"type": "string", "enum": ["asc", "desc"], "default": "desc"}),
                },
                INCLUDE,
            ])
            .answers(Answer::Json("ItemList"), &[400, 404]),
        Route::new(Get, "/v1/conversations/{id}/items/{item_id}", |m| on(m, conversations::retrieve_item))
            .doc("getConversationItem", ITEMS, "Retrieve an item")
            .query(&[INCLUDE])
            .answers(Answer::Json("Item"), &[400, 404]),
        Route::new(Delete, "/v1/conversations/{id}/items/{item_id}", |m| on(m, conversations::delete_item))
            .doc("deleteConversationItem", ITEMS, "Delete an item; answers the conversation")
            .answers(Answer::Json("Conversation"), &[400, 404, 409]),
        Route::new(Get, "/v1/persist/conversations", |m| on(m, listing::list_conversations))
            .doc("listConversations", PERSIST, "The caller's conversations, most recently changed first")
            .query(&[CURSOR, LIMIT, METADATA_FILTER])
            .describe(docs::LIST_CONVERSATIONS)
            .notes(docs::LIST_CONVERSATIONS_NOTES)
            .answers(Answer::Json("ConversationSummaryPage"), &[400]),
        Route::new(Put, "/v1/persist/conversations/{id}", |m| on(m, ensure::ensure))
            .doc(
                "ensureConversation",
                PERSIST,
                "The conversation of the caller's id (a chat's), created when it has none",
            )
            .body("EnsureConversationRequest")
            .describe(docs::ENSURE_CONVERSATION)
            .notes(docs::ENSURE_CONVERSATION_NOTES)
            .answers(Answer::Json("Conversation"), &[400, 409, 415]),
        Route::new(Get, "/v1/persist/conversations/{id}/ui-messages", |m| on(m, ui_messages::read))
            .doc("getUiMessages", PERSIST, "The conversation's messages as the AI SDK's UIMessage[]")
            .describe(docs::GET_UI_MESSAGES)
            .answers(Answer::Json("UiMessageList"), &[404]),
        Route::new(Post, "/v1/persist/conversations/{id}/ui-messages", |m| on(m, ui_messages::write))
            .doc("writeUiMessages", PERSIST, "Write the UIMessages the conversation does not hold yet, as one turn")
            .body("WriteUiMessagesRequest")
            .describe(docs::WRITE_UI_MESSAGES)
            .notes(docs::WRITE_UI_MESSAGES_NOTES)
            .answers(Answer::Json("UiMessageList"), &[400, 404, 409, 415]),
        Route::new(Post, "/v1/persist/conversations/{id}/items/pop", |m| on(m, pop::pop))
            .doc("popConversationItem", PERSIST, "Remove the newest item and answer it, atomically")
            .describe(docs::POP_CONVERSATION_ITEM)
            .notes(docs::POP_CONVERSATION_ITEM_NOTES)
            .answers(Answer::Json("PoppedItem"), &[404, 409]),
        Route::new(Get, "/v1/persist/search", |m| on(m, search::search))
            .doc("searchItems", PERSIST, "The caller's items whose text holds every word, newest first")
            .query(&[
                Param {
                    name: "q",
                    required: true,
                    description: "The words to find: whole words, ignoring case; `\"two words\"` in quotes is a \
                                  phrase, `lis*` a prefix.",
                    schema: string,
                },
                Param {
                    name: "conversation",
                    required: false,
                    description: "Only this conversation's items.",
                    schema: string,
                },
                CURSOR,
                LIMIT,
            ])
            .describe(docs::SEARCH_ITEMS)
            .notes(docs::SEARCH_ITEMS_NOTES)
            .answers(Answer::Json("SearchPage"), &[400, 404]),
        Route::new(Post, "/v1/persist/recall", |m| on(m, recall::recall))
            .doc("recallItems", PERSIST, "The caller's items most like a text, by their embeddings, best first")
            .body("RecallRequest")
            .describe(docs::RECALL_ITEMS)
            .notes(docs::RECALL_ITEMS_NOTES)
            .answers(Answer::Json("RecallList"), &[400, 404, 415]),
        Route::new(Get, "/v1/persist/conversations/{id}/compacted", |m| on(m, compacted::compacted))
            .doc("getCompactedConversation", PERSIST, "The latest summary and the items after it")
            .describe(docs::GET_COMPACTED_CONVERSATION)
            .answers(Answer::Json("Compacted"), &[400, 404]),
        Route::new(Get, "/v1/persist/conversations/{id}/branches", |m| on(m, branches::branches))
            .doc("listBranches", PERSIST, "An item's alternatives, or the last item of every branch")
            .query(&[Param {
                name: "item_id",
                required: false,
                description: "The item whose alternatives to list; without it, the end of every branch.",
                schema: string,
            }])
            .describe(docs::LIST_BRANCHES)
            .notes(docs::LIST_BRANCHES_NOTES)
            .answers(Answer::Json("BranchList"), &[400, 404]),
        Route::new(Post, "/v1/persist/conversations/{id}/branches/switch", |m| on(m, branches::switch))
            .doc("switchBranch", PERSIST, "Show another branch; answers the conversation")
            .body("SwitchRequest")
            .describe(docs::SWITCH_BRANCH)
            .notes(docs::SWITCH_BRANCH_NOTES)
            .answers(Answer::Json("Conversation"), &[400, 404, 409, 415]),
        Route::new(Get, "/v1/persist/conversations/{id}/events", |m| on(m, events::events))
            .doc("streamConversationEvents", PERSIST, "The conversation's change feed, as Server-Sent Events")
            .query(&[Param {
                name: "after",
                required: false,
                description: "The feed position to start after (0, the default: the start).",
                schema: position,
            }])
            .headers(&[LAST_EVENT_ID])
            .describe(docs::STREAM_CONVERSATION_EVENTS)
            .notes(docs::STREAM_CONVERSATION_EVENTS_NOTES)
            .answers(Answer::Events(FEED_EVENTS), &[400, 404]),
        Route::new(Get, "/v1/persist/conversations/{id}/items/{item_id}/stream", |m| on(m, live::stream_item))
            .doc("streamItem", PERSIST, "A reply's text as it is written, as Server-Sent Events")
            .query(&[Param {
                name: "from",
                required: false,
                description: "The character to start at, in Unicode code points (0, the default: the start).",
                schema: position,
            }])
            .headers(&[LAST_EVENT_ID])
            .describe(docs::STREAM_ITEM)
            .notes(docs::STREAM_ITEM_NOTES)
            .answers(Answer::Events(REPLY_EVENTS), &[400, 404]),
        Route::new(Post, "/v1/persist/conversations/{id}/items/{item_id}/stop", |m| on(m, live::stop_item))
            .doc("stopItem", PERSIST, "Ask a reply's generation to stop, on whichever instance runs it")
            .describe(docs::STOP_ITEM)
            .notes(docs::STOP_ITEM_NOTES)
            .answers(Answer::Json("StopAnswer"), &[404]),
        Route::new(Get, "/v1/persist/conversations/{id}/items/{item_id}/ui-stream", |m| on(m, live::ui_stream_item))
            .doc("streamItemUi", LIVE, "An item as the AI SDK's UI message stream, from any place, on any instance")
            .query(&[PART_FROM])
            .headers(&[LAST_PART])
            .describe(docs::STREAM_ITEM_UI)
            .notes(docs::STREAM_ITEM_UI_NOTES)
            .answers(Answer::Events(UI_EVENTS), &[400, 404]),
        Route::new(Get, "/v1/persist/conversations/{id}/stream", |m| on(m, live::stream_running))
            .doc(
                "streamRunningReply",
                LIVE,
                "The reply being generated as the AI SDK's UI message stream; 204 when none is",
            )
            .query(&[PART_FROM])
            .headers(&[LAST_PART])
            .describe(docs::STREAM_RUNNING_REPLY)
            .answers(Answer::Events(UI_EVENTS), &[204, 400, 404]),
        Route::new(Post, "/v1/persist/conversations/{id}/stop", |m| on(m, live::stop_running))
            .doc("stopRunningReply", LIVE, "Stop the reply being generated, on whichever instance or process writes it")
            .describe(docs::STOP_RUNNING_REPLY)
            .answers(Answer::Json("StopAnswer"), &[404]),
        Route::new(Post, "/v1/persist/conversations/{id}/replies", |m| on(m, replies::start))
            .doc(
                "startReply",
                LIVE,
                "Start a live reply (after the user's turn, in one write); one per conversation at a time",
            )
            .headers(&[IDEMPOTENCY_KEY])
            .body("StartReplyRequest")
            .describe(docs::START_REPLY)
            .notes(docs::START_REPLY_NOTES)
            .answers(Answer::Json("Reply"), &[400, 404, 409, 415, 422]),
        Route::new(Post, "/v1/persist/conversations/{id}/replies/{item_id}/parts", |m| on(m, replies::append))
            .doc(
                "appendReply",
                LIVE,
                "Append parts to a live reply at the writer's offset (written once; a gap refused)",
            )
            .body("AppendReplyRequest")
            .describe(docs::APPEND_REPLY)
            .notes(docs::APPEND_REPLY_NOTES)
            .answers(Answer::Json("Reply"), &[400, 404, 409, 415]),
        Route::new(Post, "/v1/persist/conversations/{id}/replies/{item_id}/renew", |m| on(m, replies::renew))
            .doc("renewReply", LIVE, "Renew a live reply's writer's lease without writing")
            .describe(docs::RENEW_REPLY)
            .notes(docs::RENEW_REPLY_NOTES)
            .answers(Answer::Json("Reply"), &[404, 409]),
        Route::new(Post, "/v1/persist/conversations/{id}/replies/{item_id}/finish", |m| on(m, replies::finish))
            .doc("finishReply", LIVE, "End a live reply, complete or interrupted, after its last parts")
            .body("FinishReplyRequest")
            .describe(docs::FINISH_REPLY)
            .notes(docs::FINISH_REPLY_NOTES)
            .answers(Answer::Json("Reply"), &[400, 404, 409, 415]),
        Route::new(Get, "/v1/persist/conversations/{id}/replies/{item_id}/signals", |m| on(m, replies::signals))
            .doc("replySignals", LIVE, "The writer's events: `stop` when a client stops the reply, else `end`")
            .describe(docs::REPLY_SIGNALS)
            .answers(Answer::Events(SIGNAL_EVENTS), &[404]),
        Route::new(Get, openapi::PATH, |m| on(m, openapi_json))
            .doc("getOpenApiDocument", OPERATIONS, "This document (no key: it holds no data)")
            .access(Access::Public)
            .describe(docs::GET_OPEN_API_DOCUMENT)
            .answers(Answer::Json("OpenApiDocument"), &[]),
        Route::new(Get, "/health", |m| on(m, probes::health))
            .doc("health", OPERATIONS, "The process answers")
            .access(Access::Probe)
            .describe(docs::HEALTH)
            .answers(Answer::Json("Health"), &[]),
        Route::new(Get, "/ready", |m| on(m, probes::ready))
            .doc("ready", OPERATIONS, "The store answers a ping in time")
            .access(Access::Probe)
            .describe(docs::READY)
            .answers(Answer::Json("Ready"), &[503]),
    ]
}

/// `GET /v1/persist/openapi.json`: the document of this table, made once.
async fn openapi_json() -> Response {
    static TEXT: OnceLock<String> = OnceLock::new();
    let text = TEXT.get_or_init(|| openapi::document(&table()).to_string());
    ([(header::CONTENT_TYPE, "application/json")], text.as_str()).into_response()
}
