//! persist's errors as the classes of `persist.errors` (defined in Python, so a class can be
//! both a `PersistError` and a `ValueError` or `LookupError`).

use persist::{PersistError, ReplyConflict};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// The class of `persist.errors` for an error of `code`.
fn class_of(code: &str) -> &'static str {
    match code {
        "invalid_input" => "InvalidInput",
        "not_found" => "NotFound",
        "already_exists"
        | "version_conflict"
        | "document_conflict"
        | "message_complete"
        | "idempotency_key_reused"
        | "reply_conflict" => "Conflict",
        "thread_deleted" | "feed_gap" => "Gone",
        "temporary" | "timeout" => "Unavailable",
        "unsupported" => "Unsupported",
        "rejected" => "Rejected",
        _ => "PersistError",
    }
}

/// The exception of `code` with `message`.
fn raise(py: Python<'_>, code: &str, message: String) -> PyErr {
    raise_as(py, class_of(code), code, message)
}

/// The exception of class `class` (of `persist.errors`), `code` and `message`.
fn raise_as(py: Python<'_>, class: &str, code: &str, message: String) -> PyErr {
    static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let made = ERRORS
        .get_or_try_init(py, || Ok::<_, PyErr>(py.import("persist.errors")?.unbind()))
        .and_then(|module| module.bind(py).getattr(class))
        .and_then(|class| class.call1((message.clone(), code)));
    match made {
        Ok(exception) => PyErr::from_value(exception),
        // `persist.errors` is part of the package; without it, still an error that says what.
        Err(_) => PyRuntimeError::new_err(format!("{code}: {message}")),
    }
}

/// `error` as the Python exception of its kind; a live reply's conflict as the class of its
/// kind (`ReplyRunning`, `ReplyStopped`, `OffsetConflict`), with the reply's id (`reply_id`)
/// and, for an offset, where the reply ends (`offset`).
pub(crate) fn to_py(py: Python<'_>, error: &PersistError) -> PyErr {
    let PersistError::ReplyConflict { message_id, conflict, .. } = error else {
        return raise(py, error.code(), error.to_string());
    };
    let (class, offset) = match conflict {
        ReplyConflict::Running => ("ReplyRunning", None),
        ReplyConflict::Stopped => ("ReplyStopped", None),
        ReplyConflict::Gap { end, .. } | ReplyConflict::Diverged { end, .. } => {
            ("OffsetConflict", Some(end.to_string()))
        }
        _ => ("Conflict", None),
    };
    let exception = raise_as(py, class, error.code(), error.to_string());
    let value = exception.value(py);
    let _ = value.setattr("reply_id", message_id.as_str());
    let _ = value.setattr("offset", offset);
    exception
}
