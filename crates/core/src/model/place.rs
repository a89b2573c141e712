//! [`PartOffset`]: a place in a message's parts, as a follower resumes from it and a live
//! reply's writer appends at it (its reading from text, and what it says of parts: `offset`).

use std::fmt;

use serde::{Deserialize, Serialize};

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
