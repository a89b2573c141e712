//! [`PartOffset`]: a place in a message's parts, as a follower resumes from it and a live
//! reply's writer appends at it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::{PersistError, Result};
use super::part::Part;

/// A place in a message's parts: where a client that holds the parts before
/// [`part`](Self::part) (and, with [`chars`](Self::chars), that many characters of a text or
/// reasoning part it started) goes on.
///
/// Its text form, as an SSE event id carries it: `3` (before part 3) or `3.17` (17
/// characters into part 3).
///
/// # Example
///
/// ```
/// use persist::live::PartOffset;
///
/// let offset: PartOffset = "2.5".parse()?;
/// assert_eq!(offset, PartOffset::within(2, 5));
/// assert_eq!(PartOffset::before(3).to_string(), "3");
/// assert!("2.x".parse::<PartOffset>().is_err());
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PartOffset {
    /// The part the client is at, from 0.
    pub part: u64,
    /// The characters (Unicode scalar values) of that part the client has, when it started it
    /// (a text or reasoning part, which grows); `None` when it has none of it.
    pub chars: Option<u64>,
}

impl PartOffset {
    /// The start: the client has nothing.
    pub const START: Self = Self { part: 0, chars: None };

    /// Before part `part`: the client holds the parts before it, whole.
    pub fn before(part: u64) -> Self {
        Self { part, chars: None }
    }

    /// `chars` characters into the text or reasoning part `part`.
    pub fn within(part: u64, chars: u64) -> Self {
        Self { part, chars: Some(chars) }
    }
}

impl fmt::Display for PartOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.chars {
            Some(chars) => write!(f, "{}.{chars}", self.part),
            None => write!(f, "{}", self.part),
        }
    }
}

impl FromStr for PartOffset {
    type Err = PersistError;

    fn from_str(text: &str) -> Result<Self> {
        let invalid =
            || PersistError::invalid("offset", format!("'{text}' is not a place in parts: PART or PART.CHARS"));
        let number = |digits: &str| {
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<u64>().ok())
                .flatten()
                .ok_or_else(invalid)
        };
        match text.trim().split_once('.') {
            Some((part, chars)) => Ok(Self::within(number(part)?, number(chars)?)),
            None => Ok(Self::before(number(text.trim())?)),
        }
    }
}

impl PartOffset {
    /// The end of `parts`: inside the last part when it is text or reasoning (which may grow),
    /// else after it; [`START`](Self::START) for none.
    pub fn end_of(parts: &[Part]) -> Self {
        match parts.last() {
            Some(last) => match streamed_text(last) {
                Some(text) => Self::within(parts.len() as u64 - 1, text.chars().count() as u64),
                None => Self::before(parts.len() as u64),
            },
            None => Self::START,
        }
    }

    /// Whether this is the end of `parts` (in either form: `1` and `0.5` are both the end of
    /// one text part of 5 characters).
    pub fn is_end_of(self, parts: &[Part]) -> bool {
        match self.chars {
            None => self.part == parts.len() as u64,
            Some(chars) => {
                self.part + 1 == parts.len() as u64
                    && parts.last().and_then(streamed_text).is_some_and(|text| text.chars().count() as u64 == chars)
            }
        }
    }

    /// The parts before this place: whole parts, then the first [`chars`](Self::chars)
    /// characters of a text or reasoning part; `None` when `parts` has no such place.
    pub fn prefix_of(self, parts: &[Part]) -> Option<Vec<Part>> {
        let whole = usize::try_from(self.part).ok()?;
        match self.chars {
            None => parts.get(..whole).map(<[Part]>::to_vec),
            Some(chars) => {
                let text = streamed_text(parts.get(whole)?)?;
                let chars = usize::try_from(chars).ok()?;
                let cut = match text.char_indices().nth(chars) {
                    Some((byte, _)) => byte,
                    None if text.chars().count() == chars => text.len(),
                    None => return None,
                };
                let mut prefix = parts[..whole].to_vec();
                prefix.push(with_text(&parts[whole], text[..cut].to_owned()));
                Some(prefix)
            }
        }
    }
}

/// The text of a part that grows as a reply streams (text, reasoning).
pub fn streamed_text(part: &Part) -> Option<&str> {
    match part {
        Part::Text { text } | Part::Reasoning { text } => Some(text),
        _ => None,
    }
}

/// A part of `kind`'s kind (text or reasoning) holding `text`.
pub fn with_text(kind: &Part, text: String) -> Part {
    match kind {
        Part::Reasoning { .. } => Part::Reasoning { text },
        _ => Part::Text { text },
    }
}

/// Whether `now` goes on from `known`: the same parts, the last of `known` possibly grown
/// (more text of the same kind), then any more.
pub fn parts_continue(known: &[Part], now: &[Part]) -> bool {
    now.len() >= known.len()
        && known.iter().zip(now).enumerate().all(|(i, (was, is))| {
            if i + 1 == known.len() {
                was == is
                    || matches!((was, is),
                        (Part::Text { text: a }, Part::Text { text: b })
                        | (Part::Reasoning { text: a }, Part::Reasoning { text: b }) if b.starts_with(a.as_str()))
            } else {
                was == is
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_prefixes() {
        let parts = [Part::text("Héllo"), Part::tool_call("c", "t", serde_json::json!({})), Part::reasoning("ab")];
        assert_eq!(PartOffset::end_of(&parts), PartOffset::within(2, 2));
        assert_eq!(PartOffset::end_of(&parts[..2]), PartOffset::before(2));
        assert_eq!(PartOffset::end_of(&[]), PartOffset::START);
        assert!(PartOffset::before(1).is_end_of(&parts[..1]) && PartOffset::within(0, 5).is_end_of(&parts[..1]));
        assert!(!PartOffset::within(0, 4).is_end_of(&parts[..1]));
        assert_eq!(PartOffset::within(0, 2).prefix_of(&parts), Some(vec![Part::text("Hé")]));
        assert_eq!(PartOffset::within(0, 5).prefix_of(&parts), Some(vec![Part::text("Héllo")]));
        assert_eq!(PartOffset::within(0, 6).prefix_of(&parts), None);
        assert_eq!(PartOffset::within(1, 0).prefix_of(&parts), None, "a tool call has no characters");
        assert_eq!(PartOffset::before(3).prefix_of(&parts).map(|p| p.len()), Some(3));
        assert_eq!(PartOffset::before(4).prefix_of(&parts), None);
        assert!(parts_continue(&[Part::text("Hé")], &parts));
        assert!(!parts_continue(&[Part::text("Ha")], &parts));
        assert!(parts_continue(&[], &parts));
    }
}
