//! Read-your-writes across copies of a store: a write's [`CommitPosition`], and the
//! [`Consistency`] a request carries so that a read served by a copy that lags (a PostgreSQL
//! hot standby) still sees the writes its caller made.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::error::PersistError;

/// Where a write was committed in its store's history: a read that must see the write waits
/// until the copy it reads from has reached this position.
///
/// Positions of one store are ordered (a later commit has a greater or equal position) and
/// mean nothing across stores. PostgreSQL's are WAL positions (LSNs), and their text is
/// PostgreSQL's: two hexadecimal numbers around a slash (`16/B374D848`), safe in a cookie or a
/// header.
///
/// # Example
///
/// ```
/// use persist::CommitPosition;
///
/// let position: CommitPosition = "16/B374D848".parse()?;
/// assert_eq!(position.to_string(), "16/B374D848");
/// assert_eq!(position.get(), 0x16_B374_D848);
/// assert!(position < "17/0".parse()?);
/// assert!("16".parse::<CommitPosition>().is_err());
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitPosition(u64);

impl CommitPosition {
    /// The position with this number (a PostgreSQL LSN as an integer).
    pub const fn new(position: u64) -> Self {
        Self(position)
    }

    /// The position as a number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for CommitPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for CommitPosition {
    type Err = PersistError;

    /// Parses the [text form](Self); anything else is `InvalidInput` naming `position`.
    fn from_str(text: &str) -> Result<Self, PersistError> {
        let bad = || PersistError::invalid("position", format!("{text:?} is not a commit position (like 16/B374D848)"));
        let (high, low) = text.split_once('/').ok_or_else(bad)?;
        let part = |digits: &str| {
            let valid = (1..=8).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_hexdigit());
            valid.then(|| u64::from_str_radix(digits, 16).ok()).flatten().ok_or_else(bad)
        };
        Ok(Self(part(high)? << 32 | part(low)?))
    }
}

serde_as_text!(CommitPosition);

/// The newest commit a caller must see, shared by every request that carries it.
///
/// Put one in a [`Context`](crate::Context) ([`with_consistency`](crate::Context::with_consistency)):
/// a backend that answers reads from copies of the store (a PostgreSQL backend with replicas,
/// `PostgresBackendBuilder::replica`) records
/// each write's [`CommitPosition`] in it, and a read that carries it is answered only by a copy
/// that has reached that position, or by the primary. Clones share one position, so the
/// requests of one caller see each other's writes: a [`Scoped`](crate::Scoped) handle gives
/// its calls one of its own when its context has none.
///
/// Across requests (an HTTP session, another instance), carry the
/// [position](Self::position) (a cookie, a header) and start the next request's consistency
/// [after](Self::after) it. A backend without copies ignores it: every read sees every write.
///
/// # Example
///
/// ```
/// use persist::{CommitPosition, Consistency, Context};
///
/// let seen = Consistency::new();
/// let ctx = Context::new().with_consistency(seen.clone());
/// assert_eq!(seen.position(), None); // nothing written yet
/// seen.observe(CommitPosition::new(0x100));
/// seen.observe(CommitPosition::new(0x80)); // never goes back
/// assert_eq!(ctx.consistency().and_then(Consistency::position), Some(CommitPosition::new(0x100)));
///
/// // The next request, say from a cookie holding "0/100":
/// let next = Consistency::after("0/100".parse()?);
/// assert_eq!(next.position().unwrap().to_string(), "0/100");
/// # Ok::<_, persist::PersistError>(())
/// ```
#[derive(Clone, Default)]
pub struct Consistency {
    /// The newest position observed; 0 for none (no commit is at position 0).
    newest: Arc<AtomicU64>,
}

impl Consistency {
    /// A consistency that has seen no write yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A consistency that must see everything up to `position` (from an earlier request).
    pub fn after(position: CommitPosition) -> Self {
        let consistency = Self::new();
        consistency.observe(position);
        consistency
    }

    /// The newest position a read carrying this must see, if any.
    pub fn position(&self) -> Option<CommitPosition> {
        match self.newest.load(Ordering::Acquire) {
            0 => None,
            position => Some(CommitPosition(position)),
        }
    }

    /// Records that reads must see `position` too (a position older than the newest changes
    /// nothing).
    pub fn observe(&self, position: CommitPosition) {
        self.newest.fetch_max(position.0, Ordering::AcqRel);
    }

    /// Whether both are one shared position (clones of one consistency).
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.newest, &other.newest)
    }
}

impl fmt::Debug for Consistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Consistency").field(&self.position()).finish()
    }
}
