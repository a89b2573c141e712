//! The tools: what each is, what it is shown as, and what it does on a tenant's store.

use std::sync::{Arc, OnceLock};

use persist_core::args::{Add, Update};
use persist_core::branch::Branch;
use persist_core::read::{GetThread, ListMessages, ListThreads, ThreadCursor};
use persist_core::search::{Search, SearchCursor, SearchScope};
use persist_core::summary::ReadCompacted;
use persist_core::working::{ReadMemory, WorkingMemory, WriteMemory};
use persist_core::{
    Content, IdempotencyKey, Metadata, PersistArgs, PersistError, ResourceId, Result, Role, Scoped, ThreadId,
};
use persist_recall::{Embedder, Recall, RecallExt};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::args::{
    AppendArgs, AppendRole, ListThreadsArgs, ReadMemoryArgs, ReadThreadArgs, RecallArgs, SearchArgs, UpdateMemoryArgs,
    View,
};
use crate::render;

/// The most items a page of any tool holds.
pub const MAX_PAGE: u32 = 100;

/// The text a page of `read_thread` holds before it ends early (at least one message), in
/// bytes: with [`MAX_TEXT_CHARS`](crate::MAX_TEXT_CHARS) a message, what bounds an answer.
pub const MAX_PAGE_BYTES: usize = 200_000;

/// The tools' names, in the order they are listed.
pub const TOOLS: [&str; 7] =
    ["list_threads", "read_thread", "search_messages", "recall", "read_memory", "update_memory", "append_message"];

/// Every tool, with its description and input schema, in the order of [`TOOLS`]: made once
/// (rmcp asks for a tool's schema on every HTTP request).
pub(crate) fn list() -> &'static [Tool] {
    static LIST: OnceLock<Vec<Tool>> = OnceLock::new();
    LIST.get_or_init(made)
}

fn made() -> Vec<Tool> {
    let reads = || ToolAnnotations::new().read_only(true).open_world(false);
    vec![
        Tool::new(
            "list_threads",
            "List the conversation threads of this memory, most recently written first, a page at a time. \
             Answers each thread's id, title, metadata, message count and times, and next_cursor when more follow.",
            JsonObject::new(),
        )
        .with_input_schema::<ListThreadsArgs>()
        .with_annotations(reads()),
        Tool::new(
            "read_thread",
            "Read a thread's messages, oldest first. view=compacted (default) gives the thread's latest summary \
             and the messages after it (what matters for a long thread); view=full gives every message of its \
             active branch. Paged: pass next_cursor back as cursor.",
            JsonObject::new(),
        )
        .with_input_schema::<ReadThreadArgs>()
        .with_annotations(reads()),
        Tool::new(
            "search_messages",
            "Find messages by their words, newest first: every word must occur (any order, any case), \"a phrase\" \
             in quotes in order, pref* as a prefix. In every thread, or one. Answers each hit's thread, seq, role \
             and a snippet with the words in **bold**.",
            JsonObject::new(),
        )
        .with_input_schema::<SearchArgs>()
        .with_annotations(reads()),
        Tool::new(
            "recall",
            "Recall the earlier messages most like a text, by meaning (embeddings), best first, with a score: \
             in every thread, one thread, or one user's threads. Use it to find what was said before about a topic.",
            JsonObject::new(),
        )
        .with_input_schema::<RecallArgs>()
        .with_annotations(reads()),
        Tool::new(
            "read_memory",
            "Read a resource's working memory (a JSON document an agent keeps about a user or a project, across \
             threads) and its version. A memory never written is null, version 0.",
            JsonObject::new(),
        )
        .with_input_schema::<ReadMemoryArgs>()
        .with_annotations(reads()),
        Tool::new(
            "update_memory",
            "Change a resource's working memory. patch: a JSON merge patch applied to the stored document (keys \
             set, objects merged, null removes a key); concurrent patches all survive. document: a replacement of \
             the whole document; with version (the one read) it is written only if nobody wrote since, else a \
             conflict names the current version: read again and retry. Answers the document and its new version.",
            JsonObject::new(),
        )
        .with_input_schema::<UpdateMemoryArgs>()
        .with_annotations(ToolAnnotations::new().read_only(false).destructive(true).open_world(false)),
        Tool::new(
            "append_message",
            "Append a message or a note to a thread (created when new): its text, who wrote it (assistant by \
             default), its metadata. thread_metadata is merged into the thread's metadata (e.g. {\"user_id\": \
             \"u1\"}, which recall's user_id finds). With an idempotency_key, a retry writes it once.",
            JsonObject::new(),
        )
        .with_input_schema::<AppendArgs>()
        .with_annotations(ToolAnnotations::new().read_only(false).destructive(false).open_world(false)),
    ]
}

/// What a tool call needs: the caller's store and the server's embedder.
pub(crate) struct Call<'a> {
    pub(crate) store: Scoped,
    pub(crate) embedder: Option<&'a Arc<dyn Embedder>>,
}

/// Which tool a call names (one of [`TOOLS`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum ToolId {
    ListThreads,
    ReadThread,
    SearchMessages,
    Recall,
    ReadMemory,
    UpdateMemory,
    AppendMessage,
}

impl ToolId {
    /// Every tool, in the order of [`TOOLS`].
    const ALL: [Self; 7] = [
        Self::ListThreads,
        Self::ReadThread,
        Self::SearchMessages,
        Self::Recall,
        Self::ReadMemory,
        Self::UpdateMemory,
        Self::AppendMessage,
    ];

    /// The tool named `name`, if there is one.
    pub(crate) fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().zip(TOOLS).find_map(|(tool, named)| (named == name).then_some(tool))
    }
}

/// Runs `tool` with `arguments`: its answer, or the error the model is shown.
pub(crate) async fn call(call: Call<'_>, tool: ToolId, arguments: JsonObject) -> Result<Value> {
    match tool {
        ToolId::ListThreads => list_threads(&call.store, parse(arguments)?).await,
        ToolId::ReadThread => read_thread(&call.store, parse(arguments)?).await,
        ToolId::SearchMessages => search(&call.store, parse(arguments)?).await,
        ToolId::Recall => recall(&call, parse(arguments)?).await,
        ToolId::ReadMemory => read_memory(&call.store, parse(arguments)?).await,
        ToolId::UpdateMemory => update_memory(&call.store, parse(arguments)?).await,
        ToolId::AppendMessage => append(&call.store, parse(arguments)?).await,
    }
}

/// A tool's arguments from what the client sent.
fn parse<T: DeserializeOwned>(arguments: JsonObject) -> Result<T> {
    serde_json::from_value(Value::Object(arguments))
        .map_err(|error| PersistError::invalid("arguments", error.to_string()))
}

/// `limit`, or `default`, checked to be within 1 and `max`.
fn limit(limit: Option<u32>, default: u32, max: u32) -> Result<u32> {
    match limit.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n),
        n => Err(PersistError::invalid("limit", format!("is {n}: give 1 to {max}"))),
    }
}

fn thread_id(id: &str) -> Result<ThreadId> {
    ThreadId::new(id)
}

async fn list_threads(store: &Scoped, args: ListThreadsArgs) -> Result<Value> {
    let mut request = ListThreads::new().with_limit(limit(args.limit, 20, MAX_PAGE)?);
    request.cursor = args.cursor.as_deref().map(render::position::<ThreadCursor>).transpose()?;
    let page = store.threads(request).await?;
    let next = page.next_cursor.filter(|_| page.has_more).map(|cursor| render::cursor(&cursor)).transpose()?;
    let threads: Vec<Value> = page.items.iter().map(render::thread).collect();
    Ok(json!({"threads": threads, "next_cursor": next}))
}

pub(crate) async fn read_thread(store: &Scoped, args: ReadThreadArgs) -> Result<Value> {
    let thread = thread_id(&args.thread_id)?;
    let limit = limit(args.limit, 50, MAX_PAGE)?;
    let after: u64 = args.cursor.as_deref().map(render::position).transpose()?.unwrap_or(0);
    let (summary, messages, more) = match args.view.unwrap_or_default() {
        View::Compacted => {
            let view = store.compacted(ReadCompacted::new(thread.clone()).on_branch(Branch::Active)).await?;
            if view.summary.is_none() && view.messages.is_empty() {
                // An empty view: of an empty thread, or of none (not found).
                if store.get_thread(GetThread::new(thread.clone())).await?.is_none() {
                    return Err(PersistError::not_found(&thread, None));
                }
            }
            let mut tail: Vec<_> = view.messages.into_iter().filter(|message| message.seq > after).collect();
            let more = tail.len() > limit as usize;
            tail.truncate(limit as usize);
            (view.summary.map(|summary| summary.content.to_text()), tail, more)
        }
        View::Full => {
            let request = ListMessages::new(thread.clone()).on_branch(Branch::Active).with_limit(limit).after(after);
            let page = store.list(request).await?;
            (None, page.items, page.has_more)
        }
    };
    // A page ends early once it holds MAX_PAGE_BYTES of text (one message at least).
    let (mut answered, mut bytes) = (Vec::with_capacity(messages.len()), 0);
    for message in &messages {
        if bytes >= MAX_PAGE_BYTES {
            break;
        }
        let rendered = render::message(message);
        bytes += rendered["text"].as_str().map_or(0, str::len);
        answered.push(rendered);
    }
    let more = more || answered.len() < messages.len();
    let next = match (more, messages.get(answered.len().wrapping_sub(1))) {
        (true, Some(last)) => Some(render::cursor(&last.seq)?),
        _ => None,
    };
    let messages = answered;
    Ok(json!({"thread_id": thread.as_str(), "summary": summary, "messages": messages, "next_cursor": next}))
}

async fn search(store: &Scoped, args: SearchArgs) -> Result<Value> {
    let scope = args.thread_id.as_deref().map(thread_id).transpose()?.map_or(SearchScope::Tenant, SearchScope::Thread);
    let mut request = Search::new(args.query).with_scope(scope).with_limit(limit(args.limit, 10, 50)?);
    request.cursor = args.cursor.as_deref().map(render::position::<SearchCursor>).transpose()?;
    let page = store.search(request).await?;
    let next = page.next_cursor.filter(|_| page.has_more).map(|cursor| render::cursor(&cursor)).transpose()?;
    let hits: Vec<Value> = page
        .items
        .iter()
        .map(|hit| {
            json!({
                "thread_id": hit.thread_id.as_str(),
                "seq": hit.seq,
                "role": hit.role.as_str(),
                "snippet": hit.snippet.marked("**", "**"),
                "created_at": hit.created_at.to_rfc3339(),
            })
        })
        .collect();
    Ok(json!({"hits": hits, "next_cursor": next}))
}

async fn recall(call: &Call<'_>, args: RecallArgs) -> Result<Value> {
    let Some(embedder) = call.embedder else {
        return Err(PersistError::Unsupported {
            what: "recall on this server: it has no embedder (start it with --embeddings-url, an \
                   OpenAI-compatible embeddings endpoint); search_messages finds messages by their words"
                .into(),
        });
    };
    let mut recall = Recall::new(args.text).with_limit(limit(args.limit, 5, 20)?);
    if let Some(thread) = args.thread_id.as_deref() {
        recall = recall.in_thread(thread_id(thread)?);
    }
    if let Some(user) = args.user_id {
        recall = recall.for_resource("user_id", user);
    }
    let found = call.store.recall(embedder, recall).await?;
    let hits: Vec<Value> = found
        .hits
        .iter()
        .map(|hit| {
            let mut answer = render::message(&hit.message);
            if let Value::Object(fields) = &mut answer {
                fields.insert("thread_id".into(), json!(hit.message.thread_id.as_str()));
                fields.insert("score".into(), json!(hit.score));
            }
            answer
        })
        .collect();
    Ok(json!({"hits": hits}))
}

fn memory(resource: &ResourceId, memory: Option<&WorkingMemory>) -> Value {
    let (document, version) =
        memory.map_or((Value::Null, 0), |memory| (Value::Object(memory.document.as_map().clone()), memory.version));
    json!({"resource": resource.as_str(), "document": document, "version": version})
}

async fn read_memory(store: &Scoped, args: ReadMemoryArgs) -> Result<Value> {
    let resource = ResourceId::new(args.resource)?;
    let stored = store.read_memory(ReadMemory::new(resource.clone())).await?;
    Ok(memory(&resource, stored.as_ref()))
}

async fn update_memory(store: &Scoped, args: UpdateMemoryArgs) -> Result<Value> {
    let resource = ResourceId::new(args.resource)?;
    let mut write = match (args.patch, args.document) {
        (Some(patch), None) => WriteMemory::patch(resource.clone(), Metadata::from(patch)),
        (None, Some(document)) => WriteMemory::replace(resource.clone(), Metadata::from(document)),
        (Some(_), Some(_)) => return Err(PersistError::invalid("arguments", "give patch or document, not both")),
        (None, None) => {
            return Err(PersistError::invalid("arguments", "give patch (a merge patch) or document (a replacement)"));
        }
    };
    if let Some(version) = args.version {
        write = write.with_expected_version(version);
    }
    let written = store.write_memory(write).await?;
    Ok(memory(&resource, Some(&written)))
}

async fn append(store: &Scoped, args: AppendArgs) -> Result<Value> {
    let thread = thread_id(&args.thread_id)?;
    if args.text.trim().is_empty() {
        return Err(PersistError::invalid("text", "is empty: give the message's text"));
    }
    let role = match args.role.unwrap_or_default() {
        AppendRole::User => Role::User,
        AppendRole::Assistant => Role::Assistant,
        AppendRole::System => Role::System,
    };
    let mut add = Add::new(thread.clone(), role, Content::text(args.text));
    if let Some(metadata) = args.metadata {
        add = add.with_metadata(Metadata::from(metadata));
    }
    if let Some(key) = args.idempotency_key {
        add = add.with_idempotency_key(IdempotencyKey::new(key)?);
    }
    // Checked before the message is written: a patch that cannot be written writes nothing.
    let patch = args.thread_metadata.filter(|patch| !patch.is_empty()).map(Metadata::from);
    if let Some(patch) = &patch {
        PersistArgs::from(Update::thread(thread.clone()).with_metadata(patch.clone())).validate()?;
    }
    let added = store.add(add).await?;
    if let Some(patch) = patch {
        store.update(Update::thread(thread.clone()).with_metadata(patch)).await?;
    }
    let message = &added.message;
    Ok(json!({"thread_id": thread.as_str(), "id": message.id.as_str(), "seq": message.seq}))
}
