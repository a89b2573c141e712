//! A plain tool call (`tools/call` of a listed tool, as every MCP client sends one), answered
//! by persist itself over HTTP and over stdio, with the answer written once: rmcp writes a
//! tool's answer three times (the structured content, its text, and its envelope), and over
//! HTTP builds and spawns a service per stateless request. Anything not plain (request `_meta`,
//! a float or null id, an unknown tool, a batch, any other field) is rmcp's to answer.

use persist_core::Context;
use rmcp::model::JsonObject;
use serde::Deserialize;
use serde_json::Value;

use crate::McpServer;
use crate::handler::refusal;
use crate::tools::{self, Call, ToolId};

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

/// A plain tool call: its JSON-RPC id as sent, the tool, its name and arguments.
pub(crate) struct PlainCall {
    id: Value,
    tool: ToolId,
    name: String,
    arguments: JsonObject,
}

impl PlainCall {
    /// A tool call of a listed tool, its id a string or an integer, or `None`: rmcp's to answer.
    pub(crate) fn parse(message: &[u8]) -> Option<Self> {
        let envelope: Envelope<'_> = serde_json::from_slice(message).ok()?;
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
        Some(Self { id: envelope.id, tool, name, arguments: arguments.unwrap_or_default() })
    }

    /// The call's JSON-RPC answer, run for `caller`, as rmcp writes a tool's result: the
    /// answer's JSON as the one text content and as `structuredContent`, or the refusal as text
    /// with `isError`.
    pub(crate) async fn answer(self, server: &McpServer, caller: Context) -> Vec<u8> {
        let run = Call { store: server.pipeline.scoped(caller), embedder: server.embedder.as_ref() };
        let mut body = Vec::with_capacity(1024);
        body.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
        serde_json::to_writer(&mut body, &self.id).expect("an id is written");
        body.extend_from_slice(br#","result":{"content":[{"type":"text","text":"#);
        match tools::call(run, self.tool, self.arguments).await {
            Ok(value) => {
                let json = value.to_string();
                serde_json::to_writer(&mut body, &json).expect("a string is written");
                body.extend_from_slice(br#"}],"structuredContent":"#);
                body.extend_from_slice(json.as_bytes());
                body.extend_from_slice(br#","isError":false}}"#);
            }
            Err(error) => {
                serde_json::to_writer(&mut body, &refusal(&self.name, &error)).expect("a string is written");
                body.extend_from_slice(br#"}],"isError":true}}"#);
            }
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_clients_tool_call_is_plain() {
        let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                          "params": {"name": "read_thread", "arguments": {"thread_id": "t"}}});
        let plain = PlainCall::parse(call.to_string().as_bytes()).expect("plain");
        assert!(matches!(plain.tool, ToolId::ReadThread));
        assert_eq!((plain.id, plain.name.as_str()), (json!(3), "read_thread"));
        // A line as stdio carries it, its end included.
        assert!(PlainCall::parse(format!("{call}\r\n").as_bytes()).is_some());
    }

    #[test]
    fn anything_else_is_rmcps() {
        let messages = [
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
            json!({"jsonrpc": "2.0", "id": 1.5, "method": "tools/call", "params": {"name": "read_thread"}}),
            json!({"jsonrpc": "2.0", "id": null, "method": "tools/call", "params": {"name": "read_thread"}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "unknown"}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_thread", "_meta": {}}}),
            json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "read_thread"}}),
            json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_thread"}}]),
        ];
        for message in messages {
            assert!(PlainCall::parse(message.to_string().as_bytes()).is_none(), "{message}");
        }
    }
}
