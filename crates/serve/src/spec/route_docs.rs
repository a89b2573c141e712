//! What the HTTP reference says of each route beyond its summary: its description
//! (CommonMark), and what some of its statuses mean for it. The route table
//! ([`routes`](super::routes)) names these by its operation ids; they are here so that the
//! table stays a table.

/// `POST /v1/conversations`.
pub(crate) const CREATE_CONVERSATION: &str = "Its items and metadata are written in one step, all or none. With an \
    `Idempotency-Key`, the same request sent again answers the conversation the first one made.";

/// What statuses mean for `POST /v1/conversations`.
pub(crate) const CREATE_CONVERSATION_NOTES: &[(u16, &str)] = &[(
    409,
    "Here: an item id given twice, or the conversation an `Idempotency-Key` made was deleted since (its id is not \
     used again).",
)];

/// `GET /v1/conversations/{id}`.
pub(crate) const GET_CONVERSATION: &str = "Its version is its `ETag`, what an update's `If-Match` names.";

/// `POST /v1/conversations/{id}`.
pub(crate) const UPDATE_CONVERSATION: &str = "The metadata is replaced whole. With `If-Match` (the `ETag` a read \
    answered: the conversation's version), only if the conversation is still at that version, else 412 and nothing is \
    written: two clients setting a title do not lose one.";

/// `POST /v1/conversations/{id}/items`.
pub(crate) const CREATE_CONVERSATION_ITEMS: &str =
    "All or none, after the conversation's newest item on its active branch.";

/// `GET /v1/persist/conversations`.
pub(crate) const LIST_CONVERSATIONS: &str = "A write moves a conversation to the front; deleted ones are not listed. \
    Each has when it last changed (`updated_at`) and how many messages it holds (`message_count`), as a chat's \
    sidebar shows them. `metadata[KEY]=VALUE` (repeatable) keeps those whose metadata has each pair (of conversations \
    written since this server version: their pairs are mirrored then). For the next page, send `next_cursor` back as \
    `after`, with the same other parameters, until it is `null`.";

/// What statuses mean for `GET /v1/persist/conversations`.
pub(crate) const LIST_CONVERSATIONS_NOTES: &[(u16, &str)] = &[(
    400,
    "Here: a `limit` out of range, a cursor this server did not answer, `metadata` without `[KEY]`, or a parameter \
     the route does not take (`unknown_parameter`).",
)];

/// `PUT /v1/persist/conversations/{id}`.
pub(crate) const ENSURE_CONVERSATION: &str = "What an app whose client mints the chat's id calls before its first \
    write, as often as it likes: the conversation of this id, made with `metadata` when the caller has none (one it \
    has is answered as it is). The id is 1 to 255 printable ASCII characters.";

/// What statuses mean for `PUT /v1/persist/conversations/{id}`.
pub(crate) const ENSURE_CONVERSATION_NOTES: &[(u16, &str)] = &[
    (400, "Here also: an `id` that is not 1 to 255 printable ASCII characters."),
    (409, "Here: the id of a deleted conversation, which is not used again."),
];

/// `GET /v1/persist/conversations/{id}/ui-messages`.
pub(crate) const GET_UI_MESSAGES: &str = "The messages of its active branch, oldest first, as `useChat({ messages })` \
    shows them again after a reload: text, reasoning, tool calls with their results, files. A reply still being \
    written says so (`metadata.persist.status`); its stream resumes from `GET /v1/persist/conversations/{id}/stream`.";

/// `POST /v1/persist/conversations/{id}/ui-messages`.
pub(crate) const WRITE_UI_MESSAGES: &str = "`{\"messages\": UIMessage[]}`, what the SDK's `onFinish` hands over: the \
    messages the conversation does not hold yet (by id) are written after its newest, as one turn; those it holds are \
    left as they are (a reply written live is stored already). Answers the messages written.";

/// What statuses mean for `POST /v1/persist/conversations/{id}/ui-messages`.
pub(crate) const WRITE_UI_MESSAGES_NOTES: &[(u16, &str)] = &[
    (
        400,
        "Here also: a message whose `id`, `role` or part `type` the AI SDK does not define (`param` names it), or \
         more new messages than a turn takes (256); nothing is written.",
    ),
    (409, "Here also: a message id given twice, whether the conversation holds it or not; nothing is read or written."),
];

/// `POST /v1/persist/conversations/{id}/items/pop`.
pub(crate) const POP_CONVERSATION_ITEM: &str = "No body. Removes the newest item on the active branch and answers it; \
    a reply still being written counts. Concurrent pops each get a different item. Unlike `POST /v1/conversations` \
    and `POST /v1/conversations/{id}/items`, it takes no `Idempotency-Key`. A message a Rust host wrote may read as \
    several items in the API (a reply with its tool calls): pop removes such a message whole and answers \
    `{\"object\": \"list\", \"data\": [...]}`.";

/// What statuses mean for `POST /v1/persist/conversations/{id}/items/pop`.
pub(crate) const POP_CONVERSATION_ITEM_NOTES: &[(u16, &str)] = &[
    (404, "Here: an empty conversation is `conversation_empty`, a missing one `not_found`."),
    (409, "Here also: the newest item is a reply written to while it was popped (nothing was removed); retry."),
    (503, "Here also: other pops took every item this one tried (nothing was removed); retry."),
];

/// `GET /v1/persist/search`.
pub(crate) const SEARCH_ITEMS: &str = "From every conversation, or only from `conversation`.\n\
    \n\
    - Matching: whole words, ignoring case; `\"two words\"` in quotes is a phrase; `lis*` is a prefix; nothing else \
    is an operator. A query with no word (`q=`, punctuation only) finds nothing: an empty page, not an error.\n\
    - Each hit names its `conversation_id` and `item_id` (read the item with `GET \
    /v1/conversations/{id}/items/{item_id}`), the item's `role` and `created_at`, a `snippet` (an excerpt, with each \
    matched word's byte offsets into it) and `rank`, the store's relevance score: hits stay ordered newest first, \
    whatever their rank.";

/// What statuses mean for `GET /v1/persist/search`.
pub(crate) const SEARCH_ITEMS_NOTES: &[(u16, &str)] = &[
    (
        400,
        "Here: no `q` (`param: \"q\"`), or a store sealed by `EncryptLayer`, which holds no text to search \
         (`unsupported`).",
    ),
    (404, "Here: a `conversation` the caller does not have."),
];

/// `POST /v1/persist/recall`.
pub(crate) const RECALL_ITEMS: &str = "On a server given an embedding model (`persist serve --embeddings-url URL`, an \
    OpenAI-compatible embeddings endpoint, or `Server::with_embedder`), every item is embedded as it is written. \
    Recall answers the caller's items most like `query` by the cosine similarity of their embeddings, best first; \
    with `keywords`, fused with a full-text search by reciprocal rank fusion.\n\
    \n\
    - `conversation` keeps one conversation's items; `user_id` keeps those of the conversations whose \
    `metadata.user_id` is that value (copied to the thread's own metadata, where the MCP server's `append_message` \
    and a Rust host mark a user too); `neighbours` brings the items around each hit.\n\
    - Each hit (`recall.hit`) has its `conversation_id`, the `item` as `GET /v1/conversations/{id}/items/{item_id}` \
    answers it, its `score` and `similarity`, and `before` and `after` (its neighbours); the list names the embedding \
    `model`.";

/// What statuses mean for `POST /v1/persist/recall`.
pub(crate) const RECALL_ITEMS_NOTES: &[(u16, &str)] = &[
    (
        400,
        "Here also: a server without an embedding model (`recall_unavailable`; the message names `--embeddings-url`).",
    ),
    (404, "Here: a `conversation` the caller does not have."),
    (500, "Here also: an embedding model that refused the request (`embedder_error`)."),
    (503, "Here also: an embedding model that is down or slower than the store's timeout (`embedder_unavailable`)."),
];

/// `GET /v1/persist/conversations/{id}/compacted`.
pub(crate) const GET_COMPACTED_CONVERSATION: &str = "What a model is given of a long conversation: `summary`, the \
    latest summary a compaction wrote (`null` when there is none), and `data`, every item after it on the active \
    branch (not paged; replies still being written are left out). Summaries are written by a Rust host's \
    `CompactLayer`; the API writes none. No parameters.";

/// `GET /v1/persist/conversations/{id}/branches`.
pub(crate) const LIST_BRANCHES: &str = "With `item_id`: that item's alternatives, the items that follow the same item \
    (itself included), oldest first. Without it: the last item of every branch. `active` is the index in `data` of \
    the item on the branch the conversation shows, `null` when none is; `GET /v1/conversations/{id}/items` shows only \
    that branch. A new branch comes from a Rust host's edit or regenerated reply, or from an item an API client \
    writes after a switch `to` an earlier item.";

/// What statuses mean for `GET /v1/persist/conversations/{id}/branches`.
pub(crate) const LIST_BRANCHES_NOTES: &[(u16, &str)] =
    &[(404, "Here also: an `item_id` the conversation does not hold.")];

/// `POST /v1/persist/conversations/{id}/branches/switch`.
pub(crate) const SWITCH_BRANCH: &str = "The conversation then shows another branch.\n\
    \n\
    - `through` (the default): the branch through that item, down to its latest descendant. Showing an earlier answer \
    again also brings back what followed it.\n\
    - `to`: the branch ending at that item; the next item written follows it. An API client regenerates a reply this \
    way: switch `to` the question, then write the new reply with `POST /v1/conversations/{id}/items`; it becomes a \
    sibling of the old one (the branches route lists both).";

/// What statuses mean for `POST /v1/persist/conversations/{id}/branches/switch`.
pub(crate) const SWITCH_BRANCH_NOTES: &[(u16, &str)] = &[
    (400, "Here: no `item_id` (`param: \"item_id\"`), or another `mode` (`param: \"mode\"`)."),
    (404, "Here also: an item the conversation does not hold."),
];

/// `GET /v1/persist/conversations/{id}/events`.
pub(crate) const STREAM_CONVERSATION_EVENTS: &str = "On any instance; the stream stays open until the client closes \
    it, or the server shuts down (resume with `Last-Event-ID`).\n\
    \n\
    - Without `Last-Event-ID` or `after`, it replays from the start: every event of the conversation the feed still \
    holds, then each new one as it commits. `Last-Event-ID: N` (what a reconnecting `EventSource` sends; it wins over \
    `after`) or `?after=N` starts after feed position `N`.\n\
    - Each event has `id:`, its feed position (store-wide, increasing and never reused, so within one conversation \
    they have gaps), `event:`, what changed (the write's op), and `data:`, one line of JSON. An event says what \
    changed, not the content: read the item.\n\
    - A comment line (`:`) every 15 seconds keeps an idle stream open.\n\
    - When the feed no longer holds every event after the position asked for (its retention removed some), the stream \
    sends one `gap` event, with no `id`, then ends: reload the conversation, then follow again.\n\
    - A deleted conversation's last event is a `delete` with `\"removed\": \"thread\"`; the stream stays open after \
    it.";

/// What statuses mean for `GET /v1/persist/conversations/{id}/events`.
pub(crate) const STREAM_CONVERSATION_EVENTS_NOTES: &[(u16, &str)] =
    &[(400, "Here: a position that is not a whole number, or one beyond the feed's head.")];

/// `GET /v1/persist/conversations/{id}/items/{item_id}/stream`.
pub(crate) const STREAM_ITEM: &str = "For a reply a Rust host reserved and streams into (an `in_progress` item), \
    followed on any instance.\n\
    \n\
    - It starts at character `Last-Event-ID` (what a reconnecting `EventSource` sends; it wins), else at `?from=N`, \
    else at 0. Offsets count Unicode code points, not bytes or UTF-16 units.\n\
    - `text`: text was added, from character `offset`; the first holds everything written so far after the start. Its \
    `id` is the offset after the text, where a reconnect resumes.\n\
    - `replaced`: the final write rewrote the text instead of adding to it; `data` is the whole text, and `id` its \
    length.\n\
    - `end`: the reply ended (`complete`, `interrupted`, `stopped` or `deleted`); it has no `id`, and the stream ends \
    with it.\n\
    - An item that has already ended (as any item `POST /v1/conversations/{id}/items` wrote) answers its text, if it \
    has any, and `end` at once.\n\
    - When the server shuts down, it ends the stream: resume with `Last-Event-ID`.";

/// What statuses mean for `GET /v1/persist/conversations/{id}/items/{item_id}/stream`.
pub(crate) const STREAM_ITEM_NOTES: &[(u16, &str)] = &[
    (400, "Here: an offset that is not a whole number."),
    (404, "Here also: an item the conversation does not hold."),
];

/// `POST /v1/persist/conversations/{id}/items/{item_id}/stop`.
pub(crate) const STOP_ITEM: &str = "No body.\n\
    \n\
    - A reply still being written: `{\"stopped\": true}`. The host's generator (it awaits `Pipeline::watch_stop`) \
    ends the reply with the text it has: the item becomes `incomplete`, and its streams end with `{\"status\": \
    \"stopped\"}`.\n\
    - A reply that had already ended: `{\"stopped\": false, \"status\": …}`, with `complete`, `interrupted`, \
    `stopped` or `deleted`; for any item `POST /v1/conversations/{id}/items` wrote, `{\"stopped\": false, \"status\": \
    \"complete\"}`.";

/// What statuses mean for `POST /v1/persist/conversations/{id}/items/{item_id}/stop`.
pub(crate) const STOP_ITEM_NOTES: &[(u16, &str)] = &[(404, "Here also: an item the conversation does not hold.")];

/// `GET /v1/persist/conversations/{id}/items/{item_id}/ui-stream`.
pub(crate) const STREAM_ITEM_UI: &str = "The chunks: `start`, `text-start`, `text-delta` and `text-end`, \
    `reasoning-…`, tool inputs and outputs, `file`, then `finish`, `abort` when stopped, or `error`; then `[DONE]`. \
    From its start, `?from=` or `Last-Event-ID` (each event's id is a place in its parts).";

/// What statuses mean for `GET /v1/persist/conversations/{id}/items/{item_id}/ui-stream`.
pub(crate) const STREAM_ITEM_UI_NOTES: &[(u16, &str)] = &[(400, "Here: a place that is not `PART` or `PART.CHARS`.")];

/// `GET /v1/persist/conversations/{id}/stream`.
pub(crate) const STREAM_RUNNING_REPLY: &str = "As `GET /v1/persist/conversations/{id}/items/{item_id}/ui-stream`, for \
    the reply being generated in the conversation; 204 when none is, nor the conversation (a chat not written yet). \
    What an app's `GET /api/chat/{id}/stream` for `useChat({ resume: true })` passes through.";

/// `POST /v1/persist/conversations/{id}/stop`.
pub(crate) const STOP_RUNNING_REPLY: &str =
    "`{\"stopped\": true, \"reply_id\"}`, or `{\"stopped\": false}` when no reply is being generated.";

/// `POST /v1/persist/conversations/{id}/replies`.
pub(crate) const START_REPLY: &str = "The reply (of the item id `id`, else one made) is started after `items` (the \
    user's turn), in one write, with a writer's lease of `lease_seconds`: a writer that makes no call for that long \
    has its reply settled as interrupted. One reply is generated per conversation at a time, across instances. With \
    an `Idempotency-Key`, the same request sent again answers the reply the first one started.";

/// What statuses mean for `POST /v1/persist/conversations/{id}/replies`.
pub(crate) const START_REPLY_NOTES: &[(u16, &str)] =
    &[(409, "Here: a reply is being generated already (`reply_running`, naming it in `reply_id`).")];

/// `POST /v1/persist/conversations/{id}/replies/{item_id}/parts`.
pub(crate) const APPEND_REPLY: &str = "`{\"offset\", \"parts\"}`: the parts are appended at the writer's offset, what \
    its previous call answered (`\"0\"` first). Sent again, they are written once (`\"written\": false`).";

/// What statuses mean for `POST /v1/persist/conversations/{id}/replies/{item_id}/parts`.
pub(crate) const APPEND_REPLY_NOTES: &[(u16, &str)] = &[(
    409,
    "Here: an offset beyond the reply's end (`offset_gap`) or where other parts are (`offset_diverged`), both with \
     the reply's `offset`; a stopped reply (`reply_stopped`: stop generating); an ended one (`reply_ended`, with its \
     `status`).",
)];

/// `POST /v1/persist/conversations/{id}/replies/{item_id}/renew`.
pub(crate) const RENEW_REPLY: &str = "While a tool runs, say. It tells of a stop as an append does.";

/// What statuses mean for `POST /v1/persist/conversations/{id}/replies/{item_id}/renew`.
pub(crate) const RENEW_REPLY_NOTES: &[(u16, &str)] = &[(
    409,
    "Here: a stopped reply (`reply_stopped`: stop generating), or an ended one (`reply_ended`, with its `status`).",
)];

/// `POST /v1/persist/conversations/{id}/replies/{item_id}/finish`.
pub(crate) const FINISH_REPLY: &str = "`{\"status\": \"completed\"}` (the default) or `{\"status\": \"incomplete\", \
    \"reason\": …}`, after last `parts` at `offset` if given. Sent again, it answers `\"written\": false`.";

/// What statuses mean for `POST /v1/persist/conversations/{id}/replies/{item_id}/finish`.
pub(crate) const FINISH_REPLY_NOTES: &[(u16, &str)] = &[(
    409,
    "Here: an offset beyond the reply's end (`offset_gap`) or where other parts are (`offset_diverged`), both with \
     the reply's `offset`; a stopped reply (`reply_stopped`); an ended one (`reply_ended`, with its `status`).",
)];

/// `GET /v1/persist/conversations/{id}/replies/{item_id}/signals`.
pub(crate) const REPLY_SIGNALS: &str =
    "One event, then the stream ends: `stop` when a client stopped the reply, or `end` when it ended otherwise.";

/// `GET /v1/persist/openapi.json`.
pub(crate) const GET_OPEN_API_DOCUMENT: &str = "OpenAPI 3.1: every route, the Conversations API's, the extensions and \
    the probes, with its parameters, request body, answers by status (errors as `Error`, the event streams' events) \
    and the bearer key (`security: []` on the probes and on this document). It is generated from the route table the \
    server's router is built from, so a route cannot be served undocumented; the crate's tests drive every route on a \
    real server and validate each answer against it, and CI validates it as OpenAPI 3.1 and runs schemathesis against \
    it (`crates/serve/clients/schemathesis`): what it allows, the server takes, and what it forbids, the server \
    refuses. The refusals only the data can explain (a cursor this server did not answer, a position past the feed's \
    head, recall without an embedding model) are 400s, listed with their reasons in that folder's \
    `schemathesis.toml`. A Rust host gets it from `Server::openapi()`; `docs/http-reference.md` is rendered from it. \
    To generate a client: `openapi-python-client generate --url http://127.0.0.1:8080/v1/persist/openapi.json`.";

/// `GET /health`.
pub(crate) const HEALTH: &str = "For a load balancer: no key, outside the server's request limit.";

/// `GET /ready`.
pub(crate) const READY: &str = "For a load balancer: no key, outside the server's request limit; 503 when the store \
    does not answer a ping within the server's timeout.";
