//! The calls of `NativeStore.call`, by name: each reads its JSON arguments (camelCase, as the
//! package's methods pass them), runs persist's typed requests on the tenant's handle and
//! answers JSON. Times are milliseconds since the epoch, as JavaScript's `Date` takes them.

use persist::args::Update;
use persist::read::{GetThread, ListThreads, ThreadCursor};
use persist::search::{Search, SearchScope};
use persist::working::{ReadMemory, WriteMemory};
use persist::{PersistError, ResourceId, Result, Scoped, Thread, ThreadId};
use serde_json::{Value, json};

use crate::args::{absent_as_none, count_of, metadata_of, millis, optional, required, thread_of};
use crate::{chat, live};

/// A thread as the package answers it.
pub(crate) fn thread_json(thread: &Thread) -> Value {
    json!({
        "id": thread.id.as_str(),
        "title": thread.title,
        "metadata": Value::Object(thread.metadata.as_map().clone()),
        "createdAt": millis(thread.created_at),
        "updatedAt": millis(thread.updated_at),
        "messageCount": thread.message_count,
    })
}

/// Runs the call `op`.
pub(crate) async fn run(store: Scoped, op: &str, args: Value) -> Result<Value> {
    match op {
        "ping" => {
            store.ping().await?;
            Ok(Value::Null)
        }
        "thread" => {
            let thread = store.get_thread(GetThread::new(thread_of(&args)?)).await?;
            Ok(thread.as_ref().map_or(Value::Null, thread_json))
        }
        "threads" => threads(store, &args).await,
        "updateThread" => {
            let mut update = Update::thread(thread_of(&args)?);
            if args.get("title").is_some() {
                update = update.with_title(optional(&args, "title")?.map(str::to_owned));
            }
            if let Some(patch) = metadata_of(&args, "metadata")? {
                update = update.with_metadata(patch);
            }
            store.update(update).await?;
            let thread = store.get_thread(GetThread::new(thread_of(&args)?)).await?;
            Ok(thread.as_ref().map_or(Value::Null, thread_json))
        }
        "deleteThread" => {
            let deleted = absent_as_none(store.delete(persist::args::Delete::thread(thread_of(&args)?)).await)?;
            Ok(json!(deleted.is_some()))
        }
        "messages" => chat::messages(store, thread_of(&args)?).await,
        "appendMessages" => chat::append(store, &args).await,
        "saveMessages" => chat::save(store, &args).await,
        "search" => search(store, &args).await,
        "readMemory" => {
            let resource = ResourceId::new(required(&args, "resource")?)?;
            Ok(store.read_memory(ReadMemory::new(resource)).await?.as_ref().map_or(Value::Null, memory))
        }
        "writeMemory" => write_memory(store, &args).await,
        "startReply" => live::start(store, &args).await,
        "appendReply" => live::append(store, &args).await,
        "renewReply" => live::renew(store, &args).await,
        "finishReply" => live::finish(store, &args).await,
        "stopReply" => live::stop(store, &args).await,
        "watchStop" => live::watch_stop(store, &args).await,
        "runningReply" => live::running_json(store, &args).await,
        other => Err(PersistError::invalid("op", format!("no call is named {other:?}"))),
    }
}

/// A page of the tenant's threads, most recently written first.
async fn threads(store: Scoped, args: &Value) -> Result<Value> {
    let mut request = ListThreads::new();
    if let Some(limit) = count_of(args, "limit", u64::from(persist::read::MAX_PAGE_LIMIT))? {
        request = request.with_limit(limit as u32);
    }
    if let Some(cursor) = optional(args, "cursor")? {
        let cursor: ThreadCursor = serde_json::from_str(cursor)
            .map_err(|_| PersistError::invalid("cursor", "cursor must be a nextCursor this store answered"))?;
        request.cursor = Some(cursor);
    }
    let page = store.threads(request).await?;
    let threads: Vec<Value> = page.items.iter().map(thread_json).collect();
    let next = match page.next_cursor.filter(|_| page.has_more) {
        Some(cursor) => Value::String(
            serde_json::to_string(&cursor).map_err(|error| PersistError::backend("a thread cursor", error))?,
        ),
        None => Value::Null,
    };
    Ok(json!({"threads": threads, "nextCursor": next}))
}

/// Messages matching `text`, in one thread or the tenant's.
async fn search(store: Scoped, args: &Value) -> Result<Value> {
    let text = required(args, "text")?.to_owned();
    let scope =
        optional(args, "threadId")?.map(ThreadId::new).transpose()?.map_or(SearchScope::Tenant, SearchScope::Thread);
    let mut request = Search::new(text).with_scope(scope);
    if let Some(limit) = count_of(args, "limit", u64::from(persist::read::MAX_PAGE_LIMIT))? {
        request = request.with_limit(limit as u32);
    }
    let page = store.search(request).await?;
    let hits: Vec<Value> = page
        .items
        .iter()
        .map(|hit| {
            json!({
                "threadId": hit.thread_id.as_str(),
                "messageId": hit.message_id.as_str(),
                "seq": hit.seq,
                "role": hit.role.as_str(),
                "snippet": hit.snippet.marked("**", "**"),
                "createdAt": millis(hit.created_at),
            })
        })
        .collect();
    Ok(Value::Array(hits))
}

fn memory(memory: &persist::working::WorkingMemory) -> Value {
    json!({"document": Value::Object(memory.document.as_map().clone()), "version": memory.version})
}

/// A merge patch or a replacement of a resource's working memory.
async fn write_memory(store: Scoped, args: &Value) -> Result<Value> {
    let resource = ResourceId::new(required(args, "resource")?)?;
    let mut write = match (metadata_of(args, "patch")?, metadata_of(args, "document")?) {
        (Some(patch), None) => WriteMemory::patch(resource, patch),
        (None, Some(document)) => WriteMemory::replace(resource, document),
        _ => {
            return Err(PersistError::invalid(
                "patch",
                "give one of patch (a merge patch) or document (a replacement)",
            ));
        }
    };
    match args.get("expectedVersion") {
        None | Some(Value::Null) => {}
        Some(value) => {
            let version = value
                .as_u64()
                .ok_or_else(|| PersistError::invalid("expectedVersion", "expectedVersion must be a whole number"))?;
            write = write.with_expected_version(version);
        }
    }
    Ok(memory(&store.write_memory(write).await?))
}
