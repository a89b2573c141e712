//! What the tools answer: messages, threads and hits as JSON a model reads, and the opaque
//! cursors of their pages.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use persist_core::{Message, PersistError, Result, Thread};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The most characters of one message's text an answer holds: a longer text is cut there and
/// marked (`truncated`, and its length in `text_chars`).
pub const MAX_TEXT_CHARS: usize = 20_000;

/// A message as the tools answer it: its text (every text part and tool result, as a model
/// reads it; cut at [`MAX_TEXT_CHARS`]), who wrote it, where it is.
pub(crate) fn message(message: &Message) -> Value {
    let text = message.content.to_text();
    let mut answer = json!({
        "id": message.id.as_str(),
        "seq": message.seq,
        "role": message.role.as_str(),
        "text": text,
        "status": message.status.as_str(),
        "created_at": message.created_at.to_rfc3339(),
    });
    if let Some((cut, _)) = text.char_indices().nth(MAX_TEXT_CHARS) {
        answer["text"] = Value::String(text[..cut].to_owned());
        answer["truncated"] = Value::Bool(true);
        answer["text_chars"] = Value::from(text.chars().count());
    }
    answer
}

/// A thread as `list_threads` answers it.
pub(crate) fn thread(thread: &Thread) -> Value {
    json!({
        "thread_id": thread.id.as_str(),
        "title": thread.title,
        "metadata": Value::Object(thread.metadata.as_map().clone()),
        "messages": thread.message_count,
        "created_at": thread.created_at.to_rfc3339(),
        "updated_at": thread.updated_at.to_rfc3339(),
    })
}

/// A page's cursor as the tools hand it out: opaque, URL-safe, copied back as it is.
pub(crate) fn cursor(position: &impl Serialize) -> Result<String> {
    let json = serde_json::to_vec(position).map_err(|error| PersistError::backend("a cursor", error))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// A cursor handed out by [`cursor`], read back.
pub(crate) fn position<T: DeserializeOwned>(cursor: &str) -> Result<T> {
    let refused =
        || PersistError::invalid("cursor", "is not a next_cursor this server answered: copy it as it was given");
    let json = URL_SAFE_NO_PAD.decode(cursor.trim()).map_err(|_| refused())?;
    serde_json::from_slice(&json).map_err(|_| refused())
}
