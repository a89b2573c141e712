//! A message's content: JSON blocks held as compact text, joined by appends.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::error::PersistError;
use super::json::{self, MAX_JSON_DEPTH, check_depth};

/// A message's content: any JSON value, usually an array of content blocks.
///
/// Held as compact JSON text behind an `Arc`: cloning is a reference-count increment (layers,
/// and tower's retry, which clones requests, keep copies for free), a stored message costs
/// little more than its JSON bytes, [`json_len`](Self::json_len) is free, and backends store
/// and load the text without parsing it (one text block, most messages, as its text's JSON
/// string: see [`text_block_json`](Self::text_block_json)). [`to_value`](Self::to_value) parses
/// it when you need the tree. A reservation holds the [placeholder](Self::placeholder) `[]`.
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

/// What a content of one text block holds around its text's JSON string literal: the keys in
/// the order `serde_json` writes them (sorted), so the text is the one
/// `Content::new(json!([{"type": "text", "text": …}]))` holds.
const TEXT_BLOCK_HEAD: &str = r#"[{"text":"#;
const TEXT_BLOCK_TAIL: &str = r#","type":"text"}]"#;

impl Content {
    /// Wraps any JSON value (serialized once, here, in canonical form: every object's keys
    /// sorted, so one value is one text whatever serde_json's features in the build).
    ///
    /// A value nested deeper than [`MAX_JSON_DEPTH`] is accepted here, however deep, and
    /// refused by [`check_depth`](Self::check_depth) (so by every backend) as `InvalidInput`.
    pub fn new(value: Value) -> Self {
        if json::deeper_than(&value, MAX_JSON_DEPTH) {
            let deep = Repr::Deep(Arc::new(Deep { text: json::to_string(&value), depth: json::depth(&value) }));
            json::drop_flat(value);
            return Self(deep);
        }
        Self(Repr::Json(Arc::from(json::to_string(&value))))
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
        Self::text_block(text.len() + 2, |json| json::push_string(json, text))
    }

    /// One text block around a JSON string literal of about `len` bytes that `literal` writes.
    fn text_block(len: usize, literal: impl FnOnce(&mut String)) -> Self {
        let mut json = String::with_capacity(TEXT_BLOCK_HEAD.len() + len + TEXT_BLOCK_TAIL.len());
        json.push_str(TEXT_BLOCK_HEAD);
        literal(&mut json);
        json.push_str(TEXT_BLOCK_TAIL);
        Self(Repr::Json(Arc::from(json)))
    }

    /// For a content that is exactly one text block, as [`Content::text`] writes it
    /// (`[{"text":…,"type":"text"}]`, compact, keys in that order): its text's JSON string
    /// literal, quotes included, as the content holds it. `None` for any other content.
    ///
    /// The content is that literal between `[{"text":` and `,"type":"text"}]`, byte for byte:
    /// backends store most messages as the literal alone (the wrapper is 25 bytes a message, and
    /// the literal is still JSON).
    ///
    /// # Example
    ///
    /// ```
    /// use persist::Content;
    ///
    /// assert_eq!(Content::text("hi \"you\"").text_block_json(), Some(r#""hi \"you\"""#));
    /// assert_eq!(Content::from_json(r#"[{"type":"text","text":"hi"}]"#).unwrap().text_block_json(), None);
    /// assert_eq!(Content::from_json(r#"[{"text":"a","type":"text"},{"text":"b","type":"text"}]"#).unwrap().text_block_json(), None);
    /// ```
    pub fn text_block_json(&self) -> Option<&str> {
        let Repr::Json(json) = &self.0 else { return None };
        let literal = json.strip_prefix(TEXT_BLOCK_HEAD)?.strip_suffix(TEXT_BLOCK_TAIL)?;
        // The content is JSON: the literal is one string when the string its first quote opens
        // closes at its last byte (else it holds more, as `"a","type":"text"},{"text":"b"`).
        let bytes = literal.as_bytes();
        if bytes.first() != Some(&b'"') {
            return None;
        }
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => return (i == bytes.len() - 1).then_some(literal),
                _ => i += 1,
            }
        }
        None
    }

    /// The content of one text block whose text's JSON string literal is `literal` (what
    /// [`text_block_json`](Self::text_block_json) answers): backends read back with this what
    /// they stored in that form.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming `content` when `literal` is not one JSON string.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::Content;
    ///
    /// assert_eq!(Content::from_text_block_json(r#""hi""#).unwrap(), Content::text("hi"));
    /// for bad in [r#""hi" "#, r#""\ud800""#, r#""a","b""#, "5", ""] {
    ///     assert!(Content::from_text_block_json(bad).is_err(), "{bad}");
    /// }
    /// ```
    pub fn from_text_block_json(literal: &str) -> Result<Self, PersistError> {
        // One JSON string and nothing around it (parsed whole: its escapes checked too, without
        // keeping the text).
        if !(literal.starts_with('"') && literal.ends_with('"'))
            || serde_json::from_str::<json::CheckedString>(literal).is_err()
        {
            return Err(PersistError::invalid("content", "a text block's text is not one JSON string"));
        }
        Ok(Self::text_block(literal.len(), |json| json.push_str(literal)))
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

    /// Whether the content says nothing a reader or a model could take: the placeholder `[]`,
    /// or only [text](crate::Part::Text) and [reasoning](crate::Part::Reasoning) blocks with no
    /// text (a reply cut short before its first token). Providers refuse a message with such
    /// content, so cleanup (`cleanup_stranded`, persist-ops) deletes a stranded reservation
    /// that is blank, provider-ready reads (`ProviderHistory` (persist-layer))
    /// and the Chat Completions and Anthropic exports leave blank messages out.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{Content, Part};
    ///
    /// assert!(Content::placeholder().is_blank());
    /// assert!(Content::from_parts([Part::text(""), Part::reasoning("")]).is_blank());
    /// assert!(!Content::text("Hi").is_blank());
    /// assert!(!Content::new(serde_json::json!("")).is_blank(), "a string is not blocks");
    /// ```
    pub fn is_blank(&self) -> bool {
        if self.is_placeholder() {
            return true;
        }
        match self.to_value() {
            Value::Array(blocks) => {
                blocks.iter().all(|block| streamed_block(block).is_some_and(|(_, text)| text.is_empty()))
            }
            _ => false,
        }
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
    /// [`UpdateContent`](crate::args::UpdateContent) stores. Where this content ends with a
    /// block that streams and `tail` starts with a block of the same kind, the two are joined
    /// into one block, so a reply streamed token by token stays one block of each kind, as the
    /// providers' SDKs join their deltas into the part they opened. The blocks that stream are
    /// a [text](crate::Part::Text) block (`{"type": "text", "text": …}` and nothing else) and
    /// a [reasoning](crate::Part::Reasoning) block (`{"type": "reasoning", "text": …}` and
    /// nothing else). Every other block stands alone: a tool call, a result or a file is a
    /// whole part each time it is appended, and a block with a field of its own (a reasoning
    /// block's `signature`) ends the part it follows. Text after reasoning (or reasoning after
    /// text) starts a new block. The placeholder `[]` followed by `tail` is `tail`.
    ///
    /// # Errors
    ///
    /// [`PersistError::InvalidInput`] (`content`) when either is not a JSON array of blocks.
    ///
    /// # Example
    ///
    /// ```
    /// use persist::{Content, Part};
    ///
    /// let joined = Content::text("Hel").appended(&Content::text("lo")).unwrap();
    /// assert_eq!(joined, Content::text("Hello"));
    /// let thinking = Content::from_parts([Part::reasoning("Let me ")]);
    /// let thought = thinking.appended(&Content::from_parts([Part::reasoning("think.")])).unwrap();
    /// assert_eq!(thought, Content::from_parts([Part::reasoning("Let me think.")]));
    /// let answered = thought.appended(&Content::text("Yes.")).unwrap();
    /// assert_eq!(answered.parts(), [Part::reasoning("Let me think."), Part::text("Yes.")]);
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
                    && let Some((kind, next)) = streamed_block(&block)
                    && let Some(text) = blocks.last_mut().and_then(|last| streamed_text_mut(last, kind))
                {
                    text.push_str(next);
                    continue;
                }
                blocks.push(block);
            }
        }
        Ok(Content::new(Value::Array(blocks)))
    }

    /// The concatenated `text` of the blocks that have one, reasoning blocks aside (see
    /// [`Part`](crate::Part)), or the string itself when the content is a plain JSON string.
    /// Handy for printing and indexing.
    pub fn to_text(&self) -> String {
        match self.to_value() {
            Value::String(s) => s,
            Value::Array(blocks) => blocks
                .iter()
                .filter(|block| block.get("type").and_then(Value::as_str) != Some("reasoning"))
                .filter_map(|block| block.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            _ => String::new(),
        }
    }
}

/// The kinds of block an append joins to the block before it when it is of the same kind: they
/// stream, token by token.
const STREAMED_KINDS: [&str; 2] = ["text", "reasoning"];

/// The kind and text of a block that streams (see [`Content::appended`]): `{"type": <kind>,
/// "text": …}` and nothing else.
fn streamed_block(block: &Value) -> Option<(&str, &str)> {
    let map = block.as_object()?;
    let kind = map.get("type")?.as_str()?;
    (map.len() == 2 && STREAMED_KINDS.contains(&kind)).then(|| Some((kind, map.get("text")?.as_str()?)))?
}

/// The text of a block that streams and is of `kind`, to add to.
fn streamed_text_mut<'a>(block: &'a mut Value, kind: &str) -> Option<&'a mut String> {
    if streamed_block(block)?.0 != kind {
        return None;
    }
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

/// JSON holds no NaN: equality of contents is reflexive.
impl Eq for Content {}

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
