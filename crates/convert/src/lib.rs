//! Converters between persist's messages and the shapes apps already hold: OpenAI Responses
//! items, OpenAI Chat Completions messages, Anthropic Messages and Vercel AI SDK `UIMessage`s.
//!
//! Each format has a module with one pair of functions:
//!
//! - `import(&[Value])`: the format's JSON as the [`TurnMessage`]s of a turn, one per element,
//!   ready to write with [`AppendTurn::of`](persist_core::args::AppendTurn::of). Input that is not of
//!   the format (an element that is not an object, a missing `role`, content of the wrong type)
//!   is refused with [`PersistError::InvalidInput`] naming the element and what is wrong.
//! - `export(&[M])`: stored [`Message`]s (or turn messages not yet written: anything
//!   [`Exportable`]) as the format's JSON, ready to send to that provider or UI.
//!
//! | module | format | persist ids | where status shows |
//! |---|---|---|---|
//! | [`openai_responses`] | `input` / `output` items | item `id` (`msg_…`, `fc_…`) | item `status` |
//! | [`openai_chat`] | `messages`, a choice's `message` | none | nowhere |
//! | [`anthropic`] | `messages` (and a response's `id`) | `id` when present | nowhere |
//! | [`vercel_ui`] | `UIMessage[]` | `id` | part `state`, `metadata.persist` |
//!
//! Text, reasoning, tool calls, tool results and files become typed [`Part`]s, in the order the
//! format gives them; each module's docs have its table. Roles go by name both ways: each export
//! says where [`Role::Tool`] messages go in a format without them, and writes any other role the
//! format does not have (a `developer` message for Anthropic) by its name, for the caller to map
//! first.
//!
//! A provider's message id becomes the message id. Providers may repeat ids (a Responses item
//! replayed in a later turn): where that can happen within a thread, give the turn messages ids
//! of your own ([`MessageId::derive`]); the Responses and Anthropic ids are also kept with the
//! other fields, and their exports write those back.
//!
//! # The lossless rule
//!
//! What a format carries that persist's parts, role and status cannot express is kept, not
//! dropped, and its export puts it back: format → import → store → export gives back the same
//! JSON. Two places hold it:
//!
//! - **Blocks persist has no part for** (a refusal, redacted thinking, a web search call, a data
//!   part, a kind added after this code) stay in the content as [`Part::Other`], whole. So does a
//!   block of a known kind that would not write back as it was.
//! - **Everything else** (annotations, `cache_control`, a thinking `signature`,
//!   `providerMetadata`, an item's `status`, a tool call's `arguments` text when it is not compact
//!   JSON, a string where an array of blocks could be) goes in the message's metadata under one
//!   key per format, `persist.convert.<module>` (each module's `METADATA_KEY`), as an object:
//!   `fields` (the message's own fields persist has no place for, as they were), `form` (how the
//!   message was written where the format allows several ways) and `parts` (the same two, per
//!   part of the content, in order). A message that would not write back from its parts is
//!   kept whole, under `form.original`.
//!
//! Export reads only its own format's key, and fills in what it kept without overwriting what
//! the message holds now: a content changed since the import is written as it is, and what was
//! kept for its parts is dropped when the parts are no longer the ones imported. A message
//! imported from one format and exported to another is written from its parts alone.
//!
//! # Status
//!
//! A turn writes complete messages (and a reservation last), so an import never sets
//! [`Status::Interrupted`]: a provider's own status (a Responses item `incomplete`, a Vercel part
//! still `streaming`) is kept with the other fields and written back. On export, a message
//! [`Reserved`](Status::Reserved) or [`Interrupted`](Status::Interrupted) says so where the
//! format has a place; where it has none (Chat, Anthropic) it is written as what was streamed
//! before it stopped, with nothing marking it, except a message not complete that says nothing
//! (a reply interrupted before its first token, a placeholder: [`Content::is_blank`]): where
//! nothing can mark it, it would reach the provider as an empty message, which Chat Completions
//! and Anthropic refuse, so those exports leave it out. Responses (`status`) and Vercel UI
//! (part `state`) keep it, marked.
//!
//! # Example
//!
//! ```
//! use persist::convert::{anthropic, openai_chat};
//! use persist::{Part, Role};
//! use serde_json::json;
//!
//! let chat = [
//!     json!({"role": "user", "content": "What is the weather like in Boston today?"}),
//!     json!({"role": "assistant", "content": null, "tool_calls": [{
//!         "id": "call_abc123",
//!         "type": "function",
//!         "function": {"name": "get_current_weather", "arguments": "{\n\"location\": \"Boston, MA\"\n}"}
//!     }]}),
//!     json!({"role": "tool", "tool_call_id": "call_abc123", "content": "22 degrees and sunny"}),
//! ];
//! // A turn to write with `AppendTurn::of(thread, turn)`.
//! let turn = openai_chat::import(&chat)?;
//! let call = Part::tool_call("call_abc123", "get_current_weather", json!({"location": "Boston, MA"}));
//! assert_eq!(turn[1].content.parts(), [call]);
//! assert_eq!(turn[2].role, Role::Tool);
//!
//! // The same conversation for Claude, whose tool results go in a user message…
//! let claude = anthropic::export(&turn);
//! assert_eq!(
//!     claude[2],
//!     json!({"role": "user", "content": [
//!         {"type": "tool_result", "tool_use_id": "call_abc123", "content": "22 degrees and sunny"}
//!     ]})
//! );
//! // …and back for Chat as it came, the `arguments` text included.
//! assert_eq!(openai_chat::export(&turn), chat);
//! # Ok::<_, persist::PersistError>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use serde_json::{Map, Value};

use persist_core::MessageId;
use persist_core::PersistError;
use persist_core::args::TurnMessage;
use persist_core::{Content, Message, Metadata, Part, Role, Status};

use self::kept::Kept;

pub mod anthropic;
pub mod openai_chat;
pub mod openai_responses;
pub mod vercel_ui;

mod arguments;
#[cfg(test)]
mod fixture;
mod kept;

/// A message as the exporters read it: a stored [`Message`], or a [`TurnMessage`] not yet
/// written.
///
/// # Example
///
/// ```
/// use persist::args::TurnMessage;
/// use persist::convert::{Exportable, openai_chat};
/// use persist::{Content, Role, Status};
///
/// let draft = TurnMessage::new(Role::User, Content::text("Hello!"));
/// assert_eq!(draft.status(), Status::Complete);
/// assert_eq!(openai_chat::export(&[draft])[0]["content"], "Hello!");
/// ```
pub trait Exportable {
    /// The message's id, if it has one yet.
    fn id(&self) -> Option<&MessageId>;
    /// Who wrote it.
    fn role(&self) -> &Role;
    /// Its content.
    fn content(&self) -> &Content;
    /// Its metadata, where imports keep what a format carried beyond the parts.
    fn metadata(&self) -> &Metadata;
    /// Whether it is complete, still streaming, or was cut short.
    fn status(&self) -> Status;
}

impl Exportable for Message {
    fn id(&self) -> Option<&MessageId> {
        Some(&self.id)
    }

    fn role(&self) -> &Role {
        &self.role
    }

    fn content(&self) -> &Content {
        &self.content
    }

    fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn status(&self) -> Status {
        self.status
    }
}

impl Exportable for TurnMessage {
    fn id(&self) -> Option<&MessageId> {
        self.message_id.as_ref()
    }

    fn role(&self) -> &Role {
        &self.role
    }

    fn content(&self) -> &Content {
        &self.content
    }

    fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn status(&self) -> Status {
        self.status
    }
}

/// Whether a message goes into a provider's request: not one cut short (or still streaming)
/// with nothing in it, which the provider would refuse as an empty message.
fn reaches_provider(message: &impl Exportable) -> bool {
    message.status() == Status::Complete || !message.content().is_blank()
}

/// The media type of a file whose type is not known (a URL or a provider's file id).
const UNKNOWN_MEDIA_TYPE: &str = "application/octet-stream";

/// The refusal of element `index` of the input `field` (`messages`, `items`), for `why`.
fn refused(field: &'static str, index: usize, why: String) -> PersistError {
    PersistError::invalid(field, format!("element {index} {why}"))
}

/// Each element of the input `field` imported by `import`: every format's `import`. The first
/// element `import` refuses fails the whole input, named by its index.
fn import_each(
    elements: &[Value],
    field: &'static str,
    import: impl Fn(&Value) -> Result<TurnMessage, String>,
) -> Result<Vec<TurnMessage>, PersistError> {
    elements
        .iter()
        .enumerate()
        .map(|(index, element)| import(element).map_err(|why| refused(field, index, why)))
        .collect()
}

/// The element's `role`.
fn role_of(element: &Map<String, Value>) -> Result<Role, String> {
    let name = element.get("role").and_then(Value::as_str).ok_or("has no `role` string")?;
    Role::new(name).map_err(|error| format!("has a `role` persist does not take: {error}"))
}

/// The element's `id` as a message id, when it has one.
fn message_id_of(element: &Map<String, Value>) -> Result<Option<MessageId>, String> {
    match element.get("id") {
        None => Ok(None),
        Some(Value::String(id)) => MessageId::new(id)
            .map(Some)
            .map_err(|error| format!("has an `id` persist cannot take as a message id: {error}")),
        Some(_) => Err("has an `id` that is not a string".into()),
    }
}

/// The media type a `data:` URL names (`data:image/png;base64,…` is `image/png`).
fn data_url_media_type(uri: &str) -> Option<&str> {
    let rest = uri.strip_prefix("data:")?;
    let end = rest.find([';', ','])?;
    (end > 0).then(|| &rest[..end])
}

/// A message's content where a format takes a plain string for one text block or an array of
/// blocks (Chat, Anthropic): the string when the blocks are one `{"type": "text", "text": …}`
/// alone, `empty` when there are none, the array otherwise; unless `form` (kept at import) says
/// the message had an `array`, or no content at all (`absent`, answered as `None`).
fn string_or_blocks(blocks: Vec<Value>, empty: Value, form: Option<&str>) -> Option<Value> {
    match form {
        Some("absent") if blocks.is_empty() => return None,
        Some("array") => return Some(Value::Array(blocks)),
        _ => {}
    }
    if blocks.is_empty() {
        return Some(empty);
    }
    if let [Value::Object(block)] = blocks.as_slice()
        && block.len() == 2
        && block.get("type").and_then(Value::as_str) == Some("text")
        && let Some(Value::String(text)) = block.get("text")
    {
        return Some(Value::String(text.clone()));
    }
    Some(Value::Array(blocks))
}

/// The form to keep of content read from `content`: what [`string_or_blocks`] would not write
/// back by itself (an array where it writes a string or `empty`, no content at all).
fn content_form(content: Option<&Value>, empty: &Value) -> Option<&'static str> {
    match content {
        None => Some("absent"),
        Some(Value::Array(blocks)) => match string_or_blocks(blocks.clone(), empty.clone(), None) {
            Some(Value::Array(_)) => None,
            _ => Some("array"),
        },
        _ => None,
    }
}

/// The turn message imported from `element`: its `parts`, each with what is kept of it, and
/// `form`, how the element was written; with, kept under `key`, what the element has beyond
/// what `write` writes back from them (or the element whole, when `write` does not write it).
fn imported(
    element: &Value,
    role: Role,
    id: Option<MessageId>,
    (parts, form): (Vec<(Part, Kept)>, Map<String, Value>),
    key: &str,
    write: impl FnOnce(&Role, &[Part], &Kept) -> Option<Value>,
) -> TurnMessage {
    let (parts, kept_parts): (Vec<Part>, Vec<Kept>) = parts.into_iter().unzip();
    let kept = Kept { form, parts: kept_parts, ..Kept::default() };
    let written = write(&role, &parts, &kept);
    let kept = kept.complete(element, written);
    let mut message = TurnMessage::new(role, Content::from_parts(parts)).with_metadata(kept.into_metadata(key));
    message.message_id = id;
    message
}

/// The one value of `values`; `None` when there are more, or none.
fn only(values: Vec<Value>) -> Option<Value> {
    let [value] = <[Value; 1]>::try_from(values).ok()?;
    Some(value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_reply_cut_before_its_first_token_reaches_no_provider() {
        let mut cut = TurnMessage::new(Role::Assistant, Content::placeholder());
        cut.status = Status::Interrupted;
        let mut empty_text = TurnMessage::new(Role::Assistant, Content::text(""));
        empty_text.status = Status::Reserved;
        let question = TurnMessage::new(Role::User, Content::text("Hi"));
        let messages = [question.clone(), cut.clone(), empty_text];
        assert_eq!(anthropic::export(&messages), anthropic::export(std::slice::from_ref(&question)));
        assert_eq!(openai_chat::export(&messages), openai_chat::export(std::slice::from_ref(&question)));
        assert_eq!(openai_responses::export(&messages).len(), 3, "marked with its status");
        assert_eq!(vercel_ui::export(&messages).len(), 3, "a UI shows the interruption");
        // Complete messages go as they are, and so does a cut reply that said something.
        let mut partial = TurnMessage::new(Role::Assistant, Content::text("It is"));
        partial.status = Status::Interrupted;
        let complete_empty = TurnMessage::new(Role::Assistant, Content::placeholder());
        assert_eq!(openai_chat::export(&[partial, complete_empty]).len(), 2);
    }

    #[test]
    fn data_urls_name_their_media_type() {
        assert_eq!(data_url_media_type("data:image/png;base64,iVBOR"), Some("image/png"));
        assert_eq!(data_url_media_type("data:text/plain,hi"), Some("text/plain"));
        assert_eq!(data_url_media_type("data:,hi"), None);
        assert_eq!(data_url_media_type("https://example.invalid/a.png"), None);
    }

    #[test]
    fn one_bare_text_block_is_a_string_unless_the_form_says_otherwise() {
        let text = json!({"type": "text", "text": "hi"});
        assert_eq!(string_or_blocks(vec![text.clone()], json!(null), None), Some(json!("hi")));
        assert_eq!(string_or_blocks(vec![text.clone()], json!(null), Some("array")), Some(json!([text])));
        assert_eq!(string_or_blocks(vec![], json!(null), None), Some(json!(null)));
        assert_eq!(string_or_blocks(vec![], json!(null), Some("absent")), None);
        let marked = json!({"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}});
        assert_eq!(string_or_blocks(vec![marked.clone()], json!([]), None), Some(json!([marked])));
        assert_eq!(content_form(Some(&json!([text])), &json!(null)), Some("array"));
        assert_eq!(content_form(Some(&json!([])), &json!([])), None);
        assert_eq!(content_form(None, &json!(null)), Some("absent"));
    }

    #[test]
    fn ids_and_roles_that_persist_cannot_take_are_refused() {
        let element = |value: Value| value.as_object().cloned().unwrap();
        assert_eq!(message_id_of(&element(json!({"id": "msg_1"}))).unwrap().unwrap().as_str(), "msg_1");
        assert!(message_id_of(&element(json!({"id": ""}))).is_err());
        assert!(message_id_of(&element(json!({"id": 7}))).is_err());
        assert_eq!(role_of(&element(json!({"role": "developer"}))).unwrap().as_str(), "developer");
        assert!(role_of(&element(json!({}))).is_err());
        let error = refused("messages", 3, "has no `role` string".into());
        assert!(
            matches!(error, PersistError::InvalidInput { field: "messages", ref reason } if reason.contains("element 3"))
        );
    }
}
