//! A [`PartOffset`] read from its text, and what it says of a message's parts: where they end,
//! what comes before it, whether parts go on from others.

use std::str::FromStr;

use super::error::{PersistError, Result};
use super::part::Part;
use super::place::PartOffset;

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
