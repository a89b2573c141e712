//! The server's OpenAPI 3.1 document, generated from the route table the router is built from
//! (see [`routes`](super::routes)): every path and method, its parameters, request body,
//! answers by status, and the schemas of [`schemas`]. Served at [`PATH`] without
//! a key (it holds no data), and returned by [`Server::openapi`](crate::Server::openapi).
//! The HTTP reference (`docs/http-reference.md` and the pages it links) is this document
//! rendered by `tests/serve/reference/`: what it should say, say here, in the route table (its
//! prose in [`route_docs`](super::route_docs)) or in the schemas, then regenerate it (`PERSIST_REGENERATE_DOCS=1 cargo test -p persist-serve
//! --test serve reference`).

use serde_json::{Map, Value, json};

use super::route::{Access, Answer, Param, Route};
use super::schemas::{self, reference};
use super::{reply_schemas, request_schemas};

/// Where the document is served.
pub(crate) const PATH: &str = "/v1/persist/openapi.json";

/// The document's introduction (CommonMark): the rules every route follows.
const DESCRIPTION: &str = "OpenAI's Conversations API on a persist store, and persist's extensions under \
`/v1/persist/`. Generated from the server's route table.

Every route but the probes and this document takes the API's `Authorization: Bearer KEY` and \
answers only for the key's tenant: another tenant's conversation is 404, like one that does not exist.

- An error is `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`: `type` is its kind \
(`invalid_request_error`, `authentication_error`, `permission_error`, `conflict_error`, `rate_limit_error`, \
`server_error`), `param` the field or parameter at fault, `code` the case (`not_found`, \
`unknown_parameter`, …); a live reply's conflicts add a field (see `Error`).
- Every admitted answer carries `x-request-id`: the client's, else a new `req_…`.
- An extension (under `/v1/persist/`) refuses a query parameter it does not take: 400 \
`unknown_parameter`, naming it in `param` (a misspelt `cursor=` is not ignored).
- `limit` is 1 to 100, 20 when absent (recall's is in its body: 1 to 20, 5 when absent).
- A paged extension's answer has `has_more` and `next_cursor`: send `next_cursor` back as \
`after=<next_cursor>`, with the same other parameters, for the next page, until `next_cursor` is \
`null`. A cursor is URL-safe base64 (base64url): paste it into the URL as it is. The Items API \
pages by item id instead: `after` is the previous page's `last_id`.
- `created_at` is in seconds since the epoch, as in the API. Items are the API's items, as \
`GET /v1/conversations/{id}/items` answers them.
- The server writes a JSON object's fields in alphabetical order.";

/// The name of the bearer key's security scheme.
const BEARER: &str = "apiKey";

/// The document of `routes`.
pub(crate) fn document(routes: &[Route]) -> Value {
    let mut paths = Map::new();
    for route in routes {
        let item = paths.entry(route.path).or_insert_with(|| json!({}));
        item[route.method.key()] = operation(route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "persist serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": DESCRIPTION,
        },
        "tags": [
            {"name": "Conversations", "description": "OpenAI's Conversations API: conversations."},
            {"name": "Items", "description": "OpenAI's Conversations API: a conversation's items."},
            {"name": "Persist extensions", "description": "What the API lacks, under `/v1/persist/`."},
            {"name": "Live replies", "description": "A reply written live by any client (start, append parts, renew, \
                                                     finish), followed as the AI SDK's UI message stream and stopped \
                                                     from any instance, under `/v1/persist/`."},
            {"name": "Operations", "description": "Probes and this document: no key."},
        ],
        "paths": paths,
        "components": {
            "schemas": components(),
            "securitySchemes": {BEARER: {
                "type": "http",
                "scheme": "bearer",
                "description": "`Authorization: Bearer KEY`, each key a tenant's (`persist serve` takes them from \
                                `$PERSIST_SERVE_KEYS` or `--keys-file`). A server behind a gateway started with \
                                `--tenant-header NAME` takes no key: the gateway sets the tenant in that header. \
                                One started with `--no-auth` takes none either and serves one tenant.",
            }},
        },
        "security": [{BEARER: []}],
    })
}

fn operation(route: &Route) -> Value {
    let mut parameters: Vec<Value> = path_parameters(route.path);
    parameters.extend(route.query.iter().map(|param| parameter(param, "query")));
    parameters.extend(route.headers.iter().map(|param| parameter(param, "header")));
    let mut responses = Map::new();
    responses.insert("200".into(), answer(route));
    for status in errors(route) {
        let answer = match status {
            204 => json!({"description": "Nothing to answer (no reply is being generated)."}),
            _ => error(status, route.access),
        };
        responses.insert(status.to_string(), answer);
    }
    for (status, note) in route.notes {
        let answer = responses.get_mut(&status.to_string());
        debug_assert!(answer.is_some(), "{} {}: a note on {status}, which it does not answer", route.id, route.path);
        if let Some(answer) = answer {
            answer["description"] = format!("{} {note}", answer["description"].as_str().unwrap_or_default()).into();
        }
    }
    let mut operation = json!({
        "operationId": route.id,
        "summary": route.summary,
        "tags": [route.tag],
        "responses": responses,
    });
    if !route.description.is_empty() {
        operation["description"] = route.description.into();
    }
    if !parameters.is_empty() {
        operation["parameters"] = parameters.into();
    }
    if let Some(body) = route.body {
        let required = components()[body]["required"].as_array().is_some_and(|fields| !fields.is_empty());
        operation["requestBody"] = json!({
            "required": required,
            "content": {"application/json": {"schema": reference(body)}},
        });
    }
    if route.access != Access::Tenant {
        operation["security"] = json!([]);
    }
    operation
}

/// The parameters a path template names (`{id}`, `{item_id}`).
fn path_parameters(path: &str) -> Vec<Value> {
    let names = path.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'));
    names
        .map(|name| {
            let description = match name {
                "id" => "The conversation's id.",
                "item_id" => "The item's id.",
                _ => "",
            };
            json!({"name": name, "in": "path", "required": true, "description": description,
                   "schema": {"type": "string"}})
        })
        .collect()
}

fn parameter(param: &Param, place: &str) -> Value {
    let mut value = json!({
        "name": param.name,
        "in": place,
        "required": param.required,
        "description": param.description,
        "schema": (param.schema)(),
    });
    if value["schema"]["type"] == "array" {
        (value["style"], value["explode"]) = ("form".into(), true.into());
    }
    if value["schema"]["type"] == "object" {
        (value["style"], value["explode"]) = ("deepObject".into(), true.into());
    }
    value
}

/// The headers of an answer: `x-request-id` on every admitted route's.
fn headers(access: Access) -> Value {
    match access {
        Access::Probe => json!({}),
        _ => json!({"x-request-id": {
            "description": "The request's id: the client's `x-request-id`, else a new `req_…`.",
            "schema": {"type": "string"},
        }}),
    }
}

fn answer(route: &Route) -> Value {
    let content = match route.answer {
        Answer::Json(schema) => json!({"application/json": {"schema": reference(schema)}}),
        Answer::Events(kinds) => {
            let events: Vec<Value> =
                kinds.iter().map(|(event, data)| json!({"event": event, "data": reference(data)})).collect();
            // Each event as OpenAPI 3.1 describes one: its fields, the data JSON of its schema.
            let each: Vec<Value> = kinds
                .iter()
                .map(|(event, data)| {
                    json!({
                        "type": "object",
                        "required": ["event", "data"],
                        "properties": {
                            "event": {"const": event},
                            "id": {"type": "string"},
                            "data": {"type": "string", "contentMediaType": "application/json",
                                     "contentSchema": reference(data)},
                        },
                    })
                })
                .collect();
            // The AI SDK's UI message stream ends with a line that is no JSON.
            let mut each = each;
            if kinds.iter().any(|(_, data)| *data == "UiMessageChunk") {
                each.push(json!({"type": "object", "required": ["event", "data"],
                                 "properties": {"event": {"const": "message"}, "id": {"type": "string"},
                                                "data": {"const": "[DONE]"}}}));
            }
            json!({"text/event-stream": {
                "schema": {
                    "oneOf": each,
                    "description": "Server-Sent Events, each with `event:`, a JSON `data:` line and, where it \
                                    resumes, `id:`; a comment every 15 seconds keeps an idle stream open. The \
                                    stream ends when the server shuts down: resume with `Last-Event-ID`.",
                },
                "x-events": events,
            }})
        }
    };
    json!({"description": route.summary, "headers": headers(route.access), "content": content})
}

/// The error statuses of a route: its own, and those any route of its access may answer.
fn errors(route: &Route) -> Vec<u16> {
    let common: &[u16] = match route.access {
        Access::Tenant => &[401, 403, 408, 413, 429, 500, 503],
        Access::Public => &[403, 408, 413, 429],
        Access::Probe => &[],
    };
    let mut statuses: Vec<u16> = route.errors.iter().chain(common).copied().collect();
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

fn error(status: u16, access: Access) -> Value {
    let description = match status {
        400 => "A malformed body, query or item (`invalid_request_error`); nothing was stored.",
        401 => "No key, or a key the server does not know (`authentication_error`).",
        403 => {
            "A layer refused the request, or a server without keys does not answer for its `Host` or \
                `Origin` (`permission_error`)."
        }
        404 => "No such conversation or item for this caller (another tenant's is 404 too).",
        408 => "The body did not arrive within the server's deadline; the connection is closed.",
        409 => {
            "An item id the conversation holds already, a write that lost a race, or a live reply's writer at odds \
             with the store (`conflict_error`; its `code` says which)."
        }
        412 => "The conversation is no longer at the version `If-Match` names; nothing was written.",
        413 => "A body over the server's limit, refused before it is read whole.",
        415 => "A body not sent as `Content-Type: application/json`.",
        422 => "An `Idempotency-Key` used before with a different request.",
        429 => "More requests at once than the server takes (`rate_limit_error`); see `retry-after`.",
        500 => "A stored value that cannot be read, or a failure of the store (`server_error`).",
        503 => "The store is down or slower than the server's timeout (`server_error`); see `retry-after`.",
        _ => "An error.",
    };
    json!({
        "description": description,
        "headers": headers(access),
        "content": {"application/json": {"schema": reference("Error")}},
    })
}

/// Every schema the document names: the API's and the extensions', their request bodies', and
/// the live replies'.
pub(crate) fn components() -> Value {
    let mut all = schemas::all();
    for (name, schema) in request_schemas::all().into_iter().chain(reply_schemas::all()) {
        all[name] = schema;
    }
    all
}
