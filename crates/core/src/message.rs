//! The stored data: [`Message`], [`Thread`] and their parts.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::PersistError;
use crate::id::{IdempotencyKey, MessageId, TenantId, ThreadId};
use crate::json;

/// Who wrote a message.
///
/// Serialized in lowercase (`"user"`, `"assistant"`, …). Roles outside the four common ones
/// are kept as [`Role::Other`], so a provider's new role never fails a write.
///
/// # Example
///
/// ```
/// use persist::Role;
///
/// assert_eq!(Role::new("assistant").unwrap(), Role::Assistant);
/// assert_eq!(Role::new("critic").unwrap().as_str(), "critic");
/// assert!(Role::new("").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// The human (or calling system) side of the conversation.
    User,
    /// The model's replies.
    Assistant,
    /// Instructions for the model.
    System,
    /// Tool calls' results.
    Tool,
    /// Any other role, by name.
    Other(Arc<str>),
}

/// The longest role name accepted, in bytes.
pub const MAX_ROLE_BYTES: usize = 64;

impl Role {
    /// Parses a role name; the four common names map to their variants.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] for an empty name, one longer than [`MAX_ROLE_BYTES`]
    /// or one containing control characters.
    pub fn new(name: &str) -> Result<Self, PersistError> {
        Ok(match name {
            "user" => Self::User,
            "assistant" => Self::Assistant,
            "system" => Self::System,
            "tool" => Self::Tool,
            other => {
                if other.is_empty() || other.len() > MAX_ROLE_BYTES || other.chars().any(char::is_control) {
                    return Err(PersistError::invalid(
                        "role",
                        format!("must be 1 to {MAX_ROLE_BYTES} bytes without control characters"),
                    ));
                }
                Self::Other(Arc::from(other))
            }
        })
    }

    /// The role's name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::System => "system",
            Self::Tool => "tool",
            Self::Other(name) => name,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <Cow<'de, str>>::deserialize(deserializer)?;
        Self::new(&raw).map_err(serde::de::Error::custom)
    }
}

/// A message's content: any JSON value, usually an array of content blocks.
///
/// Held as compact JSON text behind an `Arc`: cloning is a reference-count increment (layers,
/// and tower's retry, which clones requests, keep copies for free), a stored message costs
/// little more than its JSON bytes, [`json_len`](Self::json_len) is free, and backends store
/// and load the text without converting it. [`to_value`](Self::to_value) parses it when you
/// need the tree. A reservation holds the [placeholder](Self::placeholder) `[]`.
///
/// # Example
///
/// ```
/// use persist::Content;
///
/// let c = Content::text("hello");
/// assert_eq!(c.as_json(), r#"[{"text":"hello","type":"text"}]"#);
/// assert_eq!(c.to_value()[0]["text"], "hello");
/// assert_eq!(c.to_text(), "hello");
/// assert!(Content::placeholder().is_placeholder());
/// ```
#[derive(Clone)]
pub struct Content(Repr);

#[derive(Clone)]
enum Repr {
    /// Compact JSON text, readable back by `serde_json`.
    Json(Arc<str>),
    /// A value nested deeper than a JSON parser reads back (see [`MAX_JSON_DEPTH`]): kept as
    /// its JSON text and depth, so it can be inspected and refused with both; every backend
    /// refuses to store it. (Held as a value, it could be too deep to walk or even drop.)
    Deep(Arc<Deep>),
}

/// What a [`Repr::Deep`] keeps: behind one thin pointer, so a `Content` (held inline by every
/// message) is no larger for it.
struct Deep {
    text: String,
    depth: usize,
}

impl Content {
    /// Wraps any JSON value (serialized once, here).
    ///
    /// A value nested deeper than [`MAX_JSON_DEPTH`] is accepted here, however deep, and
    /// refused by [`check_depth`](Self::check_depth) (so by every backend) as `InvalidInput`.
    pub fn new(value: Value) -> Self {
        if json::deeper_than(&value, MAX_JSON_DEPTH) {
            let deep = Repr::Deep(Arc::new(Deep { text: json::to_string(&value), depth: json::depth(&value) }));
            json::drop_flat(value);
            return Self(deep);
        }
        Self(Repr::Json(Arc::from(value.to_string())))
    }

    /// Content from JSON text, checked: it must parse, and is kept as given (so its
    /// [`json_len`](Self::json_len) counts any whitespace it has). Backends read stored content
    /// with this.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming `content` when the text is not JSON or is nested deeper than
    /// [`MAX_JSON_DEPTH`].
    pub fn from_json(text: impl Into<String>) -> Result<Self, PersistError> {
        let text = text.into();
        serde_json::from_str::<Value>(&text)
            .map_err(|e| PersistError::invalid("content", format!("is not JSON: {e}")))?;
        check_depth("content", text_depth(&text))?;
        Ok(Self(Repr::Json(Arc::from(text))))
    }

    /// One text block: `[{"type": "text", "text": text}]`.
    pub fn text(text: impl AsRef<str>) -> Self {
        let text = text.as_ref();
        let mut json = String::with_capacity(text.len() + 32);
        // Keys in the order `serde_json` writes them (sorted), so the text is the one
        // `Content::new(json!([{"type": "text", "text": …}]))` holds.
        json.push_str(r#"[{"text":"#);
        json::push_string(&mut json, text);
        json.push_str(r#","type":"text"}]"#);
        Self(Repr::Json(Arc::from(json)))
    }

    /// The placeholder content of a reservation: an empty array.
    pub fn placeholder() -> Self {
        static PLACEHOLDER: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("[]"));
        Self(Repr::Json(Arc::clone(&PLACEHOLDER)))
    }

    /// Whether this is the empty-array placeholder.
    pub fn is_placeholder(&self) -> bool {
        matches!(&self.0, Repr::Json(text) if text.trim() == "[]")
    }

    /// The content as compact JSON text (as given, for [`from_json`](Self::from_json)).
    pub fn as_json(&self) -> Cow<'_, str> {
        match &self.0 {
            Repr::Json(text) => Cow::Borrowed(text),
            Repr::Deep(deep) => Cow::Borrowed(&deep.text),
        }
    }

    /// The JSON value, parsed from the text.
    ///
    /// Content nested deeper than [`MAX_JSON_DEPTH`] (which no backend stores) reads as
    /// `null`: no JSON parser reads it back; [`as_json`](Self::as_json) has its text.
    pub fn to_value(&self) -> Value {
        match &self.0 {
            // Checked when the content was built: nested at most `MAX_JSON_DEPTH` deep, so
            // `serde_json` reads it back.
            Repr::Json(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            Repr::Deep(_) => Value::Null,
        }
    }

    /// Size of the content as JSON text, in bytes.
    pub fn json_len(&self) -> usize {
        match &self.0 {
            Repr::Json(text) => text.len(),
            Repr::Deep(deep) => deep.text.len(),
        }
    }

    /// Nesting depth: `0` for a scalar, `+1` per array or object level.
    pub fn depth(&self) -> usize {
        match &self.0 {
            Repr::Json(text) => text_depth(text),
            Repr::Deep(deep) => deep.depth,
        }
    }

    /// Whether a string anywhere in the content holds U+0000, which PostgreSQL cannot store and
    /// [`PersistArgs::validate`](crate::PersistArgs::validate) therefore refuses everywhere.
    pub fn has_nul(&self) -> bool {
        match &self.0 {
            Repr::Json(text) => json::text_has_nul(text),
            Repr::Deep(deep) => json::text_has_nul(&deep.text),
        }
    }

    /// Checks that the content can be stored and read back as JSON: nested at most
    /// [`MAX_JSON_DEPTH`] deep (JSON parsers, `serde_json` included, refuse deeper documents).
    /// Backends that serialize call this before writing.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming `content`.
    pub fn check_depth(&self) -> Result<(), PersistError> {
        match &self.0 {
            // Built only when nested at most `MAX_JSON_DEPTH` deep.
            Repr::Json(_) => Ok(()),
            Repr::Deep(deep) => check_depth("content", deep.depth),
        }
    }

    /// This content's blocks followed by `tail`'s: what an appending
    /// [`UpdateContent`](crate::args::UpdateContent) stores. When this content ends with a
    /// text block and `tail` starts with one (`{"type": "text", "text": …}` and nothing else),
    /// the two texts are joined into one block, so a reply streamed token by token stays one
    /// text block. The placeholder `[]` followed by `tail` is `tail`.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] (`content`) when either is not a JSON array of blocks.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::Content;
    ///
    /// let joined = Content::text("Hel").appended(&Content::text("lo")).unwrap();
    /// assert_eq!(joined, Content::text("Hello"));
    /// assert_eq!(Content::placeholder().appended(&Content::text("hi")).unwrap(), Content::text("hi"));
    /// assert!(Content::new(serde_json::json!("plain")).appended(&Content::text("x")).is_err());
    /// ```
    pub fn appended(&self, tail: &Content) -> Result<Content, PersistError> {
        Content::joined([self, tail])
    }

    /// Contents joined one after the other, as [`appended`](Self::appended) joins two; one
    /// serialization at the end, however many parts (a stream's tokens held back together).
    ///
    /// # Errors
    ///
    /// As [`appended`](Self::appended).
    pub fn joined<'a>(parts: impl IntoIterator<Item = &'a Content>) -> Result<Content, PersistError> {
        let mut blocks: Vec<Value> = Vec::new();
        for part in parts {
            let Value::Array(more) = part.to_value() else {
                return Err(PersistError::invalid(
                    "content",
                    "appending joins content blocks: the stored content and the update must both be JSON arrays",
                ));
            };
            for (i, block) in more.into_iter().enumerate() {
                // Only where two parts meet: a part's own blocks stay as they are.
                if i == 0
                    && let Some(next) = text_of_block(&block)
                    && let Some(text) = blocks.last_mut().and_then(text_of_block_mut)
                {
                    text.push_str(next);
                    continue;
                }
                blocks.push(block);
            }
        }
        Ok(Content::new(Value::Array(blocks)))
    }

    /// The concatenated `text` of every `{"type": "text"}` block (or the string itself when
    /// the content is a plain JSON string). Handy for printing and indexing.
    pub fn to_text(&self) -> String {
        match self.to_value() {
            Value::String(s) => s,
            Value::Array(blocks) => {
                blocks.iter().filter_map(|block| block.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
            }
            _ => String::new(),
        }
    }
}

/// The text of a block that is a text block and nothing else: `{"type": "text", "text": …}`.
fn text_of_block(block: &Value) -> Option<&str> {
    let map = block.as_object()?;
    (map.len() == 2 && map.get("type")?.as_str()? == "text").then(|| map.get("text")?.as_str())?
}

/// The text of a text block, to add to.
fn text_of_block_mut(block: &mut Value) -> Option<&mut String> {
    text_of_block(block)?;
    match block.get_mut("text") {
        Some(Value::String(text)) => Some(text),
        _ => None,
    }
}

/// Equal JSON values, numbers compared by value (`1e2` equals `100`, `1` equals `1.0`), as
/// every backend compares a repeated write with the stored one.
impl PartialEq for Content {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Repr::Json(a), Repr::Json(b)) => a == b || json::eq(&self.to_value(), &other.to_value()),
            (Repr::Deep(a), Repr::Deep(b)) => a.text == b.text,
            _ => false,
        }
    }
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Content").field(&self.as_json()).finish()
    }
}

impl Serialize for Content {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Json(_) => self.to_value().serialize(serializer),
            Repr::Deep(deep) => Err(serde::ser::Error::custom(format!(
                "content nested {} deep cannot be serialized, the limit is {MAX_JSON_DEPTH}",
                deep.depth
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self::new)
    }
}

impl From<Value> for Content {
    fn from(value: Value) -> Self {
        Self::new(value)
    }
}

/// Nesting depth of JSON text: the deepest `[`/`{` outside strings.
fn text_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Metadata attached to a message or a thread: a JSON object.
///
/// Cloning is cheap (reference-counted). Only objects are accepted, so "metadata that is not
/// an object" is refused when the value is built, not when it reaches a backend.
///
/// # Example
///
/// ```
/// use persist::Metadata;
/// use serde_json::json;
///
/// let mut meta = Metadata::new().with("model", json!("m-1")).with("tokens", json!(12));
/// meta.merge(&Metadata::new().with("tokens", json!(null)).with("done", json!(true)));
/// assert_eq!(meta.get("tokens"), None);
/// assert_eq!(meta.get("done"), Some(&json!(true)));
/// assert!(Metadata::try_from(json!([1, 2])).is_err());
/// ```
#[derive(Clone, Serialize)]
#[serde(transparent)]
pub struct Metadata(Arc<Map<String, Value>>);

/// Equal objects, numbers compared by value (see [`Content`]'s equality).
impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || json::map_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written without recursion: a value may be nested too deep for `Value`'s own `Debug`.
        let mut text = String::from("{");
        for (index, (key, value)) in self.0.iter().enumerate() {
            if index > 0 {
                text.push(',');
            }
            json::push_string(&mut text, key);
            text.push(':');
            text.push_str(&json::to_string(value));
        }
        text.push('}');
        f.debug_tuple("Metadata").field(&format_args!("{text}")).finish()
    }
}

impl Drop for Metadata {
    fn drop(&mut self) {
        // The last handle drops the map: a value too deep for `Value`'s recursive drop is taken
        // apart one node at a time first. A flat map costs one look at each value.
        if let Some(map) = Arc::get_mut(&mut self.0) {
            json::drop_deep_values(map, MAX_JSON_DEPTH);
        }
    }
}

impl Default for Metadata {
    fn default() -> Self {
        // Every empty metadata shares one allocation; the first insert copies it.
        static EMPTY: std::sync::LazyLock<Arc<Map<String, Value>>> = std::sync::LazyLock::new(Default::default);
        Self(Arc::clone(&EMPTY))
    }
}

impl Metadata {
    /// An empty object.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns `self` with `key` set to `value`.
    pub fn with(mut self, key: impl Into<String>, value: Value) -> Self {
        Arc::make_mut(&mut self.0).insert(key.into(), value);
        self
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// Whether the object has no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Merges `patch` into `self` key by key (top level): a key set to `null` in the patch is
    /// removed, any other value replaces the stored one.
    pub fn merge(&mut self, patch: &Metadata) {
        if patch.is_empty() {
            return;
        }
        let map = Arc::make_mut(&mut self.0);
        for (key, value) in patch.0.iter() {
            if value.is_null() {
                map.remove(key);
            } else {
                map.insert(key.clone(), value.clone());
            }
        }
    }

    /// Size of the object as compact JSON, in bytes (counted, not allocated).
    pub fn json_len(&self) -> usize {
        json::map_len(&self.0)
    }

    /// Nesting depth: `1` for an object of scalars, `+1` per nested object or array level.
    pub fn depth(&self) -> usize {
        1 + self.0.values().map(json::depth).max().unwrap_or(0)
    }

    /// Whether a key or a string anywhere in the object holds U+0000 (see
    /// [`Content::has_nul`]).
    pub fn has_nul(&self) -> bool {
        self.0.iter().any(|(key, value)| key.contains('\0') || json::has_nul(value))
    }

    /// Checks that the object can be stored and read back as JSON (see
    /// [`Content::check_depth`]).
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming `metadata`.
    pub fn check_depth(&self) -> Result<(), PersistError> {
        if self.0.values().any(|value| json::deeper_than(value, MAX_JSON_DEPTH - 1)) {
            return check_depth("metadata", self.depth());
        }
        Ok(())
    }

    /// Whether every key of `filter` is present in `self` with an equal value (numbers
    /// compared by value, as for equality).
    pub fn contains(&self, filter: &Metadata) -> bool {
        filter.0.iter().all(|(key, value)| self.0.get(key).is_some_and(|own| json::eq(own, value)))
    }
}

impl TryFrom<Value> for Metadata {
    type Error = PersistError;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        match value {
            Value::Object(map) => Ok(Self(Arc::new(map))),
            other => {
                Err(PersistError::invalid("metadata", format!("must be a JSON object, got {}", json_kind(&other))))
            }
        }
    }
}

impl From<Map<String, Value>> for Metadata {
    fn from(map: Map<String, Value>) -> Self {
        Self(Arc::new(map))
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Metadata::try_from(Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// The deepest JSON nesting a backend stores (below `serde_json`'s parsing limit of 128, so
/// what was written can always be read back).
pub const MAX_JSON_DEPTH: usize = 100;

fn check_depth(field: &'static str, depth: usize) -> Result<(), PersistError> {
    if depth > MAX_JSON_DEPTH {
        return Err(PersistError::invalid(field, format!("is nested {depth} deep, the limit is {MAX_JSON_DEPTH}")));
    }
    Ok(())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether a message is a placeholder still being written, or complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created by `reserve`; content is the placeholder until `update_content` finalizes it.
    Reserved,
    /// Written by `add`, or finalized by `update_content`.
    Complete,
}

impl Status {
    /// `"reserved"` or `"complete"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Complete => "complete",
        }
    }
}

/// A point in time, in microseconds since the Unix epoch (UTC).
///
/// Used for `created_at`/`updated_at`. Ordering of messages never depends on it: that is what
/// [`Message::seq`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// From microseconds since the Unix epoch.
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// This timestamp moved forward by `span` (saturating).
    pub fn saturating_add(self, span: Duration) -> Self {
        let micros = i64::try_from(span.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(micros))
    }

    /// This timestamp moved back by `age` (saturating), e.g. "older than ten minutes".
    pub fn saturating_sub(self, age: Duration) -> Self {
        let micros = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(micros))
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Self(i64::try_from(after.as_micros()).unwrap_or(i64::MAX)),
            Err(before) => Self(-i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX)),
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(ts: Timestamp) -> Self {
        let magnitude = Duration::from_micros(ts.0.unsigned_abs());
        if ts.0 >= 0 { UNIX_EPOCH + magnitude } else { UNIX_EPOCH - magnitude }
    }
}

/// One stored message. Its identity is `(thread_id, id)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The thread the message belongs to.
    pub thread_id: ThreadId,
    /// The message's id, unique within its thread.
    pub id: MessageId,
    /// Who wrote it.
    pub role: Role,
    /// The content (the placeholder `[]` while reserved).
    pub content: Content,
    /// Free-form metadata.
    pub metadata: Metadata,
    /// Reserved or complete.
    pub status: Status,
    /// Position in the thread: `1, 2, 3…`, assigned at `add`/`reserve`, never reused.
    pub seq: u64,
    /// `1` on insert, `+1` on every change; for optimistic concurrency.
    pub version: u64,
    /// The idempotency key the message was written with, if any.
    pub idempotency_key: Option<IdempotencyKey>,
    /// When the message was written.
    pub created_at: Timestamp,
    /// When the message last changed.
    pub updated_at: Timestamp,
}

impl Message {
    /// Whether `args` (an `add` or a `reserve` naming this message's id) repeats the write
    /// that created this message: same role, metadata and idempotency key, and for `add` the
    /// same content on a complete message. Backends answer such a repeat with the stored
    /// message (`deduplicated: true`) and anything else with `AlreadyExists`.
    pub fn is_repeat_of(&self, args: &crate::PersistArgs) -> bool {
        match args {
            crate::PersistArgs::Add(add) => {
                self.status == Status::Complete
                    && self.role == add.role
                    && self.content == add.content
                    && self.metadata == add.metadata
                    && self.idempotency_key == add.idempotency_key
            }
            crate::PersistArgs::Reserve(reserve) => {
                self.role == reserve.role
                    && self.metadata == reserve.metadata
                    && self.idempotency_key == reserve.idempotency_key
            }
            _ => false,
        }
    }

    /// Whether `args` (an `add` or a `reserve` carrying this message's idempotency key) is the
    /// request that wrote this message, sent again; otherwise the key was reused for another
    /// request, which backends refuse with
    /// [`IdempotencyKeyReused`](PersistError::IdempotencyKeyReused).
    ///
    /// The key names the request, so the message id it carries does not count (a retry may
    /// give each attempt its own). While the message is as its request wrote it (version 1),
    /// the operation, role, metadata and (for `add`) content must match, compared by value.
    /// Once it changed (a reservation filled, metadata merged), the original request can no
    /// longer be told from the message, and a request with the key is taken as its repeat.
    pub fn is_keyed_repeat_of(&self, args: &crate::PersistArgs) -> bool {
        if self.version > 1 {
            return true;
        }
        match args {
            crate::PersistArgs::Add(add) => {
                self.status == Status::Complete
                    && self.role == add.role
                    && self.metadata == add.metadata
                    && self.content == add.content
            }
            crate::PersistArgs::Reserve(reserve) => {
                self.status == Status::Reserved && self.role == reserve.role && self.metadata == reserve.metadata
            }
            _ => false,
        }
    }

    /// The stored message `args` repeats (`deduplicated: true`), or the refusal of a key
    /// reused for another request; see [`is_keyed_repeat_of`](Self::is_keyed_repeat_of).
    ///
    /// # Errors
    ///
    /// [`PersistError::IdempotencyKeyReused`].
    pub fn keyed_repeat(self, args: &crate::PersistArgs) -> Result<Self, PersistError> {
        if self.is_keyed_repeat_of(args) {
            return Ok(self);
        }
        match self.idempotency_key {
            Some(idempotency_key) => Err(PersistError::IdempotencyKeyReused {
                thread_id: self.thread_id,
                idempotency_key,
                message_id: self.id,
            }),
            None => Err(PersistError::AlreadyExists { thread_id: self.thread_id, message_id: self.id }),
        }
    }
}

/// A thread: the conversation messages belong to. Created by its first write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    /// The thread's id.
    pub id: ThreadId,
    /// The tenant it belongs to (the context's tenant of the writes that created it), if any:
    /// part of its identity, `(tenant, id)`.
    pub tenant: Option<TenantId>,
    /// A display title.
    pub title: Option<String>,
    /// Free-form metadata.
    pub metadata: Metadata,
    /// `1` at creation, `+1` on every change of the thread's own fields (title, metadata).
    pub version: u64,
    /// When the first write created it.
    pub created_at: Timestamp,
    /// When the thread or any of its messages last changed.
    pub updated_at: Timestamp,
    /// The highest `seq` ever assigned in the thread (not lowered by deletes).
    pub last_seq: u64,
    /// Number of messages currently stored (reserved ones included).
    pub message_count: u64,
    /// Set when the thread was deleted; a deleted thread refuses every later write.
    pub deleted_at: Option<Timestamp>,
}

impl Thread {
    /// Whether the thread is a tombstone.
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn role_round_trips_in_lowercase() {
        for (role, text) in [
            (Role::User, "\"user\""),
            (Role::Assistant, "\"assistant\""),
            (Role::System, "\"system\""),
            (Role::Tool, "\"tool\""),
            (Role::Other(Arc::from("critic")), "\"critic\""),
        ] {
            assert_eq!(serde_json::to_string(&role).unwrap(), text);
            assert_eq!(serde_json::from_str::<Role>(text).unwrap(), role);
        }
        assert!(serde_json::from_str::<Role>("\"\"").is_err());
        assert!(Role::new(&"r".repeat(MAX_ROLE_BYTES + 1)).is_err());
    }

    #[test]
    fn metadata_rejects_non_objects() {
        for bad in [json!(null), json!(1), json!("s"), json!([1]), json!(true)] {
            let err = Metadata::try_from(bad).unwrap_err();
            assert!(matches!(err, PersistError::InvalidInput { field: "metadata", .. }));
        }
        assert!(serde_json::from_str::<Metadata>("[1]").is_err());
        let meta: Metadata = serde_json::from_str(r#"{"a":1}"#).unwrap();
        assert_eq!(meta.get("a"), Some(&json!(1)));
    }

    #[test]
    fn merge_sets_replaces_and_removes() {
        let mut meta = Metadata::new().with("keep", json!(1)).with("drop", json!(2));
        meta.merge(&Metadata::new().with("drop", json!(null)).with("new", json!({"x": 1})).with("keep", json!(3)));
        assert_eq!(meta.as_map().len(), 2);
        assert_eq!(meta.get("keep"), Some(&json!(3)));
        assert_eq!(meta.get("new"), Some(&json!({"x": 1})));
    }

    #[test]
    fn merge_does_not_touch_other_clones() {
        let original = Metadata::new().with("a", json!(1));
        let mut copy = original.clone();
        copy.merge(&Metadata::new().with("a", json!(2)));
        assert_eq!(original.get("a"), Some(&json!(1)));
    }

    #[test]
    fn sizes_and_depths_are_measured() {
        for value in [
            json!([{"type": "text", "text": "hé \"quoted\" back\\slash\n\t\u{1} \u{8}\u{c}\u{7f} 👋"}]),
            json!({"n": [1, -2, 0.5, 1e21, 12345678901234567890_u64, -1.5e-7], "t": true, "f": false, "z": null}),
            json!([]),
            json!({}),
            json!("plain"),
            json!([[], {}, [null]]),
        ] {
            let expected = serde_json::to_string(&value).unwrap().len();
            assert_eq!(Content::new(value.clone()).json_len(), expected, "{value}");
        }
        let content = Content::text("hé");
        assert_eq!(content.json_len(), serde_json::to_string(&content.to_value()).unwrap().len());
        let meta = Metadata::new().with("a", json!({"b": [1, {"c": 2}]}));
        assert_eq!(meta.json_len(), serde_json::to_string(&meta).unwrap().len());
        assert_eq!(meta.depth(), 4);
        assert_eq!(Metadata::new().depth(), 1);
        assert_eq!(Metadata::new().with("x", json!(1)).depth(), 1);
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused() {
        let mut deep = json!(1);
        for _ in 0..MAX_JSON_DEPTH {
            deep = json!([deep]);
        }
        assert!(Content::new(deep.clone()).check_depth().is_ok());
        let deeper = Content::new(json!([deep.clone()]));
        assert!(matches!(deeper.check_depth(), Err(PersistError::InvalidInput { field: "content", .. })));
        assert_eq!(deeper.depth(), MAX_JSON_DEPTH + 1);
        assert_eq!(deeper.as_json(), serde_json::to_string(&json!([deep.clone()])).unwrap());
        assert_eq!(deeper.to_value(), Value::Null, "no parser reads it back");
        let meta = Metadata::new().with("k", json!([deep]));
        assert!(matches!(meta.check_depth(), Err(PersistError::InvalidInput { field: "metadata", .. })));
    }

    /// A value nested `levels` deep, built without recursion (`json!` would copy it through
    /// `to_value`, which recurses).
    fn nested(levels: usize) -> Value {
        let mut value = json!("leaf");
        for _ in 0..levels {
            value = Value::Array(vec![value]);
        }
        value
    }

    #[test]
    fn values_too_deep_for_the_stack_are_refused_not_a_crash() {
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                let content = Content::new(nested(100_000));
                assert!(matches!(content.check_depth(), Err(PersistError::InvalidInput { field: "content", .. })));
                assert_eq!(content.depth(), 100_000);
                assert!(content.json_len() > 200_000);
                assert_eq!(content, content.clone());
                assert!(serde_json::to_string(&content).is_err(), "refused, not a crash");
                let meta = Metadata::new().with("deep", nested(100_000));
                assert!(matches!(meta.check_depth(), Err(PersistError::InvalidInput { field: "metadata", .. })));
                assert!(meta.json_len() > 200_000);
                assert!(format!("{meta:?}").len() > 200_000);
                assert_eq!(meta, meta.clone());
                drop((content, meta));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn equality_compares_numbers_by_value() {
        let stored = Content::from_json(r#"[{"n":100,"x":1.0,"z":0}]"#).unwrap();
        assert_eq!(stored, Content::from_json(r#"[{"n":1e2,"x":1,"z":-0}]"#).unwrap());
        assert_ne!(stored, Content::from_json(r#"[{"n":101,"x":1,"z":0}]"#).unwrap());
        let meta = Metadata::new().with("score", json!(1.0)).with("tags", json!([1e2]));
        assert_eq!(meta, Metadata::new().with("score", json!(1)).with("tags", json!([100])));
        assert!(meta.contains(&Metadata::new().with("score", json!(1))));
        assert!(!meta.contains(&Metadata::new().with("score", json!(2))));
    }

    #[test]
    fn nul_is_found_in_content_and_metadata() {
        assert!(Content::text("a\u{0}b").has_nul());
        assert!(!Content::text("a\\u0000b").has_nul(), "the text \\u0000 is not a NUL");
        assert!(Metadata::new().with("k", json!({"x": "\u{0}"})).has_nul());
        assert!(Metadata::new().with("k\u{0}", json!(1)).has_nul());
        assert!(!Metadata::new().with("k", json!("u0000")).has_nul());
    }

    #[test]
    fn content_helpers() {
        assert!(Content::placeholder().is_placeholder());
        assert!(!Content::text("").is_placeholder());
        assert_eq!(Content::text("hi").to_text(), "hi");
        assert_eq!(Content::new(json!("plain")).to_text(), "plain");
    }

    #[test]
    fn content_is_compact_json_text() {
        // `text` escapes exactly as serde_json does.
        let tricky = "hé \"q\" \\ \n\r\t\u{1}\u{8}\u{c}\u{1f}\u{7f} 👋";
        let expected = json!([{"type": "text", "text": tricky}]);
        assert_eq!(Content::text(tricky).as_json(), serde_json::to_string(&expected).unwrap());
        assert!(
            matches!((&Content::text(tricky).0, &Content::new(expected.clone()).0), (Repr::Json(a), Repr::Json(b)) if a == b)
        );
        assert_eq!(Content::text(tricky).to_value(), expected);
        // Equal values are equal contents, whatever their formatting.
        let spaced = Content::from_json("{ \"b\": [1, 2], \"a\": null }").unwrap();
        assert_eq!(spaced, Content::new(json!({"a": null, "b": [1, 2]})));
        assert_ne!(spaced, Content::new(json!({"a": null})));
        // Text that is not JSON (or too deep) is refused, typed.
        for bad in ["", "{", "[1,]", "nope", "1e400"] {
            assert!(
                matches!(Content::from_json(bad), Err(PersistError::InvalidInput { field: "content", .. })),
                "{bad:?}"
            );
        }
        let deep = format!("{}{}", "[".repeat(MAX_JSON_DEPTH + 1), "]".repeat(MAX_JSON_DEPTH + 1));
        assert!(Content::from_json(deep).is_err());
        // Brackets inside strings do not count as nesting.
        assert_eq!(Content::from_json(r#"["[[[{", "\\\"]]"]"#).unwrap().depth(), 1);
        // Serde round trip is the JSON value, not a string.
        let content = Content::text("x");
        assert_eq!(serde_json::to_value(&content).unwrap(), content.to_value());
        assert_eq!(serde_json::from_value::<Content>(content.to_value()).unwrap(), content);
    }

    #[test]
    fn timestamps_convert_both_ways() {
        let now = Timestamp::now();
        let back = Timestamp::from(SystemTime::from(now));
        assert_eq!(now, back);
        let before = Timestamp::from_micros(-5);
        assert_eq!(Timestamp::from(SystemTime::from(before)), before);
        assert_eq!(now.saturating_sub(Duration::from_micros(10)).as_micros(), now.as_micros() - 10);
    }
}
