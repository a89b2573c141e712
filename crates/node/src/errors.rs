//! persist's errors as JavaScript errors: the message is `persist:` and a JSON object (`code`,
//! `message`, and for a live reply's conflict `kind`, `replyId`, `offset`), which the
//! package's `errors.js` turns into the class of its kind (`InvalidInput`, `NotFound`,
//! `ReplyStopped`, ...). One place reads persist's error, so every call answers alike.

use persist::{PersistError, ReplyConflict};
use serde_json::{Value, json};

/// The prefix of an error message the package reads as persist's.
pub(crate) const PREFIX: &str = "persist:";

/// `error` as a napi error carrying its code and details.
pub(crate) fn to_js(error: &PersistError) -> napi::Error {
    let mut described = json!({"code": error.code(), "message": error.to_string()});
    if let PersistError::ReplyConflict { message_id, conflict, .. } = error {
        let (kind, offset) = match conflict {
            ReplyConflict::Running => ("running", None),
            ReplyConflict::Stopped => ("stopped", None),
            ReplyConflict::Gap { end, .. } | ReplyConflict::Diverged { end, .. } => ("offset", Some(end.to_string())),
            _ => ("conflict", None),
        };
        described["kind"] = json!(kind);
        described["replyId"] = json!(message_id.as_str());
        described["offset"] = offset.map_or(Value::Null, Value::String);
    }
    napi::Error::from_reason(format!("{PREFIX}{described}"))
}
