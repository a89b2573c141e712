//! A [`Page`] of a listing, the items it could not answer, and the limits of a page.

use serde::{Deserialize, Serialize};

use super::error::{PersistError, Result};
use super::id::{MessageId, ThreadId};

/// The default page size of [`ListMessages`](crate::read::ListMessages) and [`ListThreads`](crate::read::ListThreads).
pub const DEFAULT_PAGE_LIMIT: u32 = 100;
/// The largest page size accepted.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// The page of at most `limit` of `fetched` (which holds up to `limit + 1` items: the one past
/// the page only says that more follow).
pub(crate) fn lookahead<T, C>(mut fetched: Vec<T>, limit: u32, cursor: impl Fn(&T) -> C) -> Page<T, C> {
    let has_more = fetched.len() > limit as usize;
    fetched.truncate(limit as usize);
    let next_cursor = fetched.last().map(cursor);
    Page::new(fetched, next_cursor, has_more)
}

pub(crate) fn validate_limit(limit: u32) -> Result<()> {
    if limit == 0 || limit > MAX_PAGE_LIMIT {
        return Err(PersistError::invalid("limit", format!("must be between 1 and {MAX_PAGE_LIMIT}, got {limit}")));
    }
    Ok(())
}

/// The paging methods of a request, one per word: `limit`, its `with_limit` (the page size in
/// its field `limit`); `cursor: T`, its `with_cursor` (where it continues, in its field
/// `cursor`); `fetch`, its `fetch_limit` (one more than the page). For request types of crates
/// built on this one too.
#[doc(hidden)]
#[macro_export]
macro_rules! page_setters {
    (@limit) => {
        /// At most `limit` items (the field `limit` says the range and the default).
        pub fn with_limit(mut self, limit: u32) -> Self {
            self.limit = limit;
            self
        }
    };
    (@cursor: $cursor:ty) => {
        /// Continues after `cursor` (the `next_cursor` of the previous page).
        pub fn with_cursor(mut self, cursor: Option<$cursor>) -> Self {
            self.cursor = cursor;
            self
        }
    };
    (@fetch) => {
        /// How many items a backend fetches: one more than the page, to learn whether more follow.
        pub fn fetch_limit(&self) -> u32 {
            self.limit + 1
        }
    };
    ($($what:ident $(: $cursor:ty)?),+) => {
        $($crate::page_setters!(@$what $(: $cursor)?);)+
    };
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Page<T, C = u64> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// Where the next page starts (the last item's position), when there are items.
    pub next_cursor: Option<C>,
    /// Whether more items follow this page.
    pub has_more: bool,
    /// Items of this page a layer could not answer (a sealed value that does not open: see
    /// `EncryptLayer`), named here instead of in `items`, in the page's order. Empty unless a
    /// layer found some: the other items are answered, none of these in part.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<UnreadableItem>,
}

impl<T, C> Page<T, C> {
    /// A page of `items`.
    pub fn new(items: Vec<T>, next_cursor: Option<C>, has_more: bool) -> Self {
        Self { items, next_cursor, has_more, unreadable: Vec::new() }
    }
}

/// An item of a [`Page`] that could not be answered: its thread, its message (none for a
/// thread of a thread listing), and why, in words (never the value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UnreadableItem {
    /// The thread.
    pub thread_id: ThreadId,
    /// The message, for a page of messages.
    pub message_id: Option<MessageId>,
    /// Why it could not be answered.
    pub reason: String,
}

impl UnreadableItem {
    /// The item named by an [`PersistError::Unreadable`]; `None` for any other error.
    pub fn from_error(error: &PersistError) -> Option<Self> {
        match error {
            PersistError::Unreadable { thread_id, message_id, reason } => {
                Some(Self { thread_id: thread_id.clone(), message_id: message_id.clone(), reason: reason.to_string() })
            }
            _ => None,
        }
    }
}
