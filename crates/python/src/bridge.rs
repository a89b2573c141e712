//! Rust futures awaited from asyncio, on a runtime that never crosses a fork.
//!
//! A call makes an asyncio future on the caller's running loop and spawns the Rust future on
//! persist's runtime; when it ends, the answer is handed to the loop with
//! `call_soon_threadsafe`, so the loop (and the GIL) stay free while Rust works. A future the
//! caller cancelled is left as it is (a write already sent still completes, as a write through
//! the Agents SDK's `_await_mutation` does).
//!
//! Fork safety: the runtime records the process that made it. A child of `os.fork`
//! (multiprocessing, gunicorn and uvicorn workers) has the parent's memory but none of its
//! threads, so the first call in the child makes a runtime of its own, and the parent's is
//! forgotten, never dropped (dropping would wait on threads the child does not have).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;
use tokio::runtime::Runtime;

use crate::errors::to_py;

/// The runtime of this process, made on first use (and again in a forked child).
static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// The runtime this process may use.
pub(crate) fn runtime() -> PyResult<Arc<Runtime>> {
    let pid = std::process::id();
    let mut current = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((owner, runtime)) = current.as_ref()
        && *owner == pid
    {
        return Ok(runtime.clone());
    }
    if let Some(inherited) = current.take() {
        // Made by the parent before a fork: its worker threads are not in this process.
        std::mem::forget(inherited);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("persist")
        .build()
        .map_err(|error| PyRuntimeError::new_err(format!("persist could not start its runtime: {error}")))?;
    let runtime = Arc::new(runtime);
    *current = Some((pid, runtime.clone()));
    Ok(runtime)
}

/// What a call answers, turned into Python objects once the GIL is held again.
pub(crate) enum Reply {
    /// `None`.
    None,
    /// A JSON text, answered as Python values (`json.loads`).
    Json(String),
}

impl Reply {
    /// `value` as JSON.
    pub(crate) fn json(value: &serde_json::Value) -> Self {
        Self::Json(value.to_string())
    }

    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self {
            Self::None => Ok(py.None()),
            Self::Json(text) => Ok(json_module(py)?.call_method1(py, "loads", (text,))?),
        }
    }
}

/// Python's `json` module, imported once.
pub(crate) fn json_module(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    static JSON: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    JSON.get_or_try_init(py, || Ok(py.import("json")?.into_any().unbind()))
}

/// A Python value as JSON (`json.dumps`): dicts, lists, strings, numbers, booleans and None.
pub(crate) fn to_json(value: &Bound<'_, PyAny>, what: &'static str) -> PyResult<serde_json::Value> {
    let py = value.py();
    let text = json_module(py)?
        .call_method1(py, "dumps", (value,))
        .map_err(|error| crate::errors::invalid(py, what, &format!("is not JSON: {}", error.value(py))))?;
    let text = text.bind(py).cast::<PyString>()?.to_str()?.to_owned();
    serde_json::from_str(&text).map_err(|error| crate::errors::invalid(py, what, &format!("is not JSON: {error}")))
}

/// Runs `work` on persist's runtime; answers an asyncio future of the caller's running loop.
pub(crate) fn awaitable<'py, F>(py: Python<'py>, work: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = persist::Result<Reply>> + Send + 'static,
{
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    let (loop_ref, future_ref) = (event_loop.unbind(), future.clone().unbind());
    runtime()?.spawn(async move {
        let answer = work.await;
        // None when the interpreter is finalizing: no one is waiting then.
        let _ = Python::try_attach(|py| {
            let (ok, value) = match answer.map_err(|error| to_py(py, &error)).and_then(|reply| reply.into_py(py)) {
                Ok(value) => (true, value),
                Err(error) => (false, error.into_value(py).into_any()),
            };
            // A loop closed meanwhile has no one waiting: nothing to tell.
            let _ = loop_ref.call_method1(py, "call_soon_threadsafe", (complete(py), future_ref, ok, value));
        });
    });
    Ok(future)
}

/// `persist._persist._complete`: sets a future's result or exception unless it was cancelled.
fn complete(py: Python<'_>) -> Py<PyAny> {
    static COMPLETE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    COMPLETE
        .get_or_init(py, || wrap_pyfunction!(_complete, py).expect("a function of this module").into_any().unbind())
        .clone_ref(py)
}

#[pyfunction]
fn _complete(future: &Bound<'_, PyAny>, ok: bool, value: &Bound<'_, PyAny>) -> PyResult<()> {
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    if ok {
        future.call_method1("set_result", (value,))?;
    } else {
        future.call_method1("set_exception", (value,))?;
    }
    Ok(())
}
