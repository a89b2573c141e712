//! The stored data: [`Message`], [`Thread`] and their parts (role, status, times).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::content::Content;
use super::error::PersistError;
use super::id::{IdempotencyKey, MessageId, TenantId, ThreadId};
use super::metadata::Metadata;

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

/// Whether a message is still being written, complete, or a reply whose stream stopped before
/// its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created by `reserve`; its content is the placeholder, or what the stream wrote so far,
    /// until `update_content` finalizes it.
    Reserved,
    /// Written by `add`, or finalized by `update_content`.
    Complete,
    /// A reservation whose stream stopped before its final write (the generator crashed, the
    /// client went away): the content is what the stream wrote, kept for the reader, who can be
    /// told the reply was cut short. Set by [`UpdateContent::interrupted`] (the host saw its
    /// stream fail) or by a cleanup of stranded reservations (`cleanup_stranded`, in
    /// `persist-ops`: nobody wrote to the reservation for a while). Read like a complete
    /// message (reads leave out only `Reserved` ones by default); no more tokens are taken, a
    /// final replacement still completes it.
    ///
    /// [`UpdateContent::interrupted`]: crate::args::UpdateContent::interrupted
    Interrupted,
}

impl Status {
    /// `"reserved"`, `"complete"` or `"interrupted"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Complete => "complete",
            Self::Interrupted => "interrupted",
        }
    }

    /// The status named by [`as_str`](Self::as_str); `None` for any other text.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "reserved" => Some(Self::Reserved),
            "complete" => Some(Self::Complete),
            "interrupted" => Some(Self::Interrupted),
            _ => None,
        }
    }

    /// Whether a stream may still write to the message (`Reserved`): appends and partial writes
    /// are refused otherwise.
    pub const fn is_streaming(self) -> bool {
        matches!(self, Self::Reserved)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
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

    /// The time as RFC 3339 in UTC, to the second: `2026-11-26T21:30:30Z`.
    ///
    /// ```
    /// use persist::Timestamp;
    ///
    /// assert_eq!(Timestamp::from_micros(1_764_192_630_250_000).to_rfc3339(), "2025-11-26T21:30:30Z");
    /// assert_eq!(Timestamp::from_micros(-1).to_rfc3339(), "1969-12-31T23:59:59Z");
    /// ```
    pub fn to_rfc3339(self) -> String {
        let seconds = self.0.div_euclid(1_000_000);
        let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        let (hour, minute, second) = (second_of_day / 3600, second_of_day % 3600 / 60, second_of_day % 60);
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
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

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
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
    /// The `seq` of the message this one follows in the thread's tree (see
    /// [`branch`](crate::branch)): always an earlier message; `None` for a root (a thread's
    /// first message, or an edit of it).
    #[serde(default)]
    pub parent_seq: Option<u64>,
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
    /// A complete message as a store holds one it wrote at `seq` of `thread_id`: version 1,
    /// following the message before it (a root at seq 1), without metadata or an idempotency
    /// key, written `at`. For backends that build rows, restores and tests: every field is
    /// public, to set what differs.
    pub fn stored(thread_id: ThreadId, id: MessageId, seq: u64, role: Role, content: Content, at: Timestamp) -> Self {
        Self {
            thread_id,
            id,
            role,
            content,
            metadata: Metadata::new(),
            status: Status::Complete,
            seq,
            parent_seq: seq.checked_sub(1).filter(|&parent| parent > 0),
            version: 1,
            idempotency_key: None,
            created_at: at,
            updated_at: at,
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
    /// The `seq` of the active branch's last message (see [`branch`](crate::branch)): the
    /// message a new one follows unless it names its parent; `None` while the thread has no
    /// message, or after a switch to an empty branch ([`Switch::Empty`](crate::branch::Switch::Empty)). Moved by every write of a message; changed by a switch, which is an update of
    /// the thread (its version moves).
    #[serde(default)]
    pub active_leaf: Option<u64>,
    /// Set when the thread was deleted; a deleted thread refuses every later write.
    pub deleted_at: Option<Timestamp>,
}

impl Thread {
    /// A thread as a store holds one whose messages are seqs `1..=last_seq`, one after the
    /// other on a single branch, none deleted: version 1, no tenant, title or metadata, created
    /// and last changed `at`. For backends that build threads, restores and tests: every field
    /// is public, to set what differs.
    pub fn stored(id: ThreadId, last_seq: u64, at: Timestamp) -> Self {
        Self {
            id,
            tenant: None,
            title: None,
            metadata: Metadata::new(),
            version: 1,
            created_at: at,
            updated_at: at,
            last_seq,
            message_count: last_seq,
            active_leaf: (last_seq > 0).then_some(last_seq),
            deleted_at: None,
        }
    }

    /// Whether the thread is a tombstone.
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

/// A parent as a SQL backend stores it, compactly: `None` (NULL) when the message follows the
/// message just before it in seq (`seq - 1`, most messages) or is the root at seq 1, `Some(0)`
/// for any other root, `Some(parent)` otherwise. Only the messages that start a run of
/// consecutive seqs then hold a value, which a partial index can hold alone; see
/// [`parent_from_stored`].
pub fn stored_parent(seq: u64, parent: Option<u64>) -> Option<u64> {
    match parent {
        None if seq == 1 => None,
        None => Some(0),
        Some(parent) if parent + 1 == seq => None,
        Some(parent) => Some(parent),
    }
}

/// The parent of the message at `seq` whose stored form is `stored` (see [`stored_parent`]).
pub fn parent_from_stored(seq: u64, stored: Option<u64>) -> Option<u64> {
    match stored {
        None => seq.checked_sub(1).filter(|&parent| parent > 0),
        Some(0) => None,
        Some(parent) => Some(parent),
    }
}
