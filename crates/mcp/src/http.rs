//! [`McpServer::http_service`]: MCP over streamable HTTP, as a tower service a host mounts.
//!
//! rmcp's stateless service answers every request; a plain tool call (`tools/call` of a listed
//! tool, as every MCP client sends one, in a protocol version with the `initialize` handshake)
//! is answered here directly, with the answer written once: rmcp builds and spawns a service
//! per stateless request, and writes a tool's answer three times (the structured content, its
//! text, and its envelope). Anything else, or anything about a call that is not plain (a session
//! id, request `_meta`, a header it does not know), is rmcp's to answer, its checks and errors
//! unchanged.

use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::{Buf as _, Bytes, BytesMut};
use http::uri::Authority;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use http_body::Body;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use persist_core::Context;
use rmcp::model::{JsonObject, ProtocolVersion};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde::Deserialize;
use serde_json::Value;

use crate::McpServer;
use crate::handler::refusal;
use crate::tools::{self, Call, ToolId};

/// The largest request body read (rmcp's own limit, which answers 413 above it).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// The tower service of [`McpServer::http_service`].
#[derive(Clone)]
pub struct McpHttpService {
    server: McpServer,
    rmcp: StreamableHttpService<McpServer, LocalSessionManager>,
}

impl std::fmt::Debug for McpHttpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpHttpService").field("server", &self.server).finish_non_exhaustive()
    }
}

impl McpServer {
    /// MCP over streamable HTTP: a tower service answering `POST` requests at the path a host
    /// mounts it on (`persist serve` mounts it at `/mcp`).
    ///
    /// It is **stateless**: each request is answered on its own, with a JSON body, and no MCP
    /// session is kept between requests, so a client may reach any of several instances behind
    /// a balancer (the store is what they share). It checks neither `Host` nor `Origin` and
    /// authenticates nobody: the host does both before the request reaches it, and puts the
    /// caller's [`Context`] in the request's extensions (its tenant is
    /// the one every call of the request is confined to); a request without one is served with
    /// the server's own tenant ([`with_tenant`](Self::with_tenant)), so never mount it
    /// unauthenticated on an address others reach.
    pub fn http_service(self) -> McpHttpService {
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(None)
            .with_max_request_body_bytes(MAX_BODY)
            .disable_allowed_hosts();
        let server = self.clone();
        let rmcp =
            StreamableHttpService::new(move || Ok(self.clone()), Arc::new(LocalSessionManager::default()), config);
        McpHttpService { server, rmcp }
    }
}

type Answer = Response<BoxBody<Bytes, Infallible>>;

/// The request's body, at most [`MAX_BODY`] bytes; too large, or failed, rmcp's answer to either.
async fn read<B>(body: B) -> Result<Bytes, Answer>
where
    B: Body,
    B::Error: Display,
{
    let mut body = std::pin::pin!(body);
    let mut collected = BytesMut::new();
    while let Some(frame) = body.as_mut().frame().await {
        let frame = frame.map_err(|error| {
            plain(StatusCode::INTERNAL_SERVER_ERROR, format!("Failed to read request body: {error}"))
        })?;
        let Ok(mut data) = frame.into_data() else { continue };
        if data.remaining() > MAX_BODY.saturating_sub(collected.len()) {
            let text = format!("Payload Too Large: request body exceeds {MAX_BODY} bytes");
            return Err(plain(StatusCode::PAYLOAD_TOO_LARGE, text));
        }
        while data.has_remaining() {
            let chunk = data.chunk();
            let length = chunk.len();
            collected.extend_from_slice(chunk);
            data.advance(length);
        }
    }
    Ok(collected.freeze())
}

/// An answer of `status` with a text body.
fn plain(status: StatusCode, text: String) -> Answer {
    Response::builder().status(status).body(Full::new(Bytes::from(text)).boxed()).expect("a response")
}

impl<B> tower_service::Service<Request<B>> for McpHttpService
where
    B: Body + Send + 'static,
    B::Data: Send + 'static,
    B::Error: Display,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut rmcp = self.rmcp.clone();
        if !may_be_plain(request.method(), request.uri(), request.headers()) {
            return Box::pin(async move { rmcp.call(request).await });
        }
        let server = self.server.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match read(body).await {
                Ok(bytes) => bytes,
                Err(answer) => return Ok(answer),
            };
            if let Some((call, tool)) = plain_call(&bytes) {
                let caller = parts.extensions.get::<Context>().cloned().unwrap_or_else(|| server.own_context());
                return Ok(answer(&server, caller, call, tool).await);
            }
            rmcp.call(Request::from_parts(parts, Full::new(bytes))).await
        })
    }
}

/// Whether a request's line and headers allow a plain tool call: a `POST` naming its host (a
/// `Host` header, or HTTP/2's `:authority`), that accepts JSON and the event stream (no
/// weights), sends JSON, carries no session, and names a protocol version with the `initialize`
/// handshake, or none (rmcp takes none as 2025-03-26).
fn may_be_plain(method: &Method, uri: &Uri, headers: &HeaderMap) -> bool {
    fn only(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
        let mut values = headers.get_all(name).iter();
        values.next().and_then(|value| value.to_str().ok()).filter(|_| values.next().is_none())
    }
    let accepts = only(headers, header::ACCEPT).is_some_and(|accept| {
        let types: Vec<&str> = accept.split(',').map(str::trim).collect();
        types.iter().all(|essence| !essence.contains(';'))
            && types.iter().any(|essence| essence.eq_ignore_ascii_case("application/json"))
            && types.iter().any(|essence| essence.eq_ignore_ascii_case("text/event-stream"))
    });
    let sends_json = only(headers, header::CONTENT_TYPE).is_some_and(|kind| {
        kind.split(';').next().is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
    });
    let version = match headers.get_all("mcp-protocol-version").iter().count() {
        0 => true,
        1 => only(headers, "mcp-protocol-version").is_some_and(|version| {
            version < ProtocolVersion::STANDARD_HEADERS.as_str()
                && ProtocolVersion::KNOWN_VERSIONS.iter().any(|known| known.as_str() == version)
        }),
        _ => false,
    };
    let host = match headers.get_all(header::HOST).iter().count() {
        0 => uri.authority().is_some(),
        _ => only(headers, header::HOST).is_some_and(|host| Authority::try_from(host).is_ok()),
    };
    method == Method::POST && host && accepts && sends_json && version && !headers.contains_key("mcp-session-id")
}

/// A `tools/call` request, as a plain one is written (any other field: not plain).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    jsonrpc: &'a str,
    id: Value,
    method: &'a str,
    params: Params,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    name: String,
    #[serde(default)]
    arguments: Option<JsonObject>,
}

/// A tool call of a listed tool, its id a string or an integer, or `None`: rmcp's to answer.
fn plain_call(body: &[u8]) -> Option<(PlainCall, ToolId)> {
    let envelope: Envelope<'_> = serde_json::from_slice(body).ok()?;
    let id = match &envelope.id {
        Value::String(_) => true,
        Value::Number(number) => number.is_i64() || number.is_u64(),
        _ => false,
    };
    if envelope.jsonrpc != "2.0" || envelope.method != "tools/call" || !id {
        return None;
    }
    let tool = ToolId::named(&envelope.params.name)?;
    let Params { name, arguments } = envelope.params;
    Some((PlainCall { id: envelope.id, name, arguments: arguments.unwrap_or_default() }, tool))
}

/// A plain tool call: its JSON-RPC id as sent, the tool's name and arguments.
struct PlainCall {
    id: Value,
    name: String,
    arguments: JsonObject,
}

/// The call's answer, as rmcp writes a tool's result: the answer's JSON as the one text content
/// and as `structuredContent`, or the refusal as text with `isError`.
async fn answer(server: &McpServer, caller: Context, call: PlainCall, tool: ToolId) -> Answer {
    let run = Call { store: server.pipeline.scoped(caller), embedder: server.embedder.as_ref() };
    let mut body = Vec::with_capacity(1024);
    body.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    serde_json::to_writer(&mut body, &call.id).expect("an id is written");
    body.extend_from_slice(br#","result":{"content":[{"type":"text","text":"#);
    match tools::call(run, tool, call.arguments).await {
        Ok(value) => {
            let json = value.to_string();
            serde_json::to_writer(&mut body, &json).expect("a string is written");
            body.extend_from_slice(br#"}],"structuredContent":"#);
            body.extend_from_slice(json.as_bytes());
            body.extend_from_slice(br#","isError":false}}"#);
        }
        Err(error) => {
            serde_json::to_writer(&mut body, &refusal(&call.name, &error)).expect("a string is written");
            body.extend_from_slice(br#"}],"isError":true}}"#);
        }
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("a response")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(name, value)| (header::HeaderName::from_static(name), value.parse().unwrap())).collect()
    }

    const CLIENT: [(&str, &str); 4] = [
        ("host", "127.0.0.1:8080"),
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-protocol-version", "2025-06-18"),
    ];

    /// What the MCP SDKs send for a tool call is answered here (the HTTP tests check that the
    /// answer is rmcp's, byte for byte as JSON).
    #[test]
    fn a_clients_tool_call_is_plain() {
        let uri: Uri = "/mcp".parse().unwrap();
        assert!(may_be_plain(&Method::POST, &uri, &headers(&CLIENT)));
        assert!(may_be_plain(&Method::POST, &uri, &headers(&CLIENT[..3])), "no version: 2025-03-26");
        let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                          "params": {"name": "read_thread", "arguments": {"thread_id": "t"}}});
        let body = call.to_string();
        let (plain, tool) = plain_call(body.as_bytes()).expect("plain");
        assert!(matches!(tool, ToolId::ReadThread));
        assert_eq!((plain.id, plain.name.as_str()), (json!(3), "read_thread"));
    }

    #[test]
    fn anything_else_is_rmcps() {
        let uri: Uri = "/mcp".parse().unwrap();
        let mut newer = headers(&CLIENT);
        newer.insert("mcp-protocol-version", ProtocolVersion::STANDARD_HEADERS.as_str().parse().unwrap());
        let mut session = headers(&CLIENT);
        session.insert("mcp-session-id", "s".parse().unwrap());
        let weighted = headers(&[CLIENT[0], ("accept", "application/json;q=1, text/event-stream"), CLIENT[2]]);
        for headers in [newer, session, weighted, headers(&CLIENT[1..])] {
            assert!(!may_be_plain(&Method::POST, &uri, &headers), "{headers:?}");
        }
        assert!(!may_be_plain(&Method::GET, &uri, &headers(&CLIENT)));
        let bodies = [
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
            json!({"jsonrpc": "2.0", "id": 1.5, "method": "tools/call", "params": {"name": "read_thread"}}),
            json!({"jsonrpc": "2.0", "id": null, "method": "tools/call", "params": {"name": "read_thread"}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "unknown"}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_thread", "_meta": {}}}),
            json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "read_thread"}}),
            json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_thread"}}]),
        ];
        for body in bodies {
            assert!(plain_call(body.to_string().as_bytes()).is_none(), "{body}");
        }
    }
}
