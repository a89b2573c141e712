//! Typed parts of a message's content: text, reasoning, tool calls and results, files, and
//! anything else kept as it is.
//!
//! Content stays what it was, a JSON array of blocks; a [`Part`] is a typed view of one block,
//! read with [`Content::parts`] and written with [`Content::from_parts`]. A block reads as a typed
//! part only when it has exactly that part's fields, with their types; any other block (a
//! provider's own kind, a known kind with an extra field) reads as [`Part::Other`] holding the
//! block as it is, so reading the parts of an array of blocks and writing them back never loses
//! a byte of meaning.
//!
//! | part | block |
//! |---|---|
//! | [`Part::Text`] | `{"type": "text", "text": …}` |
//! | [`Part::Reasoning`] | `{"type": "reasoning", "text": …}` |
//! | [`Part::ToolCall`] | `{"type": "tool_call", "id": …, "name": …, "arguments": <any JSON>}` |
//! | [`Part::ToolResult`] | `{"type": "tool_result", "call_id": …, "output": <any JSON>, "is_error": bool}` |
//! | [`Part::File`] | `{"type": "file", "media_type": …, "uri": …}`, with `"name"` and `"size"` when known |

use serde_json::{Map, Value};

use super::content::Content;

/// One typed block of a message's content.
///
/// Content stays what it was, a JSON array of blocks; a `Part` is a typed view of one block,
/// read with [`Content::parts`] and written with [`Content::from_parts`]. A block reads as a
/// typed part only when it has exactly that part's fields, with their types; any other block (a
/// provider's own kind, a known kind with an extra field) reads as [`Part::Other`] holding the
/// block as it is, so reading the parts of an array of blocks and writing them back never loses
/// a byte of meaning. Content that is not an array (a plain string, an object) reads as one
/// `Other`, which [`Content::from_parts`] writes back as a one-block array.
///
/// | part | block |
/// |---|---|
/// | [`Part::Text`] | `{"type": "text", "text": …}` |
/// | [`Part::Reasoning`] | `{"type": "reasoning", "text": …}` |
/// | [`Part::ToolCall`] | `{"type": "tool_call", "id": …, "name": …, "arguments": <any JSON>}` |
/// | [`Part::ToolResult`] | `{"type": "tool_result", "call_id": …, "output": <any JSON>, "is_error": bool}` |
/// | [`Part::File`] | `{"type": "file", "media_type": …, "uri": …}`, with `"name"` and `"size"` when known |
///
/// # Example
///
/// ```
/// use persist::{Content, Part};
/// use serde_json::json;
///
/// let call = Part::tool_call("call_1", "get_weather", json!({"city": "Lisbon"}));
/// let content = Content::from_parts([Part::reasoning("The user wants the weather."), call]);
/// let parts = content.parts();
/// assert_eq!(parts[1].as_tool_call().map(|c| c.name), Some("get_weather"));
/// assert_eq!(Content::from_parts(parts), content, "written back as it was read");
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Part {
    /// Text for the reader.
    Text {
        /// The text.
        text: String,
    },
    /// The model's reasoning, kept apart from its answer ([`Content::to_text`] leaves it out).
    Reasoning {
        /// The reasoning, as the provider gave it.
        text: String,
    },
    /// A call of a tool the assistant asked for.
    ToolCall {
        /// The call's id, which its result names.
        id: String,
        /// The tool.
        name: String,
        /// The arguments, as JSON (an object, usually).
        arguments: Value,
    },
    /// The result of a tool call.
    ToolResult {
        /// The id of the call this answers.
        call_id: String,
        /// What the tool returned, as JSON.
        output: Value,
        /// Whether the tool failed (`output` then says how).
        is_error: bool,
    },
    /// A file or attachment, by reference.
    File {
        /// Its media type (`image/png`, `application/pdf`, …).
        media_type: String,
        /// Where it is: a URL, or a reference of the host's own (`s3://…`, `file-id:…`).
        uri: String,
        /// Its name, when known.
        name: Option<String>,
        /// Its size in bytes, when known.
        size: Option<u64>,
    },
    /// Any other block, kept exactly as it is.
    Other(Value),
}

/// A tool call, borrowed from a [`Part::ToolCall`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToolCallRef<'a> {
    /// The call's id.
    pub id: &'a str,
    /// The tool.
    pub name: &'a str,
    /// The arguments.
    pub arguments: &'a Value,
}

/// A tool result, borrowed from a [`Part::ToolResult`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToolResultRef<'a> {
    /// The id of the call it answers.
    pub call_id: &'a str,
    /// What the tool returned.
    pub output: &'a Value,
    /// Whether the tool failed.
    pub is_error: bool,
}

impl Part {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }

    /// A reasoning part.
    pub fn reasoning(text: impl Into<String>) -> Self {
        Self::Reasoning { text: text.into() }
    }

    /// A tool call.
    pub fn tool_call(id: impl Into<String>, name: impl Into<String>, arguments: Value) -> Self {
        Self::ToolCall { id: id.into(), name: name.into(), arguments }
    }

    /// A successful tool result for the call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, output: Value) -> Self {
        Self::ToolResult { call_id: call_id.into(), output, is_error: false }
    }

    /// A failed tool result for the call `call_id`; `output` says what went wrong.
    pub fn tool_error(call_id: impl Into<String>, output: Value) -> Self {
        Self::ToolResult { call_id: call_id.into(), output, is_error: true }
    }

    /// A file at `uri` of type `media_type`.
    pub fn file(media_type: impl Into<String>, uri: impl Into<String>) -> Self {
        Self::File { media_type: media_type.into(), uri: uri.into(), name: None, size: None }
    }

    /// The text of a text part.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text { text } => Some(text),
            _ => None,
        }
    }

    /// The call of a tool-call part.
    pub fn as_tool_call(&self) -> Option<ToolCallRef<'_>> {
        match self {
            Self::ToolCall { id, name, arguments } => Some(ToolCallRef { id, name, arguments }),
            _ => None,
        }
    }

    /// The result of a tool-result part.
    pub fn as_tool_result(&self) -> Option<ToolResultRef<'_>> {
        match self {
            Self::ToolResult { call_id, output, is_error } => {
                Some(ToolResultRef { call_id, output, is_error: *is_error })
            }
            _ => None,
        }
    }

    /// The block this part is stored as.
    pub fn to_block(&self) -> Value {
        let mut block = Map::new();
        let mut put = |key: &str, value: Value| {
            block.insert(key.to_owned(), value);
        };
        match self {
            Self::Other(value) => return value.clone(),
            Self::Text { text } => {
                put("type", "text".into());
                put("text", text.as_str().into());
            }
            Self::Reasoning { text } => {
                put("type", "reasoning".into());
                put("text", text.as_str().into());
            }
            Self::ToolCall { id, name, arguments } => {
                put("type", "tool_call".into());
                put("id", id.as_str().into());
                put("name", name.as_str().into());
                put("arguments", arguments.clone());
            }
            Self::ToolResult { call_id, output, is_error } => {
                put("type", "tool_result".into());
                put("call_id", call_id.as_str().into());
                put("output", output.clone());
                put("is_error", (*is_error).into());
            }
            Self::File { media_type, uri, name, size } => {
                put("type", "file".into());
                put("media_type", media_type.as_str().into());
                put("uri", uri.as_str().into());
                if let Some(name) = name {
                    put("name", name.as_str().into());
                }
                if let Some(size) = size {
                    put("size", (*size).into());
                }
            }
        }
        Value::Object(block)
    }

    /// The part a block reads as: typed when it has exactly a typed part's fields, with their
    /// types; [`Other`](Self::Other) otherwise.
    pub fn from_block(block: Value) -> Self {
        typed(&block).unwrap_or(Self::Other(block))
    }
}

/// The typed part `block` is, if it is one exactly.
fn typed(block: &Value) -> Option<Part> {
    let object = block.as_object()?;
    let string = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_owned);
    // Exactly these keys (and the optional ones), no other: an extra key would be lost.
    let only = |required: &[&str], optional: &[&str]| {
        required.iter().all(|key| object.contains_key(*key))
            && object
                .keys()
                .all(|key| key == "type" || required.contains(&key.as_str()) || optional.contains(&key.as_str()))
    };
    match object.get("type")?.as_str()? {
        "text" if only(&["text"], &[]) => Some(Part::Text { text: string("text")? }),
        "reasoning" if only(&["text"], &[]) => Some(Part::Reasoning { text: string("text")? }),
        "tool_call" if only(&["id", "name", "arguments"], &[]) => Some(Part::ToolCall {
            id: string("id")?,
            name: string("name")?,
            arguments: object.get("arguments")?.clone(),
        }),
        "tool_result" if only(&["call_id", "output", "is_error"], &[]) => Some(Part::ToolResult {
            call_id: string("call_id")?,
            output: object.get("output")?.clone(),
            is_error: object.get("is_error")?.as_bool()?,
        }),
        "file" if only(&["media_type", "uri"], &["name", "size"]) => Some(Part::File {
            media_type: string("media_type")?,
            uri: string("uri")?,
            name: match object.get("name") {
                None => None,
                Some(name) => Some(name.as_str()?.to_owned()),
            },
            size: match object.get("size") {
                None => None,
                Some(size) => Some(size.as_u64()?),
            },
        }),
        _ => None,
    }
}

impl Content {
    /// Content made of `parts`, one block each, in order.
    pub fn from_parts(parts: impl IntoIterator<Item = Part>) -> Self {
        Self::new(Value::Array(parts.into_iter().map(|part| part.to_block()).collect()))
    }

    /// The content's blocks as typed parts, in order; content that is not an array of blocks
    /// (a plain string, an object) is one [`Part::Other`] holding it.
    pub fn parts(&self) -> Vec<Part> {
        // Most messages are one text block: its text read alone, without the array around it.
        if let Some(text) = self.text_block_json().and_then(|literal| serde_json::from_str(literal).ok()) {
            return vec![Part::Text { text }];
        }
        match self.to_value() {
            Value::Array(blocks) => blocks.into_iter().map(Part::from_block).collect(),
            other => vec![Part::Other(other)],
        }
    }

    /// The tool calls among the content's parts.
    pub fn tool_calls(&self) -> Vec<Part> {
        self.parts().into_iter().filter(|part| matches!(part, Part::ToolCall { .. })).collect()
    }

    /// The tool results among the content's parts.
    pub fn tool_results(&self) -> Vec<Part> {
        self.parts().into_iter().filter(|part| matches!(part, Part::ToolResult { .. })).collect()
    }
}

/// The tool named by each call among some messages' contents, by call id.
///
/// A tool result written by one format may be read by another that wants the tool's name with
/// the result (rig, adk-rust, swiftide), while the result part itself names only its call (the
/// Responses API's `function_call_output` carries no name). Collect the names from the calls,
/// then look each result's call up.
///
/// ```
/// use persist::{Content, Part, ToolNames};
/// use serde_json::json;
///
/// let call = Content::from_parts([Part::tool_call("call_1", "get_weather", json!({}))]);
/// let result = Content::from_parts([Part::tool_result("call_1", json!("sunny"))]);
/// let names: ToolNames = [&call, &result].into_iter().collect();
/// assert_eq!(names.get("call_1"), Some("get_weather"));
/// assert_eq!(names.get("call_2"), None);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolNames(std::collections::HashMap<String, String>);

impl ToolNames {
    /// No names yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the names of the calls among `content`'s parts (a later call with the same id wins).
    pub fn add(&mut self, content: &Content) {
        for part in content.parts() {
            if let Part::ToolCall { id, name, .. } = part {
                self.0.insert(id, name);
            }
        }
    }

    /// The tool the call `call_id` named, if one of the contents added holds that call.
    pub fn get(&self, call_id: &str) -> Option<&str> {
        self.0.get(call_id).map(String::as_str)
    }
}

impl<'a> FromIterator<&'a Content> for ToolNames {
    fn from_iter<I: IntoIterator<Item = &'a Content>>(contents: I) -> Self {
        let mut names = Self::new();
        contents.into_iter().for_each(|content| names.add(content));
        names
    }
}
