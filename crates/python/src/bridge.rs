//! Rust futures awaited from asyncio, on a runtime that never crosses a fork.
//!
//! A call makes an asyncio future on the caller's running loop and polls the Rust future once
//! where it was called, the GIL released: what the store answers at once (a SQLite read, which
//! runs on the caller's thread as the Rust crate's direct reads do; a lone write on the
//! caller's lane; the in-memory store) completes there, without waking a thread. A hand-off to
//! another thread and back costs about 100 µs on a 2-core machine, more than such a call
//! takes. Whatever is still waiting (a write queued for the writer, PostgreSQL, a busy file)
//! goes on on persist's runtime while the loop runs, and its answer is handed to the loop's
//! thread through a queue the loop reads ([`Completions`]). A future the caller cancelled is
//! left as it is (a write already sent still completes, as a write through the Agents SDK's
//! `_await_mutation` does).
//!
//! Fork safety: the runtime records the process that made it. A child of `os.fork`
//! (multiprocessing, gunicorn and uvicorn workers) has the parent's memory but none of its
//! threads, so the first call in the child makes a runtime of its own, and the parent's is
//! forgotten, never dropped (dropping would wait on threads the child does not have).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

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

/// A function that makes an answer's Python objects, the GIL held.
pub(crate) type MakePython = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// What a call answers, turned into Python objects once the GIL is held again.
pub(crate) enum Reply {
    /// `None`.
    None,
    /// A JSON value, answered as the Python values `json.loads` would make of its text.
    Json(serde_json::Value),
    /// The end of an async iterator: `StopAsyncIteration` raised.
    End,
    /// Python objects made by a function of the answer's own, once the GIL is held.
    Made(MakePython),
}

impl Reply {
    /// `value` as Python values.
    pub(crate) fn json(value: serde_json::Value) -> Self {
        Self::Json(value)
    }

    pub(crate) fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self {
            Self::None => Ok(py.None()),
            Self::Json(value) => Ok(to_python(py, &value)?.unbind()),
            Self::End => Err(pyo3::exceptions::PyStopAsyncIteration::new_err(())),
            Self::Made(make) => make(py),
        }
    }
}

/// `value` as the Python values `json.loads` makes of its text: dicts (in the map's order),
/// lists, strings, ints, floats, booleans and None. Made directly: writing the text and
/// parsing it again took a third of a `get_items` of twenty items.
pub(crate) fn to_python<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use pyo3::types::{PyDict, PyList};
    use serde_json::Value;
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(flag) => flag.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(number) => match (number.as_i64(), number.as_u64()) {
            (Some(int), _) => int.into_pyobject(py)?.into_any(),
            (None, Some(int)) => int.into_pyobject(py)?.into_any(),
            // A number serde_json holds is finite.
            (None, None) => number.as_f64().unwrap_or_default().into_pyobject(py)?.into_any(),
        },
        Value::String(text) => PyString::new(py, text).into_any(),
        Value::Array(values) => {
            let list = PyList::empty(py);
            for value in values {
                list.append(to_python(py, value)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, value) in map {
                dict.set_item(key_of(py, key), to_python(py, value)?)?;
            }
            dict.into_any()
        }
    })
}

/// A dict key: the keys of the Responses items made once, any other interned as it comes.
fn key_of<'py>(py: Python<'py>, key: &str) -> Bound<'py, PyString> {
    use pyo3::intern;
    match key {
        "type" => intern!(py, "type").clone(),
        "role" => intern!(py, "role").clone(),
        "content" => intern!(py, "content").clone(),
        "text" => intern!(py, "text").clone(),
        "id" => intern!(py, "id").clone(),
        "status" => intern!(py, "status").clone(),
        "annotations" => intern!(py, "annotations").clone(),
        _ => PyString::intern(py, key),
    }
}

/// A Python value as JSON, read as `json.dumps` reads it (subclasses of `dict`, `list`,
/// `tuple`, `str`, `int` and `float` as their base types; `int`, `float`, `bool` and `None`
/// keys as their JSON text), with what JSON cannot hold exactly refused as `InvalidInput`
/// naming the place (`items[0]['content'][1]`): NaN and the infinities, an integer beyond 64
/// bits (a double would change it), a string with a lone surrogate (UTF-8 has no place for
/// it), a value of any other type, and nesting deeper than [`persist::MAX_JSON_DEPTH`].
pub(crate) fn to_json(value: &Bound<'_, PyAny>, what: &'static str) -> PyResult<serde_json::Value> {
    read_json(value, 0).map_err(|refusal| {
        let mut place = String::from(what);
        for step in refusal.path.iter().rev() {
            match step {
                Step::Index(index) => place.push_str(&format!("[{index}]")),
                Step::Key(key) => place.push_str(&format!("[{key:?}]")),
            }
        }
        to_py(value.py(), &persist::PersistError::invalid(what, format!("{place} {}", refusal.reason)))
    })
}

/// Why a value is not JSON, and where (its path built innermost first, as the reading unwinds).
struct Refusal {
    path: Vec<Step>,
    reason: String,
}

enum Step {
    Index(usize),
    Key(String),
}

impl Refusal {
    fn new(reason: impl Into<String>) -> Self {
        Self { path: Vec::new(), reason: reason.into() }
    }

    fn at(mut self, step: Step) -> Self {
        self.path.push(step);
        self
    }
}

/// `value` as JSON (see [`to_json`]).
fn read_json(value: &Bound<'_, PyAny>, depth: usize) -> Result<serde_json::Value, Refusal> {
    use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyTuple};
    use serde_json::Value;
    let nested = |depth: usize| {
        if depth >= persist::MAX_JSON_DEPTH {
            Err(Refusal::new(format!("is nested deeper than {} levels", persist::MAX_JSON_DEPTH)))
        } else {
            Ok(depth + 1)
        }
    };
    let items = |values: &mut dyn Iterator<Item = Bound<'_, PyAny>>, depth: usize| {
        let depth = nested(depth)?;
        values
            .enumerate()
            .map(|(index, value)| read_json(&value, depth).map_err(|refusal| refusal.at(Step::Index(index))))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array)
    };
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(Value::String(text_of(text)?));
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let depth = nested(depth)?;
        let mut map = serde_json::Map::new();
        for (key, value) in dict.iter() {
            let key = key_text(&key)?;
            let value = read_json(&value, depth).map_err(|refusal| refusal.at(Step::Key(key.clone())))?;
            map.insert(key, value);
        }
        return Ok(Value::Object(map));
    }
    if let Ok(list) = value.cast::<PyList>() {
        return items(&mut list.iter(), depth);
    }
    if let Ok(tuple) = value.cast::<PyTuple>() {
        return items(&mut tuple.iter(), depth);
    }
    if value.is_none() {
        return Ok(Value::Null);
    }
    // Before `int`: a bool is an int to Python.
    if let Ok(flag) = value.cast::<PyBool>() {
        return Ok(Value::Bool(flag.is_true()));
    }
    if let Ok(int) = value.cast::<PyInt>() {
        return int_of(int).map(Value::Number);
    }
    if let Ok(float) = value.cast::<PyFloat>() {
        return float_of(float.value()).map(Value::Number);
    }
    let kind = value.get_type().name().map_or_else(|_| "?".to_owned(), |name| name.to_string());
    Err(Refusal::new(format!("holds a value of type `{kind}`, which is not JSON (json.dumps refuses it too)")))
}

fn text_of(text: &Bound<'_, PyString>) -> Result<String, Refusal> {
    text.to_str().map(str::to_owned).map_err(|_| {
        Refusal::new("holds a string with a lone surrogate (U+D800 to U+DFFF), which UTF-8 and JSON text cannot hold")
    })
}

fn int_of(int: &Bound<'_, pyo3::types::PyInt>) -> Result<serde_json::Number, Refusal> {
    if let Ok(int) = int.extract::<i64>() {
        return Ok(int.into());
    }
    if let Ok(int) = int.extract::<u64>() {
        return Ok(int.into());
    }
    Err(Refusal::new(format!(
        "holds the integer {int}, beyond the 64 bits persist keeps exactly (-2**63 to 2**64-1): store it as a string"
    )))
}

fn float_of(float: f64) -> Result<serde_json::Number, Refusal> {
    serde_json::Number::from_f64(float)
        .ok_or_else(|| Refusal::new(format!("holds {float}, and JSON has no NaN or Infinity")))
}

/// A dict's key as `json.dumps` writes it: a string as it is; `True`, `False`, `None`, an int
/// or a float as its JSON text.
fn key_text(key: &Bound<'_, PyAny>) -> Result<String, Refusal> {
    use pyo3::types::{PyBool, PyFloat, PyInt};
    if let Ok(text) = key.cast::<PyString>() {
        return text_of(text);
    }
    if key.is_none() {
        return Ok("null".into());
    }
    if let Ok(flag) = key.cast::<PyBool>() {
        return Ok(if flag.is_true() { "true" } else { "false" }.into());
    }
    if let Ok(int) = key.cast::<PyInt>() {
        return int_of(int).map(|number| number.to_string());
    }
    if let Ok(float) = key.cast::<PyFloat>() {
        return float_of(float.value()).map(|number| number.to_string());
    }
    let kind = key.get_type().name().map_or_else(|_| "?".to_owned(), |name| name.to_string());
    Err(Refusal::new(format!("has a key of type `{kind}`; JSON's keys are strings")))
}

/// Runs `work` on persist's runtime; answers an asyncio future of the caller's running loop.
pub(crate) fn awaitable<'py, F>(py: Python<'py>, work: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = persist::Result<Reply>> + Send + 'static,
{
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    let runtime = runtime()?;
    let mut work = Box::pin(work);
    // The first poll, here: inside the runtime (its timers, its spawns), the GIL released.
    let first = py.detach(|| {
        let _entered = runtime.enter();
        work.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    });
    if let Poll::Ready(answer) = first {
        settle(&future, answer)?;
        return Ok(future);
    }
    let completions = Completions::of(&event_loop)?;
    let future_ref = future.clone().unbind();
    // Polled again at once on the runtime, which registers the task's own waker.
    runtime.spawn(async move {
        let answer = work.await;
        completions.push(future_ref, answer);
    });
    Ok(future)
}

/// Runs `work` to its end on persist's runtime, the GIL released, and answers its value: the
/// calls of Python code that does not await (LangGraph's synchronous `invoke`).
pub(crate) fn blocking<F>(py: Python<'_>, work: F) -> PyResult<Py<PyAny>>
where
    F: Future<Output = persist::Result<Reply>> + Send,
{
    let runtime = runtime()?;
    let answer = py.detach(|| runtime.block_on(work));
    answer.map_err(|error| to_py(py, &error))?.into_py(py)
}

/// A finished call: its future and its answer, to be set on the loop's thread.
type Done = (Py<PyAny>, persist::Result<Reply>);

/// The answers of the calls a loop awaits, handed from persist's threads to the loop's.
///
/// persist's threads never take the GIL: an answer goes into a queue and a byte into a socket
/// the loop reads (`loop.add_reader`), and the loop's thread sets the futures. A thread that
/// took the GIL to call `call_soon_threadsafe` could be caught by the interpreter's
/// finalization (the loop already done with the answer, the process exiting), which ends such
/// a thread with `pthread_exit`: through Rust frames, an abort (seen with eight processes
/// exiting at once).
#[cfg(unix)]
#[pyclass(frozen, module = "persist._persist")]
struct Completions {
    queue: Arc<Queue>,
    /// The loop's end, read by [`drain`](Completions::drain).
    reader: std::os::unix::net::UnixStream,
}

#[cfg(unix)]
struct Queue {
    done: Mutex<Vec<Done>>,
    /// persist's end: a byte written wakes the loop.
    writer: std::os::unix::net::UnixStream,
}

#[cfg(unix)]
impl Queue {
    fn push(&self, future: Py<PyAny>, answer: persist::Result<Reply>) {
        self.done.lock().unwrap_or_else(PoisonError::into_inner).push((future, answer));
        // Full: a wake is pending already. Closed: the loop is gone, no one is waiting.
        let _ = std::io::Write::write(&mut &self.writer, &[1]);
    }
}

#[cfg(unix)]
impl Completions {
    /// The queue of `event_loop`, made (and its socket given to the loop) on first use.
    fn of(event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<Queue>> {
        static LOOPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let py = event_loop.py();
        let loops = LOOPS.get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("weakref")?.call_method0("WeakKeyDictionary")?.unbind())
        })?;
        let loops = loops.bind(py);
        if let Ok(found) = loops.call_method1("get", (event_loop,))?.cast::<Completions>() {
            return Ok(found.get().queue.clone());
        }
        let (reader, writer) = std::os::unix::net::UnixStream::pair()
            .and_then(|(reader, writer)| {
                reader.set_nonblocking(true)?;
                writer.set_nonblocking(true)?;
                Ok((reader, writer))
            })
            .map_err(|error| PyRuntimeError::new_err(format!("persist could not make its wake-up socket: {error}")))?;
        let queue = Arc::new(Queue { done: Mutex::new(Vec::new()), writer });
        let fd = std::os::fd::AsRawFd::as_raw_fd(&reader);
        let completions = Bound::new(py, Completions { queue: queue.clone(), reader })?;
        event_loop.call_method1("add_reader", (fd, completions.getattr("drain")?))?;
        loops.set_item(event_loop, completions)?;
        Ok(queue)
    }
}

#[cfg(unix)]
#[pymethods]
impl Completions {
    /// Sets the futures of the calls that finished (on the loop's thread, when its socket is
    /// readable).
    fn drain(&self, py: Python<'_>) -> PyResult<()> {
        let mut bytes = [0_u8; 256];
        while matches!(std::io::Read::read(&mut &self.reader, &mut bytes), Ok(n) if n > 0) {}
        let done = std::mem::take(&mut *self.queue.done.lock().unwrap_or_else(PoisonError::into_inner));
        for (future, answer) in done {
            settle(future.bind(py), answer)?;
        }
        Ok(())
    }
}

/// Sets `future`'s result or exception from `answer`, unless it is done (cancelled).
fn settle(future: &Bound<'_, PyAny>, answer: persist::Result<Reply>) -> PyResult<()> {
    let py = future.py();
    if future.call_method0("done")?.is_truthy()? {
        return Ok(());
    }
    match answer.map_err(|error| to_py(py, &error)).and_then(|reply| reply.into_py(py)) {
        Ok(value) => future.call_method1("set_result", (value,))?,
        Err(error) => future.call_method1("set_exception", (error.into_value(py),))?,
    };
    Ok(())
}

/// Elsewhere (Windows' proactor loop has no `add_reader`), an answer is handed to the loop by
/// `call_soon_threadsafe`, the GIL taken on persist's thread.
#[cfg(not(unix))]
struct Completions;

#[cfg(not(unix))]
struct Queue {
    event_loop: Py<PyAny>,
}

#[cfg(not(unix))]
impl Completions {
    fn of(event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<Queue>> {
        Ok(Arc::new(Queue { event_loop: event_loop.clone().unbind() }))
    }
}

#[cfg(not(unix))]
impl Queue {
    fn push(&self, future: Py<PyAny>, answer: persist::Result<Reply>) {
        // None when the interpreter is finalizing: no one is waiting then.
        let _ = Python::try_attach(|py| {
            let (ok, value) = match answer.map_err(|error| to_py(py, &error)).and_then(|reply| reply.into_py(py)) {
                Ok(value) => (true, value),
                Err(error) => (false, error.into_value(py).into_any()),
            };
            // A loop closed meanwhile has no one waiting: nothing to tell.
            let _ = self.event_loop.call_method1(py, "call_soon_threadsafe", (complete(py), future, ok, value));
        });
    }
}

/// `persist._persist._complete`: sets a future's result or exception unless it was cancelled.
#[cfg(not(unix))]
fn complete(py: Python<'_>) -> Py<PyAny> {
    static COMPLETE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    COMPLETE
        .get_or_init(py, || wrap_pyfunction!(_complete, py).expect("a function of this module").into_any().unbind())
        .clone_ref(py)
}

#[cfg(not(unix))]
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

/// A method's coroutine: `made`, or, when the method refused its arguments before starting,
/// a future failed with that error, so that it is raised where the call is awaited, as any
/// error of the call (`asyncio.gather` of several calls sees it as the others').
pub(crate) fn coroutine<'py>(py: Python<'py>, made: PyResult<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
    let error = match made {
        Ok(future) => return Ok(future),
        Err(error) => error,
    };
    let future = py.import("asyncio")?.call_method0("get_running_loop")?.call_method0("create_future")?;
    future.call_method1("set_exception", (error.into_value(py),))?;
    Ok(future)
}
