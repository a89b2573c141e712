//! What graph frameworks keep in persist (`persist.langgraph`): records (the checkpoints, the
//! channels' values by version, the pending writes, the long-term store's items) and the
//! messages of a thread as paths of its tree, a checkpoint's messages being the path that ends
//! at its last message.
//!
//! Every method answers a coroutine, or, with `blocking=True`, its value, computed on persist's
//! runtime with the GIL released (the synchronous half of LangGraph's saver calls it so).

use std::sync::Arc;

use persist::args::{AppendTurn, Delete, TurnMessage};
use persist::branch::{Branch, Parent};
use persist::records::{ReadRecords, Record, RecordCursor, RecordWrite, WriteRecords};
use persist::{Content, Context, Message, MessageId, Metadata, PersistError, Role, Scoped, ThreadId, Timestamp};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::bridge::{Reply, awaitable, blocking, coroutine, to_json, to_python};
use crate::{Opened, checked};

/// Records and message paths of one store and tenant; `Store.graph_store()` makes one.
#[pyclass(frozen, module = "persist._persist")]
pub(crate) struct GraphStore {
    pub(crate) opened: Arc<Opened>,
    pub(crate) context: Context,
}

impl GraphStore {
    /// Runs `work` with this tenant's handle: a coroutine, or its value when `wait`.
    fn run<'py, F, Fut>(&self, py: Python<'py>, wait: bool, work: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: FnOnce(Scoped) -> Fut + Send + 'static,
        Fut: Future<Output = persist::Result<Reply>> + Send + 'static,
    {
        let (opened, context) = (self.opened.clone(), self.context.clone());
        let work = async move {
            let pipeline = opened.pipeline().await?;
            work(pipeline.scoped(context)).await
        };
        if wait { Ok(blocking(py, work)?.into_bound(py)) } else { coroutine(py, awaitable(py, work)) }
    }

    /// `made`, or its error raised (when `wait`) or answered as a failed coroutine.
    fn refuse<'py>(py: Python<'py>, wait: bool, error: PyErr) -> PyResult<Bound<'py, PyAny>> {
        if wait { Err(error) } else { coroutine(py, Err(error)) }
    }
}

fn micros(seconds: Option<f64>) -> Option<Timestamp> {
    seconds.map(|seconds| Timestamp::from_micros((seconds * 1e6) as i64))
}

fn seconds(at: Option<Timestamp>) -> Option<f64> {
    at.map(|at| at.as_micros() as f64 / 1e6)
}

/// A change of `write_records`: `("put" | "insert", space, key, value, expires_at)`,
/// `("touch", space, key, expires_at)`, `("delete", space, key)`, `("delete_spaces", prefix)`
/// or `("sweep",)`; expiry in seconds since the epoch, `None` for never.
fn change(item: &Bound<'_, PyAny>) -> PyResult<RecordWrite> {
    let tuple = item.cast::<PyTuple>()?;
    let kind: String = tuple.get_item(0)?.extract()?;
    let text = |at: usize| -> PyResult<String> { tuple.get_item(at)?.extract() };
    Ok(match kind.as_str() {
        "put" | "insert" => {
            let value: Vec<u8> = tuple.get_item(3)?.cast::<PyBytes>()?.as_bytes().to_vec();
            let expires_at = micros(tuple.get_item(4)?.extract()?);
            let write = if kind == "put" {
                RecordWrite::put(text(1)?, text(2)?, value)
            } else {
                RecordWrite::insert(text(1)?, text(2)?, value)
            };
            write.expiring(expires_at)
        }
        "touch" => {
            RecordWrite::Touch { space: text(1)?, key: text(2)?, expires_at: micros(tuple.get_item(3)?.extract()?) }
        }
        "delete" => RecordWrite::delete(text(1)?, text(2)?),
        "delete_spaces" => RecordWrite::delete_spaces(text(1)?),
        "sweep" => RecordWrite::Sweep,
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!("no change of records is called {other:?}")));
        }
    })
}

/// A page of records as `([(space, key, value, expires_at)], cursor)`, the cursor a `(key,
/// space)` tuple when more follow.
fn records_page(py: Python<'_>, page: persist::Page<Record, RecordCursor>) -> PyResult<Bound<'_, PyAny>> {
    let list = PyList::empty(py);
    for record in &page.items {
        let value = PyBytes::new(py, &record.value);
        list.append((record.space.as_str(), record.key.as_str(), value, seconds(record.expires_at)))?;
    }
    let cursor = page.next_cursor.filter(|_| page.has_more).map(|c| (c.key().to_owned(), c.space().to_owned()));
    Ok((list, cursor).into_pyobject(py)?.into_any())
}

/// The keywords of a read of records.
struct ReadArgs {
    space: String,
    prefix: bool,
    keys: Option<Vec<String>>,
    before: Option<String>,
    newest_first: bool,
    limit: u32,
    cursor: Option<(String, String)>,
}

impl ReadArgs {
    /// The read of `space` with the keywords of `read_records` in `keywords`.
    fn of(space: String, keywords: Option<&Bound<'_, PyDict>>) -> PyResult<ReadRecords> {
        let mut args =
            Self { space, prefix: false, keys: None, before: None, newest_first: false, limit: 100, cursor: None };
        for (name, value) in keywords.into_iter().flat_map(|keywords| keywords.iter()) {
            match name.extract::<String>()?.as_str() {
                "prefix" => args.prefix = value.extract()?,
                "keys" => args.keys = value.extract()?,
                "before" => args.before = value.extract()?,
                "newest_first" => args.newest_first = value.extract()?,
                "limit" => args.limit = value.extract()?,
                "cursor" => args.cursor = value.extract()?,
                other => {
                    return Err(pyo3::exceptions::PyTypeError::new_err(format!("read_many: no keyword {other:?}")));
                }
            }
        }
        Ok(args.query())
    }

    fn query(self) -> ReadRecords {
        let mut query = if self.prefix { ReadRecords::prefix(self.space) } else { ReadRecords::space(self.space) };
        query = query.with_keys(self.keys.unwrap_or_default()).with_before(self.before).with_limit(self.limit);
        query = query.with_cursor(self.cursor.map(|(key, space)| RecordCursor::new(key, space)));
        if self.newest_first { query.newest_first() } else { query }
    }
}

/// Every future of `futures` polled together on the caller's task, their outputs in order: a
/// read that answers at once (SQLite's, on the caller's thread) costs no hand-off, and reads
/// that wait (PostgreSQL's) wait together.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// A message of a path: `(id, role, text, metadata)`.
fn path_reply(messages: Vec<Message>) -> Reply {
    Reply::Made(Box::new(move |py| {
        let list = PyList::empty(py);
        for message in &messages {
            let metadata = to_python(py, &serde_json::Value::Object(message.metadata.as_map().clone()))?;
            let text = message.content.to_text();
            list.append((message.id.as_str(), message.role.as_str(), text, metadata))?;
        }
        Ok(list.into_any().unbind())
    }))
}

fn role(name: &str) -> Role {
    match name {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "system" => Role::System,
        "tool" => Role::Tool,
        other => Role::Other(other.into()),
    }
}

#[pymethods]
impl GraphStore {
    /// Applies `writes` in one transaction; answers how many records changed.
    #[pyo3(signature = (writes, *, blocking = false))]
    fn write_records<'py>(
        &self,
        py: Python<'py>,
        writes: &Bound<'py, PyList>,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let writes = match writes.iter().map(|item| change(&item)).collect::<PyResult<Vec<_>>>() {
            Ok(writes) => writes,
            Err(error) => return Self::refuse(py, blocking, error),
        };
        self.run(py, blocking, move |store| async move {
            let written = store.write_records(WriteRecords::new(writes)).await?;
            Ok(Reply::json(written.changed.into()))
        })
    }

    /// A page of records; see `_persist.pyi`.
    #[pyo3(signature = (space, *, prefix = false, keys = None, before = None, newest_first = false, limit = 100,
                        cursor = None, blocking = false))]
    #[allow(clippy::too_many_arguments)]
    fn read_records<'py>(
        &self,
        py: Python<'py>,
        space: String,
        prefix: bool,
        keys: Option<Vec<String>>,
        before: Option<String>,
        newest_first: bool,
        limit: u32,
        cursor: Option<(String, String)>,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let query = ReadArgs { space, prefix, keys, before, newest_first, limit, cursor }.query();
        self.run(py, blocking, move |store| async move {
            let page = store.read_records(query).await?;
            Ok(Reply::Made(Box::new(move |py| Ok(records_page(py, page)?.unbind()))))
        })
    }

    /// Several reads at once (`[(space, {keyword: value})]`, the keywords of `read_records`),
    /// answered in order: on PostgreSQL each on a connection of its own, concurrently.
    #[pyo3(signature = (queries, *, blocking = false))]
    fn read_many<'py>(
        &self,
        py: Python<'py>,
        queries: Vec<(String, Option<Bound<'py, PyDict>>)>,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let made = queries.into_iter().map(|(space, keywords)| ReadArgs::of(space, keywords.as_ref()));
        let queries = match made.collect::<PyResult<Vec<_>>>() {
            Ok(queries) => queries,
            Err(error) => return Self::refuse(py, blocking, error),
        };
        self.run(py, blocking, move |store| async move {
            let reads = queries.into_iter().map(|query| {
                let store = store.clone();
                async move { store.read_records(query).await }
            });
            let pages = join_all(reads.collect()).await.into_iter().collect::<persist::Result<Vec<_>>>()?;
            Ok(Reply::Made(Box::new(move |py| {
                let list = PyList::empty(py);
                for page in pages {
                    list.append(records_page(py, page)?)?;
                }
                Ok(list.into_any().unbind())
            })))
        })
    }

    /// Appends `messages` (`(role, text, metadata)`) to the thread after `parent` (`None`: as a
    /// root of their own), in one turn; answers their ids.
    #[pyo3(signature = (thread_id, parent, messages, *, blocking = false))]
    fn append_path<'py>(
        &self,
        py: Python<'py>,
        thread_id: &str,
        parent: Option<&str>,
        messages: &Bound<'py, PyList>,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let prepared = (|| -> PyResult<(ThreadId, Parent, Vec<TurnMessage>)> {
            let thread = checked(py, ThreadId::new(thread_id))?;
            let parent = match parent {
                Some(id) => Parent::Message(checked(py, MessageId::new(id))?),
                None => Parent::Root,
            };
            let mut turn = Vec::with_capacity(messages.len());
            for item in messages.iter() {
                let (name, text, metadata): (String, String, Bound<'py, PyAny>) = item.extract()?;
                let metadata = checked(py, Metadata::try_from(to_json(&metadata, "metadata")?))?;
                let mut message = TurnMessage::new(role(&name), Content::text(text));
                message.metadata = metadata;
                turn.push(message);
            }
            Ok((thread, parent, turn))
        })();
        let (thread, parent, turn) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => return Self::refuse(py, blocking, error),
        };
        self.run(py, blocking, move |store| async move {
            let appended = store.append_turn(AppendTurn::of(thread, turn).with_parent(parent)).await?;
            let ids: Vec<serde_json::Value> = appended.messages.iter().map(|m| m.id.as_str().into()).collect();
            Ok(Reply::json(ids.into()))
        })
    }

    /// The messages of the path that ends at `head`, oldest first: `(id, role, text, metadata)`.
    #[pyo3(signature = (thread_id, head, *, blocking = false))]
    fn read_path<'py>(
        &self,
        py: Python<'py>,
        thread_id: &str,
        head: &str,
        blocking: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ids = checked(py, ThreadId::new(thread_id)).and_then(|t| Ok((t, checked(py, MessageId::new(head))?)));
        let (thread, head) = match ids {
            Ok(ids) => ids,
            Err(error) => return Self::refuse(py, blocking, error),
        };
        self.run(py, blocking, move |store| async move {
            Ok(path_reply(crate::session::store_path(&store, &thread, Branch::EndingAt(head)).await?))
        })
    }

    /// Erases the thread and its messages for good, its id free again (nothing when there is
    /// none).
    #[pyo3(signature = (thread_id, *, blocking = false))]
    fn delete_thread<'py>(&self, py: Python<'py>, thread_id: &str, blocking: bool) -> PyResult<Bound<'py, PyAny>> {
        let thread = match checked(py, ThreadId::new(thread_id)) {
            Ok(thread) => thread,
            Err(error) => return Self::refuse(py, blocking, error),
        };
        self.run(py, blocking, move |store| async move {
            match store.delete(Delete::purge(thread).freeing_id(true)).await {
                Ok(_) | Err(PersistError::NotFound { .. } | PersistError::ThreadDeleted { .. }) => Ok(Reply::None),
                Err(error) => Err(error),
            }
        })
    }
}
