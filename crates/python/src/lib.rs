//! persist in Python, in process: the native module `persist._persist`.
//!
//! One `Store` class opens a store from its URL (`sqlite:` file by default, `postgres://`,
//! `memory:`) and answers coroutines: each method builds a typed request of the same pipeline
//! the Rust crates use and runs it on persist's runtime (`bridge`), items converted by the
//! Responses converter (`session`). The Python half of the package (`python/persist`) adds the
//! error classes and the OpenAI Agents SDK's session; `_persist.pyi` is the typed surface.
//!
//! Where this differs from the Rust API, it is on purpose: a session is a thread of Responses
//! items (what Python agent frameworks hold), not of typed parts; ids of items are the items'
//! own; reads answer plain JSON values.

/// The allocator of the module's Rust code (feature `mimalloc`, on by default); Python's
/// objects keep the interpreter's.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bridge;
mod errors;
mod feed;
mod graph;
mod live;
mod session;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::feed::{Feed, FeedState};
use crate::live::{Following, ReplyFollower};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use persist::sqlite::Durability;
use persist::working::WriteMemory;
use persist::{
    Context, IdempotencyKey, MessageId, OpenStore, PersistError, Pipeline, ResourceId, Scoped, StoreUrl, TenantId,
    ThreadId,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use crate::bridge::{Reply, awaitable, coroutine, runtime, to_json};
use crate::errors::to_py;

/// How a SQLite file is opened (`Store.open`'s keywords).
#[derive(Clone, Copy, Default)]
struct SqliteSettings {
    busy_timeout: Option<Duration>,
    durability: Option<Durability>,
}

impl SqliteSettings {
    /// Opens the store at `url` with these settings.
    async fn connect(self, url: &StoreUrl) -> persist::Result<OpenStore> {
        url.connect_with(|mut builder| {
            if let Some(timeout) = self.busy_timeout {
                builder = builder.busy_timeout(timeout);
            }
            if let Some(durability) = self.durability {
                builder = builder.durability(durability);
            }
            builder
        })
        .await
    }
}

/// The open store, per process: a child of a fork opens its own on first use.
pub(crate) struct Opened {
    url: StoreUrl,
    sqlite: SqliteSettings,
    store: Mutex<Option<(u32, OpenStore)>>,
    /// Set by `close`: no call reopens the store after it.
    closed: AtomicBool,
}

impl Opened {
    /// The pipeline of this process.
    pub(crate) async fn pipeline(self: Arc<Self>) -> persist::Result<Pipeline> {
        let pid = std::process::id();
        if self.closed.load(Ordering::Acquire) {
            return Err(PersistError::Backend { message: "the store was closed".into(), source: None });
        }
        if let Some((owner, store)) = self.store.lock().unwrap_or_else(PoisonError::into_inner).as_ref()
            && *owner == pid
        {
            return Ok(store.pipeline().clone());
        }
        if matches!(self.url, StoreUrl::Memory) {
            return Err(PersistError::Unsupported {
                what: "a memory: store used after a fork: it lives in the parent process; open the store in the child"
                    .into(),
            });
        }
        let opened = self.sqlite.connect(&self.url).await?;
        let mut slot = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.take() {
            // Another call of this process opened it meanwhile: keep that one.
            Some((owner, store)) if owner == pid => {
                let pipeline = store.pipeline().clone();
                *slot = Some((owner, store));
                Ok(pipeline)
            }
            inherited => {
                // The parent's: its connections and threads are not this process's to close.
                std::mem::forget(inherited);
                let pipeline = opened.pipeline().clone();
                *slot = Some((pid, opened));
                Ok(pipeline)
            }
        }
    }

    /// Closes this process's store; later calls fail.
    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let pid = std::process::id();
        let mine = {
            let mut slot = self.store.lock().unwrap_or_else(PoisonError::into_inner);
            match slot.take() {
                Some((owner, store)) if owner == pid => Some(store),
                inherited => {
                    std::mem::forget(inherited);
                    None
                }
            }
        };
        if let Some(store) = mine {
            store.close().await;
        }
    }
}

/// A persist store; see `_persist.pyi` for each method.
#[pyclass(frozen, module = "persist._persist")]
struct Store {
    opened: Arc<Opened>,
    tenant: Option<TenantId>,
}

impl Store {
    /// Runs `work` with this tenant's handle, in a coroutine.
    fn run<'py, F, Fut>(&self, py: Python<'py>, work: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: FnOnce(Scoped) -> Fut + Send + 'static,
        Fut: Future<Output = persist::Result<Reply>> + Send + 'static,
    {
        let (opened, context) = (self.opened.clone(), Context::new().for_tenant(self.tenant.clone()));
        awaitable(py, async move {
            let pipeline = opened.pipeline().await?;
            work(pipeline.scoped(context)).await
        })
    }
}

impl Store {
    /// A call on one session: `session_id` checked, then `work` with this tenant's handle.
    fn on_session<'py, F, Fut>(&self, py: Python<'py>, session_id: &str, work: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: FnOnce(Scoped, ThreadId) -> Fut + Send + 'static,
        Fut: Future<Output = persist::Result<Reply>> + Send + 'static,
    {
        let made =
            checked(py, ThreadId::new(session_id)).and_then(|thread| self.run(py, move |store| work(store, thread)));
        coroutine(py, made)
    }
}

/// The SQLite settings of `Store.open`'s keywords, checked: a file's directory must exist (persist
/// creates the file, not its folders).
fn sqlite_settings(
    url: &StoreUrl,
    busy_timeout: Option<f64>,
    durability: Option<&str>,
) -> persist::Result<SqliteSettings> {
    let busy_timeout = busy_timeout
        .map(|seconds| {
            Duration::try_from_secs_f64(seconds).map_err(|_| {
                PersistError::invalid("busy_timeout", "busy_timeout must be a number of seconds, 0 or more")
            })
        })
        .transpose()?;
    let durability = durability.map(str::parse::<Durability>).transpose()?;
    url.check_folder()?;
    Ok(SqliteSettings { busy_timeout, durability })
}

/// Whether a store of this process has the SQLite file at `path` open: the package's audit hook
/// refuses `sqlite3.connect` to such a file (two SQLite libraries in one process corrupt it).
#[pyfunction]
fn sqlite_open_in_process(path: std::path::PathBuf) -> bool {
    persist::sqlite::is_open_in_process(&path)
}

/// A value checked in Python's thread, as persist's error when it is not right.
pub(crate) fn checked<T>(py: Python<'_>, value: persist::Result<T>) -> PyResult<T> {
    value.map_err(|error| to_py(py, &error))
}

#[pymethods]
impl Store {
    #[staticmethod]
    #[pyo3(signature = (url = "sqlite:persist.db", *, tenant = None, busy_timeout = None, durability = None))]
    fn open(
        py: Python<'_>,
        url: &str,
        tenant: Option<&str>,
        busy_timeout: Option<f64>,
        durability: Option<&str>,
    ) -> PyResult<Self> {
        let parsed = checked(py, StoreUrl::parse(url))?;
        let tenant = checked(py, tenant.map(TenantId::new).transpose())?;
        let sqlite = checked(py, sqlite_settings(&parsed, busy_timeout, durability))?;
        let runtime = runtime()?;
        let store = py.detach(|| runtime.block_on(sqlite.connect(&parsed)));
        let store = checked(py, store)?;
        let opened = Opened {
            url: parsed,
            sqlite,
            store: Mutex::new(Some((std::process::id(), store))),
            closed: AtomicBool::new(false),
        };
        Ok(Self { opened: Arc::new(opened), tenant })
    }

    /// Records and message paths of this store and tenant, for `persist.langgraph`.
    fn graph_store(&self) -> graph::GraphStore {
        graph::GraphStore { opened: self.opened.clone(), context: Context::new().for_tenant(self.tenant.clone()) }
    }

    fn with_tenant(&self, py: Python<'_>, tenant: &str) -> PyResult<Self> {
        Ok(Self { opened: self.opened.clone(), tenant: Some(checked(py, TenantId::new(tenant))?) })
    }

    #[getter]
    fn url(&self) -> String {
        self.opened.url.to_string()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.opened.closed.load(Ordering::Acquire)
    }

    #[getter]
    fn tenant(&self) -> Option<String> {
        self.tenant.as_ref().map(|tenant| tenant.as_str().to_owned())
    }

    fn __repr__(&self) -> String {
        match &self.tenant {
            Some(tenant) => format!("Store({:?}, tenant={:?})", self.url(), tenant.as_str()),
            None => format!("Store({:?})", self.url()),
        }
    }

    /// Closes the store (every handle of it, every tenant's): SQLite's writer finishes what was
    /// queued and stops, PostgreSQL's connections close. Later calls fail.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let opened = self.opened.clone();
        awaitable(py, async move {
            opened.close().await;
            Ok(Reply::None)
        })
    }

    /// Closes the store as `close` does, blocking the calling thread (the GIL released) until
    /// it is closed: for code that cannot await.
    fn close_blocking(&self, py: Python<'_>) -> PyResult<()> {
        let (opened, runtime) = (self.opened.clone(), runtime()?);
        py.detach(|| runtime.block_on(opened.close()));
        Ok(())
    }

    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let future = py.import("asyncio")?.call_method0("get_running_loop")?.call_method0("create_future")?;
        future.call_method1("set_result", (slf,))?;
        Ok(future)
    }

    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _kind: &Bound<'py, PyAny>,
        _error: &Bound<'py, PyAny>,
        _traceback: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.close(py)
    }

    #[pyo3(signature = (session_id, items, *, idempotency_key = None, parent = None))]
    fn add_items<'py>(
        &self,
        py: Python<'py>,
        session_id: &str,
        items: &Bound<'py, PyAny>,
        idempotency_key: Option<&str>,
        parent: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let prepared = (|| {
            let serde_json::Value::Array(items) = to_json(items, "items")? else {
                return Err(PyTypeError::new_err("items must be a list of items (dicts)"));
            };
            let turn = session::turn_of(items);
            let parent = checked(py, parent.map(MessageId::new).transpose())?;
            Ok((turn, checked(py, idempotency_key.map(IdempotencyKey::new).transpose())?, parent))
        })();
        let (turn, key, parent) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => return coroutine(py, Err(error)),
        };
        self.on_session(py, session_id, move |store, thread| async move {
            if turn.is_empty() {
                return Ok(Reply::None);
            }
            session::add_items(store, thread, turn, key, parent).await.map(|()| Reply::None)
        })
    }

    #[pyo3(signature = (session_id, limit = None))]
    fn get_items<'py>(&self, py: Python<'py>, session_id: &str, limit: Option<i64>) -> PyResult<Bound<'py, PyAny>> {
        self.on_session(py, session_id, move |store, thread| async move {
            Ok(Reply::json(session::get_items(store, thread, limit).await?))
        })
    }

    fn pop_item<'py>(&self, py: Python<'py>, session_id: &str) -> PyResult<Bound<'py, PyAny>> {
        self.on_session(py, session_id, |store, thread| async move {
            Ok(session::pop_item(store, thread).await?.map_or(Reply::None, Reply::json))
        })
    }

    fn clear_session<'py>(&self, py: Python<'py>, session_id: &str) -> PyResult<Bound<'py, PyAny>> {
        self.on_session(py, session_id, move |store, thread| async move {
            session::clear_session(store, thread).await.map(|()| Reply::None)
        })
    }

    fn branches<'py>(&self, py: Python<'py>, session_id: &str) -> PyResult<Bound<'py, PyAny>> {
        self.on_session(py, session_id, |store, thread| async move {
            Ok(Reply::json(session::branches(store, thread).await?))
        })
    }

    fn switch_branch<'py>(&self, py: Python<'py>, session_id: &str, branch_id: &str) -> PyResult<Bound<'py, PyAny>> {
        let branch = match checked(py, MessageId::new(branch_id)) {
            Ok(branch) => branch,
            Err(error) => return coroutine(py, Err(error)),
        };
        self.on_session(py, session_id, move |store, thread| async move {
            session::switch_branch(store, thread, branch).await.map(|()| Reply::None)
        })
    }

    fn branch_from_turn<'py>(&self, py: Python<'py>, session_id: &str, turn: u64) -> PyResult<Bound<'py, PyAny>> {
        self.on_session(py, session_id, move |store, thread| async move {
            session::branch_from_turn(store, thread, turn).await.map(|()| Reply::None)
        })
    }

    fn compacted<'py>(&self, py: Python<'py>, session_id: &str) -> PyResult<Bound<'py, PyAny>> {
        self.on_session(py, session_id, |store, thread| async move {
            Ok(Reply::json(session::compacted(store, thread).await?))
        })
    }

    #[pyo3(signature = (*, limit = 20, cursor = None))]
    fn sessions<'py>(&self, py: Python<'py>, limit: u32, cursor: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
        coroutine(
            py,
            (|| {
                let cursor = match cursor {
                    Some(cursor) => Some(checked(
                        py,
                        serde_json::from_value(serde_json::Value::String(cursor.to_owned()))
                            .map_err(|_| PersistError::invalid("cursor", "is not a cursor sessions() answered")),
                    )?),
                    None => None,
                };
                self.run(
                    py,
                    move |store| async move { Ok(Reply::json(session::sessions(store, limit, cursor).await?)) },
                )
            })(),
        )
    }

    #[pyo3(signature = (text, *, session_id = None, limit = 20))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        text: String,
        session_id: Option<&str>,
        limit: u32,
    ) -> PyResult<Bound<'py, PyAny>> {
        coroutine(
            py,
            (|| {
                let thread = checked(py, session_id.map(ThreadId::new).transpose())?;
                self.run(
                    py,
                    move |store| async move { Ok(Reply::json(session::search(store, text, thread, limit).await?)) },
                )
            })(),
        )
    }

    fn read_memory<'py>(&self, py: Python<'py>, resource: &str) -> PyResult<Bound<'py, PyAny>> {
        coroutine(
            py,
            (|| {
                let resource = checked(py, ResourceId::new(resource))?;
                self.run(py, move |store| async move { Ok(Reply::json(session::read_memory(store, resource).await?)) })
            })(),
        )
    }

    #[pyo3(signature = (resource, *, patch = None, document = None, expected_version = None))]
    fn write_memory<'py>(
        &self,
        py: Python<'py>,
        resource: &str,
        patch: Option<&Bound<'py, PyAny>>,
        document: Option<&Bound<'py, PyAny>>,
        expected_version: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        coroutine(
            py,
            (|| {
                let resource = checked(py, ResourceId::new(resource))?;
                let mut write = match (patch, document) {
                    (Some(patch), None) => {
                        WriteMemory::patch(resource, checked(py, session::object(to_json(patch, "patch")?, "patch"))?)
                    }
                    (None, Some(document)) => WriteMemory::replace(
                        resource,
                        checked(py, session::object(to_json(document, "document")?, "document"))?,
                    ),
                    _ => {
                        return Err(to_py(
                            py,
                            &PersistError::invalid(
                                "patch",
                                "give one of patch (a merge patch) or document (a replacement)",
                            ),
                        ));
                    }
                };
                if let Some(version) = expected_version {
                    write = write.with_expected_version(version);
                }
                self.run(py, move |store| async move { Ok(Reply::json(session::write_memory(store, write).await?)) })
            })(),
        )
    }

    #[pyo3(signature = (session_id, items = None, *, reply_id = None, idempotency_key = None, lease = 30.0))]
    fn start_reply<'py>(
        &self,
        py: Python<'py>,
        session_id: &str,
        items: Option<&Bound<'py, PyAny>>,
        reply_id: Option<&str>,
        idempotency_key: Option<&str>,
        lease: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (turn, reply, key, lease) = match live::start_args(py, items, reply_id, idempotency_key, lease) {
            Ok(prepared) => prepared,
            Err(error) => return coroutine(py, Err(error)),
        };
        self.on_session(py, session_id, move |store, thread| live::start(store, thread, turn, reply, key, lease))
    }

    fn append_reply<'py>(
        &self,
        py: Python<'py>,
        session_id: &str,
        reply_id: &str,
        offset: &str,
        parts: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let prepared = (|| {
            let content = checked(py, live::parts_of(to_json(parts, "parts")?))?;
            Ok((checked(py, MessageId::new(reply_id))?, checked(py, live::offset_of(offset))?, content))
        })();
        match prepared {
            Ok((reply, at, content)) => {
                self.on_session(py, session_id, move |store, thread| live::append(store, thread, reply, at, content))
            }
            Err(error) => coroutine(py, Err(error)),
        }
    }

    fn renew_reply<'py>(&self, py: Python<'py>, session_id: &str, reply_id: &str) -> PyResult<Bound<'py, PyAny>> {
        match checked(py, MessageId::new(reply_id)) {
            Ok(reply) => self.on_session(py, session_id, move |store, thread| live::renew(store, thread, reply)),
            Err(error) => coroutine(py, Err(error)),
        }
    }

    #[pyo3(signature = (session_id, reply_id, *, status = "completed", reason = None, offset = None, parts = None))]
    #[allow(clippy::too_many_arguments)]
    fn finish_reply<'py>(
        &self,
        py: Python<'py>,
        session_id: &str,
        reply_id: &str,
        status: &str,
        reason: Option<String>,
        offset: Option<&str>,
        parts: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let prepared = live::finish_args(py, reply_id, status, offset, parts);
        match prepared {
            Ok((reply, interrupted, last)) => self.on_session(py, session_id, move |store, thread| {
                live::finish(store, thread, reply, interrupted, reason, last)
            }),
            Err(error) => coroutine(py, Err(error)),
        }
    }

    #[pyo3(signature = (session_id, reply_id = None))]
    fn stop_reply<'py>(
        &self,
        py: Python<'py>,
        session_id: &str,
        reply_id: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match checked(py, reply_id.map(MessageId::new).transpose()) {
            Ok(reply) => self.on_session(py, session_id, move |store, thread| live::stop(store, thread, reply)),
            Err(error) => coroutine(py, Err(error)),
        }
    }

    fn watch_stop<'py>(&self, py: Python<'py>, session_id: &str, reply_id: &str) -> PyResult<Bound<'py, PyAny>> {
        match checked(py, MessageId::new(reply_id)) {
            Ok(reply) => self.on_session(py, session_id, move |store, thread| live::watch_stop(store, thread, reply)),
            Err(error) => coroutine(py, Err(error)),
        }
    }

    #[pyo3(signature = (session_id, reply_id, *, offset = "0"))]
    fn follow_reply(&self, py: Python<'_>, session_id: &str, reply_id: &str, offset: &str) -> PyResult<ReplyFollower> {
        let thread = checked(py, ThreadId::new(session_id))?;
        let reply = checked(py, MessageId::new(reply_id))?;
        let from = checked(py, live::offset_of(offset))?;
        let (opened, context) = (self.opened.clone(), Context::new().for_tenant(self.tenant.clone()));
        Ok(ReplyFollower {
            state: Arc::new(tokio::sync::Mutex::new(Following::Unopened { opened, context, thread, reply, from })),
            offset: Arc::new(Mutex::new(from.to_string())),
        })
    }

    #[pyo3(signature = (*, session_id = None, after = 0))]
    fn feed(&self, py: Python<'_>, session_id: Option<&str>, after: u64) -> PyResult<Feed> {
        let thread = checked(py, session_id.map(ThreadId::new).transpose())?;
        let (opened, context) = (self.opened.clone(), Context::new().for_tenant(self.tenant.clone()));
        Ok(Feed {
            state: Arc::new(tokio::sync::Mutex::new(FeedState::Unopened { opened, context, thread, after })),
            position: Arc::new(AtomicU64::new(after)),
        })
    }
}

/// The module `persist._persist`.
#[pymodule]
fn _persist(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<Store>()?;
    module.add_class::<graph::GraphStore>()?;
    module.add_class::<Feed>()?;
    module.add_class::<ReplyFollower>()?;
    module.add_function(wrap_pyfunction!(sqlite_open_in_process, module)?)?;
    Ok(())
}
