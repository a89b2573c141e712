//! [`McpServer`] as an MCP server: its capabilities, tools and resources.

use persist_core::read::{ListThreads, ThreadCursor};
use persist_core::{Context, PersistError, Scoped};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};

use crate::args::ReadThreadArgs;
use crate::tools::{self, Call, MAX_PAGE, ToolId};
use crate::{McpServer, render};

/// A thread's resource URI: `persist://threads/{thread_id}`.
const THREAD_URI: &str = "persist://threads/";

impl McpServer {
    /// The store of the call's caller: the context a host put in the HTTP request, else the
    /// server's own.
    fn store(&self, request: &RequestContext<RoleServer>) -> Scoped {
        self.pipeline.scoped(self.caller(request))
    }

    #[cfg(feature = "http")]
    fn caller(&self, request: &RequestContext<RoleServer>) -> Context {
        request
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Context>())
            .cloned()
            .unwrap_or_else(|| self.own_context())
    }

    #[cfg(not(feature = "http"))]
    fn caller(&self, _request: &RequestContext<RoleServer>) -> Context {
        self.own_context()
    }
}

/// What the model is shown of a failed call: a sentence it can act on. A failure of the store
/// itself is logged with its cause, and the model told to try again later.
pub(crate) fn refusal(tool: &str, error: &PersistError) -> String {
    match error {
        PersistError::Backend { .. } | PersistError::MismatchedResult { .. } => {
            tracing::warn!(target: "persist::mcp", tool, %error, "a tool call failed in the store");
            "the store failed to answer (the server's log has the cause): try again later".to_owned()
        }
        PersistError::Temporary { .. } | PersistError::Timeout { .. } => {
            format!("{error}: try again in a moment")
        }
        PersistError::DocumentConflict { resource, actual, .. } => format!(
            "conflict: the working memory of {resource} is at version {actual}, not the version given: read it again \
             (read_memory), then write with version {actual}"
        ),
        other => other.to_string(),
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder().enable_tools().enable_resources().build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("persist", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Conversation memory: the threads of past conversations (list_threads, read_thread), search by \
                 words (search_messages) or by meaning (recall), a working-memory document per user or project \
                 (read_memory, update_memory), and append_message to record a message or a note.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::list().to_vec()))
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        tools::list().iter().find(|tool| tool.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        // An unknown tool is the protocol's error (the client asked for what is not listed);
        // anything wrong with a listed tool's call is the tool's, for the model to read.
        let Some(tool) = ToolId::named(&request.name) else {
            let names = tools::TOOLS.join(", ");
            return Err(ErrorData::invalid_params(
                format!("no tool is named '{}': the tools are {names}", request.name),
                None,
            ));
        };
        let call = Call { store: self.store(&context), embedder: self.embedder.as_ref() };
        let arguments = request.arguments.unwrap_or_default();
        let result = match tools::call(call, tool, arguments).await {
            Ok(answer) => {
                let text = answer.to_string();
                let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
                result.structured_content = Some(answer);
                result
            }
            Err(error) => CallToolResult::error(vec![ContentBlock::text(refusal(&request.name, &error))]),
        };
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let mut list = ListThreads::new().with_limit(MAX_PAGE);
        if let Some(cursor) = request.and_then(|request| request.cursor) {
            list.cursor = Some(
                render::position::<ThreadCursor>(&cursor)
                    .map_err(|error| ErrorData::invalid_params(error.to_string(), None))?,
            );
        }
        let page = self.store(&context).threads(list).await.map_err(|error| failed("resources/list", &error))?;
        let next = page.next_cursor.as_ref().filter(|_| page.has_more).map(render::cursor).transpose();
        let resources = page
            .items
            .iter()
            .map(|thread| {
                let name = thread.title.clone().unwrap_or_else(|| thread.id.as_str().to_owned());
                Resource::new(format!("{THREAD_URI}{}", thread.id.as_str()), name)
                    .with_description(match thread.message_count {
                        1 => format!("Thread {} (1 message)", thread.id.as_str()),
                        n => format!("Thread {} ({n} messages)", thread.id.as_str()),
                    })
                    .with_mime_type("application/json")
            })
            .collect();
        let mut result = ListResourcesResult::with_all_items(resources);
        result.next_cursor = next.map_err(|error| failed("resources/list", &error))?;
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let template = ResourceTemplate::new(format!("{THREAD_URI}{{thread_id}}"), "thread")
            .with_description("A conversation thread: its latest summary and the messages after it, as JSON")
            .with_mime_type("application/json");
        Ok(ListResourceTemplatesResult::with_all_items(vec![template]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let Some(thread) = request.uri.strip_prefix(THREAD_URI).filter(|id| !id.is_empty()) else {
            return Err(ErrorData::resource_not_found(
                format!("no resource at {}: threads are {THREAD_URI}{{thread_id}}", request.uri),
                None,
            ));
        };
        let args = ReadThreadArgs { thread_id: thread.to_owned(), view: None, cursor: None, limit: Some(MAX_PAGE) };
        let view = tools::read_thread(&self.store(&context), args).await.map_err(|error| match error {
            PersistError::NotFound { .. } | PersistError::ThreadDeleted { .. } => {
                ErrorData::resource_not_found(format!("no thread at {}", request.uri), None)
            }
            other => failed("resources/read", &other),
        })?;
        let contents = ResourceContents::TextResourceContents {
            uri: request.uri,
            mime_type: Some("application/json".into()),
            text: view.to_string(),
            meta: None,
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}

/// A request of the protocol (not a tool call) that failed: invalid params for bad input,
/// an internal error (logged) otherwise.
fn failed(method: &str, error: &PersistError) -> ErrorData {
    match error {
        PersistError::InvalidInput { .. } => ErrorData::invalid_params(error.to_string(), None),
        _ => ErrorData::internal_error(refusal(method, error), None),
    }
}
